#include "app/engine.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/failpoint.h"
#include "core/hash.h"
#include "core/text.h"

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
  // "source NUL key" -> the person's key in this rule (differs when merged).
  std::unordered_map<std::string, std::string> origin;
  // Lower-cased e-mail address -> key, to recognise a target user's own card.
  std::unordered_map<std::string, std::string> by_email;
  // Lower-cased account name (uid, sAMAccountName) -> key, likewise.
  std::unordered_map<std::string, std::string> by_account;

  // Set when the sources' versions matched the last snapshot's, so that the
  // people were not read: `fingerprint` is the previous one, and the members
  // above stay empty until a collection that changed on the server needs them.
  struct Loader {
    std::mutex mu;
    std::atomic<bool> done{false};
    Status status;
    std::function<Status()> load;
  };
  std::shared_ptr<Loader> loader;

  bool Loaded() const { return !loader || loader->done.load(); }
  Status Load() const {
    if (!loader) return {};
    std::lock_guard lock(loader->mu);
    if (!loader->done.load()) {
      loader->status = loader->load();
      loader->done.store(true);
    }
    return loader->status;
  }
  size_t Count() const { return Loaded() ? desired.size() : previous.entries.size(); }
  bool Has(const std::string& key) const {
    if (Loaded()) return by_key.count(key) > 0;
    auto it =
        std::lower_bound(previous.entries.begin(), previous.entries.end(), key,
                         [](const SnapshotEntry& e, const std::string& k) { return e.key < k; });
    return it != previous.entries.end() && it->key == key;
  }
};

std::vector<std::string> LookupField(const SourceRecord& record, std::string_view field) {
  if (IsContactField(field)) return GetContactField(record.contact, field);
  if (field == "phone") {  // any phone number, whatever its type
    std::vector<std::string> out;
    for (const TypedValue& p : record.contact.phones) out.push_back(p.value);
    return out;
  }
  if (field == "any_email") {
    std::vector<std::string> out;
    for (const TypedValue& e : record.contact.emails) out.push_back(e.value);
    return out;
  }
  auto it = record.attributes.find(std::string(field));
  if (it != record.attributes.end()) return it->second;
  return {};
}

// One safe path segment: not empty, not . or .., no slash, no control character.
bool IsSafeAccountName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (unsigned char c : name) {
    if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::string LowerEmail(std::string_view email) { return text::AsciiLower(text::Trim(email)); }

// Hashes of a contact's e-mail addresses: how a user's own card for a person
// is recognised without keeping the addresses themselves in the state.
std::vector<std::string> MatchHashes(const Contact& contact) {
  std::vector<std::string> out;
  for (const TypedValue& e : contact.emails) {
    std::string lower = LowerEmail(e.value);
    if (!lower.empty()) out.push_back(HashHex("roster-match\n" + lower).substr(0, 16));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string JoinMatch(const std::vector<std::string>& match) {
  std::string out;
  for (const std::string& m : match) {
    if (!out.empty()) out.push_back(',');
    out += m;
  }
  return out;
}

std::vector<std::string> SplitMatch(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < joined.size()) {
    size_t comma = joined.find(',', start);
    if (comma == std::string::npos) comma = joined.size();
    if (comma > start) out.push_back(joined.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Attributes that name a person's account: a target user listed by account
// name is recognised by them.
constexpr const char* kAccountAttributes[] = {"uid", "sAMAccountName"};

// One source's people as a rule sees them.
struct SourcePeople {
  std::string name;
  const std::vector<SourceRecord>* records = nullptr;
};

// Several sources into one list of people: records that share an e-mail
// address are one person; for each field the first source (in priority
// order) with a value wins. Keys become "source:key" of the first record.
std::vector<SourceRecord> MergeSources(const std::vector<SourcePeople>& sources,
                                       std::unordered_map<std::string, std::string>* origin) {
  std::vector<SourceRecord> people;
  std::vector<std::vector<bool>> has_source;  // per person, per source index
  std::unordered_map<std::string, size_t> by_email;
  for (size_t si = 0; si < sources.size(); ++si) {
    for (const SourceRecord& r : *sources[si].records) {
      size_t found = people.size();
      for (const TypedValue& e : r.contact.emails) {
        auto it = by_email.find(LowerEmail(e.value));
        if (it != by_email.end() && !has_source[it->second][si]) {
          found = it->second;
          break;
        }
      }
      if (found == people.size()) {
        SourceRecord p = r;
        p.key = sources[si].name + ":" + r.key;
        people.push_back(std::move(p));
        has_source.emplace_back(sources.size(), false);
      } else {
        SourceRecord& p = people[found];
        for (std::string_view field : ContactFieldNames()) {
          if (!GetContactField(p.contact, field).empty()) continue;
          for (const std::string& v : GetContactField(r.contact, field)) {
            SetContactField(p.contact, field, v);
          }
        }
        if (!p.contact.photo && r.contact.photo) p.contact.photo = r.contact.photo;
        for (const auto& [name, values] : r.attributes) p.attributes.emplace(name, values);
      }
      has_source[found][si] = true;
      (*origin)[sources[si].name + std::string(1, '\0') + r.key] = people[found].key;
      for (const TypedValue& e : r.contact.emails) {
        by_email.emplace(LowerEmail(e.value), found);
      }
    }
  }
  return people;
}

Result<RuleInput> SelectRule(const RuleSpec& rule, const std::vector<SourcePeople>& sources) {
  RuleInput in;
  std::vector<SourceRecord> merged;
  const std::vector<SourceRecord>* records = sources.front().records;
  if (sources.size() > 1) {
    merged = MergeSources(sources, &in.origin);
    records = &merged;
  } else {
    for (const SourceRecord& r : *records) {
      in.origin[sources.front().name + std::string(1, '\0') + r.key] = r.key;
    }
  }
  // Field rules change what is written for the same source content: they are
  // part of every desired item's hash, so that editing them rewrites (or
  // re-merges) each item once.
  const std::string policy = rule.fields.empty() ? std::string() : rule.fields.Fingerprint();
  in.desired.reserve(records->size());
  for (const SourceRecord& r : *records) {
    if (!rule.filter.Matches([&](std::string_view f) { return LookupField(r, f); })) continue;
    auto contact = std::make_shared<const Contact>(r.contact);
    std::string hash = ContentHash(*contact);
    if (!policy.empty()) hash = HashHex(hash + "\n" + policy);
    in.desired.push_back(DesiredItem{r.key, std::move(hash), contact, MatchHashes(*contact)});
    for (const char* account : kAccountAttributes) {
      auto it = r.attributes.find(account);
      if (it == r.attributes.end()) continue;
      for (const std::string& v : it->second) {
        // Two people with one account name: the smaller key, whatever the read order.
        auto [at, fresh] = in.by_account.emplace(text::AsciiLower(v), r.key);
        if (!fresh && r.key < at->second) at->second = r.key;
      }
    }
  }
  std::sort(in.desired.begin(), in.desired.end(),
            [](const DesiredItem& a, const DesiredItem& b) { return a.key < b.key; });
  for (size_t i = 1; i < in.desired.size(); ++i) {
    if (in.desired[i].key == in.desired[i - 1].key) {
      return MakeError(ErrorKind::kInvalidData,
                       "rule " + rule.name + ": source " + sources.front().name +
                           " has two people with the key \"" + in.desired[i].key + "\"");
    }
  }
  for (const DesiredItem& d : in.desired) {
    in.by_key.emplace(d.key, &d);
    for (const TypedValue& e : d.contact->emails) in.by_email.emplace(LowerEmail(e.value), d.key);
  }
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
  // `self_key`: the target user's own person, left out of their collection.
  // `create`: false when offboarding (a missing collection stays missing).
  CollectionRun(const RuleSpec& rule, const RuleInput& input, Target& target, StateStore& store,
                const RunOptions& options, CollectionReport& report, std::string self_key,
                bool create = true)
      : rule_(rule),
        in_(input),
        target_(target),
        store_(store),
        opt_(options),
        report_(report),
        self_key_(std::move(self_key)),
        create_(create) {}

  void Run(const std::string& user) {
    Status st = RunInner(user);
    DrainWarnings();
    if (!st.ok()) {
      report_.credential_refused = st.error().credential_refused;
      report_.errors.push_back(st.error().message);
    }
  }

 private:
  template <typename T>
  Result<T> Retry(const std::function<Result<T>()>& op) {
    return WithRetries<T>(opt_.retry, *opt_.clock, op);
  }

  // What the collection ignored on the way (an href outside the book, an
  // unsafe etag), one warning each.
  void DrainWarnings() {
    if (!collection_) return;
    for (std::string& w : collection_->TakeWarnings()) report_.warnings.push_back(std::move(w));
  }

  bool SelfExcluded() const { return !self_key_.empty() && in_.Has(self_key_); }

  int64_t DesiredCount() const {
    return static_cast<int64_t>(in_.Count()) - (SelfExcluded() ? 1 : 0);
  }

  // The rule's selection without the user's own card; built only when needed.
  const std::vector<DesiredItem>& Desired() {
    if (!SelfExcluded()) return in_.desired;
    if (own_desired_.empty()) {
      own_desired_.reserve(in_.desired.size());
      for (const DesiredItem& d : in_.desired) {
        if (d.key != self_key_) own_desired_.push_back(d);
      }
    }
    return own_desired_;
  }

  // What a collection records as matched: the rule's selection fingerprint,
  // specialised by what makes this collection's content differ from it.
  std::string Fingerprint(const std::string& selection) const {
    if (selection.empty()) return selection;
    if (self_key_.empty() && rule_.adopt == AdoptMode::kNever) return selection;
    return HashHex(selection + "\nself " + self_key_ + "\nadopt " +
                   (rule_.adopt == AdoptMode::kMerge ? "merge" : "never"));
  }

  // Opens the collection and lists it from the stored token (from scratch when
  // it is not the collection the state describes).
  Result<Listing> OpenAndList(const CollectionSpec& spec, CollectionState& state) {
    collection_.reset();
    ROSTER_ASSIGN_OR_RETURN(collection_, target_.Open(spec, /*create=*/create_ && !opt_.dry_run));
    if (!opt_.dry_run) Failpoint("after-open");
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

    bool quiet = !listing.full && listing.changed.empty() && listing.removed.empty() &&
                 !state.sync_token.empty() && !in_.previous.fingerprint.empty();
    if (quiet && state.synced_snapshot == Fingerprint(in_.fingerprint)) {
      // Nothing changed on either side since a clean run: not one item is read.
      report_.counts.unchanged = DesiredCount();
      return Finish(state, /*wrote=*/false);
    }
    if (quiet && state.synced_snapshot == Fingerprint(in_.previous.fingerprint)) {
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
      if (k == self_key_) continue;
      auto it = in_.by_key.find(k);
      if (it != in_.by_key.end()) subset.push_back(*it->second);
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

  Status PlanFull(const CollectionState& state, const Listing& listing) {
    // The source was not read (nothing changed there), but this collection
    // changed: now its people are needed.
    ROSTER_RETURN_IF_ERROR(in_.Load());
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
        if (key != w.s.key) w.s.fields.clear();  // what we wrote belongs to another item
        w.s.etag = w.s.etag_seen = r.etag;
        w.s.key = std::move(key);
        w.s.hash = r.content_hash;
        // Someone's own card (not another rule's): remember how to recognise it.
        w.s.match = w.s.key.empty() && r.parse_error.empty() && !r.tag
                        ? JoinMatch(MatchHashes(r.contact))
                        : std::string();
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
      // anything, together with the token they belong to, and in the same
      // commit forget that the book matched a selection: until this pass
      // finishes, the next run must plan it in full again.
      ROSTER_RETURN_IF_ERROR(
          store_.ApplyListing(state.id, listing.changed, removed, learned, token_, std::string()));
      Failpoint("after-apply-listing");
    }

    std::vector<CurrentItem> current;
    current.reserve(items.size());
    int64_t managed = 0;
    for (Work& w : items) {
      if (w.gone) continue;
      if (w.s.key.empty()) {
        if (!w.s.match.empty()) {
          current.push_back({std::move(w.s.href), std::move(w.s.etag), "", std::move(w.s.hash),
                             true, SplitMatch(w.s.match)});
        }
        continue;
      }
      ++managed;
      fields_by_href_[w.s.href] = std::move(w.s.fields);
      current.push_back({std::move(w.s.href),
                         std::move(w.s.etag),
                         std::move(w.s.key),
                         std::move(w.s.hash),
                         w.recorded,
                         {}});
    }
    items.clear();
    return PlanAndRun(collection_.get(), state, current, Desired(), managed, 0);
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
    input.max_update_percent = rule_.max_update_percent;
    input.force = opt_.force;
    input.adopt = rule_.adopt;
    Plan plan = PlanCollection(input);
    if (!plan.guard.empty()) {
      report_.guard_tripped = true;
      report_.counts = plan.Predicted();
      // What a full pass learned is stored, the deletions are not done: the
      // book no longer matches any selection, and the next run must plan it
      // in full again (else it would look quiet, and --force would find nothing).
      if (!opt_.dry_run) ROSTER_RETURN_IF_ERROR(store_.SetSyncedSnapshot(state.id, ""));
      return MakeError(ErrorKind::kAborted,
                       plan.guard_name + ": rule " + rule_.name + " " + plan.guard + " in " +
                           report_.key.user + "'s \"" + rule_.display_name +
                           "\"; nothing was changed there (use --force if this is intended)");
    }
    if (opt_.dry_run || collection == nullptr) {
      report_.counts = plan.Predicted();
      for (const Action& a : plan.actions) {
        if (report_.planned.size() >= opt_.max_planned) {
          ++report_.planned_more;
          continue;
        }
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
    if (!rule_.fields.empty()) {
      const FieldPolicy& policy = rule_.fields;
      ctx.prepare = [&policy](const DesiredItem& want, const RemoteItem* remote,
                              const std::string& fields) {
        auto before = DecodeFieldMemory(fields);
        FieldMemory after;
        Contact merged = MergeContact(*want.contact, remote ? &remote->contact : nullptr, policy,
                                      before.ok() ? *before : FieldMemory(), &after);
        return PreparedWrite{std::move(merged), EncodeFieldMemory(after)};
      };
      ctx.stored_fields = [this](const std::string& href) {
        auto it = fields_by_href_.find(href);
        return it == fields_by_href_.end() ? std::string() : it->second;
      };
    }
    ctx.retry = opt_.retry;
    ctx.clock = opt_.clock;
    ExecuteResult result = ExecutePlan(plan, ctx);
    report_.credential_refused = result.credential_refused;
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
    DrainWarnings();  // a collection that ignored something is not clean
    bool clean = report_.errors.empty() && report_.counts.errors == 0 &&
                 report_.counts.conflicts == 0 && report_.warnings.empty();
    if (wrote && !token_.empty()) {
      Failpoint("before-confirm-list");
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
        // A write the server acknowledged but does not list is not done: its
        // record goes, and the next run (a full pass) finds out what is there.
        std::vector<std::string> removed = after->removed;
        std::unordered_set<std::string> listed;
        for (const ItemRef& r : after->changed) listed.insert(r.href);
        std::unordered_set<std::string> gone_after(after->removed.begin(), after->removed.end());
        for (const ItemState& w : written_) {
          if (listed.count(w.href) || gone_after.count(w.href) || gone.count(w.href)) continue;
          report_.errors.push_back("the server acknowledged writing " + w.href +
                                   " but does not list it; it is checked again next run");
          removed.push_back(w.href);
          clean = false;
        }
        Failpoint("after-confirm-list");
        // The new token and what the book now matches, in one commit.
        token_ = after->sync_token;
        return store_.ApplyListing(state.id, seen, removed, confirmed, token_,
                                   clean ? Fingerprint(in_.fingerprint) : std::string());
      }
    }
    const std::string token = token_ != state.sync_token ? token_ : std::string();
    return store_.ApplyListing(state.id, {}, {}, {}, token,
                               clean ? Fingerprint(in_.fingerprint) : std::string());
  }

  const RuleSpec& rule_;
  const RuleInput& in_;
  Target& target_;
  StateStore& store_;
  const RunOptions& opt_;
  CollectionReport& report_;
  const std::string self_key_;
  const bool create_;
  std::vector<DesiredItem> own_desired_;
  std::unordered_map<std::string, std::string> fields_by_href_;
  std::unique_ptr<Collection> collection_;
  std::string token_;
  std::vector<ItemState> written_;
  std::vector<std::string> deleted_;
};

}  // namespace

Engine::Engine(EngineConfig config, StateStore& store)
    : config_(std::move(config)), store_(store) {}

namespace {

// A target user of one rule, as resolved for this run.
struct TargetUser {
  std::string name;
  std::string self_key;
};

// Everything one rule needs before its collections are worked on.
struct RuleWork {
  const RuleSpec* rule = nullptr;
  TargetEntry* target = nullptr;
  RuleInput in;
  std::vector<TargetUser> users;
  // Collections the state knows for the rule whose user no longer receives it.
  std::vector<std::pair<CollectionKey, CollectionState>> leaving;
  bool offboard_guard = false;
  std::string version;                           // of the sources and configuration; see version_of
  std::map<std::string, std::string> self_keys;  // listed user -> own person, see Snapshot
};

}  // namespace

RunReport Engine::Run(const RunOptions& options_in) {
  RunOptions options = options_in;
  if (!options.clock) options.clock = &RealClock();
  if (!options.deadline) options.deadline = config_.deadline;
  options.retry.deadline = options.deadline;
  RunReport report;
  report.warnings = config_.warnings;
  for (std::string& w : store_.TakeWarnings()) report.warnings.push_back(std::move(w));
  int64_t run_id = 0;
  if (!options.dry_run) {
    auto run = store_.BeginRun("sync");
    if (!run.ok()) {
      report.errors.push_back(run.error().message);
      return report;
    }
    run_id = *run;
  }

  // Each source is read, transformed and filtered once per run, whatever the
  // number of rules using it.
  std::map<std::string, Result<std::vector<SourceRecord>>> read;
  std::mutex read_mu;  // a deferred read happens on a worker thread
  auto records_of = [&](const std::string& name) -> const Result<std::vector<SourceRecord>>& {
    std::lock_guard lock(read_mu);
    auto it = read.find(name);
    if (it != read.end()) return it->second;
    SourceEntry& entry = config_.sources.at(name);
    auto records = entry.source->ReadAll();
    for (const std::string& w : entry.source->Warnings()) report.warnings.push_back(w);
    if (records.ok()) {
      size_t before = records->size();
      if (!entry.exclude.text().empty()) {
        std::erase_if(*records, [&](const SourceRecord& r) {
          return entry.exclude.Matches([&](std::string_view f) { return LookupField(r, f); });
        });
      }
      TransformReport tr;
      TransformRecords(entry.transform, *records, tr, name);
      // From here on only the rules' filters read raw attributes: keep just
      // the ones they name (a directory entry carries dozens).
      std::set<std::string> wanted(std::begin(kAccountAttributes), std::end(kAccountAttributes));
      for (const RuleSpec& rule : config_.rules) {
        if (std::find(rule.sources.begin(), rule.sources.end(), name) == rule.sources.end())
          continue;
        for (const std::string& f : rule.filter.Fields()) wanted.insert(f);
      }
      for (SourceRecord& r : *records) {
        std::erase_if(r.attributes, [&](const auto& kv) { return !wanted.count(kv.first); });
      }
      report.warnings.insert(report.warnings.end(), tr.warnings.begin(), tr.warnings.end());
      std::string notice = "source " + name + ": " + std::to_string(before) + " read";
      if (before != records->size()) {
        notice += ", " + std::to_string(before - records->size()) + " excluded";
      }
      if (tr.phones_normalised) {
        notice += ", " + std::to_string(tr.phones_normalised) + " phone numbers normalised";
      }
      if (tr.photos_resampled) {
        notice += ", " + std::to_string(tr.photos_resampled) + " photos made smaller";
      }
      if (tr.photos_dropped)
        notice += ", " + std::to_string(tr.photos_dropped) + " photos left out";
      if (tr.fields_hidden) {
        notice += ", " + std::to_string(tr.fields_hidden) + " fields hidden by opt-out";
      }
      report.notices.push_back(notice);
    }
    return read.emplace(name, std::move(records)).first->second;
  };

  // A cheap fingerprint of what a rule would read: each source's Version()
  // and everything in the configuration that shapes the selection. Empty
  // when a source cannot tell, or it failed (the full read then reports why).
  std::map<std::string, std::string> versions;
  auto version_of = [&](const RuleSpec& rule) {
    std::string material = "rule\n" + rule.filter.text() + "\n" +
                           (rule.fields.empty() ? "" : rule.fields.Fingerprint()) + "\n";
    for (const std::string& name : rule.sources) {
      auto it = versions.find(name);
      if (it == versions.end()) {
        auto v = config_.sources.at(name).source->Version();
        it = versions.emplace(name, v.ok() ? *v : std::string()).first;
      }
      if (it->second.empty()) return std::string();
      const SourceEntry& e = config_.sources.at(name);
      const TransformOptions& t = e.transform;
      material += name + "\n" + it->second + "\n" + e.exclude.text() + "\n" + t.default_region +
                  "\n" + t.region_attribute + "\n" + PhoneFormatName(t.phone_format) + "\n" +
                  std::to_string(t.photo_max_bytes) + "\n" + std::to_string(t.photo_max_pixels) +
                  "\n" + t.opt_out_attribute + "\n";
    }
    return HashHex(material);
  };

  // Reads a rule's sources and selects its people into `in`.
  // A deferred read keeps the fingerprint the collections were compared
  // with: other threads read it meanwhile. Had the sources changed after all
  // (between the version check and the read), the next run sees a new version.
  auto read_rule = [&](const RuleSpec& rule, RuleInput& in, bool deferred) -> Status {
    std::vector<SourcePeople> sources;
    for (const std::string& name : rule.sources) {
      const auto& records = records_of(name);
      if (!records.ok()) {
        return MakeError(
            records.error().kind,
            "rule " + rule.name + ": " + records.error().message + "; no address book was changed");
      }
      sources.push_back(SourcePeople{name, &*records});
    }
    auto selected = SelectRule(rule, sources);
    if (!selected.ok()) {
      return MakeError(selected.error().kind,
                       selected.error().message + "; no address book was changed");
    }
    RuleInput& got = *selected;
    if (deferred && got.fingerprint != in.fingerprint) {
      // The version said "unchanged" but the people differ (a change the
      // version cannot see, or a short read): nothing is planned on it.
      // The next run reads afresh and the guards look at it.
      return MakeError(ErrorKind::kTransient,
                       "rule " + rule.name +
                           ": the sources changed during the run; they are read again next run");
    }
    in.desired = std::move(got.desired);
    in.by_key.clear();
    for (const DesiredItem& d : in.desired) in.by_key.emplace(d.key, &d);
    in.origin = std::move(got.origin);
    in.by_email = std::move(got.by_email);
    in.by_account = std::move(got.by_account);
    if (!deferred) in.fingerprint = got.fingerprint;
    return {};
  };

  // Phase 1: per rule, read and select the people, resolve who receives them,
  // and check the guards. Nothing is written yet.
  std::vector<RuleWork> work;
  work.reserve(config_.rules.size());
  for (const RuleSpec& rule : config_.rules) {
    work.emplace_back();
    RuleWork& w = work.back();
    w.rule = &rule;
    w.target = &config_.targets.at(rule.target);
    RuleInput& in = w.in;
    auto drop = [&](std::string message) {
      report.errors.push_back(std::move(message));
      work.pop_back();
    };

    auto previous = store_.LoadSnapshot(rule.name);
    if (!previous.ok()) {
      drop(previous.error().message);
      continue;
    }
    in.previous = std::move(previous).value();

    // Who receives the rule.
    struct Candidate {
      std::string name;
      std::string self;  // the person's key, when the directory told it
    };
    std::vector<Candidate> candidates;
    if (rule.users && !rule.users->directory.empty()) {
      const UserSelection& sel = *rule.users;
      Directory* dir = config_.directories.at(sel.directory);
      auto found = sel.group.empty() ? dir->SearchUsers(sel.query, sel.attribute)
                                     : dir->GroupMembers(sel.group, sel.attribute);
      if (!found.ok()) {
        drop("rule " + rule.name + ": target users: " + found.error().message +
             "; no address book was changed");
        continue;
      }
      std::set<std::string> seen;
      size_t ineligible = 0;
      for (const DirectoryUser& u : *found) {
        if (u.values.empty() || u.values.front().empty()) {
          report.warnings.push_back("rule " + rule.name + ": " + u.dn + " has no " + sel.attribute +
                                    " and receives nothing");
          continue;
        }
        if (!IsSafeAccountName(u.values.front())) {
          // It becomes a path segment of the user's home on the target.
          report.warnings.push_back("rule " + rule.name + ": " + u.dn + " has " + sel.attribute +
                                    " \"" + u.values.front() +
                                    "\", which cannot name an account (empty, . or .., a slash "
                                    "or a control character); it receives nothing");
          continue;
        }
        if (!sel.exclude.text().empty() && sel.exclude.Matches([&](std::string_view f) {
              auto it = u.attributes.find(std::string(f));
              return it == u.attributes.end() ? std::vector<std::string>() : it->second;
            })) {
          ++ineligible;  // a disabled account: as if they had left the rule
          continue;
        }
        if (!seen.insert(text::AsciiLower(u.values.front())).second) continue;
        candidates.push_back({u.values.front(), u.key});
      }
      if (ineligible > 0) {
        report.notices.push_back("rule " + rule.name + ": " + std::to_string(ineligible) +
                                 " target users left out by users_exclude (" + sel.exclude.text() +
                                 ")");
      }
      // A person's key is the directory's own when the rule reads only it.
      if (!(rule.sources.size() == 1 && rule.sources.front() == sel.directory)) {
        for (Candidate& c : candidates) c.self = sel.directory + std::string(1, '\0') + c.self;
      }
    } else {
      for (const std::string& name : rule.users ? rule.users->fixed : w.target->users) {
        candidates.push_back({name, ""});
      }
    }
    // Listed users are recognised by their card's e-mail address or their
    // account name, which needs the people read — unless the last read's
    // answer is stored: who a user is depends only on the people, and the
    // sources' version covers them.
    auto resolved_from_people = [&](const Candidate& c) {
      return !rule.include_self && (c.self.empty() || c.self.find('\0') != std::string::npos);
    };
    bool needs_people = false;
    for (const Candidate& c : candidates) {
      needs_people =
          needs_people || (resolved_from_people(c) && !in.previous.self_keys.count(c.name));
    }

    // Nothing changed in the sources since the last snapshot: do not read
    // them unless a collection turns out to need the people. The version is
    // taken even when the people are read anyway (a new listed user), so
    // that the next run can skip the read.
    const std::string version = version_of(rule);
    w.version = version;
    bool deferred = !options.force && !needs_people && !version.empty() &&
                    version == in.previous.source_version && !in.previous.fingerprint.empty();
    if (deferred) {
      in.fingerprint = in.previous.fingerprint;
      in.loader = std::make_shared<RuleInput::Loader>();
      in.loader->load = [&read_rule, &rule, &in]() { return read_rule(rule, in, true); };
      report.notices.push_back("rule " + rule.name +
                               ": sources unchanged since the last sync; not read");
    } else {
      Status st = read_rule(rule, in, false);
      if (!st.ok()) {
        drop(st.error().message);
        continue;
      }
    }

    for (const Candidate& c : candidates) {
      std::string self;
      if (deferred && resolved_from_people(c)) {
        self = in.previous.self_keys.at(c.name);
      } else if (!rule.include_self) {
        if (c.self.find('\0') != std::string::npos) {
          auto it = in.origin.find(c.self);
          if (it != in.origin.end()) self = it->second;
        } else {
          self = c.self;
        }
        if (self.empty() && c.name.find('@') != std::string::npos) {
          // A user named by e-mail address: their own card has that address.
          auto it = in.by_email.find(LowerEmail(c.name));
          if (it != in.by_email.end()) self = it->second;
        } else if (self.empty()) {
          // A user named by account: their entry has that uid.
          auto it = in.by_account.find(text::AsciiLower(c.name));
          if (it != in.by_account.end()) self = it->second;
        }
      }
      if (resolved_from_people(c)) w.self_keys[c.name] = self;
      w.users.push_back(TargetUser{c.name, self});
    }

    in.changed_keys =
        deferred ? std::vector<std::string>() : DiffKeys(in.previous.entries, in.desired);

    // The source-level guard: a source that suddenly lost many people (an
    // emptied export, a failed query that returned nothing) stops the rule
    // before any address book is touched.
    if (!deferred && !options.force && !in.previous.entries.empty()) {
      int64_t before = static_cast<int64_t>(in.previous.entries.size());
      int64_t gone = 0;
      for (const SnapshotEntry& e : in.previous.entries) gone += in.by_key.count(e.key) ? 0 : 1;
      if (gone > 0 && gone * 100 > static_cast<int64_t>(rule.max_delete_percent) * before) {
        report.guard_tripped = true;
        std::string what = rule.sources.size() == 1 ? "source " + rule.sources.front()
                                                    : std::string("the sources");
        drop("deletion guard: rule " + rule.name + ": " + what + " lost " + std::to_string(gone) +
             " of " + std::to_string(before) + " people since the last sync (" +
             std::to_string(gone * 100 / before) +
             "%), more than max_delete_percent = " + std::to_string(rule.max_delete_percent) +
             "; no address book was changed (use --force if this is intended)");
        continue;
      }
    }

    // Users who no longer receive the rule. Losing many at once (a group
    // emptied by mistake, a query that stopped matching) is held back like a
    // shrinking source.
    auto known = store_.ListCollections(rule.name);
    if (!known.ok()) {
      drop(known.error().message);
      continue;
    }
    // Account names are compared without case: a directory that changes
    // "JDoe" to "jdoe" names the same book, which must not be offboarded.
    std::set<std::string> current;
    for (const TargetUser& u : w.users) current.insert(text::AsciiLower(u.name));
    for (auto& entry : *known) {
      if (entry.first.target != rule.target || !current.count(text::AsciiLower(entry.first.user))) {
        w.leaving.push_back(std::move(entry));
      }
    }
    if (!options.force && !w.leaving.empty()) {
      int64_t before = static_cast<int64_t>(known->size());
      int64_t gone = static_cast<int64_t>(w.leaving.size());
      if (gone * 100 > static_cast<int64_t>(rule.max_delete_percent) * before) {
        report.guard_tripped = true;
        w.offboard_guard = true;
        report.errors.push_back(
            "deletion guard: rule " + rule.name + ": " + std::to_string(gone) + " of " +
            std::to_string(before) + " users no longer receive it (" +
            std::to_string(gone * 100 / before) +
            "%), more than max_delete_percent = " + std::to_string(rule.max_delete_percent) +
            "; their address books were left as they are (use --force if this is intended)");
      }
    }
  }

  // Every rule holds its selection now: the raw records (with every
  // attribute read) can go. A deferred read that turns out to be needed
  // reads its source again.
  {
    std::lock_guard lock(read_mu);
    read.clear();
  }

  size_t total = 0;
  for (const RuleWork& w : work) {
    total += w.users.size() + (w.offboard_guard ? 0 : w.leaving.size());
  }
  std::atomic<size_t> done{0};
  std::mutex report_mu;

  // Phase 2: every collection, at most max_in_flight of one target at once.
  auto past_deadline = [&] {
    return options.deadline && options.clock->Now() >= *options.deadline;
  };
  // Targets whose shared credential the server refused (HTTP 401): nothing
  // more is tried with it, so that a wrong password cannot lock the account
  // with one failed login per address book.
  std::mutex refused_mu;
  std::set<const Target*> refused;
  auto refused_message = [&](const std::string& target) -> std::string {
    std::lock_guard lock(refused_mu);
    auto it = config_.targets.find(target);
    if (it == config_.targets.end() || !refused.count(it->second.target.get())) return "";
    return "not synced: the server refused target " + target +
           "'s credential earlier in this run; nothing more is tried with it";
  };
  auto note_refusal = [&](const CollectionReport& r, const Target& t) {
    if (!r.credential_refused || !t.shared_credential()) return;
    std::lock_guard lock(refused_mu);
    refused.insert(&t);
  };
  for (RuleWork& w : work) {
    const RuleSpec& rule = *w.rule;
    RuleInput& in = w.in;
    TargetEntry& entry = *w.target;
    RunOptions rule_options = options;
    rule_options.retry.max_retry_after = entry.max_retry_after;
    std::vector<CollectionReport> reports(w.users.size());
    for (size_t i = 0; i < w.users.size(); ++i) {
      reports[i].key = CollectionKey{rule.name, rule.target, w.users[i].name};
    }
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i; (i = next.fetch_add(1)) < w.users.size();) {
        if (past_deadline()) {
          reports[i].errors.push_back(
              "not synced: the run's deadline (run_timeout_seconds) "
              "passed before this address book was reached; it is "
              "synced next run");
        } else if (std::string why = refused_message(rule.target); !why.empty()) {
          reports[i].errors.push_back(std::move(why));
        } else {
          CollectionRun(rule, in, *entry.target, store_, rule_options, reports[i],
                        w.users[i].self_key)
              .Run(w.users[i].name);
          note_refusal(reports[i], *entry.target);
        }
        size_t n = ++done;
        if (options.on_collection) {
          std::lock_guard lock(report_mu);
          options.on_collection(reports[i], n, total);
        }
      }
    };
    int threads =
        std::max(1, std::min<int>(entry.target->max_in_flight(), static_cast<int>(w.users.size())));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();

    // Offboarding: users who left the rule lose roster's items (or, with
    // offboard = "keep", keep them and stop receiving updates).
    if (!w.offboard_guard) {
      RuleInput nobody;
      nobody.fingerprint = SelectionFingerprint({});
      RunOptions forced = rule_options;
      forced.force = true;  // the user-level guard above stands for this
      for (auto& [key, state] : w.leaving) {
        CollectionReport r;
        r.key = key;
        r.offboarded = true;
        auto target = config_.targets.find(key.target);
        if (past_deadline()) {
          r.errors.push_back(
              "not offboarded: the run's deadline (run_timeout_seconds) passed; "
              "roster's cards are removed next run");
        } else if (std::string why = refused_message(key.target); !why.empty()) {
          r.errors.push_back(std::move(why));
        } else if (rule.offboard_remove && target == config_.targets.end()) {
          // Nothing can remove the cards now; forgetting them would leave
          // them on the phone for good.
          r.errors.push_back("target " + key.target +
                             " is no longer configured, so roster's cards in " + key.user +
                             "'s \"" + rule.display_name +
                             "\" were not removed; configure it again, or set offboard = \"keep\"");
        } else if (rule.offboard_remove) {
          CollectionRun(rule, nobody, *target->second.target, store_, forced, r, "",
                        /*create=*/false)
              .Run(key.user);
          note_refusal(r, *target->second.target);
        }
        if (!options.dry_run && r.errors.empty() && r.counts.errors == 0 &&
            r.counts.conflicts == 0) {
          Failpoint("before-forget-collection");
          Status st = store_.DeleteCollection(state.id);
          if (!st.ok()) r.errors.push_back(st.error().message);
        }
        size_t n = ++done;
        if (options.on_collection) options.on_collection(r, n, total);
        reports.push_back(std::move(r));
      }
    }

    bool guard = false;
    for (const CollectionReport& r : reports) guard = guard || r.guard_tripped;
    if (!options.dry_run) {
      for (const CollectionReport& r : reports) {
        TargetRunResult res{r.key, r.counts, r.errors.empty() ? std::string() : r.errors.front()};
        Status st = store_.RecordResult(run_id, res);
        if (!st.ok()) report.errors.push_back(st.error().message);
      }
      bool changed = in.Loaded() && (in.fingerprint != in.previous.fingerprint ||
                                     w.version != in.previous.source_version ||
                                     w.self_keys != in.previous.self_keys);
      if (!guard && changed) {
        Snapshot snap{in.fingerprint, {}, w.version, w.self_keys};
        snap.entries.reserve(in.desired.size());
        for (const DesiredItem& d : in.desired) snap.entries.push_back({d.key, d.hash});
        Failpoint("before-snapshot");
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
