#include "cli/common.h"

#include <fcntl.h>
#include <sys/file.h>
#include <syslog.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/hash.h"
#include "core/personal.h"
#include "core/text.h"

namespace roster::cli {
namespace {

PseudonymFn& Hider() {
  static PseudonymFn hide;
  return hide;
}

// What the state remembers of the register roster last wrote or read:
// "<generation> <entries>", so that a register lost or swapped for an older
// copy is noticed instead of quietly letting erased people back.
std::string DescribeErasures(const gdpr::ErasureRegister& reg) {
  return std::to_string(reg.generation()) + " " + std::to_string(reg.size());
}

}  // namespace

// Everything printed that did not come from roster itself (server messages,
// hrefs, names, etags) passes through here first: a server's control
// characters or invalid UTF-8 must neither drive the terminal nor make the
// JSON writer throw.
//
// Personal data marked in a message (core/personal.h) is shown by name, or,
// once HidePeople has been called (a sync without --debug, whose output goes
// to logs), by its pseudonym.
void HidePeople(const StateStore& store) {
  Hider() = [&store](std::string_view ref) { return store.Pseudonym(ref); };
}
std::string Safe(const std::string& s) {
  const PseudonymFn& hide = Hider();
  return text::SafeForOutput(hide ? HidePersonal(s, hide) : ShowPersonal(s));
}
json SafeList(const std::vector<std::string>& items) {
  json out = json::array();
  for (const std::string& item : items) out.push_back(Safe(item));
  return out;
}

// A second line of defence: invalid UTF-8 that slipped past Safe is replaced,
// never thrown about.
std::string Dump(const json& value) {
  return value.dump(2, ' ', false, json::error_handler_t::replace);
}

bool SubjectOk(const std::string& address) {
  if (gdpr::IsAddress(address)) return true;
  std::cerr << "roster: --subject must be the person's e-mail address, not \"" << Safe(address)
            << "\"\n";
  return false;
}

int Fail(const Error& e) {
  std::cerr << "roster: " << Safe(e.message) << "\n";
  return 2;
}

// Two syncs of one configuration at once would race each other's writes;
// the second one stops with a clear message instead. The lock goes with the
// process, even when it is killed (the descriptor is left open on purpose).
bool LockState(const std::string& state_path) {
  std::string lock_path = state_path + ".lock";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    std::cerr << "roster: cannot create lock file " << lock_path << "\n";
    return false;
  }
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    std::cerr << "roster: another sync with state " << state_path << " is running (lock "
              << lock_path << "); try again when it has finished\n";
    return false;
  }
  return true;
}

Result<std::unique_ptr<Audit>> OpenAudit(const Config& config, crypto::Key key) {
  auto a = std::make_unique<Audit>();
  a->key = std::make_unique<crypto::Key>(std::move(key));
  ROSTER_ASSIGN_OR_RETURN(a->log, audit::Log::Open(config.audit_path, *a->key));
  return a;
}

Result<std::unique_ptr<Audit>> OpenAudit(const Config& config) {
  ROSTER_ASSIGN_OR_RETURN(crypto::Key key,
                          crypto::LoadStateKey(config.state_key_file, config.state_key_env));
  return OpenAudit(config, std::move(key));
}

// The configuration file's hash, so that the log shows when it changed.
std::string ConfigHash(const Config& config) {
  std::ifstream in(config.path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return HashHex(text.str(), 32);
}

// A command's last entries: a signed checkpoint, entries past the retention
// pruned, and the head to syslog (journald), where it outlives the machine's
// files if the journal is forwarded.
roster::Status CloseAudit(Audit& a, const Config& config, StateStore* store) {
  ROSTER_RETURN_IF_ERROR(a.log->Checkpoint());
  // The head in the state too, which `audit verify` checks the log against:
  // a log cut back to an earlier checkpoint no longer holds it.
  if (store) {
    ROSTER_RETURN_IF_ERROR(store->SaveSetting(
        "audit_head", std::to_string(a.log->head_seq()) + " " + a.log->head_hash()));
  }
  auto pruned = audit::Prune(a.log, *a.key, std::chrono::hours(24) * config.audit_retention_days);
  if (!pruned.ok()) return pruned.take_error();
  openlog("roster", LOG_PID, LOG_USER);
  syslog(LOG_INFO, "%s", audit::HeadLine(*a.log).c_str());
  closelog();
  return {};
}

// The register, checked against what the state remembers of it. With
// `older_ok` (gdpr erase: adding people is how an older copy is repaired)
// an older generation is let through.
Result<gdpr::ErasureRegister> LoadErasures(const Config& config, const crypto::Key& key,
                                           StateStore& store, bool older_ok) {
  ROSTER_ASSIGN_OR_RETURN(gdpr::ErasureRegister reg,
                          gdpr::ErasureRegister::Load(config.erasure_register, key));
  ROSTER_ASSIGN_OR_RETURN(std::string expected, store.LoadSetting("erasure_register"));
  int64_t generation = 0, entries = 0;
  if (expected.empty() ||
      std::sscanf(expected.c_str(), "%" SCNd64 " %" SCNd64, &generation, &entries) != 2) {
    return reg;
  }
  if (!reg.exists() && entries > 0) {
    return MakeError(ErrorKind::kInvalidData,
                     "erasure register " + config.erasure_register +
                         " is missing, but this state says people were erased; without it they "
                         "would come back. Restore it from the backup kept with the "
                         "configuration and the key ([gdpr] register)");
  }
  if (reg.exists() && reg.generation() < generation && !older_ok) {
    return MakeError(ErrorKind::kInvalidData,
                     "erasure register " + config.erasure_register + " is an older copy (write " +
                         std::to_string(reg.generation()) + ", this state last saw write " +
                         std::to_string(generation) +
                         "): people erased since would come back. Restore the newest copy, or "
                         "erase them again with `roster gdpr erase` (the audit log's gdpr-erase "
                         "entries say when)");
  }
  return reg;
}

roster::Status RememberErasures(StateStore& store, const gdpr::ErasureRegister& reg) {
  if (!reg.exists()) return {};
  ROSTER_ASSIGN_OR_RETURN(std::string stored, store.LoadSetting("erasure_register"));
  const std::string now = DescribeErasures(reg);
  if (stored == now) return {};
  return store.SaveSetting("erasure_register", now);
}

}  // namespace roster::cli
