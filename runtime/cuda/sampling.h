// Sampling on the GPU. So far only greedy: the argmax of each logits row, lowest id on ties, NaN
// never chosen (the same rule as runtime/sampler.cc's ArgMax). Temperature / top-k / top-p / min-p
// and penalties are still done by the CPU sampler on downloaded logits.
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

}  // namespace tessera::runtime::cuda
