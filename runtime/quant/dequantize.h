// Reference dequantization: ggml tensor rows back to fp32, equal to ggml's dequantize_row_* bit for
// bit on every block (the same products and sums in the same order, no fused multiply-add; checked
// against llama.cpp's own library in dequantize_test). The kernels never call these on the hot
// path; the loader, the embedding lookup and the tests do.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime::quant {

// Writes `n` values decoded from `src` (n / block_elems blocks of `type`) to dst.
// InvalidArgument when the type is not dequantizable (Traits().dequantizable) or n is not a whole
// number of blocks.
absl::Status DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n);

// The per-format decoders; `n` must be a multiple of the block (unchecked).
void DequantizeRowF16(const uint16_t* src, float* dst, int64_t n);
void DequantizeRowBF16(const uint16_t* src, float* dst, int64_t n);
void DequantizeRowQ4_0(const BlockQ4_0* src, float* dst, int64_t n);
void DequantizeRowQ4_1(const BlockQ4_1* src, float* dst, int64_t n);
void DequantizeRowQ5_0(const BlockQ5_0* src, float* dst, int64_t n);
void DequantizeRowQ5_1(const BlockQ5_1* src, float* dst, int64_t n);
void DequantizeRowQ8_0(const BlockQ8_0* src, float* dst, int64_t n);
void DequantizeRowQ4_K(const BlockQ4_K* src, float* dst, int64_t n);
void DequantizeRowQ5_K(const BlockQ5_K* src, float* dst, int64_t n);
void DequantizeRowQ6_K(const BlockQ6_K* src, float* dst, int64_t n);
void DequantizeRowQ8_K(const BlockQ8_K* src, float* dst, int64_t n);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block.
inline void GetScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace tessera::runtime::quant
