// libFuzzer target for what Graph answers a $batch and an error: any bytes
// must come back as a Result or an Error, never a crash or a hang, with one
// answer per request at its place, sane statuses and header names, and no
// control character or token in any message.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "graph/auth.h"
#include "graph/client.h"

namespace {

using roster::Error;
using roster::HttpClient;
using roster::HttpOptions;
using roster::HttpRequest;
using roster::HttpResponse;
using roster::Result;
using namespace roster::graph;

constexpr char kToken[] = "fuzz-token-must-not-leak";

// Time stands still and sleeps are free: retries cost nothing here.
class StillClock final : public roster::Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return {}; }
  void SleepFor(std::chrono::milliseconds) override {}
};

// Answers every request with `*body` as a 200.
class Replay final : public HttpClient {
 public:
  explicit Replay(const std::string* body) : body_(body) {}
  Result<HttpResponse> Send(const HttpRequest&) override {
    HttpResponse response;
    response.status = 200;
    response.body = *body_;
    return response;
  }

 private:
  const std::string* body_;
};

struct World {
  StillClock clock;
  std::string token_answer = std::string(R"({"token_type":"Bearer","expires_in":3599,)") +
                             R"("access_token":")" + kToken + "\"}";
  std::string body;
  std::unique_ptr<TokenProvider> tokens;
  std::unique_ptr<GraphClient> client;

  World() {
    GraphCredentials credentials;
    credentials.tenant_id = "contoso.onmicrosoft.com";
    credentials.client_id = "11111111-2222-3333-4444-555555555555";
    credentials.client_secret = "fuzz-secret";
    TokenProviderOptions token_options;
    token_options.clock = &clock;
    token_options.http_factory = [this](const HttpOptions&) {
      return std::make_unique<Replay>(&token_answer);
    };
    tokens = std::move(TokenProvider::Create(credentials, token_options)).value();
    GraphClientOptions options;
    options.clock = &clock;
    options.seed = 1;
    options.http_factory = [this](const HttpOptions&) { return std::make_unique<Replay>(&body); };
    client = std::move(GraphClient::Create(tokens.get(), options)).value();
  }
};

// Whether this input itself holds the token: then Graph's own text may
// quote it, and only the client's words are held to keeping it out.
bool g_input_has_token = false;

void CheckMessage(const std::string& message) {
  if (!g_input_has_token && message.find(kToken) != std::string::npos) std::abort();
  for (char c : message) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) std::abort();
  }
}

void CheckAnswers(const Result<std::vector<GraphResponse>>& answers, size_t requests) {
  if (!answers.ok()) {
    CheckMessage(answers.error().message);
    return;
  }
  if (answers->size() != requests) std::abort();
  for (const GraphResponse& r : *answers) {
    if (r.status != 0 && (r.status < 100 || r.status > 599)) std::abort();
    for (const auto& [name, value] : r.headers) {
      for (char c : name) {
        if (c >= 'A' && c <= 'Z') std::abort();
      }
      for (char c : value) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) std::abort();
      }
    }
    CheckMessage(GraphError(r, "fuzz").message);
  }
}

GraphRequest Request(std::string method, std::string url, std::string body = "") {
  GraphRequest r;
  r.method = std::move(method);
  r.url = std::move(url);
  r.body = std::move(body);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();
  const std::string input(reinterpret_cast<const char*>(data), size);
  world->body = input;
  g_input_has_token = input.find(kToken) != std::string::npos;

  // Reads only: retried sub-requests see the same answer again.
  const std::vector<GraphRequest> reads = {Request("GET", "/users/a"),
                                           Request("GET", "/users/b/photo/$value"),
                                           Request("GET", "/users?$select=id")};
  CheckAnswers(world->client->Batch(reads), reads.size());

  // With writes: sent once.
  std::vector<GraphRequest> writes = {Request("GET", "/users/a"),
                                      Request("POST", "/users/a/contacts", R"({"givenName":"A"})"),
                                      Request("DELETE", "/users/a/contacts/c")};
  writes[2].depends_on = "2";
  CheckAnswers(world->client->Batch(writes), writes.size());

  // The same bytes as an error answer, a prefix of them as Retry-After.
  for (int status : {0, 400, 401, 404, 412, 429, 503, 500}) {
    GraphResponse response{status, {{"retry-after", input.substr(0, 40)}}, input};
    const Error error = GraphError(response, "fuzz");
    CheckMessage(error.message);
    if (error.retry_after.count() < 0) std::abort();
  }
  const std::string code = GraphErrorCode(input);
  if (code.size() > 400) std::abort();
  return 0;
}
