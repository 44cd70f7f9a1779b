// Device code of the element-wise kernels (pointwise.h). Grid-stride loops over (row, column).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/pointwise.h"

namespace tessera::runtime::cuda {
namespace pointwise_internal {

constexpr int kThreads = 256;

// One CTA per row.
__global__ void __launch_bounds__(kThreads) EmbedKernel(const EmbedParams p) {
  const int r = blockIdx.x;
  const int id = p.ids[r];
  if (id < 0) return;
  __nv_bfloat16* o = AsDevice(p.out) + r * p.out_row_stride;
  if (id >= p.vocab) {
    for (int i = threadIdx.x; i < p.hidden; i += kThreads) o[i] = __float2bfloat16_rn(0.0f);
    return;
  }
  const __nv_bfloat16* e = AsDevice(p.table) + static_cast<int64_t>(id) * p.hidden;
  for (int i = threadIdx.x; i < p.hidden; i += kThreads) {
    o[i] = __float2bfloat16_rn(__bfloat162float(e[i]) * p.scale);
  }
}

__device__ __forceinline__ float GeluTanh(float x) {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as gelu(approximate="tanh").
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

__global__ void __launch_bounds__(kThreads) GegluKernel(const GegluParams p) {
  const __nv_bfloat16* in = AsDevice(p.in) + blockIdx.y * p.in_row_stride;
  __nv_bfloat16* o = AsDevice(p.out) + blockIdx.y * p.out_row_stride;
  for (int i = blockIdx.x * kThreads + threadIdx.x; i < p.dim; i += gridDim.x * kThreads) {
    const float g = __bfloat162float(__float2bfloat16_rn(GeluTanh(__bfloat162float(in[i]))));
    o[i] = __float2bfloat16_rn(g * __bfloat162float(in[p.up_offset + i]));
  }
}

__global__ void __launch_bounds__(kThreads) SoftcapKernel(const SoftcapParams p) {
  float* x = p.logits + blockIdx.y * p.row_stride;
  const float inv = 1.0f / p.cap;
  for (int i = blockIdx.x * kThreads + threadIdx.x; i < p.cols; i += gridDim.x * kThreads) {
    x[i] = p.cap * tanhf(x[i] * inv);
  }
}

}  // namespace pointwise_internal
}  // namespace tessera::runtime::cuda
