// The per-collection run: opens one target user's collection, lists it from
// the stored token, chooses quiet / incremental / full, reconciles, plans,
// runs the plan (or describes it, for a dry run) and confirms the writes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/connector.h"
#include "state/state.h"
#include "sync/rule.h"
#include "sync/selection.h"
#include "sync/sync.h"

namespace roster {

// One action of a dry run, described for people and as data.
struct PlannedAction {
  std::string text;  // "update p1001 (/alice/book/x.vcf): Ann Lee"
  std::string key;
  Decision why;
};

struct CollectionReport {
  CollectionKey key;
  Counts counts;
  std::vector<std::string> errors;     // one sentence each
  std::vector<std::string> conflicts;  // items left alone
  std::vector<std::string> warnings;   // e.g. unreadable items in the collection
  std::vector<PlannedAction> planned;  // dry run: the actions, described
  size_t planned_more = 0;             // dry run: actions beyond RunOptions::max_planned
  bool guard_tripped = false;
  bool offboarded = false;          // the user left the rule: roster's items removed or let go
  bool credential_refused = false;  // the server refused the credential (HTTP 401)
  // The target user cannot hold a collection (no mailbox, no Exchange
  // licence): named in `warnings`, skipped, and not a failure of the run.
  bool no_such_user = false;
  ExecuteStats stats;  // requests, sub-requests and waits of the writes
};

struct RunOptions {
  bool dry_run = false;
  bool force = false;  // override the deletion guards
  // Dry run: at most this many actions are described per collection (the
  // rest are counted), so that planning 100 books of 50,000 people stays small.
  size_t max_planned = SIZE_MAX;
  // Dry run: read the items the described updates would change, and say
  // which fields change (Decision::changes) and which the field rules keep.
  bool explain = false;
  // Called after each collection finishes (from worker threads, serialised).
  std::function<void(const CollectionReport&, size_t done, size_t total)> on_collection;
  RetryPolicy retry;
  Clock* clock = nullptr;
  // Shared by every collection of the run (and, later, by several workers):
  // per-bucket concurrency, request and upload windows. May be null.
  Limiter* limiter = nullptr;
  // The run stops cleanly here: what is done is recorded, collections not
  // reached and actions not run wait for the next run (exit 1).
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

// One run of one collection. Not thread-safe; one per collection and thread.
class CollectionRun {
 public:
  // `self_key`: the target user's own person, left out of their collection.
  // `create`: false when offboarding (a missing collection stays missing).
  CollectionRun(const RuleSpec& rule, const RuleSelection& selection, Target& target,
                StateStore& store, const RunOptions& options, CollectionReport& report,
                std::string self_key, bool create = true);

  // Runs it for `user`; every failure ends up in the report.
  void Run(const std::string& user);

 private:
  template <typename T>
  Result<T> Retry(const std::function<Result<T>()>& op) {
    return WithRetries<T>(opt_.retry, *opt_.clock, op);
  }
  void DrainWarnings();
  bool SelfExcluded() const;
  int64_t DesiredCount() const;
  const std::vector<DesiredItem>& Desired();
  std::string Fingerprint(const std::string& selection) const;
  Result<Listing> OpenAndList(const CollectionSpec& spec, CollectionState& state);
  Status ForgetState(CollectionState& state);
  Status RunInner(const std::string& user);
  Status PlanIncremental(const CollectionState& state);
  Status PlanFull(const CollectionState& state, const Listing& listing);
  Status PlanAndRun(Collection* collection, const CollectionState& state,
                    const std::vector<CurrentItem>& current,
                    const std::vector<DesiredItem>& desired, int64_t managed, int64_t outside);
  Status StopAtGuard(const CollectionState& state, const Plan& plan);
  void Describe(const Plan& plan);
  void Explain(std::vector<PlannedAction>& planned,
               const std::vector<const UpdateAction*>& updates);
  std::string Detail(const Action& action) const;
  Status Execute(Collection* collection, const CollectionState& state, const Plan& plan);
  Status Finish(const CollectionState& state, bool wrote);

  const RuleSpec& rule_;
  const RuleSelection& in_;
  Target& target_;
  StateStore& store_;
  const RunOptions& opt_;
  CollectionReport& report_;
  const std::string self_key_;
  const bool create_;
  std::vector<DesiredItem> own_desired_;
  std::unordered_map<std::string, std::string> fields_by_href_;
  // Managed items a full listing carried with their content (Listing::items).
  std::unordered_map<std::string, RemoteItem> listed_;
  std::unique_ptr<Collection> collection_;
  std::string token_;
  std::vector<ItemState> written_;
  std::vector<std::string> deleted_;
};

}  // namespace roster
