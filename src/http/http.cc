// Transport-independent HTTP helpers: header lookup, status-to-error mapping
// and URL resolution with one canonical percent-encoding.
#include "http/http.h"

#include <curl/curl.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include "core/text.h"

namespace roster {
namespace {

const char* ReasonPhrase(int status) {
  switch (status) {
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 423:
      return "Locked";
    case 424:
      return "Failed Dependency";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 507:
      return "Insufficient Storage";
    default:
      return "";
  }
}

// Retry-After is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
std::chrono::milliseconds ParseRetryAfter(const std::string& value) {
  if (value.empty()) return std::chrono::milliseconds(0);
  bool digits = true;
  for (char c : value) digits = digits && c >= '0' && c <= '9';
  if (digits) {
    if (value.size() > 9) return std::chrono::hours(24);  // absurd; cap rather than overflow
    return std::chrono::seconds(std::strtol(value.c_str(), nullptr, 10));
  }
  time_t when = curl_getdate(value.c_str(), nullptr);
  if (when < 0) return std::chrono::milliseconds(0);
  // In whole seconds: a date centuries ahead would overflow the clock's
  // nanoseconds (from_time_t), so anything past a day is a day.
  const time_t now = std::time(nullptr);
  if (when <= now) return std::chrono::milliseconds(0);
  if (when - now > 24 * 3600) return std::chrono::hours(24);
  return std::chrono::seconds(when - now);
}

// Characters a path segment may carry unencoded (RFC 3986 pchar minus '%').
bool IsPathChar(unsigned char c) {
  if (text::IsUrlUnreserved(c)) return true;
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
    case ':':
    case '@':
      return true;
    default:
      return false;
  }
}

bool IsPathCharOrSlash(unsigned char c) { return c == '/' || IsPathChar(c); }

// One canonical spelling for a path: servers differ in what they escape
// ("%40" or "@", "%2c" or ","), and hrefs must compare equal whichever way a
// server wrote them. Bytes that may stand bare are decoded, everything else is
// encoded with upper-case hex; "%2F" stays encoded since it is not a slash.
std::string CanonicalPath(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (const int escaped = text::PercentEscapeAt(path, i); escaped >= 0) {
      const char decoded = static_cast<char>(escaped);
      out += text::PercentEncode(std::string_view(&decoded, 1), IsPathChar);
      i += 2;
    } else {
      out += text::PercentEncode(path.substr(i, 1), IsPathCharOrSlash);
    }
  }
  return out;
}

// RFC 3986 §5.2.4 remove_dot_segments.
std::string RemoveDotSegments(std::string_view in) {
  std::string out;
  while (!in.empty()) {
    if (in.starts_with("../")) {
      in.remove_prefix(3);
    } else if (in.starts_with("./")) {
      in.remove_prefix(2);
    } else if (in.starts_with("/./")) {
      in.remove_prefix(2);
    } else if (in == "/.") {
      in = "/";
    } else if (in.starts_with("/../") || in == "/..") {
      in = in.size() == 3 ? std::string_view("/") : in.substr(3);
      size_t slash = out.rfind('/');
      out.erase(slash == std::string::npos ? 0 : slash);
    } else if (in == "." || in == "..") {
      in = {};
    } else {
      size_t next = in.find('/', in.starts_with('/') ? 1 : 0);
      if (next == std::string_view::npos) next = in.size();
      out.append(in.substr(0, next));
      in.remove_prefix(next);
    }
  }
  return out;
}

struct UrlParts {
  std::string scheme;     // "http"
  std::string authority;  // "host:port" (may include userinfo)
  std::string path;       // "/a/b"
  std::string rest;       // "?query#fragment"
};

bool SplitAbsolute(std::string_view url, UrlParts* parts) {
  size_t colon = url.find("://");
  if (colon == std::string_view::npos || colon == 0) return false;
  for (size_t i = 0; i < colon; ++i) {
    char c = url[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    if (!ok) return false;
  }
  parts->scheme = text::AsciiLower(url.substr(0, colon));
  std::string_view after = url.substr(colon + 3);
  size_t end = after.find_first_of("/?#");
  if (end == std::string_view::npos) end = after.size();
  parts->authority = std::string(after.substr(0, end));
  std::string_view tail = after.substr(end);
  size_t q = tail.find_first_of("?#");
  if (q == std::string_view::npos) q = tail.size();
  parts->path = std::string(tail.substr(0, q));
  parts->rest = std::string(tail.substr(q));
  if (parts->path.empty()) parts->path = "/";
  return true;
}

// Escaping is made canonical before dot segments are removed (RFC 3986
// §6.2.2), so that "%2e%2e" is removed as ".." rather than decoded into one
// after the fact and resolved by the server to another user's path.
std::string Join(const UrlParts& parts) {
  return parts.scheme + "://" + parts.authority + RemoveDotSegments(CanonicalPath(parts.path)) +
         parts.rest;
}

}  // namespace

AnswerMemory& AnswerMemory::Process() {
  static AnswerMemory* memory = new AnswerMemory(kProcessLimit);  // never destroyed
  return *memory;
}

bool AnswerMemory::TryTake(size_t bytes) {
  size_t now = in_use_.load();
  do {
    if (bytes > limit_ || now > limit_ - bytes) return false;
  } while (!in_use_.compare_exchange_weak(now, now + bytes));
  size_t peak = peak_.load();
  while (now + bytes > peak && !peak_.compare_exchange_weak(peak, now + bytes)) {
  }
  return true;
}

void AnswerMemory::Give(size_t bytes) { in_use_.fetch_sub(bytes); }

bool AnswerHold::Grow(size_t more) {
  if (!memory_->TryTake(more)) return false;
  bytes_ += more;
  return true;
}

std::string HttpResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (text::EqualsNoCase(key, name)) return value;
  }
  return "";
}

Error HttpStatusError(const HttpResponse& response, const std::string& what) {
  const int status = response.status;
  std::string code = "HTTP " + std::to_string(status);
  const char* reason = ReasonPhrase(status);
  std::string with_reason = *reason ? code + " " + reason : code;

  if (status == 401) {
    Error e = MakeError(ErrorKind::kAccessDenied,
                        what + ": the server rejected the credentials (" + code + ")");
    e.credential_refused = true;
    return e;
  }
  if (status == 403) {
    return MakeError(ErrorKind::kAccessDenied, what + ": access denied (" + with_reason + ")");
  }
  if (status == 404 || status == 410) {
    return MakeError(ErrorKind::kNotFound, what + ": " + with_reason);
  }
  if (status == 412) {
    return MakeError(ErrorKind::kPreconditionFailed, what + ": " + with_reason);
  }
  if (status == 429 || status == 503) {
    Error error = MakeError(ErrorKind::kThrottled, what + ": " + with_reason);
    error.retry_after = ParseRetryAfter(response.Header("retry-after"));
    return error;
  }
  if (status >= 300 && status < 400) {
    // Location is server text that ends up in a message: only a sane one is shown.
    std::string location = response.Header("location");
    if (!IsSafeHeaderValue(location, 2048)) location.clear();
    return MakeError(ErrorKind::kInvalidArgument,
                     what + ": " + with_reason +
                         (location.empty() ? std::string()
                                           : "; the server redirects to " + location +
                                                 ", configure that URL instead"));
  }
  if (status == 507) {
    return MakeError(ErrorKind::kConflict, what + ": " + with_reason);
  }
  if (status >= 500) return MakeError(ErrorKind::kTransient, what + ": " + with_reason);
  if (status >= 400) return MakeError(ErrorKind::kConflict, what + ": " + with_reason);
  return MakeError(ErrorKind::kInvalidData, what + ": unexpected " + with_reason);
}

std::string ResolveUrl(const std::string& base, const std::string& href) {
  UrlParts parts;
  if (SplitAbsolute(href, &parts)) return Join(parts);
  UrlParts base_parts;
  if (!SplitAbsolute(base, &base_parts)) return href;  // nothing to resolve against
  if (href.starts_with("//")) return ResolveUrl(base_parts.scheme + ":" + href, "");
  if (href.empty()) return Join(base_parts);

  std::string_view ref = href;
  std::string rest;
  size_t q = ref.find_first_of("?#");
  if (q != std::string_view::npos) {
    rest = std::string(ref.substr(q));
    ref = ref.substr(0, q);
  }
  if (ref.empty()) {
    // "?x" or "#x": same path, new query/fragment.
    if (rest[0] == '#') {
      base_parts.rest = base_parts.rest.substr(0, base_parts.rest.find('#')) + rest;
    } else {
      base_parts.rest = rest;
    }
    return Join(base_parts);
  }
  if (ref.starts_with('/')) {
    base_parts.path = std::string(ref);
  } else {
    size_t slash = base_parts.path.rfind('/');
    base_parts.path = base_parts.path.substr(0, slash + 1) + std::string(ref);
  }
  base_parts.rest = rest;
  return Join(base_parts);
}

std::string CanonicalOrigin(std::string_view url) {
  UrlParts parts;
  if (!SplitAbsolute(url, &parts)) return "";
  std::string_view authority = parts.authority;
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  // The port follows the last ':' after any IPv6 literal's closing bracket.
  size_t bracket = authority.rfind(']');
  size_t colon = authority.rfind(':');
  std::string_view host = authority, port;
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return "";
  for (char c : port) {
    if (c < '0' || c > '9') return "";
  }
  while (port.size() > 1 && port.front() == '0') port.remove_prefix(1);
  if (port.size() > 5) return "";
  std::string out = parts.scheme + "://";
  out += text::AsciiLower(host);
  out += ':';
  if (!port.empty()) {
    out += port;
  } else if (parts.scheme == "https") {
    out += "443";
  } else if (parts.scheme == "http") {
    out += "80";
  } else {
    return "";
  }
  return out;
}

bool IsSafeHeaderValue(std::string_view value, size_t max_bytes) {
  if (value.size() > max_bytes) return false;
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;  // char may be signed: bytes >= 0x80 are < 0
  }
  return true;
}

}  // namespace roster
