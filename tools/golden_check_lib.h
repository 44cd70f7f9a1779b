// The pieces of //tools:golden_check for llama.cpp's logits files (testdata/gguf/README.md):
// reading and writing that format, running the same ids through a runner, comparing rows, and the
// tolerance each weight type allows.
//
// Format (safetensors): prompt_ids I32 [n], prefill_logits F32 [n, vocab] (row i predicts position
// i + 1), greedy_ids I32 [g], decode_logits F32 [g, vocab] (row 0 = prefill row n - 1; row s >= 1
// after feeding greedy_ids[s - 1] at position n - 1 + s).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model_loader.h"
#include "runtime/model_runner.h"

namespace tessera::tools {

struct LogitsFile {
  int64_t vocab = 0;
  std::vector<int32_t> prompt_ids;
  std::vector<float> prefill_logits;  // [prompt_ids.size(), vocab]
  std::vector<int32_t> greedy_ids;
  std::vector<float> decode_logits;  // [greedy_ids.size(), vocab]
};

// True when `path` is a safetensors file with a `prompt_ids` tensor (llama.cpp's format rather
// than the transformers golden layout).
bool IsLogitsFile(const std::string& path);
absl::StatusOr<LogitsFile> ReadLogitsFile(const std::string& path);
// Writes the four tensors (and `metadata` as __metadata__).
absl::Status WriteLogitsFile(const std::string& path, const LogitsFile& logits,
                             const std::map<std::string, std::string>& metadata);

// Prefills `prompt_ids` (chunks of `chunk` rows) and then feeds `feed_ids` one at a time, as
// llama.cpp's dump did: the result has the same layout (decode row 0 is the last prefill row, row s
// the logits after feeding feed_ids[s - 1]; greedy_ids = feed_ids).
absl::StatusOr<LogitsFile> RunLogits(runtime::ModelRunner* runner,
                                     const std::vector<int32_t>& prompt_ids,
                                     const std::vector<int32_t>& feed_ids, int32_t chunk);

struct RowStats {
  float max = 0.0f;     // Worst row of max |ours - ref| / max |ref|.
  float median = 0.0f;  // Median of the same over rows.
  int32_t argmax_agree = 0;
  int32_t rows = 0;
};
// Per-row relative deviation of `ours` from `ref` ([rows, vocab] each).
RowStats CompareRows(const std::vector<float>& ours, const std::vector<float>& ref, int64_t vocab);

// The weight types of the model's matrices (GGUF: the ggml type names of the text model's 2-D
// tensors, "Q4_K"; safetensors: "BF16" / "F32").
std::set<std::string> MatrixTypes(const runtime::LoadedModel& model);

// The worst row deviation from llama.cpp's logits on the same file that the weight types allow
// (the reasons are in golden_check_lib.cc); the largest over `types`. 0 for a type with none.
double ToleranceForTypes(const std::set<std::string>& types);

}  // namespace tessera::tools
