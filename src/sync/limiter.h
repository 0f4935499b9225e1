// Rate limits per server bucket (for Microsoft Graph: per app and mailbox),
// shared by all work in a process, so that roster never draws a 429 through
// its own concurrency or volume. Never blocks: a refusal says when to try again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>

#include "core/clock.h"

namespace roster {

// The budget of one bucket. Each limit is off when 0 or negative. The
// defaults are Graph's documented limits per app and mailbox.
struct LimitPolicy {
  int max_concurrent = 4;           // HTTP calls in flight
  int64_t window_requests = 10000;  // requests per request_window
  std::chrono::seconds request_window{600};
  int64_t window_upload_bytes = 150LL * 1024 * 1024;  // request body bytes per upload_window
  std::chrono::seconds upload_window{300};
};

// What one piece of work takes from a bucket. The caller states concurrency
// and volume separately because they differ for batches: Graph counts every
// sub-request of a $batch against the mailbox's window, and runs up to 4
// sub-requests of one batch in parallel against the mailbox. So for Graph:
//   a single request:               {1, 1, body bytes}
//   a $batch of n independent ones: {min(n, 4), n, sum of body bytes}
//   a $batch chained by dependsOn:  {1, n, sum of body bytes} (runs one at a time)
// Counting a batch as one in flight would let four batches run 16 requests at
// once on one mailbox, which is exactly the 429 this module exists to avoid.
// Each field must be >= 0 (negative values count as 0).
struct Cost {
  int in_flight = 1;         // concurrency slots held until the permit is released
  int64_t requests = 1;      // counted against the request window when granted
  int64_t upload_bytes = 0;  // counted against the upload window when granted
};

// Which limit refused a cost.
enum class LimitCause { kConcurrency, kRequestWindow, kUploadWindow, kPenalty };

const char* LimitCauseName(LimitCause cause);

// A refused TryAcquire.
struct Refusal {
  // The limit that refused. When several do, the time-based one that frees
  // last; kConcurrency only when the time-based limits would allow the cost.
  LimitCause cause = LimitCause::kConcurrency;
  // Exact: from this time on the penalty and both windows let the same cost
  // through, unless other grants fill them first. Now when only concurrency
  // refused. An event loop sleeps until the earliest not_before it holds.
  std::chrono::steady_clock::time_point not_before;
  // The bucket's concurrency slots are taken: no passing of time frees them,
  // only the release of a permit of this bucket (see NewLocalLimiter's
  // on_release), so try again after one, and not before not_before.
  bool waits_for_release = false;
};

class Limiter;

// The concurrency share of one granted cost, given back when the permit is
// destroyed, moved onto, or Release()d. Window counts are never given back:
// the server counted the requests when they were sent, whatever they answered.
// A permit must not outlive the limiter that granted it; it may be moved to and
// released on any thread.
class Permit {
 public:
  Permit() = default;  // holds nothing
  Permit(Permit&& other) noexcept;
  Permit& operator=(Permit&& other) noexcept;
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit();

  // Gives the slots back now; afterwards the permit holds nothing. Idempotent.
  void Release();
  bool held() const { return owner_ != nullptr; }
  const std::string& bucket() const { return bucket_; }

 private:
  friend class Limiter;
  Permit(Limiter* owner, std::string bucket, int in_flight, uint64_t lease)
      : owner_(owner), bucket_(std::move(bucket)), in_flight_(in_flight), lease_(lease) {}

  Limiter* owner_ = nullptr;
  std::string bucket_;
  int in_flight_ = 0;
  uint64_t lease_ = 0;  // the implementation's handle (a row id for a shared store)
};

// Either the permit or when to try again.
using Acquired = std::variant<Permit, Refusal>;

// Process-wide totals for `--json` and the dashboard.
struct LimiterCounters {
  int64_t acquired = 0;
  int64_t refused_concurrency = 0;
  int64_t refused_request_window = 0;
  int64_t refused_upload_window = 0;
  int64_t refused_penalty = 0;
  int64_t penalties = 0;  // Penalize calls
  // Sum over refusals of (not_before - now): how hard the limits pressed, not
  // wall time lost (a caller that retries early is told the rest again).
  std::chrono::milliseconds suggested_wait{0};
  int64_t in_flight = 0;  // slots held now, all buckets
  int64_t buckets = 0;    // buckets with state now (in flight, counted, or penalized)
};

// A Limiter holds the budgets of named buckets. A bucket is any string the
// caller chooses, naming what the server limits, e.g. "graph/<app>/<mailbox
// id>"; buckets are independent of each other and all share one LimitPolicy.
// Implementations are thread-safe and take the time from a Clock, so an
// in-process one and one shared by several processes through a database can
// serve the same callers.
class Limiter {
 public:
  virtual ~Limiter() = default;

  // Grants `cost` on `bucket` if every limit allows it now, and counts it;
  // otherwise changes nothing and says why and when to try again. Never
  // blocks. A cost larger than a whole budget is granted when that budget is
  // entirely unused (no slot held, or nothing counted in the window), so it
  // waits its turn instead of never running; it then fills the budget alone.
  virtual Acquired TryAcquire(const std::string& bucket, const Cost& cost) = 0;

  // The server refused with Retry-After: nothing more is granted on `bucket`
  // before `not_before`, to any caller. Permits already granted stay valid. A
  // later time extends the penalty; an earlier one does not shorten it.
  virtual void Penalize(const std::string& bucket,
                        std::chrono::steady_clock::time_point not_before) = 0;

  virtual LimiterCounters Counters() const = 0;

 protected:
  // For implementations: a permit that calls ReleaseSlots(bucket, in_flight,
  // lease) exactly once.
  Permit MakePermit(std::string bucket, int in_flight, uint64_t lease) {
    return Permit(this, std::move(bucket), in_flight, lease);
  }
  virtual void ReleaseSlots(const std::string& bucket, int in_flight, uint64_t lease) noexcept = 0;

 private:
  friend class Permit;
};

// The in-process limiter. `on_release`, if set, is called with the bucket
// after each release, on the releasing thread and without the limiter's lock,
// so that a caller parked on a concurrency refusal can be woken; it must not
// block. `clock` must outlive the limiter.
std::unique_ptr<Limiter> NewLocalLimiter(
    Clock& clock, const LimitPolicy& policy = {},
    std::function<void(const std::string& bucket)> on_release = nullptr);

}  // namespace roster
