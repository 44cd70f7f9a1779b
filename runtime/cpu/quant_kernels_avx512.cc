// The canonical quantized dot products (quant_kernels.h) with AVX-512 VNNI. Compiled for AVX-512 by
// a target pragma; called only when CPUID reports AVX-512 F/BW/VL/DQ/VNNI/BF16.
//
// One ZMM holds a chunk of 64 values: the 16 int32 lanes of vpdpbusd are the canonical lanes.
// Family A: weights w_int + 128 (unsigned) times activations (signed) with the accumulator
// started at -128 * (sum of the lane's 4 activations) gives the exact signed lane sum in one
// vpdpbusd. Family K: vpmaddubsw (quants <= 63 times int8 never saturates) then vpdpwssd with the
// (sc, sc) pairs multiplies by the sub-block scale and accumulates in one step.
#include <immintrin.h>

#include "runtime/cpu/quant_kernels.h"

// Everything below (and nothing in the headers above: their inline functions stay baseline code
// the linker may share with other files) is compiled for AVX-512.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16")
// GCC 12's AVX-512 headers start some intrinsics from deliberately undefined registers and then
// warn about them.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tessera::runtime::cpu {
namespace {

inline float HorizontalSum16(__m512 v) {
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// Lanes 0-7 = p[0], lanes 8-15 = p[1].
inline __m512 PairBroadcast(const float* p) {
  return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(p[0]), _mm512_set1_ps(p[1]));
}

template <int R, int M>
void KernelABlock(const TileA& w, int i0, const QuantizedRows& x, int64_t t0, float* y,
                  int64_t ldy) {
  __m512 acc[R][M];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) acc[i][j] = _mm512_setzero_ps();
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i zero = _mm512_setzero_si512();
  const int8_t* xq[M];
  const float* dx[M];
  const float* tx[M];
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j) {
    xq[j] = x.row_qs(t0 + j);
    dx[j] = x.row_d(t0 + j);
    tx[j] = w.has_min ? x.row_t(t0 + j) : nullptr;
  }
  for (int64_t pr = 0; pr < w.pairs; ++pr) {
    __m512i wv[R];
    __m512 dwv[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int64_t off = (static_cast<int64_t>(i0 + i) * w.pairs + pr);
      wv[i] = _mm512_loadu_si512(w.q + off * 64);
      dwv[i] = _mm512_loadu_ps(w.dw + off * 16);
    }
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
      const __m512i xv = _mm512_loadu_si512(xq[j] + pr * 64);
      // -128 * (sum of each lane's 4 activations).
      const __m512i init = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k80, xv));
      const __m512 dxv = PairBroadcast(dx[j] + 2 * pr);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m512i p = _mm512_dpbusd_epi32(init, wv[i], xv);
        const __m512 s = _mm512_mul_ps(dwv[i], dxv);
        acc[i][j] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p), acc[i][j]);
      }
      if (w.has_min) {
        const __m512 txv = PairBroadcast(tx[j] + 2 * pr);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
          const int64_t off = (static_cast<int64_t>(i0 + i) * w.pairs + pr);
          const __m512 mwv = _mm512_loadu_ps(w.mw + off * 16);
          acc[i][j] = _mm512_mask3_fmadd_ps(mwv, txv, acc[i][j], 0x0101);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) y[j * ldy + i0 + i] = HorizontalSum16(acc[i][j]);
}

template <int R, int M>
void KernelKBlock(const TileK& w, int i0, const QuantizedRows& x, int64_t t0, float* y,
                  int64_t ldy) {
  __m512 acc[R][M];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) acc[i][j] = _mm512_setzero_ps();
  const int8_t* xq[M];
  const float* dx[M];
  const int16_t* bs[M];
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j) {
    xq[j] = x.row_qs(t0 + j);
    dx[j] = x.row_d(t0 + j);
    bs[j] = x.row_bsums(t0 + j);
  }
  for (int64_t b = 0; b < w.blocks; ++b) {
    __m512i isum[R][M];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) isum[i][j] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      __m512i qv[R], scv[R];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const int64_t wb = static_cast<int64_t>(i0 + i) * w.blocks + b;
        qv[i] = _mm512_loadu_si512(w.q + wb * 256 + 64 * c);
        scv[i] = _mm512_loadu_si512(w.sc + wb * 64 + 16 * c);
      }
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
        const __m512i xv = _mm512_loadu_si512(xq[j] + b * 256 + 64 * c);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
          isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(qv[i], xv), scv[i]);
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int64_t wb = static_cast<int64_t>(i0 + i) * w.blocks + b;
      const __m256i mn = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.mn + wb * 16));
      const float d = w.d[wb], dmin = w.dmin[wb];
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
        const __m512 s = _mm512_set1_ps(d * dx[j][b]);
        const __m512 neg_m = _mm512_set1_ps(-(dmin * dx[j][b]));
        const __m256i bsv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs[j] + 16 * b));
        const __m256 imin = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bsv));
        acc[i][j] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(isum[i][j]), acc[i][j]);
        acc[i][j] = _mm512_mask3_fmadd_ps(neg_m, _mm512_castps256_ps512(imin), acc[i][j], 0x00ff);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) y[j * ldy + i0 + i] = HorizontalSum16(acc[i][j]);
}

}  // namespace

void KernelAAvx512(const TileA& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                   int64_t ldy) {
  constexpr int kM = 4;
  for (int64_t t = t0; t < t1; t += kM) {
    const int m = static_cast<int>(t1 - t < kM ? t1 - t : kM);
    float* yt = y + (t - t0) * ldy;
    int i = 0;
    for (; i + 4 <= w.rows; i += 4) {
      switch (m) {
        case 1:
          KernelABlock<4, 1>(w, i, x, t, yt, ldy);
          break;
        case 2:
          KernelABlock<4, 2>(w, i, x, t, yt, ldy);
          break;
        case 3:
          KernelABlock<4, 3>(w, i, x, t, yt, ldy);
          break;
        default:
          KernelABlock<4, 4>(w, i, x, t, yt, ldy);
          break;
      }
    }
    for (; i < w.rows; ++i) {
      switch (m) {
        case 1:
          KernelABlock<1, 1>(w, i, x, t, yt, ldy);
          break;
        case 2:
          KernelABlock<1, 2>(w, i, x, t, yt, ldy);
          break;
        case 3:
          KernelABlock<1, 3>(w, i, x, t, yt, ldy);
          break;
        default:
          KernelABlock<1, 4>(w, i, x, t, yt, ldy);
          break;
      }
    }
  }
}

void KernelKAvx512(const TileK& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                   int64_t ldy) {
  // NOTE: 4 x 2 keeps the 8 accumulators, 8 super-block sums and 8 weight vectors in the 32
  // ZMM registers; 4 x 3 spills.
  constexpr int kM = 2;
  for (int64_t t = t0; t < t1; t += kM) {
    const int m = static_cast<int>(t1 - t < kM ? t1 - t : kM);
    float* yt = y + (t - t0) * ldy;
    int i = 0;
    for (; i + 4 <= w.rows; i += 4) {
      if (m == 1) {
        KernelKBlock<4, 1>(w, i, x, t, yt, ldy);
      } else {
        KernelKBlock<4, 2>(w, i, x, t, yt, ldy);
      }
    }
    for (; i < w.rows; ++i) {
      if (m == 1) {
        KernelKBlock<1, 1>(w, i, x, t, yt, ldy);
      } else {
        KernelKBlock<1, 2>(w, i, x, t, yt, ldy);
      }
    }
  }
}

}  // namespace tessera::runtime::cpu
