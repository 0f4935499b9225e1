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

  // Opens the collection and lists it from the stored token (from scratch when
  // it is not the collection the state describes).
  Result<Listing> OpenAndList(const CollectionSpec& spec, CollectionState& state) {
    collection_.reset();
    ROSTER_ASSIGN_OR_RETURN(collection_, target_.Open(spec, /*create=*/!opt_.dry_run));
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
      state.url = collection_->id();
    }
    const std::string token = state.sync_token;
    auto listing = Retry<Listing>([&] { return collection_->List(token); });
    if (!listing.ok() && listing.error().kind == ErrorKind::kNotFound) collection_.reset();
    return listing;
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
    Result<Listing> listed = OpenAndList(spec, state);
    if (!listed.ok() && listed.error().kind == ErrorKind::kNotFound && !spec.known_url.empty()) {
      // The book we knew is gone (deleted by the user or an admin): find or
      // create it again; nothing we knew of the old one applies.
      spec.known_url.clear();
      if (!opt_.dry_run) ROSTER_RETURN_IF_ERROR(store_.ResetCollection(state.id));
      state.sync_token.clear();
      state.synced_snapshot.clear();
      listed = OpenAndList(spec, state);
    }
    if (!listed.ok()) {
      if (opt_.dry_run && listed.error().kind == ErrorKind::kNotFound && !collection_) {
        // Nothing there yet: the plan is to create everything.
        return PlanAndRun(nullptr, state, {}, in_.desired, 0, 0);
      }
      return listed.take_error();
    }
    Listing listing = std::move(listed).value();
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
    // Everything we knew of the collection, sorted by href, merged with the
    // listing. `recorded` remembers which managed items we knew before this run.
    struct Work {
      ItemState s;
      bool recorded = false;
      bool gone = false;
    };
    ROSTER_ASSIGN_OR_RETURN(auto stored, store_.LoadItems(state.id));
    std::vector<Work> items;
    items.reserve(stored.size() + listing.changed.size());
    for (ItemState& s : stored) {
      bool recorded = !s.key.empty();
      items.push_back(Work{std::move(s), recorded, false});
    }
    stored.clear();
    size_t known_end = items.size();
    auto find = [&](const std::string& href) -> Work* {
      auto it = std::lower_bound(items.begin(), items.begin() + known_end, href,
                                 [](const Work& w, const std::string& h) { return w.s.href < h; });
      return it != items.begin() + known_end && it->s.href == href ? &*it : nullptr;
    };
    std::vector<std::string> removed;
    if (listing.full) {
      for (Work& w : items) w.gone = true;  // until the listing names it
    }
    for (const std::string& href : listing.removed) {
      if (Work* w = find(href)) w->gone = true;
    }
    for (const ItemRef& r : listing.changed) {
      if (Work* w = find(r.href)) {
        w->gone = false;
        w->s.etag_seen = r.etag;
      } else {
        items.push_back(Work{ItemState{r.href, r.etag, "", "", ""}, false, false});
      }
    }
    for (size_t i = 0; i < known_end; ++i) {
      if (items[i].gone) removed.push_back(items[i].s.href);
    }

    // Read what we do not know yet: new items, and items changed since we knew them.
    std::vector<std::string> unknown;
    std::unordered_map<std::string_view, Work*> unknown_at;
    for (Work& w : items) {
      if (!w.gone && !w.s.known()) {
        unknown.push_back(w.s.href);
        unknown_at[w.s.href] = &w;
      }
    }
    std::vector<ItemState> learned;
    if (!unknown.empty()) {
      ROSTER_ASSIGN_OR_RETURN(auto fetched, Retry<std::vector<RemoteItem>>(
                                                [&] { return collection_->Fetch(unknown); }));
      for (RemoteItem& r : fetched) {
        auto it = unknown_at.find(r.href);
        if (it == unknown_at.end()) continue;
        Work& w = *it->second;
        std::string key =
            r.parse_error.empty() && r.tag && r.tag->rule == rule_.name ? r.tag->key : "";
        w.recorded = w.recorded && key == w.s.key;
        w.s.etag = w.s.etag_seen = r.etag;
        w.s.key = std::move(key);
        w.s.hash = r.content_hash;
        if (!r.parse_error.empty()) {
          report_.warnings.push_back(r.href +
                                     " could not be read and is left alone: " + r.parse_error);
        }
        learned.push_back(w.s);
        unknown_at.erase(it);
      }
      for (auto& [href, w] : unknown_at) {  // gone between the listing and the read
        w->gone = true;
        removed.push_back(w->s.href);
      }
    }
    if (!opt_.dry_run) {
      // Persist what the listing and the reads taught us before writing
      // anything, together with the token they belong to.
      ROSTER_RETURN_IF_ERROR(
          store_.ApplyListing(state.id, listing.changed, removed, learned, token_));
    }

    std::vector<CurrentItem> current;
    current.reserve(items.size());
    int64_t managed = 0;
    for (Work& w : items) {
      if (w.gone || w.s.key.empty()) continue;
      ++managed;
      current.push_back({std::move(w.s.href), std::move(w.s.etag), std::move(w.s.key),
                         std::move(w.s.hash), w.recorded});
    }
    items.clear();
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
      for (const Action& a : plan.actions) {
        // Name the person where the source still knows them.
        std::string line = DescribeAction(a);
        const std::string& key =
            std::visit([](const auto& x) -> const std::string& { return x.key; }, a);
        auto it = in_.by_key.find(key);
        if (it != in_.by_key.end() && it->second->contact) {
          line += ": " + it->second->contact->DisplayName();
        }
        report_.planned.push_back(std::move(line));
      }
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
            store_.ApplyListing(state.id, seen, after->removed, confirmed, after->sync_token));
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
      if (!guard && in.fingerprint != in.previous.fingerprint) {
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
