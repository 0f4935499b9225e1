// The Graph request layer against a scripted transport: the headers every
// request carries, URLs built and checked before the token leaves, the 401
// renewal, read retries (Retry-After, backoff) and writes sent once, the
// $batch envelope and its answers taken apart, and GraphError's wording.
#include "graph/client.h"

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/fake_clock.h"
#include "core/text.h"
#include "gtest/gtest.h"

namespace roster::graph {
namespace {

using Json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kGraph[] = "https://graph.microsoft.com";
constexpr char kBatchUrl[] = "https://graph.microsoft.com/v1.0/$batch";

// One scripted answer: a response, or a transport error.
struct Answer {
  int status = 200;
  std::string body;
  Headers headers;
  std::optional<Error> error;
};

// A server that answers from a script and records what it was sent.
struct Script {
  std::deque<Answer> answers;
  std::vector<HttpRequest> seen;
  std::vector<HttpOptions> clients;
};

class ScriptedHttp : public HttpClient {
 public:
  explicit ScriptedHttp(Script* script) : script_(script) {}
  Result<HttpResponse> Send(const HttpRequest& request) override {
    script_->seen.push_back(request);
    if (script_->answers.empty()) {
      ADD_FAILURE() << "unexpected request " << request.method << " " << request.url;
      return MakeError(ErrorKind::kInternal, "script exhausted");
    }
    Answer a = std::move(script_->answers.front());
    script_->answers.pop_front();
    if (a.error) return *a.error;
    HttpResponse response;
    response.status = a.status;
    response.body = std::move(a.body);
    response.headers = std::move(a.headers);
    response.effective_url = request.url;
    return response;
  }

 private:
  Script* script_;
};

std::function<std::unique_ptr<HttpClient>(const HttpOptions&)> Factory(Script* script) {
  return [script](const HttpOptions& options) {
    script->clients.push_back(options);
    return std::make_unique<ScriptedHttp>(script);
  };
}

std::string Header(const HttpRequest& r, std::string_view name) {
  HttpResponse fake;
  fake.headers = r.headers;
  return fake.Header(name);
}

int Count(const HttpRequest& r, std::string_view name) {
  int n = 0;
  for (const auto& header : r.headers) n += text::EqualsNoCase(header.first, name) ? 1 : 0;
  return n;
}

std::string Sub(const std::string& id, int status, const Json& body = nullptr,
                const Json& headers = Json::object()) {
  Json item = {{"id", id}, {"status", status}, {"headers", headers}};
  if (!body.is_null()) item["body"] = body;
  return item.dump();
}

std::string BatchAnswer(const std::vector<std::string>& items) {
  std::string out = R"({"responses":[)";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]}";
}

class GraphClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GraphCredentials c;
    c.tenant_id = "contoso.onmicrosoft.com";
    c.client_id = "11111111-2222-3333-4444-555555555555";
    c.client_secret = "s3cr3t~NeverPrinted";
    TokenProviderOptions options;
    options.clock = &clock_;
    options.http_factory = [this](const HttpOptions&) {
      // Each token request is answered with the next token: tok-1, tok-2...
      struct Endpoint : HttpClient {
        explicit Endpoint(int* issued) : issued_(issued) {}
        Result<HttpResponse> Send(const HttpRequest&) override {
          HttpResponse r;
          r.status = 200;
          r.body = Json{{"token_type", "Bearer"},
                        {"expires_in", 3599},
                        {"access_token", "tok-" + std::to_string(++*issued_)}}
                       .dump();
          return r;
        }
        int* issued_;
      };
      return std::make_unique<Endpoint>(&tokens_issued_);
    };
    auto provider = TokenProvider::Create(c, options);
    ASSERT_TRUE(provider.ok()) << provider.error().message;
    tokens_ = std::move(provider).value();
  }

  GraphClientOptions Options() {
    GraphClientOptions options;
    options.http_factory = Factory(&graph_);
    options.clock = &clock_;
    options.seed = 42;
    return options;
  }

  std::unique_ptr<GraphClient> Client(GraphClientOptions options) {
    auto client = GraphClient::Create(tokens_.get(), std::move(options));
    EXPECT_TRUE(client.ok()) << client.error().message;
    return client.ok() ? std::move(client).value() : nullptr;
  }
  std::unique_ptr<GraphClient> Client() { return Client(Options()); }

  void Answer(int status, std::string body = "{}", Headers headers = {}) {
    graph_.answers.push_back({status, std::move(body), std::move(headers), std::nullopt});
  }
  void Fail(ErrorKind kind, std::string message) {
    graph_.answers.push_back({0, "", {}, MakeError(kind, std::move(message))});
  }
  Json SentEnvelope(size_t i) { return Json::parse(graph_.seen.at(i).body); }

  FakeClock clock_;
  int tokens_issued_ = 0;
  std::unique_ptr<TokenProvider> tokens_;
  Script graph_;
};

GraphRequest Get(std::string url) {
  GraphRequest r;
  r.url = std::move(url);
  return r;
}

GraphRequest Write(std::string method, std::string url, std::string body = "") {
  GraphRequest r;
  r.method = std::move(method);
  r.url = std::move(url);
  r.body = std::move(body);
  return r;
}

// ---- every request ----

TEST_F(GraphClientTest, EveryRequestCarriesBearerImmutableIdAndAccept) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(graph_.clients.empty()) << "Create opens nothing";
  Answer(200, R"({"value":[]})", {{"content-type", "application/json"}});
  auto response = client->Send(Get("/users?$select=id"));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, R"({"value":[]})");
  EXPECT_EQ(response->Header("Content-Type"), "application/json");
  ASSERT_EQ(graph_.seen.size(), 1u);
  const HttpRequest& sent = graph_.seen[0];
  EXPECT_EQ(sent.method, "GET");
  EXPECT_EQ(sent.url, "https://graph.microsoft.com/v1.0/users?$select=id");
  EXPECT_EQ(Header(sent, "authorization"), "Bearer tok-1");
  EXPECT_EQ(Header(sent, "prefer"), "IdType=\"ImmutableId\"");
  EXPECT_EQ(Header(sent, "accept"), "application/json");
  EXPECT_EQ(Header(sent, "content-type"), "") << "no body, no type";
  ASSERT_EQ(graph_.clients.size(), 1u);
  EXPECT_EQ(graph_.clients[0].allowed_origin, "https://graph.microsoft.com:443");
  EXPECT_EQ(graph_.clients[0].max_response_bytes, 64u << 20);
  EXPECT_EQ(client->counters().requests, 1);
}

TEST_F(GraphClientTest, CallersPreferenceJoinsImmutableIdInOneHeader) {
  auto client = Client();
  Answer(200);
  GraphRequest r = Get("/users");
  r.headers = {{"Prefer", "odata.maxpagesize=50"}, {"ConsistencyLevel", "eventual"}};
  ASSERT_TRUE(client->Send(r).ok());
  const HttpRequest& sent = graph_.seen.at(0);
  EXPECT_EQ(Header(sent, "prefer"), "IdType=\"ImmutableId\", odata.maxpagesize=50");
  EXPECT_EQ(Count(sent, "prefer"), 1);
  EXPECT_EQ(Header(sent, "consistencylevel"), "eventual");
}

TEST_F(GraphClientTest, BodiesGetTheirContentType) {
  auto client = Client();
  Answer(201);
  Answer(200);
  ASSERT_TRUE(client->Send(Write("POST", "/users/a/contacts", R"({"givenName":"A"})")).ok());
  GraphRequest photo = Write("PUT", "/users/a/contacts/c/photo/$value", "\xff\xd8\xff");
  photo.content_type = "image/jpeg";
  ASSERT_TRUE(client->Send(photo).ok());
  EXPECT_EQ(Header(graph_.seen.at(0), "content-type"), "application/json");
  EXPECT_EQ(graph_.seen.at(0).body, R"({"givenName":"A"})");
  EXPECT_EQ(Header(graph_.seen.at(1), "content-type"), "image/jpeg");
  EXPECT_EQ(graph_.seen.at(1).body, "\xff\xd8\xff");
}

TEST_F(GraphClientTest, UrlsAreBuiltUnderV1) {
  struct Case {
    std::string graph_url, url, sent;
  };
  const std::vector<Case> cases = {
      {kGraph, "/users/a%40contoso.com/contacts?$top=5",
       "https://graph.microsoft.com/v1.0/users/a%40contoso.com/contacts?$top=5"},
      {kGraph, "https://graph.microsoft.com/v1.0/users?$skiptoken=X%2bY",
       "https://graph.microsoft.com/v1.0/users?$skiptoken=X%2bY"},
      {kGraph, "https://GRAPH.microsoft.com:443/v1.0/users/delta?$deltatoken=abc",
       "https://GRAPH.microsoft.com:443/v1.0/users/delta?$deltatoken=abc"},
      {"https://graph.microsoft.com/", "/me", "https://graph.microsoft.com/v1.0/me"},
      {"http://127.0.0.1:8080/emu/", "/me", "http://127.0.0.1:8080/emu/v1.0/me"},
      {"http://127.0.0.1:8080/emu", "http://127.0.0.1:8080/emu/v1.0/users?$skip=2",
       "http://127.0.0.1:8080/emu/v1.0/users?$skip=2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.graph_url + " + " + c.url);
    graph_.seen.clear();
    GraphClientOptions options = Options();
    options.graph_url = c.graph_url;
    auto client = Client(options);
    ASSERT_NE(client, nullptr);
    Answer(200);
    auto response = client->Send(Get(c.url));
    ASSERT_TRUE(response.ok()) << response.error().message;
    ASSERT_EQ(graph_.seen.size(), 1u);
    EXPECT_EQ(graph_.seen[0].url, c.sent);
  }
}

TEST_F(GraphClientTest, LinksOffGraphAreRefusedWithNothingSent) {
  struct Case {
    std::string url;
    ErrorKind kind;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"https://evil.example/v1.0/users?$skiptoken=1", ErrorKind::kInvalidData,
       "refusing a link to https://evil.example:443"},
      {"http://graph.microsoft.com/v1.0/users", ErrorKind::kInvalidData,
       "refusing a link to http://graph.microsoft.com:80"},
      {"https://graph.microsoft.com:8443/v1.0/users", ErrorKind::kInvalidData,
       "https://graph.microsoft.com:8443"},
      {"https://graph.microsoft.com/beta/users", ErrorKind::kInvalidData, "outside /v1.0/"},
      {"https://graph.microsoft.com/v1.0", ErrorKind::kInvalidData, "outside /v1.0/"},
      {"https://graph.microsoft.com/v1.0/../beta/me", ErrorKind::kInvalidData, "outside /v1.0/"},
      {"https://graph.microsoft.com/v1.0/%2e%2e/beta/me", ErrorKind::kInvalidData,
       "outside /v1.0/"},
      {"/../beta/me", ErrorKind::kInvalidData, "outside /v1.0/"},
      {"https://x@graph.microsoft.com/v1.0/me", ErrorKind::kInvalidData, "names a user"},
      {"users", ErrorKind::kInvalidArgument, "a path under /v1.0"},
      {"", ErrorKind::kInvalidArgument, "printable ASCII"},
      {"/users\r\nX-Evil: 1", ErrorKind::kInvalidArgument, "printable ASCII"},
      {"/users?$filter=a eq b", ErrorKind::kInvalidArgument, "without spaces"},
      {"/users/..\\..\\beta/me", ErrorKind::kInvalidArgument, "backslashes"},
  };
  auto client = Client();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    auto response = client->Send(Get(c.url));
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(response.error().kind, c.kind);
    EXPECT_NE(response.error().message.find(c.says), std::string::npos) << response.error().message;
    EXPECT_EQ(response.error().message.find("tok-"), std::string::npos);
  }
  EXPECT_TRUE(graph_.seen.empty());
  EXPECT_EQ(tokens_issued_, 0) << "no token is even fetched for a refused URL";
}

TEST_F(GraphClientTest, CheckLinkJudgesTheCanonicalForm) {
  auto client = Client();
  EXPECT_TRUE(client->CheckLink("https://graph.microsoft.com/v1.0/users?$skiptoken=a").ok());
  EXPECT_TRUE(client->CheckLink("HTTPS://graph.MICROSOFT.com/v1.0/users/x/../y").ok());
  EXPECT_FALSE(client->CheckLink("https://graph.microsoft.com.evil.example/v1.0/users").ok());
  EXPECT_FALSE(client->CheckLink("https://graph.microsoft.com/v1.0x/users").ok());
  EXPECT_FALSE(client->CheckLink("/v1.0/users").ok()) << "a link Graph hands back is absolute";
  auto refused = client->CheckLink("https://login.evil.example/v1.0/me");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "refusing a link to https://login.evil.example:443: the Graph token goes to "
            "https://graph.microsoft.com:443 only");
}

TEST_F(GraphClientTest, CreateChecksGraphUrl) {
  for (const std::string url :
       {"graph.microsoft.com", "ftp://graph.microsoft.com", "https://graph.microsoft.com/?a=b",
        "https://graph.microsoft.com/#x", "https://u:p@graph.microsoft.com", "https://g ms.com"}) {
    SCOPED_TRACE(url);
    GraphClientOptions options = Options();
    options.graph_url = url;
    auto client = GraphClient::Create(tokens_.get(), options);
    ASSERT_FALSE(client.ok());
    EXPECT_EQ(client.error().kind, ErrorKind::kInvalidArgument);
  }
  auto none = GraphClient::Create(nullptr, Options());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, ErrorKind::kInvalidArgument);
  GraphClientOptions options = Options();
  options.graph_url = "https://graph.microsoft.us/";
  auto client = Client(options);
  EXPECT_EQ(client->graph_url(), "https://graph.microsoft.us");
}

TEST_F(GraphClientTest, UnsafeOrReservedHeadersAreRefused) {
  auto client = Client();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"If-Match", "W/\"1\"\r\nX-Evil: 1"},
      {"Bad Name", "x"},
      {"Authorization", "Bearer mine"},
      {"X-Long", std::string(9000, 'a')},
  };
  for (const auto& header : cases) {
    SCOPED_TRACE(header.first);
    GraphRequest r = Get("/users");
    r.headers = {header};
    auto response = client->Send(r);
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(response.error().kind, ErrorKind::kInvalidArgument);
  }
  GraphRequest bad_method = Get("/users");
  bad_method.method = "get /x";
  EXPECT_FALSE(client->Send(bad_method).ok());
  EXPECT_TRUE(graph_.seen.empty());
}

// ---- 401 ----

TEST_F(GraphClientTest, A401RenewsTheTokenOnce) {
  auto client = Client();
  Answer(401, R"({"error":{"code":"InvalidAuthenticationToken","message":"expired"}})");
  Answer(200, R"({"id":"a"})");
  auto response = client->Send(Write("PATCH", "/users/a/contacts/c", R"({"a":1})"));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 200);
  ASSERT_EQ(graph_.seen.size(), 2u);
  EXPECT_EQ(Header(graph_.seen[0], "authorization"), "Bearer tok-1");
  EXPECT_EQ(Header(graph_.seen[1], "authorization"), "Bearer tok-2");
  EXPECT_EQ(graph_.seen[1].body, R"({"a":1})");
  EXPECT_EQ(tokens_issued_, 2);
  EXPECT_EQ(client->counters().requests, 2);
  EXPECT_EQ(client->counters().retries, 0) << "a renewal is not a read retry";
}

TEST_F(GraphClientTest, ASecond401IsTheAnswer) {
  auto client = Client();
  const std::string refused =
      R"({"error":{"code":"InvalidAuthenticationToken","message":"Access token validation failure."}})";
  Answer(401, refused);
  Answer(401, refused);
  auto response = client->Send(Get("/users"));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 401);
  EXPECT_EQ(graph_.seen.size(), 2u);
  Error error = GraphError(*response, "reading /users");
  EXPECT_EQ(error.kind, ErrorKind::kAccessDenied);
  EXPECT_TRUE(error.credential_refused);
  EXPECT_EQ(error.message,
            "reading /users: 401 InvalidAuthenticationToken: Access token validation failure.");
}

// ---- retries ----

TEST_F(GraphClientTest, AThrottledReadWaitsRetryAfterExactly) {
  auto client = Client();
  Answer(429, "{}", {{"retry-after", "7"}});
  Answer(503, "{}", {{"retry-after", "2"}});
  Answer(200, R"({"value":[1]})");
  auto response = client->Send(Get("/users"));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(clock_.sleeps, (std::vector<milliseconds>{seconds(7), seconds(2)}));
  EXPECT_EQ(client->counters().requests, 3);
  EXPECT_EQ(client->counters().throttled, 2);
  EXPECT_EQ(client->counters().retries, 2);
  EXPECT_EQ(client->counters().waited, seconds(9));
}

TEST_F(GraphClientTest, ARetryAfterBeyondTheBoundIsNotWaited) {
  for (const std::string retry_after :
       {"3600", "99999999999", "Fri, 31 Dec 2100 23:59:59 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"}) {
    SCOPED_TRACE(retry_after);
    graph_.seen.clear();
    clock_.sleeps.clear();
    auto client = Client();
    Answer(429, R"({"error":{"code":"TooManyRequests","message":"slow down"}})",
           {{"retry-after", retry_after}});
    auto response = client->Send(Get("/users"));
    ASSERT_TRUE(response.ok());
    EXPECT_EQ(response->status, 429);
    EXPECT_EQ(graph_.seen.size(), 1u);
    EXPECT_TRUE(clock_.sleeps.empty());
    Error error = GraphError(*response, "reading /users");
    EXPECT_EQ(error.kind, ErrorKind::kThrottled);
    EXPECT_GE(error.retry_after, seconds(3600));
  }
}

TEST_F(GraphClientTest, AnHttpDateInThePastIsNoWait) {
  auto client = Client();
  Answer(503, "", {{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}});
  Answer(200);
  auto response = client->Send(Get("/users"));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(clock_.sleeps.empty());
  EXPECT_EQ(client->counters().retries, 1);
}

TEST_F(GraphClientTest, ServerErrorsBackOffThenTheLastAnswerIsReturned) {
  GraphClientOptions options = Options();
  options.backoff_base = milliseconds(100);
  auto client = Client(options);
  Answer(500, "first");
  Answer(502, "second");
  Answer(429, "third");  // no Retry-After: backoff too
  Answer(504, "last");
  auto response = client->Send(Get("/users"));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 504);
  EXPECT_EQ(response->body, "last");
  EXPECT_EQ(graph_.seen.size(), 4u);
  ASSERT_EQ(clock_.sleeps.size(), 3u);
  milliseconds total{0};
  for (size_t i = 0; i < clock_.sleeps.size(); ++i) {
    EXPECT_LE(clock_.sleeps[i], milliseconds(100 << i)) << "attempt " << i;
    total += clock_.sleeps[i];
  }
  EXPECT_EQ(client->counters().waited, total);
  EXPECT_EQ(client->counters().retries, 3);
}

TEST_F(GraphClientTest, DroppedConnectionsAreRetriedForReads) {
  auto client = Client();
  Fail(ErrorKind::kUnavailable, "cannot connect to graph.microsoft.com:443");
  Fail(ErrorKind::kTransient, "connection reset");
  Answer(200, "{}");
  auto response = client->Send(Get("/users"));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(graph_.seen.size(), 3u);

  Fail(ErrorKind::kAborted, "the run's deadline has passed");
  auto aborted = client->Send(Get("/users"));
  ASSERT_FALSE(aborted.ok());
  EXPECT_EQ(aborted.error().kind, ErrorKind::kAborted);
  EXPECT_EQ(graph_.seen.size(), 4u);
}

TEST_F(GraphClientTest, NoRetryPastTheDeadline) {
  GraphClientOptions options = Options();
  options.http.deadline = clock_.Now() + seconds(5);
  auto client = Client(options);
  Answer(429, "{}", {{"retry-after", "10"}});
  auto response = client->Send(Get("/users"));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 429);
  EXPECT_TRUE(clock_.sleeps.empty());
}

TEST_F(GraphClientTest, WritesAreSentOnce) {
  struct Case {
    std::string method;
    int status;
    std::optional<ErrorKind> transport;
  };
  const std::vector<Case> cases = {
      {"POST", 503, std::nullopt},           {"POST", 429, std::nullopt},
      {"PATCH", 500, std::nullopt},          {"PUT", 502, std::nullopt},
      {"DELETE", 504, std::nullopt},         {"POST", 0, ErrorKind::kTransient},
      {"PATCH", 0, ErrorKind::kUnavailable},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method + " " + std::to_string(c.status));
    graph_.seen.clear();
    auto client = Client();
    if (c.transport) {
      Fail(*c.transport, "connection reset");
    } else {
      Answer(c.status, "{}", {{"retry-after", "1"}});
    }
    auto response = client->Send(Write(c.method, "/users/a/contacts", R"({"x":1})"));
    EXPECT_EQ(graph_.seen.size(), 1u);
    EXPECT_TRUE(clock_.sleeps.empty());
    if (c.transport) {
      ASSERT_FALSE(response.ok());
      EXPECT_EQ(response.error().kind, ErrorKind::kTransient) << "possibly carried out";
      EXPECT_NE(response.error().message.find("may have been carried out"), std::string::npos);
    } else {
      ASSERT_TRUE(response.ok());
      EXPECT_EQ(response->status, c.status);
    }
    EXPECT_EQ(client->counters().retries, 0);
  }
}

// libcurl resends a request whose reused connection died before answering:
// a create (POST, or a $batch holding one) asks for a connection of its own.
TEST_F(GraphClientTest, CreatesAreNeverLeftToTheTransportToResend) {
  auto client = Client();
  Answer(201);
  ASSERT_TRUE(client->Send(Write("POST", "/users/a/contacts", "{}")).ok());
  Answer(200);
  ASSERT_TRUE(client->Send(Write("PATCH", "/users/a/contacts/x", "{}")).ok());
  Answer(200, R"({"value":[]})");
  ASSERT_TRUE(client->Send(Get("/users")).ok());
  Answer(200, BatchAnswer({Sub("1", 201, Json::object()), Sub("2", 204)}));
  ASSERT_TRUE(
      client->Batch({Write("POST", "/users/a/contacts", "{}"), Write("DELETE", "/users/a/x")})
          .ok());
  Answer(200, BatchAnswer({Sub("1", 200, Json::object())}));
  ASSERT_TRUE(client->Batch({Write("PATCH", "/users/a/contacts/x", "{}")}).ok());
  ASSERT_EQ(graph_.seen.size(), 5u);
  EXPECT_TRUE(graph_.seen[0].once);
  EXPECT_FALSE(graph_.seen[1].once);
  EXPECT_FALSE(graph_.seen[2].once);
  EXPECT_TRUE(graph_.seen[3].once);
  EXPECT_FALSE(graph_.seen[4].once);
}

TEST_F(GraphClientTest, AnAnswerOverTheByteBudgetIsRefused) {
  GraphClientOptions options = Options();
  options.http.max_response_bytes = 100;
  auto client = Client(options);
  EXPECT_EQ(graph_.clients.size(), 0u);
  Answer(200, std::string(101, 'x'));
  auto response = client->Send(Get("/users"));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kInvalidData);
  EXPECT_EQ(graph_.clients.at(0).max_response_bytes, 100u);
}

TEST_F(GraphClientTest, ReadsAndWritesAskForTheirOwnCaps) {
  GraphClientOptions options = Options();
  options.max_read_answer_bytes = 1000;
  options.max_write_answer_bytes = 100;
  auto client = Client(options);
  Answer(200, std::string(1000, 'x'));
  ASSERT_TRUE(client->Send(Get("/users")).ok());
  EXPECT_EQ(graph_.seen.back().max_response_bytes, 1000u);
  Answer(201, std::string(101, 'x'));
  auto write = client->Send(Write("POST", "/users/a/contacts", "{}"));
  ASSERT_FALSE(write.ok());  // the fake transport caps nothing: the client checks
  EXPECT_TRUE(write.error().too_large);
  EXPECT_EQ(graph_.seen.back().max_response_bytes, 100u);
  Answer(200, BatchAnswer({Sub("1", 204)}));
  ASSERT_TRUE(client->Batch({Write("DELETE", "/users/a/contacts/x")}).ok());
  EXPECT_EQ(graph_.seen.back().max_response_bytes, 100u);
}

// ---- $batch ----

TEST_F(GraphClientTest, BatchEnvelopeHasIdsRelativeUrlsPreferAndJsonBodies) {
  auto client = Client();
  std::vector<GraphRequest> requests(3);
  requests[0] = Get("/users/a/contacts?$select=id");
  requests[0].headers = {{"Prefer", "odata.maxpagesize=50"}};
  requests[1] = Write("POST", "https://graph.microsoft.com/v1.0/users/a/contacts",
                      R"({"givenName":"Ann","emailAddresses":[{"address":"a@x"}]})");
  requests[1].depends_on = "1";
  requests[2] = Write("DELETE", "/users/a/contacts/c1");
  requests[2].headers = {{"If-Match", "W/\"7\""}};
  Answer(200, BatchAnswer({Sub("1", 200, Json{{"value", Json::array()}}),
                           Sub("2", 201, Json{{"id", "n"}}), Sub("3", 204)}));
  auto answers = client->Batch(requests);
  ASSERT_TRUE(answers.ok()) << answers.error().message;
  ASSERT_EQ(graph_.seen.size(), 1u);
  const HttpRequest& sent = graph_.seen[0];
  EXPECT_EQ(sent.method, "POST");
  EXPECT_EQ(sent.url, kBatchUrl);
  EXPECT_EQ(Header(sent, "authorization"), "Bearer tok-1");
  EXPECT_EQ(Header(sent, "content-type"), "application/json");
  const Json envelope = SentEnvelope(0);
  const Json expected = Json::parse(R"({"requests":[
    {"id":"1","method":"GET","url":"/users/a/contacts?$select=id",
     "headers":{"Prefer":"IdType=\"ImmutableId\", odata.maxpagesize=50"}},
    {"id":"2","method":"POST","url":"/users/a/contacts",
     "headers":{"Prefer":"IdType=\"ImmutableId\"","Content-Type":"application/json"},
     "body":{"givenName":"Ann","emailAddresses":[{"address":"a@x"}]},
     "dependsOn":["1"]},
    {"id":"3","method":"DELETE","url":"/users/a/contacts/c1",
     "headers":{"If-Match":"W/\"7\"","Prefer":"IdType=\"ImmutableId\""}}]})");
  EXPECT_EQ(envelope, expected) << envelope.dump(2);
  EXPECT_EQ(client->counters().requests, 1);
  EXPECT_EQ(client->counters().sub_requests, 3);
  EXPECT_EQ((*answers)[1].status, 201);
  EXPECT_EQ((*answers)[1].body, R"({"id":"n"})");
  EXPECT_EQ((*answers)[2].status, 204);
  EXPECT_EQ((*answers)[2].body, "");
}

TEST_F(GraphClientTest, BatchAnswersComeBackInRequestOrder) {
  auto client = Client();
  std::vector<GraphRequest> requests = {Get("/users/a"), Get("/users/b"), Get("/users/c")};
  Answer(200, BatchAnswer({Sub("3", 404, Json{{"error", {{"code", "ErrorItemNotFound"}}}},
                               {{"Content-Type", "application/json"}}),
                           Sub("1", 200, Json{{"id", "a"}}, {{"ETag", "W/\"1\""}})}));
  auto answers = client->Batch(requests);
  ASSERT_TRUE(answers.ok()) << answers.error().message;
  ASSERT_EQ(answers->size(), 3u);
  EXPECT_EQ((*answers)[0].status, 200);
  EXPECT_EQ((*answers)[0].body, R"({"id":"a"})");
  EXPECT_EQ((*answers)[0].headers, (Headers{{"etag", "W/\"1\""}}));
  EXPECT_EQ((*answers)[1].status, 0) << "missing: may or may not have run";
  EXPECT_EQ((*answers)[1].body, "");
  EXPECT_EQ((*answers)[2].status, 404);
  EXPECT_EQ(GraphErrorCode((*answers)[2].body), "ErrorItemNotFound");
  EXPECT_EQ(GraphError((*answers)[1], "reading b").kind, ErrorKind::kTransient);
  EXPECT_EQ(graph_.seen.size(), 1u) << "a missing answer is not sent again";
}

TEST_F(GraphClientTest, MalformedBatchAnswersAreInvalidData) {
  struct Case {
    std::string name, body;
  };
  const std::vector<Case> cases = {
      {"not JSON", "<html>"},
      {"truncated", R"({"responses":[{"id":"1","status":200)"},
      {"an array", "[]"},
      {"no responses", R"({"value":[]})"},
      {"responses not an array", R"({"responses":{}})"},
      {"item not an object", R"({"responses":["1"]})"},
      {"no id", R"({"responses":[{"status":200}]})"},
      {"unknown id", BatchAnswer({Sub("9", 200)})},
      {"duplicate id", BatchAnswer({Sub("1", 200), Sub("1", 500)})},
      {"too many", BatchAnswer({Sub("1", 200), Sub("2", 200), Sub("3", 200)})},
      {"no status", R"({"responses":[{"id":"1"}]})"},
      {"status a string", R"({"responses":[{"id":"1","status":"200"}]})"},
      {"status out of range", R"({"responses":[{"id":"1","status":2000}]})"},
      {"headers not an object", R"({"responses":[{"id":"1","status":200,"headers":[]}]})"},
      {"too deep", R"({"responses":[{"id":"1","status":200,"body":)" + std::string(200, '[') +
                       std::string(200, ']') + "}]}"},
      {"invalid UTF-8", "{\"responses\":[{\"id\":\"\xff\",\"status\":200}]}"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto client = Client();
    Answer(200, c.body);
    auto answers = client->Batch({Get("/users/a"), Write("POST", "/users/a/contacts", "{}")});
    ASSERT_FALSE(answers.ok());
    EXPECT_EQ(answers.error().kind, ErrorKind::kInvalidData);
    EXPECT_NE(answers.error().message.find("$batch answer"), std::string::npos)
        << answers.error().message;
  }
}

TEST_F(GraphClientTest, BinaryBodiesAreBase64Decoded) {
  auto client = Client();
  Answer(200, BatchAnswer({Sub("1", 200, "/9j/4AAQ", {{"Content-Type", "image/jpeg"}}),
                           Sub("2", 200, "plain", {{"Content-Type", "application/json"}}),
                           Sub("3", 200, "not base64!", {{"Content-Type", "text/plain"}})}));
  auto answers = client->Batch({Get("/users/a/photo/$value"), Get("/x"), Get("/y")});
  ASSERT_TRUE(answers.ok()) << answers.error().message;
  EXPECT_EQ((*answers)[0].body, std::string("\xff\xd8\xff\xe0\x00\x10", 6));
  EXPECT_EQ((*answers)[0].Header("content-type"), "image/jpeg");
  EXPECT_EQ((*answers)[1].body, "\"plain\"") << "a JSON string stays JSON text";
  EXPECT_EQ((*answers)[2].body, "not base64!");
}

// Twenty photos of 4 MiB are a legitimate 107 MB answer: a batch of reads
// too large for its cap is sent again in halves, each answered on its own.
TEST_F(GraphClientTest, ABatchOfReadsTooLargeIsSentInHalves) {
  GraphClientOptions options = Options();
  options.max_read_answer_bytes = 300;
  auto client = Client(options);
  const std::string photo(60, 'A');  // base64 of 45 bytes
  auto subs = [&](int from, int to) {
    std::vector<std::string> items;
    for (int i = from; i <= to; ++i)
      items.push_back(Sub(std::to_string(i), 200, photo, {{"Content-Type", "image/jpeg"}}));
    return BatchAnswer(items);
  };
  Answer(200, subs(1, 4));  // 4 photos: too large
  Answer(200, subs(1, 2));  // the first half
  Answer(200, subs(1, 2));  // the second half, numbered anew
  std::vector<GraphRequest> requests;
  for (int i = 0; i < 4; ++i)
    requests.push_back(Get("/users/u" + std::to_string(i) + "/photo/$value"));
  auto answers = client->Batch(requests);
  ASSERT_TRUE(answers.ok()) << answers.error().message;
  ASSERT_EQ(answers->size(), 4u);
  for (const GraphResponse& a : *answers) EXPECT_EQ(a.body.size(), 45u);
  ASSERT_EQ(graph_.seen.size(), 3u);
  EXPECT_EQ(SentEnvelope(1)["requests"].size(), 2u);
  EXPECT_EQ(SentEnvelope(1)["requests"][0]["url"], "/users/u0/photo/$value");
  EXPECT_EQ(SentEnvelope(2)["requests"][0]["url"], "/users/u2/photo/$value");

  // One request still too large is the error; a batch of writes is never split.
  Answer(200, std::string(301, 'x'));
  auto one = client->Batch({Get("/users/u0/photo/$value")});
  ASSERT_FALSE(one.ok());
  EXPECT_TRUE(one.error().too_large);
  Answer(200, std::string(301, 'x'));
  options.max_write_answer_bytes = 300;
  auto writer = Client(options);
  auto writes = writer->Batch(
      {Write("DELETE", "/users/a/contacts/x"), Write("DELETE", "/users/a/contacts/y")});
  ASSERT_FALSE(writes.ok());
  EXPECT_EQ(graph_.seen.size(), 5u);
}

TEST_F(GraphClientTest, AReadOnlyBatchSendsThrottledSubRequestsAgain) {
  auto client = Client();
  Answer(200, BatchAnswer({Sub("1", 200, Json{{"id", "a"}}),
                           Sub("2", 429, nullptr, {{"Retry-After", "5"}}),
                           Sub("3", 503, nullptr, {{"Retry-After", "2"}}), Sub("4", 404)}));
  Answer(200, BatchAnswer({Sub("3", 200, Json{{"id", "c"}}), Sub("2", 500)}));
  Answer(200, BatchAnswer({Sub("2", 200, Json{{"id", "b"}})}));
  auto answers =
      client->Batch({Get("/users/a"), Get("/users/b"), Get("/users/c"), Get("/users/d")});
  ASSERT_TRUE(answers.ok()) << answers.error().message;
  ASSERT_EQ(graph_.seen.size(), 3u);
  std::vector<std::string> resent;
  const Json second = SentEnvelope(1);
  for (const Json& r : second["requests"]) resent.push_back(r["id"]);
  EXPECT_EQ(resent, (std::vector<std::string>{"2", "3"}));
  EXPECT_EQ(SentEnvelope(2)["requests"].size(), 1u);
  EXPECT_EQ((*answers)[0].body, R"({"id":"a"})");
  EXPECT_EQ((*answers)[1].body, R"({"id":"b"})");
  EXPECT_EQ((*answers)[2].body, R"({"id":"c"})");
  EXPECT_EQ((*answers)[3].status, 404) << "other answers are kept";
  ASSERT_EQ(clock_.sleeps.size(), 2u);
  EXPECT_EQ(clock_.sleeps[0], seconds(5)) << "the longest Retry-After";
  EXPECT_LE(clock_.sleeps[1], milliseconds(1000)) << "backoff for the 500";
  EXPECT_EQ(client->counters().requests, 3);
  EXPECT_EQ(client->counters().sub_requests, 7);
  EXPECT_EQ(client->counters().throttled, 2);
  EXPECT_EQ(client->counters().retries, 3);
}

TEST_F(GraphClientTest, AReadOnlyBatchStopsAfterItsAttempts) {
  GraphClientOptions options = Options();
  options.read_attempts = 2;
  auto client = Client(options);
  Answer(200, BatchAnswer({Sub("1", 429, nullptr, {{"Retry-After", "1"}})}));
  Answer(200, BatchAnswer({Sub("1", 429, nullptr, {{"Retry-After", "1"}})}));
  auto answers = client->Batch({Get("/users/a")});
  ASSERT_TRUE(answers.ok());
  EXPECT_EQ((*answers)[0].status, 429);
  EXPECT_EQ(graph_.seen.size(), 2u);
}

TEST_F(GraphClientTest, ABatchWithAWriteIsSentOnce) {
  auto client = Client();
  Answer(200, BatchAnswer({Sub("1", 429, nullptr, {{"Retry-After", "1"}}), Sub("2", 503)}));
  auto answers = client->Batch({Get("/users/a"), Write("POST", "/users/a/contacts", "{}")});
  ASSERT_TRUE(answers.ok());
  EXPECT_EQ((*answers)[0].status, 429);
  EXPECT_EQ((*answers)[1].status, 503);
  EXPECT_EQ(graph_.seen.size(), 1u);
  EXPECT_TRUE(clock_.sleeps.empty());
  EXPECT_EQ(client->counters().throttled, 2);

  Answer(503, "{}", {{"retry-after", "3"}});
  auto envelope = client->Batch({Write("DELETE", "/users/a/contacts/c")});
  ASSERT_FALSE(envelope.ok());
  EXPECT_EQ(envelope.error().kind, ErrorKind::kThrottled);
  EXPECT_EQ(envelope.error().retry_after, seconds(3));
  EXPECT_EQ(graph_.seen.size(), 2u);
}

TEST_F(GraphClientTest, AThrottledEnvelopeOfReadsIsRetried) {
  auto client = Client();
  Answer(429, "{}", {{"retry-after", "4"}});
  Answer(200, BatchAnswer({Sub("1", 200)}));
  auto answers = client->Batch({Get("/users/a")});
  ASSERT_TRUE(answers.ok()) << answers.error().message;
  EXPECT_EQ((*answers)[0].status, 200);
  EXPECT_EQ(clock_.sleeps, (std::vector<milliseconds>{seconds(4)}));
}

TEST_F(GraphClientTest, BatchRequestsAreCheckedBeforeAnythingIsSent) {
  auto client = Client();
  std::vector<GraphRequest> too_many(kMaxBatchRequests + 1, Get("/users"));
  GraphRequest photo = Write("PUT", "/users/a/photo/$value", "bytes");
  photo.content_type = "image/jpeg";
  GraphRequest self = Get("/a");
  self.depends_on = "1";
  GraphRequest beyond = Get("/a");
  beyond.depends_on = "3";
  const std::vector<std::pair<std::string, std::vector<GraphRequest>>> cases = {
      {"too many", too_many},
      {"binary body", {photo}},
      {"not JSON", {Write("POST", "/a", "{oops")}},
      {"depends on itself", {self}},
      {"depends on no one", {Get("/b"), beyond}},
      {"off origin", {Get("https://evil.example/v1.0/users")}},
  };
  for (const auto& [name, requests] : cases) {
    SCOPED_TRACE(name);
    auto answers = client->Batch(requests);
    ASSERT_FALSE(answers.ok());
    EXPECT_EQ(answers.error().kind,
              name == "off origin" ? ErrorKind::kInvalidData : ErrorKind::kInvalidArgument);
  }
  EXPECT_TRUE(graph_.seen.empty());
  auto empty = client->Batch({});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_TRUE(graph_.seen.empty());
}

TEST_F(GraphClientTest, ABatchRenewsTheTokenOnA401) {
  auto client = Client();
  Answer(401, "{}");
  Answer(200, BatchAnswer({Sub("1", 200)}));
  auto answers = client->Batch({Write("DELETE", "/users/a/contacts/c")});
  ASSERT_TRUE(answers.ok());
  EXPECT_EQ(Header(graph_.seen.at(1), "authorization"), "Bearer tok-2");
}

// ---- GraphError ----

TEST(GraphErrorTest, WordingAndKinds) {
  struct Case {
    int status;
    std::string body;
    Headers headers;
    ErrorKind kind;
    std::string message;
    bool no_such_user = false;
  };
  const auto error = [](const std::string& code, const std::string& message) {
    return Json{{"error", {{"code", code}, {"message", message}}}}.dump();
  };
  const std::vector<Case> cases = {
      {403,
       error("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
       {},
       ErrorKind::kAccessDenied,
       "reading /users: 403 Authorization_RequestDenied: Insufficient privileges to complete the "
       "operation."},
      {404,
       error("MailboxNotEnabledForRESTAPI",
             "The mailbox is either inactive, soft-deleted, or is hosted on-premise."),
       {},
       ErrorKind::kNotFound,
       "reading /users: the mailbox does not exist or has no Exchange Online licence (404 "
       "MailboxNotEnabledForRESTAPI)",
       true},
      {404,
       error("ErrorInvalidUser", "The requested user 'x' is invalid."),
       {},
       ErrorKind::kNotFound,
       "reading /users: the mailbox does not exist or has no Exchange Online licence (404 "
       "ErrorInvalidUser)",
       true},
      {404,
       error("ErrorItemNotFound", "The specified object was not found in the store."),
       {},
       ErrorKind::kNotFound,
       "reading /users: 404 ErrorItemNotFound: The specified object was not found in the store."},
      {412,
       error("ErrorIrresolvableConflict", "The change key passed in the request does not match."),
       {},
       ErrorKind::kPreconditionFailed,
       "reading /users: 412 ErrorIrresolvableConflict: The change key passed in the request does "
       "not match."},
      {429,
       error("TooManyRequests", "Too many requests"),
       {{"retry-after", "30"}},
       ErrorKind::kThrottled,
       "reading /users: 429 TooManyRequests: Too many requests (Graph asks to wait 30 s)"},
      {500,
       error("generalException", "General\r\nexception\x01 while\tprocessing"),
       {},
       ErrorKind::kTransient,
       "reading /users: 500 generalException: General exception while processing"},
      {400,
       error("ErrorInvalidProperty", "bad"),
       {},
       ErrorKind::kConflict,
       "reading /users: 400 ErrorInvalidProperty: bad"},
      {401,
       error("InvalidAuthenticationToken", "Access token is empty."),
       {},
       ErrorKind::kAccessDenied,
       "reading /users: 401 InvalidAuthenticationToken: Access token is empty."},
      {502,
       "<html>Bad gateway</html>",
       {},
       ErrorKind::kTransient,
       "reading /users: HTTP 502 Bad Gateway"},
      {409,
       R"({"error":{"message":"only words"}})",
       {},
       ErrorKind::kConflict,
       "reading /users: 409: only words"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status);
    Error e = GraphError(GraphResponse{c.status, c.headers, c.body}, "reading /users");
    EXPECT_EQ(e.kind, c.kind);
    EXPECT_EQ(e.message, c.message);
    EXPECT_EQ(e.no_such_user, c.no_such_user);
    EXPECT_EQ(e.credential_refused, c.status == 401);
  }
  Error throttled = GraphError(GraphResponse{503, {{"retry-after", "12"}}, ""}, "x");
  EXPECT_EQ(throttled.retry_after, seconds(12));
  // A date centuries ahead is capped, not overflowed.
  Error far =
      GraphError(GraphResponse{503, {{"retry-after", "Wed, 21 Oct 8919 07:28:00 GMT"}}, ""}, "x");
  EXPECT_EQ(far.retry_after, std::chrono::hours(24));
  Error bad = GraphError(GraphResponse{429, {{"retry-after", "soon"}}, ""}, "x");
  EXPECT_EQ(bad.retry_after, milliseconds(0));
}

TEST(GraphErrorTest, MessagesAreCutAndCleaned) {
  const std::string body =
      Json{{"error", {{"code", "Bad\ncode"}, {"message", std::string(5000, 'm') + "\x1b[31m"}}}}
          .dump();
  Error e = GraphError(GraphResponse{400, {}, body}, "writing");
  EXPECT_LT(e.message.size(), 420u);
  EXPECT_NE(e.message.find("..."), std::string::npos);
  for (char c : e.message) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20) << e.message;
  // A cut never splits a character.
  const std::string accents =
      Json{{"error", {{"code", "C"}, {"message", std::string(299, 'a') + "\xc3\xa9\xc3\xa9"}}}}
          .dump();
  Error cut = GraphError(GraphResponse{400, {}, accents}, "w");
  EXPECT_NE(cut.message.find(std::string(299, 'a') + "..."), std::string::npos) << cut.message;
}

TEST(GraphErrorTest, CodeAndSegments) {
  EXPECT_EQ(GraphErrorCode(R"({"error":{"code":"ErrorAccessDenied","message":"m"}})"),
            "ErrorAccessDenied");
  EXPECT_EQ(GraphErrorCode(R"({"error":"x"})"), "");
  EXPECT_EQ(GraphErrorCode(R"({"error":{"code":7}})"), "");
  EXPECT_EQ(GraphErrorCode("not json"), "");
  EXPECT_EQ(GraphErrorCode(""), "");
  EXPECT_EQ(GraphErrorCode(std::string(100, '[')), "");
  EXPECT_EQ(EncodeSegment("a.b-c_d~e"), "a.b-c_d~e");
  EXPECT_EQ(EncodeSegment("o'brien@contoso.com"), "o%27brien%40contoso.com");
  EXPECT_EQ(EncodeSegment("a b/c?d#e%f"), "a%20b%2Fc%3Fd%23e%25f");
  EXPECT_EQ(EncodeSegment("\xc3\xa9"), "%C3%A9");
}

TEST(GraphResponseTest, HeaderIsTheFirstOfItsName) {
  GraphResponse r{200, {{"etag", "1"}, {"etag", "2"}, {"location", "l"}}, ""};
  EXPECT_EQ(r.Header("ETag"), "1");
  EXPECT_EQ(r.Header("location"), "l");
  EXPECT_EQ(r.Header("missing"), "");
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(GraphResponse{}.ok());
}

// ---- secrets ----

TEST_F(GraphClientTest, NoTokenInAnyMessage) {
  // A transport that quotes what it was sent, Authorization and all.
  GraphClientOptions options = Options();
  options.http_factory = [](const HttpOptions&) {
    struct Echo : HttpClient {
      Result<HttpResponse> Send(const HttpRequest& r) override {
        std::string all;
        for (const auto& [k, v] : r.headers) all += k + ": " + v + "; ";
        return MakeError(ErrorKind::kTransient, "failed sending " + all);
      }
    };
    return std::make_unique<Echo>();
  };
  options.read_attempts = 1;
  auto echoing = Client(options);
  std::vector<std::string> messages;
  auto sent = echoing->Send(Write("POST", "/users/a/contacts", "{}"));
  ASSERT_FALSE(sent.ok());
  messages.push_back(sent.error().message);
  auto batch = echoing->Batch({Get("/a")});
  ASSERT_FALSE(batch.ok());
  messages.push_back(batch.error().message);

  auto client = Client();
  Answer(401, "{}");
  Answer(401, "{}");
  auto refused = client->Send(Get("/users"));
  ASSERT_TRUE(refused.ok());
  messages.push_back(GraphError(*refused, "reading /users").message);
  messages.push_back(client->Send(Get("https://evil.example/v1.0/x")).error().message);
  Answer(200, "nonsense");
  messages.push_back(client->Batch({Get("/a")}).error().message);
  for (const std::string& m : messages) {
    SCOPED_TRACE(m);
    EXPECT_EQ(m.find("tok-"), std::string::npos);
    EXPECT_EQ(m.find("s3cr3t"), std::string::npos);
  }
  EXPECT_NE(messages[0].find("[token]"), std::string::npos);
}

}  // namespace
}  // namespace roster::graph
