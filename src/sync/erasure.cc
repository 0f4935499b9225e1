#include "sync/erasure.h"

#include <unordered_set>

#include "core/text.h"

namespace roster {

ErasedName NameOf(const SourceRecord& record) {
  ErasedName out;
  auto dn = record.attributes.find("dn");
  if (dn != record.attributes.end() && !dn->second.empty()) {
    out.dn = NormalizeReference(dn->second.front());
  }
  out.name = text::AsciiLower(text::Trim(record.contact.DisplayName()));
  return out;
}

std::vector<ErasedName> TakeErased(const ErasureList& list, std::vector<SourceRecord>& records) {
  std::vector<ErasedName> out;
  if (list.Fingerprint().empty()) return out;
  std::erase_if(records, [&](const SourceRecord& r) {
    if (!list.Erased(r)) return false;
    out.push_back(NameOf(r));
    return true;
  });
  return out;
}

size_t RedactErased(const ErasureList& list, const std::vector<ErasedName>& erased,
                    std::vector<SourceRecord>& records) {
  if (list.Fingerprint().empty()) return 0;
  std::unordered_set<std::string> dns, names;
  for (const ErasedName& e : erased) {
    if (!e.dn.empty()) dns.insert(e.dn);
    if (!e.name.empty()) names.insert(e.name);
  }
  size_t changed = 0;
  for (SourceRecord& r : records) {
    bool named = false;
    auto dn = r.attributes.find("manager_dn");
    if (dn != r.attributes.end() && !dn->second.empty()) {
      const std::string ref = NormalizeReference(dn->second.front());
      named = dns.count(ref) || list.ErasedReference(ref);
    } else if (!r.contact.manager.empty()) {
      named = names.count(text::AsciiLower(text::Trim(r.contact.manager))) > 0;
    }
    if (!named) continue;
    r.contact.manager.clear();
    r.attributes.erase("manager");
    r.attributes.erase("manager_dn");
    ++changed;
  }
  return changed;
}

}  // namespace roster
