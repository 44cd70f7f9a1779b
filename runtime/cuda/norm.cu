// Launchers of the RMSNorm family (norm.h).
#include "absl/strings/str_cat.h"
#include "runtime/cuda/norm.cuh"
#include "runtime/cuda/norm.h"

namespace tessera::runtime::cuda {

absl::Status LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.dim <= 0 || p.in_row_stride < p.dim || p.out_row_stride < p.dim) {
    return absl::InvalidArgumentError(absl::StrCat("rms norm: bad shape rows=", p.rows,
                                                   " dim=", p.dim, " strides ", p.in_row_stride,
                                                   "/", p.out_row_stride));
  }
  if (p.rows > 0 && (p.in == nullptr || p.weight == nullptr || p.out == nullptr)) {
    return absl::InvalidArgumentError("rms norm: a required device pointer is null");
  }
  if (p.rows == 0) return absl::OkStatus();
  TESSERA_LAUNCH(norm_internal::RmsNormKernel, p.rows, norm_internal::kThreads, stream, p);
  return LaunchStatus("RmsNormKernel");
}

absl::Status LaunchResidualRmsNorm(const ResidualRmsNormParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.dim <= 0 || p.y_row_stride < p.dim || p.residual_row_stride < p.dim ||
      (p.out != nullptr && p.out_row_stride < p.dim)) {
    return absl::InvalidArgumentError(
        absl::StrCat("residual rms norm: bad shape rows=", p.rows, " dim=", p.dim));
  }
  if (p.rows > 0 && (p.y == nullptr || p.y_weight == nullptr || p.residual == nullptr)) {
    return absl::InvalidArgumentError("residual rms norm: a required device pointer is null");
  }
  if ((p.out == nullptr) != (p.out_weight == nullptr)) {
    return absl::InvalidArgumentError("residual rms norm: out and out_weight go together");
  }
  if (p.rows == 0) return absl::OkStatus();
  TESSERA_LAUNCH(norm_internal::ResidualRmsNormKernel, p.rows, norm_internal::kThreads, stream, p);
  return LaunchStatus("ResidualRmsNormKernel");
}

}  // namespace tessera::runtime::cuda
