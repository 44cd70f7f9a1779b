#include "runtime/quant/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/bf16.h"

// NOTE: compiled with -ffp-contract=off (BUILD). The scale searches below compare error sums that
// differ in the last bits; a fused multiply-add anywhere would pick different scales than ggml's
// reference quantizers and so write different bytes.

namespace tessera::runtime::quant {
namespace {

// Round to nearest, ties to even, for |x| < 2^22: adding 1.5 * 2^23 leaves the integer in the low
// mantissa bits (ggml's nearest_int).
inline int NearestInt(float x) {
  const float v = x + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// The best scale for n values quantized to [-nmax, nmax - 1], searched around -nmax / max
// (ggml's make_qx_quants with rmse_type 1 and no importance weights: errors weighted by x^2).
// Writes L[i] = q + nmax; returns the scale.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {  // All zero.
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The best scale and min for n values quantized to [0, nmax] as scale * L + min with a weighted
// squared error, searched over nstep + 1 candidate scales (ggml's make_qkx2_quants, use_mad false).
// Returns the scale; *neg_min = -min (>= 0).
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* neg_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::memcpy(L, Laux, n);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

// The shared part of Q4_K and Q5_K: eight sub-blocks of 32 with (scale, min) pairs quantized to 6
// bits against the block's d and dmin. Fills scales[12], d, dmin and L[256] (values in [0, nmax]).
void QuantizeKScalesMins(const float* x, int nmax, float rmin, int nstep, uint8_t* scales_out,
                         uint16_t* d_out, uint16_t* dmin_out, uint8_t* L) {
  float weights[32];
  uint8_t Laux[32];
  float scales[8], mins[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = MakeQkx2Quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                               0.1f, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; ++j) {
    uint8_t ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    if (j < 4) {
      scales_out[j] = ls;
      scales_out[j + 4] = lm;
    } else {
      scales_out[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      scales_out[j - 4] |= (ls >> 4) << 6;
      scales_out[j] |= (lm >> 4) << 6;
    }
  }
  *d_out = FloatToFp16(max_scale / 63.0f);
  *dmin_out = FloatToFp16(max_min / 63.0f);
  // Requantize every value against the rounded 6-bit scales.
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    if (j < 4) {
      sc = scales_out[j] & 63;
      m = scales_out[j + 4] & 63;
    } else {
      sc = (scales_out[j + 4] & 0xf) | ((scales_out[j - 4] >> 6) << 4);
      m = (scales_out[j + 4] >> 4) | ((scales_out[j] >> 6) << 4);
    }
    const float d = Fp16ToFloat(*d_out) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = Fp16ToFloat(*dmin_out) * static_cast<float>(m);
    for (int i = 0; i < 32; ++i) {
      const int l = NearestInt((x[32 * j + i] + dm) / d);
      L[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

void QuantizeRowQ4_0(const float* x, BlockQ4_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0, max = 0;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = FloatToFp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK / 2 + j] * id;
      const uint8_t q0 = std::min<int8_t>(15, static_cast<int8_t>(x0 + 8.5f));
      const uint8_t q1 = std::min<int8_t>(15, static_cast<int8_t>(x1 + 8.5f));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void QuantizeRowQ4_1(const float* x, BlockQ4_1* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = FloatToFp16(d);
    y[b].m = FloatToFp16(min);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[kQK / 2 + j] - min) * id;
      const uint8_t q0 = std::min<int8_t>(15, static_cast<int8_t>(x0 + 0.5f));
      const uint8_t q1 = std::min<int8_t>(15, static_cast<int8_t>(x1 + 0.5f));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = FloatToFp16(d);
    for (int j = 0; j < kQK; ++j) y[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void QuantizeRowQ4_K(const float* x, BlockQ4_K* y, int64_t n) {
  uint8_t L[kQKK];
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    QuantizeKScalesMins(x, 15, -1.0f, 20, y[b].scales, &y[b].d, &y[b].dmin, L);
    uint8_t* q = y[b].qs;
    for (int j = 0; j < kQKK; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

void QuantizeRowQ5_K(const float* x, BlockQ5_K* y, int64_t n) {
  uint8_t L[kQKK];
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    QuantizeKScalesMins(x, 31, -0.5f, 15, y[b].scales, &y[b].d, &y[b].dmin, L);
    uint8_t* qh = y[b].qh;
    uint8_t* ql = y[b].qs;
    std::memset(qh, 0, kQKK / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int j0 = 0; j0 < kQKK; j0 += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[j0 + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[j0 + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
    }
  }
}

void QuantizeRowQ6_K(const float* x, BlockQ6_K* y, int64_t n) {
  int8_t L[kQKK];
  float scales[kQKK / 16];
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      const float scale = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    if (max_abs_scale < 1e-15f) {
      std::memset(&y[b], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.0f / max_scale;
    y[b].d = FloatToFp16(1 / iscale);
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      y[b].scales[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = Fp16ToFloat(y[b].d) * static_cast<float>(y[b].scales[j]);
      if (d == 0.0f) continue;
      for (int i = 0; i < 16; ++i) {
        const int l = NearestInt(x[16 * j + i] / d);
        L[16 * j + i] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = y[b].ql;
    uint8_t* qh = y[b].qh;
    for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l] & 0xf;
        const uint8_t q2 = L[j + l + 32] & 0xf;
        const uint8_t q3 = L[j + l + 64] & 0xf;
        const uint8_t q4 = L[j + l + 96] & 0xf;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                     ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

void QuantizeRowQ8_K(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    float max = 0, amax = 0;
    for (int j = 0; j < kQKK; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      y[b].d = 0;
      std::memset(y[b].qs, 0, kQKK);
      std::memset(y[b].bsums, 0, sizeof(y[b].bsums));  // ggml leaves them as they were.
      continue;
    }
    // -127 rather than -128: every value fits [-127, 127], so sums of pairs fit int16 (ggml's
    // choice, kept for identical blocks).
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQKK; ++j) {
      y[b].qs[j] = static_cast<int8_t>(std::min(127, NearestInt(iscale * x[j])));
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += y[b].qs[16 * j + i];
      y[b].bsums[j] = static_cast<int16_t>(sum);
    }
    y[b].d = 1 / iscale;
  }
}

bool CanQuantize(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
    case GgmlType::kQ8_K:
      return true;
    default:
      return false;
  }
}

absl::Status QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n) {
  if (!CanQuantize(type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot quantize to ", TypeName(type),
                     " (supported: f32, f16, bf16, q4_0, q4_1, q8_0, q4_K, q5_K, q6_K, q8_K)"));
  }
  const TypeTraits& t = Traits(type);
  if (n < 0 || n % t.block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat(n, " values are not a whole number of ", t.name,
                                                   " blocks (", t.block_elems, " values each)"));
  }
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToFp16(src[i]);
      break;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToBf16(src[i]);
      break;
    case GgmlType::kQ4_0:
      QuantizeRowQ4_0(src, static_cast<BlockQ4_0*>(dst), n);
      break;
    case GgmlType::kQ4_1:
      QuantizeRowQ4_1(src, static_cast<BlockQ4_1*>(dst), n);
      break;
    case GgmlType::kQ8_0:
      QuantizeRowQ8_0(src, static_cast<BlockQ8_0*>(dst), n);
      break;
    case GgmlType::kQ4_K:
      QuantizeRowQ4_K(src, static_cast<BlockQ4_K*>(dst), n);
      break;
    case GgmlType::kQ5_K:
      QuantizeRowQ5_K(src, static_cast<BlockQ5_K*>(dst), n);
      break;
    case GgmlType::kQ6_K:
      QuantizeRowQ6_K(src, static_cast<BlockQ6_K*>(dst), n);
      break;
    case GgmlType::kQ8_K:
      QuantizeRowQ8_K(src, static_cast<BlockQ8_K*>(dst), n);
      break;
    default:
      return absl::InternalError("quantizable type without an encoder");
  }
  return absl::OkStatus();
}

}  // namespace tessera::runtime::quant
