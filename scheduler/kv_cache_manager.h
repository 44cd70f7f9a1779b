// Block accounting for every KV group of the model (ARCHITECTURE.md, "The paged KV cache"): per
// sequence block tables, allocation, sharing through the prefix cache, releasing sliding-window
// blocks no future query can see, and a dry-run "would this fit" for the policy.
// Engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/model_runner.h"
#include "scheduler/block_pool.h"
#include "scheduler/sequence.h"

namespace tessera::scheduler {

// The longest usable cached prefix of a sequence, not yet attached.
struct PrefixMatch {
  int32_t num_tokens = 0;
  // Per group: the blocks covering [0, num_tokens) (kReleasedBlock where the group does not need
  // them: sliding blocks before the window of the first new query).
  std::vector<std::vector<int32_t>> tables;
  // Per group: how many of those blocks are currently free (attaching takes them off the queue).
  std::vector<int32_t> num_free_taken;
};

class KvCacheManager {
 public:
  KvCacheManager(const runtime::KvCacheSpec& spec, bool enable_prefix_caching);

  int32_t num_groups() const { return static_cast<int32_t>(spec_.groups.size()); }
  const runtime::KvGroupSpec& group(int32_t g) const { return spec_.groups[g]; }
  const BlockPool& pool(int32_t g) const { return *pools_[g]; }
  bool prefix_caching() const { return prefix_caching_; }

  // Sizes the sequence's per-group state. Call once before anything else.
  void InitSequence(Sequence* seq) const;

  // Longest cached prefix usable by `seq` (which holds no blocks): ends on a block boundary of
  // every group, never inside a media run, at most num_tokens - 1 (one row must be computed to
  // sample); every global-group block before the end is cached, and for sliding groups the blocks
  // inside the window of a query at the end. Empty when prefix caching is off.
  PrefixMatch FindPrefix(Sequence* seq);

  // Whether growing the tables to cover [0, new_end) fits in the free blocks, after attaching
  // `match` when given. Changes nothing.
  bool CanAllocate(const Sequence& seq, int32_t new_end, const PrefixMatch* match = nullptr) const;
  // Takes the matched blocks (ref counts +1) and marks them computed.
  void AttachPrefix(Sequence* seq, const PrefixMatch& match);
  // Grows the tables to cover [0, new_end). False (and nothing allocated) if it does not fit.
  bool Allocate(Sequence* seq, int32_t new_end);
  // Allocate after CanAllocate(seq, new_end) returned true (no second check; the policy's path).
  void AllocateChecked(Sequence* seq, int32_t new_end);
  // After seq->num_computed advanced: offers newly full blocks to the prefix cache and releases
  // sliding blocks that no query at or after num_computed can see.
  void OnComputed(Sequence* seq);
  // Gives back every block of the sequence, tail first (so its last blocks are evicted first).
  // The sequence's keys are kept (its content is unchanged if it is recomputed).
  void Free(Sequence* seq);

  // True if every block is free or cached with ref count zero and the pools are consistent.
  bool AllFree() const;
  bool CheckInvariants() const;
  void ClearCache();

 private:
  // Computes keys of the first `num_blocks` full blocks of group g (as far as the tokens allow).
  void EnsureKeys(Sequence* seq, int32_t g, int32_t num_blocks) const;
  int32_t BlocksFor(int32_t g, int32_t num_positions) const {
    const int32_t bs = spec_.groups[g].block_size;
    return (num_positions + bs - 1) / bs;
  }
  // First block a query at `pos` can see in group g (0 for full attention).
  int32_t FirstVisibleBlock(int32_t g, int32_t pos) const;

  runtime::KvCacheSpec spec_;
  bool prefix_caching_;
  int32_t boundary_step_ = 1;  // Least common multiple of the block sizes.
  std::vector<std::unique_ptr<BlockPool>> pools_;
};

}  // namespace tessera::scheduler
