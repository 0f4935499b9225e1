// Template body of WithRetries (see sync.h).
#pragma once

#include <algorithm>

namespace roster {

// A server may ask for a long pause (Graph does, for minutes); honour it up to this.
inline constexpr std::chrono::milliseconds kMaxRetryAfter{10 * 60 * 1000};

template <typename T>
Result<T> WithRetries(const RetryPolicy& policy, Clock& clock,
                      const std::function<Result<T>()>& op) {
  std::chrono::milliseconds backoff = policy.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    Result<T> result = op();
    if (result.ok() || !result.error().retryable() || attempt >= policy.max_attempts) {
      return result;
    }
    std::chrono::milliseconds wait = result.error().retry_after.count() > 0
                                         ? std::min(result.error().retry_after, kMaxRetryAfter)
                                         : backoff;
    clock.SleepFor(wait);
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

}  // namespace roster
