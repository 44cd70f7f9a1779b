#include "scheduler/block_key.h"

// For XXH3_state_t on the stack (no allocation per block).
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>

namespace tessera::scheduler {

BlockKey RootKey(std::string_view model_identity, std::string_view cache_salt) {
  // Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
  std::vector<char> buf;
  uint64_t n = model_identity.size();
  buf.insert(buf.end(), reinterpret_cast<const char*>(&n), reinterpret_cast<const char*>(&n) + 8);
  buf.insert(buf.end(), model_identity.begin(), model_identity.end());
  n = cache_salt.size();
  buf.insert(buf.end(), reinterpret_cast<const char*>(&n), reinterpret_cast<const char*>(&n) + 8);
  buf.insert(buf.end(), cache_salt.begin(), cache_salt.end());
  XXH128_hash_t h = XXH3_128bits(buf.data(), buf.size());
  return BlockKey{h.low64, h.high64};
}

BlockKey ChainKey(const BlockKey& parent, int32_t block_start, const int32_t* tokens,
                  int32_t num_tokens, const std::vector<runtime::MediaRun>& media) {
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  XXH3_128bits_update(&state, &parent, sizeof(parent));
  XXH3_128bits_update(&state, tokens, sizeof(int32_t) * num_tokens);
  const int32_t block_end = block_start + num_tokens;
  // First run that ends after block_start.
  auto it =
      std::upper_bound(media.begin(), media.end(), block_start,
                       [](int32_t pos, const runtime::MediaRun& run) { return pos < run.end(); });
  for (; it != media.end() && it->start < block_end; ++it) {
    struct {
      uint64_t h0, h1;
      int32_t offset;  // Run start relative to the block: fixes which rows sit where.
      int32_t kind;
    } entry{it->item->hash[0], it->item->hash[1], it->start - block_start,
            static_cast<int32_t>(it->item->kind)};
    XXH3_128bits_update(&state, &entry, sizeof(entry));
  }
  XXH128_hash_t h = XXH3_128bits_digest(&state);
  return BlockKey{h.low64, h.high64};
}

}  // namespace tessera::scheduler
