// Time as the engine sees it. Injected (STYLE.md 4) so that deadlines, session TTLs and timings are
// tested without sleeping: production uses RealClock, tests a ManualClock they advance by hand.
#pragma once

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tessera::scheduler {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// absl::Now(). Stateless; Get() returns a process-wide instance.
class RealClock : public Clock {
 public:
  static RealClock* Get();
  absl::Time Now() const override { return absl::Now(); }
};

// A clock that moves only when told. Thread-safe.
class ManualClock : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24 * 365 * 50))
      : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::scheduler
