#include "runtime/cpu/quant_matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/cpu/thread_pool.h"
#include "runtime/quant/dequantize.h"
#include "runtime/quant/quantize.h"

namespace tessera::runtime::cpu {

using quant::GgmlType;

DotFamily FamilyOf(GgmlType type) {
  switch (type) {
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
      return DotFamily::kBlocks32;
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
      return DotFamily::kSuperBlocks;
    default:
      return DotFamily::kFloat;
  }
}

namespace {

inline float MaxAbs8(__m256 v) {
  v = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline int32_t Sum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Rounds 32 floats times `scale` to the nearest integer (ties to even) into int8, returning the
// int32 vectors too.
inline void Round32(const float* x, __m256 scale, int8_t* q, __m256i out[4]) {
  for (int k = 0; k < 4; ++k) {
    out[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), scale),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  // Pack to int8 in element order (the packs interleave 128-bit lanes; the permute undoes it).
  const __m256i a = _mm256_packs_epi32(out[0], out[1]);
  const __m256i b = _mm256_packs_epi32(out[2], out[3]);
  const __m256i p = _mm256_packs_epi16(a, b);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// ggml's x86 quantize_row_q8_0 for one block of 32 (scale amax / 127 stored as fp16, values
// rounded to nearest even at 127 / amax), plus t = d * sum(q) for the _1 formats.
void QuantizeBlockQ8_0(const float* x, int8_t* q, float* d, float* t) {
  __m256 m = _mm256_loadu_ps(x);
  for (int k = 1; k < 4; ++k) {
    m = _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), m),
                      _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + 8 * k)));
  }
  const float amax = MaxAbs8(m);
  const float dq = quant::Fp16ToFloat(quant::FloatToFp16(amax / 127.0f));
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  __m256i v[4];
  Round32(x, _mm256_set1_ps(id), q, v);
  const int32_t sum =
      Sum8(_mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3])));
  *d = dq;
  *t = dq * static_cast<float>(sum);
}

// ggml's quantize_row_q8_K_ref (what its CPU backend uses): scale -127 / (the value of largest
// magnitude, the first one on ties), nearest-even rounding, sums of 16.
void QuantizeRowQ8_K(const float* x, int64_t K, int8_t* q, float* d, int16_t* bsums) {
  for (int64_t s = 0; s < K / 256; ++s, x += 256, q += 256, bsums += 16) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) {
      m = _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + 8 * k)));
    }
    const float amax = MaxAbs8(m);
    if (amax == 0.0f) {
      d[s] = 0.0f;
      std::memset(q, 0, 256);
      std::memset(bsums, 0, 32);
      continue;
    }
    float max = 0.0f;
    for (int j = 0; j < 256; ++j) {
      if (std::fabs(x[j]) == amax) {
        max = x[j];
        break;
      }
    }
    const float iscale = -127.0f / max;
    for (int b = 0; b < 8; ++b) {
      __m256i v[4];
      Round32(x + 32 * b, _mm256_set1_ps(iscale), q + 32 * b, v);
      bsums[2 * b] = static_cast<int16_t>(Sum8(_mm256_add_epi32(v[0], v[1])));
      bsums[2 * b + 1] = static_cast<int16_t>(Sum8(_mm256_add_epi32(v[2], v[3])));
    }
    d[s] = 1 / iscale;
  }
}

// Grows a scratch vector without ever shrinking it: matrices of different widths alternate, and
// std::vector::resize would zero the regrown part every time.
template <typename T>
void Reserve(std::vector<T>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(n);
}

// --- Unpacking R weight rows into a tile ------------------------------------------------------

struct TileABuffer {
  std::vector<uint8_t> q;
  std::vector<float> dw, mw;
};

struct TileKBuffer {
  std::vector<uint8_t> q;
  std::vector<int32_t> sc;
  std::vector<int16_t> mn;
  std::vector<float> d, dmin;
};

// The 32 signed values of one block and its scale (and min).
void DecodeBlock32(GgmlType type, const uint8_t* block, int8_t* w, float* d, float* m) {
  switch (type) {
    case GgmlType::kQ8_0: {
      const auto* b = reinterpret_cast<const quant::BlockQ8_0*>(block);
      std::memcpy(w, b->qs, 32);
      *d = quant::Fp16ToFloat(b->d);
      *m = 0.0f;
      return;
    }
    case GgmlType::kQ4_0: {
      const auto* b = reinterpret_cast<const quant::BlockQ4_0*>(block);
      for (int k = 0; k < 16; ++k) {
        w[k] = static_cast<int8_t>((b->qs[k] & 0xf) - 8);
        w[k + 16] = static_cast<int8_t>((b->qs[k] >> 4) - 8);
      }
      *d = quant::Fp16ToFloat(b->d);
      *m = 0.0f;
      return;
    }
    case GgmlType::kQ4_1: {
      const auto* b = reinterpret_cast<const quant::BlockQ4_1*>(block);
      for (int k = 0; k < 16; ++k) {
        w[k] = static_cast<int8_t>(b->qs[k] & 0xf);
        w[k + 16] = static_cast<int8_t>(b->qs[k] >> 4);
      }
      *d = quant::Fp16ToFloat(b->d);
      *m = quant::Fp16ToFloat(b->m);
      return;
    }
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1: {
      const bool q51 = type == GgmlType::kQ5_1;
      const uint8_t* qs = q51 ? reinterpret_cast<const quant::BlockQ5_1*>(block)->qs
                              : reinterpret_cast<const quant::BlockQ5_0*>(block)->qs;
      const uint8_t* qhp = q51 ? reinterpret_cast<const quant::BlockQ5_1*>(block)->qh
                               : reinterpret_cast<const quant::BlockQ5_0*>(block)->qh;
      uint32_t qh;
      std::memcpy(&qh, qhp, 4);
      const int offset = q51 ? 0 : 16;
      for (int k = 0; k < 16; ++k) {
        w[k] = static_cast<int8_t>(((qs[k] & 0xf) | (((qh >> k) & 1) << 4)) - offset);
        w[k + 16] = static_cast<int8_t>(((qs[k] >> 4) | (((qh >> (k + 16)) & 1) << 4)) - offset);
      }
      uint16_t dh, mh = 0;
      std::memcpy(&dh, block, 2);
      if (q51) std::memcpy(&mh, block + 2, 2);
      *d = quant::Fp16ToFloat(dh);
      *m = quant::Fp16ToFloat(mh);
      return;
    }
    default:
      std::memset(w, 0, 32);
      *d = *m = 0.0f;
  }
}

TileA UnpackA(KernelPath path, GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows,
              int64_t blocks, TileABuffer* buf) {
  const int64_t pairs = (blocks + 1) / 2;
  const int block_bytes = quant::Traits(type).block_bytes;
  const bool has_min = type == GgmlType::kQ4_1 || type == GgmlType::kQ5_1;
  Reserve(&buf->q, rows * pairs * 64);
  Reserve(&buf->dw, rows * pairs * 16);
  if (has_min) Reserve(&buf->mw, rows * pairs * 16);
  const bool fast = path != KernelPath::kPortable &&
                    UnpackAAvx2(type, row0, row_bytes, rows, blocks, buf->q.data(), buf->dw.data(),
                                has_min ? buf->mw.data() : nullptr);
  for (int i = 0; i < rows && !fast; ++i) {
    const uint8_t* row = row0 + i * row_bytes;
    for (int64_t b = 0; b < pairs * 2; ++b) {
      int8_t w[32] = {};
      float d = 0.0f, m = 0.0f;
      if (b < blocks) DecodeBlock32(type, row + b * block_bytes, w, &d, &m);
      const int64_t pr = i * pairs + b / 2;
      const int half = static_cast<int>(b % 2);
      uint8_t* q = buf->q.data() + pr * 64 + 32 * half;
      for (int k = 0; k < 32; ++k) q[k] = static_cast<uint8_t>(w[k] + 128);
      std::fill_n(buf->dw.data() + pr * 16 + 8 * half, 8, d);
      if (has_min) std::fill_n(buf->mw.data() + pr * 16 + 8 * half, 8, m);
    }
  }
  TileA t;
  t.rows = rows;
  t.pairs = pairs;
  t.has_min = has_min;
  t.q = buf->q.data();
  t.dw = buf->dw.data();
  t.mw = has_min ? buf->mw.data() : nullptr;
  return t;
}

// Quants (unsigned), 16 scales and 16 mins of one super-block: x = d * sc * q - dmin * mn.
void DecodeSuperBlock(GgmlType type, const uint8_t* block, uint8_t* q, int16_t* sc, int16_t* mn,
                      float* d, float* dmin) {
  if (type == GgmlType::kQ6_K) {
    const auto* b = reinterpret_cast<const quant::BlockQ6_K*>(block);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b->ql + 64 * h;
      const uint8_t* qh = b->qh + 32 * h;
      uint8_t* out = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        out[l] = (ql[l] & 0xf) | ((qh[l] & 3) << 4);
        out[l + 32] = (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4);
        out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
        out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      }
    }
    for (int s = 0; s < 16; ++s) {
      sc[s] = b->scales[s];
      mn[s] = static_cast<int16_t>(32 * b->scales[s]);
    }
    *d = *dmin = quant::Fp16ToFloat(b->d);
    return;
  }
  // Q4_K / Q5_K.
  const bool q5 = type == GgmlType::kQ5_K;
  const uint8_t* scales = q5 ? reinterpret_cast<const quant::BlockQ5_K*>(block)->scales
                             : reinterpret_cast<const quant::BlockQ4_K*>(block)->scales;
  const uint8_t* qs = q5 ? reinterpret_cast<const quant::BlockQ5_K*>(block)->qs
                         : reinterpret_cast<const quant::BlockQ4_K*>(block)->qs;
  const uint8_t* qh = q5 ? reinterpret_cast<const quant::BlockQ5_K*>(block)->qh : nullptr;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      uint8_t lo = qs[32 * c + l] & 0xf, hi = qs[32 * c + l] >> 4;
      if (q5) {
        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
      }
      q[64 * c + l] = lo;
      q[64 * c + 32 + l] = hi;
    }
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    quant::GetScaleMinK4(j, scales, &s, &m);
    sc[2 * j] = sc[2 * j + 1] = s;
    mn[2 * j] = mn[2 * j + 1] = m;
  }
  uint16_t dh, mh;
  std::memcpy(&dh, block, 2);
  std::memcpy(&mh, block + 2, 2);
  *d = quant::Fp16ToFloat(dh);
  *dmin = quant::Fp16ToFloat(mh);
}

TileK UnpackK(KernelPath path, GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows,
              int64_t blocks, TileKBuffer* buf) {
  const int block_bytes = quant::Traits(type).block_bytes;
  Reserve(&buf->q, rows * blocks * 256);
  Reserve(&buf->sc, rows * blocks * 64);
  Reserve(&buf->mn, rows * blocks * 16);
  Reserve(&buf->d, rows * blocks);
  Reserve(&buf->dmin, rows * blocks);
  const bool fast = path != KernelPath::kPortable &&
                    UnpackKAvx2(type, row0, row_bytes, rows, blocks, buf->q.data(), buf->sc.data(),
                                buf->mn.data(), buf->d.data(), buf->dmin.data());
  for (int i = 0; i < rows && !fast; ++i) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t wb = i * blocks + b;
      int16_t sc[16];
      DecodeSuperBlock(type, row0 + i * row_bytes + b * block_bytes, buf->q.data() + wb * 256, sc,
                       buf->mn.data() + wb * 16, &buf->d[wb], &buf->dmin[wb]);
      for (int c = 0; c < 4; ++c) {
        for (int lane = 0; lane < 16; ++lane) {
          const uint32_t s = static_cast<uint16_t>(sc[4 * c + lane / 4]);
          buf->sc[wb * 64 + 16 * c + lane] = static_cast<int32_t>(s | (s << 16));
        }
      }
    }
  }
  TileK t;
  t.rows = rows;
  t.blocks = blocks;
  t.q = buf->q.data();
  t.sc = buf->sc.data();
  t.mn = buf->mn.data();
  t.d = buf->d.data();
  t.dmin = buf->dmin.data();
  return t;
}

}  // namespace

void ActivationBuffer::Quantize(QuantizedRows::Kind kind, const float* x, int64_t T, int64_t K,
                                int64_t ldx, ThreadPool* pool) {
  const bool q80 = kind == QuantizedRows::Kind::kQ8_0;
  const int64_t padded = q80 ? (K + 63) / 64 * 64 : (K + 255) / 256 * 256;
  const int64_t nb = padded / (q80 ? 32 : 256);
  Reserve(&qs_, T * padded);
  Reserve(&d_, T * nb);
  if (q80) {
    Reserve(&t_, T * nb);
  } else {
    Reserve(&bsums_, T * padded / 16);
  }
  auto body = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int8_t* q = qs_.data() + r * padded;
      float* d = d_.data() + r * nb;
      std::memset(q, 0, padded);
      std::fill_n(d, nb, 0.0f);
      if (q80) {
        float* t = t_.data() + r * nb;
        std::fill_n(t, nb, 0.0f);
        for (int64_t b = 0; b < K / 32; ++b) {
          QuantizeBlockQ8_0(x + r * ldx + 32 * b, q + 32 * b, d + b, t + b);
        }
      } else {
        int16_t* bs = bsums_.data() + r * (padded / 16);
        QuantizeRowQ8_K(x + r * ldx, K, q, d, bs);
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(T, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, K)), body);
  } else {
    body(0, T);
  }
  rows_.kind = kind;
  rows_.rows = T;
  rows_.cols = K;
  rows_.padded_cols = padded;
  rows_.qs = qs_.data();
  rows_.d = d_.data();
  rows_.t = q80 ? t_.data() : nullptr;
  rows_.bsums = q80 ? nullptr : bsums_.data();
}

void QuantMatMulRange(KernelPath path, const QuantizedRows& x, const WeightMatrix& w, int64_t t0,
                      int64_t t1, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  thread_local TileABuffer tile_a;
  thread_local TileKBuffer tile_k;
  const DotFamily family = FamilyOf(w.type);
  const int64_t row_bytes = w.row_bytes();
  if (path == KernelPath::kAvx512 &&
      DirectAvx512(w.type, w.row(n0), row_bytes, static_cast<int>(n1 - n0), w.cols, x, t0, t1,
                   y + t0 * ldy + n0, ldy)) {
    return;
  }
  for (int64_t n = n0; n < n1; n += kTileRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kTileRows, n1 - n));
    float* yt = y + t0 * ldy + n;
    if (family == DotFamily::kBlocks32) {
      const TileA tile = UnpackA(path, w.type, w.row(n), row_bytes, rows, w.cols / 32, &tile_a);
      switch (path) {
        case KernelPath::kAvx512:
          KernelAAvx512(tile, x, t0, t1, yt, ldy);
          break;
        case KernelPath::kAvx2:
          KernelAAvx2(tile, x, t0, t1, yt, ldy);
          break;
        default:
          KernelAPortable(tile, x, t0, t1, yt, ldy);
      }
    } else {
      const TileK tile = UnpackK(path, w.type, w.row(n), row_bytes, rows, w.cols / 256, &tile_k);
      switch (path) {
        case KernelPath::kAvx512:
          KernelKAvx512(tile, x, t0, t1, yt, ldy);
          break;
        case KernelPath::kAvx2:
          KernelKAvx2(tile, x, t0, t1, yt, ldy);
          break;
        default:
          KernelKPortable(tile, x, t0, t1, yt, ldy);
      }
    }
  }
}

}  // namespace tessera::runtime::cpu
