#include "sync/erasure.h"

#include <unordered_set>

#include "core/text.h"

namespace roster {

ErasedName NameOf(std::string_view source, const SourceRecord& record) {
  ErasedName out;
  auto dn = record.attributes.find("dn");
  if (dn != record.attributes.end() && !dn->second.empty()) {
    out.dn = NormalizeReference(dn->second.front());
  }
  out.name = text::AsciiLower(text::Trim(record.contact.DisplayName()));
  out.person.ids = ErasureIds(source, record);
  for (const TypedValue& e : record.contact.emails) {
    std::string a = text::AsciiLower(text::Trim(e.value));
    if (!a.empty()) out.person.addresses.push_back(std::move(a));
  }
  return out;
}

std::vector<ErasedName> TakeErased(const ErasureList& list, std::string_view source,
                                   std::vector<SourceRecord>& records) {
  std::vector<ErasedName> out;
  if (list.Fingerprint().empty()) return out;
  std::erase_if(records, [&](const SourceRecord& r) {
    if (!list.Erased(source, r)) return false;
    out.push_back(NameOf(source, r));
    return true;
  });
  return out;
}

std::vector<size_t> RedactErased(const ErasureList& list, const std::vector<ErasedName>& erased,
                                 std::vector<SourceRecord>& records) {
  std::vector<size_t> changed;
  if (list.Fingerprint().empty()) return changed;
  std::unordered_set<std::string> dns, names;
  for (const ErasedName& e : erased) {
    if (!e.dn.empty()) dns.insert(e.dn);
    if (!e.name.empty()) names.insert(e.name);
  }
  for (size_t i = 0; i < records.size(); ++i) {
    SourceRecord& r = records[i];
    bool named = false;
    auto dn = r.attributes.find("manager_dn");
    if (dn != r.attributes.end() && !dn->second.empty()) {
      const std::string ref = NormalizeReference(dn->second.front());
      named = dns.count(ref) || list.ErasedReference(ref);
    }
    if (!named && !r.contact.manager.empty()) {
      named = names.count(text::AsciiLower(text::Trim(r.contact.manager))) ||
              list.ErasedName(r.contact.manager);
    }
    if (!named) continue;
    r.contact.manager.clear();
    r.attributes.erase("manager");
    r.attributes.erase("manager_dn");
    changed.push_back(i);
  }
  return changed;
}

}  // namespace roster
