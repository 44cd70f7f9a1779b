// Launchers of GPU sampling (sampling.h).
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

}  // namespace tessera::runtime::cuda
