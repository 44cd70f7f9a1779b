// The CUDA backend of ModelRunner (runtime/model_runner.h): the Gemma 4 forward pass (MODEL.md) on
// one GPU with bf16 weights (uploaded once), bf16 paged KV pools for the "sliding" and "global"
// groups (paged_kv.h layout, sized from free GPU memory), cuBLASLt projections (gemm.h) and the
// fused kernels of this directory. Sampling runs on the GPU (sampling.h); only the sampled tokens
// (and any logits rows the plan asks for) come back to the host, once per step.
//
// Decode-only steps of up to `max_graph_batch` sequences run as CUDA graphs captured per padded
// batch size (step_planner.h, graph_cache.h), so a step costs one graph launch plus the small
// per-step uploads. Other steps (prefill chunks, media, logits rows) run eagerly on the same
// stream. The parts: step_planner.h (host planning), graph_cache.h, cuda_weights.h (weights).
//
// Execute is not thread-safe: one step at a time, from one thread (the engine's step loop).
//
// Without a GPU, CreateCudaModelRunner returns Unavailable saying so. Under the CPU emulation
// (TESSERA_CUDA_EMULATION, the _emu targets) the same code runs the kernels on the CPU, which is
// how CI checks this runner against the golden fixture and the CPU runner.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/cuda/cuda_runner_options.h"
#include "runtime/cuda/memory_plan.h"
#include "runtime/model/model_config.h"
#include "runtime/model/model_loader.h"
#include "runtime/model_runner.h"

namespace tessera::runtime {

namespace cuda {
struct DeviceWeights;  // cuda_weights.h
}  // namespace cuda

// Makes the runner's weights on the current device (named for errors): from a checkpoint
// (cuda_weights.h) or random for benchmarks (random_weights.h). Called once the device is set.
using DeviceWeightsSource =
    std::function<absl::StatusOr<std::unique_ptr<cuda::DeviceWeights>>(const std::string&)>;

class CudaModelRunner : public ModelRunner {
 public:
  ~CudaModelRunner() override;
  const KvCacheSpec& kv_spec() const override;
  int32_t vocab_size() const override;
  absl::Status Execute(const BatchPlan& plan, StepOutput* out) override;

  // What the runner allocated, for logs and /v1/models: device name, weight bytes, KV bytes.
  std::string Describe() const;
  uint64_t weight_bytes() const;
  uint64_t kv_bytes() const;
  // Steps run through a CUDA graph so far (tests check that decode uses them).
  uint64_t graph_steps() const;
  // The embedding rows [item_row, item_row + count) of a media item as the step computes them
  // (widened from bf16), [count, hidden]: for tests of the media path against the CPU embedder.
  // Not for use while a step runs.
  absl::StatusOr<std::vector<float>> EmbedMedia(const MediaItem& item, int32_t item_row,
                                                int32_t count);

  class Impl;

 private:
  friend absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateCudaModelRunner(
      const ModelConfig& config, const DeviceWeightsSource& weights,
      const CudaRunnerOptions& options);
  friend absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateCudaModelRunner(
      std::shared_ptr<const LoadedModel> model, const CudaRunnerOptions& options);
  explicit CudaModelRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Uploads `model`'s weights (bf16 on the GPU whatever the checkpoint's float type) and allocates
// the KV pools. Unavailable when there is no usable GPU; InvalidArgument for a model or options
// this runner cannot serve (naming the field and the supported values); ResourceExhausted when
// the weights or the minimum KV do not fit.
absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateCudaModelRunner(
    std::shared_ptr<const LoadedModel> model, const CudaRunnerOptions& options = {});

// The same over weights made by `weights` (random_weights.h: CreateRandomCudaModelRunner).
absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateCudaModelRunner(
    const ModelConfig& config, const DeviceWeightsSource& weights,
    const CudaRunnerOptions& options);

// Whether the CUDA kernels cover `config` (attention shapes of attention_shapes.h, the
// activation, one KV shape per layer group): InvalidArgument naming the first layer or field they
// do not. CreateCudaModelRunner checks it first; --device=auto serves such a model on the CPU.
absl::Status CudaModelSupported(const ModelConfig& config);

// "Plan what fits" (for the server's start-up log and --dry_run): what CreateCudaModelRunner(model,
// options) lays out on a GPU with `gpu_memory_bytes` of memory — the weights in the formats they
// would be uploaded in, the step buffers, the KV pools and how many 8k-token sequences they hold
// (memory_plan.h) — without allocating anything. gpu_memory_bytes 0: device options.device's own
// total memory (Unavailable without a GPU). A plan that does not fit is not an error: its
// `status` says what is short.
absl::StatusOr<cuda::MemoryPlan> PlanCudaMemory(const LoadedModel& model,
                                                const CudaRunnerOptions& options,
                                                int64_t gpu_memory_bytes = 0);

// Whether a usable GPU is visible (for --device=auto). Never fails: false without a driver.
bool CudaDeviceAvailable();

}  // namespace tessera::runtime
