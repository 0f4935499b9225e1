// `roster doctor` for a Graph tenant against a scripted Graph: the findings
// for granted, missing and tenant-wide permissions and for a mailbox without
// a licence; the token's roles read; and the printed Exchange Online
// PowerShell, word for word (a golden file) and parameter by parameter
// against the syntax Microsoft documents for each cmdlet.
#include "connectors/graph/graph_doctor.h"

#include <deque>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/fake_clock.h"
#include "core/hash.h"
#include "gtest/gtest.h"

namespace roster {
namespace {

using Json = nlohmann::json;

std::string Base64Url(const std::string& bytes) {
  std::string s = Base64Encode(bytes);
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

std::string TokenWith(const Json& claims) {
  return Base64Url(R"({"typ":"JWT","alg":"none"})") + "." + Base64Url(claims.dump()) + ".sig";
}

// Answers Graph requests by "METHOD path-prefix" from a table; records them.
struct FakeGraph {
  std::map<std::string, std::pair<int, std::string>> routes;
  std::vector<std::string> seen;
  std::string token;
};

class RoutedHttp : public HttpClient {
 public:
  explicit RoutedHttp(FakeGraph* g) : g_(g) {}
  Result<HttpResponse> Send(const HttpRequest& r) override {
    HttpResponse out;
    if (r.url.find("/oauth2/v2.0/token") != std::string::npos) {
      out.status = 200;
      out.body =
          Json{{"token_type", "Bearer"}, {"expires_in", 3599}, {"access_token", g_->token}}.dump();
      return out;
    }
    const std::string path = r.url.substr(r.url.find("/v1.0") + 5);
    g_->seen.push_back(r.method + " " + path);
    for (const auto& [key, answer] : g_->routes) {
      if ((r.method + " " + path).rfind(key, 0) == 0) {
        out.status = answer.first;
        out.body = answer.second;
        return out;
      }
    }
    out.status = 404;
    out.body = R"({"error":{"code":"Request_ResourceNotFound","message":"no route"}})";
    return out;
  }

 private:
  FakeGraph* g_;
};

constexpr char kClient[] = "11111111-2222-3333-4444-555555555555";
constexpr char kObject[] = "99999999-8888-7777-6666-555555555555";

class GraphDoctorTest : public ::testing::Test {
 protected:
  GraphDoctorReport Diagnose(std::vector<std::string> roles, std::vector<std::string> mailboxes) {
    graph_.token = TokenWith({{"roles", roles}, {"oid", kObject}, {"appid", kClient}});
    graph::GraphCredentials c;
    c.tenant_id = "contoso.onmicrosoft.com";
    c.client_id = kClient;
    c.client_secret = "never-printed";
    graph::TokenProviderOptions to;
    to.clock = &clock_;
    auto factory = [this](const HttpOptions&) { return std::make_unique<RoutedHttp>(&graph_); };
    to.http_factory = factory;
    tokens_ = std::move(graph::TokenProvider::Create(c, to)).value();
    GraphDoctorInput in;
    in.tenant = "contoso";
    in.tokens = tokens_.get();
    in.client.http_factory = factory;
    in.client.clock = &clock_;
    in.client_id = kClient;
    in.reads_users = in.reads_org_contacts = in.reads_groups = true;
    in.target_mailboxes = std::move(mailboxes);
    return DiagnoseGraphTenant(in);
  }

  static int Count(const GraphDoctorReport& r, Finding::Level level) {
    int n = 0;
    for (const Finding& f : r.findings) n += f.level == level ? 1 : 0;
    return n;
  }
  static std::string Text(const GraphDoctorReport& r) {
    std::string s;
    for (const Finding& f : r.findings) s += f.subject + ": " + f.text + "\n";
    return s;
  }

  FakeClock clock_;
  FakeGraph graph_;
  std::unique_ptr<graph::TokenProvider> tokens_;
};

const char kBadName[] =
    R"({"error":{"code":"ErrorInvalidRequest","message":"The contactFolder needs a name."}})";
const char kDenied[] = R"({"error":{"code":"ErrorAccessDenied","message":"Access is denied."}})";

TEST_F(GraphDoctorTest, ScopedWriteAccessAndDirectoryReadsPass) {
  graph_.routes = {{"GET /users?", {200, R"({"value":[]})"}},
                   {"GET /contacts?", {200, R"({"value":[]})"}},
                   {"GET /groups?", {200, R"({"value":[]})"}},
                   {"POST /users/alice%40contoso.com/contactFolders", {400, kBadName}}};
  auto r = Diagnose({"User.Read.All", "OrgContact.Read.All", "GroupMember.Read.All"},
                    {"alice@contoso.com"});
  EXPECT_EQ(Count(r, Finding::Level::kFailed), 0) << Text(r);
  EXPECT_EQ(Count(r, Finding::Level::kWarning), 0) << Text(r);
  EXPECT_NE(Text(r).find("contacts can be written"), std::string::npos) << Text(r);
  EXPECT_NE(Text(r).find("GroupMember.Read.All, OrgContact.Read.All, User.Read.All"),
            std::string::npos);
  EXPECT_TRUE(r.powershell.empty());
  // Nothing but reads and the refused create were sent.
  for (const std::string& s : graph_.seen) {
    EXPECT_TRUE(s.rfind("GET ", 0) == 0 || s.rfind("POST /users/", 0) == 0) << s;
  }
}

TEST_F(GraphDoctorTest, MissingPermissionsFailAndSayWhich) {
  graph_.routes = {
      {"GET /users?",
       {403,
        R"({"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}})"}},
      {"GET /contacts?", {200, R"({"value":[]})"}},
      {"GET /groups?", {200, R"({"value":[]})"}},
      {"POST /users/alice%40contoso.com/contactFolders", {403, kDenied}},
      {"POST /users/carol%40contoso.com/contactFolders",
       {404,
        R"({"error":{"code":"MailboxNotEnabledForRESTAPI","message":"REST API is not yet supported for this mailbox."}})"}}};
  auto r = Diagnose({"OrgContact.Read.All", "GroupMember.Read.All"},
                    {"alice@contoso.com", "carol@contoso.com"});
  const std::string text = Text(r);
  EXPECT_EQ(Count(r, Finding::Level::kFailed), 2) << text;
  EXPECT_NE(text.find("User.Read.All"), std::string::npos) << text;
  EXPECT_NE(text.find("alice@contoso.com"), std::string::npos) << text;
  EXPECT_NE(text.find("Exchange Online licence"), std::string::npos) << text;
  EXPECT_EQ(text.find("never-printed"), std::string::npos);
  EXPECT_EQ(text.find(graph_.token), std::string::npos);
  ASSERT_FALSE(r.powershell.empty());  // the way to grant it, scoped
}

TEST_F(GraphDoctorTest, TenantWideContactsReadWriteIsAWarningWithTheScopedWay) {
  graph_.routes = {{"GET /", {200, R"({"value":[]})"}},
                   {"POST /users/alice%40contoso.com/contactFolders", {400, kBadName}}};
  auto r = Diagnose(
      {"Contacts.ReadWrite", "User.Read.All", "OrgContact.Read.All", "GroupMember.Read.All"},
      {"alice@contoso.com"});
  EXPECT_EQ(Count(r, Finding::Level::kFailed), 0) << Text(r);
  EXPECT_EQ(Count(r, Finding::Level::kWarning), 1) << Text(r);
  EXPECT_NE(Text(r).find("tenant-wide"), std::string::npos);
  EXPECT_EQ(r.powershell, ScopedContactsCommands(kClient, kObject, "alice@contoso.com"));
}

TEST_F(GraphDoctorTest, ARefusedSignInIsOneFinding) {
  graph::GraphCredentials c;
  c.tenant_id = "contoso.onmicrosoft.com";
  c.client_id = kClient;
  c.client_secret = "wrong";
  graph::TokenProviderOptions to;
  to.clock = &clock_;
  to.http_factory = [](const HttpOptions&) {
    struct Refuse : HttpClient {
      Result<HttpResponse> Send(const HttpRequest&) override {
        HttpResponse r;
        r.status = 401;
        r.body =
            R"({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]})";
        return r;
      }
    };
    return std::make_unique<Refuse>();
  };
  auto tokens = std::move(graph::TokenProvider::Create(c, to)).value();
  GraphDoctorInput in;
  in.tenant = "contoso";
  in.tokens = tokens.get();
  in.client_id = kClient;
  in.target_mailboxes = {"alice@contoso.com"};
  auto r = DiagnoseGraphTenant(in);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].level, Finding::Level::kFailed);
  EXPECT_NE(r.findings[0].text.find("sign-in failed"), std::string::npos);
  EXPECT_EQ(r.findings[0].text.find("wrong"), std::string::npos) << r.findings[0].text;
}

TEST(TokenClaimsTest, RolesAndObjectIdAreRead) {
  auto claims = ReadTokenClaims(
      TokenWith({{"roles", {"User.Read.All", "Contacts.ReadWrite"}}, {"oid", kObject}}));
  EXPECT_EQ(claims.roles, (std::vector<std::string>{"Contacts.ReadWrite", "User.Read.All"}));
  EXPECT_EQ(claims.object_id, kObject);
  EXPECT_TRUE(ReadTokenClaims("not a token").roles.empty());
  EXPECT_TRUE(ReadTokenClaims("a.%%%.c").roles.empty());
  EXPECT_TRUE(ReadTokenClaims(TokenWith(Json::array())).roles.empty());
}

TEST(ScopedContactsCommandsTest, MatchTheGoldenFile) {
  std::ifstream f(std::string(ROSTER_SOURCE_DIR) + "/tests/data/doctor/rbac-commands.golden");
  ASSERT_TRUE(f) << "golden file missing";
  std::vector<std::string> golden;
  for (std::string line; std::getline(f, line);) golden.push_back(line);
  EXPECT_EQ(ScopedContactsCommands(kClient, kObject, "alice@contoso.com"), golden);
}

// Each cmdlet's parameters as Microsoft's Exchange Online PowerShell
// reference documents them (learn.microsoft.com/powershell/module/exchange),
// with the ones a command must name. New-ServicePrincipal's syntax block
// also lists -ServiceId, which its own example (and Exchange) does without.
struct Cmdlet {
  std::set<std::string> parameters;
  std::set<std::string> required;
};
const std::map<std::string, Cmdlet>& DocumentedCmdlets() {
  static const std::map<std::string, Cmdlet> m = {
      {"Connect-ExchangeOnline", {{}, {}}},
      {"New-ServicePrincipal",
       {{"AppId", "ObjectId", "ServiceId", "DisplayName", "Organization", "Confirm", "WhatIf"},
        {"AppId", "ObjectId"}}},
      {"Get-Group",
       {{"Identity", "Anr", "Filter", "OrganizationalUnit", "RecipientTypeDetails", "ResultSize",
         "SortBy"},
        {}}},
      {"New-ManagementScope",
       {{"Name", "RecipientRestrictionFilter", "RecipientRoot", "DatabaseRestrictionFilter",
         "ServerRestrictionFilter", "DatabaseList", "ServerList", "Exclusive", "Force", "Confirm",
         "DomainController", "WhatIf"},
        {"Name", "RecipientRestrictionFilter"}}},
      {"New-ManagementRoleAssignment",
       {{"Name",
         "Role",
         "App",
         "Policy",
         "SecurityGroup",
         "User",
         "Computer",
         "CustomConfigWriteScope",
         "CustomRecipientWriteScope",
         "CustomResourceScope",
         "Delegating",
         "ExclusiveConfigWriteScope",
         "ExclusiveRecipientWriteScope",
         "RecipientAdministrativeUnitScope",
         "RecipientGroupScope",
         "RecipientOrganizationalUnitScope",
         "RecipientRelativeWriteScope",
         "UnScopedTopLevel",
         "Confirm",
         "DomainController",
         "Force",
         "WhatIf"},
        {"Role", "App"}}},
      {"Test-ServicePrincipalAuthorization",
       {{"Identity", "Resource", "Confirm", "WhatIf"}, {"Identity"}}},
      {"Format-Table", {{"Property", "AutoSize", "Wrap"}, {}}},
  };
  return m;
}

// "-Name" tokens of one pipeline stage, outside quotes.
std::vector<std::string> ParametersOf(const std::string& stage) {
  std::vector<std::string> out;
  bool quoted = false;
  for (size_t i = 0; i < stage.size(); ++i) {
    if (stage[i] == '"') quoted = !quoted;
    if (!quoted && stage[i] == '-' && (i == 0 || stage[i - 1] == ' ') && i + 1 < stage.size() &&
        std::isalpha(static_cast<unsigned char>(stage[i + 1]))) {
      size_t j = i + 1;
      while (j < stage.size() && std::isalnum(static_cast<unsigned char>(stage[j]))) ++j;
      out.push_back(stage.substr(i + 1, j - i - 1));
    }
  }
  return out;
}

TEST(ScopedContactsCommandsTest, EveryParameterIsDocumentedForItsCmdlet) {
  int cmdlets = 0;
  for (const std::string& line : ScopedContactsCommands(kClient, kObject, "alice@contoso.com")) {
    if (line.empty() || line[0] == '#') continue;
    // A line is pipeline stages; an assignment runs the command in (...).
    std::string body = line;
    if (body[0] == '$') body = body.substr(body.find('(') + 1, body.find(')') - body.find('(') - 1);
    std::stringstream stages(body);
    for (std::string stage; std::getline(stages, stage, '|');) {
      while (!stage.empty() && stage[0] == ' ') stage.erase(0, 1);
      const std::string name = stage.substr(0, stage.find(' '));
      auto it = DocumentedCmdlets().find(name);
      ASSERT_NE(it, DocumentedCmdlets().end()) << "undocumented cmdlet " << name;
      ++cmdlets;
      std::set<std::string> used;
      for (const std::string& p : ParametersOf(stage.substr(name.size()))) {
        EXPECT_TRUE(it->second.parameters.count(p)) << name << " has no -" << p;
        EXPECT_TRUE(used.insert(p).second) << name << " names -" << p << " twice";
      }
      for (const std::string& r : it->second.required) {
        EXPECT_TRUE(used.count(r)) << name << " needs -" << r;
      }
    }
  }
  EXPECT_EQ(cmdlets, 7);
}

}  // namespace
}  // namespace roster
