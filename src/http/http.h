// HTTP as a seam: the connectors speak to an HttpClient, which is libcurl in
// production and a scripted fake in tests.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"

namespace roster {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string effective_url;

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

// Resolves a possibly relative href against a base URL.
std::string ResolveUrl(const std::string& base, const std::string& href);

}  // namespace roster
