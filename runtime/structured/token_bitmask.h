// Token masks: one bit per vocabulary entry, bit (id % 64) of word (id / 64), 1 = allowed. For
// Gemma 4 (262144 tokens) a mask is 4096 words (32 KiB).
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::runtime::structured {

inline int BitmaskWords(int vocab_size) { return (vocab_size + 63) / 64; }

inline bool BitmaskTest(const uint64_t* mask, int32_t id) {
  return (mask[id >> 6] >> (id & 63)) & 1;
}
inline void BitmaskSet(uint64_t* mask, int32_t id) { mask[id >> 6] |= uint64_t{1} << (id & 63); }
inline void BitmaskClear(uint64_t* mask, int32_t id) {
  mask[id >> 6] &= ~(uint64_t{1} << (id & 63));
}

// dst |= src over `words` words (AVX2 when the build targets it, as .bazelrc's x86-64-v3 does).
void BitmaskOr(uint64_t* dst, const uint64_t* src, int words);

// Sets every logit whose token is not allowed to -infinity: what a sampler does before sampling
// (temperature, top-k/p, penalties then act on the allowed tokens only). `logits` has `vocab_size`
// entries; ids past the mask's vocabulary are not allowed.
void ApplyTokenBitmask(const uint64_t* mask, int mask_vocab_size, float* logits, int vocab_size);

int CountAllowed(const uint64_t* mask, int vocab_size);
std::vector<int32_t> AllowedTokens(const uint64_t* mask, int vocab_size);

}  // namespace tessera::runtime::structured
