// Named failpoints: places where a crash matters (around every remote write
// and every state transaction). Off unless ROSTER_FAILPOINTS names them; then
// the process dies there as SIGKILL would (no destructor, no commit, no flush),
// so that tests can crash roster at every boundary in turn and prove that the
// next run converges (FoundationDB's BUGGIFY, Dropbox's CanopyCheck).
//
//   ROSTER_FAILPOINTS=after-create:3,state-commit:1   die at the 3rd hit of
//                                                     after-create, or the 1st
//                                                     of state-commit
//   ROSTER_FAILPOINT_LOG=/tmp/hits                    append every hit's name
//                                                     (one a line), to count them
#pragma once

#include <atomic>
#include <functional>
#include <string_view>

namespace roster {

namespace failpoint_internal {
// True when either variable was set at start-up; read once, then constant.
extern std::atomic<bool> g_armed;
void Hit(std::string_view name);
}  // namespace failpoint_internal

// Marks a failpoint. Free when the variables are unset: one relaxed load.
inline void Failpoint(std::string_view name) {
  if (failpoint_internal::g_armed.load(std::memory_order_relaxed)) failpoint_internal::Hit(name);
}

// Every failpoint name the code uses, for tests that enumerate them.
const char* const* FailpointNames();

// For crash tests inside one process (the in-process fakes die with the
// process, so SIGKILL cannot be used there): `handler` is called at every
// hit, and may throw to stop the run at that point, as a crash would. What
// the throw unwinds must then be dropped as a crash drops it: the test
// closes the state store (SQLite rolls back what was not committed) and
// opens it again. Null disarms it. Not for production code paths.
void SetFailpointHandlerForTest(std::function<void(std::string_view name)> handler);

}  // namespace roster
