// Reading sources: each source is read, excluded, transformed and trimmed to
// the attributes the rules test once per run, however many rules use it; a
// cheap version per rule tells whether its people need reading at all.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/connector.h"
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

// Reads the sources of a run. Thread-safe: a deferred read happens on a
// worker thread while others run.
class SourceReader {
 public:
  SourceReader(std::map<std::string, SourceEntry>& sources, const std::vector<RuleSpec>& rules,
               RunNotes& notes, SourceCacheUse cache = {})
      : sources_(sources), rules_(rules), notes_(notes), cache_(cache) {}

  // A cheap fingerprint of what `rule` would read: each source's Version()
  // and everything in the configuration that shapes the selection. Empty
  // when a source cannot tell, or it failed (the full read then says why).
  std::string RuleVersion(const RuleSpec& rule, const Target* target);

  // Reads the rule's sources and selects its people into `selection`. A
  // deferred read (`deferred`) keeps the fingerprint the collections were
  // compared with and fails, changing nothing, when the people turn out to
  // differ from it: the next run reads afresh and the guards look at them.
  // Items are as `target` projects them.
  Status ReadRule(const RuleSpec& rule, const Target* target, RuleSelection& selection,
                  bool deferred);

  // Every rule holds its selection now: the raw records (with every
  // attribute read) can go. A deferred read needed later reads again.
  void DropRecords();

 private:
  const Result<std::vector<SourceRecord>>& Records(const std::string& name);
  // The records of a source that reads changes, through the cache.
  Result<std::vector<SourceRecord>> ReadThroughCache(const std::string& name, SourceEntry& entry);
  void Prepare(const std::string& name, SourceEntry& entry, std::vector<SourceRecord>& records);

  std::map<std::string, SourceEntry>& sources_;
  const std::vector<RuleSpec>& rules_;
  RunNotes& notes_;
  SourceCacheUse cache_;
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
  std::map<std::string, Result<std::vector<SourceRecord>>> read_;
  std::map<std::string, std::vector<std::string>> excluded_;  // keys, per source
  std::map<std::string, std::string> versions_;
};

}  // namespace roster
