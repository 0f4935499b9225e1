// The CardDAV adapter: maps roster's Target/Collection onto the WebDAV client.
// Hrefs are kept in the server's path form with one canonical escaping
// ("/alice/roster-ab12/roster-xyz.vcf"), so that what List, Fetch and Create
// return compares equal however the server chose to escape them.
#include "connectors/carddav/carddav.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "connectors/carddav/webdav.h"
#include "core/hash.h"
#include "formats/vcard.h"

namespace roster {
namespace {

using webdav::Clark;
using webdav::DavClient;
using webdav::DavResponse;
using webdav::kCardDav;
using webdav::kDav;

// Apple's CalendarServer namespace, home of getctag.
constexpr const char* kCalendarServer = "http://calendarserver.org/ns/";
using webdav::Multistatus;

constexpr size_t kMultigetChunk = 100;
// A server that truncates sync reports (RFC 6578 §3.6) is asked again from
// the token it gave; this bounds that loop against a server that never ends.
constexpr int kMaxSyncPages = 10000;

const std::vector<std::string>& BookProps() {
  static const std::vector<std::string> props = {
      Clark(kDav, "resourcetype"), Clark(kDav, "displayname"), Clark(kDav, "supported-report-set")};
  return props;
}

std::string WithSlash(std::string url) {
  if (url.empty() || url.back() != '/') url += '/';
  return url;
}

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::string Trimmed(const std::string& s) {
  size_t begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  size_t end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

bool SupportsSync(const DavResponse& response) {
  const webdav::DavProp* reports = response.Find(kDav, "supported-report-set");
  return reports != nullptr && reports->elements.count(Clark(kDav, "sync-collection")) > 0;
}

std::string LastSegment(const std::string& path) {
  std::string p = path;
  while (!p.empty() && p.back() == '/') p.pop_back();
  return p.substr(p.rfind('/') + 1);
}

// Members worth listing: vCards, not sub-collections or other files.
bool IsCardMember(const std::string& path, const DavResponse& response) {
  if (path.empty() || path.back() == '/' || response.IsCollection()) return false;
  const webdav::DavProp* type = response.Find(kDav, "getcontenttype");
  if (type == nullptr || Trimmed(type->text).empty()) return true;
  return Lower(type->text).find("vcard") != std::string::npos || Lower(path).ends_with(".vcf");
}

// A fixed set of HttpClients shared by a target's collections: connections
// stay alive between collections, and no more than `max` requests are ever in
// flight. Each operation borrows a client for its duration.
class ClientPool {
 public:
  ClientPool(HttpClientFactory factory, int max) : factory_(std::move(factory)), max_(max) {}

  class Lease {
   public:
    Lease(ClientPool* pool, std::unique_ptr<HttpClient> client)
        : pool_(pool), client_(std::move(client)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (client_ != nullptr) pool_->Return(std::move(client_));
    }
    HttpClient* get() const { return client_.get(); }

   private:
    ClientPool* pool_;
    std::unique_ptr<HttpClient> client_;
  };

  Lease Borrow() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !idle_.empty() || created_ < max_; });
    if (!idle_.empty()) {
      std::unique_ptr<HttpClient> client = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(client));
    }
    ++created_;
    lock.unlock();
    return Lease(this, factory_());
  }

 private:
  void Return(std::unique_ptr<HttpClient> client) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(std::move(client));
    }
    cv_.notify_one();
  }

  HttpClientFactory factory_;
  const int max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<HttpClient>> idle_;
  int created_ = 0;
};

class CardDavCollection : public Collection {
 public:
  // `probed` is false when the book is opened from a URL the state store
  // remembered, without asking the server: sync-collection support is then
  // assumed, and checked only if the first listing fails.
  CardDavCollection(std::shared_ptr<ClientPool> pool, VCardVersion version, std::string url,
                    bool sync_supported, bool probed, bool use_ctag)
      : pool_(std::move(pool)),
        version_(version),
        url_(std::move(url)),
        path_(webdav::UrlPath(url_, "")),
        sync_supported_(sync_supported),
        probed_(probed),
        use_ctag_(use_ctag) {}

  std::string id() const override { return url_; }
  std::string HrefOf(const std::string& name) const override {
    return webdav::UrlPath(url_, url_ + webdav::EncodeSegment(name));
  }

  // The token roster stores is "<ctag>\n<sync token>" when the server has a
  // CTag, else the server's sync token alone.
  Result<Listing> List(const std::string& token) override {
    auto lease = pool_->Borrow();
    DavClient dav(lease.get());
    std::string ctag_before, sync_token = token;
    if (size_t nl = token.find('\n'); nl != std::string::npos) {
      ctag_before = token.substr(0, nl);
      sync_token = token.substr(nl + 1);
    }
    std::string ctag = use_ctag_ ? ReadCtag(dav) : "";
    if (!ctag.empty() && ctag == ctag_before) {
      Listing unchanged;
      unchanged.sync_token = token;
      return unchanged;
    }
    ROSTER_ASSIGN_OR_RETURN(Listing listing, ListChanges(dav, sync_token));
    if (!ctag.empty()) listing.sync_token = ctag + "\n" + listing.sync_token;
    return listing;
  }

  Result<Listing> ListChanges(DavClient& dav, const std::string& sync_token) {
    if (!sync_supported_) return PropfindListing(dav);
    bool token_rejected = false;
    Result<Listing> listing = SyncListing(dav, sync_token, &token_rejected);
    if (!listing.ok() && !probed_) {
      // Opened from a remembered URL: find out what is really there.
      probed_ = true;
      ROSTER_ASSIGN_OR_RETURN(Multistatus ms, dav.Propfind(url_, 0, BookProps()));
      bool is_book = false;
      for (const DavResponse& r : ms.responses) {
        if (r.IsAddressBook()) {
          is_book = true;
          sync_supported_ = SupportsSync(r);
        }
      }
      if (!is_book) {
        return MakeError(ErrorKind::kNotFound, url_ + " is no longer an address book");
      }
      if (!sync_supported_) return PropfindListing(dav);
      listing = SyncListing(dav, sync_token, &token_rejected);
    }
    // A token the server no longer knows (expired, or the book was recreated)
    // costs a full listing, never a failed run.
    if (!listing.ok() && token_rejected) return SyncListing(dav, "", &token_rejected);
    return listing;
  }

  // The book's CTag, or empty when the server has none or does not answer.
  std::string ReadCtag(DavClient& dav) {
    auto ms = dav.Propfind(url_, 0, {Clark(kCalendarServer, "getctag")});
    if (ms.ok()) {
      for (const DavResponse& r : ms->responses) {
        if (const webdav::DavProp* p = r.Find(kCalendarServer, "getctag")) {
          std::string ctag = Trimmed(p->text);
          if (!ctag.empty() && ctag.find('\n') == std::string::npos) return ctag;
        }
      }
    }
    use_ctag_ = false;  // not served: do not ask again in this run
    return "";
  }

  Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>& hrefs) override;
  Result<WriteResult> Create(const std::string& name, const ManagedTag& tag,
                             const Contact& contact) override;
  Result<WriteResult> Update(const std::string& href, const std::string& if_match,
                             const ManagedTag& tag, const Contact& contact) override;
  Status Delete(const std::string& href, const std::string& if_match) override;

 private:
  Result<Listing> SyncListing(DavClient& dav, const std::string& token, bool* token_rejected);
  Result<Listing> PropfindListing(DavClient& dav);
  Result<WriteResult> Put(const std::string& url, const std::string& uid,
                          std::pair<std::string, std::string> precondition, const ManagedTag& tag,
                          const Contact& contact);
  bool IsSelf(const std::string& path) const { return path == path_ || WithSlash(path) == path_; }

  std::shared_ptr<ClientPool> pool_;
  VCardVersion version_;
  std::string url_;   // absolute, ends in '/'
  std::string path_;  // canonical path of url_
  bool sync_supported_;
  bool probed_;
  bool use_ctag_;
};

Result<Listing> CardDavCollection::SyncListing(DavClient& dav, const std::string& token,
                                               bool* token_rejected) {
  Listing listing;
  listing.full = token.empty();
  std::map<std::string, std::string> changed;
  std::set<std::string> removed;
  std::string current = token;
  for (int page = 0; page < kMaxSyncPages; ++page) {
    // RFC 6578 §3.2: the report is defined only for Depth: 0; sync-level sets its scope.
    ROSTER_ASSIGN_OR_RETURN(
        HttpResponse response,
        dav.Send("REPORT", url_,
                 {{"Depth", "0"}, {"Content-Type", "application/xml; charset=utf-8"}},
                 webdav::SyncCollectionBody(current)));
    if (response.status != 207) {
      const int s = response.status;
      // RFC 6578 §3.2 names 403 with DAV:valid-sync-token; servers also use
      // 409, 412 or 400. Any such refusal of a token we sent means "start over".
      if (!current.empty() && s >= 400 && s < 500 && s != 401 && s != 404 && s != 429) {
        *token_rejected = true;
      }
      return HttpStatusError(response, "REPORT " + url_);
    }
    ROSTER_ASSIGN_OR_RETURN(Multistatus ms, dav.ParseResponse(response, "REPORT", url_));
    bool truncated = false;
    for (const DavResponse& r : ms.responses) {
      std::string path = webdav::UrlPath(url_, r.href);
      if (IsSelf(path)) {
        truncated = truncated || r.status == 507;
        continue;
      }
      if (r.status == 404) {
        changed.erase(path);
        if (!listing.full) removed.insert(path);
        continue;
      }
      if (!IsCardMember(path, r)) continue;
      const webdav::DavProp* etag = r.Find(kDav, "getetag");
      changed[path] = etag != nullptr ? Trimmed(etag->text) : "";
      removed.erase(path);
    }
    listing.sync_token = ms.sync_token;
    if (!truncated || ms.sync_token.empty() || ms.sync_token == current) break;
    current = ms.sync_token;
  }
  for (auto& [href, etag] : changed) listing.changed.push_back({href, etag});
  listing.removed.assign(removed.begin(), removed.end());
  return listing;
}

Result<Listing> CardDavCollection::PropfindListing(DavClient& dav) {
  ROSTER_ASSIGN_OR_RETURN(Multistatus ms,
                          dav.Propfind(url_, 1,
                                       {Clark(kDav, "getetag"), Clark(kDav, "resourcetype"),
                                        Clark(kDav, "getcontenttype")}));
  std::map<std::string, std::string> members;
  for (const DavResponse& r : ms.responses) {
    std::string path = webdav::UrlPath(url_, r.href);
    if (IsSelf(path) || r.status == 404 || !IsCardMember(path, r)) continue;
    const webdav::DavProp* etag = r.Find(kDav, "getetag");
    members[path] = etag != nullptr ? Trimmed(etag->text) : "";
  }
  Listing listing;
  listing.full = true;
  for (auto& [href, etag] : members) listing.changed.push_back({href, etag});
  return listing;
}

Result<std::vector<RemoteItem>> CardDavCollection::Fetch(const std::vector<std::string>& hrefs) {
  std::vector<RemoteItem> items;
  if (hrefs.empty()) return items;
  auto lease = pool_->Borrow();
  DavClient dav(lease.get());
  for (size_t start = 0; start < hrefs.size(); start += kMultigetChunk) {
    std::vector<std::string> chunk;
    std::set<std::string> wanted;
    for (size_t i = start; i < std::min(hrefs.size(), start + kMultigetChunk); ++i) {
      std::string path = webdav::UrlPath(url_, hrefs[i]);
      if (wanted.insert(path).second) chunk.push_back(path);
    }
    // RFC 6352 §8.7 asks for Depth: 0; the hrefs, not the depth, set the scope.
    ROSTER_ASSIGN_OR_RETURN(
        HttpResponse response,
        dav.Send("REPORT", url_,
                 {{"Depth", "0"}, {"Content-Type", "application/xml; charset=utf-8"}},
                 webdav::MultigetBody(chunk)));
    ROSTER_ASSIGN_OR_RETURN(Multistatus ms, dav.ParseResponse(response, "REPORT", url_));
    for (const DavResponse& r : ms.responses) {
      std::string path = webdav::UrlPath(url_, r.href);
      if (r.status == 404 || !wanted.count(path)) continue;
      const webdav::DavProp* data = r.Find(kCardDav, "address-data");
      if (data == nullptr) continue;  // missing, or the server would not give it
      wanted.erase(path);             // a server repeating an href yields one item
      RemoteItem item;
      item.href = path;
      if (const webdav::DavProp* etag = r.Find(kDav, "getetag")) item.etag = Trimmed(etag->text);
      Result<ParsedVCard> card = ParseVCard(data->text);
      if (!card.ok()) {
        item.parse_error = card.error().message;
      } else {
        std::string rule = card->Get("X-ROSTER-RULE");
        std::string key = card->Get("X-ROSTER-KEY");
        if (!rule.empty() && !key.empty()) item.tag = ManagedTag{rule, key};
        item.content_hash = ContentHash(card->contact);
        item.contact = std::move(card->contact);
      }
      items.push_back(std::move(item));
    }
  }
  return items;
}

Result<WriteResult> CardDavCollection::Put(const std::string& url, const std::string& uid,
                                           std::pair<std::string, std::string> precondition,
                                           const ManagedTag& tag, const Contact& contact) {
  std::string body =
      WriteVCard(contact, version_, uid, {{"X-ROSTER-RULE", tag.rule}, {"X-ROSTER-KEY", tag.key}});
  auto lease = pool_->Borrow();
  DavClient dav(lease.get());
  ROSTER_ASSIGN_OR_RETURN(
      HttpResponse response,
      dav.Send("PUT", url, {std::move(precondition), {"Content-Type", "text/vcard; charset=utf-8"}},
               std::move(body)));
  if (response.status < 200 || response.status > 299) {
    return HttpStatusError(response, "PUT " + url);
  }
  return WriteResult{webdav::UrlPath(url_, url), response.Header("etag")};
}

Result<WriteResult> CardDavCollection::Create(const std::string& name, const ManagedTag& tag,
                                              const Contact& contact) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return MakeError(ErrorKind::kInvalidArgument, "invalid resource name \"" + name + "\"");
  }
  std::string uid = name.ends_with(".vcf") ? name.substr(0, name.size() - 4) : name;
  return Put(url_ + webdav::EncodeSegment(name), uid, {"If-None-Match", "*"}, tag, contact);
}

Result<WriteResult> CardDavCollection::Update(const std::string& href, const std::string& if_match,
                                              const ManagedTag& tag, const Contact& contact) {
  std::string url = ResolveUrl(url_, href);
  std::string name = webdav::DecodePercent(LastSegment(webdav::UrlPath(url_, href)));
  std::string uid = name.ends_with(".vcf") ? name.substr(0, name.size() - 4) : name;
  // Without a known etag, "*" still refuses to resurrect a deleted item.
  return Put(url, uid, {"If-Match", if_match.empty() ? "*" : if_match}, tag, contact);
}

Status CardDavCollection::Delete(const std::string& href, const std::string& if_match) {
  std::string url = ResolveUrl(url_, href);
  auto lease = pool_->Borrow();
  DavClient dav(lease.get());
  ROSTER_ASSIGN_OR_RETURN(
      HttpResponse response,
      dav.Send("DELETE", url, {{"If-Match", if_match.empty() ? "*" : if_match}}, ""));
  if ((response.status >= 200 && response.status <= 299) || response.status == 404) return {};
  return HttpStatusError(response, "DELETE " + url);
}

class CardDavTarget : public Target {
 public:
  CardDavTarget(const CardDavOptions& options, HttpClientFactory factory)
      : options_(options), base_(WithSlash(options.url)) {
    if (options_.max_in_flight < 1) options_.max_in_flight = 1;
    if (!factory) {
      HttpOptions http = options_.http;
      factory = [http] { return NewCurlHttpClient(http); };
    }
    pool_ = std::make_shared<ClientPool>(std::move(factory), options_.max_in_flight);
  }

  Result<std::unique_ptr<Collection>> Open(const CollectionSpec& spec, bool create) override;
  int max_in_flight() const override { return options_.max_in_flight; }
  std::string ResourceName(const ManagedTag& tag) const override {
    return CardDavResourceName(tag.rule, tag.key);
  }

 private:
  struct Book {
    std::string url;
    bool sync = false;
  };

  std::unique_ptr<Collection> MakeCollection(const Book& book, bool probed = true) {
    return std::make_unique<CardDavCollection>(pool_, options_.version, book.url, book.sync, probed,
                                               options_.use_ctag);
  }
  // The book at `url` when it exists and is an address book.
  Result<std::optional<Book>> ProbeBook(DavClient& dav, const std::string& url);
  Result<std::string> FindHome(DavClient& dav, const std::string& user);
  std::string HomeSet(const Multistatus& ms, const std::string& url) const;

  CardDavOptions options_;
  std::string base_;
  std::shared_ptr<ClientPool> pool_;
};

Result<std::optional<CardDavTarget::Book>> CardDavTarget::ProbeBook(DavClient& dav,
                                                                    const std::string& url) {
  Result<Multistatus> ms = dav.Propfind(url, 0, BookProps());
  if (!ms.ok()) {
    if (ms.error().kind == ErrorKind::kNotFound) return std::optional<Book>();
    return ms.take_error();
  }
  for (const DavResponse& r : ms->responses) {
    if (r.IsAddressBook()) return std::optional<Book>(Book{url, SupportsSync(r)});
  }
  return std::optional<Book>();
}

std::string CardDavTarget::HomeSet(const Multistatus& ms, const std::string& url) const {
  for (const DavResponse& r : ms.responses) {
    const webdav::DavProp* home = r.Find(kCardDav, "addressbook-home-set");
    if (home != nullptr && !home->hrefs.empty() && !home->hrefs[0].empty()) {
      return WithSlash(ResolveUrl(url, home->hrefs[0]));
    }
  }
  return "";
}

Result<std::string> CardDavTarget::FindHome(DavClient& dav, const std::string& user) {
  if (!options_.home_template.empty()) {
    std::string home = options_.home_template;
    const std::string encoded = webdav::EncodeSegment(user);
    for (size_t at = home.find("{user}"); at != std::string::npos;
         at = home.find("{user}", at + encoded.size())) {
      home.replace(at, 6, encoded);
    }
    return WithSlash(ResolveUrl(base_, home));
  }
  const std::string principal = ResolveUrl(base_, webdav::EncodeSegment(user) + "/");
  Result<Multistatus> ms = dav.Propfind(principal, 0, {Clark(kCardDav, "addressbook-home-set")});
  if (ms.ok()) {
    std::string home = HomeSet(*ms, principal);
    if (!home.empty()) return home;
  } else if (ms.error().kind != ErrorKind::kNotFound) {
    return ms.take_error();
  }
  // The per-user principal did not answer. The logged-in principal is the
  // right one only when it is this user's: a service account's own home must
  // never receive another user's book.
  Result<Multistatus> me = dav.Propfind(base_, 0, {Clark(kDav, "current-user-principal")});
  if (me.ok()) {
    for (const DavResponse& r : me->responses) {
      const webdav::DavProp* cup = r.Find(kDav, "current-user-principal");
      if (cup == nullptr || cup->hrefs.empty()) continue;
      std::string url = WithSlash(ResolveUrl(base_, cup->hrefs[0]));
      bool is_user = options_.http.username == user ||
                     webdav::DecodePercent(LastSegment(webdav::UrlPath(url, ""))) == user;
      if (!is_user || url == principal) break;
      Result<Multistatus> home_ms = dav.Propfind(url, 0, {Clark(kCardDav, "addressbook-home-set")});
      if (home_ms.ok()) {
        std::string home = HomeSet(*home_ms, url);
        if (!home.empty()) return home;
      }
      break;
    }
  }
  // Radicale's layout: the home is the principal path, created on first use.
  return WithSlash(principal);
}

Result<std::unique_ptr<Collection>> CardDavTarget::Open(const CollectionSpec& spec, bool create) {
  if (spec.user.empty()) return MakeError(ErrorKind::kInvalidArgument, "no target user given");
  if (!spec.known_url.empty()) {
    // The book we found last time: use it without a request. If it is gone,
    // its first listing says NotFound and the caller opens again without it.
    return MakeCollection(Book{WithSlash(ResolveUrl(base_, spec.known_url)), true},
                          /*probed=*/false);
  }
  auto lease = pool_->Borrow();
  DavClient dav(lease.get());

  ROSTER_ASSIGN_OR_RETURN(std::string home, FindHome(dav, spec.user));
  const std::string deterministic = home + "roster-" + HashHex(spec.rule).substr(0, 16) + "/";
  const std::string deterministic_path = webdav::UrlPath(home, deterministic);

  std::vector<DavResponse> members;
  Result<Multistatus> listing = dav.Propfind(home, 1, BookProps());
  if (listing.ok()) {
    members = std::move(listing->responses);
  } else if (listing.error().kind != ErrorKind::kNotFound) {
    return listing.take_error();
  } else if (!create || !options_.create_home) {
    return MakeError(ErrorKind::kNotFound, "no address book \"" + spec.display_name + "\" in " +
                                               home + ": the user's home does not exist");
  } else {
    ROSTER_RETURN_IF_ERROR(dav.Mkcol(home, false, "", /*exists_ok=*/true));
  }

  // Our own deterministic book first, then one the user or an admin named.
  const DavResponse* by_name = nullptr;
  std::string by_name_path;
  for (const DavResponse& r : members) {
    if (!r.IsAddressBook()) continue;
    std::string path = WithSlash(webdav::UrlPath(home, r.href));
    if (path == deterministic_path) {
      return MakeCollection(Book{ResolveUrl(home, path), SupportsSync(r)});
    }
    const webdav::DavProp* name = r.Find(kDav, "displayname");
    if (name != nullptr && Trimmed(name->text) == spec.display_name &&
        (by_name == nullptr || path < by_name_path)) {
      by_name = &r;
      by_name_path = path;
    }
  }
  if (by_name != nullptr) {
    return MakeCollection(Book{ResolveUrl(home, by_name_path), SupportsSync(*by_name)});
  }
  if (!create) {
    return MakeError(ErrorKind::kNotFound,
                     "no address book \"" + spec.display_name + "\" in " + home);
  }
  ROSTER_RETURN_IF_ERROR(dav.Mkcol(deterministic, true, spec.display_name, false));
  ROSTER_ASSIGN_OR_RETURN(std::optional<Book> created, ProbeBook(dav, deterministic));
  if (!created) {
    return MakeError(ErrorKind::kInvalidData, "created the address book " + deterministic +
                                                  " but the server does not report it as one");
  }
  return MakeCollection(*created);
}

}  // namespace

std::unique_ptr<Target> NewCardDavTarget(const CardDavOptions& options, HttpClientFactory factory) {
  return std::make_unique<CardDavTarget>(options, std::move(factory));
}

std::string CardDavResourceName(const std::string& rule, const std::string& key) {
  return Target::DefaultResourceName(ManagedTag{rule, key}) + ".vcf";
}

}  // namespace roster
