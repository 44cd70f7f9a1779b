// Device code of the fused QK-norm + RoPE + V-norm + paged KV write (rope_kv.h).
// One CTA per row, one warp per head (q heads, then K heads, then V heads); lane L owns the RoPE
// pairs (i, i + head_dim/2) for i = L, L + 32, ..., so a pair never crosses lanes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/rope_kv.h"

namespace tessera::runtime::cuda {
namespace rope_kv_internal {

constexpr int kWarps = 4;

__device__ __forceinline__ float RoundBf16Device(float x) {
  return __bfloat162float(__float2bfloat16_rn(x));
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32) RopeKvKernel(const RopeKvParams p) {
  constexpr int kHalf = D / 2;
  constexpr int kPairs = kHalf >= 32 ? kHalf / 32 : 1;  // Pairs per lane.
  const int row = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int hkv = p.kv.num_kv_heads;
  const int total = p.num_q_heads + 2 * hkv;
  const float pos = static_cast<float>(p.positions[row]);
  const int64_t slot_id = p.slot_mapping[row];
  const __nv_bfloat16* in_row = AsDevice(p.qkv) + row * p.qkv_row_stride;

  for (int h = warp; h < total; h += kWarps) {
    const bool is_q = h < p.num_q_heads;
    const bool is_v = h >= p.num_q_heads + hkv;
    const int head = is_q ? h : (is_v ? h - p.num_q_heads - hkv : h - p.num_q_heads);
    if (!is_q && slot_id < 0) continue;
    const __nv_bfloat16* x =
        in_row + (is_q ? p.q_offset : (is_v ? p.v_offset : p.k_offset)) + head * D;
    float a[kPairs], b[kPairs];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int i = lane + 32 * j;
      a[j] = i < kHalf ? __bfloat162float(x[i]) : 0.0f;
      b[j] = i < kHalf ? __bfloat162float(x[i + kHalf]) : 0.0f;
      ss += a[j] * a[j] + b[j] * b[j];
    }
    const float inv = rsqrtf(WarpSum(ss) / D + p.eps);
    __nv_bfloat16* dst;
    if (is_q) {
      dst = AsDevice(p.q_out) + row * p.q_out_row_stride + head * D;
    } else {
      const int block = static_cast<int>(slot_id / p.kv.block_size);
      const int slot = static_cast<int>(slot_id % p.kv.block_size);
      dst = AsDevice(p.kv.pool) + p.kv.Offset(block, is_v ? 1 : 0, head, slot);
    }
    // Every lane has read its inputs before any lane writes (q_out may alias qkv).
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int i = lane + 32 * j;
      if (i >= kHalf) continue;
      if (is_v) {
        dst[i] = __float2bfloat16_rn(a[j] * inv);
        dst[i + kHalf] = __float2bfloat16_rn(b[j] * inv);
        continue;
      }
      const __nv_bfloat16* w = AsDevice(is_q ? p.q_norm_weight : p.k_norm_weight);
      const float ya = RoundBf16Device(a[j] * inv * __bfloat162float(w[i]));
      const float yb = RoundBf16Device(b[j] * inv * __bfloat162float(w[i + kHalf]));
      float s, c;
      sincosf(pos * p.inv_freq[i], &s, &c);
      c = RoundBf16Device(c);
      s = RoundBf16Device(s);
      dst[i] = __float2bfloat16_rn(ya * c - yb * s);
      dst[i + kHalf] = __float2bfloat16_rn(yb * c + ya * s);
    }
  }
}

}  // namespace rope_kv_internal
}  // namespace tessera::runtime::cuda
