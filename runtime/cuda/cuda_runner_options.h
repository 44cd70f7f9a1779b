// The CUDA runner's options (cuda_model_runner.h), in their own header so that the pure planning
// code (memory_plan.h) sizes the same buffers the runner allocates.
#pragma once

#include <cstdint>

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
  // Quantized weights only: the bf16 scratch a prefill chunk's projection dequantizes a slab of
  // weight rows into before cuBLASLt (raised to one row of the widest matrix when smaller). A
  // quantized matrix is never expanded whole.
  int64_t quant_scratch_bytes = int64_t{64} << 20;
};

}  // namespace tessera::runtime
