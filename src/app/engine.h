// The engine: runs every rule of a configuration — reads each source once,
// selects and maps its people, and brings every target user's collection to
// match, through the planner and executor. Used by the CLI, later the service.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/connector.h"
#include "filter/filter.h"
#include "state/state.h"
#include "sync/sync.h"

namespace roster {

struct RuleSpec {
  std::string name;
  std::string source;
  std::string target;
  std::string display_name;  // of the collection roster manages in each user's account
  Filter filter;
  int max_delete_percent = 20;
};

struct TargetEntry {
  std::unique_ptr<Target> target;
  std::vector<std::string> users;
};

struct EngineConfig {
  std::map<std::string, std::unique_ptr<Source>> sources;
  std::map<std::string, TargetEntry> targets;
  std::vector<RuleSpec> rules;
};

struct CollectionReport {
  CollectionKey key;
  Counts counts;
  std::vector<std::string> errors;     // one sentence each
  std::vector<std::string> conflicts;  // items left alone
  std::vector<std::string> warnings;   // e.g. unreadable items in the collection
  std::vector<std::string> planned;    // dry run: the actions, described
  bool guard_tripped = false;
};

struct RunReport {
  std::vector<CollectionReport> collections;
  std::vector<std::string> errors;  // rule-level: source unreadable, guard
  bool guard_tripped = false;

  Counts Totals() const;
  // 0: everything synced; 3: a deletion guard stopped something; 1: other failures.
  int ExitCode() const;
};

struct RunOptions {
  bool dry_run = false;
  bool force = false;  // override the deletion guards
  // Called after each collection finishes (from worker threads, serialised).
  std::function<void(const CollectionReport&, size_t done, size_t total)> on_collection;
  RetryPolicy retry;
  Clock* clock = nullptr;
};

// The fingerprint of a rule's selection (sorted by key): equal fingerprints
// mean the same people with the same content.
std::string SelectionFingerprint(const std::vector<DesiredItem>& sorted);

class Engine {
 public:
  Engine(EngineConfig config, StateStore& store);
  // Runs all rules. A sync records each collection's result in the store.
  RunReport Run(const RunOptions& options);

 private:
  EngineConfig config_;
  StateStore& store_;
};

}  // namespace roster
