// Test doubles shared by the engine's tests: a source over a vector of
// records, and (from core/fake_clock.h) a clock whose waits are instant.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/connector.h"
#include "core/fake_clock.h"

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

}  // namespace roster
