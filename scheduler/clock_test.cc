#include "scheduler/clock.h"

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

TEST(ClockTest, ManualClockMovesOnlyWhenTold) {
  ManualClock clock;
  const absl::Time t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(absl::Milliseconds(250));
  EXPECT_EQ(clock.Now(), t0 + absl::Milliseconds(250));
  clock.Set(t0);
  EXPECT_EQ(clock.Now(), t0);
}

TEST(ClockTest, RealClockFollowsAbslNow) {
  const absl::Time before = absl::Now();
  const absl::Time now = RealClock::Get()->Now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, absl::Now());
}

}  // namespace
}  // namespace tessera::scheduler
