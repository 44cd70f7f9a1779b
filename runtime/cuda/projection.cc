#include "runtime/cuda/projection.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace tessera::runtime::cuda {
namespace {

void* At(void* out, int64_t elements, bool fp32) {
  return fp32 ? static_cast<void*>(static_cast<float*>(out) + elements)
              : static_cast<void*>(static_cast<Bf16*>(out) + elements);
}

}  // namespace

absl::Status Projector::Run(const Bf16* x, int64_t ldx, const DeviceMatrix& w, void* out,
                            int64_t ldo, int64_t m, bool out_fp32, cudaStream_t stream) {
  if (m == 0) return absl::OkStatus();
  const int64_t k = w.cols;
  bool x_quantized = false;
  for (const DeviceMatrixPart& part : w.parts) {
    void* part_out = At(out, part.row0, out_fp32);
    if (!IsQuantized(part.format)) {
      GemmParams g;
      g.x = x;
      g.ldx = ldx;
      g.w = static_cast<const Bf16*>(part.data);
      g.ldw = k;
      g.out = part_out;
      g.ldo = ldo;
      g.out_fp32 = out_fp32;
      g.m = m;
      g.n = part.rows;
      g.k = k;
      TESSERA_RETURN_IF_ERROR(gemm_->Run(g, stream));
      continue;
    }
    if (PreferGemv(part.format, m) && xq_ != nullptr && m <= xq_rows_ && k <= xq_cols_) {
      if (!x_quantized) {
        QuantizeQ8_1Params q;
        q.x = x;
        q.x_row_stride = ldx;
        q.rows = static_cast<int32_t>(m);
        q.cols = k;
        q.out = xq_;
        TESSERA_RETURN_IF_ERROR(LaunchQuantizeQ8_1(q, stream));
        x_quantized = true;
      }
      for (int64_t r0 = 0; r0 < m; r0 += kMaxGemvRows) {
        QuantGemvParams g;
        g.format = part.format;
        g.w = part.data;
        g.n = part.rows;
        g.k = k;
        g.xq = xq_ + r0 * (k / 32);
        g.m = static_cast<int32_t>(std::min<int64_t>(kMaxGemvRows, m - r0));
        g.out = At(part_out, r0 * ldo, out_fp32);
        g.ldo = ldo;
        g.out_fp32 = out_fp32;
        TESSERA_RETURN_IF_ERROR(LaunchQuantGemv(g, stream));
      }
      continue;
    }
    const int64_t slab = scratch_bytes_ / (2 * k);
    if (scratch_ == nullptr || slab < 1) {
      return absl::InternalError(absl::StrCat("projection: no dequantize scratch for a ",
                                              WeightFormatName(part.format), " matrix of ", k,
                                              " columns"));
    }
    for (int64_t s0 = 0; s0 < part.rows; s0 += slab) {
      const int64_t n = std::min(slab, part.rows - s0);
      DequantizeParams d;
      d.format = part.format;
      d.w = part.data;
      d.w_rows = part.rows;
      d.cols = k;
      d.row0 = s0;
      d.rows = static_cast<int32_t>(n);
      d.out = scratch_;
      d.out_row_stride = k;
      TESSERA_RETURN_IF_ERROR(LaunchDequantizeRows(d, stream));
      GemmParams g;
      g.x = x;
      g.ldx = ldx;
      g.w = scratch_;
      g.ldw = k;
      g.out = At(part_out, s0, out_fp32);
      g.ldo = ldo;
      g.out_fp32 = out_fp32;
      g.m = m;
      g.n = n;
      g.k = k;
      TESSERA_RETURN_IF_ERROR(gemm_->Run(g, stream));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera::runtime::cuda
