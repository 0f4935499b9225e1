// The state store: what roster remembers between runs, behind one interface so
// that SQLite (embedded, the default) and later PostgreSQL can serve it. Every
// SQL statement of the project lives behind this interface.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/connector.h"
#include "core/result.h"
#include "crypto/keys.h"

namespace roster {

// Identifies one managed collection: rule × target × target user.
struct CollectionKey {
  std::string rule;
  std::string target;
  std::string user;
};

struct CollectionState {
  int64_t id = 0;
  std::string url;         // where the collection was last found
  std::string sync_token;  // the server's token after our last complete listing
  // Fingerprint of the source snapshot this collection fully matched at the end
  // of its last clean run; empty when the last run did not finish cleanly.
  std::string synced_snapshot;
};

// What roster knows of one item in a collection. `etag_seen` is the newest etag
// a listing reported; `etag` is the one whose content `key`/`hash` describe.
// When they differ the item changed on the server and must be read again.
struct ItemState {
  std::string href;
  std::string etag_seen;
  std::string etag;
  std::string key;   // source identity when roster manages the item, else empty
  std::string hash;  // content hash of the known content
  // Managed items with field rules: what roster last wrote per keep_user field
  // (mapping's EncodeFieldMemory). Unmanaged items: hashes of their e-mail
  // addresses, comma-separated, for adoption by e-mail.
  std::string fields;
  std::string match;

  bool known() const { return !etag.empty() && etag == etag_seen; }
  bool managed() const { return !key.empty(); }
};

// A rule's selected source items as of its last sync: key and content hash.
struct SnapshotEntry {
  std::string key;
  std::string hash;
};

struct Snapshot {
  std::string fingerprint;             // empty when the rule has never synced
  std::vector<SnapshotEntry> entries;  // sorted by key
  std::string source_version;          // the sources' Version() and the rule's config, combined
  // Listed target user -> the key of their own person in the selection
  // (empty: none), as last resolved from the people: a run with unchanged
  // sources reuses it instead of reading them again.
  std::map<std::string, std::string> self_keys;
};

struct Counts {
  int64_t created = 0, updated = 0, deleted = 0, unchanged = 0, conflicts = 0, errors = 0;
  int64_t adopted = 0;
  int64_t skipped = 0;  // left out because the user has their own card for the person
  Counts& operator+=(const Counts& o);
};

struct TargetRunResult {
  CollectionKey collection;
  Counts counts;
  std::string message;  // first error, if any
};

struct RunSummary {
  int64_t run_id = 0;
  std::string mode;                     // "sync"
  std::string started_at, finished_at;  // UTC, ISO 8601
  int exit_code = -1;                   // -1 while running or after a crash
  TargetRunResult result;
};

// One cached source record ([state] cache = "encrypted"): the source's
// record as it mapped it (EncodeRecord), with the stamp it was read under.
// Sealed in the store, found by a blind index of the key.
struct CachedRecord {
  std::string key;
  std::string stamp;
  std::string record;  // EncodeRecord's bytes
};

// A cached entry as `roster gdpr export` shows it: which source, the
// record, and when it was read (unix seconds).
struct CachedEntry {
  std::string source;
  CachedRecord record;
  int64_t read_at = 0;
};

struct SourceCache {
  // The cache was made under the shape asked for; when false, `records` is
  // empty and the first UpdateSourceCache must replace.
  bool shape_matches = false;
  std::vector<CachedRecord> records;  // sorted by key; expired ones left out
  int64_t expired = 0;                // entries left out because they expired
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Collections. OpenCollection creates the row on first use.
  virtual Result<CollectionState> OpenCollection(const CollectionKey& key) = 0;
  // Reads without creating; NotFound when absent.
  virtual Result<CollectionState> FindCollection(const CollectionKey& key) = 0;
  // Every collection the store knows for a rule, sorted by (target, user).
  virtual Result<std::vector<std::pair<CollectionKey, CollectionState>>> ListCollections(
      const std::string& rule) = 0;
  // The rules the store knows collections of (configured or not any more).
  virtual Result<std::vector<std::string>> CollectionRules() = 0;
  // Forgets a collection and everything known of its items (offboarding).
  virtual Status DeleteCollection(int64_t collection) = 0;
  virtual Status SetCollectionUrl(int64_t collection, const std::string& url) = 0;
  virtual Status SetSyncToken(int64_t collection, const std::string& token) = 0;
  virtual Status SetSyncedSnapshot(int64_t collection, const std::string& fingerprint) = 0;

  // Items, sorted by href.
  virtual Result<std::vector<ItemState>> LoadItems(int64_t collection) = 0;
  // The items managed for these keys (any order), for incremental planning.
  virtual Result<std::vector<ItemState>> LoadItemsByKeys(int64_t collection,
                                                         const std::vector<std::string>& keys) = 0;
  // Counts at most `at_most` (a guard that only needs to know the count is
  // large enough need not walk a book of 40,000 items).
  virtual Result<int64_t> CountManaged(int64_t collection, int64_t at_most = INT64_MAX) = 0;
  // The items roster does not manage that have e-mail hashes (`match`).
  virtual Result<std::vector<ItemState>> LoadUnmanaged(int64_t collection) = 0;
  // Records what a listing and the reads after it taught, in one transaction:
  // `seen` hrefs get etag_seen (a new row when unknown; known content is left
  // as it was), `removed` rows go, `known` rows are stored whole, the token is
  // stored if non-empty, and `synced_snapshot` if given. All of it lands, or
  // none. The token and the snapshot travel together on purpose: a full pass
  // that moves the token forward before its writes must clear the snapshot in
  // the same commit, or a crash before the writes leaves a book that the next
  // run takes for quiet (the crash matrix's "full pass" cells prove it).
  virtual Status ApplyListing(int64_t collection, const std::vector<ItemRef>& seen,
                              const std::vector<std::string>& removed,
                              const std::vector<ItemState>& known, const std::string& sync_token,
                              const std::optional<std::string>& synced_snapshot) = 0;
  // Forgets every item and the sync token (the collection moved or was recreated).
  virtual Status ResetCollection(int64_t collection) = 0;
  // One item, committed at once: used right after each write succeeds.
  virtual Status PutItem(int64_t collection, const ItemState& item) = 0;
  virtual Status DeleteItem(int64_t collection, const std::string& href) = 0;

  // Source snapshots per rule.
  virtual Result<Snapshot> LoadSnapshot(const std::string& rule) = 0;
  virtual Status SaveSnapshot(const std::string& rule, const Snapshot& snapshot) = 0;

  // Where each source that reads changes left off (Source::Cursor): empty
  // when none is stored. Saving an empty cursor forgets it.
  virtual Result<std::string> LoadSourceCursor(const std::string& source) = 0;
  virtual Status SaveSourceCursor(const std::string& source, const std::string& cursor) = 0;

  // The source cache. Entries read from their source more than `max_age`
  // ago have expired: they are left out (and counted), never answered,
  // whether or not they are purged yet. "Now" is the wall clock. Reading
  // changes nothing on disk (it works on a store opened for reading). An
  // entry that does not open (altered, or moved from another row) is
  // kInvalidData naming the table and the source, never skipped.
  // `stop`, when given and set while it reads, ends it early with kAborted.
  virtual Result<SourceCache> LoadSourceCache(const std::string& source, const std::string& shape,
                                              std::chrono::seconds max_age,
                                              const std::atomic<bool>* stop = nullptr) = 0;
  // One run's reads, in one transaction: with `replace` the source's cache
  // becomes exactly `put`, under `shape`; otherwise `removed` keys go, and
  // `put` is added or replaces entries of the same key (a key both removed
  // and put stays, as put). Without `replace` the cache must have been made
  // under `shape` (LoadSourceCache said so): anything else is a bug
  // (kInternal), and nothing changes. Entries put are stamped as read now.
  virtual Status UpdateSourceCache(const std::string& source, const std::string& shape,
                                   bool replace, const std::vector<CachedRecord>& put,
                                   const std::vector<std::string>& removed) = 0;
  // Removes entries read more than `max_age` ago, from every source; answers
  // how many went. Their space is freed (secure_delete, incremental vacuum,
  // a truncating WAL checkpoint).
  virtual Result<int64_t> PurgeExpiredCache(std::chrono::seconds max_age) = 0;
  // Removes every cached entry of every source, and their shapes
  // (purge_after_sync, cache = "none"), freeing their space as above;
  // answers how many entries went. Cheap when there is nothing to remove.
  virtual Result<int64_t> PurgeCache() = 0;

  // Every unexpired entry of every source's cache, whatever its shape
  // (`roster gdpr export` and `erase` look for a person in it). Changes nothing.
  virtual Result<std::vector<CachedEntry>> LoadAllCached(std::chrono::seconds max_age) = 0;
  // Removes `keys` from `source`'s cache whatever its shape, freeing their
  // space as PurgeCache does; answers how many entries went.
  virtual Result<int64_t> ForgetCached(const std::string& source,
                                       const std::vector<std::string>& keys) = 0;

  // Small settings that are not personal and outlive `purge --all` (what
  // the erasure register held when roster last wrote it). Empty: not set.
  virtual Result<std::string> LoadSetting(const std::string& name) = 0;
  virtual Status SaveSetting(const std::string& name, const std::string& value) = 0;

  // Run history for `roster status`.
  virtual Result<int64_t> BeginRun(const std::string& mode) = 0;
  virtual Status RecordResult(int64_t run, const TargetRunResult& result) = 0;
  virtual Status FinishRun(int64_t run, int exit_code) = 0;
  // Forgets the runs that started more than `max_age` ago, with their
  // results and messages (retention); answers how many went.
  virtual Result<int64_t> PruneRuns(std::chrono::seconds max_age) = 0;
  // The newest result per collection the store still keeps, over all runs.
  virtual Result<std::vector<RunSummary>> LastResults() = 0;

  // Key rotation: every sealed value not yet under the key's current key id
  // (crypto::Key::key_id) is opened and sealed again under it, in one
  // transaction, and the file rebuilt so that no value under the old key
  // stays in free pages or the WAL. Answers how many values were sealed
  // again; 0 when all were current (a rotation resumed after a crash).
  virtual Result<int64_t> Reseal() = 0;
  // `roster purge --all`: forgets everything the state holds (collections,
  // items, snapshots, cursors, the source cache, run history), keeping only its schema and key
  // check, and rebuilds the file. The next sync finds roster's items on the
  // targets again by their markers.
  virtual Status PurgeAll() = 0;

  // A short keyed reference for a person or target user in logs and stored
  // messages (crypto::Pseudonym under the state's key): the same value gets
  // the same reference in every run, and nobody without the key can tell
  // whose it is.
  virtual std::string Pseudonym(std::string_view value) const = 0;

  // What opening the store noticed and mended (permissions tightened), one
  // sentence each. Taking them clears them.
  virtual std::vector<std::string> TakeWarnings() { return {}; }
};

// Opens (creating and migrating) the SQLite store at `path`, sealed under
// `key`: every personal datum it keeps (target users, collection URLs, sync
// tokens and delta links, hrefs, source keys, e-mail hashes, field memories,
// run messages) is sealed with XChaCha20-Poly1305 and bound to its table,
// column and row, and looked up by keyed blind indexes, never by plaintext.
// A state written by an older roster is sealed by the migration and the file
// rebuilt, so that no plaintext stays in free pages or the WAL. A state
// sealed under another key is refused (kInvalidArgument, credential_refused
// set) with a message that says what to do. ":memory:" works.
// The file and its -wal and -shm are kept private to their owner: looser
// permissions are tightened, with a warning.
Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::string& path,
                                                         const crypto::Key& key);

// ":memory:" only, under a key of its own (tests); any other path is refused.
Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::string& path);

// Opens the store for a dry run, which must change nothing on disk: a missing
// file is not created (the plan starts from an empty state, in memory), an
// existing one is opened read-only and never migrated (an older schema is an
// error that says `roster sync` upgrades it).
Result<std::unique_ptr<StateStore>> OpenSqliteStateStoreForReading(const std::string& path,
                                                                   const crypto::Key& key);

// What a state file needs before it is opened, read without changing it:
// none there yet, one that holds no sealed values (an older roster's, or
// empty), or one sealed under some key.
enum class StateFileKind { kMissing, kPlain, kSealed };
Result<StateFileKind> InspectStateFile(const std::string& path);

}  // namespace roster
