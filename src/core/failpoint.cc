#include "core/failpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace roster {
namespace failpoint_internal {
namespace {

struct Config {
  std::function<void(std::string_view)> handler;    // SetFailpointHandlerForTest
  std::map<std::string, long, std::less<>> die_at;  // name -> hit number that kills
  std::map<std::string, long, std::less<>> hits;
  int log_fd = -1;
  std::mutex mu;
};

Config& TheConfig() {
  static Config* config = new Config();  // never destroyed: usable until _exit
  return *config;
}

// "a:3,b:1" -> {a: 3, b: 1}; a name without a count dies at its first hit.
void Parse(const char* spec, Config& config) {
  std::string_view s(spec);
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
    if (item.empty()) continue;
    long at = 1;
    size_t colon = item.find(':');
    if (colon != std::string_view::npos) {
      at = std::strtol(std::string(item.substr(colon + 1)).c_str(), nullptr, 10);
      item = item.substr(0, colon);
    }
    if (at > 0) config.die_at[std::string(item)] = at;
  }
}

bool Arm() {
  const char* spec = std::getenv("ROSTER_FAILPOINTS");
  const char* log = std::getenv("ROSTER_FAILPOINT_LOG");
  if ((spec == nullptr || *spec == '\0') && (log == nullptr || *log == '\0')) return false;
  Config& config = TheConfig();
  if (spec != nullptr) Parse(spec, config);
  if (log != nullptr && *log != '\0') {
    config.log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  }
  return true;
}

}  // namespace

std::atomic<bool> g_armed{Arm()};

void Hit(std::string_view name) {
  Config& config = TheConfig();
  std::function<void(std::string_view)> handler;
  {
    std::lock_guard lock(config.mu);
    handler = config.handler;
  }
  if (handler) {
    handler(name);  // may throw: the lock is not held
    return;
  }
  std::lock_guard lock(config.mu);
  long n = ++config.hits[std::string(name)];
  if (config.log_fd >= 0) {
    std::string line(name);
    line.push_back('\n');
    // One write per line: O_APPEND keeps lines whole. Nothing to do on failure.
    if (write(config.log_fd, line.data(), line.size()) < 0) {
    }
  }
  auto it = config.die_at.find(name);
  if (it != config.die_at.end() && it->second == n) {
    // As SIGKILL would: no destructor, no atexit handler, no buffered output.
    kill(getpid(), SIGKILL);
    _exit(137);
  }
}

}  // namespace failpoint_internal

void SetFailpointHandlerForTest(std::function<void(std::string_view name)> handler) {
  failpoint_internal::Config& config = failpoint_internal::TheConfig();
  std::lock_guard lock(config.mu);
  config.handler = std::move(handler);
  if (config.handler) failpoint_internal::g_armed.store(true);
}

const char* const* FailpointNames() {
  static const char* const kNames[] = {
      // sync/executor.cc: each remote write, and the state record after it.
      "before-create", "after-create", "before-update", "after-update", "before-delete",
      "after-delete", "after-record",
      // sync/executor.cc: inside an update with field rules, between its read and its write.
      "after-update-read",
      // sync/collection_run.cc, sync/offboard.cc, app/engine.cc: a collection's steps.
      "after-open", "after-list", "after-apply-listing", "before-confirm-list",
      "after-confirm-list", "before-snapshot", "before-forget-collection",
      // state/sqlite_state.cc: every write transaction, before and after its commit.
      "state-before-commit", "state-after-commit",
      // state/sqlite_state.cc: the migration that seals the state, and the rebuild after it.
      "state-migration-before-commit", "state-rebuilt", nullptr};
  return kNames;
}

}  // namespace roster
