// Preparing a rule, before any collection is touched: its previous snapshot,
// who receives it, whether its sources must be read (or can wait, unchanged),
// its people, each user's own person, the keys that changed, the source
// guard, and the users who left it with the offboarding guard. Nothing is
// written here.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/connector.h"
#include "state/state.h"
#include "sync/audience.h"
#include "sync/guard.h"
#include "sync/notes.h"
#include "sync/rule.h"
#include "sync/selection.h"
#include "sync/sources.h"

namespace roster {

// Everything one rule needs before its collections are worked on. Not
// movable once prepared: a deferred read refers to its selection.
struct RuleWork {
  RuleWork() = default;
  RuleWork(const RuleWork&) = delete;
  RuleWork& operator=(const RuleWork&) = delete;

  const RuleSpec* rule = nullptr;
  RuleSelection in;
  std::vector<TargetUser> users;
  // Collections the state knows for the rule whose user no longer receives it.
  std::vector<std::pair<CollectionKey, CollectionState>> leaving;
  bool offboard_guard = false;  // too many users left at once: none is offboarded
  bool deferred = false;        // the sources were unchanged and not read (yet)
  std::string version;          // of the sources and configuration; see RuleVersion
  std::map<std::string, std::string> self_keys;  // listed user -> own person, see Snapshot
};

struct PrepareContext {
  StateStore* store = nullptr;
  const std::map<std::string, Directory*>* directories = nullptr;
  SourceReader* reader = nullptr;
  RunNotes* notes = nullptr;
  bool force = false;  // --force: guards do not stop, sources are always read
  // The rule's target, whose projection shapes the items (null: none).
  std::function<const Target*(const std::string& name)> target;
};

struct Preparation {
  bool run = false;  // false: the rule is not run this time (see errors)
  std::vector<std::string> errors;
  bool guard_tripped = false;
};

// Prepares `work` for `rule`, whose target lists `target_users` when the
// rule names none. `work` must stay where it is while the run lasts.
Preparation PrepareRule(const RuleSpec& rule, const std::vector<std::string>& target_users,
                        const PrepareContext& context, RuleWork& work);

// The source guard: the people of the last snapshot that the selection lost,
// beyond the rule's max_delete_percent (an emptied export, a failed query
// that returned nothing).
std::optional<GuardTrip> CheckSourceGuard(const RuleSpec& rule, const Snapshot& previous,
                                          const RuleSelection& now);

// The snapshot a finished rule stores, or nullopt when nothing in it changed
// (or the people were never read).
std::optional<Snapshot> NextSnapshot(const RuleWork& work);

}  // namespace roster
