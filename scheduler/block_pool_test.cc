#include "scheduler/block_pool.h"

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

BlockKey K(uint64_t v) { return BlockKey{v, ~v}; }

TEST(BlockPoolTest, AllocateUntilEmptyThenRelease) {
  BlockPool pool(3);
  EXPECT_EQ(pool.num_free(), 3);
  int a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_EQ(pool.Allocate(), -1);
  EXPECT_EQ(pool.num_free(), 0);
  pool.Unref(b);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.Allocate(), b);
  EXPECT_TRUE(pool.CheckInvariants());
}

TEST(BlockPoolTest, CachedBlocksAreReusedByLookupAndEvictedLast) {
  BlockPool pool(4);
  int a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
  ASSERT_TRUE(pool.SetKey(a, K(1)));
  ASSERT_TRUE(pool.SetKey(b, K(2)));
  EXPECT_FALSE(pool.SetKey(c, K(1)));  // Duplicate content stays uncached.
  // Tail first: b released before a, so b is evicted before a.
  pool.Unref(c);
  pool.Unref(b);
  pool.Unref(a);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.num_cached_free(), 2);
  EXPECT_EQ(pool.Lookup(K(1)), a);
  // A hit takes the cached block back without allocating.
  pool.Ref(a);
  EXPECT_EQ(pool.ref_count(a), 1);
  EXPECT_EQ(pool.num_cached_free(), 1);
  // Uncached free blocks are handed out before any cached block is evicted.
  int x = pool.Allocate();
  int y = pool.Allocate();
  EXPECT_TRUE((x == c && y != a && y != b) || (y == c && x != a && x != b)) << x << " " << y;
  EXPECT_EQ(pool.Lookup(K(2)), b);
  int z = pool.Allocate();  // Now the cached b is evicted.
  EXPECT_EQ(z, b);
  EXPECT_EQ(pool.Lookup(K(2)), -1);
  EXPECT_EQ(pool.Allocate(), -1);
  EXPECT_TRUE(pool.CheckInvariants());
}

TEST(BlockPoolTest, SharedBlockNeedsEveryReferenceReleased) {
  BlockPool pool(2);
  int a = pool.Allocate();
  pool.SetKey(a, K(7));
  pool.Ref(a);
  pool.Unref(a);
  EXPECT_EQ(pool.num_free(), 1);
  pool.Unref(a);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.num_cached_free(), 1);
  pool.ClearCache();
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_EQ(pool.Lookup(K(7)), -1);
  EXPECT_TRUE(pool.CheckInvariants());
}

}  // namespace
}  // namespace tessera::scheduler
