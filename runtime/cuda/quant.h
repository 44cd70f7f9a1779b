// Kernels on ggml-quantized weights (quant_formats.h), read as the blocks themselves:
//
//   LaunchDequantizeRows  rows of a quantized matrix -> bf16 (times a scale): the embedding gather
//                         of a quantized embedding table, and the dequantize pass that feeds a
//                         prefill chunk's projection through cuBLASLt (a slab of rows at a time
//                         into a fixed scratch: the bf16 copy of a whole matrix never exists).
//                         Each value is computed exactly as ggml's dequantize_row_* computes it in
//                         fp32 (same operations, no fused multiply-add), then rounded once to bf16.
//   LaunchQuantizeQ8_1    bf16 activations -> q8_1 blocks: per 32 values d = max|x| / 127,
//                         q = round(x / d) as int8, s = d * sum(q) (llama.cpp's quantize_q8_1).
//   LaunchQuantGemv       out[m, n] = x[m, k] . W[n, k] for m <= kMaxGemvRows activation rows
//                         given as q8_1 blocks: int8 dot products (dp4a) of the weights' integer
//                         quants with the activations' per 32-value sub-block, scaled by the
//                         block's float scales; fp32 accumulation. The weights are read once for
//                         all m rows.
//
// Why q8_1 activations in the GEMV (the choice llama.cpp's mmvq makes): decode is bound by reading
// the weights; with int8 activations one dp4a does four multiply-adds on integers that come
// straight from the blocks, so the ALU work per weight byte stays well under what the memory
// delivers even for 4-bit weights at 8 rows, where unpacking to floats and fp32 FMAs would not.
// Accuracy: the activation rounding adds at most d/2 = max|x| / 254 per value of a 32-value
// sub-block, an error of the same order as the bf16 rounding of the activations the runner
// already carries (2^-9 relative), and smaller than the CPU reference path's own activation
// quantization for the K-quants (ggml's Q8_K: one scale per 256 values). The tests bound it
// exactly: |GEMV - dequantized weights . x| <= sum_i |w_i| d_i / 2 (+ fp32 rounding).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/quant_formats.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

// One q8_1 block of activations (40 bytes): 32 int8 quants with their scale and d * sum(quants).
struct Q8_1Block {
  float d = 0.0f;
  float s = 0.0f;
  int8_t qs[32] = {};
};
static_assert(sizeof(Q8_1Block) == 40, "Q8_1Bytes assumes 40-byte blocks");

struct DequantizeParams {
  WeightFormat format = WeightFormat::kQ8_0;
  const void* w = nullptr;  // [w_rows, cols] as blocks, RowBytes(format, cols) per row.
  int64_t w_rows = 0;
  int64_t cols = 0;
  // Which rows: ids[r] (a gather; negative: leave output row r untouched, as a media row of the
  // embedding; >= w_rows: zeros), or, when ids is null, rows [row0, row0 + rows).
  const int32_t* ids = nullptr;
  int64_t row0 = 0;
  int32_t rows = 0;
  float scale = 1.0f;   // out = bf16(w * scale), one rounding (the embedding scale; 1 otherwise).
  Bf16* out = nullptr;  // [rows, cols] with out_row_stride.
  int64_t out_row_stride = 0;
};

struct QuantizeQ8_1Params {
  const Bf16* x = nullptr;  // [rows, cols] with x_row_stride.
  int64_t x_row_stride = 0;
  int32_t rows = 0;
  int64_t cols = 0;          // A multiple of 32.
  Q8_1Block* out = nullptr;  // [rows, cols / 32].
};

struct QuantGemvParams {
  WeightFormat format = WeightFormat::kQ8_0;
  const void* w = nullptr;  // [n, k] as blocks.
  int64_t n = 0;
  int64_t k = 0;
  const Q8_1Block* xq = nullptr;  // [m, k / 32]
  int32_t m = 0;                  // 1 .. kMaxGemvRows
  void* out = nullptr;            // [m, n] with ldo: Bf16 (rounded once) or float.
  int64_t ldo = 0;
  bool out_fp32 = false;
};

absl::Status LaunchDequantizeRows(const DequantizeParams& p, cudaStream_t stream);
absl::Status LaunchQuantizeQ8_1(const QuantizeQ8_1Params& p, cudaStream_t stream);
absl::Status LaunchQuantGemv(const QuantGemvParams& p, cudaStream_t stream);

}  // namespace tessera::runtime::cuda
