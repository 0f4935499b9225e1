#include "sync/sources.h"

#include <algorithm>
#include <set>

#include "core/hash.h"

namespace roster {

const Result<std::vector<SourceRecord>>& SourceReader::Records(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = read_.find(name);
  if (it != read_.end()) return it->second;
  SourceEntry& entry = sources_.at(name);
  auto records = entry.source->ReadAll();
  for (const std::string& w : entry.source->Warnings()) notes_.Warn(w);
  if (records.ok()) {
    Prepare(name, entry, *records);
    // A source that could not tell its version before the read (a delta
    // cursor that saw changes, or none yet) may know it now: ask again, so
    // that the snapshot of this run lets the next one skip the read.
    auto v = versions_.find(name);
    if (v != versions_.end() && v->second.empty()) versions_.erase(v);
  }
  return read_.emplace(name, std::move(records)).first->second;
}

// Exclusion, the transforms, and attribute trimming, with one notice saying
// what they did.
void SourceReader::Prepare(const std::string& name, SourceEntry& entry,
                           std::vector<SourceRecord>& records) {
  size_t before = records.size();
  if (!entry.exclude.text().empty()) {
    std::vector<std::string>& excluded = excluded_[name];
    excluded.clear();
    std::erase_if(records, [&](const SourceRecord& r) {
      bool out = entry.exclude.Matches([&](std::string_view f) { return LookupField(r, f); });
      if (out) excluded.push_back(r.key);
      return out;
    });
  }
  TransformReport tr;
  TransformRecords(entry.transform, records, tr, name);
  // From here on only the rules' filters read raw attributes: keep just the
  // ones they name (a directory entry carries dozens).
  std::set<std::string> wanted(std::begin(kAccountAttributes), std::end(kAccountAttributes));
  for (const RuleSpec& rule : rules_) {
    if (std::find(rule.sources.begin(), rule.sources.end(), name) == rule.sources.end()) continue;
    for (const std::string& f : rule.filter.Fields()) wanted.insert(f);
  }
  for (SourceRecord& r : records) {
    std::erase_if(r.attributes, [&](const auto& kv) { return !wanted.count(kv.first); });
  }
  for (std::string& w : tr.warnings) notes_.Warn(std::move(w));
  std::string notice = "source " + name + ": " + std::to_string(before) + " read";
  auto add = [&](size_t n, const char* what) {
    if (n > 0) notice += ", " + std::to_string(n) + " " + what;
  };
  add(before - records.size(), "excluded");
  add(tr.phones_normalised, "phone numbers normalised");
  add(tr.photos_resampled, "photos made smaller");
  add(tr.photos_dropped, "photos left out");
  add(tr.fields_hidden, "fields hidden by opt-out");
  notes_.Notice(std::move(notice));
}

std::string SourceReader::RuleVersion(const RuleSpec& rule, const Target* target) {
  std::string material = "rule\n" + rule.filter.text() + "\n" +
                         (rule.fields.empty() ? "" : rule.fields.Fingerprint()) + "\n";
  // A target's projection shapes every item's hash (empty for CardDAV).
  if (target && !target->projection_name().empty()) {
    material += "projection " + target->projection_name() + "\n";
  }
  for (const std::string& name : rule.sources) {
    std::string version;
    {
      std::lock_guard lock(mu_);
      auto it = versions_.find(name);
      if (it == versions_.end()) {
        auto v = sources_.at(name).source->Version();
        it = versions_.emplace(name, v.ok() ? *v : std::string()).first;
      }
      version = it->second;
    }
    if (version.empty()) return std::string();
    const SourceEntry& e = sources_.at(name);
    const TransformOptions& t = e.transform;
    material += name + "\n" + version + "\n" + e.exclude.text() + "\n" + t.default_region + "\n" +
                t.region_attribute + "\n" + PhoneFormatName(t.phone_format) + "\n" +
                std::to_string(t.photo_max_bytes) + "\n" + std::to_string(t.photo_max_pixels) +
                "\n" + t.opt_out_attribute + "\n";
  }
  return HashHex(material);
}

Status SourceReader::ReadRule(const RuleSpec& rule, const Target* target, RuleSelection& selection,
                              bool deferred) {
  std::vector<SourcePeople> sources;
  for (const std::string& name : rule.sources) {
    const auto& records = Records(name);
    if (!records.ok()) {
      return MakeError(records.error().kind, "rule " + rule.name + ": " + records.error().message +
                                                 "; no address book was changed");
    }
    const SourceEntry& entry = sources_.at(name);
    std::lock_guard lock(mu_);
    auto ex = excluded_.find(name);
    sources.push_back(SourcePeople{name, &*records, ex == excluded_.end() ? nullptr : &ex->second,
                                   entry.exclude.text()});
  }
  auto selected = SelectPeople(rule, sources, target);
  if (!selected.ok()) {
    return MakeError(selected.error().kind,
                     selected.error().message + "; no address book was changed");
  }
  if (deferred && selected->fingerprint != selection.fingerprint) {
    // The version said "unchanged" but the people differ (a change the
    // version cannot see, or a short read): nothing is planned on it.
    return MakeError(
        ErrorKind::kTransient,
        "rule " + rule.name + ": the sources changed during the run; they are read again next run");
  }
  if (!deferred) selection.fingerprint = selected->fingerprint;
  selection.AdoptPeople(std::move(selected).value());
  return {};
}

void SourceReader::DropRecords() {
  std::lock_guard lock(mu_);
  read_.clear();
  excluded_.clear();
}

}  // namespace roster
