// Reading sources: each source is read, excluded, transformed and trimmed to
// the attributes the rules test once per run, however many rules use it; a
// cheap version per rule tells whether its people need reading at all.
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/connector.h"
#include "core/erasure.h"
#include "filter/filter.h"
#include "mapping/mapping.h"
#include "state/state.h"
#include "sync/notes.h"
#include "sync/rule.h"
#include "sync/selection.h"

namespace roster {

struct SourceEntry {
  SourceEntry() = default;
  SourceEntry(std::unique_ptr<Source> s) : source(std::move(s)) {}  // NOLINT: implicit on purpose
  std::unique_ptr<Source> source;
  TransformOptions transform;  // phones, photos, opt-out
  Filter exclude;              // entries never sent by any rule (disabled, hidden)
};

// The source cache of a run ([state] cache = "encrypted"): sources that read
// changes (Source::ReadsChanges) keep their records in the state between
// runs and read only what changed since.
struct SourceCacheUse {
  StateStore* store = nullptr;  // none: every source is read in full
  // Entries read from their source longer ago than this have expired: they
  // are never used, and their people are read again.
  std::chrono::seconds max_age{std::chrono::hours(24) * 60};
  // A plan reads the cache but never writes it.
  bool write = true;
};

// How a rule reads its sources (SourceReader::ReadRule).
enum class ReadMode {
  kFull,      // every person selected and mapped
  kDeferred,  // a collection needed the people the version said were unchanged
  // Like kFull, but after a delta read through the cache only the people it
  // touched (changed, gone, or derived from one that did) are selected and
  // mapped; everyone else is as the last snapshot has them (SelectChanges).
  // For a single-source rule whose configuration is the last snapshot's.
  kChanges,
};

// A rule's version (RuleVersion): "<configuration>/<sources>", where the
// first part hashes everything in the configuration that shapes the
// selection and the second every source's Version(), empty when one cannot
// tell.
bool VersionKnown(const std::string& version);
bool SameConfiguration(const std::string& a, const std::string& b);

// Reads the sources of a run. Thread-safe: a deferred read happens on a
// worker thread while others run.
class SourceReader {
 public:
  SourceReader(std::map<std::string, SourceEntry>& sources, const std::vector<RuleSpec>& rules,
               RunNotes& notes, SourceCacheUse cache = {}, const ErasureList* erasure = nullptr)
      : sources_(sources), rules_(rules), notes_(notes), cache_(cache), erasure_(erasure) {}
  ~SourceReader();
  SourceReader(const SourceReader&) = delete;
  SourceReader& operator=(const SourceReader&) = delete;

  // A cheap fingerprint of what `rule` would read (see VersionKnown).
  std::string RuleVersion(const RuleSpec& rule, const Target* target);

  // Reads the rule's sources and selects its people into `selection`, with
  // the keys that changed since `selection.previous` (not for kDeferred). A
  // deferred read keeps the fingerprint the collections were compared with
  // and fails, changing nothing, when the people turn out to differ from
  // it: the next run reads afresh and the guards look at them. Items are as
  // `target` projects them.
  Status ReadRule(const RuleSpec& rule, const Target* target, RuleSelection& selection,
                  ReadMode mode);

  // Every rule holds its selection now: the raw records (with every
  // attribute read) can go. A deferred read needed later reads again.
  void DropRecords();

  // Every erased person the sources still hold, as this run found them:
  // the register learns their identities, so that a changed address does
  // not bring them back.
  std::vector<ErasedPerson> TakeErasedPeople();

 private:
  // A source's cache as loaded and decoded: `decoded` holds one record per
  // entry of `cache`, nullopt where it could not be decoded.
  struct LoadedCache {
    Result<SourceCache> cache{SourceCache{}};
    std::vector<std::optional<SourceRecord>> decoded;
  };
  // With `stop`, ends early (the cache then reads as an error) once it is set.
  LoadedCache LoadCache(const std::string& name, const std::string& shape,
                        const std::atomic<bool>* stop = nullptr);
  std::string ShapeOf(const SourceEntry& entry) const;

  // One source's records as a run read them.
  struct Read {
    Result<std::vector<SourceRecord>> records{std::vector<SourceRecord>{}};
    bool prepared = false;  // `records` excluded, transformed and trimmed
    std::vector<std::string> excluded;
    // A delta read that can tell what it touched (see ReadMode::kChanges):
    // those keys, and their records prepared apart from the rest.
    std::optional<std::unordered_set<std::string>> dirty;
    std::optional<std::vector<SourceRecord>> changes;
    std::vector<std::string> changes_excluded;
  };
  // The source's records, prepared: all of them, or with `changes_only`
  // after a delta read, the touched ones only (Read::changes).
  Read& Records(const std::string& name, bool changes_only);
  // The records of a source that reads changes, through the cache.
  Result<std::vector<SourceRecord>> ReadThroughCache(const std::string& name, SourceEntry& entry,
                                                     Read& read);
  void Prepare(const std::string& name, SourceEntry& entry, std::vector<SourceRecord>& records,
               std::vector<std::string>& excluded, size_t total);

  std::map<std::string, SourceEntry>& sources_;
  const std::vector<RuleSpec>& rules_;
  RunNotes& notes_;
  SourceCacheUse cache_;
  // Who was erased (`roster gdpr erase`): left out of every source, and
  // redacted where others name them. Null: nobody.
  const ErasureList* erasure_;
  std::map<std::string, size_t> erased_;  // source -> how many were left out
  std::vector<ErasedPerson> erased_found_;
  // How each source read through the cache went, for its notice.
  struct CacheRead {
    bool used = false;
    bool full = false;
    int64_t from_cache = 0;
    int64_t expired = 0;
    TransformReport capped;  // the photos capped as they were read
  };
  std::map<std::string, CacheRead> cache_reads_;
  std::mutex mu_;
  std::map<std::string, Read> read_;
  std::map<std::string, std::string> versions_;
  std::thread freeing_;  // of the records DropRecords let go
  // A source that reads changes has its cache loaded and decoded on a
  // thread of its own while its key listing (Version) runs: the listing
  // waits on the server, the decoding on the other core. Last, so that it
  // is waited for before anything it uses goes.
  std::map<std::string, std::future<LoadedCache>> prefetch_;
  std::atomic<bool> stop_prefetch_{false};  // set once no prefetch can be used
};

}  // namespace roster
