#include "sync/limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>
#include <vector>

namespace roster {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = std::chrono::steady_clock::time_point;

// Moves only when told; atomic so that the stress test's threads may read it.
class FakeClock final : public Clock {
 public:
  TimePoint Now() override { return TimePoint(std::chrono::nanoseconds(now_ns_.load())); }
  void SleepFor(milliseconds d) override { Advance(d); }
  void Advance(std::chrono::nanoseconds d) { now_ns_ += d.count(); }
  void Set(std::chrono::nanoseconds since_start) { now_ns_ = since_start.count(); }

 private:
  std::atomic<int64_t> now_ns_{0};
};

TimePoint At(std::chrono::nanoseconds since_start) { return TimePoint(since_start); }

LimitPolicy Unlimited() { return {0, 0, seconds(0), 0, seconds(0)}; }

LimitPolicy OnlyConcurrency(int max) {
  LimitPolicy p = Unlimited();
  p.max_concurrent = max;
  return p;
}

LimitPolicy OnlyRequests(int64_t limit, seconds window) {
  LimitPolicy p = Unlimited();
  p.window_requests = limit;
  p.request_window = window;
  return p;
}

LimitPolicy OnlyUploads(int64_t limit, seconds window) {
  LimitPolicy p = Unlimited();
  p.window_upload_bytes = limit;
  p.upload_window = window;
  return p;
}

Cost Requests(int64_t n) { return {0, n, 0}; }
Cost Upload(int64_t bytes) { return {0, 0, bytes}; }

// Takes the permit out of a granted TryAcquire; fails the test otherwise.
Permit Grant(Limiter& limiter, const std::string& bucket, const Cost& cost) {
  Acquired a = limiter.TryAcquire(bucket, cost);
  EXPECT_TRUE(std::holds_alternative<Permit>(a)) << bucket;
  if (auto* p = std::get_if<Permit>(&a)) return std::move(*p);
  return Permit();
}

std::optional<Refusal> Refused(Limiter& limiter, const std::string& bucket, const Cost& cost) {
  Acquired a = limiter.TryAcquire(bucket, cost);
  if (auto* r = std::get_if<Refusal>(&a)) return *r;
  return std::nullopt;
}

TEST(Limiter, ConcurrencyIsCappedPerBucketAndBucketsAreIndependent) {
  FakeClock clock;
  auto limiter = NewLocalLimiter(clock, OnlyConcurrency(4));
  std::vector<Permit> a;
  for (int i = 0; i < 4; ++i) a.push_back(Grant(*limiter, "a", {}));

  std::optional<Refusal> r = Refused(*limiter, "a", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kConcurrency);
  EXPECT_TRUE(r->waits_for_release);
  EXPECT_EQ(r->not_before, clock.Now());  // no time frees a slot

  Permit b = Grant(*limiter, "b", {});
  EXPECT_TRUE(b.held());

  a.pop_back();  // destroying a permit releases its slot
  Permit again = Grant(*limiter, "a", {});
  EXPECT_TRUE(again.held());
  EXPECT_TRUE(Refused(*limiter, "a", {}));
}

// A batch holds several slots at once; a cost wider than the cap runs alone.
TEST(Limiter, InFlightCostsAgainstTheCap) {
  struct Case {
    const char* name;
    std::vector<int> held;  // in_flight of permits already granted, in order
    int in_flight;
    bool granted;
  };
  const Case cases[] = {
      {"batch of 4 on an idle mailbox", {}, 4, true},
      {"batch of 4 beside one request", {1}, 4, false},
      {"two batches of 2", {2}, 2, true},
      {"a third batch of 2", {2, 2}, 2, false},
      {"wider than the cap, alone", {}, 6, true},
      {"wider than the cap, not alone", {1}, 6, false},
      {"anything after a wide one", {6}, 1, false},
      {"no slot wanted while full", {4}, 0, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeClock clock;
    auto limiter = NewLocalLimiter(clock, OnlyConcurrency(4));
    std::vector<Permit> held;
    for (int n : c.held) held.push_back(Grant(*limiter, "m", {n, 1, 0}));
    std::optional<Refusal> r = Refused(*limiter, "m", {c.in_flight, 1, 0});
    EXPECT_EQ(!r, c.granted);
    if (r) {
      EXPECT_TRUE(r->waits_for_release);
    }
  }
}

// Limit 10 per 60 s, filled by 3 at 0 s, 3 at 20 s and 4 at 30 s; asked at
// 40 s, a cost fits once enough of the oldest grants have left the window.
TEST(Limiter, RequestWindowFreesExactlyWhenEnoughOfTheOldestGrantsLeave) {
  struct Case {
    int64_t cost;
    seconds frees_at;
  };
  const Case cases[] = {{1, seconds(60)}, {3, seconds(60)}, {4, seconds(80)},
                        {6, seconds(80)}, {7, seconds(90)}, {10, seconds(90)}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.cost);
    FakeClock clock;
    auto limiter = NewLocalLimiter(clock, OnlyRequests(10, seconds(60)));
    Grant(*limiter, "m", Requests(3));
    clock.Set(seconds(20));
    Grant(*limiter, "m", Requests(3));
    clock.Set(seconds(30));
    Grant(*limiter, "m", Requests(4));
    clock.Set(seconds(40));

    std::optional<Refusal> r = Refused(*limiter, "m", Requests(c.cost));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->cause, LimitCause::kRequestWindow);
    EXPECT_FALSE(r->waits_for_release);
    EXPECT_EQ(r->not_before, At(c.frees_at));

    clock.Set(c.frees_at - std::chrono::nanoseconds(1));
    EXPECT_TRUE(Refused(*limiter, "m", Requests(c.cost)));
    clock.Set(c.frees_at);
    EXPECT_FALSE(Refused(*limiter, "m", Requests(c.cost)));
  }
}

TEST(Limiter, RequestWindowRefusesOnlyPastTheLimit) {
  FakeClock clock;
  auto limiter = NewLocalLimiter(clock, OnlyRequests(10, seconds(60)));
  for (int i = 0; i < 10; ++i) {
    Grant(*limiter, "m", Requests(1));
    clock.Advance(seconds(1));
  }
  std::optional<Refusal> r = Refused(*limiter, "m", Requests(1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->not_before, At(seconds(60)));
  EXPECT_FALSE(Refused(*limiter, "other", Requests(10)));
}

TEST(Limiter, UploadBudgetFreesExactlyWhenEnoughOfTheOldestUploadsLeave) {
  FakeClock clock;
  auto limiter = NewLocalLimiter(clock, OnlyUploads(1000, seconds(300)));
  Grant(*limiter, "m", Upload(600));
  clock.Set(seconds(100));
  Grant(*limiter, "m", Upload(400));
  clock.Set(seconds(200));

  EXPECT_FALSE(Refused(*limiter, "m", Upload(0)));  // a cost without bytes is not held up
  std::optional<Refusal> r = Refused(*limiter, "m", Upload(1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kUploadWindow);
  EXPECT_EQ(r->not_before, At(seconds(300)));
  r = Refused(*limiter, "m", Upload(700));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->not_before, At(seconds(400)));

  clock.Set(seconds(300));
  EXPECT_FALSE(Refused(*limiter, "m", Upload(600)));
}

// Grants in one slot (1/60 of the window) leave together with the last of them.
TEST(Limiter, GrantsInOneSlotLeaveWithTheLastOfThem) {
  FakeClock clock;
  auto limiter = NewLocalLimiter(clock, OnlyRequests(2, seconds(60)));
  Grant(*limiter, "m", Requests(1));
  clock.Set(milliseconds(500));
  Grant(*limiter, "m", Requests(1));
  std::optional<Refusal> r = Refused(*limiter, "m", Requests(1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->not_before, At(milliseconds(60500)));  // never early: the count is not under
}

TEST(Limiter, CostLargerThanTheWholeBudgetIsGrantedOnAnEmptyWindow) {
  FakeClock clock;
  LimitPolicy policy = Unlimited();
  policy.window_requests = 10;
  policy.request_window = seconds(60);
  policy.window_upload_bytes = 100;
  policy.upload_window = seconds(30);
  auto limiter = NewLocalLimiter(clock, policy);

  Grant(*limiter, "m", {0, 50, 0});
  std::optional<Refusal> r = Refused(*limiter, "m", {0, 1, 0});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->not_before, At(seconds(60)));

  Grant(*limiter, "n", {0, 1, 0});
  r = Refused(*limiter, "n", {0, 50, 0});  // waits for the window to empty, not forever
  ASSERT_TRUE(r);
  EXPECT_EQ(r->not_before, At(seconds(60)));

  Grant(*limiter, "u", {0, 0, 500});
  r = Refused(*limiter, "u", {0, 0, 1});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kUploadWindow);
  EXPECT_EQ(r->not_before, At(seconds(30)));

  clock.Set(seconds(60));
  EXPECT_FALSE(Refused(*limiter, "n", {0, 50, 0}));
}

TEST(Limiter, PenaltyHoldsOnlyItsBucketUntilItsTime) {
  FakeClock clock;
  auto limiter = NewLocalLimiter(clock, LimitPolicy{});
  Permit held = Grant(*limiter, "m", {});
  limiter->Penalize("m", At(seconds(30)));
  limiter->Penalize("m", At(seconds(10)));  // an earlier time does not shorten it

  std::optional<Refusal> r = Refused(*limiter, "m", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kPenalty);
  EXPECT_EQ(r->not_before, At(seconds(30)));
  EXPECT_FALSE(r->waits_for_release);
  EXPECT_TRUE(held.held());
  EXPECT_FALSE(Refused(*limiter, "other", {}));

  clock.Set(seconds(30) - std::chrono::nanoseconds(1));
  EXPECT_TRUE(Refused(*limiter, "m", {}));
  clock.Set(seconds(30));
  EXPECT_FALSE(Refused(*limiter, "m", {}));

  limiter->Penalize("m", At(seconds(90)));  // a later one extends it
  r = Refused(*limiter, "m", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->not_before, At(seconds(90)));
}

TEST(Limiter, SeveralLimitsAtOnceNameTheOneThatFreesLast) {
  FakeClock clock;
  LimitPolicy policy;
  policy.max_concurrent = 1;
  policy.window_requests = 1;
  policy.request_window = seconds(60);
  auto limiter = NewLocalLimiter(clock, policy);
  Permit held = Grant(*limiter, "m", {});

  std::optional<Refusal> r = Refused(*limiter, "m", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kRequestWindow);
  EXPECT_EQ(r->not_before, At(seconds(60)));
  EXPECT_TRUE(r->waits_for_release);

  limiter->Penalize("m", At(seconds(30)));
  r = Refused(*limiter, "m", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kRequestWindow);
  limiter->Penalize("m", At(seconds(60)));  // a tie names the server's penalty
  r = Refused(*limiter, "m", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kPenalty);
  limiter->Penalize("m", At(seconds(70)));
  r = Refused(*limiter, "m", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cause, LimitCause::kPenalty);
  EXPECT_EQ(r->not_before, At(seconds(70)));
}

TEST(Limiter, CountsGrantsRefusalsAndSuggestedWaits) {
  FakeClock clock;
  LimitPolicy policy;
  policy.max_concurrent = 1;
  policy.window_requests = 2;
  policy.request_window = seconds(60);
  policy.window_upload_bytes = 10;
  policy.upload_window = seconds(30);
  auto limiter = NewLocalLimiter(clock, policy);

  Permit p = Grant(*limiter, "a", {1, 1, 10});
  EXPECT_TRUE(Refused(*limiter, "a", {1, 0, 0}));  // concurrency, wait 0
  EXPECT_TRUE(Refused(*limiter, "a", {0, 0, 1}));  // upload window, wait 30 s
  Grant(*limiter, "b", {0, 2, 0});
  EXPECT_TRUE(Refused(*limiter, "b", {0, 1, 0}));  // request window, wait 60 s
  limiter->Penalize("c", At(seconds(5)));
  EXPECT_TRUE(Refused(*limiter, "c", {0, 0, 0}));  // penalty, wait 5 s

  LimiterCounters c = limiter->Counters();
  EXPECT_EQ(c.acquired, 2);
  EXPECT_EQ(c.refused_concurrency, 1);
  EXPECT_EQ(c.refused_upload_window, 1);
  EXPECT_EQ(c.refused_request_window, 1);
  EXPECT_EQ(c.refused_penalty, 1);
  EXPECT_EQ(c.penalties, 1);
  EXPECT_EQ(c.suggested_wait, seconds(95));
  EXPECT_EQ(c.in_flight, 1);
  EXPECT_EQ(c.buckets, 3);

  p.Release();
  EXPECT_EQ(limiter->Counters().in_flight, 0);
}

TEST(Limiter, IdleBucketsAreForgotten) {
  FakeClock clock;
  auto limiter = NewLocalLimiter(clock, OnlyRequests(100, seconds(60)));
  for (int i = 0; i < 100; ++i) Grant(*limiter, "m" + std::to_string(i), Requests(1));
  EXPECT_EQ(limiter->Counters().buckets, 100);
  clock.Set(seconds(60));
  for (int i = 0; i < 100; ++i) Grant(*limiter, "again", Requests(1));
  EXPECT_EQ(limiter->Counters().buckets, 1);
}

TEST(Limiter, PermitsReleaseOnceWhateverTheirPath) {
  FakeClock clock;
  std::vector<std::string> released;
  auto limiter = NewLocalLimiter(clock, OnlyConcurrency(2),
                                 [&](const std::string& b) { released.push_back(b); });
  Permit a = Grant(*limiter, "m", {});
  Permit moved = std::move(a);
  EXPECT_FALSE(a.held());  // NOLINT(bugprone-use-after-move): a moved-from permit is empty
  EXPECT_TRUE(released.empty());

  Permit b = Grant(*limiter, "m", {});
  b = std::move(moved);  // b's own slot goes back; moved's slot is now b's
  EXPECT_EQ(released, std::vector<std::string>{"m"});
  EXPECT_EQ(limiter->Counters().in_flight, 1);

  b.Release();
  b.Release();
  EXPECT_EQ(released.size(), 2u);
  EXPECT_EQ(limiter->Counters().in_flight, 0);
}

TEST(Limiter, UnlimitedPolicyNeverRefuses) {
  FakeClock clock;
  auto limiter = NewLocalLimiter(clock, Unlimited());
  std::vector<Permit> held;
  for (int i = 0; i < 1000; ++i) held.push_back(Grant(*limiter, "m", {4, 1000, 1 << 20}));
  EXPECT_EQ(limiter->Counters().acquired, 1000);
}

// 8 threads on 3 buckets: no bucket ever has more than max_concurrent calls
// running, and with time standing still each bucket grants exactly its window.
TEST(Limiter, ThreadsNeverExceedTheLimits) {
  constexpr int kThreads = 8;
  constexpr int kBuckets = 3;
  constexpr int kAttempts = 20000;
  constexpr int64_t kWindow = 5000;
  FakeClock clock;
  LimitPolicy policy = OnlyRequests(kWindow, seconds(600));
  policy.max_concurrent = 4;
  auto limiter = NewLocalLimiter(clock, policy);

  std::atomic<int> running[kBuckets] = {};
  std::atomic<int> most[kBuckets] = {};
  std::atomic<int64_t> granted[kBuckets] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAttempts; ++i) {
        const int b = (t + i) % kBuckets;
        Acquired a = limiter->TryAcquire("m" + std::to_string(b), {1 + i % 2, 1, 0});
        Permit* p = std::get_if<Permit>(&a);
        if (p == nullptr) continue;
        granted[b]++;
        const int now = running[b].fetch_add(1 + i % 2) + 1 + i % 2;
        int seen = most[b].load();
        while (now > seen && !most[b].compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
        running[b].fetch_sub(1 + i % 2);
        p->Release();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int b = 0; b < kBuckets; ++b) {
    SCOPED_TRACE(b);
    EXPECT_LE(most[b].load(), 4);
    EXPECT_GE(most[b].load(), 1);
    EXPECT_EQ(granted[b].load(), kWindow);
  }
  LimiterCounters c = limiter->Counters();
  EXPECT_EQ(c.acquired, kBuckets * kWindow);
  EXPECT_EQ(c.acquired + c.refused_concurrency + c.refused_request_window, kThreads * kAttempts);
  EXPECT_EQ(c.in_flight, 0);
}

}  // namespace
}  // namespace roster
