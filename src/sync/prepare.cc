#include "sync/prepare.h"

namespace roster {

std::optional<GuardTrip> CheckSourceGuard(const RuleSpec& rule, const Snapshot& previous,
                                          const RuleSelection& now) {
  int64_t gone = 0;
  for (const SnapshotEntry& e : previous.entries) gone += now.by_key.count(e.key) ? 0 : 1;
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

void ResolveUsers(const RuleSpec& rule, const std::vector<Candidate>& candidates, RuleWork& w) {
  for (const Candidate& c : candidates) {
    bool from_people = SelfResolvedFromPeople(rule, c);
    std::string self = w.deferred && from_people ? w.in.previous.self_keys.at(c.name)
                                                 : ResolveSelfKey(rule, c, w.in);
    if (from_people) w.self_keys[c.name] = self;
    w.users.push_back(TargetUser{c.name, self});
  }
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
  w.deferred = !ctx.force && !NeedsPeople(rule, *candidates, w.in.previous) && !w.version.empty() &&
               w.version == w.in.previous.source_version && !w.in.previous.fingerprint.empty();
  if (w.deferred) {
    w.in.fingerprint = w.in.previous.fingerprint;
    w.in.loader = std::make_shared<RuleSelection::Loader>();
    SourceReader* reader = ctx.reader;
    w.in.loader->load = [reader, target, &rule, &w]() {
      return reader->ReadRule(rule, target, w.in, true);
    };
    ctx.notes->Notice("rule " + rule.name + ": sources unchanged since the last sync; not read");
  } else {
    Status st = ctx.reader->ReadRule(rule, target, w.in, false);
    if (!st.ok()) return fail(st.error().message);
    // Sources that learn their version by being read (Graph's delta) tell it now.
    if (w.version.empty()) w.version = ctx.reader->RuleVersion(rule, target);
    w.in.changed_keys = DiffKeys(w.in.previous.entries, w.in.desired);
  }
  ResolveUsers(rule, *candidates, w);

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
  bool changed = in.Loaded() &&
                 (in.fingerprint != in.previous.fingerprint ||
                  w.version != in.previous.source_version || w.self_keys != in.previous.self_keys);
  if (!changed) return std::nullopt;
  Snapshot snap{in.fingerprint, {}, w.version, w.self_keys};
  snap.entries.reserve(in.desired.size());
  for (const DesiredItem& d : in.desired) snap.entries.push_back({d.key, d.hash});
  return snap;
}

}  // namespace roster
