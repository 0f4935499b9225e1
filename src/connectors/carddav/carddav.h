// CardDAV target: one address book per target user on a CardDAV server
// (Radicale, Nextcloud, ...), found or created on Open, written with ETag
// preconditions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/connector.h"
#include "formats/vcard.h"
#include "http/http.h"

namespace roster {

struct CardDavOptions {
  std::string url;            // server base, e.g. "http://127.0.0.1:5232/"
  std::string home_template;  // optional: "http://127.0.0.1:5232/{user}/" skips discovery
  HttpOptions http;           // credentials, CA file, timeouts
  VCardVersion version = VCardVersion::k30;
  int max_in_flight = 2;    // requests in flight to this server
  bool create_home = true;  // MKCOL a missing user home (Radicale creates homes lazily)
  // Ask for the book's CTag (getctag, the CalendarServer extension that
  // Radicale, Sabre/Nextcloud, Baikal and iCloud serve) before listing: an
  // unchanged CTag means an unchanged book, and a PROPFIND of one property is
  // cheaper than a sync-collection report.
  bool use_ctag = true;

  // Limits against a hostile or broken server. Every answer is XML or empty,
  // so one cap covers them: it bounds what a parse can cost (see
  // webdav::kMaxXmlParseBytes). A listing is bounded over all its pages (a
  // sync report that always says "truncated"), a run over all its requests.
  size_t max_response_bytes = 8u << 20;
  size_t max_listing_bytes = 64u << 20;
  size_t max_listing_items = 100000;
  uint64_t max_run_bytes = 512ull << 20;

  // Per-user logins, for servers where one account cannot write into other
  // users' homes (Cyrus): when non-empty, every request for a user's book
  // logs in as that user (the name in CollectionSpec::user) with this
  // password, on connections of that user's own. A user without an entry
  // fails Open with kAccessDenied; the shared account is never used instead.
  std::map<std::string, std::string> user_passwords;
};

// Makes one connection with the given options (credentials, origin, limits).
using HttpClientFactory = std::function<std::unique_ptr<HttpClient>(const HttpOptions&)>;

// A Target whose collections are CardDAV address books. Connections are pooled
// per target (per user with user_passwords): at most `max_in_flight` requests
// are in flight over all of them, and idle connections are kept alive. Only
// the origin of `url` is ever asked (credentials never travel): a discovered
// URL elsewhere is refused, and so is any request curl would send elsewhere.
// A null factory means NewCurlHttpClient.
std::unique_ptr<Target> NewCardDavTarget(const CardDavOptions& options,
                                         HttpClientFactory factory = nullptr);

// Deterministic resource name for (rule, key):
// "roster-" + 32 hex of BLAKE2b(rule + '\0' + key) + ".vcf".
std::string CardDavResourceName(const std::string& rule, const std::string& key);

}  // namespace roster
