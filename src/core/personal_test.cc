#include "core/personal.h"

#include <gtest/gtest.h>

namespace roster {
namespace {

std::string Ref(std::string_view ref) { return "p:" + std::string(ref.substr(0, 3)); }

TEST(PersonalTest, ShownOrHiddenAtTheEdge) {
  const std::string m = "photo of " + Personal("key-1", "Jane Doe (key-1)") + " dropped";
  EXPECT_EQ(ShowPersonal(m), "photo of Jane Doe (key-1) dropped");
  EXPECT_EQ(HidePersonal(m, Ref), "photo of p:key dropped");
  EXPECT_EQ(ShowPersonal("no one"), "no one");
}

TEST(PersonalTest, MarksInTheirInputsAreTakenOut) {
  const std::string m = Personal(
      "a\x1f"
      "b",
      "x\x1d\x1ey");
  EXPECT_EQ(ShowPersonal(m), "xy");
  EXPECT_EQ(HidePersonal(m, [](std::string_view r) { return std::string(r); }), "ab");
}

TEST(PersonalTest, ABrokenMarkHidesTheRest) {
  std::string m = "ok " + Personal("k", "Jane Doe");
  m.resize(m.size() - 4);  // cut, as a length limit would
  EXPECT_EQ(ShowPersonal(m), "ok ");
  EXPECT_EQ(HidePersonal(m, Ref), "ok ");
}

TEST(PersonalTest, MarkPersonalFindsPlainAndUrlEncodedForms) {
  const std::string m = MarkPersonal(
      "PUT http://h/dav/alice%40example.org/book/ for alice@example.org: 403", "alice@example.org");
  EXPECT_EQ(ShowPersonal(m), "PUT http://h/dav/alice@example.org/book/ for alice@example.org: 403");
  EXPECT_EQ(HidePersonal(m, [](std::string_view) { return std::string("U"); }),
            "PUT http://h/dav/U/book/ for U: 403");
  // A name already marked is left alone.
  const std::string twice = MarkPersonal(Personal("alice", "alice"), "alice");
  EXPECT_EQ(HidePersonal(twice, [](std::string_view) { return std::string("U"); }), "U");
  EXPECT_EQ(MarkPersonal("x", ""), "x");
}

}  // namespace
}  // namespace roster
