// Random Gemma 4 weights made directly in GPU memory (no file, no host copy): for benchmarks of
// real shapes (e.g. the 12B, model_bench) on cards where no checkpoint is at hand, and for tests.
// The server does not link this (BUILD visibility: model_bench and tests).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "runtime/cuda/cuda_model_runner.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/quant_mix.h"
#include "runtime/model/model_config.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime {

// Values are N(0, 1)/sqrt(fan_in) matrices, norms near 1, layer scalars 1, from `seed`. With a
// quantized `mix`, each text matrix is in the format llama-quantize gives it for that file type
// (quant_mix.h), as random blocks (LaunchFillRandomBlocks: the bytes and layout of a real file,
// values of no meaning); the media path stays bf16.
struct RandomModelSpec {
  ModelConfig config;
  uint64_t seed = 1;
  cuda::QuantMix mix = cuda::QuantMix::kBf16;
};

namespace cuda {
// The weights of `spec` on the current device, filled on `stream` (synchronised before return).
absl::StatusOr<std::unique_ptr<DeviceWeights>> MakeRandomWeights(const RandomModelSpec& spec,
                                                                 const std::string& device_name,
                                                                 cudaStream_t stream);
}  // namespace cuda

// A CUDA runner over MakeRandomWeights.
absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateRandomCudaModelRunner(
    const RandomModelSpec& spec, const CudaRunnerOptions& options = {});

}  // namespace tessera::runtime
