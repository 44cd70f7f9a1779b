// Sampling on the GPU, one logits row per sequence, with the semantics of runtime/sampler.h:
//   - LaunchArgmax: the argmax of each row, lowest id on ties, NaN never chosen (sampler.cc's
//     ArgMax).
//   - LaunchSample: penalties (repetition, then frequency and presence) and bans, then greedy when
//     temperature <= 0 or top_k == 1, else temperature, min-p, top-k, top-p and one draw with the
//     host's uniform (UniformForStep(seed, step)) over the kept tokens in increasing id order, as
//     sampler.cc's Draw does; plus the logprob of the chosen token under the raw row (before
//     penalties and temperature). The same token as the CPU sampler except where the draw falls
//     within rounding of a cumulative-sum boundary (fp64 sums in another order; on a GPU also
//     expf, within 2 ulp of the host's, so each weight may differ in its last bit or two).
//     Row parameters are trusted, as the CPU sampler trusts SamplingParams (validated at the edge).
//     top_logprobs are not computed here: the runner downloads such a row and uses the CPU sampler.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

struct ArgmaxParams {
  const float* logits = nullptr;  // [rows, vocab] with row_stride.
  int64_t row_stride = 0;
  int32_t rows = 0;
  int32_t vocab = 0;
  int32_t* out_token = nullptr;  // [rows]: the argmax, or -1 when no entry is a number.
  float* out_value = nullptr;    // Optional, [rows]: the maximum.
};

absl::Status LaunchArgmax(const ArgmaxParams& p, cudaStream_t stream);

// One distinct token of a row's prompt and output, for the penalties: the repetition penalty
// applies once to every entry; frequency and presence use output_count (0 for a prompt-only
// token). Banned tokens are entries with banned = 1 (they become -inf after the penalties).
// A row's entries must name distinct tokens (one entry per token, with all its flags); tokens
// outside [0, vocab) are ignored, as the CPU sampler ignores them.
struct PenaltyEntry {
  int32_t token = 0;
  int32_t output_count = 0;
  int32_t in_context = 0;  // 1: in the prompt or output (repetition penalty applies).
  int32_t banned = 0;
};

// Per-row parameters (a device array of these, one per row).
struct SampleRowParams {
  float temperature = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t penalty_begin = 0;  // Entries [penalty_begin, penalty_end) of SampleParams::penalties.
  int32_t penalty_end = 0;
  double uniform = 0.0;  // UniformForStep(seed, step), in [0, 1).
};

struct SampleParams {
  // [rows, vocab] with row_stride, fp32 (after the softcap). Not modified.
  const float* logits = nullptr;
  int64_t row_stride = 0;
  int32_t rows = 0;
  int32_t vocab = 0;
  const SampleRowParams* row_params = nullptr;  // [rows], device.
  const PenaltyEntry* penalties = nullptr;      // Device; may be null when no row has entries.
  // Scratch of SampleWorkspaceBytes(rows, vocab) bytes, device, 16-byte aligned.
  void* workspace = nullptr;
  int32_t* out_token = nullptr;  // [rows]
  float* out_logprob = nullptr;  // Optional, [rows]: log softmax of the raw row at the token.
};

size_t SampleWorkspaceBytes(int32_t rows, int32_t vocab);

absl::Status LaunchSample(const SampleParams& p, cudaStream_t stream);

}  // namespace tessera::runtime::cuda
