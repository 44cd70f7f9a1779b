#include "tools/golden_check_lib.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/model/gguf.h"
#include "runtime/model/safetensors.h"
#include "runtime/testing/golden.h"

namespace tessera::tools {
namespace {

using runtime::SafetensorsFile;
using runtime::TensorView;

absl::StatusOr<std::vector<int32_t>> Ids(const SafetensorsFile& f, const std::string& name) {
  const TensorView* t = f.Find(name);
  if (t == nullptr) return absl::InvalidArgumentError(f.path() + " has no tensor " + name);
  if (t->shape.size() != 1) {
    return absl::InvalidArgumentError(f.path() + ": " + name + " has shape " + t->ShapeString() +
                                      "; expected [n]");
  }
  auto v = runtime::ToInt64Vector(*t);
  if (!v.ok()) return v.status();
  return std::vector<int32_t>(v->begin(), v->end());
}

absl::StatusOr<std::vector<float>> Rows(const SafetensorsFile& f, const std::string& name,
                                        size_t rows, int64_t* vocab) {
  const TensorView* t = f.Find(name);
  if (t == nullptr) return absl::InvalidArgumentError(f.path() + " has no tensor " + name);
  if (t->shape.size() != 2 || t->shape[0] != static_cast<int64_t>(rows) ||
      (*vocab != 0 && t->shape[1] != *vocab)) {
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": ", name, " has shape ", t->ShapeString(), "; expected [", rows, ", vocab]"));
  }
  *vocab = t->shape[1];
  return runtime::ToFloatVector(*t);
}

}  // namespace

bool IsLogitsFile(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  return f.ok() && (*f)->Find("prompt_ids") != nullptr;
}

absl::StatusOr<LogitsFile> ReadLogitsFile(const std::string& path) {
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  const SafetensorsFile& f = **file;
  LogitsFile l;
  auto prompt = Ids(f, "prompt_ids");
  if (!prompt.ok()) return prompt.status();
  l.prompt_ids = std::move(*prompt);
  if (l.prompt_ids.empty()) return absl::InvalidArgumentError(path + ": prompt_ids is empty");
  auto greedy = Ids(f, "greedy_ids");
  if (!greedy.ok()) return greedy.status();
  l.greedy_ids = std::move(*greedy);
  auto prefill = Rows(f, "prefill_logits", l.prompt_ids.size(), &l.vocab);
  if (!prefill.ok()) return prefill.status();
  l.prefill_logits = std::move(*prefill);
  auto decode = Rows(f, "decode_logits", l.greedy_ids.size(), &l.vocab);
  if (!decode.ok()) return decode.status();
  l.decode_logits = std::move(*decode);
  for (int32_t id : l.prompt_ids) {
    if (id < 0 || id >= l.vocab)
      return absl::InvalidArgumentError(path + ": a prompt id is out of range");
  }
  for (int32_t id : l.greedy_ids) {
    if (id < 0 || id >= l.vocab)
      return absl::InvalidArgumentError(path + ": a greedy id is out of range");
  }
  return l;
}

absl::Status WriteLogitsFile(const std::string& path, const LogitsFile& l,
                             const std::map<std::string, std::string>& metadata) {
  struct Entry {
    const char* name;
    const char* dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t bytes;
  };
  const int64_t n = static_cast<int64_t>(l.prompt_ids.size());
  const int64_t g = static_cast<int64_t>(l.greedy_ids.size());
  const std::vector<Entry> entries = {
      {"decode_logits", "F32", {g, l.vocab}, l.decode_logits.data(), l.decode_logits.size() * 4},
      {"greedy_ids", "I32", {g}, l.greedy_ids.data(), l.greedy_ids.size() * 4},
      {"prefill_logits", "F32", {n, l.vocab}, l.prefill_logits.data(), l.prefill_logits.size() * 4},
      {"prompt_ids", "I32", {n}, l.prompt_ids.data(), l.prompt_ids.size() * 4},
  };
  nlohmann::ordered_json header;
  header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    header[e.name] = {
        {"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes}}};
    offset += e.bytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::PermissionDeniedError("cannot write " + path);
  const uint64_t len = h.size();
  bool ok = std::fwrite(&len, 8, 1, f) == 1 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (const Entry& e : entries) {
    ok = ok && (e.bytes == 0 || std::fwrite(e.data, 1, e.bytes, f) == e.bytes);
  }
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return absl::InternalError("writing " + path + " failed");
  return absl::OkStatus();
}

absl::StatusOr<LogitsFile> RunLogits(runtime::ModelRunner* runner,
                                     const std::vector<int32_t>& prompt_ids,
                                     const std::vector<int32_t>& feed_ids, int32_t chunk) {
  LogitsFile out;
  out.vocab = runner->vocab_size();
  out.prompt_ids = prompt_ids;
  out.greedy_ids = feed_ids;
  runtime::cpu::LinearBlockAllocator alloc(runner->kv_spec());
  std::vector<std::vector<int32_t>> tables;
  runtime::Prompt prompt;
  prompt.token_ids = prompt_ids;
  auto logits = runtime::cpu::PrefillAll(runner, &alloc, prompt, chunk, &tables);
  if (!logits.ok()) return logits.status();
  out.prefill_logits = std::move(*logits);
  const int64_t V = out.vocab;
  const int32_t n = static_cast<int32_t>(prompt_ids.size());
  std::vector<float> step(out.prefill_logits.end() - V, out.prefill_logits.end());
  for (size_t s = 0; s < feed_ids.size(); ++s) {
    out.decode_logits.insert(out.decode_logits.end(), step.begin(), step.end());
    if (s + 1 == feed_ids.size()) break;
    const int32_t pos = n + static_cast<int32_t>(s);
    absl::Status st = alloc.Grow(pos + 1, &tables);
    if (!st.ok()) return st;
    runtime::BatchPlan plan;
    plan.seqs.emplace_back();
    runtime::SequencePlan& sp = plan.seqs.back();
    sp.start_pos = pos;
    sp.token_ids = {feed_ids[s]};
    sp.block_tables = tables;
    sp.logits_rows = {0};
    runtime::StepOutput result;
    st = runner->Execute(plan, &result);
    if (!st.ok()) return st;
    step = result.seqs[0].logits;
  }
  return out;
}

RowStats CompareRows(const std::vector<float>& ours, const std::vector<float>& ref, int64_t V) {
  RowStats s;
  if (V <= 0) return s;
  s.rows = static_cast<int32_t>(ref.size() / V);
  std::vector<float> dev;
  for (int32_t r = 0; r < s.rows; ++r) {
    const float* a = &ours[r * V];
    const float* b = &ref[r * V];
    dev.push_back(runtime::cpu::MaxRowRelativeError(a, b, 1, V));
    s.argmax_agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
  }
  if (dev.empty()) return s;
  s.max = *std::max_element(dev.begin(), dev.end());
  std::sort(dev.begin(), dev.end());
  s.median = dev[dev.size() / 2];
  return s;
}

std::set<std::string> MatrixTypes(const runtime::LoadedModel& model) {
  std::set<std::string> types;
  if (model.weights == nullptr) return types;
  if (model.weights->gguf != nullptr) {
    for (const runtime::GgufTensor& t : model.weights->gguf->tensors()) {
      if (t.ne.size() >= 2) types.insert(runtime::GgmlTypeName(t.type));
    }
    return types;
  }
  const auto add = [&](const runtime::WeightMatrix& m) {
    if (!m.empty()) types.insert(m.type == runtime::WeightMatrix::Type::kBF16 ? "BF16" : "F32");
  };
  add(model.weights->embed_tokens);
  for (const runtime::LayerWeights& l : model.weights->layers) {
    for (const auto* m :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      add(*m);
    }
  }
  return types;
}

// Tolerances: the worst row of max |Tessera - llama.cpp| / max |llama.cpp| on the same file.
//
// The two computations differ in rounding only, never in the weights: both read the file's values
// exactly (F32/BF16/F16 as stored, the quantized blocks dequantized bit-exactly). What rounds
// differently, measured on testdata/gguf (1 thread; docs/gguf.md has the table):
// - F32 (measured 3.1e-4 worst, 1.8e-4 median): ggml's GELU goes through an fp16 table (input and
//   output rounded to fp16, 2^-11 relative), Tessera computes tanh-GELU in fp32; with ggml's table
//   emulated the gap falls to 6.6e-5. 2e-3 is six times the measurement and far below what any
//   real error gives (a wrong rotated-pair count, a missing layer scale or a transposed matrix each
//   move rows by more than 1e-1).
// - F16 / BF16 (4.6e-3 quant-s, 8.8e-3 tiny): ggml's CPU matmul rounds the activations to the
//   weight type before the dot product (bf16: 2^-9 per element); Tessera keeps them fp32 and
//   matches llama.cpp's f32 file on the same weights to 2.4e-4. 2.5e-2 is about three times the
//   worst measurement.
// - Quantized types: both quantize the activations to ggml's Q8_0 (Q4_0/Q4_1/Q5_x/Q8_0) or Q8_K
//   (k-quants) blocks and accumulate in integers (runtime/cpu's kernels reproduce ggml's vec_dot),
//   but an activation that differs by the GELU rounding above can round to the next int8 step
//   (1/127 of its block's largest value), which moves rows by 1e-2: measured worst 2.1e-2 (Q8_0),
//   2.9e-2 (Q6_K), 2.3e-2 (Q5_K_M), 3.5e-2 (Q4_K_M), 2.5e-2 (Q4_0). 5e-2 for the 8- and 6-bit
//   types, 8e-2 for the 5- and 4-bit ones (whose larger weight error amplifies a flipped activation
//   more through the layers). Both stay well below the quantization error itself (Q4_K_M 1.8e-1,
//   Q4_0 2.1e-1 from the f32 file), so a wrong dequantization still fails (golden_check_test).
double ToleranceForTypes(const std::set<std::string>& types) {
  static const std::map<std::string, double> kTolerance = {
      {"F32", 2e-3},  {"F16", 2.5e-2}, {"BF16", 2.5e-2}, {"Q8_0", 5e-2},
      {"Q6_K", 5e-2}, {"Q5_K", 8e-2},  {"Q4_K", 8e-2},   {"Q5_0", 8e-2},
      {"Q5_1", 8e-2}, {"Q4_0", 8e-2},  {"Q4_1", 8e-2},
  };
  double tol = 0.0;
  for (const std::string& t : types) {
    auto it = kTolerance.find(t);
    if (it == kTolerance.end()) return 0.0;
    tol = std::max(tol, it->second);
  }
  return tol;
}

}  // namespace tessera::tools
