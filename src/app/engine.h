// The engine: runs every rule of a configuration — reads each source once,
// selects and maps its people, and brings every target user's collection to
// match, through the planner and executor. Used by the CLI, later the service.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/connector.h"
#include "filter/filter.h"
#include "mapping/mapping.h"
#include "state/state.h"
#include "sync/sync.h"

namespace roster {

// Who receives a rule's collection: a fixed list, or people of a directory.
struct UserSelection {
  std::vector<std::string> fixed;  // used when `directory` is empty
  std::string directory;           // a source of EngineConfig::directories
  std::string group;               // every member of this group, nested groups included
  std::string query;               // or everyone matching this directory query
  std::string attribute;           // the directory attribute that names the account
  // Directory users who are not eligible (users_exclude; by default disabled
  // accounts): they receive nothing, as if they had left the rule.
  Filter exclude;
};

struct RuleSpec {
  std::string name;
  // In priority order. With several, people are merged on e-mail address and
  // each field comes from the first source that has a value for it.
  std::vector<std::string> sources;
  std::string target;
  std::string display_name;  // of the collection roster manages in each user's account
  Filter filter;
  int max_delete_percent = 20;
  int max_update_percent = 50;         // the mass-change guard, per collection
  std::optional<UserSelection> users;  // absent: the target's own user list
  bool include_self = false;           // send target users their own card
  FieldPolicy fields;                  // per-field rules; empty: the source overwrites all
  AdoptMode adopt = AdoptMode::kNever;
  bool offboard_remove = true;  // a user who leaves the rule loses roster's items
};

struct SourceEntry {
  SourceEntry() = default;
  SourceEntry(std::unique_ptr<Source> s) : source(std::move(s)) {}  // NOLINT: implicit on purpose
  std::unique_ptr<Source> source;
  TransformOptions transform;  // phones, photos, opt-out
  Filter exclude;              // entries never sent by any rule (disabled, hidden)
};

struct TargetEntry {
  std::unique_ptr<Target> target;
  std::vector<std::string> users;
  // A Retry-After beyond this leaves the item for the next run (per target
  // kind: CardDAV 60 s by default).
  std::chrono::milliseconds max_retry_after{60000};
};

struct EngineConfig {
  std::map<std::string, SourceEntry> sources;
  // Sources that can also name target users (LDAP); not owned.
  std::map<std::string, Directory*> directories;
  std::map<std::string, TargetEntry> targets;
  std::vector<RuleSpec> rules;
  // Said once per run (the configuration allows something risky).
  std::vector<std::string> warnings;
  // The run's deadline (run_timeout_seconds from the start); see RunOptions.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

struct CollectionReport {
  CollectionKey key;
  Counts counts;
  std::vector<std::string> errors;     // one sentence each
  std::vector<std::string> conflicts;  // items left alone
  std::vector<std::string> warnings;   // e.g. unreadable items in the collection
  std::vector<std::string> planned;    // dry run: the actions, described
  size_t planned_more = 0;             // dry run: actions beyond RunOptions::max_planned
  bool guard_tripped = false;
  bool offboarded = false;          // the user left the rule: roster's items removed or let go
  bool credential_refused = false;  // the server refused the credential (HTTP 401)
};

struct RunReport {
  std::vector<CollectionReport> collections;
  std::vector<std::string> errors;    // rule-level: source unreadable, guard
  std::vector<std::string> warnings;  // source-level: repaired values, unreadable phones
  std::vector<std::string> notices;   // one line per rule on what the sources gave
  bool guard_tripped = false;

  Counts Totals() const;
  // 0: everything synced; 3: a deletion guard stopped something; 1: other failures.
  int ExitCode() const;
};

struct RunOptions {
  bool dry_run = false;
  bool force = false;  // override the deletion guards
  // Dry run: at most this many actions are described per collection (the
  // rest are counted), so that planning 100 books of 50,000 people stays small.
  size_t max_planned = SIZE_MAX;
  // Called after each collection finishes (from worker threads, serialised).
  std::function<void(const CollectionReport&, size_t done, size_t total)> on_collection;
  RetryPolicy retry;
  Clock* clock = nullptr;
  // The run stops cleanly here: what is done is recorded, collections not
  // reached and actions not run wait for the next run (exit 1).
  std::optional<std::chrono::steady_clock::time_point> deadline;
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
