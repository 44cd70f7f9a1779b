// The projections of the forward pass: out = x W^T with bf16 inputs and fp32 accumulation, through
// cuBLASLt on a GPU (gemm.cu) and through a plain host loop under the CPU emulation
// (emu/gemm_emu.cc), behind one interface so the CUDA runner's code is the same in both.
//
// Layout (all row-major, as the weights sit in the checkpoint, torch's [out, in]):
//   x   [m, k]   with row stride ldx (elements)     activations, bf16
//   w   [n, k]   with row stride ldw                weights, bf16
//   out [m, n]   with row stride ldo                bf16 (rounded once) or fp32 (logits)
// out = alpha * x w^T (+ out when accumulate), fp32 accumulate. In cuBLASLt's column-major terms
// this is D[n, m] = W^T-op(W'[k, n]) X'[k, m]: transa = T, transb = N ("TN"), the fast path.
//
// Strides let x be a slice of a wider buffer (e.g. the attention output) and out land in a slice
// (e.g. the media rows of the step's embedding buffer, or the q part of a fused QKV buffer).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/cuda/bf16.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

struct GemmParams {
  const Bf16* x = nullptr;
  int64_t ldx = 0;
  const Bf16* w = nullptr;
  int64_t ldw = 0;
  void* out = nullptr;  // Bf16* or float*, per out_fp32.
  int64_t ldo = 0;
  bool out_fp32 = false;
  bool accumulate = false;  // out += x w^T (fp32 out only).
  int64_t m = 0;            // Rows of x (tokens); 0 is a no-op.
  int64_t n = 0;            // Output features (rows of w).
  int64_t k = 0;            // Input features.
  float alpha = 1.0f;
};

// One cuBLASLt handle, its workspace and a cache of chosen algorithms per (shape, strides,
// output type). Create one per stream; Run is not thread-safe. The algorithm cache makes a call
// capturable into a CUDA graph once its shape has been run eagerly (no allocation or heuristic
// query happens on a cached shape).
class GemmRunner {
 public:
  virtual ~GemmRunner() = default;
  // Checks the shape (non-negative sizes, strides >= row widths, non-null pointers) and enqueues
  // the product on `stream`. Pointers and strides need no particular alignment: the algorithm
  // chosen is told the real alignment (cuBLASLt's MIN_ALIGNMENT preferences), so an odd slice is
  // slower, never wrong. InvalidArgument names the bad field; a cuBLAS failure is Internal with the
  // cuBLAS status name.
  virtual absl::Status Run(const GemmParams& p, cudaStream_t stream) = 0;
};

// workspace_bytes: cuBLASLt's scratch (32 MiB is plenty on Hopper). Unavailable without a GPU.
absl::StatusOr<std::unique_ptr<GemmRunner>> CreateGemmRunner(size_t workspace_bytes = 32u << 20);

// Checks `p` the way Run does, without a GPU (shared by both implementations and the tests):
// m >= 0, n >= 1, k >= 1, ldx >= k, ldw >= k, ldo >= n, non-null pointers when m > 0, and
// accumulate only with fp32 output. Inline so that both builds (gemm.cu, emu/gemm_emu.cc) share
// one definition.
inline absl::Status ValidateGemm(const GemmParams& p) {
  if (p.m < 0 || p.n < 1 || p.k < 1) {
    return absl::InvalidArgumentError(absl::StrCat("gemm: bad shape m=", p.m, " n=", p.n,
                                                   " k=", p.k, " (need m >= 0, n >= 1, k >= 1)"));
  }
  if (p.ldx < p.k) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: ldx=", p.ldx, " is less than the row width k=", p.k));
  }
  if (p.ldw < p.k) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: ldw=", p.ldw, " is less than the row width k=", p.k));
  }
  if (p.ldo < p.n) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: ldo=", p.ldo, " is less than the row width n=", p.n));
  }
  if (p.accumulate && !p.out_fp32) {
    return absl::InvalidArgumentError("gemm: accumulate needs out_fp32 (bf16 out is rounded once)");
  }
  if (p.m > 0 && (p.x == nullptr || p.w == nullptr || p.out == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: ", p.x == nullptr ? "x" : (p.w == nullptr ? "w" : "out"), " is null"));
  }
  return absl::OkStatus();
}

}  // namespace tessera::runtime::cuda
