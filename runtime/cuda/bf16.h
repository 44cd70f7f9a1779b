// A host-side bfloat16 storage type shared by the kernel headers and their tests, so that C++ code
// that never includes CUDA headers can still declare, fill and read bf16 device buffers.
// Bit-identical to __nv_bfloat16 (1 sign, 8 exponent, 7 mantissa bits); the .cu files
// reinterpret_cast between the two.
#pragma once

#include <cstdint>
#include <cstring>

namespace tessera::runtime::cuda {

struct alignas(2) Bf16 {
  uint16_t bits = 0;
};
static_assert(sizeof(Bf16) == 2, "Bf16 must match __nv_bfloat16");

// Round to nearest even, as __float2bfloat16_rn does; NaN stays NaN.
inline Bf16 FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  Bf16 b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.bits = static_cast<uint16_t>((u >> 16) | 0x40u);
    return b;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  b.bits = static_cast<uint16_t>(u >> 16);
  return b;
}

inline float Bf16ToFloat(Bf16 b) {
  const uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The value a float takes after a round trip through bf16.
inline float RoundBf16(float f) { return Bf16ToFloat(FloatToBf16(f)); }

}  // namespace tessera::runtime::cuda
