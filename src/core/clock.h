// Time as a seam: the executor sleeps between retries through a Clock, so tests
// can run backoff schedules instantly and check them.
#pragma once

#include <chrono>

namespace roster {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() = 0;
  virtual void SleepFor(std::chrono::milliseconds duration) = 0;
};

// The process-wide real clock.
Clock& RealClock();

}  // namespace roster
