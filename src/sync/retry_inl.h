// Template body of WithRetries (see sync.h).
#pragma once

#include <algorithm>

namespace roster {

template <typename T>
Result<T> WithRetries(const RetryPolicy& policy, Clock& clock,
                      const std::function<Result<T>()>& op) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  std::chrono::milliseconds backoff = policy.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    Result<T> result = op();
    if (result.ok() || !result.error().retryable() || attempt >= policy.max_attempts) {
      return result;
    }
    const std::chrono::milliseconds asked = result.error().retry_after;
    if (asked > policy.max_retry_after) {
      // Holding a run for longer than the target kind allows would starve
      // every other mailbox: leave this one for the next run.
      Error e = result.take_error();
      e.message += "; the server asked to wait " +
                   std::to_string(duration_cast<seconds>(asked).count()) +
                   " s, more than max_retry_after_seconds = " +
                   std::to_string(duration_cast<seconds>(policy.max_retry_after).count()) +
                   ", so it is left for the next run";
      return e;
    }
    std::chrono::milliseconds wait = asked.count() > 0 ? asked : backoff;
    if (policy.deadline && clock.Now() + wait > *policy.deadline) {
      Error e = result.take_error();
      e.message += "; the run's deadline (run_timeout_seconds) comes before a retry could";
      return e;
    }
    clock.SleepFor(wait);
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

}  // namespace roster
