// roster's command line: plan (dry run), sync, status, doctor, keys, purge, audit;
// gdpr and decommission are in gdpr.cc, what the commands share in common.h.
//
// Exit codes: 0 everything synced; 1 some item or collection failed; 2 bad
// usage or configuration; 3 a deletion guard stopped a rule or collection.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "app/doctor.h"
#include "app/engine.h"
#include "app/reach.h"
#include "app/state_open.h"
#include "app/wiring.h"
#include "audit/audit.h"
#include "cli/common.h"
#include "config/config.h"
#include "core/hash.h"
#include "core/personal.h"
#include "core/record_codec.h"
#include "core/text.h"
#include "crypto/keys.h"
#include "crypto/seal.h"
#include "crypto/sign.h"
#include "formats/vcard.h"
#include "gdpr/register.h"
#include "kinds/kind.h"
#include "state/state.h"

namespace roster {
namespace {

using cli::Audit;
using cli::CloseAudit;
using cli::ConfigHash;
using cli::Dump;
using cli::Fail;
using cli::HidePeople;
using cli::json;
using cli::LoadErasures;
using cli::LockState;
using cli::OpenAudit;
using cli::RememberErasures;
using cli::Safe;
using cli::SafeList;

// A target user, as a collection's line names them.
std::string User(const CollectionKey& key) { return Safe(Personal(key.user, key.user)); }

json CountsJson(const Counts& c) {
  return json{{"created", c.created},     {"updated", c.updated},     {"deleted", c.deleted},
              {"unchanged", c.unchanged}, {"conflicts", c.conflicts}, {"errors", c.errors},
              {"adopted", c.adopted},     {"skipped", c.skipped}};
}

// What the writes cost on the wire: requests, sub-requests of batches, and
// the waits the servers (or roster's own limiter) asked for.
json StatsJson(const ExecuteStats& s) {
  return json{{"requests", s.requests},
              {"sub_requests", s.sub_requests},
              {"throttled", s.throttled},
              {"waits", s.waits},
              {"waited_ms", s.waited.count()}};
}

// A planned action as data: what, why, and (with --verbose) the fields.
json DecisionJson(const PlannedAction& a) {
  json changes = json::array();
  for (const FieldChange& c : a.why.changes) {
    changes.push_back(
        {{"field", Safe(c.field)}, {"before", Safe(c.before)}, {"after", Safe(c.after)}});
  }
  json out{{"action", Safe(a.text)}, {"key", Safe(a.key)}, {"why", DescribeWhy(a.why.why)}};
  if (!a.why.detail.empty()) out["detail"] = Safe(a.why.detail);
  if (!changes.empty()) out["changes"] = std::move(changes);
  return out;
}

void PrintPlanned(const PlannedAction& a, bool verbose) {
  std::cout << "      " << Safe(a.text) << "\n";
  if (!verbose) return;
  std::cout << "        why: " << DescribeWhy(a.why.why)
            << (a.why.detail.empty() ? "" : "; " + Safe(a.why.detail)) << "\n";
  for (const FieldChange& c : a.why.changes) {
    std::cout << "        " << Safe(c.field) << ": \"" << Safe(c.before) << "\" -> \""
              << Safe(c.after) << "\"\n";
  }
}

std::string CountsText(const Counts& c, bool plan) {
  std::string s = plan ? "to create " : "created ";
  s += std::to_string(c.created) + ", " + (plan ? "to update " : "updated ") +
       std::to_string(c.updated) + ", " + (plan ? "to delete " : "deleted ") +
       std::to_string(c.deleted) + ", unchanged " + std::to_string(c.unchanged);
  if (c.adopted) s += ", adopted " + std::to_string(c.adopted);
  if (c.skipped) s += ", skipped (user's own card) " + std::to_string(c.skipped);
  if (c.conflicts) s += ", conflicts " + std::to_string(c.conflicts);
  if (c.errors) s += ", errors " + std::to_string(c.errors);
  return s;
}

void PrintJson(const RunReport& report, bool plan) {
  json targets = json::array();
  for (const CollectionReport& c : report.collections) {
    json t = CountsJson(c.counts);
    t["rule"] = Safe(c.key.rule);
    t["target"] = Safe(c.key.target);
    t["user"] = User(c.key);
    // A collection that failed as a whole counts as one error.
    if (!c.errors.empty() && c.counts.errors == 0) t["errors"] = 1;
    t["messages"] = SafeList(c.errors);
    if (!c.conflicts.empty()) t["conflict_messages"] = SafeList(c.conflicts);
    if (!c.warnings.empty()) t["warnings"] = SafeList(c.warnings);
    if (plan) {
      json actions = json::array(), decisions = json::array();
      for (const PlannedAction& a : c.planned) {
        actions.push_back(Safe(a.text));
        decisions.push_back(DecisionJson(a));
      }
      t["actions"] = std::move(actions);
      t["decisions"] = std::move(decisions);
    }
    if (c.offboarded) t["offboarded"] = true;
    if (c.no_such_user) t["no_such_user"] = true;
    t["writes"] = StatsJson(c.stats);
    targets.push_back(std::move(t));
  }
  ExecuteStats wire;
  for (const CollectionReport& c : report.collections) wire += c.stats;
  Counts totals = report.Totals();
  for (const CollectionReport& c : report.collections) {
    if (!c.errors.empty() && c.counts.errors == 0) ++totals.errors;
  }
  totals.errors += static_cast<int64_t>(report.errors.size());
  json out{{"mode", plan ? "plan" : "sync"},
           {"totals", CountsJson(totals)},
           {"targets", std::move(targets)},
           {"errors", SafeList(report.errors)},
           {"warnings", SafeList(report.warnings)},
           {"sources", SafeList(report.notices)},
           {"writes", StatsJson(wire)},
           {"exit_code", report.ExitCode()}};
  std::cout << Dump(out) << "\n";
}

void PrintText(const RunReport& report, bool plan, bool verbose) {
  if (plan) std::cout << "Plan (dry run: nothing was written)\n";
  for (const std::string& n : report.notices) std::cout << Safe(n) << "\n";
  // Source warnings can be many (one per unreadable phone number): a few and a
  // count, unless asked for all.
  size_t warned = 0;
  for (const std::string& w : report.warnings) {
    if (!verbose && warned == 5) {
      std::cout << "  ... " << (report.warnings.size() - warned)
                << " more warnings (--verbose lists them all)\n";
      break;
    }
    std::cout << "  warning: " << Safe(w) << "\n";
    ++warned;
  }
  for (const CollectionReport& c : report.collections) {
    std::cout << "  " << Safe(c.key.rule) << " -> " << Safe(c.key.target) << "/" << User(c.key)
              << (c.offboarded ? " (no longer receives the rule)" : "") << ": "
              << CountsText(c.counts, plan) << "\n";
    for (const PlannedAction& a : c.planned) PrintPlanned(a, verbose);
    if (c.planned_more > 0) {
      std::cout << "      ... " << c.planned_more << " more (--verbose lists them all)\n";
    }
    for (const std::string& e : c.errors) std::cout << "      error: " << Safe(e) << "\n";
    for (const std::string& e : c.conflicts) std::cout << "      conflict: " << Safe(e) << "\n";
    for (const std::string& w : c.warnings) std::cout << "      warning: " << Safe(w) << "\n";
  }
  for (const std::string& e : report.errors) std::cout << "error: " << Safe(e) << "\n";
  std::cout << (plan ? "Total: " : "Total: ") << CountsText(report.Totals(), plan) << "\n";
}

// A one-line progress bar on stderr when it is a terminal.
void Progress(const CollectionReport& c, size_t done, size_t total) {
  constexpr int kWidth = 30;
  int filled = total ? static_cast<int>(done * kWidth / total) : kWidth;
  std::fprintf(stderr, "\r[%-*s] %zu/%zu  %s/%s%s", kWidth, std::string(filled, '#').c_str(), done,
               total, Safe(c.key.target).c_str(), User(c.key).c_str(), "\033[K");
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

int Status(const Config& config, bool as_json) {
  auto store = OpenState(config, StateUse::kReading, nullptr);
  if (!store.ok()) {
    std::cerr << "roster: " << Safe(store.error().message) << "\n";
    return 2;
  }
  auto rows = (*store)->LastResults();
  if (!rows.ok()) {
    std::cerr << "roster: " << Safe(rows.error().message) << "\n";
    return 1;
  }
  if (as_json) {
    json out = json::array();
    for (const RunSummary& r : *rows) {
      json t = CountsJson(r.result.counts);
      t["rule"] = Safe(r.result.collection.rule);
      t["target"] = Safe(r.result.collection.target);
      t["user"] = Safe(r.result.collection.user);
      // What a sync's output and the stored messages call them.
      t["user_ref"] = (*store)->Pseudonym(r.result.collection.user);
      t["run"] = r.run_id;
      t["started_at"] = r.started_at;
      t["finished_at"] = r.finished_at;
      t["exit_code"] = r.exit_code;
      t["message"] = Safe(r.result.message);
      // As sync --json counts it: a book that failed as a whole is an error.
      if (!r.result.message.empty() && r.result.counts.errors == 0) t["errors"] = 1;
      out.push_back(std::move(t));
    }
    std::cout << Dump(out) << "\n";
    return 0;
  }
  if (rows->empty()) std::cout << "No sync has run yet with state " << config.state_path << "\n";
  for (const RunSummary& r : *rows) {
    std::cout << Safe(r.result.collection.rule) << " -> " << Safe(r.result.collection.target) << "/"
              << Safe(r.result.collection.user) << " ("
              << (*store)->Pseudonym(r.result.collection.user) << "): run " << r.run_id << " at "
              << r.started_at << (r.exit_code < 0 ? " (did not finish)" : "") << ": "
              << CountsText(r.result.counts, false)
              << (r.result.message.empty() ? "" : "; " + Safe(r.result.message)) << "\n";
  }
  return 0;
}

int Doctor(const Config& config, bool as_json) {
  DoctorReport report = RunDoctor(config);
  auto level = [](Finding::Level l) {
    return l == Finding::Level::kOk ? "ok" : l == Finding::Level::kWarning ? "warning" : "FAILED";
  };
  if (as_json) {
    json findings = json::array();
    for (const Finding& f : report.findings) {
      findings.push_back(
          {{"level", level(f.level)}, {"subject", Safe(f.subject)}, {"text", Safe(f.text)}});
    }
    std::cout << Dump(json{{"mode", "doctor"},
                           {"findings", std::move(findings)},
                           {"powershell", SafeList(report.powershell)},
                           {"failed", report.failed()},
                           {"warnings", report.warnings()},
                           {"exit_code", report.ExitCode()}})
              << "\n";
    return report.ExitCode();
  }
  std::cout << "roster doctor: " << Safe(config.path) << " (nothing is changed)\n";
  for (const Finding& f : report.findings) {
    std::string tag = level(f.level);
    tag.resize(8, ' ');
    std::cout << "  " << tag << Safe(f.subject) << ": " << Safe(f.text) << "\n";
  }
  if (!report.powershell.empty()) {
    std::cout << "\nTo let roster write the contacts of the target mailboxes only (RBAC for "
                 "Applications), run in Exchange Online PowerShell:\n";
    for (const std::string& line : report.powershell) std::cout << "    " << Safe(line) << "\n";
  }
  std::cout << "doctor: " << report.findings.size() << " checks, " << report.failed() << " failed, "
            << report.warnings() << " warnings\n";
  return report.ExitCode();
}

// `keys init` with [state] key_env: a new key on stdout for the operator to
// install in that variable, the one place roster prints a key. Nothing is
// written; a variable that already holds something is left to its owner.
int PrintNewKeyForEnv(const std::string& variable, bool as_json) {
  const char* current = std::getenv(variable.c_str());
  if (current != nullptr && *current != '\0') {
    std::cerr << "roster: environment variable " << variable
              << " already holds a key; roster keys init never replaces one (the state sealed "
                 "under it cannot be read without it; unset it first to make a new key)\n";
    return 2;
  }
  const crypto::Secret key = crypto::FormatKey(crypto::GenerateKey());
  if (as_json) {
    std::cout << Dump(json{{"mode", "keys init"},
                           {"key_env", variable},
                           {"key", std::string(key.view())},
                           {"exit_code", 0}})
              << "\n";
  } else {
    std::cout.write(key.view().data(), static_cast<std::streamsize>(key.size())) << "\n";
  }
  std::cout.flush();
  std::cerr << "roster: a new key for environment variable " << variable
            << " is on standard output: it is shown only this once. Install it in that variable "
               "and keep a copy with the configuration's backup; without it the encrypted state "
               "cannot be read\n";
  return 0;
}

// `keys init`: creates [state] key_file with a new key, never over one.
int KeysInit(const Config& config, bool as_json) {
  if (!config.state_key_env.empty()) return PrintNewKeyForEnv(config.state_key_env, as_json);
  auto key = crypto::CreateKeyFile(config.state_key_file);
  if (!key.ok()) {
    std::cerr << "roster: " << Safe(key.error().message) << "\n";
    return 2;
  }
  if (as_json) {
    std::cout << Dump(json{{"mode", "keys init"},
                           {"key_file", Safe(config.state_key_file)},
                           {"key_id", key->key_id()},
                           {"exit_code", 0}})
              << "\n";
    return 0;
  }
  std::cout << "Wrote a new key to " << Safe(config.state_key_file)
            << " (mode 0600; roster never prints it).\n"
            << "Back it up together with the configuration: without it the encrypted state "
               "cannot be read, and whoever holds it and the state file can read the state.\n";
  return 0;
}

// Prints a key for the operator to put into [state] key_env: the key as a
// line on stdout (or in the JSON object), what to do on stderr.
void PrintKeyForEnv(const char* mode, const std::string& variable, const crypto::Key& key,
                    int64_t resealed, bool as_json) {
  const crypto::Secret text = crypto::FormatKey(key);
  if (as_json) {
    json out{{"mode", mode},
             {"key_env", variable},
             {"key", std::string(text.view())},
             {"key_id", key.key_id()},
             {"exit_code", 0}};
    if (resealed >= 0) out["resealed"] = resealed;
    std::cout << Dump(out) << "\n";
  } else {
    std::cout.write(text.view().data(), static_cast<std::streamsize>(text.size())) << "\n";
  }
  std::cout.flush();
}

// The state opened with `key` (which may be rotating), or null when there is
// no state file; a key that does not open it is refused before anything
// is written. `read_only`: only to check the key, changing nothing.
Result<std::unique_ptr<StateStore>> OpenForRotation(const Config& config, const crypto::Key& key,
                                                    bool read_only) {
  ROSTER_ASSIGN_OR_RETURN(StateFileKind kind, InspectStateFile(config.state_path));
  if (kind == StateFileKind::kMissing) return std::unique_ptr<StateStore>();
  auto store = read_only ? OpenSqliteStateStoreForReading(config.state_path, key)
                         : OpenSqliteStateStore(config.state_path, key);
  if (!store.ok() && store.error().credential_refused) {
    Error e = store.take_error();
    e.message += " (the key came from " +
                 (config.state_key_env.empty() ? "key file " + config.state_key_file
                                               : "environment variable " + config.state_key_env) +
                 ")";
    return e;
  }
  return store;
}

// `keys rotate`: a new sealing key, every sealed value sealed again under it,
// the old one dropped. With a key file each step is written atomically and a
// rotation killed at any point is finished by running it again. With
// key_env, roster cannot write the key: the first call prints the
// transitional key (old and new sealing keys) and changes nothing; once it is
// installed, the second seals everything again and prints the final key.
int KeysRotate(const Config& config, bool as_json) {
  if (!LockState(config.state_path)) return 2;
  const bool from_env = !config.state_key_env.empty();
  auto loaded = crypto::LoadStateKey(config.state_key_file, config.state_key_env);
  if (!loaded.ok()) return Fail(loaded.error());
  crypto::Key key = std::move(loaded).value();
  // The audit key comes from the index master, which a rotation keeps: the
  // log opened now records the end of the rotation.
  auto opened = OpenAudit(config, key);
  if (!opened.ok()) {
    std::cerr << "roster: " << Safe(opened.error().message) << "; nothing was rotated\n";
    return 2;
  }
  std::unique_ptr<Audit> audit = std::move(opened).value();
  const bool begun = !key.rotating();
  if (begun) {
    auto next = crypto::BeginRotation(key);
    if (!next.ok()) return Fail(next.error());
    key = std::move(next).value();
  }
  // The rotating key opens what the old one sealed: a key that opens
  // nothing is refused here, before any key is written or printed.
  auto store = OpenForRotation(config, key, begun && from_env);
  if (!store.ok()) return Fail(store.error());
  if (begun && from_env) {
    PrintKeyForEnv("keys rotate", config.state_key_env, key, -1, as_json);
    std::cerr << "roster: the transitional key for " << config.state_key_env
              << " is on standard output (it holds the current sealing key and the new one). "
                 "Nothing was changed: install it in that variable, then run `roster keys "
                 "rotate` again to seal the state under the new key\n";
    return 0;
  }
  if (begun) {
    roster::Status written = crypto::WriteKeyFileAtomically(config.state_key_file, key);
    if (!written.ok()) return Fail(written.error());
  }
  int64_t resealed = 0;
  if (*store != nullptr) {
    auto n = (*store)->Reseal();
    if (!n.ok()) return Fail(n.error());
    resealed = *n;
    store->reset();
  }
  const crypto::Key finished = crypto::FinishRotation(key);
  auto record = [&]() -> roster::Status {
    ROSTER_RETURN_IF_ERROR(audit->Append(
        "keys-rotate", {{"key_id", int64_t{finished.key_id()}}, {"resealed", resealed}}));
    // The state, under its new key, records the head like every command.
    ROSTER_ASSIGN_OR_RETURN(auto reopened, OpenForRotation(config, finished, false));
    return CloseAudit(*audit, config, reopened.get());
  };
  if (from_env) {
    PrintKeyForEnv("keys rotate", config.state_key_env, finished, resealed, as_json);
    if (roster::Status st = record(); !st.ok()) {
      std::cerr << "roster: the rotation was not recorded in the audit log: "
                << Safe(st.error().message) << "\n";
    }
    std::cerr << "roster: sealed " << resealed << " values again under key id " << finished.key_id()
              << ". The final key for " << config.state_key_env
              << " is on standard output: install it in place of the transitional one (which "
                 "still works until then) and keep a copy with the configuration's backup\n";
    return 0;
  }
  roster::Status written = crypto::WriteKeyFileAtomically(config.state_key_file, finished);
  if (!written.ok()) return Fail(written.error());
  if (roster::Status st = record(); !st.ok()) {
    std::cerr << "roster: the rotation was done but not recorded in the audit log: "
              << Safe(st.error().message) << "\n";
    return 1;
  }
  if (as_json) {
    std::cout << Dump(json{{"mode", "keys rotate"},
                           {"key_file", Safe(config.state_key_file)},
                           {"key_id", finished.key_id()},
                           {"resealed", resealed},
                           {"exit_code", 0}})
              << "\n";
  } else {
    std::cout << "Sealed " << resealed << " values again under key id " << finished.key_id() << "; "
              << Safe(config.state_key_file)
              << " holds the new key only. Replace the key in the configuration's backup.\n";
  }
  return 0;
}

// `purge --expired` forgets what is older than [state] retention_days (run
// history and its messages, cached people read from their source longer ago
// than that); `purge --all` forgets everything the state holds. Either way the file is rebuilt, so
// nothing lingers on disk.
int Purge(const Config& config, bool all, bool as_json) {
  if (!LockState(config.state_path)) return 2;
  auto kind = InspectStateFile(config.state_path);
  if (!kind.ok()) return Fail(kind.error());
  int64_t runs = 0, cached = 0;
  std::unique_ptr<Audit> audit;
  std::unique_ptr<StateStore> state;
  if (*kind != StateFileKind::kMissing) {
    auto a = OpenAudit(config);
    if (!a.ok()) {
      std::cerr << "roster: " << Safe(a.error().message) << "; nothing was purged\n";
      return 2;
    }
    audit = std::move(a).value();
    std::vector<std::string> notes;
    auto store = OpenState(config, StateUse::kSync, &notes);
    for (const std::string& note : notes) std::cerr << "roster: " << Safe(note) << "\n";
    if (!store.ok()) return Fail(store.error());
    state = std::move(store).value();
    if (all) {
      roster::Status purged = state->PurgeAll();
      if (!purged.ok()) return Fail(purged.error());
    } else {
      const std::chrono::seconds max_age = std::chrono::hours(24) * config.retention_days;
      auto pruned = state->PruneRuns(max_age);
      if (!pruned.ok()) return Fail(pruned.error());
      runs = *pruned;
      // With cache = "none" nothing of the cache may stay at all.
      auto expired = config.cache == CacheMode::kNone ? state->PurgeCache()
                                                      : state->PurgeExpiredCache(max_age);
      if (!expired.ok()) return Fail(expired.error());
      cached = *expired;
    }
  }
  const char* mode = all ? "purge --all" : "purge --expired";
  if (audit) {
    roster::Status st = audit->Append(
        "purge", {{"command", std::string(mode)}, {"runs", runs}, {"cached", cached}});
    if (st.ok()) st = CloseAudit(*audit, config, state.get());
    if (!st.ok()) {
      std::cerr << "roster: the purge was done but not recorded: " << Safe(st.error().message)
                << "\n";
      return 1;
    }
  }
  if (as_json) {
    json out{{"mode", mode}, {"state", Safe(config.state_path)}, {"exit_code", 0}};
    if (!all) {
      out["runs"] = runs;
      out["cached"] = cached;
      out["retention_days"] = config.retention_days;
    }
    std::cout << Dump(out) << "\n";
  } else if (*kind == StateFileKind::kMissing) {
    std::cout << "Nothing to purge: there is no state file " << Safe(config.state_path) << ".\n";
  } else if (all) {
    std::cout << "Purged everything in " << Safe(config.state_path)
              << "; the next sync finds roster's items on the targets again by their markers.\n";
  } else {
    std::cout << "Purged what is older than " << config.retention_days << " days from "
              << Safe(config.state_path) << ": " << runs << " runs, " << cached
              << (config.cache == CacheMode::kNone ? " cached people (cache = \"none\": all)"
                                                   : " cached people")
              << ".\n";
  }
  return 0;
}

// `audit verify`: exit 0 when the log is whole, 1 naming the first bad line,
// 2 when it cannot be read.
int AuditVerify(const Config& config, const std::string& public_key, const std::string& head,
                bool as_json) {
  audit::VerifyOptions o;
  o.expected_head = head;
  o.retention = std::chrono::hours(24) * config.audit_retention_days;
  if (!public_key.empty()) {
    auto pk = text::Unhex(public_key);
    if (!pk || pk->size() != crypto::kSignPublicKeyBytes) {
      std::cerr << "roster: --public-key must be the 64 hex characters `roster audit public-key` "
                   "printed\n";
      return 2;
    }
    o.public_key = *pk;
  } else {
    // Without the half kept elsewhere, the key file's own: proves the chain
    // whole and signed by this configuration's key.
    auto key = crypto::LoadStateKey(config.state_key_file, config.state_key_env);
    if (key.ok()) o.public_key = crypto::AuditPublicKey(*key);
  }
  // Without --head, the head the state recorded at the end of the last
  // command: a log cut back to an earlier checkpoint no longer holds it.
  bool head_from_state = false;
  if (o.expected_head.empty()) {
    auto kind = InspectStateFile(config.state_path);
    if (kind.ok() && *kind != StateFileKind::kMissing) {
      auto store = OpenState(config, StateUse::kReading, nullptr);
      if (store.ok()) {
        auto head = (*store)->LoadSetting("audit_head");
        if (head.ok() && head->find(' ') != std::string::npos) {
          o.expected_head = head->substr(head->find(' ') + 1);
          head_from_state = true;
        }
      }
    }
  }
  auto v = audit::Verify(config.audit_path, o);
  if (!v.ok()) return Fail(v.error());
  if (head_from_state && !v->ok && v->problem.starts_with("the head recorded elsewhere")) {
    v->problem = "the head the state recorded at the end of the last command (" + o.expected_head +
                 ") is not in the log: its tail was cut back or the chain rewritten";
  }
  const char* head_checked = head_from_state ? "state" : head.empty() ? "none" : "given";
  if (as_json) {
    json out{{"head_checked", head_checked},    {"mode", "audit verify"},
             {"path", Safe(config.audit_path)}, {"ok", v->ok},
             {"entries", v->entries},           {"checkpoints", v->checkpoints},
             {"first_seq", v->first_seq},       {"head_seq", v->head_seq},
             {"head_hash", v->head_hash},       {"exit_code", v->ok ? 0 : 1}};
    if (!v->ok) {
      out["bad_line"] = v->bad_line;
      out["problem"] = v->problem;
    }
    std::cout << Dump(out) << "\n";
  } else if (v->ok) {
    std::cout << "audit log " << Safe(config.audit_path) << ": " << v->entries << " entries (from "
              << v->first_seq << " to " << v->head_seq << "), " << v->checkpoints
              << " signed checkpoints, whole; head " << v->head_hash
              << (public_key.empty() ? " (signed by this configuration's key; pass --public-key "
                                       "to check against the half you keep elsewhere)"
                                     : "")
              << "\n";
  } else {
    std::cerr << "roster: audit log " << Safe(config.audit_path) << ": " << v->problem << "\n";
  }
  return v->ok ? 0 : 1;
}

int AuditPublicKeyCommand(const Config& config, bool as_json) {
  auto key = crypto::LoadStateKey(config.state_key_file, config.state_key_env);
  if (!key.ok()) return Fail(key.error());
  const std::string pk = HexEncode(crypto::AuditPublicKey(*key));
  if (as_json) {
    std::cout << Dump(json{{"mode", "audit public-key"}, {"public_key", pk}, {"exit_code", 0}})
              << "\n";
  } else {
    std::cout << pk << "\n";
  }
  return 0;
}

// What `sync`, `plan` and `gdpr erase` ask for.
struct SyncRequest {
  bool plan = false, force = false, debug = false, verbose = false, as_json = false;
  std::string erase_subject;  // gdpr erase: the address to erase first
};

// plan, sync, and gdpr erase (the subject into the register, then a sync
// that removes them everywhere).
int SyncCommand(const Config& config, const SyncRequest& request) {
  auto engine_config = BuildEngineConfig(config);
  if (!engine_config.ok()) {
    std::cerr << "roster: " << Safe(engine_config.error().message) << "\n";
    return 2;
  }
  const bool plan = request.plan, force = request.force, debug = request.debug,
             verbose = request.verbose, as_json = request.as_json;
  const bool erasing = !request.erase_subject.empty();
  if (erasing && !cli::SubjectOk(request.erase_subject)) return 2;
  // Two syncs of one configuration at once would race each other's writes.
  if (!plan && !LockState(config.state_path)) return 2;
  // A plan creates, migrates and writes nothing, not even the state file.
  std::vector<std::string> notes;
  auto store = OpenState(config, plan ? StateUse::kReading : StateUse::kSync, &notes);
  for (const std::string& note : notes) std::cerr << "roster: " << Safe(note) << "\n";
  if (!store.ok()) {
    std::cerr << "roster: " << Safe(store.error().message) << "\n";
    return 2;
  }
  // Who was erased: read before anything else, and never without it.
  auto key = StateKey(config, plan ? StateUse::kReading : StateUse::kSync, nullptr);
  if (!key.ok()) return Fail(key.error());
  auto erasures = LoadErasures(config, *key, **store, /*older_ok=*/erasing);
  if (!erasures.ok()) {
    std::cerr << "roster: " << Safe(erasures.error().message)
              << (plan ? "" : "; nothing was synced") << "\n";
    return 2;
  }
  int64_t erased_cached = 0;
  // A sync's output goes to logs: people and target users by pseudonym,
  // unless --debug asks for them by name, which it says first.
  if (!plan && !debug) HidePeople(**store);
  if (!plan && debug) {
    std::cerr << "roster: --debug: this output names people and target users (personal data); "
                 "keep it out of shared logs\n";
  }
  RunOptions options;
  options.dry_run = plan;
  options.force = force;
  if (!verbose && !as_json) options.max_planned = 10;
  // A verbose plan reads what each update would change, to show the fields.
  options.explain = plan && verbose;
  // A sync is recorded in the audit log: a plan appends nothing.
  std::unique_ptr<Audit> audit;
  std::string audit_error, config_hash;
  bool config_changed = false;
  if (!plan) {
    auto opened = OpenAudit(config);
    if (!opened.ok()) {
      std::cerr << "roster: " << Safe(opened.error().message) << "; nothing was synced\n";
      return 2;
    }
    audit = std::move(opened).value();
    if (erasing) {
      auto erased = cli::EraseSubject(config, request.erase_subject, **store, *erasures, *audit);
      if (erased.ok()) erased_cached = *erased;
      if (!erased.ok()) {
        std::cerr << "roster: " << Safe(erased.error().message) << "\n";
        return 2;
      }
    } else {
      // A register found with a state that did not know it (a new or lost
      // state): remembered from now on, so that losing it is noticed.
      roster::Status st = RememberErasures(**store, *erasures);
      if (!st.ok()) return Fail(st.error());
    }
    // A changed configuration gets an entry of its own (its hash, never its text).
    config_hash = ConfigHash(config);
    auto last_hash = (*store)->LoadSetting("config_hash");
    if (!last_hash.ok()) return Fail(last_hash.error());
    if (*last_hash != config_hash) {
      roster::Status st = audit->Append(
          "config-change",
          {{"from", last_hash->empty() ? std::string("none") : *last_hash}, {"to", config_hash}});
      // Remembered once the run has worked with it (below): a run refused
      // before it starts changes nothing in the state.
      config_changed = true;
      if (!st.ok()) {
        std::cerr << "roster: " << Safe(st.error().message) << "; nothing was synced\n";
        return 2;
      }
    }
    roster::Status st =
        audit->Append("run", {{"command", std::string(erasing ? "gdpr erase" : "sync")},
                              {"config", config_hash},
                              {"force", int64_t{force ? 1 : 0}}});
    if (!st.ok()) {
      std::cerr << "roster: " << Safe(st.error().message) << "; nothing was synced\n";
      return 2;
    }
  }
  const bool progress = isatty(STDERR_FILENO);
  StateStore& state = **store;
  options.on_collection = [&](const CollectionReport& c, size_t done, size_t total) {
    if (progress) Progress(c, done, total);
    if (!audit) return;
    const Counts& n = c.counts;
    if (n.created + n.updated + n.deleted + n.adopted + n.errors == 0 && c.errors.empty()) return;
    // Counts and a pseudonym: the log holds no personal data in clear.
    roster::Status st =
        audit->Append("write", {{"rule", c.key.rule},
                                {"target", c.key.target},
                                {"user", state.Pseudonym(c.key.user)},
                                {"created", n.created},
                                {"updated", n.updated},
                                {"deleted", n.deleted},
                                {"adopted", n.adopted},
                                {"errors", n.errors + static_cast<int64_t>(c.errors.size())}});
    if (!st.ok()) {
      std::lock_guard lock(audit->mu);
      if (audit_error.empty()) audit_error = st.error().message;
    }
  };
  engine_config->erasure = &*erasures;
  Engine engine(std::move(engine_config).value(), **store);
  RunReport report = engine.Run(options);
  // What the sources still hold of erased people goes into the register,
  // so that a changed address does not bring them back.
  if (!plan && erasures->Learn(report.erased)) {
    roster::Status st = erasures->Save();
    if (st.ok()) st = RememberErasures(state, *erasures);
    if (!st.ok()) report.errors.push_back(st.error().message);
  }
  bool erased_nobody = false;
  if (erasing) {
    const std::string subject = gdpr::NormalizeAddress(request.erase_subject);
    bool found = erased_cached > 0;
    for (const ErasedPerson& p : report.erased) {
      found =
          found || std::find(p.addresses.begin(), p.addresses.end(), subject) != p.addresses.end();
    }
    erased_nobody = !found && report.Totals().deleted == 0;
  }
  if (config_changed && report.errors.empty()) {
    roster::Status st = state.SaveSetting("config_hash", config_hash);
    if (!st.ok()) report.warnings.push_back(st.error().message);
  }
  if (audit) {
    const Counts t = report.Totals();
    roster::Status st = audit->Append("run-end", {{"exit_code", int64_t{report.ExitCode()}},
                                                  {"created", t.created},
                                                  {"updated", t.updated},
                                                  {"deleted", t.deleted},
                                                  {"errors", t.errors}});
    if (st.ok()) st = CloseAudit(*audit, config, &state);
    if (!st.ok() && audit_error.empty()) audit_error = st.error().message;
  }
  if (as_json) {
    PrintJson(report, plan);
  } else {
    PrintText(report, plan, verbose);
  }
  // The reasons go to stderr too, one line each, for logs and cron mail.
  for (const std::string& e : report.errors) std::cerr << "roster: " << Safe(e) << "\n";
  for (const CollectionReport& c : report.collections) {
    for (const std::string& e : c.errors) {
      std::cerr << "roster: " << Safe(c.key.target) << "/" << User(c.key) << ": " << Safe(e)
                << "\n";
    }
    // A run that ends with conflicts only exits 1: say why where cron looks.
    for (const std::string& e : c.conflicts) {
      std::cerr << "roster: " << Safe(c.key.target) << "/" << User(c.key)
                << ": conflict: " << Safe(e) << "\n";
    }
  }
  if (erased_nobody) {
    std::cerr << "roster: nobody with the address " << Safe(request.erase_subject)
              << " was found in the cache, the sources or the address books: check the "
                 "address. It is in the erasure register all the same (they are kept out if "
                 "they ever appear); `roster gdpr unerase` takes it out\n";
  }
  if (erasing && report.ExitCode() != 0) {
    std::cerr << "roster: the erasure is recorded in " << Safe(config.erasure_register)
              << ", but not every address book could be brought up to date (see above): the "
                 "person stays out of every later sync, and `roster sync` finishes removing "
                 "them"
              << (report.guard_tripped ? " (a deletion guard held some back: check, then "
                                         "`roster sync --force`)"
                                       : "")
              << "\n";
  }
  if (!audit_error.empty()) {
    std::cerr << "roster: " << Safe(audit_error) << "; the run is not fully recorded\n";
    return std::max(report.ExitCode(), 1);
  }
  return erased_nobody ? std::max(report.ExitCode(), 1) : report.ExitCode();
}

int Main(int argc, char** argv) {
  CLI::App app{"roster: keeps an organisation's people in every user's address book"};
  std::string config_path = "roster.toml";
  bool as_json = false, force = false, verbose = false;
  app.add_option("-c,--config", config_path, "configuration file (TOML)");
  app.add_flag("--json", as_json, "print one JSON object instead of text");
  app.add_flag("-v,--verbose", verbose,
               "list every planned action, why, and for updates which fields change");
  app.require_subcommand(1);
  app.fallthrough();  // --json and --verbose may also follow the subcommand
  auto* plan_cmd = app.add_subcommand(
      "plan",
      "show what a sync would change; writes nothing. For the console: it names target users "
      "and (with --verbose) the people it would change, so do not send it to a shared log");
  auto* sync_cmd = app.add_subcommand(
      "sync",
      "bring every target address book up to date. Its output is for logs: people and target "
      "users appear by pseudonym (p:...; roster status shows whose), unless --debug");
  sync_cmd->add_flag("--force", force, "let the deletion guard pass");
  bool debug = false;
  sync_cmd->add_flag("--debug", debug,
                     "name people and target users in the output (personal data: keep it out of "
                     "shared logs); says so when it starts");
  plan_cmd->add_flag("--force", force, "plan as if the deletion guard were overridden");
  auto* status_cmd = app.add_subcommand(
      "status",
      "show the last result per address book, with each target user's name and pseudonym (the "
      "p:... a sync's output and the stored messages use); for the console");
  auto* doctor_cmd = app.add_subcommand(
      "doctor", "check every source, target and permission without changing anything");
  auto* keys_cmd =
      app.add_subcommand("keys", "the key that encrypts the state ([state] key_file or key_env)");
  keys_cmd->require_subcommand(1);
  auto* keys_init_cmd = keys_cmd->add_subcommand(
      "init",
      "create the state's key in [state] key_file (mode 0600; an existing file is never "
      "replaced). With key_env instead, print a new key on standard output for you to put in "
      "that variable: the only time roster ever prints a key");
  auto* keys_rotate_cmd = keys_cmd->add_subcommand(
      "rotate",
      "seal the state under a new key, and drop the old one; safe to run again after a crash. "
      "With key_env: prints the key to install, in two steps");
  bool purge_expired = false, purge_all = false;
  auto* purge_cmd = app.add_subcommand(
      "purge",
      "forget what the state holds: --expired (older than [state] retention_days) or --all");
  auto* expired_flag =
      purge_cmd->add_flag("--expired", purge_expired, "what is older than retention_days");
  auto* all_flag = purge_cmd->add_flag(
      "--all", purge_all, "everything; the next sync finds roster's items again by their markers");
  expired_flag->excludes(all_flag);
  purge_cmd->callback([&]() {
    if (!purge_expired && !purge_all) throw CLI::RequiredError("--expired or --all");
  });
  auto* audit_cmd =
      app.add_subcommand("audit", "the tamper-evident log of what roster did ([audit] path)");
  audit_cmd->require_subcommand(1);
  std::string public_key, expected_head;
  auto* audit_verify_cmd = audit_cmd->add_subcommand(
      "verify",
      "check that no entry was changed, removed, inserted or moved since roster wrote it; names "
      "the first bad line (exit 1)");
  audit_verify_cmd->add_option(
      "--public-key", public_key,
      "the public half (hex, from `roster audit public-key`) the checkpoints must be signed by; "
      "keep it away from this machine");
  audit_verify_cmd->add_option("--head", expected_head,
                               "a head hash from syslog (\"roster audit: head seq N hash H\"): "
                               "the log must still contain it");
  auto* audit_key_cmd = audit_cmd->add_subcommand(
      "public-key", "print the public half of the key that signs the log's checkpoints");
  std::string subject, vcard_path;
  auto* gdpr_cmd = app.add_subcommand(
      "gdpr", "a data subject's rights: export (access, portability), erase, unerase");
  gdpr_cmd->require_subcommand(1);
  auto* gdpr_export_cmd = gdpr_cmd->add_subcommand(
      "export",
      "print as JSON everything roster holds or wrote about a person: the cached fields, every "
      "address book or mailbox holding a copy (read back from the targets), and the audit "
      "entries about them. Personal data: hand it to the person, not to a log");
  gdpr_export_cmd->add_option("--subject", subject, "the person's e-mail address")->required();
  gdpr_export_cmd->add_option("--vcard", vcard_path, "also write the person as a vCard 4.0 file");
  auto* gdpr_erase_cmd = gdpr_cmd->add_subcommand(
      "erase",
      "remove a person from the cache and from every target in one sync, redact them where "
      "other cards name them (a manager), and keep them out of later syncs (the erasure "
      "register, [gdpr] register) until gdpr unerase");
  gdpr_erase_cmd->add_option("--subject", subject, "the person's e-mail address")->required();
  gdpr_erase_cmd->add_flag("--force", force, "let the deletion guard pass");
  auto* gdpr_unerase_cmd = gdpr_cmd->add_subcommand(
      "unerase", "take a person out of the erasure register: the next sync brings them back");
  gdpr_unerase_cmd->add_option("--subject", subject, "the person's e-mail address")->required();
  bool dry_run = false;
  auto* decommission_cmd = app.add_subcommand(
      "decommission",
      "remove everything roster wrote for this configuration (every managed item, then every "
      "address book of roster's that is left empty), found by roster's markers even without "
      "the state, then wipe the state and its cache: the end of a contract");
  decommission_cmd->add_flag("--dry-run", dry_run, "list what would be removed; change nothing");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  auto config = LoadConfig(config_path);
  if (!config.ok()) {
    std::cerr << "roster: " << Safe(config.error().message) << "\n";
    return 2;
  }
  if (status_cmd->parsed()) return Status(*config, as_json);
  if (doctor_cmd->parsed()) return Doctor(*config, as_json);
  if (keys_init_cmd->parsed()) return KeysInit(*config, as_json);
  if (keys_rotate_cmd->parsed()) return KeysRotate(*config, as_json);
  if (purge_cmd->parsed()) return Purge(*config, purge_all, as_json);
  if (audit_verify_cmd->parsed()) return AuditVerify(*config, public_key, expected_head, as_json);
  if (audit_key_cmd->parsed()) return AuditPublicKeyCommand(*config, as_json);

  if (gdpr_export_cmd->parsed()) return cli::GdprExport(*config, subject, vcard_path, as_json);
  if (gdpr_unerase_cmd->parsed()) return cli::GdprUnerase(*config, subject, as_json);
  if (decommission_cmd->parsed()) return cli::Decommission(*config, dry_run, as_json);

  SyncRequest request;
  request.plan = plan_cmd->parsed();
  request.force = force;
  request.debug = debug;
  request.verbose = verbose;
  request.as_json = as_json;
  if (gdpr_erase_cmd->parsed()) request.erase_subject = subject;
  return SyncCommand(*config, request);
}

}  // namespace
}  // namespace roster

int main(int argc, char** argv) { return roster::Main(argc, argv); }
