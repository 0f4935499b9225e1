// The pure half of the LDAP connector: how a directory entry becomes a source
// record (identity, contact fields, raw attributes). No I/O, so that it can be
// unit-tested and fuzzed with hostile attribute values.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/connector.h"
#include "core/result.h"

namespace roster {

// One entry as the server sent it: its DN and each attribute's values as raw
// bytes (text attributes are UTF-8 only when the server kept to its schema).
struct LdapEntry {
  std::string dn;
  std::vector<std::pair<std::string, std::vector<std::string>>> attributes;

  // The values of attribute `name` (compared without case), or nullptr.
  const std::vector<std::string>* Find(std::string_view name) const;
};

// Where contact fields come from: a schema's defaults with the configured
// overrides applied.
struct LdapMapping {
  std::string key_attribute;
  // Contact field -> attributes tried in order (the first with a value wins).
  // Besides ContactFieldNames(), four pseudo-fields: "photo" (binary),
  // "office" and "manager" (also kept in attributes["office"/"manager"]) and
  // "proxy_addresses" (Exchange's "SMTP:"/"smtp:" list, merged into e-mails).
  std::vector<std::pair<std::string, std::vector<std::string>>> fields;
  // Fetched only to be kept in SourceRecord.attributes (for filters).
  std::vector<std::string> extra_attributes;

  // The attributes a search asks for: the key, every mapped attribute, the
  // extras and those the default exclusion filters read
  // (userAccountControl, msExchHideFromAddressLists); no duplicates.
  std::vector<std::string> RequestedAttributes() const;
  // The attributes whose values are bytes, not text (photos, GUIDs).
  bool IsBinary(std::string_view attribute) const;
};

// "inetorgperson" or "ad" (any case); anything else is kInvalidArgument.
// `overrides` maps a field to an attribute, replacing the default; an empty
// attribute removes the default. An empty key_attribute takes the schema's
// (entryUUID / objectGUID).
Result<LdapMapping> ResolveLdapMapping(std::string_view schema, const std::string& key_attribute,
                                       const std::map<std::string, std::string>& overrides,
                                       const std::vector<std::string>& extra_attributes);

// The search filter a schema reads people with when none is configured.
std::string DefaultLdapFilter(std::string_view schema);

// Whether `name` can be sent as an attribute description (letters, digits,
// '-', '.', ';'), so that a typo fails at configuration time.
bool IsValidAttributeName(std::string_view name);

// 16 bytes as the lower-case GUID string Microsoft prints: the first three
// groups little-endian ("03020100-0504-0706-0809-0a0b0c0d0e0f" for the bytes
// 00 01 .. 0f). Empty unless `bytes` has exactly 16 bytes.
std::string FormatGuid(std::string_view bytes);

// `text` with every invalid UTF-8 sequence (a stray continuation byte, a
// truncated, overlong or surrogate sequence, a code point past U+10FFFF)
// replaced by U+FFFD, maximal subparts as Unicode recommends. `*repaired` is
// set when anything was replaced.
std::string RepairUtf8(std::string_view text, bool* repaired);

// "image/jpeg", "image/png" or "image/gif" from the magic bytes, else
// "application/octet-stream".
std::string SniffImageType(std::string_view data);

// A DN in a form to compare DNs by: attribute types and ASCII letters in lower
// case, spaces around separators dropped, escapes resolved. A string that is
// not a DN comes back trimmed and lower-cased.
std::string NormalizeDn(std::string_view dn);
// The same through libldap's DN parser alone: NormalizeDn takes a shortcut
// for plain DNs (printable ASCII, no escapes, quotes or multi-valued RDNs),
// which the tests hold to this.
std::string NormalizeDnByParser(std::string_view dn);

// The value of a DN's first RDN ("Ann Lee" for "cn=Ann Lee,ou=people,...");
// the DN itself when it cannot be parsed.
std::string FirstRdnValue(std::string_view dn);

// The record key an entry's key attribute gives: objectGUID (and the other
// binary GUIDs of AD) formatted by FormatGuid, entryUUID in lower case, any
// other attribute's first value as text. nullopt with `*problem` set (half a
// sentence: "has no entryUUID") when the entry has no usable key.
std::optional<std::string> LdapEntryKey(const LdapEntry& entry, const std::string& key_attribute,
                                        std::string* problem);

// Maps one entry. Returns nullopt, with a warning, for an entry without a
// usable key. Text values are repaired (RepairUtf8) with one warning per
// attribute that needed it, naming the entry's DN and the attribute, never
// the value. Every text attribute is kept in attributes (all values, under
// the name the mapping asked for), plus "dn", "office" and "manager" (the
// first RDN value of the manager's DN; the DN itself in "manager_dn");
// binary attributes are not. Warnings start with "source `source`: ".
std::optional<SourceRecord> MapLdapEntry(const LdapEntry& entry, const LdapMapping& mapping,
                                         std::string_view source,
                                         std::vector<std::string>* warnings);

// Replaces attributes["manager"] with the manager's display name where the
// manager is one of `records`, and sets the contact's "manager" field when
// the contact model has one.
void ResolveManagers(std::vector<SourceRecord>* records);
// The keys of the records whose manager (by DN, as ResolveManagers finds
// them) is one of `touched`: their manager's name may have changed.
std::vector<std::string> ManagerDependents(const std::vector<SourceRecord>& records,
                                           const std::vector<const SourceRecord*>& touched);

}  // namespace roster
