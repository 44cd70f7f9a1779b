// Element-wise pieces of the Gemma 4 forward pass (MODEL.md):
//   EmbedTokens: h[r] = embed[ids[r]] * scale   (scale = sqrt(hidden) rounded to bf16: 62.0 for
//   12B) GeGlu:       out = gelu_tanh(gate) * up     (gate and up from one fused projection)
//   Softcap:     logits = cap * tanh(logits / cap), fp32 in place (final_logit_softcapping = 30)
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

struct EmbedParams {
  // [rows]: token ids. A negative id (a media row, filled by the media path) leaves its output row
  // untouched; an id >= vocab writes zeros (the host validates ids; this only keeps memory safe).
  const int32_t* ids = nullptr;
  const Bf16* table = nullptr;  // [vocab, hidden], row-major.
  int32_t vocab = 0;
  int32_t hidden = 0;
  Bf16* out = nullptr;  // [rows, hidden] with out_row_stride.
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  float scale = 1.0f;  // Already rounded to bf16 by the caller; the product is rounded once.
};

struct GegluParams {
  // gate at in[r * in_row_stride + i], up at in[r * in_row_stride + up_offset + i], i < dim.
  const Bf16* in = nullptr;
  int64_t in_row_stride = 0;
  int64_t up_offset = 0;
  Bf16* out = nullptr;  // [rows, dim] with out_row_stride.
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  int32_t dim = 0;
};

struct SoftcapParams {
  float* logits = nullptr;  // [rows, cols] with row_stride, in place.
  int64_t row_stride = 0;
  int32_t rows = 0;
  int32_t cols = 0;
  float cap = 30.0f;  // > 0.
};

absl::Status LaunchEmbedTokens(const EmbedParams& p, cudaStream_t stream);
// Rounding as the reference: gelu_tanh(gate) is rounded to bf16, then the product once more.
absl::Status LaunchGeglu(const GegluParams& p, cudaStream_t stream);
absl::Status LaunchSoftcap(const SoftcapParams& p, cudaStream_t stream);

}  // namespace tessera::runtime::cuda
