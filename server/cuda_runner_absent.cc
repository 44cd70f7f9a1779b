// cuda_runner.h where the CUDA toolkit was absent at build time: no CUDA runner.
#include "server/cuda_runner.h"

namespace tessera::server {

bool BuiltWithCuda() { return false; }

bool CudaDeviceVisible() { return false; }

absl::Status CudaModelSupported(const runtime::ModelConfig&) {
  return absl::FailedPreconditionError("this server was built without CUDA");
}

absl::StatusOr<std::unique_ptr<runtime::ModelRunner>> CreateCudaRunner(
    std::shared_ptr<const runtime::LoadedModel>, const CudaServingOptions&) {
  return absl::FailedPreconditionError(
      "this server was built without CUDA (no nvcc at build time; docs/development.md); use "
      "--device=cpu or auto, or rebuild where the CUDA toolkit is installed");
}

}  // namespace tessera::server
