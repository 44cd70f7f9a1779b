// The canonical quantized dot products (quant_kernels.h) with AVX-512 VNNI. Compiled for AVX-512 by
// a target pragma; called only when CPUID reports AVX-512 F/BW/VL/DQ/VNNI/BF16.
//
// One ZMM holds a chunk of 64 values: the 16 int32 lanes of vpdpbusd are the canonical lanes.
// Family A: weights w_int + 128 (unsigned) times activations (signed) with the accumulator
// started at -128 * (sum of the lane's 4 activations) gives the exact signed lane sum in one
// vpdpbusd. Family K: vpmaddubsw (quants <= 63 times int8 never saturates) then vpdpwssd with the
// (sc, sc) pairs multiplies by the sub-block scale and accumulates in one step.
#include <immintrin.h>

#include <cstring>

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
    // The scale products d * dx and -(dmin * dx) as vector products of broadcasts (the same
    // roundings as the scalar products), with each broadcast made once per super-block.
    __m512 dxv[M];
    __m256i bsv[M];
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
      dxv[j] = _mm512_set1_ps(dx[j][b]);
      bsv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs[j] + 16 * b));
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int64_t wb = static_cast<int64_t>(i0 + i) * w.blocks + b;
      const __m256i mn = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.mn + wb * 16));
      const __m512 dv = _mm512_set1_ps(w.d[wb]), ndmin = _mm512_set1_ps(-w.dmin[wb]);
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
        const __m256 imin = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bsv[j]));
        acc[i][j] =
            _mm512_fmadd_ps(_mm512_mul_ps(dv, dxv[j]), _mm512_cvtepi32_ps(isum[i][j]), acc[i][j]);
        acc[i][j] = _mm512_mask3_fmadd_ps(_mm512_mul_ps(ndmin, dxv[j]),
                                          _mm512_castps256_ps512(imin), acc[i][j], 0x00ff);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) y[j * ldy + i0 + i] = HorizontalSum16(acc[i][j]);
}

// NOTE: decode streams R rows at once from memory; prefetching this far ahead of each row keeps
// enough loads in flight (without it Q8_0 read ~14 GB/s where bf16 reached ~19).
constexpr int kPrefetchBytes = 1024;

// --- Direct kernels for decode: the same canonical sums, decoding the mapped blocks in registers
// (no tile is written), so a few activation rows cost little more than reading the weights once.

inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// The 32 quants of one Q8_0 block, or of one Q4_0 block, as w_int + 128 in a YMM.
template <bool kQ8>
__attribute__((always_inline)) inline __m256i BlockBytesA(const uint8_t* blk) {
  if (kQ8) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m256i nib =
      _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask));
  return _mm256_add_epi8(nib, _mm256_set1_epi8(120));
}

// The two fp16 scales at b0 and b1 as floats (lanes 0, 1).
__attribute__((always_inline)) inline __m128 ScalePair(const uint8_t* b0, const uint8_t* b1) {
  uint16_t h0, h1;
  std::memcpy(&h0, b0, 2);
  std::memcpy(&h1, b1, 2);
  return _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1));
}

// Family A, R weight rows x M activation rows, straight from the blocks. `pairs_full` pairs of
// blocks, then (when the row has an odd number of blocks) one last block padded as the tile is.
template <bool kQ8, int R, int M>
void DirectABlock(const uint8_t* row0, int64_t row_bytes, int64_t blocks, const QuantizedRows& x,
                  int64_t t0, float* y, int64_t ldy) {
  constexpr int bb = kQ8 ? 34 : 18;
  __m512 acc[R][M];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) acc[i][j] = _mm512_setzero_ps();
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i zero = _mm512_setzero_si512();
  // Lanes 0-7 take element 0 of a scale pair, lanes 8-15 element 1.
  const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  auto pair_step = [&](int64_t pr, bool second) __attribute__((always_inline)) {
    __m512i xv[M], init[M];
    __m128 dx[M];
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
      xv[j] = _mm512_loadu_si512(x.row_qs(t0 + j) + pr * 64);
      init[j] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k80, xv[j]));
      dx[j] = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(x.row_d(t0 + j) + 2 * pr)));
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const uint8_t* b0 = row0 + i * row_bytes + 2 * pr * bb;
      _mm_prefetch(reinterpret_cast<const char*>(b0 + kPrefetchBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b0 + kPrefetchBytes + 64), _MM_HINT_T0);
      __m512i wv;
      __m128 dw;
      if (second) {
        wv = _mm512_inserti64x4(_mm512_castsi256_si512(BlockBytesA<kQ8>(b0)),
                                BlockBytesA<kQ8>(b0 + bb), 1);
        dw = ScalePair(b0, b0 + bb);
      } else {
        wv = _mm512_inserti64x4(_mm512_castsi256_si512(BlockBytesA<kQ8>(b0)),
                                _mm256_set1_epi8(static_cast<char>(0x80)), 1);
        dw = _mm_insert_ps(ScalePair(b0, b0), _mm_setzero_ps(), 0x10);  // Padding scale 0.
      }
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
        // dw_b * dx_b for the pair's two blocks, spread over their lanes.
        const __m512 s =
            _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(_mm_mul_ps(dw, dx[j])));
        const __m512i p = _mm512_dpbusd_epi32(init[j], wv, xv[j]);
        acc[i][j] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p), acc[i][j]);
      }
    }
  };
  const int64_t full = blocks / 2;
  for (int64_t pr = 0; pr < full; ++pr) pair_step(pr, true);
  if (blocks % 2 != 0) pair_step(full, false);
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) y[j * ldy + i] = HorizontalSum16(acc[i][j]);
}

// One super-block decoded in registers: 4 chunks of 64 unsigned quants, 4 vectors of (sc, sc)
// pairs, the 16 mins, d and dmin.
struct SuperBlock {
  __m512i q[4];
  __m512i sc[4];
  __m256i mn;
  float d, dmin;
};

inline __m512i Join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

__attribute__((always_inline)) inline void DecodeK4(const uint8_t* blk, bool q5, SuperBlock* out) {
  uint32_t u[4];
  std::memcpy(u, blk + 4, 12);
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  u[3] = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);
  const uint32_t mins_lo = u[1] & kLow6;
  u[1] = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);
  u[2] = mins_lo;
  u[0] &= kLow6;
  const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
  // Scales 0-7 as int32 (sc, sc) pairs; chunk c takes scale 2c for lanes 0-7, 2c + 1 for 8-15.
  const __m512i s32 = _mm512_cvtepu8_epi32(sm);
  const __m512i pairs = _mm512_or_si512(s32, _mm512_slli_epi32(s32, 16));
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512i idx =
        _mm512_mask_blend_epi32(0xff00, _mm512_set1_epi32(2 * c), _mm512_set1_epi32(2 * c + 1));
    out->sc[c] = _mm512_permutexvar_epi32(idx, pairs);
  }
  const __m128i m8 = _mm_srli_si128(sm, 8);
  out->mn = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
  const uint8_t* qs = blk + (q5 ? 48 : 16);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  __m256i hb = _mm256_setzero_si256();
  if (q5) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16));
  const __m256i one = _mm256_set1_epi8(1);
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
    __m256i lo = _mm256_and_si256(v, low4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    if (q5) {
      lo = _mm256_or_si256(
          lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
      hi = _mm256_or_si256(
          hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4));
    }
    out->q[c] = Join(lo, hi);
  }
  out->d = HalfAt(blk);
  out->dmin = HalfAt(blk + 2);
}

// Chunk c of a Q6_K super-block: int16 position p (lane p / 2) takes sub-block scale 4c + p / 8.
alignas(64) constexpr int16_t kQ6ScaleIndex[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5,
     6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8,  8,  8,  8,  8,  8,  8,  8,  9,  9,  9,  9,  9,  9,  9,  9,
     10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13,
     14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

__attribute__((always_inline)) inline void DecodeQ6K(const uint8_t* blk, SuperBlock* out) {
  const auto* x = reinterpret_cast<const quant::BlockQ6_K*>(blk);
  const __m256i low4 = _mm256_set1_epi8(0x0f), k03 = _mm256_set1_epi8(0x03),
                k30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->ql + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->qh + 32 * h));
    const __m256i a = _mm256_or_si256(_mm256_and_si256(ql0, low4),
                                      _mm256_slli_epi16(_mm256_and_si256(qh, k03), 4));
    const __m256i b = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                      _mm256_and_si256(_mm256_slli_epi16(qh, 2), k30));
    const __m256i c = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                      _mm256_and_si256(qh, k30));
    const __m256i d = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                      _mm256_and_si256(_mm256_srli_epi16(qh, 2), k30));
    out->q[2 * h] = Join(a, b);
    out->q[2 * h + 1] = Join(c, d);
  }
  const __m256i s16 =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales)));
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    out->sc[c] =
        _mm512_permutexvar_epi16(_mm512_load_si512(kQ6ScaleIndex[c]), _mm512_castsi256_si512(s16));
  }
  out->mn = _mm256_slli_epi16(s16, 5);
  out->d = out->dmin = HalfAt(blk + 208);
}

template <quant::GgmlType kType, int R, int M>
void DirectKBlockOf(const uint8_t* row0, int64_t row_bytes, int64_t blocks, const QuantizedRows& x,
                    int64_t t0, float* y, int64_t ldy) {
  constexpr int bb = kType == quant::GgmlType::kQ6_K   ? 210
                     : kType == quant::GgmlType::kQ5_K ? 176
                                                       : 144;
  __m512 acc[R][M];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const uint8_t* blk = row0 + i * row_bytes + b * bb;
      for (int line = 0; line < bb; line += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + line), _MM_HINT_T0);
      }
      SuperBlock sb;
      if (kType == quant::GgmlType::kQ6_K) {
        DecodeQ6K(blk, &sb);
      } else {
        DecodeK4(blk, kType == quant::GgmlType::kQ5_K, &sb);
      }
      const __m512 dv = _mm512_set1_ps(sb.d), ndmin = _mm512_set1_ps(-sb.dmin);
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
        const int8_t* xb = x.row_qs(t0 + j) + b * 256;
        __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          const __m512i xv = _mm512_loadu_si512(xb + 64 * c);
          isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(sb.q[c], xv), sb.sc[c]);
        }
        const __m512 dxv = _mm512_set1_ps(x.row_d(t0 + j)[b]);
        const __m256i bsv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.row_bsums(t0 + j) + 16 * b));
        const __m256 imin = _mm256_cvtepi32_ps(_mm256_madd_epi16(sb.mn, bsv));
        acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(dv, dxv), _mm512_cvtepi32_ps(isum), acc[i][j]);
        acc[i][j] = _mm512_mask3_fmadd_ps(_mm512_mul_ps(ndmin, dxv), _mm512_castps256_ps512(imin),
                                          acc[i][j], 0x00ff);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) y[j * ldy + i] = HorizontalSum16(acc[i][j]);
}

template <int R, int M>
void DirectKBlock(quant::GgmlType type, const uint8_t* row0, int64_t row_bytes, int64_t blocks,
                  const QuantizedRows& x, int64_t t0, float* y, int64_t ldy) {
  switch (type) {
    case quant::GgmlType::kQ6_K:
      DirectKBlockOf<quant::GgmlType::kQ6_K, R, M>(row0, row_bytes, blocks, x, t0, y, ldy);
      break;
    case quant::GgmlType::kQ5_K:
      DirectKBlockOf<quant::GgmlType::kQ5_K, R, M>(row0, row_bytes, blocks, x, t0, y, ldy);
      break;
    default:
      DirectKBlockOf<quant::GgmlType::kQ4_K, R, M>(row0, row_bytes, blocks, x, t0, y, ldy);
  }
}

}  // namespace

bool DirectAvx512(quant::GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows,
                  int64_t cols, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                  int64_t ldy) {
  using quant::GgmlType;
  const int m = static_cast<int>(t1 - t0);
  const bool family_a = type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0;
  const bool family_k =
      type == GgmlType::kQ4_K || type == GgmlType::kQ5_K || type == GgmlType::kQ6_K;
  if (m < 1 || (!family_a && !family_k)) return false;
  if (m > 4) {
    // Batched decode, K-quants only: 2 weight rows decoded once for up to 8 activation rows (a
    // tile would be unpacked to memory and read back for so few rows).
    if (!family_k || m > kDirectMaxRows) return false;
    int i = 0;
    for (; i < rows; i += 2) {
      const int r = rows - i >= 2 ? 2 : 1;
      const uint8_t* w = row0 + i * row_bytes;
      switch (m * 2 + (r - 1)) {
#define TESSERA_DIRECT_K(M)                                                \
  case 2 * M + 1:                                                          \
    DirectKBlock<2, M>(type, w, row_bytes, cols / 256, x, t0, y + i, ldy); \
    break;                                                                 \
  case 2 * M:                                                              \
    DirectKBlock<1, M>(type, w, row_bytes, cols / 256, x, t0, y + i, ldy); \
    break;
        TESSERA_DIRECT_K(5)
        TESSERA_DIRECT_K(6)
        TESSERA_DIRECT_K(7)
        TESSERA_DIRECT_K(8)
#undef TESSERA_DIRECT_K
      }
    }
    return true;
  }
  for (int i = 0; i < rows;) {
    const int r = rows - i >= 4 ? 4 : 1;
    const uint8_t* w = row0 + i * row_bytes;
    float* yi = y + i;
#define TESSERA_DIRECT(R, M)                                            \
  if (type == GgmlType::kQ8_0) {                                        \
    DirectABlock<true, R, M>(w, row_bytes, cols / 32, x, t0, yi, ldy);  \
  } else if (family_a) {                                                \
    DirectABlock<false, R, M>(w, row_bytes, cols / 32, x, t0, yi, ldy); \
  } else {                                                              \
    DirectKBlock<R, M>(type, w, row_bytes, cols / 256, x, t0, yi, ldy); \
  }
    if (r == 4) {
      switch (m) {
        case 1:
          TESSERA_DIRECT(4, 1) break;
        case 2:
          TESSERA_DIRECT(4, 2) break;
        case 3:
          TESSERA_DIRECT(4, 3) break;
        default:
          TESSERA_DIRECT(4, 4) break;
      }
    } else {
      switch (m) {
        case 1:
          TESSERA_DIRECT(1, 1) break;
        case 2:
          TESSERA_DIRECT(1, 2) break;
        case 3:
          TESSERA_DIRECT(1, 3) break;
        default:
          TESSERA_DIRECT(1, 4) break;
      }
    }
#undef TESSERA_DIRECT
    i += r;
  }
  return true;
}

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
