// The WebDAV/CardDAV protocol client (RFC 4918, 6352, 6578, 5689): requests,
// multistatus parsing and URL helpers. Knows nothing of roster's Collection;
// carddav.cc maps it onto that interface.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "http/http.h"

namespace roster::webdav {

inline constexpr char kDav[] = "DAV:";
inline constexpr char kCardDav[] = "urn:ietf:params:xml:ns:carddav";

// "{namespace-uri}local-name", the Clark notation used as property keys.
std::string Clark(std::string_view ns, std::string_view name);

// One property from a 2xx propstat.
struct DavProp {
  std::string text;                // concatenated text of the element (getetag, address-data)
  std::vector<std::string> hrefs;  // DAV:href children at any depth (home sets, principals)
  std::set<std::string> elements;  // Clark names of all descendant elements (resourcetype)
};

struct DavResponse {
  std::string href;  // as written by the server
  int status = 0;    // response-level DAV:status (e.g. 404 in a sync report), else 0
  std::map<std::string, DavProp> props;  // keyed by Clark name; only 2xx propstats

  const DavProp* Find(std::string_view ns, std::string_view name) const;
  bool IsCollection() const;
  bool IsAddressBook() const;
};

struct Multistatus {
  std::vector<DavResponse> responses;
  std::string sync_token;  // top-level DAV:sync-token, if any
};

// Limits that keep a hostile server from exhausting memory or the stack.
inline constexpr size_t kMaxResponses = 200000;
inline constexpr int kMaxXmlDepth = 64;
// What one parse may allocate for pugixml's copy of the text and its DOM: a
// body of empty elements costs ~16 bytes of DOM per byte of text, a real
// listing ~3, so this caps the former without refusing any real answer that
// fits in CardDavOptions::max_response_bytes (8 MiB by default).
inline constexpr size_t kMaxXmlParseBytes = 40u << 20;
// Longest etag, CTag and sync token accepted from a server.
inline constexpr size_t kMaxEtagBytes = 1024;
inline constexpr size_t kMaxTokenBytes = 4096;

// Parses a DAV:multistatus body, resolving namespaces by URI (not prefix).
// `context` names the exchange for messages ("PROPFIND response from http://...").
// Never throws; malformed or oversized input is kInvalidData.
Result<Multistatus> ParseMultistatus(std::string_view xml, const std::string& context);

// `s` without XML's whitespace (XML 1.0 §2.3: space, tab, CR, LF) around it,
// which a server may put around an element's text; a form feed is text.
std::string_view TrimXmlSpace(std::string_view s);

// Escapes text for an XML element body or attribute.
std::string XmlEscape(std::string_view text);

// Percent-encodes everything but RFC 3986 unreserved characters (for one path segment).
std::string EncodeSegment(std::string_view text);
std::string DecodePercent(std::string_view text);

// The path (with canonical escaping) of an absolute URL or href: "/alice/book/".
std::string UrlPath(const std::string& base, const std::string& href);

// "http://host:port" of an absolute URL, without a trailing slash.
std::string UrlOrigin(const std::string& url);

// An href from a server, made safe once, here and nowhere else: resolved
// against `base` (an absolute URL), escaping made canonical, dot segments
// removed (also "%2e%2e"), query and fragment dropped, and its origin compared
// with base's. Callers compare `path`s and never split hrefs themselves.
struct Href {
  std::string url;   // base's origin as written + path; empty when !same_origin
  std::string path;  // "/alice/book/x.vcf"
  bool same_origin = false;
};
Href ResolveHref(const std::string& base, std::string_view href);

// True when `path` is strictly inside the collection at `collection` (a
// canonical path ending in '/'), one segment below it: "/a/b/x.vcf" and
// "/a/b/sub/" are inside "/a/b/"; "/a/b/", "/a/b/c/d", "/a/x" and a segment
// with an encoded slash or backslash ("..%2Fx") are not.
bool IsDirectMember(std::string_view collection, std::string_view path);

// A header-like value from a server (etag, CTag, sync token) trimmed, or
// empty when it is not safe to store and send back (see IsSafeHeaderValue).
std::string SafeServerValue(std::string_view value, size_t max_bytes);

// What a target may still read from its server in this run, shared by all
// its connections: a server that never stops answering stops being asked.
class ByteBudget {
 public:
  explicit ByteBudget(uint64_t limit) : limit_(limit) {}
  bool exhausted() const { return used_.load() >= limit_; }
  void Spend(uint64_t bytes) { used_ += bytes; }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

// A thin request layer over one HttpClient. Every failure is one sentence that
// names the method and URL.
class DavClient {
 public:
  // `user` is whom the connection logs in as (for messages about a refused
  // login); `budget`, when given, is charged every answer's bytes;
  // `max_body_bytes` refuses larger answers (curl stops them earlier).
  explicit DavClient(HttpClient* http, std::string user = "", ByteBudget* budget = nullptr,
                     size_t max_body_bytes = SIZE_MAX)
      : http_(http), user_(std::move(user)), budget_(budget), max_body_bytes_(max_body_bytes) {}

  // PROPFIND with Depth `depth` asking for `props` (Clark names). A 404 is
  // returned as kNotFound so callers can branch on it.
  Result<Multistatus> Propfind(const std::string& url, int depth,
                               const std::vector<std::string>& props);
  // Any request; transport failures are errors, every HTTP status a response.
  Result<HttpResponse> Send(const std::string& method, const std::string& url,
                            std::vector<std::pair<std::string, std::string>> headers,
                            std::string body);
  // A 207 parsed as multistatus; any other status is HttpStatusError.
  Result<Multistatus> ParseResponse(const HttpResponse& response, const std::string& method,
                                    const std::string& url);
  // A plain MKCOL, or with `addressbook` an extended MKCOL (RFC 5689) whose
  // resourcetype is collection+addressbook. With `exists_ok`, 405 (something
  // is already there) counts as success.
  Status Mkcol(const std::string& url, bool addressbook, const std::string& displayname,
               bool exists_ok);
  // HttpStatusError, except that a 401 names the user whose login was
  // refused (never the password).
  Error StatusError(const HttpResponse& response, const std::string& what) const;

 private:
  HttpClient* http_;
  std::string user_;
  ByteBudget* budget_;
  size_t max_body_bytes_;
};

// Request bodies.
std::string PropfindBody(const std::vector<std::string>& props);
std::string SyncCollectionBody(const std::string& sync_token);
// `vcard4` asks for the cards as vCard 4.0 (RFC 6352 §10.4): Cyrus otherwise
// serves a lossy 3.0 conversion of a 4.0 card (it drops a data: URI photo).
std::string MultigetBody(const std::vector<std::string>& hrefs, bool vcard4 = false);

}  // namespace roster::webdav
