#include "core/contact.h"

#include <algorithm>
#include <array>

#include "core/hash.h"
#include "core/text.h"

namespace roster {
namespace {

using text::AsciiLower;
using text::StartsWithNoCase;
using text::StripTelScheme;
using text::Trim;

// CRLF, CR and LF are the same line break to every client, and vCard can only
// carry LF ("\n"), so only LF may count.
std::string Norm(std::string_view s) { return text::NormalizeText(s); }

// One tagged, length-prefixed field: "tag 5:value\n". The length makes the
// form unambiguous whatever bytes a value holds.
void Put(std::string& out, std::string_view tag, std::string_view value) {
  out += tag;
  out += ' ';
  out += std::to_string(value.size());
  out += ':';
  out += value;
  out += '\n';
}

void PutIfSet(std::string& out, std::string_view tag, std::string_view value) {
  const std::string v = Norm(value);
  if (!v.empty()) Put(out, tag, v);
}

// Types as a set: lower case, trimmed, comma lists split, "pref" folded into
// the preferred flag (vCard 3.0 spells preference as a type). For e-mail,
// "internet" is vCard 3.0's default and says nothing.
std::vector<std::string> CanonicalTypes(const std::vector<std::string>& types, bool is_email,
                                        bool* preferred) {
  std::vector<std::string> out = text::NormalizeTypes(types, is_email, preferred);
  std::sort(out.begin(), out.end());
  return out;
}

std::string CanonicalMediaType(std::string_view media_type) {
  return text::NormalizeMediaType(media_type);
}

void PutTypedValues(std::string& out, std::string_view tag, const std::vector<TypedValue>& values,
                    bool is_email, bool is_phone) {
  std::vector<std::string> entries;
  for (const TypedValue& tv : values) {
    std::string value = Norm(tv.value);
    if (is_phone) value = StripTelScheme(value);
    if (value.empty()) continue;
    bool preferred = tv.preferred;
    const std::vector<std::string> types = CanonicalTypes(tv.types, is_email, &preferred);
    std::string entry;
    Put(entry, "value", value);
    for (const std::string& t : types) Put(entry, "type", t);
    if (preferred) Put(entry, "pref", "1");
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end());
  for (const std::string& e : entries) Put(out, tag, e);
}

// --- flat field access -----------------------------------------------------

enum class EmailKind { kWork, kHome, kOther };
enum class PhoneKind { kMobile, kFax, kPager, kWork, kHome, kOther };

bool HasType(const std::vector<std::string>& types, std::string_view want) {
  for (const std::string& t : types) {
    if (AsciiLower(Trim(t)) == want) return true;
  }
  return false;
}

// Every e-mail falls in exactly one column, so a CSV export loses none. An
// untyped address counts as the main ("email") one.
EmailKind ClassifyEmail(const TypedValue& email) {
  if (HasType(email.types, "work")) return EmailKind::kWork;
  if (HasType(email.types, "home")) return EmailKind::kHome;
  bool ignored = false;
  if (CanonicalTypes(email.types, true, &ignored).empty()) return EmailKind::kWork;
  return EmailKind::kOther;
}

PhoneKind ClassifyPhone(const TypedValue& phone) {
  if (HasType(phone.types, "cell")) return PhoneKind::kMobile;
  if (HasType(phone.types, "fax")) return PhoneKind::kFax;
  if (HasType(phone.types, "pager")) return PhoneKind::kPager;
  if (HasType(phone.types, "work")) return PhoneKind::kWork;
  if (HasType(phone.types, "home")) return PhoneKind::kHome;
  return PhoneKind::kOther;
}

// The work address is the first one typed "work", else the first one not
// typed "home"; the home address is the first typed "home".
// Templates serve both the const reader and the mutable writer.
template <typename Addresses>
auto FindAddress(Addresses& addresses, bool home) -> decltype(&addresses.front()) {
  if (home) {
    for (auto& a : addresses) {
      if (HasType(a.types, "home")) return &a;
    }
    return nullptr;
  }
  for (auto& a : addresses) {
    if (HasType(a.types, "work")) return &a;
  }
  for (auto& a : addresses) {
    if (!HasType(a.types, "home")) return &a;
  }
  return nullptr;
}

template <typename Address>
auto AddressPart(Address& a, std::string_view part) -> decltype(&a.street) {
  if (part == "office") return &a.extended;
  if (part == "street") return &a.street;
  if (part == "city") return &a.locality;
  if (part == "region") return &a.region;
  if (part == "postal_code") return &a.postal_code;
  if (part == "country") return &a.country;
  return nullptr;
}

template <typename C>
auto ScalarField(C& c, std::string_view field) -> decltype(&c.given_name) {
  if (field == "given_name") return &c.given_name;
  if (field == "family_name") return &c.family_name;
  if (field == "middle_name") return &c.additional_names;
  if (field == "prefix") return &c.honorific_prefix;
  if (field == "suffix") return &c.honorific_suffix;
  if (field == "display_name") return &c.formatted_name;
  if (field == "nickname") return &c.nickname;
  if (field == "organization") return &c.organization;
  if (field == "department") return &c.department;
  if (field == "title") return &c.title;
  if (field == "role") return &c.role;
  if (field == "manager") return &c.manager;
  if (field == "note") return &c.note;
  if (field == "birthday") return &c.birthday;
  return nullptr;
}

struct TypedField {
  std::string_view name;
  bool email;  // else phone
  int kind;    // EmailKind or PhoneKind
  std::array<std::string_view, 2> types;
};

constexpr std::array<TypedField, 9> kTypedFields = {{
    {"email", true, static_cast<int>(EmailKind::kWork), {"work", ""}},
    {"email_home", true, static_cast<int>(EmailKind::kHome), {"home", ""}},
    {"email_other", true, static_cast<int>(EmailKind::kOther), {"other", ""}},
    {"mobile", false, static_cast<int>(PhoneKind::kMobile), {"cell", ""}},
    {"work_phone", false, static_cast<int>(PhoneKind::kWork), {"work", "voice"}},
    {"home_phone", false, static_cast<int>(PhoneKind::kHome), {"home", "voice"}},
    {"fax", false, static_cast<int>(PhoneKind::kFax), {"work", "fax"}},
    {"pager", false, static_cast<int>(PhoneKind::kPager), {"pager", ""}},
    {"phone_other", false, static_cast<int>(PhoneKind::kOther), {"other", ""}},
}};

const TypedField* FindTypedField(std::string_view field) {
  for (const TypedField& f : kTypedFields) {
    if (f.name == field) return &f;
  }
  return nullptr;
}

// "home_city" -> (true, "city"); "city" -> (false, "city").
bool SplitAddressField(std::string_view field, bool* home, std::string_view* part) {
  if (field == "home_office") return false;  // only the work address has an office
  *home = field.starts_with("home_");
  *part = *home ? field.substr(5) : field;
  const PostalAddress probe;
  return AddressPart(probe, *part) != nullptr;
}

}  // namespace

std::string Contact::DisplayName() const {
  const std::string_view fn = Trim(formatted_name);
  if (!fn.empty()) return std::string(fn);
  std::string joined;
  for (const std::string* part :
       {&honorific_prefix, &given_name, &additional_names, &family_name, &honorific_suffix}) {
    const std::string_view p = Trim(*part);
    if (p.empty()) continue;
    if (!joined.empty()) joined += ' ';
    joined += p;
  }
  if (!joined.empty()) return joined;
  const std::string_view org = Trim(organization);
  if (!org.empty()) return std::string(org);
  for (const TypedValue& email : emails) {
    const std::string_view e = Trim(email.value);
    if (!e.empty()) return std::string(e);
  }
  return {};
}

std::string CanonicalForm(const Contact& c) {
  std::string out = "roster-contact-v1\n";
  // The display name stands for FN: a writer must put FN in every card and
  // fills it from the name parts when the contact has none, so an empty FN
  // and its derived value are the same contact.
  PutIfSet(out, "fn", c.DisplayName());
  PutIfSet(out, "family", c.family_name);
  PutIfSet(out, "given", c.given_name);
  PutIfSet(out, "additional", c.additional_names);
  PutIfSet(out, "prefix", c.honorific_prefix);
  PutIfSet(out, "suffix", c.honorific_suffix);
  PutIfSet(out, "nickname", c.nickname);
  PutIfSet(out, "org", c.organization);
  PutIfSet(out, "dept", c.department);
  PutIfSet(out, "title", c.title);
  PutIfSet(out, "role", c.role);
  PutIfSet(out, "manager", c.manager);
  PutTypedValues(out, "email", c.emails, /*is_email=*/true, /*is_phone=*/false);
  PutTypedValues(out, "tel", c.phones, false, true);
  PutTypedValues(out, "url", c.urls, false, false);

  std::vector<std::string> addresses;
  for (const PostalAddress& a : c.addresses) {
    std::string entry;
    PutIfSet(entry, "pobox", a.po_box);
    PutIfSet(entry, "extended", a.extended);
    PutIfSet(entry, "street", a.street);
    PutIfSet(entry, "locality", a.locality);
    PutIfSet(entry, "region", a.region);
    PutIfSet(entry, "code", a.postal_code);
    PutIfSet(entry, "country", a.country);
    if (entry.empty()) continue;
    // An address has no preferred flag in the model, so "pref" is dropped.
    for (const std::string& t : CanonicalTypes(a.types, false, nullptr)) Put(entry, "type", t);
    addresses.push_back(std::move(entry));
  }
  std::sort(addresses.begin(), addresses.end());
  for (const std::string& a : addresses) Put(out, "adr", a);

  PutIfSet(out, "note", c.note);
  PutIfSet(out, "bday", c.birthday);

  std::vector<std::string> categories;
  for (const std::string& cat : c.categories) {
    std::string v = Norm(cat);
    if (!v.empty()) categories.push_back(std::move(v));
  }
  std::sort(categories.begin(), categories.end());
  for (const std::string& cat : categories) Put(out, "category", cat);

  if (c.photo.has_value()) {
    // Bytes win over a URI: a photo "given only by URI" has no bytes.
    if (!c.photo->data.empty()) {
      Put(out, "photo-type", CanonicalMediaType(c.photo->media_type));
      Put(out, "photo-data", c.photo->data);
    } else if (const std::string uri = Norm(c.photo->uri); !uri.empty()) {
      Put(out, "photo-type", CanonicalMediaType(c.photo->media_type));
      Put(out, "photo-uri", uri);
    }
  }
  return out;
}

std::string ContentHash(const Contact& contact) { return HashHex(CanonicalForm(contact), 16); }

const std::vector<std::string_view>& ContactFieldNames() {
  static const std::vector<std::string_view> kNames = {
      "given_name",
      "family_name",
      "middle_name",
      "prefix",
      "suffix",
      "display_name",
      "nickname",
      "organization",
      "department",
      "title",
      "role",
      "manager",
      "email",
      "email_home",
      "email_other",
      "mobile",
      "work_phone",
      "home_phone",
      "fax",
      "pager",
      "phone_other",
      "office",
      "street",
      "city",
      "region",
      "postal_code",
      "country",
      "home_street",
      "home_city",
      "home_region",
      "home_postal_code",
      "home_country",
      "url",
      "note",
      "birthday",
      "categories",
  };
  return kNames;
}

bool IsContactField(std::string_view field) {
  const auto& names = ContactFieldNames();
  return std::find(names.begin(), names.end(), field) != names.end();
}

bool SetContactField(Contact& contact, std::string_view field, std::string_view raw_value) {
  if (!IsContactField(field)) return false;
  // CSV cells and filter literals often carry stray spaces that mean nothing.
  const std::string_view value = Trim(raw_value);
  if (value.empty()) return true;

  if (std::string* scalar = ScalarField(contact, field)) {
    *scalar = std::string(value);
    return true;
  }
  if (const TypedField* typed = FindTypedField(field)) {
    TypedValue tv;
    tv.value = std::string(value);
    for (std::string_view t : typed->types) {
      if (!t.empty()) tv.types.emplace_back(t);
    }
    (typed->email ? contact.emails : contact.phones).push_back(std::move(tv));
    return true;
  }
  if (field == "url") {
    contact.urls.push_back(TypedValue{std::string(value), {}, false});
    return true;
  }
  if (field == "categories") {
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string_view::npos) comma = value.size();
      const std::string_view cat = Trim(value.substr(start, comma - start));
      if (!cat.empty()) contact.categories.emplace_back(cat);
      start = comma + 1;
    }
    return true;
  }
  bool home = false;
  std::string_view part;
  if (SplitAddressField(field, &home, &part)) {
    PostalAddress* address = FindAddress(contact.addresses, home);
    if (address == nullptr) {
      contact.addresses.push_back(
          PostalAddress{{home ? "home" : "work"}, "", "", "", "", "", "", ""});
      address = &contact.addresses.back();
    }
    *AddressPart(*address, part) = std::string(value);
    return true;
  }
  return false;  // a name in the list without a mapping: a bug caught by tests
}

std::vector<std::string> GetContactField(const Contact& contact, std::string_view field) {
  std::vector<std::string> out;
  if (!IsContactField(field)) return out;
  if (field == "display_name") {
    if (std::string name = contact.DisplayName(); !name.empty()) out.push_back(std::move(name));
    return out;
  }
  if (const std::string* scalar = ScalarField(contact, field)) {
    if (!Trim(*scalar).empty()) out.emplace_back(Trim(*scalar));
    return out;
  }
  if (const TypedField* typed = FindTypedField(field)) {
    for (const TypedValue& tv : typed->email ? contact.emails : contact.phones) {
      const int kind =
          typed->email ? static_cast<int>(ClassifyEmail(tv)) : static_cast<int>(ClassifyPhone(tv));
      if (kind == typed->kind && !Trim(tv.value).empty()) out.emplace_back(Trim(tv.value));
    }
    return out;
  }
  if (field == "url" || field == "categories") {
    if (field == "url") {
      for (const TypedValue& tv : contact.urls) {
        if (!Trim(tv.value).empty()) out.emplace_back(Trim(tv.value));
      }
    } else {
      for (const std::string& cat : contact.categories) {
        if (!Trim(cat).empty()) out.emplace_back(Trim(cat));
      }
    }
    return out;
  }
  bool home = false;
  std::string_view part;
  if (SplitAddressField(field, &home, &part)) {
    if (const PostalAddress* address = FindAddress(contact.addresses, home)) {
      const std::string_view v = Trim(*AddressPart(*address, part));
      if (!v.empty()) out.emplace_back(v);
    }
  }
  return out;
}

bool ClearContactField(Contact& contact, std::string_view field) {
  if (field == kPhotoField) {
    contact.photo.reset();
    return true;
  }
  if (!IsContactField(field)) return false;
  if (std::string* scalar = ScalarField(contact, field)) {
    scalar->clear();
    return true;
  }
  if (const TypedField* typed = FindTypedField(field)) {
    std::vector<TypedValue>& list = typed->email ? contact.emails : contact.phones;
    std::erase_if(list, [typed](const TypedValue& tv) {
      return (typed->email ? static_cast<int>(ClassifyEmail(tv))
                           : static_cast<int>(ClassifyPhone(tv))) == typed->kind;
    });
    return true;
  }
  if (field == "url") {
    contact.urls.clear();
    return true;
  }
  if (field == "categories") {
    contact.categories.clear();
    return true;
  }
  bool home = false;
  std::string_view part;
  if (SplitAddressField(field, &home, &part)) {
    PostalAddress* address = FindAddress(contact.addresses, home);
    if (address == nullptr) return true;
    AddressPart(*address, part)->clear();
    const PostalAddress& a = *address;
    const bool empty = Trim(a.po_box).empty() && Trim(a.extended).empty() &&
                       Trim(a.street).empty() && Trim(a.locality).empty() &&
                       Trim(a.region).empty() && Trim(a.postal_code).empty() &&
                       Trim(a.country).empty();
    // An address with nothing left in it would still be found as "the work
    // address" and keep its types; it says nothing, so it goes.
    if (empty)
      contact.addresses.erase(contact.addresses.begin() + (address - contact.addresses.data()));
    return true;
  }
  return false;
}

bool CopyContactField(const Contact& from, std::string_view field, Contact& to) {
  if (!ClearContactField(to, field)) return false;
  if (field == kPhotoField) {
    to.photo = from.photo;
    return true;
  }
  if (const std::string* scalar = ScalarField(from, field)) {
    *ScalarField(to, field) = *scalar;
    return true;
  }
  if (const TypedField* typed = FindTypedField(field)) {
    const std::vector<TypedValue>& source = typed->email ? from.emails : from.phones;
    std::vector<TypedValue>& target = typed->email ? to.emails : to.phones;
    for (const TypedValue& tv : source) {
      const int kind =
          typed->email ? static_cast<int>(ClassifyEmail(tv)) : static_cast<int>(ClassifyPhone(tv));
      if (kind == typed->kind) target.push_back(tv);
    }
    return true;
  }
  if (field == "url") {
    to.urls = from.urls;
    return true;
  }
  if (field == "categories") {
    to.categories = from.categories;
    return true;
  }
  bool home = false;
  std::string_view part;
  if (SplitAddressField(field, &home, &part)) {
    const PostalAddress* source = FindAddress(from.addresses, home);
    if (source == nullptr || Trim(*AddressPart(*source, part)).empty()) return true;
    PostalAddress* target = FindAddress(to.addresses, home);
    if (target == nullptr) {
      PostalAddress fresh;
      fresh.types = source->types;
      to.addresses.push_back(std::move(fresh));
      target = &to.addresses.back();
    }
    *AddressPart(*target, part) = *AddressPart(*source, part);
    return true;
  }
  return false;
}

std::string_view PhoneFieldName(const TypedValue& phone) {
  const int kind = static_cast<int>(ClassifyPhone(phone));
  for (const TypedField& f : kTypedFields) {
    if (!f.email && f.kind == kind) return f.name;
  }
  return "phone_other";
}

}  // namespace roster
