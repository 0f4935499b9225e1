// HttpClient over one libcurl easy handle. Reusing the handle keeps the
// connection (and TLS session) alive between requests to the same server.
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>

#include "core/text.h"
#include "http/http.h"

namespace roster {
namespace {

void GlobalInitOnce() {
  // curl_global_init is not thread-safe itself; call_once makes it so.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// "scheme://authority/" of a URL, for messages about the server as a whole.
std::string Origin(const std::string& url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  size_t path = url.find_first_of("/?#", scheme_end + 3);
  std::string origin = url.substr(0, path);
  // Never echo credentials embedded in a URL.
  size_t at = origin.rfind('@');
  if (at != std::string::npos && at > scheme_end) {
    origin = origin.substr(0, scheme_end + 3) + origin.substr(at + 1);
  }
  return origin + "/";
}

// A header line is built from name and value; a CR, LF or NUL in either
// would end it early and start a header the server never sent us to send.
bool HasLineBreak(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool HasControl(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// The request's headers as curl takes them (the caller frees the list).
curl_slist* HeaderList(const HttpRequest& request, bool has_body) {
  curl_slist* headers = nullptr;
  bool has_content_type = false;
  for (const auto& [name, value] : request.headers) {
    std::string line = name + ": " + value;
    has_content_type = has_content_type || text::EqualsNoCase(name, "content-type");
    headers = curl_slist_append(headers, line.c_str());
  }
  if (has_body) {
    // Radicale never answers "Expect: 100-continue", so curl would stall a
    // second before every upload; an empty header stops curl sending it.
    headers = curl_slist_append(headers, "Expect:");
    // POSTFIELDS would otherwise add a form content type.
    if (!has_content_type) headers = curl_slist_append(headers, "Content-Type:");
  }
  return headers;
}

class CurlHttpClient : public HttpClient {
 public:
  explicit CurlHttpClient(const HttpOptions& options) : options_(options) {
    GlobalInitOnce();
    curl_ = curl_easy_init();
  }
  ~CurlHttpClient() override {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
  }
  CurlHttpClient(const CurlHttpClient&) = delete;
  CurlHttpClient& operator=(const CurlHttpClient&) = delete;

  Result<HttpResponse> Send(const HttpRequest& request) override;

 private:
  struct Transfer {
    HttpResponse* response;
    size_t max_bytes;
    bool too_large = false;
    bool memory_full = false;
  };

  static size_t OnBody(char* data, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    size_t bytes = size * count;
    std::string& body = transfer->response->body;
    const size_t needed = body.size() + bytes;
    if (needed > transfer->max_bytes) {
      transfer->too_large = true;
      return 0;  // makes curl abort with CURLE_WRITE_ERROR
    }
    if (needed > body.capacity()) {
      // The body grows as std::string would (doubling), but never past the
      // cap, and only by what the answers' memory grants: what is counted
      // is what is allocated.
      const size_t grown = std::min(transfer->max_bytes, std::max(needed, 2 * body.capacity()));
      AnswerHold& hold = *transfer->response->hold;
      const size_t more = grown > hold.bytes() ? grown - hold.bytes() : 0;
      if (!hold.Grow(more)) {
        transfer->memory_full = true;
        return 0;
      }
      body.reserve(grown);
    }
    body.append(data, bytes);
    return bytes;
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    size_t bytes = size * count;
    std::string_view line(data, bytes);
    if (line.starts_with("HTTP/")) {
      // A new status line (after 1xx or a redirect): forget earlier headers.
      transfer->response->headers.clear();
      return bytes;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return bytes;
    // The value without optional whitespace before it (RFC 9110 §5.6.3) and
    // without that and the line end after it.
    const std::string_view value =
        text::TrimRight(text::TrimLeft(line.substr(colon + 1), " \t"), " \t\r\n");
    transfer->response->headers.emplace_back(text::AsciiLower(line.substr(0, colon)),
                                             std::string(value));
    return bytes;
  }

  // Why this request must not be sent at all (another origin, a header that
  // would inject a line, the run's deadline passed), or nothing.
  std::optional<Error> Refusal(const HttpRequest& request) const;
  // The time this request may take: the configured timeout, capped by what is
  // left before the deadline.
  std::chrono::milliseconds TimeAllowed();
  // Everything about a transfer but its method and headers: the URL, TLS,
  // timeouts, the size cap, credentials, and where body and headers go.
  void SetTransferOptions(const HttpRequest& request, Transfer* transfer, char* error_buffer);
  // The method, and the body if it has one; true when it does.
  bool SetMethodAndBody(const HttpRequest& request);
  Error TransportError(CURLcode code, const HttpRequest& request, const char* detail,
                       bool too_large, size_t cap) const;

  HttpOptions options_;
  CURL* curl_ = nullptr;
  bool deadline_capped_ = false;  // this request's timeout is the time left before the deadline
};

std::optional<Error> CurlHttpClient::Refusal(const HttpRequest& request) const {
  const std::string what = request.method + " " + request.url;
  if (HasControl(request.url) || HasControl(request.method)) {
    return MakeError(ErrorKind::kInvalidData,
                     "refusing to send a request whose URL or method has control characters");
  }
  if (!options_.allowed_origin.empty() &&
      CanonicalOrigin(request.url) != CanonicalOrigin(options_.allowed_origin)) {
    return MakeError(ErrorKind::kAccessDenied, "refusing to send " + what + ": only " +
                                                   options_.allowed_origin +
                                                   " (the configured server) may be asked");
  }
  for (const auto& [name, value] : request.headers) {
    if (HasLineBreak(name) || HasLineBreak(value) || name.find(':') != std::string::npos) {
      return MakeError(ErrorKind::kInvalidData, "refusing to send " + what + ": the " + name +
                                                    " header holds a line break or NUL");
    }
  }
  if (options_.deadline && std::chrono::steady_clock::now() >= *options_.deadline) {
    return MakeError(ErrorKind::kAborted, what + " not sent: the run's deadline passed");
  }
  return std::nullopt;
}

std::chrono::milliseconds CurlHttpClient::TimeAllowed() {
  deadline_capped_ = false;
  auto allowed = std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout);
  if (options_.deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        *options_.deadline - std::chrono::steady_clock::now());
    // 0 would mean "no timeout" to libcurl.
    deadline_capped_ = left < allowed;
    allowed = std::max(std::chrono::milliseconds(1), std::min(allowed, left));
  }
  return allowed;
}

void CurlHttpClient::SetTransferOptions(const HttpRequest& request, Transfer* transfer,
                                        char* error_buffer) {
  curl_easy_setopt(curl_, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https");
  // Redirects are never followed: a 3xx is returned as a response (and an
  // error naming the new URL), so credentials cannot travel to another origin.
  // libcurl retries a request once on a fresh connection when a reused one
  // died before answering; for a request that must not run twice there is
  // no reused connection to die.
  if (request.once) curl_easy_setopt(curl_, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl_, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, options_.ca_file.c_str());
  const std::chrono::milliseconds allowed = TimeAllowed();
  const auto connect = std::min<std::chrono::milliseconds>(options_.connect_timeout, allowed);
  curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect.count()));
  curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(allowed.count()));
  if (options_.low_speed_limit > 0 && options_.low_speed_time.count() > 0) {
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_limit);
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(options_.low_speed_time.count()));
  }
  const size_t cap = request.max_response_bytes != 0
                         ? std::min(request.max_response_bytes, options_.max_response_bytes)
                         : options_.max_response_bytes;
  curl_easy_setopt(curl_, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(cap));
  curl_easy_setopt(curl_, CURLOPT_ACCEPT_ENCODING, "");  // whatever curl can decode
  if (!options_.username.empty()) {
    curl_easy_setopt(curl_, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl_, CURLOPT_USERNAME, options_.username.c_str());
    curl_easy_setopt(curl_, CURLOPT_PASSWORD, options_.password.c_str());
  }
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &CurlHttpClient::OnBody);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, transfer);
  curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &CurlHttpClient::OnHeader);
  curl_easy_setopt(curl_, CURLOPT_HEADERDATA, transfer);
}

bool CurlHttpClient::SetMethodAndBody(const HttpRequest& request) {
  const bool has_body = !request.body.empty() || request.method == "PUT" ||
                        request.method == "POST" || request.method == "PATCH";
  if (request.method == "HEAD") {
    curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
  } else if (has_body) {
    // POSTFIELDS with an explicit size sends exactly these bytes, also when
    // there are none (Content-Length: 0), without a read callback.
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, request.body.data());
    if (request.method != "POST") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
  } else {
    curl_easy_setopt(curl_, CURLOPT_HTTPGET, 1L);
    if (request.method != "GET") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
  }
  return has_body;
}

Result<HttpResponse> CurlHttpClient::Send(const HttpRequest& request) {
  if (curl_ == nullptr) return MakeError(ErrorKind::kInternal, "cannot initialise libcurl");
  if (std::optional<Error> refused = Refusal(request)) return std::move(*refused);
  // Reset clears options from the previous request but keeps live connections,
  // the DNS cache and TLS sessions.
  curl_easy_reset(curl_);

  HttpResponse response;
  response.hold = std::make_shared<AnswerHold>(
      options_.answer_memory != nullptr ? options_.answer_memory : &AnswerMemory::Process());
  const size_t cap = request.max_response_bytes != 0
                         ? std::min(request.max_response_bytes, options_.max_response_bytes)
                         : options_.max_response_bytes;
  Transfer transfer{&response, cap};
  char error_buffer[CURL_ERROR_SIZE] = {0};
  SetTransferOptions(request, &transfer, error_buffer);
  const bool has_body = SetMethodAndBody(request);
  curl_slist* headers = HeaderList(request, has_body);
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);

  CURLcode code = curl_easy_perform(curl_);
  curl_slist_free_all(headers);

  if (code != CURLE_OK) {
    if (transfer.memory_full) {
      const AnswerMemory* memory =
          options_.answer_memory != nullptr ? options_.answer_memory : &AnswerMemory::Process();
      return MakeError(
          ErrorKind::kTransient,
          request.method + " " + request.url +
              ": the answers being received together would hold more than " +
              (memory->limit() % (1u << 20) == 0 ? std::to_string(memory->limit() >> 20) + " MiB"
                                                 : std::to_string(memory->limit()) + " bytes") +
              " of memory; to be tried again");
    }
    return TransportError(code, request, error_buffer, transfer.too_large, cap);
  }
  long status = 0;
  curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  char* effective = nullptr;
  curl_easy_getinfo(curl_, CURLINFO_EFFECTIVE_URL, &effective);
  response.effective_url = effective != nullptr ? effective : request.url;
  return response;
}

Error CurlHttpClient::TransportError(CURLcode code, const HttpRequest& request, const char* detail,
                                     bool too_large, size_t cap) const {
  const std::string what = request.method + " " + request.url;
  std::string text = (detail != nullptr && *detail) ? detail : curl_easy_strerror(code);
  long os_errno = 0;
  curl_easy_getinfo(curl_, CURLINFO_OS_ERRNO, &os_errno);
  switch (code) {
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      if (too_large || code == CURLE_FILESIZE_EXCEEDED) {
        Error e = MakeError(ErrorKind::kInvalidData,
                            what + ": response larger than " + std::to_string(cap) + " bytes");
        e.too_large = true;
        return e;
      }
      return MakeError(ErrorKind::kTransient, what + ": " + text);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return MakeError(ErrorKind::kUnavailable,
                       "cannot connect to " + Origin(request.url) + ": host name not found");
    case CURLE_COULDNT_CONNECT:
      return MakeError(ErrorKind::kUnavailable,
                       "cannot connect to " + Origin(request.url) + ": " +
                           (os_errno != 0 ? std::strerror(static_cast<int>(os_errno)) : text));
    case CURLE_OPERATION_TIMEDOUT:
      // curl's own clock may fire a little before ours reaches the deadline.
      if (deadline_capped_) {
        return MakeError(ErrorKind::kAborted, what + ": stopped, the run's deadline passed");
      }
      return MakeError(ErrorKind::kTransient, what + ": timed out (" + text + ")");
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return MakeError(ErrorKind::kUnavailable,
                       "cannot verify the TLS certificate of " + Origin(request.url) + ": " + text);
    case CURLE_SSL_CONNECT_ERROR:
      return MakeError(ErrorKind::kUnavailable,
                       "TLS handshake with " + Origin(request.url) + " failed: " + text);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return MakeError(ErrorKind::kInvalidArgument, "invalid URL " + request.url + ": " + text);
    case CURLE_LOGIN_DENIED: {
      Error e = MakeError(ErrorKind::kAccessDenied, what + ": the server rejected the credentials");
      e.credential_refused = true;
      return e;
    }
    default:
      // Resets, partial transfers, empty replies: a retry may well succeed.
      return MakeError(ErrorKind::kTransient, what + ": " + text);
  }
}

}  // namespace

std::unique_ptr<HttpClient> NewCurlHttpClient(const HttpOptions& options) {
  return std::make_unique<CurlHttpClient>(options);
}

}  // namespace roster
