// The engine: runs every rule of a configuration through the sync algorithm
// of src/sync/ — prepares each rule (sources read once, audiences, guards),
// then works on every target user's collection, at most max_in_flight of a
// target at once, offboards those who left, and records the run. Used by the
// CLI, later the service.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/connector.h"
#include "core/erasure.h"
#include "state/state.h"
#include "sync/collection_run.h"
#include "sync/rule.h"
#include "sync/selection.h"
#include "sync/sources.h"
#include "sync/sync.h"

namespace roster {

struct TargetEntry {
  std::unique_ptr<Target> target;
  std::vector<std::string> users;
  // A Retry-After beyond this leaves the item for the next run (per target
  // kind: CardDAV 60 s by default).
  std::chrono::milliseconds max_retry_after{60000};
};

struct EngineConfig {
  // What connectors share and must outlive them (a tenant's token cache):
  // declared first, so it is destroyed last.
  std::vector<std::shared_ptr<void>> shared;
  std::map<std::string, SourceEntry> sources;
  // Sources that can also name target users (LDAP); not owned.
  std::map<std::string, Directory*> directories;
  std::map<std::string, TargetEntry> targets;
  std::vector<RuleSpec> rules;
  // Said once per run (the configuration allows something risky).
  std::vector<std::string> warnings;
  // A sync forgets run history older than this ([state] retention_days);
  // none: kept for ever.
  std::optional<std::chrono::seconds> run_retention;
  // [state] cache = "encrypted": sources that read changes keep their
  // records, sealed, between runs, for retention (default 60 days after each
  // was read); false ("none"): nothing of them is kept, and a sync purges
  // what an earlier setting left.
  bool cache = false;
  std::chrono::seconds cache_max_age{std::chrono::hours(24) * 60};
  // [state] purge_after_sync: the cache is wiped at the end of every sync
  // (and so is never used for a delta read).
  bool purge_after_sync = false;
  // Who was erased (`roster gdpr erase`; the register of [gdpr]): never
  // selected, and redacted where others name them. Not owned; null: nobody.
  const ErasureList* erasure = nullptr;
  // The run's deadline (run_timeout_seconds from the start); see RunOptions.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

struct RunReport {
  std::vector<CollectionReport> collections;
  std::vector<std::string> errors;    // rule-level: source unreadable, guard
  std::vector<std::string> warnings;  // source-level: repaired values, unreadable phones
  std::vector<std::string> notices;   // one line per rule on what the sources gave
  bool guard_tripped = false;
  // The erased people the sources still hold (their addresses and
  // ErasureIds): the CLI adds what is new to the register. In memory only;
  // never printed.
  std::vector<ErasedPerson> erased;

  Counts Totals() const;
  // 0: everything synced; 3: a deletion guard stopped something; 1: other failures.
  int ExitCode() const;
};

class Engine {
 public:
  Engine(EngineConfig config, StateStore& store);
  // Runs all rules. A sync records each collection's result in the store.
  RunReport Run(const RunOptions& options);

 private:
  class RunState;
  EngineConfig config_;
  StateStore& store_;
};

}  // namespace roster
