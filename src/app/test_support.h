// Test doubles shared by the engine's tests: a source over a vector of
// records, an erasure list, and (from core/fake_clock.h) a clock whose
// waits are instant.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/connector.h"
#include "core/erasure.h"
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

// Erased by address or by key.
class FakeErasures final : public ErasureList {
 public:
  std::set<std::string> addresses, keys;
  bool Erased(std::string_view, const SourceRecord& r) const override {
    if (keys.count(r.key)) return true;
    for (const TypedValue& e : r.contact.emails) {
      if (addresses.count(e.value)) return true;
    }
    return false;
  }
  bool ErasedReference(std::string_view) const override { return false; }
  bool ErasedName(std::string_view) const override { return false; }
  std::string Fingerprint() const override {
    std::string f;
    for (const std::string& a : addresses) f += a + ";";
    for (const std::string& k : keys) f += k + ";";
    return f;
  }
};

}  // namespace roster
