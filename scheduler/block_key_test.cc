#include "scheduler/block_key.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

std::shared_ptr<runtime::MediaItem> Item(uint64_t h, int rows) {
  auto item = std::make_shared<runtime::MediaItem>();
  item->num_rows = rows;
  item->hash = {h, h + 1};
  return item;
}

TEST(BlockKeyTest, SaltAndModelSeparateRoots) {
  EXPECT_EQ(RootKey("m", "s"), RootKey("m", "s"));
  EXPECT_NE(RootKey("m", "s"), RootKey("m", "t"));
  EXPECT_NE(RootKey("m", ""), RootKey("n", ""));
  EXPECT_NE(RootKey("ab", "c"), RootKey("a", "bc"));
}

TEST(BlockKeyTest, ChainsParentTokensAndMedia) {
  const std::vector<int32_t> t = {1, 2, 3, 4};
  const std::vector<runtime::MediaRun> none;
  const BlockKey root = RootKey("m", "");
  const BlockKey k = ChainKey(root, 0, t.data(), 4, none);
  EXPECT_EQ(k, ChainKey(root, 0, t.data(), 4, none));
  EXPECT_NE(k, ChainKey(RootKey("m", "x"), 0, t.data(), 4, none));
  const std::vector<int32_t> t2 = {1, 2, 3, 5};
  EXPECT_NE(k, ChainKey(root, 0, t2.data(), 4, none));

  // Same placeholder ids, different image content -> different keys.
  std::vector<runtime::MediaRun> a = {{1, Item(10, 2)}};
  std::vector<runtime::MediaRun> b = {{1, Item(20, 2)}};
  EXPECT_NE(ChainKey(root, 0, t.data(), 4, a), ChainKey(root, 0, t.data(), 4, b));
  EXPECT_NE(ChainKey(root, 0, t.data(), 4, a), k);
  // Same image shifted by one position -> different key.
  std::vector<runtime::MediaRun> shifted = {{2, Item(10, 2)}};
  EXPECT_NE(ChainKey(root, 0, t.data(), 4, a), ChainKey(root, 0, t.data(), 4, shifted));
  // A run outside the block does not contribute.
  std::vector<runtime::MediaRun> later = {{8, Item(10, 2)}};
  EXPECT_EQ(ChainKey(root, 0, t.data(), 4, later), k);
  // A run that began in an earlier block and continues into this one contributes.
  std::vector<runtime::MediaRun> spanning = {{2, Item(10, 4)}};
  EXPECT_NE(ChainKey(root, 4, t.data(), 4, spanning), ChainKey(root, 4, t.data(), 4, none));
}

}  // namespace
}  // namespace tessera::scheduler
