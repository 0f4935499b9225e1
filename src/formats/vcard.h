// vCard 3.0 (RFC 2426) and 4.0 (RFC 6350) reading and writing: line folding,
// escaping, parameters, groups, non-ASCII text and embedded photos.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/contact.h"
#include "core/result.h"

namespace roster {

enum class VCardVersion { k30, k40 };

// A property the contact model does not carry (X-ROSTER-*, UID, PRODID, REV,
// X-ABLabel, ...), kept as read: name upper-cased, value unescaped text.
struct VCardProperty {
  std::string group;  // "item1" in "item1.TEL", else empty
  std::string name;   // upper case
  std::vector<std::pair<std::string, std::vector<std::string>>> params;  // names upper case
  std::string value;
};

struct ParsedVCard {
  std::string version;  // "3.0", "4.0" (or "2.1", read leniently)
  std::string uid;
  Contact contact;
  std::vector<VCardProperty> other;

  // Value of the first `other` property with this (upper-case) name, or empty.
  std::string Get(std::string_view name) const;
};

// Limits that keep a hostile input from exhausting memory.
inline constexpr size_t kMaxVCardLineBytes = 512 * 1024;  // one unfolded property
inline constexpr size_t kMaxVCardBytes = 8 * 1024 * 1024;

// Parses exactly one vCard (BEGIN:VCARD ... END:VCARD). Errors name the line:
// "vCard line 12: ...".
Result<ParsedVCard> ParseVCard(std::string_view text);

// Parses a stream of zero or more vCards (a .vcf file may hold several).
Result<std::vector<ParsedVCard>> ParseVCards(std::string_view text);

// Writes one vCard with CRLF line ends, folded at 75 octets without splitting
// a UTF-8 sequence. `extra` properties (name, already-plain value) are written
// after the contact's own, escaped as text.
std::string WriteVCard(const Contact& contact, VCardVersion version, std::string_view uid,
                       const std::vector<std::pair<std::string, std::string>>& extra = {});

}  // namespace roster
