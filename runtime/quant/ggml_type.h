// ggml's tensor types as GGUF files store them: the type ids, the block layouts (byte for byte as
// llama.cpp's ggml-common.h declares them), and per-type traits (elements and bytes per block,
// name).
//
// A quantized row of `cols` values is cols / block_elems blocks stored back to back; a matrix is
// rows such rows, so a row starts at r * RowBytes(type, cols) (GGUF pads nothing inside a tensor).
// Every multi-byte field is little-endian, as on the machines this runs on.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/statusor.h"

namespace tessera::runtime::quant {

// The ids ggml.h gives them (and GGUF's tensor-info "type" field). Ids 4, 5, 31-33 and 36-38 were
// removed from ggml and are refused.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
  kQ2_0 = 42,
};

// Elements per block of the "_0/_1" formats and of the K-quant super-blocks.
inline constexpr int kQK = 32;
inline constexpr int kQKK = 256;
// Bytes of the packed 6-bit scales and mins of Q4_K / Q5_K.
inline constexpr int kKScaleSize = 12;

// Block layouts. `d`, `m`, `dmin` are IEEE half floats (ggml_half); the K-quant comments give the
// value each element stands for.

// x = d * (q - 8); q is 4 bits, element j in the low nibble of qs[j], element j + 16 in the high
// one.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 layout");

// x = d * q + m.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 layout");

// x = d * (q - 16); q's 5th bit of element j is bit j of qh (little-endian uint32).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 layout");

// x = d * q + m, q 5 bits.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "block_q5_1 layout");

// x = d * q.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 layout");

// Q8_0 plus s = d * sum(qs) (an activation format of ggml's; only its layout is here).
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36, "block_q8_1 layout");

// 16 sub-blocks of 16: x = d * (scales[i] & 15) * q - dmin * (scales[i] >> 4), q 2 bits.
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84, "block_q2_K layout");

// 16 sub-blocks of 16, 6-bit scales, q 3 bits (2 in qs, 1 in hmask).
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110, "block_q3_K layout");

// 8 sub-blocks of 32: x = d * sc[i] * q - dmin * m[i]; sc, m 6 bits packed in `scales`
// (GetScaleMinK4), q 4 bits: in each 64-element half-pair, elements 0-31 in the low nibbles of 32
// bytes and 32-63 in their high nibbles.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K layout");

// As Q4_K with a 5th bit per element in qh (bit 2i of qh[l] for the low nibble of pair i, 2i+1 for
// the high one).
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K layout");

// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q 6 bits (4 in ql, 2 in qh).
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K layout");

// The activation format the K-quants pair with: x = d * q, d an fp32, bsums[i] the sum of
// qs[16i..16i+15].
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ8_K) == 292, "block_q8_K layout");

struct TypeTraits {
  GgmlType type;
  const char* name;  // ggml's spelling: "f32", "q4_K", ...
  int32_t block_elems;
  int32_t block_bytes;
  // Whether DequantizeRow (dequantize.h) reads it. The others are recognised (so a file using them
  // gets a precise error and correct sizes) but not decoded.
  bool dequantizable;
};

// The traits of a type id as a GGUF file stores it; nullptr for an id ggml does not define (or has
// removed).
const TypeTraits* FindTypeTraits(uint32_t id);
// Same for a GgmlType (never null for an enumerator).
const TypeTraits& Traits(GgmlType type);
// "q4_K", or "type 77" for an unknown id.
std::string TypeName(uint32_t id);
inline std::string TypeName(GgmlType type) { return TypeName(static_cast<uint32_t>(type)); }

// Bytes of one row of `cols` values. InvalidArgument when cols is negative or not a multiple of the
// type's block, naming both; also for unknown ids and on overflow.
absl::StatusOr<int64_t> RowBytes(GgmlType type, int64_t cols);
// Bytes of a [rows, cols] matrix (rows * RowBytes), checked for overflow.
absl::StatusOr<int64_t> MatrixBytes(GgmlType type, int64_t rows, int64_t cols);

// IEEE binary16 <-> binary32. Fp16ToFloat is exact (a signalling NaN comes back quiet); FloatToFp16
// rounds to nearest even, overflows to infinity and keeps NaN a quiet NaN (0x7e00 with the sign),
// as ggml's GGML_FP32_TO_FP16.
inline float Fp16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    // Infinity, or a NaN made quiet (as an fp32 multiply would, which is how ggml converts).
    bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal: normalise.
    int e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t FloatToFp16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // Rounds to >= 65536: infinity.
  if (abs < 0x38800000u) {                        // Below 2^-14: fp16 subnormal or zero.
    if (abs < 0x33000000u) return sign;           // Below half the smallest subnormal.
    const uint32_t e = abs >> 23;                 // 102..112
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24: value = mant >> shift subnormal units.
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  uint32_t h = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ffu);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // A carry into the exponent is right.
  return sign | static_cast<uint16_t>(h);
}

}  // namespace tessera::runtime::quant
