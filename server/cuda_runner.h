// The CUDA ModelRunner as the server starts it: the one file of the server that depends on the
// CUDA build. Where the CUDA toolkit (nvcc) was present at build time, cuda_runner.cc creates
// runtime::CudaModelRunner; elsewhere cuda_runner_absent.cc is compiled instead and the server has
// no CUDA runner: --device=auto serves on the CPU and --device=cuda says the server was built
// without CUDA (bazel/cuda_configure.bzl decides, docs/development.md).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "runtime/model/model_loader.h"
#include "runtime/model_runner.h"

namespace tessera::server {

struct CudaServingOptions {
  int device = 0;  // CUDA ordinal.
  // KV memory for both pools; 0: gpu_memory_fraction of what is free after weights and buffers.
  int64_t kv_memory_bytes = 0;
  double gpu_memory_fraction = 0.90;
  // The engine's step shape (scheduler::EngineOptions) and the model's context.
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
  int32_t max_seq_len = 8192;
  bool cuda_graphs = true;
};

// True where this binary was built with the CUDA runner.
bool BuiltWithCuda();
// True when built with CUDA and a GPU is visible.
bool CudaDeviceVisible();
// OK when the CUDA kernels cover `config` (attention shapes, weight formats); FailedPrecondition
// when the binary was built without CUDA. --device=auto serves a model they do not cover on the CPU.
absl::Status CudaModelSupported(const runtime::ModelConfig& config);
// InvalidArgument for a model the CUDA kernels do not cover, Unavailable without a usable GPU,
// FailedPrecondition when the binary was built without CUDA.
absl::StatusOr<std::unique_ptr<runtime::ModelRunner>> CreateCudaRunner(
    std::shared_ptr<const runtime::LoadedModel> model, const CudaServingOptions& options);

}  // namespace tessera::server
