#include "app/doctor.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "app/state_open.h"
#include "app/wiring.h"
#include "connectors/graph/graph_doctor.h"
#include "crypto/keys.h"
#include "state/state.h"
#include "sync/audience.h"

namespace roster {
namespace {

Finding Make(Finding::Level level, std::string subject, std::string text) {
  return Finding{level, std::move(subject), std::move(text)};
}

// The users each target serves, over every rule, in first-seen order.
struct Audience {
  std::vector<std::string> users;
  std::set<std::string> seen;
  std::string display_name, rule;
  void Add(const std::string& user) {
    if (seen.insert(user).second) users.push_back(user);
  }
};

void CheckSources(const Config& config, EngineConfig& engine, DoctorReport& report) {
  for (auto& [name, entry] : engine.sources) {
    const SourceConfig& s = config.sources.at(name);
    const std::string subject = "source " + name;
    if (s.type == SourceType::kGraph || s.type == SourceType::kGraphFolder) continue;  // tenant
    if (s.type == SourceType::kLdap) {
      auto v = entry.source->Version();
      report.findings.push_back(
          v.ok() ? Make(Finding::Level::kOk, subject,
                        "the directory answers, the bind is accepted and the search works")
                 : Make(Finding::Level::kFailed, subject, v.error().message));
      continue;
    }
    auto records = entry.source->ReadAll();
    report.findings.push_back(
        records.ok()
            ? Make(Finding::Level::kOk, subject, std::to_string(records->size()) + " records read")
            : Make(Finding::Level::kFailed, subject, records.error().message));
  }
}

std::map<std::string, Audience> FindAudiences(EngineConfig& engine, DoctorReport& report) {
  std::map<std::string, Audience> out;
  for (const RuleSpec& rule : engine.rules) {
    RunNotes notes;
    auto candidates =
        FindCandidates(rule, engine.directories, engine.targets.at(rule.target).users, notes);
    if (!candidates.ok()) {
      report.findings.push_back(
          Make(Finding::Level::kFailed, "rule " + rule.name,
               "cannot tell its target users: " + candidates.error().message));
      continue;
    }
    for (std::string& w : notes.TakeWarnings()) {
      report.findings.push_back(Make(Finding::Level::kWarning, "rule " + rule.name, w));
    }
    Audience& a = out[rule.target];
    if (a.rule.empty()) {
      a.rule = rule.name;
      a.display_name = rule.display_name;
    }
    for (const Candidate& c : *candidates) a.Add(c.name);
    if (candidates->empty()) {
      report.findings.push_back(
          Make(Finding::Level::kWarning, "rule " + rule.name, "no target users"));
    }
  }
  return out;
}

// Discovery and login per user; nothing is created (Open without create).
void CheckCardDav(const std::string& name, Target& target, const Audience& audience,
                  DoctorReport& report) {
  for (const std::string& user : audience.users) {
    const std::string subject = "target " + name + ": " + user;
    CollectionSpec spec{user, audience.display_name, audience.rule, ""};
    auto opened = target.Open(spec, /*create=*/false);
    if (opened.ok()) {
      report.findings.push_back(
          Make(Finding::Level::kOk, subject, "signed in; the address book is there"));
    } else if (opened.error().kind == ErrorKind::kNotFound) {
      report.findings.push_back(Make(Finding::Level::kOk, subject,
                                     "signed in; no address book yet (the first sync makes it)"));
    } else {
      report.findings.push_back(Make(Finding::Level::kFailed, subject, opened.error().message));
      // One refused shared credential says it for every user.
      if (opened.error().credential_refused && target.shared_credential()) return;
    }
  }
}

}  // namespace

int DoctorReport::failed() const {
  return static_cast<int>(std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
    return f.level == Finding::Level::kFailed;
  }));
}
int DoctorReport::warnings() const {
  return static_cast<int>(std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
    return f.level == Finding::Level::kWarning;
  }));
}

// The state's key and file, read only: whether the next sync can open them.
void CheckState(const Config& config, DoctorReport& report) {
  const std::string subject = "state " + config.state_path;
  auto key = crypto::LoadStateKey(config.state_key_file, config.state_key_env);
  auto kind = InspectStateFile(config.state_path);
  if (!kind.ok()) {
    report.findings.push_back(Make(Finding::Level::kFailed, subject, kind.error().message));
    return;
  }
  const std::string source = config.state_key_env.empty()
                                 ? "key file " + config.state_key_file
                                 : "environment variable " + config.state_key_env;
  if (!key.ok()) {
    if (key.error().kind != ErrorKind::kNotFound || *kind == StateFileKind::kSealed) {
      auto opened = OpenState(config, StateUse::kReading, nullptr);
      report.findings.push_back(Make(Finding::Level::kFailed, subject,
                                     opened.ok() ? key.error().message : opened.error().message));
    } else if (config.state_key_env.empty()) {
      report.findings.push_back(Make(
          Finding::Level::kWarning, subject,
          "no key yet: the first sync creates " + source + " (or run `roster keys init` now)"));
    } else {
      report.findings.push_back(Make(Finding::Level::kFailed, subject,
                                     source + " holds no key: `roster keys init` prints one"));
    }
    return;
  }
  if (key->rotating()) {
    report.findings.push_back(Make(Finding::Level::kWarning, subject,
                                   "a key rotation is unfinished: run `roster keys rotate`"));
  }
  if (*kind == StateFileKind::kMissing) {
    report.findings.push_back(Make(Finding::Level::kOk, subject,
                                   "the key (id " + std::to_string(key->key_id()) + ") is in " +
                                       source + "; the first sync creates the state file"));
    return;
  }
  if (*kind == StateFileKind::kPlain) {
    report.findings.push_back(Make(Finding::Level::kWarning, subject,
                                   "written by an older roster, in the clear: the next sync seals "
                                   "it with the key and rebuilds the file"));
    return;
  }
  auto store = OpenSqliteStateStoreForReading(config.state_path, *key);
  report.findings.push_back(store.ok()
                                ? Make(Finding::Level::kOk, subject,
                                       "sealed, and opens with the key (id " +
                                           std::to_string(key->key_id()) + ") from " + source)
                                : Make(Finding::Level::kFailed, subject, store.error().message));
}

DoctorReport RunDoctor(const Config& config) {
  DoctorReport report;
  CheckState(config, report);
  for (const std::string& w : config.warnings) {
    report.findings.push_back(Make(Finding::Level::kWarning, "configuration", w));
  }
  auto engine = BuildEngineConfig(config);
  if (!engine.ok()) {
    report.findings.push_back(
        Make(Finding::Level::kFailed, "configuration", engine.error().message));
    return report;
  }
  CheckSources(config, *engine, report);
  std::map<std::string, Audience> audiences = FindAudiences(*engine, report);
  for (auto& [name, entry] : engine->targets) {
    const TargetConfig& t = config.targets.at(name);
    if (t.type != TargetType::kCardDav) continue;
    auto it = audiences.find(name);
    if (it != audiences.end()) CheckCardDav(name, *entry.target, it->second, report);
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  auto tenants = BuildGraphTenants(config, deadline);
  if (!tenants.ok()) {
    report.findings.push_back(
        Make(Finding::Level::kFailed, "configuration", tenants.error().message));
    return report;
  }
  for (auto& [name, tenant] : *tenants) {
    GraphDoctorInput in;
    in.tenant = name;
    in.tokens = tenant.tokens.get();
    in.client = tenant.client;
    in.client_id = tenant.client_id;
    for (const auto& [source, s] : config.sources) {
      if (s.tenant != name) continue;
      if (s.type == SourceType::kGraph) {
        in.reads_users = in.reads_users || s.read_users;
        in.reads_org_contacts = in.reads_org_contacts || s.read_org_contacts;
        in.reads_groups = in.reads_groups || !s.groups.empty();
      } else if (s.type == SourceType::kGraphFolder) {
        in.folder_mailboxes.push_back(s.mailbox);
      }
    }
    for (const RuleConfig& r : config.rules) {
      if (!r.users_from) continue;
      auto s = config.sources.find(r.users_from->source);
      if (s != config.sources.end() && s->second.type == SourceType::kGraph &&
          s->second.tenant == name) {
        in.reads_groups = true;
      }
    }
    for (const auto& [target, t] : config.targets) {
      if (t.type != TargetType::kGraph || t.tenant != name) continue;
      auto it = audiences.find(target);
      if (it == audiences.end()) continue;
      for (const std::string& u : it->second.users) {
        if (std::find(in.target_mailboxes.begin(), in.target_mailboxes.end(), u) ==
            in.target_mailboxes.end()) {
          in.target_mailboxes.push_back(u);
        }
      }
    }
    GraphDoctorReport r = DiagnoseGraphTenant(in);
    for (Finding& f : r.findings) report.findings.push_back(std::move(f));
    if (report.powershell.empty()) report.powershell = std::move(r.powershell);
  }
  return report;
}

}  // namespace roster
