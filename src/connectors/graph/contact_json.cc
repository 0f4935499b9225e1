// nlohmann::json stays inside this file: the header speaks JSON text, so no
// caller compiles the library's headers, and every exception it can throw is
// caught here and turned into a Result.
#include "connectors/graph/contact_json.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <utility>

#include "connectors/graph/graph_props.h"
#include "connectors/graph/projection.h"
#include "core/text.h"

namespace roster {
namespace {

using graph_detail::Property;
using graph_detail::Props;
using graph_detail::Shape;
using nlohmann::json;

constexpr std::string_view kMarkerPrefix = "roster:v1:";
constexpr char kExtendedProperties[] = "singleValueExtendedProperties";
constexpr size_t kMaxIdBytes = 1024;    // Exchange ids are about 150 bytes
constexpr size_t kMaxEtagBytes = 1024;  // as CardDAV's etags
constexpr int kMaxDepth = 32;           // a page of contacts nests 5 deep

Error Invalid(std::string message) {
  return MakeError(ErrorKind::kInvalidData, std::move(message));
}

std::string Quoted(std::string_view name) { return "'" + std::string(name) + "'"; }

std::string Described(const json& v) {
  return (v.is_array() || v.is_object() ? "an " : "a ") + std::string(v.type_name());
}

// "the property 'x' is a number, not a string": every type error says the
// same, so an administrator can find the property in the answer.
Error WrongType(std::string_view property, const json& v, std::string_view want) {
  return Invalid("the property " + Quoted(property) + " is " + Described(v) + ", not " +
                 std::string(want));
}

std::string Dump(const json& j) {
  // Contact text is valid UTF-8 already (GraphText); a marker property id
  // from the configuration might not be, and must not make dump() throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// --- writing ---------------------------------------------------------------------

const std::vector<std::string>& Values(const Props& p, std::string_view name) {
  static const std::vector<std::string> kNone;
  auto it = p.find(std::string(name));
  return it == p.end() ? kNone : it->second;
}

// Edm.DateTimeOffset of a projected birthday: midnight UTC of the date, the
// year 1604 standing for none.
std::string DateTimeOffset(const std::string& date) {
  const std::string full =
      date.starts_with("--") ? std::string(graph_detail::kNoYear) + date.substr(1) : date;
  return full + "T00:00:00Z";
}

// graph.physicalAddress from the five parts; `with_nulls` writes empty
// members as null (a PATCH), else leaves them out (a POST).
json AddressJson(const std::vector<std::string>& parts, bool with_nulls) {
  json a = json::object();
  for (size_t i = 0; i < parts.size() && i < std::size(graph_detail::kAddressParts); ++i) {
    const std::string member(graph_detail::kAddressParts[i]);
    if (!parts[i].empty()) {
      a[member] = parts[i];
    } else if (with_nulls) {
      a[member] = nullptr;
    }
  }
  return a;
}

// Outlook shows an address's name where mail is addressed; the contact's
// display name is what a user would have typed there.
json EmailsJson(const std::vector<std::string>& addresses, const std::string& display_name) {
  json out = json::array();
  for (const std::string& address : addresses) {
    out.push_back({{"address", address}, {"name", display_name.empty() ? address : display_name}});
  }
  return out;
}

// The JSON of one property, null when the contact does not have it.
json PropertyJson(const Props& p, const Property& prop, bool with_nulls) {
  const std::vector<std::string>& v = Values(p, prop.name);
  if (v.empty()) return nullptr;
  switch (prop.shape) {
    case Shape::kString:
      return v.front();
    case Shape::kStrings:
      return json(v);
    case Shape::kEmails: {
      const std::vector<std::string>& name = Values(p, "displayName");
      return EmailsJson(v, name.empty() ? std::string() : name.front());
    }
    case Shape::kAddress:
      return AddressJson(v, with_nulls);
    case Shape::kBirthday:
      return DateTimeOffset(v.front());
  }
  return nullptr;
}

// How a PATCH says that a property is no longer set.
json ClearJson(Shape shape) {
  switch (shape) {
    case Shape::kStrings:
    case Shape::kEmails:
      return json::array();
    case Shape::kAddress:
      return AddressJson(std::vector<std::string>(5), true);
    case Shape::kString:
    case Shape::kBirthday:
      break;
  }
  return nullptr;
}

json MarkerJson(const std::string& property_id, const ManagedTag& tag) {
  return json::array({{{"id", property_id}, {"value", EncodeGraphMarker(tag)}}});
}

// --- reading ---------------------------------------------------------------------

Result<json> ParseJson(std::string_view text, size_t max_bytes, const std::string& what) {
  if (text.size() > max_bytes) {
    return Invalid(what + " is larger than " + std::to_string(max_bytes >> 10) + " KiB");
  }
  if (JsonNestsDeeperThan(text, kMaxDepth)) {
    return Invalid(what + " nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    const bool utf8 = std::string_view(e.what()).find("UTF-8") != std::string_view::npos;
    return Invalid(what + " is not valid JSON (" + (utf8 ? "invalid UTF-8 " : "") + "at byte " +
                   std::to_string(e.byte) + ")");
  }
}

const json* Member(const json& obj, std::string_view name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool IsIdChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '=';
}

// Graph's ids (immutable ones too) are URL-safe base64 of an Exchange entry
// id: an id of other characters is not one, and is never put in a URL.
Result<std::string> ReadId(const json& obj) {
  const json* id = Member(obj, "id");
  if (!id) return Invalid("it has no id");
  if (!id->is_string()) return WrongType("id", *id, "a string");
  const std::string& s = id->get_ref<const std::string&>();
  if (s.empty() || s.size() > kMaxIdBytes || !std::all_of(s.begin(), s.end(), IsIdChar)) {
    return Invalid("its id is not a Graph id (URL-safe base64, at most 1 KiB)");
  }
  return s;
}

// An etag or changeKey: sent back in If-Match, so printable ASCII, bounded.
Status ReadToken(const json& obj, std::string_view name, std::string* out) {
  const json* v = Member(obj, name);
  if (!v) return {};
  if (!v->is_string()) return WrongType(name, *v, "a string");
  const std::string& s = v->get_ref<const std::string&>();
  if (s.size() > kMaxEtagBytes ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7E; })) {
    return Invalid("the property " + Quoted(name) +
                   " is not usable (control characters, or longer than 1 KiB)");
  }
  *out = s;
  return {};
}

const json* Array(const json& obj, std::string_view name, Status* status) {
  const json* v = Member(obj, name);
  if (!v) return nullptr;
  if (!v->is_array()) {
    *status = WrongType(name, *v, "an array");
    return nullptr;
  }
  if (v->size() > kMaxGraphArrayEntries) {
    *status = Invalid("the property " + Quoted(name) + " has more than " +
                      std::to_string(kMaxGraphArrayEntries) + " entries");
    return nullptr;
  }
  return v;
}

Status ReadStrings(const json& obj, std::string_view name, std::vector<std::string>* out) {
  Status status;
  const json* v = Array(obj, name, &status);
  if (!v) return status;
  for (const json& e : *v) {
    if (e.is_null()) continue;
    if (!e.is_string()) return WrongType(name, e, "a string in an array");
    std::string s = graph_detail::GraphText(e.get_ref<const std::string&>());
    if (!s.empty()) out->push_back(std::move(s));
  }
  return {};
}

Status ReadEmails(const json& obj, std::string_view name, std::vector<std::string>* out) {
  Status status;
  const json* v = Array(obj, name, &status);
  if (!v) return status;
  for (const json& e : *v) {
    if (e.is_null()) continue;
    if (!e.is_object()) return WrongType(name, e, "an emailAddress object");
    const json* address = Member(e, "address");
    if (!address) continue;  // a name alone addresses nothing
    if (!address->is_string()) return WrongType("address", *address, "a string");
    std::string s = graph_detail::GraphText(address->get_ref<const std::string&>());
    if (!s.empty()) out->push_back(std::move(s));
  }
  return {};
}

Status ReadAddress(const json& v, std::string_view name, std::vector<std::string>* out) {
  if (!v.is_object()) return WrongType(name, v, "a physicalAddress object");
  std::vector<std::string> parts;
  for (std::string_view member : graph_detail::kAddressParts) {
    const json* part = Member(v, member);
    if (part && !part->is_string()) {
      return WrongType(std::string(name) + "." + std::string(member), *part, "a string");
    }
    parts.push_back(part ? graph_detail::GraphText(part->get_ref<const std::string&>()) : "");
  }
  // Graph answers {} for an address that is not set.
  if (std::any_of(parts.begin(), parts.end(), [](const auto& s) { return !s.empty(); })) {
    *out = std::move(parts);
  }
  return {};
}

int Digits(std::string_view s, size_t at, size_t n) {
  if (at + n > s.size()) return -1;
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

// Minutes east of UTC of "Z", "+HH:MM" or "-HH:MM" (nothing: UTC); nullopt
// for anything else.
std::optional<int> UtcOffsetMinutes(std::string_view zone) {
  if (zone.empty() || zone == "Z" || zone == "z") return 0;
  if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || zone[3] != ':') return std::nullopt;
  const int h = Digits(zone, 1, 2), m = Digits(zone, 4, 2);
  if (h < 0 || m < 0 || h > 14 || m > 59) return std::nullopt;
  return (zone[0] == '-' ? -1 : 1) * (h * 60 + m);
}

// The date `days` (-1..2) after y-m-d, as "YYYY-MM-DD".
std::string AddDays(int y, int m, int d, int days) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  auto month_days = [&](int yy, int mm) {
    const bool leap = yy % 4 == 0 && (yy % 100 != 0 || yy % 400 == 0);
    return kDays[mm - 1] + (mm == 2 && leap ? 1 : 0);
  };
  for (; days > 0; --days) {
    if (++d > month_days(y, m)) {
      d = 1;
      if (++m > 12) m = 1, ++y;
    }
  }
  for (; days < 0; ++days) {
    if (--d < 1) {
      if (--m < 1) m = 12, --y;
      d = month_days(y, m);
    }
  }
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02d", y, m, d);
  return buf;
}

// The date an Edm.DateTimeOffset birthday stands for: the day whose
// midnight UTC is nearest. roster writes midnight UTC; Outlook writes the
// midnight of its own time zone (a day early in UTC east of Greenwich), so
// rounding reads both as meant for clients within 12 hours of UTC.
std::optional<std::string> BirthdayDate(std::string_view s) {
  const int y = Digits(s, 0, 4), mo = Digits(s, 5, 2), d = Digits(s, 8, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || s.size() < 16 || s[4] != '-' ||
      s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':') {
    return std::nullopt;
  }
  const int h = Digits(s, 11, 2), mi = Digits(s, 14, 2);
  if (h < 0 || h > 23 || mi < 0 || mi > 59) return std::nullopt;
  size_t zone = 16;  // seconds and a fraction are allowed and do not count
  if (zone < s.size() && s[zone] == ':') {
    if (Digits(s, zone + 1, 2) < 0) return std::nullopt;
    zone += 3;
    if (zone < s.size() && s[zone] == '.') {
      do ++zone;
      while (zone < s.size() && s[zone] >= '0' && s[zone] <= '9');
    }
  }
  const std::optional<int> offset = UtcOffsetMinutes(s.substr(zone));
  if (!offset) return std::nullopt;
  if (graph_detail::GraphBirthday(s.substr(0, 10)).empty()) return std::nullopt;
  const int minutes = h * 60 + mi - *offset + 12 * 60;  // from noon of the day before
  const int shift = (minutes < 0 ? -1 : minutes / (24 * 60));
  std::string date = graph_detail::GraphBirthday(AddDays(y, mo, d, shift));
  if (date.empty()) return std::nullopt;
  return date;
}

Status ReadBirthday(const json& v, std::vector<std::string>* out) {
  if (!v.is_string()) return WrongType("birthday", v, "an Edm.DateTimeOffset string");
  std::optional<std::string> date = BirthdayDate(v.get_ref<const std::string&>());
  if (!date) return Invalid("the property 'birthday' is not an Edm.DateTimeOffset of a real date");
  *out = {std::move(*date)};
  return {};
}

Status ReadProperty(const json& obj, const Property& prop, Props* props) {
  const json* v = Member(obj, prop.name);
  if (!v) return {};
  std::vector<std::string> values;
  Status status;
  switch (prop.shape) {
    case Shape::kString:
      if (!v->is_string()) return WrongType(prop.name, *v, "a string");
      values.push_back(graph_detail::GraphText(v->get_ref<const std::string&>()));
      if (values.front().empty()) values.clear();
      break;
    case Shape::kStrings:
      status = ReadStrings(obj, prop.name, &values);
      break;
    case Shape::kEmails:
      status = ReadEmails(obj, prop.name, &values);
      break;
    case Shape::kAddress:
      status = ReadAddress(*v, prop.name, &values);
      break;
    case Shape::kBirthday:
      status = ReadBirthday(*v, &values);
      break;
  }
  if (!status.ok()) return status;
  if (!values.empty()) (*props)[std::string(prop.name)] = std::move(values);
  return {};
}

// roster's marker among the expanded extended properties, if it is there.
Result<std::optional<ManagedTag>> ReadMarker(const json& obj, const std::string& marker_id) {
  Status status;
  const json* list = Array(obj, kExtendedProperties, &status);
  if (!list || marker_id.empty()) {
    if (!status.ok()) return status.take_error();
    return std::optional<ManagedTag>();
  }
  for (const json& e : *list) {
    if (!e.is_object()) return WrongType(kExtendedProperties, e, "an object in an array");
    const json* id = Member(e, "id");
    const json* value = Member(e, "value");
    if (!id || !id->is_string()) continue;
    if (!SameGraphPropertyId(id->get_ref<const std::string&>(), marker_id) || !value) continue;
    if (!value->is_string()) return WrongType("value", *value, "a string");
    std::optional<ManagedTag> tag = DecodeGraphMarker(value->get_ref<const std::string&>());
    if (!tag) return Invalid("its roster marker is not one this version of roster wrote");
    return tag;
  }
  return std::optional<ManagedTag>();
}

// Everything of a contact object but its id.
Status ReadContact(const json& obj, const std::string& marker_id, GraphContact* out) {
  ROSTER_RETURN_IF_ERROR(ReadToken(obj, "@odata.etag", &out->etag));
  ROSTER_RETURN_IF_ERROR(ReadToken(obj, "changeKey", &out->change_key));
  ROSTER_ASSIGN_OR_RETURN(out->tag, ReadMarker(obj, marker_id));
  Props props;
  for (const Property& prop : graph_detail::Properties()) {
    ROSTER_RETURN_IF_ERROR(ReadProperty(obj, prop, &props));
  }
  // Projected again, so that what Graph keeps beyond roster's limits (or a
  // server that keeps more) compares as the projection of a source does.
  out->contact = ProjectGraphContact(graph_detail::FromProps(props));
  return {};
}

Status ReadLink(const json& page, std::string_view name, std::string* out) {
  const json* v = Member(page, name);
  if (!v) return {};
  if (!v->is_string()) return WrongType(name, *v, "a string");
  const std::string& s = v->get_ref<const std::string&>();
  const bool printable =
      std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c <= 0x7E; });
  if (s.size() > kMaxGraphLinkBytes || !printable ||
      !(text::StartsWithNoCase(s, "https://") || text::StartsWithNoCase(s, "http://"))) {
    return Invalid("the " + std::string(name) + " is not an absolute http(s) URL of at most " +
                   std::to_string(kMaxGraphLinkBytes >> 10) + " KiB");
  }
  *out = s;
  return {};
}

// One entry of a page's value array, added to `page`.
Status ReadPageItem(const json& item, const std::string& marker_id, GraphPageKind kind,
                    GraphContactPage* page) {
  if (!item.is_object()) return Invalid("it is " + Described(item) + ", not an object");
  ROSTER_ASSIGN_OR_RETURN(std::string id, ReadId(item));
  if (item.contains("@removed")) {
    if (kind == GraphPageKind::kList) return Invalid("it is an @removed entry in a listing");
    page->removed.push_back(std::move(id));
    return {};
  }
  GraphContact c;
  c.id = std::move(id);
  if (Status s = ReadContact(item, marker_id, &c); !s.ok()) {
    GraphContact unreadable;
    unreadable.id = std::move(c.id);
    unreadable.parse_error = "Graph contact " + unreadable.id + ": " + s.error().message;
    c = std::move(unreadable);
  }
  page->items.push_back(std::move(c));
  return {};
}

Result<GraphContactPage> ReadPage(const json& doc, const std::string& marker_id,
                                  GraphPageKind kind) {
  if (!doc.is_object()) return Invalid("a page of Graph contacts is not a JSON object");
  const json* value = Member(doc, "value");
  if (!value || !value->is_array()) {
    return Invalid("a page of Graph contacts has no 'value' array");
  }
  if (value->size() > kMaxGraphPageItems) {
    return Invalid("a page of Graph contacts holds more than " +
                   std::to_string(kMaxGraphPageItems) + " items");
  }
  GraphContactPage page;
  for (size_t i = 0; i < value->size(); ++i) {
    if (Status s = ReadPageItem((*value)[i], marker_id, kind, &page); !s.ok()) {
      return Invalid("a page of Graph contacts: item " + std::to_string(i + 1) + ": " +
                     s.error().message);
    }
  }
  const std::pair<const char*, std::string*> links[] = {{"@odata.nextLink", &page.next_link},
                                                        {"@odata.deltaLink", &page.delta_link}};
  for (const auto& [name, out] : links) {
    if (Status s = ReadLink(doc, name, out); !s.ok()) {
      return Invalid("a page of Graph contacts: " + s.error().message);
    }
  }
  if (kind == GraphPageKind::kDelta && page.next_link.empty() == page.delta_link.empty()) {
    return Invalid(page.next_link.empty()
                       ? "a delta page of Graph contacts has neither an @odata.nextLink nor an "
                         "@odata.deltaLink: the answer was cut short"
                       : "a delta page of Graph contacts has both an @odata.nextLink and an "
                         "@odata.deltaLink");
  }
  return page;
}

// The canonical form SameGraphPropertyId compares: tokens separated by one
// space, all lower case but a Name's name; as written when malformed.
std::string CanonicalPropertyId(std::string_view id) {
  id = text::Trim(id);
  std::vector<std::string_view> head;
  size_t pos = 0;
  while (head.size() < 3) {
    pos = id.find_first_not_of(text::kWhitespace, pos);
    if (pos == std::string_view::npos) break;
    const size_t end = std::min(id.find_first_of(text::kWhitespace, pos), id.size());
    head.push_back(id.substr(pos, end - pos));
    pos = end;
  }
  const std::string_view rest = pos < id.size() ? text::Trim(id.substr(pos)) : std::string_view();
  if (head.size() == 2 && rest.empty()) {
    return text::AsciiLower(head[0]) + " " + text::AsciiLower(head[1]);
  }
  if (head.size() == 3 && !rest.empty()) {
    const bool by_name = text::EqualsNoCase(head[2], "name");
    return text::AsciiLower(head[0]) + " " + text::AsciiLower(head[1]) + " " +
           text::AsciiLower(head[2]) + " " + (by_name ? std::string(rest) : text::AsciiLower(rest));
  }
  return std::string(id);
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      const int byte = text::PercentEscapeAt(s, i);
      if (byte < 0) return std::nullopt;
      out.push_back(static_cast<char>(byte));
      i += 2;
    } else if (text::IsUrlUnreserved(static_cast<unsigned char>(s[i]))) {
      out.push_back(s[i]);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace

std::string EncodeGraphMarker(const ManagedTag& tag) {
  return std::string(kMarkerPrefix) + text::PercentEncode(tag.rule) + ":" +
         text::PercentEncode(tag.key);
}

std::optional<ManagedTag> DecodeGraphMarker(std::string_view value) {
  if (!value.starts_with(kMarkerPrefix)) return std::nullopt;
  value.remove_prefix(kMarkerPrefix.size());
  const size_t colon = value.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::optional<std::string> rule = PercentDecode(value.substr(0, colon));
  std::optional<std::string> key = PercentDecode(value.substr(colon + 1));
  if (!rule || !key || rule->empty() || key->empty()) return std::nullopt;
  return ManagedTag{std::move(*rule), std::move(*key)};
}

bool SameGraphPropertyId(std::string_view a, std::string_view b) {
  return CanonicalPropertyId(a) == CanonicalPropertyId(b);
}

std::string GraphContactBody(const Contact& projected, const ManagedTag* tag,
                             const std::string& marker_property_id) {
  const Props props = graph_detail::ProjectedProps(projected);
  json body = json::object();
  for (const Property& prop : graph_detail::Properties()) {
    json v = PropertyJson(props, prop, false);
    if (!v.is_null()) body[std::string(prop.name)] = std::move(v);
  }
  if (tag && !marker_property_id.empty()) {
    body[kExtendedProperties] = MarkerJson(marker_property_id, *tag);
  }
  return Dump(body);
}

std::string GraphContactPatch(const Contact& before, const Contact& after,
                              const ManagedTag* tag_before, const ManagedTag* tag_after,
                              const std::string& marker_property_id) {
  const Props from = graph_detail::ProjectedProps(before);
  const Props to = graph_detail::ProjectedProps(after);
  json patch = json::object();
  for (const Property& prop : graph_detail::Properties()) {
    json was = PropertyJson(from, prop, true);
    json is = PropertyJson(to, prop, true);
    if (was == is) continue;
    patch[std::string(prop.name)] = is.is_null() ? ClearJson(prop.shape) : std::move(is);
  }
  if (tag_after && !marker_property_id.empty() && (!tag_before || *tag_before != *tag_after)) {
    patch[kExtendedProperties] = MarkerJson(marker_property_id, *tag_after);
  }
  return patch.empty() ? std::string() : Dump(patch);
}

Result<GraphContact> ParseGraphContact(std::string_view json_text,
                                       const std::string& marker_property_id) {
  try {
    ROSTER_ASSIGN_OR_RETURN(json doc,
                            ParseJson(json_text, kMaxGraphContactBytes, "a Graph contact"));
    if (!doc.is_object()) return Invalid("a Graph contact is not a JSON object");
    Result<std::string> id = ReadId(doc);
    if (!id.ok()) return Invalid("a Graph contact: " + id.error().message);
    GraphContact c;
    c.id = std::move(id).value();
    if (Status s = ReadContact(doc, marker_property_id, &c); !s.ok()) {
      return Invalid("Graph contact " + c.id + ": " + s.error().message);
    }
    return c;
  } catch (const std::exception& e) {
    return Invalid("a Graph contact could not be read: " + text::SafeForOutput(e.what()));
  }
}

Result<GraphContactPage> ParseGraphContactPage(std::string_view json_text,
                                               const std::string& marker_property_id,
                                               GraphPageKind kind) {
  try {
    ROSTER_ASSIGN_OR_RETURN(json doc,
                            ParseJson(json_text, kMaxGraphPageBytes, "a page of Graph contacts"));
    return ReadPage(doc, marker_property_id, kind);
  } catch (const std::exception& e) {
    return Invalid("a page of Graph contacts could not be read: " + text::SafeForOutput(e.what()));
  }
}

bool JsonNestsDeeperThan(std::string_view s, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char ch : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > limit) return true;
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace roster
