#include "connectors/graph/contact_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "connectors/graph/projection.h"
#include "connectors/graph/test_contacts.h"

namespace roster {
namespace {

using graph_test::Everything;
using graph_test::Person;
using nlohmann::json;

const std::string kMarkerId = "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster";
const char kId[] = "AAMkAGI2THk0AAA=";

Contact WithoutPhoto(Contact c) {
  c.photo.reset();
  return c;
}

// The contact as Graph answers a GET: what was stored plus the server's own
// properties (fileAs, ids, times); unset properties come back null, [] or {}.
std::string Answer(json stored, const std::string& id = kId) {
  stored["@odata.etag"] = "W/\"EQAAABYAAAB\"";
  stored["id"] = id;
  stored["changeKey"] = "EQAAABYAAAB";
  stored["fileAs"] = "ignored, by roster";
  stored["createdDateTime"] = "2026-01-02T03:04:05Z";
  for (const char* p : {"initials", "yomiGivenName", "profession", "spouseName", "assistantName"}) {
    stored.emplace(p, nullptr);
  }
  for (const char* p : {"imAddresses", "children", "categories", "homePhones", "businessPhones"}) {
    stored.emplace(p, json::array());
  }
  for (const char* p : {"homeAddress", "businessAddress", "otherAddress"}) {
    stored.emplace(p, json::object());
  }
  return stored.dump();
}

Result<GraphContact> Read(const std::string& body) {
  return ParseGraphContact(Answer(json::parse(body)), kMarkerId);
}

// What fakegraph (and Graph) makes of a PATCH: null or [] clears a
// property, an address merges its members (null clears one), extended
// properties merge by id, anything else replaces.
json ApplyPatch(json stored, const std::string& patch_text) {
  if (patch_text.empty()) return stored;
  const json patch = json::parse(patch_text);
  for (const auto& [k, v] : patch.items()) {
    if (v.is_null() || (v.is_array() && v.empty())) {
      stored.erase(k);
    } else if (k.ends_with("Address")) {
      json& a = stored[k];
      if (!a.is_object()) a = json::object();
      for (const auto& [m, mv] : v.items()) {
        if (mv.is_null()) {
          a.erase(m);
        } else {
          a[m] = mv;
        }
      }
      if (a.empty()) stored.erase(k);
    } else {
      stored[k] = v;  // one extended property here, so merging by id is replacing
    }
  }
  return stored;
}

// --- the marker -----------------------------------------------------------------------

TEST(GraphMarker, RoundTripsAnyRuleAndKey) {
  const ManagedTag tags[] = {
      {"gal", "5f1c2a9e-0d1b-4c6e-9a1f-3b2c1d0e9f8a"},
      {"company contacts", "ldap:cn=Ann Lee,ou=People,dc=example,dc=com"},
      {"r:1", "a:b:c"},
      {"line\nbreak", "quote'\"back\\slash"},
      {std::string("nul\0in", 6), "\x01\x7f\xff\xfe"},
      {"%41", "%%"},
      {"ünïcødé", "東京🎉"},
      {"roster:v1:x:y", "roster:v1:"},
  };
  for (const ManagedTag& tag : tags) {
    const std::string value = EncodeGraphMarker(tag);
    EXPECT_TRUE(value.starts_with("roster:v1:"));
    EXPECT_EQ(std::count(value.begin(), value.end(), ':'), 3) << value;
    for (char c : value) EXPECT_TRUE(c > 0x20 && c < 0x7f && c != '\'' && c != '"') << value;
    EXPECT_EQ(DecodeGraphMarker(value), tag) << value;
  }
  EXPECT_EQ(EncodeGraphMarker({"gal", "abc-123_x.y~z"}), "roster:v1:gal:abc-123_x.y~z");
}

TEST(GraphMarker, RefusesWhatRosterDidNotWrite) {
  for (const char* value :
       {"", "roster:v1:", "roster:v1:gal", "roster:v1::key", "roster:v1:gal:", "roster:v2:gal:key",
        "ROSTER:v1:gal:key", "roster:v1:gal:a:b", "roster:v1:gal:a b", "roster:v1:gal:%4",
        "roster:v1:gal:%zz", "roster:v1:g\nl:key", "X-ROSTER-RULE:gal"}) {
    EXPECT_EQ(DecodeGraphMarker(value), std::nullopt) << value;
  }
  EXPECT_EQ(DecodeGraphMarker("roster:v1:g%61l:k%3Ay"), (ManagedTag{"gal", "k:y"}));
}

TEST(GraphMarker, PropertyIdsCompareAsExchangeDoes) {
  const std::string id = "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster";
  EXPECT_TRUE(SameGraphPropertyId(id, id));
  EXPECT_TRUE(
      SameGraphPropertyId(id, " string  {9C1F6C52-3A5E-4A55-9B1F-6E1D0E8A2B41} NAME roster"));
  EXPECT_FALSE(
      SameGraphPropertyId(id, "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name Roster"));
  EXPECT_FALSE(
      SameGraphPropertyId(id, "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b42} Name roster"));
  EXPECT_FALSE(
      SameGraphPropertyId(id, "Integer {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster"));
  EXPECT_TRUE(SameGraphPropertyId("String 0x3A4F", "string 0x3a4f"));
  EXPECT_TRUE(SameGraphPropertyId("String {G} Id 0x8A1B", "String {g} id 0x8a1b"));
  EXPECT_FALSE(SameGraphPropertyId("String 0x3A4F", "String 0x3A40"));
}

// --- the create body ------------------------------------------------------------------

TEST(GraphContactBody, SendsGraphPropertiesWithGraphTypes) {
  const ManagedTag tag{"gal", "k1"};
  const json body =
      json::parse(GraphContactBody(ProjectGraphContact(Everything()), &tag, kMarkerId));
  const json want = {
      {"displayName", "Dr. Ann Q. Lee Jr."},
      {"givenName", "Ann"},
      {"surname", "Lee"},
      {"middleName", "Q."},
      {"title", "Dr."},
      {"generation", "Jr."},
      {"nickName", "Annie"},
      {"companyName", "Contoso"},
      {"department", "R&D"},
      {"jobTitle", "CTO"},
      {"manager", "Bo Kim"},
      {"personalNotes", "Line one\nLine two\twith a tab"},
      {"emailAddresses",
       {{{"address", "c@x.example"}, {"name", "Dr. Ann Q. Lee Jr."}},
        {{"address", "a@x.example"}, {"name", "Dr. Ann Q. Lee Jr."}},
        {{"address", "b@x.example"}, {"name", "Dr. Ann Q. Lee Jr."}}}},
      {"mobilePhone", "+1"},
      {"businessPhones", {"+3", "+4"}},
      {"homePhones", {"+6"}},
      {"businessAddress",
       {{"street", "1 Main St"},
        {"city", "Springfield"},
        {"state", "IL"},
        {"postalCode", "62701"},
        {"countryOrRegion", "USA"}}},
      {"homeAddress", {{"street", "2 Elm St"}, {"city", "Shelbyville"}}},
      {"otherAddress", {{"street", "3 Oak St"}, {"countryOrRegion", "Canada"}}},
      {"officeLocation", "Floor 3"},
      {"businessHomePage", "https://b.example"},
      {"birthday", "1980-04-02T00:00:00Z"},
      {"categories", {"Company", "Sales"}},
      {"singleValueExtendedProperties", {{{"id", kMarkerId}, {"value", "roster:v1:gal:k1"}}}},
  };
  EXPECT_EQ(body, want) << body.dump(2);
}

TEST(GraphContactBody, SendsOnlyWhatIsSet) {
  EXPECT_EQ(GraphContactBody(Contact{}, nullptr, kMarkerId), "{}");
  const json body = json::parse(GraphContactBody(Person("Bo", ""), nullptr, kMarkerId));
  EXPECT_EQ(body, (json{{"displayName", "Bo"},
                        {"givenName", "Bo"},
                        {"emailAddresses", {{{"address", "Bo@example.com"}, {"name", "Bo"}}}}}));
  const ManagedTag tag{"r", "k"};
  EXPECT_EQ(json::parse(GraphContactBody(Contact{}, &tag, "")), json::object());  // no marker id
  Contact yearless;
  yearless.birthday = "--02-29";
  EXPECT_EQ(GraphContactBody(yearless, nullptr, ""), R"({"birthday":"1604-02-29T00:00:00Z"})");
}

TEST(GraphContactBody, AProjectionSendsTheSameBody) {
  const ManagedTag tag{"r", "k"};
  graph_test::RandomContacts random(11);
  for (int i = 0; i < 500; ++i) {
    const Contact c = random.Next();
    ASSERT_EQ(GraphContactBody(c, &tag, kMarkerId),
              GraphContactBody(ProjectGraphContact(c), &tag, kMarkerId));
  }
}

// --- the round trip -------------------------------------------------------------------

TEST(GraphContactRoundTrip, BodyReadBackIsTheProjection) {
  std::vector<Contact> contacts = graph_test::Samples();
  graph_test::RandomContacts random(3);
  for (int i = 0; i < 1000; ++i) contacts.push_back(random.Next());
  const ManagedTag tag{"gal", "line\nkey:with 'quotes'"};
  for (const Contact& c : contacts) {
    const std::string body = GraphContactBody(ProjectGraphContact(c), &tag, kMarkerId);
    Result<GraphContact> read = Read(body);
    ASSERT_TRUE(read.ok()) << read.error().message << "\n" << body;
    EXPECT_EQ(read->id, kId);
    EXPECT_EQ(read->etag, "W/\"EQAAABYAAAB\"");
    EXPECT_EQ(read->change_key, "EQAAABYAAAB");
    EXPECT_EQ(read->tag, tag);
    ASSERT_EQ(read->contact, WithoutPhoto(ProjectGraphContact(c))) << body;
  }
}

TEST(GraphContactRoundTrip, HostileTextComesBackAsProjected) {
  Contact c = Person("A\x01\xff", "\xe2\x82");
  c.note = std::string("nul\0and\x1b", 9);
  const std::string body = GraphContactBody(c, nullptr, kMarkerId);
  Result<GraphContact> read = Read(body);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->contact, ProjectGraphContact(c));
  EXPECT_EQ(read->tag, std::nullopt);
}

// --- the patch ------------------------------------------------------------------------

TEST(GraphContactPatch, NothingWhenEqual) {
  const Contact p = ProjectGraphContact(Everything());
  const ManagedTag tag{"r", "k"};
  EXPECT_EQ(GraphContactPatch(p, p, &tag, &tag, kMarkerId), "");
  EXPECT_EQ(GraphContactPatch(p, Everything(), &tag, &tag, kMarkerId), "");  // same projection
  EXPECT_EQ(GraphContactPatch(p, p, &tag, nullptr, kMarkerId), "");  // a marker is never removed
}

TEST(GraphContactPatch, OnlyWhatDiffersWithExplicitClears) {
  const Contact before = ProjectGraphContact(Everything());
  Contact after = before;
  after.title.clear();                                 // jobTitle: null
  after.department = "Sales";                          // department
  after.categories.clear();                            // categories: []
  after.phones.erase(after.phones.begin());            // mobilePhone: null
  after.addresses[1].locality = "";                    // homeAddress: all five, city null
  after.addresses.erase(after.addresses.begin() + 2);  // otherAddress: every member null
  after.birthday.clear();                              // birthday: null
  const json patch = json::parse(GraphContactPatch(before, after, nullptr, nullptr, kMarkerId));
  const json want = {
      {"jobTitle", nullptr},
      {"department", "Sales"},
      {"categories", json::array()},
      {"mobilePhone", nullptr},
      {"homeAddress",
       {{"street", "2 Elm St"},
        {"city", nullptr},
        {"state", nullptr},
        {"postalCode", nullptr},
        {"countryOrRegion", nullptr}}},
      {"otherAddress",
       {{"street", nullptr},
        {"city", nullptr},
        {"state", nullptr},
        {"postalCode", nullptr},
        {"countryOrRegion", nullptr}}},
      {"birthday", nullptr},
  };
  EXPECT_EQ(patch, want) << patch.dump(2);
}

TEST(GraphContactPatch, CollectionsAreSentWhole) {
  const Contact before = ProjectGraphContact(Everything());
  Contact after = before;
  after.emails.pop_back();
  after.phones[1].value = "+33";  // the first business phone
  const json patch = json::parse(GraphContactPatch(before, after, nullptr, nullptr, kMarkerId));
  EXPECT_EQ(patch["businessPhones"], (json{"+33", "+4"}));
  ASSERT_EQ(patch["emailAddresses"].size(), 2u);
  EXPECT_EQ(patch.size(), 2u);
  // The addresses are named by displayName: a new name sends them again.
  after = before;
  after.formatted_name = "Ann Lee";
  const json renamed = json::parse(GraphContactPatch(before, after, nullptr, nullptr, kMarkerId));
  EXPECT_EQ(renamed["displayName"], "Ann Lee");
  EXPECT_EQ(renamed["emailAddresses"][0]["name"], "Ann Lee");
}

TEST(GraphContactPatch, SendsTheMarkerWhenItChanges) {
  const Contact c = ProjectGraphContact(Person("Ann", "Lee"));
  const ManagedTag old_tag{"r", "k"}, new_tag{"r", "k2"};
  const json want = {
      {"singleValueExtendedProperties", {{{"id", kMarkerId}, {"value", "roster:v1:r:k2"}}}}};
  EXPECT_EQ(json::parse(GraphContactPatch(c, c, &old_tag, &new_tag, kMarkerId)), want);
  EXPECT_EQ(json::parse(GraphContactPatch(c, c, nullptr, &new_tag, kMarkerId)), want);  // adopt
  EXPECT_EQ(GraphContactPatch(c, c, nullptr, &new_tag, ""), "");
}

// Whatever `before` and `after` are, the server's copy after the PATCH reads
// back as `after`'s projection.
TEST(GraphContactPatch, TurnsAnyContactIntoAnyOther) {
  std::vector<Contact> contacts = graph_test::Samples();
  graph_test::RandomContacts random(5);
  for (int i = 0; i < 40; ++i) contacts.push_back(random.Next());
  const ManagedTag tag{"r", "k"};
  for (const Contact& b : contacts) {
    const Contact before = ProjectGraphContact(b);
    const json stored = json::parse(GraphContactBody(before, &tag, kMarkerId));
    for (const Contact& a : contacts) {
      const std::string patch = GraphContactPatch(before, a, &tag, &tag, kMarkerId);
      Result<GraphContact> read = ParseGraphContact(Answer(ApplyPatch(stored, patch)), kMarkerId);
      ASSERT_TRUE(read.ok()) << read.error().message;
      ASSERT_EQ(read->contact, WithoutPhoto(ProjectGraphContact(a))) << patch;
      EXPECT_EQ(patch.empty(), read->contact == WithoutPhoto(before));
    }
  }
}

// --- reading --------------------------------------------------------------------------

// A contact as Microsoft's documentation shows Graph answering a create.
constexpr char kDocumentedAnswer[] = R"({
  "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/contacts/$entity",
  "@odata.etag": "W/\"EQAAABYAAAAE2tgqUy5bRKJzk0=\"",
  "id": "AAMkAGI2THk0AAA=",
  "createdDateTime": "2017-03-08T18:45:55Z",
  "lastModifiedDateTime": "2017-03-08T18:45:56Z",
  "changeKey": "EQAAABYAAAAE2tgqUy5bRKJzk0=",
  "categories": [],
  "parentFolderId": "AAMkAGI2AAEOAAA=",
  "birthday": null,
  "fileAs": "Bansky, Pavel",
  "displayName": "Pavel Bansky",
  "givenName": "Pavel",
  "initials": null,
  "middleName": null,
  "nickName": null,
  "surname": "Bansky",
  "title": null,
  "yomiGivenName": null,
  "yomiSurname": null,
  "yomiCompanyName": null,
  "generation": null,
  "imAddresses": [],
  "jobTitle": null,
  "companyName": null,
  "department": null,
  "officeLocation": null,
  "profession": null,
  "businessHomePage": null,
  "assistantName": null,
  "manager": null,
  "homePhones": [],
  "mobilePhone": null,
  "businessPhones": ["+1 732 555 0102"],
  "spouseName": null,
  "personalNotes": "",
  "children": [],
  "emailAddresses": [{"address": "pavelb@contoso.onmicrosoft.com", "name": "Pavel Bansky"}],
  "homeAddress": {},
  "businessAddress": {},
  "otherAddress": {}
})";

TEST(ParseGraphContact, ReadsGraphsAnswer) {
  Result<GraphContact> read = ParseGraphContact(kDocumentedAnswer, kMarkerId);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->id, "AAMkAGI2THk0AAA=");
  EXPECT_EQ(read->etag, "W/\"EQAAABYAAAAE2tgqUy5bRKJzk0=\"");
  EXPECT_EQ(read->change_key, "EQAAABYAAAAE2tgqUy5bRKJzk0=");
  EXPECT_EQ(read->tag, std::nullopt);
  Contact want;
  want.formatted_name = "Pavel Bansky";
  want.given_name = "Pavel";
  want.family_name = "Bansky";
  want.emails = {{"pavelb@contoso.onmicrosoft.com", {}, false}};
  want.phones = {{"+1 732 555 0102", {"work", "voice"}, false}};
  EXPECT_EQ(read->contact, want);
}

TEST(ParseGraphContact, FindsTheMarkerAmongExtendedProperties) {
  json answer = json::parse(kDocumentedAnswer);
  answer["singleValueExtendedProperties"] = {
      {{"id", "String {00020329-0000-0000-c000-000000000046} Name other"}, {"value", "x"}},
      {{"id", "string {9C1F6C52-3A5E-4A55-9B1F-6E1D0E8A2B41} name roster"},
       {"value", "roster:v1:gal:k%0A1"}}};
  Result<GraphContact> read = ParseGraphContact(answer.dump(), kMarkerId);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->tag, (ManagedTag{"gal", "k\n1"}));
  // Another marker id: not roster's, whatever the value says.
  read = ParseGraphContact(answer.dump(), "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name x");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->tag, std::nullopt);
}

struct DateCase {
  const char* graph;
  const char* date;  // empty: an error
};

TEST(ParseGraphContact, BirthdayIsTheNearestDate) {
  const DateCase cases[] = {
      {"1974-07-22T00:00:00Z", "1974-07-22"},
      {"1974-07-22T00:00:00.0000000Z", "1974-07-22"},
      {"1974-07-22T11:59:00Z", "1974-07-22"},
      {"1974-07-21T22:00:00Z", "1974-07-22"},  // Outlook at midnight in UTC+2
      {"1974-07-22T05:00:00Z", "1974-07-22"},  // Outlook at midnight in UTC-5
      {"1974-07-22T00:00:00+02:00", "1974-07-22"},
      {"1974-12-31T12:00:00Z", "1975-01-01"},
      {"2000-02-28T23:00:00Z", "2000-02-29"},
      {"1604-04-02T00:00:00Z", "--04-02"},
      {"1604-02-28T22:00:00Z", "--02-29"},
      {"1603-12-31T23:00:00Z", "--01-01"},
      {"1974-07-22T00:00", "1974-07-22"},
      {"1974-07-22", ""},
      {"1974-02-30T00:00:00Z", ""},
      {"1974-07-22T25:00:00Z", ""},
      {"1974-07-22T00:00:00+15:00", ""},
      {"1974-07-22T00:00:00 junk", ""},
      {"0000-01-01T00:00:00Z", ""},
      {"yesterday", ""},
  };
  for (const DateCase& dc : cases) {
    json answer = json::parse(kDocumentedAnswer);
    answer["birthday"] = dc.graph;
    Result<GraphContact> read = ParseGraphContact(answer.dump(), kMarkerId);
    if (*dc.date) {
      ASSERT_TRUE(read.ok()) << dc.graph << ": " << read.error().message;
      EXPECT_EQ(read->contact.birthday, dc.date) << dc.graph;
    } else {
      ASSERT_FALSE(read.ok()) << dc.graph;
      EXPECT_NE(read.error().message.find("'birthday'"), std::string::npos);
    }
  }
}

TEST(ParseGraphContact, CleansText) {
  json answer = json::parse(kDocumentedAnswer);
  answer["givenName"] = std::string("Pa\0vel\x1b[2J", 10);
  answer["personalNotes"] = "one\r\ntwo\u2028";
  Result<GraphContact> read = ParseGraphContact(answer.dump(), kMarkerId);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->contact.given_name, "Pa\uFFFDvel\uFFFD[2J");
  EXPECT_EQ(read->contact.note, "one\r\ntwo\u2028");
  // Invalid UTF-8 is not JSON at all.
  Result<GraphContact> bad = ParseGraphContact("{\"id\":\"AAMk\",\"givenName\":\"\xff\"}", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("UTF-8"), std::string::npos) << bad.error().message;
}

TEST(ParseGraphContact, KeepsWhatGraphKeepsBeyondTheProjection) {
  json answer = json::parse(kDocumentedAnswer);
  answer["businessPhones"] = {"+1", "+2", "+3"};  // more than Exchange keeps: projected
  answer["emailAddresses"] = {{{"name", "No address"}}, nullptr,
                              {{"address", "a@x"}},     {{"address", ""}},
                              {{"address", "b@x"}},     {{"address", "c@x"}},
                              {{"address", "d@x"}}};
  answer["displayName"] = nullptr;
  answer["unknownProperty"] = {{"deep", {1, 2, 3}}};
  Result<GraphContact> read = ParseGraphContact(answer.dump(), kMarkerId);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->contact.phones.size(), 2u);
  ASSERT_EQ(read->contact.emails.size(), 3u);
  EXPECT_EQ(read->contact.emails[0].value, "a@x");
  EXPECT_EQ(read->contact.formatted_name, "Pavel Bansky");  // as the server fills it
}

struct BadCase {
  std::string json;
  const char* says;  // a part of the one-line error
};

TEST(ParseGraphContact, RefusesBadInputInOneLine) {
  const auto with = [](const char* property, json value) {
    json answer = json::parse(kDocumentedAnswer);
    answer[property] = std::move(value);
    return answer.dump();
  };
  const BadCase cases[] = {
      {"", "not valid JSON (at byte 1)"},
      {"{\"id\": \"AAMk\",", "not valid JSON"},
      {"[1, 2]", "is not a JSON object"},
      {"\"AAMk\"", "is not a JSON object"},
      {"{}", "has no id"},
      {R"({"id": null})", "has no id"},
      {R"({"id": 42})", "the property 'id' is a number, not a string"},
      {R"({"id": ""})", "not a Graph id"},
      {R"({"id": "../../me/messages"})", "not a Graph id"},
      {R"({"id": "AAMk\r\nX-Injected: 1"})", "not a Graph id"},
      {with("givenName", 12), "the property 'givenName' is a number, not a string"},
      {with("givenName", {"a"}), "the property 'givenName' is an array, not a string"},
      {with("businessPhones", "+1"), "the property 'businessPhones' is a string, not an array"},
      {with("businessPhones", {1}), "'businessPhones' is a number"},
      {with("categories", json(std::vector<std::string>(1001, "c"))), "more than 1000 entries"},
      {with("emailAddresses", {"a@x"}), "'emailAddresses' is a string"},
      {with("emailAddresses", {{{"address", true}}}), "'address' is a boolean"},
      {with("homeAddress", "2 Elm St"), "'homeAddress' is a string"},
      {with("homeAddress", {{"city", 5}}), "'homeAddress.city' is a number"},
      {with("birthday", 19800402), "'birthday' is a number"},
      {with("@odata.etag", "W/\"a\"\r\nX: y"), "'@odata.etag' is not usable"},
      {with("@odata.etag", std::string(2000, 'e')), "'@odata.etag' is not usable"},
      {with("changeKey", 7), "'changeKey' is a number"},
      {with("singleValueExtendedProperties", "x"), "'singleValueExtendedProperties' is a string"},
      {with("singleValueExtendedProperties", {{{"id", kMarkerId}, {"value", "roster:v2:a:b"}}}),
       "marker is not one this version of roster wrote"},
      {with("singleValueExtendedProperties", {{{"id", kMarkerId}, {"value", 1}}}),
       "'value' is a number"},
      {std::string(40, '[') + std::string(40, ']'), "nests deeper than 32 levels"},
      {"{\"id\":\"AAMk\",\"personalNotes\":\"" + std::string(kMaxGraphContactBytes, 'x') + "\"}",
       "larger than 1024 KiB"},
  };
  for (const BadCase& bc : cases) {
    Result<GraphContact> read = ParseGraphContact(bc.json, kMarkerId);
    ASSERT_FALSE(read.ok()) << bc.json.substr(0, 200);
    EXPECT_EQ(read.error().kind, ErrorKind::kInvalidData);
    EXPECT_NE(read.error().message.find(bc.says), std::string::npos)
        << read.error().message << " (wanted: " << bc.says << ")";
    EXPECT_EQ(read.error().message.find('\n'), std::string::npos) << read.error().message;
  }
}

// --- pages ----------------------------------------------------------------------------

std::string Page(json items, const char* next, const char* delta) {
  json page = {{"@odata.context", "https://graph.microsoft.com/v1.0/$metadata#Collection(contact)"},
               {"value", std::move(items)}};
  if (next) page["@odata.nextLink"] = next;
  if (delta) page["@odata.deltaLink"] = delta;
  return page.dump();
}

json Item(const char* id, const char* given) {
  return json::parse(Answer(json{{"givenName", given}}, id));
}

TEST(ParseGraphContactPage, ReadsAListingPage) {
  const char* next = "https://graph.microsoft.com/v1.0/users/a/contactFolders/F/contacts?$skip=10";
  json marked = Item("AAMk1", "Ann");
  marked["singleValueExtendedProperties"] = {{{"id", kMarkerId}, {"value", "roster:v1:r:k"}}};
  Result<GraphContactPage> page = ParseGraphContactPage(
      Page({marked, Item("AAMk2", "Bo")}, next, nullptr), kMarkerId, GraphPageKind::kList);
  ASSERT_TRUE(page.ok()) << page.error().message;
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].id, "AAMk1");
  EXPECT_EQ(page->items[0].tag, (ManagedTag{"r", "k"}));
  EXPECT_EQ(page->items[0].contact.formatted_name, "Ann");
  EXPECT_EQ(page->items[1].tag, std::nullopt);
  EXPECT_EQ(page->next_link, next);
  EXPECT_EQ(page->delta_link, "");
  EXPECT_TRUE(page->removed.empty());
  // The last page of a listing has no link.
  page =
      ParseGraphContactPage(Page(json::array(), nullptr, nullptr), kMarkerId, GraphPageKind::kList);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->items.empty());
}

TEST(ParseGraphContactPage, ReadsDeltaPages) {
  const json removed = {{"@odata.type", "#microsoft.graph.contact"},
                        {"id", "AAMk3"},
                        {"@removed", {{"reason", "deleted"}}}};
  const char* delta =
      "https://graph.microsoft.com/v1.0/users/a/contactFolders/F/contacts/"
      "delta?$deltatoken=abc";
  Result<GraphContactPage> page = ParseGraphContactPage(
      Page({Item("AAMk1", "Ann"), removed}, nullptr, delta), kMarkerId, GraphPageKind::kDelta);
  ASSERT_TRUE(page.ok()) << page.error().message;
  EXPECT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->removed, (std::vector<std::string>{"AAMk3"}));
  EXPECT_EQ(page->delta_link, delta);
  EXPECT_EQ(page->next_link, "");

  Result<GraphContactPage> cut = ParseGraphContactPage(
      Page({Item("AAMk1", "Ann")}, nullptr, nullptr), kMarkerId, GraphPageKind::kDelta);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.error().message.find("neither an @odata.nextLink nor an @odata.deltaLink"),
            std::string::npos);
  Result<GraphContactPage> both =
      ParseGraphContactPage(Page(json::array(), delta, delta), kMarkerId, GraphPageKind::kDelta);
  EXPECT_FALSE(both.ok());
  Result<GraphContactPage> listed =
      ParseGraphContactPage(Page({removed}, nullptr, nullptr), kMarkerId, GraphPageKind::kList);
  ASSERT_FALSE(listed.ok());
  EXPECT_NE(listed.error().message.find("item 1: it is an @removed entry"), std::string::npos);
}

TEST(ParseGraphContactPage, AnUnreadableItemIsLeftAloneNotTheWholePage) {
  json bad = Item("AAMk2", "Bo");
  bad["surname"] = {{"not", "a string"}};
  bad["singleValueExtendedProperties"] = {{{"id", kMarkerId}, {"value", "roster:v1:r:k"}}};
  Result<GraphContactPage> page = ParseGraphContactPage(
      Page({Item("AAMk1", "Ann"), bad}, nullptr, nullptr), kMarkerId, GraphPageKind::kList);
  ASSERT_TRUE(page.ok()) << page.error().message;
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].parse_error, "");
  EXPECT_EQ(page->items[1].id, "AAMk2");
  EXPECT_EQ(page->items[1].parse_error,
            "Graph contact AAMk2: the property 'surname' is an object, not a string");
  EXPECT_EQ(page->items[1].contact, Contact{});
  EXPECT_EQ(page->items[1].tag, std::nullopt);
}

TEST(ParseGraphContactPage, RefusesBadPages) {
  const std::string many =
      Page(json(std::vector<json>(kMaxGraphPageItems + 1, json::object())), nullptr, nullptr);
  const BadCase cases[] = {
      {"{", "not valid JSON"},
      {"[]", "is not a JSON object"},
      {"{}", "has no 'value' array"},
      {R"({"value": {}})", "has no 'value' array"},
      {many, "holds more than 10000 items"},
      {Page({1}, nullptr, nullptr), "item 1: it is a number, not an object"},
      {Page({json::object()}, nullptr, nullptr), "item 1: it has no id"},
      {Page({{{"id", "A/../B?x"}}}, nullptr, nullptr), "item 1: its id is not a Graph id"},
      {Page(json::array(), "javascript:alert(1)", nullptr), "not an absolute http(s) URL"},
      {Page(json::array(), "https://graph.microsoft.com/a b", nullptr), "not an absolute"},
      {Page(json::array(), ("https://graph.microsoft.com/" + std::string(20000, 'a')).c_str(),
            nullptr),
       "at most 16 KiB"},
      {R"({"value": [], "@odata.nextLink": 5})", "'@odata.nextLink' is a number"},
  };
  for (const BadCase& bc : cases) {
    Result<GraphContactPage> page = ParseGraphContactPage(bc.json, kMarkerId, GraphPageKind::kList);
    ASSERT_FALSE(page.ok()) << bc.json.substr(0, 200);
    EXPECT_EQ(page.error().kind, ErrorKind::kInvalidData);
    EXPECT_NE(page.error().message.find(bc.says), std::string::npos)
        << page.error().message << " (wanted: " << bc.says << ")";
  }
}

}  // namespace
}  // namespace roster
