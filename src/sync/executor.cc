// The executor: runs a plan's actions against one collection. Each write goes
// out with a precondition (If-None-Match: * for creates at deterministic names,
// If-Match for updates and deletes), so that a retry, a crash or a concurrent
// edit can never produce a second copy or clobber an unseen change.
#include <algorithm>
#include <optional>
#include <unordered_map>

#include "core/failpoint.h"
#include "kinds/kind.h"
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
      result_.credential_refused = result_.credential_refused || st.error().credential_refused;
    }
    if (ctx_.on_done) ctx_.on_done(action, st);
  }

  ExecuteResult Take() { return std::move(result_); }
  bool CredentialRefused() const { return result_.credential_refused; }

 private:
  template <typename T>
  Result<T> Retry(const std::function<Result<T>()>& op) {
    return WithRetries<T>(ctx_.retry, *ctx_.clock, op);
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

  const DesiredItem* Want(const std::string& key) {
    return ctx_.desired ? ctx_.desired(key) : nullptr;
  }

  Status Do(const CreateAction& a, int replan_left) {
    const DesiredItem* want = Want(a.key);
    if (!want) return MakeError(ErrorKind::kInternal, "no source item for key " + a.key);
    std::string name = ctx_.resource_name(a.key);
    ManagedTag tag{ctx_.rule, a.key};
    PreparedWrite prepared;
    if (ctx_.prepare) prepared = ctx_.prepare(*want, nullptr, "");
    const ItemBody& body = ctx_.prepare ? prepared.body : *want->body;
    Failpoint("before-create");
    auto w = Retry<WriteResult>([&] { return ctx_.collection->Create(name, tag, body); });
    if (w.ok()) {
      Failpoint("after-create");
      ++result_.counts.created;
      return Record(a.key, *w, want->hash, prepared.fields);
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
    std::string if_match = a.etag;
    PreparedWrite prepared;
    if (ctx_.prepare || a.take_over) {
      // Field rules and take-overs merge with what is there now.
      ROSTER_ASSIGN_OR_RETURN(std::optional<RemoteItem> remote, ReadBeforeUpdate(a.href));
      if (!remote) return Gone(a, replan_left);
      Failpoint("after-update-read");
      if (a.take_over) {
        // Still the user's own plain card for this person? Else leave it.
        std::string why;
        if (remote->tag) {
          why = "now carries a marker (rule " + remote->tag->rule + ")";
        } else if (!remote->parse_error.empty()) {
          why = "could not be read";
        } else if (!SameSubject(*want->body, remote->body)) {
          why = "no longer has the person's e-mail address";
        }
        if (!why.empty()) {
          ++result_.counts.conflicts;
          result_.conflicts.push_back("the user's card " + remote->href + " " + why + "; " + a.key +
                                      " was not written");
          return {};
        }
      }
      if (!a.take_over && (!remote->tag || remote->tag->rule != ctx_.rule ||
                           remote->tag->key != a.key || !remote->parse_error.empty())) {
        if (replan_left == 0) return MakeError(ErrorKind::kConflict, "item changed owner");
        return Replan(a.key, a.href, replan_left - 1);
      }
      std::string stored = a.take_over || !ctx_.stored_fields ? "" : ctx_.stored_fields(a.href);
      prepared =
          ctx_.prepare ? ctx_.prepare(*want, &*remote, stored) : PreparedWrite{*want->body, ""};
      if_match = remote->etag;
      if (!a.take_over &&
          KindOf(prepared.body).ContentHash(prepared.body) == remote->content_hash) {
        // The merge changes nothing on the server (the user's edits are all
        // kept, or the source's change is one the rules do not write): no
        // write, only the record that this content matches the source now.
        ++result_.counts.unchanged;
        ItemState row{
            remote->href, remote->etag, remote->etag, a.key, want->hash, prepared.fields, ""};
        return ctx_.store->PutItem(ctx_.collection_id, row);
      }
    }
    const ItemBody& body = (ctx_.prepare || a.take_over) ? prepared.body : *want->body;
    Failpoint("before-update");
    auto w =
        Retry<WriteResult>([&] { return ctx_.collection->Update(a.href, if_match, tag, body); });
    if (w.ok()) {
      Failpoint("after-update");
      ++result_.counts.updated;
      if (a.adopt) ++result_.counts.adopted;
      return Record(a.key, *w, want->hash, prepared.fields);
    }
    if (w.error().kind == ErrorKind::kNotFound) return Gone(a, replan_left);
    if (w.error().kind != ErrorKind::kPreconditionFailed || replan_left == 0) return w.take_error();
    if (a.take_over) {
      // Changed again since we read it: read it once more and merge again.
      prefetched_.erase(a.href);
      return Do(UpdateAction{a.key, a.href, "", a.adopt, true}, replan_left - 1);
    }
    return Replan(a.key, a.href, replan_left - 1);
  }

  // The item was deleted on the server meanwhile: forget it and create it again.
  Status Gone(const UpdateAction& a, int replan_left) {
    ROSTER_RETURN_IF_ERROR(ctx_.store->DeleteItem(ctx_.collection_id, a.href));
    if (replan_left == 0) {
      return MakeError(ErrorKind::kNotFound, a.href + " disappeared while it was being updated");
    }
    return Do(CreateAction{a.key}, replan_left - 1);
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

 public:
  // Reads, in batches, every item the plan's updates will merge with.
  void Prefetch(const Plan& plan) {
    std::vector<std::string> hrefs;
    for (const Action& action : plan.actions) {
      if (const auto* u = std::get_if<UpdateAction>(&action)) {
        if (ctx_.prepare || u->take_over) hrefs.push_back(u->href);
      }
    }
    constexpr size_t kBatch = 100;
    for (size_t i = 0; i < hrefs.size(); i += kBatch) {
      std::vector<std::string> chunk(hrefs.begin() + i,
                                     hrefs.begin() + std::min(hrefs.size(), i + kBatch));
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

 private:
  Status Do(const DeleteAction& a, int replan_left) {
    Failpoint("before-delete");
    auto st = Retry<bool>([&]() -> Result<bool> {
      Status s = ctx_.collection->Delete(a.href, a.etag);
      if (!s.ok()) return s.take_error();
      return true;
    });
    if (st.ok()) {
      Failpoint("after-delete");
      ++result_.counts.deleted;
      result_.deleted.push_back(a.href);
      Status recorded = ctx_.store->DeleteItem(ctx_.collection_id, a.href);
      Failpoint("after-record");
      return recorded;
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

  Status Do(const SkipAction&, int) {
    ++result_.counts.skipped;
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
  std::unordered_map<std::string, std::optional<RemoteItem>> prefetched_;
};

}  // namespace

ExecuteResult ExecutePlan(const Plan& plan, ExecuteContext& context) {
  if (!context.clock) context.clock = &RealClock();
  Runner runner(context);
  runner.Prefetch(plan);
  const auto& deadline = context.retry.deadline;
  size_t done = 0;
  bool refused = false;
  for (const Action& action : plan.actions) {
    if (deadline && context.clock->Now() >= *deadline) break;
    if (refused) break;
    runner.Run(action);
    refused = runner.CredentialRefused();
    ++done;
  }
  ExecuteResult result = runner.Take();
  if (refused && done < plan.actions.size()) {
    ++result.counts.errors;
    result.errors.push_back("the server refused the credential; " +
                            std::to_string(plan.actions.size() - done) + " actions were not tried");
  } else if (done < plan.actions.size()) {
    // Nothing is recorded for what was not done: the next run plans it again.
    ++result.counts.errors;
    result.errors.push_back("the run's deadline (run_timeout_seconds) passed; " +
                            std::to_string(plan.actions.size() - done) +
                            " actions are left for the next run");
  }
  return result;
}

}  // namespace roster
