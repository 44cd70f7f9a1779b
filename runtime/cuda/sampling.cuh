// Device code of GPU sampling (sampling.h): one CTA per row, each thread scans a strided slice
// keeping (max, lowest id), then a shared-memory tree picks the CTA's winner.
#pragma once

#include <cuda_runtime.h>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/sampling.h"

namespace tessera::runtime::cuda {
namespace sampling_internal {

constexpr int kThreads = 256;

// True when (v, i) beats (best, best_i): larger value, or equal value and lower id. NaN never wins.
__device__ __forceinline__ bool Beats(float v, int i, float best, int best_i) {
  if (v != v) return false;
  if (best_i < 0) return true;
  return v > best || (v == best && i < best_i);
}

__global__ void __launch_bounds__(kThreads) ArgmaxKernel(const ArgmaxParams p) {
  __shared__ float vals[kThreads];
  __shared__ int ids[kThreads];
  const float* x = p.logits + blockIdx.x * p.row_stride;
  float best = 0.0f;
  int best_i = -1;
  for (int i = threadIdx.x; i < p.vocab; i += kThreads) {
    const float v = x[i];
    if (Beats(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
  vals[threadIdx.x] = best;
  ids[threadIdx.x] = best_i;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step) {
      const float v = vals[threadIdx.x + step];
      const int i = ids[threadIdx.x + step];
      if (i >= 0 && Beats(v, i, vals[threadIdx.x], ids[threadIdx.x])) {
        vals[threadIdx.x] = v;
        ids[threadIdx.x] = i;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    p.out_token[blockIdx.x] = ids[0];
    if (p.out_value != nullptr) p.out_value[blockIdx.x] = ids[0] >= 0 ? vals[0] : 0.0f;
  }
}

}  // namespace sampling_internal
}  // namespace tessera::runtime::cuda
