#include <gtest/gtest.h>

#include "sync/sync.h"

namespace roster {
namespace {

TEST(Planner, GuardCountsAgainstManagedTotalNotTheInput) {
  // Incremental input: 3 departures out of 1000 managed items is 0.3%.
  std::vector<DesiredItem> desired;
  std::vector<CurrentItem> current = {
      {"/1", "e", "a", "h", true}, {"/2", "e", "b", "h", true}, {"/3", "e", "c", "h", true}};
  PlanInput in;
  in.desired = &desired;
  in.current = &current;
  in.managed_total = 1000;
  in.max_delete_percent = 1;
  Plan plan = PlanCollection(in);
  EXPECT_EQ(plan.actions.size(), 3u);
  EXPECT_TRUE(plan.guard.empty());
  in.managed_total = 3;
  EXPECT_FALSE(PlanCollection(in).guard.empty());
}

TEST(Planner, PrefersTheCopyAtTheDeterministicName) {
  std::vector<DesiredItem> desired = {{"a", "h", nullptr}};
  std::vector<CurrentItem> current = {{"/book/aaa-copy", "e1", "a", "h", true},
                                      {"/book/roster-a", "e2", "a", "h", true}};
  PlanInput in;
  in.desired = &desired;
  in.current = &current;
  in.preferred_name = [](const std::string& k) { return "roster-" + k; };
  Plan plan = PlanCollection(in);
  ASSERT_EQ(plan.actions.size(), 1u);
  auto* del = std::get_if<DeleteAction>(&plan.actions[0]);
  ASSERT_NE(del, nullptr);
  EXPECT_EQ(del->href, "/book/aaa-copy");
  EXPECT_TRUE(del->duplicate);
  EXPECT_EQ(plan.Predicted().deleted, 1);
  EXPECT_EQ(plan.Predicted().unchanged, 1);
}

TEST(Planner, IsDeterministic) {
  std::vector<DesiredItem> desired = {{"a", "1", nullptr}, {"b", "2", nullptr}};
  std::vector<CurrentItem> current = {
      {"/z", "e", "c", "3", true}, {"/y", "e", "d", "4", true}, {"/x", "e", "a", "0", true}};
  PlanInput in;
  in.desired = &desired;
  in.current = &current;
  std::vector<std::string> first;
  for (const Action& a : PlanCollection(in).actions) first.push_back(DescribeAction(a));
  std::reverse(current.begin(), current.end());
  std::vector<std::string> second;
  for (const Action& a : PlanCollection(in).actions) second.push_back(DescribeAction(a));
  EXPECT_EQ(first, second);
}

// Every action says why it was decided, as data (plan --verbose, audit).
TEST(Planner, EveryActionCarriesItsReason) {
  struct Case {
    const char* name;
    std::vector<DesiredItem> desired;
    std::vector<CurrentItem> current;
    AdoptMode adopt;
    Why want;
  };
  auto own = [](const char* href) {
    CurrentItem c{href, "e", "", "x", true};
    c.match = {"m1"};
    return c;
  };
  auto edited = [] {
    CurrentItem c{"/a", "e2", "a", "old", true};
    c.edited = true;
    return c;
  };
  const Case cases[] = {
      {"new", {{"a", "h", nullptr}}, {}, AdoptMode::kNever, Why::kNew},
      {"source changed",
       {{"a", "h2", nullptr}},
       {{"/a", "e", "a", "h1", true}},
       AdoptMode::kNever,
       Why::kSourceChanged},
      {"edited on the server",
       {{"a", "h", nullptr}},
       {edited()},
       AdoptMode::kNever,
       Why::kEditedOnServer},
      {"found unrecorded",
       {{"a", "h", nullptr}},
       {{"/a", "e", "a", "h", false}},
       AdoptMode::kNever,
       Why::kFoundUnrecorded},
      {"left", {}, {{"/a", "e", "a", "h", true}}, AdoptMode::kNever, Why::kLeft},
      {"user's own, never",
       {{"a", "h", nullptr, {"m1"}}},
       {own("/mine")},
       AdoptMode::kNever,
       Why::kUsersOwn},
      {"user's own, merge",
       {{"a", "h", nullptr, {"m1"}}},
       {own("/mine")},
       AdoptMode::kMerge,
       Why::kTakeOver},
  };
  for (const Case& c : cases) {
    PlanInput in;
    in.desired = &c.desired;
    in.current = &c.current;
    in.adopt = c.adopt;
    in.force = true;
    in.source_changed = [](const std::string& key) { return key == "a"; };
    Plan plan = PlanCollection(in);
    ASSERT_FALSE(plan.actions.empty()) << c.name;
    EXPECT_EQ(DecisionOf(plan.actions.back()).why, c.want) << c.name;
    EXPECT_NE(std::string(DescribeWhy(c.want)), "") << c.name;
  }
  // Duplicates say so.
  std::vector<DesiredItem> desired = {{"a", "h", nullptr}};
  std::vector<CurrentItem> current = {{"/1", "e", "a", "h", true}, {"/2", "e", "a", "h", true}};
  PlanInput in;
  in.desired = &desired;
  in.current = &current;
  Plan plan = PlanCollection(in);
  ASSERT_EQ(plan.actions.size(), 1u);
  EXPECT_EQ(DecisionOf(plan.actions[0]).why, Why::kDuplicate);
}

}  // namespace
}  // namespace roster
