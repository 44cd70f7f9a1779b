// End-to-end benchmark of the CUDA runner on a Gemma 4 12B-shaped model with random weights made
// directly in GPU memory (random_weights.h), next to the limits measured in the same
// run: device-to-device copy bandwidth and the cuBLASLt bf16 GEMM rate. Reports decode tokens/s at
// batch 1..128 with ~1k-token contexts, a 2048-token prefill, how many 8k-token sequences fit in
// the KV pools, and the image (280 patches) and audio (750 frames) steps. Everything goes through
// the public ModelRunner interface (BatchPlan in, StepOutput out), timed by wall clock around
// Execute, which returns once the step's sampled tokens are on the host.
//
//   model_bench [--out=FILE] [--smoke] [--weights=bf16|q8_0|q6_k|q5_k_m|q4_k_m|q4_0]
//
// --weights: the text matrices in the formats llama-quantize gives a file of that type
// (quant_mix.h), as random blocks kept quantized on the GPU: the decode rows then measure the
// quantized GEMV against the bandwidth limit of those bytes. A quantized run times decode at
// batch 1, 8 and 32 and the prefill (the media path is the bf16 run's).
//
// --smoke runs the same code path on a tiny config (the shape of the gemma4-tiny fixture) with
// small sizes: under the CPU emulation (model_bench_emu_test) it checks that the benchmark runs and
// prints its table, nothing about speed.
//
// The 12B config is written as config.json text and parsed by ParseModelConfig, so the benchmark
// exercises the real field parsing. Its shapes are MODEL.md's; MODEL.md does not state
// intermediate_size, mm_embed_dim or mm_posemb_size: 15360, 3840 and 1120 are the values for which
// the parameter count of these shapes is exactly the published 11,959,730,224 (the benchmark
// recomputes it and prints the comparison).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "runtime/cuda/cuda_model_runner.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/gemma4_configs.h"
#include "runtime/cuda/quant_mix.h"
#include "runtime/cuda/random_fill.h"
#include "runtime/cuda/random_weights.h"
#include "runtime/model/model_config.h"
#include "runtime/model_runner.h"

namespace tessera::runtime {
namespace {

namespace cu = cuda;

constexpr int64_t kPublished12BParams = 11959730224;

// Parameter counts from the config, the way the checkpoint stores them (MODEL.md's tensors).
struct ParamCount {
  int64_t text = 0;         // Everything in model.language_model.
  int64_t text_matmul = 0;  // Projection matrices of the layers (not the embedding).
  int64_t embedding = 0;    // Tied: the logits GEMM reads it all once per step.
  int64_t vision = 0;
  int64_t audio = 0;
  int64_t total() const { return text + vision + audio; }
};

ParamCount CountParams(const ModelConfig& c) {
  ParamCount p;
  const int64_t h = c.text.hidden_size, heads = c.text.num_heads, inter = c.text.intermediate_size;
  p.embedding = int64_t{c.text.vocab_size} * h;
  p.text = p.embedding + h;  // + final norm.
  for (const LayerConfig& l : c.text.layers) {
    const int64_t q = h * heads * l.head_dim, kv = h * l.num_kv_heads * l.head_dim;
    const int64_t matmul = q + kv + (l.k_eq_v ? 0 : kv) + heads * l.head_dim * h + 3 * h * inter;
    p.text_matmul += matmul;
    p.text += matmul + 2 * l.head_dim + 4 * h + 1;  // q/k norms, four layer norms, layer_scalar.
  }
  if (c.vision.present) {
    const int64_t e = c.vision.mm_embed_dim;
    // patch_ln1 (w, b), patch_dense (w, b), patch_ln2, pos_embedding [P, 2, E], pos_norm,
    // embedding_projection.
    p.vision =
        2 * 6912 + 6912 * e + e + 2 * e + int64_t{c.vision.mm_posemb_size} * 2 * e + 2 * e + e * h;
  }
  if (c.audio.present) p.audio = int64_t{c.audio.audio_embed_dim} * h;
  return p;
}

struct Table {
  std::vector<std::string> rows;
  void Add(const std::string& r) {
    std::printf("%s\n", r.c_str());
    std::fflush(stdout);
    rows.push_back(r);
  }
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Hands out block ids of each KV group's pool in order; Reset reuses them (the sequences that held
// them are finished).
class BlockPool {
 public:
  explicit BlockPool(const KvCacheSpec& spec) : spec_(spec), next_(spec.groups.size(), 0) {}
  // Blocks for `positions` positions in every group: tables[g], or an error naming the group.
  absl::Status Take(int64_t positions, std::vector<std::vector<int32_t>>* tables) {
    tables->assign(spec_.groups.size(), {});
    for (size_t g = 0; g < spec_.groups.size(); ++g) {
      const KvGroupSpec& gs = spec_.groups[g];
      const int64_t n = (positions + gs.block_size - 1) / gs.block_size;
      if (next_[g] + n > gs.num_blocks) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "the ", gs.name, " pool has ", gs.num_blocks, " blocks; ", next_[g] + n, " needed"));
      }
      for (int64_t i = 0; i < n; ++i) (*tables)[g].push_back(static_cast<int32_t>(next_[g]++));
    }
    return absl::OkStatus();
  }
  void Reset() { std::fill(next_.begin(), next_.end(), 0); }

 private:
  const KvCacheSpec& spec_;
  std::vector<int64_t> next_;
};

// One sequence of the benchmark: its blocks (for its longest extent) and its next token.
struct BenchSeq {
  uint64_t id = 0;
  std::vector<std::vector<int32_t>> tables;
  int32_t pos = 0;  // Tokens in KV.
  int32_t next_token = 0;
};

// A plan row set for `seq`: `ids` at positions [start, start + ids.size()), greedy sampling of the
// last row, block tables cut to the positions covered.
SequencePlan MakePlan(const BenchSeq& seq, int32_t start, std::vector<int32_t> ids,
                      const KvCacheSpec& spec) {
  SequencePlan p;
  p.seq_id = seq.id;
  p.start_pos = start;
  const int64_t end = start + static_cast<int64_t>(ids.size());
  p.token_ids = std::move(ids);
  for (size_t g = 0; g < spec.groups.size(); ++g) {
    const int64_t need = (end + spec.groups[g].block_size - 1) / spec.groups[g].block_size;
    p.block_tables.emplace_back(seq.tables[g].begin(), seq.tables[g].begin() + need);
  }
  p.sample = true;
  p.sampling.temperature = 0.0f;
  return p;
}

// Wall-clock seconds of one Execute.
absl::StatusOr<double> TimedExecute(ModelRunner& runner, const BatchPlan& plan, StepOutput* out) {
  const double t0 = Now();
  if (absl::Status s = runner.Execute(plan, out); !s.ok()) return s;
  return Now() - t0;
}

// Deterministic text token ids in [10, hi).
std::vector<int32_t> TextIds(int64_t n, int32_t hi, uint64_t salt) {
  std::vector<int32_t> ids(n);
  uint64_t z = salt * 0x9e3779b97f4a7c15ull + 1;
  for (auto& id : ids) {
    z ^= z << 13;
    z ^= z >> 7;
    z ^= z << 17;
    id = 10 + static_cast<int32_t>(z % static_cast<uint64_t>(hi - 10));
  }
  return ids;
}

struct Sizes {
  std::vector<int> decode_batches;
  int context = 0;         // Prefilled tokens per decode sequence.
  int decode_warmup = 0;   // Untimed steps (graph capture) per batch size.
  int decode_steps = 0;    // Timed steps per batch size.
  int prefill_tokens = 0;  // The prefill benchmark's prompt.
  int prefill_reps = 0;
  int image_cols = 0, image_rows = 0;  // Patches.
  int audio_frames = 0;
  int media_reps = 0;
  int warmup_runs = 1;  // Untimed runs before the prefill and media timings.
  size_t copy_bytes = 0;
  int64_t gemm_mnk = 0;
  int capacity_seq_len = 8192;
};

struct Limits {
  double copy_gbps = 0;
  double gemm_tflops = 0;
};

absl::StatusOr<Limits> MeasureLimits(const Sizes& z, Table& t) {
  Limits lim;
  auto copy = cu::MeasureCopyGBps(z.copy_bytes, 20);
  if (!copy.ok()) return copy.status();
  lim.copy_gbps = *copy;
  auto gemm = cu::CreateGemmRunner();
  if (!gemm.ok()) return gemm.status();
  const int64_t n = z.gemm_mnk;
  auto a = cu::DeviceBuffer::Allocate(2 * n * n);
  if (!a.ok()) return a.status();
  auto b = cu::DeviceBuffer::Allocate(2 * n * n);
  if (!b.ok()) return b.status();
  auto c = cu::DeviceBuffer::Allocate(2 * n * n);
  if (!c.ok()) return c.status();
  TESSERA_RETURN_IF_ERROR(
      cu::LaunchFillNormalBf16(a->as<cu::Bf16>(), n * n, 1, 0.0f, 1.0f, nullptr));
  TESSERA_RETURN_IF_ERROR(
      cu::LaunchFillNormalBf16(b->as<cu::Bf16>(), n * n, 2, 0.0f, 1.0f, nullptr));
  cu::GemmParams p;
  p.x = a->as<cu::Bf16>();
  p.ldx = n;
  p.w = b->as<cu::Bf16>();
  p.ldw = n;
  p.out = c->data();
  p.ldo = n;
  p.m = p.n = p.k = n;
  auto ms = cu::TimeMs([&]() { return (*gemm)->Run(p, nullptr); }, 10);
  if (!ms.ok()) return ms.status();
  lim.gemm_tflops = 2.0 * n * n * n / (*ms * 1e-3) / 1e12;
  t.Add(absl::StrFormat("| device-to-device copy (%zu MiB, read + write) | %.0f GB/s | | |",
                        z.copy_bytes >> 20, lim.copy_gbps));
  t.Add(
      absl::StrFormat("| bf16 GEMM %dx%dx%d (cuBLASLt, fp32 accumulate) | %.1f TFLOP/s | "
                      "%.3f ms | |",
                      n, n, n, lim.gemm_tflops, *ms));
  return lim;
}

// Attention FLOPs (QK^T and PV, useful keys only) of prefilling positions [0, tokens).
double PrefillAttentionFlops(const ModelConfig& c, int64_t tokens) {
  double f = 0;
  for (const LayerConfig& l : c.text.layers) {
    double keys = 0;
    for (int64_t p = 0; p < tokens; ++p) {
      keys += l.window > 0 ? std::min<int64_t>(p + 1, l.window) : p + 1;
    }
    f += 4.0 * c.text.num_heads * l.head_dim * keys;
  }
  return f;
}

class Bench {
 public:
  Bench(const ModelConfig& config, const Sizes& sizes, const CudaRunnerOptions& options,
        CudaModelRunner& runner, const Limits& lim, Table& t)
      : c_(config),
        z_(sizes),
        options_(options),
        runner_(runner),
        spec_(runner.kv_spec()),
        lim_(lim),
        t_(t) {
    // Text ids stay below the first special (media placeholder) id.
    text_hi_ = c_.text.vocab_size;
    for (int32_t id : {c_.image_token_id, c_.boi_token_id, c_.eoi_token_id, c_.audio_token_id,
                       c_.boa_token_id, c_.eoa_token_id, c_.video_token_id}) {
      if (id > 10) text_hi_ = std::min(text_hi_, id);
    }
  }

  int failures = 0;

  void Fail(const std::string& what, const absl::Status& s) {
    ++failures;
    t_.Add(absl::StrCat("| ", what, " | failed: ", s.message(), " | | |"));
  }

  // (b) Decode at each batch size: one prefill per sequence (several per step) to `context`
  // tokens, then `decode_warmup` untimed and `decode_steps` timed steps per batch size. Every
  // batch size decodes from the same positions (the K/V rows there are simply rewritten), so
  // each sees ~1k-token contexts and one prefill serves all.
  // text_weight_bytes: what one decode step reads of the weights (every text matrix and the
  // embedding, which the tied logits GEMM reads whole), in their device formats.
  void Decode(double text_weight_bytes) {
    const int steps = z_.decode_warmup + z_.decode_steps;
    const int max_batch = *std::max_element(z_.decode_batches.begin(), z_.decode_batches.end());
    BlockPool pool(spec_);
    std::vector<BenchSeq> seqs;
    for (int i = 0; i < max_batch; ++i) {
      BenchSeq s;
      s.id = 1000 + i;
      if (absl::Status st = pool.Take(z_.context + steps, &s.tables); !st.ok()) {
        t_.Add(absl::StrCat("| decode: KV for ", i, "+ sequences of ", z_.context + steps,
                            " tokens | does not fit: ", st.message(), " | | |"));
        break;
      }
      seqs.push_back(std::move(s));
    }
    // Prefill the contexts, as many whole sequences per step as the step's token budget takes.
    const int per_step = std::max(
        1, std::min(options_.max_step_seqs, options_.max_step_tokens / std::max(1, z_.context)));
    const double t0 = Now();
    for (size_t i = 0; i < seqs.size(); i += per_step) {
      BatchPlan plan;
      for (size_t j = i; j < std::min(seqs.size(), i + per_step); ++j) {
        plan.seqs.push_back(MakePlan(seqs[j], 0, TextIds(z_.context, text_hi_, j), spec_));
      }
      StepOutput out;
      if (absl::Status s = runner_.Execute(plan, &out); !s.ok()) return Fail("decode contexts", s);
      for (size_t j = i; j < std::min(seqs.size(), i + per_step); ++j) {
        seqs[j].next_token = out.seqs[j - i].sampled.token;
        seqs[j].pos = z_.context;
      }
    }
    std::fprintf(stderr, "model_bench: prefilled %zu contexts of %d tokens in %.1f s\n",
                 seqs.size(), z_.context, Now() - t0);

    const double bw = lim_.copy_gbps * 1e9;
    const double weight_bytes = text_weight_bytes;
    // K and V bytes read per sequence per step at this context (every position is visible while
    // the context is within the window).
    double kv_per_seq = 0;
    for (const KvGroupSpec& g : spec_.groups) {
      const int64_t visible = g.window > 0 ? std::min(z_.context, g.window) : z_.context;
      kv_per_seq += static_cast<double>(g.bytes_per_block) / g.block_size * visible;
    }
    for (int batch : z_.decode_batches) {
      const std::string what =
          absl::StrCat("decode, batch ", batch, ", ", z_.context, "-token ctx");
      if (batch > static_cast<int>(seqs.size())) {
        t_.Add(absl::StrCat("| ", what, " | skipped: KV holds ", seqs.size(), " sequences | | |"));
        continue;
      }
      double timed = 0;
      for (int step = 0; step < steps; ++step) {
        BatchPlan plan;
        for (int b = 0; b < batch; ++b) {
          plan.seqs.push_back(MakePlan(seqs[b], z_.context + step, {seqs[b].next_token}, spec_));
        }
        StepOutput out;
        auto sec = TimedExecute(runner_, plan, &out);
        if (!sec.ok()) return Fail(what, sec.status());
        if (step >= z_.decode_warmup) timed += *sec;
        for (int b = 0; b < batch; ++b) seqs[b].next_token = out.seqs[b].sampled.token;
      }
      const double tok_s = batch * z_.decode_steps / timed;
      // Memory-bound limit: a step reads every weight once plus each sequence's K/V.
      const double limit = batch * bw / (weight_bytes + batch * kv_per_seq);
      t_.Add(absl::StrFormat(
          "| %s | %.1f tok/s (%.2f ms/step) | %.1f tok/s (weights %.1f GB + K/V %.2f GB per "
          "step at %.0f GB/s) | %.0f%% |",
          what, tok_s, 1e3 * timed / z_.decode_steps, limit, weight_bytes / 1e9,
          batch * kv_per_seq / 1e9, lim_.copy_gbps, 100.0 * tok_s / limit));
      if (batch == 1) {
        // MODEL.md's yardstick: the weights alone, read once per token.
        const double weights_only = bw / weight_bytes;
        t_.Add(absl::StrFormat(
            "| decode, batch 1, vs the weight-bandwidth limit | %.1f tok/s | %.1f tok/s (%.1f GB "
            "of weights / %.0f GB/s) | %.0f%% |",
            tok_s, weights_only, weight_bytes / 1e9, lim_.copy_gbps, 100.0 * tok_s / weights_only));
      }
    }
  }

  // (c) One prompt of prefill_tokens tokens in one step, from position 0 (repeated on the same
  // blocks); achieved FLOP/s counts the projections of every row, the logits of the sampled row
  // and the attention products over the keys the masks let through.
  void Prefill(const ParamCount& params) {
    BlockPool pool(spec_);
    BenchSeq seq;
    seq.id = 1;
    const std::string what = absl::StrCat("prefill, ", z_.prefill_tokens, "-token prompt");
    if (absl::Status s = pool.Take(z_.prefill_tokens, &seq.tables); !s.ok()) return Fail(what, s);
    const std::vector<int32_t> ids = TextIds(z_.prefill_tokens, text_hi_, 99);
    double best = 1e30;
    for (int r = 0; r < z_.warmup_runs + z_.prefill_reps; ++r) {
      BatchPlan plan;
      plan.seqs.push_back(MakePlan(seq, 0, ids, spec_));
      StepOutput out;
      auto sec = TimedExecute(runner_, plan, &out);
      if (!sec.ok()) return Fail(what, sec.status());
      if (r >= z_.warmup_runs) best = std::min(best, *sec);
    }
    const double flops = 2.0 * params.text_matmul * z_.prefill_tokens + 2.0 * params.embedding +
                         PrefillAttentionFlops(c_, z_.prefill_tokens);
    const double tflops = flops / best / 1e12;
    t_.Add(absl::StrFormat(
        "| %s | %.0f tok/s (%.1f ms; %.1f TFLOP of which attention %.1f) | %.1f TFLOP/s "
        "achieved vs GEMM %.1f | %.0f%% |",
        what, z_.prefill_tokens / best, 1e3 * best, flops / 1e12,
        PrefillAttentionFlops(c_, z_.prefill_tokens) / 1e12, tflops, lim_.gemm_tflops,
        100.0 * tflops / lim_.gemm_tflops));
  }

  // (d) Concurrent sequences of capacity_seq_len tokens the pools hold: a sliding sequence needs
  // only the blocks its window spans (ceil(window / block) + 1, as the window slides across a
  // block boundary), a global one every block.
  void Capacity() {
    int64_t fit = std::numeric_limits<int64_t>::max();
    std::vector<std::string> parts;
    for (const KvGroupSpec& g : spec_.groups) {
      const int64_t all = (z_.capacity_seq_len + g.block_size - 1) / g.block_size;
      const int64_t need =
          g.window > 0 ? std::min<int64_t>(all, (g.window + g.block_size - 1) / g.block_size + 1)
                       : all;
      fit = std::min<int64_t>(fit, g.num_blocks / need);
      parts.push_back(absl::StrFormat("%s: %d blocks of %.2f MiB / %d per sequence = %d", g.name,
                                      g.num_blocks, g.bytes_per_block / 1048576.0, need,
                                      g.num_blocks / need));
    }
    t_.Add(absl::StrFormat("| concurrent %d-token sequences in the KV pools | %d | %s | |",
                           z_.capacity_seq_len, fit, absl::StrJoin(parts, "; ")));
  }

  // (e) A prefill step whose rows are one media item between its begin/end tokens, against a
  // text-only step of the same length: the difference is the media embedding path.
  void Media(MediaKind kind) {
    MediaItem item;
    item.kind = kind;
    const bool image = kind == MediaKind::kImage;
    item.num_rows = image ? z_.image_cols * z_.image_rows : z_.audio_frames;
    const int64_t width = image ? kPatchValues : kAudioFrameSamples;
    item.rows.resize(static_cast<size_t>(item.num_rows) * width);
    uint64_t state = image ? 11 : 12;
    for (float& v : item.rows) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const float u = static_cast<float>(state >> 40) * 0x1.0p-24f;
      v = image ? u : 0.6f * u - 0.3f;
    }
    if (image) {
      for (int i = 0; i < item.num_rows; ++i) {
        item.positions.push_back(i % z_.image_cols);
        item.positions.push_back(i / z_.image_cols);
      }
      item.width = z_.image_cols * kPatchSide;
      item.height = z_.image_rows * kPatchSide;
    }
    const std::string what =
        image ? absl::StrCat("image step: ", item.num_rows, " patches (", z_.image_cols, "x",
                             z_.image_rows, ") + 2 tokens")
              : absl::StrCat("audio step: ", item.num_rows, " frames + 2 tokens");
    const int32_t rows = item.num_rows + 2;
    BlockPool pool(spec_);
    BenchSeq seq;
    seq.id = image ? 2 : 3;
    if (absl::Status s = pool.Take(rows, &seq.tables); !s.ok()) return Fail(what, s);
    std::vector<int32_t> ids(rows, image ? c_.image_token_id : c_.audio_token_id);
    ids.front() = image ? c_.boi_token_id : c_.boa_token_id;
    ids.back() = image ? c_.eoi_token_id : c_.eoa_token_id;
    SequencePlan media_plan = MakePlan(seq, 0, ids, spec_);
    media_plan.media.push_back(MediaRows{&item, 0, 1, item.num_rows});
    if (image) media_plan.bidirectional.push_back(BidirectionalSpan{1, 1 + item.num_rows});
    const SequencePlan text_plan = MakePlan(seq, 0, TextIds(rows, text_hi_, 5), spec_);
    double best_media = 1e30, best_text = 1e30;
    for (int r = 0; r < z_.warmup_runs + z_.media_reps; ++r) {
      for (bool with_media : {true, false}) {
        BatchPlan plan;
        plan.seqs.push_back(with_media ? media_plan : text_plan);
        StepOutput out;
        auto sec = TimedExecute(runner_, plan, &out);
        if (!sec.ok()) return Fail(what, sec.status());
        if (r < z_.warmup_runs) continue;
        double& best = with_media ? best_media : best_text;
        best = std::min(best, *sec);
      }
    }
    t_.Add(absl::StrFormat(
        "| %s | %.0f us | text-only step of %d rows %.0f us | media path ~%.0f "
        "us |",
        what, 1e6 * best_media, rows, 1e6 * best_text, 1e6 * (best_media - best_text)));
  }

 private:
  const ModelConfig& c_;
  const Sizes& z_;
  const CudaRunnerOptions& options_;
  CudaModelRunner& runner_;
  const KvCacheSpec& spec_;
  const Limits& lim_;
  Table& t_;
  int32_t text_hi_ = 0;
};

absl::Status Run(const std::string& out_path, bool smoke, cu::QuantMix mix) {
  const double t_start = Now();
  auto config =
      ParseModelConfig(smoke ? cu::Gemma4TinyShapeConfigJson() : cu::Gemma4_12BConfigJson());
  if (!config.ok()) return config.status();
  const ParamCount params = CountParams(*config);

  Sizes z;
  CudaRunnerOptions options;
  if (smoke) {
    z.decode_batches = {1, 4};
    z.context = 24;  // Past the tiny window of 8.
    z.decode_warmup = 0;
    z.decode_steps = 2;
    z.prefill_tokens = 32;
    z.prefill_reps = 1;
    z.warmup_runs = 0;
    z.image_cols = 4;
    z.image_rows = 3;
    z.audio_frames = 20;
    z.media_reps = 1;
    z.copy_bytes = size_t{1} << 20;
    z.gemm_mnk = 128;
    // Explicit small pools and step buffers: the emulation's "device" memory is host memory.
    options.num_blocks_sliding = 256;
    options.num_blocks_global = 256;
    options.max_step_tokens = 1024;
    options.max_step_seqs = 16;
    options.max_seq_len = 4096;
    options.cuda_graphs = false;
  } else {
    z.decode_batches = {1, 8, 32, 64, 128};
    if (mix != cu::QuantMix::kBf16) z.decode_batches = {1, 8, 32};
    z.context = 1000;
    z.decode_warmup = 3;  // The first steps of a batch size capture its CUDA graph.
    z.decode_steps = 16;
    z.prefill_tokens = 2048;
    z.prefill_reps = 3;
    z.image_cols = 20;
    z.image_rows = 14;  // 280 patches.
    z.audio_frames = 750;
    z.media_reps = 3;
    z.copy_bytes = size_t{1} << 30;
    z.gemm_mnk = 8192;
    // Split the KV budget for ~1k-token sequences so that 128 decode contexts fit; the 8k
    // capacity row reports what this split holds, next to the default (8k-balanced) split.
    options.kv_balance_seq_len = 1024;
  }

  Table t;
  t.Add(absl::StrFormat(
      "Model: %s, %s weights, %d layers, hidden %d, intermediate %d, vocab %d; %lld parameters "
      "(text %lld, vision %lld, audio %lld)%s",
      smoke ? "tiny (gemma4-tiny shape)" : "Gemma 4 12B shape", cu::QuantMixName(mix),
      config->text.num_layers, config->text.hidden_size, config->text.intermediate_size,
      config->text.vocab_size, static_cast<long long>(params.total()),
      static_cast<long long>(params.text), static_cast<long long>(params.vision),
      static_cast<long long>(params.audio),
      smoke ? ""
            : (params.total() == kPublished12BParams ? "; equals the published 11,959,730,224"
                                                     : "; DIFFERS from the published "
                                                       "11,959,730,224")));
  for (LayerType type : {LayerType::kSliding, LayerType::kGlobal}) {
    const int32_t first = config->first_layer_of(type);
    if (first < 0) continue;
    const LayerConfig& l = config->text.layers[first];
    std::vector<int> at;
    for (size_t i = 0; i < config->text.layers.size(); ++i) {
      if (config->text.layers[i].type == type) at.push_back(static_cast<int>(i));
    }
    t.Add(absl::StrFormat(
        "%s layers (%d: %s): %d KV heads x %d, window %d, RoPE theta %g on %d of %d pairs%s",
        type == LayerType::kSliding ? "Sliding" : "Global", at.size(),
        at.size() > 8 ? absl::StrCat(at.front(), "..", at.back()) : absl::StrJoin(at, ", "),
        l.num_kv_heads, l.head_dim, l.window, l.rope_theta, l.rope_pairs, l.head_dim / 2,
        l.k_eq_v ? ", V = K projection" : ""));
  }
  t.Add("");
  // The model lines first: they check the config (and the 12B parameter count) without a GPU.
  auto devices = cu::QueryDevices();
  if (!devices.ok()) return devices.status();
  const cu::GpuInfo& gpu = devices->front();
  t.Add(absl::StrFormat("GPU: %s, %d SMs, %.1f GiB%s", gpu.name, gpu.multiprocessors,
                        gpu.total_memory / 1073741824.0, smoke ? " (smoke run: tiny model)" : ""));
  t.Add("");
  t.Add("| what | measured | limit measured in this run | vs limit |");
  t.Add("| --- | --- | --- | --- |");

  // The yardsticks first, while the GPU memory is still free.
  auto lim = MeasureLimits(z, t);
  if (!lim.ok()) return lim.status();

  const double t_create = Now();
  RandomModelSpec spec;
  spec.config = *config;
  spec.seed = 1234;
  spec.mix = mix;
  auto runner = CreateRandomCudaModelRunner(spec, options);
  if (!runner.ok()) return runner.status();
  std::fprintf(stderr, "model_bench: runner created in %.1f s: %s\n", Now() - t_create,
               (*runner)->Describe().c_str());
  t.Add(absl::StrFormat("| runner | weights %.2f GB, KV %.2f GB | %s | |",
                        (*runner)->weight_bytes() / 1e9, (*runner)->kv_bytes() / 1e9,
                        (*runner)->Describe()));

  Bench bench(*config, z, options, **runner, *lim, t);
  ModelConfig text_only = *config;
  text_only.vision.present = false;
  text_only.audio.present = false;
  const int64_t text_weight_bytes =
      cu::DeviceWeightBytes(text_only, cu::LlamaQuantizeFormats(text_only, mix));
  bench.Decode(static_cast<double>(text_weight_bytes));
  bench.Prefill(params);
  bench.Capacity();
  if (!smoke) {
    // What the default split (both groups running out together at 8k tokens) would hold in the
    // same KV bytes: each 8k sequence costs its blocks of every group.
    double per_seq = 0;
    for (const KvGroupSpec& g : (*runner)->kv_spec().groups) {
      const int64_t all = (z.capacity_seq_len + g.block_size - 1) / g.block_size;
      const int64_t need =
          g.window > 0 ? std::min<int64_t>(all, (g.window + g.block_size - 1) / g.block_size + 1)
                       : all;
      per_seq += static_cast<double>(need) * g.bytes_per_block;
    }
    t.Add(absl::StrFormat(
        "| concurrent %d-token sequences with the default split (kv_balance_seq_len %d) | %d | "
        "%.2f GB of KV / %.0f MiB per sequence | |",
        z.capacity_seq_len, CudaRunnerOptions().kv_balance_seq_len,
        static_cast<int>((*runner)->kv_bytes() / per_seq), (*runner)->kv_bytes() / 1e9,
        per_seq / 1048576.0));
  }
  if (mix == cu::QuantMix::kBf16) {
    bench.Media(MediaKind::kImage);
    bench.Media(MediaKind::kAudio);
  }
  t.Add("");
  t.Add(absl::StrFormat("Total wall time %.1f s; CUDA graph steps %llu.", Now() - t_start,
                        static_cast<unsigned long long>((*runner)->graph_steps())));

  if (!out_path.empty()) {
    std::ofstream f(out_path);
    for (const std::string& r : t.rows) f << r << "\n";
    if (!f) return absl::InternalError("cannot write " + out_path);
  }
  if (bench.failures > 0) {
    return absl::InternalError(absl::StrCat(bench.failures, " benchmark steps failed"));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tessera::runtime

int main(int argc, char** argv) {
  std::string out;
  bool smoke = false;
  tessera::runtime::cuda::QuantMix mix = tessera::runtime::cuda::QuantMix::kBf16;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--out=", 6) == 0) {
      out = argv[i] + 6;
    } else if (std::strncmp(argv[i], "--weights=", 10) == 0) {
      using tessera::runtime::cuda::QuantMix;
      const std::string w = argv[i] + 10;
      bool known = false;
      for (QuantMix m : {QuantMix::kBf16, QuantMix::kQ8_0, QuantMix::kQ6_K, QuantMix::kQ5_K_M,
                         QuantMix::kQ4_K_M, QuantMix::kQ4_0}) {
        std::string name = tessera::runtime::cuda::QuantMixName(m);
        for (char& c : name) c = static_cast<char>(std::tolower(c));
        if (name == w) {
          mix = m;
          known = true;
        }
      }
      if (!known) {
        std::fprintf(stderr,
                     "model_bench: --weights=%s is not bf16, q8_0, q6_k, q5_k_m, q4_k_m "
                     "or q4_0\n",
                     w.c_str());
        return 2;
      }
    } else if (std::strcmp(argv[i], "--smoke") == 0) {
      smoke = true;
    } else if (std::strncmp(argv[i], "--gtest_", 8) == 0) {
      // Bazel's test runner may pass GoogleTest flags; this is not a GoogleTest binary.
    } else {
      std::fprintf(stderr, "usage: %s [--out=FILE] [--smoke] [--weights=MIX]\n", argv[0]);
      return 2;
    }
  }
  const absl::Status s = tessera::runtime::Run(out, smoke, mix);
  if (!s.ok()) {
    std::fprintf(stderr, "model_bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
