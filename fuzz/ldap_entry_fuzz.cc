// libFuzzer target for the LDAP entry mapping: whatever a directory sends
// (names, DNs, bytes that are not UTF-8, GUIDs of the wrong size, hostile
// proxyAddresses and manager DNs) must map or be skipped cleanly, and what
// comes out must be valid UTF-8 everywhere but in the photo.
//
// Input: one flags byte (bit 0: AD schema; bit 1: note <- rosterLegacyNote;
// bit 2: key attribute employeeNumber), a DN (1 length byte), then
// attribute/value pairs: a name (a byte with the high bit set picks a known
// attribute name, else it is the length of a name that follows) and a value
// (2 length bytes, little-endian, then the bytes).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "connectors/ldap/ldap_mapping.h"

namespace {

constexpr std::string_view kNames[] = {
    "entryUUID",
    "objectGUID",
    "displayName",
    "cn",
    "givenName",
    "sn",
    "mail",
    "proxyAddresses",
    "telephoneNumber",
    "mobile",
    "labeledURI",
    "jpegPhoto",
    "thumbnailPhoto",
    "manager",
    "physicalDeliveryOfficeName",
    "co",
    "c",
    "ou",
    "department",
    "userAccountControl",
    "rosterLegacyNote",
    "employeeNumber",
    "objectSid;binary",
    "member;range=0-1",
};

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string Bytes(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

void RequireUtf8(std::string_view text) {
  bool repaired = false;
  roster::RepairUtf8(text, &repaired);
  if (repaired) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  const uint8_t flags = in.Byte();
  std::map<std::string, std::string> overrides;
  if (flags & 2) overrides["note"] = "rosterLegacyNote";
  auto mapping =
      roster::ResolveLdapMapping((flags & 1) ? "ad" : "inetorgperson",
                                 (flags & 4) ? "employeeNumber" : "", overrides, {"employeeType"});
  if (!mapping.ok()) std::abort();

  roster::LdapEntry entry;
  entry.dn = in.Bytes(in.Byte());
  while (!in.empty() && entry.attributes.size() < 64) {
    const uint8_t n = in.Byte();
    std::string name =
        (n & 0x80) ? std::string(kNames[(n & 0x7f) % std::size(kNames)]) : in.Bytes(n);
    const size_t length = in.Byte() | (static_cast<size_t>(in.Byte()) << 8);
    std::string value = in.Bytes(length);
    if (!entry.attributes.empty() && entry.attributes.back().first == name) {
      entry.attributes.back().second.push_back(std::move(value));
    } else {
      entry.attributes.push_back({std::move(name), {std::move(value)}});
    }
  }

  std::vector<std::string> warnings;
  std::optional<roster::SourceRecord> record =
      roster::MapLdapEntry(entry, *mapping, "fuzz", &warnings);
  for (const std::string& w : warnings) {
    if (!w.starts_with("source fuzz: ")) std::abort();
  }
  if (!record) {
    if (warnings.empty()) std::abort();  // a skipped entry is always explained
    return 0;
  }
  if (record->key.empty()) std::abort();
  // Text that leaves the connector is valid UTF-8 (an invalid key is
  // skipped, not repaired), except the bytes of a photo.
  RequireUtf8(record->key);
  for (const auto& [name, values] : record->attributes) {
    for (const std::string& v : values) RequireUtf8(v);
  }
  for (std::string_view field : roster::ContactFieldNames()) {
    for (const std::string& v : roster::GetContactField(record->contact, field)) RequireUtf8(v);
  }
  // Manager resolution against the entry itself and a copy: no crash, and
  // the names stay text.
  std::vector<roster::SourceRecord> records = {*record, *record};
  roster::ResolveManagers(&records);
  for (const auto& r : records) {
    auto it = r.attributes.find("manager");
    if (it != r.attributes.end()) {
      for (const std::string& v : it->second) RequireUtf8(v);
    }
  }
  roster::NormalizeDn(entry.dn);
  roster::FirstRdnValue(entry.dn);
  return 0;
}
