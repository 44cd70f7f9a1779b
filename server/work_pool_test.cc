#include "server/work_pool.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tessera::server {
namespace {

TEST(WorkPoolTest, RunsEveryTaskAndRefusesPastTheQueue) {
  WorkPool pool({/*threads=*/1, /*max_queued=*/2});
  absl::Notification release, started;
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.Submit([&] {
                    started.Notify();
                    release.WaitForNotification();
                    ++ran;
                  })
                  .ok());
  started.WaitForNotification();  // The one thread is busy; now fill the queue.
  ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  EXPECT_EQ(pool.queued(), 2);
  absl::Status full = pool.Submit([&] { ++ran; });
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("--prompt_queue_length is 2"), std::string::npos) << full;
  release.Notify();
  while (pool.queued() > 0) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_TRUE(pool.Run([&] { ++ran; }).ok());
  EXPECT_EQ(ran.load(), 4);
}

// With no queue at all, a task for an idle thread still runs; only one that would wait is refused.
TEST(WorkPoolTest, ZeroQueueRunsOnIdleThreadsOnly) {
  WorkPool pool({/*threads=*/1, /*max_queued=*/0});
  absl::Notification release, started;
  ASSERT_TRUE(pool.Submit([&] {
                    started.Notify();
                    release.WaitForNotification();
                  })
                  .ok());
  started.WaitForNotification();
  EXPECT_EQ(pool.Submit([] {}).code(), absl::StatusCode::kResourceExhausted);
  release.Notify();
  int ran = 0;
  for (int i = 0; i < 100 && ran == 0; ++i) {
    if (pool.Run([&] { ++ran; }).ok()) break;  // Refused while the thread is not idle yet.
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ran, 1);
}

TEST(WorkPoolTest, DestructionRunsWhatIsQueued) {
  std::atomic<int> ran{0};
  {
    WorkPool pool({/*threads=*/2, /*max_queued=*/100});
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  }
  EXPECT_EQ(ran.load(), 50);
}

}  // namespace
}  // namespace tessera::server
