// The closed list of attention shapes the paged-attention kernels are instantiated for, and the
// host arithmetic of a launch (decode KV splits, split workspace). Plain C++ with no CUDA: the
// kernels' dispatch (attention.cu), the CUDA runner's model check and the step planner all use it,
// so the list exists once.
//
//   head_dim 256, 2 query heads per KV head   (Gemma 4 12B sliding layers: 16 q / 8 kv heads)
//   head_dim 512, 16 query heads per KV head  (Gemma 4 12B global layers: 16 q / 1 kv head)
//   head_dim 16,  2 query heads per KV head   (gemma4-tiny fixture, sliding layers)
//   head_dim 32,  4 query heads per KV head   (gemma4-tiny fixture, global layer)
//   head_dim 64,  2 query heads per KV head   (gemma4-quant-s GGUF fixture, sliding layers)
//   head_dim 128, 4 query heads per KV head   (gemma4-quant-s GGUF fixture, global layer)
//
// Adding a shape: add it to kAttentionShapes (attention_shapes.cc), to the dispatch in
// attention.cu, and instantiate it in an attention_instances_*.cu file.
#pragma once

#include <cstdint>
#include <string>

namespace tessera::runtime::cuda {

// Whether the kernels cover `head_dim` with `group` query heads per KV head.
bool AttentionShapeSupported(int32_t head_dim, int32_t group);

// The supported list for error messages (head_dim/group).
std::string SupportedAttentionShapes();

// Floats of workspace a split attention call needs (0 when num_splits == 1).
int64_t AttentionWorkspaceFloats(int32_t total_rows, int32_t num_q_heads, int32_t head_dim,
                                 int32_t num_splits);

// A num_splits for decode that fills the GPU: enough CTAs for ~2 waves over `num_sms`, each split
// keeping at least `min_keys_per_split` keys, at most kMaxAttentionSplits.
int32_t ChooseDecodeSplits(int32_t num_seqs, int32_t num_kv_heads, int32_t max_kv_len,
                           int32_t num_sms, int32_t min_keys_per_split = 256);

inline constexpr int32_t kMaxAttentionSplits = 256;

}  // namespace tessera::runtime::cuda
