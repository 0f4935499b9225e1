// The invariants, end to end on the in-memory target: convergence, zero
// duplicates (also after lost state and failed writes), ownership, minimal
// writes, and the deletion guard.
#include "app/engine.h"

#include <gtest/gtest.h>

#include <set>

#include "app/test_support.h"
#include "connectors/memory/memory.h"
#include "core/personal.h"

namespace roster {
namespace {

SourceRecord Person(int i, const std::string& department = "Sales") {
  SourceRecord r;
  r.key = "p" + std::to_string(1000 + i);
  r.contact.given_name = "Given" + std::to_string(i);
  r.contact.family_name = "Family";
  r.contact.department = department;
  r.contact.emails.push_back({"p" + std::to_string(i) + "@example.com", {"work"}, false});
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(OpenSqliteStateStore(":memory:")).value();
    for (int i = 0; i < 50; ++i) people_.push_back(Person(i));
  }

  RunReport Run(bool dry_run = false, bool force = false, const std::string& filter = "") {
    EngineConfig config;
    auto source = std::make_unique<VectorSource>(&people_, &version_, &reads_);
    source->fail = source_fails_;
    config.sources["staff"] = SourceEntry(std::move(source));
    config.targets["mem"] = TargetEntry{NewMemoryTarget(server_, 2), users_};
    RuleSpec rule;
    rule.name = "company";
    rule.sources = {"staff"};
    rule.target = "mem";
    rule.display_name = "Company";
    rule.filter = std::move(Filter::Parse(filter)).value();
    rule.max_delete_percent = 20;
    if (customize_) customize_(config, rule);
    config.rules.push_back(std::move(rule));
    Engine engine(std::move(config), *store_);
    RunOptions options;
    options.dry_run = dry_run;
    options.force = force;
    return engine.Run(options);
  }

  // Every user's book holds exactly the selected people, once each.
  void ExpectConverged(size_t expected_people) {
    for (const std::string& user : users_) {
      std::map<std::string, int> copies;
      for (const auto& [href, item] : server_->Items(user)) {
        if (item.tag) ++copies[item.tag->key];
      }
      EXPECT_EQ(copies.size(), expected_people) << user;
      for (const auto& [key, n] : copies) EXPECT_EQ(n, 1) << user << " " << key;
      for (const SourceRecord& p : people_) {
        if (!copies.count(p.key)) continue;
        for (const auto& [href, item] : server_->Items(user)) {
          if (item.tag && item.tag->key == p.key) {
            EXPECT_EQ(ContentHash(item.contact), ContentHash(p.contact));
          }
        }
      }
    }
  }

  std::shared_ptr<MemoryServer> server_ = std::make_shared<MemoryServer>();
  std::shared_ptr<MemoryServer> server2_ = std::make_shared<MemoryServer>();
  std::unique_ptr<StateStore> store_;
  std::vector<SourceRecord> people_;
  std::vector<std::string> users_ = {"alice", "bob", "carol"};
  bool source_fails_ = false;
  std::string version_;  // the source's Version(); empty: it cannot tell
  int reads_ = 0;
  std::function<void(EngineConfig&, RuleSpec&)> customize_;

  // Copies of each key in a user's book (managed items only).
  std::map<std::string, int> Keys(const std::string& user) {
    std::map<std::string, int> keys;
    for (const auto& [href, item] : server_->Items(user)) {
      if (item.tag) ++keys[item.tag->key];
    }
    return keys;
  }
};

// A directory with fixed members, for target users taken from a group.
class FakeDirectory final : public Directory {
 public:
  Result<std::vector<DirectoryUser>> GroupMembers(const std::string& group,
                                                  const std::string&) override {
    if (group != "cn=sales") return MakeError(ErrorKind::kNotFound, "no group " + group);
    return members;
  }
  Result<std::vector<DirectoryUser>> SearchUsers(const std::string&, const std::string&) override {
    return members;
  }
  std::vector<DirectoryUser> members;
};

TEST_F(EngineTest, FirstSyncCreatesEverythingAndSecondWritesAndReadsNothing) {
  RunReport first = Run();
  EXPECT_EQ(first.ExitCode(), 0);
  EXPECT_EQ(first.Totals().created, 150);
  ExpectConverged(50);

  server_->ResetCounters();
  std::map<std::string, std::string> tokens;
  for (const auto& u : users_) tokens[u] = server_->SyncToken(u);
  RunReport second = Run();
  EXPECT_EQ(second.ExitCode(), 0);
  EXPECT_EQ(second.Totals().unchanged, 150);
  EXPECT_EQ(server_->counters().writes(), 0);
  EXPECT_EQ(server_->counters().fetched, 0);  // not one item read
  for (const auto& u : users_) EXPECT_EQ(server_->SyncToken(u), tokens[u]);
}

TEST_F(EngineTest, AnErasedPersonLeavesEveryBookAndTheirNameLeavesTheirReports) {
  version_ = "v1";  // an unchanged source: only the erasure makes the run read it
  people_[1].contact.manager = people_[0].contact.DisplayName();
  people_[2].contact.manager = "Someone Else";
  ASSERT_EQ(Run().Totals().created, 150);
  FakeErasures erasures;
  customize_ = [&](EngineConfig& config, RuleSpec&) { config.erasure = &erasures; };
  server_->ResetCounters();
  EXPECT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(server_->counters().writes(), 0) << "nobody erased: nothing changes";

  erasures.addresses = {"p0@example.com"};
  RunReport erased = Run();
  EXPECT_EQ(erased.ExitCode(), 0);
  EXPECT_EQ(erased.Totals().deleted, 3);
  EXPECT_EQ(erased.Totals().updated, 3);  // the report's card, in each book
  for (const std::string& user : users_) {
    EXPECT_EQ(Keys(user).count(people_[0].key), 0u) << user;
    for (const auto& [href, item] : server_->Items(user)) {
      if (!item.tag) continue;
      EXPECT_NE(item.contact.manager, people_[0].contact.DisplayName()) << user;
      if (item.tag->key == people_[2].key) {
        EXPECT_EQ(item.contact.manager, "Someone Else");
      }
    }
  }
  bool noticed = false;
  for (const std::string& n : erased.notices) noticed |= n.find("1 erased (left out)") != n.npos;
  EXPECT_TRUE(noticed);
  ASSERT_EQ(erased.erased.size(), 1u);
  EXPECT_EQ(erased.erased[0].ids, ErasureIds("staff", people_[0]));
  EXPECT_EQ(erased.erased[0].addresses, std::vector<std::string>{"p0@example.com"});

  // Later runs keep them out, and write nothing.
  server_->ResetCounters();
  RunReport after = Run();
  EXPECT_EQ(after.ExitCode(), 0);
  EXPECT_EQ(server_->counters().writes(), 0);
  for (const std::string& user : users_) EXPECT_EQ(Keys(user).count(people_[0].key), 0u);

  // Unerased: back in every book, and named again on their report's card.
  erasures.addresses.clear();
  RunReport back = Run();
  EXPECT_EQ(back.Totals().created, 3);
  EXPECT_EQ(back.Totals().updated, 3);
  ExpectConverged(50);
}

TEST_F(EngineTest, KChangedItemsCostKWritesPerTarget) {
  ASSERT_EQ(Run().ExitCode(), 0);
  for (int i = 0; i < 5; ++i) people_[i].contact.title = "Manager";
  people_.resize(45);  // 5 leave (10%, under the 20% guard)
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.Totals().updated, 15);
  EXPECT_EQ(r.Totals().deleted, 15);
  EXPECT_EQ(server_->counters().writes(), 30);
  EXPECT_EQ(server_->counters().fetched, 0);
  ExpectConverged(45);
}

TEST_F(EngineTest, DryRunWritesNothingAnywhere) {
  RunReport plan = Run(/*dry_run=*/true);
  EXPECT_EQ(plan.Totals().created, 150);
  EXPECT_EQ(plan.collections[0].planned.size(), 50u);
  EXPECT_EQ(server_->counters().writes(), 0);
  EXPECT_FALSE(server_->HasCollection("alice"));
  EXPECT_TRUE(store_->LastResults()->empty());
}

TEST_F(EngineTest, UsersOwnCardsAreNeverTouched) {
  Contact mine;
  mine.formatted_name = "My dentist";
  ASSERT_EQ(Run().ExitCode(), 0);
  server_->PutByHand("alice", "/alice/dentist", mine);
  people_.clear();  // everyone leaves (forced past the guard)
  RunReport r = Run(false, /*force=*/true);
  EXPECT_EQ(r.ExitCode(), 0);
  auto items = server_->Items("alice");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items.begin()->second.contact.formatted_name, "My dentist");
}

TEST_F(EngineTest, LostStateAdoptsInsteadOfDuplicating) {
  ASSERT_EQ(Run().ExitCode(), 0);
  store_ = std::move(OpenSqliteStateStore(":memory:")).value();  // the state file is gone
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.Totals().created, 0);
  EXPECT_EQ(r.Totals().adopted, 150);
  EXPECT_EQ(server_->counters().writes(), 0);
  ExpectConverged(50);
}

TEST_F(EngineTest, UserEditOnTheServerIsNoticedAndRepaired) {
  ASSERT_EQ(Run().ExitCode(), 0);
  auto items = server_->Items("bob");
  auto it = items.begin();
  Contact edited = it->second.contact;
  edited.title = "Changed on the phone";
  server_->PutByHand("bob", it->first, edited, it->second.tag);
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.Totals().updated, 1);
  EXPECT_EQ(server_->counters().fetched, 1);
  ExpectConverged(50);
}

TEST_F(EngineTest, FailedWritesAreRetriedByTheNextRunWithoutDuplicates) {
  int n = 0;
  server_->SetFault([&](const std::string&, const std::string&) -> std::optional<Error> {
    if (++n % 3 == 0) return MakeError(ErrorKind::kConflict, "HTTP 409");
    return std::nullopt;
  });
  RunReport first = Run();
  EXPECT_EQ(first.ExitCode(), 1);
  EXPECT_GT(first.Totals().errors, 0);
  server_->SetFault(nullptr);
  RunReport second = Run();
  EXPECT_EQ(second.ExitCode(), 0);
  EXPECT_EQ(second.Totals().created, first.Totals().errors);
  ExpectConverged(50);
}

TEST_F(EngineTest, SourceThatShrinksPastTheLimitStopsTheRule) {
  ASSERT_EQ(Run().ExitCode(), 0);
  people_.resize(10);
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 3);
  EXPECT_EQ(server_->counters().writes(), 0);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].find("lost 40 of 50"), std::string::npos) << r.errors[0];
  RunReport forced = Run(false, /*force=*/true);
  EXPECT_EQ(forced.ExitCode(), 0);
  EXPECT_EQ(forced.Totals().deleted, 120);
  ExpectConverged(10);
}

TEST_F(EngineTest, MassChangeGuardStopsAnExportWhoseMobilesWentBlank) {
  for (SourceRecord& p : people_) p.contact.phones.push_back({"+44 20 7946 0001", {"cell"}, false});
  ASSERT_EQ(Run().ExitCode(), 0);
  ASSERT_EQ(Run().ExitCode(), 0);  // a plan with no change never trips it
  for (SourceRecord& p : people_) p.contact.phones.clear();
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 3);
  EXPECT_EQ(server_->counters().writes(), 0);
  bool named = false;
  for (const CollectionReport& c : r.collections) {
    for (const std::string& e : c.errors) named = named || e.find("mass-change guard") == 0;
  }
  EXPECT_TRUE(named);
  RunReport again = Run();  // still held back: the books were not marked as synced
  EXPECT_EQ(again.ExitCode(), 3);
  RunReport forced = Run(false, /*force=*/true);
  EXPECT_EQ(forced.ExitCode(), 0);
  EXPECT_EQ(forced.Totals().updated, 150);
  EXPECT_EQ(Run().ExitCode(), 0);
  ExpectConverged(50);
}

// An incremental pass counts a book's managed items only as far as the
// guards need: the threshold and the message stay exact.
TEST_F(EngineTest, TheMassChangeGuardOfAnIncrementalPassTripsAtItsExactShare) {
  customize_ = [](EngineConfig&, RuleSpec& rule) { rule.max_update_percent = 10; };
  version_ = "v1";
  ASSERT_EQ(Run().ExitCode(), 0);
  for (int i = 0; i < 5; ++i) people_[i].contact.title = "Renamed";  // 5 of 50: 10%, allowed
  version_ = "v2";
  RunReport allowed = Run();
  EXPECT_EQ(allowed.ExitCode(), 0);
  EXPECT_EQ(allowed.Totals().updated, 15);
  for (int i = 5; i < 11; ++i) people_[i].contact.title = "Renamed";  // 6 of 50: 12%
  version_ = "v3";
  server_->ResetCounters();
  RunReport tripped = Run();
  EXPECT_EQ(tripped.ExitCode(), 3);
  EXPECT_EQ(server_->counters().writes(), 0);
  ASSERT_FALSE(tripped.collections.empty());
  ASSERT_FALSE(tripped.collections[0].errors.empty());
  EXPECT_NE(tripped.collections[0].errors[0].find("6 of 50 managed items"), std::string::npos)
      << tripped.collections[0].errors[0];
}

TEST_F(EngineTest, CollectionGuardStopsAfterLostStateToo) {
  ASSERT_EQ(Run().ExitCode(), 0);
  store_ = std::move(OpenSqliteStateStore(":memory:")).value();
  people_.clear();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 3);
  ExpectConverged(50);  // nothing was deleted
}

TEST_F(EngineTest, UnreadableSourceChangesNothing) {
  ASSERT_EQ(Run().ExitCode(), 0);
  source_fails_ = true;
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 1);
  EXPECT_EQ(server_->counters().writes(), 0);
  ExpectConverged(50);
}

TEST_F(EngineTest, FilterSelectsPeople) {
  people_[0].contact.department = "Contractors";
  RunReport r = Run(false, false, "department != 'contractors'");
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.Totals().created, 147);
}

TEST_F(EngineTest, TargetUsersNeverGetTheirOwnCard) {
  users_ = {"p1@example.com", "P2@Example.com", "nobody@example.com"};
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(Keys("p1@example.com").size(), 49u);
  EXPECT_EQ(Keys("p1@example.com").count("p1001"), 0u);
  EXPECT_EQ(Keys("P2@Example.com").count("p1002"), 0u);
  EXPECT_EQ(Keys("nobody@example.com").size(), 50u);
  // Listed by account name: their entry's uid says who they are.
  people_[5].attributes["uid"] = {"Erin"};
  users_.push_back("erin");
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(Keys("erin").size(), 49u);
  EXPECT_EQ(Keys("erin").count("p1005"), 0u);
  server_->ResetCounters();
  RunReport quiet = Run();
  EXPECT_EQ(quiet.Totals().unchanged, 49 + 49 + 50 + 49);
  EXPECT_EQ(server_->counters().writes() + server_->counters().fetched, 0);
  // Configured to include themselves: one create each, nothing else.
  customize_ = [](EngineConfig&, RuleSpec& rule) { rule.include_self = true; };
  RunReport with_self = Run();
  EXPECT_EQ(with_self.Totals().created, 3);
  EXPECT_EQ(Keys("p1@example.com").size(), 50u);
}

TEST_F(EngineTest, TargetUsersFromADirectoryGroupExcludeThemselvesByKey) {
  FakeDirectory dir;
  dir.members = {{"p1003", "uid=p3", {"u3"}}, {"p1004", "uid=p4", {"u4"}}, {"x", "uid=x", {}}};
  customize_ = [&](EngineConfig& config, RuleSpec& rule) {
    config.directories["staff"] = &dir;
    rule.users = UserSelection{{}, "staff", "cn=sales", "", "uid"};
  };
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  ASSERT_EQ(r.collections.size(), 2u);
  EXPECT_EQ(Keys("u3").size(), 49u);
  EXPECT_EQ(Keys("u3").count("p1003"), 0u);
  EXPECT_EQ(Keys("u4").count("p1004"), 0u);
  ASSERT_EQ(r.warnings.size(), 1u);  // uid=x has no uid
  EXPECT_NE(ShowPersonal(r.warnings[0]).find("uid=x has no uid"), std::string::npos)
      << r.warnings[0];

  // A missing group fails the rule before anything is written.
  customize_ = [&](EngineConfig& config, RuleSpec& rule) {
    config.directories["staff"] = &dir;
    rule.users = UserSelection{{}, "staff", "cn=gone", "", "uid"};
  };
  server_->ResetCounters();
  RunReport missing = Run();
  EXPECT_EQ(missing.ExitCode(), 1);
  EXPECT_EQ(server_->counters().writes(), 0);
}

TEST_F(EngineTest, DisabledOrUnsafeDirectoryUsersReceiveNothingAndAreOffboarded) {
  FakeDirectory dir;
  for (int i = 0; i < 6; ++i) {
    dir.members.push_back(
        {"p100" + std::to_string(i), "uid=p" + std::to_string(i), {"u" + std::to_string(i)}});
    dir.members.back().attributes["userAccountControl"] = {"512"};
  }
  dir.members.push_back({"p1007", "uid=dots", {".."}});
  dir.members.push_back({"p1008", "uid=slash", {"a/b"}});
  customize_ = [&](EngineConfig& config, RuleSpec& rule) {
    config.directories["staff"] = &dir;
    rule.users = UserSelection{{}, "staff", "cn=sales", "", "uid"};
    rule.users->exclude = std::move(Filter::Parse("bit(userAccountControl, 2)")).value();
  };
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.collections.size(), 6u);  // not "..", not "a/b"
  EXPECT_EQ(r.warnings.size(), 2u);
  // u5's account is disabled (514 = 512 + 2): they stop receiving the rule,
  // as if they had left it, and roster's cards leave their book.
  dir.members[5].attributes["userAccountControl"] = {"514"};
  RunReport disabled = Run();
  EXPECT_EQ(disabled.ExitCode(), 0);
  EXPECT_TRUE(Keys("u5").empty());
  EXPECT_EQ(Keys("u4").size(), 49u);
  bool offboarded = false;
  for (const CollectionReport& c : disabled.collections) {
    offboarded = offboarded || (c.key.user == "u5" && c.offboarded);
  }
  EXPECT_TRUE(offboarded);
}

TEST_F(EngineTest, ARefusedSharedCredentialStopsTheTargetNotMore) {
  users_ = {"alice", "bob", "carol", "dave"};
  server_->SetFault([](const std::string&, const std::string&) -> std::optional<Error> {
    Error e = MakeError(ErrorKind::kAccessDenied, "the server rejected the credentials (HTTP 401)");
    e.credential_refused = true;
    return e;
  });
  customize_ = [this](EngineConfig& config, RuleSpec&) {
    config.targets["mem"].target = NewMemoryTarget(server_, 1);  // one book at a time
  };
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 1);
  // One refused write; then no more logins on this target in this run.
  EXPECT_EQ(r.Totals().errors, 2);  // the refused create, and "49 actions were not tried"
  int skipped = 0;
  for (const CollectionReport& c : r.collections) {
    for (const std::string& e : c.errors) {
      skipped += e.find("nothing more is tried with it") != std::string::npos ? 1 : 0;
    }
  }
  EXPECT_EQ(skipped, 3);
  server_->SetFault(nullptr);
  EXPECT_EQ(Run().ExitCode(), 0);  // fixed: the next run syncs everything
  ExpectConverged(50);
}

TEST_F(EngineTest, UsersWhoLeaveLoseRostersItemsButKeepTheirOwn) {
  users_ = {"alice", "bob", "carol", "dave", "erin", "frank"};
  ASSERT_EQ(Run().ExitCode(), 0);
  Contact mine;
  mine.formatted_name = "My dentist";
  server_->PutByHand("bob", "/bob/dentist", mine);
  users_ = {"alice", "carol", "dave", "erin", "frank"};  // bob left (1 of 6: under 20%)
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.Totals().deleted, 50);
  auto bob = server_->Items("bob");
  ASSERT_EQ(bob.size(), 1u);
  EXPECT_EQ(bob.begin()->second.contact.formatted_name, "My dentist");
  EXPECT_FALSE(store_->FindCollection({"company", "mem", "bob"}).ok());
  EXPECT_EQ(Keys("alice").size(), 50u);

  // Two of five leaving at once (40%) is held back; --force lets it pass.
  users_ = {"alice", "carol", "dave"};
  server_->ResetCounters();
  RunReport held = Run();
  EXPECT_EQ(held.ExitCode(), 3);
  EXPECT_EQ(server_->counters().writes(), 0);
  EXPECT_EQ(Keys("erin").size(), 50u);
  RunReport forced = Run(false, /*force=*/true);
  EXPECT_EQ(forced.ExitCode(), 0);
  EXPECT_TRUE(Keys("erin").empty());
  EXPECT_TRUE(Keys("frank").empty());
}

TEST_F(EngineTest, OffboardKeepLeavesTheItemsAndStopsUpdates) {
  users_ = {"alice", "bob", "carol", "dave", "erin", "frank"};
  customize_ = [](EngineConfig&, RuleSpec& rule) { rule.offboard_remove = false; };
  ASSERT_EQ(Run().ExitCode(), 0);
  users_ = {"alice", "carol", "dave", "erin", "frank"};
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(server_->counters().writes(), 0);
  EXPECT_EQ(Keys("bob").size(), 50u);
  people_[0].contact.title = "New title";
  ASSERT_EQ(Run().ExitCode(), 0);
  for (const auto& [href, item] : server_->Items("bob")) {
    EXPECT_NE(item.contact.title, "New title");
  }
}

TEST_F(EngineTest, KeepUserFieldSurvivesEverySyncAndIfBlankFillsOnlyBlanks) {
  customize_ = [](EngineConfig&, RuleSpec& rule) {
    rule.fields =
        std::move(ParseFieldPolicy({{"note", "keep_user"}, {"title", "if_blank"}})).value();
  };
  people_[0].contact.note = "from HR";
  ASSERT_EQ(Run().ExitCode(), 0);
  auto find = [&](const std::string& user, const std::string& key) {
    for (const auto& [href, item] : server_->Items(user)) {
      if (item.tag && item.tag->key == key) return std::make_pair(href, item);
    }
    return std::make_pair(std::string(), MemoryItem{});
  };
  auto [href, item] = find("alice", "p1000");
  EXPECT_EQ(item.contact.note, "from HR");
  Contact edited = item.contact;
  edited.note = "call after 10";
  edited.title = "Boss";  // the user fills the blank title
  server_->PutByHand("alice", href, edited, item.tag);

  people_[0].contact.note = "from HR, revised";
  people_[0].contact.title = "Engineer";
  people_[0].contact.department = "R&D";
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(server_->counters().writes(), 3);  // one per user
  auto after = find("alice", "p1000").second;
  EXPECT_EQ(after.contact.note, "call after 10");  // the user's edit survives
  EXPECT_EQ(after.contact.title, "Boss");          // if_blank: theirs was filled
  EXPECT_EQ(after.contact.department, "R&D");      // overwrite
  auto bobs = find("bob", "p1000").second;
  EXPECT_EQ(bobs.contact.note, "from HR, revised");  // bob never edited it
  EXPECT_EQ(bobs.contact.title, "Engineer");

  server_->ResetCounters();
  RunReport quiet = Run();
  EXPECT_EQ(quiet.ExitCode(), 0);
  EXPECT_EQ(server_->counters().writes(), 0);
  EXPECT_EQ(server_->counters().fetched, 0);
  EXPECT_EQ(find("alice", "p1000").second.contact.note, "call after 10");
}

TEST_F(EngineTest, AUsersOwnCardForAPersonIsSkippedOrTakenOver) {
  Contact own;
  own.formatted_name = "Given3 (my friend)";
  own.emails.push_back({"P3@example.com", {"home"}, false});
  own.note = "knows my family";
  server_->PutByHand("alice", "/alice/own-p3", own);
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.Totals().skipped, 1);
  EXPECT_EQ(Keys("alice").count("p1003"), 0u);  // no duplicate of their card
  EXPECT_EQ(Keys("bob").count("p1003"), 1u);
  EXPECT_EQ(server_->Items("alice").at("/alice/own-p3").contact.note, "knows my family");
  ASSERT_EQ(Run().Totals().skipped, 0);  // quiet: not planned again

  customize_ = [](EngineConfig&, RuleSpec& rule) {
    rule.adopt = AdoptMode::kMerge;
    rule.fields = std::move(ParseFieldPolicy({{"note", "keep_user"}})).value();
    rule.max_update_percent = 100;  // new field rules re-merge every item once
  };
  RunReport merged = Run();
  EXPECT_EQ(merged.ExitCode(), 0);
  EXPECT_EQ(Keys("alice").count("p1003"), 1u);
  MemoryItem taken = server_->Items("alice").at("/alice/own-p3");
  ASSERT_TRUE(taken.tag.has_value());
  EXPECT_EQ(taken.tag->key, "p1003");
  EXPECT_EQ(taken.contact.note, "knows my family");  // keep_user: theirs stays
  EXPECT_EQ(taken.contact.given_name, "Given3");     // the rest from the source
  EXPECT_EQ(server_->Items("alice").size(), 50u);
}

TEST_F(EngineTest, SeveralSourcesMergeOnEmailWithPriority) {
  std::vector<SourceRecord> hr;
  SourceRecord a = Person(1);  // same e-mail as staff's p1
  a.key = "hr-1";
  a.contact.title = "Head of Sales";
  a.contact.given_name = "Priority";
  a.contact.phones.push_back({"+44 20 7946 0001", {"work"}, false});
  hr.push_back(a);
  SourceRecord b = Person(99);
  b.key = "hr-99";
  hr.push_back(b);
  customize_ = [&](EngineConfig& config, RuleSpec& rule) {
    config.sources["hr"] = SourceEntry(std::make_unique<VectorSource>(&hr));
    rule.sources = {"hr", "staff"};
  };
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  auto keys = Keys("alice");
  EXPECT_EQ(keys.size(), 51u);  // 50 staff, one merged with hr, plus hr-99
  EXPECT_EQ(keys.count("hr:hr-1"), 1u);
  EXPECT_EQ(keys.count("staff:p1001"), 0u);
  EXPECT_EQ(keys.count("hr:hr-99"), 1u);
  for (const auto& [href, item] : server_->Items("alice")) {
    if (item.tag && item.tag->key == "hr:hr-1") {
      EXPECT_EQ(item.contact.given_name, "Priority");  // hr first
      EXPECT_EQ(item.contact.department, "Sales");     // both have it: hr's
      EXPECT_EQ(item.contact.title, "Head of Sales");  // only hr has it
      EXPECT_EQ(item.contact.phones.size(), 1u);
    }
  }
}

TEST_F(EngineTest, SourceTransformAndExclusionApplyBeforeRules) {
  people_[0].contact.phones.push_back({"020 7946 0958", {"work"}, false});
  people_[1].contact.phones.push_back({"n/a", {"cell"}, false});
  people_[2].attributes["userAccountControl"] = {"514"};
  customize_ = [](EngineConfig& config, RuleSpec&) {
    config.sources["staff"].transform.default_region = "GB";
    config.sources["staff"].exclude =
        std::move(Filter::Parse("bit(userAccountControl, 2)")).value();
  };
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(Keys("alice").size(), 49u);
  EXPECT_EQ(Keys("alice").count("p1002"), 0u);
  ASSERT_EQ(r.notices.size(), 1u);
  EXPECT_NE(r.notices[0].find("1 excluded"), std::string::npos) << r.notices[0];
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].find("n/a"), std::string::npos) << r.warnings[0];
  for (const auto& [href, item] : server_->Items("alice")) {
    if (item.tag && item.tag->key == "p1000") {
      ASSERT_EQ(item.contact.phones.size(), 1u);
      EXPECT_EQ(item.contact.phones[0].value, "+442079460958");
    }
  }
}

TEST_F(EngineTest, AnUnchangedSourceVersionSkipsTheReadUntilACollectionNeedsIt) {
  // Listed users are told from their own card by reading the people: the
  // skip needs users from a directory, or include_self.
  customize_ = [](EngineConfig&, RuleSpec& rule) { rule.include_self = true; };
  version_ = "v1";
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(reads_, 1);
  RunReport quiet = Run();
  EXPECT_EQ(quiet.ExitCode(), 0);
  EXPECT_EQ(reads_, 1);  // not read again
  EXPECT_EQ(quiet.Totals().unchanged, 150);

  // A user edits a managed card: that collection needs the people after all.
  auto items = server_->Items("bob");
  Contact edited = items.begin()->second.contact;
  edited.title = "Changed on the phone";
  server_->PutByHand("bob", items.begin()->first, edited, items.begin()->second.tag);
  RunReport repaired = Run();
  EXPECT_EQ(repaired.ExitCode(), 0);
  EXPECT_EQ(reads_, 2);
  EXPECT_EQ(repaired.Totals().updated, 1);
  ExpectConverged(50);

  // The source changes and says so: read, and the change lands.
  people_[0].contact.title = "New";
  version_ = "v2";
  RunReport changed = Run();
  EXPECT_EQ(reads_, 3);
  EXPECT_EQ(changed.Totals().updated, 3);
  ExpectConverged(50);
  // A filter edit changes what would be read: read again, though the version stayed.
  RunReport filtered = Run(false, false, "department != 'nobody'");
  EXPECT_EQ(reads_, 4);
  EXPECT_EQ(filtered.ExitCode(), 0);
  Run(false, false, "department != 'nobody'");
  EXPECT_EQ(reads_, 4);
}

// A source that reads changes since a saved position, as Graph's delta
// does: it can tell its version only from a cursor a read left behind.
class DeltaSource final : public Source {
 public:
  DeltaSource(const std::vector<SourceRecord>* records, const int* revision, int* reads,
              int* version_calls)
      : records_(records), revision_(revision), reads_(reads), version_calls_(version_calls) {}
  Result<std::vector<SourceRecord>> ReadAll() override {
    ++*reads_;
    cursor_ = std::to_string(*revision_) + ":" + std::to_string(records_->size());
    return *records_;
  }
  Result<std::string> Version() override {
    ++*version_calls_;
    // Nothing changed since the cursor: the version it was read at.
    if (cursor_.empty() || cursor_.substr(0, cursor_.find(':')) != std::to_string(*revision_)) {
      return std::string();
    }
    return "delta " + cursor_;
  }
  void RestoreCursor(const std::string& saved) override { cursor_ = saved; }
  std::string Cursor() const override { return cursor_; }

 private:
  const std::vector<SourceRecord>* records_;
  const int* revision_;
  int* reads_;
  int* version_calls_;
  std::string cursor_;
};

TEST_F(EngineTest, ADeltaCursorKeptInTheStateLetsTheNextRunSkipTheRead) {
  int revision = 1, version_calls = 0;
  customize_ = [&](EngineConfig& config, RuleSpec&) {
    config.sources["staff"] =
        SourceEntry(std::make_unique<DeltaSource>(&people_, &revision, &reads_, &version_calls));
  };
  ASSERT_EQ(Run().ExitCode(), 0);
  EXPECT_EQ(reads_, 1);
  EXPECT_EQ(version_calls, 2);  // unknown before the read, known after it
  EXPECT_EQ(*store_->LoadSourceCursor("staff"), "1:50");
  // A plan restores the cursor, reads nothing it need not, and stores nothing.
  RunReport plan = Run(/*dry_run=*/true);
  EXPECT_EQ(plan.ExitCode(), 0);
  RunReport quiet = Run();
  EXPECT_EQ(quiet.ExitCode(), 0);
  EXPECT_EQ(reads_, 1) << "the cursor said nothing changed";
  EXPECT_EQ(quiet.Totals().created + quiet.Totals().updated, 0);
  // The directory changes: the delta sees it, the people are read, the change lands.
  people_[3].contact.title = "Promoted";
  revision = 2;
  RunReport changed = Run();
  EXPECT_EQ(reads_, 2);
  EXPECT_EQ(changed.Totals().updated, 3);
  EXPECT_EQ(*store_->LoadSourceCursor("staff"), "2:50");
  RunReport after = Run();
  EXPECT_EQ(reads_, 2) << "the version learned by the read was stored";
  EXPECT_EQ(after.Totals().updated, 0);
  ExpectConverged(50);
}

TEST_F(EngineTest, AUserWithoutAnAccountIsReportedAndSkippedNotAFailure) {
  server_->SetMissingUsers({"bob"});
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0);
  bool named = false;
  for (const CollectionReport& c : r.collections) {
    if (c.key.user != "bob") continue;
    EXPECT_TRUE(c.no_such_user);
    EXPECT_TRUE(c.errors.empty());
    for (const std::string& w : c.warnings) named = named || w.find("bob") != std::string::npos;
  }
  EXPECT_TRUE(named);
  EXPECT_EQ(Keys("alice").size(), 50u);
  EXPECT_FALSE(server_->HasCollection("bob"));
  // The plan says the same and plans nothing for bob.
  RunReport plan = Run(/*dry_run=*/true);
  EXPECT_EQ(plan.ExitCode(), 0);
  for (const CollectionReport& c : plan.collections) {
    if (c.key.user == "bob") {
      EXPECT_TRUE(c.planned.empty());
    }
  }
}

TEST_F(EngineTest, ListedUsersAreRecognisedOnceThenTheReadIsSkipped) {
  users_ = {"p1@example.com", "alice", "bob"};
  version_ = "v1";
  ASSERT_EQ(Run().ExitCode(), 0);  // reads the people to tell who each user is
  EXPECT_EQ(reads_, 1);
  RunReport quiet = Run();  // who each user is was stored: nothing is read
  EXPECT_EQ(quiet.ExitCode(), 0);
  EXPECT_EQ(reads_, 1);
  EXPECT_EQ(quiet.Totals().unchanged, 49 + 50 + 50);
  EXPECT_EQ(Keys("p1@example.com").count("p1001"), 0u);  // still not sent their own card
  // A new listed user must be recognised: the people are read again.
  users_.push_back("p7@example.com");
  RunReport added = Run();
  EXPECT_EQ(reads_, 2);
  EXPECT_EQ(added.Totals().created, 49);
  EXPECT_EQ(Keys("p7@example.com").count("p1007"), 0u);
  Run();
  EXPECT_EQ(reads_, 2);
}

TEST_F(EngineTest, AGuardThatTripsInAFullPassIsNotForgottenByTheNextRun) {
  ASSERT_EQ(Run().ExitCode(), 0);
  // An old phone brings back 20 marked cards of people long gone.
  for (int i = 0; i < 20; ++i) {
    Contact ghost;
    ghost.formatted_name = "Ghost " + std::to_string(i);
    server_->PutByHand("alice", "/alice/ghost-" + std::to_string(i), ghost,
                       ManagedTag{"company", "ghost-" + std::to_string(i)});
  }
  RunReport held = Run();
  EXPECT_EQ(held.ExitCode(), 3);
  EXPECT_EQ(Keys("alice").size(), 70u);
  RunReport again = Run();  // still held: the book is not taken for quiet
  EXPECT_EQ(again.ExitCode(), 3);
  RunReport forced = Run(false, /*force=*/true);
  EXPECT_EQ(forced.ExitCode(), 0);
  EXPECT_EQ(forced.Totals().deleted, 20);
  ExpectConverged(50);
}

TEST_F(EngineTest, ADeferredReadThatDisagreesWithTheVersionPlansNothing) {
  customize_ = [](EngineConfig&, RuleSpec& rule) { rule.include_self = true; };
  version_ = "v1";
  ASSERT_EQ(Run().ExitCode(), 0);
  // The source comes back short while its version claims nothing changed,
  // and bob's book changed, so it needs the people.
  std::vector<SourceRecord> all = people_;
  people_.resize(45);
  auto items = server_->Items("bob");
  Contact edited = items.begin()->second.contact;
  edited.title = "Changed on the phone";
  server_->PutByHand("bob", items.begin()->first, edited, items.begin()->second.tag);
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 1);
  EXPECT_EQ(Keys("bob").size(), 50u);  // nothing deleted on a read that broke its promise
  people_ = all;
  RunReport whole = Run();
  EXPECT_EQ(whole.ExitCode(), 0);
  ExpectConverged(50);
}

TEST_F(EngineTest, OffboardingWithoutItsTargetKeepsTheStateAndSaysSo) {
  ASSERT_EQ(Run().ExitCode(), 0);
  customize_ = [this](EngineConfig& config, RuleSpec& rule) {
    config.targets.erase("mem");
    config.targets["mem2"] = TargetEntry{NewMemoryTarget(server2_, 2), users_};
    rule.target = "mem2";
  };
  RunReport r = Run(false, /*force=*/true);
  EXPECT_EQ(r.ExitCode(), 1);
  EXPECT_EQ(Keys("alice").size(), 50u);  // nothing could remove them
  EXPECT_TRUE(store_->FindCollection({"company", "mem", "alice"}).ok());
  bool said = false;
  for (const CollectionReport& c : r.collections) {
    for (const std::string& e : c.errors)
      said = said || e.find("no longer configured") != std::string::npos;
  }
  EXPECT_TRUE(said);
}

}  // namespace
}  // namespace roster
