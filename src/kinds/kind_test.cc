// The contact kind: what the engine asks of it, on contacts.
#include "kinds/kind.h"

#include <gtest/gtest.h>

namespace roster {
namespace {

Contact Ann() {
  Contact c;
  c.given_name = "Ann";
  c.family_name = "Lee";
  c.title = "Engineer";
  c.emails.push_back({" Ann@Example.com", {"work"}, false});
  c.emails.push_back({"ann@example.com", {"home"}, false});
  c.phones.push_back({"+15550100", {"cell"}, false});
  return c;
}

TEST(ContactKind, HashIsTheContactsOwn) {
  ItemBody body = Ann();
  EXPECT_EQ(KindOf(body).name(), "contact");
  EXPECT_EQ(KindOf(body).ContentHash(body), ContentHash(Ann()));
}

TEST(ContactKind, MatchKeysAreNormalisedAddresses) {
  ItemBody body = Ann();
  EXPECT_EQ(KindOf(body).MatchKeys(body), std::vector<std::string>{"ann@example.com"});
  // The state keeps only hashes, and the same ones as before kinds existed.
  ASSERT_EQ(MatchHashes(body).size(), 1u);
  EXPECT_EQ(MatchHashes(body)[0].size(), 16u);
  Contact other;
  other.emails.push_back({"ANN@example.com", {}, false});
  EXPECT_TRUE(SameSubject(body, ItemBody(other)));
  other.emails[0].value = "bob@example.com";
  EXPECT_FALSE(SameSubject(body, ItemBody(other)));
  EXPECT_FALSE(SameSubject(ItemBody(Contact{}), ItemBody(Contact{})));  // no address, no match
}

TEST(ContactKind, DiffNamesTheFieldsThatChange) {
  Contact before = Ann();
  Contact after = Ann();
  after.title = "Manager";
  after.phones.clear();
  after.photo = Photo{"image/jpeg", std::string(1234, 'x'), ""};
  ItemBody a = before, b = after;
  std::vector<FieldChange> changes = KindOf(a).Diff(a, b);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0], (FieldChange{"title", "Engineer", "Manager"}));
  EXPECT_EQ(changes[1], (FieldChange{"mobile", "+15550100", ""}));
  EXPECT_EQ(changes[2], (FieldChange{"photo", "", "image/jpeg, 1234 bytes"}));
  EXPECT_TRUE(KindOf(a).Diff(a, a).empty());
}

TEST(ContactKind, DiffNeverHidesAChange) {
  Contact before = Ann();
  Contact after = Ann();
  after.urls.push_back({"https://example.com/ann", {"home"}, false});
  before.urls.push_back({"https://example.com/ann", {"work"}, false});
  ItemBody a = before, b = after;
  ASSERT_NE(KindOf(a).ContentHash(a), KindOf(b).ContentHash(b));
  EXPECT_FALSE(KindOf(a).Diff(a, b).empty());
}

TEST(ContactKind, MergeAppliesTheFieldRules) {
  Contact source = Ann();
  Contact remote = Ann();
  remote.title = "Chief of Staff";  // the user's edit
  FieldPolicy policy;
  policy.modes["title"] = FieldMode::kIfBlank;
  FieldMemory after;
  ItemBody s = source, r = remote;
  ItemBody merged = KindOf(s).Merge(s, &r, policy, {}, &after);
  EXPECT_EQ(std::get<Contact>(merged).title, "Chief of Staff");
  ItemBody fresh = KindOf(s).Merge(s, nullptr, policy, {}, &after);
  EXPECT_EQ(std::get<Contact>(fresh).title, "Engineer");
}

}  // namespace
}  // namespace roster
