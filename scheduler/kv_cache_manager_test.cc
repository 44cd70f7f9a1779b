#include "scheduler/kv_cache_manager.h"

#include <memory>
#include <numeric>

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

using runtime::kReleasedBlock;

runtime::KvCacheSpec Spec(int sliding_blocks, int global_blocks) {
  runtime::KvCacheSpec spec;
  runtime::KvGroupSpec s;
  s.name = "sliding";
  s.window = 8;
  s.block_size = 4;
  s.num_blocks = sliding_blocks;
  runtime::KvGroupSpec g;
  g.name = "global";
  g.block_size = 4;
  g.num_blocks = global_blocks;
  spec.groups = {s, g};
  return spec;
}

std::unique_ptr<Sequence> MakeSeq(const KvCacheManager& kv, int n, std::string salt = "") {
  auto seq = std::make_unique<Sequence>();
  seq->prompt.resize(n);
  std::iota(seq->prompt.begin(), seq->prompt.end(), 100);
  seq->root_key = RootKey("m", salt);
  kv.InitSequence(seq.get());
  return seq;
}

// Prefills the whole sequence but the last token, in chunks of `chunk`.
void Prefill(KvCacheManager* kv, Sequence* seq, int chunk) {
  while (seq->num_computed < seq->num_tokens() - 1) {
    int end = std::min(seq->num_tokens() - 1, seq->num_computed + chunk);
    ASSERT_TRUE(kv->Allocate(seq, end));
    seq->num_computed = end;
    kv->OnComputed(seq);
  }
}

TEST(KvCacheManagerTest, SlidingBlocksOutsideTheWindowAreReleased) {
  KvCacheManager kv(Spec(16, 16), true);
  auto seq = MakeSeq(kv, 21);
  Prefill(&kv, seq.get(), 5);  // 20 computed: a query at 20 sees keys 13..20 -> blocks 3, 4, (5).
  const auto& sliding = seq->block_tables[0];
  ASSERT_EQ(sliding.size(), 5u);
  EXPECT_EQ(sliding[0], kReleasedBlock);
  EXPECT_EQ(sliding[1], kReleasedBlock);
  EXPECT_EQ(sliding[2], kReleasedBlock);
  EXPECT_NE(sliding[3], kReleasedBlock);
  EXPECT_EQ(kv.pool(0).num_used(), 2);
  EXPECT_EQ(kv.pool(1).num_used(), 5);  // Global keeps everything.
  for (int b : seq->block_tables[1]) EXPECT_NE(b, kReleasedBlock);
  kv.Free(seq.get());
  EXPECT_TRUE(kv.AllFree());
}

TEST(KvCacheManagerTest, SecondRequestReusesThePrefixAndOnlyTheWindowForSliding) {
  KvCacheManager kv(Spec(16, 16), true);
  auto first = MakeSeq(kv, 21);
  Prefill(&kv, first.get(), 8);
  kv.Free(first.get());
  EXPECT_EQ(kv.pool(1).num_cached_free(), 5);

  auto second = MakeSeq(kv, 30);  // Same first 21 tokens (iota), then more.
  PrefixMatch m = kv.FindPrefix(second.get());
  EXPECT_EQ(m.num_tokens, 20);
  ASSERT_EQ(m.tables[0].size(), 5u);
  EXPECT_EQ(m.tables[0][2], kReleasedBlock);  // Not needed by a query at 20 (window 8).
  EXPECT_NE(m.tables[0][3], kReleasedBlock);
  EXPECT_EQ(m.num_free_taken[1], 5);
  // Dry run changes nothing.
  EXPECT_TRUE(kv.CanAllocate(*second, 29, &m));
  EXPECT_EQ(kv.pool(1).num_free(), 16);
  kv.AttachPrefix(second.get(), m);
  EXPECT_EQ(second->num_computed, 20);
  EXPECT_EQ(kv.pool(1).num_used(), 5);
  EXPECT_EQ(kv.pool(0).num_used(), 2);
  ASSERT_TRUE(kv.Allocate(second.get(), 29));
  kv.Free(second.get());
  EXPECT_TRUE(kv.AllFree());
}

TEST(KvCacheManagerTest, MissingWindowBlockShortensTheMatch) {
  // Only sliding blocks 3 and 4 matter for an end at 20; without block 4 the end must drop to 16
  // (which needs blocks 1..3 for a query at 16: 9..16 -> blocks 2, 3).
  KvCacheManager kv(Spec(16, 16), true);
  auto first = MakeSeq(kv, 21);
  Prefill(&kv, first.get(), 20);
  // Poison sliding block 4's cache entry by giving its key to nobody: clear and re-register all
  // but 4.
  kv.Free(first.get());
  kv.ClearCache();
  auto again = MakeSeq(kv, 21);
  PrefixMatch none = kv.FindPrefix(again.get());
  EXPECT_EQ(none.num_tokens, 0);
  // Recompute only 17 tokens: sliding blocks 0..3 full -> cached; global too.
  auto partial = MakeSeq(kv, 18);
  Prefill(&kv, partial.get(), 17);
  kv.Free(partial.get());
  auto second = MakeSeq(kv, 30);
  EXPECT_EQ(kv.FindPrefix(second.get()).num_tokens, 16);
}

TEST(KvCacheManagerTest, MatchNeverEndsInsideAMediaRun) {
  KvCacheManager kv(Spec(16, 16), true);
  auto item = std::make_shared<runtime::MediaItem>();
  item->num_rows = 4;
  item->hash = {5, 6};
  auto first = MakeSeq(kv, 26);
  first->media.push_back({18, item});  // [18, 22)
  Prefill(&kv, first.get(), 30);
  kv.Free(first.get());
  auto second = MakeSeq(kv, 26);
  second->media.push_back({18, item});
  // 24 would be usable; 20 is inside the run, so 24 it is.
  EXPECT_EQ(kv.FindPrefix(second.get()).num_tokens, 24);
  auto shorter = MakeSeq(kv, 23);  // max end 22 -> 20, inside [18, 22) -> 16.
  shorter->media.push_back({18, item});
  EXPECT_EQ(kv.FindPrefix(shorter.get()).num_tokens, 16);
  // Different image content at the same place shares only what comes before it.
  auto other = std::make_shared<runtime::MediaItem>(*item);
  other->hash = {7, 8};
  auto third = MakeSeq(kv, 26);
  third->media.push_back({18, other});
  EXPECT_EQ(kv.FindPrefix(third.get()).num_tokens, 16);
}

TEST(KvCacheManagerTest, FreedTailFirstSoTheTailIsEvictedFirst) {
  runtime::KvCacheSpec spec;
  runtime::KvGroupSpec g;
  g.name = "global";
  g.block_size = 4;
  g.num_blocks = 4;
  spec.groups = {g};
  KvCacheManager kv(spec, true);
  auto first = MakeSeq(kv, 17);
  Prefill(&kv, first.get(), 16);
  kv.Free(first.get());
  EXPECT_EQ(kv.pool(0).num_cached_free(), 4);
  // Another sequence needs one block: the least recently released one, the tail, goes.
  auto other = MakeSeq(kv, 3, "other");
  ASSERT_TRUE(kv.Allocate(other.get(), 3));
  auto again = MakeSeq(kv, 17);
  EXPECT_EQ(kv.FindPrefix(again.get()).num_tokens, 12);
  // Two more evictions take blocks 2 and 1, keeping the head longest.
  ASSERT_TRUE(kv.Allocate(other.get(), 11));
  EXPECT_EQ(kv.FindPrefix(again.get()).num_tokens, 4);
  kv.Free(other.get());
  EXPECT_TRUE(kv.AllFree());
}

TEST(KvCacheManagerTest, DifferentSaltSharesNothing) {
  KvCacheManager kv(Spec(16, 16), true);
  auto first = MakeSeq(kv, 21, "alice");
  Prefill(&kv, first.get(), 20);
  kv.Free(first.get());
  auto bob = MakeSeq(kv, 21, "bob");
  EXPECT_EQ(kv.FindPrefix(bob.get()).num_tokens, 0);
  auto alice = MakeSeq(kv, 21, "alice");
  EXPECT_EQ(kv.FindPrefix(alice.get()).num_tokens, 20);
}

TEST(KvCacheManagerTest, CanAllocateCountsFreeBlocksAndPrefixDisabledCachesNothing) {
  KvCacheManager kv(Spec(4, 4), false);
  auto a = MakeSeq(kv, 40);
  EXPECT_TRUE(kv.CanAllocate(*a, 16));
  EXPECT_FALSE(kv.CanAllocate(*a, 17));
  EXPECT_FALSE(kv.Allocate(a.get(), 17));
  EXPECT_EQ(kv.pool(0).num_free(), 4);
  ASSERT_TRUE(kv.Allocate(a.get(), 12));
  a->num_computed = 12;
  kv.OnComputed(a.get());
  EXPECT_EQ(kv.pool(1).num_cached_free(), 0);
  kv.Free(a.get());
  auto b = MakeSeq(kv, 40);
  EXPECT_EQ(kv.FindPrefix(b.get()).num_tokens, 0);
  EXPECT_TRUE(kv.AllFree());
}

}  // namespace
}  // namespace tessera::scheduler
