#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "migrations.h"
#include "state/state.h"

namespace roster {
namespace {

std::unique_ptr<StateStore> Open(const std::string& path = ":memory:") {
  auto store = OpenSqliteStateStore(path);
  EXPECT_TRUE(store.ok()) << (store.ok() ? "" : store.error().message);
  return std::move(store).value();
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
  {
    auto store = Open(path);
    ASSERT_TRUE(store->OpenCollection({"r", "t", "u"}).ok());
  }
  auto perms = std::filesystem::status(path).permissions();
  EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
            std::filesystem::perms::none);
  {
    auto store = Open(path);  // migrations are not re-applied
    EXPECT_TRUE(store->FindCollection({"r", "t", "u"}).ok());
  }
  std::filesystem::remove_all(dir);
}

TEST(SqliteStateStore, UnopenablePathIsAClearError) {
  auto store = OpenSqliteStateStore("/nonexistent-dir/roster.db");
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

// A folder removed at the end of the test.
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

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(StateFiles, ADryRunCreatesNothingAndChangesNothing) {
  {
    auto missing = OpenSqliteStateStoreForReading(path_);
    ASSERT_TRUE(missing.ok()) << missing.error().message;
    EXPECT_FALSE((*missing)->FindCollection({"r", "t", "u"}).ok());
  }
  EXPECT_TRUE(Files().empty()) << "a plan created the state file";
  {
    auto store = Open(path_);
    auto c = store->OpenCollection({"r", "t", "u"});
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(store->ApplyListing(c->id, {{"/a.vcf", "e1"}}, {}, {}, "tok", "fp").ok());
  }
  auto before = Files();
  {
    auto store = OpenSqliteStateStoreForReading(path_);
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
    auto store = Open(path_);
    ASSERT_TRUE(store->OpenCollection({"r", "t", "alice"}).ok());
    auto old_run = store->BeginRun("sync");
    ASSERT_TRUE(old_run.ok());
    TargetRunResult result{{"r", "t", "alice"}, {}, old_message};
    ASSERT_TRUE(store->RecordResult(*old_run, result).ok());
    ASSERT_TRUE(store->FinishRun(*old_run, 1).ok());
    {
      // Backdate it 100 days, from outside the store.
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
      ASSERT_EQ(sqlite3_exec(db, "UPDATE runs SET started_at = '2000-01-01T00:00:00Z'", nullptr,
                             nullptr, nullptr),
                SQLITE_OK);
      sqlite3_close(db);
    }
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

// What roster 0.1 (state version 1) wrote: the first migration alone, with rows.
void WriteVersion1File(const std::string& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string sql = std::string("CREATE TABLE schema_version (version INTEGER NOT NULL);") +
                    Migrations().front().sql +
                    "INSERT INTO schema_version VALUES (1);"
                    "INSERT INTO collections (rule, target, user, url, sync_token, synced_snapshot)"
                    " VALUES ('company', 'dav', 'alice', 'http://h/alice/b/', 'tok1', 'fp1');"
                    "INSERT INTO items (collection_id, href, etag_seen, etag, key, hash) VALUES"
                    " (1, '/alice/b/x.vcf', 'e1', 'e1', 'k1', 'h1'),"
                    " (1, '/alice/b/own.vcf', 'e2', 'e2', NULL, 'h2');";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
  sqlite3_close(db);
}

TEST_F(StateFiles, AVersion1FileIsMigratedByASyncAndRefusedByAPlan) {
  ASSERT_EQ(Migrations().front().version, 1);
  WriteVersion1File(path_);
  auto before = Files();
  auto plan = OpenSqliteStateStoreForReading(path_);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message.find("roster sync` upgrades it"), std::string::npos)
      << plan.error().message;
  EXPECT_EQ(Files(), before);

  auto store = Open(path_);
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
}

TEST_F(StateFiles, LoosePermissionsAreTightenedWithAWarning) {
  { Open(path_); }
  chmod(path_.c_str(), 0644);
  auto store = Open(path_);
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

}  // namespace
}  // namespace roster
