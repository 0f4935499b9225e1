#include "sync/sources.h"

#include <algorithm>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/hash.h"
#include "core/record_codec.h"

namespace roster {

const Result<std::vector<SourceRecord>>& SourceReader::Records(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = read_.find(name);
  if (it != read_.end()) return it->second;
  SourceEntry& entry = sources_.at(name);
  auto records = cache_.store && entry.source->ReadsChanges() ? ReadThroughCache(name, entry)
                                                              : entry.source->ReadAll();
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

// The cache holds each record as its source mapped it, with its photo
// already capped (so that a photo is scaled once per change, not once per
// run): a shape made of the source's own and of the photo limits.
Result<std::vector<SourceRecord>> SourceReader::ReadThroughCache(const std::string& name,
                                                                 SourceEntry& entry) {
  Source& source = *entry.source;
  const TransformOptions& t = entry.transform;
  const std::string shape =
      HashHex("roster-source-cache-1\n" + source.CacheShape() + "\nphotos " +
              std::to_string(t.photo_max_bytes) + " " + std::to_string(t.photo_max_pixels));
  auto cache = cache_.store->LoadSourceCache(name, shape, cache_.max_age);
  if (!cache.ok()) {
    // A cache that cannot be read costs a full read, never the run.
    notes_.Warn("source " + name + ": " + cache.error().message + "; it is read in full");
    cache = SourceCache{};
  }
  std::vector<SourceRecord> cached;
  std::unordered_map<std::string, std::string> stamps;
  cached.reserve(cache->records.size());
  stamps.reserve(cache->records.size());
  for (const CachedRecord& c : cache->records) {
    std::optional<SourceRecord> r = DecodeRecord(c.record);
    if (!r || r->key != c.key) {
      // Sealed, so only roster wrote it: a record it cannot decode is
      // another version's or a bug; everything is read again, not guessed.
      notes_.Warn("source " + name + ": a cached record could not be decoded; it is read in full");
      cached.clear();
      stamps.clear();
      cache->shape_matches = false;
      break;
    }
    stamps.emplace(c.key, c.stamp);
    cached.push_back(std::move(*r));
  }
  ROSTER_ASSIGN_OR_RETURN(SourceChanges changes, source.ReadChanges(stamps));

  // Photos are capped as they are read; the other transforms run on every
  // record each run (they are cheap, and depend on options outside the shape).
  TransformOptions photos_only;
  photos_only.photo_max_bytes = t.photo_max_bytes;
  photos_only.photo_max_pixels = t.photo_max_pixels;
  CacheRead& how = cache_reads_[name];
  how = CacheRead{};
  {
    std::vector<SourceRecord> fresh;
    fresh.reserve(changes.changed.size());
    for (StampedRecord& c : changes.changed) fresh.push_back(std::move(c.record));
    TransformRecords(photos_only, fresh, how.capped, name);
    for (size_t i = 0; i < fresh.size(); ++i) changes.changed[i].record = std::move(fresh[i]);
  }
  std::vector<CachedRecord> put;
  put.reserve(changes.changed.size());
  for (const StampedRecord& c : changes.changed) {
    put.push_back(CachedRecord{c.record.key, c.stamp, EncodeRecord(c.record)});
  }
  const bool replace = changes.full || !cache->shape_matches;
  std::vector<SourceRecord> records;
  if (!replace) {
    std::unordered_set<std::string> gone(changes.removed.begin(), changes.removed.end());
    for (const StampedRecord& c : changes.changed) gone.insert(c.record.key);
    records.reserve(cached.size() + changes.changed.size());
    for (SourceRecord& r : cached) {
      if (!gone.count(r.key)) records.push_back(std::move(r));
    }
    how.from_cache = static_cast<int64_t>(records.size());
  }
  cached.clear();
  for (StampedRecord& c : changes.changed) records.push_back(std::move(c.record));
  // A manager's name, say, comes from another record, cached or fresh.
  source.Derive(records);
  how.used = true;
  how.full = replace;
  how.expired = cache->expired;
  if (cache_.write) {
    Status st = cache_.store->UpdateSourceCache(
        name, shape, replace, put, replace ? std::vector<std::string>{} : changes.removed);
    // The cache only falls behind: the next run reads what it lacks.
    if (!st.ok()) notes_.Warn("source " + name + ": " + st.error().message);
  }
  return records;
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
  auto how = cache_reads_.find(name);
  if (how != cache_reads_.end() && how->second.used) {
    const TransformReport& capped = how->second.capped;
    tr.photos_resampled += capped.photos_resampled;
    tr.photos_dropped += capped.photos_dropped;
    tr.warnings.insert(tr.warnings.begin(), capped.warnings.begin(), capped.warnings.end());
  }
  for (std::string& w : tr.warnings) notes_.Warn(std::move(w));
  std::string notice = "source " + name + ": " + std::to_string(before) + " read";
  if (how != cache_reads_.end() && how->second.used) {
    const CacheRead& c = how->second;
    notice += c.full ? std::string(" (in full)")
                     : " (" + std::to_string(c.from_cache) + " of them from the cache)";
    if (c.expired > 0) notice += ", " + std::to_string(c.expired) + " expired in the cache";
  }
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
