// The two interfaces every connector implements: a Source lists people, a
// Target holds one collection (address book, contact folder) per target user
// and writes items to it with preconditions. The sync engine knows only these.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/contact.h"
#include "core/item.h"
#include "core/result.h"

namespace roster {

// One person as a source sees them. `key` is the stable identity (a CSV column,
// a vCard UID, an LDAP entryUUID); `attributes` keeps the raw fields so that
// filters can test values the contact model does not carry (text values only;
// an attribute may have several).
struct SourceRecord {
  std::string key;
  Contact contact;
  std::map<std::string, std::vector<std::string>> attributes;
};

// A record together with its stamp: what identifies this version of its
// entry at the source (LDAP: the DN and modification stamps), so that a later
// run can tell from a cheap listing whether the entry changed.
struct StampedRecord {
  SourceRecord record;
  std::string stamp;
};

// What a delta read found (Source::ReadChanges).
struct SourceChanges {
  // `changed` is every record of the source: it could not read a delta (no
  // usable stamps, too much changed, an entry moved while it was read), so
  // whatever was cached is replaced.
  bool full = false;
  std::vector<StampedRecord> changed;  // new, or with another stamp than cached
  std::vector<std::string> removed;    // cached keys no longer in the source
  // How many requests the listing and the reads took, for the run summary
  // and the tests that hold a delta to its cost.
  int64_t entries_read = 0;
};

class Source {
 public:
  virtual ~Source() = default;
  // Reads every record, or fails as a whole: a partly read source must never
  // reach the planner, since missing records would look like departures.
  virtual Result<std::vector<SourceRecord>> ReadAll() = 0;
  // What the last ReadAll noticed without failing (a repaired attribute, an
  // entry skipped for a good reason), one sentence each, for the run summary.
  virtual std::vector<std::string> Warnings() const { return {}; }
  // A cheap fingerprint of the source's current content (for LDAP: every
  // entry's identity and modification stamp, without the bodies), so that a
  // run can tell "nothing changed" without reading everything. Empty when the
  // source cannot tell; then it is read in full every run. A source that
  // answered empty is asked again after its ReadAll, when it may know.
  virtual Result<std::string> Version() { return std::string(); }
  // A source that reads changes since a saved position (Graph's delta
  // links) keeps that position in the state between runs: the engine hands
  // back what Cursor() answered at the end of the last run before it asks
  // Version(), and stores what Cursor() answers at the end of this one.
  // Empty: nothing saved. A cursor that no longer works (an expired delta
  // token) only costs a full read.
  virtual void RestoreCursor(const std::string& saved) { (void)saved; }
  virtual std::string Cursor() const { return std::string(); }

  // Delta reads, for a run that holds the source's records from an earlier
  // one (the cache, [state] cache = "encrypted"). A source that answers true
  // lists its entries' keys and stamps cheaply and reads only those whose
  // stamp is not `cached`'s (key -> stamp), and answers the keys it no
  // longer has. The records it answers are as the source maps them, before
  // Derive: the cache keeps them so, and a run derives over the whole set.
  // Fails as a whole, as ReadAll does.
  virtual bool ReadsChanges() const { return false; }
  virtual Result<SourceChanges> ReadChanges(
      const std::unordered_map<std::string, std::string>& cached) {
    (void)cached;
    return MakeError(ErrorKind::kInvalidArgument, "this source cannot read changes");
  }
  // What a cached record depends on besides its own entry (the base, the
  // filter, the mapping): records cached under another shape are not used.
  virtual std::string CacheShape() const { return std::string(); }
  // Values derived from other records (a manager's display name), set anew
  // over the complete set of records, cached and fresh together. ReadAll
  // answers records already derived.
  virtual void Derive(std::vector<SourceRecord>& records) const { (void)records; }
  // After a delta read: the keys of `records` (the complete set, derived)
  // whose derived values may read one of `touched` (the old and new
  // versions of every record that changed or went), so that only those and
  // the changed ones are prepared again. nullopt: the source cannot tell,
  // and every record is prepared. A source that overrides Derive must
  // override this too, or its dependents would keep stale values.
  virtual std::optional<std::vector<std::string>> DerivedDependents(
      const std::vector<SourceRecord>& records,
      const std::vector<const SourceRecord*>& touched) const {
    (void)records;
    (void)touched;
    return std::nullopt;
  }
};

// A target user found in a directory: the entry's stable identity (the same
// key its person has as a source record, so that a user is never sent their
// own card) and the values of the attribute that names their account.
struct DirectoryUser {
  std::string key;
  std::string dn;
  std::vector<std::string> values;
  // The attributes the directory was asked to read for every user (those a
  // rule's users_exclude tests, such as userAccountControl), text values.
  std::map<std::string, std::vector<std::string>> attributes;
};

// A directory that can name target users: members of a group (nested groups
// included) or entries matching a query.
class Directory {
 public:
  virtual ~Directory() = default;
  // Every person reachable from `group` through member links, each once,
  // however deep or cyclic the nesting. Fails as a whole.
  virtual Result<std::vector<DirectoryUser>> GroupMembers(const std::string& group,
                                                          const std::string& attribute) = 0;
  // Every person matching `query` (an LDAP filter for LDAP directories).
  virtual Result<std::vector<DirectoryUser>> SearchUsers(const std::string& query,
                                                         const std::string& attribute) = 0;
};

// Marks an item as roster's own: which rule wrote it for which source identity.
struct ManagedTag {
  std::string rule;
  std::string key;
  bool operator==(const ManagedTag&) const = default;
};

struct ItemRef {
  std::string href;
  std::string etag;
};

// An item read back from a target.
struct RemoteItem {
  std::string href;
  std::string etag;
  std::optional<ManagedTag> tag;  // set only when the item carries roster's marker
  // What the item holds, as the target's projection of it (see
  // Target::Project): fields the server fills itself are left out.
  ItemBody body;
  std::string content_hash;  // KindOf(body).ContentHash(body), marker and server fields excluded
  std::string parse_error;   // non-empty when the body could not be read; item is left alone
};

// What changed in a collection since a sync token (or everything, when `full`).
struct Listing {
  bool full = false;                 // `changed` is the complete membership
  std::vector<ItemRef> changed;      // new or modified members
  std::vector<std::string> removed;  // hrefs gone since the token (delta only)
  std::string sync_token;            // token for next time; empty if unsupported
  // Members read in the same pass (a target that lists with the marker and
  // the content expanded, as Graph does): they need no Fetch.
  std::vector<RemoteItem> items;
};

struct WriteResult {
  std::string href;
  std::string etag;  // empty when the server did not say; the next listing fills it in
};

// How a target makes a create idempotent, so that neither a retry, a crash
// nor a lost answer can leave two copies.
enum class CreateMode {
  // The client names the item (deterministically, per rule and key) and
  // creates it with If-None-Match: *; a second attempt answers 412 and the
  // executor reads what is there (CardDAV, CalDAV).
  kClientName,
  // The server chooses the id (Graph). A create whose answer was lost is not
  // retried and not recorded; the next full listing, with roster's marker
  // expanded (one paged pass per collection), finds it and adopts it.
  kServerId,
};

// One write, as the executor hands it to a collection.
struct WriteOp {
  enum class Kind { kCreate, kUpdate, kDelete };
  Kind kind = Kind::kCreate;
  std::string name;      // create with kClientName: the resource name
  std::string href;      // update, delete
  std::string if_match;  // update, delete
  ManagedTag tag;        // create, update
  // Create, update: the item to hold, already projected (Target::Project).
  const ItemBody* body = nullptr;
  // Update: the item as it is on the server now, when the executor read it;
  // a target that merges (PATCH) sends only what differs, with explicit
  // clears, and writes no part that already matches.
  const ItemBody* current = nullptr;
};

// What one write did. A failed write changed nothing the executor must
// record, except as `landed` says.
struct WriteOutcome {
  Status status;
  WriteResult result;
  // A write made of dependent steps (a contact, then its photo) that failed
  // after some steps landed: status is the failure, result names the item,
  // and `landed` is what the server holds now. The executor records it as
  // such, and the next run writes exactly what is missing.
  std::optional<ItemBody> landed;
  // The request may have been carried out though its answer was lost (a
  // timeout, a dropped connection, a 5xx after a create with a server id).
  bool ambiguous = false;
};

// Requests and upload bytes, as a server's limits count them.
struct WriteVolume {
  int64_t requests = 0;
  int64_t upload_bytes = 0;
};

// One collection of one target user. Not thread-safe: one thread at a time.
class Collection {
 public:
  virtual ~Collection() = default;
  // A stable description for messages and the state store ("http://.../alice/book/").
  virtual std::string id() const = 0;
  // Changes since `sync_token`; a full listing when the token is empty, unknown
  // to the server, or the server has no incremental listing.
  virtual Result<Listing> List(const std::string& sync_token) = 0;
  // Reads the named items; missing ones are left out of the answer.
  virtual Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>& hrefs) = 0;
  // The href a resource name gets in this collection (as List reports hrefs).
  virtual std::string HrefOf(const std::string& name) const { return name; }
  // Creates `name` (a resource name, not a URL) only if it does not exist yet.
  // An item of a kind the collection cannot hold is kInvalidArgument.
  virtual Result<WriteResult> Create(const std::string& name, const ManagedTag& tag,
                                     const ItemBody& body) = 0;
  // Replaces `href` only if its etag is still `if_match`.
  virtual Result<WriteResult> Update(const std::string& href, const std::string& if_match,
                                     const ManagedTag& tag, const ItemBody& body) = 0;
  // Deletes `href` only if its etag is still `if_match`; NotFound counts as done.
  virtual Status Delete(const std::string& href, const std::string& if_match) = 0;
  // Deletes the collection itself (`roster decommission`, once it holds
  // nothing of anyone's); a collection already gone counts as done. The
  // user's main collection (CollectionSpec::use_default) is never removed:
  // kInvalidArgument. Targets that cannot: kInvalidArgument too.
  virtual Status RemoveCollection() {
    return MakeError(ErrorKind::kInvalidArgument, "this target cannot remove a collection");
  }
  // Whether roster made this collection (CardDAV: the book at roster's own
  // deterministic name, not one found by its display name, which a user or
  // an admin may have made): only those are ever removed.
  virtual bool created_by_roster() const { return true; }
  // How creates are made idempotent; see CreateMode.
  virtual CreateMode create_mode() const { return CreateMode::kClientName; }
  // How many writes one request may carry ($batch: 20; CardDAV: 1).
  virtual size_t max_batch() const { return 1; }
  // How many writes of one batch the server runs at once (Graph: 4): the
  // concurrency a batch holds against the server's limit.
  virtual int parallel_per_batch() const { return 1; }
  // Runs up to max_batch() writes, each succeeding or failing alone; one
  // outcome per op, in order. The default runs Create, Update and Delete
  // one after another.
  virtual std::vector<WriteOutcome> WriteBatch(const std::vector<WriteOp>& ops);
  // What WriteBatch(ops) sends beyond one (sub-)request per op carrying its
  // body: the dependent steps (Graph: a photo's PUT and the read of the
  // contact's new etag) and their bytes. The executor counts it against the
  // limiter with the batch, so that the limits hold for every request.
  virtual WriteVolume DependentVolume(const std::vector<WriteOp>& ops) const {
    (void)ops;
    return {};
  }
  // The limiter bucket of the server limits this collection's requests count
  // against (Graph: the app and mailbox); empty when there are none.
  virtual std::string limit_bucket() const { return std::string(); }
  // Whether the executor should read an item before updating it, so that
  // the write can send only what differs (targets that merge on PATCH).
  virtual bool update_reads_current() const { return false; }
  // What the collection noticed and ignored since the last call (hrefs a
  // server named outside the collection, unusable etags), one sentence each;
  // the caller reports them. Taking them clears them.
  virtual std::vector<std::string> TakeWarnings() { return {}; }
};

struct CollectionSpec {
  std::string user;          // target user as configured ("alice")
  std::string display_name;  // "Company Contacts"
  std::string rule;          // rule name: makes the collection's resource name deterministic
  // Where the state store last found it; empty if unknown. A target may open
  // it without asking the server; if it is gone, List answers NotFound and the
  // caller opens again with known_url empty.
  std::string known_url;
  // The user's main collection (Graph: the mailbox's Contacts folder)
  // instead of one roster creates and owns; roster's markers alone then
  // tell its items from the user's own. Targets without one refuse it.
  bool use_default = false;
  // A category every managed item carries (Outlook shows it), or empty.
  std::string category;
};

class Target {
 public:
  virtual ~Target() = default;
  // Finds the user's collection; creates it when `create` is true and it is
  // missing, else answers NotFound.
  virtual Result<std::unique_ptr<Collection>> Open(const CollectionSpec& spec, bool create) = 0;
  // How many requests this target's server may have in flight at once.
  virtual int max_in_flight() const = 0;
  // The item as this target can hold it, canonical for comparing: for Graph
  // contacts, three e-mail addresses and its phone slots, the fields the
  // server fills itself filled the same way; for CardDAV, everything.
  // Changes are decided on it, so that a lossy target never rewrites an
  // unchanged item. RemoteItem bodies are in the same form.
  virtual ItemBody Project(const ItemBody& body) const { return body; }
  // Names the projection, for the fingerprint of what a rule would write:
  // a new projection (a roster upgrade) rewrites each item once.
  virtual std::string projection_name() const { return std::string(); }
  // True when one credential serves every user (a service account): once the
  // server refuses it, nothing more is tried on this target in the run.
  // False with per-user credentials: a refusal stops only that user's book.
  virtual bool shared_credential() const { return true; }
  // The resource name a create uses for a managed item: deterministic per
  // (rule, key), so that a create retried after a crash finds the first copy.
  virtual std::string ResourceName(const ManagedTag& tag) const { return DefaultResourceName(tag); }

  // "roster-" + 32 hex digits of BLAKE2b(rule, NUL, key).
  static std::string DefaultResourceName(const ManagedTag& tag);
};

}  // namespace roster
