// The sync engine's two halves, independent of the item kind: a pure planner
// that turns (desired items, current collection, policy) into actions that are
// data, and an executor that runs them with preconditions and retries and
// records each item's status right after its write succeeds.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/clock.h"
#include "core/connector.h"
#include "core/item.h"
#include "mapping/merge.h"
#include "state/state.h"
#include "sync/limiter.h"

namespace roster {

// What the source says one collection should hold for a rule.
struct DesiredItem {
  std::string key;
  std::string hash;
  std::shared_ptr<const ItemBody> body;
  // Hashes that identify the person among a user's own items (MatchHashes:
  // e-mail addresses): an unmanaged item sharing one is the user's own copy.
  std::vector<std::string> match;
};

// One item of the collection as roster knows it now.
struct CurrentItem {
  std::string href;
  std::string etag;
  std::string key;   // source identity when the item carries this rule's marker, else empty
  std::string hash;  // content hash of what is on the server
  // True when the state store already recorded this managed item before this
  // run; false when it was found only by reading the collection (state lost,
  // or a crash between a write and its record): such items are adopted.
  bool recorded = true;
  // Items roster does not manage (empty key): hashes of their e-mail
  // addresses, compared with DesiredItem::match for adoption.
  std::vector<std::string> match;
  // The item changed on the server since roster last wrote or read it (its
  // etag moved): a difference is then the user's edit, not the source's.
  bool edited = false;
};

// Why the planner decided an action. The words are DescribeWhy's; the
// detail and the changes are filled in by whoever knows more (the collection
// run knows the sources, the filter and, for a verbose plan, the old content).
enum class Why {
  kNew,              // selected, not in the collection
  kSourceChanged,    // the person changed in the source since the last sync
  kEditedOnServer,   // the item changed on the server since roster wrote it
  kDiffers,          // the content differs for another reason (rules, mapping, a lost state)
  kFoundUnrecorded,  // a managed copy the state did not know: a lost state or an interrupted run
  kLeft,             // no longer selected
  kDuplicate,        // a second managed copy of a person who stays
  kUsersOwn,         // the user has their own item for the person (adopt = "never")
  kTakeOver,         // the user's own item for the person, managed from now on (adopt = "merge")
  kRepair,           // found again while writing (the executor's single-item replan)
};

// A decision as data: for plan --verbose, and later the audit log and
// "explain". `changes` is empty unless the old content was read.
struct Decision {
  Why why = Why::kDiffers;
  std::string detail;                // "from source staff", "does not match the filter ..."
  std::vector<FieldChange> changes;  // old -> new, by field
};

// "in the selection, not yet in the collection", ...
const char* DescribeWhy(Why why);

struct CreateAction {
  std::string key;
  Decision why;
};
struct UpdateAction {
  std::string key;
  std::string href;
  std::string etag;  // If-Match
  bool adopt = false;
  // The user's own item for this person (same e-mail), taken over under
  // adopt = "merge": read, merged by the field rules, and marked as roster's.
  bool take_over = false;
  Decision why;
};
struct DeleteAction {
  std::string key;
  std::string href;
  std::string etag;        // If-Match
  bool duplicate = false;  // a second managed copy of a key that stays
  Decision why;
};
struct AdoptAction {  // a managed item found on the server, already right: record it only
  std::string key;
  std::string href;
  std::string etag;
  std::string hash;
  Decision why;
};
struct ConflictAction {
  std::string key;
  std::string href;
  std::string reason;
  Decision why;
};
// Not written: the user already has their own item for the person (adopt = "never").
struct SkipAction {
  std::string key;
  std::string href;  // the user's item
  Decision why;
};
using Action =
    std::variant<CreateAction, UpdateAction, DeleteAction, AdoptAction, ConflictAction, SkipAction>;

struct PlanInput {
  // Sorted by key, unique. In incremental planning only the keys that changed.
  const std::vector<DesiredItem>* desired = nullptr;
  // The collection's items (or, incrementally, those managed for the same keys,
  // plus the unmanaged ones that have match hashes).
  const std::vector<CurrentItem>* current = nullptr;
  AdoptMode adopt = AdoptMode::kNever;
  // The resource name a Create would use for a key: when duplicates are found,
  // the copy whose href ends in it is kept. May be empty.
  std::function<std::string(const std::string& key)> preferred_name;
  // Managed items in the whole collection, and desired items left out of this
  // (incremental) input because they are known to be unchanged.
  int64_t managed_total = 0;
  int64_t unchanged_outside = 0;
  int max_delete_percent = 100;
  // The mass-change guard: updates of managed items (not take-overs) beyond
  // this share of managed_total block the plan too. An export whose every
  // mobile number went blank, or a mapping change, would otherwise rewrite
  // every phone and pass the deletion guard.
  int max_update_percent = 100;
  bool force = false;
  // Keys whose source content changed since the last sync (to say why an
  // update is planned); may be empty.
  std::function<bool(const std::string& key)> source_changed;
};

struct Plan {
  std::vector<Action> actions;
  int64_t unchanged = 0;
  // Set when the deletions exceed max_delete_percent of the managed items, or
  // the updates max_update_percent, and force is off: the plan must not run.
  // `guard_name` is "deletion guard" or "mass-change guard".
  std::string guard;
  std::string guard_name;

  Counts Predicted() const;  // counts as if every action succeeds
};

// The planner: pure, no I/O. Every (desired, current) pairing lands in exactly
// one action or the unchanged count.
Plan PlanCollection(const PlanInput& input);

// Describes an action for the dry-run listing: "create alice@example.com".
std::string DescribeAction(const Action& action);
// The action's decision, whatever its type.
const Decision& DecisionOf(const Action& action);
Decision& DecisionOf(Action& action);

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  // A Retry-After longer than this is not waited for: the operation fails
  // (the item is left for the next run) and the error says so. Set per
  // target kind: CardDAV servers ask for seconds, Graph for up to minutes.
  std::chrono::milliseconds max_retry_after{60000};
  // The run's deadline: no wait reaches past it.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

// Runs `op` until it succeeds, fails with a non-retryable error, or attempts
// run out; waits with exponential backoff, or the server's Retry-After (up to
// max_retry_after, and never past the deadline).
template <typename T>
Result<T> WithRetries(const RetryPolicy& policy, Clock& clock,
                      const std::function<Result<T>()>& op);

// A write prepared from a desired item, the current remote item (null for a
// create) and the field memory stored with it: the content to write, and the
// field memory to store after the write.
struct PreparedWrite {
  ItemBody body;
  std::string fields;
};
using PrepareFn = std::function<PreparedWrite(const DesiredItem& want, const RemoteItem* remote,
                                              const std::string& fields)>;

struct ExecuteContext {
  Collection* collection = nullptr;
  StateStore* store = nullptr;
  int64_t collection_id = 0;
  std::string rule;
  // Payload per key, for creates and updates.
  std::function<const DesiredItem*(const std::string& key)> desired;
  // Resource name a create uses for a key (deterministic, so a retried create
  // after a crash cannot make a second copy).
  std::function<std::string(const std::string& key)> resource_name;
  // Field rules: when set, every write goes through it, and updates first read
  // the item (in batches) so that users' edits can be kept. An update whose
  // merged content equals what is there writes nothing.
  PrepareFn prepare;
  // Stored field memory per href, for `prepare`.
  std::function<std::string(const std::string& href)> stored_fields;
  // Items already read in this run (a listing that carried their content):
  // an update that must read its item first takes it from here. May be null.
  std::function<const RemoteItem*(const std::string& href)> known;
  RetryPolicy retry;
  Clock* clock = nullptr;
  // Shared by all work of the process (may be null): the collection's
  // limit_bucket() is asked before every request, so that roster's own
  // concurrency and volume never draw a 429.
  Limiter* limiter = nullptr;
  // Called after each action, with its outcome.
  std::function<void(const Action&, const Status&)> on_done;
};

// What the executor sent and waited for, for --json and the dashboard.
struct ExecuteStats {
  int64_t requests = 0;      // HTTP calls of the writes (a $batch once, each dependent step once)
  int64_t sub_requests = 0;  // writes inside them
  int64_t throttled = 0;     // answers that asked to wait (429, 503 with Retry-After)
  int64_t waits = 0;         // times the executor waited for a retry or the limiter
  std::chrono::milliseconds waited{0};
  ExecuteStats& operator+=(const ExecuteStats& o);
};

struct ExecuteResult {
  Counts counts;
  std::vector<ItemState> written;      // what this run wrote, as recorded
  std::vector<std::string> deleted;    // hrefs this run deleted
  std::vector<std::string> errors;     // one sentence each
  std::vector<std::string> conflicts;  // items left alone, one sentence each
  // The server refused the credential (HTTP 401): the plan's remaining
  // actions were not tried, since each would be one more failed login.
  bool credential_refused = false;
  ExecuteStats stats;
};

// Runs the plan's actions on one collection: writes in batches of the
// collection's max_batch(), each write's outcome handled alone (a retryable
// failure waits in the queue, not on a thread of its own; a precondition
// failure is read and decided again). An item's failure is recorded and the
// run goes on; nothing is recorded as done that was not done.
ExecuteResult ExecutePlan(const Plan& plan, ExecuteContext& context);

}  // namespace roster

#include "sync/retry_inl.h"
