// Device code of the quantized-weight kernels (quant.h). Every format is read as 32-value units
// (a Q8_0/Q4_0/Q4_1 block is one unit, a K-quant super-block eight): a unit gives its 32 integer
// quants packed four to an int32 (value 4j + b in byte b of q[j], in the value order of the row),
// the float scales of its two 16-value halves and an offset, so that w = a * q + b (quant_formats.h
// has the block layouts). The GEMV multiplies those quants with the activations' q8_1 quants four
// at a time (dp4a); the dequantize kernel evaluates each value with ggml's own float operations.
#pragma once

#include <cuda_runtime.h>
#if !defined(TESSERA_CUDA_EMULATION)
#include <cuda_fp16.h>
#endif

#include <cstdint>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/quant.h"

namespace tessera::runtime::cuda {
namespace quant_internal {

constexpr int kThreads = 128;

// IEEE fp16 bits -> float (exact).
__device__ __forceinline__ float HalfToFloat(uint16_t h) {
#if defined(TESSERA_CUDA_EMULATION)
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1Fu) {
    bits = sign | 0x7F800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // Subnormal: normalise.
    int e = -1;
    uint32_t m = man;
    do {
      ++e;
      m <<= 1;
    } while ((m & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((m & 0x3FFu) << 13);
  }
  return __uint_as_float(bits);
#else
  return __half2float(__ushort_as_half(h));
#endif
}

__device__ __forceinline__ uint16_t Load16(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);
}
// 4 bytes from a 2-byte aligned address (Q8_0, Q4_0 and Q6_K blocks are only 2-byte aligned).
__device__ __forceinline__ int32_t Load32A2(const uint8_t* p) {
  const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
  return static_cast<int32_t>(static_cast<uint32_t>(q[0]) | (static_cast<uint32_t>(q[1]) << 16));
}
__device__ __forceinline__ int32_t Load32A4(const uint8_t* p) {
  return *reinterpret_cast<const int32_t*>(p);
}

struct Unit {
  int32_t q[8];  // 32 quants, 4 per word.
  float a_lo;    // Scale of values 0..15 (the quant's multiplier).
  float a_hi;    // Scale of values 16..31.
  float b;       // Offset: w = a * q + b.
};

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
__device__ __forceinline__ void ScaleMinK4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

template <WeightFormat F>
struct Format;

template <>
struct Format<WeightFormat::kQ8_0> {
  static constexpr int kUnits = 1, kBytes = 34;
  __device__ static __forceinline__ void Get(const uint8_t* blk, int u, Unit* o) {
    const float d = HalfToFloat(Load16(blk));
#pragma unroll
    for (int j = 0; j < 8; ++j) o->q[j] = Load32A2(blk + 2 + 4 * j);
    o->a_lo = o->a_hi = d;
    o->b = 0.0f;
  }
  __device__ static __forceinline__ void Dequant(const uint8_t* blk, int u, float* y) {
    const float d = HalfToFloat(Load16(blk));
    const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 2);
    for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(qs[i]) * d;
  }
};

template <>
struct Format<WeightFormat::kQ4_0> {
  static constexpr int kUnits = 1, kBytes = 18;
  __device__ static __forceinline__ void Get(const uint8_t* blk, int u, Unit* o) {
    const float d = HalfToFloat(Load16(blk));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int32_t w = Load32A2(blk + 2 + 4 * j);
      o->q[j] = w & 0x0F0F0F0F;             // Values 4j .. 4j + 3: low nibbles.
      o->q[4 + j] = (w >> 4) & 0x0F0F0F0F;  // Values 16 + 4j ..: high nibbles.
    }
    o->a_lo = o->a_hi = d;
    o->b = -8.0f * d;  // w = d * (q - 8).
  }
  __device__ static __forceinline__ void Dequant(const uint8_t* blk, int u, float* y) {
    const float d = HalfToFloat(Load16(blk));
    const uint8_t* qs = blk + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
};

template <>
struct Format<WeightFormat::kQ4_1> {
  static constexpr int kUnits = 1, kBytes = 20;
  __device__ static __forceinline__ void Get(const uint8_t* blk, int u, Unit* o) {
    const float d = HalfToFloat(Load16(blk)), m = HalfToFloat(Load16(blk + 2));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int32_t w = Load32A4(blk + 4 + 4 * j);
      o->q[j] = w & 0x0F0F0F0F;
      o->q[4 + j] = (w >> 4) & 0x0F0F0F0F;
    }
    o->a_lo = o->a_hi = d;
    o->b = m;
  }
  __device__ static __forceinline__ void Dequant(const uint8_t* blk, int u, float* y) {
    const float d = HalfToFloat(Load16(blk)), m = HalfToFloat(Load16(blk + 2));
    const uint8_t* qs = blk + 4;
    for (int j = 0; j < 16; ++j) {
      // ggml: x0 * d + m, two roundings (no fused multiply-add).
      y[j] = __fadd_rn(__fmul_rn(static_cast<float>(qs[j] & 0x0F), d), m);
      y[j + 16] = __fadd_rn(__fmul_rn(static_cast<float>(qs[j] >> 4), d), m);
    }
  }
};

// Q4_K and Q5_K: unit u is sub-block u of the super-block: the low (u even) or high (u odd)
// nibbles of qs[32 (u / 2) ..], plus for Q5_K bit u of qh[0..31].
template <bool kQ5>
struct FormatK45 {
  static constexpr int kUnits = 8, kBytes = kQ5 ? 176 : 144;
  static constexpr int kQs = kQ5 ? 48 : 16;
  __device__ static __forceinline__ void Scales(const uint8_t* blk, int u, float* d1, float* m1) {
    const float d = HalfToFloat(Load16(blk)), dmin = HalfToFloat(Load16(blk + 2));
    int sc, m;
    ScaleMinK4(u, blk + 4, &sc, &m);
    *d1 = __fmul_rn(d, static_cast<float>(sc));
    *m1 = __fmul_rn(dmin, static_cast<float>(m));
  }
  __device__ static __forceinline__ void Get(const uint8_t* blk, int u, Unit* o) {
    float d1, m1;
    Scales(blk, u, &d1, &m1);
    const uint8_t* qs = blk + kQs + 32 * (u >> 1);
    const int shift = 4 * (u & 1);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int32_t v = (Load32A4(qs + 4 * j) >> shift) & 0x0F0F0F0F;
      if constexpr (kQ5) v |= ((Load32A4(blk + 16 + 4 * j) >> u) & 0x01010101) << 4;
      o->q[j] = v;
    }
    o->a_lo = o->a_hi = d1;
    o->b = -m1;
  }
  __device__ static __forceinline__ void Dequant(const uint8_t* blk, int u, float* y) {
    float d1, m1;
    Scales(blk, u, &d1, &m1);
    const uint8_t* qs = blk + kQs + 32 * (u >> 1);
    const int shift = 4 * (u & 1);
    for (int l = 0; l < 32; ++l) {
      int q = (qs[l] >> shift) & 0xF;
      if constexpr (kQ5) q += (blk[16 + l] >> u) & 1 ? 16 : 0;
      // ggml: d1 * q - m1, two roundings.
      y[l] = __fsub_rn(__fmul_rn(d1, static_cast<float>(q)), m1);
    }
  }
};
template <>
struct Format<WeightFormat::kQ4_K> : FormatK45<false> {};
template <>
struct Format<WeightFormat::kQ5_K> : FormatK45<true> {};

// Q6_K: unit u = 4 n + k covers values 128 n + 32 k + l (l < 32): the low (k < 2) or high nibble
// of ql[64 n + 32 (k & 1) + l], bits 2k, 2k + 1 of qh[32 n + l], scales 8 n + 2 k (l < 16) and
// 8 n + 2 k + 1 (l >= 16).
template <>
struct Format<WeightFormat::kQ6_K> {
  static constexpr int kUnits = 8, kBytes = 210;
  __device__ static __forceinline__ void Get(const uint8_t* blk, int u, Unit* o) {
    const int n = u >> 2, k = u & 3;
    const float d = HalfToFloat(Load16(blk + 208));
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192) + 8 * n + 2 * k;
    const uint8_t* ql = blk + 64 * n + 32 * (k & 1);
    const uint8_t* qh = blk + 128 + 32 * n;
    const int lshift = 4 * (k >> 1), hshift = 2 * k;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint32_t lo = (static_cast<uint32_t>(Load32A2(ql + 4 * j)) >> lshift) & 0x0F0F0F0Fu;
      const uint32_t hi = ((static_cast<uint32_t>(Load32A2(qh + 4 * j)) >> hshift) & 0x03030303u)
                          << 4;
      o->q[j] = static_cast<int32_t>(__vsub4(lo | hi, 0x20202020u));  // q - 32 per byte.
    }
    o->a_lo = __fmul_rn(d, static_cast<float>(sc[0]));
    o->a_hi = __fmul_rn(d, static_cast<float>(sc[1]));
    o->b = 0.0f;
  }
  __device__ static __forceinline__ void Dequant(const uint8_t* blk, int u, float* y) {
    const int n = u >> 2, k = u & 3;
    const float d = HalfToFloat(Load16(blk + 208));
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192) + 8 * n + 2 * k;
    const uint8_t* ql = blk + 64 * n + 32 * (k & 1);
    const uint8_t* qh = blk + 128 + 32 * n;
    for (int l = 0; l < 32; ++l) {
      const int q = (((ql[l] >> (4 * (k >> 1))) & 0xF) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
      // ggml: d * sc * q, left to right.
      y[l] = __fmul_rn(__fmul_rn(d, static_cast<float>(sc[l >> 4])), static_cast<float>(q));
    }
  }
};

// One thread per 32-value unit; grid (unit tiles, rows).
template <WeightFormat F>
__global__ void __launch_bounds__(kThreads) DequantizeKernel(const DequantizeParams p) {
  using Fmt = Format<F>;
  const int r = blockIdx.y;
  const int64_t units = p.cols / 32;
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (unit >= units) return;
  __nv_bfloat16* o = AsDevice(p.out) + r * p.out_row_stride + unit * 32;
  int64_t row = p.row0 + r;
  if (p.ids != nullptr) {
    row = p.ids[r];
    if (row < 0) return;  // A media row.
    if (row >= p.w_rows) {
      for (int i = 0; i < 32; ++i) o[i] = __float2bfloat16_rn(0.0f);
      return;
    }
  }
  const int64_t row_bytes = p.cols / (Fmt::kUnits * 32) * Fmt::kBytes;
  const uint8_t* blk =
      static_cast<const uint8_t*>(p.w) + row * row_bytes + (unit / Fmt::kUnits) * Fmt::kBytes;
  float y[32];
  Fmt::Dequant(blk, static_cast<int>(unit % Fmt::kUnits), y);
  for (int i = 0; i < 32; ++i) o[i] = __float2bfloat16_rn(__fmul_rn(y[i], p.scale));
}

// One warp per 32-value block; 8 blocks per CTA; grid (block tiles, rows).
__global__ void __launch_bounds__(256) QuantizeQ8_1Kernel(const QuantizeQ8_1Params p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t blocks = p.cols / 32;
  const int64_t b = static_cast<int64_t>(blockIdx.x) * 8 + warp;
  if (b >= blocks) return;  // Warp-uniform.
  const int r = blockIdx.y;
  const float x = __bfloat162float(AsDevice(p.x)[r * p.x_row_stride + b * 32 + lane]);
  const float amax = WarpMax(fabsf(x));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const float q = roundf(x * id);
  const float sum = WarpSum(q);  // At most 32 * 127: exact.
  Q8_1Block* o = p.out + r * blocks + b;
  o->qs[lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    o->d = d;
    o->s = d * sum;
  }
}

// Threads per weight row: a whole CTA for rows of more than 64 units (2048 values), else the
// fewest whole warps that give each thread at most two units, so a CTA takes 2 or 4 narrow rows.
__host__ __device__ __forceinline__ int GemvThreadsPerRow(int64_t units) {
  return units > 64 ? kThreads : (units > 32 ? 64 : 32);
}

// A CTA takes kThreads / tpr weight rows; the tpr threads of a row take its 32-value units in
// turn, each dotted with the same unit of every activation row; then one sum per (weight row,
// activation row) over the row's warps.
template <WeightFormat F, int M>
__global__ void __launch_bounds__(kThreads) GemvKernel(const QuantGemvParams p) {
  using Fmt = Format<F>;
  const int64_t units = p.k / 32;
  const int tpr = GemvThreadsPerRow(units), rows_per_cta = kThreads / tpr;
  const int local = threadIdx.x / tpr, t = threadIdx.x % tpr;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * rows_per_cta + local;
  const int64_t row_bytes = p.k / (Fmt::kUnits * 32) * Fmt::kBytes;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
  if (n < p.n) {
    const uint8_t* wrow = static_cast<const uint8_t*>(p.w) + n * row_bytes;
    for (int64_t u = t; u < units; u += tpr) {
      Unit w;
      Fmt::Get(wrow + (u / Fmt::kUnits) * Fmt::kBytes, static_cast<int>(u % Fmt::kUnits), &w);
#pragma unroll
      for (int r = 0; r < M; ++r) {
        const Q8_1Block& xb = p.xq[r * units + u];
        const int32_t* xs = reinterpret_cast<const int32_t*>(xb.qs);
        int32_t lo = 0, hi = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          lo = __dp4a(w.q[j], xs[j], lo);
          hi = __dp4a(w.q[4 + j], xs[4 + j], hi);
        }
        acc[r] +=
            xb.d * (w.a_lo * static_cast<float>(lo) + w.a_hi * static_cast<float>(hi)) + w.b * xb.s;
      }
    }
  }
  __shared__ float partial[kThreads / 32][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float v = WarpSum(acc[r]);
    if (lane == 0) partial[warp][r] = v;
  }
  __syncthreads();
  if (threadIdx.x < rows_per_cta * M) {
    const int row_local = threadIdx.x / M, r = threadIdx.x % M;
    const int64_t out_n = static_cast<int64_t>(blockIdx.x) * rows_per_cta + row_local;
    if (out_n < p.n) {
      const int warps = tpr / 32;
      float sum = 0.0f;
      for (int w = row_local * warps; w < (row_local + 1) * warps; ++w) sum += partial[w][r];
      if (p.out_fp32) {
        static_cast<float*>(p.out)[r * p.ldo + out_n] = sum;
      } else {
        AsDevice(static_cast<Bf16*>(p.out))[r * p.ldo + out_n] = __float2bfloat16_rn(sum);
      }
    }
  }
}

}  // namespace quant_internal
}  // namespace tessera::runtime::cuda
