#include "scheduler/clock.h"

namespace tessera::scheduler {

RealClock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

}  // namespace tessera::scheduler
