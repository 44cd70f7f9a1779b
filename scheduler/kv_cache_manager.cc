#include "scheduler/kv_cache_manager.h"

#include <algorithm>
#include <numeric>

#include "base/logging.h"

namespace tessera::scheduler {

using runtime::kReleasedBlock;

KvCacheManager::KvCacheManager(const runtime::KvCacheSpec& spec, bool enable_prefix_caching)
    : spec_(spec), prefix_caching_(enable_prefix_caching) {
  for (const auto& g : spec_.groups) {
    TESSERA_CHECK(g.block_size > 0) << "KV group " << g.name << " has block size " << g.block_size;
    boundary_step_ = std::lcm(boundary_step_, g.block_size);
    pools_.push_back(std::make_unique<BlockPool>(g.num_blocks));
  }
}

void KvCacheManager::InitSequence(Sequence* seq) const {
  const size_t n = spec_.groups.size();
  seq->block_tables.assign(n, {});
  seq->block_keys.assign(n, {});
  seq->num_released.assign(n, 0);
  seq->num_registered.assign(n, 0);
}

int32_t KvCacheManager::FirstVisibleBlock(int32_t g, int32_t pos) const {
  const auto& spec = spec_.groups[g];
  if (spec.window <= 0) return 0;
  const int32_t first_pos = pos - spec.window + 1;  // Key k visible from q iff q - k < window.
  return first_pos <= 0 ? 0 : first_pos / spec.block_size;
}

void KvCacheManager::EnsureKeys(Sequence* seq, int32_t g, int32_t num_blocks) const {
  const int32_t bs = spec_.groups[g].block_size;
  auto& keys = seq->block_keys[g];
  num_blocks = std::min(num_blocks, seq->num_tokens() / bs);
  if (static_cast<int32_t>(keys.size()) >= num_blocks) return;
  // Groups with the same block size have the same keys: hash once (Gemma 4: both groups).
  for (int32_t g0 = 0; g0 < g; ++g0) {
    if (spec_.groups[g0].block_size != bs) continue;
    EnsureKeys(seq, g0, num_blocks);
    const auto& src = seq->block_keys[g0];
    keys.insert(keys.end(), src.begin() + keys.size(), src.begin() + num_blocks);
    return;
  }
  int32_t buf[1024];
  std::vector<int32_t> big;
  int32_t* tokens = buf;
  if (bs > 1024) {
    big.resize(bs);
    tokens = big.data();
  }
  while (static_cast<int32_t>(keys.size()) < num_blocks) {
    const int32_t b = static_cast<int32_t>(keys.size());
    const int32_t start = b * bs;
    const int32_t n_prompt = static_cast<int32_t>(seq->prompt.size());
    if (start + bs <= n_prompt) {
      std::copy_n(seq->prompt.data() + start, bs, tokens);
    } else {
      for (int32_t i = 0; i < bs; ++i) tokens[i] = seq->TokenAt(start + i);
    }
    const BlockKey& parent = b == 0 ? seq->root_key : keys[b - 1];
    keys.push_back(ChainKey(parent, start, tokens, bs, seq->media));
  }
}

PrefixMatch KvCacheManager::FindPrefix(Sequence* seq) {
  PrefixMatch match;
  const int32_t ng = num_groups();
  match.tables.assign(ng, {});
  match.num_free_taken.assign(ng, 0);
  if (!prefix_caching_ || ng == 0) return match;
  const int32_t max_end = seq->num_tokens() - 1;
  int32_t end = max_end / boundary_step_ * boundary_step_;
  if (end <= 0) return match;

  // Full-attention groups need every block before the end: the end is at most their cached run.
  for (int32_t g = 0; g < ng; ++g) {
    if (spec_.groups[g].window > 0) continue;
    const int32_t bs = spec_.groups[g].block_size;
    const int32_t want = end / bs;
    EnsureKeys(seq, g, want);
    int32_t run = 0;
    while (run < want && pools_[g]->Lookup(seq->block_keys[g][run]) >= 0) ++run;
    end = std::min(end, run * bs / boundary_step_ * boundary_step_);
  }

  // Walk candidate ends downwards until no media run is cut and every sliding group has its window.
  while (end > 0) {
    bool ok = true;
    // Never end inside a media run: its rows attend to each other (images) and a chunk may not
    // split it.
    auto it =
        std::upper_bound(seq->media.begin(), seq->media.end(), end,
                         [](int32_t pos, const runtime::MediaRun& run) { return pos < run.end(); });
    if (it != seq->media.end() && it->start < end) {
      end = it->start / boundary_step_ * boundary_step_;
      continue;
    }
    for (int32_t g = 0; g < ng && ok; ++g) {
      if (spec_.groups[g].window <= 0) continue;
      const int32_t bs = spec_.groups[g].block_size;
      const int32_t last = end / bs;  // Exclusive.
      EnsureKeys(seq, g, last);
      for (int32_t b = last - 1; b >= FirstVisibleBlock(g, end); --b) {
        if (pools_[g]->Lookup(seq->block_keys[g][b]) < 0) {
          // Any end that still needs block b fails too; the next candidate stops before it.
          end = b * bs / boundary_step_ * boundary_step_;
          ok = false;
          break;
        }
      }
    }
    if (ok) break;
  }
  if (end <= 0) return match;

  match.num_tokens = end;
  for (int32_t g = 0; g < ng; ++g) {
    const int32_t bs = spec_.groups[g].block_size;
    const int32_t nb = end / bs;
    const int32_t first = FirstVisibleBlock(g, end);
    auto& table = match.tables[g];
    table.assign(nb, kReleasedBlock);
    for (int32_t b = first; b < nb; ++b) {
      const int32_t block = pools_[g]->Lookup(seq->block_keys[g][b]);
      TESSERA_CHECK(block >= 0) << "prefix match lost block " << b;
      table[b] = block;
      if (pools_[g]->ref_count(block) == 0) ++match.num_free_taken[g];
    }
  }
  return match;
}

bool KvCacheManager::CanAllocate(const Sequence& seq, int32_t new_end,
                                 const PrefixMatch* match) const {
  for (int32_t g = 0; g < num_groups(); ++g) {
    const int32_t have = static_cast<int32_t>(match != nullptr ? match->tables[g].size()
                                                               : seq.block_tables[g].size());
    const int32_t need = BlocksFor(g, new_end) - have;
    const int32_t avail = pools_[g]->num_free() - (match != nullptr ? match->num_free_taken[g] : 0);
    if (need > avail) return false;
  }
  return true;
}

void KvCacheManager::AttachPrefix(Sequence* seq, const PrefixMatch& match) {
  if (match.num_tokens == 0) return;
  for (int32_t g = 0; g < num_groups(); ++g) {
    TESSERA_CHECK(seq->block_tables[g].empty()) << "prefix attached to a sequence with blocks";
    auto& table = seq->block_tables[g];
    table = match.tables[g];
    int32_t released = 0;
    while (released < static_cast<int32_t>(table.size()) && table[released] == kReleasedBlock) {
      ++released;
    }
    for (int32_t b = released; b < static_cast<int32_t>(table.size()); ++b) {
      pools_[g]->Ref(table[b]);
    }
    seq->num_released[g] = released;
    seq->num_registered[g] = static_cast<int32_t>(table.size());
  }
  seq->num_computed = match.num_tokens;
}

bool KvCacheManager::Allocate(Sequence* seq, int32_t new_end) {
  if (!CanAllocate(*seq, new_end)) return false;
  AllocateChecked(seq, new_end);
  return true;
}

void KvCacheManager::AllocateChecked(Sequence* seq, int32_t new_end) {
  for (int32_t g = 0; g < num_groups(); ++g) {
    auto& table = seq->block_tables[g];
    const int32_t want = BlocksFor(g, new_end);
    while (static_cast<int32_t>(table.size()) < want) {
      const int32_t block = pools_[g]->Allocate();
      TESSERA_CHECK(block >= 0) << "allocation failed after CanAllocate";
      table.push_back(block);
    }
  }
}

void KvCacheManager::OnComputed(Sequence* seq) {
  for (int32_t g = 0; g < num_groups(); ++g) {
    auto& table = seq->block_tables[g];
    const int32_t bs = spec_.groups[g].block_size;
    if (prefix_caching_) {
      const int32_t full = std::min<int32_t>(seq->num_computed / bs, table.size());
      if (seq->num_registered[g] < full) {
        EnsureKeys(seq, g, full);
        for (int32_t b = seq->num_registered[g]; b < full; ++b) {
          if (table[b] != kReleasedBlock) pools_[g]->SetKey(table[b], seq->block_keys[g][b]);
        }
        seq->num_registered[g] = full;
      }
    }
    if (spec_.groups[g].window > 0) {
      const int32_t first =
          std::min<int32_t>(FirstVisibleBlock(g, seq->num_computed), table.size());
      for (int32_t b = seq->num_released[g]; b < first; ++b) {
        if (table[b] != kReleasedBlock) {
          pools_[g]->Unref(table[b]);
          table[b] = kReleasedBlock;
        }
      }
      seq->num_released[g] = std::max(seq->num_released[g], first);
    }
  }
}

void KvCacheManager::Free(Sequence* seq) {
  for (int32_t g = 0; g < num_groups(); ++g) {
    auto& table = seq->block_tables[g];
    for (auto it = table.rbegin(); it != table.rend(); ++it) {
      if (*it != kReleasedBlock) pools_[g]->Unref(*it);
    }
    table.clear();
    seq->num_released[g] = 0;
    seq->num_registered[g] = 0;
  }
  seq->num_computed = 0;
}

bool KvCacheManager::AllFree() const {
  for (const auto& pool : pools_) {
    if (pool->num_free() != pool->num_blocks()) return false;
  }
  return CheckInvariants();
}

bool KvCacheManager::CheckInvariants() const {
  for (const auto& pool : pools_) {
    if (!pool->CheckInvariants()) return false;
  }
  return true;
}

void KvCacheManager::ClearCache() {
  for (auto& pool : pools_) pool->ClearCache();
}

}  // namespace tessera::scheduler
