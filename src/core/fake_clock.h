// A Clock for tests: time moves only when someone sleeps, at once, and every
// sleep is recorded. Thread-safe, since the engine's worker threads share it.
#pragma once

#include <chrono>
#include <mutex>
#include <vector>

#include "core/clock.h"

namespace roster {

class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void SleepFor(std::chrono::milliseconds d) override {
    std::lock_guard lock(mu_);
    sleeps.push_back(d);
    now_ += d;
  }
  std::vector<std::chrono::milliseconds> sleeps;

 private:
  std::mutex mu_;
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1)};
};

}  // namespace roster
