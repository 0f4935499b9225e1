#include "sync/sources.h"

#include <algorithm>
#include <set>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "core/hash.h"
#include "core/record_codec.h"
#include "sync/erasure.h"

namespace roster {

bool VersionKnown(const std::string& version) {
  size_t slash = version.find('/');
  return slash != std::string::npos && slash + 1 < version.size();
}

bool SameConfiguration(const std::string& a, const std::string& b) {
  size_t slash = a.find('/');
  return slash != std::string::npos && slash > 0 && b.size() > slash && b[slash] == '/' &&
         a.compare(0, slash, b, 0, slash) == 0;
}

namespace {

// What an erased person leaves in the cache: their key, nothing else, and
// an attribute no source writes, so that it is never taken for a person.
constexpr char kTombstoneAttribute[] = "roster-erased";

CachedRecord Tombstone(const std::string& key, const std::string& stamp) {
  SourceRecord r;
  r.key = key;
  r.attributes[kTombstoneAttribute] = {"1"};
  return CachedRecord{key, stamp, EncodeRecord(r)};
}

bool IsTombstone(const SourceRecord& r) { return r.attributes.count(kTombstoneAttribute) > 0; }

}  // namespace

std::vector<ErasedPerson> SourceReader::TakeErasedPeople() {
  std::lock_guard lock(mu_);
  return std::exchange(erased_found_, {});
}

SourceReader::Read& SourceReader::Records(const std::string& name, bool changes_only) {
  std::lock_guard lock(mu_);
  auto [it, fresh] = read_.try_emplace(name);
  Read& read = it->second;
  SourceEntry& entry = sources_.at(name);
  if (fresh) {
    read.records = cache_.store && entry.source->ReadsChanges()
                       ? ReadThroughCache(name, entry, read)
                       : entry.source->ReadAll();
    if (read.records.ok() && erasure_ && !erasure_->Fingerprint().empty() &&
        !(cache_.store && entry.source->ReadsChanges())) {
      // ReadAll answers records already derived: the erased go, and what
      // the others derived from them is redacted.
      std::vector<ErasedName> erased = TakeErased(*erasure_, name, *read.records);
      erased_[name] = erased.size();
      for (const ErasedName& e : erased) erased_found_.push_back(e.person);
      RedactErased(*erasure_, erased, *read.records);
    }
    for (const std::string& w : entry.source->Warnings()) notes_.Warn(w);
    if (read.records.ok()) {
      // A source that could not tell its version before the read (a delta
      // cursor that saw changes, or none yet) may know it now: ask again, so
      // that the snapshot of this run lets the next one skip the read.
      auto v = versions_.find(name);
      if (v != versions_.end() && v->second.empty()) versions_.erase(v);
    }
  }
  if (!read.records.ok()) return read;
  if (changes_only && read.dirty && !read.prepared) {
    if (!read.changes) {
      std::vector<SourceRecord> changes;
      for (const SourceRecord& r : *read.records) {
        if (read.dirty->count(r.key)) changes.push_back(r);
      }
      Prepare(name, entry, changes, read.changes_excluded, read.records->size());
      read.changes = std::move(changes);
    }
    return read;
  }
  if (!read.prepared) {
    Prepare(name, entry, *read.records, read.excluded, read.records->size());
    read.prepared = true;
  }
  return read;
}

std::string SourceReader::ShapeOf(const SourceEntry& entry) const {
  const TransformOptions& t = entry.transform;
  return HashHex("roster-source-cache-1\n" + entry.source->CacheShape() + "\nphotos " +
                 std::to_string(t.photo_max_bytes) + " " + std::to_string(t.photo_max_pixels));
}

SourceReader::LoadedCache SourceReader::LoadCache(const std::string& name, const std::string& shape,
                                                  const std::atomic<bool>* stop) {
  LoadedCache out;
  out.cache = cache_.store->LoadSourceCache(name, shape, cache_.max_age, stop);
  if (out.cache.ok()) {
    out.decoded.reserve(out.cache->records.size());
    for (const CachedRecord& c : out.cache->records) {
      if (stop && stop->load(std::memory_order_relaxed)) {
        out.cache =
            MakeError(ErrorKind::kAborted, "reading the cache of source " + name + " stopped");
        out.decoded.clear();
        break;
      }
      out.decoded.push_back(DecodeRecord(c.record));
    }
  }
  return out;
}

// The cache holds each record as its source mapped it, with its photo
// already capped (so that a photo is scaled once per change, not once per
// run): a shape made of the source's own and of the photo limits.
Result<std::vector<SourceRecord>> SourceReader::ReadThroughCache(const std::string& name,
                                                                 SourceEntry& entry, Read& read) {
  Source& source = *entry.source;
  const TransformOptions& t = entry.transform;
  const std::string shape = ShapeOf(entry);
  LoadedCache loaded;
  bool prefetched = false;
  if (auto pre = prefetch_.find(name); pre != prefetch_.end()) {
    loaded = pre->second.get();
    prefetch_.erase(pre);
    prefetched = loaded.cache.ok() || loaded.cache.error().kind != ErrorKind::kAborted;
  }
  if (!prefetched) loaded = LoadCache(name, shape);
  Result<SourceCache>& cache = loaded.cache;
  if (!cache.ok()) {
    // A cache that cannot be read costs a full read, never the run.
    notes_.Warn("source " + name + ": " + cache.error().message + "; it is read in full");
    cache = SourceCache{};
  }
  const bool erasing = erasure_ && !erasure_->Fingerprint().empty();
  std::vector<SourceRecord> cached;
  std::unordered_map<std::string, std::string> stamps;
  // An erased person stays in the cache as a tombstone (their key and
  // stamp, nothing else), so that a delta read does not read them again
  // every run; once they are no longer erased, it is read again.
  std::vector<std::string> unerased;
  int64_t tombstones = 0;
  cached.reserve(cache->records.size());
  stamps.reserve(cache->records.size());
  for (size_t i = 0; i < cache->records.size(); ++i) {
    const CachedRecord& c = cache->records[i];
    std::optional<SourceRecord>& r = loaded.decoded[i];
    if (!r || r->key != c.key) {
      // Sealed, so only roster wrote it: a record it cannot decode is
      // another version's or a bug; everything is read again, not guessed.
      notes_.Warn("source " + name + ": a cached record could not be decoded; it is read in full");
      cached.clear();
      stamps.clear();
      unerased.clear();
      tombstones = 0;
      cache->shape_matches = false;
      break;
    }
    if (IsTombstone(*r)) {
      if (erasing && erasure_->Erased(name, *r)) {
        stamps.emplace(c.key, c.stamp);
        ++tombstones;
      } else {
        unerased.push_back(c.key);
      }
      continue;
    }
    stamps.emplace(c.key, c.stamp);
    cached.push_back(std::move(*r));
  }
  ROSTER_ASSIGN_OR_RETURN(SourceChanges changes, source.ReadChanges(stamps));
  const bool replace = changes.full || !cache->shape_matches;
  std::unordered_set<std::string> removed(changes.removed.begin(), changes.removed.end());
  for (std::string& key : unerased) {
    // Read again as new (it had no stamp); a key both removed and put stays.
    if (removed.insert(key).second) changes.removed.push_back(std::move(key));
  }
  // The erased go from the records as if their source had lost them, their
  // cached version is touched (what derives from them is derived again),
  // and a tombstone takes their place in the cache.
  std::vector<ErasedName> erased;
  std::unordered_set<std::string> erased_keys;
  std::vector<CachedRecord> put;
  std::vector<SourceRecord> erased_fresh;
  if (erasing) {
    for (const SourceRecord& r : cached) {
      if (!erasure_->Erased(name, r)) continue;
      erased.push_back(NameOf(name, r));
      erased_keys.insert(r.key);
      if (!removed.count(r.key)) put.push_back(Tombstone(r.key, stamps[r.key]));
    }
    std::erase_if(changes.changed, [&](StampedRecord& c) {
      if (!erasure_->Erased(name, c.record)) return false;
      erased.push_back(NameOf(name, c.record));
      erased_keys.insert(c.record.key);
      put.push_back(Tombstone(c.record.key, c.stamp));
      erased_fresh.push_back(std::move(c.record));
      return true;
    });
    erased_[name] = static_cast<size_t>(tombstones) + erased.size();
    for (const ErasedName& e : erased) erased_found_.push_back(e.person);
  }

  // Photos are capped as they are read; the other transforms run on every
  // record each run (they are cheap, and depend on options outside the shape).
  TransformOptions photos_only;
  photos_only.photo_max_bytes = t.photo_max_bytes;
  photos_only.photo_max_pixels = t.photo_max_pixels;
  CacheRead& how = cache_reads_[name];
  how = CacheRead{};
  std::vector<std::string> fresh_stamps;
  std::vector<SourceRecord> fresh;
  fresh.reserve(changes.changed.size());
  fresh_stamps.reserve(changes.changed.size());
  for (StampedRecord& c : changes.changed) {
    fresh.push_back(std::move(c.record));
    fresh_stamps.push_back(std::move(c.stamp));
  }
  changes.changed.clear();
  TransformRecords(photos_only, fresh, how.capped, name);
  std::vector<SourceRecord> records;
  std::unordered_set<std::string> gone;
  std::vector<SourceRecord> before;  // the cached versions of what changed or went
  if (!replace) {
    gone.insert(changes.removed.begin(), changes.removed.end());
    gone.insert(erased_keys.begin(), erased_keys.end());
    for (const SourceRecord& r : fresh) gone.insert(r.key);
    records.reserve(cached.size() + fresh.size());
    for (SourceRecord& r : cached) {
      (gone.count(r.key) ? before : records).push_back(std::move(r));
    }
    how.from_cache = static_cast<int64_t>(records.size());
  }
  cached.clear();
  const size_t first_fresh = records.size();
  for (SourceRecord& r : fresh) records.push_back(std::move(r));
  fresh.clear();
  if (erasing) {
    // What names the erased goes before anything derives from it, and from
    // the cache too: a report's cached record keeps no trace of them.
    for (size_t i : RedactErased(*erasure_, erased, records)) {
      if (i >= first_fresh) continue;  // put below, as redacted
      put.push_back(CachedRecord{records[i].key, stamps[records[i].key], EncodeRecord(records[i])});
      gone.insert(records[i].key);
    }
  }
  put.reserve(put.size() + records.size() - first_fresh);
  for (size_t i = first_fresh; i < records.size(); ++i) {
    put.push_back(
        CachedRecord{records[i].key, fresh_stamps[i - first_fresh], EncodeRecord(records[i])});
  }
  // A manager's name, say, comes from another record, cached or fresh.
  source.Derive(records);
  if (erasing) RedactErased(*erasure_, erased, records);
  for (SourceRecord& r : erased_fresh) before.push_back(std::move(r));
  if (!replace) {
    // What the changes touched, when the source can tell who derives from
    // them: only those people need preparing and selecting again.
    std::vector<const SourceRecord*> touched;
    touched.reserve(before.size() + records.size() - first_fresh);
    for (const SourceRecord& r : before) touched.push_back(&r);
    for (size_t i = first_fresh; i < records.size(); ++i) touched.push_back(&records[i]);
    if (auto dependents = source.DerivedDependents(records, touched)) {
      gone.insert(dependents->begin(), dependents->end());
      read.dirty = std::move(gone);
    }
  }
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
                           std::vector<SourceRecord>& records, std::vector<std::string>& excluded,
                           size_t total) {
  const size_t before = records.size();
  if (!entry.exclude.text().empty()) {
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
  std::string notice = "source " + name + ": " + std::to_string(total) + " read";
  if (how != cache_reads_.end() && how->second.used) {
    const CacheRead& c = how->second;
    notice += c.full ? std::string(" (in full)")
                     : " (" + std::to_string(c.from_cache) + " of them from the cache)";
    if (c.expired > 0) notice += ", " + std::to_string(c.expired) + " expired in the cache";
  }
  if (before < total) {
    notice += ", " + std::to_string(before) + " touched by the changes prepared again";
  }
  auto add = [&](size_t n, const char* what) {
    if (n > 0) notice += ", " + std::to_string(n) + " " + what;
  };
  add(before - records.size(), "excluded");
  if (auto e = erased_.find(name); e != erased_.end()) add(e->second, "erased (left out)");
  add(tr.phones_normalised, "phone numbers normalised");
  add(tr.photos_resampled, "photos made smaller");
  add(tr.photos_dropped, "photos left out");
  add(tr.fields_hidden, "fields hidden by opt-out");
  notes_.Notice(std::move(notice));
}

std::string SourceReader::RuleVersion(const RuleSpec& rule, const Target* target) {
  // The selection's own version: a change in how people are selected or
  // mapped makes every stored hash incomparable (SameConfiguration).
  std::string config = "rule selection 2\n" + rule.filter.text() + "\n" +
                       (rule.fields.empty() ? "" : rule.fields.Fingerprint()) + "\n";
  // An erasure changes who is selected: never "nothing changed".
  if (erasure_ && !erasure_->Fingerprint().empty()) {
    config += "erased " + erasure_->Fingerprint() + "\n";
  }
  // A target's projection shapes every item's hash (empty for CardDAV).
  if (target && !target->projection_name().empty()) {
    config += "projection " + target->projection_name() + "\n";
  }
  std::string versions;
  bool known = true;
  for (const std::string& name : rule.sources) {
    std::string version;
    {
      std::lock_guard lock(mu_);
      auto it = versions_.find(name);
      if (it == versions_.end()) {
        SourceEntry& e = sources_.at(name);
        if (cache_.store && e.source->ReadsChanges() && !prefetch_.count(name) &&
            !read_.count(name) && !stop_prefetch_) {
          try {
            prefetch_[name] = std::async(std::launch::async, [this, name, shape = ShapeOf(e)] {
              return LoadCache(name, shape, &stop_prefetch_);
            });
          } catch (const std::system_error&) {
            prefetch_.erase(name);  // no thread to spare: loaded when read
          }
        }
        auto v = e.source->Version();
        it = versions_.emplace(name, v.ok() ? *v : std::string()).first;
      }
      version = it->second;
    }
    known = known && !version.empty();
    versions += name + "\n" + version + "\n";
    const SourceEntry& e = sources_.at(name);
    const TransformOptions& t = e.transform;
    config += name + "\n" + e.exclude.text() + "\n" + t.default_region + "\n" + t.region_attribute +
              "\n" + PhoneFormatName(t.phone_format) + "\n" + std::to_string(t.photo_max_bytes) +
              "\n" + std::to_string(t.photo_max_pixels) + "\n" + t.opt_out_attribute + "\n";
  }
  const std::string config_hash = HashHex(config);
  return config_hash + "/" + (known ? HashHex(config_hash + "\n" + versions) : std::string());
}

Status SourceReader::ReadRule(const RuleSpec& rule, const Target* target, RuleSelection& selection,
                              ReadMode mode) {
  const bool changes_only = mode == ReadMode::kChanges && rule.sources.size() == 1;
  std::vector<SourcePeople> sources;
  const std::unordered_set<std::string>* dirty = nullptr;
  for (const std::string& name : rule.sources) {
    Read& read = Records(name, changes_only);
    if (!read.records.ok()) {
      return MakeError(read.records.error().kind, "rule " + rule.name + ": " +
                                                      read.records.error().message +
                                                      "; no address book was changed");
    }
    const std::string& exclude = sources_.at(name).exclude.text();
    if (changes_only && read.changes) {
      sources.push_back(SourcePeople{name, &*read.changes, &read.changes_excluded, exclude});
      dirty = &*read.dirty;
    } else {
      sources.push_back(SourcePeople{name, &*read.records, &read.excluded, exclude});
    }
  }
  auto selected = dirty ? SelectChanges(rule, sources.front(), *dirty, selection.previous, target)
                        : SelectPeople(rule, sources, target);
  if (!selected.ok()) {
    return MakeError(selected.error().kind,
                     selected.error().message + "; no address book was changed");
  }
  if (mode == ReadMode::kDeferred) {
    if (selected->fingerprint != selection.fingerprint) {
      // The version said "unchanged" (or a delta read said what changed)
      // but the people differ (a change the version cannot see, or a short
      // read): nothing is planned on them.
      return MakeError(ErrorKind::kTransient, "rule " + rule.name +
                                                  ": the sources changed during the run; they "
                                                  "are read again next run");
    }
    if (selection.partial) {
      // Other threads hold items of the partial selection: it stays as it is.
      selection.loader->complete =
          std::make_shared<const RuleSelection>(std::move(selected).value());
    } else {
      selection.AdoptPeople(std::move(selected).value());
    }
    return {};
  }
  selection.fingerprint = selected->fingerprint;
  if (dirty) {
    selection.partial = true;
    selection.entries = std::move(selected->entries);
    selection.changed_keys = std::move(selected->changed_keys);
    selection.AdoptPeople(std::move(selected).value());
  } else {
    selection.AdoptPeople(std::move(selected).value());
    selection.changed_keys = DiffKeys(selection.previous.entries, selection.desired);
  }
  return {};
}

void SourceReader::DropRecords() {
  std::map<std::string, Read> dropped;
  // Caches loaded for a source that was not read after all (unchanged):
  // waited for and freed on the helper thread. A deferred read loads again.
  std::map<std::string, std::future<LoadedCache>> unused;
  {
    std::lock_guard lock(mu_);
    dropped.swap(read_);
    unused.swap(prefetch_);
    if (!unused.empty()) stop_prefetch_ = true;
  }
  // Tens of thousands of records (photos among them) take a third of a
  // second to free: a helper thread frees them while the collections run.
  if (freeing_.joinable()) freeing_.join();
  freeing_ = std::thread([dropped = std::move(dropped), unused = std::move(unused)]() mutable {
    dropped.clear();
    for (auto& [name, loading] : unused) loading.wait();
    unused.clear();
  });
}

SourceReader::~SourceReader() {
  stop_prefetch_ = true;
  prefetch_.clear();  // waits for a load still running
  if (freeing_.joinable()) freeing_.join();
}

}  // namespace roster
