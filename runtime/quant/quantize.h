// Reference quantizers: fp32 rows to ggml blocks, the same algorithms as ggml's quantize_row_*_ref
// (what llama-quantize writes when it has no importance matrix), so a GGUF Tessera writes holds the
// bytes llama.cpp would have written for the same values (checked against llama.cpp's library in
// quantize_test). Slow and exact: for writing files and for tests, not for activations on the hot
// path (the CPU kernels have their own activation quantizers).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime::quant {

// Writes n / block_elems blocks of `type` for the `n` values of src to dst (RowBytes(type, n)
// bytes). Types: f32, f16, bf16, q4_0, q4_1, q8_0, q4_K, q5_K, q6_K, q8_K. InvalidArgument for
// another type or an n that is not a whole number of blocks.
absl::Status QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n);
// Whether QuantizeRow writes this type.
bool CanQuantize(GgmlType type);

// The per-format quantizers; `n` must be a multiple of the block (unchecked).
void QuantizeRowQ4_0(const float* x, BlockQ4_0* y, int64_t n);
void QuantizeRowQ4_1(const float* x, BlockQ4_1* y, int64_t n);
void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t n);
void QuantizeRowQ4_K(const float* x, BlockQ4_K* y, int64_t n);
void QuantizeRowQ5_K(const float* x, BlockQ5_K* y, int64_t n);
void QuantizeRowQ6_K(const float* x, BlockQ6_K* y, int64_t n);
void QuantizeRowQ8_K(const float* x, BlockQ8_K* y, int64_t n);

}  // namespace tessera::runtime::quant
