// The engine against a Graph-like target (connectors/memory/graph_like.h):
// server-assigned ids, $batch of 20 with 4 run at once, PATCH as a merge, a
// lossy contact shape, photos as dependent writes, throttling per mailbox.
// What issue 8 asks to show: 2,000 contacts into 100 mailboxes converge with
// 100 batch calls each, no duplicates under 10% injected 429/5xx or lost
// answers, no creates after a lost state (one listing pass), no 429 from
// roster's own concurrency, no writes on a no-change full pass over the lossy
// projection, and a half-done contact-plus-photo completed with exactly the
// missing write.
#include <gtest/gtest.h>

#include <mutex>
#include <set>

#include "app/engine.h"
#include "app/test_support.h"
#include "connectors/memory/graph_like.h"

namespace roster {
namespace {

// The bytes a PNG starts with: photos Graph takes (and that no JPEG decoder reads).
const std::string kPng("\x89PNG\r\n\x1a\n", 8);

// A person with more than a Graph contact holds: four e-mail addresses, a
// fax, a role. Every 50th has a photo.
SourceRecord Person(int i) {
  SourceRecord r;
  r.key = "p" + std::to_string(10000 + i);
  Contact& c = r.contact;
  c.given_name = "Given" + std::to_string(i);
  c.family_name = "Family";
  c.title = "Engineer";
  c.role = "Team lead";
  for (const char* domain : {"example.com", "example.org", "example.net", "example.io"}) {
    c.emails.push_back({"p" + std::to_string(i) + "@" + domain, {"work"}, false});
  }
  c.phones.push_back({"+1555" + std::to_string(1000000 + i), {"cell"}, false});
  c.phones.push_back({"+1666" + std::to_string(1000000 + i), {"work", "fax"}, false});
  if (i % 50 == 0) c.photo = Photo{"image/png", kPng + std::to_string(i), ""};
  return r;
}

class GraphEngineTest : public ::testing::Test {
 protected:
  void Init(int people, int mailboxes) {
    people_.clear();
    for (int i = 0; i < people; ++i) people_.push_back(Person(i));
    users_.clear();
    for (int u = 0; u < mailboxes; ++u) users_.push_back("u" + std::to_string(100 + u));
    store_ = std::move(OpenSqliteStateStore(":memory:")).value();
  }

  RunReport Run() {
    EngineConfig config;
    config.sources["gal"] = SourceEntry(std::make_unique<VectorSource>(&people_));
    GraphLikeOptions options;
    options.clock = &clock_;
    config.targets["m365"] = TargetEntry{NewGraphLikeTarget(server_, options), users_};
    RuleSpec rule;
    rule.name = "gal";
    rule.sources = {"gal"};
    rule.target = "m365";
    rule.display_name = "Company Contacts";
    rule.max_delete_percent = 20;
    config.rules.push_back(std::move(rule));
    Engine engine(std::move(config), *store_);
    RunOptions run;
    run.clock = &clock_;
    return engine.Run(run);
  }

  // Every mailbox's folder holds exactly the selected people, one contact
  // each, in the target's projection.
  void ExpectConverged() {
    for (const std::string& user : users_) {
      std::map<std::string, int> copies;
      for (const auto& [href, item] : server_->Items(user, "Company Contacts")) {
        if (item.tag) ++copies[item.tag->key];
      }
      ASSERT_EQ(copies.size(), people_.size()) << user;
      for (const auto& [key, n] : copies) ASSERT_EQ(n, 1) << user << " " << key;
    }
  }

  std::shared_ptr<GraphLikeServer> server_ = std::make_shared<GraphLikeServer>();
  FakeClock clock_;
  std::vector<SourceRecord> people_;
  std::vector<std::string> users_;
  std::unique_ptr<StateStore> store_;
};

TEST_F(GraphEngineTest, TwoThousandContactsIntoAHundredMailboxes) {
  Init(2000, 100);
  RunReport first = Run();
  ASSERT_EQ(first.ExitCode(), 0) << (first.errors.empty() ? "" : first.errors[0]);
  ExpectConverged();
  GraphLikeCounters c = server_->counters();
  EXPECT_EQ(c.creates, 200000);
  // ceil(2,000 / 20) = 100 batch calls per mailbox, and nothing else wrote.
  EXPECT_EQ(c.batch_calls, 100 * 100);
  EXPECT_EQ(c.photo_writes, 40 * 100);  // every 50th person: a second sub-request
  EXPECT_EQ(c.throttled_concurrency, 0);
  EXPECT_EQ(c.throttled_window, 0);
  ExecuteStats wire;
  for (const CollectionReport& r : first.collections) wire += r.stats;
  EXPECT_EQ(wire.requests, 100 * 100);
  EXPECT_EQ(wire.sub_requests, 200000);

  // Nothing changed: one listing per mailbox, no write.
  server_->ResetCounters();
  RunReport quiet = Run();
  ASSERT_EQ(quiet.ExitCode(), 0);
  EXPECT_EQ(server_->counters().writes(), 0);
  EXPECT_EQ(server_->counters().list_pages, 100);

  // Lost state: one paged listing pass per mailbox finds every contact by
  // its marker; nothing is created, read one by one, or rewritten, although
  // the projection dropped an e-mail address, the fax and the role of each.
  store_ = std::move(OpenSqliteStateStore(":memory:")).value();
  server_->ResetCounters();
  RunReport lost = Run();
  ASSERT_EQ(lost.ExitCode(), 0) << (lost.errors.empty() ? "" : lost.errors[0]);
  c = server_->counters();
  EXPECT_EQ(c.creates, 0);
  EXPECT_EQ(c.writes(), 0);
  EXPECT_EQ(c.fetched, 0);
  EXPECT_EQ(c.list_pages, 100 * 20);  // 2,000 per mailbox, 100 per page
  EXPECT_EQ(lost.Totals().adopted, 200000);
  ExpectConverged();
}

TEST_F(GraphEngineTest, TenPercentThrottledOrFailedRequestsLeaveNoDuplicates) {
  Init(300, 6);
  server_->SetRandomFaults(RandomFaults{0.05, 0.05, 0.0, 42});
  RunReport first = Run();
  EXPECT_GT(server_->counters().throttled_injected, 0);
  EXPECT_GT(server_->counters().injected_5xx, 0);
  server_->SetRandomFaults(RandomFaults{});
  RunReport second = Run();  // whatever ran out of attempts
  EXPECT_EQ(second.ExitCode(), 0) << (second.errors.empty() ? "" : second.errors[0]);
  ExpectConverged();
  EXPECT_EQ(server_->counters().throttled_concurrency, 0);
}

TEST_F(GraphEngineTest, LostAnswersAreFoundByTheMarkerNotCreatedTwice) {
  Init(200, 4);
  server_->SetRandomFaults(RandomFaults{0.0, 0.0, 0.3, 7});
  RunReport first = Run();
  EXPECT_GT(server_->counters().answers_lost, 0);
  EXPECT_NE(first.ExitCode(), 0);  // the lost ones are not recorded as done
  server_->SetRandomFaults(RandomFaults{});
  int64_t landed = 0;
  for (const std::string& user : users_) {
    std::set<std::string> keys;
    for (const auto& [href, item] : server_->Items(user, "Company Contacts")) {
      ASSERT_TRUE(item.tag);
      ASSERT_TRUE(keys.insert(item.tag->key).second) << "a duplicate after lost answers";
      ++landed;
    }
  }
  server_->ResetCounters();
  RunReport second = Run();
  EXPECT_EQ(second.ExitCode(), 0) << (second.errors.empty() ? "" : second.errors[0]);
  ExpectConverged();
  // The books were left unclean: the second run listed each in full,
  // adopted what the lost answers had created, and created only the rest.
  EXPECT_EQ(server_->counters().creates, 200 * 4 - landed);
  EXPECT_GT(second.Totals().adopted, 0);
}

TEST_F(GraphEngineTest, AHalfDoneContactAndPhotoIsCompletedWithExactlyTheMissingWrite) {
  Init(60, 2);
  const std::string key = Person(0).key;  // person 0 has a photo
  int failed = 0;
  server_->SetFault([&](const GraphLikeStep& step) -> std::optional<StepFault> {
    if (step.kind == "photo" && step.key == key && step.user == "u100" && failed++ == 0) {
      return StepFault{MakeError(ErrorKind::kInvalidData, "HTTP 400: the photo was refused")};
    }
    return std::nullopt;
  });
  RunReport first = Run();
  EXPECT_EQ(first.ExitCode(), 1);
  EXPECT_EQ(first.Totals().errors, 1);
  server_->ResetCounters();
  RunReport second = Run();
  EXPECT_EQ(second.ExitCode(), 0) << (second.errors.empty() ? "" : second.errors[0]);
  GraphLikeCounters c = server_->counters();
  EXPECT_EQ(c.photo_writes, 1);  // exactly the missing write
  EXPECT_EQ(c.creates, 0);
  EXPECT_EQ(c.fields_sent, 0);  // the contact itself is not sent again
  EXPECT_EQ(second.Totals().updated, 1);
  ExpectConverged();
  for (const auto& [href, item] : server_->Items("u100", "Company Contacts")) {
    if (item.tag && item.tag->key == key) {
      EXPECT_TRUE(item.photo.has_value());
    }
  }
}

TEST_F(GraphEngineTest, AUsersEditToAWrittenFieldIsSeenAndOnlyThatFieldIsSent) {
  Init(40, 2);
  ASSERT_EQ(Run().ExitCode(), 0);
  auto items = server_->Items("u100", "Company Contacts");
  auto it = items.begin();
  Contact edited = it->second.contact;
  edited.title = "Edited on the phone";
  ASSERT_FALSE(server_->EditByHand("u100", "Company Contacts", it->first, edited).empty());
  server_->ResetCounters();
  RunReport r = Run();
  EXPECT_EQ(r.ExitCode(), 0) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_EQ(r.Totals().updated, 1);
  EXPECT_EQ(server_->counters().updates, 1);
  EXPECT_EQ(server_->counters().fields_sent, 1);  // the title, nothing else
  EXPECT_EQ(server_->counters().fetched, 0);      // the delta listing carried the item
  EXPECT_EQ(server_->Items("u100", "Company Contacts").at(it->first).contact.title, "Engineer");
}

TEST_F(GraphEngineTest, UsersOwnContactsAreNeverTouched) {
  Init(30, 2);
  Contact mine;
  mine.given_name = "My";
  mine.family_name = "Dentist";
  std::string href = server_->PutByHand("u100", "Company Contacts", mine);
  ASSERT_EQ(Run().ExitCode(), 0);
  store_ = std::move(OpenSqliteStateStore(":memory:")).value();  // and after a lost state
  ASSERT_EQ(Run().ExitCode(), 0);
  auto items = server_->Items("u100", "Company Contacts");
  ASSERT_TRUE(items.count(href));
  EXPECT_FALSE(items.at(href).tag.has_value());
  EXPECT_EQ(items.at(href).contact.family_name, "Dentist");
  EXPECT_EQ(items.size(), 31u);
}

}  // namespace
}  // namespace roster
