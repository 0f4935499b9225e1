// The contact model: what an address book needs to know about a person, and a
// canonical form whose hash decides whether a contact changed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roster {

// An e-mail address, phone number or URL with its types ("work", "cell", ...).
// Types are lower case, without the "x-" prefix folding of any one vCard version.
struct TypedValue {
  std::string value;
  std::vector<std::string> types;
  bool preferred = false;

  bool operator==(const TypedValue&) const = default;
};

struct PostalAddress {
  std::vector<std::string> types;
  std::string po_box, extended, street, locality, region, postal_code, country;

  bool operator==(const PostalAddress&) const = default;
};

// An embedded photo: raw bytes plus media type ("image/jpeg"). A photo given
// only by URI keeps the URI and no bytes.
struct Photo {
  std::string media_type;
  std::string data;
  std::string uri;

  bool operator==(const Photo&) const = default;
};

struct Contact {
  std::string formatted_name;  // FN
  std::string family_name, given_name, additional_names, honorific_prefix, honorific_suffix;
  std::string nickname;
  std::string organization, department, title, role;
  std::string manager;  // the manager's name, as Outlook's X-MS-MANAGER carries it
  std::vector<TypedValue> emails, phones, urls;
  std::vector<PostalAddress> addresses;
  std::string note;
  std::string birthday;  // as written: "1980-04-02", "--04-02", "19800402"
  std::vector<std::string> categories;
  std::optional<Photo> photo;

  bool operator==(const Contact&) const = default;

  // FN when set, else the name parts joined, else organisation, else first e-mail.
  std::string DisplayName() const;
};

// A deterministic serialisation of the contact: surrounding whitespace trimmed,
// types lower-cased and sorted, multi-valued fields sorted, empty entries dropped.
// Two contacts with the same canonical form are the same to roster: property
// order, line folding and server-added properties (PRODID, REV) never count.
std::string CanonicalForm(const Contact& contact);

// Hex BLAKE2b-128 of CanonicalForm(contact).
std::string ContentHash(const Contact& contact);

// Simple field names used by CSV column maps and filter expressions:
// given_name, family_name, middle_name, prefix, suffix, display_name, nickname,
// organization, department, title, role, manager, email, email_home,
// email_other, mobile, work_phone, home_phone, fax, pager, phone_other, office
// (the work address's extended component, so phones show it with the address),
// street, city, region, postal_code, country, home_street, home_city,
// home_region, home_postal_code, home_country, url, note, birthday, categories
// (comma-separated).
const std::vector<std::string_view>& ContactFieldNames();
bool IsContactField(std::string_view field);

// Not a text field, so not in ContactFieldNames(): the photo, which the field
// rules (ClearContactField, CopyContactField) treat as one more field.
inline constexpr std::string_view kPhotoField = "photo";

// Sets `field` from a flat string value (appending for multi-valued fields).
// Returns false for an unknown field name. Empty values are ignored.
bool SetContactField(Contact& contact, std::string_view field, std::string_view value);

// Reads a field as zero or more strings (several for multi-valued fields).
std::vector<std::string> GetContactField(const Contact& contact, std::string_view field);

// Removes what `field` covers, and nothing else: "mobile" removes the phones
// typed cell, "city" the work address's locality (an address left empty goes),
// "display_name" FN (DisplayName() then falls back to the name parts), "photo"
// the photo. Returns false for an unknown field name.
bool ClearContactField(Contact& contact, std::string_view field);

// Replaces what `field` covers in `to` with `from`'s, entries copied whole
// (types, preferred flag); an address part goes into `to`'s address of that
// kind, created with `from`'s address types when missing. Accepts "photo".
// Returns false for an unknown field name.
bool CopyContactField(const Contact& from, std::string_view field, Contact& to);

// The field a phone number counts under ("mobile", "work_phone", ... or
// "phone_other"), as GetContactField sorts them.
std::string_view PhoneFieldName(const TypedValue& phone);

}  // namespace roster
