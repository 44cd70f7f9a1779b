// Device code of the media-path norms (media.h). One CTA per patch / frame row. Each thread keeps
// its slice of the row in registers (kItems vectors of kVec floats: vector g of the row covers
// elements [g * kVec, g * kVec + kVec) and thread t caches vectors t + k * blockDim.x), so the
// passes of a norm, and the three norms of the patch output, read the row from global memory once:
// a row of up to kMaxThreads * kCacheFloats = 7168 values (6912 pixel values of a 48x48x3 patch).
// A longer row still works: its tail past the register cache is recomputed from global memory in
// every pass (L2-resident, rare).
//
// Statistics are fp32 and two-pass, as the CPU reference (runtime/cpu/kernels.cc LayerNorm): the
// mean, then the centred sum of squares. The mean is accumulated relative to the row's first value
// (shifted data), which costs nothing and makes a constant row (a white or black padding patch)
// centre to exactly zero, as the reference's double sum does; a plain fp32 sum would leave a
// residue that (var + eps)^-0.5 = 316 amplifies.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/media.h"

namespace tessera::runtime::cuda {
namespace media_internal {

constexpr int kMaxThreads = 256;
constexpr int kCacheFloats = 28;  // Per thread: 7 float4 or 28 floats, 28 registers.

// kVec consecutive floats / bf16s, loaded and stored as one 16- / 8-byte access when kVec == 4
// (the launcher picks kVec = 4 only when dim, strides and pointers allow it).
template <int kVec>
struct alignas(4 * kVec) FloatVec {
  float v[kVec];
};
template <int kVec>
struct alignas(2 * kVec) Bf16Vec {
  __nv_bfloat16 v[kVec];
};

template <int kVec>
__device__ __forceinline__ void LoadVec(const float* p, float (&out)[kVec]) {
  const FloatVec<kVec> f = *reinterpret_cast<const FloatVec<kVec>*>(p);
#pragma unroll
  for (int j = 0; j < kVec; ++j) out[j] = f.v[j];
}

template <int kVec>
__device__ __forceinline__ void LoadVec(const __nv_bfloat16* p, float (&out)[kVec]) {
  const Bf16Vec<kVec> b = *reinterpret_cast<const Bf16Vec<kVec>*>(p);
#pragma unroll
  for (int j = 0; j < kVec; ++j) out[j] = __bfloat162float(b.v[j]);
}

template <int kVec>
__device__ __forceinline__ void StoreVec(__nv_bfloat16* p, const float (&in)[kVec]) {
  Bf16Vec<kVec> b;
#pragma unroll
  for (int j = 0; j < kVec; ++j) b.v[j] = __float2bfloat16_rn(in[j]);
  *reinterpret_cast<Bf16Vec<kVec>*>(p) = b;
}

// fn(k, i) for each cached vector k of this thread that exists; i is its first element. Unrolled,
// so that c[k] stays in registers.
template <int kVec, int kItems, typename Fn>
__device__ __forceinline__ void ForCached(int vectors, Fn&& fn) {
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int g = k * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
    if (g < vectors) fn(k, g * kVec);
  }
}

// fn(i) for each vector of this thread past the register cache.
template <int kVec, int kItems, typename Fn>
__device__ __forceinline__ void ForTail(int vectors, Fn&& fn) {
  for (int g = kItems * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x); g < vectors;
       g += static_cast<int>(blockDim.x)) {
    fn(g * kVec);
  }
}

// The mean of the row whose values `value(i, v)` yields, given `shift` (any value near the row's
// values; the row's first value). c holds the cached vectors, filled here.
template <int kVec, int kItems, typename ValueFn>
__device__ __forceinline__ float RowMean(int dim, float shift, float (&c)[kItems][kVec],
                                         ValueFn&& value, float* scratch) {
  const int vectors = dim / kVec;
  float s = 0.0f;
  ForCached<kVec, kItems>(vectors, [&](int k, int i) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) s += c[k][j] - shift;
  });
  ForTail<kVec, kItems>(vectors, [&](int i) {
    float v[kVec];
    value(i, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) s += v[j] - shift;
  });
  return shift + BlockSum(s, scratch) / static_cast<float>(dim);
}

// (sum((x - centre)^2) / dim + eps)^-0.5 over the row: with centre = mean the LayerNorm scale, with
// centre = 0 the rms scale.
template <int kVec, int kItems, typename ValueFn>
__device__ __forceinline__ float RowInvScale(int dim, float centre, float eps,
                                             const float (&c)[kItems][kVec], ValueFn&& value,
                                             float* scratch) {
  const int vectors = dim / kVec;
  float ss = 0.0f;
  ForCached<kVec, kItems>(vectors, [&](int k, int i) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float d = c[k][j] - centre;
      ss += d * d;
    }
  });
  ForTail<kVec, kItems>(vectors, [&](int i) {
    float v[kVec];
    value(i, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float d = v[j] - centre;
      ss += d * d;
    }
  });
  return 1.0f / sqrtf(BlockSum(ss, scratch) / static_cast<float>(dim) + eps);
}

// Loads the cached vectors of the row: c[k] = value(i).
template <int kVec, int kItems, typename ValueFn>
__device__ __forceinline__ void FillCache(int vectors, float (&c)[kItems][kVec], ValueFn&& value) {
  ForCached<kVec, kItems>(vectors, [&](int k, int i) { value(i, c[k]); });
}

// LayerNorm of one vector: v = (v - mean) * inv * w + b.
template <int kVec>
__device__ __forceinline__ void LayerNormVec(float (&v)[kVec], int i, float mean, float inv,
                                             const float* w, const float* b) {
  float wv[kVec], bv[kVec];
  LoadVec<kVec>(w + i, wv);
  LoadVec<kVec>(b + i, bv);
#pragma unroll
  for (int j = 0; j < kVec; ++j) v[j] = (v[j] - mean) * inv * wv[j] + bv[j];
}

// out = LayerNorm(patch) (weight, bias), fp32 in, bf16 out.
template <int kVec, int kItems>
__global__ void __launch_bounds__(kMaxThreads) PatchInputNormKernel(const PatchInputNormParams p) {
  __shared__ float scratch[32];
  const float* x = p.patches + blockIdx.x * p.in_row_stride;
  const int vectors = p.dim / kVec;
  const auto input = [&](int i, float(&v)[kVec]) { LoadVec<kVec>(x + i, v); };
  float c[kItems][kVec];
  FillCache<kVec, kItems>(vectors, c, input);
  const float mean = RowMean<kVec, kItems>(p.dim, x[0], c, input, scratch);
  const float inv = RowInvScale<kVec, kItems>(p.dim, mean, p.eps, c, input, scratch);
  __nv_bfloat16* o = AsDevice(p.out) + blockIdx.x * p.out_row_stride;
  ForCached<kVec, kItems>(vectors, [&](int k, int i) {
    LayerNormVec<kVec>(c[k], i, mean, inv, p.weight, p.bias);
    StoreVec<kVec>(o + i, c[k]);
  });
  ForTail<kVec, kItems>(vectors, [&](int i) {
    float v[kVec];
    input(i, v);
    LayerNormVec<kVec>(v, i, mean, inv, p.weight, p.bias);
    StoreVec<kVec>(o + i, v);
  });
}

// out = rms(LayerNormPos(LayerNorm2(dense + dense_bias) + pos[x, 0] + pos[y, 1])), the stages as
// in runtime/cpu/media_embedder.cc. Each stage's values replace the previous ones in c; the tail
// recomputes them through the chain of stage functions.
template <int kVec, int kItems>
__global__ void __launch_bounds__(kMaxThreads)
    PatchOutputNormKernel(const PatchOutputNormParams p) {
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const int vectors = p.dim / kVec;
  const __nv_bfloat16* d = AsDevice(p.dense) + row * p.dense_row_stride;
  // Clamped only to keep memory safe; the host rejects positions outside the table.
  const int32_t px = min(max(p.positions[2 * row], 0), p.pos_size - 1);
  const int32_t py = min(max(p.positions[2 * row + 1], 0), p.pos_size - 1);
  const float* pos_x = p.pos_table + (static_cast<int64_t>(px) * 2 + 0) * p.dim;
  const float* pos_y = p.pos_table + (static_cast<int64_t>(py) * 2 + 1) * p.dim;

  float c[kItems][kVec];
  // Stage 0: dense + bias.
  const auto stage0 = [&](int i, float(&v)[kVec]) {
    float bv[kVec];
    LoadVec<kVec>(d + i, v);
    LoadVec<kVec>(p.dense_bias + i, bv);
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] += bv[j];
  };
  FillCache<kVec, kItems>(vectors, c, stage0);
  float first[kVec];
  stage0(0, first);
  const float mean0 = RowMean<kVec, kItems>(p.dim, first[0], c, stage0, scratch);
  const float inv0 = RowInvScale<kVec, kItems>(p.dim, mean0, p.layer_norm_eps, c, stage0, scratch);

  // Stage 1: LayerNorm2, plus the two position rows (added as px + py, as the reference does).
  const auto to_stage1 = [&](int i, float(&v)[kVec]) {
    float xv[kVec], yv[kVec];
    LayerNormVec<kVec>(v, i, mean0, inv0, p.ln2_weight, p.ln2_bias);
    LoadVec<kVec>(pos_x + i, xv);
    LoadVec<kVec>(pos_y + i, yv);
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] += xv[j] + yv[j];
  };
  const auto stage1 = [&](int i, float(&v)[kVec]) {
    stage0(i, v);
    to_stage1(i, v);
  };
  ForCached<kVec, kItems>(vectors, [&](int k, int i) { to_stage1(i, c[k]); });
  stage1(0, first);
  const float mean1 = RowMean<kVec, kItems>(p.dim, first[0], c, stage1, scratch);
  const float inv1 = RowInvScale<kVec, kItems>(p.dim, mean1, p.layer_norm_eps, c, stage1, scratch);

  // Stage 2: the position LayerNorm; then rms without weight.
  const auto stage2 = [&](int i, float(&v)[kVec]) {
    stage1(i, v);
    LayerNormVec<kVec>(v, i, mean1, inv1, p.pos_norm_weight, p.pos_norm_bias);
  };
  ForCached<kVec, kItems>(vectors, [&](int k, int i) {
    LayerNormVec<kVec>(c[k], i, mean1, inv1, p.pos_norm_weight, p.pos_norm_bias);
  });
  const float inv2 = RowInvScale<kVec, kItems>(p.dim, 0.0f, p.rms_eps, c, stage2, scratch);

  __nv_bfloat16* o = AsDevice(p.out) + row * p.out_row_stride;
  ForCached<kVec, kItems>(vectors, [&](int k, int i) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) c[k][j] *= inv2;
    StoreVec<kVec>(o + i, c[k]);
  });
  ForTail<kVec, kItems>(vectors, [&](int i) {
    float v[kVec];
    stage2(i, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] *= inv2;
    StoreVec<kVec>(o + i, v);
  });
}

// out = rms(frame) without weight, fp32 in, bf16 out.
template <int kVec, int kItems>
__global__ void __launch_bounds__(kMaxThreads) AudioFrameNormKernel(const AudioFrameNormParams p) {
  __shared__ float scratch[32];
  const float* x = p.frames + blockIdx.x * p.in_row_stride;
  const int vectors = p.dim / kVec;
  const auto input = [&](int i, float(&v)[kVec]) { LoadVec<kVec>(x + i, v); };
  float c[kItems][kVec];
  FillCache<kVec, kItems>(vectors, c, input);
  const float inv = RowInvScale<kVec, kItems>(p.dim, 0.0f, p.eps, c, input, scratch);
  __nv_bfloat16* o = AsDevice(p.out) + blockIdx.x * p.out_row_stride;
  ForCached<kVec, kItems>(vectors, [&](int k, int i) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) c[k][j] *= inv;
    StoreVec<kVec>(o + i, c[k]);
  });
  ForTail<kVec, kItems>(vectors, [&](int i) {
    float v[kVec];
    input(i, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] *= inv;
    StoreVec<kVec>(o + i, v);
  });
}

}  // namespace media_internal
}  // namespace tessera::runtime::cuda
