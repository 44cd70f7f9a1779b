#include "server/cuda_runner.h"

#include <algorithm>

#include "base/logging.h"
#include "runtime/cuda/cuda_model_runner.h"

namespace tessera::server {

bool BuiltWithCuda() { return true; }

bool CudaDeviceVisible() { return runtime::CudaDeviceAvailable(); }

absl::Status CudaModelSupported(const runtime::ModelConfig& config) {
  return runtime::CudaModelSupported(config);
}

absl::StatusOr<std::unique_ptr<runtime::ModelRunner>> CreateCudaRunner(
    std::shared_ptr<const runtime::LoadedModel> model, const CudaServingOptions& options) {
  runtime::CudaRunnerOptions co;
  co.device = options.device;
  co.kv_memory_bytes = options.kv_memory_bytes;
  co.gpu_memory_fraction = options.gpu_memory_fraction;
  co.max_step_seqs = options.max_num_seqs;
  co.max_step_tokens = std::max(options.max_num_batched_tokens, options.max_num_seqs);
  co.max_seq_len = options.max_seq_len;
  co.cuda_graphs = options.cuda_graphs;
  co.max_graph_batch = std::min(128, options.max_num_seqs);
  auto runner = runtime::CreateCudaModelRunner(std::move(model), co);
  if (!runner.ok()) return runner.status();
  TESSERA_LOG(INFO) << "CUDA runner: " << (*runner)->Describe();
  return std::unique_ptr<runtime::ModelRunner>(*std::move(runner));
}

}  // namespace tessera::server
