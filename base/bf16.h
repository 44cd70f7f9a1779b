// bfloat16 <-> float, the one conversion every package uses (safetensors and GGUF loading, the
// model generator, the CUDA kernels' host side). bf16 is the top half of an IEEE float: 1 sign, 8
// exponent, 7 mantissa bits.
#pragma once

#include <cstdint>
#include <cstring>

namespace tessera {

inline float Bf16ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest, ties to even, as PyTorch and __float2bfloat16_rn do; NaN stays a (quiet) NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// The value a float takes after a round trip through bf16.
inline float RoundBf16(float f) { return Bf16ToFloat(FloatToBf16(f)); }

}  // namespace tessera
