// Offboarding: a user who no longer receives a rule loses roster's items in
// that collection (offboard = "remove"), or keeps them and stops receiving
// updates ("keep"); either way the state forgets the collection once done.
#pragma once

#include <string>

#include "state/state.h"
#include "sync/collection_run.h"
#include "sync/rule.h"

namespace roster {

struct OffboardInput {
  const RuleSpec* rule = nullptr;
  CollectionKey key;
  CollectionState state;
  Target* target = nullptr;  // null: the target is no longer configured
  // Set when the collection must not be touched now: the run's deadline
  // passed, or the target's credential was refused earlier in the run.
  bool past_deadline = false;
  std::string refused;
};

// Removes roster's items from the collection (never the user's own, never
// anything outside it) and forgets it; a collection already gone counts as
// done. The per-collection deletion guard does not apply: the user guard of
// PrepareRule stands for it.
CollectionReport OffboardCollection(const OffboardInput& input, StateStore& store,
                                    const RunOptions& options);

}  // namespace roster
