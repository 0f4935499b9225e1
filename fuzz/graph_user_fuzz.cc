// libFuzzer target for the Graph directory page reader (a page of /users,
// /contacts, their deltas or a group's members): arbitrary bytes as the
// answer must never crash, hang or throw; what it accepts must be usable as
// is: keys printable and bounded, links absolute http(s) and printable, an
// error one line.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "connectors/graph/graph_source.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "graph_user_fuzz: %s\n%s\n", what, detail.c_str());
  std::abort();
}

bool Printable(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

void Check(const roster::Result<roster::GraphDirectoryPage>& page) {
  if (!page.ok()) {
    for (unsigned char c : page.error().message) {
      if (c < 0x20 || c == 0x7f) Fail("an error message holds a control character", "");
    }
    return;
  }
  for (const std::string* link : {&page->next_link, &page->delta_link}) {
    if (link->empty()) continue;
    if (!Printable(*link) || !(link->starts_with("https://") || link->starts_with("http://"))) {
      Fail("an unusable link was accepted", *link);
    }
  }
  if (!page->next_link.empty() && !page->delta_link.empty()) Fail("both links accepted", "");
  for (const roster::SourceRecord& r : page->records) {
    if (r.key.empty() || r.key.size() > 512 || !Printable(r.key)) Fail("an unusable key", r.key);
    for (const auto& [name, values] : r.attributes) {
      if (name.empty() || values.empty()) Fail("an empty attribute", name);
    }
  }
}

const roster::GraphMapping& DefaultMapping() {
  static const roster::GraphMapping* m = new roster::GraphMapping(*roster::ResolveGraphMapping({}));
  return *m;
}

const roster::GraphMapping& OverrideMapping() {
  static const roster::GraphMapping* m = new roster::GraphMapping(
      *roster::ResolveGraphMapping({{"mobile", ""},
                                    {"office", "onPremisesExtensionAttributes.extensionAttribute1"},
                                    {"email_other", "otherMails"}}));
  return *m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Check(roster::ParseGraphDirectoryPage(input, roster::GraphObjectKind::kUser, DefaultMapping()));
  Check(roster::ParseGraphDirectoryPage(input, roster::GraphObjectKind::kUser, OverrideMapping()));
  Check(roster::ParseGraphDirectoryPage(input, roster::GraphObjectKind::kOrgContact,
                                        DefaultMapping()));
  return 0;
}
