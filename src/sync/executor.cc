// The executor: runs a plan's actions against one collection. Each write goes
// out with a precondition (If-None-Match: * for creates at deterministic names,
// If-Match for updates and deletes), so that a retry, a crash or a concurrent
// edit can never produce a second copy or clobber an unseen change.
#include "sync/sync.h"

namespace roster {
namespace {

class Runner {
 public:
  explicit Runner(ExecuteContext& ctx) : ctx_(ctx) {}

  void Run(const Action& action) {
    Status st = std::visit([&](const auto& a) { return Do(a, /*replan_left=*/1); }, action);
    if (!st.ok()) {
      ++result_.counts.errors;
      result_.errors.push_back(DescribeAction(action) + ": " + st.error().message);
    }
    if (ctx_.on_done) ctx_.on_done(action, st);
  }

  ExecuteResult Take() { return std::move(result_); }

 private:
  template <typename T>
  Result<T> Retry(const std::function<Result<T>()>& op) {
    return WithRetries<T>(ctx_.retry, *ctx_.clock, op);
  }

  Status Record(const std::string& key, const WriteResult& w, const std::string& hash) {
    // etag_seen == etag marks the content as known; an empty etag (the server
    // did not say) stays unknown until a listing reports it.
    ItemState row{w.href, w.etag, w.etag, key, hash};
    result_.written.push_back(row);
    return ctx_.store->PutItem(ctx_.collection_id, row);
  }

  const DesiredItem* Want(const std::string& key) {
    return ctx_.desired ? ctx_.desired(key) : nullptr;
  }

  Status Do(const CreateAction& a, int replan_left) {
    const DesiredItem* want = Want(a.key);
    if (!want) return MakeError(ErrorKind::kInternal, "no source item for key " + a.key);
    std::string name = ctx_.resource_name(a.key);
    ManagedTag tag{ctx_.rule, a.key};
    auto w = Retry<WriteResult>([&] { return ctx_.collection->Create(name, tag, *want->contact); });
    if (w.ok()) {
      ++result_.counts.created;
      return Record(a.key, *w, want->hash);
    }
    if (w.error().kind != ErrorKind::kPreconditionFailed || replan_left == 0) return w.take_error();
    // Something already lives at our deterministic name: a create of ours that
    // succeeded before a crash, or someone else's item. Read it and decide again.
    return Replan(a.key, ctx_.collection->HrefOf(name), replan_left - 1);
  }

  Status Do(const UpdateAction& a, int replan_left) {
    const DesiredItem* want = Want(a.key);
    if (!want) return MakeError(ErrorKind::kInternal, "no source item for key " + a.key);
    ManagedTag tag{ctx_.rule, a.key};
    auto w = Retry<WriteResult>(
        [&] { return ctx_.collection->Update(a.href, a.etag, tag, *want->contact); });
    if (w.ok()) {
      ++result_.counts.updated;
      if (a.adopt) ++result_.counts.adopted;
      return Record(a.key, *w, want->hash);
    }
    if (w.error().kind == ErrorKind::kNotFound) {
      // Deleted on the server meanwhile: forget it and create it again.
      ROSTER_RETURN_IF_ERROR(ctx_.store->DeleteItem(ctx_.collection_id, a.href));
      if (replan_left == 0) return w.take_error();
      return Do(CreateAction{a.key}, replan_left - 1);
    }
    if (w.error().kind != ErrorKind::kPreconditionFailed || replan_left == 0) return w.take_error();
    return Replan(a.key, a.href, replan_left - 1);
  }

  Status Do(const DeleteAction& a, int replan_left) {
    auto st = Retry<bool>([&]() -> Result<bool> {
      Status s = ctx_.collection->Delete(a.href, a.etag);
      if (!s.ok()) return s.take_error();
      return true;
    });
    if (st.ok()) {
      ++result_.counts.deleted;
      result_.deleted.push_back(a.href);
      return ctx_.store->DeleteItem(ctx_.collection_id, a.href);
    }
    if (st.error().kind != ErrorKind::kPreconditionFailed || replan_left == 0) {
      return st.take_error();
    }
    // Changed on the server since we listed it: read it; delete it only if it
    // still carries our marker for the same key.
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
    return Do(DeleteAction{a.key, a.href, item.etag, a.duplicate}, replan_left - 1);
  }

  Status Do(const AdoptAction& a, int) {
    ++result_.counts.unchanged;
    ++result_.counts.adopted;
    return ctx_.store->PutItem(ctx_.collection_id,
                               ItemState{a.href, a.etag, a.etag, a.key, a.hash});
  }

  Status Do(const ConflictAction&, int) {
    ++result_.counts.conflicts;
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
  Status Replan(const std::string& key, const std::string& href, int replan_left) {
    auto items = Retry<std::vector<RemoteItem>>([&] { return ctx_.collection->Fetch({href}); });
    if (!items.ok()) return items.take_error();
    std::vector<CurrentItem> current;
    for (const RemoteItem& item : *items) {
      if (!item.parse_error.empty() || !item.tag || item.tag->rule != ctx_.rule) {
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
      Status st = std::visit([&](const auto& x) { return Do(x, replan_left); }, next);
      if (!st.ok()) return st;
    }
    return {};
  }

  ExecuteContext& ctx_;
  ExecuteResult result_;
};

}  // namespace

ExecuteResult ExecutePlan(const Plan& plan, ExecuteContext& context) {
  if (!context.clock) context.clock = &RealClock();
  Runner runner(context);
  for (const Action& action : plan.actions) runner.Run(action);
  return runner.Take();
}

}  // namespace roster
