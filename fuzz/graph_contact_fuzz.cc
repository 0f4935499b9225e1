// libFuzzer target for the Graph contact readers (one contact, a listing
// page, a delta page). Beyond "never crash, hang or throw", it checks what
// sync depends on: a contact read is already in the projected form, and
// writing it back (the create body, read again) gives the same contact and
// marker, so an unchanged contact is never rewritten; errors are one line.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "connectors/graph/contact_json.h"
#include "connectors/graph/projection.h"

namespace {

const std::string kMarkerId = "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster";

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "graph_contact_fuzz: %s\n%s\n", what, detail.c_str());
  std::abort();
}

void CheckMessage(const roster::Error& e) {
  for (unsigned char c : e.message) {
    if (c < 0x20 || c == 0x7f) Fail("an error message holds a control character", e.message);
  }
}

void CheckContact(const roster::GraphContact& c) {
  if (!c.parse_error.empty()) return;
  if (roster::ProjectGraphContact(c.contact) != c.contact) {
    Fail("a contact read is not in the projected form", roster::CanonicalForm(c.contact));
  }
  const roster::ManagedTag* tag = c.tag ? &*c.tag : nullptr;
  std::string body = roster::GraphContactBody(c.contact, tag, kMarkerId);
  body.insert(1, "\"id\":\"" + c.id + "\"" + (body.size() > 2 ? "," : ""));
  roster::Result<roster::GraphContact> again = roster::ParseGraphContact(body, kMarkerId);
  if (!again.ok())
    Fail(("the create body does not read back: " + again.error().message).c_str(), body);
  if (again->contact != c.contact || again->tag != c.tag) {
    Fail("the create body reads back as another contact", body);
  }
  if (!roster::GraphContactPatch(c.contact, again->contact, tag, tag, kMarkerId).empty()) {
    Fail("a contact differs from itself", body);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  roster::Result<roster::GraphContact> contact = roster::ParseGraphContact(text, kMarkerId);
  if (contact.ok()) {
    CheckContact(*contact);
  } else {
    CheckMessage(contact.error());
  }
  for (roster::GraphPageKind kind : {roster::GraphPageKind::kList, roster::GraphPageKind::kDelta}) {
    roster::Result<roster::GraphContactPage> page =
        roster::ParseGraphContactPage(text, kMarkerId, kind);
    if (!page.ok()) {
      CheckMessage(page.error());
      continue;
    }
    for (const roster::GraphContact& c : page->items) CheckContact(c);
  }
  return 0;
}
