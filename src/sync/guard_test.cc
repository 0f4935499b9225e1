// The one guard, table-driven: where "too many" starts, and what it says.
#include "sync/guard.h"

#include <gtest/gtest.h>

namespace roster {
namespace {

struct GuardCase {
  int64_t count, total;
  int percent;
  bool trips;
};

TEST(Guard, TripsOnlyPastTheShare) {
  const GuardCase cases[] = {
      {0, 0, 20, false},                             // nothing there, nothing counted
      {5, 0, 20, false},                             // an empty collection can always be filled
      {0, 100, 0, false},                            // nothing counted never trips, even at 0%
      {20, 100, 20, false},                          // exactly the share is allowed
      {21, 100, 20, true},                           // one more is not
      {1, 3, 33, true},                              // 33.3% > 33%
      {1, 3, 34, false},    {100, 100, 100, false},  // 100 disables the guard
      {1, 1, 0, true},                               // 0 allows nothing
      {-1, 10, 0, false},                            // a negative count is nothing
  };
  for (const GuardCase& c : cases) {
    auto trip = CheckGuard("deletion guard", "max_delete_percent", c.count, c.total, c.percent);
    EXPECT_EQ(trip.has_value(), c.trips) << c.count << " of " << c.total << " at " << c.percent;
  }
}

TEST(Guard, SaysWhatAndHowMuch) {
  auto trip = CheckGuard("deletion guard", "max_delete_percent", 12, 40, 20);
  ASSERT_TRUE(trip);
  EXPECT_EQ(trip->guard, "deletion guard");
  EXPECT_EQ(trip->Share("people", "since the last sync"),
            "12 of 40 people since the last sync (30%), more than max_delete_percent = 20");
  EXPECT_EQ(trip->Share("managed items"),
            "12 of 40 managed items (30%), more than max_delete_percent = 20");
}

}  // namespace
}  // namespace roster
