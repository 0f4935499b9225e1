// The rules follow the in-process twin in connectors/memory/graph_like.cc
// (ToGraph, FromGraph, ProjectContact) one for one, so that the emulator and
// the real adapter project alike; where they differ (birthdays that are no
// date, year 1604, text Graph cannot carry) the comments below say why.
#include "connectors/graph/projection.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <variant>

#include "connectors/graph/graph_props.h"
#include "core/text.h"

namespace roster::graph_detail {
namespace {

struct ScalarProp {
  const char* name;
  std::string Contact::*field;
};

constexpr std::array<ScalarProp, 12> kScalarProps = {{
    {"displayName", &Contact::formatted_name},
    {"givenName", &Contact::given_name},
    {"surname", &Contact::family_name},
    {"middleName", &Contact::additional_names},
    {"title", &Contact::honorific_prefix},
    {"generation", &Contact::honorific_suffix},
    {"nickName", &Contact::nickname},
    {"companyName", &Contact::organization},
    {"department", &Contact::department},
    {"jobTitle", &Contact::title},
    {"manager", &Contact::manager},
    {"personalNotes", &Contact::note},
}};

// Graph's three addresses and the type each reads back with.
struct AddressProp {
  const char* name;
  const char* type;
};
constexpr std::array<AddressProp, 3> kAddressProps = {
    {{"businessAddress", "work"}, {"homeAddress", "home"}, {"otherAddress", "other"}}};

bool HasType(const std::vector<std::string>& types, std::string_view want) {
  bool preferred = false;
  for (const std::string& t : text::NormalizeTypes(types, false, &preferred)) {
    if (t == want) return true;
  }
  return false;
}

bool IsPreferred(const TypedValue& tv, bool is_email) {
  bool preferred = tv.preferred;
  text::NormalizeTypes(tv.types, is_email, &preferred);
  return preferred;
}

// The values that are not blank, preferred ones first, otherwise in order:
// which three e-mail addresses (or which phone of a slot) Graph keeps.
std::vector<const TypedValue*> PreferredFirst(const std::vector<TypedValue>& values,
                                              bool is_email) {
  std::vector<const TypedValue*> out;
  for (const TypedValue& tv : values) {
    if (!text::Trim(tv.value).empty()) out.push_back(&tv);
  }
  std::stable_partition(out.begin(), out.end(),
                        [&](const TypedValue* tv) { return IsPreferred(*tv, is_email); });
  return out;
}

// Every phone by the Graph property it could go to; fax, pager and other
// numbers have none.
struct PhoneSlots {
  std::vector<std::string> mobile, business, home;
};

PhoneSlots SlotPhones(const std::vector<TypedValue>& phones) {
  PhoneSlots slots;
  for (const TypedValue* tv : PreferredFirst(phones, false)) {
    const std::string_view field = PhoneFieldName(*tv);
    if (field == "mobile") slots.mobile.push_back(tv->value);
    if (field == "work_phone") slots.business.push_back(tv->value);
    if (field == "home_phone") slots.home.push_back(tv->value);
  }
  return slots;
}

// Business: the first address typed work, else the first typed neither home
// nor other (as the work address is read elsewhere); home: the first typed
// home; other: the first typed other, else the first left not typed home.
// What Graph gives back is chosen the same way again.
std::array<const PostalAddress*, 3> ChooseAddresses(const std::vector<PostalAddress>& addresses) {
  std::array<const PostalAddress*, 3> chosen{};
  auto pick = [&](auto&& fits) -> const PostalAddress* {
    for (const PostalAddress& a : addresses) {
      if (&a != chosen[0] && &a != chosen[1] && &a != chosen[2] && fits(a)) return &a;
    }
    return nullptr;
  };
  chosen[0] = pick([](const PostalAddress& a) { return HasType(a.types, "work"); });
  if (!chosen[0]) {
    chosen[0] = pick([](const PostalAddress& a) {
      return !HasType(a.types, "home") && !HasType(a.types, "other");
    });
  }
  chosen[1] = pick([](const PostalAddress& a) { return HasType(a.types, "home"); });
  chosen[2] = pick([](const PostalAddress& a) { return HasType(a.types, "other"); });
  if (!chosen[2])
    chosen[2] = pick([](const PostalAddress& a) { return !HasType(a.types, "home"); });
  return chosen;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int Number(std::string_view digits) {
  int n = 0;
  for (char c : digits) n = n * 10 + (c - '0');
  return n;
}

// Whether month/day exist in `year` (0: no year, where 02-29 exists). Graph
// refuses a whole create over an impossible date, so none is ever sent.
bool IsCalendarDate(int year, int month, int day) {
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1]) return false;
  if (month == 2 && day == 29 && year != 0) {
    return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
  }
  return true;
}

std::string MonthDay(std::string_view mm, std::string_view dd) {
  if (!IsCalendarDate(0, Number(mm), Number(dd))) return {};
  return "--" + std::string(mm) + "-" + std::string(dd);
}

// A date with a year; the year 1604 is Graph's "no year" (see kNoYear), so
// a source that writes it so reads back as what it means. Year 0 does not
// exist in an Edm.DateTimeOffset.
std::string FullDate(std::string_view yyyy, std::string_view mm, std::string_view dd) {
  if (yyyy == kNoYear) return MonthDay(mm, dd);
  const int year = Number(yyyy);
  if (year < 1 || !IsCalendarDate(year, Number(mm), Number(dd))) return {};
  return std::string(yyyy) + "-" + std::string(mm) + "-" + std::string(dd);
}

void PutValue(Props& p, const std::string& name, std::string_view value) {
  if (!value.empty()) p[name] = {GraphText(value)};
}

void PutValues(Props& p, const std::string& name, std::vector<std::string> values, size_t most) {
  if (values.size() > most) values.resize(most);
  for (std::string& v : values) v = GraphText(v);
  if (!values.empty()) p[name] = std::move(values);
}

void PutAddresses(Props& p, const std::vector<PostalAddress>& addresses) {
  const std::array<const PostalAddress*, 3> chosen = ChooseAddresses(addresses);
  for (size_t i = 0; i < kAddressProps.size(); ++i) {
    const PostalAddress* a = chosen[i];
    if (!a) continue;
    std::vector<std::string> parts = {GraphText(a->street), GraphText(a->locality),
                                      GraphText(a->region), GraphText(a->postal_code),
                                      GraphText(a->country)};
    if (std::any_of(parts.begin(), parts.end(), [](const auto& s) { return !s.empty(); })) {
      p[kAddressProps[i].name] = std::move(parts);
    }
  }
  if (chosen[0]) PutValue(p, "officeLocation", chosen[0]->extended);
}

// What a Graph connector sends for the contact (its photo apart): what does
// not fit Graph's shape is dropped, not refused.
Props ToGraph(const Contact& c) {
  Props p;
  for (const ScalarProp& s : kScalarProps) PutValue(p, s.name, c.*s.field);
  PutValue(p, "birthday", GraphBirthday(c.birthday));
  std::vector<std::string> categories;
  for (const std::string& cat : c.categories) {
    if (!text::Trim(cat).empty()) categories.push_back(cat);
  }
  PutValues(p, "categories", std::move(categories), SIZE_MAX);
  std::vector<std::string> emails;
  for (const TypedValue* tv : PreferredFirst(c.emails, true)) emails.push_back(tv->value);
  PutValues(p, "emailAddresses", std::move(emails), kGraphMaxEmails);
  PhoneSlots phones = SlotPhones(c.phones);
  PutValues(p, "mobilePhone", std::move(phones.mobile), 1);
  PutValues(p, "businessPhones", std::move(phones.business), kGraphMaxBusinessPhones);
  PutValues(p, "homePhones", std::move(phones.home), kGraphMaxHomePhones);
  PutAddresses(p, c.addresses);
  const std::vector<const TypedValue*> urls = PreferredFirst(c.urls, false);
  if (!urls.empty()) PutValue(p, "businessHomePage", urls.front()->value);
  return p;
}

const std::vector<std::string>& Values(const Props& p, const std::string& name) {
  static const std::vector<std::string> kNone;
  auto it = p.find(name);
  return it == p.end() ? kNone : it->second;
}

std::string Value(const Props& p, const std::string& name) {
  const std::vector<std::string>& v = Values(p, name);
  return v.empty() ? std::string() : v.front();
}

void ReadAddresses(const Props& p, Contact& c) {
  for (const AddressProp& prop : kAddressProps) {
    const std::vector<std::string>& v = Values(p, prop.name);
    if (v.size() != 5) continue;
    PostalAddress a;
    a.types = {prop.type};
    a.street = v[0];
    a.locality = v[1];
    a.region = v[2];
    a.postal_code = v[3];
    a.country = v[4];
    c.addresses.push_back(std::move(a));
  }
  const std::string office = Value(p, "officeLocation");
  if (office.empty()) return;
  auto business = std::find_if(c.addresses.begin(), c.addresses.end(),
                               [](const PostalAddress& a) { return a.types[0] == "work"; });
  if (business == c.addresses.end()) {
    business = c.addresses.insert(c.addresses.begin(), PostalAddress{{"work"}});
  }
  business->extended = office;
}

std::string Join(const std::string& a, const std::string& b, std::string_view sep) {
  if (a.empty() || b.empty()) return a + b;
  return a + std::string(sep) + b;
}

// Appends the code point `cp` (< 0x110000, no surrogate) as UTF-8.
void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The code point of the well-formed UTF-8 sequence at s[i] and its length,
// or nullopt (overlong forms, surrogates, past U+10FFFF, cut short).
std::optional<std::pair<uint32_t, size_t>> DecodeUtf8(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return std::make_pair(uint32_t{b}, size_t{1});
  size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
  if (len == 0 || b > 0xF4 || i + len > s.size()) return std::nullopt;
  uint32_t cp = b & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (c & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  return std::make_pair(cp, len);
}

}  // namespace

const std::vector<Property>& Properties() {
  static const std::vector<Property> kProperties = [] {
    std::vector<Property> props;
    for (const ScalarProp& s : kScalarProps) props.push_back({s.name, Shape::kString});
    for (const char* name : {"mobilePhone", "officeLocation", "businessHomePage"}) {
      props.push_back({name, Shape::kString});
    }
    for (const char* name : {"businessPhones", "homePhones", "categories"}) {
      props.push_back({name, Shape::kStrings});
    }
    props.push_back({"emailAddresses", Shape::kEmails});
    for (const AddressProp& a : kAddressProps) props.push_back({a.name, Shape::kAddress});
    props.push_back({"birthday", Shape::kBirthday});
    return props;
  }();
  return kProperties;
}

std::string GraphText(std::string_view s) {
  static constexpr uint32_t kReplacement = 0xFFFD;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto decoded = DecodeUtf8(s, i);
    if (!decoded) {
      AppendUtf8(out, kReplacement);
      ++i;
      continue;
    }
    const uint32_t cp = decoded->first;
    const bool control = (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7F;
    if (control) {
      AppendUtf8(out, kReplacement);
    } else {
      out.append(s.substr(i, decoded->second));
    }
    i += decoded->second;
  }
  return out;
}

// Graph keeps a birthday as a date and time: a date is kept as YYYY-MM-DD, a
// date without a year as --MM-DD, other text is lost.
std::string GraphBirthday(std::string_view b) {
  b = text::Trim(b);
  if (b.size() >= 10 && AllDigits(b.substr(0, 4)) && b[4] == '-' && AllDigits(b.substr(5, 2)) &&
      b[7] == '-' && AllDigits(b.substr(8, 2)) && (b.size() == 10 || b[10] == 'T')) {
    return FullDate(b.substr(0, 4), b.substr(5, 2), b.substr(8, 2));
  }
  if (b.size() == 8 && AllDigits(b)) return FullDate(b.substr(0, 4), b.substr(4, 2), b.substr(6));
  if (b.starts_with("--") && b.size() == 7 && AllDigits(b.substr(2, 2)) && b[4] == '-' &&
      AllDigits(b.substr(5, 2))) {
    return MonthDay(b.substr(2, 2), b.substr(5, 2));
  }
  if (b.starts_with("--") && b.size() == 6 && AllDigits(b.substr(2))) {
    return MonthDay(b.substr(2, 2), b.substr(4, 2));
  }
  return {};
}

Props ProjectedProps(const Contact& contact) {
  Props p = ToGraph(contact);
  // What Outlook fills when the client did not: "Given Surname".
  if (!p.count("displayName")) {
    PutValue(p, "displayName", Join(Value(p, "givenName"), Value(p, "surname"), " "));
  }
  return p;
}

// The contact a Graph connector reads back from the properties.
Contact FromProps(const Props& p) {
  Contact c;
  for (const ScalarProp& s : kScalarProps) c.*s.field = Value(p, s.name);
  c.birthday = Value(p, "birthday");
  c.categories = Values(p, "categories");
  for (const std::string& e : Values(p, "emailAddresses")) c.emails.push_back({e, {}, false});
  for (const std::string& v : Values(p, "mobilePhone")) c.phones.push_back({v, {"cell"}, false});
  for (const std::string& v : Values(p, "businessPhones")) {
    c.phones.push_back({v, {"work", "voice"}, false});
  }
  for (const std::string& v : Values(p, "homePhones")) {
    c.phones.push_back({v, {"home", "voice"}, false});
  }
  ReadAddresses(p, c);
  for (const std::string& v : Values(p, "businessHomePage")) c.urls.push_back({v, {"work"}, false});
  return c;
}

}  // namespace roster::graph_detail

namespace roster {

std::optional<Photo> GraphPhotoOf(const Contact& contact) {
  if (!contact.photo) return std::nullopt;
  const std::string& data = contact.photo->data;
  // A photo is sent as bytes; one given only by URI cannot be. Exchange
  // takes JPEG and PNG: anything else would be refused on every run.
  const bool jpeg = data.size() >= 3 && data.compare(0, 3, "\xff\xd8\xff") == 0;
  const bool png = data.size() >= 8 && data.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
  if ((!jpeg && !png) || data.size() > kGraphMaxPhotoBytes) return std::nullopt;
  return Photo{contact.photo->media_type, data, ""};
}

Contact ProjectGraphContact(const Contact& contact) {
  Contact out = graph_detail::FromProps(graph_detail::ProjectedProps(contact));
  out.photo = GraphPhotoOf(contact);
  return out;
}

ItemBody ProjectGraphContact(const ItemBody& body) {
  if (const Contact* c = std::get_if<Contact>(&body)) return ProjectGraphContact(*c);
  return body;
}

}  // namespace roster
