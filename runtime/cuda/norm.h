// Fused RMSNorm variants of the Gemma 4 layer (MODEL.md), all computed in fp32 over bf16 rows:
//   RmsNorm:          out = rms(x) * w                       (input norm, pre-FFW norm, final norm)
//   ResidualRmsNorm:  h = h + rms(y) * w_y                   (post-attention / post-FFW norm + add)
//                     h = h * layer_scalar                   (optional: end of layer)
//                     out = rms(h) * w_out                   (optional: the next norm, fused)
// rms(x) = x * (mean(x^2) + eps)^-0.5; the weight multiplies directly (no 1 + w).
// Rounding follows the reference: rms(y) * w_y is rounded to bf16 before the add, the sum is
// rounded, the scaled residual is rounded, and each normed output is rounded once.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

struct RmsNormParams {
  const Bf16* in = nullptr;  // [rows, dim] with in_row_stride.
  int64_t in_row_stride = 0;
  const Bf16* weight = nullptr;  // [dim]
  Bf16* out = nullptr;           // [rows, dim] with out_row_stride; may equal in.
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  int32_t dim = 0;
  float eps = 1e-6f;
};

struct ResidualRmsNormParams {
  const Bf16* y = nullptr;  // Branch output (attention o_proj or FFW down_proj), [rows, dim].
  int64_t y_row_stride = 0;
  const Bf16* y_weight = nullptr;  // [dim]: post_attention_layernorm or post_feedforward_layernorm.
  Bf16* residual = nullptr;        // h, [rows, dim], updated in place.
  int64_t residual_row_stride = 0;
  const Bf16* layer_scalar = nullptr;  // Optional, one bf16 value in device memory.
  const Bf16* out_weight = nullptr;    // Optional with out: the next norm's weight, [dim].
  Bf16* out = nullptr;                 // Optional: rms(h) * out_weight, [rows, dim].
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  int32_t dim = 0;
  float eps = 1e-6f;
};

absl::Status LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream);
absl::Status LaunchResidualRmsNorm(const ResidualRmsNormParams& p, cudaStream_t stream);

}  // namespace tessera::runtime::cuda
