// Device code of the RMSNorm family (norm.h). One CTA of 256 threads per row; the row is read from
// global memory twice (sum of squares, then scale), the second time from L1/L2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/norm.h"

namespace tessera::runtime::cuda {
namespace norm_internal {

constexpr int kThreads = 256;

__device__ __forceinline__ float Rb(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

__global__ void __launch_bounds__(kThreads) RmsNormKernel(const RmsNormParams p) {
  __shared__ float scratch[32];
  const __nv_bfloat16* x = AsDevice(p.in) + blockIdx.x * p.in_row_stride;
  const __nv_bfloat16* w = AsDevice(p.weight);
  __nv_bfloat16* o = AsDevice(p.out) + blockIdx.x * p.out_row_stride;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < p.dim; i += kThreads) {
    const float v = __bfloat162float(x[i]);
    ss += v * v;
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / p.dim + p.eps);
  __syncthreads();  // In place: every thread has read x before anyone writes o.
  for (int i = threadIdx.x; i < p.dim; i += kThreads) {
    o[i] = __float2bfloat16_rn(__bfloat162float(x[i]) * inv * __bfloat162float(w[i]));
  }
}

__global__ void __launch_bounds__(kThreads) ResidualRmsNormKernel(const ResidualRmsNormParams p) {
  __shared__ float scratch[32];
  const __nv_bfloat16* y = AsDevice(p.y) + blockIdx.x * p.y_row_stride;
  const __nv_bfloat16* wy = AsDevice(p.y_weight);
  __nv_bfloat16* h = AsDevice(p.residual) + blockIdx.x * p.residual_row_stride;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < p.dim; i += kThreads) {
    const float v = __bfloat162float(y[i]);
    ss += v * v;
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / p.dim + p.eps);
  const float scalar =
      p.layer_scalar != nullptr ? __bfloat162float(*AsDevice(p.layer_scalar)) : 1.0f;
  float hs = 0.0f;
  for (int i = threadIdx.x; i < p.dim; i += kThreads) {
    const float normed = Rb(__bfloat162float(y[i]) * inv * __bfloat162float(wy[i]));
    float nh = Rb(__bfloat162float(h[i]) + normed);
    if (p.layer_scalar != nullptr) nh = Rb(nh * scalar);
    h[i] = __float2bfloat16_rn(nh);
    hs += nh * nh;
  }
  if (p.out == nullptr) return;
  const float inv_h = rsqrtf(BlockSum(hs, scratch) / p.dim + p.eps);
  const __nv_bfloat16* wo = AsDevice(p.out_weight);
  __nv_bfloat16* o = AsDevice(p.out) + blockIdx.x * p.out_row_stride;
  // Each thread reads back only the h elements it wrote itself, so no barrier is needed.
  for (int i = threadIdx.x; i < p.dim; i += kThreads) {
    o[i] = __float2bfloat16_rn(__bfloat162float(h[i]) * inv_h * __bfloat162float(wo[i]));
  }
}

}  // namespace norm_internal
}  // namespace tessera::runtime::cuda
