// libFuzzer target for filter expressions: parsing any input must succeed or
// fail with a message, and a parsed filter must evaluate without trouble.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "filter/filter.h"

namespace {

// A fixed record: several values, one empty, one absent field, non-ASCII.
std::vector<std::string> Lookup(std::string_view field) {
  if (field == "a" || field == "email") return {"Ada@Example.org", "ada.work@corp.example.com"};
  if (field == "b" || field == "department") return {"Sales"};
  if (field == "c") return {""};
  if (field == "d") return {"Zürich 8001", "42"};
  if (field == "e") return {std::string(300, 'a') + "b"};
  return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view expression(reinterpret_cast<const char*>(data), size);
  auto filter = roster::Filter::Parse(expression);
  if (!filter.ok()) {
    if (filter.error().message.rfind("filter: column ", 0) != 0) std::abort();
    return 0;
  }
  const bool matches = filter->Matches(Lookup);
  // Evaluation is a pure function of the lookup, and copies behave the same.
  roster::Filter copy = *filter;
  if (copy.Matches(Lookup) != matches) std::abort();
  for (const std::string& field : filter->Fields()) {
    if (field.empty()) std::abort();
  }
  return 0;
}
