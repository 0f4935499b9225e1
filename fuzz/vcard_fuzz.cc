// libFuzzer target for the vCard reader and writer. Beyond "never crash or
// hang", it checks the property sync depends on: a parsed card written back
// out and read again has the same content hash, in both vCard versions.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/contact.h"
#include "formats/vcard.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "vcard_fuzz: %s\n%s\n", what, detail.c_str());
  std::abort();
}

void CheckRoundTrip(const roster::ParsedVCard& card, roster::VCardVersion version) {
  const std::string first = roster::WriteVCard(card.contact, version, card.uid);
  roster::Result<roster::ParsedVCard> again = roster::ParseVCard(first);
  if (!again.ok()) {
    // Escaping can grow a property past the reader's limit; anything else
    // the writer produces must read back.
    if (first.size() > roster::kMaxVCardLineBytes) return;
    Fail(("written card does not parse: " + again.error().message).c_str(), first);
  }
  const std::string hash = roster::ContentHash(card.contact);
  if (roster::ContentHash(again->contact) != hash) {
    Fail("content hash changed on the first round trip",
         roster::CanonicalForm(card.contact) + "\n---\n" + roster::CanonicalForm(again->contact) +
             "\n---\n" + first);
  }
  const std::string second = roster::WriteVCard(again->contact, version, again->uid);
  roster::Result<roster::ParsedVCard> third = roster::ParseVCard(second);
  if (!third.ok()) Fail(("second write does not parse: " + third.error().message).c_str(), second);
  if (roster::ContentHash(third->contact) != hash) {
    Fail("content hash changed on the second round trip", second);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  roster::Result<std::vector<roster::ParsedVCard>> cards = roster::ParseVCards(text);
  if (!cards.ok()) return 0;
  for (const roster::ParsedVCard& card : *cards) {
    CheckRoundTrip(card, roster::VCardVersion::k30);
    CheckRoundTrip(card, roster::VCardVersion::k40);
  }
  return 0;
}
