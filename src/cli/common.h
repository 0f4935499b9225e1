// What the command line's commands share: output that is safe to print,
// the lock of a configuration's state, the audit log, and the check of the
// erasure register against the state; and the GDPR and decommissioning
// commands (gdpr.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "audit/audit.h"
#include "config/config.h"
#include "core/result.h"
#include "crypto/keys.h"
#include "gdpr/register.h"
#include "state/state.h"

namespace roster::cli {

using nlohmann::json;

// Everything printed that did not come from roster itself passes through
// Safe: control characters and invalid UTF-8 are made harmless, and, once
// HidePeople has been called (a sync without --debug), people marked in a
// message (core/personal.h) appear by pseudonym.
void HidePeople(const StateStore& store);
std::string Safe(const std::string& s);
json SafeList(const std::vector<std::string>& items);
// A second line of defence: invalid UTF-8 is replaced, never thrown about.
std::string Dump(const json& value);
// Prints "roster: <message>" on stderr and answers 2.
int Fail(const Error& e);

// False, having said why on stderr, unless `address` (--subject) can be an
// e-mail address.
bool SubjectOk(const std::string& address);

// Takes the lock of `state_path` (state_path + ".lock") for the life of the
// process, or says on stderr that another command holds it.
bool LockState(const std::string& state_path);

// The audit log ([audit] path) of a configuration, opened with its key.
// Nothing roster changes goes unrecorded: a log that cannot be opened
// stops the command before it changes anything.
struct Audit {
  std::unique_ptr<crypto::Key> key;
  std::unique_ptr<audit::Log> log;
  std::mutex mu;  // collections finish on several threads

  roster::Status Append(const std::string& event, const audit::Details& details = {}) {
    std::lock_guard lock(mu);
    return log->Append(event, details);
  }
};

Result<std::unique_ptr<Audit>> OpenAudit(const Config& config, crypto::Key key);
Result<std::unique_ptr<Audit>> OpenAudit(const Config& config);
// The configuration file's hash, so that the log shows when it changed.
std::string ConfigHash(const Config& config);
// A command's last entries: a signed checkpoint, entries past the retention
// pruned, the head to syslog and (with `store`) into the state.
roster::Status CloseAudit(Audit& a, const Config& config, StateStore* store = nullptr);

// The erasure register, checked against what the state remembers of it
// (its generation): missing while people were erased, or an older copy, is
// an error. With `older_ok` (gdpr erase, which can repair one) an older
// copy is let through.
Result<gdpr::ErasureRegister> LoadErasures(const Config& config, const crypto::Key& key,
                                           StateStore& store, bool older_ok = false);
// Records the register's generation in the state when it changed.
roster::Status RememberErasures(StateStore& store, const gdpr::ErasureRegister& reg);

// `gdpr erase`, before its sync: the erasure recorded, the person into the
// register and out of the cache; answers how many cached entries were theirs.
Result<int64_t> EraseSubject(const Config& config, const std::string& address, StateStore& store,
                             gdpr::ErasureRegister& reg, Audit& audit);
int GdprUnerase(const Config& config, const std::string& address, bool as_json);
int GdprExport(const Config& config, const std::string& address, const std::string& vcard_path,
               bool as_json);
int Decommission(const Config& config, bool dry_run, bool as_json);

}  // namespace roster::cli
