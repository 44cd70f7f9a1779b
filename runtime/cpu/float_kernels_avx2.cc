// Projections over F32 / BF16 / F16 weights with AVX2 + FMA (the build's baseline ISA).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/cpu/float_kernels.h"
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime::cpu {
namespace {

inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) {
  uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 shuf = _mm_movehdup_ps(lo);
  __m128 sums = _mm_add_ps(lo, shuf);
  shuf = _mm_movehl_ps(shuf, sums);
  sums = _mm_add_ss(sums, shuf);
  return _mm_cvtss_f32(sums);
}

// NW weight rows x NT input rows of dot products over K. The summation order depends only on K,
// so a given (row, output) pair gives the same bits whatever tile it falls in.
template <int NW, int NT, typename WT>
void MicroKernel(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t K, float* y,
                 int64_t ldy) {
  // NOTE: the unroll pragmas keep acc/wv in registers; without them GCC -O2 leaves the small
  // loops rolled and spills the accumulators to the stack every iteration (decode ran at 4.5 GB/s
  // instead of streaming at memory speed).
  __m256 acc[NW][NT];
#pragma GCC unroll 4
  for (int i = 0; i < NW; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t K8 = K & ~int64_t{7};
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 wv[NW];
#pragma GCC unroll 4
    for (int i = 0; i < NW; ++i) wv[i] = Load8(w + i * ldw + k);
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      __m256 xv = _mm256_loadu_ps(x + j * ldx + k);
#pragma GCC unroll 4
      for (int i = 0; i < NW; ++i) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < NW; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      float s = HorizontalSum(acc[i][j]);
      for (int64_t k = K8; k < K; ++k) s += Load1(w + i * ldw + k) * x[j * ldx + k];
      y[j * ldy + i] = s;
    }
  }
}

template <typename WT>
using KernelFn = void (*)(const WT*, int64_t, const float*, int64_t, int64_t, float*, int64_t);

template <typename WT>
KernelFn<WT> PickKernel(int nw, int nt) {
  static const KernelFn<WT> table[4][3] = {
      {MicroKernel<1, 1, WT>, MicroKernel<1, 2, WT>, MicroKernel<1, 3, WT>},
      {MicroKernel<2, 1, WT>, MicroKernel<2, 2, WT>, MicroKernel<2, 3, WT>},
      {MicroKernel<3, 1, WT>, MicroKernel<3, 2, WT>, MicroKernel<3, 3, WT>},
      {MicroKernel<4, 1, WT>, MicroKernel<4, 2, WT>, MicroKernel<4, 3, WT>},
  };
  return table[nw - 1][nt - 1];
}

constexpr int kTileW = 4;
constexpr int kTileT = 3;

template <typename WT>
void RunTiles(const WT* w, int64_t ldw, int64_t nw, const float* x, int64_t T, int64_t K, float* y,
              int64_t ldy) {
  for (int64_t t = 0; t < T; t += kTileT) {
    const int nt = static_cast<int>(std::min<int64_t>(kTileT, T - t));
    PickKernel<WT>(static_cast<int>(nw), nt)(w, ldw, x + t * K, K, K, y + t * ldy, ldy);
  }
}

}  // namespace

void FloatMatMulAvx2(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                     int64_t n_begin, int64_t n_end) {
  const int64_t K = w.cols;
  if (w.type == WeightMatrix::Type::kF32) {
    const float* base = static_cast<const float*>(w.data);
    for (int64_t n = n_begin; n < n_end; n += kTileW) {
      const int64_t nw = std::min<int64_t>(kTileW, n_end - n);
      RunTiles(base + n * K, K, nw, x, T, K, y + n, ldy);
    }
    return;
  }
  const uint16_t* base = static_cast<const uint16_t*>(w.data);
  if (w.type == WeightMatrix::Type::kBF16 && T <= 2) {
    // Decode: stream the bf16 rows once, widening in registers (memory bound).
    for (int64_t n = n_begin; n < n_end; n += kTileW) {
      const int64_t nw = std::min<int64_t>(kTileW, n_end - n);
      RunTiles(base + n * K, K, nw, x, T, K, y + n, ldy);
    }
    return;
  }
  // Prefill / batched decode (and F16 always): widen kTileW rows once into a cache-resident fp32
  // tile, then reuse it for every input row. Same summation order as the direct path (products of
  // the same fp32 values), so results do not depend on T.
  thread_local std::vector<float> tile;
  if (tile.size() < static_cast<size_t>(kTileW * K)) tile.resize(kTileW * K);
  const bool f16 = w.type == WeightMatrix::Type::kF16;
  for (int64_t n = n_begin; n < n_end; n += kTileW) {
    const int64_t nw = std::min<int64_t>(kTileW, n_end - n);
    for (int64_t i = 0; i < nw; ++i) {
      const uint16_t* src = base + (n + i) * K;
      float* dst = tile.data() + i * K;
      int64_t k = 0;
      if (f16) {
        for (; k + 8 <= K; k += 8) {
          _mm256_storeu_ps(
              dst + k, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
        }
        for (; k < K; ++k) dst[k] = quant::Fp16ToFloat(src[k]);
      } else {
        for (; k + 8 <= K; k += 8) _mm256_storeu_ps(dst + k, Load8(src + k));
        for (; k < K; ++k) dst[k] = Load1(src + k);
      }
    }
    RunTiles(tile.data(), K, nw, x, T, K, y + n, ldy);
  }
}

}  // namespace tessera::runtime::cpu
