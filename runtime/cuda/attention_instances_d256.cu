// Gemma 4 12B sliding layers: head_dim 256, 2 query heads per KV head (decode and prefill tiles).
#include "runtime/cuda/attention.cuh"

namespace tessera::runtime::cuda {
TESSERA_ATTENTION_INSTANCE(256, 2, 1);
TESSERA_ATTENTION_INSTANCE(256, 2, 8);
}  // namespace tessera::runtime::cuda
