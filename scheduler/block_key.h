// Prefix-cache keys: a block's key chains its parent's key with the block's token ids, the content
// hashes of the media rows it holds, and (through the root key) the cache salt and model identity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "runtime/media/media.h"

namespace tessera::scheduler {

// 128 bits so that accidental collisions (which would serve wrong KV) are out of the question.
struct BlockKey {
  uint64_t lo = 0;
  uint64_t hi = 0;
  bool operator==(const BlockKey& o) const { return lo == o.lo && hi == o.hi; }
  bool operator!=(const BlockKey& o) const { return !(*this == o); }
};

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const { return static_cast<size_t>(k.lo ^ (k.hi * 31)); }
};

// The key before the first block: model identity and cache salt.
BlockKey RootKey(std::string_view model_identity, std::string_view cache_salt);

// Key of the block covering positions [block_start, block_start + tokens.size()) given its parent's
// key. `media` are the sequence's runs (sorted by start); those overlapping the block contribute
// their item's content hash and offset.
BlockKey ChainKey(const BlockKey& parent, int32_t block_start, const int32_t* tokens,
                  int32_t num_tokens, const std::vector<runtime::MediaRun>& media);

}  // namespace tessera::scheduler
