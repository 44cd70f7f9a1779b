// Weight tiles (quant_kernels.h) unpacked from the mapped blocks with AVX2: the same bytes and
// floats as the portable unpackers in quant_matmul.cc (the path tests compare every output bit),
// fast enough that decode stays bound by reading the blocks from memory.
#include <immintrin.h>

#include <cstring>

#include "runtime/cpu/quant_kernels.h"

namespace tessera::runtime::cpu {
namespace {

using quant::GgmlType;

inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256i Load32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline void Store32(uint8_t* p, __m256i v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}

// The 32 quants of a Q4_0 / Q4_1 block, nibbles of 16 bytes: low nibbles then high ones.
inline __m256i Nibbles16(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask));
}

// Q4_K / Q5_K: the 8 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a super-block.
inline void ScalesMinsK4(const uint8_t* scales, uint8_t out[16]) {
  uint32_t u[4];
  std::memcpy(u, scales, 12);
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  u[3] = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);
  const uint32_t mins_lo = u[1] & kLow6;
  u[1] = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);
  u[2] = mins_lo;
  u[0] &= kLow6;
  // u[0..1]: scales 0-3, 4-7; u[2..3]: mins 0-3, 4-7.
  std::memcpy(out, u, 16);
}

}  // namespace

bool UnpackAAvx2(GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows, int64_t blocks,
                 uint8_t* q, float* dw, float* mw) {
  const bool q80 = type == GgmlType::kQ8_0, q40 = type == GgmlType::kQ4_0,
             q41 = type == GgmlType::kQ4_1;
  if (!q80 && !q40 && !q41) return false;
  const int bb = quant::Traits(type).block_bytes;
  const int64_t pairs = (blocks + 1) / 2;
  const __m256i k80 = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i k120 = _mm256_set1_epi8(120);
  for (int i = 0; i < rows; ++i) {
    const uint8_t* row = row0 + i * row_bytes;
    for (int64_t b = 0; b < 2 * pairs; ++b) {
      const int64_t pr = i * pairs + b / 2;
      const int half = static_cast<int>(b % 2);
      uint8_t* qo = q + pr * 64 + 32 * half;
      float* dwo = dw + pr * 16 + 8 * half;
      if (b >= blocks) {
        Store32(qo, k80);  // w_int 0.
        _mm256_storeu_ps(dwo, _mm256_setzero_ps());
        if (q41) _mm256_storeu_ps(mw + pr * 16 + 8 * half, _mm256_setzero_ps());
        continue;
      }
      const uint8_t* blk = row + b * bb;
      if (q80) {
        Store32(qo, _mm256_xor_si256(Load32(blk + 2), k80));
      } else if (q40) {
        Store32(qo, _mm256_add_epi8(Nibbles16(blk + 2), k120));  // q - 8 + 128.
      } else {
        Store32(qo, _mm256_xor_si256(Nibbles16(blk + 4), k80));
        _mm256_storeu_ps(mw + pr * 16 + 8 * half, _mm256_set1_ps(Half(blk + 2)));
      }
      _mm256_storeu_ps(dwo, _mm256_set1_ps(Half(blk)));
    }
  }
  return true;
}

bool UnpackKAvx2(GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows, int64_t blocks,
                 uint8_t* q, int32_t* sc, int16_t* mn, float* d, float* dmin) {
  if (type != GgmlType::kQ4_K && type != GgmlType::kQ5_K && type != GgmlType::kQ6_K) return false;
  const int bb = quant::Traits(type).block_bytes;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int i = 0; i < rows; ++i) {
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = row0 + i * row_bytes + b * bb;
      const int64_t wb = i * blocks + b;
      uint8_t* qo = q + wb * 256;
      int32_t* sco = sc + wb * 64;
      int16_t* mno = mn + wb * 16;
      if (type == GgmlType::kQ6_K) {
        const auto* x = reinterpret_cast<const quant::BlockQ6_K*>(blk);
        const __m256i k03 = _mm256_set1_epi8(0x03), k30 = _mm256_set1_epi8(0x30);
        for (int h = 0; h < 2; ++h) {
          const __m256i ql0 = Load32(x->ql + 64 * h), ql1 = Load32(x->ql + 64 * h + 32);
          const __m256i qh = Load32(x->qh + 32 * h);
          uint8_t* o = qo + 128 * h;
          Store32(o, _mm256_or_si256(_mm256_and_si256(ql0, low4),
                                     _mm256_slli_epi16(_mm256_and_si256(qh, k03), 4)));
          Store32(o + 32, _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                          _mm256_and_si256(_mm256_slli_epi16(qh, 2), k30)));
          Store32(o + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                          _mm256_and_si256(qh, k30)));
          Store32(o + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), k30)));
        }
        const __m128i s8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales));
        const __m256i s16 = _mm256_cvtepi8_epi16(s8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(mno), _mm256_slli_epi16(s16, 5));
        // Chunk c: lanes 0-3, 4-7, 8-11, 12-15 take sub-blocks 4c .. 4c + 3.
        for (int c = 0; c < 4; ++c) {
          for (int half = 0; half < 2; ++half) {
            const int s0 = 4 * c + 2 * half;
            const __m256i v = _mm256_setr_epi32(x->scales[s0], x->scales[s0], x->scales[s0],
                                                x->scales[s0], x->scales[s0 + 1], x->scales[s0 + 1],
                                                x->scales[s0 + 1], x->scales[s0 + 1]);
            const __m256i pair = _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xffff)),
                                                 _mm256_slli_epi32(v, 16));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(sco + 16 * c + 8 * half), pair);
          }
        }
        d[wb] = dmin[wb] = Half(blk + 208);
        continue;
      }
      const bool q5 = type == GgmlType::kQ5_K;
      const uint8_t* scales = blk + 4;
      const uint8_t* qs = q5 ? blk + 48 : blk + 16;
      uint8_t sm[16];
      ScalesMinsK4(scales, sm);
      __m256i hbits = _mm256_setzero_si256();
      if (q5) hbits = Load32(blk + 16);
      const __m256i k10 = _mm256_set1_epi8(0x10);
      for (int c = 0; c < 4; ++c) {
        const __m256i v = Load32(qs + 32 * c);
        __m256i lo = _mm256_and_si256(v, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        if (q5) {
          const __m256i bit_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * c)));
          const __m256i bit_hi = _mm256_set1_epi8(static_cast<char>(1 << (2 * c + 1)));
          lo = _mm256_or_si256(
              lo,
              _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit_lo), bit_lo), k10));
          hi = _mm256_or_si256(
              hi,
              _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit_hi), bit_hi), k10));
        }
        Store32(qo + 64 * c, lo);
        Store32(qo + 64 * c + 32, hi);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(sco + 16 * c),
                            _mm256_set1_epi32(sm[2 * c] * 0x10001));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(sco + 16 * c + 8),
                            _mm256_set1_epi32(sm[2 * c + 1] * 0x10001));
      }
      const __m128i m8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mno),
                          _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)));
      d[wb] = Half(blk);
      dmin[wb] = Half(blk + 2);
    }
  }
  return true;
}

}  // namespace tessera::runtime::cpu
