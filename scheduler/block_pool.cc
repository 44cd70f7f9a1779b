#include "scheduler/block_pool.h"

#include "base/logging.h"

namespace tessera::scheduler {

BlockPool::BlockPool(int32_t num_blocks)
    : ref_count_(num_blocks, 0),
      key_(num_blocks),
      has_key_(num_blocks, false),
      prev_(num_blocks + 1),
      next_(num_blocks + 1),
      in_queue_(num_blocks, false) {
  // NOTE: growing the map while blocks fill cost ~5% of a 256-sequence decode step.
  cached_.reserve(num_blocks);
  const int32_t s = num_blocks;  // Sentinel.
  prev_[s] = next_[s] = s;
  for (int32_t b = 0; b < num_blocks; ++b) QueuePushBack(b);
  num_free_ = num_blocks;
}

void BlockPool::QueueRemove(int32_t b) {
  next_[prev_[b]] = next_[b];
  prev_[next_[b]] = prev_[b];
  in_queue_[b] = false;
}

void BlockPool::QueuePushFront(int32_t b) {
  const int32_t s = num_blocks();
  prev_[b] = s;
  next_[b] = next_[s];
  prev_[next_[s]] = b;
  next_[s] = b;
  in_queue_[b] = true;
}

void BlockPool::QueuePushBack(int32_t b) {
  const int32_t s = num_blocks();
  next_[b] = s;
  prev_[b] = prev_[s];
  next_[prev_[s]] = b;
  prev_[s] = b;
  in_queue_[b] = true;
}

int32_t BlockPool::Allocate() {
  const int32_t s = num_blocks();
  const int32_t b = next_[s];
  if (b == s) return -1;
  QueueRemove(b);
  --num_free_;
  if (has_key_[b]) {
    cached_.erase(key_[b]);
    has_key_[b] = false;
    --num_cached_free_;
  }
  ref_count_[b] = 1;
  return b;
}

void BlockPool::Ref(int32_t b) {
  if (ref_count_[b] == 0) {
    TESSERA_CHECK(in_queue_[b]) << "block " << b << " has no reference and is not free";
    QueueRemove(b);
    --num_free_;
    if (has_key_[b]) --num_cached_free_;
  }
  ++ref_count_[b];
}

void BlockPool::Unref(int32_t b) {
  TESSERA_CHECK(ref_count_[b] > 0) << "block " << b << " released more often than taken";
  if (--ref_count_[b] > 0) return;
  ++num_free_;
  if (has_key_[b]) {
    ++num_cached_free_;
    QueuePushBack(b);
  } else {
    QueuePushFront(b);
  }
}

bool BlockPool::SetKey(int32_t b, const BlockKey& key) {
  if (has_key_[b]) return key_[b] == key;
  auto [it, inserted] = cached_.try_emplace(key, b);
  if (!inserted) return false;
  key_[b] = key;
  has_key_[b] = true;
  if (ref_count_[b] == 0) ++num_cached_free_;
  return true;
}

int32_t BlockPool::Lookup(const BlockKey& key) const {
  auto it = cached_.find(key);
  return it == cached_.end() ? -1 : it->second;
}

void BlockPool::ClearCache() {
  for (auto& [key, b] : cached_) {
    has_key_[b] = false;
    if (ref_count_[b] == 0) --num_cached_free_;
  }
  cached_.clear();
}

bool BlockPool::CheckInvariants() const {
  const int32_t s = num_blocks();
  int32_t queued = 0, cached_free = 0;
  for (int32_t b = next_[s]; b != s; b = next_[b]) {
    if (prev_[next_[b]] != b || !in_queue_[b] || ref_count_[b] != 0) return false;
    ++queued;
    if (has_key_[b]) ++cached_free;
    if (queued > s) return false;
  }
  if (queued != num_free_ || cached_free != num_cached_free_) return false;
  int32_t keyed = 0;
  for (int32_t b = 0; b < s; ++b) {
    if (ref_count_[b] < 0) return false;
    if ((ref_count_[b] == 0) != in_queue_[b]) return false;
    if (has_key_[b]) {
      ++keyed;
      auto it = cached_.find(key_[b]);
      if (it == cached_.end() || it->second != b) return false;
    }
  }
  return keyed == static_cast<int32_t>(cached_.size());
}

}  // namespace tessera::scheduler
