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

std::string HashRecords(const std::vector<SourceRecord>& records) {
  std::vector<const SourceRecord*> sorted;
  sorted.reserve(records.size());
  for (const SourceRecord& r : records) sorted.push_back(&r);
  std::sort(sorted.begin(), sorted.end(),
            [](const SourceRecord* a, const SourceRecord* b) { return a->key < b->key; });
  std::string all;
  for (const SourceRecord* r : sorted) {
    std::string one;
    AppendField(one, r->key);
    AppendField(one, ContentHash(r->contact));
    AppendField(one, r->contact.photo ? HashHex(r->contact.photo->data) : std::string());
    for (const auto& [name, values] : r->attributes) {
      AppendField(one, name);
      AppendField(one, std::to_string(values.size()));
      for (const std::string& v : values) AppendField(one, v);
    }
    AppendField(all, HashHex(one));
  }
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
      continue;
    }
    if (type_name != nullptr) {
      auto type = object.find("@odata.type");
      if (type != object.end() && (!type->is_string() || *type != type_name)) continue;
    }
    SourceRecord record;
    record.key = id->get<std::string>();
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
    out.records.push_back(std::move(record));
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

// What Cursor() carries: the delta links and the version of the content
// read when they were taken, for the configuration `config` names.
struct SavedCursor {
  std::string config;
  std::vector<std::string> links;  // in the source's fixed order; "" for a kind not read
  std::string version;
  int64_t read_at = 0;  // when the content was read in full (Unix seconds)
};

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string SerializeCursor(const SavedCursor& c) {
  if (c.version.empty()) return "";
  return json{{"format", 1},
              {"config", c.config},
              {"links", c.links},
              {"version", c.version},
              {"read_at", c.read_at}}
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
  Status AddMemberOf(std::vector<SourceRecord>& records);
  Status ReadPhotos(std::vector<SourceRecord>& records, size_t users,
                    std::vector<std::string>& warnings);
  Result<std::string> LatestDeltaLink(const std::string& url);
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

Status GraphDirectory::State::AddMemberOf(std::vector<SourceRecord>& records) {
  std::unordered_map<std::string, SourceRecord*> by_key;
  for (SourceRecord& r : records) by_key.emplace(r.key, &r);
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
    for (const std::string& id : members) {
      auto it = by_key.find(id);
      if (it == by_key.end()) continue;
      std::vector<std::string>& member_of = it->second->attributes["memberOf"];
      member_of.push_back(group.display_name);
      member_of.push_back(group.id);
    }
  }
  return {};
}

Status GraphDirectory::State::ReadPhotos(std::vector<SourceRecord>& records, size_t users,
                                         std::vector<std::string>& warnings) {
  for (size_t start = 0; start < users; start += graph::kMaxBatchRequests) {
    const size_t end = std::min(users, start + graph::kMaxBatchRequests);
    std::vector<graph::GraphRequest> requests;
    for (size_t i = start; i < end; ++i) {
      graph::GraphRequest r;
      r.url = "/users/" + graph::EncodeSegment(records[i].key) + "/photo/$value";
      requests.push_back(std::move(r));
    }
    const std::string what = prefix + "reading user photos";
    Result<std::vector<graph::GraphResponse>> answers = client->Batch(requests);
    if (!answers.ok()) return Prefixed(answers.take_error(), what);
    if (answers->size() != requests.size()) return Invalid(what + ": the batch answer is short");
    for (size_t i = start; i < end; ++i) {
      const graph::GraphResponse& a = (*answers)[i - start];
      SourceRecord& record = records[i];
      if (a.status == 404) continue;  // ImageNotFound, or no mailbox to hold one
      if (a.status == 0) {
        return MakeError(ErrorKind::kTransient, what + ": the batch answer lacks the photo of " +
                                                    Personal(record.key, record.key));
      }
      if (!a.ok())
        return FromResponse(a, what + " (user " + Personal(record.key, record.key) + ")",
                            "/users/x/photo");
      if (a.body.empty()) continue;
      if (a.body.size() > kMaxPhotoBytes) {
        warnings.push_back(prefix + "the photo of user " + Personal(record.key, record.key) +
                           " is larger than 4 MiB; left out");
        continue;
      }
      const std::string content_type = a.Header("content-type");
      std::string type = text::AsciiLower(
          text::Trim(std::string_view(content_type).substr(0, content_type.find(';'))));
      if (type != "image/png" && type != "image/gif") type = "image/jpeg";
      record.contact.photo = Photo{type, a.body, ""};
    }
  }
  return {};
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

Result<std::vector<SourceRecord>> GraphDirectory::ReadAll() {
  State& s = *state_;
  warnings_ = std::exchange(s.pending_warnings, {});
  s.cursor = SavedCursor{s.config, {}, ""};
  s.restored = false;
  // The links come first: a change made while everything is read then
  // shows in the next Version(), never falls between.
  // Without them the next run reads in full again, nothing worse.
  std::vector<std::string> links(2);
  bool tracked = true;
  for (size_t i = 0; i < 2 && tracked; ++i) {
    if (!(i == 0 ? s.options.read_users : s.options.read_org_contacts)) continue;
    Result<std::string> link = s.LatestDeltaLink(i == 0 ? s.users_delta_url : s.contacts_delta_url);
    if (link.ok()) {
      links[i] = std::move(*link);
    } else {
      warnings_.push_back(link.error().message + "; the next run reads in full");
      tracked = false;
    }
  }
  std::vector<SourceRecord> records;
  if (s.options.read_users) {
    ROSTER_RETURN_IF_ERROR(s.ReadUsers(records, Join(user_select_, ",")));
  }
  const size_t users = records.size();
  if (s.options.read_org_contacts) ROSTER_RETURN_IF_ERROR(s.ReadOrgContacts(records));
  std::unordered_set<std::string> keys;
  for (const SourceRecord& r : records) {
    if (!keys.insert(r.key).second) {
      return Invalid(s.prefix + "the directory lists object " + r.key + " twice");
    }
  }
  ROSTER_RETURN_IF_ERROR(s.AddMemberOf(records));
  if (s.options.photos && users > 0)
    ROSTER_RETURN_IF_ERROR(s.ReadPhotos(records, users, warnings_));
  if (tracked) {
    s.cursor.links = std::move(links);
    s.cursor.version = HashRecords(records);
    s.cursor.read_at = UnixNow();
    // The links just taken can tell, right away, whether this read is still
    // current: the engine asks again after the read, to store the version.
    s.restored = true;
  }
  return records;
}

Result<std::string> GraphDirectory::Version() {
  State& s = *state_;
  if (!s.restored || !s.options.groups.empty()) return std::string();
  s.restored = false;
  // A photo change is no change to a delta (a photo is a navigation
  // property), so with photos the content is read in full at least daily.
  if (s.options.photos && UnixNow() - s.cursor.read_at > kPhotoRefreshSeconds) {
    s.cursor.version.clear();
    return std::string();
  }
  SavedCursor saved = s.cursor;
  s.cursor.version.clear();  // until the links prove nothing changed
  std::string version =
      CheckDeltas(*s.client, s.prefix, saved, {}, DirectoryDeltaPage, s.pending_warnings);
  if (version.empty()) return std::string();
  s.cursor = std::move(saved);
  s.restored = true;
  return version;
}

void GraphDirectory::RestoreCursor(const std::string& saved) {
  State& s = *state_;
  s.restored = false;
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
        ROSTER_ASSIGN_OR_RETURN(GraphContactPage page,
                                ParseGraphContactPage(body, "", GraphPageKind::kList));
        ROSTER_ASSIGN_OR_RETURN(GraphDirectoryPage raw, ParsePage(body, nullptr, nullptr));
        std::unordered_map<std::string, Attributes*> attributes;
        for (SourceRecord& r : raw.records) attributes.emplace(r.key, &r.attributes);
        for (GraphContact& c : page.items) {
          if (!c.parse_error.empty()) {
            return Invalid("contact " + c.id + " cannot be read: " + c.parse_error);
          }
          if (!keys.insert(c.id).second) return Invalid("contact " + c.id + " is listed twice");
          SourceRecord record;
          record.key = c.id;
          record.contact = std::move(c.contact);
          if (auto it = attributes.find(record.key); it != attributes.end()) {
            record.attributes = std::move(*it->second);
          }
          records.push_back(std::move(record));
        }
        links->next = std::move(page.next_link);
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
  restored_ = false;
  SavedCursor saved = cursor_;
  cursor_.version.clear();
  std::string version =
      CheckDeltas(*client_, prefix_, saved, PageSize(), FolderDeltaPage, pending_warnings_);
  if (version.empty()) return std::string();
  cursor_ = std::move(saved);
  restored_ = true;
  return version;
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
