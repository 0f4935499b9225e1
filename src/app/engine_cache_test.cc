// The source cache ([state] cache = "encrypted"), end to end on the in-memory
// target: a source that reads changes is read in full once, then only for
// what changed; values derived from other records follow their change;
// expired entries are read again; a plan never writes the cache; "none" and
// purge_after_sync keep nothing.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <thread>

#include "app/engine.h"
#include "app/test_support.h"
#include "connectors/memory/memory.h"
#include "core/record_codec.h"

namespace roster {
namespace {

// A directory whose entries carry stamps, as LDAP's entryCSN: it answers the
// records whose stamp is not the cached one, and the keys it no longer has.
// A record's "manager_key" attribute names another record, whose display
// name Derive sets as the contact's manager.
class StampedSource final : public Source {
 public:
  struct Entry {
    SourceRecord record;
    int stamp = 1;
  };
  // What one run asked of it; the test keeps it, since the engine owns the source.
  struct Calls {
    int full_reads = 0;
    int64_t entries_read = 0;
    std::vector<size_t> stamps_given;  // per ReadChanges, how many cached stamps it got
  };
  StampedSource(const std::map<std::string, Entry>* entries, Calls* calls)
      : entries_(entries), calls_(calls) {}

  Result<std::vector<SourceRecord>> ReadAll() override {
    ++calls_->full_reads;
    std::vector<SourceRecord> out;
    for (const auto& [key, e] : *entries_) out.push_back(e.record);
    Derive(out);
    return out;
  }
  Result<std::string> Version() override {
    std::string v;
    for (const auto& [key, e] : *entries_) v += key + "=" + std::to_string(e.stamp) + ";";
    return v;
  }
  bool ReadsChanges() const override { return true; }
  Result<SourceChanges> ReadChanges(
      const std::unordered_map<std::string, std::string>& cached) override {
    calls_->stamps_given.push_back(cached.size());
    SourceChanges out;
    out.full = cached.empty();
    for (const auto& [key, e] : *entries_) {
      auto it = cached.find(key);
      if (it != cached.end() && it->second == std::to_string(e.stamp)) continue;
      out.changed.push_back(StampedRecord{e.record, std::to_string(e.stamp)});
    }
    for (const auto& [key, stamp] : cached) {
      if (!entries_->count(key)) out.removed.push_back(key);
    }
    out.entries_read = static_cast<int64_t>(out.changed.size());
    calls_->entries_read += out.entries_read;
    return out;
  }
  std::string CacheShape() const override { return shape; }
  void Derive(std::vector<SourceRecord>& records) const override {
    std::map<std::string, std::string> names;
    for (const SourceRecord& r : records) names[r.key] = r.contact.DisplayName();
    for (SourceRecord& r : records) {
      auto m = r.attributes.find("manager_key");
      if (m == r.attributes.end() || m->second.empty()) continue;
      auto name = names.find(m->second.front());
      r.contact.manager = name == names.end() ? "" : name->second;
    }
  }
  // Reports of a touched record: only they derive from it.
  std::optional<std::vector<std::string>> DerivedDependents(
      const std::vector<SourceRecord>& records,
      const std::vector<const SourceRecord*>& touched) const override {
    if (!tells_dependents) return std::nullopt;
    std::set<std::string> keys;
    for (const SourceRecord* t : touched) keys.insert(t->key);
    std::vector<std::string> out;
    for (const SourceRecord& r : records) {
      auto m = r.attributes.find("manager_key");
      if (m != r.attributes.end() && !m->second.empty() && keys.count(m->second.front())) {
        out.push_back(r.key);
      }
    }
    return out;
  }

  std::string shape = "shape-1";
  bool tells_dependents = true;

 private:
  const std::map<std::string, Entry>* entries_;
  Calls* calls_;
};

SourceRecord Person(int i) {
  SourceRecord r;
  r.key = "p" + std::to_string(1000 + i);
  r.contact.given_name = "Given" + std::to_string(i);
  r.contact.family_name = "Family";
  r.contact.emails.push_back({"p" + std::to_string(i) + "@example.com", {"work"}, false});
  // Everyone but the first reports to the first.
  if (i > 0) r.attributes["manager_key"] = {"p1000"};
  return r;
}

class EngineCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(OpenSqliteStateStore(":memory:")).value();
    for (int i = 0; i < 40; ++i) {
      SourceRecord r = Person(i);
      entries_[r.key] = StampedSource::Entry{r, 1};
    }
  }

  RunReport Run(bool dry_run = false) {
    EngineConfig config;
    calls_ = StampedSource::Calls{};
    auto source = std::make_unique<StampedSource>(&entries_, &calls_);
    source->shape = shape_;
    source->tells_dependents = tells_dependents_;
    config.sources["dir"] = SourceEntry(std::move(source));
    config.targets["mem"] = TargetEntry{NewMemoryTarget(server_, 2), users_};
    config.cache = cache_;
    config.cache_max_age = max_age_;
    config.purge_after_sync = purge_after_sync_;
    config.erasure = erasure_;
    RuleSpec rule;
    rule.name = "company";
    rule.sources = {"dir"};
    rule.target = "mem";
    rule.display_name = "Company";
    rule.filter = std::move(Filter::Parse(filter_)).value();
    rule.max_delete_percent = 50;
    rule.max_update_percent = 100;  // a manager's rename touches every report
    config.rules.push_back(std::move(rule));
    Engine engine(std::move(config), *store_);
    RunOptions options;
    options.dry_run = dry_run;
    return engine.Run(options);
  }

  void Change(int i, const std::function<void(SourceRecord&)>& edit) {
    StampedSource::Entry& e = entries_.at("p" + std::to_string(1000 + i));
    edit(e.record);
    ++e.stamp;
  }

  // What a user's book holds, by key.
  std::map<std::string, Contact> Book(const std::string& user) {
    std::map<std::string, Contact> out;
    for (const auto& [href, item] : server_->Items(user)) {
      if (item.tag) out[item.tag->key] = item.contact;
    }
    return out;
  }

  std::shared_ptr<MemoryServer> server_ = std::make_shared<MemoryServer>();
  std::unique_ptr<StateStore> store_;
  std::map<std::string, StampedSource::Entry> entries_;
  std::vector<std::string> users_ = {"alice", "bob"};
  StampedSource::Calls calls_;  // of the last run
  StampedSource::Calls* last_ = &calls_;
  bool cache_ = true;
  bool purge_after_sync_ = false;
  std::chrono::seconds max_age_ = std::chrono::hours(24) * 60;
  std::string shape_ = "shape-1";
  bool tells_dependents_ = true;
  std::string filter_;
  const ErasureList* erasure_ = nullptr;
};

TEST_F(EngineCacheTest, OneChangeIsReadAloneAndCostsOneWritePerBook) {
  RunReport first = Run();
  ASSERT_EQ(first.ExitCode(), 0);
  EXPECT_EQ(first.Totals().created, 80);
  EXPECT_EQ(last_->entries_read, 40);
  EXPECT_EQ(last_->full_reads, 0) << "a source that reads changes is read through the cache";

  // Nothing changed: the version says so, nothing is read at all.
  RunReport quiet = Run();
  EXPECT_EQ(quiet.Totals().created + quiet.Totals().updated + quiet.Totals().deleted, 0);
  EXPECT_EQ(last_->entries_read, 0);
  EXPECT_TRUE(last_->stamps_given.empty());

  // One person changes: that entry alone is read, the other 39 come from the cache.
  Change(7, [](SourceRecord& r) { r.contact.title = "Promoted"; });
  RunReport one = Run();
  ASSERT_EQ(one.ExitCode(), 0);
  ASSERT_EQ(last_->stamps_given.size(), 1u);
  EXPECT_EQ(last_->stamps_given[0], 40u);
  EXPECT_EQ(last_->entries_read, 1);
  EXPECT_EQ(one.Totals().updated, 2);  // one write per book
  EXPECT_EQ(one.Totals().created + one.Totals().deleted, 0);
  for (const std::string& user : users_) {
    auto book = Book(user);
    ASSERT_EQ(book.size(), 40u);
    EXPECT_EQ(book.at("p1007").title, "Promoted");
    EXPECT_EQ(book.at("p1008").manager, "Given0 Family") << "from the cache, derived again";
  }
  bool said = false;
  for (const std::string& n : one.notices)
    said = said || n.find("39 of them from the cache") != std::string::npos;
  EXPECT_TRUE(said) << ::testing::PrintToString(one.notices);
}

TEST_F(EngineCacheTest, AnErasedManagerLeavesATombstoneAndTheirReportsLoseTheirName) {
  ASSERT_EQ(Run().ExitCode(), 0);
  FakeErasures erased;
  erasure_ = &erased;
  erased.addresses = {"p0@example.com"};
  RunReport erase = Run();
  ASSERT_EQ(erase.ExitCode(), 0);
  EXPECT_EQ(erase.Totals().deleted, 2);
  EXPECT_EQ(erase.Totals().updated, 78);  // every report's card, in both books
  for (const std::string& user : users_) {
    auto book = Book(user);
    EXPECT_EQ(book.count("p1000"), 0u);
    EXPECT_EQ(book.at("p1008").manager, "") << "the manager's name is redacted";
  }
  // The cache keeps a tombstone in their place (their key, nothing else).
  auto cache = store_->LoadAllCached(std::chrono::hours(24));
  ASSERT_TRUE(cache.ok());
  ASSERT_EQ(cache->size(), 40u);
  for (const CachedEntry& e : *cache) {
    std::optional<SourceRecord> r = DecodeRecord(e.record.record);
    ASSERT_TRUE(r);
    if (r->key != "p1000") continue;
    EXPECT_TRUE(r->contact.emails.empty());
    EXPECT_EQ(r->contact.DisplayName(), "");
    EXPECT_EQ(r->attributes.count("roster-erased"), 1u);
  }
  ASSERT_EQ(erase.erased.size(), 1u);
  EXPECT_EQ(erase.erased[0].addresses, std::vector<std::string>{"p0@example.com"});
  EXPECT_EQ(erase.erased[0].ids, ErasureIds("dir", Person(0)));
  // The register learns their key from the run (gdpr/register.h, Learn):
  // a tombstone is recognised by it.
  erased.keys.insert("p1000");

  // Later delta reads do not read them again, and write nothing for them.
  Change(7, [](SourceRecord& r) { r.contact.title = "Promoted"; });
  RunReport later = Run();
  ASSERT_EQ(later.ExitCode(), 0);
  EXPECT_EQ(last_->entries_read, 1);
  EXPECT_EQ(later.Totals().updated, 2);
  EXPECT_EQ(later.Totals().created + later.Totals().deleted, 0);
  EXPECT_TRUE(later.erased.empty()) << "a tombstone is not a person found";

  // Unerased, with the cache purged (as gdpr unerase does): back, and named again.
  erased.addresses.clear();
  erased.keys.clear();
  ASSERT_TRUE(store_->PurgeCache().ok());
  RunReport back = Run();
  ASSERT_EQ(back.ExitCode(), 0);
  EXPECT_EQ(back.Totals().created, 2);
  for (const std::string& user : users_) {
    auto book = Book(user);
    EXPECT_EQ(book.count("p1000"), 1u);
    EXPECT_EQ(book.at("p1008").manager, "Given0 Family");
  }
}

TEST_F(EngineCacheTest, AnUnerasedTombstoneIsReadAgain) {
  ASSERT_EQ(Run().ExitCode(), 0);
  FakeErasures erased;
  erasure_ = &erased;
  erased.keys = {"p1005"};
  ASSERT_EQ(Run().Totals().deleted, 2);
  erased.keys.clear();
  RunReport back = Run();
  ASSERT_EQ(back.ExitCode(), 0);
  EXPECT_EQ(back.Totals().created, 2);
  EXPECT_EQ(last_->entries_read, 1) << "the tombstone alone is read again";
  for (const std::string& user : users_) EXPECT_EQ(Book(user).count("p1005"), 1u);
}

TEST_F(EngineCacheTest, AManagersNewNameReachesTheirReportsCardsFromTheCache) {
  ASSERT_EQ(Run().ExitCode(), 0);
  Change(0, [](SourceRecord& r) { r.contact.given_name = "Renamed"; });
  RunReport renamed = Run();
  ASSERT_EQ(renamed.ExitCode(), 0);
  EXPECT_EQ(last_->entries_read, 1) << "only the manager is read";
  // The manager's own card and the 39 reports' cards, in each book.
  EXPECT_EQ(renamed.Totals().updated, 80);
  for (const std::string& user : users_) {
    auto book = Book(user);
    EXPECT_EQ(book.at("p1000").given_name, "Renamed");
    for (int i = 1; i < 40; ++i) {
      EXPECT_EQ(book.at("p" + std::to_string(1000 + i)).manager, "Renamed Family") << i;
    }
  }
}

// Who a notice says was prepared again after a delta read ("" when all were).
std::string PreparedAgain(const RunReport& r) {
  for (const std::string& n : r.notices) {
    size_t at = n.find(" touched by the changes prepared again");
    if (at == std::string::npos) continue;
    size_t from = n.rfind(", ", at);
    return n.substr(from + 2, at - from - 2);
  }
  return "";
}

TEST_F(EngineCacheTest, ADeltaReadSelectsOnlyWhatItTouchedAndEndsWhereAFullReadWould) {
  filter_ = "title != 'Contractor'";
  ASSERT_EQ(Run().ExitCode(), 0);
  Change(7, [](SourceRecord& r) { r.contact.title = "Promoted"; });
  Change(9, [](SourceRecord& r) { r.contact.title = "Contractor"; });  // no longer selected
  entries_.erase("p1011");
  SourceRecord fresh = Person(60);
  entries_[fresh.key] = StampedSource::Entry{fresh, 1};
  RunReport delta = Run();
  ASSERT_EQ(delta.ExitCode(), 0) << ::testing::PrintToString(delta.errors);
  EXPECT_EQ(PreparedAgain(delta), "3") << ::testing::PrintToString(delta.notices);
  EXPECT_EQ(delta.Totals().updated, 2);
  EXPECT_EQ(delta.Totals().deleted, 4);
  EXPECT_EQ(delta.Totals().created, 2);
  auto books = std::make_pair(Book("alice"), Book("bob"));

  // The same source read in full into a fresh target and state: the same books.
  auto delta_server = server_;
  server_ = std::make_shared<MemoryServer>();
  store_ = std::move(OpenSqliteStateStore(":memory:")).value();
  cache_ = false;
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(books.first, Book("alice"));
  EXPECT_EQ(books.second, Book("bob"));
  EXPECT_EQ(books.first.size(), 39u);
  EXPECT_EQ(books.first.count("p1009") + books.first.count("p1011"), 0u);
  EXPECT_EQ(books.first.at("p1060").manager, "Given0 Family");
  server_ = delta_server;
}

TEST_F(EngineCacheTest, ASourceThatCannotTellItsDependentsIsPreparedInFull) {
  tells_dependents_ = false;
  ASSERT_EQ(Run().ExitCode(), 0);
  Change(0, [](SourceRecord& r) { r.contact.given_name = "Renamed"; });
  RunReport renamed = Run();
  ASSERT_EQ(renamed.ExitCode(), 0);
  EXPECT_EQ(PreparedAgain(renamed), "");
  EXPECT_EQ(renamed.Totals().updated, 80);
  EXPECT_EQ(Book("bob").at("p1039").manager, "Renamed Family");
}

TEST_F(EngineCacheTest, AUsersOwnCardFollowsTheirAddressThroughADeltaRead) {
  users_ = {"p5@example.com"};
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(Book("p5@example.com").count("p1005"), 0u) << "their own person";
  // Their person changes address: they are nobody's own person now.
  Change(5, [](SourceRecord& r) { r.contact.emails[0].value = "five@example.com"; });
  RunReport moved = Run();
  ASSERT_EQ(moved.ExitCode(), 0) << ::testing::PrintToString(moved.errors);
  EXPECT_EQ(Book("p5@example.com").count("p1005"), 1u);
  EXPECT_EQ(Book("p5@example.com").size(), 40u);
  // Another person takes the address: they are the user's own person now.
  Change(6, [](SourceRecord& r) { r.contact.emails[0].value = "p5@example.com"; });
  RunReport taken = Run();
  ASSERT_EQ(taken.ExitCode(), 0) << ::testing::PrintToString(taken.errors);
  EXPECT_EQ(Book("p5@example.com").count("p1006"), 0u);
  EXPECT_EQ(Book("p5@example.com").count("p1005"), 1u);
  EXPECT_EQ(Book("p5@example.com").size(), 39u);
}

TEST_F(EngineCacheTest, APersonWhoLeavesIsRemovedFromTheCacheAndTheBooks) {
  ASSERT_EQ(Run().ExitCode(), 0);
  entries_.erase("p1039");
  RunReport left = Run();
  ASSERT_EQ(left.ExitCode(), 0);
  EXPECT_EQ(last_->entries_read, 0);
  EXPECT_EQ(left.Totals().deleted, 2);
  // The next change proves the cache forgot them: the stamps it hands over.
  Change(1, [](SourceRecord& r) { r.contact.title = "x"; });
  ASSERT_EQ(Run().ExitCode(), 0);
  ASSERT_EQ(last_->stamps_given.size(), 1u);
  EXPECT_EQ(last_->stamps_given[0], 39u);
  for (const std::string& user : users_) EXPECT_EQ(Book(user).size(), 39u);
}

TEST_F(EngineCacheTest, ExpiredEntriesAreNeverUsedAndAreReadAgain) {
  ASSERT_EQ(Run().ExitCode(), 0);
  // Every entry is older than a retention of zero seconds once a second passed.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  max_age_ = std::chrono::seconds(0);
  Change(2, [](SourceRecord& r) { r.contact.title = "x"; });
  // A plan neither purges nor uses them: it reads everyone.
  RunReport plan = Run(/*dry_run=*/true);
  ASSERT_EQ(plan.ExitCode(), 0);
  ASSERT_EQ(last_->stamps_given.size(), 1u);
  EXPECT_EQ(last_->stamps_given[0], 0u);
  EXPECT_EQ(last_->entries_read, 40);
  RunReport sync = Run();
  ASSERT_EQ(sync.ExitCode(), 0);
  bool purged = false;
  for (const std::string& n : sync.notices) {
    purged = purged || n.find("40 cached people had expired and were purged") != std::string::npos;
  }
  EXPECT_TRUE(purged) << ::testing::PrintToString(sync.notices);
  ASSERT_EQ(last_->stamps_given.size(), 1u);
  EXPECT_EQ(last_->stamps_given[0], 0u);
  EXPECT_EQ(last_->entries_read, 40);
  EXPECT_EQ(sync.Totals().updated, 2);
}

TEST_F(EngineCacheTest, APlanReadsTheCacheButNeverWritesIt) {
  ASSERT_EQ(Run().ExitCode(), 0);
  Change(3, [](SourceRecord& r) { r.contact.title = "x"; });
  ASSERT_EQ(Run(/*dry_run=*/true).ExitCode(), 0);
  EXPECT_EQ(last_->entries_read, 1);
  // The sync after it still finds the change unread.
  RunReport sync = Run();
  EXPECT_EQ(last_->entries_read, 1);
  EXPECT_EQ(last_->stamps_given.at(0), 40u);
  EXPECT_EQ(sync.Totals().updated, 2);
}

TEST_F(EngineCacheTest, AnotherShapeReadsEverythingAndReplacesTheCache) {
  ASSERT_EQ(Run().ExitCode(), 0);
  shape_ = "shape-2";  // the mapping changed, say
  Change(4, [](SourceRecord& r) { r.contact.title = "x"; });
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(last_->stamps_given.at(0), 0u);
  EXPECT_EQ(last_->entries_read, 40);
  Change(5, [](SourceRecord& r) { r.contact.title = "y"; });
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(last_->stamps_given.at(0), 40u);
  EXPECT_EQ(last_->entries_read, 1);
}

TEST_F(EngineCacheTest, WithoutACacheNothingIsKeptAndWhatWasLeftIsPurged) {
  ASSERT_EQ(Run().ExitCode(), 0);
  cache_ = false;
  Change(6, [](SourceRecord& r) { r.contact.title = "x"; });
  RunReport none = Run();
  ASSERT_EQ(none.ExitCode(), 0);
  EXPECT_EQ(last_->full_reads, 1);
  EXPECT_TRUE(last_->stamps_given.empty());
  EXPECT_EQ(none.Totals().updated, 2);
  bool purged = false;
  for (const std::string& n : none.notices) {
    purged = purged ||
             n.find("the cache of 40 people was purged (cache = \"none\")") != std::string::npos;
  }
  EXPECT_TRUE(purged) << ::testing::PrintToString(none.notices);
  EXPECT_EQ(*store_->PurgeCache(), 0) << "nothing was left to purge";
}

TEST_F(EngineCacheTest, PurgeAfterSyncLeavesNothingCached) {
  purge_after_sync_ = true;
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(*store_->PurgeCache(), 0);
  Change(6, [](SourceRecord& r) { r.contact.title = "x"; });
  RunReport again = Run();
  EXPECT_EQ(last_->full_reads, 1);
  EXPECT_EQ(again.Totals().updated, 2);
  EXPECT_EQ(*store_->PurgeCache(), 0);
}

}  // namespace
}  // namespace roster
