// Runs the planner scenarios in tests/scenarios/*.txt (format in its README).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sync/sync.h"

namespace roster {
namespace {

namespace fs = std::filesystem;

struct Scenario {
  std::vector<DesiredItem> desired;
  std::vector<CurrentItem> current;
  PlanInput input;
  std::vector<std::string> expected;
  int64_t unchanged = 0;
  bool guard = false;
};

Scenario Load(const fs::path& path) {
  Scenario s;
  s.input.max_delete_percent = 100;
  bool managed_given = false;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string verb;
    words >> verb;
    if (verb == "desired") {
      for (std::string kv; words >> kv;) {
        auto eq = kv.find('=');
        DesiredItem d{kv.substr(0, eq), kv.substr(eq + 1), nullptr, {}};
        if (auto at = d.hash.find('@'); at != std::string::npos) {
          std::istringstream matches(d.hash.substr(at + 1));
          for (std::string m; std::getline(matches, m, ',');) d.match.push_back(m);
          d.hash.resize(at);
        }
        s.desired.push_back(std::move(d));
      }
    } else if (verb == "current") {
      CurrentItem c;
      std::string key;
      words >> c.href >> key >> c.hash;
      c.key = key == "-" ? "" : key;
      c.etag = "e-" + c.href;
      for (std::string flag; words >> flag;) {
        if (flag == "unrecorded") c.recorded = false;
        if (flag.starts_with("match=")) {
          std::istringstream matches(flag.substr(6));
          for (std::string m; std::getline(matches, m, ',');) c.match.push_back(m);
        }
      }
      s.current.push_back(c);
    } else if (verb == "policy") {
      for (std::string kv; words >> kv;) {
        auto eq = kv.find('=');
        std::string k = kv.substr(0, eq);
        if (k == "force") s.input.force = true;
        if (k == "adopt") {
          s.input.adopt = kv.substr(eq + 1) == "merge" ? AdoptMode::kMerge : AdoptMode::kNever;
        }
        if (k == "max_delete_percent") s.input.max_delete_percent = std::stoi(kv.substr(eq + 1));
        if (k == "managed_total") {
          s.input.managed_total = std::stoll(kv.substr(eq + 1));
          managed_given = true;
        }
        if (k == "unchanged_outside") s.input.unchanged_outside = std::stoll(kv.substr(eq + 1));
      }
    } else if (verb == "expect") {
      std::string rest;
      std::getline(words, rest);
      s.expected.push_back(rest.substr(rest.find_first_not_of(' ')));
    } else if (verb == "unchanged") {
      words >> s.unchanged;
    } else if (verb == "guard") {
      s.guard = true;
    } else {
      ADD_FAILURE() << path << ": unknown line: " << line;
    }
  }
  std::sort(s.desired.begin(), s.desired.end(),
            [](const DesiredItem& a, const DesiredItem& b) { return a.key < b.key; });
  if (!managed_given) {
    s.input.managed_total = std::count_if(s.current.begin(), s.current.end(),
                                          [](const CurrentItem& c) { return !c.key.empty(); });
  }
  return s;
}

TEST(PlannerScenarios, AllFilesPlanAsExpected) {
  fs::path dir = fs::path(ROSTER_SOURCE_DIR) / "tests" / "scenarios";
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".txt") continue;
    ++files;
    SCOPED_TRACE(entry.path().filename().string());
    Scenario s = Load(entry.path());
    s.input.desired = &s.desired;
    s.input.current = &s.current;
    Plan plan = PlanCollection(s.input);
    std::vector<std::string> got;
    for (const Action& a : plan.actions) got.push_back(DescribeAction(a));
    EXPECT_EQ(got, s.expected);
    EXPECT_EQ(plan.unchanged, s.unchanged);
    EXPECT_EQ(!plan.guard.empty(), s.guard) << plan.guard;
  }
  EXPECT_GE(files, 9);
}

}  // namespace
}  // namespace roster
