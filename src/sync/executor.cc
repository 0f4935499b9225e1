// The executor: runs a plan's actions against one collection. Each write goes
// out with a precondition (If-None-Match: * for creates at deterministic
// names, If-Match for updates and deletes) or, where the server chooses ids,
// is never repeated after a lost answer, so that a retry, a crash or a
// concurrent edit can never produce a second copy or clobber an unseen change.
//
// Writes go in batches of the collection's max_batch(). Each is prepared
// first (field rules, take-over checks), then queued; the queue sends the
// writes that are due as the shared limiter allows, and handles each outcome
// alone: recorded right after it succeeds, queued again with its wait when
// the server asks to wait, read and decided again on a precondition failure.
// One thread serves the whole queue; a waiting write holds no thread.
#include <algorithm>
#include <deque>
#include <optional>
#include <unordered_map>

#include "core/failpoint.h"
#include "kinds/kind.h"
#include "sync/sync.h"

namespace roster {

ExecuteStats& ExecuteStats::operator+=(const ExecuteStats& o) {
  requests += o.requests;
  sub_requests += o.sub_requests;
  throttled += o.throttled;
  waits += o.waits;
  waited += o.waited;
  return *this;
}

namespace {

using TimePoint = std::chrono::steady_clock::time_point;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A write waiting in the queue, with everything its outcome needs.
struct Pending {
  Action origin;  // the plan's action this write serves (reported against it)
  WriteOp op;
  ItemBody body;                    // what op.body points to when sent
  std::optional<ItemBody> current;  // what op.current points to
  UpdateAction update;              // for updates: the decision being carried out
  DeleteAction del;                 // for deletes
  std::string key;
  std::string hash;    // recorded with the item once written
  std::string fields;  // field memory recorded with it
  int attempts = 0;
  milliseconds backoff{0};
  TimePoint not_before{};
  int replan_left = 1;
};

class Runner {
 public:
  explicit Runner(ExecuteContext& ctx) : ctx_(ctx), clock_(*ctx.clock) {}

  void Run(const Plan& plan) {
    Prefetch(plan);
    for (const Action& action : plan.actions) {
      if (PastDeadline() || result_.credential_refused) {
        ++not_tried_;
        continue;
      }
      size_t queued = queue_.size();
      Status st = StartFrom(action, action, 1);
      if (queue_.size() == queued) Finish(action, st);  // done without a write
      // A full batch goes out before more is prepared.
      if (queue_.size() >= ctx_.collection->max_batch()) Drain(/*all=*/false);
    }
    Drain(/*all=*/true);
    if (not_tried_ == 0) return;
    ++result_.counts.errors;
    result_.errors.push_back(result_.credential_refused
                                 ? "the server refused the credential; " +
                                       std::to_string(not_tried_) + " actions were not tried"
                                 : "the run's deadline (run_timeout_seconds) passed; " +
                                       std::to_string(not_tried_) +
                                       " actions are left for the next run");
  }

  ExecuteResult Take() { return std::move(result_); }

 private:
  template <typename T>
  Result<T> Retry(const std::function<Result<T>()>& op) {
    return WithRetries<T>(ctx_.retry, clock_, op);
  }
  bool PastDeadline() { return ctx_.retry.deadline && clock_.Now() >= *ctx_.retry.deadline; }
  const DesiredItem* Want(const std::string& key) {
    return ctx_.desired ? ctx_.desired(key) : nullptr;
  }
  bool ReadsBeforeUpdate(const UpdateAction& a) const {
    return ctx_.prepare || a.take_over || ctx_.collection->update_reads_current();
  }
  bool ServerIds() const { return ctx_.collection->create_mode() == CreateMode::kServerId; }

  void Finish(const Action& action, const Status& st) {
    if (!st.ok()) {
      ++result_.counts.errors;
      result_.errors.push_back(DescribeAction(action) + ": " + st.error().message);
      result_.credential_refused = result_.credential_refused || st.error().credential_refused;
    }
    if (ctx_.on_done) ctx_.on_done(action, st);
  }

  // --- Phase 1: an action becomes a queued write, or is done at once. ---

  Status StartFrom(const Action& origin, const Action& action, int replan_left) {
    return std::visit(
        [&](const auto& a) -> Status {
          using T = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<T, CreateAction>) {
            return StartCreate(origin, a.key, replan_left);
          } else if constexpr (std::is_same_v<T, UpdateAction>) {
            return StartUpdate(origin, a, replan_left);
          } else if constexpr (std::is_same_v<T, DeleteAction>) {
            StartDelete(origin, a, replan_left);
            return {};
          } else if constexpr (std::is_same_v<T, AdoptAction>) {
            ++result_.counts.unchanged;
            ++result_.counts.adopted;
            return ctx_.store->PutItem(ctx_.collection_id,
                                       ItemState{a.href, a.etag, a.etag, a.key, a.hash});
          } else if constexpr (std::is_same_v<T, ConflictAction>) {
            ++result_.counts.conflicts;
            return {};
          } else {
            ++result_.counts.skipped;
            return {};
          }
        },
        action);
  }

  Status StartCreate(const Action& origin, const std::string& key, int replan_left) {
    const DesiredItem* want = Want(key);
    if (!want) return MakeError(ErrorKind::kInternal, "no source item for key " + key);
    Pending p{origin};
    p.op.kind = WriteOp::Kind::kCreate;
    p.op.name = ctx_.resource_name(key);
    p.op.tag = ManagedTag{ctx_.rule, key};
    PreparedWrite prepared{*want->body, ""};
    if (ctx_.prepare) prepared = ctx_.prepare(*want, nullptr, "");
    p.body = std::move(prepared.body);
    p.fields = std::move(prepared.fields);
    p.key = key;
    p.hash = want->hash;
    p.replan_left = replan_left;
    Failpoint("before-create");
    Enqueue(std::move(p));
    return {};
  }

  Status StartUpdate(const Action& origin, const UpdateAction& a, int replan_left) {
    const DesiredItem* want = Want(a.key);
    if (!want) return MakeError(ErrorKind::kInternal, "no source item for key " + a.key);
    Pending p{origin};
    p.op.kind = WriteOp::Kind::kUpdate;
    p.op.href = a.href;
    p.op.if_match = a.etag;
    p.op.tag = ManagedTag{ctx_.rule, a.key};
    p.update = a;
    p.key = a.key;
    p.hash = want->hash;
    p.replan_left = replan_left;
    p.body = *want->body;
    if (ReadsBeforeUpdate(a)) {
      // Field rules, take-overs and merging targets work from what is there now.
      ROSTER_ASSIGN_OR_RETURN(std::optional<RemoteItem> remote, ReadBeforeUpdate(a.href));
      if (!remote) return Gone(origin, a, replan_left);
      Failpoint("after-update-read");
      bool proceed = true;
      ROSTER_RETURN_IF_ERROR(CheckBeforeUpdate(origin, a, *remote, *want, replan_left, &proceed));
      if (!proceed) return {};
      std::string stored = a.take_over || !ctx_.stored_fields ? "" : ctx_.stored_fields(a.href);
      PreparedWrite prepared =
          ctx_.prepare ? ctx_.prepare(*want, &*remote, stored) : PreparedWrite{*want->body, ""};
      if (!a.take_over &&
          KindOf(prepared.body).ContentHash(prepared.body) == remote->content_hash) {
        // The write changes nothing on the server (the user's edits are all
        // kept, or the source's change is one the target does not hold): no
        // write, only the record that this content matches the source now.
        ++result_.counts.unchanged;
        ItemState row{
            remote->href, remote->etag, remote->etag, a.key, want->hash, prepared.fields, ""};
        return ctx_.store->PutItem(ctx_.collection_id, row);
      }
      p.body = std::move(prepared.body);
      p.fields = std::move(prepared.fields);
      p.op.if_match = remote->etag;
      p.current = std::move(remote->body);
    }
    Failpoint("before-update");
    Enqueue(std::move(p));
    return {};
  }

  // Before a take-over: is it still the user's own plain card for the
  // person? Before any other update: is it still ours for this key?
  // `proceed` false: the update is dropped (a conflict) or decided again.
  Status CheckBeforeUpdate(const Action& origin, const UpdateAction& a, const RemoteItem& remote,
                           const DesiredItem& want, int replan_left, bool* proceed) {
    if (a.take_over) {
      std::string why;
      if (remote.tag) {
        why = "now carries a marker (rule " + remote.tag->rule + ")";
      } else if (!remote.parse_error.empty()) {
        why = "could not be read";
      } else if (!SameSubject(*want.body, remote.body)) {
        why = "no longer has the person's e-mail address";
      }
      if (why.empty()) return {};
      *proceed = false;
      ++result_.counts.conflicts;
      result_.conflicts.push_back("the user's card " + remote.href + " " + why + "; " + a.key +
                                  " was not written");
      return {};
    }
    // Ours by the marker, even if the rest cannot be read: then it is
    // written whole again.
    if (remote.tag && remote.tag->rule == ctx_.rule && remote.tag->key == a.key) return {};
    *proceed = false;
    if (replan_left == 0) return MakeError(ErrorKind::kConflict, "item changed owner");
    return Replan(origin, a.key, a.href, replan_left - 1);
  }

  void StartDelete(const Action& origin, const DeleteAction& a, int replan_left) {
    Pending p{origin};
    p.op.kind = WriteOp::Kind::kDelete;
    p.op.href = a.href;
    p.op.if_match = a.etag;
    p.del = a;
    p.key = a.key;
    p.replan_left = replan_left;
    Failpoint("before-delete");
    Enqueue(std::move(p));
  }

  void Enqueue(Pending p) {
    p.backoff = ctx_.retry.initial_backoff;
    queue_.push_back(std::move(p));
  }

  // --- Phase 2: the queue. ---

  // Sends due writes until the queue is empty (`all`) or holds less than a
  // full batch of due writes.
  void Drain(bool all) {
    const size_t max_batch = std::max<size_t>(1, ctx_.collection->max_batch());
    while (!queue_.empty()) {
      if (result_.credential_refused || PastDeadline()) {
        not_tried_ += queue_.size();
        queue_.clear();
        return;
      }
      TimePoint now = clock_.Now();
      std::vector<Pending> batch;
      TimePoint earliest = TimePoint::max();
      for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch;) {
        if (it->not_before <= now) {
          batch.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          earliest = std::min(earliest, it->not_before);
          ++it;
        }
      }
      if (!all && batch.size() < max_batch) {
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
        return;
      }
      if (batch.empty()) {
        Wait(earliest);
        continue;
      }
      Send(batch);
    }
  }

  // Sends one batch when the limiter lets it, and handles every outcome.
  void Send(std::vector<Pending>& batch) {
    std::vector<WriteOp> ops;
    int64_t bytes = 0;
    for (Pending& p : batch) {
      p.op.body = p.op.kind == WriteOp::Kind::kDelete ? nullptr : &p.body;
      p.op.current = p.current ? &*p.current : nullptr;
      if (p.op.body) bytes += static_cast<int64_t>(KindOf(p.body).CanonicalForm(p.body).size());
      ops.push_back(p.op);
    }
    Permit permit;
    const std::string bucket = ctx_.limiter ? ctx_.collection->limit_bucket() : std::string();
    const WriteVolume dependent = ctx_.collection->DependentVolume(ops);
    if (!bucket.empty()) {
      int parallel = std::max(1, ctx_.collection->parallel_per_batch());
      Cost cost{std::min(parallel, static_cast<int>(ops.size())),
                static_cast<int64_t>(ops.size()) + std::max<int64_t>(0, dependent.requests),
                bytes + std::max<int64_t>(0, dependent.upload_bytes)};
      Acquired got = ctx_.limiter->TryAcquire(bucket, cost);
      if (auto* refused = std::get_if<Refusal>(&got)) {
        // Back to the front, in order; wait for the limiter, not the server.
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
        const TimePoint soon = clock_.Now() + milliseconds(refused->waits_for_release ? 50 : 1);
        Wait(std::max(soon, refused->not_before));
        return;
      }
      permit = std::move(std::get<Permit>(got));
    }
    std::vector<WriteOutcome> outcomes = ctx_.collection->WriteBatch(ops);
    permit.Release();
    result_.stats.requests += 1 + std::max<int64_t>(0, dependent.requests);
    result_.stats.sub_requests += static_cast<int64_t>(ops.size());
    outcomes.resize(batch.size());  // a short answer: the rest failed
    for (size_t i = 0; i < batch.size(); ++i) {
      if (outcomes[i].status.ok() && outcomes[i].result.href.empty() &&
          batch[i].op.kind != WriteOp::Kind::kDelete) {
        outcomes[i].status = MakeError(ErrorKind::kTransient, "the server gave no answer");
        outcomes[i].ambiguous = true;
      }
      Handle(batch[i], outcomes[i]);
    }
  }

  void Wait(TimePoint until) {
    TimePoint now = clock_.Now();
    if (ctx_.retry.deadline) until = std::min(until, *ctx_.retry.deadline);
    if (until <= now) return;
    auto wait = duration_cast<milliseconds>(until - now);
    if (wait.count() == 0) wait = milliseconds(1);
    ++result_.stats.waits;
    result_.stats.waited += wait;
    clock_.SleepFor(wait);
  }

  // --- Phase 3: one outcome. ---

  void Handle(Pending& p, WriteOutcome& outcome) {
    size_t queued = queue_.size();
    Status st = outcome.status.ok() ? Succeeded(p, outcome) : Failed(p, outcome);
    if (queue_.size() == queued) Finish(p.origin, st);  // else a follow-up carries it on
  }

  Status Succeeded(Pending& p, const WriteOutcome& outcome) {
    switch (p.op.kind) {
      case WriteOp::Kind::kCreate:
        Failpoint("after-create");
        ++result_.counts.created;
        return Record(p.key, outcome.result, p.hash, p.fields);
      case WriteOp::Kind::kUpdate:
        Failpoint("after-update");
        ++result_.counts.updated;
        if (p.update.adopt) ++result_.counts.adopted;
        return Record(p.key, outcome.result, p.hash, p.fields);
      case WriteOp::Kind::kDelete: {
        Failpoint("after-delete");
        ++result_.counts.deleted;
        result_.deleted.push_back(p.op.href);
        Status recorded = ctx_.store->DeleteItem(ctx_.collection_id, p.op.href);
        Failpoint("after-record");
        return recorded;
      }
    }
    return {};
  }

  Status Failed(Pending& p, WriteOutcome& outcome) {
    Error e = outcome.status.error();
    if (outcome.landed && !outcome.result.href.empty()) return HalfDone(p, outcome, e);
    if (p.op.kind == WriteOp::Kind::kCreate && outcome.ambiguous && ServerIds()) {
      // Sending it again could make a second copy. The book is left unclean,
      // so the next run lists it in full, finds the copy by roster's marker
      // if the create did land, and adopts it.
      e.message +=
          "; the answer was lost, so it is not sent again: the next run finds the item "
          "by roster's marker if it was created";
      return e;
    }
    if (e.retryable() && !e.credential_refused) {
      Status failure;
      if (Requeue(p, e, &failure)) return {};
      return failure;
    }
    const int left = p.replan_left;
    switch (p.op.kind) {
      case WriteOp::Kind::kCreate:
        if (e.kind != ErrorKind::kPreconditionFailed || left == 0 || ServerIds()) return e;
        // Something already lives at our deterministic name: a create of ours
        // that succeeded before a crash, or someone else's item.
        return Replan(p.origin, p.key, ctx_.collection->HrefOf(p.op.name), left - 1);
      case WriteOp::Kind::kUpdate:
        if (e.kind == ErrorKind::kNotFound) return Gone(p.origin, p.update, left);
        if (e.kind != ErrorKind::kPreconditionFailed || left == 0) return e;
        if (p.update.take_over) {
          // Changed again since we read it: read it once more and merge again.
          prefetched_.erase(p.op.href);
          UpdateAction again = p.update;
          again.etag.clear();
          return StartUpdate(p.origin, again, left - 1);
        }
        return Replan(p.origin, p.key, p.op.href, left - 1);
      case WriteOp::Kind::kDelete:
        if (e.kind != ErrorKind::kPreconditionFailed || left == 0) return e;
        return RetryDelete(p.origin, p.del, left - 1);
    }
    return e;
  }

  // A write of dependent steps that stopped half-way: what landed is
  // recorded as such, so that the next run writes exactly what is missing.
  Status HalfDone(Pending& p, const WriteOutcome& outcome, Error e) {
    if (p.op.kind == WriteOp::Kind::kCreate) {
      Failpoint("after-create");
      ++result_.counts.created;
    } else {
      Failpoint("after-update");
      ++result_.counts.updated;
    }
    ROSTER_RETURN_IF_ERROR(Record(p.key, outcome.result,
                                  KindOf(*outcome.landed).ContentHash(*outcome.landed), p.fields));
    e.message += "; the item was written without it, and the next run writes what is missing";
    return e;
  }

  // Queues a retryable failure again with its wait: the server's Retry-After
  // (shared through the limiter), else exponential backoff. False, with the
  // reason in `failure`, when attempts, the cap or the deadline forbid it.
  bool Requeue(Pending& p, const Error& e, Status* failure) {
    const milliseconds asked = e.retry_after;
    if (asked.count() > 0 || e.kind == ErrorKind::kThrottled) ++result_.stats.throttled;
    if (++p.attempts >= ctx_.retry.max_attempts) {
      *failure = e;
      return false;
    }
    if (asked > ctx_.retry.max_retry_after) {
      // Holding a run for longer than the target kind allows would starve
      // every other mailbox: leave this one for the next run.
      Error out = e;
      out.message += "; the server asked to wait " +
                     std::to_string(duration_cast<seconds>(asked).count()) +
                     " s, more than max_retry_after_seconds = " +
                     std::to_string(duration_cast<seconds>(ctx_.retry.max_retry_after).count()) +
                     ", so it is left for the next run";
      *failure = out;
      return false;
    }
    const TimePoint now = clock_.Now();
    const milliseconds wait = asked.count() > 0 ? asked : p.backoff;
    if (ctx_.retry.deadline && now + wait > *ctx_.retry.deadline) {
      Error out = e;
      out.message += "; the run's deadline (run_timeout_seconds) comes before a retry could";
      *failure = out;
      return false;
    }
    if (asked.count() > 0 && ctx_.limiter && !ctx_.collection->limit_bucket().empty()) {
      ctx_.limiter->Penalize(ctx_.collection->limit_bucket(), now + asked);
    }
    p.backoff = std::min(p.backoff * 2, ctx_.retry.max_backoff);
    p.not_before = now + wait;
    queue_.push_back(std::move(p));
    return true;
  }

  Status Record(const std::string& key, const WriteResult& w, const std::string& hash,
                const std::string& fields) {
    // etag_seen == etag marks the content as known; an empty etag (the server
    // did not say) stays unknown until a listing reports it.
    ItemState row{w.href, w.etag, w.etag, key, hash, fields, ""};
    result_.written.push_back(row);
    Status st = ctx_.store->PutItem(ctx_.collection_id, row);
    Failpoint("after-record");
    return st;
  }

  // The item was deleted on the server meanwhile: forget it and create it again.
  Status Gone(const Action& origin, const UpdateAction& a, int replan_left) {
    ROSTER_RETURN_IF_ERROR(ctx_.store->DeleteItem(ctx_.collection_id, a.href));
    if (replan_left == 0) {
      return MakeError(ErrorKind::kNotFound, a.href + " disappeared while it was being updated");
    }
    return StartCreate(origin, a.key, replan_left - 1);
  }

  // Changed on the server since we listed it: read it; delete it only if it
  // still carries our marker for the same key.
  Status RetryDelete(const Action& origin, const DeleteAction& a, int replan_left) {
    auto items = Retry<std::vector<RemoteItem>>([&] { return ctx_.collection->Fetch({a.href}); });
    if (!items.ok()) return items.take_error();
    if (items->empty()) {
      ++result_.counts.deleted;
      return ctx_.store->DeleteItem(ctx_.collection_id, a.href);
    }
    const RemoteItem& item = items->front();
    if (!item.tag || item.tag->rule != ctx_.rule || item.tag->key != a.key) {
      ++result_.counts.conflicts;
      result_.conflicts.push_back(item.href + " no longer carries roster's marker; left alone");
      return ForgetOwnership(item);
    }
    DeleteAction again = a;
    again.etag = item.etag;
    StartDelete(origin, again, replan_left);
    return {};
  }

  // Records an item as not ours (its marker is gone or names someone else).
  Status ForgetOwnership(const RemoteItem& item) {
    return ctx_.store->PutItem(
        ctx_.collection_id,
        ItemState{item.href, item.etag, item.etag,
                  item.tag && item.tag->rule == ctx_.rule ? item.tag->key : std::string(),
                  item.content_hash});
  }

  // Re-reads one href and plans its key again against what is there now.
  Status Replan(const Action& origin, const std::string& key, const std::string& href,
                int replan_left) {
    auto items = Retry<std::vector<RemoteItem>>([&] { return ctx_.collection->Fetch({href}); });
    if (!items.ok()) return items.take_error();
    std::vector<CurrentItem> current;
    for (const RemoteItem& item : *items) {
      if (!item.tag || item.tag->rule != ctx_.rule) {
        // Not ours, at the name we wanted: leave it alone and say so. A
        // conflict is reported, not retried, and is not an error of the run.
        ++result_.counts.conflicts;
        result_.conflicts.push_back("an item roster does not manage exists at " + item.href +
                                    "; left alone, " + key + " not written");
        return ForgetOwnership(item);
      }
      current.push_back(CurrentItem{item.href, item.etag, item.tag->key, item.content_hash,
                                    /*recorded=*/false});
    }
    std::vector<DesiredItem> desired;
    if (const DesiredItem* want = Want(key)) desired.push_back(*want);
    PlanInput input;
    input.desired = &desired;
    input.current = &current;
    input.force = true;  // a single-item repair is not a mass deletion
    Plan plan = PlanCollection(input);
    result_.counts.unchanged += plan.unchanged;
    for (const Action& next : plan.actions) {
      ROSTER_RETURN_IF_ERROR(StartFrom(origin, next, replan_left));
    }
    return {};
  }

  // The item as it is now: from the batch read before the plan ran, else read alone.
  Result<std::optional<RemoteItem>> ReadBeforeUpdate(const std::string& href) {
    auto it = prefetched_.find(href);
    if (it != prefetched_.end()) {
      std::optional<RemoteItem> item = std::move(it->second);
      prefetched_.erase(it);
      return item;
    }
    auto items = Retry<std::vector<RemoteItem>>([&] { return ctx_.collection->Fetch({href}); });
    if (!items.ok()) return items.take_error();
    if (items->empty()) return std::optional<RemoteItem>();
    return std::optional<RemoteItem>(std::move(items->front()));
  }

  // Reads, in batches, every item the plan's updates will merge with.
  void Prefetch(const Plan& plan) {
    std::vector<std::string> hrefs;
    for (const Action& action : plan.actions) {
      const auto* u = std::get_if<UpdateAction>(&action);
      if (!u || !ReadsBeforeUpdate(*u)) continue;
      const RemoteItem* read = ctx_.known ? ctx_.known(u->href) : nullptr;
      if (read && read->etag == u->etag) {
        prefetched_[u->href] = *read;  // the listing carried it: no second read
      } else {
        hrefs.push_back(u->href);
      }
    }
    constexpr size_t kBatch = 100;
    for (size_t i = 0; i < hrefs.size(); i += kBatch) {
      std::vector<std::string> chunk(
          hrefs.begin() + static_cast<std::ptrdiff_t>(i),
          hrefs.begin() + static_cast<std::ptrdiff_t>(std::min(hrefs.size(), i + kBatch)));
      auto items = Retry<std::vector<RemoteItem>>([&] { return ctx_.collection->Fetch(chunk); });
      if (!items.ok()) return;  // each update reads its item alone, and reports the error
      for (RemoteItem& item : *items) {
        std::string href = item.href;
        prefetched_[href] = std::move(item);
      }
      // Missing from the answer: deleted meanwhile.
      for (const std::string& href : chunk) prefetched_.try_emplace(href, std::nullopt);
    }
  }

  ExecuteContext& ctx_;
  Clock& clock_;
  ExecuteResult result_;
  std::unordered_map<std::string, std::optional<RemoteItem>> prefetched_;
  std::deque<Pending> queue_;
  size_t not_tried_ = 0;
};

}  // namespace

ExecuteResult ExecutePlan(const Plan& plan, ExecuteContext& context) {
  if (!context.clock) context.clock = &RealClock();
  Runner runner(context);
  runner.Run(plan);
  return runner.Take();
}

}  // namespace roster
