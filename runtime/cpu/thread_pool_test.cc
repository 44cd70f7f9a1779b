#include "runtime/cpu/thread_pool.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::runtime::cpu {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceInContiguousChunks) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 5, 100, 1001}) {
      for (int64_t min_chunk : {1, 4, 1000}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> calls{0};
        pool.ParallelFor(n, min_chunk, [&](int64_t b, int64_t e) {
          ASSERT_LT(b, e);
          calls++;
          for (int64_t i = b; i < e; ++i) hits[i]++;
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << n << " " << i;
        EXPECT_LE(calls, 4 * threads);
        if (n > 0 && n <= min_chunk) EXPECT_EQ(calls, 1);
      }
    }
  }
}

TEST(ThreadPoolTest, ManyLoopsInARow) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 2000; ++rep) {
    pool.ParallelFor(10, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  }
  EXPECT_EQ(sum, 20000);
}

}  // namespace
}  // namespace tessera::runtime::cpu
