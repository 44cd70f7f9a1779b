// The blocks of one KV group: ref counts, a free queue in eviction order, and the prefix-cache map
// from block key to the block that holds that content.
//
// Blocks are metadata only (ARCHITECTURE.md, "The paged KV cache"); the memory they name belongs to
// the runner. A block is in exactly one of three states:
//   used    ref_count > 0, not in the free queue;
//   cached  ref_count == 0, has a key, in the free queue (reusable by a prefix hit until evicted);
//   free    ref_count == 0, no key, in the free queue.
// The free queue is ordered for eviction: free blocks sit at the front (handed out first), cached
// blocks are appended at the back as they are released, so the least recently released cached
// block is evicted first. Not thread-safe: the engine thread owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "scheduler/block_key.h"

namespace tessera::scheduler {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_count_.size()); }
  // Blocks with ref_count 0 (free or cached): what an allocation can take.
  int32_t num_free() const { return num_free_; }
  int32_t num_used() const { return num_blocks() - num_free_; }
  int32_t num_cached_free() const { return num_cached_free_; }

  // Takes the block at the front of the free queue (evicting its key if cached) with ref_count 1.
  // -1 when none is free.
  int32_t Allocate();
  // One more reference to a block (a prefix hit); removes it from the free queue if it was there.
  void Ref(int32_t block);
  // One reference fewer; at zero the block joins the free queue (cached: back, free: front).
  void Unref(int32_t block);

  // Records that `block` (fully written) holds the content named by `key`. If another block already
  // holds that key, nothing changes (the block stays uncached) and false is returned.
  bool SetKey(int32_t block, const BlockKey& key);
  // The block holding `key`, or -1.
  int32_t Lookup(const BlockKey& key) const;

  int32_t ref_count(int32_t block) const { return ref_count_[block]; }
  bool has_key(int32_t block) const { return has_key_[block]; }
  // Drops every cached key (blocks stay where they are). For tests and "reset prefix cache".
  void ClearCache();
  // Checks the internal invariants (queue links, counts, map consistency); false on corruption.
  bool CheckInvariants() const;

 private:
  void QueueRemove(int32_t block);
  void QueuePushFront(int32_t block);
  void QueuePushBack(int32_t block);

  // Per block, indexed by block id.
  std::vector<int32_t> ref_count_;
  std::vector<BlockKey> key_;
  std::vector<bool> has_key_;
  // Doubly linked free queue over block ids; index num_blocks is the sentinel.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  std::vector<bool> in_queue_;
  int32_t num_free_ = 0;
  int32_t num_cached_free_ = 0;
  absl::flat_hash_map<BlockKey, int32_t, BlockKeyHash> cached_;
};

}  // namespace tessera::scheduler
