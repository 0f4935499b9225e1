#include "sync/collection_run.h"

#include <algorithm>
#include <cstdint>

#include "core/failpoint.h"
#include "core/personal.h"
#include "kinds/kind.h"
#include "sync/reconcile.h"

namespace roster {

CollectionRun::CollectionRun(const RuleSpec& rule, const RuleSelection& selection, Target& target,
                             StateStore& store, const RunOptions& options, CollectionReport& report,
                             std::string self_key, bool create)
    : rule_(rule),
      in_(selection),
      target_(target),
      store_(store),
      opt_(options),
      report_(report),
      self_key_(std::move(self_key)),
      create_(create) {}

void CollectionRun::Run(const std::string& user) {
  Status st = RunInner(user);
  DrainWarnings();
  if (!st.ok() && st.error().no_such_user) {
    report_.no_such_user = true;
    report_.warnings.push_back(st.error().message + "; skipped");
  } else if (!st.ok()) {
    report_.credential_refused = st.error().credential_refused;
    report_.errors.push_back(st.error().message);
  }
}

// What the collection ignored on the way (an href outside the book, an
// unsafe etag), one warning each.
void CollectionRun::DrainWarnings() {
  if (!collection_) return;
  for (std::string& w : collection_->TakeWarnings()) report_.warnings.push_back(std::move(w));
}

bool CollectionRun::SelfExcluded() const { return !self_key_.empty() && in_.Has(self_key_); }

int64_t CollectionRun::DesiredCount() const {
  return static_cast<int64_t>(in_.Count()) - (SelfExcluded() ? 1 : 0);
}

// The rule's selection without the user's own card; built only when needed.
const std::vector<DesiredItem>& CollectionRun::Desired() {
  if (!SelfExcluded()) return in_.All();
  if (own_desired_.empty()) {
    own_desired_.reserve(in_.All().size());
    for (const DesiredItem& d : in_.All()) {
      if (d.key != self_key_) own_desired_.push_back(d);
    }
  }
  return own_desired_;
}

std::string CollectionRun::Fingerprint(const std::string& selection) const {
  return CollectionFingerprint(selection, self_key_, rule_.adopt);
}

// Nothing known of the collection applies any more (it moved, or it is gone).
Status CollectionRun::ForgetState(CollectionState& state) {
  if (!opt_.dry_run) ROSTER_RETURN_IF_ERROR(store_.ResetCollection(state.id));
  state.sync_token.clear();
  state.synced_snapshot.clear();
  return {};
}

// Opens the collection and lists it from the stored token (from scratch when
// it is not the collection the state describes).
Result<Listing> CollectionRun::OpenAndList(const CollectionSpec& spec, CollectionState& state) {
  collection_.reset();
  ROSTER_ASSIGN_OR_RETURN(collection_, target_.Open(spec, /*create=*/create_ && !opt_.dry_run));
  if (!opt_.dry_run) Failpoint("after-open");
  if (!state.url.empty() && state.url != collection_->id()) {
    // A different collection than last time (recreated or moved): what we
    // knew of the old one says nothing about this one.
    ROSTER_RETURN_IF_ERROR(ForgetState(state));
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

Status CollectionRun::RunInner(const std::string& user) {
  CollectionState state;
  if (opt_.dry_run) {
    auto found = store_.FindCollection(report_.key);
    if (found.ok()) state = *found;
  } else {
    ROSTER_ASSIGN_OR_RETURN(state, store_.OpenCollection(report_.key));
  }
  CollectionSpec spec{user, rule_.display_name, rule_.name, state.url};
  spec.use_default = rule_.use_default_collection;
  spec.category = rule_.category;
  Result<Listing> listed = OpenAndList(spec, state);
  if (!listed.ok() && listed.error().no_such_user) return listed.take_error();
  if (!listed.ok() && listed.error().kind == ErrorKind::kNotFound && !spec.known_url.empty()) {
    // The book we knew is gone (deleted by the user or an admin): find or
    // create it again; nothing we knew of the old one applies.
    spec.known_url.clear();
    ROSTER_RETURN_IF_ERROR(ForgetState(state));
    listed = OpenAndList(spec, state);
  }
  if (!listed.ok()) {
    if (!create_ && listed.error().kind == ErrorKind::kNotFound) {
      return {};  // offboarding a collection that is already gone
    }
    if (opt_.dry_run && listed.error().kind == ErrorKind::kNotFound && !collection_) {
      // Nothing there yet: the plan is to create everything.
      ROSTER_RETURN_IF_ERROR(in_.Load());
      return PlanAndRun(nullptr, state, {}, Desired(), 0, 0);
    }
    return listed.take_error();
  }
  Listing listing = std::move(listed).value();
  token_ = listing.sync_token;
  if (!opt_.dry_run) Failpoint("after-list");

  ModeInput mode{&listing, &state, !in_.previous.fingerprint.empty(), Fingerprint(in_.fingerprint),
                 Fingerprint(in_.previous.fingerprint)};
  switch (ChooseMode(mode)) {
    case CollectionMode::kQuiet:
      report_.counts.unchanged = DesiredCount();
      return Finish(state, /*wrote=*/false);
    case CollectionMode::kIncremental:
      return PlanIncremental(state);
    case CollectionMode::kFull:
      break;
  }
  return PlanFull(state, listing);
}

// The collection is exactly as the last clean run left it; only the keys
// that changed in the source need a decision.
Status CollectionRun::PlanIncremental(const CollectionState& state) {
  ROSTER_ASSIGN_OR_RETURN(auto items, store_.LoadItemsByKeys(state.id, in_.changed_keys));
  // The guards compare at most one update or deletion per changed key (and
  // per managed copy found for it) with the book's managed items: they need
  // the exact count only when it is small enough for that to trip them.
  const auto most = static_cast<int64_t>(std::max(in_.changed_keys.size(), items.size()));
  const int percent = std::min(rule_.max_delete_percent, rule_.max_update_percent);
  // (A guard of 0% trips on any change: its message then needs the count.)
  const int64_t enough = percent <= 0 ? INT64_MAX : (most * 100 + percent - 1) / percent + 1;
  ROSTER_ASSIGN_OR_RETURN(int64_t managed, store_.CountManaged(state.id, enough));
  std::vector<DesiredItem> subset;
  for (const std::string& k : in_.changed_keys) {
    if (k == self_key_) continue;
    if (const DesiredItem* d = in_.Find(k)) subset.push_back(*d);
  }
  std::vector<CurrentItem> current;
  current.reserve(items.size());
  for (ItemState& s : items) {
    fields_by_href_[s.href] = std::move(s.fields);
    current.push_back({s.href, s.etag, s.key, s.hash, true, {}});
  }
  if (!subset.empty()) {
    // The user's own cards, in case a new person is someone they already have.
    ROSTER_ASSIGN_OR_RETURN(auto own, store_.LoadUnmanaged(state.id));
    for (const ItemState& s : own) {
      current.push_back({s.href, s.etag, "", s.hash, true, SplitMatch(s.match)});
    }
  }
  int64_t outside = DesiredCount() - static_cast<int64_t>(subset.size());
  return PlanAndRun(collection_.get(), state, current, subset, managed, outside);
}

Status CollectionRun::PlanFull(const CollectionState& state, const Listing& listing) {
  // The source was not read (nothing changed there), but this collection
  // changed: now its people are needed.
  ROSTER_RETURN_IF_ERROR(in_.Load());
  ROSTER_ASSIGN_OR_RETURN(auto stored, store_.LoadItems(state.id));
  Reconciliation r = ReconcileListing(std::move(stored), listing);
  std::vector<ItemState> learned;
  if (!listing.items.empty() && !r.unknown.empty()) {
    // The listing carried the content (a target that lists with the marker
    // expanded): nothing of it is read again.
    learned = LearnFetched(r, listing.items, rule_.name, report_.warnings, /*rest_gone=*/false);
    for (const RemoteItem& item : listing.items) {
      if (item.tag && item.tag->rule == rule_.name) listed_.emplace(item.href, item);
    }
  }
  if (!r.unknown.empty()) {
    // Read what we do not know yet: new items, and items changed since we knew them.
    ROSTER_ASSIGN_OR_RETURN(auto fetched, Retry<std::vector<RemoteItem>>(
                                              [&] { return collection_->Fetch(r.unknown); }));
    std::vector<ItemState> more = LearnFetched(r, std::move(fetched), rule_.name, report_.warnings);
    learned.insert(learned.end(), std::make_move_iterator(more.begin()),
                   std::make_move_iterator(more.end()));
  }
  if (!opt_.dry_run) {
    // Persist what the listing and the reads taught us before writing
    // anything, together with the token they belong to, and in the same
    // commit forget that the book matched a selection: until this pass
    // finishes, the next run must plan it in full again.
    ROSTER_RETURN_IF_ERROR(
        store_.ApplyListing(state.id, listing.changed, r.removed, learned, token_, std::string()));
    Failpoint("after-apply-listing");
  }
  int64_t managed = 0;
  std::vector<CurrentItem> current = CurrentItems(std::move(r), &managed, &fields_by_href_);
  return PlanAndRun(collection_.get(), state, current, Desired(), managed, 0);
}

Status CollectionRun::PlanAndRun(Collection* collection, const CollectionState& state,
                                 const std::vector<CurrentItem>& current,
                                 const std::vector<DesiredItem>& desired, int64_t managed,
                                 int64_t outside) {
  PlanInput input;
  input.desired = &desired;
  input.current = &current;
  input.preferred_name = [&](const std::string& k) {
    return target_.ResourceName(ManagedTag{rule_.name, k});
  };
  input.managed_total = managed;
  input.unchanged_outside = outside;
  input.max_delete_percent = rule_.max_delete_percent;
  input.max_update_percent = rule_.max_update_percent;
  input.force = opt_.force;
  input.adopt = rule_.adopt;
  input.source_changed = [this](const std::string& key) {
    return std::binary_search(in_.changed_keys.begin(), in_.changed_keys.end(), key);
  };
  Plan plan = PlanCollection(input);
  if (!plan.guard.empty()) return StopAtGuard(state, plan);
  if (opt_.dry_run || collection == nullptr) {
    Describe(plan);
    return {};
  }
  return Execute(collection, state, plan);
}

Status CollectionRun::StopAtGuard(const CollectionState& state, const Plan& plan) {
  report_.guard_tripped = true;
  report_.counts = plan.Predicted();
  // What a full pass learned is stored, the deletions are not done: the book
  // no longer matches any selection, and the next run must plan it in full
  // again (else it would look quiet, and --force would find nothing).
  if (!opt_.dry_run) ROSTER_RETURN_IF_ERROR(store_.SetSyncedSnapshot(state.id, ""));
  return MakeError(ErrorKind::kAborted,
                   plan.guard_name + ": rule " + rule_.name + " " + plan.guard + " in " +
                       report_.key.user + "'s \"" + rule_.display_name +
                       "\"; nothing was changed there (use --force if this is intended)");
}

// A dry run: the predicted counts and the actions, described.
void CollectionRun::Describe(const Plan& plan) {
  report_.counts = plan.Predicted();
  std::vector<const UpdateAction*> updates;
  size_t first = report_.planned.size();
  for (const Action& a : plan.actions) {
    if (report_.planned.size() >= opt_.max_planned) {
      ++report_.planned_more;
      continue;
    }
    // Name the person where the source still knows them.
    PlannedAction p{DescribeAction(a), std::visit([](const auto& x) { return x.key; }, a),
                    DecisionOf(a)};
    const DesiredItem* d = in_.Find(p.key);
    if (d && d->body) p.text += ": " + Personal(d->key, KindOf(*d->body).Title(*d->body));
    p.why.detail = Detail(a);
    report_.planned.push_back(std::move(p));
    const auto* u = std::get_if<UpdateAction>(&a);
    updates.push_back(u);
  }
  if (opt_.explain && collection_) {
    std::vector<PlannedAction> planned(report_.planned.begin() + first, report_.planned.end());
    Explain(planned, updates);
    std::move(planned.begin(), planned.end(), report_.planned.begin() + first);
  }
}

// What this run knows beyond the planner: which source, which filter.
std::string CollectionRun::Detail(const Action& a) const {
  const Decision& why = DecisionOf(a);
  const std::string& key = std::visit([](const auto& x) -> const std::string& { return x.key; }, a);
  switch (why.why) {
    case Why::kNew:
    case Why::kTakeOver:
    case Why::kUsersOwn:
      if (rule_.sources.size() == 1) return "from source " + rule_.sources.front();
      return "from source " + key.substr(0, key.find(':'));
    case Why::kLeft:
      if (key == self_key_) return "the user's own person, never sent to them";
      if (std::string why_out = in_.WhyLeftOut(key); !why_out.empty()) return why_out;
      return in_.Loaded() || in_.partial ? "no longer in the source" : "";
    default:
      return "";
  }
}

// Reads the items the updates would write over (in batches) and records, per
// update, the fields that change and those the field rules keep as they are.
void CollectionRun::Explain(std::vector<PlannedAction>& planned,
                            const std::vector<const UpdateAction*>& updates) {
  std::vector<std::string> hrefs;
  for (const UpdateAction* u : updates) {
    if (u) hrefs.push_back(u->href);
  }
  std::unordered_map<std::string, RemoteItem> remote;
  constexpr size_t kBatch = 100;
  for (size_t i = 0; i < hrefs.size(); i += kBatch) {
    std::vector<std::string> chunk(
        hrefs.begin() + static_cast<std::ptrdiff_t>(i),
        hrefs.begin() + static_cast<std::ptrdiff_t>(std::min(hrefs.size(), i + kBatch)));
    auto items = Retry<std::vector<RemoteItem>>([&] { return collection_->Fetch(chunk); });
    if (!items.ok()) return;  // the plan stands without the field-level detail
    for (RemoteItem& item : *items) {
      std::string href = item.href;
      remote.emplace(std::move(href), std::move(item));
    }
  }
  for (size_t i = 0; i < planned.size(); ++i) {
    const UpdateAction* u = updates[i];
    const DesiredItem* want = u ? in_.Find(u->key) : nullptr;
    auto it = u ? remote.find(u->href) : remote.end();
    if (!want || it == remote.end() || !it->second.parse_error.empty()) continue;
    const ItemKind& kind = KindOf(*want->body);
    ItemBody write = *want->body;
    if (!rule_.fields.empty()) {
      auto before = DecodeFieldMemory(fields_by_href_[u->href]);
      FieldMemory after;
      write = kind.Merge(*want->body, &it->second.body, rule_.fields,
                         before.ok() ? *before : FieldMemory(), &after);
    }
    Decision& why = planned[i].why;
    why.changes = kind.Diff(it->second.body, write);
    std::string kept;
    for (const FieldChange& c : kind.Diff(it->second.body, *want->body)) {
      bool written = std::any_of(why.changes.begin(), why.changes.end(),
                                 [&](const FieldChange& w) { return w.field == c.field; });
      if (!written) kept += (kept.empty() ? "" : ", ") + c.field;
    }
    if (!kept.empty()) {
      why.detail += (why.detail.empty() ? "" : "; ") + std::string("the field rules keep ") + kept;
    }
  }
}

Status CollectionRun::Execute(Collection* collection, const CollectionState& state,
                              const Plan& plan) {
  ExecuteContext ctx;
  ctx.collection = collection;
  ctx.store = &store_;
  ctx.collection_id = state.id;
  ctx.rule = rule_.name;
  ctx.desired = [&](const std::string& k) { return in_.Find(k); };
  ctx.resource_name = [&](const std::string& k) {
    return target_.ResourceName(ManagedTag{rule_.name, k});
  };
  if (!rule_.fields.empty()) {
    const FieldPolicy& policy = rule_.fields;
    ctx.prepare = [&policy, this](const DesiredItem& want, const RemoteItem* remote,
                                  const std::string& fields) {
      auto before = DecodeFieldMemory(fields);
      FieldMemory after;
      const ItemKind& kind = KindOf(*want.body);
      ItemBody merged = kind.Merge(*want.body, remote ? &remote->body : nullptr, policy,
                                   before.ok() ? *before : FieldMemory(), &after);
      return PreparedWrite{target_.Project(merged), EncodeFieldMemory(after)};
    };
    ctx.stored_fields = [this](const std::string& href) {
      auto it = fields_by_href_.find(href);
      return it == fields_by_href_.end() ? std::string() : it->second;
    };
  }
  ctx.known = [this](const std::string& href) -> const RemoteItem* {
    auto it = listed_.find(href);
    return it == listed_.end() ? nullptr : &it->second;
  };
  ctx.retry = opt_.retry;
  ctx.clock = opt_.clock;
  ctx.limiter = opt_.limiter;
  ExecuteResult result = ExecutePlan(plan, ctx);
  report_.stats = result.stats;
  report_.credential_refused = result.credential_refused;
  report_.counts = result.counts;
  report_.counts.unchanged += plan.unchanged;
  report_.errors.insert(report_.errors.end(), result.errors.begin(), result.errors.end());
  report_.conflicts = result.conflicts;
  written_ = std::move(result.written);
  deleted_ = std::move(result.deleted);
  return Finish(state, !written_.empty() || !deleted_.empty());
}

// After writing, list once more from the token we started with (see
// ConfirmWrites). Then the next quiet run has an empty delta and reads nothing.
Status CollectionRun::Finish(const CollectionState& state, bool wrote) {
  if (opt_.dry_run) return {};
  DrainWarnings();  // a collection that ignored something is not clean
  bool clean = report_.errors.empty() && report_.counts.errors == 0 &&
               report_.counts.conflicts == 0 && report_.warnings.empty();
  if (wrote && !token_.empty()) {
    Failpoint("before-confirm-list");
    auto after = Retry<Listing>([&] { return collection_->List(token_); });
    if (after.ok()) {
      Confirmation c = ConfirmWrites(written_, deleted_, *after);
      report_.errors.insert(report_.errors.end(), c.errors.begin(), c.errors.end());
      clean = clean && c.clean;
      Failpoint("after-confirm-list");
      // The new token and what the book now matches, in one commit.
      token_ = after->sync_token;
      return store_.ApplyListing(state.id, c.seen, c.removed, c.confirmed, token_,
                                 clean ? Fingerprint(in_.fingerprint) : std::string());
    }
    clean = false;  // the next run lists from the old token; nothing is lost
  }
  const std::string token = token_ != state.sync_token ? token_ : std::string();
  return store_.ApplyListing(state.id, {}, {}, {}, token,
                             clean ? Fingerprint(in_.fingerprint) : std::string());
}

}  // namespace roster
