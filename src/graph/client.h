// Requests to Microsoft Graph v1.0 for one worker: the bearer token from a
// shared TokenProvider, renewed once on a 401; Prefer: IdType="ImmutableId"
// on every request (and on every $batch sub-request, since the envelope's
// headers do not reach them); every URL Graph hands back (@odata.nextLink,
// @odata.deltaLink, Location) checked to be on graph_url's origin before the
// token goes to it; reads retried on 429/503 (Retry-After) and on 5xx or a
// dropped connection (backoff with jitter); JSON $batch of up to 20
// sub-requests, each answered on its own. The adapters in
// src/connectors/graph build Sources and Targets on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "graph/auth.h"
#include "http/http.h"

namespace roster::graph {

// Graph accepts at most 20 sub-requests in one $batch.
inline constexpr size_t kMaxBatchRequests = 20;

struct GraphClientOptions {
  // Where Graph lives: "https://graph.microsoft.com" (national clouds have
  // their own; an emulator sits on loopback). Requests go to
  // graph_url + "/v1.0" + path. Plain http:// is the config module's to allow.
  std::string graph_url = "https://graph.microsoft.com";
  // CA file, timeouts, deadline, max_response_bytes. allowed_origin is set
  // by the client to graph_url's origin, whatever it holds here.
  HttpOptions http;
  // Makes the one connection; null means NewCurlHttpClient.
  std::function<std::unique_ptr<HttpClient>(const HttpOptions&)> http_factory;
  // Sleeps between retries; null means RealClock().
  Clock* clock = nullptr;
  // Reads (GET, and a $batch of GETs only) are tried this many times in all
  // when the answer is 429, 503, another 5xx or a transport failure.
  // Writes are never retried here: the executor decides (a create with a
  // server-assigned id must not be sent twice).
  int read_attempts = 4;
  // A Retry-After longer than this is not waited for: the read fails as
  // kThrottled with that retry_after, for the caller to leave for later.
  std::chrono::seconds max_retry_after{60};
  // Backoff without Retry-After: base * 2^attempt, with full jitter.
  std::chrono::milliseconds backoff_base{500};
  // The largest answer taken: to a read (a page of 1,000 contacts is a few
  // MB; a $batch of reads larger than this is sent again in halves), and
  // to a write or a $batch of writes (Graph echoes what it wrote). Neither
  // is more than http.max_response_bytes.
  size_t max_read_answer_bytes = 16u << 20;
  size_t max_write_answer_bytes = 8u << 20;
  // Seeds the jitter (tests); 0 draws one from the system.
  uint64_t seed = 0;
};

// One request. `url` is a path under /v1.0 ("/users?$select=id", any query
// already percent-encoded) or an absolute URL that Graph handed back (a
// nextLink, a deltaLink), which must be on graph_url's origin.
struct GraphRequest {
  std::string method = "GET";
  std::string url;
  // Extra headers (If-Match, ConsistencyLevel, Prefer: odata.maxpagesize);
  // Authorization and the ImmutableId preference are the client's, and a
  // JSON body gets Content-Type: application/json.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // JSON text, or empty
  // $batch only: the id of a sub-request of the same batch that must
  // succeed first (Graph answers this one 424 Failed Dependency otherwise).
  std::string depends_on;
  // A body that is not JSON (a photo's bytes): sent as is with this
  // Content-Type. Not allowed inside a $batch.
  std::string content_type;
};

struct GraphResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  // The body's share of the answers' memory (see AnswerMemory), if counted.
  std::shared_ptr<AnswerHold> hold;
  std::string Header(std::string_view name) const;  // first with this lower-case name, or empty
  bool ok() const { return status >= 200 && status < 300; }
};

// What a client has sent, for run reports and benchmarks.
struct GraphCounters {
  int64_t requests = 0;                 // HTTP requests, a $batch counting one
  int64_t sub_requests = 0;             // sub-requests inside $batch calls
  int64_t throttled = 0;                // requests and sub-requests answered 429 (or 503)
  int64_t retries = 0;                  // reads sent again
  std::chrono::milliseconds waited{0};  // slept for Retry-After and backoff
};

// Not thread-safe: one client per worker (a collection, a source). Clients
// of one tenant share one TokenProvider, which is.
class GraphClient {
 public:
  // Checks graph_url (an absolute http(s) URL without a query) and opens
  // nothing yet. `tokens` must outlive the client.
  static Result<std::unique_ptr<GraphClient>> Create(TokenProvider* tokens,
                                                     GraphClientOptions options);
  ~GraphClient();
  GraphClient(const GraphClient&) = delete;
  GraphClient& operator=(const GraphClient&) = delete;

  // Sends one request and answers Graph's response, whatever its status
  // (reads that still fail after their attempts answer the last response).
  // Errors: a URL off graph_url's origin (kInvalidData, naming the origin,
  // nothing sent), a token that cannot be had (the TokenProvider's error),
  // transport failures (as the HttpClient reports them; a write's is
  // marked by kTransient and must be taken as possibly carried out).
  Result<GraphResponse> Send(const GraphRequest& request);

  // Sends up to kMaxBatchRequests sub-requests as one JSON $batch (POST
  // /v1.0/$batch), their ids "1".."n" in order (depends_on names them so),
  // and answers one response per request, in the order given, whatever
  // order Graph answered in. A sub-response that is missing from the answer
  // comes back with status 0 and an empty body: its request may or may not
  // have run. A sub-response body is its JSON text (Graph embeds it as a
  // JSON value; a base64 string body is decoded). Errors are those of the
  // envelope: an envelope that is not 200 (as GraphError words it, with
  // Retry-After), an answer that is not a $batch answer (kInvalidData), a
  // transport failure. A batch of GETs only is retried as a read, and its
  // sub-requests answered 429 or 5xx are sent again in a later batch, up to
  // read_attempts in all. A batch of reads whose answer is larger than
  // max_read_answer_bytes is sent again as two batches of half as many
  // (photos are large), down to one request; the error of one that is
  // still too large is the answer.
  Result<std::vector<GraphResponse>> Batch(const std::vector<GraphRequest>& requests);

  // Whether an absolute URL Graph handed back may be followed with the
  // token: on graph_url's origin (CanonicalOrigin) and under its /v1.0/.
  Status CheckLink(std::string_view url) const;

  const GraphCounters& counters() const { return counters_; }
  const std::string& graph_url() const { return graph_url_; }

 private:
  GraphClient(TokenProvider* tokens, GraphClientOptions options, std::string graph_url,
              std::string origin);
  Result<std::vector<GraphResponse>> BatchOnce(const std::vector<GraphRequest>& requests);

  TokenProvider* tokens_;
  GraphClientOptions options_;
  std::string graph_url_;  // without a trailing slash
  std::string origin_;
  std::unique_ptr<HttpClient> http_;
  GraphCounters counters_;
  uint64_t rng_ = 0;
};

// Graph's error answer {"error": {"code", "message"}} as one sentence that
// starts with `what` and names the code ("reading /users: 403
// Authorization_RequestDenied: Insufficient privileges to complete the
// operation."), the message cut short and stripped of control characters.
// Kinds as HttpStatusError maps them (404 kNotFound, 412
// kPreconditionFailed, 401/403 kAccessDenied, 429/503 kThrottled with
// Retry-After, other 5xx kTransient, other 4xx kConflict or kInvalidData),
// except that 404 MailboxNotEnabledForRESTAPI and ErrorInvalidUser stay
// kNotFound and say that the mailbox does not exist or has no Exchange
// Online licence.
Error GraphError(const GraphResponse& response, const std::string& what);

// The "error.code" of an error answer, or empty.
std::string GraphErrorCode(std::string_view body);

// Percent-encodes a path segment (a user principal name, an id) or an
// OData literal for a query, escaping all but RFC 3986's unreserved bytes.
std::string EncodeSegment(std::string_view text);

}  // namespace roster::graph
