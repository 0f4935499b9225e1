#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string_view>
#include <thread>
#include <vector>

#include "core/failpoint.h"
#include "crypto/keys.h"
#include "crypto/seal.h"
#include "migrations.h"
#include "state/state.h"

namespace roster {
namespace {

// An in-memory store, under a key of its own.
std::unique_ptr<StateStore> Open() {
  auto store = OpenSqliteStateStore(":memory:");
  EXPECT_TRUE(store.ok()) << (store.ok() ? "" : store.error().message);
  return store.ok() ? std::move(store).value() : nullptr;
}

// The store in the file at `path`, sealed under `key`.
std::unique_ptr<StateStore> Open(const std::string& path, const crypto::Key& key) {
  auto store = OpenSqliteStateStore(path, key);
  EXPECT_TRUE(store.ok()) << (store.ok() ? "" : store.error().message);
  return store.ok() ? std::move(store).value() : nullptr;
}

TEST(SqliteStateStore, CollectionsAreCreatedOnceAndRemembered) {
  auto store = Open();
  CollectionKey key{"company", "dav", "alice"};
  EXPECT_FALSE(store->FindCollection(key).ok());
  auto a = store->OpenCollection(key);
  ASSERT_TRUE(a.ok());
  auto b = store->OpenCollection(key);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->id, b->id);
  ASSERT_TRUE(store->SetCollectionUrl(a->id, "http://h/alice/book/").ok());
  ASSERT_TRUE(store->SetSyncToken(a->id, "tok-1").ok());
  ASSERT_TRUE(store->SetSyncedSnapshot(a->id, "fp").ok());
  auto c = store->FindCollection(key);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->url, "http://h/alice/book/");
  EXPECT_EQ(c->sync_token, "tok-1");
  EXPECT_EQ(c->synced_snapshot, "fp");
}

TEST(SqliteStateStore, ItemsUpsertDeleteAndLookupByKey) {
  auto store = Open();
  auto col = store->OpenCollection({"r", "t", "u"});
  ASSERT_TRUE(col.ok());
  int64_t id = col->id;
  std::vector<ItemState> items = {{"/b.vcf", "e1", "e1", "k1", "h1"},
                                  {"/a.vcf", "e2", "e2", "", "h2"},
                                  {"/c.vcf", "e3", "", "", ""}};
  ASSERT_TRUE(store->ApplyListing(id, {}, {}, items, "tok", std::nullopt).ok());
  auto loaded = store->LoadItems(id);
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 3u);
  EXPECT_EQ((*loaded)[0].href, "/a.vcf");  // sorted by href
  EXPECT_FALSE((*loaded)[0].managed());
  EXPECT_TRUE((*loaded)[1].managed());
  EXPECT_FALSE((*loaded)[2].known());
  EXPECT_EQ(*store->CountManaged(id), 1);
  EXPECT_EQ(store->FindCollection({"r", "t", "u"})->sync_token, "tok");

  ASSERT_TRUE(store->PutItem(id, {"/b.vcf", "e9", "e9", "k1", "h9"}).ok());
  auto by_key = store->LoadItemsByKeys(id, {"k1", "missing"});
  ASSERT_TRUE(by_key.ok());
  ASSERT_EQ(by_key->size(), 1u);
  EXPECT_EQ((*by_key)[0].hash, "h9");

  ASSERT_TRUE(store->ApplyListing(id, {}, {"/a.vcf", "/c.vcf"}, {}, "", std::nullopt).ok());
  EXPECT_EQ(store->LoadItems(id)->size(), 1u);
  EXPECT_EQ(store->FindCollection({"r", "t", "u"})->sync_token, "tok");  // empty keeps it
  // A listing moves etag_seen only; the known content stays until it is read.
  ASSERT_TRUE(store->ApplyListing(id, {{"/b.vcf", "e10"}}, {}, {}, "tok-2", std::nullopt).ok());
  auto b = store->LoadItems(id);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].etag_seen, "e10");
  EXPECT_EQ((*b)[0].etag, "e9");
  EXPECT_FALSE((*b)[0].known());
  EXPECT_EQ((*b)[0].key, "k1");
  ASSERT_TRUE(store->DeleteItem(id, "/b.vcf").ok());
  EXPECT_TRUE(store->LoadItems(id)->empty());
}

TEST(SqliteStateStore, SnapshotsReplaceWhole) {
  auto store = Open();
  auto empty = store->LoadSnapshot("r");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->fingerprint.empty());
  ASSERT_TRUE(store->SaveSnapshot("r", {"fp1", {{"a", "1"}, {"b", "2"}}}).ok());
  ASSERT_TRUE(store->SaveSnapshot("r", {"fp2", {{"c", "3"}}}).ok());
  auto snap = store->LoadSnapshot("r");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->fingerprint, "fp2");
  ASSERT_EQ(snap->entries.size(), 1u);
  EXPECT_EQ(snap->entries[0].key, "c");
}

TEST(SqliteStateStore, FieldsMatchAndSourceVersionRoundTrip) {
  auto store = Open();
  int64_t id = store->OpenCollection({"r", "t", "u"})->id;
  ASSERT_TRUE(store->PutItem(id, {"/m.vcf", "e1", "e1", "k1", "h1", "note=ab12", ""}).ok());
  ASSERT_TRUE(store->PutItem(id, {"/own.vcf", "e2", "e2", "", "h2", "", "aa,bb"}).ok());
  ASSERT_TRUE(store->PutItem(id, {"/plain.vcf", "e3", "e3", "", "h3", "", ""}).ok());
  auto m = store->LoadItemsByKeys(id, {"k1"});
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].fields, "note=ab12");
  auto own = store->LoadUnmanaged(id);
  ASSERT_TRUE(own.ok());
  ASSERT_EQ(own->size(), 1u);  // only unmanaged items with e-mail hashes
  EXPECT_EQ((*own)[0].href, "/own.vcf");
  EXPECT_EQ((*own)[0].match, "aa,bb");

  Snapshot snap{"fp", {{"a", "1"}}, "v1"};
  ASSERT_TRUE(store->SaveSnapshot("r", snap).ok());
  EXPECT_EQ(store->LoadSnapshot("r")->source_version, "v1");
}

TEST(SqliteStateStore, SourceCursorsAreStoredReplacedAndForgotten) {
  auto store = Open();
  EXPECT_EQ(*store->LoadSourceCursor("gal"), "");
  ASSERT_TRUE(store->SaveSourceCursor("gal", "links-1").ok());
  ASSERT_TRUE(store->SaveSourceCursor("other", "x").ok());
  EXPECT_EQ(*store->LoadSourceCursor("gal"), "links-1");
  ASSERT_TRUE(store->SaveSourceCursor("gal", "links-2").ok());
  EXPECT_EQ(*store->LoadSourceCursor("gal"), "links-2");
  ASSERT_TRUE(store->SaveSourceCursor("gal", "").ok());
  EXPECT_EQ(*store->LoadSourceCursor("gal"), "");
  EXPECT_EQ(*store->LoadSourceCursor("other"), "x");
}

TEST(SqliteStateStore, CollectionsAreListedAndDeletedPerRule) {
  auto store = Open();
  int64_t a = store->OpenCollection({"r", "t", "alice"})->id;
  ASSERT_TRUE(store->OpenCollection({"r", "t", "bob"}).ok());
  ASSERT_TRUE(store->OpenCollection({"other", "t", "carol"}).ok());
  ASSERT_TRUE(store->PutItem(a, {"/x.vcf", "e", "e", "k", "h"}).ok());
  auto list = store->ListCollections("r");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].first.user, "alice");
  EXPECT_EQ((*list)[1].first.user, "bob");
  ASSERT_TRUE(store->DeleteCollection(a).ok());
  EXPECT_EQ(store->ListCollections("r")->size(), 1u);
  EXPECT_TRUE(store->LoadItems(a)->empty());
  EXPECT_FALSE(store->FindCollection({"r", "t", "alice"}).ok());
}

TEST(SqliteStateStore, LastResultsShowNewestRunPerCollection) {
  auto store = Open();
  auto alice = store->OpenCollection({"r", "t", "alice"});
  ASSERT_TRUE(alice.ok());
  auto r1 = store->BeginRun("sync");
  ASSERT_TRUE(r1.ok());
  TargetRunResult res{{"r", "t", "alice"}, {}, ""};
  res.counts.created = 5;
  ASSERT_TRUE(store->RecordResult(*r1, res).ok());
  ASSERT_TRUE(store->FinishRun(*r1, 0).ok());
  auto r2 = store->BeginRun("sync");
  res.counts.created = 0;
  res.counts.unchanged = 5;
  ASSERT_TRUE(store->RecordResult(*r2, res).ok());
  auto last = store->LastResults();
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].run_id, *r2);
  EXPECT_EQ((*last)[0].exit_code, -1);  // not finished: shows as interrupted
  EXPECT_EQ((*last)[0].result.counts.unchanged, 5);
  // A user who left the rule (collection forgotten) is no longer listed.
  ASSERT_TRUE(store->DeleteCollection(alice->id).ok());
  EXPECT_TRUE(store->LastResults()->empty());
}

TEST(SqliteStateStore, FileIsPrivateAndSurvivesReopen) {
  auto dir = std::filesystem::temp_directory_path() / ("roster-state-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "roster.db").string();
  const crypto::Key key = crypto::GenerateKey();
  {
    auto store = Open(path, key);
    ASSERT_TRUE(store->OpenCollection({"r", "t", "u"}).ok());
  }
  auto perms = std::filesystem::status(path).permissions();
  EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
            std::filesystem::perms::none);
  {
    auto store = Open(path, key);  // migrations are not re-applied
    EXPECT_TRUE(store->FindCollection({"r", "t", "u"}).ok());
  }
  std::filesystem::remove_all(dir);
}

TEST(SqliteStateStore, UnopenablePathIsAClearError) {
  auto store = OpenSqliteStateStore("/nonexistent-dir/roster.db", crypto::GenerateKey());
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("/nonexistent-dir/roster.db"), std::string::npos);
}

TEST(SqliteStateStore, SnapshotKeepsWhoEachListedUserIs) {
  auto store = Open();
  Snapshot snap{
      "fp", {{"k1", "h1"}}, "v1", {{"alice", "k1"}, {"odd\tname\n%", "k%2\t"}, {"bob", ""}}};
  ASSERT_TRUE(store->SaveSnapshot("company", snap).ok());
  auto back = store->LoadSnapshot("company");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->self_keys, snap.self_keys);
  EXPECT_EQ(back->source_version, "v1");
}

// ---- helpers for the tests on files ----

// One line per value, so that a failed comparison shows what differs.
std::string Str(const ItemState& i) {
  return i.href + " | seen " + i.etag_seen + " | etag " + i.etag + " | key " + i.key + " | hash " +
         i.hash + " | fields " + i.fields + " | match " + i.match;
}
std::vector<std::string> Strs(const std::vector<ItemState>& items) {
  std::vector<std::string> out;
  for (const ItemState& i : items) out.push_back(Str(i));
  return out;
}
std::string Str(const CollectionKey& k, const CollectionState& s) {
  return k.rule + "/" + k.target + "/" + k.user + " | id " + std::to_string(s.id) + " | url " +
         s.url + " | token " + s.sync_token + " | synced " + s.synced_snapshot;
}
std::string Str(const Counts& c) {
  return std::to_string(c.created) + "c " + std::to_string(c.updated) + "u " +
         std::to_string(c.deleted) + "d " + std::to_string(c.unchanged) + "n " +
         std::to_string(c.conflicts) + "x " + std::to_string(c.errors) + "e " +
         std::to_string(c.adopted) + "a " + std::to_string(c.skipped) + "s";
}
// Without the times, which the store sets itself.
std::string Str(const RunSummary& r) {
  const CollectionKey& k = r.result.collection;
  return k.rule + "/" + k.target + "/" + k.user + " | run " + std::to_string(r.run_id) + " " +
         r.mode + " exit " + std::to_string(r.exit_code) + " | " + Str(r.result.counts) + " | " +
         r.result.message;
}
std::vector<std::string> Strs(const std::vector<RunSummary>& runs) {
  std::vector<std::string> out;
  for (const RunSummary& r : runs) out.push_back(Str(r));
  return out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// `text` names none of `secrets` (an error message, say).
void ExpectNoSecretIn(const std::string& text, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    EXPECT_EQ(text.find(secret), std::string::npos) << "\"" << text << "\" shows " << secret;
  }
}

// SQLite opened directly, as another program (or an older roster) would:
// to write the files of older versions and to look at or damage what the
// store wrote.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) ADD_FAILURE() << "cannot open " << path;
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  // Runs `sql`; false (with a test failure when `expect_ok`) when SQLite refuses it.
  bool Exec(const std::string& sql, bool expect_ok = true) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK && expect_ok) ADD_FAILURE() << (err ? err : "error") << " in: " << sql;
    sqlite3_free(err);
    return rc == SQLITE_OK;
  }
  // The first column of every row `sql` returns, as its bytes ("<null>" for NULL).
  std::vector<std::string> Column(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sqlite3_errmsg(db_) << " in: " << sql;
      return out;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
      if (sqlite3_column_type(s, 0) == SQLITE_NULL) {
        out.push_back("<null>");
        continue;
      }
      const void* p = sqlite3_column_blob(s, 0);
      out.emplace_back(static_cast<const char*>(p), sqlite3_column_bytes(s, 0));
    }
    sqlite3_finalize(s);
    return out;
  }
  // The one value `sql` returns ("" when it returns no row).
  std::string One(const std::string& sql) {
    std::vector<std::string> rows = Column(sql);
    EXPECT_LE(rows.size(), 1u) << sql;
    return rows.empty() ? "" : rows[0];
  }
  // Runs `sql` with `bytes` bound as a BLOB to its one parameter.
  void ExecWithBlob(const std::string& sql, const std::string& bytes) {
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
    sqlite3_bind_blob(s, 1, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(s), SQLITE_DONE) << sqlite3_errmsg(db_) << " in: " << sql;
    sqlite3_finalize(s);
  }

 private:
  sqlite3* db_ = nullptr;
};

// What roster 0.1 (state version 1) wrote: the first migration alone, with rows.
void WriteVersion1File(const std::string& path) {
  RawDb db(path);
  db.Exec(std::string("CREATE TABLE schema_version (version INTEGER NOT NULL);") +
          Migrations().front().sql +
          "INSERT INTO schema_version VALUES (1);"
          "INSERT INTO collections (rule, target, user, url, sync_token, synced_snapshot)"
          " VALUES ('company', 'dav', 'alice', 'http://h/alice/b/', 'tok1', 'fp1');"
          "INSERT INTO items (collection_id, href, etag_seen, etag, key, hash) VALUES"
          " (1, '/alice/b/x.vcf', 'e1', 'e1', 'k1', 'h1'),"
          " (1, '/alice/b/own.vcf', 'e2', 'e2', NULL, 'h2');");
}

// What roster wrote before the state was sealed (version 4): migrations 1 to 4,
// in WAL mode as roster ran them, with rows that name people in plaintext.
void WriteVersion4File(const std::string& path) {
  std::string sql =
      "PRAGMA journal_mode=WAL; CREATE TABLE schema_version (version INTEGER NOT NULL);";
  for (const Migration& m : Migrations()) {
    if (m.version > 4) break;
    sql += m.sql;
    sql += ";INSERT INTO schema_version VALUES (" + std::to_string(m.version) + ");";
  }
  sql +=
      "INSERT INTO collections (id, rule, target, user, url, sync_token, synced_snapshot) VALUES"
      " (1, 'company', 'dav', 'alice.secret@example.org',"
      "  'https://dav.example/alice.secret@example.org/book/', 'tok-SECRET-123', 'fp-1'),"
      " (2, 'company', 'dav', 'dave.secret@example.org', '', '', '');"
      "INSERT INTO items (collection_id, href, etag_seen, etag, key, hash, fields, match) VALUES"
      " (1, '/alice.secret@example.org/book/bob-private.vcf', 'e1', 'e1', 'uid-SECRETKEY', 'h1',"
      "  'note=FIELD-SECRET', ''),"
      " (1, '/alice.secret@example.org/book/own-bob-private.vcf', 'e2', 'e2', NULL, 'h2', '',"
      "  'MATCH-SECRET-1,MATCH-SECRET-2'),"
      " (2, '/dave/bob-private-2.vcf', 'e3', '', 'uid-SECRETKEY-2', 'h3', '', '');"
      "INSERT INTO snapshots (rule, fingerprint, source_version, self_keys) VALUES"
      " ('company', 'fp-1', 'v-1', 'alice.secret@example.org' || char(9) || 'uid-SELF-SECRET' ||"
      "  char(10) || 'dave.secret@example.org' || char(9) || char(10));"
      "INSERT INTO snapshot_items (rule, key, hash) VALUES"
      " ('company', 'uid-SECRETKEY', 'h1'), ('company', 'uid-SECRETKEY-2', 'h3');"
      "INSERT INTO runs (id, mode, started_at, finished_at, exit_code) VALUES"
      " (1, 'sync', '2024-01-01T00:00:00Z', '2024-01-01T00:01:00Z', 1),"
      " (2, 'sync', '2024-01-02T00:00:00Z', NULL, NULL);"
      "INSERT INTO run_results (run_id, rule, target, user, created, updated, deleted, unchanged,"
      " conflicts, errors, adopted, message, skipped) VALUES"
      " (1, 'company', 'dav', 'alice.secret@example.org', 1, 2, 3, 4, 5, 6, 7,"
      "  'failed for carol.secret@example.org', 8),"
      " (2, 'company', 'dav', 'dave.secret@example.org', 0, 0, 0, 9, 0, 0, 0, '', 0);"
      "INSERT INTO source_cursors (source, cursor) VALUES"
      " ('gal', 'https://graph/delta?token=SECRETDELTA');";
  RawDb db(path);
  db.Exec(sql);
}

// Every plaintext WriteVersion4File wrote that names or identifies someone.
const std::vector<std::string> kVersion4Secrets = {"alice.secret@example.org",
                                                   "dave.secret@example.org",
                                                   "dav.example/alice",
                                                   "tok-SECRET-123",
                                                   "bob-private",
                                                   "uid-SECRETKEY",
                                                   "FIELD-SECRET",
                                                   "MATCH-SECRET",
                                                   "uid-SELF-SECRET",
                                                   "carol.secret@example.org",
                                                   "SECRETDELTA"};

// Every value of WriteVersion4File, read back through the interface.
void ExpectVersion4Content(StateStore& store) {
  auto list = store.ListCollections("company");
  ASSERT_TRUE(list.ok()) << list.error().message;
  std::vector<std::string> collections;
  for (const auto& [key, state] : *list) collections.push_back(Str(key, state));
  EXPECT_EQ(collections,
            (std::vector<std::string>{
                "company/dav/alice.secret@example.org | id 1 | url "
                "https://dav.example/alice.secret@example.org/book/ | token tok-SECRET-123 | "
                "synced fp-1",
                "company/dav/dave.secret@example.org | id 2 | url  | token  | synced "}));
  auto alice = store.FindCollection({"company", "dav", "alice.secret@example.org"});
  ASSERT_TRUE(alice.ok()) << alice.error().message;
  EXPECT_EQ(alice->id, 1);
  EXPECT_EQ(alice->sync_token, "tok-SECRET-123");

  const ItemState managed{"/alice.secret@example.org/book/bob-private.vcf",
                          "e1",
                          "e1",
                          "uid-SECRETKEY",
                          "h1",
                          "note=FIELD-SECRET",
                          ""};
  const ItemState own{"/alice.secret@example.org/book/own-bob-private.vcf",
                      "e2",
                      "e2",
                      "",
                      "h2",
                      "",
                      "MATCH-SECRET-1,MATCH-SECRET-2"};
  auto items = store.LoadItems(1);
  ASSERT_TRUE(items.ok()) << items.error().message;
  EXPECT_EQ(Strs(*items), (std::vector<std::string>{Str(managed), Str(own)}));
  // The blind indexes the migration made find what they index.
  auto by_key = store.LoadItemsByKeys(1, {"uid-SECRETKEY", "uid-SECRETKEY-2"});
  ASSERT_TRUE(by_key.ok()) << by_key.error().message;
  EXPECT_EQ(Strs(*by_key), (std::vector<std::string>{Str(managed)}));
  auto dave_items = store.LoadItemsByKeys(2, {"uid-SECRETKEY-2"});
  ASSERT_TRUE(dave_items.ok()) << dave_items.error().message;
  EXPECT_EQ(Strs(*dave_items),
            (std::vector<std::string>{Str(
                ItemState{"/dave/bob-private-2.vcf", "e3", "", "uid-SECRETKEY-2", "h3", "", ""})}));
  EXPECT_EQ(*store.CountManaged(1), 1);
  auto unmanaged = store.LoadUnmanaged(1);
  ASSERT_TRUE(unmanaged.ok()) << unmanaged.error().message;
  EXPECT_EQ(Strs(*unmanaged), (std::vector<std::string>{Str(own)}));

  auto snap = store.LoadSnapshot("company");
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  EXPECT_EQ(snap->fingerprint, "fp-1");
  EXPECT_EQ(snap->source_version, "v-1");
  ASSERT_EQ(snap->entries.size(), 2u);
  EXPECT_EQ(snap->entries[0].key, "uid-SECRETKEY");
  EXPECT_EQ(snap->entries[0].hash, "h1");
  EXPECT_EQ(snap->entries[1].key, "uid-SECRETKEY-2");
  EXPECT_EQ(snap->entries[1].hash, "h3");
  EXPECT_EQ(snap->self_keys,
            (std::map<std::string, std::string>{{"alice.secret@example.org", "uid-SELF-SECRET"},
                                                {"dave.secret@example.org", ""}}));
  EXPECT_EQ(*store.LoadSourceCursor("gal"), "https://graph/delta?token=SECRETDELTA");

  auto last = store.LastResults();
  ASSERT_TRUE(last.ok()) << last.error().message;
  EXPECT_EQ(Strs(*last), (std::vector<std::string>{
                             "company/dav/alice.secret@example.org | run 1 sync exit 1 | "
                             "1c 2u 3d 4n 5x 6e 7a 8s | failed for carol.secret@example.org",
                             "company/dav/dave.secret@example.org | run 2 sync exit -1 | "
                             "0c 0u 0d 9n 0x 0e 0a 0s | "}));
  if (last->size() == 2) {
    EXPECT_EQ((*last)[0].started_at, "2024-01-01T00:00:00Z");
    EXPECT_EQ((*last)[0].finished_at, "2024-01-01T00:01:00Z");
  }
}

// Throws at the named failpoint; disarmed when it goes out of scope, so that
// a failed assertion cannot leave it armed for the tests after.
struct Crash {
  std::string at;
};
class CrashAt {
 public:
  explicit CrashAt(std::string name) {
    SetFailpointHandlerForTest([name = std::move(name)](std::string_view hit) {
      if (hit == name) throw Crash{std::string(hit)};
    });
  }
  ~CrashAt() { SetFailpointHandlerForTest(nullptr); }
  CrashAt(const CrashAt&) = delete;
  CrashAt& operator=(const CrashAt&) = delete;
};

// A folder removed at the end of the test, and the key of its state.
class StateFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("roster-state-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "roster.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<StateStore> OpenStore() { return Open(path_, key_); }

  // Every file in the folder with its size and a hash of its bytes: what
  // "changed nothing" compares.
  std::map<std::string, std::string> Files() const {
    std::map<std::string, std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      std::ifstream in(e.path(), std::ios::binary);
      std::string bytes(std::istreambuf_iterator<char>(in), {});
      out[e.path().filename().string()] = std::to_string(bytes.size()) + " bytes, hash " +
                                          std::to_string(std::hash<std::string>()(bytes));
    }
    return out;
  }

  // The bytes of the state file and of its -wal and -shm, those that exist.
  std::map<std::string, std::string> StateBytes() const {
    std::map<std::string, std::string> out;
    for (const char* suffix : {"", "-wal", "-shm"}) {
      const std::string file = path_ + suffix;
      if (!std::filesystem::exists(file)) continue;
      std::ifstream in(file, std::ios::binary);
      out[file] = std::string(std::istreambuf_iterator<char>(in), {});
    }
    return out;
  }

  // No byte on disk spells any of `secrets`, nor (in any case) the word
  // "secret" that every one of them holds.
  void ExpectNoPlaintextOnDisk(const std::vector<std::string>& secrets) const {
    const auto files = StateBytes();
    ASSERT_FALSE(files.empty());
    for (const auto& [file, bytes] : files) {
      for (const std::string& secret : secrets) {
        EXPECT_EQ(bytes.find(secret), std::string::npos) << file << " holds " << secret;
      }
      EXPECT_EQ(Lower(bytes).find("secret"), std::string::npos) << file << " holds \"secret\"";
    }
  }

  // Whether any byte on disk spells `text`: the control that shows that the
  // scan above sees what the store wrote.
  bool OnDisk(const std::string& text) const {
    for (const auto& [file, bytes] : StateBytes()) {
      if (bytes.find(text) != std::string::npos) return true;
    }
    return false;
  }

  std::filesystem::path dir_;
  std::string path_;
  crypto::Key key_ = crypto::GenerateKey();
};

TEST_F(StateFiles, ADryRunCreatesNothingAndChangesNothing) {
  {
    auto missing = OpenSqliteStateStoreForReading(path_, key_);
    ASSERT_TRUE(missing.ok()) << missing.error().message;
    EXPECT_FALSE((*missing)->FindCollection({"r", "t", "u"}).ok());
  }
  EXPECT_TRUE(Files().empty()) << "a plan created the state file";
  {
    auto store = OpenStore();
    auto c = store->OpenCollection({"r", "t", "u"});
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(store->ApplyListing(c->id, {{"/a.vcf", "e1"}}, {}, {}, "tok", "fp").ok());
  }
  auto before = Files();
  {
    auto store = OpenSqliteStateStoreForReading(path_, key_);
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto c = (*store)->FindCollection({"r", "t", "u"});
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->sync_token, "tok");
    EXPECT_EQ(c->synced_snapshot, "fp");
    EXPECT_FALSE((*store)->SetSyncToken(c->id, "other").ok());  // refused, not written
  }
  EXPECT_EQ(Files(), before);
}

// Retention: runs older than the limit go with their results and messages,
// from the database file and its WAL alike; newer ones stay.
TEST_F(StateFiles, OldRunsArePrunedAndTheirMessagesAreGoneFromDisk) {
  const std::string old_message = "old-error-about-alice@example.org";
  {
    auto store = OpenStore();
    ASSERT_TRUE(store->OpenCollection({"r", "t", "alice"}).ok());
    auto old_run = store->BeginRun("sync");
    ASSERT_TRUE(old_run.ok());
    TargetRunResult result{{"r", "t", "alice"}, {}, old_message};
    ASSERT_TRUE(store->RecordResult(*old_run, result).ok());
    ASSERT_TRUE(store->FinishRun(*old_run, 1).ok());
    // Backdate it 100 days, from outside the store.
    RawDb(path_).Exec("UPDATE runs SET started_at = '2000-01-01T00:00:00Z'");
    auto new_run = store->BeginRun("sync");
    ASSERT_TRUE(new_run.ok());
    result.message = "";
    result.counts.created = 3;
    ASSERT_TRUE(store->RecordResult(*new_run, result).ok());

    auto pruned = store->PruneRuns(std::chrono::hours(24) * 60);
    ASSERT_TRUE(pruned.ok()) << pruned.error().message;
    EXPECT_EQ(*pruned, 1);
    auto last = store->LastResults();
    ASSERT_TRUE(last.ok());
    ASSERT_EQ(last->size(), 1u);
    EXPECT_EQ((*last)[0].run_id, *new_run);
    EXPECT_EQ(*store->PruneRuns(std::chrono::hours(24) * 60), 0);  // nothing more is old
    // Gone while the store is still open (closing would checkpoint anyway).
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      std::ifstream in(e.path(), std::ios::binary);
      std::string bytes(std::istreambuf_iterator<char>(in), {});
      EXPECT_EQ(bytes.find(old_message), std::string::npos) << e.path() << " still holds it";
    }
  }
}

// Pruning gives the freed pages back: the file shrinks and keeps no free
// page (incremental auto-vacuum, on new files and on migrated ones).
TEST_F(StateFiles, PruningShrinksTheFile) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 300; ++i) {
    auto run = store->BeginRun("sync");
    ASSERT_TRUE(run.ok());
    TargetRunResult result{{"r", "t", "user" + std::to_string(i)}, {}, std::string(2000, 'm')};
    ASSERT_TRUE(store->RecordResult(*run, result).ok());
  }
  ASSERT_TRUE(store->PruneRuns(std::chrono::hours(1)).ok());  // checkpoints: the file is whole
  const auto full = std::filesystem::file_size(path_);
  RawDb(path_).Exec("UPDATE runs SET started_at = '2000-01-01T00:00:00Z'");
  auto pruned = store->PruneRuns(std::chrono::hours(24));
  ASSERT_TRUE(pruned.ok()) << pruned.error().message;
  EXPECT_EQ(*pruned, 300);
  EXPECT_LT(std::filesystem::file_size(path_), full / 4);
  RawDb db(path_);
  EXPECT_EQ(db.One("PRAGMA auto_vacuum"), "2");  // incremental
  EXPECT_EQ(db.One("PRAGMA freelist_count"), "0");
}

TEST_F(StateFiles, AVersion1FileIsMigratedByASyncAndRefusedByAPlan) {
  ASSERT_EQ(Migrations().front().version, 1);
  WriteVersion1File(path_);
  auto before = Files();
  auto plan = OpenSqliteStateStoreForReading(path_, key_);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message.find("roster sync` upgrades it"), std::string::npos)
      << plan.error().message;
  EXPECT_EQ(Files(), before);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto c = store->FindCollection({"company", "dav", "alice"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->url, "http://h/alice/b/");
  EXPECT_EQ(c->sync_token, "tok1");
  EXPECT_EQ(c->synced_snapshot, "");  // the next run plans the book in full
  auto items = store->LoadItems(c->id);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 2u);
  EXPECT_EQ((*items)[1].key, "k1");
  EXPECT_TRUE((*items)[1].known());   // roster's own card stays known
  EXPECT_FALSE((*items)[0].known());  // the user's card is read once more for its e-mail hashes
  store.reset();
  ExpectNoPlaintextOnDisk({"alice/b/", "tok1", "x.vcf", "own.vcf"});
}

TEST_F(StateFiles, LoosePermissionsAreTightenedWithAWarning) {
  { OpenStore(); }
  chmod(path_.c_str(), 0644);
  auto store = OpenStore();
  auto warnings = store->TakeWarnings();
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("had mode 0644"), std::string::npos) << warnings[0];
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st {};
    if (stat((path_ + suffix).c_str(), &st) == 0) {
      EXPECT_EQ(st.st_mode & 077, 0u) << suffix;
    }
  }
}

TEST_F(StateFiles, AFileIsNeverOpenedWithoutItsKey) {
  auto store = OpenSqliteStateStore(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().kind, ErrorKind::kInvalidArgument);
  EXPECT_NE(store.error().message.find(path_), std::string::npos) << store.error().message;
  EXPECT_TRUE(Files().empty());
}

TEST_F(StateFiles, InspectionTellsMissingPlainAndSealedFilesApart) {
  EXPECT_EQ(*InspectStateFile((dir_ / "nowhere" / "roster.db").string()), StateFileKind::kMissing);
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kMissing);
  { std::ofstream(path_, std::ios::binary); }  // empty: nothing sealed in it yet
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kPlain);
  std::filesystem::remove(path_);
  WriteVersion1File(path_);
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kPlain);
  ASSERT_NE(OpenStore(), nullptr);
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kSealed);
  auto fresh = (dir_ / "fresh.db").string();
  ASSERT_NE(Open(fresh, key_), nullptr);
  EXPECT_EQ(*InspectStateFile(fresh), StateFileKind::kSealed);
  // Looking changes nothing.
  const auto before = Files();
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kSealed);
  EXPECT_EQ(Files(), before);
}

// ---- the state is sealed ----

const CollectionKey kAlice{"company", "dav", "alice.secret@example.org"};
const CollectionKey kAlan{"company", "dav", "alan.secret@example.org"};
const CollectionKey kZed{"company", "carddav", "zed.secret@example.org"};
const std::string kAliceUrl = "https://dav.example/alice.secret@example.org/book/";

// What Fill writes that names or identifies someone.
const std::vector<std::string> kFilledSecrets = {"alice.secret@example.org",
                                                 "alan.secret@example.org",
                                                 "zed.secret@example.org",
                                                 "erin.secret@example.org",
                                                 "carol.secret@example.org",
                                                 "dav.example/alice",
                                                 "tok-SECRET-123",
                                                 "tok-SECRET-zed",
                                                 "bob-private",
                                                 "uid-SECRETKEY",
                                                 "FIELD-SECRET",
                                                 "MATCH-SECRET",
                                                 "SECRETDELTA",
                                                 "Dana Cached-SECRET",
                                                 "cache-SECRETKEY"};

// What Fill puts in the source cache of "ldap".
const std::vector<CachedRecord> kCached = {
    {"cache-SECRETKEY-1", "csn-1", "Dana Cached-SECRET, +44 20 7946 0001"},
    {"cache-SECRETKEY-2", "csn-2", std::string("binary\0\x01 record", 15)}};

// The items of alice's collection, sorted by href.
std::vector<ItemState> AliceItems() {
  return {{"/book/bob-private-0-own.vcf", "e0", "e0", "", "hash-0", "",
           "MATCH-SECRET-a,MATCH-SECRET-b"},
          {"/book/bob-private-1.vcf", "e1", "e1", "uid-SECRETKEY-1", "hash-1", "", ""},
          {"/book/bob-private-2.vcf", "etag-VISIBLE-2", "etag-VISIBLE-2", "uid-SECRETKEY-2",
           "hash-2", "note=FIELD-SECRET", ""},
          {"/book/bob-private-3.vcf", "e3", "", "", "", "", ""}};
}

const Snapshot kSnapshot{
    "fp-1",
    {{"uid-SECRETKEY-1", "hash-1"}, {"uid-SECRETKEY-2", "hash-2"}},
    "v-1",
    {{"alice.secret@example.org", "uid-SECRETKEY-1"}, {"erin.secret@example.org", ""}}};

// A state that names people wherever the store keeps a personal datum.
void Fill(StateStore& store) {
  auto alice = store.OpenCollection(kAlice);
  auto zed = store.OpenCollection(kZed);
  auto alan = store.OpenCollection(kAlan);
  ASSERT_TRUE(alice.ok() && zed.ok() && alan.ok());
  ASSERT_TRUE(store.SetCollectionUrl(alice->id, kAliceUrl).ok());
  const std::vector<ItemState> items = AliceItems();
  // Out of href order on purpose; one only seen, one put on its own.
  ASSERT_TRUE(store
                  .ApplyListing(alice->id, {{items[3].href, items[3].etag_seen}}, {},
                                {items[2], items[1]}, "tok-SECRET-123", "fp-1")
                  .ok());
  ASSERT_TRUE(store.PutItem(alice->id, items[0]).ok());
  ASSERT_TRUE(store.SetSyncToken(zed->id, "tok-SECRET-zed").ok());
  ASSERT_TRUE(store.SaveSnapshot("company", kSnapshot).ok());
  ASSERT_TRUE(store.SaveSourceCursor("gal", "https://graph/delta?token=SECRETDELTA").ok());
  ASSERT_TRUE(store.UpdateSourceCache("ldap", "shape-1", /*replace=*/true, kCached, {}).ok());
  auto run = store.BeginRun("sync");
  ASSERT_TRUE(run.ok());
  TargetRunResult result{kAlice, {}, "failed for carol.secret@example.org"};
  result.counts.created = 2;
  result.counts.errors = 1;
  ASSERT_TRUE(store.RecordResult(*run, result).ok());
  result = {kZed, {}, ""};
  result.counts.unchanged = 4;
  ASSERT_TRUE(store.RecordResult(*run, result).ok());
  result = {kAlan, {}, ""};
  result.counts.adopted = 1;
  result.counts.skipped = 2;
  ASSERT_TRUE(store.RecordResult(*run, result).ok());
  ASSERT_TRUE(store.FinishRun(*run, 1).ok());
}

// Everything Fill wrote, read back.
void ExpectFilled(StateStore& store) {
  auto list = store.ListCollections("company");
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 3u);
  std::vector<std::string> collections;
  for (const auto& [key, state] : *list) collections.push_back(Str(key, state));
  // Sorted by (target, user), whatever order the blind indexes keep them in.
  EXPECT_EQ(collections,
            (std::vector<std::string>{
                "company/carddav/zed.secret@example.org | id 2 | url  | token tok-SECRET-zed | "
                "synced ",
                "company/dav/alan.secret@example.org | id 3 | url  | token  | synced ",
                "company/dav/alice.secret@example.org | id 1 | url " + kAliceUrl +
                    " | token tok-SECRET-123 | synced fp-1"}));
  for (const auto& [key, state] : *list) {
    auto found = store.FindCollection(key);
    ASSERT_TRUE(found.ok()) << found.error().message;
    EXPECT_EQ(Str(key, *found), Str(key, state));
  }

  auto items = store.LoadItems(1);
  ASSERT_TRUE(items.ok()) << items.error().message;
  EXPECT_EQ(Strs(*items), Strs(AliceItems()));
  auto by_key = store.LoadItemsByKeys(1, {"uid-SECRETKEY-2", "nobody", "uid-SECRETKEY-1"});
  ASSERT_TRUE(by_key.ok()) << by_key.error().message;
  std::vector<std::string> found = Strs(*by_key);
  std::sort(found.begin(), found.end());
  EXPECT_EQ(found, (std::vector<std::string>{Str(AliceItems()[1]), Str(AliceItems()[2])}));
  EXPECT_EQ(*store.CountManaged(1), 2);
  EXPECT_EQ(*store.CountManaged(1, 1), 1) << "counted only as far as asked";
  EXPECT_EQ(*store.CountManaged(1, 5), 2);
  auto unmanaged = store.LoadUnmanaged(1);
  ASSERT_TRUE(unmanaged.ok()) << unmanaged.error().message;
  EXPECT_EQ(Strs(*unmanaged), (std::vector<std::string>{Str(AliceItems()[0])}));
  EXPECT_TRUE(store.LoadItems(2)->empty());

  auto snap = store.LoadSnapshot("company");
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  EXPECT_EQ(snap->fingerprint, kSnapshot.fingerprint);
  EXPECT_EQ(snap->source_version, kSnapshot.source_version);
  EXPECT_EQ(snap->self_keys, kSnapshot.self_keys);
  ASSERT_EQ(snap->entries.size(), kSnapshot.entries.size());
  for (size_t i = 0; i < snap->entries.size(); ++i) {
    EXPECT_EQ(snap->entries[i].key, kSnapshot.entries[i].key);
    EXPECT_EQ(snap->entries[i].hash, kSnapshot.entries[i].hash);
  }
  EXPECT_EQ(*store.LoadSourceCursor("gal"), "https://graph/delta?token=SECRETDELTA");
  auto cache = store.LoadSourceCache("ldap", "shape-1", std::chrono::hours(1));
  ASSERT_TRUE(cache.ok()) << cache.error().message;
  EXPECT_TRUE(cache->shape_matches);
  EXPECT_EQ(cache->expired, 0);
  ASSERT_EQ(cache->records.size(), kCached.size());
  for (size_t i = 0; i < kCached.size(); ++i) {
    EXPECT_EQ(cache->records[i].key, kCached[i].key);
    EXPECT_EQ(cache->records[i].stamp, kCached[i].stamp);
    EXPECT_EQ(cache->records[i].record, kCached[i].record);
  }

  auto last = store.LastResults();
  ASSERT_TRUE(last.ok()) << last.error().message;
  ASSERT_EQ(last->size(), 3u);
  const std::string run = std::to_string((*last)[0].run_id);
  EXPECT_EQ(Strs(*last),
            (std::vector<std::string>{"company/carddav/zed.secret@example.org | run " + run +
                                          " sync exit 1 | 0c 0u 0d 4n 0x 0e 0a 0s | ",
                                      "company/dav/alan.secret@example.org | run " + run +
                                          " sync exit 1 | 0c 0u 0d 0n 0x 0e 1a 2s | ",
                                      "company/dav/alice.secret@example.org | run " + run +
                                          " sync exit 1 | 2c 0u 0d 0n 0x 1e 0a 0s | "
                                          "failed for carol.secret@example.org"}));
  EXPECT_FALSE((*last)[0].finished_at.empty());
}

// No personal datum reaches the disk in plaintext, not even in the WAL while
// the store is open; everything reads back as it was written.
TEST_F(StateFiles, NoPersonalDatumReachesTheDiskInPlaintext) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Fill(*store);
    ExpectNoPlaintextOnDisk(kFilledSecrets);  // the WAL, while the store is open
    ExpectFilled(*store);
  }
  ExpectNoPlaintextOnDisk(kFilledSecrets);
  // The scan sees what the store wrote: what is not sealed is there to find.
  EXPECT_TRUE(OnDisk("etag-VISIBLE-2"));
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExpectFilled(*store);
}

TEST_F(StateFiles, AVersion4FileIsSealedByASyncAndRebuilt) {
  WriteVersion4File(path_);
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kPlain);
  for (const std::string& secret : kVersion4Secrets) {
    EXPECT_TRUE(OnDisk(secret)) << "the version-4 file should hold " << secret;
  }
  auto before = Files();
  auto plan = OpenSqliteStateStoreForReading(path_, key_);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message.find("`roster sync` upgrades it"), std::string::npos)
      << plan.error().message;
  EXPECT_EQ(Files(), before);  // a plan changes nothing

  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ExpectVersion4Content(*store);
  }
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kSealed);
  ExpectNoPlaintextOnDisk(kVersion4Secrets);
  EXPECT_TRUE(OnDisk("fp-1"));  // the scan sees the file: what is not sealed stays
  {
    RawDb db(path_);
    EXPECT_EQ(db.One("SELECT MAX(version) FROM schema_version"), "7");
    EXPECT_EQ(db.Column("SELECT name FROM sqlite_master WHERE name LIKE '%v4%'"),
              std::vector<std::string>{});
    EXPECT_EQ(db.Column("SELECT name FROM state_meta ORDER BY name"),
              (std::vector<std::string>{"index_check", "key_check"}));  // rebuilt: no mark
  }
  // Once sealed, a plan reads it, and a sync opens it without migrating again.
  {
    auto plan_after = OpenSqliteStateStoreForReading(path_, key_);
    ASSERT_TRUE(plan_after.ok()) << plan_after.error().message;
    ExpectVersion4Content(**plan_after);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExpectVersion4Content(*store);
}

// How many of the blind indexes in the file are not 16-byte BLOBs.
std::string IndexesNotBytes(RawDb& db) {
  return db.One(
      "SELECT (SELECT COUNT(*) FROM collections WHERE typeof(user_ix) != 'blob' "
      "OR length(user_ix) != 16) + "
      "(SELECT COUNT(*) FROM run_results WHERE typeof(user_ix) != 'blob' "
      "OR length(user_ix) != 16) + "
      "(SELECT COUNT(*) FROM items WHERE typeof(href_ix) != 'blob' OR length(href_ix) != 16 "
      "OR (key_ix IS NOT NULL AND (typeof(key_ix) != 'blob' OR length(key_ix) != 16))) + "
      "(SELECT COUNT(*) FROM source_cache WHERE typeof(key_ix) != 'blob' "
      "OR length(key_ix) != 16)");
}

// Version 6 kept blind indexes as 32 hex characters; version 7 keeps their
// 16 bytes (a smaller file, fewer pages per lookup). The migration converts
// every one in place and nothing needs sealing again.
TEST_F(StateFiles, AVersion6FileGetsItsBlindIndexesAsBytes) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Fill(*store);
  }
  std::string unmanaged;
  {
    RawDb db(path_);
    EXPECT_EQ(IndexesNotBytes(db), "0");
    unmanaged = db.One("SELECT COUNT(*) FROM items WHERE key_ix IS NULL");
    EXPECT_NE(unmanaged, "0");  // items roster does not manage keep a NULL key index
    // Back to what version 6 wrote.
    db.Exec("UPDATE collections SET user_ix = lower(hex(user_ix))");
    db.Exec("UPDATE run_results SET user_ix = lower(hex(user_ix))");
    db.Exec(
        "UPDATE items SET href_ix = lower(hex(href_ix)), "
        "key_ix = CASE WHEN key_ix IS NULL THEN NULL ELSE lower(hex(key_ix)) END");
    db.Exec("UPDATE source_cache SET key_ix = lower(hex(key_ix))");
    db.Exec("DELETE FROM schema_version WHERE version = 7");
    EXPECT_NE(IndexesNotBytes(db), "0");
  }
  auto plan = OpenSqliteStateStoreForReading(path_, key_);
  ASSERT_FALSE(plan.ok());  // a plan does not migrate
  EXPECT_NE(plan.error().message.find("schema version 6"), std::string::npos)
      << plan.error().message;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ExpectFilled(*store);
  }
  RawDb db(path_);
  EXPECT_EQ(db.One("SELECT MAX(version) FROM schema_version"), "7");
  EXPECT_EQ(IndexesNotBytes(db), "0");
  EXPECT_EQ(db.One("SELECT COUNT(*) FROM items WHERE key_ix IS NULL"), unmanaged);
  EXPECT_EQ(db.Column("SELECT name FROM state_meta ORDER BY name"),
            (std::vector<std::string>{"index_check", "key_check"}));  // rebuilt: no mark
}

// A blind index that is not hex stops the migration; the file stays at
// version 6 and readable by the roster that wrote it.
TEST_F(StateFiles, ABlindIndexThatIsNotHexStopsTheMigration) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Fill(*store);
  }
  {
    RawDb db(path_);
    db.Exec("UPDATE collections SET user_ix = 'zz' || lower(hex(user_ix))");
    db.Exec("DELETE FROM schema_version WHERE version = 7");
  }
  auto store = OpenSqliteStateStore(path_, key_);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("migration 007-blob-indexes.sql failed"), std::string::npos)
      << store.error().message;
  EXPECT_NE(store.error().message.find("not hex"), std::string::npos) << store.error().message;
  RawDb db(path_);
  EXPECT_EQ(db.One("SELECT MAX(version) FROM schema_version"), "6");
}

TEST_F(StateFiles, AStateSealedUnderAnotherKeyIsRefused) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Fill(*store);
  }
  const crypto::Key other = crypto::GenerateKey();
  auto sync = OpenSqliteStateStore(path_, other);
  auto plan = OpenSqliteStateStoreForReading(path_, other);
  // The index master kept, the sealing master not (a rotation ended before
  // anything was sealed again): refused as well, by the sealing check.
  auto ended = crypto::BeginRotation(key_);
  ASSERT_TRUE(ended.ok()) << ended.error().message;
  auto sealing_only = OpenSqliteStateStore(path_, crypto::FinishRotation(*ended));
  for (const auto* refused : {&sync, &plan, &sealing_only}) {
    ASSERT_FALSE(refused->ok());
    const Error& e = refused->error();
    EXPECT_EQ(e.kind, ErrorKind::kInvalidArgument) << e.message;
    EXPECT_TRUE(e.credential_refused) << e.message;
    EXPECT_NE(e.message.find("sealed under another key"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find(path_), std::string::npos) << e.message;
    ExpectNoSecretIn(e.message, kFilledSecrets);
  }
  EXPECT_NE(sync.error().message.find("index key"), std::string::npos) << sync.error().message;
  EXPECT_NE(sealing_only.error().message.find("sealing key"), std::string::npos)
      << sealing_only.error().message;

  // The refusals changed nothing: the right key still reads it all.
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ExpectFilled(*store);
  }
  // During a rotation the previous sealing key still opens what it sealed,
  // beside what the new one seals.
  auto rotated = crypto::BeginRotation(key_);
  ASSERT_TRUE(rotated.ok()) << rotated.error().message;
  {
    auto store = Open(path_, *rotated);
    ASSERT_NE(store, nullptr);
    ExpectFilled(*store);
    ASSERT_TRUE(store->SaveSourceCursor("other", "https://graph/delta?token=ROTATED").ok());
  }
  {
    auto store = Open(path_, *rotated);
    ASSERT_NE(store, nullptr);
    ExpectFilled(*store);
    EXPECT_EQ(*store->LoadSourceCursor("other"), "https://graph/delta?token=ROTATED");
  }
  auto plan_rotated = OpenSqliteStateStoreForReading(path_, *rotated);
  ASSERT_TRUE(plan_rotated.ok()) << plan_rotated.error().message;
  ExpectFilled(**plan_rotated);
}

// A sealed value moved to another row or column, or changed by one byte, no
// longer opens: the read fails (kInvalidData) without showing the plaintext.
TEST_F(StateFiles, ASealedValueChangedOrMovedOutsideRosterIsRefused) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Fill(*store);
  RawDb db(path_);
  auto expect_refused = [&](const auto& result, const std::string& what) {
    ASSERT_FALSE(result.ok()) << what << " was read";
    EXPECT_EQ(result.error().kind, ErrorKind::kInvalidData)
        << what << ": " << result.error().message;
    EXPECT_FALSE(result.error().message.empty());
    ExpectNoSecretIn(result.error().message, kFilledSecrets);
  };
  const std::string alice_user = db.One("SELECT user FROM collections WHERE id = 1");
  const std::string alan_user = db.One("SELECT user FROM collections WHERE id = 3");
  const std::string alice_url = db.One("SELECT url FROM collections WHERE id = 1");
  const std::string alice_token = db.One("SELECT sync_token FROM collections WHERE id = 1");
  ASSERT_FALSE(alice_user.empty() || alan_user.empty() || alice_url.empty());
  ASSERT_EQ(alice_url.find(kAliceUrl), std::string::npos);  // sealed, not plain

  // Two users' sealed names swapped.
  db.ExecWithBlob("UPDATE collections SET user = ? WHERE id = 1", alan_user);
  db.ExecWithBlob("UPDATE collections SET user = ? WHERE id = 3", alice_user);
  expect_refused(store->ListCollections("company"), "swapped users");
  db.ExecWithBlob("UPDATE collections SET user = ? WHERE id = 1", alice_user);
  db.ExecWithBlob("UPDATE collections SET user = ? WHERE id = 3", alan_user);
  ASSERT_TRUE(store->ListCollections("company").ok());  // put back, it opens again

  // One byte of a sealed URL flipped.
  std::string flipped = alice_url;
  flipped[flipped.size() / 2] ^= 0x01;
  db.ExecWithBlob("UPDATE collections SET url = ? WHERE id = 1", flipped);
  expect_refused(store->FindCollection(kAlice), "a flipped url");
  expect_refused(store->ListCollections("company"), "a flipped url");
  db.ExecWithBlob("UPDATE collections SET url = ? WHERE id = 1", alice_url);
  ASSERT_TRUE(store->FindCollection(kAlice).ok());

  // A sealed URL copied into another row, and into another column.
  db.ExecWithBlob("UPDATE collections SET url = ? WHERE id = 3", alice_url);
  expect_refused(store->FindCollection(kAlan), "a url from another row");
  db.Exec("UPDATE collections SET url = '' WHERE id = 3");
  db.ExecWithBlob("UPDATE collections SET sync_token = ? WHERE id = 1", alice_url);
  expect_refused(store->FindCollection(kAlice), "a url as sync token");
  db.ExecWithBlob("UPDATE collections SET sync_token = ? WHERE id = 1", alice_token);
  ASSERT_TRUE(store->FindCollection(kAlan).ok());
  ASSERT_TRUE(store->FindCollection(kAlice).ok());

  // Two collections' ids swapped: each user's seals are bound to the id, so
  // one user's items cannot silently become another's.
  db.Exec("PRAGMA foreign_keys=OFF");
  db.Exec("UPDATE collections SET id = -1 WHERE id = 1");
  db.Exec("UPDATE collections SET id = 1 WHERE id = 3");
  db.Exec("UPDATE collections SET id = 3 WHERE id = -1");
  expect_refused(store->FindCollection(kAlice), "swapped collection ids");
  expect_refused(store->ListCollections("company"), "swapped collection ids");
  db.Exec("UPDATE collections SET id = -1 WHERE id = 1");
  db.Exec("UPDATE collections SET id = 1 WHERE id = 3");
  db.Exec("UPDATE collections SET id = 3 WHERE id = -1");
  ASSERT_TRUE(store->ListCollections("company").ok());

  // Two items' sealed hrefs swapped, and a row moved to another collection.
  const std::vector<std::string> ix =
      db.Column("SELECT hex(href_ix) FROM items WHERE collection_id = 1");
  ASSERT_EQ(ix.size(), 4u);
  const std::string href0 = db.One("SELECT sealed FROM items WHERE href_ix = X'" + ix[0] + "'");
  const std::string href1 = db.One("SELECT sealed FROM items WHERE href_ix = X'" + ix[1] + "'");
  db.ExecWithBlob("UPDATE items SET sealed = ? WHERE href_ix = X'" + ix[0] + "'", href1);
  db.ExecWithBlob("UPDATE items SET sealed = ? WHERE href_ix = X'" + ix[1] + "'", href0);
  expect_refused(store->LoadItems(1), "swapped hrefs");
  db.ExecWithBlob("UPDATE items SET sealed = ? WHERE href_ix = X'" + ix[0] + "'", href0);
  db.ExecWithBlob("UPDATE items SET sealed = ? WHERE href_ix = X'" + ix[1] + "'", href1);
  ASSERT_TRUE(store->LoadItems(1).ok());
  db.Exec(
      "INSERT INTO items SELECT 3, href_ix, etag_seen, etag, key_ix, hash, adoptable, sealed "
      "FROM items WHERE collection_id = 1");
  expect_refused(store->LoadItems(3), "items copied into another collection");

  // A run message and a snapshot's self keys copied to another rule or row.
  db.Exec(
      "INSERT INTO snapshots SELECT 'other', fingerprint, source_version, self_keys, entries "
      "FROM snapshots WHERE rule = 'company'");
  expect_refused(store->LoadSnapshot("other"), "self keys from another rule");
  db.Exec(
      "INSERT INTO source_cursors SELECT 'other', cursor FROM source_cursors "
      "WHERE source = 'gal'");
  expect_refused(store->LoadSourceCursor("other"), "a cursor from another source");
  // One cached person's sealed record put in another's row, then into another source.
  const std::vector<std::string> cached = db.Column("SELECT hex(key_ix) FROM source_cache");
  ASSERT_EQ(cached.size(), 2u);
  const std::string record0 =
      db.One("SELECT sealed FROM source_cache WHERE key_ix = X'" + cached[0] + "'");
  const std::string record1 =
      db.One("SELECT sealed FROM source_cache WHERE key_ix = X'" + cached[1] + "'");
  db.ExecWithBlob("UPDATE source_cache SET sealed = ? WHERE key_ix = X'" + cached[1] + "'",
                  record0);
  expect_refused(store->LoadSourceCache("ldap", "shape-1", std::chrono::hours(1)),
                 "a cached record in another row");
  db.ExecWithBlob("UPDATE source_cache SET sealed = ? WHERE key_ix = X'" + cached[1] + "'",
                  record1);
  ASSERT_TRUE(store->LoadSourceCache("ldap", "shape-1", std::chrono::hours(1)).ok());
  db.Exec(
      "INSERT INTO source_cache SELECT 'other', key_ix, read_at, sealed FROM source_cache "
      "WHERE source = 'ldap'");
  db.Exec("INSERT INTO source_cache_shapes VALUES ('other', 'shape-1')");
  expect_refused(store->LoadSourceCache("other", "shape-1", std::chrono::hours(1)),
                 "a cache copied to another source");
  db.Exec(
      "UPDATE run_results SET message = (SELECT message FROM run_results WHERE message != '') "
      "WHERE message = ''");
  expect_refused(store->LastResults(), "a message from another result");
}

// An empty value is stored empty (nothing to seal), and reads back empty.
TEST_F(StateFiles, EmptyValuesStayEmpty) {
  const CollectionKey key{"r", "t", "erin.secret@example.org"};
  auto check = [&](StateStore& store) {
    auto c = store.FindCollection(key);
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->url, "");
    EXPECT_EQ(c->sync_token, "");
    EXPECT_EQ(c->synced_snapshot, "");
    auto items = store.LoadItems(c->id);
    ASSERT_TRUE(items.ok()) << items.error().message;
    ASSERT_EQ(items->size(), 1u);
    EXPECT_EQ(Str((*items)[0]), Str(ItemState{"/only-seen.vcf", "", "", "", "", "", ""}));
    EXPECT_FALSE((*items)[0].managed());
    EXPECT_FALSE((*items)[0].known());
    EXPECT_EQ(*store.CountManaged(c->id), 0);
    EXPECT_TRUE(store.LoadUnmanaged(c->id)->empty());
    EXPECT_TRUE(store.LoadItemsByKeys(c->id, {""})->empty());  // no key is no key at all
    auto snap = store.LoadSnapshot("r");
    ASSERT_TRUE(snap.ok()) << snap.error().message;
    EXPECT_EQ(snap->fingerprint, "fp");
    EXPECT_EQ(snap->source_version, "");
    EXPECT_TRUE(snap->self_keys.empty());
    ASSERT_EQ(snap->entries.size(), 1u);
    EXPECT_EQ(snap->entries[0].hash, "");
    EXPECT_EQ(*store.LoadSourceCursor("gal"), "");
    auto last = store.LastResults();
    ASSERT_TRUE(last.ok()) << last.error().message;
    ASSERT_EQ(last->size(), 1u);
    EXPECT_EQ((*last)[0].result.message, "");
    EXPECT_EQ((*last)[0].result.collection.user, key.user);
  };
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    auto c = store->OpenCollection(key);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(store->SetSyncToken(c->id, "tok-SECRET-1").ok());
    ASSERT_TRUE(store->SetSyncToken(c->id, "").ok());  // emptied, not kept
    ASSERT_TRUE(store->SetCollectionUrl(c->id, "").ok());
    ASSERT_TRUE(store->ApplyListing(c->id, {{"/only-seen.vcf", ""}}, {}, {}, "", "").ok());
    ASSERT_TRUE(store->SaveSnapshot("r", {"fp", {{"k", ""}}, "", {}}).ok());
    ASSERT_TRUE(store->SaveSourceCursor("gal", "").ok());
    auto run = store->BeginRun("sync");
    ASSERT_TRUE(run.ok());
    ASSERT_TRUE(store->RecordResult(*run, {key, {}, ""}).ok());
    check(*store);
  }
  {
    RawDb db(path_);
    // Stored empty, not sealed: an empty value is no longer than nothing.
    EXPECT_EQ(db.One("SELECT length(url) || ',' || length(sync_token) FROM collections"), "0,0");
    EXPECT_EQ(db.One("SELECT adoptable || ',' || (key_ix IS NULL) FROM items"), "0,1");
    EXPECT_EQ(db.One("SELECT length(self_keys) FROM snapshots"), "0");
    EXPECT_EQ(db.One("SELECT length(message) FROM run_results"), "0");
    EXPECT_EQ(db.One("SELECT COUNT(*) FROM source_cursors"), "0");
    // What is not empty is sealed: the user's name, the href, the key.
    EXPECT_EQ(db.One("SELECT typeof(user) FROM collections"), "blob");
    EXPECT_EQ(db.One("SELECT typeof(sealed) FROM items"), "blob");
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  check(*store);
}

// A crash inside the sealing migration (here a throw at its last failpoint,
// before the commit) leaves the version-4 state as it was; the next open
// seals it.
TEST_F(StateFiles, ACrashInTheSealingMigrationLeavesTheOldStateIntact) {
  WriteVersion4File(path_);
  {
    CrashAt crash("state-migration-before-commit");
    // The store object unwinds with the throw and closes its connection,
    // which rolls the open transaction back, as a crash would.
    EXPECT_THROW((void)OpenSqliteStateStore(path_, key_), Crash);
  }
  {
    RawDb db(path_);
    // Nobody holds the state's write lock any more: the connection is closed.
    EXPECT_TRUE(db.Exec("BEGIN IMMEDIATE; ROLLBACK;"));
    EXPECT_EQ(db.One("SELECT MAX(version) FROM schema_version"), "4");
    EXPECT_EQ(db.Column("SELECT name FROM sqlite_master WHERE name LIKE '%v4%' OR "
                        "name = 'state_meta'"),
              std::vector<std::string>{});
    EXPECT_EQ(db.Column("SELECT user FROM collections ORDER BY id"),
              (std::vector<std::string>{"alice.secret@example.org", "dave.secret@example.org"}));
    EXPECT_EQ(db.One("SELECT cursor FROM source_cursors"), "https://graph/delta?token=SECRETDELTA");
    EXPECT_EQ(db.One("SELECT COUNT(*) FROM items"), "3");
    EXPECT_EQ(db.One("SELECT message FROM run_results WHERE run_id = 1"),
              "failed for carol.secret@example.org");
  }
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kPlain);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ExpectVersion4Content(*store);
  }
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kSealed);
  ExpectNoPlaintextOnDisk(kVersion4Secrets);
}

// A crash after the sealing migration committed but before the file was
// rebuilt leaves the mark; the next open rebuilds it.
TEST_F(StateFiles, ACrashBeforeTheRebuildIsFinishedByTheNextOpen) {
  WriteVersion4File(path_);
  {
    CrashAt crash("state-rebuilt");
    EXPECT_THROW((void)OpenSqliteStateStore(path_, key_), Crash);
  }
  {
    RawDb db(path_);
    EXPECT_EQ(db.One("SELECT MAX(version) FROM schema_version"), "7");
    EXPECT_EQ(db.One("SELECT value FROM state_meta WHERE name = 'vacuum'"), "pending");
  }
  EXPECT_EQ(*InspectStateFile(path_), StateFileKind::kSealed);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ExpectVersion4Content(*store);
  }
  EXPECT_EQ(RawDb(path_).Column("SELECT name FROM state_meta WHERE name = 'vacuum'"),
            std::vector<std::string>{});
  EXPECT_EQ(RawDb(path_).One("PRAGMA auto_vacuum"), "2");  // the rebuild made it incremental
  ExpectNoPlaintextOnDisk(kVersion4Secrets);
}

}  // namespace
}  // namespace roster

namespace roster {
namespace {

// Every sealed value the store keeps, as the bytes on disk.
std::vector<std::string> SealedValues(RawDb& db) {
  std::vector<std::string> out;
  for (const char* sql : {"SELECT user FROM collections", "SELECT url FROM collections",
                          "SELECT sync_token FROM collections", "SELECT sealed FROM items",
                          "SELECT self_keys FROM snapshots", "SELECT entries FROM snapshots",
                          "SELECT user FROM run_results", "SELECT message FROM run_results",
                          "SELECT cursor FROM source_cursors", "SELECT sealed FROM source_cache",
                          "SELECT value FROM state_meta WHERE name = 'key_check'"}) {
    for (std::string& v : db.Column(sql)) {
      if (!v.empty() && v != "<null>") out.push_back(std::move(v));
    }
  }
  return out;
}

// Rotation: every value is sealed again under the new key id, in one step
// that can be repeated; afterwards only the finished key (without the old
// sealing key) is needed, and the old key opens nothing.
TEST_F(StateFiles, ResealPutsEveryValueUnderTheNewKeyId) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Fill(*store);
  }
  auto rotating = crypto::BeginRotation(key_);
  ASSERT_TRUE(rotating.ok());
  size_t sealed_values = 0;
  {
    RawDb db(path_);
    sealed_values = SealedValues(db).size();
    ASSERT_GT(sealed_values, 8u);
  }
  {
    auto store = Open(path_, *rotating);
    ASSERT_NE(store, nullptr);
    auto resealed = store->Reseal();
    ASSERT_TRUE(resealed.ok()) << resealed.error().message;
    EXPECT_EQ(*resealed, static_cast<int64_t>(sealed_values) - 1);  // the key check is rewritten
    auto again = store->Reseal();  // a rotation resumed after a crash
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, 0);
  }
  {
    RawDb db(path_);
    for (const std::string& v : SealedValues(db)) {
      auto id = crypto::KeyIdOf(v);
      ASSERT_TRUE(id.ok());
      EXPECT_EQ(*id, rotating->key_id());
    }
  }
  const crypto::Key finished = crypto::FinishRotation(*rotating);
  auto store = Open(path_, finished);
  ASSERT_NE(store, nullptr);
  ExpectFilled(*store);
  store.reset();
  auto old = OpenSqliteStateStore(path_, key_);
  ASSERT_FALSE(old.ok());
  EXPECT_TRUE(old.error().credential_refused);
  ExpectNoPlaintextOnDisk(kFilledSecrets);
}

// The source cache: made under one shape, replaced whole under another,
// updated entry by entry, expired by the age of each entry's last read, and
// purged without a byte of what it held left in the file or its WAL.
TEST_F(StateFiles, TheSourceCacheKeepsExpiresAndPurgesEntries) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  const auto hour = std::chrono::seconds(3600);
  auto keys_of = [&](const std::string& source, const std::string& shape) {
    auto cache = store->LoadSourceCache(source, shape, hour);
    EXPECT_TRUE(cache.ok()) << cache.error().message;
    std::vector<std::string> out;
    for (const CachedRecord& r : cache->records) out.push_back(r.key + "@" + r.stamp);
    return out;
  };
  // Nothing yet: no shape, and an update that does not replace is refused.
  EXPECT_FALSE(store->LoadSourceCache("ldap", "s1", hour)->shape_matches);
  EXPECT_FALSE(store->UpdateSourceCache("ldap", "s1", false, kCached, {}).ok());

  ASSERT_TRUE(store->UpdateSourceCache("ldap", "s1", true, kCached, {}).ok());
  EXPECT_EQ(keys_of("ldap", "s1"),
            (std::vector<std::string>{"cache-SECRETKEY-1@csn-1", "cache-SECRETKEY-2@csn-2"}));
  EXPECT_TRUE(keys_of("other", "s1").empty());  // per source
  // Another shape is not used, and an update under it must replace.
  auto other_shape = store->LoadSourceCache("ldap", "s2", hour);
  EXPECT_FALSE(other_shape->shape_matches);
  EXPECT_TRUE(other_shape->records.empty());
  EXPECT_FALSE(store->UpdateSourceCache("ldap", "s2", false, {}, {}).ok());

  // One changed, one added, one gone.
  ASSERT_TRUE(store
                  ->UpdateSourceCache("ldap", "s1", false,
                                      {{"cache-SECRETKEY-1", "csn-9", "Dana Cached-SECRET II"},
                                       {"cache-SECRETKEY-3", "csn-3", "Erin Cached-SECRET"}},
                                      {"cache-SECRETKEY-2"})
                  .ok());
  EXPECT_EQ(keys_of("ldap", "s1"),
            (std::vector<std::string>{"cache-SECRETKEY-1@csn-9", "cache-SECRETKEY-3@csn-3"}));
  ASSERT_EQ(store->LoadSourceCache("ldap", "s1", hour)->records[0].record, "Dana Cached-SECRET II");

  // A replace under a new shape drops what the old one held.
  ASSERT_TRUE(
      store->UpdateSourceCache("ldap", "s2", true, {{"cache-SECRETKEY-4", "c", "r"}}, {}).ok());
  EXPECT_EQ(keys_of("ldap", "s2"), std::vector<std::string>{"cache-SECRETKEY-4@c"});
  EXPECT_FALSE(store->LoadSourceCache("ldap", "s1", hour)->shape_matches);
  ASSERT_TRUE(store->UpdateSourceCache("ldap", "s1", true, kCached, {}).ok());

  // Expiry: once two seconds have passed, every entry is older than one
  // second; a load leaves them out and counts them, and changes nothing.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  ASSERT_TRUE(store->UpdateSourceCache("other", "s1", true, {{"fresh", "f", "r"}}, {}).ok());
  auto expired = store->LoadSourceCache("ldap", "s1", std::chrono::seconds(1));
  ASSERT_TRUE(expired.ok());
  EXPECT_TRUE(expired->shape_matches);
  EXPECT_TRUE(expired->records.empty());
  EXPECT_EQ(expired->expired, 2);
  EXPECT_EQ(keys_of("ldap", "s1").size(), 2u);

  {
    RawDb db(path_);
    ASSERT_EQ(db.Column("SELECT sealed FROM source_cache").size(), 3u);
  }
  const std::vector<std::string> ciphertexts = [&] {
    RawDb db(path_);
    return db.Column("SELECT sealed FROM source_cache WHERE source = 'ldap'");
  }();
  auto purged = store->PurgeExpiredCache(std::chrono::seconds(1));
  ASSERT_TRUE(purged.ok()) << purged.error().message;
  EXPECT_EQ(*purged, 2);
  EXPECT_EQ(keys_of("other", "s1"), std::vector<std::string>{"fresh@f"});
  EXPECT_TRUE(keys_of("ldap", "s1").empty());
  ExpectNoPlaintextOnDisk({"Dana Cached-SECRET", "cache-SECRETKEY"});
  // Not even the ciphertext of the purged entries is left, in the file or its WAL.
  for (const std::string& c : ciphertexts) {
    ASSERT_GT(c.size(), 24u);
    EXPECT_FALSE(OnDisk(c.substr(c.size() - 24))) << "a purged entry's ciphertext is on disk";
  }
  EXPECT_EQ(*store->PurgeExpiredCache(std::chrono::seconds(1)), 0);

  const std::string fresh = [&] {
    RawDb db(path_);
    return db.One("SELECT sealed FROM source_cache");
  }();
  auto all = store->PurgeCache();
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(*all, 1);
  EXPECT_FALSE(store->LoadSourceCache("other", "s1", hour)->shape_matches);
  EXPECT_FALSE(OnDisk(fresh.substr(fresh.size() - 24)));
  EXPECT_EQ(*store->PurgeCache(), 0);  // nothing left: a read, no write
}

// Pseudonyms for logs: stable under one key, different under another, and
// not the value.
TEST_F(StateFiles, PseudonymsAreStablePerKeyAndHideTheValue) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  const std::string p = store->Pseudonym("alice.secret@example.org");
  EXPECT_EQ(p, store->Pseudonym("alice.secret@example.org"));
  EXPECT_NE(p, store->Pseudonym("alan.secret@example.org"));
  EXPECT_EQ(p.rfind("p:", 0), 0u) << p;
  EXPECT_EQ(p.size(), 14u) << p;
  EXPECT_EQ(p.find("alice"), std::string::npos);
  auto other = Open((dir_ / "other.db").string(), crypto::GenerateKey());
  ASSERT_NE(other, nullptr);
  EXPECT_NE(other->Pseudonym("alice.secret@example.org"), p);
}

// purge --all: nothing of the state is left, on disk or through the store,
// and the store still opens with its key and works.
TEST_F(StateFiles, PurgeAllLeavesNothingBehind) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Fill(*store);
  ASSERT_TRUE(store->PurgeAll().ok());
  EXPECT_TRUE(store->ListCollections("company")->empty());
  EXPECT_TRUE(store->LastResults()->empty());
  EXPECT_TRUE(store->LoadSnapshot("company")->entries.empty());
  EXPECT_EQ(*store->LoadSourceCursor("gal"), "");
  EXPECT_FALSE(store->LoadSourceCache("ldap", "shape-1", std::chrono::hours(1))->shape_matches);
  store.reset();
  {
    RawDb db(path_);
    for (const char* table : {"collections", "items", "snapshots", "runs", "run_results",
                              "source_cursors", "source_cache", "source_cache_shapes"}) {
      EXPECT_EQ(db.One(std::string("SELECT COUNT(*) FROM ") + table), "0") << table;
    }
    EXPECT_EQ(SealedValues(db).size(), 1u);  // the key check only
  }
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  Fill(*store);
  ExpectFilled(*store);
}

}  // namespace
}  // namespace roster
