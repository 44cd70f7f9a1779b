#include "runtime/structured/token_bitmask.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::runtime::structured {
namespace {

TEST(TokenBitmaskTest, ApplyMasksExactlyTheClearedTokens) {
  const int vocab = 200;  // not a multiple of 64
  std::vector<uint64_t> mask(BitmaskWords(vocab), 0);
  for (int id : {0, 63, 64, 65, 127, 128, 199}) BitmaskSet(mask.data(), id);
  std::vector<float> logits(vocab + 5, 1.0f);
  ApplyTokenBitmask(mask.data(), vocab, logits.data(), vocab + 5);
  for (int id = 0; id < vocab + 5; ++id) {
    const bool allowed = id < vocab && BitmaskTest(mask.data(), id);
    EXPECT_EQ(std::isinf(logits[id]), !allowed) << id;
  }
  EXPECT_EQ(CountAllowed(mask.data(), vocab), 7);
  EXPECT_EQ(AllowedTokens(mask.data(), vocab),
            (std::vector<int32_t>{0, 63, 64, 65, 127, 128, 199}));
}

TEST(TokenBitmaskTest, OrCombinesWordsPastTheVectorWidth) {
  std::vector<uint64_t> a(11, 0), b(11, 0);
  for (int i = 0; i < 11; ++i) {
    a[i] = uint64_t{1} << i;
    b[i] = uint64_t{1} << (63 - i);
  }
  BitmaskOr(a.data(), b.data(), 11);
  for (int i = 0; i < 11; ++i) EXPECT_EQ(a[i], (uint64_t{1} << i) | (uint64_t{1} << (63 - i)));
}

TEST(TokenBitmaskTest, FullWordsStayAndEmptyWordsAreCleared) {
  const int vocab = 256;
  std::vector<uint64_t> mask = {~uint64_t{0}, 0, 5, ~uint64_t{0}};
  std::vector<float> logits(vocab, 2.0f);
  ApplyTokenBitmask(mask.data(), vocab, logits.data(), vocab);
  EXPECT_EQ(logits[10], 2.0f);
  EXPECT_TRUE(std::isinf(logits[70]));
  EXPECT_EQ(logits[128], 2.0f);
  EXPECT_TRUE(std::isinf(logits[129]));
  EXPECT_EQ(logits[130], 2.0f);
  EXPECT_EQ(logits[255], 2.0f);
}

}  // namespace
}  // namespace tessera::runtime::structured
