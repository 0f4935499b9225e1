// An in-process twin of tests/integration/fakegraph.py: a target that behaves
// like Microsoft Graph contact folders (server-assigned ids, $batch of 20,
// PATCH as a merge, photos as a dependent step, a lossy contact shape, Outlook
// throttling per mailbox), with counters, fault hooks and seeded faults, so
// that unit tests of the executor and limiter see Graph's rules without HTTP.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/connector.h"

namespace roster {

// The limits a target's calls meet. The server keeps each mailbox's slots
// and window; every call is judged by the options of the target making it,
// so targets sharing a server should share options.
struct GraphLikeOptions {
  int max_in_flight = 4;  // what Target::max_in_flight() answers
  // Outlook's limits per mailbox: slots in flight, and requests per window
  // (a fixed window opened by its first request; every sub-request counts).
  int concurrency = 4;
  int64_t window_requests = 10000;
  std::chrono::seconds window{600};
  Clock* clock = nullptr;  // null: RealClock()
};

// One contact as the server holds it, for tests to inspect.
struct GraphLikeItem {
  std::string etag;
  std::optional<ManagedTag> tag;  // roster's marker (an extended property), if set
  Contact contact;                // in the projected form, without the photo
  std::optional<Photo> photo;
  std::string file_as;  // server-filled ("Family, Given"); never in a RemoteItem
};

// What the server was asked. A WriteBatch or a Fetch chunk is one HTTP request
// (a $batch) whose every step is a sub-request; a single Create, Update or
// Delete is one HTTP request per step; each page of a listing is one.
struct GraphLikeCounters {
  int64_t http_requests = 0, batch_calls = 0, sub_requests = 0;
  int64_t creates = 0, updates = 0, deletes = 0, photo_writes = 0;
  int64_t noop_updates = 0;  // updates that had nothing to send: no request
  int64_t fields_sent = 0;   // contact properties (and the marker) in POST and PATCH bodies
  // 429s, one per request or sub-request answered so, by cause.
  int64_t throttled_concurrency = 0, throttled_window = 0, throttled_injected = 0;
  int64_t injected_5xx = 0, answers_lost = 0;
  int64_t fetched = 0;  // items returned by Fetch
  int64_t list_pages = 0, folder_creates = 0;
  std::map<std::string, int> max_in_flight;  // per mailbox: most slots held at once
  int64_t writes() const { return creates + updates + deletes + photo_writes; }
};

// One step the server is about to run, as the fault hook sees it. `kind` is
// "create", "update", "delete", "photo" (the photo PUT after a create or
// update), "fetch" (one item) or "list" (one page). `key` is the marker's key
// of a create, update or photo step.
struct GraphLikeStep {
  std::string kind;
  std::string user;
  std::string href;  // empty for a create and a list page
  std::string key;
};

// What the fault hook makes of a step: answer `error` instead of running it,
// or (after_write) run it and lose its answer, reporting `error` (a
// kTransient, typically) with the outcome marked ambiguous.
struct StepFault {
  Error error;
  bool after_write = false;
};

// Faults drawn from a PRNG seeded with `seed`: the same calls in the same
// order meet the same faults. Each request or sub-request draws once:
// rate_429 answers kThrottled (retry_after 1 s), rate_5xx kTransient, both
// without running it. Each write call (a WriteBatch, or a single Create,
// Update or Delete) that wrote something draws once more: rate_lost loses its
// whole answer after everything in it ran (every outcome kTransient, ambiguous).
struct RandomFaults {
  double rate_429 = 0, rate_5xx = 0, rate_lost = 0;
  uint64_t seed = 0;
};

// The mailboxes behind GraphLikeTargets: one per user, created on first use,
// each with contact folders by display name. Ids and etags are random-looking
// but the same for the same seed and the same calls. Thread-safe.
class GraphLikeServer {
 public:
  explicit GraphLikeServer(uint64_t seed = 1);
  ~GraphLikeServer();
  GraphLikeServer(const GraphLikeServer&) = delete;
  GraphLikeServer& operator=(const GraphLikeServer&) = delete;

  // The folder's contacts by href (the contact's id). Empty if no such folder.
  std::map<std::string, GraphLikeItem> Items(const std::string& user, const std::string& folder);
  // The folder's server-assigned id; empty if it does not exist.
  std::string FolderId(const std::string& user, const std::string& folder);
  // Creates the folder if missing (as a user would in Outlook); returns its id.
  std::string AddFolder(const std::string& user, const std::string& folder);
  // Deletes the folder and its contacts; false if there was none.
  bool RemoveFolder(const std::string& user, const std::string& folder);

  // A user's own contact, without marker, as Outlook would store it (the
  // folder is created if missing). Returns its href. Counts nothing.
  std::string PutByHand(const std::string& user, const std::string& folder, const Contact& contact);
  // A user's edit of an existing contact (its marker kept); returns the new
  // etag, or empty when there is no such contact.
  std::string EditByHand(const std::string& user, const std::string& folder,
                         const std::string& href, const Contact& contact);
  void RemoveByHand(const std::string& user, const std::string& folder, const std::string& href);

  GraphLikeCounters counters();
  void ResetCounters();
  // Slots of the user's mailbox held right now.
  int in_flight(const std::string& user);

  // Called before each step, under the server's lock (it must not call the
  // server); a returned fault replaces or follows the step. Null: none.
  void SetFault(std::function<std::optional<StepFault>(const GraphLikeStep&)> fault);
  // Replaces the random faults and restarts their sequence from the seed.
  void SetRandomFaults(const RandomFaults& faults);
  // Called with the user and the call ("batch", "create", "update",
  // "delete", "fetch", "list") after a call took its slots and before it
  // runs, without the lock: a test can hold a call in flight there and watch
  // another one meet the concurrency limit.
  void SetInFlightHook(std::function<void(const std::string& user, const std::string& call)> hook);

 private:
  friend class GraphLikeCollection;
  friend class GraphLikeTarget;
  struct State;
  std::unique_ptr<State> state_;
};

// A Target on `server`. Collections are contact folders found by display
// name (created with a server-assigned id when asked), ids
// "graph-like:/users/<user>/contactFolders/<folder id>"; a known_url of that
// form opens without a request. An item's href is its contact id ("AAMk...",
// unique on the server); a collection reads and writes only its own folder's.
// Creates are kServerId (the name is ignored), batches hold 20, updates are
// merges that read the current item first. Project() gives what a Graph
// contact holds: 3 e-mails (preferred first), 1 mobile, 2 business and 2 home
// phones, one business, home and other address, 1 URL, no role, and the
// displayName the server would fill ("Given Family") when there is none.
// Graph cannot remove a contact's photo: an update whose body has none while
// the server has one answers kConflict (with `landed` if the rest was written).
std::unique_ptr<Target> NewGraphLikeTarget(std::shared_ptr<GraphLikeServer> server,
                                           GraphLikeOptions options = {});

}  // namespace roster
