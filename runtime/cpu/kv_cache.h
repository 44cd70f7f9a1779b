// The CPU runner's KV memory: one pool per KV group, fp32 (the CPU path is the fp32 reference).
//
// Layout of a group's pool (one allocation, owned by the runner, touched only by the thread that
// runs Execute and the pool threads it starts):
//
//   float [num_blocks][num_layers][2 (K, V)][num_kv_heads][block_size][head_dim]
//
// so one block carries `block_size` consecutive positions of every layer of its group, and the keys
// of one (block, layer, head) are contiguous: attention reads them as a [block_size, head_dim]
// tile.
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/model_runner.h"

namespace tessera::runtime::cpu {

class KvPool {
 public:
  explicit KvPool(const KvGroupSpec& spec)
      : spec_(spec),
        head_stride_(static_cast<int64_t>(spec.block_size) * spec.head_dim),
        kv_stride_(head_stride_ * spec.num_kv_heads),
        layer_stride_(kv_stride_ * 2),
        block_stride_(layer_stride_ * spec.num_layers),
        data_(new float[static_cast<size_t>(block_stride_) * spec.num_blocks]()) {}

  const KvGroupSpec& spec() const { return spec_; }

  // The [block_size, head_dim] tile of keys (kv = 0) or values (kv = 1).
  float* Tile(int32_t block, int32_t layer, int kv, int32_t head) {
    return data_.get() + block * block_stride_ + layer * layer_stride_ + kv * kv_stride_ +
           head * head_stride_;
  }
  const float* Tile(int32_t block, int32_t layer, int kv, int32_t head) const {
    return const_cast<KvPool*>(this)->Tile(block, layer, kv, head);
  }

  static int64_t BytesPerBlock(const KvGroupSpec& s) {
    return static_cast<int64_t>(s.num_layers) * 2 * s.num_kv_heads * s.block_size * s.head_dim *
           sizeof(float);
  }

 private:
  KvGroupSpec spec_;
  int64_t head_stride_, kv_stride_, layer_stride_, block_stride_;
  std::unique_ptr<float[]> data_;
};

}  // namespace tessera::runtime::cpu
