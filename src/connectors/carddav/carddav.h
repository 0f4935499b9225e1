// CardDAV target: one address book per target user on a CardDAV server
// (Radicale, Nextcloud, ...), found or created on Open, written with ETag
// preconditions.
#pragma once

#include <functional>
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
};

using HttpClientFactory = std::function<std::unique_ptr<HttpClient>()>;

// A Target whose collections are CardDAV address books. Connections are pooled
// per target: at most `max_in_flight` HttpClients exist, each kept alive and
// shared by all collections. A null factory means NewCurlHttpClient(options.http).
std::unique_ptr<Target> NewCardDavTarget(const CardDavOptions& options,
                                         HttpClientFactory factory = nullptr);

// Deterministic resource name for (rule, key):
// "roster-" + 32 hex of BLAKE2b(rule + '\0' + key) + ".vcf".
std::string CardDavResourceName(const std::string& rule, const std::string& key);

}  // namespace roster
