// Launchers of GPU sampling (sampling.h).
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/sampling.cuh"
#include "runtime/cuda/sampling.h"

namespace tessera::runtime::cuda {

absl::Status LaunchArgmax(const ArgmaxParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.vocab <= 0 || p.row_stride < p.vocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        "argmax: bad shape rows=", p.rows, " vocab=", p.vocab, " row_stride=", p.row_stride));
  }
  if (p.rows > 0 && (p.logits == nullptr || p.out_token == nullptr)) {
    return absl::InvalidArgumentError("argmax: a required device pointer is null");
  }
  if (p.rows == 0) return absl::OkStatus();
  TESSERA_LAUNCH(sampling_internal::ArgmaxKernel, p.rows, sampling_internal::kThreads, stream, p);
  return LaunchStatus("ArgmaxKernel");
}

size_t SampleWorkspaceBytes(int32_t rows, int32_t vocab) {
  if (rows <= 0 || vocab <= 0) return 0;
  return sampling_internal::RowWorkspaceBytes(vocab) * static_cast<size_t>(rows);
}

absl::Status LaunchSample(const SampleParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.vocab <= 0 || p.row_stride < p.vocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sample: bad shape rows=", p.rows, " vocab=", p.vocab, " row_stride=", p.row_stride));
  }
  if (p.rows == 0) return absl::OkStatus();
  if (p.logits == nullptr || p.row_params == nullptr || p.workspace == nullptr ||
      p.out_token == nullptr) {
    return absl::InvalidArgumentError(
        "sample: logits, row_params, workspace and out_token must be device pointers");
  }
  if (reinterpret_cast<uintptr_t>(p.workspace) % 16 != 0) {
    return absl::InvalidArgumentError("sample: the workspace must be 16-byte aligned");
  }
  TESSERA_LAUNCH(sampling_internal::SampleKernel, p.rows, sampling_internal::kSampleThreads, stream,
                 p);
  return LaunchStatus("SampleKernel");
}

}  // namespace tessera::runtime::cuda
