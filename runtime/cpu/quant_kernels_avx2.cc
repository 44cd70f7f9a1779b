// The canonical quantized dot products (quant_kernels.h) with AVX2 (the build's baseline ISA).
//
// One YMM holds half a 64-value chunk: canonical lanes 0-7 in one register, 8-15 in another.
// Family A: signed weights times signed activations through vpmaddubsw(|w|, sign(x, w)) (pairs
// <= 2 * 128 * 127, no saturation) and vpmaddwd with ones: the exact 4-value lane sums. Family K:
// vpmaddubsw(q, x) then vpmaddwd with the (sc, sc) pairs: the lane sum times its scale.
#include <immintrin.h>

#include "runtime/cpu/quant_kernels.h"

namespace tessera::runtime::cpu {
namespace {

inline float HorizontalSum16(__m256 lo, __m256 hi) {
  const __m256 h8 = _mm256_add_ps(lo, hi);
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// Exact sums of w * x over each group of 4 bytes; w, x signed.
inline __m256i LaneDot(__m256i w, __m256i x) {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

template <int R, int M>
void KernelABlock(const TileA& w, int i0, const QuantizedRows& x, int64_t t0, float* y,
                  int64_t ldy) {
  __m256 lo[R][M], hi[R][M];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) lo[i][j] = hi[i][j] = _mm256_setzero_ps();
  const __m256i k80 = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t pr = 0; pr < w.pairs; ++pr) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int64_t off = static_cast<int64_t>(i0 + i) * w.pairs + pr;
      const uint8_t* wq = w.q + off * 64;
      const __m256i w0 =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq)), k80);
      const __m256i w1 =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + 32)), k80);
      const __m256 dw0 = _mm256_loadu_ps(w.dw + off * 16);
      const __m256 dw1 = _mm256_loadu_ps(w.dw + off * 16 + 8);
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
        const int8_t* xp = x.row_qs(t0 + j) + pr * 64;
        const float* dx = x.row_d(t0 + j) + 2 * pr;
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + 32));
        const __m256 s0 = _mm256_mul_ps(dw0, _mm256_set1_ps(dx[0]));
        const __m256 s1 = _mm256_mul_ps(dw1, _mm256_set1_ps(dx[1]));
        lo[i][j] = _mm256_fmadd_ps(s0, _mm256_cvtepi32_ps(LaneDot(w0, x0)), lo[i][j]);
        hi[i][j] = _mm256_fmadd_ps(s1, _mm256_cvtepi32_ps(LaneDot(w1, x1)), hi[i][j]);
        if (w.has_min) {
          const float* tx = x.row_t(t0 + j) + 2 * pr;
          const __m256 m0 = _mm256_loadu_ps(w.mw + off * 16);
          const __m256 m1 = _mm256_loadu_ps(w.mw + off * 16 + 8);
          lo[i][j] =
              _mm256_blend_ps(lo[i][j], _mm256_fmadd_ps(m0, _mm256_set1_ps(tx[0]), lo[i][j]), 0x01);
          hi[i][j] =
              _mm256_blend_ps(hi[i][j], _mm256_fmadd_ps(m1, _mm256_set1_ps(tx[1]), hi[i][j]), 0x01);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) y[j * ldy + i0 + i] = HorizontalSum16(lo[i][j], hi[i][j]);
}

template <int R, int M>
void KernelKBlock(const TileK& w, int i0, const QuantizedRows& x, int64_t t0, float* y,
                  int64_t ldy) {
  __m256 lo[R][M], hi[R][M];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) lo[i][j] = hi[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < w.blocks; ++b) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int64_t wb = static_cast<int64_t>(i0 + i) * w.blocks + b;
      const uint8_t* q = w.q + wb * 256;
      const int32_t* sc = w.sc + wb * 64;
      const __m256i mn = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.mn + wb * 16));
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
        const int8_t* xb = x.row_qs(t0 + j) + b * 256;
        __m256i isum_lo = _mm256_setzero_si256(), isum_hi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * c));
          const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * c + 32));
          const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64 * c));
          const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64 * c + 32));
          const __m256i sc0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + 16 * c));
          const __m256i sc1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + 16 * c + 8));
          isum_lo = _mm256_add_epi32(isum_lo, _mm256_madd_epi16(_mm256_maddubs_epi16(q0, x0), sc0));
          isum_hi = _mm256_add_epi32(isum_hi, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, x1), sc1));
        }
        const float dx = x.row_d(t0 + j)[b];
        const __m256 s = _mm256_set1_ps(w.d[wb] * dx);
        const __m256 neg_m = _mm256_set1_ps(-(w.dmin[wb] * dx));
        const __m256i bsv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.row_bsums(t0 + j) + 16 * b));
        lo[i][j] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum_lo), lo[i][j]);
        hi[i][j] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum_hi), hi[i][j]);
        lo[i][j] = _mm256_fmadd_ps(neg_m, _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bsv)), lo[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) y[j * ldy + i0 + i] = HorizontalSum16(lo[i][j], hi[i][j]);
}

}  // namespace

void KernelAAvx2(const TileA& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                 int64_t ldy) {
  for (int64_t t = t0; t < t1; t += 2) {
    float* yt = y + (t - t0) * ldy;
    const bool two = t + 1 < t1;
    int i = 0;
    for (; i + 2 <= w.rows; i += 2) {
      if (two) {
        KernelABlock<2, 2>(w, i, x, t, yt, ldy);
      } else {
        KernelABlock<2, 1>(w, i, x, t, yt, ldy);
      }
    }
    for (; i < w.rows; ++i) {
      if (two) {
        KernelABlock<1, 2>(w, i, x, t, yt, ldy);
      } else {
        KernelABlock<1, 1>(w, i, x, t, yt, ldy);
      }
    }
  }
}

void KernelKAvx2(const TileK& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                 int64_t ldy) {
  for (int64_t t = t0; t < t1; ++t) {
    float* yt = y + (t - t0) * ldy;
    int i = 0;
    for (; i + 2 <= w.rows; i += 2) KernelKBlock<2, 1>(w, i, x, t, yt, ldy);
    for (; i < w.rows; ++i) KernelKBlock<1, 1>(w, i, x, t, yt, ldy);
  }
}

}  // namespace tessera::runtime::cpu
