#include "sync/offboard.h"

#include "core/failpoint.h"

namespace roster {

CollectionReport OffboardCollection(const OffboardInput& in, StateStore& store,
                                    const RunOptions& options) {
  const RuleSpec& rule = *in.rule;
  CollectionReport r;
  r.key = in.key;
  r.offboarded = true;
  if (in.past_deadline) {
    r.errors.push_back(
        "not offboarded: the run's deadline (run_timeout_seconds) passed; "
        "roster's cards are removed next run");
  } else if (!in.refused.empty()) {
    r.errors.push_back(in.refused);
  } else if (rule.offboard_remove && in.target == nullptr) {
    // Nothing can remove the cards now; forgetting them would leave them on
    // the phone for good.
    r.errors.push_back("target " + in.key.target +
                       " is no longer configured, so roster's cards in " + in.key.user + "'s \"" +
                       rule.display_name +
                       "\" were not removed; configure it again, or set offboard = \"keep\"");
  } else if (rule.offboard_remove) {
    RuleSelection nobody;
    nobody.fingerprint = SelectionFingerprint({});
    RunOptions forced = options;
    forced.force = true;
    CollectionRun(rule, nobody, *in.target, store, forced, r, "", /*create=*/false)
        .Run(in.key.user);
  }
  if (!options.dry_run && r.errors.empty() && r.counts.errors == 0 && r.counts.conflicts == 0) {
    Failpoint("before-forget-collection");
    Status st = store.DeleteCollection(in.state.id);
    if (!st.ok()) r.errors.push_back(st.error().message);
  }
  return r;
}

}  // namespace roster
