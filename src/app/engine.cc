#include "app/engine.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/hash.h"

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

namespace {

// The selected, mapped people of one rule, sorted by key.
struct RuleInput {
  std::vector<DesiredItem> desired;
  std::unordered_map<std::string_view, const DesiredItem*> by_key;
  std::string fingerprint;
  Snapshot previous;
  std::vector<std::string> changed_keys;  // added, modified or removed since `previous`
};

std::vector<std::string> LookupField(const SourceRecord& record, std::string_view field) {
  if (IsContactField(field)) return GetContactField(record.contact, field);
  auto it = record.attributes.find(std::string(field));
  if (it != record.attributes.end()) return {it->second};
  return {};
}

Result<RuleInput> SelectRule(const RuleSpec& rule, const std::vector<SourceRecord>& records) {
  RuleInput in;
  in.desired.reserve(records.size());
  for (const SourceRecord& r : records) {
    if (!rule.filter.Matches([&](std::string_view f) { return LookupField(r, f); })) continue;
    auto contact = std::make_shared<const Contact>(r.contact);
    in.desired.push_back(DesiredItem{r.key, ContentHash(*contact), contact});
  }
  std::sort(in.desired.begin(), in.desired.end(),
            [](const DesiredItem& a, const DesiredItem& b) { return a.key < b.key; });
  for (size_t i = 1; i < in.desired.size(); ++i) {
    if (in.desired[i].key == in.desired[i - 1].key) {
      return MakeError(ErrorKind::kInvalidData, "rule " + rule.name + ": source " + rule.source +
                                                    " has two people with the key \"" +
                                                    in.desired[i].key + "\"");
    }
  }
  for (const DesiredItem& d : in.desired) in.by_key.emplace(d.key, &d);
  in.fingerprint = SelectionFingerprint(in.desired);
  return in;
}

}  // namespace

std::string SelectionFingerprint(const std::vector<DesiredItem>& sorted) {
  std::string material;
  for (const DesiredItem& d : sorted) {
    material += d.key;
    material.push_back('\0');
    material += d.hash;
    material.push_back('\n');
  }
  return HashHex(material);
}

namespace {

// Keys whose desired state differs between the previous snapshot and now.
std::vector<std::string> DiffKeys(const std::vector<SnapshotEntry>& before,
                                  const std::vector<DesiredItem>& now) {
  std::vector<std::string> changed;
  size_t i = 0, j = 0;
  while (i < before.size() || j < now.size()) {
    if (j == now.size() || (i < before.size() && before[i].key < now[j].key)) {
      changed.push_back(before[i++].key);
    } else if (i == before.size() || now[j].key < before[i].key) {
      changed.push_back(now[j++].key);
    } else {
      if (before[i].hash != now[j].hash) changed.push_back(now[j].key);
      ++i;
      ++j;
    }
  }
  return changed;
}

class CollectionRun {
 public:
  CollectionRun(const RuleSpec& rule, const RuleInput& input, Target& target, StateStore& store,
                const RunOptions& options, CollectionReport& report)
      : rule_(rule), in_(input), target_(target), store_(store), opt_(options), report_(report) {}

  void Run(const std::string& user) {
    Status st = RunInner(user);
    if (!st.ok()) report_.errors.push_back(st.error().message);
  }

 private:
  template <typename T>
  Result<T> Retry(const std::function<Result<T>()>& op) {
    return WithRetries<T>(opt_.retry, *opt_.clock, op);
  }

  Status RunInner(const std::string& user) {
    const CollectionKey& key = report_.key;
    CollectionState state;
    if (opt_.dry_run) {
      auto found = store_.FindCollection(key);
      if (found.ok()) state = *found;
    } else {
      ROSTER_ASSIGN_OR_RETURN(state, store_.OpenCollection(key));
    }
    CollectionSpec spec{user, rule_.display_name, rule_.name, state.url};
    auto opened = target_.Open(spec, /*create=*/!opt_.dry_run);
    if (!opened.ok()) {
      if (opt_.dry_run && opened.error().kind == ErrorKind::kNotFound) {
        // Nothing there yet: the plan is to create everything.
        return PlanAndRun(nullptr, state, {}, in_.desired, 0, 0);
      }
      return opened.take_error();
    }
    collection_ = std::move(opened).value();
    if (!state.url.empty() && state.url != collection_->id()) {
      // A different collection than last time (recreated or moved): what we
      // knew of the old one says nothing about this one.
      if (!opt_.dry_run) {
        ROSTER_RETURN_IF_ERROR(store_.ResetCollection(state.id));
      }
      state.sync_token.clear();
      state.synced_snapshot.clear();
    }
    if (!opt_.dry_run && state.url != collection_->id()) {
      ROSTER_RETURN_IF_ERROR(store_.SetCollectionUrl(state.id, collection_->id()));
    }

    ROSTER_ASSIGN_OR_RETURN(Listing listing, Retry<Listing>([&] {
                              return collection_->List(state.url == collection_->id()
                                                           ? state.sync_token
                                                           : std::string());
                            }));
    token_ = listing.sync_token;

    bool quiet = !listing.full && listing.changed.empty() && listing.removed.empty() &&
                 !state.sync_token.empty() && !in_.previous.fingerprint.empty();
    if (quiet && state.synced_snapshot == in_.fingerprint) {
      // Nothing changed on either side since a clean run: not one item is read.
      report_.counts.unchanged = static_cast<int64_t>(in_.desired.size());
      return Finish(state, /*wrote=*/false);
    }
    if (quiet && state.synced_snapshot == in_.previous.fingerprint) {
      return PlanIncremental(state);
    }
    return PlanFull(state, listing);
  }

  // The collection is exactly as the last clean run left it; only the keys
  // that changed in the source need a decision.
  Status PlanIncremental(const CollectionState& state) {
    ROSTER_ASSIGN_OR_RETURN(auto items, store_.LoadItemsByKeys(state.id, in_.changed_keys));
    ROSTER_ASSIGN_OR_RETURN(int64_t managed, store_.CountManaged(state.id));
    std::vector<DesiredItem> subset;
    for (const std::string& k : in_.changed_keys) {
      auto it = in_.by_key.find(k);
      if (it != in_.by_key.end()) subset.push_back(*it->second);
    }
    std::vector<CurrentItem> current;
    current.reserve(items.size());
    for (const ItemState& s : items) current.push_back({s.href, s.etag, s.key, s.hash, true});
    int64_t outside = static_cast<int64_t>(in_.desired.size() - subset.size());
    return PlanAndRun(collection_.get(), state, current, subset, managed, outside);
  }

  Status PlanFull(const CollectionState& state, const Listing& listing) {
    ROSTER_ASSIGN_OR_RETURN(auto stored, store_.LoadItems(state.id));
    std::unordered_map<std::string, ItemState> items;
    items.reserve(stored.size() + listing.changed.size());
    std::unordered_map<std::string, std::string> previous_key;  // href -> managed key before
    for (ItemState& s : stored) {
      if (!s.key.empty()) previous_key[s.href] = s.key;
      std::string href = s.href;
      items.emplace(std::move(href), std::move(s));
    }
    std::vector<std::string> removed;
    if (listing.full) {
      std::unordered_set<std::string> listed;
      for (const ItemRef& r : listing.changed) listed.insert(r.href);
      for (const auto& [href, s] : items) {
        if (!listed.count(href)) removed.push_back(href);
      }
    } else {
      removed = listing.removed;
    }
    for (const std::string& href : removed) items.erase(href);
    for (const ItemRef& r : listing.changed) {
      ItemState& s = items[r.href];
      s.href = r.href;
      s.etag_seen = r.etag;
    }

    // Read what we do not know yet: new items, and items changed since we knew them.
    std::vector<std::string> unknown;
    for (const auto& [href, s] : items) {
      if (!s.known()) unknown.push_back(href);
    }
    std::sort(unknown.begin(), unknown.end());
    std::vector<ItemState> learned;
    if (!unknown.empty()) {
      ROSTER_ASSIGN_OR_RETURN(auto fetched, Retry<std::vector<RemoteItem>>(
                                                [&] { return collection_->Fetch(unknown); }));
      std::unordered_set<std::string> got;
      for (RemoteItem& r : fetched) {
        auto it = items.find(r.href);
        if (it == items.end()) continue;
        got.insert(r.href);
        ItemState& s = it->second;
        s.etag = s.etag_seen = r.etag;
        s.key = r.parse_error.empty() && r.tag && r.tag->rule == rule_.name ? r.tag->key : "";
        s.hash = r.content_hash;
        if (!r.parse_error.empty()) {
          report_.warnings.push_back(r.href +
                                     " could not be read and is left alone: " + r.parse_error);
        }
        learned.push_back(s);
      }
      for (const std::string& href : unknown) {
        if (!got.count(href)) {  // gone between the listing and the read
          items.erase(href);
          removed.push_back(href);
        }
      }
    }
    if (!opt_.dry_run) {
      // Persist what the listing and the reads taught us before writing
      // anything, together with the token they belong to.
      std::vector<ItemRef> seen;
      for (const ItemRef& r : listing.changed) seen.push_back(r);
      ROSTER_RETURN_IF_ERROR(store_.ApplyListing(state.id, seen, removed, ""));
      ROSTER_RETURN_IF_ERROR(store_.ApplyItems(state.id, learned, {}, token_));
    }

    std::vector<CurrentItem> current;
    current.reserve(items.size());
    int64_t managed = 0;
    for (const auto& [href, s] : items) {
      if (s.key.empty()) continue;
      ++managed;
      auto pk = previous_key.find(href);
      bool recorded = pk != previous_key.end() && pk->second == s.key;
      current.push_back({s.href, s.etag, s.key, s.hash, recorded});
    }
    return PlanAndRun(collection_.get(), state, current, in_.desired, managed, 0);
  }

  Status PlanAndRun(Collection* collection, const CollectionState& state,
                    const std::vector<CurrentItem>& current,
                    const std::vector<DesiredItem>& desired, int64_t managed, int64_t outside) {
    PlanInput input;
    input.desired = &desired;
    input.current = &current;
    input.preferred_name = [&](const std::string& k) {
      return target_.ResourceName(ManagedTag{rule_.name, k});
    };
    input.managed_total = managed;
    input.unchanged_outside = outside;
    input.max_delete_percent = rule_.max_delete_percent;
    input.force = opt_.force;
    Plan plan = PlanCollection(input);
    if (!plan.guard.empty()) {
      report_.guard_tripped = true;
      report_.counts = plan.Predicted();
      return MakeError(ErrorKind::kAborted,
                       "deletion guard: rule " + rule_.name + " " + plan.guard + " in " +
                           report_.key.user + "'s \"" + rule_.display_name +
                           "\"; nothing was changed there (use --force if this is intended)");
    }
    if (opt_.dry_run || collection == nullptr) {
      report_.counts = plan.Predicted();
      for (const Action& a : plan.actions) report_.planned.push_back(DescribeAction(a));
      return {};
    }

    ExecuteContext ctx;
    ctx.collection = collection;
    ctx.store = &store_;
    ctx.collection_id = state.id;
    ctx.rule = rule_.name;
    ctx.desired = [&](const std::string& k) -> const DesiredItem* {
      auto it = in_.by_key.find(k);
      return it == in_.by_key.end() ? nullptr : it->second;
    };
    ctx.resource_name = [&](const std::string& k) {
      return target_.ResourceName(ManagedTag{rule_.name, k});
    };
    ctx.retry = opt_.retry;
    ctx.clock = opt_.clock;
    ExecuteResult result = ExecutePlan(plan, ctx);
    report_.counts = result.counts;
    report_.counts.unchanged += plan.unchanged;
    report_.errors.insert(report_.errors.end(), result.errors.begin(), result.errors.end());
    report_.conflicts = result.conflicts;
    written_ = std::move(result.written);
    deleted_ = std::move(result.deleted);
    return Finish(state, !written_.empty() || !deleted_.empty());
  }

  // After writing, list once more from the token we started with: our own
  // writes come back (their etags confirm what we recorded), anything else is
  // someone's concurrent change and stays unknown until the next run reads it.
  // Then the next quiet run has an empty delta and reads nothing.
  Status Finish(const CollectionState& state, bool wrote) {
    if (opt_.dry_run) return {};
    bool clean = report_.errors.empty() && report_.counts.errors == 0 &&
                 report_.counts.conflicts == 0 && report_.warnings.empty();
    if (wrote && !token_.empty()) {
      auto after = Retry<Listing>([&] { return collection_->List(token_); });
      if (!after.ok()) {
        clean = false;  // the next run lists from the old token; nothing is lost
      } else {
        std::unordered_map<std::string, const ItemState*> ours;
        for (const ItemState& w : written_) ours[w.href] = &w;
        std::vector<ItemRef> seen;
        std::vector<ItemState> confirmed;
        for (const ItemRef& r : after->changed) {
          auto it = ours.find(r.href);
          if (it != ours.end() && it->second->etag.empty()) {
            // The server did not answer an etag to our write: take the listing's.
            ItemState row = *it->second;
            row.etag = row.etag_seen = r.etag;
            confirmed.push_back(std::move(row));
          } else if (it == ours.end() || it->second->etag != r.etag) {
            clean = false;  // someone else's change: read it next run
          }
          seen.push_back(r);
        }
        std::unordered_set<std::string> gone(deleted_.begin(), deleted_.end());
        for (const std::string& href : after->removed) clean = clean && gone.count(href) > 0;
        ROSTER_RETURN_IF_ERROR(
            store_.ApplyListing(state.id, seen, after->removed, after->sync_token));
        ROSTER_RETURN_IF_ERROR(store_.ApplyItems(state.id, confirmed, {}, ""));
        token_ = after->sync_token;
      }
    } else if (!token_.empty() && token_ != state.sync_token) {
      ROSTER_RETURN_IF_ERROR(store_.SetSyncToken(state.id, token_));
    }
    return store_.SetSyncedSnapshot(state.id, clean ? in_.fingerprint : std::string());
  }

  const RuleSpec& rule_;
  const RuleInput& in_;
  Target& target_;
  StateStore& store_;
  const RunOptions& opt_;
  CollectionReport& report_;
  std::unique_ptr<Collection> collection_;
  std::string token_;
  std::vector<ItemState> written_;
  std::vector<std::string> deleted_;
};

}  // namespace

Engine::Engine(EngineConfig config, StateStore& store)
    : config_(std::move(config)), store_(store) {}

RunReport Engine::Run(const RunOptions& options_in) {
  RunOptions options = options_in;
  if (!options.clock) options.clock = &RealClock();
  RunReport report;
  int64_t run_id = 0;
  if (!options.dry_run) {
    auto run = store_.BeginRun("sync");
    if (!run.ok()) {
      report.errors.push_back(run.error().message);
      return report;
    }
    run_id = *run;
  }

  // Each source is read once per run, whatever the number of rules using it.
  std::map<std::string, Result<std::vector<SourceRecord>>> read;
  auto records_of = [&](const std::string& name) -> const Result<std::vector<SourceRecord>>& {
    auto it = read.find(name);
    if (it == read.end()) {
      it = read.emplace(name, config_.sources.at(name)->ReadAll()).first;
    }
    return it->second;
  };

  size_t total = 0;
  for (const RuleSpec& rule : config_.rules) total += config_.targets.at(rule.target).users.size();
  std::atomic<size_t> done{0};
  std::mutex report_mu;

  for (const RuleSpec& rule : config_.rules) {
    const auto& records = records_of(rule.source);
    if (!records.ok()) {
      report.errors.push_back("rule " + rule.name + ": " + records.error().message +
                              "; no address book was changed");
      continue;
    }
    auto selected = SelectRule(rule, *records);
    if (!selected.ok()) {
      report.errors.push_back(selected.error().message + "; no address book was changed");
      continue;
    }
    RuleInput& in = *selected;
    auto previous = store_.LoadSnapshot(rule.name);
    if (!previous.ok()) {
      report.errors.push_back(previous.error().message);
      continue;
    }
    in.previous = std::move(previous).value();
    in.changed_keys = DiffKeys(in.previous.entries, in.desired);

    // The source-level guard: a source that suddenly lost many people (an
    // emptied export, a failed query that returned nothing) stops the rule
    // before any address book is touched.
    if (!options.force && !in.previous.entries.empty()) {
      int64_t before = static_cast<int64_t>(in.previous.entries.size());
      int64_t gone = 0;
      for (const SnapshotEntry& e : in.previous.entries) gone += in.by_key.count(e.key) ? 0 : 1;
      if (gone > 0 && gone * 100 > static_cast<int64_t>(rule.max_delete_percent) * before) {
        report.guard_tripped = true;
        report.errors.push_back(
            "deletion guard: rule " + rule.name + ": source " + rule.source + " lost " +
            std::to_string(gone) + " of " + std::to_string(before) +
            " people since the last sync (" + std::to_string(gone * 100 / before) +
            "%), more than max_delete_percent = " + std::to_string(rule.max_delete_percent) +
            "; no address book was changed (use --force if this is intended)");
        continue;
      }
    }

    TargetEntry& entry = config_.targets.at(rule.target);
    std::vector<CollectionReport> reports(entry.users.size());
    for (size_t i = 0; i < entry.users.size(); ++i) {
      reports[i].key = CollectionKey{rule.name, rule.target, entry.users[i]};
    }
    // At most max_in_flight collections of one target are worked on at once,
    // each over its own connection.
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i; (i = next.fetch_add(1)) < entry.users.size();) {
        CollectionRun(rule, in, *entry.target, store_, options, reports[i]).Run(entry.users[i]);
        size_t n = ++done;
        if (options.on_collection) {
          std::lock_guard lock(report_mu);
          options.on_collection(reports[i], n, total);
        }
      }
    };
    int threads = std::max(
        1, std::min<int>(entry.target->max_in_flight(), static_cast<int>(entry.users.size())));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();

    bool guard = false;
    for (const CollectionReport& r : reports) guard = guard || r.guard_tripped;
    if (!options.dry_run) {
      for (const CollectionReport& r : reports) {
        TargetRunResult res{r.key, r.counts, r.errors.empty() ? std::string() : r.errors.front()};
        Status st = store_.RecordResult(run_id, res);
        if (!st.ok()) report.errors.push_back(st.error().message);
      }
      if (!guard) {
        Snapshot snap{in.fingerprint, {}};
        snap.entries.reserve(in.desired.size());
        for (const DesiredItem& d : in.desired) snap.entries.push_back({d.key, d.hash});
        Status st = store_.SaveSnapshot(rule.name, snap);
        if (!st.ok()) report.errors.push_back(st.error().message);
      }
    }
    report.guard_tripped = report.guard_tripped || guard;
    for (CollectionReport& r : reports) report.collections.push_back(std::move(r));
  }

  if (!options.dry_run) {
    Status st = store_.FinishRun(run_id, report.ExitCode());
    if (!st.ok()) report.errors.push_back(st.error().message);
  }
  return report;
}

}  // namespace roster
