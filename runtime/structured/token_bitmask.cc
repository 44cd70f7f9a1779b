#include "runtime/structured/token_bitmask.h"

#include <limits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace tessera::runtime::structured {

void BitmaskOr(uint64_t* dst, const uint64_t* src, int words) {
  int i = 0;
#if defined(__AVX2__)
  for (; i + 4 <= words; i += 4) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dst + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_or_si256(a, b));
  }
#endif
  for (; i < words; ++i) dst[i] |= src[i];
}

void ApplyTokenBitmask(const uint64_t* mask, int mask_vocab_size, float* logits, int vocab_size) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int covered = mask_vocab_size < vocab_size ? mask_vocab_size : vocab_size;
  int base = 0;
  for (; base + 64 <= covered; base += 64) {
    const uint64_t w = mask[base >> 6];
    if (w == ~uint64_t{0}) continue;
    if (w == 0) {
      for (int k = 0; k < 64; ++k) logits[base + k] = kNegInf;
      continue;
    }
    // Only the cleared bits: few inside strings, where masks are dense.
    for (uint64_t z = ~w; z != 0; z &= z - 1) logits[base + __builtin_ctzll(z)] = kNegInf;
  }
  for (int id = base; id < covered; ++id) {
    if (!BitmaskTest(mask, id)) logits[id] = kNegInf;
  }
  for (int id = covered; id < vocab_size; ++id) logits[id] = kNegInf;
}

int CountAllowed(const uint64_t* mask, int vocab_size) {
  int n = 0;
  const int words = vocab_size / 64;
  for (int i = 0; i < words; ++i) n += __builtin_popcountll(mask[i]);
  for (int id = words * 64; id < vocab_size; ++id) n += BitmaskTest(mask, id);
  return n;
}

std::vector<int32_t> AllowedTokens(const uint64_t* mask, int vocab_size) {
  std::vector<int32_t> out;
  for (int id = 0; id < vocab_size; ++id) {
    if (BitmaskTest(mask, id)) out.push_back(id);
  }
  return out;
}

}  // namespace tessera::runtime::structured
