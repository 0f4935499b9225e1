#include "sync/limiter.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace roster {

using TimePoint = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

const char* LimitCauseName(LimitCause cause) {
  switch (cause) {
    case LimitCause::kConcurrency:
      return "concurrency";
    case LimitCause::kRequestWindow:
      return "request window";
    case LimitCause::kUploadWindow:
      return "upload window";
    case LimitCause::kPenalty:
      return "penalty";
  }
  return "unknown";
}

Permit::Permit(Permit&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      bucket_(std::move(other.bucket_)),
      in_flight_(other.in_flight_),
      lease_(other.lease_) {}

Permit& Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    bucket_ = std::move(other.bucket_);
    in_flight_ = other.in_flight_;
    lease_ = other.lease_;
  }
  return *this;
}

Permit::~Permit() { Release(); }

void Permit::Release() {
  if (owner_ != nullptr) {
    std::exchange(owner_, nullptr)->ReleaseSlots(bucket_, in_flight_, lease_);
  }
}

namespace {

// One sliding window's rule: `limit` per `length`, off when either is <= 0.
//
// Grants are kept per slot of length/kSlots rather than one by one, so a
// mailbox that sends 10,000 requests in ten minutes costs at most kSlots + 2
// entries of 16 bytes per window, not 10,000. A slot's count is held until
// its *last* grant leaves the window: never an undercount, so roster cannot
// exceed the server's limit by its own reckoning, at the price of holding an
// earlier grant of the slot up to one slot (10 s of Graph's 600 s) too long.
// A lone grant in its slot frees exactly `length` after it was made.
struct WindowRule {
  static constexpr int kSlots = 60;

  WindowRule(int64_t limit, Duration length)
      : limit(limit), length(length), slot(std::max<Duration>(length / kSlots, Duration(1))) {}

  bool enabled() const { return limit > 0 && length > Duration::zero(); }

  int64_t limit;
  Duration length;
  Duration slot;
};

class Window {
 public:
  // Forgets grants that have left the window at `now`.
  void Expire(const WindowRule& rule, TimePoint now) {
    auto live = std::find_if(grants_.begin(), grants_.end(),
                             [&](const Grant& g) { return g.last + rule.length > now; });
    for (auto it = grants_.begin(); it != live; ++it) used_ -= it->amount;
    grants_.erase(grants_.begin(), live);
  }

  // After Expire(now): when `amount` more fits, or nullopt if it fits now.
  // An amount larger than the whole limit fits once the window is empty.
  std::optional<TimePoint> FreesAt(const WindowRule& rule, int64_t amount) const {
    if (!rule.enabled() || amount <= 0 || used_ == 0 || used_ + amount <= rule.limit) {
      return std::nullopt;
    }
    int64_t remaining = used_;
    for (const Grant& g : grants_) {
      remaining -= g.amount;
      if (remaining == 0 || remaining + amount <= rule.limit) return g.last + rule.length;
    }
    return std::nullopt;  // unreachable: remaining reaches 0 at the last grant
  }

  // Counts `amount` at `now`, which is never earlier than the last grant's.
  void Add(const WindowRule& rule, TimePoint now, int64_t amount) {
    if (!rule.enabled() || amount <= 0) return;
    if (!grants_.empty() &&
        grants_.back().last.time_since_epoch() / rule.slot == now.time_since_epoch() / rule.slot) {
      grants_.back().last = now;
      grants_.back().amount += amount;
    } else {
      grants_.push_back({now, amount});
    }
    used_ += amount;
  }

  bool empty() const { return used_ == 0; }

 private:
  struct Grant {
    TimePoint last;  // the slot's latest grant: the count leaves the window with it
    int64_t amount;
  };
  std::vector<Grant> grants_;  // oldest first
  int64_t used_ = 0;
};

// State per bucket: about 130 bytes with its map node, plus a key longer than
// 15 characters, plus up to 2 x 64 x 16 bytes = 2 KB of window slots while a
// mailbox is busy (10,000 mailboxes busy at once: about 20 MB). A bucket with nothing in
// flight, nothing counted and no penalty is dropped, so thousands of quiet
// mailboxes cost nothing.
struct Bucket {
  int in_flight = 0;
  TimePoint penalty_until = TimePoint::min();
  Window requests;
  Window uploads;
};

class LocalLimiter final : public Limiter {
 public:
  LocalLimiter(Clock& clock, const LimitPolicy& policy,
               std::function<void(const std::string&)> on_release)
      : clock_(clock),
        max_concurrent_(policy.max_concurrent),
        requests_(policy.window_requests, policy.request_window),
        uploads_(policy.window_upload_bytes, policy.upload_window),
        on_release_(std::move(on_release)) {}

  Acquired TryAcquire(const std::string& bucket, const Cost& cost) override {
    const int in_flight = std::max(cost.in_flight, 0);
    const int64_t requests = std::max<int64_t>(cost.requests, 0);
    const int64_t upload_bytes = std::max<int64_t>(cost.upload_bytes, 0);

    std::lock_guard lock(mu_);
    const TimePoint now = clock_.Now();
    MaybeDropIdle(now);
    Bucket& b = buckets_[bucket];
    b.requests.Expire(requests_, now);
    b.uploads.Expire(uploads_, now);

    // The time-based limit that frees last decides not_before; on a tie the
    // earlier in this order is named, the penalty first since the server set it.
    Refusal refusal{LimitCause::kConcurrency, now, false};
    bool timed = false;
    auto block = [&](LimitCause cause, std::optional<TimePoint> until) {
      if (until && *until > now && (!timed || *until > refusal.not_before)) {
        refusal.cause = cause;
        refusal.not_before = *until;
        timed = true;
      }
    };
    block(LimitCause::kPenalty, b.penalty_until);
    block(LimitCause::kUploadWindow, b.uploads.FreesAt(uploads_, upload_bytes));
    block(LimitCause::kRequestWindow, b.requests.FreesAt(requests_, requests));
    // A cost wider than max_concurrent runs alone rather than never.
    refusal.waits_for_release = max_concurrent_ > 0 && in_flight > 0 && b.in_flight > 0 &&
                                b.in_flight + in_flight > max_concurrent_;

    if (timed || refusal.waits_for_release) {
      Count(refusal, now);
      return refusal;
    }
    b.in_flight += in_flight;
    b.requests.Add(requests_, now, requests);
    b.uploads.Add(uploads_, now, upload_bytes);
    counters_.acquired++;
    counters_.in_flight += in_flight;
    return MakePermit(bucket, in_flight, next_lease_++);
  }

  void Penalize(const std::string& bucket, TimePoint not_before) override {
    std::lock_guard lock(mu_);
    Bucket& b = buckets_[bucket];
    b.penalty_until = std::max(b.penalty_until, not_before);
    counters_.penalties++;
  }

  LimiterCounters Counters() const override {
    std::lock_guard lock(mu_);
    LimiterCounters c = counters_;
    c.suggested_wait = std::chrono::ceil<std::chrono::milliseconds>(suggested_wait_);
    c.buckets = static_cast<int64_t>(buckets_.size());
    return c;
  }

 protected:
  void ReleaseSlots(const std::string& bucket, int in_flight,
                    uint64_t /*lease*/) noexcept override {
    {
      std::lock_guard lock(mu_);
      auto it = buckets_.find(bucket);
      if (it == buckets_.end()) return;  // cannot happen: a bucket in flight is never dropped
      it->second.in_flight -= in_flight;
      counters_.in_flight -= in_flight;
    }
    // Outside the lock: the callback may well call TryAcquire.
    if (on_release_) on_release_(bucket);
  }

 private:
  void Count(const Refusal& refusal, TimePoint now) {
    switch (refusal.cause) {
      case LimitCause::kConcurrency:
        counters_.refused_concurrency++;
        break;
      case LimitCause::kRequestWindow:
        counters_.refused_request_window++;
        break;
      case LimitCause::kUploadWindow:
        counters_.refused_upload_window++;
        break;
      case LimitCause::kPenalty:
        counters_.refused_penalty++;
        break;
    }
    suggested_wait_ += refusal.not_before - now;
  }

  // Drops idle buckets, in a full pass once per buckets_.size() calls, so the
  // cost per call stays constant and the map holds only live mailboxes.
  void MaybeDropIdle(TimePoint now) {
    if (++calls_since_sweep_ < buckets_.size()) return;
    calls_since_sweep_ = 0;
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      Bucket& b = it->second;
      b.requests.Expire(requests_, now);
      b.uploads.Expire(uploads_, now);
      const bool idle =
          b.in_flight == 0 && b.penalty_until <= now && b.requests.empty() && b.uploads.empty();
      it = idle ? buckets_.erase(it) : std::next(it);
    }
  }

  Clock& clock_;
  const int max_concurrent_;
  const WindowRule requests_;
  const WindowRule uploads_;
  const std::function<void(const std::string&)> on_release_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  size_t calls_since_sweep_ = 0;
  uint64_t next_lease_ = 1;
  LimiterCounters counters_;
  Duration suggested_wait_{0};
};

}  // namespace

std::unique_ptr<Limiter> NewLocalLimiter(Clock& clock, const LimitPolicy& policy,
                                         std::function<void(const std::string&)> on_release) {
  return std::make_unique<LocalLimiter>(clock, policy, std::move(on_release));
}

}  // namespace roster
