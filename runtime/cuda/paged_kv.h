// The paged KV cache as the CUDA kernels see it: one pool per KV group ("sliding", "global"), in
// bf16, addressed through per-sequence block tables handed out by the scheduler
// (runtime/model_runner.h: position p lives in block table[p / block_size], slot p % block_size).
#pragma once

#include <cstdint>

#include "runtime/cuda/bf16.h"

#if defined(__CUDACC__)
#define TESSERA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TESSERA_HOST_DEVICE inline
#endif

namespace tessera::runtime::cuda {

// One KV group's pool, covering every layer of the group. Layout (bf16, row-major):
//
//   pool[num_blocks][num_layers][2][num_kv_heads][block_size][head_dim]
//                                ^ 0 = K (normed, weighted, RoPE'd), 1 = V (normed, no weight)
//
// so one block of one layer is 2 * num_kv_heads * block_size * head_dim contiguous values, and the
// head_dim values of one token of one head are contiguous (16-byte vector loads). A block id is an
// index into the first dimension. Owned by the runner (one cudaMalloc per group); written only by
// the KV-write kernel (rope_kv.h) for the slots of this step's rows, read by the attention kernels.
struct PagedKvView {
  Bf16* pool = nullptr;
  int32_t num_blocks = 0;
  int32_t num_layers = 0;
  int32_t layer = 0;  // Which layer of the group this call reads or writes.
  int32_t num_kv_heads = 0;
  int32_t block_size = 0;
  int32_t head_dim = 0;

  // Elements from one block to the next, and from a block's start to (layer, kv, head, slot 0).
  TESSERA_HOST_DEVICE int64_t BlockStride() const {
    return static_cast<int64_t>(num_layers) * 2 * num_kv_heads * block_size * head_dim;
  }
  TESSERA_HOST_DEVICE int64_t Offset(int32_t block, int32_t kv, int32_t head, int32_t slot) const {
    return block * BlockStride() +
           ((static_cast<int64_t>(layer) * 2 + kv) * num_kv_heads + head) *
               static_cast<int64_t>(block_size) * head_dim +
           static_cast<int64_t>(slot) * head_dim;
  }
};

}  // namespace tessera::runtime::cuda
