#include "state/state.h"

namespace roster {

Counts& Counts::operator+=(const Counts& o) {
  created += o.created;
  updated += o.updated;
  deleted += o.deleted;
  unchanged += o.unchanged;
  conflicts += o.conflicts;
  errors += o.errors;
  adopted += o.adopted;
  skipped += o.skipped;
  return *this;
}

}  // namespace roster
