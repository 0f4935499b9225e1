// The crash matrix against the Graph-like target, inside one process: the
// in-process server would die with a killed process, so a crash is a throw
// from the failpoint handler (core/failpoint.h), after which the state store
// is closed as a crash leaves it (SQLite drops what was not committed) and
// opened again. For every failpoint each scenario reaches, a crash at its
// first, a middle and its last hit; then a run to completion must converge
// (every mailbox holds exactly the selected people, one contact each, photos
// included; the user's own contact untouched; the user's edit corrected) and
// one more run writes nothing. Server-assigned ids make this the case the
// CardDAV matrix cannot reach: a create that landed but was never recorded.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "app/engine.h"
#include "app/test_support.h"
#include "connectors/memory/graph_like.h"
#include "core/failpoint.h"

namespace roster {
namespace {

// The bytes a PNG starts with: photos Graph takes (and that no JPEG decoder reads).
const std::string kPng("\x89PNG\r\n\x1a\n", 8);

struct Crash {
  std::string at;
};

SourceRecord Person(int i, const std::string& title = "Engineer") {
  SourceRecord r;
  r.key = "p" + std::to_string(100 + i);
  r.contact.given_name = "Given" + std::to_string(i);
  r.contact.family_name = "Family";
  r.contact.title = title;
  r.contact.emails.push_back({"p" + std::to_string(i) + "@example.com", {"work"}, false});
  if (i % 3 == 0) r.contact.photo = Photo{"image/png", kPng + std::to_string(i), ""};
  return r;
}

const char* kFolder = "Company Contacts";

// One cell's world: the server, the people, the users, the state file.
class World {
 public:
  explicit World(const std::filesystem::path& dir) : state_(dir / "roster.db") {
    std::filesystem::remove(state_);
    for (int i = 0; i < 10; ++i) people.push_back(Person(i));
    Reopen();
  }

  void Reopen() {
    store_.reset();
    store_ = std::move(OpenSqliteStateStore(state_.string(), key_)).value();
  }
  void LoseState() {
    store_.reset();
    std::filesystem::remove(state_);
    std::filesystem::remove(state_.string() + "-wal");
    std::filesystem::remove(state_.string() + "-shm");
    Reopen();
  }

  RunReport Run() {
    EngineConfig config;
    config.sources["gal"] = SourceEntry(std::make_unique<VectorSource>(&people));
    GraphLikeOptions options;
    options.max_in_flight = 1;  // one thread: a throw reaches the test
    config.targets["m365"] = TargetEntry{NewGraphLikeTarget(server, options), users};
    RuleSpec rule;
    rule.name = "gal";
    rule.sources = {"gal"};
    rule.target = "m365";
    rule.display_name = kFolder;
    rule.max_delete_percent = 50;
    config.rules.push_back(std::move(rule));
    Engine engine(std::move(config), *store_);
    return engine.Run(RunOptions{});
  }

  // What must hold after the run that follows a crash.
  std::string Converged() {
    std::set<std::string> want;
    for (const SourceRecord& p : people) want.insert(p.key);
    for (const std::string& user : users) {
      std::map<std::string, int> copies;
      for (const auto& [href, item] : server->Items(user, kFolder)) {
        if (!item.tag) {
          if (own.count(href) && item.contact.family_name != "Dentist") return "own changed";
          continue;
        }
        ++copies[item.tag->key];
        const SourceRecord* p = nullptr;
        for (const SourceRecord& q : people) p = q.key == item.tag->key ? &q : p;
        if (!p) return user + " keeps " + item.tag->key;
        if (item.contact.title != p->contact.title) return user + ": " + p->key + " title";
        if (p->contact.photo.has_value() != item.photo.has_value()) {
          return user + ": " + p->key + " photo";
        }
      }
      for (const std::string& key : want) {
        if (copies[key] != 1) {
          return user + ": " + key + " has " + std::to_string(copies[key]) + " copies";
        }
      }
    }
    for (const std::string& href : own) {
      if (!server->Items("alice", kFolder).count(href)) return "the user's own contact is gone";
    }
    for (const std::string& user : gone_users) {
      for (const auto& [href, item] : server->Items(user, kFolder)) {
        if (item.tag) return user + " left but keeps " + item.tag->key;
      }
    }
    return "";
  }

  std::shared_ptr<GraphLikeServer> server = std::make_shared<GraphLikeServer>();
  std::vector<SourceRecord> people;
  std::vector<std::string> users{"alice", "bob", "carol"};
  std::vector<std::string> gone_users;
  std::set<std::string> own;  // hrefs of the users' own contacts

 private:
  std::filesystem::path state_;
  crypto::Key key_ = crypto::GenerateKey();
  std::unique_ptr<StateStore> store_;
};

struct Scenario {
  const char* name;
  std::function<void(World&)> setup;  // runs without failpoints
  std::function<void(World&)> step;   // the change the crashed run carries out
};

std::vector<Scenario> Scenarios() {
  auto loaded = [](World& w) {
    ASSERT_EQ(w.Run().ExitCode(), 0);
    Contact mine;
    mine.given_name = "My";
    mine.family_name = "Dentist";
    w.own.insert(w.server->PutByHand("alice", kFolder, mine));
  };
  return {
      {"first load", [](World&) {}, [](World&) {}},
      {"incremental change", loaded,
       [](World& w) {
         w.people[1] = Person(1, "Manager");
         w.people[4].contact.photo = Photo{"image/png", kPng + "new-photo", ""};
         w.people.push_back(Person(10));
         w.people.erase(w.people.begin() + 2);
       }},
      {"full pass after user edits", loaded,
       [](World& w) {
         auto items = w.server->Items("bob", kFolder);
         auto it = items.begin();
         Contact edited = it->second.contact;
         edited.title = "Edited on the phone";
         w.server->EditByHand("bob", kFolder, it->first, edited);
         w.server->RemoveByHand("carol", kFolder, std::next(items.begin())->first);
         w.people[3] = Person(3, "Director");
       }},
      {"lost state", loaded, [](World& w) { w.LoseState(); }},
      {"offboarding", loaded,
       [](World& w) {
         w.users.pop_back();
         w.gone_users.push_back("carol");
       }},
  };
}

// Hits per failpoint of one uncrashed run of the scenario's step.
std::map<std::string, int> CountHits(const Scenario& s, const std::filesystem::path& dir) {
  World w(dir);
  s.setup(w);
  s.step(w);
  std::map<std::string, int> hits;
  SetFailpointHandlerForTest([&](std::string_view name) { ++hits[std::string(name)]; });
  w.Run();
  SetFailpointHandlerForTest(nullptr);
  return hits;
}

TEST(GraphCrashMatrix, EveryFailpointAtFirstMiddleAndLastHitConverges) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("roster-graph-crash-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  int cells = 0;
  std::set<std::string> reached;
  for (const Scenario& s : Scenarios()) {
    for (const auto& [name, total] : CountHits(s, dir)) {
      reached.insert(name);
      for (int n : std::set<int>{1, (total + 1) / 2, total}) {
        World w(dir);
        s.setup(w);
        s.step(w);
        int seen = 0;
        SetFailpointHandlerForTest([&, name = name](std::string_view hit) {
          if (hit == name && ++seen == n) throw Crash{std::string(hit)};
        });
        bool crashed = false;
        try {
          w.Run();
        } catch (const Crash&) {
          crashed = true;
        }
        SetFailpointHandlerForTest(nullptr);
        ASSERT_TRUE(crashed) << s.name << " " << name << ":" << n;
        w.Reopen();  // as a crash leaves it: the uncommitted is gone
        RunReport after = w.Run();
        EXPECT_EQ(w.Converged(), "") << s.name << ", crash at " << name << ":" << n;
        EXPECT_EQ(after.ExitCode(), 0) << s.name << ", crash at " << name << ":" << n << ": "
                                       << (after.errors.empty() ? "" : after.errors[0]);
        w.server->ResetCounters();
        RunReport quiet = w.Run();
        EXPECT_EQ(w.server->counters().writes(), 0) << s.name << ", crash at " << name << ":" << n;
        EXPECT_EQ(quiet.ExitCode(), 0);
        ++cells;
      }
    }
  }
  std::filesystem::remove_all(dir);
  // The executor's, the collection run's and the state store's failpoints.
  for (const char* name :
       {"before-create", "after-create", "before-update", "after-update", "before-delete",
        "after-delete", "after-record", "after-update-read", "after-open", "after-list",
        "after-apply-listing", "before-confirm-list", "after-confirm-list", "before-snapshot",
        "before-forget-collection", "state-before-commit", "state-after-commit"}) {
    EXPECT_TRUE(reached.count(name)) << name << " was never reached";
  }
  EXPECT_GT(cells, 100);
  RecordProperty("cells", cells);
  std::printf("graph crash matrix: %d cells over %zu failpoints, 5 scenarios\n", cells,
              reached.size());
}

}  // namespace
}  // namespace roster
