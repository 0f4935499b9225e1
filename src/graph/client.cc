// The Microsoft Graph request layer (client.h): URLs checked against
// graph_url's origin before the token goes anywhere, the token renewed once
// on a 401, reads retried with Retry-After or jittered backoff, and $batch
// envelopes built and taken apart with nlohmann_json, every answer bounded.
#include "graph/client.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/text.h"

namespace roster::graph {
namespace {

using Json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;
using std::chrono::milliseconds;

constexpr char kImmutableId[] = "IdType=\"ImmutableId\"";
constexpr size_t kMaxHeaderValueBytes = 8192;
constexpr size_t kMaxUrlBytes = 16384;
// Graph's answers nest a few levels (envelope, body, a contact's lists);
// anything far deeper is hostile, and is refused before nlohmann sees it.
constexpr int kMaxJsonDepth = 64;
// An error answer is a few hundred bytes; a larger one is not read for words.
constexpr size_t kMaxErrorBodyBytes = 1u << 20;
constexpr size_t kMaxErrorMessageBytes = 300;
constexpr size_t kMaxErrorCodeBytes = 100;
// Backoff never grows past this, whatever base and attempts say.
constexpr milliseconds kMaxBackoff = std::chrono::minutes(5);

// ---- small parsers ----

int Digits(std::string_view s, size_t pos, size_t count) {
  int value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    value = value * 10 + (s[i] - '0');
  }
  return value;
}

// An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the one HTTP-date form
// RFC 9110 §5.6.7 lets senders generate.
std::optional<std::chrono::sys_seconds> ParseHttpDate(std::string_view v) {
  if (v.size() != 29 || v[3] != ',' || v[4] != ' ' || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' ||
      v[19] != ':' || v[22] != ':' || v.substr(25) != " GMT") {
    return std::nullopt;
  }
  static constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";
  const size_t month = kMonths.find(v.substr(8, 3));
  const int day = Digits(v, 5, 2), year = Digits(v, 12, 4);
  const int hour = Digits(v, 17, 2), minute = Digits(v, 20, 2), second = Digits(v, 23, 2);
  if (month == std::string_view::npos || month % 3 != 0 || day < 0 || year < 0 || hour < 0 ||
      hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(year),
                                         std::chrono::month(static_cast<unsigned>(month / 3 + 1)),
                                         std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days(date) + std::chrono::hours(hour) + std::chrono::minutes(minute) +
         std::chrono::seconds(second);
}

// Retry-After as delay-seconds or an HTTP-date (RFC 9110 §10.2.3); nullopt
// when absent or unreadable, so that the caller backs off instead. A date
// is measured against the wall clock, which has no seam: Graph sends seconds.
std::optional<milliseconds> ParseRetryAfter(std::string_view value) {
  value = text::Trim(value, " \t");
  if (value.empty()) return std::nullopt;
  if (value.find_first_not_of("0123456789") == std::string_view::npos) {
    if (value.size() > 9) return std::chrono::hours(24);  // absurd: cap rather than overflow
    return std::chrono::seconds(Digits(value, 0, value.size()));
  }
  const auto date = ParseHttpDate(value);
  if (!date) return std::nullopt;
  // In seconds, where year 9999 still fits; capped as delay-seconds are.
  const std::chrono::seconds delta =
      *date - std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  return std::clamp<milliseconds>(delta, milliseconds(0), std::chrono::hours(24));
}

bool IsJsonMediaType(std::string_view content_type) {
  const std::string type =
      text::AsciiLower(text::Trim(content_type.substr(0, content_type.find(';'))));
  return type == "application/json" || type.ends_with("+json");
}

// Standard base64 (RFC 4648 §4), padding optional: how Graph embeds a
// binary sub-response body. nullopt when `s` is not that.
std::optional<std::string> DecodeBase64(std::string_view s) {
  if (s.ends_with('=')) s.remove_suffix(1);
  if (s.ends_with('=')) s.remove_suffix(1);
  if (s.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 4 * 3 + 2);
  uint32_t bits = 0;
  int count = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else {
      return std::nullopt;
    }
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

// Nesting depth of JSON text, counted without parsing it.
bool JsonDepthWithin(std::string_view json, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// JSON from outside, or nullopt: too deep, or not JSON (invalid UTF-8 too).
std::optional<Json> ParseBounded(std::string_view json) {
  if (!JsonDepthWithin(json, kMaxJsonDepth)) return std::nullopt;
  Json parsed = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Server text fit for one line of a message: controls become spaces, runs
// of spaces one, cut at `max_bytes` on a UTF-8 boundary, then made safe.
std::string CleanServerText(std::string_view s, size_t max_bytes) {
  std::string flat;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    if (c == ' ' && (flat.empty() || flat.back() == ' ')) continue;
    flat += c;
    if (flat.size() > max_bytes + 4) break;
  }
  bool cut = false;
  if (flat.size() > max_bytes) {
    size_t n = max_bytes;
    while (n > 0 && (static_cast<unsigned char>(flat[n]) & 0xC0) == 0x80) --n;
    flat.resize(n);
    cut = true;
  }
  while (!flat.empty() && flat.back() == ' ') flat.pop_back();
  std::string out = text::SafeForOutput(flat);
  if (cut) out += "...";
  return out;
}

// RFC 9110 tchar: what a header name may be made of.
bool IsHeaderName(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    if (!text::IsUrlUnreserved(static_cast<unsigned char>(c)) &&
        std::string_view("!#$%&'*+^`|").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// Printable ASCII without spaces: what a URL we send may hold. A backslash
// is refused too: some front ends take it for a slash, which would let
// "..\beta" climb out of /v1.0/ past the canonical form CheckLink judges.
bool IsUrlText(std::string_view url) {
  if (url.empty() || url.size() > kMaxUrlBytes) return false;
  for (char c : url) {
    if (c <= 0x20 || c > 0x7e || c == '\\') return false;
  }
  return true;
}

// "scheme://authority" and the rest ("/path?query") of an absolute URL.
std::pair<std::string_view, std::string_view> SplitAuthority(std::string_view url) {
  const size_t start = url.find("://");
  if (start == std::string_view::npos) return {url, {}};
  size_t end = url.find_first_of("/?#", start + 3);
  if (end == std::string_view::npos) end = url.size();
  return {url.substr(0, end), url.substr(end)};
}

std::string_view PathOf(std::string_view url) {
  std::string_view rest = SplitAuthority(url).second;
  return rest.substr(0, rest.find_first_of("?#"));
}

// The canonical form of an absolute URL (one escaping, no dot segments):
// what a server acts on, so what CheckLink judges.
std::string Canonical(std::string_view url) { return ResolveUrl(std::string(), std::string(url)); }

// graph_url's path, canonical and without a trailing slash ("" for a host):
// the API lives under it + "/v1.0/".
std::string BasePath(std::string_view graph_url) {
  std::string path(PathOf(Canonical(graph_url)));
  while (path.ends_with('/')) path.pop_back();
  return path;
}

// ---- requests ----

Status CheckMethod(const std::string& method) {
  bool ok = !method.empty() && method.size() <= 16;
  for (char c : method) ok = ok && c >= 'A' && c <= 'Z';
  if (!ok) return MakeError(ErrorKind::kInvalidArgument, "a Graph request needs a method");
  return {};
}

bool IsRetryableStatus(int status) {
  // 501 and 507 do not heal by waiting; every other 5xx may.
  return status == 429 || (status >= 500 && status <= 599 && status != 501 && status != 507);
}

bool IsThrottle(int status) { return status == 429 || status == 503; }

bool IsRetryableTransport(ErrorKind kind) {
  return kind == ErrorKind::kTransient || kind == ErrorKind::kUnavailable;
}

// The caller's headers checked, with the client's preference, Accept and
// Content-Type added. Graph reads several preferences from one Prefer
// header, comma-separated (RFC 7240 §2); one header is also all a $batch
// sub-request's JSON headers can carry, so both paths send one.
Result<Headers> RequestHeaders(const GraphRequest& request, bool top_level) {
  Headers out;
  std::string prefer = kImmutableId;
  bool has_accept = false, has_type = false;
  for (const auto& [name, value] : request.headers) {
    if (!IsHeaderName(name) || !IsSafeHeaderValue(value, kMaxHeaderValueBytes)) {
      return MakeError(ErrorKind::kInvalidArgument, "a Graph request header (" +
                                                        text::SafeForOutput(name.substr(0, 64)) +
                                                        ") is not printable ASCII or is too long");
    }
    if (text::EqualsNoCase(name, "authorization")) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "a Graph request may not bring its own Authorization header");
    }
    if (text::EqualsNoCase(name, "prefer")) {
      if (!text::StartsWithNoCase(text::Trim(value), "IdType=")) prefer += ", " + value;
      continue;
    }
    has_accept = has_accept || text::EqualsNoCase(name, "accept");
    has_type = has_type || text::EqualsNoCase(name, "content-type");
    out.emplace_back(name, value);
  }
  if (prefer.size() > kMaxHeaderValueBytes) {
    return MakeError(ErrorKind::kInvalidArgument, "a Graph request's Prefer header is too long");
  }
  out.emplace_back("Prefer", prefer);
  if (top_level && !has_accept) out.emplace_back("Accept", "application/json");
  if (!request.content_type.empty()) {
    if (!IsSafeHeaderValue(request.content_type, 256)) {
      return MakeError(ErrorKind::kInvalidArgument, "a Graph request's content type is not sane");
    }
    if (!has_type) out.emplace_back("Content-Type", request.content_type);
  } else if (!request.body.empty() && !has_type) {
    out.emplace_back("Content-Type", "application/json");
  }
  return out;
}

// An absolute URL for `url` (a path under /v1.0 or a link Graph handed
// back), checked to be one the token may go to.
Result<std::string> AbsoluteUrl(const GraphClient& client, const std::string& url) {
  if (!IsUrlText(url)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "a Graph URL must be non-empty printable ASCII without spaces or backslashes");
  }
  std::string absolute;
  if (url.starts_with('/')) {
    absolute = client.graph_url() + "/v1.0" + url;
  } else if (!CanonicalOrigin(url).empty()) {
    absolute = url;
  } else {
    return MakeError(ErrorKind::kInvalidArgument,
                     "a Graph URL is a path under /v1.0 or a link Graph handed back");
  }
  ROSTER_RETURN_IF_ERROR(client.CheckLink(absolute));
  return absolute;
}

// What a $batch sub-request's "url" holds: the part after /v1.0, as Graph
// requires. Taken literally when the link spells the prefix plainly, from
// its canonical form otherwise (CheckLink has judged that form).
Result<std::string> BatchUrl(const GraphClient& client, const std::string& url) {
  ROSTER_ASSIGN_OR_RETURN(std::string absolute, AbsoluteUrl(client, url));
  const std::string literal_prefix = std::string(PathOf(client.graph_url())) + "/v1.0";
  std::string_view tail = SplitAuthority(absolute).second;
  if (tail.starts_with(literal_prefix + "/")) {
    return std::string(tail.substr(literal_prefix.size()));
  }
  const std::string canonical = Canonical(absolute);
  const std::string prefix = BasePath(client.graph_url()) + "/v1.0";
  return std::string(SplitAuthority(canonical).second.substr(prefix.size()));
}

GraphResponse ToGraphResponse(HttpResponse http) {
  GraphResponse out;
  out.status = http.status;
  out.body = std::move(http.body);
  out.hold = std::move(http.hold);
  for (auto& [name, value] : http.headers) out.headers.emplace_back(text::AsciiLower(name), value);
  return out;
}

// ---- sending, with the token and retries ----

// What the helpers below share with one GraphClient.
struct Wire {
  TokenProvider* tokens;
  HttpClient* http;
  const GraphClientOptions* options;
  GraphCounters* counters;
  uint64_t* rng;
};

uint64_t NextRandom(uint64_t* state) {  // splitmix64
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Full jitter (AWS's "Exponential Backoff And Jitter"): a uniform draw in
// [0, base * 2^attempt], so that many workers throttled at once spread out.
milliseconds Backoff(const Wire& w, int attempt) {
  const int64_t base = std::max<int64_t>(0, w.options->backoff_base.count());
  int64_t ceiling = base;
  for (int i = 0; i < attempt && ceiling < kMaxBackoff.count(); ++i) ceiling *= 2;
  ceiling = std::min(ceiling, static_cast<int64_t>(kMaxBackoff.count()));
  return milliseconds(static_cast<int64_t>(NextRandom(w.rng) % static_cast<uint64_t>(ceiling + 1)));
}

// The pause before a read is sent again after attempt `attempt` (from 0),
// or nullopt when it must answer what it has: no attempts left, a
// Retry-After beyond max_retry_after, or a wait past the run's deadline.
std::optional<milliseconds> PauseAfter(const Wire& w, int attempt,
                                       std::optional<milliseconds> retry_after) {
  if (attempt + 1 >= w.options->read_attempts) return std::nullopt;
  milliseconds wait = retry_after ? *retry_after : Backoff(w, attempt);
  if (retry_after && *retry_after > w.options->max_retry_after) return std::nullopt;
  const auto& deadline = w.options->http.deadline;
  if (deadline && w.options->clock->Now() + wait > *deadline) return std::nullopt;
  return wait;
}

void Pause(const Wire& w, milliseconds wait) {
  if (wait > milliseconds(0)) w.options->clock->SleepFor(wait);
  w.counters->waited += wait;
}

// A transport's message should never hold the token; if one ever does, the
// token goes before the message travels on.
Error Redacted(Error error, const std::string& token) {
  if (token.empty()) return error;
  for (size_t at; (at = error.message.find(token)) != std::string::npos;) {
    error.message.replace(at, token.size(), "[token]");
  }
  return error;
}

// Sends `request` with the bearer token; after a 401, renews the token and
// sends it once more. A second 401 is the answer.
Result<HttpResponse> SendAuthorized(const Wire& w, const HttpRequest& request) {
  ROSTER_ASSIGN_OR_RETURN(std::string token, w.tokens->Token());
  for (int pass = 0;; ++pass) {
    if (!IsSafeHeaderValue(token, 64u << 10)) {
      return MakeError(ErrorKind::kInvalidData,
                       "the token endpoint handed out a token that cannot be sent in a header");
    }
    HttpRequest sent = request;
    sent.headers.emplace_back("Authorization", "Bearer " + token);
    ++w.counters->requests;
    auto answer = w.http->Send(sent);
    if (!answer.ok()) return Redacted(answer.take_error(), token);
    const size_t cap =
        request.max_response_bytes != 0
            ? std::min(request.max_response_bytes, w.options->http.max_response_bytes)
            : w.options->http.max_response_bytes;
    if (answer->body.size() > cap) {  // a fake transport may not cap it
      Error e = MakeError(ErrorKind::kInvalidData, request.method + " " + request.url +
                                                       ": Graph answered more than " +
                                                       std::to_string(cap) + " bytes");
      e.too_large = true;
      return e;
    }
    if (answer->status != 401 || pass == 1) return answer;
    w.tokens->Invalidate(token);
    ROSTER_ASSIGN_OR_RETURN(token, w.tokens->Token());
  }
}

// A write is sent once. Its transport failure is marked kTransient: the
// server may have carried it out, which only the executor can find out.
Result<HttpResponse> SendWrite(const Wire& w, const HttpRequest& request) {
  auto answer = SendAuthorized(w, request);
  if (answer.ok()) {
    if (IsThrottle(answer->status)) ++w.counters->throttled;
    return answer;
  }
  Error error = answer.take_error();
  if (IsRetryableTransport(error.kind)) {
    error.kind = ErrorKind::kTransient;
    error.message += " (the write may have been carried out)";
  }
  return error;
}

// A read is sent up to read_attempts times while Graph throttles, fails
// with a 5xx, or the connection drops; the last answer is the answer.
Result<HttpResponse> SendRead(const Wire& w, const HttpRequest& request) {
  for (int attempt = 0;; ++attempt) {
    auto answer = SendAuthorized(w, request);
    std::optional<milliseconds> retry_after;
    if (answer.ok()) {
      if (IsThrottle(answer->status)) {
        ++w.counters->throttled;
        retry_after = ParseRetryAfter(answer->Header("retry-after"));
      }
      if (!IsRetryableStatus(answer->status)) return answer;
    } else if (!IsRetryableTransport(answer.error().kind)) {
      return answer;
    }
    const auto pause = PauseAfter(w, attempt, retry_after);
    if (!pause) return answer;
    Pause(w, *pause);
    ++w.counters->retries;
  }
}

// ---- $batch ----

// Header pairs as a JSON object; a repeated name is joined with ", ".
Json HeaderObject(const Headers& headers) {
  Json out = Json::object();
  for (const auto& [name, value] : headers) {
    auto it = out.find(name);
    if (it == out.end()) {
      out[name] = value;
    } else {
      *it = it->get<std::string>() + ", " + value;
    }
  }
  return out;
}

Result<Json> BatchEntry(const GraphClient& client, const GraphRequest& request, size_t index,
                        size_t count) {
  const std::string id = std::to_string(index + 1);
  const std::string what = "$batch sub-request " + id;
  if (!request.content_type.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " has a body that is not JSON, which a $batch cannot carry");
  }
  ROSTER_RETURN_IF_ERROR(CheckMethod(request.method));
  ROSTER_ASSIGN_OR_RETURN(std::string url, BatchUrl(client, request.url));
  ROSTER_ASSIGN_OR_RETURN(Headers headers, RequestHeaders(request, /*top_level=*/false));
  Json entry = {{"id", id}, {"method", request.method}, {"url", url}};
  entry["headers"] = HeaderObject(headers);
  if (!request.body.empty()) {
    auto body = ParseBounded(request.body);
    if (!body) return MakeError(ErrorKind::kInvalidArgument, what + " has a body that is not JSON");
    entry["body"] = std::move(*body);
  }
  if (!request.depends_on.empty()) {
    const int on = request.depends_on.size() <= 2
                       ? Digits(request.depends_on, 0, request.depends_on.size())
                       : -1;
    if (on < 1 || static_cast<size_t>(on) > count || static_cast<size_t>(on) == index + 1 ||
        request.depends_on[0] == '0') {
      return MakeError(ErrorKind::kInvalidArgument,
                       what + " depends on a sub-request that is not another of its batch");
    }
    entry["dependsOn"] = Json::array({request.depends_on});
  }
  return entry;
}

// The envelope of the sub-requests `pending` (indices into `entries`); a
// dependency on one not sent again has already succeeded, and is dropped.
std::string Envelope(const std::vector<Json>& entries, const std::vector<size_t>& pending) {
  std::set<std::string> ids;
  for (size_t i : pending) ids.insert(std::to_string(i + 1));
  Json requests = Json::array();
  for (size_t i : pending) {
    Json entry = entries[i];
    if (entry.contains("dependsOn") && !ids.count(entry["dependsOn"][0].get<std::string>())) {
      entry.erase("dependsOn");
    }
    requests.push_back(std::move(entry));
  }
  return Dump(Json{{"requests", std::move(requests)}});
}

HttpRequest BatchHttpRequest(const std::string& graph_url, const std::vector<Json>& entries,
                             const std::vector<size_t>& pending) {
  return {"POST",
          graph_url + "/v1.0/$batch",
          {{"Prefer", kImmutableId},
           {"Accept", "application/json"},
           {"Content-Type", "application/json"}},
          Envelope(entries, pending)};
}

// Of the sub-requests just answered (`round`), those a batch of reads sends
// again (429, 5xx); *retry_after becomes the longest Retry-After among the
// throttled, which are counted.
std::vector<size_t> ToSendAgain(const std::vector<size_t>& round,
                                const std::vector<GraphResponse>& answers, bool reads_only,
                                GraphCounters* counters, std::optional<milliseconds>* retry_after) {
  std::vector<size_t> again;
  for (size_t i : round) {
    const GraphResponse& sub = answers[i];
    if (IsThrottle(sub.status)) {
      ++counters->throttled;
      if (auto ra = ParseRetryAfter(sub.Header("retry-after"))) {
        *retry_after = std::max(retry_after->value_or(milliseconds(0)), *ra);
      }
    }
    if (reads_only && IsRetryableStatus(sub.status)) again.push_back(i);
  }
  std::sort(again.begin(), again.end());  // sent again in the order given
  return again;
}

Error BadAnswer(const std::string& what) {
  return MakeError(ErrorKind::kInvalidData, "Graph's $batch answer " + what);
}

// A sub-response's body as client.h promises it: JSON text, or the bytes
// of a base64 string when its Content-Type is not JSON (a photo).
std::string SubResponseBody(const Json& body, const GraphResponse& response) {
  if (body.is_null()) return "";
  if (body.is_string() && !IsJsonMediaType(response.Header("content-type"))) {
    const std::string& s = body.get_ref<const std::string&>();
    auto decoded = DecodeBase64(s);
    return decoded ? std::move(*decoded) : s;
  }
  return Dump(body);
}

Result<std::pair<std::string, GraphResponse>> ParseSubResponse(const Json& item) {
  if (!item.is_object()) return BadAnswer("holds a response that is not an object");
  std::string id;
  if (auto it = item.find("id"); it != item.end() && it->is_string()) {
    id = it->get<std::string>();
  } else if (it != item.end() && it->is_number_unsigned()) {
    id = std::to_string(it->get<uint64_t>());
  } else {
    return BadAnswer("holds a response without an id");
  }
  const std::string what = "to sub-request " + CleanServerText(id, 20);
  GraphResponse response;
  auto status = item.find("status");
  const int64_t code =
      status != item.end() && status->is_number_integer() ? status->get<int64_t>() : 0;
  if (code < 100 || code > 599) return BadAnswer(what + " has no valid status");
  response.status = static_cast<int>(code);
  if (auto headers = item.find("headers"); headers != item.end() && !headers->is_null()) {
    if (!headers->is_object()) return BadAnswer(what + " has headers that are not an object");
    for (const auto& [name, value] : headers->items()) {
      // A header from outside is kept only when it could be sent back as is.
      if (!value.is_string() || !IsHeaderName(name) ||
          !IsSafeHeaderValue(value.get_ref<const std::string&>(), kMaxHeaderValueBytes)) {
        continue;
      }
      response.headers.emplace_back(text::AsciiLower(name), value.get<std::string>());
    }
  }
  if (auto body = item.find("body"); body != item.end()) {
    response.body = SubResponseBody(*body, response);
  }
  return std::pair{std::move(id), std::move(response)};
}

// The answers of one envelope that held `pending`, each put at its
// request's index in *answers; a sub-request not answered keeps what it had.
// Answers the indices that were answered.
Result<std::vector<size_t>> ParseBatchAnswer(std::string_view body,
                                             const std::vector<size_t>& pending,
                                             std::vector<GraphResponse>* answers) {
  auto parsed = ParseBounded(body);
  if (!parsed) return BadAnswer("is not JSON (or nests too deep)");
  if (!parsed->is_object()) return BadAnswer("is not an object");
  auto responses = parsed->find("responses");
  if (responses == parsed->end() || !responses->is_array()) {
    return BadAnswer("has no \"responses\" array");
  }
  if (responses->size() > pending.size()) {
    return BadAnswer("holds more responses than there were requests");
  }
  std::vector<std::pair<std::string, size_t>> ids;
  for (size_t i : pending) ids.emplace_back(std::to_string(i + 1), i);
  std::set<std::string> seen;
  std::vector<size_t> answered;
  for (const Json& item : *responses) {
    ROSTER_ASSIGN_OR_RETURN(auto sub, ParseSubResponse(item));
    auto it =
        std::find_if(ids.begin(), ids.end(), [&](const auto& p) { return p.first == sub.first; });
    if (it == ids.end()) {
      return BadAnswer("answers a sub-request " + CleanServerText(sub.first, 20) +
                       " that was not sent");
    }
    if (!seen.insert(sub.first).second) {
      return BadAnswer("answers sub-request " + sub.first + " twice");
    }
    (*answers)[it->second] = std::move(sub.second);
    answered.push_back(it->second);
  }
  return answered;
}

}  // namespace

std::string GraphResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (text::EqualsNoCase(key, name)) return value;
  }
  return "";
}

Result<std::unique_ptr<GraphClient>> GraphClient::Create(TokenProvider* tokens,
                                                         GraphClientOptions options) {
  if (tokens == nullptr) {
    return MakeError(ErrorKind::kInvalidArgument, "a Graph client needs a token provider");
  }
  std::string url = options.graph_url;
  while (url.ends_with('/')) url.pop_back();
  const std::string origin = CanonicalOrigin(url);
  const bool web = origin.starts_with("https://") || origin.starts_with("http://");
  if (!IsUrlText(url) || !web || url.find_first_of("?#") != std::string::npos ||
      SplitAuthority(url).first.find('@') != std::string_view::npos) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "graph_url must be an absolute http(s) URL without user, query or fragment (" +
                         CleanServerText(url, 200) + ")");
  }
  return std::unique_ptr<GraphClient>(
      new GraphClient(tokens, std::move(options), std::move(url), origin));
}

GraphClient::GraphClient(TokenProvider* tokens, GraphClientOptions options, std::string graph_url,
                         std::string origin)
    : tokens_(tokens),
      options_(std::move(options)),
      graph_url_(std::move(graph_url)),
      origin_(std::move(origin)) {
  options_.graph_url = graph_url_;
  options_.http.allowed_origin = origin_;
  if (options_.clock == nullptr) options_.clock = &RealClock();
  if (!options_.http_factory) options_.http_factory = NewCurlHttpClient;
  options_.read_attempts = std::max(1, options_.read_attempts);
  rng_ = options_.seed != 0
             ? options_.seed
             : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

GraphClient::~GraphClient() = default;

Status GraphClient::CheckLink(std::string_view url) const {
  if (!IsUrlText(url)) {
    return MakeError(
        ErrorKind::kInvalidData,
        "refusing a link from Graph that is not printable ASCII without spaces or backslashes");
  }
  const std::string origin = CanonicalOrigin(url);
  if (origin.empty()) {
    return MakeError(ErrorKind::kInvalidData,
                     "refusing a link from Graph that is not an absolute URL");
  }
  if (origin != origin_) {
    return MakeError(ErrorKind::kInvalidData, "refusing a link to " + CleanServerText(origin, 300) +
                                                  ": the Graph token goes to " + origin_ + " only");
  }
  if (SplitAuthority(url).first.find('@') != std::string_view::npos) {
    return MakeError(ErrorKind::kInvalidData, "refusing a link from Graph that names a user");
  }
  const std::string prefix = BasePath(graph_url_) + "/v1.0/";
  if (!PathOf(Canonical(url)).starts_with(prefix)) {
    return MakeError(ErrorKind::kInvalidData,
                     "refusing a link on " + origin_ + " outside " + prefix);
  }
  return {};
}

Result<GraphResponse> GraphClient::Send(const GraphRequest& request) {
  ROSTER_RETURN_IF_ERROR(CheckMethod(request.method));
  ROSTER_ASSIGN_OR_RETURN(std::string url, AbsoluteUrl(*this, request.url));
  ROSTER_ASSIGN_OR_RETURN(Headers headers, RequestHeaders(request, /*top_level=*/true));
  if (!http_) http_ = options_.http_factory(options_.http);
  if (!http_)
    return MakeError(ErrorKind::kInternal, "the Graph client's HTTP factory made nothing");
  const Wire wire{tokens_, http_.get(), &options_, &counters_, &rng_};
  // A POST makes something the server names (a contact, a folder): the
  // transport must never send it twice on its own.
  const HttpRequest http{
      request.method,
      std::move(url),
      std::move(headers),
      request.body,
      request.method == "POST",
      request.method == "GET" ? options_.max_read_answer_bytes : options_.max_write_answer_bytes};
  auto answer = request.method == "GET" ? SendRead(wire, http) : SendWrite(wire, http);
  if (!answer.ok()) return answer.take_error();
  return ToGraphResponse(std::move(answer).value());
}

Result<std::vector<GraphResponse>> GraphClient::Batch(const std::vector<GraphRequest>& requests) {
  auto answers = BatchOnce(requests);
  const bool reads_only = std::all_of(requests.begin(), requests.end(),
                                      [](const GraphRequest& r) { return r.method == "GET"; });
  if (answers.ok() || !answers.error().too_large || !reads_only || requests.size() < 2) {
    return answers;
  }
  const auto middle = requests.begin() + static_cast<std::ptrdiff_t>(requests.size() / 2);
  ROSTER_ASSIGN_OR_RETURN(std::vector<GraphResponse> first,
                          Batch(std::vector<GraphRequest>(requests.begin(), middle)));
  ROSTER_ASSIGN_OR_RETURN(std::vector<GraphResponse> second,
                          Batch(std::vector<GraphRequest>(middle, requests.end())));
  for (GraphResponse& r : second) first.push_back(std::move(r));
  return first;
}

Result<std::vector<GraphResponse>> GraphClient::BatchOnce(
    const std::vector<GraphRequest>& requests) {
  if (requests.size() > kMaxBatchRequests) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "a $batch holds at most " + std::to_string(kMaxBatchRequests) +
                         " requests, not " + std::to_string(requests.size()));
  }
  std::vector<GraphResponse> answers(requests.size());
  if (requests.empty()) return answers;
  std::vector<Json> entries;
  bool reads_only = true, creates = false;
  for (size_t i = 0; i < requests.size(); ++i) {
    ROSTER_ASSIGN_OR_RETURN(Json entry, BatchEntry(*this, requests[i], i, requests.size()));
    entries.push_back(std::move(entry));
    reads_only = reads_only && requests[i].method == "GET";
    creates = creates || requests[i].method == "POST";
  }
  if (!http_) http_ = options_.http_factory(options_.http);
  if (!http_)
    return MakeError(ErrorKind::kInternal, "the Graph client's HTTP factory made nothing");
  const Wire wire{tokens_, http_.get(), &options_, &counters_, &rng_};
  std::vector<size_t> pending(requests.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  bool answered = false;  // once some sub-responses are in, a failed round keeps them
  for (int attempt = 0;; ++attempt) {
    HttpRequest http = BatchHttpRequest(graph_url_, entries, pending);
    http.once = creates;  // see HttpRequest::once
    http.max_response_bytes =
        reads_only ? options_.max_read_answer_bytes : options_.max_write_answer_bytes;
    counters_.sub_requests += static_cast<int64_t>(pending.size());
    auto envelope = reads_only ? SendAuthorized(wire, http) : SendWrite(wire, http);
    std::optional<milliseconds> retry_after;
    if (!envelope.ok()) {
      const bool retry = reads_only && IsRetryableTransport(envelope.error().kind);
      if (!retry && !answered) return envelope.take_error();
      if (!retry) break;
    } else if (envelope->status != 200) {
      if (reads_only && IsThrottle(envelope->status)) ++counters_.throttled;
      const bool retry = reads_only && IsRetryableStatus(envelope->status);
      if (!retry && !answered) return GraphError(ToGraphResponse(*envelope), "sending a $batch");
      if (!retry) break;
      if (IsThrottle(envelope->status)) {
        retry_after = ParseRetryAfter(envelope->Header("retry-after"));
      }
    } else {
      ROSTER_ASSIGN_OR_RETURN(std::vector<size_t> round,
                              ParseBatchAnswer(envelope->body, pending, &answers));
      answered = true;
      std::vector<size_t> again = ToSendAgain(round, answers, reads_only, &counters_, &retry_after);
      if (again.empty()) break;
      pending = std::move(again);
    }
    const auto pause = PauseAfter(wire, attempt, retry_after);
    if (!pause) {
      if (!answered) {
        if (!envelope.ok()) return envelope.take_error();
        return GraphError(ToGraphResponse(*envelope), "sending a $batch");
      }
      break;
    }
    Pause(wire, *pause);
    counters_.retries +=
        envelope.ok() && envelope->status == 200 ? static_cast<int64_t>(pending.size()) : 1;
  }
  return answers;
}

Error GraphError(const GraphResponse& response, const std::string& what) {
  if (response.status == 0) {
    return MakeError(ErrorKind::kTransient,
                     what +
                         ": Graph's $batch answer left this request out; it may or may not "
                         "have been carried out");
  }
  // HttpStatusError gives the kind; Retry-After is read here, by a parser
  // that a hostile date cannot overflow (http.cc's converts a time_t to
  // nanoseconds, which overflows for years past 2262).
  HttpResponse http;
  http.status = response.status;
  for (const auto& header : response.headers) {
    if (!text::EqualsNoCase(header.first, "retry-after")) http.headers.push_back(header);
  }
  Error error = HttpStatusError(http, what);
  if (auto ra = ParseRetryAfter(response.Header("retry-after")); ra && error.retryable()) {
    error.retry_after = *ra;
  }
  std::string code = GraphErrorCode(response.body), message;
  if (response.body.size() <= kMaxErrorBodyBytes) {
    if (auto parsed = ParseBounded(response.body); parsed && parsed->is_object()) {
      auto e = parsed->find("error");
      if (e != parsed->end() && e->is_object()) {
        auto m = e->find("message");
        if (m != e->end() && m->is_string()) {
          message = CleanServerText(m->get_ref<const std::string&>(), kMaxErrorMessageBytes);
        }
      }
    }
  }
  const std::string status = std::to_string(response.status);
  if (response.status == 404 &&
      (code == "MailboxNotEnabledForRESTAPI" || code == "ErrorInvalidUser")) {
    error.no_such_user = true;
    error.message = what + ": the mailbox does not exist or has no Exchange Online licence (" +
                    status + " " + code + ")";
    return error;
  }
  if (!code.empty()) {
    error.message = what + ": " + status + " " + code + (message.empty() ? "" : ": " + message);
  } else if (!message.empty()) {
    error.message = what + ": " + status + ": " + message;
  }
  if (error.kind == ErrorKind::kThrottled && error.retry_after > milliseconds(0)) {
    error.message +=
        " (Graph asks to wait " +
        std::to_string(std::chrono::ceil<std::chrono::seconds>(error.retry_after).count()) + " s)";
  }
  return error;
}

std::string GraphErrorCode(std::string_view body) {
  if (body.size() > kMaxErrorBodyBytes) return "";
  auto parsed = ParseBounded(body);
  if (!parsed || !parsed->is_object()) return "";
  auto error = parsed->find("error");
  if (error == parsed->end() || !error->is_object()) return "";
  auto code = error->find("code");
  if (code == error->end() || !code->is_string()) return "";
  return CleanServerText(code->get_ref<const std::string&>(), kMaxErrorCodeBytes);
}

std::string EncodeSegment(std::string_view text) { return text::PercentEncode(text); }

}  // namespace roster::graph
