// The executor's batches, waits and outcomes, on a collection that batches:
// a test double in front of the in-memory target that takes up to 20 writes
// per request, can pretend the server picks ids, and answers per op.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "connectors/memory/memory.h"
#include "core/fake_clock.h"
#include "kinds/kind.h"
#include "sync/sync.h"

namespace roster {
namespace {

// What the double answers for one op instead of carrying it out.
enum class Answer { kDo, kThrottle, kLoseAnswer, kHalfDone };

class BatchingCollection final : public Collection {
 public:
  BatchingCollection(std::unique_ptr<Collection> inner, CreateMode mode)
      : inner_(std::move(inner)), mode_(mode) {}
  std::string id() const override { return inner_->id(); }
  Result<Listing> List(const std::string& token) override { return inner_->List(token); }
  Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>& hrefs) override {
    return inner_->Fetch(hrefs);
  }
  std::string HrefOf(const std::string& name) const override { return inner_->HrefOf(name); }
  Result<WriteResult> Create(const std::string& name, const ManagedTag& tag,
                             const ItemBody& body) override {
    // A server that picks ids: the name roster chose is not the one used.
    return inner_->Create(mode_ == CreateMode::kServerId ? "srv-" + std::to_string(++ids_) : name,
                          tag, body);
  }
  Result<WriteResult> Update(const std::string& href, const std::string& if_match,
                             const ManagedTag& tag, const ItemBody& body) override {
    return inner_->Update(href, if_match, tag, body);
  }
  Status Delete(const std::string& href, const std::string& if_match) override {
    return inner_->Delete(href, if_match);
  }
  CreateMode create_mode() const override { return mode_; }
  size_t max_batch() const override { return 20; }
  int parallel_per_batch() const override { return 4; }
  std::string limit_bucket() const override { return bucket.empty() ? "mailbox/" + id() : bucket; }
  // Like Graph: each photo is a PUT and a read after the batch.
  WriteVolume DependentVolume(const std::vector<WriteOp>& ops) const override {
    WriteVolume v;
    for (const WriteOp& op : ops) {
      const Contact* c = op.body ? std::get_if<Contact>(op.body) : nullptr;
      if (c && c->photo) {
        v.requests += 2;
        v.upload_bytes += static_cast<int64_t>(c->photo->data.size());
      }
    }
    return v;
  }

  std::vector<WriteOutcome> WriteBatch(const std::vector<WriteOp>& ops) override {
    int now = ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_.load(), now);
    batch_sizes.push_back(ops.size());
    std::vector<WriteOutcome> out = Collection::WriteBatch(ops);
    for (size_t i = 0; i < ops.size(); ++i) {
      Answer a = answer ? answer(ops[i]) : Answer::kDo;
      if (a == Answer::kThrottle) {
        // Not carried out: undo is not needed since we answer before doing.
        out[i] = WriteOutcome{Error{ErrorKind::kThrottled, "HTTP 429", std::chrono::seconds(3)}};
        UndoLast(ops[i]);
      } else if (a == Answer::kLoseAnswer) {
        out[i].status = MakeError(ErrorKind::kTransient, "connection reset");
        out[i].ambiguous = true;  // done, but the answer never came
      } else if (a == Answer::kHalfDone) {
        Contact without = std::get<Contact>(*ops[i].body);
        without.photo.reset();
        out[i].status = MakeError(ErrorKind::kTransient, "the photo step failed (HTTP 503)");
        out[i].landed = ItemBody(without);
      }
    }
    --in_flight_;
    return out;
  }

  std::function<Answer(const WriteOp&)> answer;
  std::string bucket;  // the limiter bucket, when not the collection's own
  std::vector<size_t> batch_sizes;
  std::atomic<int> max_in_flight_{0};

 private:
  // A throttled op did not happen: the test double carried it out first, so
  // remove what it created (only creates are throttled in these tests).
  void UndoLast(const WriteOp& op) {
    if (op.kind != WriteOp::Kind::kCreate) return;
    auto listing = inner_->List("");
    if (!listing.ok()) return;
    auto items = inner_->Fetch([&] {
      std::vector<std::string> hrefs;
      for (const ItemRef& r : listing->changed) hrefs.push_back(r.href);
      return hrefs;
    }());
    for (const RemoteItem& item : *items) {
      if (item.tag && item.tag->key == op.tag.key) (void)inner_->Delete(item.href, item.etag);
    }
  }

  std::unique_ptr<Collection> inner_;
  CreateMode mode_;
  std::atomic<int> in_flight_{0};
  int ids_ = 0;
};

struct Fixture {
  explicit Fixture(CreateMode mode = CreateMode::kServerId) {
    auto inner = std::move(target->Open({"alice", "Book", "r", ""}, true)).value();
    collection = std::make_unique<BatchingCollection>(std::move(inner), mode);
    id = store->OpenCollection({"r", "t", "alice"})->id;
  }
  void Want(int n, bool photo = false) {
    for (int i = 0; i < n; ++i) {
      Contact c;
      c.formatted_name = "Person " + std::to_string(i);
      if (photo) c.photo = Photo{"image/jpeg", "jpeg-bytes", ""};
      std::string key = "k" + std::to_string(1000 + i);
      desired[key] = DesiredItem{key, ContentHash(c), std::make_shared<const ItemBody>(c)};
    }
  }
  Plan CreateAll() {
    Plan plan;
    for (const auto& [key, d] : desired) plan.actions.push_back(CreateAction{key});
    return plan;
  }
  ExecuteResult Execute(const Plan& plan) {
    ExecuteContext ctx;
    ctx.collection = collection.get();
    ctx.store = store.get();
    ctx.collection_id = id;
    ctx.rule = "r";
    ctx.desired = [&](const std::string& k) -> const DesiredItem* {
      auto it = desired.find(k);
      return it == desired.end() ? nullptr : &it->second;
    };
    ctx.resource_name = [](const std::string& k) { return "roster-" + k; };
    ctx.clock = &clock;
    ctx.limiter = limiter.get();
    return ExecutePlan(plan, ctx);
  }
  size_t Stored() { return store->LoadItems(id)->size(); }

  std::shared_ptr<MemoryServer> server = std::make_shared<MemoryServer>();
  std::unique_ptr<Target> target = NewMemoryTarget(server);
  std::unique_ptr<StateStore> store = std::move(OpenSqliteStateStore(":memory:")).value();
  std::unique_ptr<BatchingCollection> collection;
  int64_t id = 0;
  FakeClock clock;
  std::unique_ptr<Limiter> limiter = NewLocalLimiter(clock);
  std::map<std::string, DesiredItem> desired;
};

TEST(BatchExecutor, WritesGoInBatchesOfTheCollectionsSize) {
  Fixture f;
  f.Want(45);
  ExecuteResult r = f.Execute(f.CreateAll());
  EXPECT_EQ(r.counts.created, 45);
  EXPECT_EQ(f.collection->batch_sizes, (std::vector<size_t>{20, 20, 5}));
  EXPECT_EQ(r.stats.requests, 3);
  EXPECT_EQ(r.stats.sub_requests, 45);
  EXPECT_EQ(f.Stored(), 45u);
  EXPECT_EQ(f.server->Items("alice").size(), 45u);
}

// Dependent steps (a photo's upload and the read after it) count against
// the limits with their batch: 30 creates with photos are 90 requests, so a
// window of 50 holds the second batch back until the window has passed.
TEST(BatchExecutor, DependentStepsCountAgainstTheRequestWindow) {
  Fixture f;
  LimitPolicy policy;
  policy.window_requests = 50;
  policy.request_window = std::chrono::seconds(600);
  f.limiter = NewLocalLimiter(f.clock, policy);
  f.Want(30, /*photo=*/true);
  const auto start = f.clock.Now();
  ExecuteResult r = f.Execute(f.CreateAll());
  EXPECT_EQ(r.counts.created, 30);
  EXPECT_EQ(r.stats.requests, 2 + 60);  // two $batch calls, a PUT and a read per photo
  EXPECT_EQ(r.stats.sub_requests, 30);
  EXPECT_GE(f.limiter->Counters().refused_request_window, 1);
  EXPECT_GE(f.clock.Now() - start, std::chrono::seconds(600));

  // Without photos the same 30 fit in the window: nothing waits.
  Fixture g;
  g.limiter = NewLocalLimiter(g.clock, policy);
  g.Want(30);
  EXPECT_EQ(g.Execute(g.CreateAll()).counts.created, 30);
  EXPECT_EQ(g.limiter->Counters().refused_request_window, 0);
}

TEST(BatchExecutor, AThrottledWriteWaitsInTheQueueAndTheRestAreRecorded) {
  Fixture f;
  f.Want(20);
  int throttled = 0;
  f.collection->answer = [&](const WriteOp& op) {
    return op.tag.key == "k1007" && throttled++ == 0 ? Answer::kThrottle : Answer::kDo;
  };
  ExecuteResult r = f.Execute(f.CreateAll());
  EXPECT_EQ(r.counts.created, 20);
  EXPECT_EQ(r.counts.errors, 0);
  EXPECT_EQ(f.collection->batch_sizes, (std::vector<size_t>{20, 1}));  // only it, again
  EXPECT_EQ(r.stats.throttled, 1);
  ASSERT_EQ(f.clock.sleeps.size(), 1u);
  EXPECT_EQ(f.clock.sleeps[0], std::chrono::seconds(3));  // the server's Retry-After, once
  EXPECT_EQ(f.server->Items("alice").size(), 20u);
}

TEST(BatchExecutor, ACreateWhoseAnswerWasLostIsNotSentAgainWhereTheServerPicksIds) {
  Fixture f(CreateMode::kServerId);
  f.Want(3);
  f.collection->answer = [](const WriteOp& op) {
    return op.tag.key == "k1001" ? Answer::kLoseAnswer : Answer::kDo;
  };
  ExecuteResult r = f.Execute(f.CreateAll());
  EXPECT_EQ(r.counts.created, 2);
  EXPECT_EQ(r.counts.errors, 1);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("not sent again"), std::string::npos) << r.errors[0];
  EXPECT_EQ(f.collection->batch_sizes, (std::vector<size_t>{3}));  // no second attempt
  EXPECT_EQ(f.server->Items("alice").size(), 3u);                  // it did land: one copy, not two
  EXPECT_EQ(f.Stored(), 2u);                                       // and is not recorded as done
}

TEST(BatchExecutor, ALostAnswerAtAClientChosenNameIsRetriedAndAdopted) {
  Fixture f(CreateMode::kClientName);
  f.Want(1);
  int lost = 0;
  f.collection->answer = [&](const WriteOp&) {
    return lost++ == 0 ? Answer::kLoseAnswer : Answer::kDo;
  };
  ExecuteResult r = f.Execute(f.CreateAll());
  // The retry meets its own first copy (412), reads it and records it.
  EXPECT_EQ(r.counts.errors, 0) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_EQ(f.server->Items("alice").size(), 1u);
  EXPECT_EQ(f.Stored(), 1u);
}

TEST(BatchExecutor, AHalfDoneDependentWriteIsRecordedAsWhatLanded) {
  Fixture f;
  f.Want(2, /*photo=*/true);
  f.collection->answer = [](const WriteOp& op) {
    return op.tag.key == "k1000" ? Answer::kHalfDone : Answer::kDo;
  };
  ExecuteResult r = f.Execute(f.CreateAll());
  EXPECT_EQ(r.counts.created, 2);
  EXPECT_EQ(r.counts.errors, 1);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("next run writes what is missing"), std::string::npos);
  auto items = f.store->LoadItems(f.id);
  ASSERT_EQ(items->size(), 2u);
  // The half-done one is recorded with the hash of what landed, so the next
  // plan sees it differs from the source and writes the rest.
  for (const ItemState& s : *items) {
    const DesiredItem& want = f.desired.at(s.key);
    if (s.key == "k1000") {
      EXPECT_NE(s.hash, want.hash);
    } else {
      EXPECT_EQ(s.hash, want.hash);
    }
  }
}

TEST(BatchExecutor, TheDeadlineLeavesQueuedWritesForTheNextRun) {
  Fixture f;
  f.Want(20);
  f.collection->answer = [](const WriteOp& op) {
    return op.tag.key == "k1003" ? Answer::kThrottle : Answer::kDo;
  };
  ExecuteContext ctx;
  ctx.collection = f.collection.get();
  ctx.store = f.store.get();
  ctx.collection_id = f.id;
  ctx.rule = "r";
  ctx.desired = [&](const std::string& k) { return &f.desired.at(k); };
  ctx.resource_name = [](const std::string& k) { return "roster-" + k; };
  ctx.clock = &f.clock;
  ctx.retry.deadline = f.clock.Now() + std::chrono::seconds(1);  // before the 3 s wait
  ExecuteResult r = ExecutePlan(f.CreateAll(), ctx);
  EXPECT_EQ(r.counts.created, 19);
  EXPECT_EQ(r.counts.errors, 1);
  EXPECT_NE(r.errors[0].find("deadline"), std::string::npos) << r.errors[0];
  EXPECT_TRUE(f.clock.sleeps.empty());  // no wait past the deadline
}

// Collections of one mailbox (two rules, say) share the limiter: their
// batches never hold more than the mailbox's 4 slots at once. (The in-memory
// target keeps one book per user, so the three books stand for one mailbox
// through their shared limiter bucket.)
TEST(BatchExecutor, CollectionsOfOneMailboxShareItsConcurrency) {
  auto server = std::make_shared<MemoryServer>();
  auto target = NewMemoryTarget(server);
  auto store = std::move(OpenSqliteStateStore(":memory:")).value();
  std::unique_ptr<Limiter> limiter = NewLocalLimiter(RealClock());
  std::atomic<int> slots{0}, max_slots{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      auto inner =
          std::move(target->Open({"alice" + std::to_string(t), "Book", "r", ""}, true)).value();
      BatchingCollection collection(std::move(inner), CreateMode::kServerId);
      collection.bucket = "mailbox/alice";
      collection.answer = [&](const WriteOp&) {
        int now = slots.fetch_add(1) + 1;
        int seen = max_slots.load();
        while (now > seen && !max_slots.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        slots.fetch_sub(1);
        return Answer::kDo;
      };
      std::map<std::string, DesiredItem> desired;
      Plan plan;
      for (int i = 0; i < 60; ++i) {
        Contact c;
        c.formatted_name = "P" + std::to_string(i);
        std::string key = "k" + std::to_string(i);
        desired[key] = DesiredItem{key, ContentHash(c), std::make_shared<const ItemBody>(c)};
        plan.actions.push_back(CreateAction{key});
      }
      int64_t id = store->OpenCollection({"r" + std::to_string(t), "t", "alice"})->id;
      ExecuteContext ctx;
      ctx.collection = &collection;
      ctx.store = store.get();
      ctx.collection_id = id;
      ctx.rule = "r" + std::to_string(t);
      ctx.desired = [&](const std::string& k) { return &desired.at(k); };
      ctx.resource_name = [](const std::string& k) { return k; };
      ctx.limiter = limiter.get();
      ExecuteResult r = ExecutePlan(plan, ctx);
      EXPECT_EQ(r.counts.created, 60) << (r.errors.empty() ? "" : r.errors[0]);
    });
  }
  for (std::thread& t : threads) t.join();
  // Each batch holds min(20, 4) = 4 slots, all the mailbox has: one batch at
  // a time, so never two writes at once (without the limiter: three).
  EXPECT_EQ(max_slots.load(), 1);
  EXPECT_EQ(limiter->Counters().in_flight, 0);
  EXPECT_GT(limiter->Counters().refused_concurrency, 0);
}

}  // namespace
}  // namespace roster
