// Delta reads through the source cache: an LDAP directory synced into N
// address books of the in-memory target, then one person changed, then the
// run that follows timed, with the cache (cache = "encrypted": the listing of
// keys and stamps, the one entry, the rest from the sealed cache) and
// without it (cache = "none": everything read again, as before the cache).
//
//   bench/directory_delta_bench --url ldap://127.0.0.1:PORT/ --bind DN --password PW
//                               --base ou=People,dc=example,dc=org [--users 100]
//                               [--db PATH] [--rounds N]
//
// It talks to its driver (bench/directory_delta.py) over stdin and stdout:
// after each run it prints "ready N" and waits for a line, while the driver
// changes the directory.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "app/engine.h"
#include "config/config.h"
#include "connectors/ldap/ldap_source.h"
#include "connectors/memory/memory.h"

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

int Main(int argc, char** argv) {
  LdapOptions o;
  o.name = "dir";
  int users = 100;
  int rounds = 1;  // one-change runs, each after its own change
  std::string db = "/tmp/roster-delta-bench.db";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--url")) o.url = argv[i + 1];
    if (!std::strcmp(argv[i], "--bind")) o.bind_dn = argv[i + 1];
    if (!std::strcmp(argv[i], "--password")) o.password = argv[i + 1];
    if (!std::strcmp(argv[i], "--base")) o.base_dn = argv[i + 1];
    if (!std::strcmp(argv[i], "--users")) users = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--db")) db = argv[i + 1];
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  o.extra_attributes = {"employeeType", "c", "extensionAttribute1"};
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  const crypto::Key key = crypto::GenerateKey();
  auto server = std::make_shared<MemoryServer>();

  auto run = [&](const char* label, bool cache) -> bool {
    auto dir = OpenLdapDirectory(o);
    if (!dir.ok()) {
      std::fprintf(stderr, "%s\n", dir.error().message.c_str());
      return false;
    }
    EngineConfig config;
    SourceEntry source(std::move(dir).value());
    source.exclude = std::move(Filter::Parse(kDefaultLdapExclude)).value();
    source.transform.default_region = "GB";
    source.transform.region_attribute = "c";
    source.transform.opt_out_attribute = "extensionAttribute1";
    config.sources["dir"] = std::move(source);
    TargetEntry target{NewMemoryTarget(server, 4), {}};
    for (int u = 0; u < users; ++u) target.users.push_back("user" + std::to_string(u));
    config.targets["mem"] = std::move(target);
    config.cache = cache;
    RuleSpec rule;
    rule.name = "company";
    rule.sources = {"dir"};
    rule.target = "mem";
    rule.display_name = "Company";
    rule.filter = std::move(Filter::Parse("employeeType != 'Contractor' and employeeType != "
                                          "'Service' and (has(phone) or has(any_email))"))
                      .value();
    config.rules.push_back(std::move(rule));
    auto store = OpenSqliteStateStore(db, key);
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.error().message.c_str());
      return false;
    }
    Engine engine(std::move(config), **store);
    RunOptions options;
    auto t0 = Clock::now();
    RunReport report = engine.Run(options);
    double secs = Seconds(t0);
    if (!report.errors.empty()) {
      std::fprintf(stderr, "%s\n", report.errors.front().c_str());
      return false;
    }
    Counts c = report.Totals();
    std::printf("%-52s %7.2f s  (created %lld, updated %lld, deleted %lld, exit %d)\n", label, secs,
                static_cast<long long>(c.created), static_cast<long long>(c.updated),
                static_cast<long long>(c.deleted), report.ExitCode());
    for (const std::string& n : report.notices) std::printf("    %s\n", n.c_str());
    return true;
  };

  auto wait = [](int step) {
    std::printf("ready %d\n", step);
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
  };

  if (!run("initial sync (cache on):", true)) return 1;
  int step = 1;
  for (int r = 0; r < rounds; ++r) {
    wait(step++);
    if (!run("one person changed, cache on:", true)) return 1;
  }
  if (!run("nothing changed, cache on:", true)) return 1;
  wait(step);
  if (!run("one person changed, cache = \"none\":", false)) return 1;
  std::printf("state file: %.0f MB\n", std::filesystem::file_size(db) / 1e6);
  std::printf("peak resident memory: %ld MB\n", PeakRssMb());
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  return 0;
}

}  // namespace
}  // namespace roster

int main(int argc, char** argv) { return roster::Main(argc, argv); }
