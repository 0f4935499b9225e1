// Selection and the rule-level checks: merging sources, the keys that changed,
// and the source guard.
#include "sync/selection.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <unordered_set>

#include "sync/prepare.h"

namespace roster {
namespace {

SourceRecord Rec(const std::string& key, const std::string& email, const std::string& title = "",
                 const std::string& phone = "") {
  SourceRecord r;
  r.key = key;
  r.contact.given_name = key;
  r.contact.title = title;
  if (!email.empty()) r.contact.emails.push_back({email, {"work"}, false});
  if (!phone.empty()) r.contact.phones.push_back({phone, {"cell"}, false});
  return r;
}

TEST(MergeSources, FirstSourceWithAValueWinsPerField) {
  std::vector<SourceRecord> hr{Rec("1", "ann@example.com", "Engineer"),
                               Rec("2", "bob@example.com")};
  std::vector<SourceRecord> crm{Rec("x", "ANN@example.com ", "Boss", "+15550100"),
                                Rec("y", "cy@example.com")};
  std::unordered_map<std::string, std::string> origin;
  auto people = MergeSources({{"hr", &hr}, {"crm", &crm}}, &origin);
  ASSERT_EQ(people.size(), 3u);
  EXPECT_EQ(people[0].key, "hr:1");
  EXPECT_EQ(people[0].contact.title, "Engineer");                 // hr had one
  ASSERT_EQ(people[0].contact.phones.size(), 1u);                 // hr had none: crm's
  EXPECT_EQ(origin.at(std::string("crm") + '\0' + "x"), "hr:1");  // one person
  EXPECT_EQ(people[2].key, "crm:y");
}

DesiredItem Want(const std::string& key, const std::string& hash) {
  return DesiredItem{key, hash, nullptr, {}};
}

struct DiffCase {
  const char* name;
  std::vector<SnapshotEntry> before;
  std::vector<DesiredItem> now;
  std::vector<std::string> changed;
};

TEST(DiffKeys, Table) {
  const DiffCase cases[] = {
      {"same", {{"a", "1"}, {"b", "1"}}, {Want("a", "1"), Want("b", "1")}, {}},
      {"changed", {{"a", "1"}, {"b", "1"}}, {Want("a", "1"), Want("b", "2")}, {"b"}},
      {"added and gone", {{"a", "1"}, {"c", "1"}}, {Want("b", "1"), Want("c", "1")}, {"a", "b"}},
      {"from nothing", {}, {Want("a", "1")}, {"a"}},
      {"to nothing", {{"a", "1"}}, {}, {"a"}},
  };
  for (const DiffCase& c : cases) EXPECT_EQ(DiffKeys(c.before, c.now), c.changed) << c.name;
}

TEST(SourceGuard, CountsOnlyPeopleLost) {
  RuleSpec rule;
  rule.max_delete_percent = 20;
  Snapshot previous;
  for (int i = 0; i < 10; ++i) previous.entries.push_back({"k" + std::to_string(i), "h"});
  RuleSelection now;
  std::vector<DesiredItem> desired;
  for (int i = 2; i < 30; ++i) desired.push_back(Want("k" + std::to_string(i), "h"));
  now.desired = desired;
  for (const DesiredItem& d : now.desired) now.by_key.emplace(d.key, &d);
  EXPECT_FALSE(CheckSourceGuard(rule, previous, now));  // 2 of 10 lost: 20% is allowed
  now.by_key.erase("k2");
  auto trip = CheckSourceGuard(rule, previous, now);  // 3 of 10
  ASSERT_TRUE(trip);
  EXPECT_EQ(trip->count, 3);
  EXPECT_FALSE(CheckSourceGuard(rule, Snapshot{}, now));  // a first sync never trips
}

// SelectChanges against SelectPeople over everyone, on random changes: the
// same people, fingerprint and changed keys, however many were touched
// beyond those that changed (a dependent prepared again changes nothing).
TEST(SelectChanges, EndsWhereSelectingEveryoneWould) {
  RuleSpec rule;
  rule.name = "r";
  rule.filter = std::move(Filter::Parse("title != 'out'")).value();
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    std::map<std::string, SourceRecord> people;
    for (int i = 0; i < 60; ++i) {
      std::string key = "k" + std::to_string(100 + i);
      people[key] = Rec(key, key + "@example.com", rng() % 5 == 0 ? "out" : "in");
    }
    auto all = [&] {
      std::vector<SourceRecord> out;
      for (const auto& [k, r] : people) out.push_back(r);
      return out;
    };
    std::vector<SourceRecord> before_records = all();
    auto before = SelectPeople(rule, {{"s", &before_records}});
    ASSERT_TRUE(before.ok());
    Snapshot previous{before->fingerprint, {}, "", {}};
    for (const DesiredItem& d : before->desired) previous.entries.push_back({d.key, d.hash});

    std::unordered_set<std::string> dirty;
    for (int c = 0, n = static_cast<int>(rng() % 8); c < n; ++c) {
      std::string key = "k" + std::to_string(100 + rng() % 70);
      dirty.insert(key);
      switch (rng() % 4) {
        case 0:
          people.erase(key);
          break;
        case 1:
          people[key] = Rec(key, key + "@example.com", rng() % 2 ? "out" : "in");
          break;
        case 2:
          people[key] = Rec(key, key + "@example.com", "changed " + std::to_string(round));
          break;
        default:
          break;  // touched (a dependent), unchanged
      }
    }
    std::vector<SourceRecord> after_records = all();
    auto full = SelectPeople(rule, {{"s", &after_records}});
    ASSERT_TRUE(full.ok());
    std::vector<SourceRecord> touched;
    for (const SourceRecord& r : after_records) {
      if (dirty.count(r.key)) touched.push_back(r);
    }
    auto partial = SelectChanges(rule, {"s", &touched}, dirty, previous);
    ASSERT_TRUE(partial.ok());
    EXPECT_TRUE(partial->partial);
    EXPECT_EQ(partial->fingerprint, full->fingerprint) << "round " << round;
    EXPECT_EQ(partial->changed_keys, DiffKeys(previous.entries, full->desired))
        << "round " << round;
    std::vector<std::string> keys, want;
    for (const SnapshotEntry& e : partial->Entries()) keys.push_back(e.key);
    for (const DesiredItem& d : full->desired) want.push_back(d.key);
    EXPECT_EQ(keys, want) << "round " << round;
    EXPECT_EQ(partial->Count(), full->desired.size());
    for (const DesiredItem& d : partial->desired) EXPECT_TRUE(dirty.count(d.key)) << d.key;
  }
}

}  // namespace
}  // namespace roster
