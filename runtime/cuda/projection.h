// The CUDA runner's projections: out[m, n] = x[m, k] W[n, k]^T for a DeviceMatrix of any formats
// (cuda_weights.h), each part writing its own output columns:
//   - a bf16 part: one cuBLASLt GEMM (gemm.h);
//   - a quantized part at few rows (PreferGemv: decode): the activations are quantized to q8_1
//     once per call and the GEMV (quant.h) reads the blocks, kMaxGemvRows rows per pass;
//   - a quantized part at many rows (a prefill chunk, the logits of a large batch): slabs of its
//     rows are dequantized into the bf16 scratch and multiplied by cuBLASLt, slab after slab, so
//     the bf16 copy of a whole matrix never exists.
// Everything is enqueued on `stream` without host synchronisation or allocation (capturable).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/quant.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

class Projector {
 public:
  // `dequant_scratch`: bytes of bf16 scratch for the slabs (at least one row of the widest
  // quantized matrix); `xq`: room for the q8_1 blocks of xq_rows rows of xq_cols values. Both may
  // be null when no matrix is quantized.
  Projector(GemmRunner* gemm, Bf16* dequant_scratch, int64_t dequant_scratch_bytes, Q8_1Block* xq,
            int64_t xq_rows, int64_t xq_cols)
      : gemm_(gemm),
        scratch_(dequant_scratch),
        scratch_bytes_(dequant_scratch_bytes),
        xq_(xq),
        xq_rows_(xq_rows),
        xq_cols_(xq_cols) {}

  // x [m, w.cols] with row stride ldx (bf16); out [m, w.rows] with row stride ldo, bf16 (rounded
  // once) or fp32.
  absl::Status Run(const Bf16* x, int64_t ldx, const DeviceMatrix& w, void* out, int64_t ldo,
                   int64_t m, bool out_fp32, cudaStream_t stream);

 private:
  GemmRunner* gemm_;
  Bf16* scratch_;
  int64_t scratch_bytes_;
  Q8_1Block* xq_;
  int64_t xq_rows_, xq_cols_;
};

}  // namespace tessera::runtime::cuda
