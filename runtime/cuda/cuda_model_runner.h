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
#include "runtime/model/model_config.h"
#include "runtime/model/model_loader.h"
#include "runtime/model_runner.h"

namespace tessera::runtime {

struct CudaRunnerOptions {
  int device = 0;  // CUDA ordinal.
  // Token positions per KV block.
  int32_t block_size = 16;
  // Explicit pool sizes; 0 = derive from memory.
  int32_t num_blocks_sliding = 0;
  int32_t num_blocks_global = 0;
  // When a count is 0: the KV pools get this fraction of the GPU memory that is free after the
  // weights, activations and workspaces are allocated (the rest stays for cuBLASLt, graphs and
  // fragmentation).
  double gpu_memory_fraction = 0.90;
  // Fixed KV budget instead of the fraction (bytes for both pools); 0 = use the fraction.
  int64_t kv_memory_bytes = 0;
  // How the budget is split between the groups: so that both run out together when every
  // sequence is this long (capped by max_seq_len). A sliding-window sequence never needs more
  // than window / block_size + 1 blocks, a global one needs every block, so the split depends on
  // the length; Gemma 4 12B at 8k tokens: 65 sliding blocks of 5 MiB and 512 global ones of
  // 256 KiB per sequence.
  int32_t kv_balance_seq_len = 8192;
  // Sizing of the step buffers: the most rows (tokens) and sequences one step may carry. The
  // scheduler's token budget and sequence cap must not exceed them (Execute rejects a plan that
  // does, naming the limit).
  int32_t max_step_tokens = 8192;
  int32_t max_step_seqs = 256;
  // Longest sequence (positions) a block table may cover: sizes the device block-table buffer.
  int32_t max_seq_len = 131072;
  // CUDA graphs for decode-only steps; false runs every step eagerly.
  bool cuda_graphs = true;
  int32_t max_graph_batch = 128;
};

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

// Whether a usable GPU is visible (for --device=auto). Never fails: false without a driver.
bool CudaDeviceAvailable();

}  // namespace tessera::runtime
