// The CardDAV adapter: maps roster's Target/Collection onto the WebDAV client.
// Hrefs are kept in the server's path form with one canonical escaping
// ("/alice/roster-ab12/roster-xyz.vcf"), so that what List, Fetch and Create
// return compares equal however the server chose to escape them.
#include "connectors/carddav/carddav.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "connectors/carddav/webdav.h"
#include "core/hash.h"
#include "core/text.h"
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
  if (type == nullptr || webdav::TrimXmlSpace(type->text).empty()) return true;
  return text::AsciiLower(type->text).find("vcard") != std::string::npos ||
         text::AsciiLower(path).ends_with(".vcf");
}

// Bounds the requests in flight over all of a target's pools.
class InFlightGate {
 public:
  explicit InFlightGate(int slots) : free_(slots) {}
  void Acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return free_ > 0; });
    --free_;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
};

// What every connection of a target shares: the gate, the run's byte budget
// and the per-answer cap.
struct PoolShared {
  PoolShared(HttpClientFactory f, int max_in_flight, uint64_t max_run_bytes, size_t max_response)
      : factory(std::move(f)),
        gate(max_in_flight),
        budget(max_run_bytes),
        max_response_bytes(max_response) {}
  HttpClientFactory factory;
  InFlightGate gate;
  webdav::ByteBudget budget;
  const size_t max_response_bytes;
};

// HttpClients that log in as one account, kept alive between requests. Each
// operation borrows one for its duration, through the target's gate, so no
// more clients exist than requests were ever in flight at once.
class ClientPool {
 public:
  ClientPool(std::shared_ptr<PoolShared> shared, HttpOptions http)
      : shared_(std::move(shared)), http_(std::move(http)) {}

  class Lease {
   public:
    Lease(ClientPool* pool, std::unique_ptr<HttpClient> client)
        : pool_(pool), client_(std::move(client)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (client_ != nullptr) pool_->Return(std::move(client_));
    }
    DavClient dav() const {
      return DavClient(client_.get(), pool_->http_.username, &pool_->shared_->budget,
                       pool_->shared_->max_response_bytes);
    }

   private:
    ClientPool* pool_;
    std::unique_ptr<HttpClient> client_;
  };

  Lease Borrow() {
    shared_->gate.Acquire();
    std::unique_lock<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      std::unique_ptr<HttpClient> client = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(client));
    }
    lock.unlock();
    return Lease(this, shared_->factory(http_));
  }

  const std::string& username() const { return http_.username; }

 private:
  void Return(std::unique_ptr<HttpClient> client) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(std::move(client));
    }
    shared_->gate.Release();
  }

  std::shared_ptr<PoolShared> shared_;
  const HttpOptions http_;
  std::mutex mu_;
  std::vector<std::unique_ptr<HttpClient>> idle_;
};

// Hrefs a server named outside where they may be (another origin, another
// book, a parent): ignored, and summed up in one warning per answer.
class Strays {
 public:
  void Note(const std::string& href) {
    if (count_++ == 0) example_ = href.substr(0, 200);
  }
  void Report(const std::string& where, std::vector<std::string>* warnings) {
    if (count_ == 0) return;
    warnings->push_back(std::to_string(count_) + " href" + (count_ == 1 ? "" : "s") + " outside " +
                        where + " ignored (for example \"" + example_ +
                        "\"): the server named items that are not in it");
    count_ = 0;
  }

 private:
  size_t count_ = 0;
  std::string example_;
};

// One multiget answer as an item; a card that cannot be read says why.
RemoteItem ReadItem(const std::string& path, std::string etag, const std::string& text) {
  RemoteItem item;
  item.href = path;
  item.etag = std::move(etag);
  Result<ParsedVCard> card = ParseVCard(text);
  if (!card.ok()) {
    item.parse_error = card.error().message;
    return item;
  }
  std::string rule = card->Get("X-ROSTER-RULE");
  std::string key = card->Get("X-ROSTER-KEY");
  if (!rule.empty() && !key.empty()) item.tag = ManagedTag{rule, key};
  item.content_hash = ContentHash(card->contact);
  item.body = std::move(card->contact);
  return item;
}

struct Limits {
  size_t listing_bytes;
  size_t listing_items;
};

class CardDavCollection : public Collection {
 public:
  // `probed` is false when the book is opened from a URL the state store
  // remembered, without asking the server: sync-collection support is then
  // assumed, and checked only if the first listing fails.
  CardDavCollection(std::shared_ptr<ClientPool> pool, VCardVersion version, std::string url,
                    bool sync_supported, bool probed, bool use_ctag, Limits limits,
                    std::vector<std::string> warnings)
      : pool_(std::move(pool)),
        version_(version),
        url_(std::move(url)),
        path_(webdav::UrlPath(url_, "")),
        sync_supported_(sync_supported),
        probed_(probed),
        use_ctag_(use_ctag),
        limits_(limits),
        warnings_(std::move(warnings)) {}

  std::string id() const override { return url_; }
  std::string HrefOf(const std::string& name) const override {
    return webdav::UrlPath(url_, url_ + webdav::EncodeSegment(name));
  }
  std::vector<std::string> TakeWarnings() override { return std::exchange(warnings_, {}); }

  // The token roster stores is "<ctag>\n<sync token>" when the server has a
  // CTag, else the server's sync token alone.
  Result<Listing> List(const std::string& token) override {
    auto lease = pool_->Borrow();
    DavClient dav = lease.dav();
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
    // Opened from a remembered URL: find out what is really there, unless the
    // answer was refused for what it held (a limit, bad XML) or the run must
    // stop: asking again would not change that.
    if (!listing.ok() && !probed_ && listing.error().kind != ErrorKind::kInvalidData &&
        listing.error().kind != ErrorKind::kAborted) {
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

  // The book's CTag, or empty when the server has none, does not answer, or
  // sends one that is not safe to store and compare (controls, too long).
  std::string ReadCtag(DavClient& dav) {
    auto ms = dav.Propfind(url_, 0, {Clark(kCalendarServer, "getctag")});
    if (ms.ok()) {
      for (const DavResponse& r : ms->responses) {
        if (const webdav::DavProp* p = r.Find(kCalendarServer, "getctag")) {
          std::string ctag = webdav::SafeServerValue(p->text, webdav::kMaxTokenBytes);
          if (!ctag.empty()) return ctag;
        }
      }
    }
    use_ctag_ = false;  // not served: do not ask again in this run
    return "";
  }

  Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>& hrefs) override;
  Result<WriteResult> Create(const std::string& name, const ManagedTag& tag,
                             const ItemBody& item) override;
  Result<WriteResult> Update(const std::string& href, const std::string& if_match,
                             const ManagedTag& tag, const ItemBody& item) override;
  Status Delete(const std::string& href, const std::string& if_match) override;
  bool created_by_roster() const override {
    // "roster-" and 16 hex digits, the name Discover creates books at.
    std::string path = path_;
    while (!path.empty() && path.back() == '/') path.pop_back();
    const std::string name = path.substr(path.rfind('/') + 1);
    if (name.size() != 23 || name.compare(0, 7, "roster-") != 0) return false;
    for (size_t i = 7; i < name.size(); ++i) {
      const char c = name[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
  }
  Status RemoveCollection() override {
    if (!created_by_roster()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "the address book " + url_ + " was not created by roster; it is left");
    }
    auto lease = pool_->Borrow();
    DavClient dav = lease.dav();
    ROSTER_ASSIGN_OR_RETURN(HttpResponse response, dav.Send("DELETE", url_, {}, ""));
    if ((response.status >= 200 && response.status <= 299) || response.status == 404) return {};
    return dav.StatusError(response, "DELETE " + url_);
  }

 private:
  // What a listing learned from one multistatus.
  struct Members {
    std::map<std::string, std::string> changed;  // path -> etag
    std::set<std::string> removed;
    bool truncated = false;
  };
  Result<Listing> SyncListing(DavClient& dav, const std::string& token, bool* token_rejected);
  Result<Listing> PropfindListing(DavClient& dav);
  void Collect(const Multistatus& ms, bool full, Members* members, Strays* strays);
  std::string Etag(const DavResponse& r);
  // The canonical path of `href` when it names an item strictly inside this
  // book (one segment below it, same origin), else nullopt.
  std::optional<std::string> MemberPath(const std::string& href) const;
  Result<std::string> WritablePath(const std::string& href, const char* what) const;
  Result<WriteResult> Put(const std::string& url, const std::string& uid,
                          std::pair<std::string, std::string> precondition, const ManagedTag& tag,
                          const Contact& contact);
  bool IsSelf(const std::string& path) const { return path == path_ || WithSlash(path) == path_; }
  void ReportBadEtags() {
    if (bad_etags_ == 0) return;
    warnings_.push_back(std::to_string(bad_etags_) + " etag" + (bad_etags_ == 1 ? "" : "s") +
                        " from " + url_ +
                        " ignored (control characters, or longer than 1 KiB); those items are "
                        "read again next run");
    bad_etags_ = 0;
  }

  std::shared_ptr<ClientPool> pool_;
  VCardVersion version_;
  std::string url_;   // absolute, ends in '/'
  std::string path_;  // canonical path of url_
  bool sync_supported_;
  bool probed_;
  bool use_ctag_;
  Limits limits_;
  std::vector<std::string> warnings_;
  size_t bad_etags_ = 0;  // unusable etags seen since the last warning
};

std::optional<std::string> CardDavCollection::MemberPath(const std::string& href) const {
  webdav::Href h = webdav::ResolveHref(url_, href);
  if (!h.same_origin || !webdav::IsDirectMember(path_, h.path)) return std::nullopt;
  return h.path;
}

// Defence in depth: whatever the engine hands back, a write goes only to an
// item of this book.
Result<std::string> CardDavCollection::WritablePath(const std::string& href,
                                                    const char* what) const {
  std::optional<std::string> path = MemberPath(href);
  if (!path || path->back() == '/') {
    return MakeError(ErrorKind::kInvalidData, std::string("refusing to ") + what + " \"" +
                                                  href.substr(0, 200) +
                                                  "\": it is not an item of " + url_);
  }
  return *path;
}

// An etag is sent back in If-Match: one that is not safe to send is treated
// as absent, so the item counts as unknown and is read again next run.
std::string CardDavCollection::Etag(const DavResponse& r) {
  const webdav::DavProp* etag = r.Find(kDav, "getetag");
  if (etag == nullptr) return "";
  std::string safe = webdav::SafeServerValue(etag->text, webdav::kMaxEtagBytes);
  if (safe.empty() && !webdav::TrimXmlSpace(etag->text).empty()) ++bad_etags_;
  return safe;
}

void CardDavCollection::Collect(const Multistatus& ms, bool full, Members* members,
                                Strays* strays) {
  for (const DavResponse& r : ms.responses) {
    webdav::Href h = webdav::ResolveHref(url_, r.href);
    if (h.same_origin && IsSelf(h.path)) {
      members->truncated = members->truncated || r.status == 507;
      continue;
    }
    if (!h.same_origin || !webdav::IsDirectMember(path_, h.path)) {
      strays->Note(r.href);
      continue;
    }
    if (r.status == 404) {
      members->changed.erase(h.path);
      if (!full) members->removed.insert(h.path);
      continue;
    }
    if (!IsCardMember(h.path, r)) continue;
    members->changed[h.path] = Etag(r);
    members->removed.erase(h.path);
  }
}

Result<Listing> CardDavCollection::SyncListing(DavClient& dav, const std::string& token,
                                               bool* token_rejected) {
  Listing listing;
  listing.full = token.empty();
  Members members;
  Strays strays;
  std::string current = token;
  size_t bytes = 0;
  for (int page = 1; page <= kMaxSyncPages; ++page) {
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
      return dav.StatusError(response, "REPORT " + url_);
    }
    ROSTER_ASSIGN_OR_RETURN(Multistatus ms, dav.ParseResponse(response, "REPORT", url_));
    members.truncated = false;
    Collect(ms, listing.full, &members, &strays);
    // A server that always says "truncated" with a new token would make this
    // loop hold ever more; it is bounded by what it may hold, not by pages.
    bytes += response.body.size();
    if (bytes > limits_.listing_bytes ||
        members.changed.size() + members.removed.size() > limits_.listing_items) {
      return MakeError(ErrorKind::kInvalidData,
                       "the listing of " + url_ + " was stopped after " + std::to_string(page) +
                           " pages (" + std::to_string(bytes >> 20) + " MiB, " +
                           std::to_string(members.changed.size() + members.removed.size()) +
                           " items): more than a listing may hold (" +
                           std::to_string(limits_.listing_bytes >> 20) + " MiB or " +
                           std::to_string(limits_.listing_items) + " items)");
    }
    // A token is stored and sent back: an unsafe one counts as none (the next
    // run lists in full).
    listing.sync_token = webdav::SafeServerValue(ms.sync_token, webdav::kMaxTokenBytes);
    if (!members.truncated || listing.sync_token.empty() || listing.sync_token == current) break;
    current = listing.sync_token;
  }
  for (auto& [href, etag] : members.changed) listing.changed.push_back({href, etag});
  listing.removed.assign(members.removed.begin(), members.removed.end());
  strays.Report(url_, &warnings_);
  ReportBadEtags();
  return listing;
}

Result<Listing> CardDavCollection::PropfindListing(DavClient& dav) {
  ROSTER_ASSIGN_OR_RETURN(Multistatus ms,
                          dav.Propfind(url_, 1,
                                       {Clark(kDav, "getetag"), Clark(kDav, "resourcetype"),
                                        Clark(kDav, "getcontenttype")}));
  Members members;
  Strays strays;
  Collect(ms, /*full=*/true, &members, &strays);
  if (members.changed.size() > limits_.listing_items) {
    return MakeError(ErrorKind::kInvalidData, "the listing of " + url_ + " has more than " +
                                                  std::to_string(limits_.listing_items) + " items");
  }
  Listing listing;
  listing.full = true;
  for (auto& [href, etag] : members.changed) listing.changed.push_back({href, etag});
  strays.Report(url_, &warnings_);
  ReportBadEtags();
  return listing;
}

Result<std::vector<RemoteItem>> CardDavCollection::Fetch(const std::vector<std::string>& hrefs) {
  std::vector<RemoteItem> items;
  if (hrefs.empty()) return items;
  auto lease = pool_->Borrow();
  DavClient dav = lease.dav();
  Strays asked, answered;
  for (size_t start = 0; start < hrefs.size(); start += kMultigetChunk) {
    std::vector<std::string> chunk;
    std::set<std::string> wanted;
    for (size_t i = start; i < std::min(hrefs.size(), start + kMultigetChunk); ++i) {
      std::optional<std::string> path = MemberPath(hrefs[i]);
      if (!path) {
        asked.Note(hrefs[i]);
      } else if (wanted.insert(*path).second) {
        chunk.push_back(*path);
      }
    }
    if (chunk.empty()) continue;
    // RFC 6352 §8.7 asks for Depth: 0; the hrefs, not the depth, set the scope.
    ROSTER_ASSIGN_OR_RETURN(
        HttpResponse response,
        dav.Send("REPORT", url_,
                 {{"Depth", "0"}, {"Content-Type", "application/xml; charset=utf-8"}},
                 webdav::MultigetBody(chunk, version_ == VCardVersion::k40)));
    ROSTER_ASSIGN_OR_RETURN(Multistatus ms, dav.ParseResponse(response, "REPORT", url_));
    for (const DavResponse& r : ms.responses) {
      std::optional<std::string> path = MemberPath(r.href);
      if (!path) {
        answered.Note(r.href);
        continue;
      }
      if (r.status == 404 || !wanted.count(*path)) continue;
      const webdav::DavProp* data = r.Find(kCardDav, "address-data");
      if (data == nullptr) continue;  // missing, or the server would not give it
      wanted.erase(*path);            // a server repeating an href yields one item
      items.push_back(ReadItem(*path, Etag(r), data->text));
    }
  }
  asked.Report(url_ + " (asked to read)", &warnings_);
  answered.Report(url_, &warnings_);
  ReportBadEtags();
  return items;
}

Result<WriteResult> CardDavCollection::Put(const std::string& url, const std::string& uid,
                                           std::pair<std::string, std::string> precondition,
                                           const ManagedTag& tag, const Contact& contact) {
  std::string body =
      WriteVCard(contact, version_, uid, {{"X-ROSTER-RULE", tag.rule}, {"X-ROSTER-KEY", tag.key}});
  auto lease = pool_->Borrow();
  DavClient dav = lease.dav();
  ROSTER_ASSIGN_OR_RETURN(
      HttpResponse response,
      dav.Send("PUT", url, {std::move(precondition), {"Content-Type", "text/vcard; charset=utf-8"}},
               std::move(body)));
  if (response.status < 200 || response.status > 299) {
    return dav.StatusError(response, "PUT " + url);
  }
  // An unsafe etag is left out: the next listing fills it in.
  return WriteResult{webdav::UrlPath(url_, url),
                     webdav::SafeServerValue(response.Header("etag"), webdav::kMaxEtagBytes)};
}

// An address book holds vCards: contacts only.
Result<const Contact*> AsContact(const ItemBody& item) {
  const Contact* contact = std::get_if<Contact>(&item);
  if (!contact)
    return MakeError(ErrorKind::kInvalidArgument, "an address book holds contacts only");
  return contact;
}

Result<WriteResult> CardDavCollection::Create(const std::string& name, const ManagedTag& tag,
                                              const ItemBody& item) {
  ROSTER_ASSIGN_OR_RETURN(const Contact* contact, AsContact(item));
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return MakeError(ErrorKind::kInvalidArgument, "invalid resource name \"" + name + "\"");
  }
  std::string uid = name.ends_with(".vcf") ? name.substr(0, name.size() - 4) : name;
  return Put(url_ + webdav::EncodeSegment(name), uid, {"If-None-Match", "*"}, tag, *contact);
}

Result<WriteResult> CardDavCollection::Update(const std::string& href, const std::string& if_match,
                                              const ManagedTag& tag, const ItemBody& item) {
  ROSTER_ASSIGN_OR_RETURN(const Contact* contact, AsContact(item));
  ROSTER_ASSIGN_OR_RETURN(std::string path, WritablePath(href, "update"));
  std::string name = webdav::DecodePercent(LastSegment(path));
  std::string uid = name.ends_with(".vcf") ? name.substr(0, name.size() - 4) : name;
  // Without a known etag, "*" still refuses to resurrect a deleted item.
  return Put(ResolveUrl(url_, path), uid, {"If-Match", if_match.empty() ? "*" : if_match}, tag,
             *contact);
}

Status CardDavCollection::Delete(const std::string& href, const std::string& if_match) {
  ROSTER_ASSIGN_OR_RETURN(std::string path, WritablePath(href, "delete"));
  std::string url = ResolveUrl(url_, path);
  auto lease = pool_->Borrow();
  DavClient dav = lease.dav();
  ROSTER_ASSIGN_OR_RETURN(
      HttpResponse response,
      dav.Send("DELETE", url, {{"If-Match", if_match.empty() ? "*" : if_match}}, ""));
  if ((response.status >= 200 && response.status <= 299) || response.status == 404) return {};
  return dav.StatusError(response, "DELETE " + url);
}

class CardDavTarget : public Target {
 public:
  CardDavTarget(const CardDavOptions& options, HttpClientFactory factory);

  Result<std::unique_ptr<Collection>> Open(const CollectionSpec& spec, bool create) override;
  int max_in_flight() const override { return options_.max_in_flight; }
  bool shared_credential() const override { return options_.user_passwords.empty(); }
  std::string ResourceName(const ManagedTag& tag) const override {
    return CardDavResourceName(tag.rule, tag.key);
  }

 private:
  struct Book {
    std::string url;
    bool sync = false;
  };
  // What discovery found out on the way to a user's home.
  struct Home {
    std::string url;
    std::string principal_missing;  // the principal URL that answered 404, if any
  };

  std::unique_ptr<Collection> MakeCollection(std::shared_ptr<ClientPool> pool, const Book& book,
                                             bool probed, std::vector<std::string> warnings) {
    return std::make_unique<CardDavCollection>(
        std::move(pool), options_.version, book.url, book.sync, probed, options_.use_ctag,
        Limits{options_.max_listing_bytes, options_.max_listing_items}, std::move(warnings));
  }
  Result<std::shared_ptr<ClientPool>> PoolFor(const std::string& user);
  // The book at `url` when it exists and is an address book.
  Result<std::optional<Book>> ProbeBook(DavClient& dav, const std::string& url);
  Result<Home> FindHome(DavClient& dav, const std::string& user, const std::string& login);
  Result<std::string> HomeSet(const Multistatus& ms, const std::string& url,
                              const std::string& user) const;
  // `href` resolved against `base` when it is on the configured origin; a
  // one-sentence refusal naming it otherwise.
  Result<std::string> OnOrigin(const std::string& base, const std::string& href,
                               const std::string& what) const;
  Result<std::unique_ptr<Collection>> Discover(const CollectionSpec& spec, bool create,
                                               std::shared_ptr<ClientPool> pool,
                                               std::vector<std::string> warnings);

  CardDavOptions options_;
  std::string base_;
  std::string origin_;  // CanonicalOrigin(base_)
  std::shared_ptr<PoolShared> shared_;
  std::shared_ptr<ClientPool> pool_;  // the shared account's, without user_passwords
  std::mutex pools_mu_;
  std::map<std::string, std::weak_ptr<ClientPool>> user_pools_;
};

CardDavTarget::CardDavTarget(const CardDavOptions& options, HttpClientFactory factory)
    : options_(options), base_(WithSlash(options.url)), origin_(CanonicalOrigin(base_)) {
  if (options_.max_in_flight < 1) options_.max_in_flight = 1;
  if (!factory) factory = [](const HttpOptions& http) { return NewCurlHttpClient(http); };
  // Every answer passes through the same cap, and curl refuses to leave the
  // configured origin whatever the code above it asks.
  options_.http.max_response_bytes =
      std::min(options_.http.max_response_bytes, options_.max_response_bytes);
  if (options_.http.allowed_origin.empty()) options_.http.allowed_origin = origin_;
  shared_ = std::make_shared<PoolShared>(std::move(factory), options_.max_in_flight,
                                         options_.max_run_bytes, options_.http.max_response_bytes);
  pool_ = std::make_shared<ClientPool>(shared_, options_.http);
}

// With user_passwords each user has a pool of their own, alive while one of
// their collections is: their connections never serve another login.
Result<std::shared_ptr<ClientPool>> CardDavTarget::PoolFor(const std::string& user) {
  if (options_.user_passwords.empty()) return pool_;
  auto password = options_.user_passwords.find(user);
  if (password == options_.user_passwords.end()) {
    return MakeError(ErrorKind::kAccessDenied,
                     "no password for user \"" + user + "\" at " + base_ +
                         ": this target logs in as each user, and never as the shared account");
  }
  std::lock_guard<std::mutex> lock(pools_mu_);
  std::shared_ptr<ClientPool> pool = user_pools_[user].lock();
  if (pool == nullptr) {
    HttpOptions http = options_.http;
    http.username = user;
    http.password = password->second;
    pool = std::make_shared<ClientPool>(shared_, std::move(http));
    user_pools_[user] = pool;
  }
  return pool;
}

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

Result<std::string> CardDavTarget::OnOrigin(const std::string& base, const std::string& href,
                                            const std::string& what) const {
  webdav::Href h = webdav::ResolveHref(base, href);
  if (!h.same_origin) {
    return MakeError(ErrorKind::kAccessDenied,
                     "refusing " + what + " \"" + href.substr(0, 200) + "\": it is not on " +
                         origin_ + ", the configured server, which alone receives credentials");
  }
  return h.url;
}

Result<std::string> CardDavTarget::HomeSet(const Multistatus& ms, const std::string& url,
                                           const std::string& user) const {
  for (const DavResponse& r : ms.responses) {
    const webdav::DavProp* home = r.Find(kCardDav, "addressbook-home-set");
    if (home != nullptr && !home->hrefs.empty() && !home->hrefs[0].empty()) {
      ROSTER_ASSIGN_OR_RETURN(
          std::string at, OnOrigin(url, home->hrefs[0], "the address book home of " + user + ","));
      return WithSlash(at);
    }
  }
  return std::string();
}

Result<CardDavTarget::Home> CardDavTarget::FindHome(DavClient& dav, const std::string& user,
                                                    const std::string& login) {
  if (!options_.home_template.empty()) {
    std::string home = options_.home_template;
    const std::string encoded = webdav::EncodeSegment(user);
    for (size_t at = home.find("{user}"); at != std::string::npos;
         at = home.find("{user}", at + encoded.size())) {
      home.replace(at, 6, encoded);
    }
    ROSTER_ASSIGN_OR_RETURN(std::string url, OnOrigin(base_, home, "home_template"));
    return Home{WithSlash(url), ""};
  }
  const std::string principal = ResolveUrl(base_, webdav::EncodeSegment(user) + "/");
  Result<Multistatus> ms = dav.Propfind(principal, 0, {Clark(kCardDav, "addressbook-home-set")});
  if (ms.ok()) {
    ROSTER_ASSIGN_OR_RETURN(std::string home, HomeSet(*ms, principal, user));
    if (!home.empty()) return Home{home, ""};
  } else if (ms.error().kind != ErrorKind::kNotFound) {
    return ms.take_error();
  }
  const std::string missing = ms.ok() ? "" : principal;
  // The per-user principal did not answer. The logged-in principal is the
  // right one only when it is this user's: a service account's own home must
  // never receive another user's book.
  Result<Multistatus> me = dav.Propfind(base_, 0, {Clark(kDav, "current-user-principal")});
  if (me.ok()) {
    for (const DavResponse& r : me->responses) {
      const webdav::DavProp* cup = r.Find(kDav, "current-user-principal");
      if (cup == nullptr || cup->hrefs.empty()) continue;
      ROSTER_ASSIGN_OR_RETURN(std::string url,
                              OnOrigin(base_, cup->hrefs[0], "the current-user-principal"));
      url = WithSlash(url);
      bool is_user =
          login == user || webdav::DecodePercent(LastSegment(webdav::UrlPath(url, ""))) == user;
      if (!is_user || url == principal) break;
      Result<Multistatus> home_ms = dav.Propfind(url, 0, {Clark(kCardDav, "addressbook-home-set")});
      if (home_ms.ok()) {
        ROSTER_ASSIGN_OR_RETURN(std::string home, HomeSet(*home_ms, url, user));
        if (!home.empty()) return Home{home, ""};
      }
      break;
    }
  }
  // Radicale's layout: the home is the principal path, created on first use.
  return Home{WithSlash(principal), missing};
}

Result<std::unique_ptr<Collection>> CardDavTarget::Open(const CollectionSpec& spec, bool create) {
  if (spec.user.empty()) return MakeError(ErrorKind::kInvalidArgument, "no target user given");
  if (origin_.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "the target url \"" + options_.url + "\" is not an absolute http(s) URL");
  }
  ROSTER_ASSIGN_OR_RETURN(std::shared_ptr<ClientPool> pool, PoolFor(spec.user));
  std::vector<std::string> warnings;
  if (!spec.known_url.empty()) {
    // The book we found last time: use it without a request. If it is gone,
    // its first listing says NotFound and the caller opens again without it.
    webdav::Href known = webdav::ResolveHref(base_, spec.known_url);
    if (known.same_origin) {
      return MakeCollection(std::move(pool), Book{WithSlash(known.url), true}, /*probed=*/false,
                            {});
    }
    // Remembered from an older version that followed a server elsewhere.
    warnings.push_back("the remembered address book " + spec.known_url.substr(0, 200) +
                       " is not on " + origin_ + " and was looked up again");
  }
  return Discover(spec, create, std::move(pool), std::move(warnings));
}

Result<std::unique_ptr<Collection>> CardDavTarget::Discover(const CollectionSpec& spec, bool create,
                                                            std::shared_ptr<ClientPool> pool,
                                                            std::vector<std::string> warnings) {
  auto lease = pool->Borrow();
  DavClient dav = lease.dav();
  ROSTER_ASSIGN_OR_RETURN(Home found, FindHome(dav, spec.user, pool->username()));
  const std::string& home = found.url;
  const std::string home_path = webdav::UrlPath(home, "");
  const std::string deterministic = home + "roster-" + HashHex(spec.rule).substr(0, 16) + "/";
  const std::string deterministic_path = webdav::UrlPath(home, deterministic);
  // Cyrus answers 404 for the principal of a user who never logged in; what
  // fails after that (a MKCOL) would only hide the reason.
  auto no_principal = [&] {
    return MakeError(ErrorKind::kNotFound, "the principal " + found.principal_missing +
                                               " does not exist (the user may never have "
                                               "logged in)");
  };

  std::vector<DavResponse> members;
  Result<Multistatus> listing = dav.Propfind(home, 1, BookProps());
  if (listing.ok()) {
    members = std::move(listing->responses);
  } else if (listing.error().kind != ErrorKind::kNotFound) {
    return listing.take_error();
  } else if (!create || !options_.create_home) {
    if (!found.principal_missing.empty()) return no_principal();
    return MakeError(ErrorKind::kNotFound, "no address book \"" + spec.display_name + "\" in " +
                                               home + ": the user's home does not exist");
  } else if (Status made = dav.Mkcol(home, false, "", /*exists_ok=*/true); !made.ok()) {
    if (!found.principal_missing.empty()) return no_principal();
    return made.take_error();
  }

  // Our own deterministic book first, then one the user or an admin named;
  // only books strictly inside this user's home are candidates.
  const DavResponse* by_name = nullptr;
  std::string by_name_path;
  Strays strays;
  for (const DavResponse& r : members) {
    webdav::Href h = webdav::ResolveHref(home, r.href);
    const std::string path = WithSlash(h.path);
    if (h.same_origin && path == home_path) continue;
    if (!h.same_origin || !webdav::IsDirectMember(home_path, path)) {
      strays.Note(r.href);
      continue;
    }
    if (!r.IsAddressBook()) continue;
    if (path == deterministic_path) {
      strays.Report(home, &warnings);
      return MakeCollection(std::move(pool), Book{ResolveUrl(home, path), SupportsSync(r)}, true,
                            std::move(warnings));
    }
    const webdav::DavProp* name = r.Find(kDav, "displayname");
    if (name != nullptr && webdav::TrimXmlSpace(name->text) == spec.display_name &&
        (by_name == nullptr || path < by_name_path)) {
      by_name = &r;
      by_name_path = path;
    }
  }
  strays.Report(home, &warnings);
  if (by_name != nullptr) {
    return MakeCollection(std::move(pool),
                          Book{ResolveUrl(home, by_name_path), SupportsSync(*by_name)}, true,
                          std::move(warnings));
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
  return MakeCollection(std::move(pool), *created, true, std::move(warnings));
}

}  // namespace

std::unique_ptr<Target> NewCardDavTarget(const CardDavOptions& options, HttpClientFactory factory) {
  return std::make_unique<CardDavTarget>(options, std::move(factory));
}

std::string CardDavResourceName(const std::string& rule, const std::string& key) {
  return Target::DefaultResourceName(ManagedTag{rule, key}) + ".vcf";
}

}  // namespace roster
