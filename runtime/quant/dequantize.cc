#include "runtime/quant/dequantize.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/bf16.h"

// NOTE: this file is compiled with -ffp-contract=off (BUILD): ggml's reference library rounds
// d * q and the following subtraction separately, and a fused multiply-add would differ in the
// last bit.

namespace tessera::runtime::quant {

void DequantizeRowF16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFloat(src[i]);
}

void DequantizeRowBF16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(src[i]);
}

void DequantizeRowQ4_0(const BlockQ4_0* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, dst += kQK) {
    const float d = Fp16ToFloat(src[b].d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int x0 = (src[b].qs[j] & 0xf) - 8;
      const int x1 = (src[b].qs[j] >> 4) - 8;
      dst[j] = static_cast<float>(x0) * d;
      dst[j + kQK / 2] = static_cast<float>(x1) * d;
    }
  }
}

void DequantizeRowQ4_1(const BlockQ4_1* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, dst += kQK) {
    const float d = Fp16ToFloat(src[b].d);
    const float m = Fp16ToFloat(src[b].m);
    for (int j = 0; j < kQK / 2; ++j) {
      const int x0 = src[b].qs[j] & 0xf;
      const int x1 = src[b].qs[j] >> 4;
      dst[j] = static_cast<float>(x0) * d + m;
      dst[j + kQK / 2] = static_cast<float>(x1) * d + m;
    }
  }
}

void DequantizeRowQ5_0(const BlockQ5_0* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, dst += kQK) {
    const float d = Fp16ToFloat(src[b].d);
    uint32_t qh;
    std::memcpy(&qh, src[b].qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = ((qh >> j) << 4) & 0x10;
      const int h1 = (qh >> (j + 12)) & 0x10;
      const int x0 = ((src[b].qs[j] & 0xf) | h0) - 16;
      const int x1 = ((src[b].qs[j] >> 4) | h1) - 16;
      dst[j] = static_cast<float>(x0) * d;
      dst[j + kQK / 2] = static_cast<float>(x1) * d;
    }
  }
}

void DequantizeRowQ5_1(const BlockQ5_1* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, dst += kQK) {
    const float d = Fp16ToFloat(src[b].d);
    const float m = Fp16ToFloat(src[b].m);
    uint32_t qh;
    std::memcpy(&qh, src[b].qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = ((qh >> j) << 4) & 0x10;
      const int h1 = (qh >> (j + 12)) & 0x10;
      const int x0 = (src[b].qs[j] & 0xf) | h0;
      const int x1 = (src[b].qs[j] >> 4) | h1;
      dst[j] = static_cast<float>(x0) * d + m;
      dst[j + kQK / 2] = static_cast<float>(x1) * d + m;
    }
  }
}

void DequantizeRowQ8_0(const BlockQ8_0* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, dst += kQK) {
    const float d = Fp16ToFloat(src[b].d);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(src[b].qs[j]) * d;
  }
}

void DequantizeRowQ4_K(const BlockQ4_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const BlockQ4_K& x = src[b];
    const float d = Fp16ToFloat(x.d);
    const float dmin = Fp16ToFloat(x.dmin);
    const uint8_t* q = x.qs;
    for (int j = 0; j < 4; ++j, q += 32) {
      uint8_t sc, m;
      GetScaleMinK4(2 * j, x.scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      GetScaleMinK4(2 * j + 1, x.scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *dst++ = d1 * static_cast<float>(q[l] & 0xf) - m1;
      for (int l = 0; l < 32; ++l) *dst++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void DequantizeRowQ5_K(const BlockQ5_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const BlockQ5_K& x = src[b];
    const float d = Fp16ToFloat(x.d);
    const float dmin = Fp16ToFloat(x.dmin);
    const uint8_t* ql = x.qs;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 4; ++j, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      GetScaleMinK4(2 * j, x.scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      GetScaleMinK4(2 * j + 1, x.scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) {
        *dst++ = d1 * static_cast<float>((ql[l] & 0xf) + (x.qh[l] & u1 ? 16 : 0)) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        *dst++ = d2 * static_cast<float>((ql[l] >> 4) + (x.qh[l] & u2 ? 16 : 0)) - m2;
      }
    }
  }
}

void DequantizeRowQ6_K(const BlockQ6_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const BlockQ6_K& x = src[b];
    const float d = Fp16ToFloat(x.d);
    const uint8_t* ql = x.ql;
    const uint8_t* qh = x.qh;
    const int8_t* sc = x.scales;
    for (int half = 0; half < 2; ++half, dst += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<int8_t>((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<int8_t>((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        // (d * scale) * q, left to right as ggml writes it.
        dst[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        dst[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        dst[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        dst[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void DequantizeRowQ8_K(const BlockQ8_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    for (int j = 0; j < kQKK; ++j) *dst++ = src[b].d * static_cast<float>(src[b].qs[j]);
  }
}

absl::Status DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  const TypeTraits& t = Traits(type);
  if (!t.dequantizable || FindTypeTraits(static_cast<uint32_t>(type)) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights of type ", TypeName(type),
                     " cannot be dequantized (supported: f32, "
                     "f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K)"));
  }
  if (n < 0 || n % t.block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat(n, " values are not a whole number of ", t.name,
                                                   " blocks (", t.block_elems, " values each)"));
  }
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case GgmlType::kF16:
      DequantizeRowF16(static_cast<const uint16_t*>(src), dst, n);
      break;
    case GgmlType::kBF16:
      DequantizeRowBF16(static_cast<const uint16_t*>(src), dst, n);
      break;
    case GgmlType::kQ4_0:
      DequantizeRowQ4_0(static_cast<const BlockQ4_0*>(src), dst, n);
      break;
    case GgmlType::kQ4_1:
      DequantizeRowQ4_1(static_cast<const BlockQ4_1*>(src), dst, n);
      break;
    case GgmlType::kQ5_0:
      DequantizeRowQ5_0(static_cast<const BlockQ5_0*>(src), dst, n);
      break;
    case GgmlType::kQ5_1:
      DequantizeRowQ5_1(static_cast<const BlockQ5_1*>(src), dst, n);
      break;
    case GgmlType::kQ8_0:
      DequantizeRowQ8_0(static_cast<const BlockQ8_0*>(src), dst, n);
      break;
    case GgmlType::kQ4_K:
      DequantizeRowQ4_K(static_cast<const BlockQ4_K*>(src), dst, n);
      break;
    case GgmlType::kQ5_K:
      DequantizeRowQ5_K(static_cast<const BlockQ5_K*>(src), dst, n);
      break;
    case GgmlType::kQ6_K:
      DequantizeRowQ6_K(static_cast<const BlockQ6_K*>(src), dst, n);
      break;
    case GgmlType::kQ8_K:
      DequantizeRowQ8_K(static_cast<const BlockQ8_K*>(src), dst, n);
      break;
    default:
      return absl::InternalError("dequantizable type without a decoder");
  }
  return absl::OkStatus();
}

}  // namespace tessera::runtime::quant
