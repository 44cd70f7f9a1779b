#include "runtime/testing/golden.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "runtime/model/safetensors.h"

namespace tessera::runtime::cpu {

absl::Status LinearBlockAllocator::Grow(int32_t num_positions,
                                        std::vector<std::vector<int32_t>>* tables) {
  tables->resize(spec_.groups.size());
  for (size_t g = 0; g < spec_.groups.size(); ++g) {
    const KvGroupSpec& gs = spec_.groups[g];
    const size_t need = (num_positions + gs.block_size - 1) / gs.block_size;
    while ((*tables)[g].size() < need) {
      if (next_[g] >= gs.num_blocks) {
        return absl::ResourceExhaustedError(
            absl::StrCat("KV group ", gs.name, " has only ", gs.num_blocks, " blocks"));
      }
      (*tables)[g].push_back(next_[g]++);
    }
  }
  return absl::OkStatus();
}

int ReleaseOutsideWindow(const KvCacheSpec& spec, int32_t next_pos,
                         std::vector<std::vector<int32_t>>* tables) {
  int released = 0;
  for (size_t g = 0; g < spec.groups.size() && g < tables->size(); ++g) {
    const KvGroupSpec& gs = spec.groups[g];
    if (gs.window <= 0) continue;
    // A query at q >= next_pos sees keys k > q - window >= next_pos - window.
    const int64_t first_visible = std::max<int64_t>(0, next_pos - gs.window + 1);
    for (size_t b = 0; b < (*tables)[g].size(); ++b) {
      if (static_cast<int64_t>(b + 1) * gs.block_size <= first_visible &&
          (*tables)[g][b] != kReleasedBlock) {
        (*tables)[g][b] = kReleasedBlock;
        ++released;
      }
    }
  }
  return released;
}

void FillRows(const Prompt& prompt, int32_t begin, int32_t end, SequencePlan* plan) {
  plan->start_pos = begin;
  plan->token_ids.assign(prompt.token_ids.begin() + begin, prompt.token_ids.begin() + end);
  plan->media.clear();
  plan->bidirectional.clear();
  for (const MediaRun& run : prompt.media) {
    const int32_t lo = std::max(begin, run.start), hi = std::min(end, run.end());
    if (lo >= hi) continue;
    MediaRows m;
    m.item = run.item.get();
    m.item_row = lo - run.start;
    m.seq_row = lo - begin;
    m.count = hi - lo;
    plan->media.push_back(m);
    if (run.bidirectional()) plan->bidirectional.push_back({run.start, run.end()});
  }
}

std::vector<int32_t> ChunkEnds(const Prompt& prompt, int32_t chunk) {
  std::vector<int32_t> ends;
  const int32_t n = prompt.size();
  int32_t pos = 0;
  while (pos < n) {
    int32_t end = std::min(n, pos + std::max(1, chunk));
    for (const MediaRun& run : prompt.media) {
      if (run.bidirectional() && run.start < end && end < run.end()) end = run.end();
    }
    ends.push_back(end);
    pos = end;
  }
  return ends;
}

absl::StatusOr<std::vector<float>> PrefillAll(ModelRunner* runner, LinearBlockAllocator* alloc,
                                              const Prompt& prompt, int32_t chunk,
                                              std::vector<std::vector<int32_t>>* tables,
                                              bool release_outside_window) {
  const int64_t V = runner->vocab_size();
  std::vector<float> logits;
  int32_t begin = 0;
  for (int32_t end : ChunkEnds(prompt, chunk)) {
    absl::Status st = alloc->Grow(end, tables);
    if (!st.ok()) return st;
    if (release_outside_window) ReleaseOutsideWindow(runner->kv_spec(), begin, tables);
    BatchPlan plan;
    plan.seqs.emplace_back();
    SequencePlan& sp = plan.seqs.back();
    FillRows(prompt, begin, end, &sp);
    sp.block_tables = *tables;
    for (int32_t r = 0; r < end - begin; ++r) sp.logits_rows.push_back(r);
    StepOutput out;
    st = runner->Execute(plan, &out);
    if (!st.ok()) return st;
    logits.insert(logits.end(), out.seqs[0].logits.begin(), out.seqs[0].logits.end());
    begin = end;
  }
  if (static_cast<int64_t>(logits.size()) != prompt.size() * V) {
    return absl::InternalError("runner returned the wrong number of logits");
  }
  return logits;
}

namespace {

absl::StatusOr<std::vector<int64_t>> Ints(const SafetensorsFile& f, const std::string& name) {
  const TensorView* t = f.Find(name);
  if (t == nullptr) return absl::NotFoundError("golden file has no " + name);
  return ToInt64Vector(*t);
}

absl::StatusOr<std::vector<float>> Floats(const SafetensorsFile& f, const std::string& name,
                                          int64_t cols) {
  const TensorView* t = f.Find(name);
  if (t == nullptr) return std::vector<float>();
  if (t->shape.empty() || (cols > 0 && t->shape.back() != cols)) {
    return absl::InvalidArgumentError(absl::StrCat("golden tensor ", name, " has shape ",
                                                   t->ShapeString(), "; expected rows of ", cols));
  }
  return ToFloatVector(*t);
}

}  // namespace

absl::StatusOr<std::vector<GoldenPrompt>> ReadGolden(const std::string& path,
                                                     const ModelConfig& config) {
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  const SafetensorsFile& f = **file;
  const int64_t V = config.text.vocab_size;
  std::vector<GoldenPrompt> prompts;
  const std::string suffix = "_input_ids";
  for (const auto& [name, view] : f.tensors()) {
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    GoldenPrompt g;
    g.name = name.substr(0, name.size() - suffix.size());
    auto ids = Ints(f, name);
    if (!ids.ok()) return ids.status();
    for (int64_t id : *ids) g.prompt.token_ids.push_back(static_cast<int32_t>(id));
    const int32_t n = g.prompt.size();
    auto logits = Floats(f, g.name + "_logits", V);
    if (!logits.ok()) return logits.status();
    g.logits = std::move(*logits);
    if (!g.logits.empty() && static_cast<int64_t>(g.logits.size()) != n * V) {
      return absl::InvalidArgumentError(g.name + "_logits does not have one row per input id");
    }
    if (f.Find(g.name + "_greedy_ids") != nullptr) {
      auto greedy = Ints(f, g.name + "_greedy_ids");
      if (!greedy.ok()) return greedy.status();
      for (int64_t id : *greedy) g.greedy_ids.push_back(static_cast<int32_t>(id));
    }
    auto dec = Floats(f, g.name + "_decode_logits", V);
    if (!dec.ok()) return dec.status();
    g.decode_logits = std::move(*dec);
    if (!g.decode_logits.empty() && static_cast<int64_t>(g.decode_logits.size()) !=
                                        static_cast<int64_t>(g.greedy_ids.size()) * V) {
      return absl::InvalidArgumentError(g.name + "_decode_logits does not match " + g.name +
                                        "_greedy_ids");
    }
    // Media runs: contiguous placeholder runs, fed in order from the patch / frame tensors.
    auto patches = Floats(f, g.name + "_pixel_patches", kPatchValues);
    auto frames = Floats(f, g.name + "_audio_frames", kAudioFrameSamples);
    if (!patches.ok()) return patches.status();
    if (!frames.ok()) return frames.status();
    std::vector<int64_t> positions;
    if (f.Find(g.name + "_image_position_ids") != nullptr) {
      auto p = Ints(f, g.name + "_image_position_ids");
      if (!p.ok()) return p.status();
      positions = std::move(*p);
    }
    int64_t next_patch = 0, next_frame = 0;
    for (int32_t i = 0; i < n;) {
      const int32_t id = g.prompt.token_ids[i];
      const bool image = id == config.image_token_id || id == config.video_token_id;
      const bool audio = id == config.audio_token_id;
      if (!image && !audio) {
        ++i;
        continue;
      }
      int32_t j = i;
      while (j < n && g.prompt.token_ids[j] == id) ++j;
      auto item = std::make_shared<MediaItem>();
      item->kind = image ? MediaKind::kImage : MediaKind::kAudio;
      item->num_rows = j - i;
      const int64_t width = image ? kPatchValues : kAudioFrameSamples;
      const std::vector<float>& src = image ? *patches : *frames;
      int64_t& next = image ? next_patch : next_frame;
      if (static_cast<int64_t>(src.size()) < (next + item->num_rows) * width ||
          (image && static_cast<int64_t>(positions.size()) < (next + item->num_rows) * 2)) {
        return absl::InvalidArgumentError(
            absl::StrCat(g.name, ": the prompt has more ", image ? "image" : "audio",
                         " placeholders than the golden file has ", image ? "patches" : "frames"));
      }
      item->rows.assign(src.begin() + next * width, src.begin() + (next + item->num_rows) * width);
      if (image) {
        for (int64_t k = next * 2; k < (next + item->num_rows) * 2; ++k) {
          item->positions.push_back(static_cast<int32_t>(positions[k]));
        }
      }
      next += item->num_rows;
      MediaRun run;
      run.start = i;
      run.item = std::move(item);
      g.prompt.media.push_back(std::move(run));
      i = j;
    }
    prompts.push_back(std::move(g));
  }
  if (prompts.empty()) return absl::InvalidArgumentError(path + " has no *_input_ids tensor");
  return prompts;
}

float MaxRowRelativeError(const float* a, const float* b, int64_t rows, int64_t cols) {
  float worst = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    float diff = 0.0f, scale = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float x = a[r * cols + c], y = b[r * cols + c];
      diff = std::max(diff, std::isfinite(x) ? std::fabs(x - y) : INFINITY);
      scale = std::max(scale, std::fabs(y));
    }
    worst = std::max(worst, diff / std::max(scale, 1e-30f));
  }
  return worst;
}

absl::StatusOr<GoldenResult> CheckGoldenPrompt(ModelRunner* runner, const GoldenPrompt& golden,
                                               int32_t chunk) {
  const int64_t V = runner->vocab_size();
  GoldenResult res;
  res.name = golden.name;
  res.prompt_tokens = golden.prompt.size();
  LinearBlockAllocator alloc(runner->kv_spec());
  std::vector<std::vector<int32_t>> tables;
  auto logits = PrefillAll(runner, &alloc, golden.prompt, chunk, &tables);
  if (!logits.ok()) return logits.status();
  const int32_t n = golden.prompt.size();
  if (!golden.logits.empty()) {
    res.prefill_error = MaxRowRelativeError(logits->data(), golden.logits.data(), n, V);
  }
  const int32_t steps = static_cast<int32_t>(golden.greedy_ids.size());
  res.greedy_total = steps;
  std::vector<float> step_logits(logits->end() - V, logits->end());
  bool matching = true;
  for (int32_t i = 0; i < steps; ++i) {
    if (!golden.decode_logits.empty()) {
      res.decode_error =
          std::max(res.decode_error,
                   MaxRowRelativeError(step_logits.data(), &golden.decode_logits[i * V], 1, V));
    }
    const int32_t best = static_cast<int32_t>(
        std::max_element(step_logits.begin(), step_logits.end()) - step_logits.begin());
    res.greedy_ids.push_back(best);
    matching = matching && best == golden.greedy_ids[i];
    if (matching) ++res.greedy_matched;
    if (i + 1 == steps) break;
    // Feed the golden token so that every step is compared even after a divergence.
    const int32_t pos = n + i;
    absl::Status st = alloc.Grow(pos + 1, &tables);
    if (!st.ok()) return st;
    BatchPlan plan;
    plan.seqs.emplace_back();
    SequencePlan& sp = plan.seqs.back();
    sp.start_pos = pos;
    sp.token_ids = {golden.greedy_ids[i]};
    sp.block_tables = tables;
    sp.logits_rows = {0};
    StepOutput out;
    st = runner->Execute(plan, &out);
    if (!st.ok()) return st;
    step_logits = out.seqs[0].logits;
  }
  return res;
}

}  // namespace tessera::runtime::cpu
