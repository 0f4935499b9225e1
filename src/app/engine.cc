#include "app/engine.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/failpoint.h"
#include "core/personal.h"
#include "sync/offboard.h"
#include "sync/prepare.h"

namespace roster {

Counts RunReport::Totals() const {
  Counts total;
  for (const CollectionReport& c : collections) total += c.counts;
  return total;
}

int RunReport::ExitCode() const {
  if (guard_tripped) return 3;
  if (!errors.empty()) return 1;
  for (const CollectionReport& c : collections) {
    if (!c.errors.empty() || c.counts.errors > 0 || c.counts.conflicts > 0) return 1;
  }
  return 0;
}

Engine::Engine(EngineConfig config, StateStore& store)
    : config_(std::move(config)), store_(store) {}

// One run's orchestration: what is shared between the rules and the worker
// threads (progress, refused credentials, the report).
class Engine::RunState {
 public:
  RunState(Engine& engine, const RunOptions& options)
      : config_(engine.config_),
        store_(engine.store_),
        options_(options),
        reader_(config_.sources, config_.rules, notes_,
                CacheUse(engine.config_, engine.store_, options), engine.config_.erasure) {}

  RunReport Run() {
    report_.warnings = config_.warnings;
    for (std::string& w : store_.TakeWarnings()) report_.warnings.push_back(std::move(w));
    if (!options_.dry_run) {
      auto run = store_.BeginRun("sync");
      if (!run.ok()) {
        report_.errors.push_back(run.error().message);
        return std::move(report_);
      }
      run_id_ = *run;
      if (config_.run_retention && config_.run_retention->count() > 0) {
        // Retention: run history and its messages go once they are old.
        auto pruned = store_.PruneRuns(*config_.run_retention);
        if (!pruned.ok()) report_.warnings.push_back(pruned.error().message);
      }
      PurgeCacheFirst();
    }
    RestoreCursors();
    PrepareAll();
    for (auto& w : work_) {
      std::vector<CollectionReport> reports = SyncCollections(*w);
      if (!w->offboard_guard) Offboard(*w, reports);
      Record(*w, reports);
    }
    TakeNotes();
    report_.erased = reader_.TakeErasedPeople();
    if (!options_.dry_run) {
      SaveCursors();
      if (config_.purge_after_sync) PurgeCache("purge_after_sync");
      Status st = store_.FinishRun(run_id_, report_.ExitCode());
      if (!st.ok()) report_.errors.push_back(st.error().message);
    }
    return std::move(report_);
  }

 private:
  static SourceCacheUse CacheUse(const EngineConfig& config, StateStore& store,
                                 const RunOptions& options) {
    SourceCacheUse use;
    if (config.cache && !config.purge_after_sync) use.store = &store;
    use.max_age = config.cache_max_age;
    use.write = !options.dry_run;
    return use;
  }

  // Before anything is read: expired cache entries go (their people are read
  // again), and with no cache at all, whatever an earlier setting left.
  void PurgeCacheFirst() {
    if (!config_.cache) {
      PurgeCache("cache = \"none\"");
      return;
    }
    auto purged = store_.PurgeExpiredCache(config_.cache_max_age);
    if (!purged.ok()) {
      report_.warnings.push_back(purged.error().message);
    } else if (*purged > 0) {
      report_.notices.push_back("state: " + std::to_string(*purged) +
                                " cached people had expired and were purged; they are read again");
    }
  }

  void PurgeCache(const char* why) {
    auto purged = store_.PurgeCache();
    if (!purged.ok()) {
      report_.warnings.push_back(purged.error().message);
    } else if (*purged > 0) {
      report_.notices.push_back("state: the cache of " + std::to_string(*purged) +
                                " people was purged (" + why + ")");
    }
  }

  // Sources that read changes (Graph's delta) start from where the last run
  // left them. A cursor that cannot be loaded only costs a full read.
  void RestoreCursors() {
    for (auto& [name, entry] : config_.sources) {
      auto cursor = store_.LoadSourceCursor(name);
      if (!cursor.ok()) {
        report_.warnings.push_back("source " + name + ": " + cursor.error().message +
                                   "; it is read in full");
        continue;
      }
      cursors_[name] = *cursor;
      if (!cursor->empty()) entry.source->RestoreCursor(*cursor);
    }
  }

  // Where each source stands now, for the next run (a plan stores nothing).
  void SaveCursors() {
    for (auto& [name, entry] : config_.sources) {
      std::string cursor = entry.source->Cursor();
      auto it = cursors_.find(name);
      if (it != cursors_.end() && it->second == cursor) continue;
      if (it == cursors_.end() && cursor.empty()) continue;
      Status st = store_.SaveSourceCursor(name, cursor);
      if (!st.ok()) report_.warnings.push_back("source " + name + ": " + st.error().message);
    }
  }

  // Phase 1: every rule prepared; nothing is written yet.
  void PrepareAll() {
    PrepareContext ctx{&store_, &config_.directories, &reader_, &notes_, options_.force};
    ctx.target = [this](const std::string& name) -> const Target* {
      auto it = config_.targets.find(name);
      return it == config_.targets.end() ? nullptr : it->second.target.get();
    };
    for (const RuleSpec& rule : config_.rules) {
      auto w = std::make_unique<RuleWork>();
      Preparation p = PrepareRule(rule, config_.targets.at(rule.target).users, ctx, *w);
      report_.errors.insert(report_.errors.end(), p.errors.begin(), p.errors.end());
      report_.guard_tripped = report_.guard_tripped || p.guard_tripped;
      if (p.run) work_.push_back(std::move(w));
    }
    // Every rule holds its selection now; a deferred read reads again.
    reader_.DropRecords();
    for (const auto& w : work_) {
      total_ += w->users.size() + (w->offboard_guard ? 0 : w->leaving.size());
    }
    TakeNotes();
  }

  void TakeNotes() {
    for (std::string& s : notes_.TakeWarnings()) report_.warnings.push_back(std::move(s));
    for (std::string& s : notes_.TakeNotices()) report_.notices.push_back(std::move(s));
  }

  RunOptions RuleOptions(const RuleWork& w) const {
    RunOptions o = options_;
    o.retry.max_retry_after = config_.targets.at(w.rule->target).max_retry_after;
    return o;
  }

  bool PastDeadline() const {
    return options_.deadline && options_.clock->Now() >= *options_.deadline;
  }

  // Targets whose shared credential the server refused (HTTP 401): nothing
  // more is tried with it, so that a wrong password cannot lock the account
  // with one failed login per address book.
  std::string RefusedMessage(const std::string& target) {
    std::lock_guard lock(refused_mu_);
    auto it = config_.targets.find(target);
    if (it == config_.targets.end() || !refused_.count(it->second.target.get())) return "";
    return "not synced: the server refused target " + target +
           "'s credential earlier in this run; nothing more is tried with it";
  }
  void NoteRefusal(const CollectionReport& r, const Target& t) {
    if (!r.credential_refused || !t.shared_credential()) return;
    std::lock_guard lock(refused_mu_);
    refused_.insert(&t);
  }

  void Progress(const CollectionReport& r) {
    size_t n = ++done_;
    if (!options_.on_collection) return;
    std::lock_guard lock(progress_mu_);
    options_.on_collection(r, n, total_);
  }

  // Phase 2: every user's collection, at most max_in_flight of the target at once.
  std::vector<CollectionReport> SyncCollections(RuleWork& w) {
    const RuleSpec& rule = *w.rule;
    Target& target = *config_.targets.at(rule.target).target;
    const RunOptions rule_options = RuleOptions(w);
    std::vector<CollectionReport> reports(w.users.size());
    for (size_t i = 0; i < w.users.size(); ++i) {
      reports[i].key = CollectionKey{rule.name, rule.target, w.users[i].name};
    }
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i; (i = next.fetch_add(1)) < w.users.size();) {
        if (PastDeadline()) {
          reports[i].errors.push_back(
              "not synced: the run's deadline (run_timeout_seconds) passed before this address "
              "book was reached; it is synced next run");
        } else if (std::string why = RefusedMessage(rule.target); !why.empty()) {
          reports[i].errors.push_back(std::move(why));
        } else {
          CollectionRun(rule, w.in, target, store_, rule_options, reports[i], w.users[i].self_key)
              .Run(w.users[i].name);
          NoteRefusal(reports[i], target);
        }
        Progress(reports[i]);
      }
    };
    int threads =
        std::max(1, std::min<int>(target.max_in_flight(), static_cast<int>(w.users.size())));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
    return reports;
  }

  void Offboard(RuleWork& w, std::vector<CollectionReport>& reports) {
    const RunOptions rule_options = RuleOptions(w);
    for (auto& [key, state] : w.leaving) {
      auto target = config_.targets.find(key.target);
      OffboardInput in{w.rule, key, state,
                       target == config_.targets.end() ? nullptr : target->second.target.get()};
      in.past_deadline = PastDeadline();
      in.refused = RefusedMessage(key.target);
      CollectionReport r = OffboardCollection(in, store_, rule_options);
      if (in.target) NoteRefusal(r, *in.target);
      Progress(r);
      reports.push_back(std::move(r));
    }
  }

  // Each collection's result, then the rule's new snapshot when nothing held it back.
  void Record(const RuleWork& w, std::vector<CollectionReport>& reports) {
    bool guard = false;
    for (CollectionReport& r : reports) {
      guard = guard || r.guard_tripped;
      MarkUser(r);
    }
    if (!options_.dry_run) {
      for (const CollectionReport& r : reports) {
        // The run history keeps no name in clear, not even sealed.
        TargetRunResult res{r.key, r.counts,
                            r.errors.empty()
                                ? std::string()
                                : HidePersonal(r.errors.front(), [this](std::string_view ref) {
                                    return store_.Pseudonym(ref);
                                  })};
        Status st = store_.RecordResult(run_id_, res);
        if (!st.ok()) report_.errors.push_back(st.error().message);
      }
      std::optional<Snapshot> snap = guard ? std::nullopt : NextSnapshot(w);
      if (snap) {
        Failpoint("before-snapshot");
        Status st = store_.SaveSnapshot(w.rule->name, *snap);
        if (!st.ok()) report_.errors.push_back(st.error().message);
      }
    }
    report_.guard_tripped = report_.guard_tripped || guard;
    for (CollectionReport& r : reports) report_.collections.push_back(std::move(r));
  }

  // A collection's messages name its user (and servers name them in URLs):
  // marked as personal, so that a log shows a pseudonym instead.
  static void MarkUser(CollectionReport& r) {
    for (auto* list : {&r.errors, &r.conflicts, &r.warnings}) {
      for (std::string& m : *list) m = MarkPersonal(m, r.key.user);
    }
  }

  EngineConfig& config_;
  StateStore& store_;
  const RunOptions& options_;
  RunNotes notes_;
  SourceReader reader_;
  RunReport report_;
  int64_t run_id_ = 0;
  std::vector<std::unique_ptr<RuleWork>> work_;
  size_t total_ = 0;
  std::atomic<size_t> done_{0};
  std::mutex progress_mu_;
  std::mutex refused_mu_;
  std::set<const Target*> refused_;
  std::map<std::string, std::string> cursors_;  // source -> cursor as loaded
};

RunReport Engine::Run(const RunOptions& options_in) {
  RunOptions options = options_in;
  if (!options.clock) options.clock = &RealClock();
  // One limiter for every collection of the run, unless the caller shares one
  // more widely (a service running several runs at once).
  std::unique_ptr<Limiter> limiter;
  if (!options.limiter) {
    limiter = NewLocalLimiter(*options.clock);
    options.limiter = limiter.get();
  }
  if (!options.deadline) options.deadline = config_.deadline;
  options.retry.deadline = options.deadline;
  return RunState(*this, options).Run();
}

}  // namespace roster
