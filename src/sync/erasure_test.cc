#include "sync/erasure.h"

#include <gtest/gtest.h>

#include <set>

namespace roster {
namespace {

// Erased by key, or a listed DN.
class FakeList : public ErasureList {
 public:
  std::set<std::string> keys, dns, names;
  bool Erased(std::string_view, const SourceRecord& r) const override {
    return keys.count(r.key) > 0;
  }
  bool ErasedReference(std::string_view dn) const override {
    return dns.count(std::string(dn)) > 0;
  }
  bool ErasedName(std::string_view name) const override {
    return names.count(std::string(name)) > 0;
  }
  std::string Fingerprint() const override {
    return keys.empty() && dns.empty() && names.empty() ? "" : "f";
  }
};

SourceRecord Person(const std::string& key, const std::string& name, const std::string& dn,
                    const std::string& manager_dn = "", const std::string& manager = "") {
  SourceRecord r;
  r.key = key;
  r.contact.formatted_name = name;
  r.attributes["dn"] = {dn};
  if (!manager_dn.empty()) r.attributes["manager_dn"] = {manager_dn};
  if (!manager.empty()) {
    r.contact.manager = manager;
    r.attributes["manager"] = {manager};
  }
  return r;
}

TEST(ErasureTest, TheErasedGoAndTheirReportsLoseTheirName) {
  FakeList list;
  list.keys = {"ann"};
  std::vector<SourceRecord> records = {
      Person("ann", "Ann Lee", "CN=Ann Lee,DC=x"),
      Person("bob", "Bob", "cn=bob,dc=x", "cn=ann lee, dc=x", "Ann Lee"),
      Person("cat", "Cat", "cn=cat,dc=x", "cn=bob,dc=x", "Bob"),
      Person("dan", "Dan", "cn=dan,dc=x", "", "ann lee"),  // named without a DN
  };
  std::vector<ErasedName> erased = TakeErased(list, "dir", records);
  ASSERT_EQ(erased.size(), 1u);
  EXPECT_EQ(erased[0].dn, "cn=ann lee,dc=x");
  EXPECT_EQ(erased[0].person.ids, ErasureIds("dir", Person("ann", "Ann Lee", "CN=Ann Lee,DC=x")));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].key, "bob");
  EXPECT_EQ(RedactErased(list, erased, records), (std::vector<size_t>{0, 2}));
  EXPECT_EQ(records[0].contact.manager, "");
  EXPECT_EQ(records[0].attributes.count("manager"), 0u);
  EXPECT_EQ(records[0].attributes.count("manager_dn"), 0u);
  EXPECT_EQ(records[1].contact.manager, "Bob");  // not erased: kept
  EXPECT_EQ(records[2].contact.manager, "");
}

TEST(ErasureTest, AManagerErasedAndGoneFromTheSourceIsRedactedByTheListedDn) {
  FakeList list;
  list.dns = {"cn=ann lee,dc=x"};
  std::vector<SourceRecord> records = {
      Person("bob", "Bob", "cn=bob,dc=x", "CN=Ann Lee,DC=x", "Ann Lee")};
  EXPECT_TRUE(TakeErased(list, "dir", records).empty());
  EXPECT_EQ(RedactErased(list, {}, records).size(), 1u);
  EXPECT_EQ(records[0].contact.manager, "");
}

TEST(ErasureTest, AManagerNamedByAnotherSourceIsRedactedByTheListedName) {
  FakeList list;
  list.names = {"Ann Lee"};
  std::vector<SourceRecord> records = {Person("r7", "Bob", "", "", "Ann Lee")};
  records[0].attributes.erase("dn");
  EXPECT_EQ(RedactErased(list, {}, records).size(), 1u);
  EXPECT_EQ(records[0].contact.manager, "");
}

TEST(ErasureTest, NobodyErasedChangesNothing) {
  FakeList list;
  std::vector<SourceRecord> records = {Person("bob", "Bob", "cn=bob", "cn=ann", "Ann")};
  EXPECT_TRUE(TakeErased(list, "dir", records).empty());
  EXPECT_TRUE(RedactErased(list, {{"cn=ann", "ann", {}}}, records).empty());
  EXPECT_EQ(records[0].contact.manager, "Ann");
}

}  // namespace
}  // namespace roster
