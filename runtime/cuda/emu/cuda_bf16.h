// CPU emulation of the bf16 type and conversions from CUDA's cuda_bf16.h (see cuda_runtime.h here).
#pragma once

#include <cstdint>

#include "runtime/cuda/bf16.h"
#include "runtime/cuda/emu/cuda_runtime.h"

struct __nv_bfloat16 {
  uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 b) {
  return tessera::runtime::cuda::Bf16ToFloat(tessera::runtime::cuda::Bf16{b.bits});
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __nv_bfloat16{tessera::runtime::cuda::FloatToBf16(f).bits};
}
inline float2 __bfloat1622float2(__nv_bfloat162 h) {
  return float2{__bfloat162float(h.x), __bfloat162float(h.y)};
}
