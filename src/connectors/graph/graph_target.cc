// The Graph contact-folder target (graph_target.h): Open finds or creates the
// folder, List reads delta links (a full listing with the marker expanded
// when there is none), Fetch and WriteBatch use $batch, photos go to their
// own endpoint after the contact. The contact JSON is contact_json.h's.
#include "connectors/graph/graph_target.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "connectors/graph/contact_json.h"
#include "connectors/graph/projection.h"
#include "core/hash.h"
#include "core/text.h"

namespace roster {

std::string GraphFolderMarker(const std::string& rule) {
  return "roster:v1:folder:" + text::Hex(rule);
}

namespace {

using graph::EncodeSegment;
using graph::GraphClient;
using graph::GraphError;
using graph::GraphErrorCode;
using graph::GraphRequest;
using graph::GraphResponse;
using Json = nlohmann::json;

constexpr size_t kBatch = graph::kMaxBatchRequests;  // 20
constexpr int kParallelPerBatch = 4;                 // Graph runs 4 of a $batch at once
constexpr size_t kPageSize = 1000;                   // $top of a listing, maxpagesize of a delta
// A listing or delta round: at most this many pages and entries. A mailbox
// folder holds far fewer; a server that pages for ever is cut off.
constexpr size_t kMaxPages = 2000;
constexpr size_t kMaxEntries = 500000;
constexpr size_t kMaxIdBytes = 512;
constexpr size_t kMaxFolderAnswerBytes = size_t{1} << 20;
constexpr size_t kMaxPhotoBytes = size_t{4} << 20;  // Graph's limit for a contact photo

// What Graph's ids are made of (base64, URL-safe or not): anything else
// from a server is refused before it becomes part of a URL or the state.
// A dot segment anywhere ("..", "./x", "a/../b") is refused too: '.' is
// not percent-encoded in a path segment, so ".." would climb out of the
// folder (curl resolves it) into the mailbox's own Contacts.
bool IsGraphId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  const bool charset = std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '=' || c == '+' || c == '/' || c == '.';
  });
  if (!charset) return false;
  for (size_t start = 0; start <= id.size();) {
    const size_t end = std::min(id.find('/', start), id.size());
    const std::string_view part = id.substr(start, end - start);
    if (part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const int byte = s[i] == '%' ? text::PercentEscapeAt(s, i) : -1;
    if (byte >= 0) {
      out.push_back(static_cast<char>(byte));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<Json> ParseJson(std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes) return std::nullopt;
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return std::nullopt;
  return doc;
}

std::string Quote(std::string_view s) { return "\"" + text::SafeForOutput(s) + "\""; }

// "$expand=singleValueExtendedProperties($filter=id eq 'marker' or id eq 'photo')".
std::string ExpandQuery() {
  return "$expand=" +
         EncodeSegment(std::string("singleValueExtendedProperties($filter=id eq '") +
                       kGraphMarkerPropertyId + "' or id eq '" + kGraphPhotoPropertyId + "')");
}

// The photo hint of a contact as Graph answered it (the expanded property).
bool HasPhotoHint(const Json& contact) {
  if (!contact.is_object()) return false;
  auto list = contact.find("singleValueExtendedProperties");
  if (list == contact.end() || !list->is_array()) return false;
  for (const Json& p : *list) {
    if (!p.is_object()) continue;
    auto id = p.find("id");
    auto value = p.find("value");
    if (id != p.end() && id->is_string() && value != p.end() && value->is_string() &&
        !value->get_ref<const std::string&>().empty() &&
        SameGraphPropertyId(id->get_ref<const std::string&>(), kGraphPhotoPropertyId)) {
      return true;
    }
  }
  return false;
}

// The contact ids of a page's entries that carry the photo hint.
std::map<std::string, bool> PhotoHints(std::string_view page_json) {
  std::map<std::string, bool> out;
  auto doc = ParseJson(page_json, kMaxGraphPageBytes);
  if (!doc || !doc->is_object()) return out;
  auto value = doc->find("value");
  if (value == doc->end() || !value->is_array()) return out;
  for (const Json& item : *value) {
    if (!item.is_object()) continue;
    auto id = item.find("id");
    if (id != item.end() && id->is_string() && HasPhotoHint(item)) {
      out[id->get<std::string>()] = true;
    }
  }
  return out;
}

// `json_object` (a body, or empty for none) with one more extended property.
std::string WithProperty(const std::string& json_object, const std::string& id,
                         const std::string& value) {
  Json doc = json_object.empty() ? Json::object() : Json::parse(json_object, nullptr, false);
  if (!doc.is_object()) doc = Json::object();
  Json& list = doc["singleValueExtendedProperties"];
  if (!list.is_array()) list = Json::array();
  list.push_back({{"id", id}, {"value", value}});
  return doc.dump();
}

std::string PhotoHint(const Photo& photo) {
  return HashHex(text::NormalizeMediaType(photo.media_type) + '\0' + photo.data);
}

std::string PhotoType(const Photo& photo) {
  std::string type = text::AsciiLower(text::Trim(photo.media_type));
  return type.empty() ? "image/jpeg" : type;
}

bool SamePhoto(const std::optional<Photo>& a, const std::optional<Photo>& b) {
  if (!a || !b) return a.has_value() == b.has_value();
  return a->data == b->data && PhotoType(*a) == PhotoType(*b);
}

bool IsResyncCode(const std::string& code) {
  return text::EqualsNoCase(code, "syncStateNotFound") ||
         text::EqualsNoCase(code, "resyncRequired") || text::EqualsNoCase(code, "syncStateInvalid");
}

// KindOf(body).ContentHash(body), which for a contact is its ContentHash
// (the kinds library is not among this one's dependencies).
std::string HashOf(const ItemBody& body) { return ContentHash(std::get<Contact>(body)); }

Error WithMessage(Error e, std::string message) {
  e.message = std::move(message);
  return e;
}

// A failure of the request layer itself (no answer: transport, token,
// deadline) as one sentence that says what was being done, for whom.
template <typename T>
Result<T> Named(Result<T> r, const std::string& what) {
  if (r.ok()) return r;
  Error e = r.take_error();
  e.message = what + ": " + e.message;
  return e;
}

// "graph:/users/<user>/contactFolders/<id>", or .../defaultContactFolder/<id>
// for the mailbox's own Contacts folder, so that a stored id of one kind is
// never opened for a rule that now wants the other.
std::string CollectionId(const std::string& user, bool use_default, const std::string& folder) {
  return "graph:/users/" + EncodeSegment(user) +
         (use_default ? "/defaultContactFolder/" : "/contactFolders/") + EncodeSegment(folder);
}

// --- the collection ------------------------------------------------------------------

class GraphCollection final : public Collection {
 public:
  // `created_now`: Open has just created the folder, so it is known to be
  // empty and the first full listing needs only its delta link.
  GraphCollection(std::unique_ptr<GraphClient> client, std::string user, std::string folder_id,
                  const CollectionSpec& spec, std::string app_id, bool created_now)
      : client_(std::move(client)),
        user_(std::move(user)),
        folder_id_(std::move(folder_id)),
        use_default_(spec.use_default),
        category_(text::Trim(spec.category)),
        app_id_(std::move(app_id)),
        created_now_(created_now) {}

  std::string id() const override { return CollectionId(user_, use_default_, folder_id_); }
  CreateMode create_mode() const override { return CreateMode::kServerId; }
  size_t max_batch() const override { return kBatch; }
  int parallel_per_batch() const override { return kParallelPerBatch; }
  std::string limit_bucket() const override { return app_id_ + "/" + text::AsciiLower(user_); }
  bool update_reads_current() const override { return true; }
  std::vector<std::string> TakeWarnings() override { return std::exchange(warnings_, {}); }
  // Keeps a warning for TakeWarnings (a bounded number of them).
  void Warn(std::string w) {
    if (warnings_.size() < 100) warnings_.push_back(std::move(w));
  }

  Result<Listing> List(const std::string& sync_token) override;
  Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>& hrefs) override;
  Result<WriteResult> Create(const std::string& name, const ManagedTag& tag,
                             const ItemBody& body) override;
  Result<WriteResult> Update(const std::string& href, const std::string& if_match,
                             const ManagedTag& tag, const ItemBody& body) override;
  Status Delete(const std::string& href, const std::string& if_match) override;
  Status RemoveCollection() override;
  std::vector<WriteOutcome> WriteBatch(const std::vector<WriteOp>& ops) override;
  WriteVolume DependentVolume(const std::vector<WriteOp>& ops) const override;

 private:
  // One write as planned: its sub-request (none for an update with nothing
  // to send), the photo to put after it, and what the server holds if only
  // the contact step lands.
  struct PlannedWrite {
    std::optional<GraphRequest> request;
    std::optional<Photo> photo;
    Contact landed;  // the contact without the new photo, as read back
  };

  std::string Mailbox() const { return "the mailbox " + Quote(user_); }
  std::string UserPath() const { return "/users/" + EncodeSegment(user_); }
  std::string FolderPath() const {
    return UserPath() + "/contactFolders/" + EncodeSegment(folder_id_);
  }
  std::string ContactPath(const std::string& href) const {
    return FolderPath() + "/contacts/" + EncodeSegment(href);
  }
  Error Failure(const GraphResponse& r, const std::string& what) const {
    return GraphError(r, what + " in " + Mailbox());
  }
  Error FolderGone() const {
    return MakeError(ErrorKind::kNotFound, "the contact folder of " + Mailbox() +
                                               " is gone (404); it is looked up again");
  }
  // Graph calls the folder's id malformed (a lying server handed it out,
  // or the state was edited): like a gone folder, it is looked up again
  // rather than failing every run.
  bool IdRefused(const GraphResponse& r) const {
    return r.status == 400 && GraphErrorCode(r.body) == "ErrorInvalidIdMalformed";
  }
  Error FolderIdRefused() const {
    return MakeError(ErrorKind::kNotFound,
                     "Graph refused the id of the contact folder of " + Mailbox() +
                         " as malformed (400 ErrorInvalidIdMalformed); it is looked up again");
  }

  Result<std::optional<Listing>> FollowDelta(const std::string& link);
  Result<Listing> FullListing();
  Result<std::string> DeltaRound(std::string url, bool first_is_link, Listing* changes,
                                 bool* resync);
  Status FetchChunk(std::span<const std::string> hrefs, std::vector<RemoteItem>* out);
  Status FetchPhotos(std::vector<std::pair<RemoteItem*, Contact*>>& wanting);
  RemoteItem ToRemote(GraphContact c);

  Contact WithCategory(Contact c) const;
  bool HasCategory(const Contact& c) const;
  void StripCategory(Contact& c) const;
  std::optional<Photo> PhotoToPut(const WriteOp& op) const;
  Result<PlannedWrite> Plan(const WriteOp& op);
  WriteOutcome Answer(const WriteOp& op, PlannedWrite& plan, const GraphResponse& r);
  void PutPhoto(const PlannedWrite& plan, WriteOutcome& out);

  std::unique_ptr<GraphClient> client_;
  const std::string user_;
  const std::string folder_id_;
  const bool use_default_;
  const std::string category_;  // every managed contact carries it, if set
  const std::string app_id_;
  bool created_now_;
  std::vector<std::string> warnings_;
  bool warned_photo_removal_ = false;
  // The marker each contact carried when last read, so that an update sends
  // the marker only when it changes (a take-over adds it).
  std::map<std::string, std::optional<ManagedTag>> tags_seen_;
  // Whether each contact carried the category when last read: reads strip
  // it, and a contact that lacks it (a user's card taken over) must get it.
  std::map<std::string, bool> had_category_;
};

bool GraphCollection::HasCategory(const Contact& c) const {
  return std::any_of(c.categories.begin(), c.categories.end(), [&](const std::string& cat) {
    return text::EqualsNoCase(text::Trim(cat), category_);
  });
}

Contact GraphCollection::WithCategory(Contact c) const {
  if (!category_.empty() && !HasCategory(c)) c.categories.push_back(category_);
  return c;
}

void GraphCollection::StripCategory(Contact& c) const {
  if (category_.empty()) return;
  std::erase_if(c.categories, [&](const std::string& cat) {
    return text::EqualsNoCase(text::Trim(cat), category_);
  });
}

RemoteItem GraphCollection::ToRemote(GraphContact c) {
  RemoteItem r;
  r.href = std::move(c.id);
  r.etag = std::move(c.etag);
  r.parse_error = std::move(c.parse_error);
  tags_seen_[r.href] = c.tag;
  r.tag = std::move(c.tag);
  if (r.parse_error.empty()) {
    had_category_[r.href] = HasCategory(c.contact);
    StripCategory(c.contact);
    r.body = std::move(c.contact);
    r.content_hash = HashOf(r.body);
  }
  return r;
}

// --- listing ---

Result<Listing> GraphCollection::List(const std::string& sync_token) {
  if (!sync_token.empty()) {
    ROSTER_ASSIGN_OR_RETURN(std::optional<Listing> delta, FollowDelta(sync_token));
    if (delta) return std::move(*delta);
  }
  return FullListing();
}

// What a delta round said of each contact, the last word counting (an id
// may come on several pages), in the order first seen.
class DeltaChanges {
 public:
  void Changed(const std::string& id, const std::string& etag) { At(id) = etag; }
  void Removed(const std::string& id) { At(id).reset(); }
  size_t size() const { return entries_.size(); }
  void Into(Listing* listing) const {
    for (const auto& [id, etag] : entries_) {
      if (etag) {
        listing->changed.push_back({id, *etag});
      } else {
        listing->removed.push_back(id);
      }
    }
  }

 private:
  std::optional<std::string>& At(const std::string& id) {
    auto [it, fresh] = at_.try_emplace(id, entries_.size());
    if (fresh) entries_.emplace_back(id, std::nullopt);
    return entries_[it->second].second;
  }
  std::map<std::string, size_t> at_;
  std::vector<std::pair<std::string, std::optional<std::string>>> entries_;  // etag, or removed
};

// Pages a delta round from `url` (a deltaLink when first_is_link, else a path)
// to its deltaLink, which it answers; changes go to *changes (null: only the
// link is wanted). A 410 or a resync code sets *resync and answers an error;
// a 404 is the folder being gone.
Result<std::string> GraphCollection::DeltaRound(std::string url, bool first_is_link,
                                                Listing* changes, bool* resync) {
  DeltaChanges seen;
  (void)first_is_link;
  for (size_t page = 0;; ++page) {
    if (page >= kMaxPages || seen.size() > kMaxEntries) {
      return MakeError(ErrorKind::kInvalidData,
                       "the contact delta of " + Mailbox() + " holds too many pages or changes");
    }
    GraphRequest request;
    request.url = url;
    // On every page, links included: Outlook applies a page size only to
    // the request that asks for it (10 otherwise: 100 pages for 1,000).
    request.headers.emplace_back("Prefer", "odata.maxpagesize=1000");
    ROSTER_ASSIGN_OR_RETURN(GraphResponse r, Named(client_->Send(request),
                                                   "reading the contact delta of " + Mailbox()));
    if (r.status == 410 || (r.status == 400 && IsResyncCode(GraphErrorCode(r.body)))) {
      *resync = true;
      return Failure(r, "reading the contact delta");
    }
    if (r.status == 404) {
      Error e = Failure(r, "reading the contact delta");
      return e.no_such_user ? e : FolderGone();
    }
    if (IdRefused(r)) return FolderIdRefused();
    if (!r.ok()) return Failure(r, "reading the contact delta");
    auto parsed = ParseGraphContactPage(r.body, kGraphMarkerPropertyId, GraphPageKind::kDelta);
    if (!parsed.ok()) {
      return WithMessage(parsed.error(), "the contact delta of " + Mailbox() +
                                             " could not be read: " + parsed.error().message);
    }
    if (changes) {
      for (const GraphContact& c : parsed->items) seen.Changed(c.id, c.etag);
      for (const std::string& id : parsed->removed) seen.Removed(id);
    }
    const std::string& next = parsed->delta_link.empty() ? parsed->next_link : parsed->delta_link;
    if (Status s = client_->CheckLink(next); !s.ok()) {
      return WithMessage(s.error(), "a link in the contact delta of " + Mailbox() +
                                        " was refused: " + s.error().message);
    }
    if (!parsed->delta_link.empty()) {
      if (changes) seen.Into(changes);
      return parsed->delta_link;
    }
    url = parsed->next_link;
  }
}

// nullopt: the link no longer works (expired, unusable): list in full.
Result<std::optional<Listing>> GraphCollection::FollowDelta(const std::string& link) {
  if (link.size() > kMaxGraphLinkBytes || !client_->CheckLink(link).ok()) {
    Warn("the stored delta link of " + Mailbox() + " is not one of Graph's; listing in full");
    return std::optional<Listing>();
  }
  Listing listing;
  bool resync = false;
  auto token = DeltaRound(link, true, &listing, &resync);
  if (!token.ok()) {
    if (resync) return std::optional<Listing>();
    return token.take_error();
  }
  listing.sync_token = std::move(token).value();
  return std::optional<Listing>(std::move(listing));
}

// The delta round first (so that a change made while the listing runs comes
// again next time), then every contact with the marker expanded. Contacts
// with roster's photo hint are left out of `items`: their photo is read by
// Fetch.
Result<Listing> GraphCollection::FullListing() {
  Listing listing;
  listing.full = true;
  bool resync = false;  // a new round that is already gone: an error like any other
  auto token = DeltaRound(FolderPath() + "/contacts/delta?$select=id", false, nullptr, &resync);
  if (!token.ok()) return token.take_error();
  listing.sync_token = std::move(token).value();
  // A folder created a moment ago holds nothing yet (a crash before its
  // first writes were recorded finds it again by its marker, not created).
  if (std::exchange(created_now_, false)) return listing;
  std::string url =
      FolderPath() + "/contacts?$top=" + std::to_string(kPageSize) + "&" + ExpandQuery();
  std::map<std::string, size_t> seen;
  for (size_t page = 0;; ++page) {
    if (page >= kMaxPages || listing.changed.size() > kMaxEntries) {
      return MakeError(ErrorKind::kInvalidData,
                       "the contact folder of " + Mailbox() + " lists too many pages or contacts");
    }
    GraphRequest request;
    request.url = url;
    ROSTER_ASSIGN_OR_RETURN(GraphResponse r, Named(client_->Send(request),
                                                   "listing the contact folder of " + Mailbox()));
    if (r.status == 404) {
      Error e = Failure(r, "listing the contact folder");
      return e.no_such_user ? e : FolderGone();
    }
    if (IdRefused(r)) return FolderIdRefused();
    if (!r.ok()) return Failure(r, "listing the contact folder");
    auto parsed = ParseGraphContactPage(r.body, kGraphMarkerPropertyId, GraphPageKind::kList);
    if (!parsed.ok()) {
      return WithMessage(parsed.error(), "the contact folder of " + Mailbox() +
                                             " could not be listed: " + parsed.error().message);
    }
    const std::map<std::string, bool> hints = PhotoHints(r.body);
    for (GraphContact& c : parsed->items) {
      if (seen.contains(c.id)) continue;  // paging by offset may repeat one
      seen[c.id] = listing.changed.size();
      listing.changed.push_back({c.id, c.etag});
      const bool hinted = hints.contains(c.id);
      RemoteItem item = ToRemote(std::move(c));
      if (!hinted || !item.parse_error.empty()) listing.items.push_back(std::move(item));
    }
    if (parsed->next_link.empty()) break;
    if (Status s = client_->CheckLink(parsed->next_link); !s.ok()) {
      return WithMessage(s.error(), "a link in the listing of " + Mailbox() +
                                        " was refused: " + s.error().message);
    }
    url = parsed->next_link;
  }
  return listing;
}

// --- reading ---

Result<std::vector<RemoteItem>> GraphCollection::Fetch(const std::vector<std::string>& hrefs) {
  std::vector<std::string> wanted;
  for (const std::string& href : hrefs) {
    if (IsGraphId(href)) {
      wanted.push_back(href);
    } else {
      Warn("the contact id " + Quote(href.substr(0, 80)) + " in " + Mailbox() +
           " is not one of Graph's and was not read");
    }
  }
  std::vector<RemoteItem> out;
  const std::span<const std::string> all(wanted);
  for (size_t i = 0; i < all.size(); i += kBatch) {
    ROSTER_RETURN_IF_ERROR(FetchChunk(all.subspan(i, std::min(kBatch, all.size() - i)), &out));
  }
  return out;
}

Status GraphCollection::FetchChunk(std::span<const std::string> hrefs,
                                   std::vector<RemoteItem>* out) {
  std::vector<GraphRequest> requests;
  for (const std::string& href : hrefs) {
    GraphRequest r;
    r.url = ContactPath(href) + "?" + ExpandQuery();
    requests.push_back(std::move(r));
  }
  ROSTER_ASSIGN_OR_RETURN(std::vector<GraphResponse> answers,
                          Named(client_->Batch(requests), "reading contacts of " + Mailbox()));
  const size_t first = out->size();
  std::vector<bool> hinted;
  for (size_t i = 0; i < answers.size(); ++i) {
    const GraphResponse& r = answers[i];
    if (r.status == 404) {
      if (Error e = Failure(r, "reading a contact"); e.no_such_user) return e;
      continue;  // gone: left out
    }
    if (!r.ok()) return Failure(r, "reading the contact " + hrefs[i]);
    auto parsed = ParseGraphContact(r.body, kGraphMarkerPropertyId);
    if (!parsed.ok()) {
      RemoteItem bad;
      bad.href = hrefs[i];
      bad.parse_error = parsed.error().message;
      out->push_back(std::move(bad));
      hinted.push_back(false);
      continue;
    }
    if (parsed->id != hrefs[i]) {
      Warn("Graph answered the contact " + hrefs[i] + " of " + Mailbox() +
           " with another one; it was left out");
      continue;
    }
    auto doc = ParseJson(r.body, kMaxGraphContactBytes);
    hinted.push_back(doc && HasPhotoHint(*doc));
    out->push_back(ToRemote(std::move(parsed).value()));
  }
  std::vector<std::pair<RemoteItem*, Contact*>> wanting;
  for (size_t i = first; i < out->size(); ++i) {
    Contact* c = std::get_if<Contact>(&(*out)[i].body);
    if (hinted[i - first] && (*out)[i].parse_error.empty() && c)
      wanting.emplace_back(&(*out)[i], c);
  }
  return FetchPhotos(wanting);
}

// The photos of contacts that carry the hint, in one more $batch.
Status GraphCollection::FetchPhotos(std::vector<std::pair<RemoteItem*, Contact*>>& wanting) {
  if (wanting.empty()) return {};
  std::vector<GraphRequest> requests;
  for (const auto& [item, contact] : wanting) {
    GraphRequest r;
    r.url = ContactPath(item->href) + "/photo/$value";
    requests.push_back(std::move(r));
  }
  ROSTER_ASSIGN_OR_RETURN(
      std::vector<GraphResponse> answers,
      Named(client_->Batch(requests), "reading contact photos of " + Mailbox()));
  for (size_t i = 0; i < answers.size(); ++i) {
    const GraphResponse& r = answers[i];
    auto& [item, contact] = wanting[i];
    if (r.status == 404) continue;  // the hint outlived the photo, or it never landed
    if (!r.ok()) return Failure(r, "reading the photo of the contact " + item->href);
    if (r.body.empty() || r.body.size() > kMaxPhotoBytes) continue;
    std::string type = r.Header("content-type");
    type = text::AsciiLower(text::Trim(type.substr(0, type.find(';'))));
    contact->photo = Photo{type.empty() ? "image/jpeg" : type, r.body, ""};
    item->content_hash = HashOf(item->body);
  }
  return {};
}

// --- writing ---

Result<GraphCollection::PlannedWrite> GraphCollection::Plan(const WriteOp& op) {
  PlannedWrite plan;
  GraphRequest& request = plan.request.emplace();
  if (op.kind != WriteOp::Kind::kCreate && !IsGraphId(op.href)) {
    return MakeError(ErrorKind::kInvalidArgument, "the contact id " + Quote(op.href.substr(0, 80)) +
                                                      " in " + Mailbox() +
                                                      " is not one of Graph's");
  }
  if (op.kind == WriteOp::Kind::kDelete) {
    request.method = "DELETE";
    request.url = ContactPath(op.href);
    if (!op.if_match.empty()) request.headers.emplace_back("If-Match", op.if_match);
    return plan;
  }
  const Contact* desired = op.body ? std::get_if<Contact>(op.body) : nullptr;
  if (!desired) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "a Graph contact folder holds contacts only (" + Mailbox() + ")");
  }
  Contact projected = ProjectGraphContact(*desired);
  StripCategory(projected);
  const Contact sent = WithCategory(projected);
  const std::optional<Photo> photo = projected.photo;
  plan.landed = projected;
  plan.photo = PhotoToPut(op);
  if (op.kind == WriteOp::Kind::kCreate) {
    plan.landed.photo.reset();
    request.method = "POST";
    request.url = FolderPath() + "/contacts";
    request.body = GraphContactBody(sent, &op.tag, kGraphMarkerPropertyId);
    if (plan.photo) {
      request.body = WithProperty(request.body, kGraphPhotoPropertyId, PhotoHint(*plan.photo));
    }
    return plan;
  }
  request.method = "PATCH";
  request.url = ContactPath(op.href);
  if (!op.if_match.empty()) request.headers.emplace_back("If-Match", op.if_match);
  const Contact* current = op.current ? std::get_if<Contact>(op.current) : nullptr;
  if (!current) {
    // Nothing read: the whole body, as a PATCH (a property it lacks stays).
    request.body = GraphContactBody(sent, &op.tag, kGraphMarkerPropertyId);
    plan.landed.photo.reset();
  } else {
    auto seen = tags_seen_.find(op.href);
    const ManagedTag* before = seen != tags_seen_.end() && seen->second ? &*seen->second : nullptr;
    auto had = had_category_.find(op.href);
    const bool carried = had != had_category_.end() && had->second;
    request.body = GraphContactPatch(carried ? WithCategory(*current) : *current, sent, before,
                                     &op.tag, kGraphMarkerPropertyId);
    plan.landed.photo = current->photo;
    if (!photo && current->photo && !warned_photo_removal_) {
      warned_photo_removal_ = true;
      Warn("Graph cannot remove a contact's photo: contacts in " + Mailbox() +
           " keep a photo the source no longer has (first: " + op.href + ")");
    }
  }
  if (plan.photo) {
    request.body = WithProperty(request.body, kGraphPhotoPropertyId, PhotoHint(*plan.photo));
  }
  if (request.body.empty()) plan.request.reset();  // nothing differs: no request
  return plan;
}

// The photo a create or an update puts after the contact: the desired one,
// unless the contact as read holds it already.
std::optional<Photo> GraphCollection::PhotoToPut(const WriteOp& op) const {
  const Contact* desired = op.body ? std::get_if<Contact>(op.body) : nullptr;
  if (op.kind == WriteOp::Kind::kDelete || !desired) return std::nullopt;
  std::optional<Photo> photo = GraphPhotoOf(*desired);
  if (!photo || op.kind == WriteOp::Kind::kCreate) return photo;
  const Contact* current = op.current ? std::get_if<Contact>(op.current) : nullptr;
  if (current && SamePhoto(photo, current->photo)) return std::nullopt;
  return photo;
}

// Each photo costs its PUT and the read of the contact's new etag.
WriteVolume GraphCollection::DependentVolume(const std::vector<WriteOp>& ops) const {
  WriteVolume volume;
  for (const WriteOp& op : ops) {
    if (std::optional<Photo> photo = PhotoToPut(op)) {
      volume.requests += 2;
      volume.upload_bytes += static_cast<int64_t>(photo->data.size());
    }
  }
  return volume;
}

std::vector<WriteOutcome> GraphCollection::WriteBatch(const std::vector<WriteOp>& ops) {
  created_now_ = false;  // no longer known to be empty
  std::vector<WriteOutcome> out(ops.size());
  std::vector<PlannedWrite> plans(ops.size());
  std::vector<GraphRequest> requests;
  std::vector<size_t> sent;  // op index of each request
  for (size_t i = 0; i < ops.size(); ++i) {
    out[i].result.href = ops[i].kind == WriteOp::Kind::kCreate ? "" : ops[i].href;
    auto plan = Plan(ops[i]);
    if (!plan.ok()) {
      out[i].status = plan.take_error();
      continue;
    }
    plans[i] = std::move(plan).value();
    if (plans[i].request) {
      requests.push_back(*plans[i].request);
      sent.push_back(i);
    } else {
      out[i].result.etag = ops[i].if_match;  // nothing to send: it is as it was
    }
  }
  if (requests.size() > kBatch) {
    for (size_t i : sent) {
      out[i].status = MakeError(ErrorKind::kInvalidArgument,
                                "a Graph $batch holds at most 20 writes; " +
                                    std::to_string(requests.size()) + " were given");
    }
    return out;
  }
  if (!requests.empty()) {
    auto answers = client_->Batch(requests);
    if (!answers.ok()) {
      const Error& e = answers.error();
      for (size_t i : sent) {
        out[i].status = WithMessage(e, "writing contacts in " + Mailbox() + ": " + e.message);
        // A write whose envelope failed in transit may have run.
        out[i].ambiguous = ops[i].kind == WriteOp::Kind::kCreate && e.kind == ErrorKind::kTransient;
      }
      return out;
    }
    for (size_t k = 0; k < sent.size(); ++k) {
      out[sent[k]] = Answer(ops[sent[k]], plans[sent[k]], (*answers)[k]);
    }
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    if (out[i].status.ok() && plans[i].photo) PutPhoto(plans[i], out[i]);
  }
  return out;
}

WriteOutcome GraphCollection::Answer(const WriteOp& op, PlannedWrite& plan,
                                     const GraphResponse& r) {
  WriteOutcome out;
  const bool create = op.kind == WriteOp::Kind::kCreate;
  out.result.href = create ? "" : op.href;
  const char* verb = create                              ? "creating a contact"
                     : op.kind == WriteOp::Kind::kUpdate ? "updating the contact "
                                                         : "deleting the contact ";
  const std::string what = std::string(verb) + (create ? "" : op.href);
  if (op.kind == WriteOp::Kind::kDelete && r.status == 404) {
    if (Error e = Failure(r, what); e.no_such_user) out.status = e;
    return out;  // gone already: done
  }
  if (!r.ok()) {
    out.status = Failure(r, what);
    out.ambiguous = create && (r.status == 0 || r.status >= 500);
    return out;
  }
  if (op.kind == WriteOp::Kind::kDelete) return out;
  auto parsed = ParseGraphContact(r.body, kGraphMarkerPropertyId);
  if (parsed.ok()) {
    out.result.etag = parsed->etag;
    if (create) out.result.href = parsed->id;
    tags_seen_[out.result.href] = op.tag;
    had_category_[out.result.href] = !category_.empty();
  } else if (create) {
    // It landed, but under an id we cannot read: the next full listing adopts it.
    out.status = MakeError(ErrorKind::kTransient, "creating a contact in " + Mailbox() +
                                                      ": Graph's answer could not be read (" +
                                                      parsed.error().message + ")");
    out.ambiguous = true;
    plan.photo.reset();
  }
  return out;
}

// The dependent step: the photo at its own endpoint (it cannot travel in a
// JSON $batch), then the contact's new etag (the photo changed it).
void GraphCollection::PutPhoto(const PlannedWrite& plan, WriteOutcome& out) {
  const std::string& href = out.result.href;
  GraphRequest put;
  put.method = "PUT";
  put.url = ContactPath(href) + "/photo/$value";
  put.content_type = PhotoType(*plan.photo);
  put.body = plan.photo->data;
  auto r = client_->Send(put);
  Status failed;
  if (!r.ok()) {
    failed = WithMessage(r.error(), "putting the photo of the contact " + href + " in " +
                                        Mailbox() + ": " + r.error().message);
  } else if (!r->ok()) {
    failed = Failure(*r, "putting the photo of the contact " + href);
  }
  if (!failed.ok()) {
    out.status = std::move(failed);
    out.landed = ItemBody(plan.landed);
    return;
  }
  GraphRequest get;
  get.url = ContactPath(href) + "?$select=id";
  auto after = client_->Send(get);
  out.result.etag.clear();  // unless Graph says, the next listing fills it in
  if (!after.ok() || !after->ok()) return;
  if (auto doc = ParseJson(after->body, kMaxGraphContactBytes); doc && doc->is_object()) {
    auto etag = doc->find("@odata.etag");
    if (etag != doc->end() && etag->is_string() &&
        IsSafeHeaderValue(etag->get_ref<const std::string&>(), 512)) {
      out.result.etag = etag->get<std::string>();
    }
  }
}

Result<WriteResult> GraphCollection::Create(const std::string& name, const ManagedTag& tag,
                                            const ItemBody& body) {
  WriteOp op;
  op.kind = WriteOp::Kind::kCreate;
  op.name = name;
  op.tag = tag;
  op.body = &body;
  WriteOutcome out = std::move(WriteBatch({op}).front());
  if (!out.status.ok()) return out.status.take_error();
  return out.result;
}

Result<WriteResult> GraphCollection::Update(const std::string& href, const std::string& if_match,
                                            const ManagedTag& tag, const ItemBody& body) {
  WriteOp op;
  op.kind = WriteOp::Kind::kUpdate;
  op.href = href;
  op.if_match = if_match;
  op.tag = tag;
  op.body = &body;
  WriteOutcome out = std::move(WriteBatch({op}).front());
  if (!out.status.ok()) return out.status.take_error();
  return out.result;
}

Status GraphCollection::Delete(const std::string& href, const std::string& if_match) {
  WriteOp op;
  op.kind = WriteOp::Kind::kDelete;
  op.href = href;
  op.if_match = if_match;
  WriteOutcome out = std::move(WriteBatch({op}).front());
  return out.status;
}

Status GraphCollection::RemoveCollection() {
  if (use_default_) {
    return MakeError(ErrorKind::kInvalidArgument, "the Contacts folder of " + Mailbox() +
                                                      " is the mailbox's own: never removed");
  }
  GraphRequest request;
  request.method = "DELETE";
  request.url = FolderPath();
  ROSTER_ASSIGN_OR_RETURN(GraphResponse r, Named(client_->Send(request),
                                                 "removing the contact folder of " + Mailbox()));
  if (r.ok() || r.status == 404) return {};
  return Failure(r, "removing the contact folder");
}

// --- the target ------------------------------------------------------------------------

class GraphTarget final : public Target {
 public:
  explicit GraphTarget(GraphTargetOptions options) : options_(std::move(options)) {}

  Result<std::unique_ptr<Collection>> Open(const CollectionSpec& spec, bool create) override;
  int max_in_flight() const override { return std::max(1, options_.max_in_flight); }
  ItemBody Project(const ItemBody& body) const override { return ProjectGraphContact(body); }
  std::string projection_name() const override { return kGraphContactProjectionName; }
  bool shared_credential() const override { return true; }

 private:
  Result<std::string> FindFolder(GraphClient& client, const CollectionSpec& spec,
                                 const std::string& mailbox, std::string* warning);
  Result<std::string> CreateFolder(GraphClient& client, const CollectionSpec& spec,
                                   const std::string& mailbox);
  Result<std::string> DefaultFolder(GraphClient& client, const CollectionSpec& spec,
                                    const std::string& mailbox);

  GraphTargetOptions options_;
};

std::string UserPath(const std::string& user) { return "/users/" + EncodeSegment(user); }

// The folder id in a known_url of this user's, or empty.
std::string KnownFolder(const CollectionSpec& spec) {
  const std::string prefix = CollectionId(spec.user, spec.use_default, "");
  if (!spec.known_url.starts_with(prefix)) return "";
  const std::string rest = spec.known_url.substr(prefix.size());
  if (rest.find('/') != std::string::npos) return "";
  std::string id = PercentDecode(rest);
  return IsGraphId(id) ? id : "";
}

// The one folder id of a contactFolders answer (a folder, or a page of them).
Result<std::string> FolderIdOf(const Json& folder, const std::string& mailbox) {
  auto id = folder.is_object() ? folder.find("id") : Json::const_iterator();
  if (!folder.is_object() || id == folder.end() || !id->is_string() ||
      !IsGraphId(id->get_ref<const std::string&>())) {
    return MakeError(ErrorKind::kInvalidData,
                     "Graph answered a contact folder of " + mailbox + " without a usable id");
  }
  return id->get<std::string>();
}

Result<std::unique_ptr<Collection>> GraphTarget::Open(const CollectionSpec& spec, bool create) {
  if (!options_.tokens) {
    return MakeError(ErrorKind::kInvalidArgument, "the Graph target has no token provider");
  }
  if (spec.user.empty() || spec.user.size() > 512) {
    return MakeError(ErrorKind::kInvalidArgument, "a Graph target user must be a UPN or object id");
  }
  const std::string mailbox = "the mailbox " + Quote(spec.user);
  ROSTER_ASSIGN_OR_RETURN(std::unique_ptr<GraphClient> client,
                          GraphClient::Create(options_.tokens, options_.client));
  std::string folder = KnownFolder(spec);
  std::string warning;
  bool created = false;
  if (folder.empty() && spec.use_default) {
    ROSTER_ASSIGN_OR_RETURN(folder, DefaultFolder(*client, spec, mailbox));
  } else if (folder.empty()) {
    ROSTER_ASSIGN_OR_RETURN(folder, FindFolder(*client, spec, mailbox, &warning));
    if (folder.empty()) {
      if (!create) {
        return MakeError(ErrorKind::kNotFound,
                         mailbox + " has no contact folder of rule " + Quote(spec.rule) + " yet");
      }
      ROSTER_ASSIGN_OR_RETURN(folder, CreateFolder(*client, spec, mailbox));
      created = true;
    }
  }
  auto collection = std::make_unique<GraphCollection>(
      std::move(client), spec.user, std::move(folder), spec, options_.app_id, created);
  if (!warning.empty()) collection->Warn(std::move(warning));
  return std::unique_ptr<Collection>(std::move(collection));
}

// By roster's folder property, never by name: empty when there is none.
Result<std::string> GraphTarget::FindFolder(GraphClient& client, const CollectionSpec& spec,
                                            const std::string& mailbox, std::string* warning) {
  const std::string filter = std::string("singleValueExtendedProperties/any(ep: ep/id eq '") +
                             kGraphFolderPropertyId + "' and ep/value eq '" +
                             GraphFolderMarker(spec.rule) + "')";
  GraphRequest request;
  request.url = UserPath(spec.user) + "/contactFolders?$filter=" + EncodeSegment(filter) +
                "&$select=id,displayName";
  ROSTER_ASSIGN_OR_RETURN(
      GraphResponse r,
      Named(client.Send(request), "looking up roster's contact folder in " + mailbox));
  if (!r.ok()) return GraphError(r, "looking up roster's contact folder in " + mailbox);
  auto doc = ParseJson(r.body, kMaxFolderAnswerBytes);
  auto value = doc && doc->is_object() ? doc->find("value") : Json::iterator();
  if (!doc || !doc->is_object() || value == doc->end() || !value->is_array()) {
    return MakeError(ErrorKind::kInvalidData,
                     "Graph's list of contact folders of " + mailbox + " could not be read");
  }
  if (value->empty()) return std::string();
  // Two would mean a copy made outside roster (a restored backup, another
  // tool): the first is kept, always the same one, and the rest named.
  if (value->size() > 1) {
    *warning = mailbox + " has " + std::to_string(value->size()) +
               " contact folders marked as rule " + Quote(spec.rule) +
               "'s; roster uses the first and leaves the others alone";
  }
  return FolderIdOf(value->front(), mailbox);
}

Result<std::string> GraphTarget::CreateFolder(GraphClient& client, const CollectionSpec& spec,
                                              const std::string& mailbox) {
  const Json body = {{"displayName", spec.display_name},
                     {"singleValueExtendedProperties",
                      {{{"id", kGraphFolderPropertyId}, {"value", GraphFolderMarker(spec.rule)}}}}};
  GraphRequest request;
  request.method = "POST";
  request.url = UserPath(spec.user) + "/contactFolders";
  request.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  ROSTER_ASSIGN_OR_RETURN(GraphResponse r,
                          Named(client.Send(request), "creating the contact folder in " + mailbox));
  if (r.status == 409 && GraphErrorCode(r.body) == "ErrorFolderExists") {
    return MakeError(ErrorKind::kConflict,
                     mailbox + " already has a contact folder named " + Quote(spec.display_name) +
                         " that roster did not create; rename that folder or choose another "
                         "display name for rule " +
                         Quote(spec.rule));
  }
  if (!r.ok()) return GraphError(r, "creating the contact folder in " + mailbox);
  auto doc = ParseJson(r.body, kMaxFolderAnswerBytes);
  if (!doc) {
    return MakeError(ErrorKind::kInvalidData, "Graph's answer to creating the contact folder in " +
                                                  mailbox + " could not be read");
  }
  return FolderIdOf(*doc, mailbox);
}

// The mailbox's own Contacts folder, by its well-known name.
Result<std::string> GraphTarget::DefaultFolder(GraphClient& client, const CollectionSpec& spec,
                                               const std::string& mailbox) {
  GraphRequest request;
  request.url = UserPath(spec.user) + "/contactFolders/contacts?$select=id,displayName";
  ROSTER_ASSIGN_OR_RETURN(GraphResponse r,
                          Named(client.Send(request), "opening the Contacts folder of " + mailbox));
  if (!r.ok()) return GraphError(r, "opening the Contacts folder of " + mailbox);
  auto doc = ParseJson(r.body, kMaxFolderAnswerBytes);
  if (!doc) {
    return MakeError(ErrorKind::kInvalidData,
                     "Graph's answer for the Contacts folder of " + mailbox + " could not be read");
  }
  return FolderIdOf(*doc, mailbox);
}

}  // namespace

std::unique_ptr<Target> NewGraphTarget(GraphTargetOptions options) {
  return std::make_unique<GraphTarget>(std::move(options));
}

}  // namespace roster
