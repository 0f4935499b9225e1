// The directory read and plan: every person of an LDAP directory read (paged),
// transformed (phones to E.164, photos capped, disabled and hidden accounts
// excluded) and planned into N address books of an in-memory target, as
// `roster plan` does on a first run.
//
//   bench/directory_bench --url ldap://127.0.0.1:PORT/ --bind DN --password PW
//                         --base ou=People,dc=example,dc=org [--users 100]
//
// Prints the time of a read alone, of the version probe a quiet run makes
// instead, of the whole plan (read again, transform,
// select, plan every book), the counts, and the peak resident memory.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
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

Result<std::unique_ptr<LdapDirectory>> Open(const LdapOptions& options) {
  return OpenLdapDirectory(options);
}

int Main(int argc, char** argv) {
  LdapOptions o;
  o.name = "dir";
  int users = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--url")) o.url = argv[i + 1];
    if (!std::strcmp(argv[i], "--bind")) o.bind_dn = argv[i + 1];
    if (!std::strcmp(argv[i], "--password")) o.password = argv[i + 1];
    if (!std::strcmp(argv[i], "--base")) o.base_dn = argv[i + 1];
    if (!std::strcmp(argv[i], "--users")) users = std::atoi(argv[i + 1]);
  }
  o.extra_attributes = {"employeeType", "c", "extensionAttribute1"};

  // A read alone, to tell the directory's share from roster's.
  auto t0 = Clock::now();
  auto probe = Open(o);
  if (!probe.ok()) {
    std::fprintf(stderr, "%s\n", probe.error().message.c_str());
    return 1;
  }
  auto records = (*probe)->ReadAll();
  if (!records.ok()) {
    std::fprintf(stderr, "%s\n", records.error().message.c_str());
    return 1;
  }
  double read_s = Seconds(t0);
  size_t entries = records->size();
  // What a quiet run reads instead: keys and modification stamps.
  t0 = Clock::now();
  auto version = (*probe)->Version();
  double version_s = Seconds(t0);
  if (!version.ok()) {
    std::fprintf(stderr, "%s\n", version.error().message.c_str());
    return 1;
  }
  records = std::vector<SourceRecord>();
  probe = Open(o);  // let the first go

  auto dir = Open(o);
  if (!dir.ok()) return 1;
  EngineConfig config;
  SourceEntry source(std::move(dir).value());
  source.exclude = std::move(Filter::Parse(kDefaultLdapExclude)).value();
  source.transform.default_region = "GB";
  source.transform.region_attribute = "c";
  source.transform.opt_out_attribute = "extensionAttribute1";
  config.sources["dir"] = std::move(source);
  TargetEntry target{NewMemoryTarget(std::make_shared<MemoryServer>(), 1), {}};
  for (int u = 0; u < users; ++u) target.users.push_back("user" + std::to_string(u));
  config.targets["mem"] = std::move(target);
  RuleSpec rule;
  rule.name = "company";
  rule.sources = {"dir"};
  rule.target = "mem";
  rule.display_name = "Company";
  rule.filter = std::move(Filter::Parse("employeeType != 'Contractor' and employeeType != "
                                        "'Service' and (has(phone) or has(any_email))"))
                    .value();
  config.rules.push_back(std::move(rule));
  auto store = std::move(OpenSqliteStateStore(":memory:")).value();
  Engine engine(std::move(config), *store);
  RunOptions options;
  options.dry_run = true;
  options.max_planned = 10;
  t0 = Clock::now();
  RunReport report = engine.Run(options);
  double plan_s = Seconds(t0);
  if (!report.errors.empty()) {
    std::fprintf(stderr, "%s\n", report.errors.front().c_str());
    return 1;
  }
  Counts totals = report.Totals();
  std::printf("entries read: %zu\n", entries);
  for (const std::string& n : report.notices) std::printf("%s\n", n.c_str());
  std::printf("warnings: %zu\n", report.warnings.size());
  std::printf("read alone: %.2f s\n", read_s);
  std::printf("version probe (what a quiet run reads): %.2f s\n", version_s);
  std::printf("read + transform + plan into %d books: %.2f s (%lld creates planned)\n", users,
              plan_s, static_cast<long long>(totals.created));
  std::printf("peak memory: %ld MB\n", PeakRssMb());
  return 0;
}

}  // namespace
}  // namespace roster

int main(int argc, char** argv) { return roster::Main(argc, argv); }
