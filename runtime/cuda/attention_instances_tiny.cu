// The gemma4-tiny fixture: head_dim 16 with 2:1 GQA (sliding), head_dim 32 with 4:1 (global).
#include "runtime/cuda/attention.cuh"

namespace tessera::runtime::cuda {
TESSERA_ATTENTION_INSTANCE(16, 2, 1);
TESSERA_ATTENTION_INSTANCE(16, 2, 8);
TESSERA_ATTENTION_INSTANCE(32, 4, 1);
TESSERA_ATTENTION_INSTANCE(32, 4, 4);
}  // namespace tessera::runtime::cuda
