// HTTP as a seam: the connectors speak to an HttpClient, which is libcurl in
// production and a scripted fake in tests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace roster {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Never sent twice by the transport. libcurl sends a request again by
  // itself when a reused connection closes before any byte of the answer,
  // which is harmless for a PUT with If-None-Match but makes a second copy
  // of a POST the server names (a Graph create). Such a request goes on a
  // connection of its own, so that a silent resend cannot happen.
  bool once = false;
  // A smaller cap than HttpOptions::max_response_bytes for this answer
  // (a caller knows that a write's answer is small); 0 keeps the option's.
  size_t max_response_bytes = 0;
};

// The bytes of HTTP answers held in memory at once by every client that
// shares it (by default every client of the process). A client takes its
// share as an answer's bytes arrive and keeps it for as long as the answer
// lives, parsing included; an answer that would take the total past the
// limit fails (kTransient, to be tried again once others are done), so no
// number of connections, however large their answers, holds more.
class AnswerMemory {
 public:
  explicit AnswerMemory(size_t limit) : limit_(limit) {}
  // The process's own: 256 MiB.
  static AnswerMemory& Process();
  static constexpr size_t kProcessLimit = 256u << 20;

  bool TryTake(size_t bytes);
  void Give(size_t bytes);
  size_t limit() const { return limit_; }
  size_t in_use() const { return in_use_.load(); }
  size_t peak() const { return peak_.load(); }

 private:
  const size_t limit_;
  std::atomic<size_t> in_use_{0};
  std::atomic<size_t> peak_{0};
};

// One answer's share of an AnswerMemory, given back when the last copy of
// the answer is gone.
class AnswerHold {
 public:
  explicit AnswerHold(AnswerMemory* memory) : memory_(memory) {}
  ~AnswerHold() { memory_->Give(bytes_); }
  AnswerHold(const AnswerHold&) = delete;
  AnswerHold& operator=(const AnswerHold&) = delete;
  // Takes `more` bytes too, or nothing and false when the memory is full.
  bool Grow(size_t more);
  size_t bytes() const { return bytes_; }

 private:
  AnswerMemory* memory_;
  size_t bytes_ = 0;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string effective_url;
  // The body's share of the AnswerMemory (null from fakes): whoever keeps
  // the body after this response keeps the hold with it.
  std::shared_ptr<AnswerHold> hold;

  // First header with this (lower-case) name, or empty.
  std::string Header(std::string_view name) const;
};

struct HttpOptions {
  std::string username;
  std::string password;  // never logged
  std::string ca_file;   // extra CA bundle; verification is always on
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds timeout{120};
  size_t max_response_bytes = 64u << 20;  // a hostile server cannot exhaust memory
  // Shared by the answers of many clients; null means AnswerMemory::Process().
  AnswerMemory* answer_memory = nullptr;
  // When set, requests to any other origin (CanonicalOrigin of their URL) are
  // refused before a byte is sent: credentials go to this one server only.
  std::string allowed_origin;
  // The run's deadline: no request runs past it, and one started after it
  // fails at once with kAborted.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // A transfer slower than `low_speed_limit` bytes per second for
  // `low_speed_time` is aborted: a server that trickles cannot stall a run.
  long low_speed_limit = 10;
  std::chrono::seconds low_speed_time{60};
};

// One connection's worth of HTTP: requests go out one at a time and reuse the
// connection. Transport failures come back as errors (kUnavailable, kTransient);
// any HTTP status, even 500, is a response.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual Result<HttpResponse> Send(const HttpRequest& request) = 0;
};

std::unique_ptr<HttpClient> NewCurlHttpClient(const HttpOptions& options);

// Maps an HTTP status to an error kind (404 NotFound, 412 PreconditionFailed,
// 401/403 AccessDenied, 429/503 Throttled with Retry-After, other 5xx Transient).
Error HttpStatusError(const HttpResponse& response, const std::string& what);

// Resolves a possibly relative href against a base URL. The result has one
// canonical percent-encoding and no dot segments ("%2e%2e" counts as "..").
std::string ResolveUrl(const std::string& base, const std::string& href);

// "scheme://host:port" of an absolute URL: scheme and host lower-cased, any
// userinfo dropped, the port always written (80/443 by default), so that two
// spellings of one server compare equal. Empty when `url` is not absolute or
// its port is not a number.
std::string CanonicalOrigin(std::string_view url);

// True when a header value received from (or sent to) a server is printable
// ASCII (0x20-0x7E: no CR, LF, NUL or other controls) and at most `max_bytes`
// long; anything else could smuggle a header into a later request.
bool IsSafeHeaderValue(std::string_view value, size_t max_bytes);

}  // namespace roster
