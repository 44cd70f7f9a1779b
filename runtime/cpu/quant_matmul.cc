#include "runtime/cpu/quant_matmul.h"

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

// ggml's x86 quantize_row_q8_0 for one block of 32, plus the block's sum for the _1 formats.
void QuantizeBlockQ8_0(const float* x, int8_t* q, float* d, float* t) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float dq = quant::Fp16ToFloat(quant::FloatToFp16(amax / 127.0f));
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int32_t sum = 0;
  for (int i = 0; i < 32; ++i) {
    q[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));
    sum += q[i];
  }
  *d = dq;
  *t = dq * static_cast<float>(sum);
}

void QuantizeRowQ8_K(const float* x, int64_t K, int8_t* q, float* d, int16_t* bsums) {
  quant::BlockQ8_K b;
  for (int64_t s = 0; s < K / 256; ++s) {
    quant::QuantizeRowQ8_K(x + 256 * s, &b, 256);
    std::memcpy(q + 256 * s, b.qs, 256);
    if (b.d == 0.0f) std::memset(b.bsums, 0, sizeof(b.bsums));
    std::memcpy(bsums + 16 * s, b.bsums, sizeof(b.bsums));
    d[s] = b.d;
  }
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

TileA UnpackA(GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows, int64_t blocks,
              TileABuffer* buf) {
  const int64_t pairs = (blocks + 1) / 2;
  const int block_bytes = quant::Traits(type).block_bytes;
  const bool has_min = type == GgmlType::kQ4_1 || type == GgmlType::kQ5_1;
  buf->q.resize(rows * pairs * 64);
  buf->dw.resize(rows * pairs * 16);
  if (has_min) buf->mw.resize(rows * pairs * 16);
  for (int i = 0; i < rows; ++i) {
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

TileK UnpackK(GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows, int64_t blocks,
              TileKBuffer* buf) {
  const int block_bytes = quant::Traits(type).block_bytes;
  buf->q.resize(rows * blocks * 256);
  buf->sc.resize(rows * blocks * 64);
  buf->mn.resize(rows * blocks * 16);
  buf->d.resize(rows * blocks);
  buf->dmin.resize(rows * blocks);
  for (int i = 0; i < rows; ++i) {
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
  qs_.resize(T * padded);
  d_.resize(T * nb);
  if (q80) {
    t_.resize(T * nb);
  } else {
    bsums_.resize(T * padded / 16);
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
  for (int64_t n = n0; n < n1; n += kTileRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kTileRows, n1 - n));
    float* yt = y + t0 * ldy + n;
    if (family == DotFamily::kBlocks32) {
      const TileA tile = UnpackA(w.type, w.row(n), row_bytes, rows, w.cols / 32, &tile_a);
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
      const TileK tile = UnpackK(w.type, w.row(n), row_bytes, rows, w.cols / 256, &tile_k);
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
