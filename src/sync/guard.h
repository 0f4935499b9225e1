// The one guard against mass changes: a count of removals or rewrites beyond a
// share of what exists stops the work before anything is written. The
// planner (per collection), the source check (people lost since the last
// sync) and offboarding (users lost at once) all ask it, so that the three
// agree on what "too many" means.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace roster {

// Why a guard stopped something: `count` of `total` exceeded `percent`,
// the value of the setting named `setting`.
struct GuardTrip {
  std::string guard;    // "deletion guard" or "mass-change guard"
  std::string setting;  // "max_delete_percent" or "max_update_percent"
  int64_t count = 0;
  int64_t total = 0;
  int percent = 0;

  // "12 of 40 <noun>[ <qualifier>] (30%), more than max_delete_percent = 20".
  std::string Share(const std::string& noun, const std::string& qualifier = "") const;
};

// Trips when `count` of `total` is more than `percent` percent. Nothing to
// count against (total 0) or nothing counted never trips: an empty
// collection can always be filled.
std::optional<GuardTrip> CheckGuard(const std::string& guard, const std::string& setting,
                                    int64_t count, int64_t total, int percent);

}  // namespace roster
