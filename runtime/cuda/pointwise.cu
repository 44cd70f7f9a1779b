// Launchers of the element-wise kernels (pointwise.h).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/pointwise.cuh"
#include "runtime/cuda/pointwise.h"

namespace tessera::runtime::cuda {
namespace {
// Column blocks per row: enough CTAs to cover a row, at most 64 per row (grid-stride beyond).
unsigned ColumnBlocks(int64_t cols) {
  return static_cast<unsigned>(std::clamp<int64_t>(
      (cols + pointwise_internal::kThreads - 1) / pointwise_internal::kThreads, 1, 64));
}
constexpr int kMaxGridY = 65535;
}  // namespace

absl::Status LaunchEmbedTokens(const EmbedParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.vocab <= 0 || p.hidden <= 0 || p.out_row_stride < p.hidden) {
    return absl::InvalidArgumentError(
        absl::StrCat("embed: bad shape rows=", p.rows, " vocab=", p.vocab, " hidden=", p.hidden));
  }
  if (p.rows > 0 && (p.ids == nullptr || p.table == nullptr || p.out == nullptr)) {
    return absl::InvalidArgumentError("embed: a required device pointer is null");
  }
  if (p.rows == 0) return absl::OkStatus();
  TESSERA_LAUNCH(pointwise_internal::EmbedKernel, p.rows, pointwise_internal::kThreads, stream, p);
  return LaunchStatus("EmbedKernel");
}

absl::Status LaunchGeglu(const GegluParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.rows > kMaxGridY || p.dim <= 0 || p.out_row_stride < p.dim ||
      p.up_offset < p.dim || p.in_row_stride < p.up_offset + p.dim) {
    return absl::InvalidArgumentError(absl::StrCat("geglu: bad shape rows=", p.rows, " dim=", p.dim,
                                                   " up_offset=", p.up_offset, " (rows at most ",
                                                   kMaxGridY, ")"));
  }
  if (p.rows > 0 && (p.in == nullptr || p.out == nullptr)) {
    return absl::InvalidArgumentError("geglu: a required device pointer is null");
  }
  if (p.rows == 0) return absl::OkStatus();
  const dim3 grid(ColumnBlocks(p.dim), p.rows);
  TESSERA_LAUNCH(pointwise_internal::GegluKernel, grid, pointwise_internal::kThreads, stream, p);
  return LaunchStatus("GegluKernel");
}

absl::Status LaunchSoftcap(const SoftcapParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.rows > kMaxGridY || p.cols <= 0 || p.row_stride < p.cols || !(p.cap > 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "softcap: bad shape rows=", p.rows, " cols=", p.cols, " or cap ", p.cap, " (must be > 0)"));
  }
  if (p.rows > 0 && p.logits == nullptr) {
    return absl::InvalidArgumentError("softcap: logits is null");
  }
  if (p.rows == 0) return absl::OkStatus();
  const dim3 grid(ColumnBlocks(p.cols), p.rows);
  TESSERA_LAUNCH(pointwise_internal::SoftcapKernel, grid, pointwise_internal::kThreads, stream, p);
  return LaunchStatus("SoftcapKernel");
}

}  // namespace tessera::runtime::cuda
