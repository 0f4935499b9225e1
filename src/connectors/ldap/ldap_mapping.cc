#include "connectors/ldap/ldap_mapping.h"

#include <ldap.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/personal.h"
#include "core/text.h"

namespace roster {
namespace {

using text::AsciiLower;
using text::EqualsNoCase;
using text::StartsWithNoCase;
using text::Trim;

using FieldList = std::vector<std::pair<std::string, std::vector<std::string>>>;

// The defaults of the two schemas side by side, in the order fields are
// applied (as docs/configuration.md shows them); an empty list: the schema
// does not map that field.
struct DefaultField {
  std::string_view field;
  std::vector<std::string> inetorgperson;
  std::vector<std::string> ad;
};

const std::vector<DefaultField>& DefaultFields() {
  static const std::vector<DefaultField> kFields = {
      {"display_name", {"displayName", "cn"}, {"displayName"}},
      {"given_name", {"givenName"}, {"givenName"}},
      {"family_name", {"sn"}, {"sn"}},
      {"email", {"mail"}, {"mail"}},
      {"proxy_addresses", {"proxyAddresses"}, {"proxyAddresses"}},
      {"work_phone", {"telephoneNumber"}, {"telephoneNumber"}},
      {"mobile", {"mobile"}, {"mobile"}},
      {"home_phone", {"homePhone"}, {"homePhone"}},
      {"fax", {"facsimileTelephoneNumber"}, {"facsimileTelephoneNumber"}},
      {"pager", {"pager"}, {}},
      {"title", {"title"}, {"title"}},
      {"department", {"ou"}, {"department"}},
      {"organization", {"o"}, {"company"}},
      {"street", {"street"}, {"streetAddress"}},
      {"city", {"l"}, {"l"}},
      {"region", {"st"}, {"st"}},
      {"postal_code", {"postalCode"}, {"postalCode"}},
      {"country", {}, {"co", "c"}},
      {"url", {"labeledURI"}, {"wWWHomePage"}},
      {"photo", {"jpegPhoto", "thumbnailPhoto"}, {"thumbnailPhoto", "jpegPhoto"}},
      {"office", {"physicalDeliveryOfficeName"}, {"physicalDeliveryOfficeName"}},
      {"manager", {"manager"}, {"manager"}},
  };
  return kFields;
}

FieldList SchemaFields(bool ad) {
  FieldList out;
  for (const DefaultField& f : DefaultFields()) {
    const std::vector<std::string>& attributes = ad ? f.ad : f.inetorgperson;
    if (!attributes.empty()) out.emplace_back(std::string(f.field), attributes);
  }
  return out;
}

constexpr std::array<std::string_view, 4> kPseudoFields = {"photo", "office", "manager",
                                                           "proxy_addresses"};

// Read whatever the rule filters are written against, mapped or not: the
// default exclusion of disabled and hidden accounts reads these two.
constexpr std::array<std::string_view, 2> kExclusionAttributes = {"userAccountControl",
                                                                  "msExchHideFromAddressLists"};

// Values that are bytes in every directory roster knows: never repaired as
// text, never kept in attributes.
constexpr std::array<std::string_view, 12> kBinaryAttributes = {
    "objectGUID",
    "objectSid",
    "mS-DS-ConsistencyGuid",
    "msExchMailboxGuid",
    "jpegPhoto",
    "thumbnailPhoto",
    "photo",
    "audio",
    "userCertificate",
    "userSMIMECertificate",
    "cACertificate",
    "userPKCS12",
};

// AD's GUID-valued attributes, any of which may serve as the key.
constexpr std::array<std::string_view, 3> kGuidAttributes = {"objectGUID", "mS-DS-ConsistencyGuid",
                                                             "msExchMailboxGuid"};

template <size_t N>
bool InNoCase(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::any_of(names.begin(), names.end(),
                     [&](std::string_view n) { return EqualsNoCase(n, name); });
}

bool IsPseudoField(std::string_view field) {
  return std::find(kPseudoFields.begin(), kPseudoFields.end(), field) != kPseudoFields.end();
}

// Fields that take every value of their attribute; the others take the first.
bool IsMultiValuedField(std::string_view field) {
  static constexpr std::array<std::string_view, 10> kMulti = {
      "email_home", "email_other", "mobile", "work_phone",  "home_phone",
      "fax",        "pager",       "url",    "phone_other", "categories"};
  return std::find(kMulti.begin(), kMulti.end(), field) != kMulti.end();
}

bool IsActiveDirectory(std::string_view schema) { return EqualsNoCase(schema, "ad"); }

// A value of labeledURI is "URI [label]": the URI is all a contact wants.
std::string_view UriOfLabeledUri(std::string_view value) {
  value = Trim(value);
  const size_t space = value.find_first_of(" \t");
  return space == std::string_view::npos ? value : value.substr(0, space);
}

// Appends `address` as an e-mail of the given field unless the contact has it.
void AddEmailOnce(Contact& contact, std::string_view field, std::string_view address) {
  address = Trim(address);
  if (address.empty()) return;
  for (const TypedValue& e : contact.emails) {
    if (EqualsNoCase(Trim(e.value), address)) return;
  }
  SetContactField(contact, field, address);
}

struct TextValues {
  const std::string* attribute = nullptr;  // the mapped attribute that had values
  std::vector<std::string> values;         // repaired
};

}  // namespace

const std::vector<std::string>* LdapEntry::Find(std::string_view name) const {
  for (const auto& [attribute, values] : attributes) {
    if (EqualsNoCase(attribute, name)) return &values;
  }
  return nullptr;
}

std::vector<std::string> LdapMapping::RequestedAttributes() const {
  std::vector<std::string> out;
  auto add = [&](std::string_view name) {
    if (name.empty()) return;
    for (const std::string& have : out) {
      if (EqualsNoCase(have, name)) return;
    }
    out.emplace_back(name);
  };
  add(key_attribute);
  for (const auto& [field, attributes] : fields) {
    for (const std::string& a : attributes) add(a);
  }
  for (std::string_view a : kExclusionAttributes) add(a);
  for (const std::string& a : extra_attributes) add(a);
  return out;
}

bool LdapMapping::IsBinary(std::string_view attribute) const {
  if (InNoCase(kBinaryAttributes, attribute)) return true;
  // Transfer-encoded values (AD's "objectSid;binary") are bytes by definition.
  for (size_t at = attribute.find(';'); at != std::string_view::npos;
       at = attribute.find(';', at + 1)) {
    if (StartsWithNoCase(attribute.substr(at), ";binary")) return true;
  }
  for (const auto& [field, attributes] : fields) {
    if (field != "photo") continue;
    for (const std::string& a : attributes) {
      if (EqualsNoCase(a, attribute)) return true;
    }
  }
  return false;
}

bool IsValidAttributeName(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == ';';
  });
}

std::string DefaultLdapFilter(std::string_view schema) {
  return IsActiveDirectory(schema) ? "(&(objectCategory=person)(objectClass=user))"
                                   : "(objectClass=inetOrgPerson)";
}

Result<LdapMapping> ResolveLdapMapping(std::string_view schema, const std::string& key_attribute,
                                       const std::map<std::string, std::string>& overrides,
                                       const std::vector<std::string>& extra_attributes) {
  const bool ad = IsActiveDirectory(schema);
  if (!ad && !EqualsNoCase(schema, "inetorgperson")) {
    return MakeError(ErrorKind::kInvalidArgument, "schema \"" + std::string(schema) +
                                                      "\" is neither \"inetorgperson\" nor \"ad\"");
  }
  LdapMapping m;
  m.key_attribute = key_attribute.empty() ? (ad ? "objectGUID" : "entryUUID") : key_attribute;
  if (!IsValidAttributeName(m.key_attribute)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "key_attribute \"" + m.key_attribute + "\" is not an attribute name");
  }
  m.fields = SchemaFields(ad);
  for (const auto& override_entry : overrides) {
    // Named copies: a lambda below may not capture structured bindings
    // (clang before 16).
    const std::string& field = override_entry.first;
    const std::string& attribute = override_entry.second;
    if (!IsContactField(field) && !IsPseudoField(field)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "mapping names \"" + field + "\", which is not a contact field");
    }
    if (!attribute.empty() && !IsValidAttributeName(attribute)) {
      return MakeError(ErrorKind::kInvalidArgument, "mapping of " + field + " names \"" +
                                                        attribute + "\", not an attribute name");
    }
    auto it = std::find_if(m.fields.begin(), m.fields.end(),
                           [&](const auto& f) { return f.first == field; });
    if (attribute.empty()) {
      if (it != m.fields.end()) m.fields.erase(it);
    } else if (it != m.fields.end()) {
      it->second = {attribute};
    } else {
      m.fields.emplace_back(field, std::vector<std::string>{attribute});
    }
  }
  for (const std::string& a : extra_attributes) {
    if (!IsValidAttributeName(a)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "extra_attributes names \"" + a + "\", not an attribute name");
    }
    m.extra_attributes.push_back(a);
  }
  return m;
}

std::string FormatGuid(std::string_view bytes) {
  if (bytes.size() != 16) return {};
  // The first three groups are little-endian numbers; the last eight bytes
  // are written in the order they come.
  std::string ordered;
  for (size_t i : {3, 2, 1, 0, 5, 4, 7, 6}) ordered += bytes[i];
  const std::string hex = text::Hex(ordered + std::string(bytes.substr(8)));
  return hex.substr(0, 8) + '-' + hex.substr(8, 4) + '-' + hex.substr(12, 4) + '-' +
         hex.substr(16, 4) + '-' + hex.substr(20);
}

std::string RepairUtf8(std::string_view text, bool* repaired) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  bool changed = false;
  size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    // Length and the range of the second byte, per Unicode Table 3-7: the
    // narrower ranges after E0, ED, F0 and F4 exclude overlong forms,
    // surrogates and code points past U+10FFFF.
    size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      length = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      length = 3;
      if (b == 0xE0) low = 0xA0;
      if (b == 0xED) high = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      length = 4;
      if (b == 0xF0) low = 0x90;
      if (b == 0xF4) high = 0x8F;
    }
    // The maximal subpart: the lead byte and as many continuation bytes as
    // fit before one does not; a broken sequence is replaced by one U+FFFD.
    size_t good = length == 0 ? 0 : 1;
    while (good > 0 && good < length && i + good < text.size()) {
      const auto c = static_cast<unsigned char>(text[i + good]);
      const bool ok = good == 1 ? (c >= low && c <= high) : (c >= 0x80 && c <= 0xBF);
      if (!ok) break;
      ++good;
    }
    if (length != 0 && good == length) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out.append(kReplacement);
      changed = true;
      i += std::max<size_t>(good, 1);
    }
  }
  if (repaired != nullptr) *repaired = changed;
  return out;
}

std::string SniffImageType(std::string_view data) {
  if (data.starts_with("\xFF\xD8\xFF")) return "image/jpeg";
  if (data.starts_with(std::string_view("\x89PNG\r\n\x1A\n", 8))) return "image/png";
  if (data.starts_with("GIF87a") || data.starts_with("GIF89a")) return "image/gif";
  return "application/octet-stream";
}

namespace {

// NormalizeDn without the parser, for a DN whose every character is
// printable ASCII outside \ " + ; # < >, whose every RDN is one
// attribute=value with neither side empty nor padded with spaces. Most DNs
// are; the parser's allocations were a tenth of a delta run's listing.
std::optional<std::string> PlainDn(std::string_view dn) {
  std::string out;
  out.reserve(dn.size() + 16);
  size_t start = 0;
  while (start <= dn.size()) {
    size_t end = dn.find(',', start);
    if (end == std::string_view::npos) end = dn.size();
    const std::string_view rdn = dn.substr(start, end - start);
    const size_t eq = rdn.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == rdn.size() ||
        rdn.find('=', eq + 1) != std::string_view::npos) {
      return std::nullopt;
    }
    if (rdn.front() == ' ' || rdn.back() == ' ' || rdn[eq - 1] == ' ' || rdn[eq + 1] == ' ') {
      return std::nullopt;
    }
    for (size_t i = 0; i < eq; ++i) {
      const char c = rdn[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.')) {
        return std::nullopt;
      }
    }
    for (size_t i = eq + 1; i < rdn.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(rdn[i]);
      if (c < 0x20 || c > 0x7e || c == '\\' || c == '"' || c == '+' || c == ';' || c == '#' ||
          c == '<' || c == '>') {
        return std::nullopt;
      }
    }
    if (!out.empty()) out.push_back(',');
    out += std::to_string(rdn.size());
    out.push_back(':');
    for (char c : rdn) out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    if (end == dn.size()) break;
    start = end + 1;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

}  // namespace

std::string NormalizeDn(std::string_view dn) {
  if (std::optional<std::string> plain = PlainDn(dn)) return std::move(*plain);
  return NormalizeDnByParser(dn);
}

std::string NormalizeDnByParser(std::string_view dn) {
  berval bv{static_cast<ber_len_t>(dn.size()), const_cast<char*>(dn.data())};
  LDAPDN parsed = nullptr;
  if (dn.empty() || ldap_bv2dn(&bv, &parsed, LDAP_DN_FORMAT_LDAP) != LDAP_SUCCESS) {
    return AsciiLower(Trim(dn));
  }
  std::string out;
  for (int r = 0; parsed != nullptr && parsed[r] != nullptr; ++r) {
    if (r > 0) out.push_back(',');
    // AVAs of a multi-valued RDN compare in any order.
    std::vector<std::string> avas;
    for (int a = 0; parsed[r][a] != nullptr; ++a) {
      const LDAPAVA* ava = parsed[r][a];
      std::string one = AsciiLower(std::string_view(ava->la_attr.bv_val, ava->la_attr.bv_len));
      one.push_back('=');
      if (ava->la_flags & LDAP_AVA_BINARY) one.push_back('#');
      // Values are kept unescaped: a ',' inside one cannot be confused with
      // a separator, since the form is only ever compared, never parsed.
      one += AsciiLower(std::string_view(ava->la_value.bv_val, ava->la_value.bv_len));
      avas.push_back(std::move(one));
    }
    std::sort(avas.begin(), avas.end());
    for (size_t a = 0; a < avas.size(); ++a) {
      if (a > 0) out.push_back('+');
      // Length-prefixed, so that an escaped '+' or ',' in a value cannot
      // make two different DNs compare equal.
      out += std::to_string(avas[a].size());
      out.push_back(':');
      out += avas[a];
    }
  }
  ldap_dnfree(parsed);
  return out;
}

std::string FirstRdnValue(std::string_view dn) {
  berval bv{static_cast<ber_len_t>(dn.size()), const_cast<char*>(dn.data())};
  LDAPDN parsed = nullptr;
  std::string out(dn);
  if (!dn.empty() && ldap_bv2dn(&bv, &parsed, LDAP_DN_FORMAT_LDAP) == LDAP_SUCCESS &&
      parsed != nullptr && parsed[0] != nullptr && parsed[0][0] != nullptr &&
      !(parsed[0][0]->la_flags & LDAP_AVA_BINARY)) {
    out.assign(parsed[0][0]->la_value.bv_val, parsed[0][0]->la_value.bv_len);
  }
  ldap_dnfree(parsed);
  return out;
}

std::optional<std::string> LdapEntryKey(const LdapEntry& entry, const std::string& key_attribute,
                                        std::string* problem) {
  const std::vector<std::string>* values = entry.Find(key_attribute);
  if (values == nullptr || values->empty() || values->front().empty()) {
    *problem = "has no " + key_attribute;
    return std::nullopt;
  }
  const std::string& raw = values->front();
  if (InNoCase(kGuidAttributes, key_attribute)) {
    std::string guid = FormatGuid(raw);
    if (guid.empty()) {
      *problem = "has a " + std::to_string(raw.size()) + "-byte " + key_attribute +
                 " instead of a 16-byte GUID";
      return std::nullopt;
    }
    return guid;
  }
  bool repaired = false;
  std::string key(Trim(RepairUtf8(raw, &repaired)));
  if (repaired) {
    // A repaired key could collide with another person's: better skipped.
    *problem = "has a key attribute " + key_attribute + " that is not valid UTF-8";
    return std::nullopt;
  }
  if (key.empty()) {
    *problem = "has an empty " + key_attribute;
    return std::nullopt;
  }
  if (EqualsNoCase(key_attribute, "entryUUID")) key = AsciiLower(key);
  return key;
}

namespace {

// Text attribute values by lower-case attribute name, repaired to UTF-8.
using TextByLower = std::unordered_map<std::string, std::vector<std::string>>;

// The spelling the mapping uses for `name` (servers answer with their own:
// "mail" for "Mail"), without building the request list for every entry of
// a large directory.
const std::string& SpellingOf(const LdapMapping& mapping, const std::string& name) {
  if (EqualsNoCase(mapping.key_attribute, name)) return mapping.key_attribute;
  for (const auto& field : mapping.fields) {
    for (const std::string& a : field.second) {
      if (EqualsNoCase(a, name)) return a;
    }
  }
  for (const std::string& a : mapping.extra_attributes) {
    if (EqualsNoCase(a, name)) return a;
  }
  return name;
}

// Keeps every text attribute of `entry`, repaired once, in
// record->attributes under the name the mapping asked for, with one warning
// per attribute that needed repair; returns the same values by lower-case
// name for the field mapping.
TextByLower KeepTextAttributes(const LdapEntry& entry, const LdapMapping& mapping,
                               const std::string& warning_prefix, SourceRecord* record,
                               std::vector<std::string>* warnings) {
  TextByLower text_by_lower;
  for (const auto& [name, values] : entry.attributes) {
    if (mapping.IsBinary(name)) continue;
    // Names roster fills itself; no attribute type can be called "dn", but a
    // server could still send one.
    if (EqualsNoCase(name, "dn") || EqualsNoCase(name, "manager_dn")) continue;
    std::string spelled = name;
    for (std::string_view a : kExclusionAttributes) {
      if (EqualsNoCase(a, name)) spelled = std::string(a);
    }
    spelled = SpellingOf(mapping, spelled);
    std::vector<std::string> repaired_values;
    repaired_values.reserve(values.size());
    bool any_repaired = false;
    for (const std::string& v : values) {
      bool repaired = false;
      repaired_values.push_back(RepairUtf8(v, &repaired));
      any_repaired = any_repaired || repaired;
    }
    if (any_repaired) {
      warnings->push_back(warning_prefix + "attribute " + spelled +
                          " is not valid UTF-8; the invalid bytes were replaced with U+FFFD");
    }
    std::vector<std::string>& kept = record->attributes[spelled];
    kept.insert(kept.end(), repaired_values.begin(), repaired_values.end());
    auto& by_lower = text_by_lower[AsciiLower(name)];
    by_lower.insert(by_lower.end(), repaired_values.begin(), repaired_values.end());
  }
  return text_by_lower;
}

// The non-blank values of the first of `attributes` that has any.
TextValues TextOf(const TextByLower& text_by_lower, const std::vector<std::string>& attributes) {
  TextValues out;
  for (const std::string& a : attributes) {
    auto it = text_by_lower.find(AsciiLower(a));
    if (it == text_by_lower.end()) continue;
    for (const std::string& v : it->second) {
      if (!Trim(v).empty()) out.values.push_back(v);
    }
    if (!out.values.empty()) {
      out.attribute = &a;
      break;
    }
  }
  return out;
}

// The bytes of the first of `attributes` that has a value, as a photo.
std::optional<Photo> FirstPhoto(const LdapEntry& entry,
                                const std::vector<std::string>& attributes) {
  for (const std::string& a : attributes) {
    const std::vector<std::string>* values = entry.Find(a);
    if (values == nullptr || values->empty() || values->front().empty()) continue;
    return Photo{SniffImageType(values->front()), values->front(), ""};
  }
  return std::nullopt;
}

// Sets one mapped text field (any but "photo" and "proxy_addresses") from
// the values found for it.
void ApplyTextField(const std::string& field, const TextValues& found, SourceRecord* record) {
  Contact& contact = record->contact;
  if (field == "email") {
    // The first address is the main one, the others are kept as "other".
    AddEmailOnce(contact, "email", found.values.front());
    for (size_t i = 1; i < found.values.size(); ++i) {
      AddEmailOnce(contact, "email_other", found.values[i]);
    }
  } else if (field == "manager") {
    const std::string& value = found.values.front();
    record->attributes["manager_dn"] = {value};
    // Unescaping the DN ("cn=\\FF,...") can bring back bytes that are not
    // UTF-8.
    bool ignored = false;
    record->attributes["manager"] = {RepairUtf8(FirstRdnValue(Trim(value)), &ignored)};
  } else if (field == "office") {
    const std::string& value = found.values.front();
    record->attributes["office"] = {value};
    // The contact model may not have the field yet; set it once it does.
    if (IsContactField("office")) SetContactField(contact, "office", value);
  } else if (field == "url" && EqualsNoCase(*found.attribute, "labeledURI")) {
    for (const std::string& v : found.values) SetContactField(contact, field, UriOfLabeledUri(v));
  } else if (IsMultiValuedField(field)) {
    for (const std::string& v : found.values) SetContactField(contact, field, v);
  } else {
    SetContactField(contact, field, found.values.front());
  }
}

// Exchange's list: "SMTP:" marks the primary address, "smtp:" (any other
// case) a secondary one; X500:, SIP: and the like are not e-mail.
void AddProxyAddresses(const std::vector<std::string>& proxy_addresses, Contact* contact) {
  if (proxy_addresses.empty()) return;
  std::string primary;
  std::vector<std::string_view> secondary;
  for (const std::string& p : proxy_addresses) {
    const std::string_view v = Trim(p);
    if (v.starts_with("SMTP:")) {
      if (primary.empty())
        primary = std::string(Trim(v.substr(5)));
      else
        secondary.push_back(Trim(v.substr(5)));
    } else if (StartsWithNoCase(v, "smtp:")) {
      secondary.push_back(Trim(v.substr(5)));
    }
  }
  const bool has_main = !GetContactField(*contact, "email").empty();
  if (!primary.empty()) AddEmailOnce(*contact, has_main ? "email_other" : "email", primary);
  for (std::string_view s : secondary) AddEmailOnce(*contact, "email_other", s);
}

}  // namespace

std::optional<SourceRecord> MapLdapEntry(const LdapEntry& entry, const LdapMapping& mapping,
                                         std::string_view source,
                                         std::vector<std::string>* warnings) {
  const std::string prefix = "source " + std::string(source) + ": ";
  bool dn_repaired = false;
  const std::string dn = RepairUtf8(entry.dn, &dn_repaired);
  std::string problem;
  std::optional<std::string> key = LdapEntryKey(entry, mapping.key_attribute, &problem);
  if (!key) {
    warnings->push_back(prefix + "entry " + Personal(dn, dn) + " " + problem + "; skipped");
    return std::nullopt;
  }
  SourceRecord record;
  record.key = std::move(*key);
  record.attributes["dn"] = {dn};
  const TextByLower text_by_lower = KeepTextAttributes(
      entry, mapping, prefix + "entry " + Personal(dn, dn) + ": ", &record, warnings);

  std::vector<std::string> proxy_addresses;
  for (const auto& [field, attributes] : mapping.fields) {
    if (field == "photo") {
      if (std::optional<Photo> photo = FirstPhoto(entry, attributes)) {
        record.contact.photo = std::move(photo);
      }
      continue;
    }
    TextValues found = TextOf(text_by_lower, attributes);
    if (found.values.empty()) continue;
    if (field == "proxy_addresses") {
      proxy_addresses = std::move(found.values);  // merged once every e-mail field is in
    } else {
      ApplyTextField(field, found, &record);
    }
  }
  AddProxyAddresses(proxy_addresses, &record.contact);
  return record;
}

void ResolveManagers(std::vector<SourceRecord>* records) {
  std::unordered_map<std::string, size_t> by_dn;
  for (size_t i = 0; i < records->size(); ++i) {
    auto it = (*records)[i].attributes.find("dn");
    if (it != (*records)[i].attributes.end() && !it->second.empty()) {
      by_dn.emplace(NormalizeDn(it->second.front()), i);
    }
  }
  const bool contact_has_manager = IsContactField("manager");
  for (SourceRecord& r : *records) {
    auto dn = r.attributes.find("manager_dn");
    if (dn == r.attributes.end() || dn->second.empty()) continue;
    auto manager = by_dn.find(NormalizeDn(dn->second.front()));
    if (manager != by_dn.end()) {
      std::string name = (*records)[manager->second].contact.DisplayName();
      if (!name.empty()) r.attributes["manager"] = {std::move(name)};
    }
    auto name = r.attributes.find("manager");
    if (contact_has_manager && name != r.attributes.end() && !name->second.empty()) {
      SetContactField(r.contact, "manager", name->second.front());
    }
  }
}

std::vector<std::string> ManagerDependents(const std::vector<SourceRecord>& records,
                                           const std::vector<const SourceRecord*>& touched) {
  std::unordered_set<std::string> dns;
  for (const SourceRecord* r : touched) {
    auto it = r->attributes.find("dn");
    if (it != r->attributes.end() && !it->second.empty())
      dns.insert(NormalizeDn(it->second.front()));
  }
  std::vector<std::string> out;
  if (dns.empty()) return out;
  for (const SourceRecord& r : records) {
    auto dn = r.attributes.find("manager_dn");
    if (dn != r.attributes.end() && !dn->second.empty() &&
        dns.count(NormalizeDn(dn->second.front()))) {
      out.push_back(r.key);
    }
  }
  return out;
}

}  // namespace roster
