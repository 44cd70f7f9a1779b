// The gemma4-quant-s GGUF fixture (testdata/gguf): head_dim 64 with 2:1 GQA (sliding), head_dim
// 128 with 4:1 (global).
#include "runtime/cuda/attention.cuh"

namespace tessera::runtime::cuda {
TESSERA_ATTENTION_INSTANCE(64, 2, 1);
TESSERA_ATTENTION_INSTANCE(64, 2, 8);
TESSERA_ATTENTION_INSTANCE(128, 4, 1);
TESSERA_ATTENTION_INSTANCE(128, 4, 4);
}  // namespace tessera::runtime::cuda
