// Running whole prompts through a ModelRunner and comparing with a golden file laid out like
// testdata/gemma4-tiny/golden.safetensors. Used by //tools:golden_check, the runner's
// tests and the benchmark; not by the server (the scheduler owns real block allocation).
//
// Golden layout: for each prefix P with a `P_input_ids [1, n]` tensor, optional
//   P_logits [n, vocab]            logits at every prompt position,
//   P_greedy_ids [g]               the greedy continuation,
//   P_decode_logits [g, vocab]     logits of the step that produced each greedy token,
//   P_pixel_patches [p, 6912], P_image_position_ids [p, 2]   patches of the image/video runs in
//   order, P_audio_frames [f, 640]        frames of the audio runs in order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/model_runner.h"
#include "runtime/prompt/prompt.h"

namespace tessera::runtime::cpu {

// Hands out fresh blocks in order, never reusing one: enough for tools and tests.
class LinearBlockAllocator {
 public:
  explicit LinearBlockAllocator(const KvCacheSpec& spec) : spec_(spec), next_(spec.groups.size()) {}
  // Extends `tables` (one per group) to cover positions [0, num_positions).
  absl::Status Grow(int32_t num_positions, std::vector<std::vector<int32_t>>* tables);

 private:
  KvCacheSpec spec_;
  std::vector<int32_t> next_;
};

// Replaces by kReleasedBlock every sliding-group block wholly outside the window of any query at
// a position >= next_pos (what a scheduler may free). Returns how many entries it released.
int ReleaseOutsideWindow(const KvCacheSpec& spec, int32_t next_pos,
                         std::vector<std::vector<int32_t>>* tables);

// Fills token_ids, media and bidirectional of `plan` with rows [begin, end) of `prompt`.
// Media runs must not be split by [begin, end) when bidirectional.
void FillRows(const Prompt& prompt, int32_t begin, int32_t end, SequencePlan* plan);

// Chunk ends for prefilling `prompt` in chunks of about `chunk` rows, moved past any bidirectional
// media run a boundary would split (an image is never split).
std::vector<int32_t> ChunkEnds(const Prompt& prompt, int32_t chunk);

// Prefills `prompt` in chunks through `runner` (a single sequence) and returns the logits of every
// position, [n, vocab]. `tables` carries the sequence's block tables in and out.
absl::StatusOr<std::vector<float>> PrefillAll(ModelRunner* runner, LinearBlockAllocator* alloc,
                                              const Prompt& prompt, int32_t chunk,
                                              std::vector<std::vector<int32_t>>* tables,
                                              bool release_outside_window = false);

struct GoldenPrompt {
  std::string name;
  Prompt prompt;
  std::vector<float> logits;         // [n, vocab] or empty.
  std::vector<int32_t> greedy_ids;   // May be empty.
  std::vector<float> decode_logits;  // [greedy, vocab] or empty.
};

absl::StatusOr<std::vector<GoldenPrompt>> ReadGolden(const std::string& path,
                                                     const ModelConfig& config);

// max |a - b| / max |b| over each row, maximised over rows: the error relative to the row's
// largest reference logit (logits near zero make element-wise relative error meaningless).
float MaxRowRelativeError(const float* a, const float* b, int64_t rows, int64_t cols);

struct GoldenResult {
  std::string name;
  int32_t prompt_tokens = 0;
  float prefill_error = 0.0f;  // MaxRowRelativeError of the prompt logits (0 if none).
  float decode_error = 0.0f;   // Same over the decode-step logits.
  int32_t greedy_total = 0;
  int32_t greedy_matched = 0;  // Leading greedy ids equal to the golden ones.
  std::vector<int32_t> greedy_ids;
};

// Prefills the prompt in chunks of `chunk`, then decodes greedily (feeding the golden token, so
// one early divergence does not hide later steps) for as many steps as the golden has.
absl::StatusOr<GoldenResult> CheckGoldenPrompt(ModelRunner* runner, const GoldenPrompt& golden,
                                               int32_t chunk);

}  // namespace tessera::runtime::cpu
