// The SQLite state store: one file, WAL journal, one connection shared by the
// engine's threads behind a mutex (SQLite serialises writers anyway).
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <functional>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "core/failpoint.h"
#include "core/text.h"
#include "crypto/seal.h"
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

// roster_unhex(x), for the migration that stores blind indexes as BLOBs
// (SQLite 3.40 has no unhex()): a blind index's hex as its bytes; a BLOB or
// NULL as it is (rows the sealing migration already wrote as BLOBs); anything
// else fails the migration instead of storing an index that matches nothing.
void UnhexFunction(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const int type = sqlite3_value_type(argv[0]);
  if (type == SQLITE_NULL || type == SQLITE_BLOB) {
    sqlite3_result_value(ctx, argv[0]);
    return;
  }
  const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  const auto bytes =
      text::Unhex(std::string_view(p ? p : "", static_cast<size_t>(sqlite3_value_bytes(argv[0]))));
  if (type != SQLITE_TEXT || !bytes || bytes->empty()) {
    sqlite3_result_error(ctx, "a blind index that is not hex", -1);
    return;
  }
  sqlite3_result_blob(ctx, bytes->data(), static_cast<int>(bytes->size()), SQLITE_TRANSIENT);
}

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
  // A sealed value: a BLOB, or '' (a TEXT) when there is nothing sealed.
  Stmt& BindSealed(int i, const std::string& sealed) {
    if (sealed.empty()) {
      sqlite3_bind_text(stmt_, i, "", 0, SQLITE_STATIC);
      return *this;
    }
    sqlite3_bind_blob(stmt_, i, sealed.data(), static_cast<int>(sealed.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // A blind index (hex in memory, as the seals' rows name it) as the 16-byte
  // BLOB its column holds. Ix() always gives hex.
  Stmt& BindIx(int i, std::string_view hex) { return BindBlob(i, text::Unhex(hex).value_or("")); }
  // A blind-index column read back as hex.
  std::string IxText(int col) const { return text::Hex(BlobView(col)); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  sqlite3_stmt* raw() const { return stmt_; }
  std::string Blob(int col) const { return std::string(BlobView(col)); }
  // The bytes of a column without a copy: valid until the next Step or Reset.
  std::string_view BlobView(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p ? std::string_view(static_cast<const char*>(p),
                                static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string_view();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// The associated data of a sealed value says which row holds it: each part
// length-prefixed, so that no two rows encode alike.
std::string RowOf(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) {
    out += std::to_string(p.size());
    out += ':';
    out.append(p);
  }
  return out;
}

// A column's value as read (an integer, text or a BLOB), to bind again.
struct Value {
  int type = SQLITE_TEXT;
  int64_t number = 0;
  std::string bytes;
  static Value Of(const Stmt& s, int col) {
    Value v;
    v.type = sqlite3_column_type(s.raw(), col);
    if (v.type == SQLITE_INTEGER) {
      v.number = s.Int(col);
    } else if (v.type == SQLITE_BLOB) {
      v.bytes = s.Blob(col);
    } else {
      v.bytes = s.Text(col);
    }
    return v;
  }
  void BindTo(Stmt& s, int i) const {
    if (type == SQLITE_INTEGER) {
      s.Bind(i, number);
    } else if (type == SQLITE_BLOB) {
      s.BindBlob(i, bytes);
    } else {
      s.Bind(i, bytes);
    }
  }
  // As a seal's row names it: blind indexes in hex.
  std::string RowPart() const {
    if (type == SQLITE_INTEGER) return std::to_string(number);
    return type == SQLITE_BLOB ? text::Hex(bytes) : bytes;
  }
};

// Several strings as one value (sealed together): each as its length in
// decimal, ':', and its bytes.
std::string Pack(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) {
    out += std::to_string(p.size());
    out += ':';
    out.append(p);
  }
  return out;
}

// The strings of a Pack; nullopt when `packed` is not one.
std::optional<std::vector<std::string>> Unpack(std::string_view packed) {
  std::vector<std::string> out;
  while (!packed.empty()) {
    const size_t colon = packed.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 10) return std::nullopt;
    size_t n = 0;
    for (char c : packed.substr(0, colon)) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<size_t>(c - '0');
    }
    packed.remove_prefix(colon + 1);
    if (n > packed.size()) return std::nullopt;
    out.emplace_back(packed.substr(0, n));
    packed.remove_prefix(n);
  }
  return out;
}

// Blind-index domains: one per kind of value looked up.
constexpr std::string_view kUserDomain = "user";  // collections.user_ix, run_results.user_ix
constexpr std::string_view kHrefDomain = "href";  // items.href_ix
constexpr std::string_view kKeyDomain = "key";    // items.key_ix
constexpr std::string_view kCacheKeyDomain = "cache-key";  // source_cache.key_ix
constexpr std::string_view kCheckPlaintext = "roster state key check";

class SqliteStateStore final : public StateStore {
 public:
  SqliteStateStore(sqlite3* db, crypto::Key key) : db_(db), key_(std::move(key)) {}
  ~SqliteStateStore() override { sqlite3_close_v2(db_); }

  std::vector<std::string> TakeWarnings() override { return std::move(warnings_); }
  std::string Pseudonym(std::string_view value) const override {
    return crypto::Pseudonym(key_, value);
  }
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
    return CheckKey();
  }

  Status Init() {
    // Incremental auto-vacuum lets pruning give free pages back to the file
    // system. It can be set only on a file without tables (a new one); an
    // older file gets it with the rebuild after the sealing migration.
    // Setting it on any other file would write to it, and a store refused
    // for its key must leave the file as it was.
    {
      Stmt tables(db_, "SELECT COUNT(*) FROM sqlite_master");
      if (!tables.ok() || tables.Step() != SQLITE_ROW) return SqlError(db_, "reading the schema");
      if (tables.Int(0) == 0) ROSTER_RETURN_IF_ERROR(Exec("PRAGMA auto_vacuum=INCREMENTAL"));
    }
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
    if (current < newest && sqlite3_create_function_v2(
                                db_, "roster_unhex", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                UnhexFunction, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return SqlError(db_, "preparing the migrations");
    }
    for (const Migration& m : migrations) {
      if (m.version <= current) continue;
      ROSTER_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
      Status st = Exec(m.sql);
      if (st.ok() && m.version == kSealedVersion) st = SealVersion4Rows();
      if (st.ok()) {
        st =
            Exec("INSERT INTO schema_version (version) VALUES (" + std::to_string(m.version) + ")");
      }
      if (!st.ok()) {
        (void)Exec("ROLLBACK");
        return MakeError(ErrorKind::kInternal, std::string("state store: migration ") + m.name +
                                                   " failed: " + st.error().message);
      }
      Failpoint("state-migration-before-commit");
      ROSTER_RETURN_IF_ERROR(Exec("COMMIT"));
    }
    ROSTER_RETURN_IF_ERROR(CheckKey());
    return RebuildIfPending();
  }

  Result<CollectionState> OpenCollection(const CollectionKey& key) override {
    std::lock_guard lock(mu_);
    const std::string ix = Ix(kUserDomain, key.user);
    // The seals of a collection are bound to its id too (so that two rows'
    // ids swapped outside roster do not hand one user's items to another),
    // and the id is known once the row is in: both steps in one transaction.
    ROSTER_RETURN_IF_ERROR(InTransaction([&]() -> Status {
      Stmt ins(db_,
               "INSERT INTO collections (rule, target, user_ix, user) VALUES (?, ?, ?, '') "
               "ON CONFLICT (rule, target, user_ix) DO NOTHING");
      if (!ins.ok()) return SqlError(db_, "preparing collection insert");
      ins.Bind(1, key.rule).Bind(2, key.target).BindIx(3, ix);
      if (ins.Step() != SQLITE_DONE) return SqlError(db_, "creating collection");
      if (sqlite3_changes(db_) == 0) return {};  // it was there
      const int64_t id = sqlite3_last_insert_rowid(db_);
      Stmt user(db_, "UPDATE collections SET user = ? WHERE id = ?");
      if (!user.ok()) return SqlError(db_, "preparing collection insert");
      user.BindSealed(
          1, Seal("collections", "user", CollectionRow(id, key.rule, key.target, ix), key.user));
      if (user.Bind(2, id).Step() != SQLITE_DONE) return SqlError(db_, "creating collection");
      return {};
    }));
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
           "SELECT target, user_ix, user, id, url, sync_token, synced_snapshot FROM collections "
           "WHERE rule = ?");
    if (!s.ok()) return SqlError(db_, "preparing collection query");
    s.Bind(1, rule);
    std::vector<std::pair<CollectionKey, CollectionState>> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      const std::string target = s.Text(0);
      const std::string row = CollectionRow(s.Int(3), rule, target, s.IxText(1));
      ROSTER_ASSIGN_OR_RETURN(std::string user, Open("collections", "user", row, s.Blob(2)));
      ROSTER_ASSIGN_OR_RETURN(CollectionState state, ReadCollection(s, 3, row));
      out.emplace_back(CollectionKey{rule, target, std::move(user)}, std::move(state));
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "reading collections");
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first.target, a.first.user) < std::tie(b.first.target, b.first.user);
    });
    return out;
  }

  Result<std::vector<std::string>> CollectionRules() override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "SELECT DISTINCT rule FROM collections ORDER BY rule");
    if (!s.ok()) return SqlError(db_, "preparing collection query");
    std::vector<std::string> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.push_back(s.Text(0));
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
    std::lock_guard lock(mu_);
    return UpdateSealedCollectionColumn("url", collection, url);
  }
  Status SetSyncToken(int64_t collection, const std::string& token) override {
    std::lock_guard lock(mu_);
    return UpdateSealedCollectionColumn("sync_token", collection, token);
  }
  Status SetSyncedSnapshot(int64_t collection, const std::string& fingerprint) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "UPDATE collections SET synced_snapshot = ? WHERE id = ?");
    if (!s.ok()) return SqlError(db_, "preparing collection update");
    s.Bind(1, fingerprint).Bind(2, collection);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "updating collection");
    return {};
  }

  Result<std::vector<ItemState>> LoadItems(int64_t collection) override {
    ROSTER_ASSIGN_OR_RETURN(std::vector<ItemState> items,
                            LoadItemsWhere("SELECT " + std::string(kItemColumns) +
                                               " FROM items WHERE collection_id = ?",
                                           collection));
    std::sort(items.begin(), items.end(),
              [](const ItemState& a, const ItemState& b) { return a.href < b.href; });
    return items;
  }

  Result<std::vector<ItemState>> LoadItemsByKeys(int64_t collection,
                                                 const std::vector<std::string>& keys) override {
    std::lock_guard lock(mu_);
    // Without statistics SQLite may pick the primary key and scan the
    // whole collection for every key; the key index makes it a lookup.
    Stmt s(db_, ("SELECT " + std::string(kItemColumns) +
                 " FROM items INDEXED BY items_by_key_ix WHERE collection_id = ? AND key_ix = ?")
                    .c_str());
    if (!s.ok()) return SqlError(db_, "preparing item query");
    std::vector<ItemState> items;
    for (const std::string& key : keys) {
      s.Reset().Bind(1, collection).BindIx(2, KeyIx(key));
      ROSTER_RETURN_IF_ERROR(ReadItems(s, collection, &items));
    }
    return items;
  }

  Result<int64_t> CountManaged(int64_t collection, int64_t at_most = INT64_MAX) override {
    std::lock_guard lock(mu_);
    Stmt s(db_,
           "SELECT COUNT(*) FROM (SELECT 1 FROM items INDEXED BY items_by_key_ix WHERE "
           "collection_id = ? AND key_ix IS NOT NULL LIMIT ?)");
    if (!s.ok()) return SqlError(db_, "preparing count");
    s.Bind(1, collection).Bind(2, at_most);
    if (s.Step() != SQLITE_ROW) return SqlError(db_, "counting items");
    return s.Int(0);
  }

  Result<std::vector<ItemState>> LoadUnmanaged(int64_t collection) override {
    ROSTER_ASSIGN_OR_RETURN(
        std::vector<ItemState> items,
        // The partial index holds only these rows; without statistics SQLite
        // would walk the whole collection by its primary key instead.
        LoadItemsWhere("SELECT " + std::string(kItemColumns) +
                           " FROM items INDEXED BY items_unmanaged_v5 WHERE collection_id = ? AND "
                           "key_ix IS NULL AND adoptable = 1",
                       collection));
    std::sort(items.begin(), items.end(),
              [](const ItemState& a, const ItemState& b) { return a.href < b.href; });
    return items;
  }

  Status ApplyListing(int64_t collection, const std::vector<ItemRef>& seen,
                      const std::vector<std::string>& removed, const std::vector<ItemState>& known,
                      const std::string& sync_token,
                      const std::optional<std::string>& synced_snapshot) override {
    std::lock_guard lock(mu_);
    return InTransaction([&]() -> Status {
      Stmt put(db_,
               "INSERT INTO items (collection_id, href_ix, sealed, etag_seen) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (collection_id, href_ix) DO UPDATE SET etag_seen = excluded.etag_seen");
      Stmt del(db_, "DELETE FROM items WHERE collection_id = ? AND href_ix = ?");
      Stmt upsert(db_, kUpsertSql);
      if (!put.ok() || !del.ok() || !upsert.ok()) return SqlError(db_, "preparing listing update");
      const std::string id = std::to_string(collection);
      for (const ItemRef& ref : seen) {
        const std::string ix = Ix(kHrefDomain, ref.href);
        put.Reset().Bind(1, collection).BindIx(2, ix);
        put.BindSealed(3, Seal("items", "sealed", RowOf({id, ix}), Pack({ref.href, "", "", ""})));
        put.Bind(4, ref.etag);
        if (put.Step() != SQLITE_DONE) return SqlError(db_, "storing listing");
      }
      for (const std::string& href : removed) {
        del.Reset().Bind(1, collection).BindIx(2, Ix(kHrefDomain, href));
        if (del.Step() != SQLITE_DONE) return SqlError(db_, "deleting item");
      }
      for (const ItemState& item : known) {
        BindItem(upsert.Reset(), collection, item);
        if (upsert.Step() != SQLITE_DONE) return SqlError(db_, "storing item");
      }
      if (!sync_token.empty()) {
        ROSTER_RETURN_IF_ERROR(UpdateSealedCollectionColumn("sync_token", collection, sync_token));
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
    Stmt del(db_, "DELETE FROM items WHERE collection_id = ? AND href_ix = ?");
    if (!del.ok()) return SqlError(db_, "preparing item delete");
    del.Bind(1, collection).BindIx(2, Ix(kHrefDomain, href));
    if (del.Step() != SQLITE_DONE) return SqlError(db_, "deleting item");
    return {};
  }

  Result<Snapshot> LoadSnapshot(const std::string& rule) override {
    std::lock_guard lock(mu_);
    Snapshot snap;
    Stmt head(
        db_,
        "SELECT fingerprint, source_version, self_keys, entries FROM snapshots WHERE rule = ?");
    if (!head.ok()) return SqlError(db_, "preparing snapshot query");
    head.Bind(1, rule);
    int rc = head.Step();
    if (rc == SQLITE_DONE) return snap;
    if (rc != SQLITE_ROW) return SqlError(db_, "reading snapshot");
    snap.fingerprint = head.Text(0);
    snap.source_version = head.Text(1);
    ROSTER_ASSIGN_OR_RETURN(std::string self_keys,
                            Open("snapshots", "self_keys", RowOf({rule}), head.Blob(2)));
    snap.self_keys = DecodeSelfKeys(self_keys);
    ROSTER_ASSIGN_OR_RETURN(std::string entries,
                            Open("snapshots", "entries", RowOf({rule}), head.Blob(3)));
    auto parts = Unpack(entries);
    if (!parts || parts->size() % 2 != 0) {
      return MakeError(ErrorKind::kInvalidData,
                       "state store: the snapshot of rule " + rule + " cannot be read");
    }
    snap.entries.reserve(parts->size() / 2);
    for (size_t i = 0; i < parts->size(); i += 2) {
      snap.entries.push_back({std::move((*parts)[i]), std::move((*parts)[i + 1])});
    }
    return snap;
  }

  Status SaveSnapshot(const std::string& rule, const Snapshot& snapshot) override {
    std::lock_guard lock(mu_);
    Stmt head(db_,
              "INSERT INTO snapshots (rule, fingerprint, source_version, self_keys, entries) "
              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (rule) DO UPDATE SET "
              "fingerprint = excluded.fingerprint, source_version = excluded.source_version, "
              "self_keys = excluded.self_keys, entries = excluded.entries");
    if (!head.ok()) return SqlError(db_, "preparing snapshot");
    head.Bind(1, rule).Bind(2, snapshot.fingerprint).Bind(3, snapshot.source_version);
    head.BindSealed(
        4, Seal("snapshots", "self_keys", RowOf({rule}), EncodeSelfKeys(snapshot.self_keys)));
    head.BindSealed(5, Seal("snapshots", "entries", RowOf({rule}), EncodeEntries(snapshot)));
    if (head.Step() != SQLITE_DONE) return SqlError(db_, "storing snapshot");
    return {};
  }

  // A snapshot's entries sorted by key, packed as key, hash, key, hash...
  static std::string EncodeEntries(const Snapshot& snapshot) {
    std::vector<const SnapshotEntry*> sorted;
    sorted.reserve(snapshot.entries.size());
    for (const SnapshotEntry& e : snapshot.entries) sorted.push_back(&e);
    std::sort(sorted.begin(), sorted.end(),
              [](const SnapshotEntry* a, const SnapshotEntry* b) { return a->key < b->key; });
    std::string out;
    for (const SnapshotEntry* e : sorted) out += Pack({e->key, e->hash});
    return out;
  }

  Result<std::string> LoadSourceCursor(const std::string& source) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "SELECT cursor FROM source_cursors WHERE source = ?");
    if (!s.ok()) return SqlError(db_, "preparing source cursor query");
    s.Bind(1, source);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return std::string();
    if (rc != SQLITE_ROW) return SqlError(db_, "reading source cursor");
    return Open("source_cursors", "cursor", RowOf({source}), s.Blob(0));
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
    s.Bind(1, source).BindSealed(2, Seal("source_cursors", "cursor", RowOf({source}), cursor));
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "storing source cursor");
    return {};
  }

  Result<SourceCache> LoadSourceCache(const std::string& source, const std::string& shape,
                                      std::chrono::seconds max_age,
                                      const std::atomic<bool>* stop) override {
    SourceCache cache;
    // The rows are copied under the lock and opened after it: a load on
    // another thread (SourceReader's prefetch) does not hold up the run.
    std::vector<std::pair<std::string, std::string>> rows;  // key_ix, sealed
    {
      std::lock_guard lock(mu_);
      ROSTER_ASSIGN_OR_RETURN(std::optional<std::string> made_under, CacheShape(source));
      if (made_under != shape) return cache;
      cache.shape_matches = true;
      const int64_t cutoff = CacheCutoff(max_age);
      // The filter on read_at runs before the sealed value is read, so that
      // expired entries cost no reading of their (overflow) pages.
      Stmt fresh(db_, "SELECT key_ix, sealed FROM source_cache WHERE source = ? AND read_at >= ?");
      Stmt expired(db_, "SELECT COUNT(*) FROM source_cache WHERE source = ? AND read_at < ?");
      if (!fresh.ok() || !expired.ok()) return SqlError(db_, "preparing source cache query");
      fresh.Bind(1, source).Bind(2, cutoff);
      int rc;
      while ((rc = fresh.Step()) == SQLITE_ROW) {
        if (stop && stop->load(std::memory_order_relaxed)) {
          return MakeError(ErrorKind::kAborted,
                           "reading the cache of source " + source + " stopped");
        }
        rows.emplace_back(fresh.IxText(0), std::string(fresh.BlobView(1)));
      }
      if (rc != SQLITE_DONE) return SqlError(db_, "reading the cache of source " + source);
      expired.Bind(1, source).Bind(2, cutoff);
      if (expired.Step() != SQLITE_ROW) {
        return SqlError(db_, "reading the cache of source " + source);
      }
      cache.expired = expired.Int(0);
    }
    cache.records.reserve(rows.size());
    for (auto& [key_ix, sealed] : rows) {
      if (stop && stop->load(std::memory_order_relaxed)) {
        return MakeError(ErrorKind::kAborted, "reading the cache of source " + source + " stopped");
      }
      ROSTER_ASSIGN_OR_RETURN(CachedRecord record, OpenCached(source, key_ix, sealed));
      cache.records.push_back(std::move(record));
      std::string().swap(sealed);
    }
    // Stored in the order of the blind indexes, which tells nothing: sorted here.
    std::sort(cache.records.begin(), cache.records.end(),
              [](const CachedRecord& a, const CachedRecord& b) { return a.key < b.key; });
    return cache;
  }

  Status UpdateSourceCache(const std::string& source, const std::string& shape, bool replace,
                           const std::vector<CachedRecord>& put,
                           const std::vector<std::string>& removed) override {
    std::lock_guard lock(mu_);
    const int64_t now = std::time(nullptr);
    return InTransaction([&]() -> Status {
      if (replace) {
        Stmt clear(db_, "DELETE FROM source_cache WHERE source = ?");
        Stmt made(db_,
                  "INSERT INTO source_cache_shapes (source, shape) VALUES (?, ?) "
                  "ON CONFLICT (source) DO UPDATE SET shape = excluded.shape");
        if (!clear.ok() || !made.ok()) return SqlError(db_, "preparing source cache update");
        if (clear.Bind(1, source).Step() != SQLITE_DONE ||
            made.Bind(1, source).Bind(2, shape).Step() != SQLITE_DONE) {
          return SqlError(db_, "replacing the cache of source " + source);
        }
      } else {
        ROSTER_ASSIGN_OR_RETURN(std::optional<std::string> made_under, CacheShape(source));
        if (made_under != shape) {
          return MakeError(
              ErrorKind::kInternal,
              "state store: the cache of source " + source +
                  (made_under ? " was made under another shape" : " was not made under any shape") +
                  "; it must be replaced, not updated");
        }
        Stmt del(db_, "DELETE FROM source_cache WHERE source = ? AND key_ix = ?");
        if (!del.ok()) return SqlError(db_, "preparing source cache update");
        for (const std::string& key : removed) {
          del.Reset().Bind(1, source).BindIx(2, Ix(kCacheKeyDomain, key));
          if (del.Step() != SQLITE_DONE) {
            return SqlError(db_, "removing from the cache of source " + source);
          }
        }
      }
      return PutCached(source, now, put);
    });
  }

  Result<int64_t> PurgeExpiredCache(std::chrono::seconds max_age) override {
    std::lock_guard lock(mu_);
    const int64_t cutoff = CacheCutoff(max_age);
    int64_t purged = 0;
    ROSTER_RETURN_IF_ERROR(InTransaction([&]() -> Status {
      Stmt s(db_, "DELETE FROM source_cache WHERE read_at < ?");
      if (!s.ok()) return SqlError(db_, "preparing the purge of the source cache");
      if (s.Bind(1, cutoff).Step() != SQLITE_DONE) {
        return SqlError(db_, "purging the source cache");
      }
      purged = sqlite3_changes(db_);
      return purged > 0 ? CheckSecureDelete() : Status();
    }));
    if (purged > 0) ROSTER_RETURN_IF_ERROR(FreeDeletedSpace("purging the source cache"));
    return purged;
  }

  Result<int64_t> PurgeCache() override {
    std::lock_guard lock(mu_);
    // Called at the start of every run with cache = "none": when there is
    // nothing to purge it reads, and takes no write lock.
    {
      Stmt any(db_,
               "SELECT EXISTS (SELECT 1 FROM source_cache) "
               "OR EXISTS (SELECT 1 FROM source_cache_shapes)");
      if (!any.ok() || any.Step() != SQLITE_ROW) return SqlError(db_, "reading the source cache");
      if (any.Int(0) == 0) return int64_t{0};
    }
    int64_t purged = 0;
    ROSTER_RETURN_IF_ERROR(InTransaction([&]() -> Status {
      Stmt entries(db_, "DELETE FROM source_cache");
      Stmt shapes(db_, "DELETE FROM source_cache_shapes");
      if (!entries.ok() || !shapes.ok()) {
        return SqlError(db_, "preparing the purge of the source cache");
      }
      if (entries.Step() != SQLITE_DONE) return SqlError(db_, "purging the source cache");
      purged = sqlite3_changes(db_);
      if (shapes.Step() != SQLITE_DONE) return SqlError(db_, "purging the source cache");
      return CheckSecureDelete();
    }));
    ROSTER_RETURN_IF_ERROR(FreeDeletedSpace("purging the source cache"));
    return purged;
  }

  Result<std::vector<CachedEntry>> LoadAllCached(std::chrono::seconds max_age) override {
    std::lock_guard lock(mu_);
    std::vector<CachedEntry> out;
    Stmt s(db_, "SELECT source, key_ix, read_at, sealed FROM source_cache WHERE read_at >= ?");
    if (!s.ok()) return SqlError(db_, "preparing source cache query");
    s.Bind(1, CacheCutoff(max_age));
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      const std::string source = s.Text(0);
      ROSTER_ASSIGN_OR_RETURN(CachedRecord record, OpenCached(source, s.IxText(1), s.BlobView(3)));
      out.push_back(CachedEntry{source, std::move(record), s.Int(2)});
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "reading the source cache");
    std::sort(out.begin(), out.end(), [](const CachedEntry& a, const CachedEntry& b) {
      return std::tie(a.source, a.record.key) < std::tie(b.source, b.record.key);
    });
    return out;
  }

  Result<int64_t> ForgetCached(const std::string& source,
                               const std::vector<std::string>& keys) override {
    std::lock_guard lock(mu_);
    int64_t forgotten = 0;
    ROSTER_RETURN_IF_ERROR(InTransaction([&]() -> Status {
      Stmt del(db_, "DELETE FROM source_cache WHERE source = ? AND key_ix = ?");
      if (!del.ok()) return SqlError(db_, "preparing source cache update");
      for (const std::string& key : keys) {
        del.Reset().Bind(1, source).BindIx(2, Ix(kCacheKeyDomain, key));
        if (del.Step() != SQLITE_DONE) {
          return SqlError(db_, "removing from the cache of source " + source);
        }
        forgotten += sqlite3_changes(db_);
      }
      return forgotten > 0 ? CheckSecureDelete() : Status();
    }));
    if (forgotten > 0) ROSTER_RETURN_IF_ERROR(FreeDeletedSpace("removing from the source cache"));
    return forgotten;
  }

  Result<std::string> LoadSetting(const std::string& name) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, "SELECT value FROM state_meta WHERE name = ?");
    if (!s.ok()) return SqlError(db_, "preparing setting query");
    s.Bind(1, "setting:" + name);
    int rc = s.Step();
    if (rc == SQLITE_DONE) return std::string();
    if (rc != SQLITE_ROW) return SqlError(db_, "reading setting " + name);
    return std::string(s.BlobView(0));
  }

  Status SaveSetting(const std::string& name, const std::string& value) override {
    std::lock_guard lock(mu_);
    Stmt s(db_, value.empty() ? "DELETE FROM state_meta WHERE name = ?"
                              : "INSERT OR REPLACE INTO state_meta (name, value) VALUES (?, ?)");
    if (!s.ok()) return SqlError(db_, "preparing setting");
    s.Bind(1, "setting:" + name);
    if (!value.empty()) s.Bind(2, value);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "storing setting " + name);
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
           "INSERT INTO run_results (run_id, rule, target, user_ix, user, created, updated, "
           "deleted, unchanged, conflicts, errors, adopted, message, skipped) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!s.ok()) return SqlError(db_, "preparing run result");
    const Counts& c = r.counts;
    const CollectionKey& k = r.collection;
    const std::string ix = Ix(kUserDomain, k.user);
    const std::string row = RowOf({std::to_string(run), k.rule, k.target, ix});
    s.Bind(1, run).Bind(2, k.rule).Bind(3, k.target).BindIx(4, ix);
    s.BindSealed(5, Seal("run_results", "user", row, k.user));
    s.Bind(6, c.created).Bind(7, c.updated).Bind(8, c.deleted).Bind(9, c.unchanged);
    s.Bind(10, c.conflicts).Bind(11, c.errors).Bind(12, c.adopted);
    s.BindSealed(13, Seal("run_results", "message", row, r.message));
    s.Bind(14, c.skipped);
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
    if (pruned > 0) ROSTER_RETURN_IF_ERROR(FreeDeletedSpace("pruning run history"));
    return pruned;
  }

  Result<std::vector<RunSummary>> LastResults() override {
    std::lock_guard lock(mu_);
    Stmt s(db_,
           "SELECT r.id, r.mode, r.started_at, COALESCE(r.finished_at, ''), "
           "COALESCE(r.exit_code, -1), x.rule, x.target, x.user_ix, x.user, x.created, x.updated, "
           "x.deleted, x.unchanged, x.conflicts, x.errors, x.adopted, x.message, x.skipped "
           "FROM run_results x JOIN runs r ON r.id = x.run_id "
           "WHERE x.run_id = (SELECT MAX(y.run_id) FROM run_results y WHERE y.rule = x.rule "
           "AND y.target = x.target AND y.user_ix = x.user_ix) "
           // Only collections roster still keeps: not users who left a rule.
           "AND EXISTS (SELECT 1 FROM collections c WHERE c.rule = x.rule "
           "AND c.target = x.target AND c.user_ix = x.user_ix)");
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
      const std::string rule = s.Text(5), target = s.Text(6);
      const std::string row = RowOf({std::to_string(r.run_id), rule, target, s.IxText(7)});
      ROSTER_ASSIGN_OR_RETURN(std::string user, Open("run_results", "user", row, s.Blob(8)));
      r.result.collection = {rule, target, std::move(user)};
      Counts& c = r.result.counts;
      c.created = s.Int(9);
      c.updated = s.Int(10);
      c.deleted = s.Int(11);
      c.unchanged = s.Int(12);
      c.conflicts = s.Int(13);
      c.errors = s.Int(14);
      c.adopted = s.Int(15);
      ROSTER_ASSIGN_OR_RETURN(r.result.message, Open("run_results", "message", row, s.Blob(16)));
      c.skipped = s.Int(17);
      out.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "reading status");
    std::sort(out.begin(), out.end(), [](const RunSummary& a, const RunSummary& b) {
      const CollectionKey &x = a.result.collection, &y = b.result.collection;
      return std::tie(x.rule, x.target, x.user) < std::tie(y.rule, y.target, y.user);
    });
    return out;
  }

  Result<int64_t> Reseal() override {
    std::lock_guard lock(mu_);
    int64_t resealed = 0;
    Status st = InTransaction([&]() -> Status {
      for (const SealedTable& table : kSealedTables) {
        ROSTER_ASSIGN_OR_RETURN(int64_t n, ResealTable(table));
        resealed += n;
      }
      return WriteKeyCheck();
    });
    if (!st.ok()) return st.take_error();
    // Values under the old key must not outlive the rotation on disk.
    ROSTER_RETURN_IF_ERROR(Exec("VACUUM"));
    Failpoint("state-rebuilt");
    ROSTER_RETURN_IF_ERROR(Exec("PRAGMA wal_checkpoint(TRUNCATE)"));
    return resealed;
  }

  Status PurgeAll() override {
    std::lock_guard lock(mu_);
    ROSTER_RETURN_IF_ERROR(InTransaction([&]() -> Status {
      return Exec(
          "DELETE FROM items; DELETE FROM collections; "
          "DELETE FROM snapshots; DELETE FROM run_results; DELETE FROM runs; "
          "DELETE FROM source_cursors; DELETE FROM source_cache; "
          "DELETE FROM source_cache_shapes;");
    }));
    ROSTER_RETURN_IF_ERROR(Exec("VACUUM"));
    Failpoint("state-rebuilt");
    return Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

 private:
  static constexpr int64_t kSealedVersion = 5;
  static constexpr const char* kItemColumns = "href_ix, etag_seen, etag, hash, sealed";
  static constexpr const char* kUpsertSql =
      "INSERT INTO items (collection_id, href_ix, etag_seen, etag, key_ix, hash, adoptable, "
      "sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
      "ON CONFLICT (collection_id, href_ix) DO UPDATE SET "
      "etag_seen = excluded.etag_seen, etag = excluded.etag, key_ix = excluded.key_ix, "
      "hash = excluded.hash, adoptable = excluded.adoptable, sealed = excluded.sealed";

  // Where sealed values live, for Reseal: a table, the columns that find
  // one row (`where`), those its seals are bound to (`row`, in RowOf order)
  // and the sealed columns.
  struct SealedTable {
    const char* name;
    std::vector<const char*> where;
    std::vector<const char*> row;
    std::vector<const char*> sealed;
  };
  inline static const std::vector<SealedTable> kSealedTables = {
      {"collections", {"id"}, {"id", "rule", "target", "user_ix"}, {"user", "url", "sync_token"}},
      {"items", {"collection_id", "href_ix"}, {"collection_id", "href_ix"}, {"sealed"}},
      {"snapshots", {"rule"}, {"rule"}, {"self_keys", "entries"}},
      {"run_results", {"rowid"}, {"run_id", "rule", "target", "user_ix"}, {"user", "message"}},
      {"source_cursors", {"source"}, {"source"}, {"cursor"}},
      {"source_cache", {"source", "key_ix"}, {"source", "key_ix"}, {"sealed"}},
  };

  static std::string Joined(const std::vector<const char*>& names, const char* glue) {
    std::string out;
    for (size_t i = 0; i < names.size(); ++i) out += (i ? glue : "") + std::string(names[i]);
    return out;
  }

  // One table's values sealed again, a page of rows at a time in the order
  // of `where` (no row changes while a statement reads it).
  Result<int64_t> ResealTable(const SealedTable& t) {
    const std::string keys = Joined(t.where, ", ");
    std::string after = "(" + keys + ") > (";
    for (size_t i = 0; i < t.where.size(); ++i) after += i ? ", ?" : "?";
    after += ")";
    const std::string columns =
        keys + ", " + Joined(t.row, ", ") + ", " + Joined(t.sealed, ", ") + " FROM " + t.name;
    const std::string first_page = "SELECT " + columns + " ORDER BY " + keys + " LIMIT 1000";
    const std::string next_page =
        "SELECT " + columns + " WHERE " + after + " ORDER BY " + keys + " LIMIT 1000";
    const std::string what = std::string(t.name) + " to seal again";
    const int nw = static_cast<int>(t.where.size()), nr = static_cast<int>(t.row.size());
    struct Change {
      std::vector<Value> where;
      size_t column;
      std::string sealed;
    };
    // One UPDATE per sealed column, prepared once for the whole table.
    std::vector<std::unique_ptr<Stmt>> updates(t.sealed.size());
    auto update_of = [&](size_t column) -> Stmt* {
      if (!updates[column]) {
        std::string sql =
            std::string("UPDATE ") + t.name + " SET " + t.sealed[column] + " = ? WHERE ";
        for (int i = 0; i < nw; ++i) sql += (i ? " AND " : "") + std::string(t.where[i]) + " = ?";
        updates[column] = std::make_unique<Stmt>(db_, sql.c_str());
      }
      return updates[column].get();
    };
    int64_t resealed = 0;
    std::vector<Value> last;
    for (bool first = true;; first = false) {
      Stmt page(db_, (first ? first_page : next_page).c_str());
      if (!page.ok()) return SqlError(db_, "preparing to read " + what);
      for (int i = 0; i < static_cast<int>(last.size()); ++i) last[i].BindTo(page, i + 1);
      std::vector<Change> changes;
      int rows = 0, rc;
      while ((rc = page.Step()) == SQLITE_ROW) {
        ++rows;
        last.clear();
        for (int i = 0; i < nw; ++i) last.push_back(Value::Of(page, i));
        std::string row;
        for (int i = 0; i < nr; ++i) row += RowOf({Value::Of(page, nw + i).RowPart()});
        for (size_t c = 0; c < t.sealed.size(); ++c) {
          const std::string sealed = page.Blob(nw + nr + static_cast<int>(c));
          if (sealed.empty()) continue;
          auto id = crypto::KeyIdOf(sealed);
          if (id.ok() && *id == key_.key_id()) continue;
          ROSTER_ASSIGN_OR_RETURN(std::string plain, Open(t.name, t.sealed[c], row, sealed));
          changes.push_back({last, c, Seal(t.name, t.sealed[c], row, plain)});
        }
      }
      if (rc != SQLITE_DONE) return SqlError(db_, "reading " + what);
      for (const Change& change : changes) {
        Stmt& update = *update_of(change.column);
        if (!update.ok()) return SqlError(db_, "preparing to seal " + std::string(t.name));
        update.Reset().BindSealed(1, change.sealed);
        for (int i = 0; i < nw; ++i) change.where[i].BindTo(update, i + 2);
        if (update.Step() != SQLITE_DONE) return SqlError(db_, "sealing " + std::string(t.name));
        ++resealed;
      }
      if (rows < 1000) return resealed;
    }
  }

  // ---- the source cache ----

  // Entries read before this (unix seconds, the wall clock) have expired.
  static int64_t CacheCutoff(std::chrono::seconds max_age) {
    return static_cast<int64_t>(std::time(nullptr)) - static_cast<int64_t>(max_age.count());
  }

  // The shape a source's cache was made under; nullopt when it has none.
  Result<std::optional<std::string>> CacheShape(const std::string& source) {
    Stmt s(db_, "SELECT shape FROM source_cache_shapes WHERE source = ?");
    if (!s.ok()) return SqlError(db_, "preparing source cache query");
    s.Bind(1, source);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return std::optional<std::string>();
    if (rc != SQLITE_ROW) return SqlError(db_, "reading the cache of source " + source);
    return std::optional<std::string>(s.Text(0));
  }

  // Adds or replaces `put` in a source's cache, read at `now`. In the order
  // of the blind indexes, which is the table's: the rows go in one after
  // another instead of splitting pages all over the tree.
  Status PutCached(const std::string& source, int64_t now, const std::vector<CachedRecord>& put) {
    if (put.empty()) return {};
    std::vector<std::pair<std::string, const CachedRecord*>> ordered;
    ordered.reserve(put.size());
    for (const CachedRecord& r : put) ordered.emplace_back(Ix(kCacheKeyDomain, r.key), &r);
    std::sort(ordered.begin(), ordered.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    Stmt ins(db_,
             "INSERT INTO source_cache (source, key_ix, read_at, sealed) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (source, key_ix) DO UPDATE SET "
             "read_at = excluded.read_at, sealed = excluded.sealed");
    if (!ins.ok()) return SqlError(db_, "preparing source cache update");
    for (const auto& [ix, r] : ordered) {
      const std::string sealed =
          Seal("source_cache", "sealed", RowOf({source, ix}), Pack({r->key, r->stamp, r->record}));
      ins.Reset().Bind(1, source).BindIx(2, ix).Bind(3, now).BindSealed(4, sealed);
      if (ins.Step() != SQLITE_DONE) return SqlError(db_, "storing the cache of source " + source);
    }
    return {};
  }

  // One cache entry opened: a value that does not open, or that is not
  // what roster sealed there, ends the read with the table and source named.
  Result<CachedRecord> OpenCached(const std::string& source, const std::string& key_ix,
                                  std::string_view sealed) const {
    const std::string row = RowOf({source, key_ix});
    auto opened = crypto::Open(key_, sealed, crypto::SealContext{"source_cache", "sealed", row});
    if (!opened.ok()) {
      return MakeError(ErrorKind::kInvalidData,
                       "state store: the cache of source " + source + ": " +
                           opened.error().message +
                           " (the state file was damaged or changed outside roster)");
    }
    auto parts = Unpack(*opened);
    if (!parts || parts->size() != 3) {
      return MakeError(ErrorKind::kInvalidData, "state store: the cache of source " + source +
                                                    ": an entry of source_cache cannot be read");
    }
    return CachedRecord{std::move((*parts)[0]), std::move((*parts)[1]), std::move((*parts)[2])};
  }

  // Deleting must zero what it deletes: on for every store that writes
  // (Init), checked where the cache is purged, before the deletes commit.
  Status CheckSecureDelete() {
    Stmt s(db_, "PRAGMA secure_delete");
    if (!s.ok() || s.Step() != SQLITE_ROW) return SqlError(db_, "reading secure_delete");
    if (s.Int(0) != 1) {
      return MakeError(ErrorKind::kInternal,
                       "state store: secure_delete is off; nothing was purged");
    }
    return {};
  }

  // After rows are deleted: secure_delete zeroed them in their pages; the
  // freed pages go back to the file system (incremental vacuum), and the
  // WAL, which still holds the pages as they were, is checkpointed and
  // truncated, so that nothing of the rows stays in either file.
  Status FreeDeletedSpace(const std::string& after) {
    if (sqlite3_exec(db_, "PRAGMA incremental_vacuum", nullptr, nullptr, nullptr) != SQLITE_OK ||
        sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr) !=
            SQLITE_OK) {
      return SqlError(db_, "freeing the space after " + after);
    }
    return {};
  }

  // ---- sealing ----

  std::string Ix(std::string_view domain, std::string_view value) const {
    return crypto::BlindIndex(key_, domain, value);
  }
  // An empty value is stored empty: its emptiness is all that shows.
  std::string Seal(std::string_view table, std::string_view column, const std::string& row,
                   std::string_view value) const {
    if (value.empty()) return "";
    return crypto::Seal(key_, value, crypto::SealContext{table, column, row});
  }
  Result<std::string> Open(std::string_view table, std::string_view column, const std::string& row,
                           const std::string& sealed) const {
    if (sealed.empty()) return std::string();
    auto value = crypto::Open(key_, sealed, crypto::SealContext{table, column, row});
    if (!value.ok()) {
      return MakeError(ErrorKind::kInvalidData,
                       "state store: " + value.error().message +
                           " (the state file was damaged or changed outside roster)");
    }
    return value;
  }

  // The key that opens the store is the key that sealed it: a sealed check
  // value and a blind index of it, written when the store was sealed.
  Status CheckKey() {
    Stmt s(db_, "SELECT name, value FROM state_meta WHERE name IN ('key_check', 'index_check')");
    if (!s.ok()) return SqlError(db_, "preparing the key check");
    std::map<std::string, std::string> found;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) found[s.Text(0)] = s.Blob(1);
    if (rc != SQLITE_DONE) return SqlError(db_, "reading the key check");
    if (found.size() != 2) {
      return MakeError(ErrorKind::kInvalidData,
                       "state store: the key check is missing (the file was changed outside "
                       "roster)");
    }
    auto opened = crypto::Open(key_, found["key_check"],
                               crypto::SealContext{"state_meta", "value", RowOf({"key_check"})});
    const bool seal_ok = opened.ok() && *opened == kCheckPlaintext;
    const bool index_ok = found["index_check"] == Ix("check", kCheckPlaintext);
    if (!seal_ok || !index_ok) {
      Error e = MakeError(ErrorKind::kInvalidArgument,
                          std::string("the state is sealed under another key (its ") +
                              (!index_ok ? "index key" : "sealing key") +
                              " differs): use the key that sealed it, or move the state file "
                              "away to start afresh (roster finds its own items on the targets "
                              "again by their markers)");
      e.credential_refused = true;  // the key, not the file, is what is wrong
      return e;
    }
    return {};
  }

  Status WriteKeyCheck() {
    Stmt s(db_, "INSERT OR REPLACE INTO state_meta (name, value) VALUES (?, ?)");
    if (!s.ok()) return SqlError(db_, "preparing the key check");
    s.Bind(1, "key_check")
        .BindSealed(2,
                    crypto::Seal(key_, kCheckPlaintext,
                                 crypto::SealContext{"state_meta", "value", RowOf({"key_check"})}));
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "writing the key check");
    s.Reset().Bind(1, "index_check").BindSealed(2, Ix("check", kCheckPlaintext));
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "writing the key check");
    return {};
  }

  // Migration 5: every row of the version-4 tables (renamed *_v4 by its
  // SQL) copied into the new ones, sealed; then the old tables dropped. In
  // the migration's transaction: all of it lands, or none.
  Status SealVersion4Rows() {
    ROSTER_RETURN_IF_ERROR(WriteKeyCheck());
    {
      Stmt from(db_,
                "SELECT id, rule, target, user, url, sync_token, synced_snapshot "
                "FROM collections_v4");
      Stmt to(db_,
              "INSERT INTO collections (id, rule, target, user_ix, user, url, sync_token, "
              "synced_snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
      if (!from.ok() || !to.ok()) return SqlError(db_, "preparing to seal collections");
      int rc;
      while ((rc = from.Step()) == SQLITE_ROW) {
        const std::string rule = from.Text(1), target = from.Text(2), user = from.Text(3);
        const std::string ix = Ix(kUserDomain, user);
        const std::string row = CollectionRow(from.Int(0), rule, target, ix);
        to.Reset().Bind(1, from.Int(0)).Bind(2, rule).Bind(3, target).Bind(4, ix);
        to.BindSealed(5, Seal("collections", "user", row, user));
        to.BindSealed(6, Seal("collections", "url", row, from.Text(4)));
        to.BindSealed(7, Seal("collections", "sync_token", row, from.Text(5)));
        to.Bind(8, from.Text(6));
        if (to.Step() != SQLITE_DONE) return SqlError(db_, "sealing collections");
      }
      if (rc != SQLITE_DONE) return SqlError(db_, "reading collections to seal");
    }
    {
      Stmt from(db_,
                "SELECT collection_id, href, etag_seen, etag, COALESCE(key, ''), hash, fields, "
                "match FROM items_v4");
      Stmt to(db_, kUpsertSql);
      if (!from.ok() || !to.ok()) return SqlError(db_, "preparing to seal items");
      int rc;
      while ((rc = from.Step()) == SQLITE_ROW) {
        ItemState item{from.Text(1), from.Text(2), from.Text(3), from.Text(4),
                       from.Text(5), from.Text(6), from.Text(7)};
        BindItem(to.Reset(), from.Int(0), item);
        if (to.Step() != SQLITE_DONE) return SqlError(db_, "sealing items");
      }
      if (rc != SQLITE_DONE) return SqlError(db_, "reading items to seal");
    }
    {
      Stmt from(db_, "SELECT rule, fingerprint, source_version, self_keys FROM snapshots_v4");
      if (!from.ok()) return SqlError(db_, "preparing to seal snapshots");
      int rc;
      while ((rc = from.Step()) == SQLITE_ROW) {
        Snapshot snap;
        const std::string rule = from.Text(0);
        snap.fingerprint = from.Text(1);
        snap.source_version = from.Text(2);
        snap.self_keys = DecodeSelfKeys(from.Text(3));
        Stmt entries(db_, "SELECT key, hash FROM snapshot_items_v4 WHERE rule = ?");
        if (!entries.ok()) return SqlError(db_, "preparing to seal snapshot items");
        entries.Bind(1, rule);
        int erc;
        while ((erc = entries.Step()) == SQLITE_ROW) {
          snap.entries.push_back({entries.Text(0), entries.Text(1)});
        }
        if (erc != SQLITE_DONE) return SqlError(db_, "reading snapshot items to seal");
        Stmt to(db_,
                "INSERT INTO snapshots (rule, fingerprint, source_version, self_keys, entries) "
                "VALUES (?, ?, ?, ?, ?)");
        if (!to.ok()) return SqlError(db_, "preparing to seal snapshots");
        to.Bind(1, rule).Bind(2, snap.fingerprint).Bind(3, snap.source_version);
        to.BindSealed(4, Seal("snapshots", "self_keys", RowOf({rule}), from.Text(3)));
        to.BindSealed(5, Seal("snapshots", "entries", RowOf({rule}), EncodeEntries(snap)));
        if (to.Step() != SQLITE_DONE) return SqlError(db_, "sealing snapshots");
      }
      if (rc != SQLITE_DONE) return SqlError(db_, "reading snapshots to seal");
    }
    {
      Stmt from(db_,
                "SELECT run_id, rule, target, user, created, updated, deleted, unchanged, "
                "conflicts, errors, adopted, message, skipped FROM run_results_v4");
      Stmt to(db_,
              "INSERT INTO run_results (run_id, rule, target, user_ix, user, created, updated, "
              "deleted, unchanged, conflicts, errors, adopted, message, skipped) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
      if (!from.ok() || !to.ok()) return SqlError(db_, "preparing to seal run results");
      int rc;
      while ((rc = from.Step()) == SQLITE_ROW) {
        const int64_t run = from.Int(0);
        const std::string rule = from.Text(1), target = from.Text(2), user = from.Text(3);
        const std::string ix = Ix(kUserDomain, user);
        const std::string row = RowOf({std::to_string(run), rule, target, ix});
        to.Reset().Bind(1, run).Bind(2, rule).Bind(3, target).Bind(4, ix);
        to.BindSealed(5, Seal("run_results", "user", row, user));
        for (int i = 4; i <= 10; ++i) to.Bind(i + 2, from.Int(i));
        to.BindSealed(13, Seal("run_results", "message", row, from.Text(11)));
        to.Bind(14, from.Int(12));
        if (to.Step() != SQLITE_DONE) return SqlError(db_, "sealing run results");
      }
      if (rc != SQLITE_DONE) return SqlError(db_, "reading run results to seal");
    }
    {
      Stmt from(db_, "SELECT source, cursor FROM source_cursors_v4");
      Stmt to(db_, "INSERT INTO source_cursors (source, cursor) VALUES (?, ?)");
      if (!from.ok() || !to.ok()) return SqlError(db_, "preparing to seal source cursors");
      int rc;
      while ((rc = from.Step()) == SQLITE_ROW) {
        const std::string source = from.Text(0);
        to.Reset().Bind(1, source);
        to.BindSealed(2, Seal("source_cursors", "cursor", RowOf({source}), from.Text(1)));
        if (to.Step() != SQLITE_DONE) return SqlError(db_, "sealing source cursors");
      }
      if (rc != SQLITE_DONE) return SqlError(db_, "reading source cursors to seal");
    }
    return Exec(
        "DROP TABLE items_v4; DROP TABLE collections_v4; DROP TABLE snapshot_items_v4; "
        "DROP TABLE snapshots_v4; DROP TABLE run_results_v4; DROP TABLE source_cursors_v4;");
  }

  // After the sealing migration the old plaintext may linger in free pages
  // and the WAL: the file is rebuilt (VACUUM) and the WAL emptied. A crash
  // before that leaves the mark, and the next open rebuilds.
  Status RebuildIfPending() {
    Stmt s(db_, "SELECT 1 FROM state_meta WHERE name = 'vacuum'");
    if (!s.ok()) return SqlError(db_, "preparing the rebuild check");
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return {};
    if (rc != SQLITE_ROW) return SqlError(db_, "reading the rebuild check");
    s.Reset();
    ROSTER_RETURN_IF_ERROR(Exec("PRAGMA auto_vacuum=INCREMENTAL"));  // takes effect in the VACUUM
    ROSTER_RETURN_IF_ERROR(Exec("VACUUM"));
    Failpoint("state-rebuilt");
    ROSTER_RETURN_IF_ERROR(Exec("DELETE FROM state_meta WHERE name = 'vacuum'"));
    return Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

  // ---- rows ----

  void BindItem(Stmt& s, int64_t collection, const ItemState& item) const {
    const std::string ix = Ix(kHrefDomain, item.href);
    const std::string row = RowOf({std::to_string(collection), ix});
    s.Bind(1, collection).BindIx(2, ix).Bind(3, item.etag_seen).Bind(4, item.etag);
    if (item.key.empty()) {
      s.BindNull(5);
    } else {
      s.BindIx(5, Ix(kKeyDomain, item.key));
    }
    s.Bind(6, item.hash).Bind(7, static_cast<int64_t>(item.key.empty() && !item.match.empty()));
    s.BindSealed(
        8, Seal("items", "sealed", row, Pack({item.href, item.key, item.fields, item.match})));
  }

  // The items of one collection that `sql` (whose one parameter is the
  // collection) selects, in kItemColumns.
  Result<std::vector<ItemState>> LoadItemsWhere(const std::string& sql, int64_t collection) {
    std::lock_guard lock(mu_);
    Stmt s(db_, sql.c_str());
    if (!s.ok()) return SqlError(db_, "preparing item query");
    s.Bind(1, collection);
    std::vector<ItemState> items;
    ROSTER_RETURN_IF_ERROR(ReadItems(s, collection, &items));
    return items;
  }

  // Appends every row the bound statement `s` returns to *items.
  Status ReadItems(Stmt& s, int64_t collection, std::vector<ItemState>* items) {
    int rc;
    const std::string id = std::to_string(collection);
    while ((rc = s.Step()) == SQLITE_ROW) {
      ROSTER_ASSIGN_OR_RETURN(std::string sealed,
                              Open("items", "sealed", RowOf({id, s.IxText(0)}), s.Blob(4)));
      auto parts = Unpack(sealed);
      if (!parts || parts->size() != 4) {
        return MakeError(ErrorKind::kInvalidData, "state store: an item cannot be read");
      }
      ItemState item;
      item.href = std::move((*parts)[0]);
      item.etag_seen = s.Text(1);
      item.etag = s.Text(2);
      item.key = std::move((*parts)[1]);
      item.hash = s.Text(3);
      item.fields = std::move((*parts)[2]);
      item.match = std::move((*parts)[3]);
      items->push_back(std::move(item));
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "reading items");
    return {};
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

  // What a collection's seals are bound to: its id, rule, target and user.
  static std::string CollectionRow(int64_t id, std::string_view rule, std::string_view target,
                                   std::string_view user_ix) {
    return RowOf({std::to_string(id), rule, target, user_ix});
  }

  // Columns id, url, sync_token, synced_snapshot from `first` on.
  Result<CollectionState> ReadCollection(const Stmt& s, int first, const std::string& row) const {
    CollectionState state;
    state.id = s.Int(first);
    ROSTER_ASSIGN_OR_RETURN(state.url, Open("collections", "url", row, s.Blob(first + 1)));
    ROSTER_ASSIGN_OR_RETURN(state.sync_token,
                            Open("collections", "sync_token", row, s.Blob(first + 2)));
    state.synced_snapshot = s.Text(first + 3);
    return state;
  }

  Result<CollectionState> FindLocked(const CollectionKey& key) {
    Stmt s(db_,
           "SELECT id, url, sync_token, synced_snapshot FROM collections "
           "WHERE rule = ? AND target = ? AND user_ix = ?");
    if (!s.ok()) return SqlError(db_, "preparing collection query");
    const std::string ix = Ix(kUserDomain, key.user);
    s.Bind(1, key.rule).Bind(2, key.target).BindIx(3, ix);
    int rc = s.Step();
    if (rc == SQLITE_DONE) {
      return MakeError(ErrorKind::kNotFound,
                       "state store: no collection for rule " + key.rule + ", user " + key.user);
    }
    if (rc != SQLITE_ROW) return SqlError(db_, "reading collection");
    return ReadCollection(s, 0, CollectionRow(s.Int(0), key.rule, key.target, ix));
  }

  // Seals `value` into column `column` (url or sync_token) of a collection;
  // its row is found first, since the seal is bound to it. mu_ is held.
  Status UpdateSealedCollectionColumn(const std::string& column, int64_t collection,
                                      const std::string& value) {
    Stmt find(db_, "SELECT rule, target, user_ix FROM collections WHERE id = ?");
    if (!find.ok()) return SqlError(db_, "preparing collection query");
    find.Bind(1, collection);
    const int rc = find.Step();
    if (rc == SQLITE_DONE) return {};  // gone: nothing to update, as an UPDATE would find
    if (rc != SQLITE_ROW) return SqlError(db_, "reading collection");
    const std::string row = CollectionRow(collection, find.Text(0), find.Text(1), find.IxText(2));
    Stmt s(db_, ("UPDATE collections SET " + column + " = ? WHERE id = ?").c_str());
    if (!s.ok()) return SqlError(db_, "preparing collection update");
    s.BindSealed(1, Seal("collections", column, row, value)).Bind(2, collection);
    if (s.Step() != SQLITE_DONE) return SqlError(db_, "updating collection");
    return {};
  }

  // Source keys' blind indexes: a run looks up the same changed keys in
  // every collection of a rule, so each is hashed once, not once per
  // collection. Bounded; mu_ guards it.
  const std::string& KeyIx(const std::string& key) {
    if (key_ix_memo_.size() >= kKeyIxMemoMax) key_ix_memo_.clear();
    auto [it, fresh] = key_ix_memo_.try_emplace(key);
    if (fresh) it->second = Ix(kKeyDomain, key);
    return it->second;
  }
  static constexpr size_t kKeyIxMemoMax = 100000;

  std::mutex mu_;
  sqlite3* db_;
  const crypto::Key key_;
  std::vector<std::string> warnings_;
  std::unordered_map<std::string, std::string> key_ix_memo_;
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

Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::string& path,
                                                         const crypto::Key& key) {
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
  auto store = std::make_unique<SqliteStateStore>(db, key);
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

Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::string& path) {
  if (path != ":memory:") {
    return MakeError(ErrorKind::kInvalidArgument,
                     "state file " + path + ": a state file is opened with its key");
  }
  return OpenSqliteStateStore(path, crypto::GenerateKey());
}

Result<std::unique_ptr<StateStore>> OpenSqliteStateStoreForReading(const std::string& path,
                                                                   const crypto::Key& key) {
  struct stat st {};
  if (path == ":memory:" || stat(path.c_str(), &st) != 0)
    return OpenSqliteStateStore(":memory:", key);
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
  auto store = std::make_unique<SqliteStateStore>(db, key);
  Status init = store->InitForReading(path);
  if (!init.ok()) {
    Error e = init.take_error();
    if (e.credential_refused) e.message = "state file " + path + ": " + e.message;
    return e;
  }
  return std::unique_ptr<StateStore>(std::move(store));
}

Result<StateFileKind> InspectStateFile(const std::string& path) {
  struct stat st {};
  if (path == ":memory:" || stat(path.c_str(), &st) != 0) return StateFileKind::kMissing;
  std::string uri = "file:" + text::PercentEncode(path, [](unsigned char c) {
                      return c != '%' && c != '?' && c != '#';
                    });
  struct stat wal {};
  uri += stat((path + "-wal").c_str(), &wal) == 0 ? "?mode=ro" : "?immutable=1";
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(uri.c_str(), &db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> hold(db, sqlite3_close_v2);
  if (rc != SQLITE_OK) {
    return MakeError(ErrorKind::kInvalidArgument, "cannot read state file " + path + ": " +
                                                      (db ? sqlite3_errmsg(db) : "out of memory"));
  }
  Stmt tables(
      db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'");
  if (!tables.ok() || tables.Step() != SQLITE_ROW)
    return SqlError(db, "reading state file " + path);
  if (tables.Int(0) == 0) return StateFileKind::kPlain;  // empty, or not roster's yet
  Stmt version(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  if (!version.ok() || version.Step() != SQLITE_ROW) {
    return SqlError(db, "reading the schema version of " + path);
  }
  return version.Int(0) >= 5 ? StateFileKind::kSealed : StateFileKind::kPlain;
}

}  // namespace roster
