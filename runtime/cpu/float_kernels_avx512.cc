// Projections over F32 / BF16 / F16 weights with AVX-512 (fp32 FMA, 16 lanes). Compiled for
// AVX-512 by a target pragma; called only when CPUID reports AVX-512.
//
// bf16 and f16 weights are widened in registers right after the load, for decode and prefill alike:
// no fp32 copy of a weight tile is ever made, and the sum for an output is the same sequence of
// fused multiply-adds whatever the batch.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/cpu/float_kernels.h"
#include "runtime/quant/ggml_type.h"

// Everything below (and nothing in the headers above: their inline functions stay baseline code
// the linker may share with other files) is compiled for AVX-512.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16")
// GCC 12's AVX-512 headers start some intrinsics from deliberately undefined registers and then
// warn about them.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tessera::runtime::cpu {
namespace {

struct Half {
  uint16_t bits;
};

inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 Load16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 Load16(const Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) {
  const uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline float Load1(const Half* p) { return quant::Fp16ToFloat(p->bits); }

inline float HorizontalSum16(__m512 v) {
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// NW weight rows x NT activation rows; the sum for one output depends only on K.
template <int NW, int NT, typename WT>
void MicroKernel(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t K, float* y,
                 int64_t ldy) {
  __m512 acc[NW][NT];
#pragma GCC unroll 8
  for (int i = 0; i < NW; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t K16 = K & ~int64_t{15};
  for (int64_t k = 0; k < K16; k += 16) {
    __m512 wv[NW];
#pragma GCC unroll 8
    for (int i = 0; i < NW; ++i) wv[i] = Load16(w + i * ldw + k);
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const __m512 xv = _mm512_loadu_ps(x + j * ldx + k);
#pragma GCC unroll 8
      for (int i = 0; i < NW; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < NW; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      float s = HorizontalSum16(acc[i][j]);
      for (int64_t k = K16; k < K; ++k) s = std::fma(Load1(w + i * ldw + k), x[j * ldx + k], s);
      y[j * ldy + i] = s;
    }
  }
}

constexpr int kTileW = 4;
constexpr int kTileT = 6;

template <typename WT>
using KernelFn = void (*)(const WT*, int64_t, const float*, int64_t, int64_t, float*, int64_t);

template <typename WT, int NW>
KernelFn<WT> PickT(int nt) {
  static const KernelFn<WT> table[kTileT] = {
      MicroKernel<NW, 1, WT>, MicroKernel<NW, 2, WT>, MicroKernel<NW, 3, WT>,
      MicroKernel<NW, 4, WT>, MicroKernel<NW, 5, WT>, MicroKernel<NW, 6, WT>,
  };
  return table[nt - 1];
}

template <typename WT>
KernelFn<WT> Pick(int nw, int nt) {
  switch (nw) {
    case 1:
      return PickT<WT, 1>(nt);
    case 2:
      return PickT<WT, 2>(nt);
    case 3:
      return PickT<WT, 3>(nt);
    default:
      return PickT<WT, 4>(nt);
  }
}

template <typename WT>
void Run(const WT* base, const float* x, int64_t T, int64_t K, float* y, int64_t ldy, int64_t n0,
         int64_t n1) {
  for (int64_t n = n0; n < n1; n += kTileW) {
    const int nw = static_cast<int>(std::min<int64_t>(kTileW, n1 - n));
    for (int64_t t = 0; t < T; t += kTileT) {
      const int nt = static_cast<int>(std::min<int64_t>(kTileT, T - t));
      Pick<WT>(nw, nt)(base + n * K, K, x + t * K, K, K, y + t * ldy + n, ldy);
    }
  }
}

}  // namespace

void FloatMatMulAvx512(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                       int64_t n0, int64_t n1) {
  switch (w.type) {
    case WeightMatrix::Type::kF32:
      Run(static_cast<const float*>(w.data), x, T, w.cols, y, ldy, n0, n1);
      break;
    case WeightMatrix::Type::kF16:
      Run(static_cast<const Half*>(w.data), x, T, w.cols, y, ldy, n0, n1);
      break;
    default:
      Run(static_cast<const uint16_t*>(w.data), x, T, w.cols, y, ldy, n0, n1);
  }
}

}  // namespace tessera::runtime::cpu
