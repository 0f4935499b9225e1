#include "connectors/ldap/ldap_mapping.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/personal.h"

namespace roster {
namespace {

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

LdapMapping Mapping(std::string_view schema, std::map<std::string, std::string> overrides = {},
                    std::vector<std::string> extra = {}) {
  auto m = ResolveLdapMapping(schema, "", overrides, extra);
  EXPECT_TRUE(m.ok()) << m.error().message;
  return m.ok() ? *m : LdapMapping{};
}

std::vector<std::string> Emails(const Contact& c, std::string_view field) {
  return GetContactField(c, field);
}

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(LdapGuid, FirstThreeGroupsAreLittleEndian) {
  // .NET's documented round trip: Guid("11223344-5566-7788-9900-aabbccddeeff")
  // .ToByteArray() is 44 33 22 11 66 55 88 77 99 00 aa bb cc dd ee ff, the
  // order AD stores objectGUID in.
  EXPECT_EQ(FormatGuid(Bytes({0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x77, 0x99, 0x00, 0xaa,
                              0xbb, 0xcc, 0xdd, 0xee, 0xff})),
            "11223344-5566-7788-9900-aabbccddeeff");
  EXPECT_EQ(FormatGuid(Bytes({0x3a, 0x2f, 0x77, 0x61, 0xde, 0xe5, 0x4a, 0x5f, 0x85, 0x77, 0xeb,
                              0x10, 0x03, 0xc5, 0xc0, 0x54})),
            "61772f3a-e5de-5f4a-8577-eb1003c5c054");
  EXPECT_EQ(FormatGuid(Bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})),
            "03020100-0504-0706-0809-0a0b0c0d0e0f");
  EXPECT_EQ(FormatGuid("short"), "");
  EXPECT_EQ(FormatGuid(std::string(17, 'x')), "");
}

TEST(LdapUtf8, KeepsValidTextAndReplacesEachBrokenSequence) {
  bool repaired = true;
  EXPECT_EQ(RepairUtf8("Zoë 王 😀", &repaired), "Zoë 王 😀");
  EXPECT_FALSE(repaired);
  EXPECT_EQ(RepairUtf8("a\xFF"
                       "b",
                       &repaired),
            "a\uFFFD"
            "b");
  EXPECT_TRUE(repaired);
  // Latin-1 "é" is a lone lead byte followed by ASCII.
  EXPECT_EQ(RepairUtf8("Jos\xE9 M", &repaired), "Jos\uFFFD M");
  // A truncated three-byte sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(RepairUtf8("\xE7\x8E", &repaired), "\uFFFD");
  EXPECT_EQ(RepairUtf8("\xE7\x8Ex", &repaired), "\uFFFDx");
  // Overlong forms, surrogates and code points past U+10FFFF.
  EXPECT_EQ(RepairUtf8("\xC0\xAF", &repaired), "\uFFFD\uFFFD");
  EXPECT_EQ(RepairUtf8("\xE0\x80\xAF", &repaired), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(RepairUtf8("\xED\xA0\x80", &repaired), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(RepairUtf8("\xF4\x90\x80\x80", &repaired), "\uFFFD\uFFFD\uFFFD\uFFFD");
  // A stray continuation byte.
  EXPECT_EQ(RepairUtf8("\x80", &repaired), "\uFFFD");
  bool again = true;
  RepairUtf8(RepairUtf8("\xF0\x9F\x98", &repaired), &again);
  EXPECT_FALSE(again);
}

TEST(LdapPhoto, KnowsJpegPngGif) {
  EXPECT_EQ(SniffImageType("\xFF\xD8\xFF\xE0rest"), "image/jpeg");
  EXPECT_EQ(SniffImageType(std::string("\x89PNG\r\n\x1A\n\0\0", 10)), "image/png");
  EXPECT_EQ(SniffImageType("GIF89a..."), "image/gif");
  EXPECT_EQ(SniffImageType("GIF87a"), "image/gif");
  EXPECT_EQ(SniffImageType("BM...."), "application/octet-stream");
  EXPECT_EQ(SniffImageType(""), "application/octet-stream");
}

TEST(LdapDn, NormalizesForComparison) {
  EXPECT_EQ(NormalizeDn("CN=Ann Lee, OU=People,DC=Example,DC=org"),
            NormalizeDn("cn=ann lee,ou=people,dc=example,dc=org"));
  EXPECT_NE(NormalizeDn("cn=a\\,b,dc=x"), NormalizeDn("cn=a,cn=b,dc=x"));
  EXPECT_EQ(NormalizeDn("cn=a+uid=b,dc=x"), NormalizeDn("uid=b+cn=a,dc=x"));
  EXPECT_EQ(NormalizeDn("  not a dn  "), "not a dn");
  // The shortcut for plain DNs answers what the parser does, for plain and
  // not so plain ones alike.
  for (const char* dn : {"uid=ann.lee,ou=People,dc=example,dc=org",
                         "CN=Ann Lee,OU=People,DC=Example,DC=org",
                         "cn=Ann Lee, ou=People",
                         "cn=Ann  Lee,dc=x",
                         "cn=a\\,b,dc=x",
                         "cn=a+uid=b,dc=x",
                         "cn=\"quoted\",dc=x",
                         "cn=#04024869,dc=x",
                         "cn= padded,dc=x",
                         "cn=x,",
                         ",cn=x",
                         "cn=,dc=x",
                         "=x,dc=y",
                         "cn=a=b,dc=x",
                         "2.5.4.3=Ann,dc=x",
                         "cn=O'Brien (Sales),dc=x",
                         "cn=a;dc=x",
                         "cn=Ünïcode,dc=x",
                         "uid=a_b-c@d.e,dc=x",
                         "cn=x",
                         "cn=x,,dc=y",
                         ""}) {
    EXPECT_EQ(NormalizeDn(dn), NormalizeDnByParser(dn)) << dn;
  }
  EXPECT_EQ(FirstRdnValue("cn=Lee\\, Ann,ou=people,dc=example,dc=org"), "Lee, Ann");
  EXPECT_EQ(FirstRdnValue("uid=jdoe,dc=x"), "jdoe");
  EXPECT_EQ(FirstRdnValue("garbage"), "garbage");
}

TEST(ResolveLdapMapping, DefaultsOverridesAndErrors) {
  LdapMapping inet = Mapping("inetorgperson");
  EXPECT_EQ(inet.key_attribute, "entryUUID");
  LdapMapping ad = Mapping("AD");
  EXPECT_EQ(ad.key_attribute, "objectGUID");
  EXPECT_EQ(DefaultLdapFilter("ad"), "(&(objectCategory=person)(objectClass=user))");
  EXPECT_EQ(DefaultLdapFilter("inetorgperson"), "(objectClass=inetOrgPerson)");

  auto requested = inet.RequestedAttributes();
  for (const char* a :
       {"entryUUID", "displayName", "cn", "mail", "jpegPhoto", "labeledURI", "userAccountControl",
        "msExchHideFromAddressLists", "proxyAddresses", "physicalDeliveryOfficeName", "manager"}) {
    EXPECT_TRUE(Contains(requested, a)) << a;
  }
  EXPECT_TRUE(Contains(ad.RequestedAttributes(), "thumbnailPhoto"));
  EXPECT_TRUE(Contains(ad.RequestedAttributes(), "co"));
  EXPECT_TRUE(Contains(ad.RequestedAttributes(), "c"));

  LdapMapping custom =
      Mapping("inetorgperson",
              {{"department", "departmentNumber"}, {"title", ""}, {"note", "rosterLegacyNote"}},
              {"employeeType"});
  requested = custom.RequestedAttributes();
  EXPECT_TRUE(Contains(requested, "departmentNumber"));
  EXPECT_FALSE(Contains(requested, "ou"));
  EXPECT_FALSE(Contains(requested, "title"));
  EXPECT_TRUE(Contains(requested, "rosterLegacyNote"));
  EXPECT_TRUE(Contains(requested, "employeeType"));

  EXPECT_FALSE(ResolveLdapMapping("novell", "", {}, {}).ok());
  auto bad_field = ResolveLdapMapping("ad", "", {{"shoe_size", "x"}}, {});
  ASSERT_FALSE(bad_field.ok());
  EXPECT_NE(bad_field.error().message.find("shoe_size"), std::string::npos);
  EXPECT_FALSE(ResolveLdapMapping("ad", "", {{"title", "ti tle"}}, {}).ok());
  EXPECT_FALSE(ResolveLdapMapping("ad", "bad key", {}, {}).ok());
  EXPECT_FALSE(ResolveLdapMapping("ad", "", {}, {"a,b"}).ok());
}

TEST(LdapEntryKey, EntryUuidObjectGuidAndOthers) {
  std::string problem;
  LdapEntry e{"uid=a,dc=x", {{"entryUUID", {"5F3B6A2E-0000-4000-8000-00000000000A"}}}};
  EXPECT_EQ(LdapEntryKey(e, "entryUUID", &problem), "5f3b6a2e-0000-4000-8000-00000000000a");
  LdapEntry guid{"cn=a,dc=x",
                 {{"objectGUID",
                   {Bytes({0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x77, 0x99, 0x00, 0xaa, 0xbb,
                           0xcc, 0xdd, 0xee, 0xff})}}}};
  EXPECT_EQ(LdapEntryKey(guid, "objectGUID", &problem), "11223344-5566-7788-9900-aabbccddeeff");
  LdapEntry short_guid{"cn=a,dc=x", {{"objectGUID", {"abc"}}}};
  EXPECT_FALSE(LdapEntryKey(short_guid, "objectGUID", &problem));
  EXPECT_EQ(problem, "has a 3-byte objectGUID instead of a 16-byte GUID");
  EXPECT_FALSE(LdapEntryKey(e, "employeeNumber", &problem));
  EXPECT_EQ(problem, "has no employeeNumber");
  LdapEntry numbered{"cn=a,dc=x", {{"employeeNumber", {" 00042 "}}}};
  EXPECT_EQ(LdapEntryKey(numbered, "employeeNumber", &problem), "00042");
}

LdapEntry Ann() {
  return LdapEntry{"uid=ann,ou=people,dc=example,dc=org",
                   {{"entryUUID", {"0a000000-0000-4000-8000-000000000001"}},
                    {"cn", {"Ann Lee", "Annie"}},
                    {"givenName", {"Ann"}},
                    {"sn", {"Lee"}},
                    {"mail", {"ann@example.org", "a.lee@example.org"}},
                    {"telephoneNumber", {"+49 30 1", "+49 30 2"}},
                    {"mobile", {"+49 170 1"}},
                    {"ou", {"Sales"}},
                    {"o", {"Example"}},
                    {"l", {"Berlin"}},
                    {"labeledURI", {"https://ann.example.org Ann's page"}},
                    {"jpegPhoto", {"\xFF\xD8\xFF\xE0photo"}},
                    {"physicalDeliveryOfficeName", {"B2.14"}},
                    {"manager", {"cn=Boss\\, Big,ou=people,dc=example,dc=org"}},
                    {"employeeType", {"staff"}},
                    {"proxyAddresses",
                     {"SMTP:ann.lee@example.org", "smtp:ann@example.org", "smtp:old@example.net",
                      "X500:/o=Example/cn=ann", "sip:ann@example.org"}}}};
}

TEST(MapLdapEntry, InetOrgPersonDefaults) {
  std::vector<std::string> warnings;
  auto r = MapLdapEntry(Ann(), Mapping("inetorgperson", {}, {"employeeType"}), "dir", &warnings);
  ASSERT_TRUE(r);
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(r->key, "0a000000-0000-4000-8000-000000000001");
  const Contact& c = r->contact;
  EXPECT_EQ(c.formatted_name, "Ann Lee");  // cn stands in for displayName
  EXPECT_EQ(c.given_name, "Ann");
  EXPECT_EQ(c.family_name, "Lee");
  EXPECT_EQ(Emails(c, "email"), std::vector<std::string>{"ann@example.org"});
  // The second mail value, then the proxy addresses not already there; the
  // primary "SMTP:" one is not the main address since mail has one.
  EXPECT_EQ(
      Emails(c, "email_other"),
      (std::vector<std::string>{"a.lee@example.org", "ann.lee@example.org", "old@example.net"}));
  EXPECT_EQ(GetContactField(c, "work_phone"), (std::vector<std::string>{"+49 30 1", "+49 30 2"}));
  EXPECT_EQ(GetContactField(c, "mobile"), std::vector<std::string>{"+49 170 1"});
  EXPECT_EQ(c.department, "Sales");
  EXPECT_EQ(c.organization, "Example");
  EXPECT_EQ(GetContactField(c, "city"), std::vector<std::string>{"Berlin"});
  EXPECT_EQ(GetContactField(c, "url"), std::vector<std::string>{"https://ann.example.org"});
  ASSERT_TRUE(c.photo.has_value());
  EXPECT_EQ(c.photo->media_type, "image/jpeg");
  EXPECT_EQ(c.photo->data, "\xFF\xD8\xFF\xE0photo");

  const auto& a = r->attributes;
  EXPECT_EQ(a.at("dn"), std::vector<std::string>{"uid=ann,ou=people,dc=example,dc=org"});
  EXPECT_EQ(a.at("office"), std::vector<std::string>{"B2.14"});
  EXPECT_EQ(a.at("manager"), std::vector<std::string>{"Boss, Big"});
  EXPECT_EQ(a.at("manager_dn"),
            std::vector<std::string>{"cn=Boss\\, Big,ou=people,dc=example,dc=org"});
  EXPECT_EQ(a.at("employeeType"), std::vector<std::string>{"staff"});
  EXPECT_EQ(a.at("cn"), (std::vector<std::string>{"Ann Lee", "Annie"}));
  EXPECT_EQ(a.count("jpegPhoto"), 0u);  // binary: not an attribute for filters
}

TEST(MapLdapEntry, PrimaryProxyAddressStandsInForMissingMail) {
  LdapEntry e{"cn=Bo,dc=x",
              {{"objectGUID", {std::string(16, '\x01')}},
               {"proxyAddresses", {"smtp:b2@x.org", "SMTP:bo@x.org", "smtp:BO@x.org"}},
               {"thumbnailPhoto", {std::string("\x89PNG\r\n\x1A\n", 8)}},
               {"displayName", {"Bo"}},
               {"company", {"X"}},
               {"co", {"Germany"}},
               {"c", {"DE"}},
               {"userAccountControl", {"514"}}}};
  std::vector<std::string> warnings;
  auto r = MapLdapEntry(e, Mapping("ad"), "ad", &warnings);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->key, "01010101-0101-0101-0101-010101010101");
  EXPECT_EQ(Emails(r->contact, "email"), std::vector<std::string>{"bo@x.org"});
  EXPECT_EQ(Emails(r->contact, "email_other"), std::vector<std::string>{"b2@x.org"});
  EXPECT_EQ(r->contact.organization, "X");
  EXPECT_EQ(GetContactField(r->contact, "country"), std::vector<std::string>{"Germany"});
  ASSERT_TRUE(r->contact.photo.has_value());
  EXPECT_EQ(r->contact.photo->media_type, "image/png");
  EXPECT_EQ(r->attributes.at("userAccountControl"), std::vector<std::string>{"514"});
  EXPECT_EQ(r->attributes.count("objectGUID"), 0u);
  EXPECT_EQ(r->attributes.count("thumbnailPhoto"), 0u);
}

TEST(MapLdapEntry, CountryFallsBackToC) {
  LdapEntry e{"cn=Bo,dc=x", {{"objectGUID", {std::string(16, '\x02')}}, {"c", {"DE"}}}};
  std::vector<std::string> warnings;
  auto r = MapLdapEntry(e, Mapping("ad"), "ad", &warnings);
  ASSERT_TRUE(r);
  EXPECT_EQ(GetContactField(r->contact, "country"), std::vector<std::string>{"DE"});
}

TEST(MapLdapEntry, OverridesReplaceAndRemoveDefaults) {
  LdapEntry e = Ann();
  e.attributes.push_back({"departmentNumber", {"42"}});
  std::vector<std::string> warnings;
  auto r = MapLdapEntry(
      e, Mapping("inetorgperson", {{"department", "departmentNumber"}, {"photo", ""}, {"url", ""}}),
      "dir", &warnings);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->contact.department, "42");
  EXPECT_FALSE(r->contact.photo.has_value());
  EXPECT_TRUE(r->contact.urls.empty());
  // jpegPhoto is still binary by name, so it never lands in attributes.
  EXPECT_EQ(r->attributes.count("jpegPhoto"), 0u);
}

TEST(MapLdapEntry, InvalidUtf8IsRepairedWithAWarningWithoutTheValue) {
  LdapEntry e{"uid=legacy,ou=people,dc=example,dc=org",
              {{"entryUUID", {"0a000000-0000-4000-8000-000000000009"}},
               {"cn", {"Le\xE9gacy"}},
               {"rosterLegacyNote", {"caf\xE9 secret"}}}};
  std::vector<std::string> warnings;
  auto r =
      MapLdapEntry(e, Mapping("inetorgperson", {{"note", "rosterLegacyNote"}}), "dir", &warnings);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->contact.note, "caf\uFFFD secret");
  EXPECT_EQ(r->contact.formatted_name, "Le\uFFFDgacy");
  ASSERT_EQ(warnings.size(), 2u);
  const std::string w = ShowPersonal(warnings[1]);
  EXPECT_EQ(w.rfind("source dir: entry uid=legacy,ou=people,dc=example,dc=org: attribute "
                    "rosterLegacyNote is not valid UTF-8",
                    0),
            0u)
      << w;
  EXPECT_EQ(w.find("secret"), std::string::npos);
  EXPECT_EQ(w.find("caf"), std::string::npos);
}

TEST(MapLdapEntry, EntryWithoutKeyIsSkippedWithAWarning) {
  LdapEntry e{"uid=nokey,dc=x", {{"cn", {"No Key"}}}};
  std::vector<std::string> warnings;
  EXPECT_FALSE(MapLdapEntry(e, Mapping("inetorgperson"), "dir", &warnings));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(ShowPersonal(warnings[0]),
            "source dir: entry uid=nokey,dc=x has no entryUUID; skipped");
}

TEST(MapLdapEntry, AttributesKeepTheRequestedSpelling) {
  LdapEntry e{"uid=a,dc=x",
              {{"entryuuid", {"0a000000-0000-4000-8000-000000000002"}},
               {"MAIL", {"a@x"}},
               {"EMPLOYEETYPE", {"x"}}}};
  std::vector<std::string> warnings;
  auto r = MapLdapEntry(e, Mapping("inetorgperson", {}, {"employeeType"}), "dir", &warnings);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->attributes.count("mail"), 1u);
  EXPECT_EQ(r->attributes.count("employeeType"), 1u);
  EXPECT_EQ(Emails(r->contact, "email"), std::vector<std::string>{"a@x"});
}

TEST(MapLdapEntry, ServerCannotOverrideRosterOwnAttributes) {
  LdapEntry e{"uid=a,dc=x",
              {{"entryUUID", {"0a000000-0000-4000-8000-000000000005"}},
               {"manager_dn", {""}},
               {"DN", {"uid=other,dc=x"}}}};
  std::vector<std::string> warnings;
  auto r = MapLdapEntry(e, Mapping("inetorgperson"), "dir", &warnings);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->attributes.at("dn"), std::vector<std::string>{"uid=a,dc=x"});
  EXPECT_EQ(r->attributes.count("manager_dn"), 0u);
  EXPECT_EQ(r->attributes.count("DN"), 0u);
  std::vector<SourceRecord> records = {*r};
  ResolveManagers(&records);
  EXPECT_EQ(records[0].attributes.count("manager"), 0u);
}

TEST(LdapManagers, UsesTheManagersDisplayNameWhenRead) {
  std::vector<std::string> warnings;
  LdapMapping m = Mapping("inetorgperson");
  LdapEntry boss{
      "cn=Boss\\, Big,ou=people,dc=example,dc=org",
      {{"entryUUID", {"0a000000-0000-4000-8000-000000000003"}}, {"displayName", {"Big Boss"}}}};
  LdapEntry orphan{"uid=o,dc=example,dc=org",
                   {{"entryUUID", {"0a000000-0000-4000-8000-000000000004"}},
                    {"manager", {"uid=gone,ou=people,dc=example,dc=org"}}}};
  std::vector<SourceRecord> records;
  for (const LdapEntry& e : {Ann(), boss, orphan})
    records.push_back(*MapLdapEntry(e, m, "d", &warnings));
  ResolveManagers(&records);
  EXPECT_EQ(records[0].attributes.at("manager"), std::vector<std::string>{"Big Boss"});
  EXPECT_EQ(records[2].attributes.at("manager"), std::vector<std::string>{"gone"});
  EXPECT_EQ(records[1].attributes.count("manager"), 0u);
}

// After a delta read, the reports of a touched entry are prepared again:
// found by their manager's DN as ResolveManagers finds them (case and
// spacing aside), whether the manager changed, moved or went.
TEST(LdapManagers, DependentsAreTheReportsOfATouchedEntry) {
  std::vector<std::string> warnings;
  LdapMapping m = Mapping("inetorgperson");
  LdapEntry boss{
      "cn=Boss\\, Big,ou=people,dc=example,dc=org",
      {{"entryUUID", {"0a000000-0000-4000-8000-000000000003"}}, {"displayName", {"Big Boss"}}}};
  std::vector<SourceRecord> records;
  for (const LdapEntry& e : {Ann(), boss}) records.push_back(*MapLdapEntry(e, m, "d", &warnings));
  ResolveManagers(&records);
  EXPECT_EQ(ManagerDependents(records, {&records[1]}), std::vector<std::string>{records[0].key});
  EXPECT_TRUE(ManagerDependents(records, {&records[0]}).empty()) << "Ann heads nobody";
  // The old version of a manager who moved: their reports still name the old DN.
  SourceRecord moved = records[1];
  moved.attributes["dn"] = {"CN=Boss\\, Big, OU=People,DC=example,DC=org"};
  EXPECT_EQ(ManagerDependents(records, {&moved}), std::vector<std::string>{records[0].key});
  EXPECT_TRUE(ManagerDependents(records, {}).empty());
}

}  // namespace
}  // namespace roster
