// Planner and state store alone, with an in-memory target that reports every
// collection unchanged: 10,000 source contacts x 1,000 target users.
//
//   bench/planner_bench [--people N] [--users N] [--db PATH]
//
// Prints the wall time of planning (a dry run, as `roster plan` does) with
// nothing changed and with 1% of the source changed, the same 1% change
// planned the slow way (every item of every collection compared, as after an
// unclean run), and the peak resident memory.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "app/engine.h"
#include "core/hash.h"

namespace roster {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

long PeakRssMb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

// Every collection answers an empty delta for its token: nothing changed on
// the servers. Writes succeed and are counted.
class QuietCollection final : public Collection {
 public:
  explicit QuietCollection(std::string user) : user_(std::move(user)) {}
  std::string id() const override { return "bench:" + user_; }
  Result<Listing> List(const std::string&) override { return Listing{false, {}, {}, "t1"}; }
  Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>&) override {
    return std::vector<RemoteItem>{};
  }
  Result<WriteResult> Create(const std::string& name, const ManagedTag&, const ItemBody&) override {
    return WriteResult{"/" + user_ + "/" + name, "e2"};
  }
  Result<WriteResult> Update(const std::string& href, const std::string&, const ManagedTag&,
                             const ItemBody&) override {
    return WriteResult{href, "e2"};
  }
  Status Delete(const std::string&, const std::string&) override { return {}; }

 private:
  std::string user_;
};

class QuietTarget final : public Target {
 public:
  Result<std::unique_ptr<Collection>> Open(const CollectionSpec& spec, bool) override {
    return std::unique_ptr<Collection>(std::make_unique<QuietCollection>(spec.user));
  }
  int max_in_flight() const override { return 1; }  // one core
};

class VectorSource final : public Source {
 public:
  explicit VectorSource(const std::vector<SourceRecord>* r) : records_(r) {}
  Result<std::vector<SourceRecord>> ReadAll() override { return *records_; }

 private:
  const std::vector<SourceRecord>* records_;
};

SourceRecord Person(int i, const std::string& title) {
  SourceRecord r;
  r.key = "E" + std::to_string(1000000 + i);
  r.contact.given_name = "Given" + std::to_string(i);
  r.contact.family_name = "Family" + std::to_string(i % 997);
  r.contact.organization = "Example Ltd";
  r.contact.department = "Dept" + std::to_string(i % 40);
  r.contact.title = title;
  r.contact.emails.push_back({"person" + std::to_string(i) + "@example.com", {"work"}, false});
  r.contact.phones.push_back({"+44 20 7946 " + std::to_string(1000 + i % 9000), {"work"}, false});
  r.contact.phones.push_back({"+44 7700 9" + std::to_string(10000 + i), {"cell"}, false});
  return r;
}

EngineConfig MakeConfig(const std::vector<SourceRecord>* people, int users) {
  EngineConfig config;
  config.sources["staff"] = SourceEntry(std::make_unique<VectorSource>(people));
  TargetEntry entry{std::make_unique<QuietTarget>(), {}};
  for (int u = 0; u < users; ++u) entry.users.push_back("user" + std::to_string(u));
  config.targets["mem"] = std::move(entry);
  RuleSpec rule;
  rule.name = "company";
  rule.sources = {"staff"};
  rule.target = "mem";
  rule.display_name = "Company";
  config.rules.push_back(std::move(rule));
  return config;
}

int Main(int argc, char** argv) {
  int people_count = 10000, users = 1000;
  std::string db = "/tmp/roster-planner-bench.db";
  const crypto::Key key = crypto::GenerateKey();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--people")) people_count = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--users")) users = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--db")) db = argv[i + 1];
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);

  std::vector<SourceRecord> people;
  for (int i = 0; i < people_count; ++i) people.push_back(Person(i, "Engineer"));

  // The state of a clean, converged deployment, written straight to the store.
  auto t0 = Clock::now();
  auto store = std::move(OpenSqliteStateStore(db, key)).value();
  std::vector<DesiredItem> desired;
  for (const SourceRecord& p : people) desired.push_back({p.key, ContentHash(p.contact), nullptr});
  std::sort(desired.begin(), desired.end(),
            [](const DesiredItem& a, const DesiredItem& b) { return a.key < b.key; });
  std::string fingerprint = SelectionFingerprint(desired);
  Snapshot snap{fingerprint, {}};
  for (const DesiredItem& d : desired) snap.entries.push_back({d.key, d.hash});
  if (!store->SaveSnapshot("company", snap).ok()) return 1;
  for (int u = 0; u < users; ++u) {
    std::string user = "user" + std::to_string(u);
    int64_t id = store->OpenCollection({"company", "mem", user})->id;
    (void)store->SetCollectionUrl(id, "bench:" + user);
    (void)store->SetSyncedSnapshot(id, fingerprint);
    std::vector<ItemState> items;
    items.reserve(desired.size());
    for (const DesiredItem& d : desired) {
      std::string href = "/" + user + "/" + Target::DefaultResourceName({"company", d.key});
      items.push_back({href, "e1", "e1", d.key, d.hash});
    }
    if (!store->ApplyListing(id, {}, {}, items, "t1", std::nullopt).ok()) return 1;
  }
  std::printf("setup: %d people x %d users = %lld items stored in %.1f s (%s, %.0f MB)\n",
              people_count, users, static_cast<long long>(people_count) * users, Seconds(t0),
              db.c_str(), std::filesystem::file_size(db) / 1e6);
  store.reset();
  // What setup wrote goes to disk, and the file is read once, before
  // anything is timed: the plans then measure a state in the page cache (a
  // service syncing every few minutes), not writeback or the disk.
  ::sync();
  {
    std::ifstream warm(db, std::ios::binary);
    std::vector<char> chunk(1 << 20);
    while (warm.read(chunk.data(), static_cast<std::streamsize>(chunk.size()))) {
    }
  }

  auto plan = [&](const char* label, bool dry_run) {
    auto s = std::move(OpenSqliteStateStore(db, key)).value();
    Engine engine(MakeConfig(&people, users), *s);
    RunOptions options;
    options.dry_run = dry_run;
    auto start = Clock::now();
    RunReport report = engine.Run(options);
    double secs = Seconds(start);
    Counts c = report.Totals();
    std::printf("%-44s %7.2f s  (updated %lld, unchanged %lld, errors %zu)\n", label, secs,
                static_cast<long long>(c.updated), static_cast<long long>(c.unchanged),
                report.errors.size());
    return secs;
  };

  plan("plan, nothing changed:", true);
  for (int i = 0; i < people_count; i += 100) people[i].contact.title = "Senior Engineer";
  plan("plan, 1% of the source changed:", true);

  // The slow path: every collection compared item by item (as after a run
  // that did not finish cleanly).
  {
    auto s = std::move(OpenSqliteStateStore(db, key)).value();
    for (int u = 0; u < users; ++u) {
      int64_t id = s->FindCollection({"company", "mem", "user" + std::to_string(u)})->id;
      (void)s->SetSyncedSnapshot(id, "");
    }
  }
  plan("plan, 1% changed, full comparison:", true);
  std::printf("peak resident memory: %ld MB\n", PeakRssMb());
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  return 0;
}

}  // namespace
}  // namespace roster

int main(int argc, char** argv) { return roster::Main(argc, argv); }
