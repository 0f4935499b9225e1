#include "sync/prepare.h"

#include "core/text.h"

namespace roster {

std::optional<GuardTrip> CheckSourceGuard(const RuleSpec& rule, const Snapshot& previous,
                                          const RuleSelection& now) {
  int64_t gone = 0;
  for (const SnapshotEntry& e : previous.entries) gone += now.Has(e.key) ? 0 : 1;
  return CheckGuard("deletion guard", "max_delete_percent", gone,
                    static_cast<int64_t>(previous.entries.size()), rule.max_delete_percent);
}

namespace {

// Listed users are recognised by their card's e-mail address or their
// account name, which needs the people read, unless the last read's answer
// is stored: who a user is depends only on the people, and the sources'
// version covers them.
bool NeedsPeople(const RuleSpec& rule, const std::vector<Candidate>& candidates,
                 const Snapshot& previous) {
  for (const Candidate& c : candidates) {
    if (SelfResolvedFromPeople(rule, c) && !previous.self_keys.count(c.name)) return true;
  }
  return false;
}

// After a delta read, whether the people it touched may change who `c` is:
// their own person was touched, or a touched person has their address or
// account name. Otherwise the last answer stands.
bool SelfTouched(const Candidate& c, const RuleSelection& in, const std::string& before) {
  if (!before.empty() && (in.Find(before) || !in.Has(before))) return true;
  if (in.by_email.count(LowerEmail(c.name)) || in.by_account.count(text::AsciiLower(c.name))) {
    return true;
  }
  size_t nul = c.self.find('\0');
  return nul != std::string::npos && in.Find(c.self.substr(nul + 1)) != nullptr;
}

Status ResolveUsers(const RuleSpec& rule, const std::vector<Candidate>& candidates, RuleWork& w) {
  for (const Candidate& c : candidates) {
    bool from_people = SelfResolvedFromPeople(rule, c);
    std::string self;
    if (from_people && (w.deferred || w.in.partial)) self = w.in.previous.self_keys.at(c.name);
    if (from_people && w.in.partial && SelfTouched(c, w.in, self)) {
      // Who they are needs everyone (an address that moved to another person).
      ROSTER_RETURN_IF_ERROR(w.in.Load());
      self = ResolveSelfKey(rule, c, w.in.Complete());
    } else if (!from_people || !(w.deferred || w.in.partial)) {
      self = ResolveSelfKey(rule, c, w.in);
    }
    if (from_people) w.self_keys[c.name] = self;
    w.users.push_back(TargetUser{c.name, self});
  }
  return {};
}

// Users who no longer receive the rule. Losing many at once (a group emptied
// by mistake, a query that stopped matching) is held back like a shrinking
// source.
Status FindLeavingUsers(const RuleSpec& rule, const PrepareContext& ctx, RuleWork& w,
                        Preparation& p) {
  ROSTER_ASSIGN_OR_RETURN(auto known, ctx.store->ListCollections(rule.name));
  const auto before = static_cast<int64_t>(known.size());
  w.leaving = FindLeaving(rule, w.users, std::move(known));
  if (ctx.force) return {};
  auto trip = CheckGuard("deletion guard", "max_delete_percent",
                         static_cast<int64_t>(w.leaving.size()), before, rule.max_delete_percent);
  if (trip) {
    p.guard_tripped = true;
    w.offboard_guard = true;
    p.errors.push_back("deletion guard: rule " + rule.name + ": " +
                       trip->Share("users", "no longer receive it") +
                       "; their address books were left as they are (use --force if this "
                       "is intended)");
  }
  return {};
}

}  // namespace

Preparation PrepareRule(const RuleSpec& rule, const std::vector<std::string>& target_users,
                        const PrepareContext& ctx, RuleWork& w) {
  Preparation p;
  auto fail = [&p](std::string message) {
    p.errors.push_back(std::move(message));
    return p;
  };
  w.rule = &rule;
  auto previous = ctx.store->LoadSnapshot(rule.name);
  if (!previous.ok()) return fail(previous.error().message);
  w.in.previous = std::move(previous).value();
  auto candidates = FindCandidates(rule, *ctx.directories, target_users, *ctx.notes);
  if (!candidates.ok()) return fail(candidates.error().message);

  // Nothing changed in the sources since the last snapshot: do not read them
  // unless a collection turns out to need the people. The version is taken
  // even when the people are read anyway (a new listed user), so that the
  // next run can skip the read.
  const Target* target = ctx.target ? ctx.target(rule.target) : nullptr;
  w.version = ctx.reader->RuleVersion(rule, target);
  const bool needs_people = NeedsPeople(rule, *candidates, w.in.previous);
  const bool synced = !w.in.previous.fingerprint.empty();
  w.deferred = !ctx.force && !needs_people && VersionKnown(w.version) &&
               w.version == w.in.previous.source_version && synced;
  auto defer = [&] {
    w.in.loader = std::make_shared<RuleSelection::Loader>();
    SourceReader* reader = ctx.reader;
    w.in.loader->load = [reader, target, &rule, &w]() {
      return reader->ReadRule(rule, target, w.in, ReadMode::kDeferred);
    };
  };
  if (w.deferred) {
    w.in.fingerprint = w.in.previous.fingerprint;
    defer();
    ctx.notes->Notice("rule " + rule.name + ": sources unchanged since the last sync; not read");
  } else {
    // Under the last snapshot's configuration, a delta read needs only the
    // people it touched selected again.
    const bool changes = !ctx.force && !needs_people && synced &&
                         SameConfiguration(w.version, w.in.previous.source_version);
    Status st =
        ctx.reader->ReadRule(rule, target, w.in, changes ? ReadMode::kChanges : ReadMode::kFull);
    if (!st.ok()) return fail(st.error().message);
    // Sources that learn their version by being read (Graph's delta) tell it now.
    if (!VersionKnown(w.version)) w.version = ctx.reader->RuleVersion(rule, target);
    if (w.in.partial) defer();  // everyone is read again if a collection needs them
  }
  if (Status st = ResolveUsers(rule, *candidates, w); !st.ok()) return fail(st.error().message);

  if (!w.deferred && !ctx.force) {
    if (auto trip = CheckSourceGuard(rule, w.in.previous, w.in)) {
      p.guard_tripped = true;
      std::string what =
          rule.sources.size() == 1 ? "source " + rule.sources.front() : std::string("the sources");
      return fail("deletion guard: rule " + rule.name + ": " + what + " lost " +
                  trip->Share("people", "since the last sync") +
                  "; no address book was changed (use --force if this is intended)");
    }
  }
  Status st = FindLeavingUsers(rule, ctx, w, p);
  if (!st.ok()) return fail(st.error().message);
  p.run = true;
  return p;
}

std::optional<Snapshot> NextSnapshot(const RuleWork& w) {
  const RuleSelection& in = w.in;
  bool changed = (in.Loaded() || in.partial) &&
                 (in.fingerprint != in.previous.fingerprint ||
                  w.version != in.previous.source_version || w.self_keys != in.previous.self_keys);
  if (!changed) return std::nullopt;
  return Snapshot{in.fingerprint, in.Entries(), w.version, w.self_keys};
}

}  // namespace roster
