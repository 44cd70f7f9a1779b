// A host-side bfloat16 storage type shared by the kernel headers and their tests, so that C++ code
// that never includes CUDA headers can still declare, fill and read bf16 device buffers.
// Bit-identical to __nv_bfloat16 (1 sign, 8 exponent, 7 mantissa bits); the .cu files
// reinterpret_cast between the two.
#pragma once

#include <cstdint>
#include <cstring>

#include "base/bf16.h"

namespace tessera::runtime::cuda {

struct alignas(2) Bf16 {
  uint16_t bits = 0;
};
static_assert(sizeof(Bf16) == 2, "Bf16 must match __nv_bfloat16");

// base/bf16.h's conversions on the storage type.
inline Bf16 FloatToBf16(float f) { return Bf16{::tessera::FloatToBf16(f)}; }
inline float Bf16ToFloat(Bf16 b) { return ::tessera::Bf16ToFloat(b.bits); }
inline float RoundBf16(float f) { return ::tessera::RoundBf16(f); }

}  // namespace tessera::runtime::cuda
