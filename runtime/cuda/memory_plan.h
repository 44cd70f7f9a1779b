// What the CUDA runner puts in GPU memory, computed on the host from a config, the weights' bytes
// and the runner's options: the step buffers (the same sizes AllocateRuntime allocates), the KV
// groups and how a KV budget is split between them, and the whole plan for a GPU of a given size
// ("plan what fits": weights, step buffers, KV budget, how many 8k-token sequences fit, the longest
// sequence). Pure: no CUDA, tested in memory_plan_test.cc (a Q4_K_M Gemma 4 12B on a 16 GB GPU).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cuda/cuda_runner_options.h"
#include "runtime/model/model_config.h"
#include "runtime/model_runner.h"

namespace tessera::runtime::cuda {

// Logits rows computed per GEMM when a plan asks for many logits rows (prompt logprobs, tests).
inline constexpr int32_t kLogitsChunkRows = 64;
// Penalty entries (distinct context tokens of sampled rows) the device buffer holds per step.
inline constexpr int64_t kMaxPenaltyEntries = int64_t{1} << 20;
// Activation rows the q8_1 scratch holds: PreferGemv never picks the GEMV above 64 rows.
inline constexpr int32_t kMaxQuantGemvRows = 64;
// Device memory neither the weights nor the runner's buffers account for: the CUDA context and
// module images (about 0.3-0.5 GiB on recent drivers with lazy loading), cuBLASLt's 32 MiB
// workspace, CUDA graphs. An allowance, not a measurement: no GPU has run this yet.
inline constexpr int64_t kCudaRuntimeReserveBytes = int64_t{640} << 20;

// Offsets of the per-step metadata arrays in the runner's one metadata buffer (device and pinned
// host mirror), each 256-byte aligned.
struct StepMetaLayout {
  int64_t ids = 0, positions = 0, row_start = 0, start_pos = 0, bidi_begin = 0, bidi_end = 0;
  int64_t sample_rows = 0, gather = 0;
  std::vector<int64_t> slots, tables;  // Per KV group.
  int64_t bytes = 0;
};

// Device bytes of every step buffer (cuda_model_runner.cc allocates exactly these).
struct StepBufferBytes {
  int64_t h = 0, x = 0, qkv = 0, attn = 0, o = 0, gu = 0, act = 0;  // [T, ...] bf16 activations
  int64_t gathered = 0, logits = 0;  // [R, H] bf16 and [R, V] fp32, R = max(S, 64)
  int64_t attention_workspace = 0;   // Decode KV splits.
  int64_t sampler_workspace = 0;
  int64_t penalties = 0, out = 0;
  StepMetaLayout meta;
  int64_t dequant_scratch = 0, q8_1_scratch = 0;  // Quantized weights only.
  int64_t attention_workspace_floats = 0;
  int64_t max_table = 0;  // Block-table entries per sequence.
  int64_t total() const;
};

// `sampler_workspace_bytes`: SampleWorkspaceBytes(max_step_seqs, vocab) (sampling.h);
// `widest_quantized_cols`: the widest quantized matrix's columns, 0 when no weight is quantized.
StepBufferBytes PlanStepBuffers(const ModelConfig& config, const CudaRunnerOptions& options,
                                int32_t num_kv_groups, int32_t num_sms,
                                int64_t sampler_workspace_bytes, int64_t widest_quantized_cols);

// The KV groups of `config` (sliding, then global; num_blocks 0), with bf16 blocks.
KvCacheSpec KvGroups(const ModelConfig& config, int32_t block_size);

// Blocks one sequence of `tokens` tokens needs in group `g` (a sliding group at most its window's
// blocks plus one).
int64_t BlocksPerSequence(const KvGroupSpec& g, int64_t tokens);

// Splits `budget` bytes between the groups of `spec` (num_blocks filled in) so that both run out
// together for sequences of kv_balance_seq_len tokens (capped by max_seq_len); explicit counts in
// `options` are taken off the budget first. Each pool also gets one spare block (not counted in
// num_blocks). ResourceExhausted when a pool would not hold one sequence of the step's largest
// chunk.
absl::StatusOr<KvCacheSpec> SplitKvBudget(KvCacheSpec spec, int64_t budget,
                                          const CudaRunnerOptions& options);

struct MemoryPlan {
  int64_t gpu_bytes = 0;
  int64_t reserve_bytes = 0;  // kCudaRuntimeReserveBytes.
  int64_t weight_bytes = 0;
  int64_t step_buffer_bytes = 0;
  int64_t kv_budget_bytes = 0;  // What the KV pools are given.
  KvCacheSpec kv;               // The pools (num_blocks filled) when the plan fits.
  int64_t kv_bytes = 0;         // The pools' bytes, spare blocks included.
  int64_t bytes_per_8k_sequence = 0;
  int64_t sequences_8k = 0;      // Concurrent 8192-token sequences the pools hold.
  int64_t longest_sequence = 0;  // Tokens one sequence alone can reach (<= max_seq_len).
  absl::Status status;           // OK when everything fits; else what does not.

  // The lines the server prints at start and for --dry_run.
  std::string Describe() const;
};

// The plan for a GPU with `gpu_memory_bytes` of memory, as CreateCudaModelRunner would lay it out
// (the pools get gpu_memory_fraction of what is free after the reserve, the weights and the step
// buffers, unless options.kv_memory_bytes or explicit block counts say otherwise).
MemoryPlan PlanMemory(const ModelConfig& config, int64_t weight_bytes, int64_t gpu_memory_bytes,
                      const CudaRunnerOptions& options, int32_t num_sms,
                      int64_t sampler_workspace_bytes, int64_t widest_quantized_cols);

}  // namespace tessera::runtime::cuda
