// Gemma 4 12B global layers: head_dim 512, 16 query heads per KV head (MQA), decode and prefill.
#include "runtime/cuda/attention.cuh"

namespace tessera::runtime::cuda {
TESSERA_ATTENTION_INSTANCE(512, 16, 1);
}  // namespace tessera::runtime::cuda
