#include "connectors/graph/graph_source.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "connectors/graph/contact_json.h"
#include "connectors/graph/graph_props.h"
#include "core/hash.h"
#include "core/personal.h"
#include "core/text.h"

namespace roster {
namespace {

using json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

// Limits on one directory object, so that a hostile page costs bounded memory.
constexpr int kMaxDepth = 16;
constexpr size_t kMaxValuesPerObject = 10000;
constexpr size_t kMaxIdBytes = 512;
constexpr size_t kMaxPages = 100000;
constexpr size_t kMaxPropertyBytes = 128;
// Graph takes photos of at most 4 MB; a bigger answer is not a photo.
constexpr size_t kMaxPhotoBytes = size_t{4} << 20;
// How old a full read with photos may be before Version() answers "".
constexpr int64_t kPhotoRefreshSeconds = 24 * 3600;
// Entra caps a displayName at 256 characters, at most 1 KiB of UTF-8; a
// longer "name" of a manager is not one.
constexpr size_t kMaxManagerNameBytes = 1024;
// The navigation property naming a user's manager (a user or an org
// contact), and the property of it a mapping of "manager" alone reads.
constexpr char kManager[] = "manager";
constexpr char kManagerName[] = "manager.displayName";

Error Invalid(std::string message) {
  return MakeError(ErrorKind::kInvalidData, std::move(message));
}

Result<json> ParsePageJson(std::string_view text) {
  if (text.size() > kMaxGraphPageBytes) {
    return Invalid("the page is larger than " + std::to_string(kMaxGraphPageBytes >> 20) + " MiB");
  }
  if (JsonNestsDeeperThan(text, kMaxDepth)) {
    return Invalid("the page nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  try {
    json page = json::parse(text.begin(), text.end());
    if (!page.is_object()) return Invalid("the page is not a JSON object");
    return page;
  } catch (const json::exception&) {
    return Invalid("the page is not valid JSON");
  }
}

// A Graph id as a record key and a URL segment: printable ASCII without
// spaces, bounded (directory ids are GUIDs; Outlook ids URL-safe base64).
bool IsUsableId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool IsUsableLink(std::string_view link) {
  if (link.size() > kMaxGraphLinkBytes) return false;
  if (!link.starts_with("https://") && !link.starts_with("http://")) return false;
  return std::all_of(link.begin(), link.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool IsPropertySegment(std::string_view s) {
  if (s.empty() || s.size() > kMaxPropertyBytes) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// "a" or "a.b.c" of property names.
bool IsPropertyPath(std::string_view path) {
  if (path.empty()) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    if (!IsPropertySegment(path.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string TopSegment(std::string_view path) {
  return std::string(path.substr(0, path.find('.')));
}

using Attributes = std::map<std::string, std::vector<std::string>>;

// Flattens `value` under `name`: scalars as text, arrays one value each,
// objects (also inside arrays) by dotted path. Annotations ("@odata.type",
// "x@odata.context") are left out. False when the object holds too many values.
bool Flatten(const json& value, const std::string& name, Attributes& out, size_t& budget) {
  switch (value.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      return true;
    case json::value_t::object:
      for (const auto& [member, v] : value.items()) {
        if (member.find('@') != std::string::npos || member.empty()) continue;
        if (!Flatten(v, name.empty() ? member : name + "." + member, out, budget)) return false;
      }
      return true;
    case json::value_t::array:
      if (value.size() > kMaxGraphArrayEntries) return false;
      for (const json& v : value) {
        if (!Flatten(v, name, out, budget)) return false;
      }
      return true;
    default:
      break;
  }
  if (name.empty()) return true;
  if (budget == 0) return false;
  --budget;
  std::vector<std::string>& values = out[name];
  if (value.is_string()) {
    values.push_back(value.get<std::string>());
  } else if (value.is_boolean()) {
    values.push_back(value.get<bool>() ? "true" : "false");
  } else {
    values.push_back(value.dump());
  }
  return true;
}

// Contact field -> user property, before overrides.
const std::vector<std::pair<std::string, std::string>>& DefaultUserFields() {
  static const auto* fields = new std::vector<std::pair<std::string, std::string>>{
      {"display_name", "displayName"},
      {"given_name", "givenName"},
      {"family_name", "surname"},
      {"email", "mail"},
      {"work_phone", "businessPhones"},
      {"mobile", "mobilePhone"},
      {"fax", "faxNumber"},
      {"title", "jobTitle"},
      {"department", "department"},
      {"organization", "companyName"},
      {"office", "officeLocation"},
      {"street", "streetAddress"},
      {"city", "city"},
      {"region", "state"},
      {"postal_code", "postalCode"},
      {"country", "country"},
  };
  return *fields;
}

// An org contact's plain fields; its phones and address are read by type.
const std::vector<std::pair<std::string, std::string>>& DefaultContactFields() {
  static const auto* fields = new std::vector<std::pair<std::string, std::string>>{
      {"display_name", "displayName"}, {"given_name", "givenName"},
      {"family_name", "surname"},      {"email", "mail"},
      {"title", "jobTitle"},           {"department", "department"},
      {"organization", "companyName"},
  };
  return *fields;
}

// graph.phone's type -> contact field.
std::string_view PhoneField(std::string_view type) {
  if (type == "business") return "work_phone";
  if (type == "mobile") return "mobile";
  if (type == "home") return "home_phone";
  if (type == "businessFax") return "fax";
  if (type == "pager") return "pager";
  return "phone_other";
}

void FillOrgContactTyped(const json& object, Contact& contact) {
  if (auto it = object.find("phones"); it != object.end() && it->is_array()) {
    for (const json& phone : *it) {
      if (!phone.is_object()) continue;
      auto number = phone.find("number");
      if (number == phone.end() || !number->is_string()) continue;
      std::string type;
      if (auto t = phone.find("type"); t != phone.end() && t->is_string())
        type = t->get<std::string>();
      SetContactField(contact, PhoneField(type), number->get<std::string>());
    }
  }
  if (auto it = object.find("addresses"); it != object.end() && it->is_array()) {
    for (const json& address : *it) {
      if (!address.is_object()) continue;
      static constexpr std::pair<std::string_view, std::string_view> kParts[] = {
          {"street", "street"},
          {"city", "city"},
          {"state", "region"},
          {"postalCode", "postal_code"},
          {"countryOrRegion", "country"},
          {"officeLocation", "office"}};
      for (const auto& [member, field] : kParts) {
        auto v = address.find(member);
        if (v != address.end() && v->is_string())
          SetContactField(contact, field, v->get<std::string>());
      }
      break;  // the office address; Graph keeps one
    }
  }
}

// The name of the manager that $expand=manager($select=displayName) put
// into a user: {"@odata.type": "#microsoft.graph.user", "id": ...,
// "displayName": ...} (or an orgContact alike), no member for no manager.
// A manager that is no object, a name that is no string, blank, or longer
// than a name can be, is no name.
std::optional<std::string> ManagerName(const json& manager) {
  if (!manager.is_object()) return std::nullopt;
  auto name = manager.find("displayName");
  if (name == manager.end() || !name->is_string()) return std::nullopt;
  const std::string& raw = name->get_ref<const std::string&>();
  if (raw.size() > kMaxManagerNameBytes) return std::nullopt;
  std::string clean = graph_detail::GraphText(text::Trim(raw));
  if (clean.empty()) return std::nullopt;
  return clean;
}

// Replaces what Flatten made of an object's "manager": its displayName
// only as ManagerName reads it, and nothing of a manager that is no object,
// so that filters, the mapping and the version all see the one checked name.
void KeepManagerName(const json& object, Attributes& attributes) {
  auto manager = object.find(kManager);
  if (manager == object.end()) return;
  if (!manager->is_object()) {
    attributes.erase(kManager);
    const std::string prefix = std::string(kManager) + ".";
    auto it = attributes.lower_bound(prefix);
    while (it != attributes.end() && it->first.starts_with(prefix)) it = attributes.erase(it);
    return;
  }
  attributes.erase(kManagerName);
  if (std::optional<std::string> name = ManagerName(*manager)) {
    attributes[kManagerName] = {std::move(*name)};
  }
}

// Appends a field so that no two different field lists hash alike.
void AppendField(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out.push_back(':');
  out.append(field);
}

std::string HashRecord(const SourceRecord& r) {
  std::string one;
  AppendField(one, r.key);
  AppendField(one, ContentHash(r.contact));
  AppendField(one, r.contact.photo ? HashHex(r.contact.photo->data) : std::string());
  for (const auto& [name, values] : r.attributes) {
    AppendField(one, name);
    AppendField(one, std::to_string(values.size()));
    for (const std::string& v : values) AppendField(one, v);
  }
  return HashHex(one);
}

std::string HashRecords(const std::vector<SourceRecord>& records) {
  std::vector<const SourceRecord*> sorted;
  sorted.reserve(records.size());
  for (const SourceRecord& r : records) sorted.push_back(&r);
  std::sort(sorted.begin(), sorted.end(),
            [](const SourceRecord* a, const SourceRecord* b) { return a->key < b->key; });
  std::string all;
  for (const SourceRecord* r : sorted) AppendField(all, HashRecord(*r));
  return HashHex(all);
}

std::string ODataQuote(std::string_view literal) {
  std::string out = "'";
  for (char c : literal) {
    out.push_back(c);
    if (c == '\'') out.push_back('\'');
  }
  out.push_back('\'');
  return out;
}

std::string FilterByName(std::string_view display_name) {
  return "$filter=" + graph::EncodeSegment("displayName eq " + ODataQuote(display_name));
}

bool IsGuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// The path of a request, for messages: "/users" of "/users?$select=...".
std::string PathOf(std::string_view url) { return std::string(url.substr(0, url.find('?'))); }

// The permission an app lacks when Graph refuses `path` with 403.
std::string PermissionHint(std::string_view path) {
  if (path.find("/contactFolders") != std::string_view::npos) return "Contacts.Read";
  if (path.find("/photo") != std::string_view::npos) return "User.Read.All";
  if (path.starts_with("/groups")) return "GroupMember.Read.All";
  if (path.starts_with("/contacts")) return "OrgContact.Read.All";
  if (path.starts_with("/users")) return "User.Read.All";
  return "";
}

Error FromResponse(const graph::GraphResponse& response, const std::string& what,
                   std::string_view path) {
  Error e = graph::GraphError(response, what);
  if (response.status == 403) {
    const std::string hint = PermissionHint(path);
    if (!hint.empty()) e.message += " (the app needs " + hint + ")";
  }
  return e;
}

Error Prefixed(Error e, const std::string& what) {
  e.message = what + ": " + e.message;
  return e;
}

// What one page answered: the links to go on with.
struct Links {
  std::string next, delta;
};
using PageFn = std::function<Status(std::string_view body, Links* links)>;

// GETs `url` and every page its nextLinks lead to, each link checked to be
// on Graph's origin first; `*delta_link` gets the last page's deltaLink.
// `prefix` + "reading PATH" starts every message.
Status ReadPages(graph::GraphClient& client, const std::string& prefix, std::string url,
                 const Headers& headers, const PageFn& page, std::string* delta_link = nullptr) {
  const std::string path = PathOf(url);
  const std::string what = prefix + "reading " + path;
  std::unordered_set<std::string> seen;
  for (size_t n = 0;; ++n) {
    if (n >= kMaxPages) {
      return Invalid(what + ": more than " + std::to_string(kMaxPages) + " pages");
    }
    graph::GraphRequest request;
    request.url = url;
    request.headers = headers;
    Result<graph::GraphResponse> response = client.Send(request);
    if (!response.ok()) return Prefixed(response.take_error(), what);
    if (!response->ok()) return FromResponse(*response, what, path);
    Links links;
    Status parsed = page(response->body, &links);
    if (!parsed.ok()) return Prefixed(parsed.take_error(), what);
    if (links.next.empty()) {
      if (delta_link != nullptr) *delta_link = links.delta;
      return {};
    }
    Status allowed = client.CheckLink(links.next);
    if (!allowed.ok()) return Prefixed(allowed.take_error(), what + ": refusing its nextLink");
    if (!seen.insert(links.next).second) {
      return Invalid(what + ": a nextLink leads back to a page already read");
    }
    url = std::move(links.next);
  }
}

// One directory object (its id already checked): nullopt when its
// "@odata.type" is not `type_name`'s (null: any type).
Result<std::optional<SourceRecord>> ParseObject(const json& object, const char* type_name,
                                                const GraphObjectKind* kind,
                                                const GraphMapping* mapping) {
  if (type_name != nullptr) {
    auto type = object.find("@odata.type");
    if (type != object.end() && (!type->is_string() || *type != type_name))
      return std::optional<SourceRecord>();
  }
  SourceRecord record;
  record.key = object.at("id").get<std::string>();
  size_t budget = kMaxValuesPerObject;
  if (!Flatten(object, "", record.attributes, budget)) {
    return Invalid("object " + record.key + " holds too many values");
  }
  KeepManagerName(object, record.attributes);
  if (mapping != nullptr && kind != nullptr) {
    const bool user = *kind == GraphObjectKind::kUser;
    for (const auto& [field, path] : user ? mapping->user_fields : mapping->contact_fields) {
      auto it = record.attributes.find(path);
      if (it == record.attributes.end()) continue;
      for (const std::string& v : it->second) SetContactField(record.contact, field, v);
    }
    if (!user) FillOrgContactTyped(object, record.contact);
    for (const std::string& field : mapping->removed) ClearContactField(record.contact, field);
  }
  return std::optional<SourceRecord>(std::move(record));
}

// The page reader behind ParseGraphDirectoryPage: `kind` null keeps objects
// of any type; `mapping` null fills no contact.
Result<GraphDirectoryPage> ParsePage(std::string_view text, const GraphObjectKind* kind,
                                     const GraphMapping* mapping) {
  ROSTER_ASSIGN_OR_RETURN(json page, ParsePageJson(text));
  GraphDirectoryPage out;
  for (auto [name, link] : {std::pair{"@odata.nextLink", &out.next_link},
                            std::pair{"@odata.deltaLink", &out.delta_link}}) {
    auto it = page.find(name);
    if (it == page.end() || it->is_null()) continue;
    if (!it->is_string() || !IsUsableLink(it->get_ref<const std::string&>())) {
      return Invalid(std::string(name) + " is not a usable URL");
    }
    *link = it->get<std::string>();
  }
  if (!out.next_link.empty() && !out.delta_link.empty()) {
    return Invalid("the page has both a nextLink and a deltaLink");
  }
  auto value = page.find("value");
  if (value == page.end() || !value->is_array()) return Invalid("the page has no value array");
  if (value->size() > kMaxGraphPageItems) {
    return Invalid("the page holds more than " + std::to_string(kMaxGraphPageItems) + " objects");
  }
  const char* type_name = nullptr;
  if (kind != nullptr) {
    type_name =
        *kind == GraphObjectKind::kUser ? "#microsoft.graph.user" : "#microsoft.graph.orgContact";
  }
  for (size_t i = 0; i < value->size(); ++i) {
    const json& object = (*value)[i];
    if (!object.is_object()) return Invalid("object " + std::to_string(i) + " is not an object");
    auto id = object.find("id");
    if (id == object.end() || !id->is_string() || !IsUsableId(id->get_ref<const std::string&>())) {
      return Invalid("object " + std::to_string(i) + " has no usable id");
    }
    if (object.contains("@removed")) {
      ++out.removed;
      out.removed_ids.push_back(id->get<std::string>());
      continue;
    }
    std::optional<SourceRecord> record;
    ROSTER_ASSIGN_OR_RETURN(record, ParseObject(object, type_name, kind, mapping));
    if (record) out.records.push_back(std::move(*record));
  }
  return out;
}

Status CheckCursorLink(graph::GraphClient& client, const std::string& link) {
  if (!IsUsableLink(link)) return Invalid("not a usable URL");
  return client.CheckLink(link);
}

// A delta round from `url` (a deltaLink, or a first request): whether it
// reported any object, and the deltaLink it ended with.
struct DeltaRound {
  bool changed = false;
  std::string delta_link;
};

using DeltaPageFn = std::function<Result<bool>(std::string_view body, Links* links)>;

Result<DeltaRound> FollowDelta(graph::GraphClient& client, const std::string& prefix,
                               const std::string& url, const Headers& headers,
                               const DeltaPageFn& parse) {
  DeltaRound round;
  ROSTER_RETURN_IF_ERROR(ReadPages(
      client, prefix, url, headers,
      [&](std::string_view body, Links* links) -> Status {
        ROSTER_ASSIGN_OR_RETURN(bool changed, parse(body, links));
        round.changed = round.changed || changed;
        return {};
      },
      &round.delta_link));
  if (round.delta_link.empty()) {
    return Invalid(prefix + "reading " + PathOf(url) + ": the last delta page has no deltaLink");
  }
  return round;
}

Result<bool> DirectoryDeltaPage(std::string_view body, Links* links) {
  ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage page, ParsePage(body, nullptr, nullptr));
  links->next = std::move(page.next_link);
  links->delta = std::move(page.delta_link);
  return !page.records.empty() || page.removed > 0;
}

Result<bool> FolderDeltaPage(std::string_view body, Links* links) {
  ROSTER_ASSIGN_OR_RETURN(GraphContactPage page,
                          ParseGraphContactPage(body, "", GraphPageKind::kDelta));
  links->next = std::move(page.next_link);
  links->delta = std::move(page.delta_link);
  return !page.items.empty() || !page.removed.empty();
}

// GETs one URL per key by $batch, kMaxBatchRequests at a time, and hands
// each answer that is 2xx or 404 to `answer(i, response)`, in order. A
// sub-response missing from the answer is kTransient ("WHAT: the batch
// answer lacks LACKS<key>"), any other status Graph's error ("WHAT (NOUN<key>)",
// `path` naming the permission); keys appear as pseudonyms.
Status BatchGet(graph::GraphClient& client, const std::string& what, size_t count,
                const std::function<const std::string&(size_t)>& key,
                const std::function<std::string(const std::string&)>& url, std::string_view lacks,
                std::string_view noun, std::string_view path,
                const std::function<Status(size_t, const graph::GraphResponse&)>& answer) {
  for (size_t start = 0; start < count; start += graph::kMaxBatchRequests) {
    const size_t end = std::min(count, start + graph::kMaxBatchRequests);
    std::vector<graph::GraphRequest> requests;
    for (size_t i = start; i < end; ++i) {
      graph::GraphRequest r;
      r.url = url(key(i));
      requests.push_back(std::move(r));
    }
    Result<std::vector<graph::GraphResponse>> answers = client.Batch(requests);
    if (!answers.ok()) return Prefixed(answers.take_error(), what);
    if (answers->size() != requests.size()) return Invalid(what + ": the batch answer is short");
    for (size_t i = start; i < end; ++i) {
      const graph::GraphResponse& a = (*answers)[i - start];
      if (a.status == 0) {
        return MakeError(ErrorKind::kTransient, what + ": the batch answer lacks " +
                                                    std::string(lacks) + Personal(key(i), key(i)));
      }
      if (!a.ok() && a.status != 404) {
        return FromResponse(a, what + " (" + std::string(noun) + Personal(key(i), key(i)) + ")",
                            path);
      }
      ROSTER_RETURN_IF_ERROR(answer(i, a));
    }
  }
  return {};
}

// --- delta reads from the cache ---
//
// A cached directory object's stamp says what a delta cannot: its kind, the
// manager it was read with (so that a manager's change reaches their
// reports, who are read again), its photo's media ETag (photo changes are
// no delta changes) and the hash of its content, so that the digest of all
// stamps, kept in the cursor, proves the cache holds what the delta links
// were taken after; a cache that lost entries (expired, purged, a failed
// write) costs a full read instead of a silent gap.
struct ObjectStamp {
  char kind = 'u';          // 'u' user, 'c' org contact
  std::string manager;      // the manager's id, or empty
  std::string photo = "-";  // media ETag, "-" none, "?" not known
  std::string hash;         // HashRecord
};

std::string FormatStamp(const ObjectStamp& st) {
  return std::string(1, st.kind) + "\n" + st.manager + "\n" + st.photo + "\n" + st.hash;
}

std::optional<ObjectStamp> ParseStamp(std::string_view text) {
  ObjectStamp st;
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t nl = text.find('\n', start);
    parts.push_back(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  if (parts.size() != 4 || (parts[0] != "u" && parts[0] != "c")) return std::nullopt;
  st.kind = parts[0][0];
  st.manager = std::string(parts[1]);
  st.photo = std::string(parts[2]);
  st.hash = std::string(parts[3]);
  return st;
}

// A photo's media ETag as its metadata (@odata.mediaEtag: W/"X") or its
// bytes (an ETag header: "X") give it: X; "?" for none or one that is not
// a short printable tag.
std::string PhotoTag(std::string_view raw) {
  std::string_view t = text::Trim(raw);
  if (t.starts_with("W/")) t.remove_prefix(2);
  if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = t.substr(1, t.size() - 2);
  if (t.empty() || t.size() > 256) return "?";
  for (char c : t) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return "?";
  }
  return std::string(t);
}

std::string DigestStamps(const std::map<std::string, std::string>& stamps) {
  std::string all;
  for (const auto& [key, stamp] : stamps) {
    AppendField(all, key);
    AppendField(all, stamp);
  }
  return HashHex("roster-graph-cache-1\n" + all);
}

// What the delta links reported since they were taken: the ids of objects
// changed (per kind) and removed, and the links renewed.
struct DeltaFound {
  std::vector<std::string> links;
  std::set<std::string> changed[2];  // users, org contacts
  std::set<std::string> removed;
  bool any() const { return !changed[0].empty() || !changed[1].empty() || !removed.empty(); }
};

// Follows each of `links` (an empty one stands for a kind not read) to its
// end. nullopt, with a warning, when a link is refused or fails (410
// expired, any error): then everything is read in full.
std::optional<DeltaFound> CollectDeltas(graph::GraphClient& client, const std::string& prefix,
                                        const std::vector<std::string>& links,
                                        std::vector<std::string>& warnings) {
  DeltaFound found;
  for (size_t i = 0; i < links.size(); ++i) {
    const std::string& link = links[i];
    if (link.empty()) {
      found.links.emplace_back();
      continue;
    }
    Status allowed = CheckCursorLink(client, link);
    if (!allowed.ok()) {
      warnings.push_back(prefix + "the saved delta link is refused (" + allowed.error().message +
                         "); reading in full");
      return std::nullopt;
    }
    const size_t kind = std::min<size_t>(i, 1);
    Result<DeltaRound> round =
        FollowDelta(client, prefix, link, {}, [&](std::string_view body, Links* l) -> Result<bool> {
          ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage page, ParsePage(body, nullptr, nullptr));
          l->next = std::move(page.next_link);
          l->delta = std::move(page.delta_link);
          // The latest word on an object counts: a change after a removal
          // (a user restored) or a removal after a change.
          for (const SourceRecord& r : page.records) {
            found.removed.erase(r.key);
            found.changed[kind].insert(r.key);
          }
          for (const std::string& id : page.removed_ids) {
            found.changed[kind].erase(id);
            found.removed.insert(id);
          }
          return !page.records.empty() || !page.removed_ids.empty();
        });
    if (!round.ok()) {
      warnings.push_back(round.error().message + "; reading in full");
      return std::nullopt;
    }
    found.links.push_back(std::move(round->delta_link));
  }
  return found;
}

// What Cursor() carries: the delta links and the version of the content
// read when they were taken, for the configuration `config` names.
struct SavedCursor {
  std::string config;
  std::vector<std::string> links;  // in the source's fixed order; "" for a kind not read
  std::string version;
  int64_t read_at = 0;  // when the photos were read or checked in full (Unix seconds)
  // With the cache: DigestStamps of what the cache holds as of the links.
  std::string digest;
};

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string SerializeCursor(const SavedCursor& c) {
  if (c.version.empty()) return "";
  return json{{"format", 1},          {"config", c.config},   {"links", c.links},
              {"version", c.version}, {"read_at", c.read_at}, {"digest", c.digest}}
      .dump();
}

std::optional<SavedCursor> ParseCursor(const std::string& saved, size_t links) {
  if (saved.empty() || saved.size() > 4 * kMaxGraphLinkBytes) return std::nullopt;
  try {
    json j = json::parse(saved);
    SavedCursor c;
    if (j.at("format").get<int>() != 1) return std::nullopt;
    c.config = j.at("config").get<std::string>();
    c.links = j.at("links").get<std::vector<std::string>>();
    c.version = j.at("version").get<std::string>();
    c.read_at = j.value("read_at", int64_t{0});
    c.digest = j.value("digest", std::string());
    if (c.links.size() != links || c.version.empty()) return std::nullopt;
    return c;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// Follows each of `saved`'s links (an empty one stands for a kind not
// read): the saved version, with `saved`'s links renewed, when nothing
// changed; "" otherwise, with a warning when a link failed.
std::string CheckDeltas(graph::GraphClient& client, const std::string& prefix, SavedCursor& saved,
                        const Headers& headers, const DeltaPageFn& parse,
                        std::vector<std::string>& warnings) {
  std::vector<std::string> renewed;
  for (const std::string& link : saved.links) {
    if (link.empty()) {
      renewed.emplace_back();
      continue;
    }
    Status allowed = CheckCursorLink(client, link);
    if (!allowed.ok()) {
      warnings.push_back(prefix + "the saved delta link is refused (" + allowed.error().message +
                         "); reading in full");
      return "";
    }
    Result<DeltaRound> round = FollowDelta(client, prefix, link, headers, parse);
    if (!round.ok()) {
      warnings.push_back(round.error().message + "; reading in full");
      return "";
    }
    if (round->changed) return "";
    renewed.push_back(std::move(round->delta_link));
  }
  saved.links = std::move(renewed);
  return saved.version;
}

}  // namespace

// --- pure part ----------------------------------------------------------------

Result<GraphMapping> ResolveGraphMapping(const std::map<std::string, std::string>& overrides) {
  GraphMapping m;
  m.user_fields = DefaultUserFields();
  m.contact_fields = DefaultContactFields();
  for (const auto& entry : overrides) {
    // Named references: clang 14 lets no lambda capture a structured binding.
    const std::string& field = entry.first;
    const std::string& path = entry.second;
    if (!IsContactField(field)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "mapping names \"" + field + "\", which is not a contact field");
    }
    auto it = std::find_if(m.user_fields.begin(), m.user_fields.end(),
                           [&](const auto& f) { return f.first == field; });
    if (path.empty()) {
      if (it != m.user_fields.end()) m.user_fields.erase(it);
      std::erase_if(m.contact_fields, [&](const auto& f) { return f.first == field; });
      m.removed.push_back(field);
      continue;
    }
    if (!IsPropertyPath(path)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "mapping of " + field + ": \"" + path + "\" is not a Graph property name");
    }
    // The manager is an object (a user or an org contact): by itself it
    // stands for its name, as the ldap source's manager does.
    const std::string read = path == kManager ? std::string(kManagerName) : path;
    if (it != m.user_fields.end()) {
      it->second = read;
    } else {
      m.user_fields.emplace_back(field, read);
    }
  }
  return m;
}

Result<GraphDirectoryPage> ParseGraphDirectoryPage(std::string_view json, GraphObjectKind kind,
                                                   const GraphMapping& mapping) {
  return ParsePage(json, &kind, &mapping);
}

// --- GraphDirectory -------------------------------------------------------------

struct GraphDirectory::State {
  GraphDirectoryOptions options;
  GraphMapping mapping;
  std::unique_ptr<graph::GraphClient> client;
  std::string prefix;
  std::string config;  // fingerprint of what the delta links track
  std::string users_delta_url, contacts_delta_url;
  std::string users_expand;  // "manager($select=...)" when the manager is read
  SavedCursor cursor;        // what Cursor() answers
  bool restored = false;     // the cursor (restored, or left by ReadAll) still holds
  struct Group {
    std::string id, display_name;
  };
  std::map<std::string, Group> groups;  // resolved, by the name configured
  // What Version() noticed (an expired delta link), for the ReadAll after it.
  std::vector<std::string> pending_warnings;

  // An id is taken as it is when `want_name` is false; else its display
  // name is read.
  Result<Group> ResolveGroup(const std::string& group, bool want_name);
  Status ReadUsers(std::vector<SourceRecord>& out, const std::string& select);
  Status ReadOrgContacts(std::vector<SourceRecord>& out);
  // Every page of a directory listing (users or organisational contacts).
  Status ReadObjects(std::vector<SourceRecord>& out, const std::string& url, GraphObjectKind kind);
  // The configured groups' transitive members (memberOf), read anew every
  // run that reads the source, and set on the records by ApplyMemberOf.
  std::vector<std::pair<Group, std::unordered_set<std::string>>> memberships;
  // What Version() found in the delta links, for the ReadChanges after it.
  std::optional<DeltaFound> pending;

  Status ReadMemberships();
  void ApplyMemberOf(std::vector<SourceRecord>& records) const;
  // The photos of records[0, users); `tags`, when given, gets each one's
  // ETag ("-" for none).
  Status ReadPhotos(std::vector<SourceRecord>& records, size_t users,
                    std::vector<std::string>& warnings, std::vector<std::string>* tags = nullptr);
  // The media ETag of each user's photo ("-" none), by $batch of metadata.
  Result<std::map<std::string, std::string>> PhotoTags(const std::vector<std::string>& ids);
  // The objects `ids` names, one GET each by $batch; one that is gone is
  // left out.
  Status ReadByIds(GraphObjectKind kind, const std::vector<std::string>& ids,
                   const std::string& user_select, std::vector<SourceRecord>& out);
  Result<std::string> LatestDeltaLink(const std::string& url);
  // Fresh links, then every user and org contact, memberships and photos;
  // the cursor is reset to the links (none when they could not be taken).
  Status ReadFull(std::vector<SourceRecord>& records, size_t& users, const std::string& user_select,
                  std::vector<std::string>* photo_tags, std::vector<std::string>& warnings);
  Result<SourceChanges> FullChanges(const std::string& user_select,
                                    std::vector<std::string>& warnings);
};

GraphDirectory::GraphDirectory(std::unique_ptr<State> state) : state_(std::move(state)) {}
GraphDirectory::~GraphDirectory() = default;

Result<std::unique_ptr<GraphDirectory>> OpenGraphDirectory(GraphDirectoryOptions o) {
  if (o.name.empty()) return MakeError(ErrorKind::kInvalidArgument, "a Graph source needs a name");
  const std::string prefix = "source " + o.name + ": ";
  auto invalid = [&](const std::string& what) {
    return MakeError(ErrorKind::kInvalidArgument, prefix + what);
  };
  if (o.tokens == nullptr) return invalid("no Graph credentials");
  if (!o.read_users && !o.read_org_contacts) {
    return invalid("reads neither users nor org contacts");
  }
  if (o.page_size < 1 || o.page_size > 999) return invalid("page_size must be 1 to 999");
  auto mapping = ResolveGraphMapping(o.mapping);
  if (!mapping.ok()) return invalid(mapping.error().message);
  std::set<std::string> select = {"id", "accountEnabled", "userType", "userPrincipalName", "mail"};
  // The manager is a navigation property: /users refuses it in $select and
  // returns it only $expand'ed, with the properties of it that are read
  // (GET /users?$expand=manager($select=displayName); Microsoft documents
  // $levels, a chain of managers, for one user only, never for the list).
  std::set<std::string> manager_select;
  auto add = [&](const std::string& path) {
    if (TopSegment(path) != kManager) {
      select.insert(TopSegment(path));
      return;
    }
    const std::string_view rest = std::string_view(path).substr(std::string_view(kManager).size());
    manager_select.insert(rest.empty() ? "displayName" : TopSegment(rest.substr(1)));
  };
  for (const auto& [field, path] : mapping->user_fields) add(path);
  for (const std::string& extra : o.extra_attributes) {
    // Contact fields, their summaries and memberOf are the record's
    // already; only Graph properties go to $select.
    if (IsContactField(extra) || extra == "phone" || extra == "any_email" || extra == "memberOf") {
      continue;
    }
    if (!IsPropertyPath(extra)) {
      return invalid("extra attribute \"" + extra + "\" is not a Graph property name");
    }
    add(extra);
  }
  if (manager_select.contains(kManager)) {
    return invalid(
        "the manager's manager cannot be read: Graph expands only a user's own manager "
        "when listing users");
  }
  for (const std::string& a : o.user_attributes) {
    if (!IsPropertyPath(a))
      return invalid("user attribute \"" + a + "\" is not a Graph property name");
    // Group members are read with $count=true (an advanced query), which
    // Microsoft documents $expand as not supported with.
    if (TopSegment(a) == kManager) {
      return invalid("user attribute \"" + a +
                     "\": the manager of a group's members cannot be read from Graph");
    }
  }
  for (const std::string& g : o.groups) {
    if (text::Trim(g).empty()) return invalid("an empty group name");
  }
  auto client = graph::GraphClient::Create(o.tokens, o.client);
  if (!client.ok()) return invalid(client.error().message);

  auto state = std::make_unique<GraphDirectory::State>();
  state->prefix = prefix;
  state->mapping = std::move(*mapping);
  state->client = std::move(*client);
  std::vector<std::string> user_select(select.begin(), select.end());
  std::set<std::string> delta_select = select;
  if (!manager_select.empty()) {
    // The manager's id too, so that a cached report knows whose change
    // must reach it (ReadChanges).
    manager_select.insert("id");
    state->users_expand = std::string(kManager) +
                          "($select=" + Join({manager_select.begin(), manager_select.end()}, ",") +
                          ")";
    // /users/delta takes no $expand, but $select=manager tracks who each
    // user's manager is (a change comes as "manager@delta"). A change of
    // the manager's own name is a change of the manager's own object, so
    // what is read of the manager is tracked on every user too. Either way
    // Version() answers "" and the next ReadAll reads everyone in full,
    // with every report's manager expanded afresh: a renamed manager's
    // reports get the new name in the same run. (A manager who is an org
    // contact is tracked by /contacts/delta, when org contacts are read.)
    delta_select.insert(kManager);
    delta_select.insert(manager_select.begin(), manager_select.end());
  }
  const std::string delta_list = Join({delta_select.begin(), delta_select.end()}, ",");
  state->users_delta_url = "/users/delta?$select=" + delta_list;
  state->contacts_delta_url = "/contacts/delta";
  // What the links track; without the manager, as it always was, so that
  // the cursors of earlier runs still hold.
  state->config =
      HashHex(delta_list + (state->users_expand.empty() ? "" : "\n" + state->users_expand) + "\n" +
              (o.read_users ? "u" : "") + (o.read_org_contacts ? "c" : "") + "\n" +
              state->client->graph_url());
  state->cursor.config = state->config;
  state->options = std::move(o);
  std::unique_ptr<GraphDirectory> dir(new GraphDirectory(std::move(state)));
  dir->user_select_ = std::move(user_select);
  dir->user_expand_ = dir->state_->users_expand;
  return dir;
}

Result<GraphDirectory::State::Group> GraphDirectory::State::ResolveGroup(const std::string& group,
                                                                         bool want_name) {
  const std::string name(text::Trim(group));
  if (auto it = groups.find(name); it != groups.end()) return it->second;
  Group resolved;
  if (IsGuid(name) && !want_name) return Group{text::AsciiLower(name), name};
  if (IsGuid(name)) {
    const std::string path = "/groups/" + text::AsciiLower(name);
    graph::GraphRequest request;
    request.url = path + "?$select=id,displayName";
    const std::string what = prefix + "reading group " + name;
    Result<graph::GraphResponse> response = client->Send(request);
    if (!response.ok()) return Prefixed(response.take_error(), what);
    if (response->status == 404) {
      return MakeError(ErrorKind::kNotFound, prefix + "group " + name + " does not exist");
    }
    if (!response->ok()) return FromResponse(*response, what, path);
    try {
      json j = json::parse(response->body);
      resolved.id = j.at("id").get<std::string>();
      auto dn = j.find("displayName");
      if (dn != j.end() && dn->is_string()) resolved.display_name = dn->get<std::string>();
    } catch (const json::exception&) {
      return Invalid(what + ": the answer is not a group");
    }
    if (!IsUsableId(resolved.id)) return Invalid(what + ": the answer has no usable id");
  } else {
    std::vector<Group> matches;
    ROSTER_RETURN_IF_ERROR(ReadPages(
        *client, prefix, "/groups?" + FilterByName(name) + "&$select=id,displayName", {},
        [&](std::string_view body, Links* links) -> Status {
          ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage page, ParsePage(body, nullptr, nullptr));
          for (SourceRecord& r : page.records) {
            auto dn = r.attributes.find("displayName");
            matches.push_back(
                {r.key, dn != r.attributes.end() && !dn->second.empty() ? dn->second[0] : name});
            if (matches.size() > 100) break;
          }
          links->next = matches.size() > 100 ? "" : page.next_link;
          return {};
        }));
    if (matches.empty()) {
      return MakeError(ErrorKind::kNotFound, prefix + "no group is named \"" + name + "\"");
    }
    if (matches.size() > 1) {
      return MakeError(ErrorKind::kInvalidArgument, prefix + std::to_string(matches.size()) +
                                                        " groups are named \"" + name +
                                                        "\"; name it by its object id instead");
    }
    resolved = matches[0];
  }
  if (resolved.display_name.empty()) resolved.display_name = name;
  groups[name] = resolved;
  return resolved;
}

Status GraphDirectory::State::ReadObjects(std::vector<SourceRecord>& out, const std::string& url,
                                          GraphObjectKind kind) {
  return ReadPages(*client, prefix, url, {}, [&](std::string_view body, Links* links) -> Status {
    ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage page, ParsePage(body, &kind, &mapping));
    if (page.removed > 0) return Invalid("the listing has @removed entries");
    for (SourceRecord& r : page.records) out.push_back(std::move(r));
    links->next = std::move(page.next_link);
    return {};
  });
}

Status GraphDirectory::State::ReadUsers(std::vector<SourceRecord>& out, const std::string& select) {
  // With an $expand Graph pages directory objects by 100 at most, whatever
  // $top asks (a known issue Microsoft lists); the nextLinks lead on alike.
  const std::string expand = users_expand.empty() ? "" : "&$expand=" + users_expand;
  return ReadObjects(
      out, "/users?$select=" + select + expand + "&$top=" + std::to_string(options.page_size),
      GraphObjectKind::kUser);
}

Status GraphDirectory::State::ReadOrgContacts(std::vector<SourceRecord>& out) {
  return ReadObjects(out, "/contacts?$top=" + std::to_string(options.page_size),
                     GraphObjectKind::kOrgContact);
}

Status GraphDirectory::State::ReadMemberships() {
  memberships.clear();
  for (const std::string& g : options.groups) {
    ROSTER_ASSIGN_OR_RETURN(Group group, ResolveGroup(g, true));
    std::unordered_set<std::string> members;
    ROSTER_RETURN_IF_ERROR(ReadPages(
        *client, prefix,
        "/groups/" + graph::EncodeSegment(group.id) + "/transitiveMembers?$select=id&$top=999", {},
        [&](std::string_view body, Links* links) -> Status {
          ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage page, ParsePage(body, nullptr, nullptr));
          for (const SourceRecord& r : page.records) members.insert(r.key);
          links->next = std::move(page.next_link);
          return {};
        }));
    memberships.emplace_back(std::move(group), std::move(members));
  }
  return {};
}

void GraphDirectory::State::ApplyMemberOf(std::vector<SourceRecord>& records) const {
  if (options.groups.empty()) return;
  std::unordered_map<std::string, SourceRecord*> by_key;
  for (SourceRecord& r : records) {
    r.attributes.erase("memberOf");
    by_key.emplace(r.key, &r);
  }
  for (const auto& [group, members] : memberships) {
    for (const std::string& id : members) {
      auto it = by_key.find(id);
      if (it == by_key.end()) continue;
      std::vector<std::string>& member_of = it->second->attributes["memberOf"];
      member_of.push_back(group.display_name);
      member_of.push_back(group.id);
    }
  }
}

Status GraphDirectory::State::ReadPhotos(std::vector<SourceRecord>& records, size_t users,
                                         std::vector<std::string>& warnings,
                                         std::vector<std::string>* tags) {
  if (tags != nullptr) tags->assign(users, "-");
  return BatchGet(
      *client, prefix + "reading user photos", users,
      [&](size_t i) -> const std::string& { return records[i].key; },
      [](const std::string& id) { return "/users/" + graph::EncodeSegment(id) + "/photo/$value"; },
      "the photo of ", "user ", "/users/x/photo",
      [&](size_t i, const graph::GraphResponse& a) -> Status {
        SourceRecord& record = records[i];
        if (a.status == 404) return {};  // ImageNotFound, or no mailbox to hold one
        if (tags != nullptr) (*tags)[i] = PhotoTag(a.Header("etag"));
        if (a.body.empty()) return {};
        if (a.body.size() > kMaxPhotoBytes) {
          warnings.push_back(prefix + "the photo of user " + Personal(record.key, record.key) +
                             " is larger than 4 MiB; left out");
          return {};
        }
        const std::string content_type = a.Header("content-type");
        std::string type = text::AsciiLower(
            text::Trim(std::string_view(content_type).substr(0, content_type.find(';'))));
        if (type != "image/png" && type != "image/gif") type = "image/jpeg";
        record.contact.photo = Photo{type, a.body, ""};
        return {};
      });
}

Result<std::map<std::string, std::string>> GraphDirectory::State::PhotoTags(
    const std::vector<std::string>& ids) {
  std::map<std::string, std::string> tags;
  const std::string what = prefix + "checking user photos";
  ROSTER_RETURN_IF_ERROR(BatchGet(
      *client, what, ids.size(), [&](size_t i) -> const std::string& { return ids[i]; },
      [](const std::string& id) { return "/users/" + graph::EncodeSegment(id) + "/photo"; },
      "the photo of ", "user ", "/users/x/photo",
      [&](size_t i, const graph::GraphResponse& a) -> Status {
        if (a.status == 404) {
          tags[ids[i]] = "-";
          return {};
        }
        Result<json> meta = ParsePageJson(a.body);
        if (!meta.ok()) {
          return Invalid(what + " (user " + Personal(ids[i], ids[i]) +
                         "): " + meta.error().message);
        }
        auto tag = meta->find("@odata.mediaEtag");
        tags[ids[i]] = tag != meta->end() && tag->is_string()
                           ? PhotoTag(tag->get_ref<const std::string&>())
                           : std::string("?");
        return {};
      }));
  return tags;
}

Status GraphDirectory::State::ReadByIds(GraphObjectKind kind, const std::vector<std::string>& ids,
                                        const std::string& user_select,
                                        std::vector<SourceRecord>& out) {
  const bool user = kind == GraphObjectKind::kUser;
  const std::string query =
      user ? "?$select=" + user_select + (users_expand.empty() ? "" : "&$expand=" + users_expand)
           : std::string();
  const std::string base = user ? "/users/" : "/contacts/";
  const char* type_name = user ? "#microsoft.graph.user" : "#microsoft.graph.orgContact";
  const std::string what =
      prefix + (user ? "reading changed users" : "reading changed org contacts");
  return BatchGet(
      *client, what, ids.size(), [&](size_t i) -> const std::string& { return ids[i]; },
      [&](const std::string& id) { return base + graph::EncodeSegment(id) + query; }, "object ",
      "object ", user ? "/users/x" : "/contacts/x",
      [&](size_t i, const graph::GraphResponse& a) -> Status {
        if (a.status == 404) return {};  // gone since the delta said it changed
        const std::string object = Personal(ids[i], ids[i]);
        Result<json> parsed = ParsePageJson(a.body);
        if (!parsed.ok()) {
          return Invalid(what + " (object " + object + "): " + parsed.error().message);
        }
        auto id = parsed->find("id");
        if (id == parsed->end() || !id->is_string() || *id != ids[i]) {
          return Invalid(what + ": the answer for object " + object + " is another object");
        }
        std::optional<SourceRecord> record;
        ROSTER_ASSIGN_OR_RETURN(record, ParseObject(*parsed, type_name, &kind, &mapping));
        if (record) out.push_back(std::move(*record));
        return {};
      });
}

Result<std::string> GraphDirectory::State::LatestDeltaLink(const std::string& url) {
  const std::string first =
      url + (url.find('?') == std::string::npos ? "?" : "&") + "$deltatoken=latest";
  // Graph answers $deltatoken=latest with a deltaLink and no objects; were
  // it to page objects after all, they are read and dropped. Were it
  // refused (400), a whole round does the same.
  Result<DeltaRound> round = FollowDelta(*client, prefix, first, {}, DirectoryDeltaPage);
  if (!round.ok() && (round.error().kind == ErrorKind::kInvalidData ||
                      round.error().kind == ErrorKind::kConflict)) {
    round = FollowDelta(*client, prefix, url, {}, DirectoryDeltaPage);
  }
  if (!round.ok()) return round.take_error();
  return round->delta_link;
}

Status GraphDirectory::State::ReadFull(std::vector<SourceRecord>& records, size_t& users,
                                       const std::string& user_select,
                                       std::vector<std::string>* photo_tags,
                                       std::vector<std::string>& warnings) {
  cursor = SavedCursor{config, {}, ""};
  restored = false;
  pending.reset();
  // The links come first: a change made while everything is read then
  // shows in the next Version(), never falls between.
  // Without them the next run reads in full again, nothing worse.
  std::vector<std::string> links(2);
  bool tracked = true;
  for (size_t i = 0; i < 2 && tracked; ++i) {
    if (!(i == 0 ? options.read_users : options.read_org_contacts)) continue;
    Result<std::string> link = LatestDeltaLink(i == 0 ? users_delta_url : contacts_delta_url);
    if (link.ok()) {
      links[i] = std::move(*link);
    } else {
      warnings.push_back(link.error().message + "; the next run reads in full");
      tracked = false;
    }
  }
  records.clear();
  if (options.read_users) ROSTER_RETURN_IF_ERROR(ReadUsers(records, user_select));
  users = records.size();
  if (options.read_org_contacts) ROSTER_RETURN_IF_ERROR(ReadOrgContacts(records));
  std::unordered_set<std::string> keys;
  for (const SourceRecord& r : records) {
    if (!keys.insert(r.key).second) {
      return Invalid(prefix + "the directory lists object " + r.key + " twice");
    }
  }
  ROSTER_RETURN_IF_ERROR(ReadMemberships());
  if (options.photos && users > 0) {
    ROSTER_RETURN_IF_ERROR(ReadPhotos(records, users, warnings, photo_tags));
  } else if (photo_tags != nullptr) {
    photo_tags->assign(users, "-");
  }
  if (tracked) {
    cursor.links = std::move(links);
    cursor.read_at = UnixNow();
  }
  return {};
}

Result<std::vector<SourceRecord>> GraphDirectory::ReadAll() {
  State& s = *state_;
  warnings_ = std::exchange(s.pending_warnings, {});
  std::vector<SourceRecord> records;
  size_t users = 0;
  ROSTER_RETURN_IF_ERROR(s.ReadFull(records, users, Join(user_select_, ","), nullptr, warnings_));
  s.ApplyMemberOf(records);
  if (!s.cursor.links.empty()) {
    s.cursor.version = HashRecords(records);
    // The links just taken can tell, right away, whether this read is still
    // current: the engine asks again after the read, to store the version.
    s.restored = true;
  }
  return records;
}

Result<std::string> GraphDirectory::Version() {
  State& s = *state_;
  s.pending.reset();
  // With groups a membership change is no user change; with photos read
  // more than a day ago a photo change may have passed unseen (a photo is a
  // navigation property, outside every delta).
  if (!s.restored || !s.options.groups.empty()) return std::string();
  if (s.options.photos && s.options.read_users &&
      UnixNow() - s.cursor.read_at > kPhotoRefreshSeconds) {
    return std::string();
  }
  std::optional<DeltaFound> found =
      CollectDeltas(*s.client, s.prefix, s.cursor.links, s.pending_warnings);
  if (!found) {
    s.restored = false;
    return std::string();
  }
  if (!found->any()) {
    s.cursor.links = std::move(found->links);
    return s.cursor.version;
  }
  // Kept for a delta read in this run; the saved links stay as they are
  // until the changes are read, so that a run that does not read them
  // finds them again next time.
  s.pending = std::move(found);
  return std::string();
}

namespace {

ObjectStamp StampOf(const SourceRecord& r, char kind, std::string photo) {
  ObjectStamp st;
  st.kind = kind;
  auto m = r.attributes.find("manager.id");
  if (m != r.attributes.end() && !m->second.empty()) st.manager = m->second.front();
  st.photo = std::move(photo);
  st.hash = HashRecord(r);
  return st;
}

}  // namespace

Result<SourceChanges> GraphDirectory::State::FullChanges(const std::string& user_select,
                                                         std::vector<std::string>& warnings) {
  std::vector<SourceRecord> records;
  size_t users = 0;
  std::vector<std::string> tags;
  ROSTER_RETURN_IF_ERROR(ReadFull(records, users, user_select, &tags, warnings));
  SourceChanges out;
  out.full = true;
  out.entries_read = static_cast<int64_t>(records.size());
  std::map<std::string, std::string> stamps;
  out.changed.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    std::string stamp = FormatStamp(
        StampOf(records[i], i < users ? 'u' : 'c', i < users ? tags[i] : std::string("-")));
    stamps.emplace(records[i].key, stamp);
    out.changed.push_back(StampedRecord{std::move(records[i]), std::move(stamp)});
  }
  if (!cursor.links.empty()) {
    cursor.digest = DigestStamps(stamps);
    cursor.version = "d" + cursor.digest;
    restored = true;
  }
  return out;
}

Result<SourceChanges> GraphDirectory::ReadChanges(
    const std::unordered_map<std::string, std::string>& cached) {
  State& s = *state_;
  warnings_ = std::exchange(s.pending_warnings, {});
  const std::string select = Join(user_select_, ",");
  std::optional<DeltaFound> found = std::exchange(s.pending, std::nullopt);
  std::map<std::string, std::string> stamps(cached.begin(), cached.end());
  // The cache must hold exactly what the links were taken after.
  if (!s.restored || s.cursor.digest.empty() || stamps.empty() ||
      DigestStamps(stamps) != s.cursor.digest) {
    return s.FullChanges(select, warnings_);
  }
  std::map<std::string, ObjectStamp> parsed;
  for (const auto& [key, stamp] : stamps) {
    std::optional<ObjectStamp> st = ParseStamp(stamp);
    if (!st) return s.FullChanges(select, warnings_);
    parsed.emplace(key, std::move(*st));
  }
  if (!found) found = CollectDeltas(*s.client, s.prefix, s.cursor.links, warnings_);
  if (!found) return s.FullChanges(select, warnings_);

  // What to read again: what changed, the reports of a manager who changed
  // or went (their expanded manager), and, when the photos are due, users
  // whose photo's media ETag is not the cached one.
  std::set<std::string> read[2] = {found->changed[0], found->changed[1]};
  std::unordered_set<std::string> touched(found->removed.begin(), found->removed.end());
  for (const std::set<std::string>& ids : found->changed) touched.insert(ids.begin(), ids.end());
  for (const auto& [key, st] : parsed) {
    if (!st.manager.empty() && touched.count(st.manager)) read[st.kind == 'u' ? 0 : 1].insert(key);
  }
  SourceChanges out;
  for (const std::string& id : found->removed) {
    read[0].erase(id);
    read[1].erase(id);
    if (stamps.count(id)) out.removed.push_back(id);
  }
  const bool sweep = s.options.photos && s.options.read_users &&
                     UnixNow() - s.cursor.read_at > kPhotoRefreshSeconds;
  std::map<std::string, std::string> swept;
  if (sweep) {
    std::vector<std::string> ids;
    for (const auto& [key, st] : parsed) {
      if (st.kind == 'u' && !read[0].count(key) && !found->removed.count(key)) ids.push_back(key);
    }
    ROSTER_ASSIGN_OR_RETURN(swept, s.PhotoTags(ids));
    for (const auto& [key, tag] : swept) {
      if (tag != parsed.at(key).photo) read[0].insert(key);
    }
  }
  // Past this many a delta saves nothing over a full read.
  const size_t limit = std::max<size_t>(1000, stamps.size() / 4);
  if (read[0].size() + read[1].size() > limit) return s.FullChanges(select, warnings_);

  std::vector<SourceRecord> fresh;
  const std::vector<std::string> users(read[0].begin(), read[0].end());
  ROSTER_RETURN_IF_ERROR(s.ReadByIds(GraphObjectKind::kUser, users, select, fresh));
  const size_t fresh_users = fresh.size();
  std::vector<std::string> tags(fresh_users, "-");
  if (s.options.photos && fresh_users > 0) {
    ROSTER_RETURN_IF_ERROR(s.ReadPhotos(fresh, fresh_users, warnings_, &tags));
    for (size_t i = 0; i < fresh_users; ++i) {
      // The metadata's tag, when the sweep read it, is the one the next
      // sweep compares with.
      auto it = swept.find(fresh[i].key);
      if (it != swept.end() && tags[i] != "-") tags[i] = it->second;
    }
  }
  const std::vector<std::string> contacts(read[1].begin(), read[1].end());
  ROSTER_RETURN_IF_ERROR(s.ReadByIds(GraphObjectKind::kOrgContact, contacts, select, fresh));
  ROSTER_RETURN_IF_ERROR(s.ReadMemberships());

  // Asked for but not answered (404): gone since the delta was read.
  std::unordered_set<std::string> answered;
  for (const SourceRecord& r : fresh) answered.insert(r.key);
  for (const std::set<std::string>& ids : read) {
    for (const std::string& id : ids) {
      if (!answered.count(id) && stamps.count(id)) out.removed.push_back(id);
    }
  }
  for (const std::string& id : out.removed) stamps.erase(id);
  out.entries_read = static_cast<int64_t>(fresh.size());
  for (size_t i = 0; i < fresh.size(); ++i) {
    std::string stamp = FormatStamp(StampOf(fresh[i], i < fresh_users ? 'u' : 'c',
                                            i < fresh_users ? tags[i] : std::string("-")));
    stamps[fresh[i].key] = stamp;
    out.changed.push_back(StampedRecord{std::move(fresh[i]), std::move(stamp)});
  }
  s.cursor.links = std::move(found->links);
  s.cursor.digest = DigestStamps(stamps);
  s.cursor.version = "d" + s.cursor.digest;
  if (sweep) s.cursor.read_at = UnixNow();
  s.restored = true;
  return out;
}

void GraphDirectory::Derive(std::vector<SourceRecord>& records) const {
  state_->ApplyMemberOf(records);
}

std::optional<std::vector<std::string>> GraphDirectory::DerivedDependents(
    const std::vector<SourceRecord>& records,
    const std::vector<const SourceRecord*>& touched) const {
  (void)records;
  (void)touched;
  if (!state_->options.groups.empty()) return std::nullopt;
  return std::vector<std::string>{};
}

std::string GraphDirectory::CacheShape() const {
  const State& s = *state_;
  std::string shape = "graph-directory-1\n" + s.config + "\n" + Join(user_select_, ",") + "\n" +
                      (s.options.photos ? "photos" : "no photos");
  for (const auto& [field, path] : s.mapping.user_fields) shape += "\nu " + field + "=" + path;
  for (const auto& [field, path] : s.mapping.contact_fields) shape += "\nc " + field + "=" + path;
  for (const std::string& field : s.mapping.removed) shape += "\n- " + field;
  return HashHex(shape);
}

void GraphDirectory::RestoreCursor(const std::string& saved) {
  State& s = *state_;
  s.restored = false;
  s.pending.reset();
  std::optional<SavedCursor> c = ParseCursor(saved, 2);
  if (!c || c->config != s.config) return;
  if (c->links[0].empty() == s.options.read_users) return;
  if (c->links[1].empty() == s.options.read_org_contacts) return;
  s.cursor = std::move(*c);
  s.restored = true;
}

std::string GraphDirectory::Cursor() const { return SerializeCursor(state_->cursor); }

Result<std::vector<DirectoryUser>> GraphDirectory::GroupMembers(const std::string& group,
                                                                const std::string& attribute) {
  State& s = *state_;
  const std::string attr = attribute.empty() ? "userPrincipalName" : attribute;
  if (!IsPropertyPath(attr)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     s.prefix + "\"" + attr + "\" is not a Graph property name");
  }
  ROSTER_ASSIGN_OR_RETURN(State::Group g, s.ResolveGroup(group, false));
  std::set<std::string> select = {"id",       "userPrincipalName", "mail", "accountEnabled",
                                  "userType", TopSegment(attr)};
  for (const std::string& a : s.options.user_attributes) select.insert(TopSegment(a));
  const std::string url = "/groups/" + graph::EncodeSegment(g.id) +
                          "/transitiveMembers/microsoft.graph.user?$select=" +
                          Join({select.begin(), select.end()}, ",") + "&$count=true&$top=999";
  std::vector<DirectoryUser> users;
  std::unordered_set<std::string> seen;
  const GraphObjectKind kind = GraphObjectKind::kUser;
  ROSTER_RETURN_IF_ERROR(
      ReadPages(*s.client, s.prefix, url, {{"ConsistencyLevel", "eventual"}},
                [&](std::string_view body, Links* links) -> Status {
                  ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage page, ParsePage(body, &kind, nullptr));
                  for (SourceRecord& r : page.records) {
                    if (!seen.insert(r.key).second) continue;
                    DirectoryUser u;
                    u.key = r.key;
                    u.dn = r.key;
                    if (auto it = r.attributes.find(attr); it != r.attributes.end())
                      u.values = it->second;
                    u.attributes = std::move(r.attributes);
                    users.push_back(std::move(u));
                  }
                  links->next = std::move(page.next_link);
                  return {};
                }));
  return users;
}

Result<std::vector<DirectoryUser>> GraphDirectory::SearchUsers(const std::string& query,
                                                               const std::string& attribute) {
  (void)query;
  (void)attribute;
  return MakeError(ErrorKind::kInvalidArgument,
                   state_->prefix + "a user search is not supported for Graph; use a group");
}

// --- the folder source ------------------------------------------------------------

namespace {

class GraphFolderSource final : public Source {
 public:
  GraphFolderSource(GraphFolderSourceOptions options, std::unique_ptr<graph::GraphClient> client)
      : options_(std::move(options)),
        client_(std::move(client)),
        prefix_("source " + options_.name + ": "),
        mailbox_path_("/users/" + graph::EncodeSegment(options_.mailbox)) {
    config_ = HashHex(options_.mailbox + "\n" + options_.folder + "\n" + client_->graph_url());
    cursor_.config = config_;
  }

  Result<std::vector<SourceRecord>> ReadAll() override;
  std::vector<std::string> Warnings() const override { return warnings_; }
  Result<std::string> Version() override;
  // With the cache: the folder's contacts delta from the saved link, whose
  // pages carry changed contacts whole (Outlook's contact delta), so nothing
  // is read again; a full read when the link fails, the cache is not what
  // the link was taken after (the digest of its stamps), or more than
  // max(1000, a quarter) changed.
  bool ReadsChanges() const override { return true; }
  Result<SourceChanges> ReadChanges(
      const std::unordered_map<std::string, std::string>& cached) override;
  std::string CacheShape() const override { return HashHex("graph-folder-1\n" + config_); }
  void RestoreCursor(const std::string& saved) override {
    restored_ = false;
    std::optional<SavedCursor> c = ParseCursor(saved, 1);
    if (!c || c->config != config_ || c->links[0].empty()) return;
    cursor_ = std::move(*c);
    restored_ = true;
  }
  std::string Cursor() const override { return SerializeCursor(cursor_); }

 private:
  Result<std::string> ResolveFolder();
  static Headers PageSize() { return {{"Prefer", "odata.maxpagesize=1000"}}; }
  Result<SourceChanges> FullChanges();
  // A page of the folder's list or delta as records (contact and raw
  // attributes); `removed` gets a delta's removed ids.
  static Status PageRecords(std::string_view body, GraphPageKind kind,
                            std::vector<SourceRecord>& out, std::vector<std::string>* removed,
                            Links* links);

  GraphFolderSourceOptions options_;
  std::unique_ptr<graph::GraphClient> client_;
  std::string prefix_;
  std::string mailbox_path_;
  std::string config_;
  SavedCursor cursor_;
  bool restored_ = false;
  std::vector<std::string> warnings_;
  std::vector<std::string> pending_warnings_;  // from Version(), for the next ReadAll
};

Result<std::string> GraphFolderSource::ResolveFolder() {
  std::string parent;  // empty: the mailbox's top level
  std::string_view rest = options_.folder;
  std::string walked;
  while (true) {
    const size_t slash = rest.find('/');
    const std::string name(text::Trim(rest.substr(0, slash)));
    walked += (walked.empty() ? "" : "/") + name;
    const std::string base = parent.empty()
                                 ? mailbox_path_ + "/contactFolders"
                                 : mailbox_path_ + "/contactFolders/" + parent + "/childFolders";
    std::vector<std::string> ids;
    ROSTER_RETURN_IF_ERROR(ReadPages(
        *client_, prefix_, base + "?" + FilterByName(name) + "&$select=id,displayName", {},
        [&](std::string_view body, Links* links) -> Status {
          ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage page, ParsePage(body, nullptr, nullptr));
          for (const SourceRecord& r : page.records) ids.push_back(r.key);
          links->next = ids.size() > 100 ? "" : page.next_link;
          return {};
        }));
    if (ids.empty()) {
      return MakeError(ErrorKind::kNotFound, prefix_ + "mailbox " + options_.mailbox +
                                                 " has no contact folder \"" + walked + "\"");
    }
    if (ids.size() > 1) {
      return MakeError(ErrorKind::kInvalidArgument, prefix_ + "mailbox " + options_.mailbox +
                                                        " has " + std::to_string(ids.size()) +
                                                        " contact folders named \"" + walked +
                                                        "\"");
    }
    parent = graph::EncodeSegment(ids[0]);
    if (slash == std::string_view::npos) return parent;
    rest = rest.substr(slash + 1);
  }
}

Result<std::vector<SourceRecord>> GraphFolderSource::ReadAll() {
  warnings_ = std::exchange(pending_warnings_, {});
  cursor_ = SavedCursor{config_, {}, ""};
  restored_ = false;
  ROSTER_ASSIGN_OR_RETURN(std::string folder, ResolveFolder());
  const std::string contacts = mailbox_path_ + "/contactFolders/" + folder + "/contacts";
  // Outlook documents no $deltatoken=latest: a whole round, its objects
  // dropped. Without it the next run reads in full again, nothing worse.
  Result<DeltaRound> round =
      FollowDelta(*client_, prefix_, contacts + "/delta", PageSize(), FolderDeltaPage);
  if (!round.ok()) warnings_.push_back(round.error().message + "; the next run reads in full");
  std::vector<SourceRecord> records;
  std::unordered_set<std::string> keys;
  ROSTER_RETURN_IF_ERROR(ReadPages(
      *client_, prefix_, contacts + "?$top=1000", {},
      [&](std::string_view body, Links* links) -> Status {
        const size_t before = records.size();
        ROSTER_RETURN_IF_ERROR(PageRecords(body, GraphPageKind::kList, records, nullptr, links));
        for (size_t i = before; i < records.size(); ++i) {
          if (!keys.insert(records[i].key).second) {
            return Invalid("contact " + records[i].key + " is listed twice");
          }
        }
        return {};
      }));
  if (round.ok()) {
    cursor_.links = {std::move(round->delta_link)};
    cursor_.version = HashRecords(records);
    cursor_.read_at = UnixNow();
    restored_ = true;  // as for the directory: Version() may be asked right after
  }
  return records;
}

Result<std::string> GraphFolderSource::Version() {
  if (!restored_) return std::string();
  SavedCursor saved = cursor_;
  const size_t warned = pending_warnings_.size();
  std::string version =
      CheckDeltas(*client_, prefix_, saved, PageSize(), FolderDeltaPage, pending_warnings_);
  if (!version.empty()) {
    cursor_ = std::move(saved);
    return version;
  }
  // A link that failed is read in full; a change keeps the saved link, for
  // a delta read in this run or, when the run reads nothing, the next one.
  if (pending_warnings_.size() > warned) restored_ = false;
  return std::string();
}

Status GraphFolderSource::PageRecords(std::string_view body, GraphPageKind kind,
                                      std::vector<SourceRecord>& out,
                                      std::vector<std::string>* removed, Links* links) {
  ROSTER_ASSIGN_OR_RETURN(GraphContactPage page, ParseGraphContactPage(body, "", kind));
  ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage raw, ParsePage(body, nullptr, nullptr));
  std::unordered_map<std::string, Attributes*> attributes;
  for (SourceRecord& r : raw.records) attributes.emplace(r.key, &r.attributes);
  for (GraphContact& c : page.items) {
    if (!c.parse_error.empty()) {
      return Invalid("contact " + c.id + " cannot be read: " + c.parse_error);
    }
    SourceRecord record;
    record.key = c.id;
    record.contact = std::move(c.contact);
    if (auto it = attributes.find(record.key); it != attributes.end()) {
      record.attributes = std::move(*it->second);
    }
    out.push_back(std::move(record));
  }
  if (removed != nullptr) {
    removed->insert(removed->end(), page.removed.begin(), page.removed.end());
  }
  links->next = std::move(page.next_link);
  links->delta = std::move(page.delta_link);
  return {};
}

Result<SourceChanges> GraphFolderSource::FullChanges() {
  ROSTER_ASSIGN_OR_RETURN(std::vector<SourceRecord> records, ReadAll());
  SourceChanges out;
  out.full = true;
  out.entries_read = static_cast<int64_t>(records.size());
  std::map<std::string, std::string> stamps;
  for (SourceRecord& r : records) {
    std::string stamp = FormatStamp(ObjectStamp{'c', "", "-", HashRecord(r)});
    stamps.emplace(r.key, stamp);
    out.changed.push_back(StampedRecord{std::move(r), std::move(stamp)});
  }
  if (restored_) {
    cursor_.digest = DigestStamps(stamps);
    cursor_.version = "d" + cursor_.digest;
  }
  return out;
}

Result<SourceChanges> GraphFolderSource::ReadChanges(
    const std::unordered_map<std::string, std::string>& cached) {
  std::map<std::string, std::string> stamps(cached.begin(), cached.end());
  if (!restored_ || cursor_.digest.empty() || stamps.empty() || cursor_.links.size() != 1 ||
      DigestStamps(stamps) != cursor_.digest) {
    return FullChanges();
  }
  const std::string link = cursor_.links[0];
  Status allowed = CheckCursorLink(*client_, link);
  if (!allowed.ok()) {
    pending_warnings_.push_back(prefix_ + "the saved delta link is refused (" +
                                allowed.error().message + "); reading in full");
    return FullChanges();
  }
  // The latest word on a contact counts, as in the directory's delta.
  std::map<std::string, SourceRecord> changed;
  std::set<std::string> removed;
  Result<DeltaRound> round = FollowDelta(
      *client_, prefix_, link, PageSize(),
      [&](std::string_view body, Links* links) -> Result<bool> {
        std::vector<SourceRecord> records;
        std::vector<std::string> gone;
        ROSTER_RETURN_IF_ERROR(PageRecords(body, GraphPageKind::kDelta, records, &gone, links));
        for (SourceRecord& r : records) {
          removed.erase(r.key);
          std::string key = r.key;
          changed.insert_or_assign(std::move(key), std::move(r));
        }
        for (const std::string& id : gone) {
          changed.erase(id);
          removed.insert(id);
        }
        return !records.empty() || !gone.empty();
      });
  if (!round.ok()) {
    pending_warnings_.push_back(round.error().message + "; reading in full");
    return FullChanges();
  }
  if (changed.size() > std::max<size_t>(1000, stamps.size() / 4)) return FullChanges();
  warnings_ = std::exchange(pending_warnings_, {});
  SourceChanges out;
  for (const std::string& id : removed) {
    if (stamps.erase(id) > 0) out.removed.push_back(id);
  }
  out.entries_read = static_cast<int64_t>(changed.size());
  for (auto& [key, record] : changed) {
    std::string stamp = FormatStamp(ObjectStamp{'c', "", "-", HashRecord(record)});
    stamps[key] = stamp;
    out.changed.push_back(StampedRecord{std::move(record), std::move(stamp)});
  }
  cursor_.links = {std::move(round->delta_link)};
  cursor_.digest = DigestStamps(stamps);
  cursor_.version = "d" + cursor_.digest;
  return out;
}

}  // namespace

Result<std::unique_ptr<Source>> OpenGraphFolderSource(GraphFolderSourceOptions o) {
  if (o.name.empty()) return MakeError(ErrorKind::kInvalidArgument, "a Graph source needs a name");
  const std::string prefix = "source " + o.name + ": ";
  auto invalid = [&](const std::string& what) {
    return MakeError(ErrorKind::kInvalidArgument, prefix + what);
  };
  if (o.tokens == nullptr) return invalid("no Graph credentials");
  if (text::Trim(o.mailbox).empty()) return invalid("no mailbox");
  if (text::Trim(o.folder).empty()) return invalid("no folder");
  size_t start = 0;
  while (true) {
    const size_t slash = o.folder.find('/', start);
    if (text::Trim(std::string_view(o.folder).substr(start, slash - start)).empty()) {
      return invalid("folder \"" + o.folder + "\" has an empty level");
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  auto client = graph::GraphClient::Create(o.tokens, o.client);
  if (!client.ok()) return invalid(client.error().message);
  return std::unique_ptr<Source>(new GraphFolderSource(std::move(o), std::move(*client)));
}

}  // namespace roster
