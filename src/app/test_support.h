// Test doubles shared by the engine's tests: a source over a vector of
// records, and a clock whose waits are instant (thread-safe, since the
// engine's worker threads share it).
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/connector.h"

namespace roster {

class VectorSource final : public Source {
 public:
  // `version` (when set) is what Version() answers; `reads` counts ReadAll calls.
  explicit VectorSource(const std::vector<SourceRecord>* records,
                        const std::string* version = nullptr, int* reads = nullptr)
      : records_(records), version_(version), reads_(reads) {}
  Result<std::vector<SourceRecord>> ReadAll() override {
    if (reads_) ++*reads_;
    if (fail) return MakeError(ErrorKind::kUnavailable, "cannot read the source");
    return *records_;
  }
  Result<std::string> Version() override { return version_ ? *version_ : std::string(); }
  bool fail = false;

 private:
  const std::vector<SourceRecord>* records_;
  const std::string* version_;
  int* reads_;
};

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
