// The CPU backend of ModelRunner: the Gemma 4 forward pass (MODEL.md) over a BatchPlan, fp32
// arithmetic over bf16 or fp32 weights, paged fp32 KV memory (kv_cache.h), multithreaded.
//
// It is the reference the CUDA path is checked against, so it favours exactness: every row's
// result depends only on that row's sequence (batch-invariant), never on the thread count.
//
// Execute is not thread-safe: one step at a time, from one thread (the engine's step loop); it
// uses its own worker threads inside. The KV memory is fp32 (exactness over capacity), so a block
// costs twice what a bf16 GPU block does; see kv_cache.h for the layout.
//
// KV groups, in kv_spec() order: "sliding" (the sliding-window layers) then "global" (full
// attention); a model with only one kind of layer has one group. Block tables in a plan follow
// that order.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/cpu/cpu_features.h"
#include "runtime/cpu/kv_cache.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/model/model_loader.h"
#include "runtime/model_runner.h"

namespace tessera::runtime {

struct CpuRunnerOptions {
  // Token positions per KV block.
  int32_t block_size = 16;
  // Explicit pool sizes; 0 = derive from kv_memory_bytes.
  int32_t num_blocks_sliding = 0;
  int32_t num_blocks_global = 0;
  // Budget for both pools when a count is 0. It is split so both groups get the same number of
  // blocks (a sequence never needs more sliding blocks than global ones, and the window lets the
  // scheduler release sliding blocks early).
  int64_t kv_memory_bytes = int64_t{256} << 20;
  // Threads for the step, the calling thread included; 0 = one per hardware thread.
  int num_threads = 0;
  // Kernel path of the projections (cpu_features.h): by default the best this CPU runs, or
  // TESSERA_CPU_KERNELS. One the CPU cannot run is refused.
  cpu::KernelPath kernel_path = cpu::DefaultKernelPath();
};

class CpuModelRunner : public ModelRunner {
 public:
  const KvCacheSpec& kv_spec() const override { return spec_; }
  int32_t vocab_size() const override { return model_->config.text.vocab_size; }
  absl::Status Execute(const BatchPlan& plan, StepOutput* out) override;

  const LoadedModel& model() const { return *model_; }
  int num_threads() const { return pool_->num_threads(); }

 private:
  friend absl::StatusOr<std::unique_ptr<CpuModelRunner>> CreateCpuModelRunner(
      std::shared_ptr<const LoadedModel> model, const CpuRunnerOptions& options);
  CpuModelRunner() = default;

  void RunLayer(int32_t layer);

  std::shared_ptr<const LoadedModel> model_;
  KvCacheSpec spec_;
  std::vector<std::unique_ptr<cpu::KvPool>> pools_;
  std::vector<int32_t> layer_group_;          // Group of each layer.
  std::vector<int32_t> layer_in_group_;       // Index of each layer inside its group.
  std::vector<std::vector<float>> inv_freq_;  // Per layer, head_dim / 2 entries.
  std::unique_ptr<cpu::ThreadPool> pool_;
  cpu::KernelPath path_ = cpu::KernelPath::kPortable;

  // Per-step state and scratch (Execute is not reentrant).
  const BatchPlan* plan_ = nullptr;
  std::vector<int32_t> row_seq_, row_pos_;
  std::vector<int64_t> seq_row0_;
  // Row-major [rows, width] activations of the step's rows; reused across steps (no per-step
  // allocation on the decode path).
  std::vector<float> h_, x_, q_, k_, v_, attn_, o_, gate_, up_, normed_, logits_;
};

absl::StatusOr<std::unique_ptr<CpuModelRunner>> CreateCpuModelRunner(
    std::shared_ptr<const LoadedModel> model, const CpuRunnerOptions& options = {});

}  // namespace tessera::runtime
