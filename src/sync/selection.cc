#include "sync/selection.h"

#include <algorithm>

#include "core/hash.h"
#include "core/personal.h"
#include "core/text.h"
#include "kinds/kind.h"

namespace roster {

std::vector<std::string> LookupField(const SourceRecord& record, std::string_view field) {
  if (IsContactField(field)) return GetContactField(record.contact, field);
  if (field == "phone") {  // any phone number, whatever its type
    std::vector<std::string> out;
    for (const TypedValue& p : record.contact.phones) out.push_back(p.value);
    return out;
  }
  if (field == "any_email") {
    std::vector<std::string> out;
    for (const TypedValue& e : record.contact.emails) out.push_back(e.value);
    return out;
  }
  auto it = record.attributes.find(std::string(field));
  if (it != record.attributes.end()) return it->second;
  return {};
}

std::string LowerEmail(std::string_view email) { return text::AsciiLower(text::Trim(email)); }

std::string JoinMatch(const std::vector<std::string>& match) {
  std::string out;
  for (const std::string& m : match) {
    if (!out.empty()) out.push_back(',');
    out += m;
  }
  return out;
}

std::vector<std::string> SplitMatch(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < joined.size()) {
    size_t comma = joined.find(',', start);
    if (comma == std::string::npos) comma = joined.size();
    if (comma > start) out.push_back(joined.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::vector<SourceRecord> MergeSources(const std::vector<SourcePeople>& sources,
                                       std::unordered_map<std::string, std::string>* origin) {
  std::vector<SourceRecord> people;
  std::vector<std::vector<bool>> has_source;  // per person, per source index
  std::unordered_map<std::string, size_t> by_email;
  for (size_t si = 0; si < sources.size(); ++si) {
    for (const SourceRecord& r : *sources[si].records) {
      size_t found = people.size();
      for (const TypedValue& e : r.contact.emails) {
        auto it = by_email.find(LowerEmail(e.value));
        if (it != by_email.end() && !has_source[it->second][si]) {
          found = it->second;
          break;
        }
      }
      if (found == people.size()) {
        SourceRecord p = r;
        p.key = sources[si].name + ":" + r.key;
        people.push_back(std::move(p));
        has_source.emplace_back(sources.size(), false);
      } else {
        SourceRecord& p = people[found];
        for (std::string_view field : ContactFieldNames()) {
          if (!GetContactField(p.contact, field).empty()) continue;
          for (const std::string& v : GetContactField(r.contact, field)) {
            SetContactField(p.contact, field, v);
          }
        }
        if (!p.contact.photo && r.contact.photo) p.contact.photo = r.contact.photo;
        for (const auto& [name, values] : r.attributes) p.attributes.emplace(name, values);
      }
      has_source[found][si] = true;
      (*origin)[sources[si].name + std::string(1, '\0') + r.key] = people[found].key;
      for (const TypedValue& e : r.contact.emails) {
        by_email.emplace(LowerEmail(e.value), found);
      }
    }
  }
  return people;
}

Status RuleSelection::Load() const {
  if (!loader) return {};
  std::lock_guard lock(loader->mu);
  if (!loader->done.load()) {
    loader->status = loader->load();
    loader->done.store(true);
  }
  return loader->status;
}

size_t RuleSelection::Count() const {
  if (partial) return entries.size();
  return Loaded() ? desired.size() : previous.entries.size();
}

bool RuleSelection::Has(const std::string& key) const {
  if (Loaded() && !partial) return by_key.count(key) > 0;
  const std::vector<SnapshotEntry>& all = partial ? entries : previous.entries;
  auto it =
      std::lower_bound(all.begin(), all.end(), key,
                       [](const SnapshotEntry& e, const std::string& k) { return e.key < k; });
  return it != all.end() && it->key == key;
}

const DesiredItem* RuleSelection::Find(const std::string& key) const {
  auto it = by_key.find(key);
  if (it != by_key.end()) return it->second;
  if (!partial) return nullptr;
  const RuleSelection& all = Complete();
  if (&all == this) return nullptr;
  auto found = all.by_key.find(key);
  return found == all.by_key.end() ? nullptr : found->second;
}

const RuleSelection& RuleSelection::Complete() const {
  if (partial && Loaded() && loader->complete) return *loader->complete;
  return *this;
}

std::vector<SnapshotEntry> RuleSelection::Entries() const {
  if (partial) return entries;
  std::vector<SnapshotEntry> out;
  out.reserve(desired.size());
  for (const DesiredItem& d : desired) out.push_back({d.key, d.hash});
  return out;
}

void RuleSelection::AdoptPeople(RuleSelection&& other) {
  desired = std::move(other.desired);
  by_key.clear();
  for (const DesiredItem& d : desired) by_key.emplace(d.key, &d);
  origin = std::move(other.origin);
  by_email = std::move(other.by_email);
  by_account = std::move(other.by_account);
  left_out = std::move(other.left_out);
}

std::string RuleSelection::WhyLeftOut(const std::string& key) const {
  auto it = left_out.find(key);
  if (it != left_out.end()) return it->second;
  const RuleSelection& all = Complete();
  if (&all == this) return std::string();
  return all.WhyLeftOut(key);
}

Result<RuleSelection> SelectPeople(const RuleSpec& rule, const std::vector<SourcePeople>& sources,
                                   const Target* target) {
  RuleSelection in;
  std::vector<SourceRecord> merged;
  const std::vector<SourceRecord>* records = sources.front().records;
  if (sources.size() > 1) {
    merged = MergeSources(sources, &in.origin);
    records = &merged;
  } else {
    for (const SourceRecord& r : *records) {
      in.origin[sources.front().name + std::string(1, '\0') + r.key] = r.key;
    }
  }
  for (const SourcePeople& source : sources) {
    if (!source.excluded) continue;
    for (const std::string& key : *source.excluded) {
      std::string k = sources.size() > 1 ? source.name + ":" + key : key;
      in.left_out[k] = "excluded by source " + source.name + " (" + source.exclude_text + ")";
    }
  }
  // Field rules change what is written for the same source content: they are
  // part of every desired item's hash, so that editing them rewrites (or
  // re-merges) each item once.
  const std::string policy = rule.fields.empty() ? std::string() : rule.fields.Fingerprint();
  in.desired.reserve(records->size());
  for (const SourceRecord& r : *records) {
    if (!rule.filter.Matches([&](std::string_view f) { return LookupField(r, f); })) {
      in.left_out[r.key] = "does not match the rule's filter (" + rule.filter.text() + ")";
      continue;
    }
    auto body = std::make_shared<const ItemBody>(target ? target->Project(ItemBody(r.contact))
                                                        : ItemBody(r.contact));
    std::string hash = KindOf(*body).ContentHash(*body);
    if (!policy.empty()) hash = HashHex(hash + "\n" + policy);
    in.desired.push_back(DesiredItem{r.key, std::move(hash), body, MatchHashes(*body)});
    for (const char* account : kAccountAttributes) {
      auto it = r.attributes.find(account);
      if (it == r.attributes.end()) continue;
      for (const std::string& v : it->second) {
        // Two people with one account name: the smaller key, whatever the read order.
        auto [at, fresh] = in.by_account.emplace(text::AsciiLower(v), r.key);
        if (!fresh && r.key < at->second) at->second = r.key;
      }
    }
  }
  std::sort(in.desired.begin(), in.desired.end(),
            [](const DesiredItem& a, const DesiredItem& b) { return a.key < b.key; });
  for (size_t i = 1; i < in.desired.size(); ++i) {
    if (in.desired[i].key == in.desired[i - 1].key) {
      return MakeError(ErrorKind::kInvalidData,
                       "rule " + rule.name + ": source " + sources.front().name +
                           " has two people with the key \"" +
                           Personal(in.desired[i].key, in.desired[i].key) + "\"");
    }
  }
  for (const DesiredItem& d : in.desired) {
    in.by_key.emplace(d.key, &d);
    for (std::string& m : KindOf(*d.body).MatchKeys(*d.body))
      in.by_email.emplace(std::move(m), d.key);
  }
  in.fingerprint = SelectionFingerprint(in.desired);
  return in;
}

namespace {

template <typename T>
std::string FingerprintOf(const std::vector<T>& sorted) {
  std::string material;
  for (const T& d : sorted) {
    material += d.key;
    material.push_back('\0');
    material += d.hash;
    material.push_back('\n');
  }
  return HashHex(material);
}

}  // namespace

std::string SelectionFingerprint(const std::vector<DesiredItem>& sorted) {
  return FingerprintOf(sorted);
}

Result<RuleSelection> SelectChanges(const RuleSpec& rule, const SourcePeople& source,
                                    const std::unordered_set<std::string>& dirty,
                                    const Snapshot& previous, const Target* target) {
  ROSTER_ASSIGN_OR_RETURN(RuleSelection in, SelectPeople(rule, {source}, target));
  // Everyone: the last snapshot's people the changes did not touch, and
  // the touched ones as selected now (gone or left out: not at all). Both
  // lists are sorted by key; a selected person before the next snapshot
  // entry is new.
  in.entries.reserve(previous.entries.size() + in.desired.size());
  auto now = in.desired.begin();
  auto add_new_before = [&](const std::string* key) {
    for (; now != in.desired.end() && (!key || now->key < *key); ++now) {
      in.changed_keys.push_back(now->key);
      in.entries.push_back({now->key, now->hash});
    }
  };
  for (const SnapshotEntry& e : previous.entries) {
    add_new_before(&e.key);
    if (now != in.desired.end() && now->key == e.key) {
      if (now->hash != e.hash) in.changed_keys.push_back(e.key);
      in.entries.push_back({now->key, now->hash});
      ++now;
    } else if (dirty.count(e.key)) {
      in.changed_keys.push_back(e.key);  // gone, or no longer selected
    } else {
      in.entries.push_back(e);
    }
  }
  add_new_before(nullptr);  // changed_keys came in key order too
  in.fingerprint = FingerprintOf(in.entries);
  in.partial = true;
  return in;
}

std::vector<std::string> DiffKeys(const std::vector<SnapshotEntry>& before,
                                  const std::vector<DesiredItem>& now) {
  std::vector<std::string> changed;
  size_t i = 0, j = 0;
  while (i < before.size() || j < now.size()) {
    if (j == now.size() || (i < before.size() && before[i].key < now[j].key)) {
      changed.push_back(before[i++].key);
    } else if (i == before.size() || now[j].key < before[i].key) {
      changed.push_back(now[j++].key);
    } else {
      if (before[i].hash != now[j].hash) changed.push_back(now[j].key);
      ++i;
      ++j;
    }
  }
  return changed;
}

}  // namespace roster
