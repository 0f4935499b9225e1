// The invariants, end to end on the in-memory target: convergence, zero
// duplicates (also after lost state and failed writes), ownership, minimal
// writes, and the deletion guard.
#include "app/engine.h"

#include <gtest/gtest.h>

#include "connectors/memory/memory.h"

namespace roster {
namespace {

class VectorSource final : public Source {
 public:
  explicit VectorSource(std::vector<SourceRecord>* records) : records_(records) {}
  Result<std::vector<SourceRecord>> ReadAll() override {
    if (fail) return MakeError(ErrorKind::kUnavailable, "cannot read the source");
    return *records_;
  }
  bool fail = false;

 private:
  std::vector<SourceRecord>* records_;
};

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
    auto source = std::make_unique<VectorSource>(&people_);
    source->fail = source_fails_;
    config.sources["staff"] = std::move(source);
    config.targets["mem"] = TargetEntry{NewMemoryTarget(server_, 2), users_};
    RuleSpec rule;
    rule.name = "company";
    rule.source = "staff";
    rule.target = "mem";
    rule.display_name = "Company";
    rule.filter = std::move(Filter::Parse(filter)).value();
    rule.max_delete_percent = 20;
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
  std::unique_ptr<StateStore> store_;
  std::vector<SourceRecord> people_;
  std::vector<std::string> users_ = {"alice", "bob", "carol"};
  bool source_fails_ = false;
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

}  // namespace
}  // namespace roster
