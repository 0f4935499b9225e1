// The SQLite state store: one file, WAL journal, one connection shared by the
// engine's threads behind a mutex (SQLite serialises writers anyway).
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <functional>
#include <mutex>

#include "core/failpoint.h"
#include "core/text.h"
#include "migrations.h"
#include "state/state.h"

namespace roster {
namespace {

// snapshots.self_keys: "user<TAB>key" lines, '%' escaping tab, newline and '%'.
std::string EscapeField(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%') {
      out += "%25";
    } else if (c == '\t') {
      out += "%09";
    } else if (c == '\n') {
      out += "%0A";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string UnescapeField(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      std::string_view code = s.substr(i + 1, 2);
      if (code == "25" || code == "09" || code == "0A") {
        out.push_back(code == "25" ? '%' : code == "09" ? '\t' : '\n');
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string EncodeSelfKeys(const std::map<std::string, std::string>& keys) {
  std::string out;
  for (const auto& [user, key] : keys) out += EscapeField(user) + "\t" + EscapeField(key) + "\n";
  return out;
}

std::map<std::string, std::string> DecodeSelfKeys(std::string_view text) {
  std::map<std::string, std::string> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    size_t tab = line.find('\t');
    if (tab == std::string_view::npos) continue;
    out[UnescapeField(line.substr(0, tab))] = UnescapeField(line.substr(tab + 1));
  }
  return out;
}

Error SqlError(sqlite3* db, const std::string& what) {
  return MakeError(ErrorKind::kInternal,
                   "state store: " + what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

std::string UtcIso(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string NowUtc() { return UtcIso(std::time(nullptr)); }

// A prepared statement, reset on destruction so it can be cached.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
      stmt_ = nullptr;
    }
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  Stmt& Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    return *this;
  }
  Stmt& Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindNullable(int i, const std::string& s) {
    if (s.empty()) {
      sqlite3_bind_null(stmt_, i);
      return *this;
    }
    return Bind(i, s);
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteStateStore final : public StateStore {
 public:
  explicit SqliteStateStore(sqlite3* db) : db_(db) {}
  ~SqliteStateStore() override { sqlite3_close_v2(db_); }

  std::vector<std::string> TakeWarnings() override { return std::move(warnings_); }
  void AddWarning(std::string w) { warnings_.push_back(std::move(w)); }

  // For a dry run: no journal change, no migration, and SQLite itself refuses
  // any write (query_only), so nothing reaches the file.
  Result<int64_t> SchemaVersion() {
    Stmt s(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (!s.ok() || s.Step() != SQLITE_ROW) return SqlError(db_, "reading schema version");
    return s.Int(0);
  }
  static int64_t NewestVersion() {
    const auto& migrations = Migrations();
    return migrations.empty() ? 0 : migrations.back().version;
  }

  Status InitForReading(const std::string& path) {
    ROSTER_RETURN_IF_ERROR(Exec("PRAGMA query_only=ON"));
    ROSTER_RETURN_IF_ERROR(Exec("PRAGMA busy_timeout=10000"));
    ROSTER_ASSIGN_OR_RETURN(int64_t current, SchemaVersion());
    const int64_t newest = NewestVersion();
    if (current != newest) {
      return MakeError(
          ErrorKind::kInvalidData,
          "state file " + path + " has schema version " + std::to_string(current) +
              ", this roster uses " + std::to_string(newest) +
              (current < newest ? "; `roster sync` upgrades it (a plan changes nothing)"
                                : "; use a newer roster"));
    }
    return {};
  }

  Status Init() {
    for (const char* pragma :
         {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
          "PRAGMA secure_delete=ON", "PRAGMA busy_timeout=10000"}) {
      ROSTER_RETURN_IF_ERROR(Exec(pragma));
    }
    ROSTER_RETURN_IF_ERROR(
        Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
    ROSTER_ASSIGN_OR_RETURN(int64_t current, SchemaVersion());
    const auto& migrations = Migrations();
    const int64_t newest = NewestVersion();
    if (current > newest) {
      return MakeError(ErrorKind::kInvalidData,
                       "state store: schema version " + std::to_string(current) +
                           " is newer than this roster understands (" + std::to_string(newest) +
                           "); use a newer roster");
    }
    for (const Migration& m : migrations) {
      if (m.version <= current) continue;
      ROSTER_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
      Status st = Exec(m.sql);
      if (st.ok()) {
        st =
            Exec("INSERT INTO schema_version (version) VALUES (" + std::to_string(m.version) + ")");
      }
      if (!st.ok()) {
        (void)Exec("ROLLBACK");
        return MakeError(ErrorKind::kInternal, std::string("state store: migration ") + m.name +
                                                   " failed: " + st.error().message);
      }
      ROSTER_RETURN_IF_ERROR(Exec("COMMIT"));
    }
    return {};
  }

  Result<CollectionState> OpenCollection(const CollectionKey& key) override {
    std::lock_guard lock(mu_);
    Stmt ins(db_,
             "INSERT INTO collections (rule, target, user) VALUES (?, ?, ?) "
             "ON CONFLICT (rule, target, user) DO NOTHING");
    if (!ins.ok()) return SqlError(db_, "preparing collection insert");
    ins.Bind(1, key.rule).Bind(2, key.target).Bind(3, key.user);
    if (ins.Step() != SQLITE_DONE) return SqlError(db_, "creating collection");
    return FindLocked(key);
  }

  Result<CollectionState> FindCollection(const CollectionKey& key) override {
    std::lock_guard lock(mu_);
    return FindLocked(key);
  }

  Result<std::vector<std::pair<CollectionKey, CollectionState>>> ListCollections(
      const std::string& rule) override {
    std::lock_guard lock(mu_);
    Stmt s(db_,
           "SELECT target, user, id, url, sync_token, synced_snapshot FROM collections "
           "WHERE rule = ? ORDER BY target, user");
    if (!s.ok()) return SqlError(db_, "preparing collection query");
    s.Bind(1, rule);
    std::vector<std::pair<CollectionKey, CollectionState>> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      out.emplace_back(CollectionKey{rule, s.Text(0), s.Text(1)},
                       CollectionState{s.Int(2), s.Text(3), s.Text(4), s.Text(5)});
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "reading collections");
    return out;
  }

  Status DeleteCollection(int64_t collection) override {
    std::lock_guard lock(mu_);
    return InTransaction([&]() -> Status {
      Stmt items(db_, "DELETE FROM items WHERE collection_id = ?");
      Stmt coll(db_, "DELETE FROM collections WHERE id = ?");
      if (!items.ok() || !coll.ok()) return SqlError(db_, "preparing collection delete");
      if (items.Bind(1, collection).Step() != SQLITE_DONE ||
          coll.Bind(1, collection).Step() != SQLITE_DONE) {
        return SqlError(db_, "deleting collection");
      }
      return {};
    });
  }

  Status SetCollectionUrl(int64_t collection, const std::string& url) override {
    return UpdateCollection("UPDATE collections SET url = ? WHERE id = ?", collection, url);
  }
  Status SetSyncToken(int64_t collection, const std::string& token) override {
    return UpdateCollection("UPDATE collections SET sync_token = ? WHERE id = ?", collection,
                            token);
  }
  Status SetSyncedSnapshot(int64_t collection, const std::string& fingerprint) override {
    return UpdateCollection("UPDATE collections SET synced_snapshot = ? WHERE id = ?", collection,
                            fingerprint);
  }

  Result<std::vector<ItemState>> LoadItems(int64_t collection) override {
    return LoadItemsWhere(
        "SELECT href, etag_seen, etag, COALESCE(key, ''), hash, fields, match FROM items "
        "WHERE collection_id = ? ORDER BY href",
        collection);
  }

  Result<std::vector<ItemState>> LoadItemsByKeys(int64_t collection,
                                                 const std::vector<std::string>& keys) override {
    std::lock_guard lock(mu_);
    Stmt s(db_,
           // Without statistics SQLite may pick the primary key and scan the
           // whole collection for every key; the key index makes it a lookup.
           "SELECT href, etag_seen, etag, key, hash, fields, match FROM items "
           "INDEXED BY items_by_key WHERE collection_id = ? AND key = ?");
    if (!s.ok()) return SqlError(db_, "preparing item query");
    std::vector<ItemState> items;
    for (const std::string& key : keys) {
      s.Reset().Bind(1, collection).Bind(2, key);
      ROSTER_RETURN_IF_ERROR(ReadItems(s, &items));
    }
    return items;
  }

  Result<int64_t> CountManaged(int64_t collection) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "SELECT COUNT(*) FROM items WHERE collection_id = ? AND key IS NOT NULL");
    if (!s.ok()) return SqlError(db_, "preparing count");
    s.Bind(1, collection);
    if (s.Step() != SQLITE_ROW) return SqlError(db_, "counting items");
    return s.Int(0);
  }

  Result<std::vector<ItemState>> LoadUnmanaged(int64_t collection) override {
    return LoadItemsWhere(
        "SELECT href, etag_seen, etag, '', hash, fields, match FROM items "
        "WHERE collection_id = ? AND key IS NULL AND match != '' ORDER BY href",
        collection);
  }

  Status ApplyListing(int64_t collection, const std::vector<ItemRef>& seen,
                      const std::vector<std::string>& removed, const std::vector<ItemState>& known,
                      const std::string& sync_token,
                      const std::optional<std::string>& synced_snapshot) override {
    std::lock_guard lock(mu_);
    return InTransaction([&]() -> Status {
      Stmt put(db_,
               "INSERT INTO items (collection_id, href, etag_seen) VALUES (?, ?, ?) "
               "ON CONFLICT (collection_id, href) DO UPDATE SET etag_seen = excluded.etag_seen");
      Stmt del(db_, "DELETE FROM items WHERE collection_id = ? AND href = ?");
      Stmt upsert(db_, kUpsertSql);
      if (!put.ok() || !del.ok() || !upsert.ok()) return SqlError(db_, "preparing listing update");
      for (const ItemRef& ref : seen) {
        put.Reset().Bind(1, collection).Bind(2, ref.href).Bind(3, ref.etag);
        if (put.Step() != SQLITE_DONE) return SqlError(db_, "storing listing");
      }
      for (const std::string& href : removed) {
        del.Reset().Bind(1, collection).Bind(2, href);
        if (del.Step() != SQLITE_DONE) return SqlError(db_, "deleting item");
      }
      for (const ItemState& item : known) {
        BindItem(upsert.Reset(), collection, item);
        if (upsert.Step() != SQLITE_DONE) return SqlError(db_, "storing item");
      }
      if (!sync_token.empty()) {
        Stmt tok(db_, "UPDATE collections SET sync_token = ? WHERE id = ?");
        tok.Bind(1, sync_token).Bind(2, collection);
        if (tok.Step() != SQLITE_DONE) return SqlError(db_, "storing sync token");
      }
      if (synced_snapshot) {
        Stmt snap(db_, "UPDATE collections SET synced_snapshot = ? WHERE id = ?");
        snap.Bind(1, *synced_snapshot).Bind(2, collection);
        if (snap.Step() != SQLITE_DONE) return SqlError(db_, "storing synced snapshot");
      }
      return {};
    });
  }

  Status ResetCollection(int64_t collection) override {
    std::lock_guard lock(mu_);
    return InTransaction([&]() -> Status {
      Stmt del(db_, "DELETE FROM items WHERE collection_id = ?");
      Stmt upd(db_, "UPDATE collections SET sync_token = '', synced_snapshot = '' WHERE id = ?");
      if (!del.ok() || !upd.ok() || del.Bind(1, collection).Step() != SQLITE_DONE ||
          upd.Bind(1, collection).Step() != SQLITE_DONE) {
        return SqlError(db_, "resetting collection");
      }
      return {};
    });
  }

  Status PutItem(int64_t collection, const ItemState& item) override {
    std::lock_guard lock(mu_);
    Stmt put(db_, kUpsertSql);
    if (!put.ok()) return SqlError(db_, "preparing item update");
    BindItem(put, collection, item);
    if (put.Step() != SQLITE_DONE) return SqlError(db_, "storing item");
    return {};
  }

  Status DeleteItem(int64_t collection, const std::string& href) override {
    std::lock_guard lock(mu_);
    Stmt del(db_, "DELETE FROM items WHERE collection_id = ? AND href = ?");
    if (!del.ok()) return SqlError(db_, "preparing item delete");
    del.Bind(1, collection).Bind(2, href);
    if (del.Step() != SQLITE_DONE) return SqlError(db_, "deleting item");
    return {};
  }

  Result<Snapshot> LoadSnapshot(const std::string& rule) override {
    std::lock_guard lock(mu_);
    Snapshot snap;
    Stmt head(db_, "SELECT fingerprint, source_version, self_keys FROM snapshots WHERE rule = ?");
    if (!head.ok()) return SqlError(db_, "preparing snapshot query");
    head.Bind(1, rule);
    int rc = head.Step();
    if (rc == SQLITE_DONE) return snap;
    if (rc != SQLITE_ROW) return SqlError(db_, "reading snapshot");
    snap.fingerprint = head.Text(0);
    snap.source_version = head.Text(1);
    snap.self_keys = DecodeSelfKeys(head.Text(2));
    Stmt s(db_, "SELECT key, hash FROM snapshot_items WHERE rule = ? ORDER BY key");
    if (!s.ok()) return SqlError(db_, "preparing snapshot query");
    s.Bind(1, rule);
    while ((rc = s.Step()) == SQLITE_ROW) snap.entries.push_back({s.Text(0), s.Text(1)});
    if (rc != SQLITE_DONE) return SqlError(db_, "reading snapshot");
    return snap;
  }

  Status SaveSnapshot(const std::string& rule, const Snapshot& snapshot) override {
    std::lock_guard lock(mu_);
    return InTransaction([&]() -> Status {
      Stmt clear(db_, "DELETE FROM snapshot_items WHERE rule = ?");
      Stmt head(db_,
                "INSERT INTO snapshots (rule, fingerprint, source_version, self_keys) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (rule) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, source_version = excluded.source_version, "
                "self_keys = excluded.self_keys");
      Stmt ins(db_, "INSERT INTO snapshot_items (rule, key, hash) VALUES (?, ?, ?)");
      if (!clear.ok() || !head.ok() || !ins.ok()) return SqlError(db_, "preparing snapshot");
      clear.Bind(1, rule);
      if (clear.Step() != SQLITE_DONE) return SqlError(db_, "clearing snapshot");
      head.Bind(1, rule).Bind(2, snapshot.fingerprint).Bind(3, snapshot.source_version);
      head.Bind(4, EncodeSelfKeys(snapshot.self_keys));
      if (head.Step() != SQLITE_DONE) return SqlError(db_, "storing snapshot");
      for (const SnapshotEntry& e : snapshot.entries) {
        ins.Reset().Bind(1, rule).Bind(2, e.key).Bind(3, e.hash);
        if (ins.Step() != SQLITE_DONE) return SqlError(db_, "storing snapshot");
      }
      return {};
    });
  }

  Result<std::string> LoadSourceCursor(const std::string& source) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "SELECT cursor FROM source_cursors WHERE source = ?");
    if (!s.ok()) return SqlError(db_, "preparing source cursor query");
    s.Bind(1, source);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return std::string();
    if (rc != SQLITE_ROW) return SqlError(db_, "reading source cursor");
    return s.Text(0);
  }

  Status SaveSourceCursor(const std::string& source, const std::string& cursor) override {
    std::lock_guard lock(mu_);
    if (cursor.empty()) {
      Stmt del(db_, "DELETE FROM source_cursors WHERE source = ?");
      if (!del.ok()) return SqlError(db_, "preparing source cursor delete");
      del.Bind(1, source);
      if (del.Step() != SQLITE_DONE) return SqlError(db_, "forgetting source cursor");
      return {};
    }
    Stmt s(db_,
           "INSERT INTO source_cursors (source, cursor) VALUES (?, ?) "
           "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor");
    if (!s.ok()) return SqlError(db_, "preparing source cursor");
    s.Bind(1, source).Bind(2, cursor);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "storing source cursor");
    return {};
  }

  Result<int64_t> BeginRun(const std::string& mode) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "INSERT INTO runs (mode, started_at) VALUES (?, ?)");
    if (!s.ok()) return SqlError(db_, "preparing run");
    s.Bind(1, mode).Bind(2, NowUtc());
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "recording run");
    return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
  }

  Status RecordResult(int64_t run, const TargetRunResult& r) override {
    std::lock_guard lock(mu_);
    Stmt s(db_,
           "INSERT INTO run_results (run_id, rule, target, user, created, updated, deleted, "
           "unchanged, conflicts, errors, adopted, message, skipped) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!s.ok()) return SqlError(db_, "preparing run result");
    const Counts& c = r.counts;
    s.Bind(1, run)
        .Bind(2, r.collection.rule)
        .Bind(3, r.collection.target)
        .Bind(4, r.collection.user);
    s.Bind(5, c.created).Bind(6, c.updated).Bind(7, c.deleted).Bind(8, c.unchanged);
    s.Bind(9, c.conflicts).Bind(10, c.errors).Bind(11, c.adopted).Bind(12, r.message);
    s.Bind(13, c.skipped);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "recording run result");
    return {};
  }

  Status FinishRun(int64_t run, int exit_code) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "UPDATE runs SET finished_at = ?, exit_code = ? WHERE id = ?");
    if (!s.ok()) return SqlError(db_, "preparing run");
    s.Bind(1, NowUtc()).Bind(2, static_cast<int64_t>(exit_code)).Bind(3, run);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "finishing run");
    return {};
  }

  Result<int64_t> PruneRuns(std::chrono::seconds max_age) override {
    std::lock_guard lock(mu_);
    // ISO 8601 UTC timestamps of one fixed form compare as text.
    const std::string cutoff = UtcIso(std::time(nullptr) - max_age.count());
    Stmt s(db_, "DELETE FROM runs WHERE started_at < ?");
    if (!s.ok()) return SqlError(db_, "preparing the pruning of run history");
    s.Bind(1, cutoff);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "pruning run history");
    const int64_t pruned = sqlite3_changes(db_);  // run_results go with them (cascade)
    if (pruned > 0) {
      // secure_delete zeroed the rows in the pages; the WAL still holds the
      // pages as they were until it is checkpointed and truncated.
      if (sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr) !=
          SQLITE_OK) {
        return SqlError(db_, "checkpointing after pruning run history");
      }
    }
    return pruned;
  }

  Result<std::vector<RunSummary>> LastResults() override {
    std::lock_guard lock(mu_);
    Stmt s(db_,
           "SELECT r.id, r.mode, r.started_at, COALESCE(r.finished_at, ''), "
           "COALESCE(r.exit_code, -1), x.rule, x.target, x.user, x.created, x.updated, "
           "x.deleted, x.unchanged, x.conflicts, x.errors, x.adopted, x.message, x.skipped "
           "FROM run_results x JOIN runs r ON r.id = x.run_id "
           "WHERE x.run_id = (SELECT MAX(y.run_id) FROM run_results y WHERE y.rule = x.rule "
           "AND y.target = x.target AND y.user = x.user) "
           // Only collections roster still keeps: not users who left a rule.
           "AND EXISTS (SELECT 1 FROM collections c WHERE c.rule = x.rule "
           "AND c.target = x.target AND c.user = x.user) "
           "ORDER BY x.rule, x.target, x.user");
    if (!s.ok()) return SqlError(db_, "preparing status query");
    std::vector<RunSummary> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      RunSummary r;
      r.run_id = s.Int(0);
      r.mode = s.Text(1);
      r.started_at = s.Text(2);
      r.finished_at = s.Text(3);
      r.exit_code = static_cast<int>(s.Int(4));
      r.result.collection = {s.Text(5), s.Text(6), s.Text(7)};
      Counts& c = r.result.counts;
      c.created = s.Int(8);
      c.updated = s.Int(9);
      c.deleted = s.Int(10);
      c.unchanged = s.Int(11);
      c.conflicts = s.Int(12);
      c.errors = s.Int(13);
      c.adopted = s.Int(14);
      r.result.message = s.Text(15);
      c.skipped = s.Int(16);
      out.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "reading status");
    return out;
  }

 private:
  static constexpr const char* kUpsertSql =
      "INSERT INTO items (collection_id, href, etag_seen, etag, key, hash, fields, match) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection_id, href) DO UPDATE SET "
      "etag_seen = excluded.etag_seen, etag = excluded.etag, key = excluded.key, "
      "hash = excluded.hash, fields = excluded.fields, match = excluded.match";

  static void BindItem(Stmt& s, int64_t collection, const ItemState& item) {
    s.Bind(1, collection).Bind(2, item.href).Bind(3, item.etag_seen).Bind(4, item.etag);
    s.BindNullable(5, item.key).Bind(6, item.hash).Bind(7, item.fields).Bind(8, item.match);
  }

  // The items of one collection that `sql` (whose one parameter is the
  // collection) selects, in the columns ReadItem reads.
  Result<std::vector<ItemState>> LoadItemsWhere(const char* sql, int64_t collection) {
    std::lock_guard lock(mu_);
    Stmt s(db_, sql);
    if (!s.ok()) return SqlError(db_, "preparing item query");
    s.Bind(1, collection);
    std::vector<ItemState> items;
    ROSTER_RETURN_IF_ERROR(ReadItems(s, &items));
    return items;
  }

  // Appends every row the bound statement `s` returns to *items.
  Status ReadItems(Stmt& s, std::vector<ItemState>* items) {
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) items->push_back(ReadItem(s));
    if (rc != SQLITE_DONE) return SqlError(db_, "reading items");
    return {};
  }

  static ItemState ReadItem(const Stmt& s) {
    return ItemState{s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5), s.Text(6)};
  }

  // Runs `body` in one write transaction: all of it lands, or none.
  Status InTransaction(const std::function<Status()>& body) {
    ROSTER_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Status st = body();
    if (!st.ok()) {
      (void)Exec("ROLLBACK");
      return st;
    }
    Failpoint("state-before-commit");
    st = Exec("COMMIT");
    Failpoint("state-after-commit");
    return st;
  }

  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return MakeError(ErrorKind::kInternal, "state store: " + msg);
    }
    return {};
  }

  Result<CollectionState> FindLocked(const CollectionKey& key) {
    Stmt s(db_,
           "SELECT id, url, sync_token, synced_snapshot FROM collections "
           "WHERE rule = ? AND target = ? AND user = ?");
    if (!s.ok()) return SqlError(db_, "preparing collection query");
    s.Bind(1, key.rule).Bind(2, key.target).Bind(3, key.user);
    int rc = s.Step();
    if (rc == SQLITE_DONE) {
      return MakeError(ErrorKind::kNotFound,
                       "state store: no collection for rule " + key.rule + ", user " + key.user);
    }
    if (rc != SQLITE_ROW) return SqlError(db_, "reading collection");
    return CollectionState{s.Int(0), s.Text(1), s.Text(2), s.Text(3)};
  }

  Status UpdateCollection(const char* sql, int64_t collection, const std::string& value) {
    std::lock_guard lock(mu_);
    Stmt s(db_, sql);
    if (!s.ok()) return SqlError(db_, "preparing collection update");
    s.Bind(1, value).Bind(2, collection);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "updating collection");
    return {};
  }

  std::mutex mu_;
  sqlite3* db_;
  std::vector<std::string> warnings_;
};

// The state names people's identities: no group or other permission bit on
// the file or its -wal and -shm. Looser ones (an old roster, a copy, a
// restore) are tightened and reported.
void TightenPermissions(const std::string& path, SqliteStateStore& store) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string file = path + suffix;
    struct stat st {};
    if (stat(file.c_str(), &st) != 0 || (st.st_mode & 077) == 0) continue;
    char before[8];
    std::snprintf(before, sizeof before, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    if (chmod(file.c_str(), st.st_mode & 07700) == 0) {
      store.AddWarning("state file " + file + " had mode " + before +
                       ", readable by group or others; it is now private to its owner");
    } else {
      store.AddWarning("state file " + file + " has mode " + before +
                       ", readable by group or others, and could not be tightened");
    }
  }
}

}  // namespace

Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::string& path) {
  sqlite3* db = nullptr;
  // The state names people's identities: keep it private to the service account.
  mode_t old_mask = umask(077);
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  umask(old_mask);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return MakeError(ErrorKind::kInvalidArgument, "cannot open state file " + path + ": " + msg);
  }
  auto store = std::make_unique<SqliteStateStore>(db);
  if (path != ":memory:") TightenPermissions(path, *store);
  Status st = store->Init();
  if (!st.ok()) {
    Error e = st.take_error();
    e.message = "state file " + path + ": " + e.message;
    return e;
  }
  if (path != ":memory:") TightenPermissions(path, *store);  // -wal and -shm exist now
  return std::unique_ptr<StateStore>(std::move(store));
}

Result<std::unique_ptr<StateStore>> OpenSqliteStateStoreForReading(const std::string& path) {
  struct stat st {};
  if (path == ":memory:" || stat(path.c_str(), &st) != 0) return OpenSqliteStateStore(":memory:");
  // With no -wal beside it the file holds everything (the last sync closed
  // cleanly), and "immutable" lets SQLite read it without creating a -shm.
  // A -wal (a sync running, or one that crashed) must be read with it.
  struct stat wal {};
  const bool has_wal = stat((path + "-wal").c_str(), &wal) == 0;
  // In a URI filename SQLite reads '%' as an escape and '?' and '#' as the
  // start of the query and fragment; every other byte may stand as it is.
  std::string uri = "file:" + text::PercentEncode(path, [](unsigned char c) {
                      return c != '%' && c != '?' && c != '#';
                    });
  uri += has_wal ? "?mode=ro" : "?immutable=1";
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(uri.c_str(), &db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return MakeError(ErrorKind::kInvalidArgument, "cannot read state file " + path + ": " + msg);
  }
  auto store = std::make_unique<SqliteStateStore>(db);
  Status init = store->InitForReading(path);
  if (!init.ok()) return init.take_error();
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace roster
