// The Graph sources against a scripted Graph: what is asked for ($select,
// paging, links checked), how users and org contacts become records
// (mapping, flattened attributes, memberOf, photos by $batch), the delta
// cursor behind Version(), group members as target users, and a mailbox's
// contact folder.
#include "connectors/graph/graph_source.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/fake_clock.h"
#include "core/hash.h"
#include "core/personal.h"
#include "gtest/gtest.h"

namespace roster {
namespace {

using Json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr char kGraph[] = "https://graph.test";
constexpr char kBase[] = "https://graph.test/v1.0";
constexpr char kGroupId[] = "0b8e5b4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

struct Answer {
  int status = 200;
  std::string body;
  Headers headers;
};

Answer Ok(const Json& body) { return {200, body.dump(), {{"Content-Type", "application/json"}}}; }
Answer Fail(int status, const std::string& code, const std::string& message) {
  return {status,
          Json{{"error", {{"code", code}, {"message", message}}}}.dump(),
          {{"Content-Type", "application/json"}}};
}
Json Page(Json value, const std::string& next = "", const std::string& delta = "") {
  Json page = {{"value", std::move(value)}};
  if (!next.empty()) page["@odata.nextLink"] = std::string(kBase) + next;
  if (!delta.empty()) page["@odata.deltaLink"] = std::string(kBase) + delta;
  return page;
}

// A Graph that answers from routes: the path and query after /v1.0 exactly,
// else the path alone. A route's answers are used in turn, the last one
// again and again. $batch sub-requests are routed the same way.
struct FakeGraph {
  std::map<std::string, std::deque<Answer>> routes;
  std::vector<HttpRequest> seen;
  int batches = 0;

  void On(const std::string& route, Answer a) { routes[route].push_back(std::move(a)); }

  Answer Route(const std::string& tail) {
    auto it = routes.find(tail);
    if (it == routes.end()) it = routes.find(tail.substr(0, tail.find('?')));
    if (it == routes.end() || it->second.empty()) {
      ADD_FAILURE() << "unexpected request " << tail;
      return Fail(400, "Unexpected", "no route");
    }
    Answer a = it->second.front();
    if (it->second.size() > 1) it->second.pop_front();
    return a;
  }

  HttpResponse Send(const HttpRequest& request) {
    seen.push_back(request);
    HttpResponse r;
    r.effective_url = request.url;
    const std::string base = kBase;
    if (!request.url.starts_with(base + "/")) {
      ADD_FAILURE() << "request off Graph: " << request.url;
      r.status = 400;
      return r;
    }
    const std::string tail = request.url.substr(base.size());
    if (tail == "/$batch") {
      ++batches;
      Json in = Json::parse(request.body);
      Json out = Json::array();
      for (const Json& sub : in.at("requests")) {
        Answer a = Route(sub.at("url").get<std::string>());
        Json headers = Json::object();
        for (const auto& [k, v] : a.headers) headers[k] = v;
        Json item = {{"id", sub.at("id")}, {"status", a.status}, {"headers", headers}};
        const bool is_json = a.body.starts_with("{");
        item["body"] = is_json ? Json::parse(a.body) : Json(Base64Encode(a.body));
        out.push_back(item);
      }
      r.status = 200;
      r.headers = {{"content-type", "application/json"}};
      r.body = Json{{"responses", out}}.dump();
      return r;
    }
    Answer a = Route(tail);
    r.status = a.status;
    r.body = a.body;
    for (const auto& [k, v] : a.headers) r.headers.emplace_back(k, v);
    return r;
  }

  // The requests sent, as paths after /v1.0 (batches not included).
  std::vector<std::string> Paths() const {
    std::vector<std::string> out;
    for (const HttpRequest& r : seen) out.push_back(r.url.substr(std::string(kBase).size()));
    return out;
  }
};

struct FakeHttp : HttpClient {
  explicit FakeHttp(FakeGraph* graph) : graph_(graph) {}
  Result<HttpResponse> Send(const HttpRequest& request) override { return graph_->Send(request); }
  FakeGraph* graph_;
};

std::string HeaderOf(const HttpRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  }
  return "";
}

Json User(const std::string& id, const std::string& name) {
  return {{"id", id},
          {"displayName", name},
          {"userPrincipalName", id + "@contoso.test"},
          {"mail", id + "@contoso.test"},
          {"accountEnabled", true},
          {"userType", "Member"}};
}

class GraphSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    graph::GraphCredentials c;
    c.tenant_id = "contoso.onmicrosoft.com";
    c.client_id = "11111111-2222-3333-4444-555555555555";
    c.client_secret = "s3cr3t~NeverPrinted";
    graph::TokenProviderOptions options;
    options.clock = &clock_;
    options.http_factory = [](const HttpOptions&) {
      struct Endpoint : HttpClient {
        Result<HttpResponse> Send(const HttpRequest&) override {
          HttpResponse r;
          r.status = 200;
          r.body =
              Json{{"token_type", "Bearer"}, {"expires_in", 3599}, {"access_token", "tok-secret"}}
                  .dump();
          return r;
        }
      };
      return std::make_unique<Endpoint>();
    };
    auto provider = graph::TokenProvider::Create(c, options);
    ASSERT_TRUE(provider.ok()) << provider.error().message;
    tokens_ = std::move(provider).value();
  }

  graph::GraphClientOptions ClientOptions() {
    graph::GraphClientOptions o;
    o.graph_url = kGraph;
    o.http_factory = [this](const HttpOptions&) { return std::make_unique<FakeHttp>(&graph_); };
    o.clock = &clock_;
    o.seed = 7;
    return o;
  }

  GraphDirectoryOptions Options() {
    GraphDirectoryOptions o;
    o.name = "gal";
    o.tokens = tokens_.get();
    o.client = ClientOptions();
    o.photos = false;
    o.read_org_contacts = false;
    return o;
  }

  std::unique_ptr<GraphDirectory> Open(GraphDirectoryOptions o) {
    auto dir = OpenGraphDirectory(std::move(o));
    EXPECT_TRUE(dir.ok()) << dir.error().message;
    return dir.ok() ? std::move(dir).value() : nullptr;
  }

  // The delta rounds ReadAll starts with.
  void LatestLinks(const std::string& users = "t-u1", const std::string& contacts = "t-c1") {
    graph_.On("/users/delta", Ok(Page(Json::array(), "", "/users/delta?$deltatoken=" + users)));
    graph_.On("/contacts/delta",
              Ok(Page(Json::array(), "", "/contacts/delta?$deltatoken=" + contacts)));
  }

  FakeClock clock_;
  FakeGraph graph_;
  std::unique_ptr<graph::TokenProvider> tokens_;
};

TEST_F(GraphSourceTest, SelectNamesEveryPropertyRosterReads) {
  GraphDirectoryOptions o = Options();
  o.extra_attributes = {"onPremisesExtensionAttributes.extensionAttribute1", "employeeId", "mobile",
                        "memberOf"};
  o.mapping = {{"office", "onPremisesExtensionAttributes.extensionAttribute3"}};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(graph_.seen.size(), 2u);
  const std::string list = graph_.Paths()[1];
  ASSERT_TRUE(list.starts_with("/users?$select=")) << list;
  EXPECT_NE(list.find("&$top=999"), std::string::npos);
  const std::string select = list.substr(15, list.find('&') - 15);
  for (const char* p : {"id",
                        "accountEnabled",
                        "userType",
                        "userPrincipalName",
                        "displayName",
                        "givenName",
                        "surname",
                        "mail",
                        "businessPhones",
                        "mobilePhone",
                        "faxNumber",
                        "jobTitle",
                        "department",
                        "companyName",
                        "streetAddress",
                        "city",
                        "state",
                        "postalCode",
                        "country",
                        "onPremisesExtensionAttributes",
                        "employeeId"}) {
    EXPECT_NE(("," + select + ",").find(std::string(",") + p + ","), std::string::npos) << p;
  }
  // A contact field and memberOf are the record's own, never Graph properties.
  EXPECT_EQ(select.find("mobile,"), std::string::npos);
  EXPECT_EQ(select.find("memberOf"), std::string::npos);
  EXPECT_EQ(select.find("officeLocation"), std::string::npos);  // overridden
  // The delta link is taken first, with the same $select.
  EXPECT_EQ(graph_.Paths()[0], "/users/delta?$select=" + select + "&$deltatoken=latest");
}

TEST_F(GraphSourceTest, BadOptionsAreRefused) {
  GraphDirectoryOptions o = Options();
  o.mapping = {{"nosuchfield", "x"}};
  EXPECT_FALSE(OpenGraphDirectory(o).ok());
  o.mapping = {{"mobile", "mobile Phone"}};
  auto bad = OpenGraphDirectory(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message.rfind("source gal: ", 0), 0u) << bad.error().message;
  o = Options();
  o.page_size = 1000;
  EXPECT_FALSE(OpenGraphDirectory(o).ok());
  o = Options();
  o.tokens = nullptr;
  EXPECT_FALSE(OpenGraphDirectory(o).ok());
  o = Options();
  o.extra_attributes = {"a,b"};
  EXPECT_FALSE(OpenGraphDirectory(o).ok());
}

TEST_F(GraphSourceTest, PagesAreFollowedToTheEnd) {
  auto dir = Open(Options());
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}), "/users?$skiptoken=p2")));
  graph_.On("/users?$skiptoken=p2",
            Ok(Page(Json::array({User("u2", "Bob"), User("u3", "Cy")}), "/users?$skiptoken=p3")));
  graph_.On("/users?$skiptoken=p3", Ok(Page(Json::array({User("u4", "Di")}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 4u);
  EXPECT_EQ((*records)[3].key, "u4");
  EXPECT_EQ((*records)[3].contact.formatted_name, "Di");
  EXPECT_EQ(graph_.seen.size(), 4u);
}

TEST_F(GraphSourceTest, AnOffOriginNextLinkIsRefused) {
  auto dir = Open(Options());
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  Json page = Page(Json::array({User("u1", "Ann")}));
  page["@odata.nextLink"] = "https://evil.test/v1.0/users?$skiptoken=2";
  graph_.On("/users", Ok(page));
  auto records = dir->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.error().message.rfind("source gal: reading /users: refusing its nextLink", 0),
            0u)
      << records.error().message;
  EXPECT_EQ(graph_.seen.size(), 2u);  // nothing went to evil.test
}

TEST_F(GraphSourceTest, APartialReadFailsAsAWhole) {
  auto dir = Open(Options());
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}), "/users?$skiptoken=p2")));
  graph_.On("/users?$skiptoken=p2", Fail(403, "Authorization_RequestDenied",
                                         "Insufficient privileges to complete the operation."));
  auto records = dir->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.error().kind, ErrorKind::kAccessDenied);
  EXPECT_EQ(records.error().message,
            "source gal: reading /users: 403 Authorization_RequestDenied: Insufficient "
            "privileges to complete the operation. (the app needs User.Read.All)");
  EXPECT_EQ(records.error().message.find("tok-secret"), std::string::npos);
  EXPECT_TRUE(dir->Cursor().empty());
}

TEST_F(GraphSourceTest, APageWithoutValueFails) {
  auto dir = Open(Options());
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users", Ok(Json{{"@odata.context", "x"}}));
  auto records = dir->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_NE(records.error().message.find("no value array"), std::string::npos);
}

TEST_F(GraphSourceTest, UsersAreMappedAndFlattened) {
  GraphDirectoryOptions o = Options();
  o.mapping = {{"mobile", ""}, {"office", "onPremisesExtensionAttributes.extensionAttribute3"}};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  Json u = {{"id", "8a0d1c2e-0000-4000-8000-000000000001"},
            {"displayName", "Ann Lee"},
            {"givenName", "Ann"},
            {"surname", "Lee"},
            {"mail", "ann@contoso.test"},
            {"businessPhones", {"+1 555 0100", "+1 555 0101"}},
            {"mobilePhone", "+1 555 0199"},
            {"faxNumber", "+1 555 0102"},
            {"jobTitle", "Engineer"},
            {"department", "R&D"},
            {"companyName", "Contoso"},
            {"officeLocation", "B1"},
            {"streetAddress", "1 Main St"},
            {"city", "Springfield"},
            {"state", "IL"},
            {"postalCode", "62701"},
            {"country", "US"},
            {"accountEnabled", false},
            {"userType", "Member"},
            {"employeeHireDate", nullptr},
            {"proxyAddresses", {"SMTP:ann@contoso.test", "smtp:al@contoso.test"}},
            {"onPremisesExtensionAttributes",
             {{"extensionAttribute1", "HideFromGAL"},
              {"extensionAttribute2", nullptr},
              {"extensionAttribute3", "Room 12"}}},
            {"assignedLicenses",
             {{{"skuId", "sku-a"}, {"disabledPlans", Json::array()}},
              {{"skuId", "sku-b"}, {"disabledPlans", {"p1"}}}}},
            {"ageCount", 3}};
  graph_.On("/users", Ok(Page(Json::array({u}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 1u);
  const SourceRecord& r = (*records)[0];
  EXPECT_EQ(r.key, "8a0d1c2e-0000-4000-8000-000000000001");
  const Contact& c = r.contact;
  EXPECT_EQ(c.formatted_name, "Ann Lee");
  EXPECT_EQ(c.given_name, "Ann");
  EXPECT_EQ(c.family_name, "Lee");
  EXPECT_EQ(c.title, "Engineer");
  EXPECT_EQ(c.department, "R&D");
  EXPECT_EQ(c.organization, "Contoso");
  EXPECT_EQ(GetContactField(c, "email"), std::vector<std::string>{"ann@contoso.test"});
  EXPECT_EQ(GetContactField(c, "work_phone"),
            (std::vector<std::string>{"+1 555 0100", "+1 555 0101"}));
  EXPECT_TRUE(GetContactField(c, "mobile").empty());  // removed by the mapping
  EXPECT_EQ(GetContactField(c, "fax"), std::vector<std::string>{"+1 555 0102"});
  EXPECT_EQ(GetContactField(c, "office"), std::vector<std::string>{"Room 12"});
  EXPECT_EQ(GetContactField(c, "city"), std::vector<std::string>{"Springfield"});
  EXPECT_EQ(GetContactField(c, "region"), std::vector<std::string>{"IL"});
  EXPECT_EQ(GetContactField(c, "postal_code"), std::vector<std::string>{"62701"});
  EXPECT_EQ(GetContactField(c, "country"), std::vector<std::string>{"US"});
  const auto& a = r.attributes;
  EXPECT_EQ(a.at("accountEnabled"), std::vector<std::string>{"false"});
  EXPECT_EQ(a.at("userType"), std::vector<std::string>{"Member"});
  EXPECT_EQ(a.at("ageCount"), std::vector<std::string>{"3"});
  EXPECT_EQ(a.at("businessPhones").size(), 2u);
  EXPECT_EQ(a.at("proxyAddresses"),
            (std::vector<std::string>{"SMTP:ann@contoso.test", "smtp:al@contoso.test"}));
  EXPECT_EQ(a.at("onPremisesExtensionAttributes.extensionAttribute1"),
            std::vector<std::string>{"HideFromGAL"});
  EXPECT_FALSE(a.contains("onPremisesExtensionAttributes.extensionAttribute2"));
  EXPECT_FALSE(a.contains("employeeHireDate"));
  EXPECT_EQ(a.at("assignedLicenses.skuId"), (std::vector<std::string>{"sku-a", "sku-b"}));
  EXPECT_EQ(a.at("assignedLicenses.disabledPlans"), std::vector<std::string>{"p1"});
  EXPECT_EQ(a.at("mobilePhone"), std::vector<std::string>{"+1 555 0199"});  // still filterable
}

TEST_F(GraphSourceTest, OrgContactsAreRead) {
  GraphDirectoryOptions o = Options();
  o.read_users = false;
  o.read_org_contacts = true;
  o.mapping = {{"pager", ""}};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  Json oc = {{"id", "5c0e0000-0000-4000-8000-00000000c001"},
             {"displayName", "Partner Pat"},
             {"givenName", "Pat"},
             {"surname", "Partner"},
             {"mail", "pat@fabrikam.test"},
             {"companyName", "Fabrikam"},
             {"department", "Sales"},
             {"jobTitle", "Rep"},
             {"proxyAddresses", {"SMTP:pat@fabrikam.test"}},
             {"phones",
              {{{"type", "business"}, {"number", "+44 20 0000 0001"}},
               {{"type", "mobile"}, {"number", "+44 7700 000001"}},
               {{"type", "businessFax"}, {"number", "+44 20 0000 0002"}},
               {{"type", "pager"}, {"number", "+44 20 0000 0003"}},
               {{"type", "home"}, {"number", nullptr}}}},
             {"addresses",
              {{{"city", "London"},
                {"countryOrRegion", "UK"},
                {"officeLocation", "Floor 3"},
                {"postalCode", "EC1A 1AA"},
                {"state", nullptr},
                {"street", "1 High St"}}}}};
  graph_.On("/contacts", Ok(Page(Json::array({oc}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 1u);
  const SourceRecord& r = (*records)[0];
  EXPECT_EQ(r.key, "5c0e0000-0000-4000-8000-00000000c001");
  EXPECT_EQ(graph_.Paths()[1], "/contacts?$top=999");
  const Contact& c = r.contact;
  EXPECT_EQ(c.formatted_name, "Partner Pat");
  EXPECT_EQ(c.organization, "Fabrikam");
  EXPECT_EQ(c.title, "Rep");
  EXPECT_EQ(GetContactField(c, "email"), std::vector<std::string>{"pat@fabrikam.test"});
  EXPECT_EQ(GetContactField(c, "work_phone"), std::vector<std::string>{"+44 20 0000 0001"});
  EXPECT_EQ(GetContactField(c, "mobile"), std::vector<std::string>{"+44 7700 000001"});
  EXPECT_EQ(GetContactField(c, "fax"), std::vector<std::string>{"+44 20 0000 0002"});
  EXPECT_TRUE(GetContactField(c, "pager").empty());
  EXPECT_EQ(GetContactField(c, "street"), std::vector<std::string>{"1 High St"});
  EXPECT_EQ(GetContactField(c, "city"), std::vector<std::string>{"London"});
  EXPECT_EQ(GetContactField(c, "country"), std::vector<std::string>{"UK"});
  EXPECT_EQ(GetContactField(c, "office"), std::vector<std::string>{"Floor 3"});
  EXPECT_EQ(r.attributes.at("phones.type").size(), 5u);
  EXPECT_EQ(r.attributes.at("phones.number").size(), 4u);
  EXPECT_EQ(r.attributes.at("addresses.city"), std::vector<std::string>{"London"});
  EXPECT_FALSE(r.attributes.contains("accountEnabled"));
}

TEST_F(GraphSourceTest, GroupsGiveMemberOf) {
  GraphDirectoryOptions o = Options();
  o.read_org_contacts = true;
  o.groups = {"Sales", kGroupId};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann"), User("u2", "Bob")}))));
  graph_.On("/contacts", Ok(Page(Json::array({{{"id", "c1"}, {"displayName", "Pat"}}}))));
  graph_.On("/groups", Ok(Page(Json::array({{{"id", "g-sales"}, {"displayName", "Sales"}}}))));
  graph_.On(std::string("/groups/") + kGroupId,
            Ok(Json{{"id", kGroupId}, {"displayName", "Staff"}}));
  graph_.On("/groups/g-sales/transitiveMembers",
            Ok(Page(Json::array({{{"@odata.type", "#microsoft.graph.user"}, {"id", "u1"}},
                                 {{"@odata.type", "#microsoft.graph.orgContact"}, {"id", "c1"}}}),
                    "/groups/g-sales/transitiveMembers?$skiptoken=2")));
  graph_.On("/groups/g-sales/transitiveMembers?$skiptoken=2",
            Ok(Page(Json::array({{{"@odata.type", "#microsoft.graph.group"}, {"id", "g-sub"}}}))));
  graph_.On(std::string("/groups/") + kGroupId + "/transitiveMembers",
            Ok(Page(Json::array({{{"@odata.type", "#microsoft.graph.user"}, {"id", "u2"}},
                                 {{"@odata.type", "#microsoft.graph.user"}, {"id", "u1"}}}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 3u);
  std::map<std::string, std::vector<std::string>> member_of;
  for (const SourceRecord& r : *records) {
    auto it = r.attributes.find("memberOf");
    if (it != r.attributes.end()) member_of[r.key] = it->second;
  }
  EXPECT_EQ(member_of["u1"], (std::vector<std::string>{"Sales", "g-sales", "Staff", kGroupId}));
  EXPECT_EQ(member_of["u2"], (std::vector<std::string>{"Staff", kGroupId}));
  EXPECT_EQ(member_of["c1"], (std::vector<std::string>{"Sales", "g-sales"}));
  bool filtered = false;
  for (const std::string& p : graph_.Paths()) {
    if (p.starts_with("/groups?")) {
      filtered = true;
      EXPECT_EQ(p, "/groups?$filter=displayName%20eq%20%27Sales%27&$select=id,displayName");
    }
  }
  EXPECT_TRUE(filtered);
  // A group with memberOf cannot be tracked by the users' delta.
  EXPECT_FALSE(dir->Cursor().empty());
  dir->RestoreCursor(dir->Cursor());
  EXPECT_EQ(*dir->Version(), "");
}

TEST_F(GraphSourceTest, AGroupNameMustNameOneGroup) {
  GraphDirectoryOptions o = Options();
  o.groups = {"It's Sales"};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
  graph_.On("/groups", Ok(Page(Json::array({{{"id", "g1"}, {"displayName", "It's Sales"}},
                                            {{"id", "g2"}, {"displayName", "it's sales"}}}))));
  auto records = dir->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.error().message,
            "source gal: 2 groups are named \"It's Sales\"; name it by its object id instead");
  EXPECT_EQ(graph_.Paths().back(),
            "/groups?$filter=displayName%20eq%20%27It%27%27s%20Sales%27&$select=id,displayName");

  graph_.routes["/groups"] = {Ok(Page(Json::array()))};
  auto none = dir->GroupMembers("Nobody", "");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(none.error().message, "source gal: no group is named \"Nobody\"");
}

TEST_F(GraphSourceTest, PhotosComeByBatchAnd404IsNoPhoto) {
  GraphDirectoryOptions o = Options();
  o.photos = true;
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  Json users = Json::array();
  for (int i = 0; i < 25; ++i) users.push_back(User("u" + std::to_string(i), "N"));
  graph_.On("/users", Ok(Page(users)));
  const std::string jpeg = std::string("\xff\xd8\xff\xe0", 4) + "jpegdata";
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "pngdata";
  for (int i = 0; i < 25; ++i) {
    const std::string route = "/users/u" + std::to_string(i) + "/photo/$value";
    if (i == 1) {
      graph_.On(route, Fail(404, "ImageNotFound",
                            "Exception of type "
                            "'Microsoft.Fast.Profile.Core.Exception."
                            "ImageNotFoundException' was thrown."));
    } else if (i == 2) {
      graph_.On(route, {200, png, {{"Content-Type", "image/png"}}});
    } else {
      graph_.On(route, {200, jpeg, {{"Content-Type", "image/jpeg"}}});
    }
  }
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 25u);
  EXPECT_EQ(graph_.batches, 2);
  ASSERT_TRUE((*records)[0].contact.photo.has_value());
  EXPECT_EQ((*records)[0].contact.photo->data, jpeg);
  EXPECT_EQ((*records)[0].contact.photo->media_type, "image/jpeg");
  EXPECT_FALSE((*records)[1].contact.photo.has_value());
  ASSERT_TRUE((*records)[2].contact.photo.has_value());
  EXPECT_EQ((*records)[2].contact.photo->media_type, "image/png");
  EXPECT_EQ((*records)[24].contact.photo->data, jpeg);
}

TEST_F(GraphSourceTest, APhotoErrorFailsTheRead) {
  GraphDirectoryOptions o = Options();
  o.photos = true;
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
  graph_.On("/users/u1/photo/$value", Fail(403, "ErrorAccessDenied", "Access is denied."));
  auto records = dir->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(ShowPersonal(records.error().message)
                .rfind("source gal: reading user photos (user u1): 403", 0),
            0u)
      << records.error().message;
}

// The $select of a request, as a set.
std::set<std::string> SelectOf(const std::string& path) {
  const size_t start = path.find("$select=");
  if (start == std::string::npos) return {};
  std::string list = path.substr(start + 8, path.find('&', start) - start - 8);
  std::set<std::string> out;
  for (size_t at = 0; at <= list.size();) {
    const size_t comma = std::min(list.find(',', at), list.size());
    out.insert(list.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

Json WithManager(Json user, const Json& manager) {
  user["manager"] = manager;
  return user;
}

TEST_F(GraphSourceTest, TheManagerIsExpandedOnlyWhenRead) {
  {  // by default nobody reads it: the requests are what they always were
    auto dir = Open(Options());
    ASSERT_NE(dir, nullptr);
    EXPECT_EQ(dir->user_expand(), "");
    LatestLinks();
    graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
    ASSERT_TRUE(dir->ReadAll().ok());
    for (const std::string& p : graph_.Paths()) {
      EXPECT_EQ(p.find("$expand"), std::string::npos) << p;
      EXPECT_EQ(p.find("manager"), std::string::npos) << p;
    }
  }
  graph_.seen.clear();
  {  // mapped: expanded, never $select'ed on /users, and tracked by the delta
    GraphDirectoryOptions o = Options();
    o.mapping = {{"manager", "manager"}};
    auto dir = Open(o);
    ASSERT_NE(dir, nullptr);
    EXPECT_EQ(dir->user_expand(), "manager($select=displayName,id)");
    EXPECT_EQ(std::count(dir->user_select().begin(), dir->user_select().end(), "manager"), 0);
    LatestLinks();
    graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
    ASSERT_TRUE(dir->ReadAll().ok());
    ASSERT_EQ(graph_.seen.size(), 2u);
    const std::string list = graph_.Paths()[1];
    std::string select;
    for (const std::string& p : dir->user_select()) select += (select.empty() ? "" : ",") + p;
    EXPECT_EQ(list,
              "/users?$select=" + select + "&$expand=manager($select=displayName,id)&$top=999");
    const std::string delta = graph_.Paths()[0];
    EXPECT_TRUE(delta.starts_with("/users/delta?$select=")) << delta;
    EXPECT_TRUE(delta.ends_with("&$deltatoken=latest")) << delta;
    EXPECT_EQ(delta.find("$expand"), std::string::npos) << delta;  // delta takes none
    std::set<std::string> want = SelectOf(list);
    want.insert("manager");
    EXPECT_EQ(SelectOf(delta), want);
  }
  {  // a filter's path into the manager expands it too, with what it reads
    GraphDirectoryOptions o = Options();
    o.extra_attributes = {"manager.displayName", "manager.mail"};
    auto dir = Open(o);
    ASSERT_NE(dir, nullptr);
    EXPECT_EQ(dir->user_expand(), "manager($select=displayName,id,mail)");
    o.extra_attributes = {"manager.onPremisesExtensionAttributes.extensionAttribute1"};
    dir = Open(o);
    ASSERT_NE(dir, nullptr);
    EXPECT_EQ(dir->user_expand(), "manager($select=id,onPremisesExtensionAttributes)");
    // The contact field alone is the record's own, as any other.
    o.extra_attributes = {"manager"};
    dir = Open(o);
    ASSERT_NE(dir, nullptr);
    EXPECT_EQ(dir->user_expand(), "");
  }
  // Group members come from an advanced query ($count=true), where Graph
  // takes no $expand: their manager is refused at once, not by a 400 later.
  GraphDirectoryOptions members = Options();
  members.user_attributes = {"manager.displayName"};
  auto no_members = OpenGraphDirectory(members);
  ASSERT_FALSE(no_members.ok());
  EXPECT_NE(no_members.error().message.find("manager of a group's members"), std::string::npos)
      << no_members.error().message;
  // A chain of managers is expanded for one user only, never for the list.
  GraphDirectoryOptions chain = Options();
  chain.mapping = {{"note", "manager.manager.displayName"}};
  auto refused = OpenGraphDirectory(chain);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kInvalidArgument);
  EXPECT_EQ(refused.error().message.rfind("source gal: the manager's manager", 0), 0u)
      << refused.error().message;
}

TEST_F(GraphSourceTest, TheManagersNameLandsInTheContact) {
  GraphDirectoryOptions o = Options();
  o.mapping = {{"manager", "manager"}};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks();
  graph_.On("/users",
            Ok(Page(Json::array(
                {User("u1", "Ann"),  // no manager: Graph leaves the member out
                 WithManager(User("u2", "Bob"), {{"@odata.type", "#microsoft.graph.user"},
                                                 {"id", "u1"},
                                                 {"displayName", "Ann"}}),
                 WithManager(User("u3", "Cy"), {{"@odata.type", "#microsoft.graph.orgContact"},
                                                {"id", "c9"},
                                                {"displayName", " Pat Partner "}})}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 3u);
  EXPECT_TRUE((*records)[0].contact.manager.empty());
  EXPECT_FALSE((*records)[0].attributes.contains("manager.displayName"));
  EXPECT_EQ((*records)[1].contact.manager, "Ann");
  EXPECT_EQ(GetContactField((*records)[1].contact, "manager"), std::vector<std::string>{"Ann"});
  EXPECT_EQ((*records)[1].attributes.at("manager.displayName"), std::vector<std::string>{"Ann"});
  EXPECT_EQ((*records)[1].attributes.at("manager.id"), std::vector<std::string>{"u1"});
  EXPECT_EQ((*records)[2].contact.manager, "Pat Partner");

  // Mapped to another field, or read for a filter only, the name is the same.
  auto other = ResolveGraphMapping({{"note", "manager"}});
  ASSERT_TRUE(other.ok());
  auto page = ParseGraphDirectoryPage(
      Json{{"value", {WithManager(User("u2", "Bob"), {{"displayName", "Ann"}})}}}.dump(),
      GraphObjectKind::kUser, *other);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->records[0].contact.note, "Ann");
  EXPECT_TRUE(page->records[0].contact.manager.empty());
}

TEST(GraphDirectoryPageTest, AMalformedManagerIsIgnored) {
  auto mapping = ResolveGraphMapping({{"manager", "manager"}});
  ASSERT_TRUE(mapping.ok());
  const std::vector<Json> bad = {
      "Ann",                                    // a name, not an object
      Json::array({{{"displayName", "Ann"}}}),  // a list of managers
      3,
      true,
      nullptr,
      Json::object(),
      {{"displayName", 5}},
      {{"displayName", nullptr}},
      {{"displayName", {{"first", "Ann"}}}},
      {{"displayName", Json::array({"Ann", "Bob"})}},
      {{"displayName", " \t "}},
      {{"displayName", std::string(1025, 'a')}},
      {{"displayName", std::string(4 << 20, 'a')}},
  };
  for (const Json& manager : bad) {
    Json u = User("u1", "Bob");
    u["manager"] = manager;
    auto page =
        ParseGraphDirectoryPage(Json{{"value", {u}}}.dump(), GraphObjectKind::kUser, *mapping);
    ASSERT_TRUE(page.ok()) << manager.dump().substr(0, 80) << ": " << page.error().message;
    ASSERT_EQ(page->records.size(), 1u);
    const SourceRecord& r = page->records[0];
    EXPECT_TRUE(r.contact.manager.empty()) << manager.dump().substr(0, 80);
    EXPECT_FALSE(r.attributes.contains("manager.displayName")) << manager.dump().substr(0, 80);
    if (!manager.is_object()) {
      for (const auto& [name, values] : r.attributes) {
        EXPECT_FALSE(name == "manager" || name.starts_with("manager.")) << name;
      }
    }
    EXPECT_EQ(r.contact.formatted_name, "Bob");  // the rest of the user is read
  }
  // The longest name Entra allows fits; control characters are not kept.
  Json u = User("u1", "Bob");
  u["manager"] = {{"displayName", std::string(1024, 'a')}};
  auto longest =
      ParseGraphDirectoryPage(Json{{"value", {u}}}.dump(), GraphObjectKind::kUser, *mapping);
  ASSERT_TRUE(longest.ok());
  EXPECT_EQ(longest->records[0].contact.manager.size(), 1024u);
  u["manager"] = {{"displayName", "Ann\x01Lee"}};
  auto control =
      ParseGraphDirectoryPage(Json{{"value", {u}}}.dump(), GraphObjectKind::kUser, *mapping);
  ASSERT_TRUE(control.ok());
  EXPECT_EQ(control->records[0].contact.manager, "Ann\xEF\xBF\xBDLee");
}

class GraphVersionTest : public GraphSourceTest {
 protected:
  // A first run: ReadAll with both kinds, its cursor saved.
  std::string FirstRun() {
    GraphDirectoryOptions o = Options();
    o.read_org_contacts = true;
    auto dir = Open(o);
    EXPECT_NE(dir, nullptr);
    LatestLinks("u1", "c1");
    graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
    graph_.On("/contacts", Ok(Page(Json::array({{{"id", "c1"}, {"displayName", "Pat"}}}))));
    auto records = dir->ReadAll();
    EXPECT_TRUE(records.ok()) << records.error().message;
    version_ = HashHex("");  // replaced below
    const std::string cursor = dir->Cursor();
    EXPECT_FALSE(cursor.empty());
    EXPECT_EQ(cursor.find("tok-secret"), std::string::npos);
    Json c = Json::parse(cursor);
    version_ = c.at("version").get<std::string>();
    graph_.seen.clear();
    return cursor;
  }

  std::unique_ptr<GraphDirectory> Second(const std::string& cursor) {
    GraphDirectoryOptions o = Options();
    o.read_org_contacts = true;
    auto dir = Open(o);
    dir->RestoreCursor(cursor);
    return dir;
  }

  std::string version_;
};

TEST_F(GraphVersionTest, NoChangesKeepTheVersion) {
  const std::string cursor = FirstRun();
  EXPECT_NE(cursor.find("https://graph.test/v1.0/users/delta?$deltatoken=u1"), std::string::npos);
  auto dir = Second(cursor);
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=u2")));
  graph_.On("/contacts/delta?$deltatoken=c1",
            Ok(Page(Json::array(), "", "/contacts/delta?$deltatoken=c2")));
  auto v = dir->Version();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, version_);
  EXPECT_EQ(graph_.seen.size(), 2u);  // one request per delta
  const std::string next = dir->Cursor();
  EXPECT_NE(next.find("$deltatoken=u2"), std::string::npos);
  EXPECT_NE(next.find("$deltatoken=c2"), std::string::npos);
  EXPECT_NE(next.find(version_), std::string::npos);
}

TEST_F(GraphVersionTest, AChangeMeansUnknown) {
  auto dir = Second(FirstRun());
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=u2")));
  graph_.On("/contacts/delta?$deltatoken=c1",
            Ok(Page(Json::array({{{"id", "c1"}, {"@removed", {{"reason", "deleted"}}}}}), "",
                    "/contacts/delta?$deltatoken=c2")));
  auto v = dir->Version();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "");
  // Until the changes are read the saved links stay where they were, so
  // that a run that does not read them finds them again.
  const std::string cursor = dir->Cursor();
  EXPECT_NE(cursor.find("$deltatoken=u1"), std::string::npos);
  EXPECT_NE(cursor.find("$deltatoken=c1"), std::string::npos);
  EXPECT_EQ(cursor.find("$deltatoken=c2"), std::string::npos);
}

TEST_F(GraphVersionTest, AChangeOnALaterPageMeansUnknown) {
  auto dir = Second(FirstRun());
  graph_.On("/users/delta?$deltatoken=u1", Ok(Page(Json::array(), "/users/delta?$skiptoken=s2")));
  graph_.On("/users/delta?$skiptoken=s2",
            Ok(Page(Json::array({User("u9", "New")}), "", "/users/delta?$deltatoken=u2")));
  auto v = dir->Version();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "");
}

TEST_F(GraphVersionTest, AnExpiredTokenMeansUnknown) {
  auto dir = Second(FirstRun());
  graph_.On("/users/delta?$deltatoken=u1",
            Fail(410, "syncStateNotFound", "The sync state is not found."));
  auto v = dir->Version();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "");
  EXPECT_EQ(graph_.seen.size(), 1u);
  // The next ReadAll reports it.
  LatestLinks();
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
  graph_.On("/contacts", Ok(Page(Json::array())));
  ASSERT_TRUE(dir->ReadAll().ok());
  ASSERT_EQ(dir->Warnings().size(), 1u);
  EXPECT_NE(dir->Warnings()[0].find("410"), std::string::npos) << dir->Warnings()[0];
}

TEST_F(GraphVersionTest, AForeignOrMissingCursorMeansUnknown) {
  const std::string cursor = FirstRun();
  auto dir = Open(Options());  // users only: the cursor is another configuration's
  dir->RestoreCursor(cursor);
  EXPECT_EQ(*dir->Version(), "");
  auto fresh = Open(Options());
  EXPECT_EQ(*fresh->Version(), "");
  fresh->RestoreCursor("{not json");
  EXPECT_EQ(*fresh->Version(), "");
  Json c = Json::parse(cursor);
  c["links"][0] = "https://evil.test/v1.0/users/delta?$deltatoken=u1";
  auto other = Second(c.dump());
  EXPECT_EQ(*other->Version(), "");
  EXPECT_TRUE(graph_.seen.empty());
}

TEST_F(GraphVersionTest, PhotosAreReadInFullDaily) {
  Json c = Json::parse(FirstRun());
  GraphDirectoryOptions o = Options();
  o.read_org_contacts = true;
  o.photos = true;
  auto dir = Open(o);
  dir->RestoreCursor(c.dump());
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=u2")));
  graph_.On("/contacts/delta?$deltatoken=c1",
            Ok(Page(Json::array(), "", "/contacts/delta?$deltatoken=c2")));
  EXPECT_EQ(*dir->Version(), version_);  // read a moment ago
  c["read_at"] = c["read_at"].get<int64_t>() - 2 * 24 * 3600;
  dir->RestoreCursor(c.dump());
  graph_.seen.clear();
  EXPECT_EQ(*dir->Version(), "");
  EXPECT_TRUE(graph_.seen.empty());
}

TEST_F(GraphSourceTest, AManagerChangeShowsInTheUsersDelta) {
  GraphDirectoryOptions o = Options();
  o.mapping = {{"manager", "manager"}};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  LatestLinks("m1");
  const Json ann = User("u1", "Ann");
  graph_.On("/users",
            Ok(Page(Json::array(
                {ann, WithManager(User("u2", "Bob"), {{"id", "u1"}, {"displayName", "Ann"}})}))));
  ASSERT_TRUE(dir->ReadAll().ok());
  const std::string cursor = dir->Cursor();
  ASSERT_FALSE(cursor.empty());
  const std::string version = Json::parse(cursor).at("version").get<std::string>();

  // A run that does not read the manager does not trust these links, nor
  // one that does the links of a run that did not: they track other things.
  auto plain = Open(Options());
  plain->RestoreCursor(cursor);
  graph_.seen.clear();
  EXPECT_EQ(*plain->Version(), "");
  EXPECT_TRUE(graph_.seen.empty());

  // Nothing changed: the version holds, one request.
  auto again = Open(o);
  again->RestoreCursor(cursor);
  graph_.On("/users/delta?$deltatoken=m1",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=m2")));
  EXPECT_EQ(*again->Version(), version);
  EXPECT_EQ(graph_.seen.size(), 1u);

  // Bob got another manager: the delta names him with manager@delta only.
  const std::string renewed = again->Cursor();
  auto moved = Open(o);
  moved->RestoreCursor(renewed);
  graph_.On("/users/delta?$deltatoken=m2",
            Ok(Page(Json::array({{{"@odata.type", "#microsoft.graph.user"},
                                  {"id", "u2"},
                                  {"manager@delta",
                                   {{{"@odata.type", "#microsoft.graph.user"}, {"id", "u3"}}}}}}),
                    "", "/users/delta?$deltatoken=m3")));
  EXPECT_EQ(*moved->Version(), "");

  // Ann was renamed: only her own object changes, and that is enough, for
  // the full read that follows expands every report's manager afresh.
  auto renamed = Open(o);
  renamed->RestoreCursor(renewed);
  graph_.routes["/users/delta?$deltatoken=m2"] = {
      Ok(Page(Json::array({{{"id", "u1"}, {"displayName", "Ann Smith"}}}), "",
              "/users/delta?$deltatoken=m4"))};
  EXPECT_EQ(*renamed->Version(), "");
  graph_.routes["/users"] = {Ok(Page(Json::array(
      {User("u1", "Ann Smith"),
       WithManager(User("u2", "Bob"), {{"id", "u1"}, {"displayName", "Ann Smith"}})})))};
  auto records = renamed->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  EXPECT_EQ((*records)[1].contact.manager, "Ann Smith");
  EXPECT_NE(Json::parse(renamed->Cursor()).at("version").get<std::string>(), version);
}

TEST_F(GraphSourceTest, WithoutDeltaLinksTheReadStillSucceeds) {
  auto dir = Open(Options());
  graph_.On("/users/delta", Fail(403, "Authorization_RequestDenied", "Insufficient privileges."));
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  EXPECT_EQ(records->size(), 1u);
  EXPECT_TRUE(dir->Cursor().empty());
  ASSERT_EQ(dir->Warnings().size(), 1u);
  EXPECT_EQ(dir->Warnings()[0].rfind("source gal: reading /users/delta: 403", 0), 0u)
      << dir->Warnings()[0];
}

TEST_F(GraphSourceTest, ARefusedLatestTokenFallsBackToAWholeRound) {
  auto dir = Open(Options());
  const std::string latest = "/users/delta?$select=" + [&] {
    std::string s;
    for (const std::string& p : dir->user_select()) {
      s += (s.empty() ? "" : ",") + p;
    }
    return s;
  }() + "&$deltatoken=latest";
  graph_.On(latest, Fail(400, "Request_UnsupportedQuery", "Unsupported query."));
  graph_.On("/users/delta",
            Ok(Page(Json::array({User("u1", "Ann")}), "/users/delta?$skiptoken=2")));
  graph_.On("/users/delta?$skiptoken=2", Ok(Page(Json::array(), "", "/users/delta?$deltatoken=w")));
  graph_.On("/users", Ok(Page(Json::array({User("u1", "Ann")}))));
  auto records = dir->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  EXPECT_NE(dir->Cursor().find("$deltatoken=w"), std::string::npos);
}

TEST_F(GraphSourceTest, GroupMembersArePagedUsersWithTheirUpn) {
  GraphDirectoryOptions o = Options();
  o.user_attributes = {"onPremisesExtensionAttributes.extensionAttribute5", "usageLocation"};
  auto dir = Open(o);
  ASSERT_NE(dir, nullptr);
  const std::string route =
      std::string("/groups/") + kGroupId + "/transitiveMembers/microsoft.graph.user";
  Json u1 = User("u1", "Ann");
  u1["@odata.type"] = "#microsoft.graph.user";
  u1["onPremisesExtensionAttributes"] = {{"extensionAttribute5", "x5"}};
  graph_.On(route, Ok(Page(Json::array({u1}), route.substr(0) + "?$skiptoken=2")));
  graph_.On(route + "?$skiptoken=2", Ok(Page(Json::array({User("u2", "Bob"), u1}))));
  auto users = dir->GroupMembers(kGroupId, "");
  ASSERT_TRUE(users.ok()) << users.error().message;
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].key, "u1");
  EXPECT_EQ((*users)[0].dn, "u1");
  EXPECT_EQ((*users)[0].values, std::vector<std::string>{"u1@contoso.test"});
  EXPECT_EQ((*users)[0].attributes.at("onPremisesExtensionAttributes.extensionAttribute5"),
            std::vector<std::string>{"x5"});
  EXPECT_EQ((*users)[0].attributes.at("accountEnabled"), std::vector<std::string>{"true"});
  EXPECT_EQ((*users)[1].values, std::vector<std::string>{"u2@contoso.test"});
  ASSERT_EQ(graph_.seen.size(), 2u);
  const std::string first = graph_.Paths()[0];
  EXPECT_EQ(first, route +
                       "?$select=accountEnabled,id,mail,onPremisesExtensionAttributes,"
                       "usageLocation,userPrincipalName,userType&$count=true&$top=999");
  EXPECT_EQ(HeaderOf(graph_.seen[0], "ConsistencyLevel"), "eventual");

  auto by_mail = dir->GroupMembers(kGroupId, "mail");
  ASSERT_TRUE(by_mail.ok());
  EXPECT_EQ((*by_mail)[1].values, std::vector<std::string>{"u2@contoso.test"});

  auto search = dir->SearchUsers("(uid=x)", "");
  ASSERT_FALSE(search.ok());
  EXPECT_EQ(search.error().kind, ErrorKind::kInvalidArgument);
}

TEST_F(GraphSourceTest, GroupMembersFailAsAWhole) {
  auto dir = Open(Options());
  const std::string route =
      std::string("/groups/") + kGroupId + "/transitiveMembers/microsoft.graph.user";
  graph_.On(route, Ok(Page(Json::array({User("u1", "Ann")}), route + "?$skiptoken=2")));
  graph_.On(route + "?$skiptoken=2", Fail(404, "Request_ResourceNotFound", "gone"));
  auto users = dir->GroupMembers(kGroupId, "");
  ASSERT_FALSE(users.ok());
  EXPECT_EQ(users.error().message.rfind("source gal: reading /groups/" + std::string(kGroupId), 0),
            0u)
      << users.error().message;
}

// --- folder source ---

class GraphFolderTest : public GraphSourceTest {
 protected:
  std::unique_ptr<Source> OpenFolder(const std::string& folder) {
    GraphFolderSourceOptions o;
    o.name = "team";
    o.tokens = tokens_.get();
    o.client = ClientOptions();
    o.mailbox = "alice@contoso.test";
    o.folder = folder;
    auto source = OpenGraphFolderSource(std::move(o));
    EXPECT_TRUE(source.ok()) << source.error().message;
    return source.ok() ? std::move(source).value() : nullptr;
  }
  static constexpr char kMailbox[] = "/users/alice%40contoso.test";
};

TEST_F(GraphFolderTest, AFolderIsResolvedAndRead) {
  auto source = OpenFolder("Team/Partners");
  ASSERT_NE(source, nullptr);
  const std::string m = kMailbox;
  graph_.On(m + "/contactFolders",
            Ok(Page(Json::array({{{"id", "F1"}, {"displayName", "Team"}}}))));
  graph_.On(m + "/contactFolders/F1/childFolders",
            Ok(Page(Json::array({{{"id", "F2"}, {"displayName", "Partners"}}}))));
  graph_.On(m + "/contactFolders/F2/contacts/delta",
            Ok(Page(Json::array({{{"id", "AAkAx1"}, {"displayName", "Old"}}}), "",
                    m + "/contactFolders/F2/contacts/delta?$deltatoken=d1")));
  Json c1 = {{"id", "AAkAAAc1="},
             {"@odata.etag", "W/\"CQAAAA==\""},
             {"displayName", "Ann Lee"},
             {"givenName", "Ann"},
             {"surname", "Lee"},
             {"emailAddresses", {{{"address", "ann@fabrikam.test"}, {"name", "Ann"}}}},
             {"businessPhones", {"+1 555 0100"}},
             {"categories", {"VIP", "Partner"}}};
  Json c2 = {{"id", "AAkAAAc2="}, {"displayName", "Bob"}, {"categories", Json::array()}};
  graph_.On(m + "/contactFolders/F2/contacts",
            Ok(Page(Json::array({c1}), m + "/contactFolders/F2/contacts?p=2")));
  graph_.On(m + "/contactFolders/F2/contacts?p=2", Ok(Page(Json::array({c2}))));
  auto records = source->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].key, "AAkAAAc1=");
  EXPECT_EQ((*records)[0].contact.given_name, "Ann");
  EXPECT_EQ(GetContactField((*records)[0].contact, "email"),
            std::vector<std::string>{"ann@fabrikam.test"});
  EXPECT_EQ((*records)[0].attributes.at("categories"),
            (std::vector<std::string>{"VIP", "Partner"}));
  EXPECT_EQ((*records)[0].attributes.at("emailAddresses.address"),
            std::vector<std::string>{"ann@fabrikam.test"});
  EXPECT_EQ((*records)[1].key, "AAkAAAc2=");
  const auto paths = graph_.Paths();
  EXPECT_EQ(paths[0], m + "/contactFolders?$filter=displayName%20eq%20%27Team%27&$select=id,"
                          "displayName");
  EXPECT_EQ(paths[1], m + "/contactFolders/F1/childFolders?$filter=displayName%20eq%20%27"
                          "Partners%27&$select=id,displayName");
  EXPECT_EQ(paths[3], m + "/contactFolders/F2/contacts?$top=1000");
  EXPECT_NE(HeaderOf(graph_.seen[2], "Prefer").find("odata.maxpagesize=1000"), std::string::npos);

  // The next run: nothing changed.
  const std::string cursor = source->Cursor();
  ASSERT_FALSE(cursor.empty());
  auto again = OpenFolder("Team/Partners");
  again->RestoreCursor(cursor);
  graph_.seen.clear();
  graph_.On(m + "/contactFolders/F2/contacts/delta?$deltatoken=d1",
            Ok(Page(Json::array(), "", m + "/contactFolders/F2/contacts/delta?$deltatoken=d2")));
  auto v = again->Version();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, Json::parse(cursor).at("version").get<std::string>());
  EXPECT_EQ(graph_.seen.size(), 1u);
  EXPECT_NE(again->Cursor().find("d2"), std::string::npos);
}

TEST_F(GraphFolderTest, AFolderChangeMeansUnknown) {
  const std::string m = kMailbox;
  auto source = OpenFolder("Team");
  graph_.On(m + "/contactFolders",
            Ok(Page(Json::array({{{"id", "F1"}, {"displayName", "Team"}}}))));
  graph_.On(m + "/contactFolders/F1/contacts/delta",
            Ok(Page(Json::array(), "", m + "/contactFolders/F1/contacts/delta?$deltatoken=d1")));
  graph_.On(m + "/contactFolders/F1/contacts",
            Ok(Page(Json::array({{{"id", "AAkAAAc1="}, {"displayName", "Ann"}}}))));
  ASSERT_TRUE(source->ReadAll().ok());
  // Right after the read its own links tell that it is current.
  graph_.On(m + "/contactFolders/F1/contacts/delta?$deltatoken=d1",
            Ok(Page(Json::array(), "", m + "/contactFolders/F1/contacts/delta?$deltatoken=d2")));
  EXPECT_FALSE(source->Version()->empty());
  const std::string cursor = source->Cursor();
  source->RestoreCursor(cursor);
  graph_.On(m + "/contactFolders/F1/contacts/delta?$deltatoken=d2",
            Ok(Page(Json::array({{{"@odata.type", "#microsoft.graph.contact"},
                                  {"id", "AAkAAAc1="},
                                  {"@removed", {{"reason", "deleted"}}}}}),
                    "", m + "/contactFolders/F1/contacts/delta?$deltatoken=d3")));
  EXPECT_EQ(*source->Version(), "");
  // The saved link stays until the change is read.
  EXPECT_NE(source->Cursor().find("$deltatoken=d2"), std::string::npos);
}

TEST_F(GraphFolderTest, ADeltaReadTakesChangedContactsFromTheDeltaPages) {
  const std::string m = kMailbox;
  auto source = OpenFolder("Team");
  graph_.On(m + "/contactFolders",
            Ok(Page(Json::array({{{"id", "F1"}, {"displayName", "Team"}}}))));
  graph_.On(m + "/contactFolders/F1/contacts/delta",
            Ok(Page(Json::array(), "", m + "/contactFolders/F1/contacts/delta?$deltatoken=d1")));
  graph_.On(m + "/contactFolders/F1/contacts",
            Ok(Page(Json::array({{{"id", "AAkAAAc1="}, {"displayName", "Ann"}},
                                 {{"id", "AAkAAAc2="}, {"displayName", "Bob"}},
                                 {{"id", "AAkAAAc3="}, {"displayName", "Cy"}}}))));
  auto first = source->ReadChanges({});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->full);
  ASSERT_EQ(first->changed.size(), 3u);
  std::unordered_map<std::string, std::string> stamps;
  for (const StampedRecord& c : first->changed) stamps[c.record.key] = c.stamp;

  auto next = OpenFolder("Team");
  next->RestoreCursor(source->Cursor());
  graph_.seen.clear();
  graph_.On(m + "/contactFolders/F1/contacts/delta?$deltatoken=d1",
            Ok(Page(Json::array({{{"@odata.type", "#microsoft.graph.contact"},
                                  {"id", "AAkAAAc1="},
                                  {"displayName", "Ann Lee"}},
                                 {{"@odata.type", "#microsoft.graph.contact"},
                                  {"id", "AAkAAAc3="},
                                  {"@removed", {{"reason", "deleted"}}}}}),
                    "", m + "/contactFolders/F1/contacts/delta?$deltatoken=d2")));
  auto changes = next->ReadChanges(stamps);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_FALSE(changes->full);
  ASSERT_EQ(changes->changed.size(), 1u);
  EXPECT_EQ(changes->changed[0].record.contact.formatted_name, "Ann Lee");
  EXPECT_EQ(changes->removed, std::vector<std::string>{"AAkAAAc3="});
  // The delta only: no folder lookup, no listing.
  EXPECT_EQ(graph_.Paths(),
            std::vector<std::string>{m + "/contactFolders/F1/contacts/delta?$deltatoken=d1"});
  EXPECT_NE(next->Cursor().find("$deltatoken=d2"), std::string::npos);

  // A cache that lost an entry is read in full, not trusted.
  stamps.erase("AAkAAAc2=");
  auto third = OpenFolder("Team");
  third->RestoreCursor(source->Cursor());
  auto full = third->ReadChanges(stamps);
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_TRUE(full->full);
}

TEST_F(GraphFolderTest, AMissingOrAmbiguousFolderIsAnError) {
  const std::string m = kMailbox;
  auto source = OpenFolder("Team");
  graph_.On(m + "/contactFolders", Ok(Page(Json::array())));
  auto records = source->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(records.error().message,
            "source team: mailbox alice@contoso.test has no contact folder \"Team\"");
  graph_.routes[m + "/contactFolders"] = {Ok(Page(Json::array(
      {{{"id", "F1"}, {"displayName", "Team"}}, {{"id", "F2"}, {"displayName", "team"}}})))};
  records = source->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.error().message,
            "source team: mailbox alice@contoso.test has 2 contact folders named \"Team\"");
  GraphFolderSourceOptions o;
  o.name = "team";
  o.tokens = tokens_.get();
  o.mailbox = "a";
  o.folder = "Team//x";
  EXPECT_FALSE(OpenGraphFolderSource(o).ok());
}

// --- the pure reader ---

TEST(GraphDirectoryPageTest, HostilePagesAreRefused) {
  auto mapping = ResolveGraphMapping({});
  ASSERT_TRUE(mapping.ok());
  for (const char* bad : {"", "[]", "{\"value\": 3}", "{\"value\": [{\"displayName\": \"x\"}]}",
                          "{\"value\": [{\"id\": \"a b\"}]}", "{\"value\": [3]}",
                          "{\"value\": [], \"@odata.nextLink\": \"ftp://x\"}",
                          "{\"value\": [], \"@odata.nextLink\": \"https://a/\", "
                          "\"@odata.deltaLink\": \"https://a/\"}"}) {
    EXPECT_FALSE(ParseGraphDirectoryPage(bad, GraphObjectKind::kUser, *mapping).ok()) << bad;
  }
  std::string deep = "{\"value\": [{\"id\": \"a\", \"x\": ";
  for (int i = 0; i < 100; ++i) deep += "[";
  EXPECT_FALSE(ParseGraphDirectoryPage(deep, GraphObjectKind::kUser, *mapping).ok());
  auto other = ParseGraphDirectoryPage(
      R"({"value": [{"id": "g", "@odata.type": "#microsoft.graph.group"}, {"id": "u"}]})",
      GraphObjectKind::kUser, *mapping);
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->records.size(), 1u);
  EXPECT_EQ(other->records[0].key, "u");
}

class GraphDeltaTest : public GraphSourceTest {
 protected:
  GraphDirectoryOptions DeltaOptions() {
    GraphDirectoryOptions o = Options();
    o.mapping = {{"manager", "manager"}};
    return o;
  }
  static Json WithManager(Json user, const std::string& id, const std::string& name) {
    user["manager"] = {{"@odata.type", "#microsoft.graph.user"}, {"id", id}, {"displayName", name}};
    return user;
  }
  // The first run: everything read, its stamps and cursor kept.
  void FirstRun(GraphDirectoryOptions o) {
    auto dir = Open(o);
    ASSERT_NE(dir, nullptr);
    LatestLinks("u1", "c1");
    graph_.On("/users",
              Ok(Page(Json::array({User("u1", "Ann"), WithManager(User("u2", "Bob"), "u1", "Ann"),
                                   User("u3", "Cy")}))));
    auto changes = dir->ReadChanges({});
    ASSERT_TRUE(changes.ok()) << changes.error().message;
    EXPECT_TRUE(changes->full);
    ASSERT_EQ(changes->changed.size(), 3u);
    for (const StampedRecord& c : changes->changed) stamps_[c.record.key] = c.stamp;
    cursor_ = dir->Cursor();
    ASSERT_FALSE(cursor_.empty());
    graph_.seen.clear();
    graph_.batches = 0;
  }
  std::unique_ptr<GraphDirectory> Next(GraphDirectoryOptions o) {
    auto dir = Open(o);
    dir->RestoreCursor(cursor_);
    return dir;
  }
  static std::set<std::string> Keys(const SourceChanges& c) {
    std::set<std::string> keys;
    for (const StampedRecord& r : c.changed) keys.insert(r.record.key);
    return keys;
  }

  std::unordered_map<std::string, std::string> stamps_;
  std::string cursor_;
};

TEST_F(GraphDeltaTest, AChangedManagerIsReadByIdWithTheirReportsAndNothingElse) {
  FirstRun(DeltaOptions());
  auto dir = Next(DeltaOptions());
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array({User("u1", "Ann Lee")}), "", "/users/delta?$deltatoken=u2")));
  graph_.On("/users/u1", Ok(User("u1", "Ann Lee")));
  graph_.On("/users/u2", Ok(WithManager(User("u2", "Bob"), "u1", "Ann Lee")));
  auto changes = dir->ReadChanges(stamps_);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_FALSE(changes->full);
  EXPECT_EQ(Keys(*changes), (std::set<std::string>{"u1", "u2"}));  // u3 stays cached
  EXPECT_TRUE(changes->removed.empty());
  for (const StampedRecord& c : changes->changed) {
    if (c.record.key == "u2") {
      EXPECT_EQ(c.record.contact.manager, "Ann Lee");
    }
    EXPECT_NE(c.stamp, stamps_.at(c.record.key));
  }
  // The delta, then one $batch for both users; no listing of /users.
  EXPECT_EQ(graph_.Paths(), (std::vector<std::string>{"/users/delta?$deltatoken=u1", "/$batch"}));
  EXPECT_EQ(graph_.batches, 1);
  EXPECT_NE(dir->Cursor().find("$deltatoken=u2"), std::string::npos);
}

TEST_F(GraphDeltaTest, ARemovalIsAnsweredWithoutAReadAndAQuietDeltaReadsNothing) {
  FirstRun(DeltaOptions());
  auto dir = Next(DeltaOptions());
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array({{{"id", "u3"}, {"@removed", {{"reason", "changed"}}}}}), "",
                    "/users/delta?$deltatoken=u2")));
  auto changes = dir->ReadChanges(stamps_);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_FALSE(changes->full);
  EXPECT_TRUE(changes->changed.empty());
  EXPECT_EQ(changes->removed, std::vector<std::string>{"u3"});
  EXPECT_EQ(graph_.batches, 0);

  // Next run: the cache without u3, and a delta with nothing in it.
  stamps_.erase("u3");
  cursor_ = dir->Cursor();
  graph_.seen.clear();
  auto quiet = Next(DeltaOptions());
  graph_.On("/users/delta?$deltatoken=u2",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=u3")));
  auto none = quiet->ReadChanges(stamps_);
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->full);
  EXPECT_TRUE(none->changed.empty());
  EXPECT_TRUE(none->removed.empty());
  EXPECT_EQ(graph_.Paths(), std::vector<std::string>{"/users/delta?$deltatoken=u2"});
}

TEST_F(GraphDeltaTest, ACacheThatIsNotWhatTheLinksFollowIsReadInFull) {
  FirstRun(DeltaOptions());
  // An entry expired (or was purged): the digest in the cursor no longer
  // matches, and a delta could not bring it back.
  stamps_.erase("u2");
  auto dir = Next(DeltaOptions());
  LatestLinks("u5", "c5");
  auto changes = dir->ReadChanges(stamps_);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_TRUE(changes->full);
  EXPECT_EQ(changes->changed.size(), 3u);
}

TEST_F(GraphDeltaTest, AnExpiredDeltaLinkIsAFullReadWithAWarning) {
  FirstRun(DeltaOptions());
  auto dir = Next(DeltaOptions());
  graph_.On("/users/delta?$deltatoken=u1",
            Fail(410, "SyncStateNotFound", "The sync state generation is not found."));
  LatestLinks("u5", "c5");
  auto changes = dir->ReadChanges(stamps_);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_TRUE(changes->full);
  ASSERT_FALSE(dir->Warnings().empty());
  EXPECT_NE(dir->Warnings().front().find("reading in full"), std::string::npos);
}

TEST_F(GraphDeltaTest, AnAnswerForAnotherObjectIsRefused) {
  FirstRun(DeltaOptions());
  auto dir = Next(DeltaOptions());
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array({User("u3", "Cy")}), "", "/users/delta?$deltatoken=u2")));
  graph_.On("/users/u3", Ok(User("u9", "Mallory")));
  auto changes = dir->ReadChanges(stamps_);
  ASSERT_FALSE(changes.ok());
  EXPECT_NE(changes.error().message.find("another object"), std::string::npos)
      << changes.error().message;
}

TEST_F(GraphDeltaTest, APhotoChangeIsFoundByItsMediaEtagOnceADay) {
  GraphDirectoryOptions o = DeltaOptions();
  o.photos = true;
  const Headers jpeg1 = {{"Content-Type", "image/jpeg"}, {"ETag", "\"p1\""}};
  graph_.On("/users/u1/photo/$value", Answer{200, "JPEG-1", jpeg1});
  graph_.On("/users/u2/photo/$value", Fail(404, "ImageNotFound", "no photo"));
  graph_.On("/users/u3/photo/$value", Fail(404, "ImageNotFound", "no photo"));
  FirstRun(o);
  // A day later (the cursor says when the photos were read): the delta is
  // quiet, but u1's photo has another media ETag.
  Json c = Json::parse(cursor_);
  c["read_at"] = 0;
  cursor_ = c.dump();
  auto dir = Next(o);
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=u2")));
  graph_.On("/users/u1/photo", Ok(Json{{"@odata.mediaEtag", "W/\"p2\""}}));
  graph_.On("/users/u2/photo", Fail(404, "ImageNotFound", "no photo"));
  graph_.On("/users/u3/photo", Fail(404, "ImageNotFound", "no photo"));
  graph_.On("/users/u1", Ok(User("u1", "Ann")));
  graph_.routes["/users/u1/photo/$value"] = {
      Answer{200, "JPEG-2", {{"Content-Type", "image/jpeg"}, {"ETag", "\"p2\""}}}};
  auto changes = dir->ReadChanges(stamps_);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_FALSE(changes->full);
  ASSERT_EQ(Keys(*changes), std::set<std::string>{"u1"});
  ASSERT_TRUE(changes->changed[0].record.contact.photo.has_value());
  EXPECT_EQ(changes->changed[0].record.contact.photo->data, "JPEG-2");
  // The next day's check compares with the new tag: nothing to read.
  stamps_["u1"] = changes->changed[0].stamp;
  c = Json::parse(dir->Cursor());
  EXPECT_GT(c.at("read_at").get<int64_t>(), 0);
  c["read_at"] = 0;
  cursor_ = c.dump();
  auto again = Next(o);
  graph_.On("/users/delta?$deltatoken=u2",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=u3")));
  graph_.routes["/users/u1/photo"] = {Ok(Json{{"@odata.mediaEtag", "W/\"p2\""}})};
  auto quiet = again->ReadChanges(stamps_);
  ASSERT_TRUE(quiet.ok()) << quiet.error().message;
  EXPECT_TRUE(quiet->changed.empty());
}

TEST_F(GraphDeltaTest, MemberOfIsDerivedFromTheGroupsReadEveryRun) {
  GraphDirectoryOptions o = DeltaOptions();
  o.groups = {kGroupId};
  graph_.On(std::string("/groups/") + kGroupId,
            Ok(Json{{"id", kGroupId}, {"displayName", "Sales"}}));
  graph_.On(std::string("/groups/") + kGroupId + "/transitiveMembers",
            Ok(Page(Json::array({{{"id", "u1"}}}))));
  FirstRun(o);
  auto dir = Next(o);
  graph_.On("/users/delta?$deltatoken=u1",
            Ok(Page(Json::array(), "", "/users/delta?$deltatoken=u2")));
  // u3 joined the group: no user changed, but the membership did.
  graph_.routes[std::string("/groups/") + kGroupId + "/transitiveMembers"] = {
      Ok(Page(Json::array({{{"id", "u1"}}, {{"id", "u3"}}})))};
  auto changes = dir->ReadChanges(stamps_);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_TRUE(changes->changed.empty());
  std::vector<SourceRecord> records(3);
  records[0].key = "u1";
  records[1].key = "u2";
  records[2].key = "u3";
  dir->Derive(records);
  EXPECT_EQ(records[0].attributes["memberOf"], (std::vector<std::string>{"Sales", kGroupId}));
  EXPECT_FALSE(records[1].attributes.contains("memberOf"));
  EXPECT_EQ(records[2].attributes["memberOf"], (std::vector<std::string>{"Sales", kGroupId}));
}

}  // namespace
}  // namespace roster
