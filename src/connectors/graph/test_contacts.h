// Contacts for the Graph contact tests: a few by hand that use every field
// Graph holds (and some it does not), and a seeded generator of many more.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "core/contact.h"

namespace roster::graph_test {

inline Photo Jpeg(const std::string& bytes) {
  return Photo{"image/jpeg", "\xff\xd8\xff" + bytes, ""};
}

inline Contact Person(const std::string& given, const std::string& family) {
  Contact c;
  c.given_name = given;
  c.family_name = family;
  c.emails.push_back({given + "@example.com", {"work"}, false});
  return c;
}

// Every property the Graph body can carry is set, and more than Graph holds.
inline Contact Everything() {
  Contact c;
  c.formatted_name = "Dr. Ann Q. Lee Jr.";
  c.given_name = "Ann";
  c.family_name = "Lee";
  c.additional_names = "Q.";
  c.honorific_prefix = "Dr.";
  c.honorific_suffix = "Jr.";
  c.nickname = "Annie";
  c.organization = "Contoso";
  c.department = "R&D";
  c.title = "CTO";
  c.role = "Architect";
  c.manager = "Bo Kim";
  c.emails = {{"a@x.example", {"work"}, false},
              {"b@x.example", {"home"}, false},
              {"c@x.example", {}, true},
              {"d@x.example", {"other"}, false}};
  c.phones = {{"+1", {"cell"}, false}, {"+2", {"cell"}, false}, {"+3", {"work"}, false},
              {"+4", {"work"}, false}, {"+5", {"work"}, false}, {"+6", {"home"}, false},
              {"+7", {"fax"}, false},  {"+8", {"pager"}, false}};
  c.addresses = {
      PostalAddress{{"work"}, "PO 9", "Floor 3", "1 Main St", "Springfield", "IL", "62701", "USA"},
      PostalAddress{{"home"}, "", "", "2 Elm St", "Shelbyville", "", "", ""},
      PostalAddress{{"other"}, "", "", "3 Oak St", "", "", "", "Canada"},
      PostalAddress{{"postal"}, "", "", "4 Ash St"}};
  c.urls = {{"https://a.example", {}, false}, {"https://b.example", {}, true}};
  c.note = "Line one\nLine two\twith a tab";
  c.birthday = "1980-04-02";
  c.categories = {"Company", " ", "Sales"};
  c.photo = Jpeg("p");
  return c;
}

// Hand-made cases: the edges of each rule.
inline std::vector<Contact> Samples() {
  std::vector<Contact> out = {Contact{}, Person("Ann", "Lee"), Everything()};
  Contact c = Person("", "");
  c.organization = "Only A Company";
  out.push_back(c);
  c = Person("Bo", "");
  c.formatted_name = "";
  c.birthday = "--04-02";
  c.addresses = {PostalAddress{{}, "", "Room 7"}};  // officeLocation alone
  out.push_back(c);
  c = Person("", "Kim");
  c.birthday = "19800402";
  c.phones = {{"+9", {"work", "pref"}, false}, {"+10", {"voice"}, false}, {"", {"cell"}, false}};
  c.addresses = {PostalAddress{{"home"}, "", "", "5 Pine St"},
                 PostalAddress{{}, "", "", "6 Fir St"},
                 PostalAddress{{"intl"}, "", "", "7 Yew St"}};
  c.urls = {{"  ", {}, true}, {"https://c.example", {"home"}, false}};
  out.push_back(c);
  c = Person("Cy", "Ng");
  c.birthday = "--0229";
  c.photo = Photo{"image/jpeg", "", "https://photo.example/cy.jpg"};  // a URI only
  c.emails = {{" ", {}, true}, {"e@x.example", {"internet", "pref"}, false}};
  out.push_back(c);
  c = Person("Émile", "Zoë");
  c.note = "naïve café — 東京 🎉";
  c.birthday = "2000-01-01T10:00:00Z";
  out.push_back(c);
  return out;
}

// Seeded random contacts from small pools, so that fields collide, repeat,
// go blank and take every type the rules look at. Text stays valid UTF-8
// without control characters (what both projections keep as it is).
class RandomContacts {
 public:
  explicit RandomContacts(uint32_t seed) : rng_(seed) {}

  Contact Next() {
    Contact c;
    for (std::string* s : {&c.formatted_name, &c.given_name, &c.family_name, &c.additional_names,
                           &c.honorific_prefix, &c.honorific_suffix, &c.nickname, &c.organization,
                           &c.department, &c.title, &c.role, &c.manager, &c.note}) {
      *s = Pick(kText);
    }
    c.emails = Values(kEmailTypes, 5);
    c.phones = Values(kPhoneTypes, 7);
    c.urls = Values(kUrlTypes, 3);
    for (int n = Below(5); n > 0; --n) {
      PostalAddress a;
      a.types = Pick(kAddressTypes);
      for (std::string* s : {&a.po_box, &a.extended, &a.street, &a.locality, &a.region,
                             &a.postal_code, &a.country}) {
        *s = Below(2) ? Pick(kText) : "";
      }
      c.addresses.push_back(a);
    }
    c.birthday = Pick(kBirthdays);
    for (int n = Below(4); n > 0; --n) c.categories.push_back(Pick(kText));
    if (Below(3) == 0) c.photo = Below(2) ? Jpeg(Pick(kText)) : Photo{"image/png", "", "u"};
    return c;
  }

 private:
  using Types = std::vector<std::vector<std::string>>;
  inline static const std::vector<std::string> kText = {"", "", " ", "a", "Ann", "B b", "ÿ", " x "};
  inline static const std::vector<std::string> kBirthdays = {
      "",           "1980-04-02",          "19800402", "--04-02", "--0402",
      "2000-02-29", "1999-12-31T23:00:00", "yesterday"};
  inline static const Types kEmailTypes = {{},       {"work"},     {"home"},
                                           {"pref"}, {"internet"}, {"other"}};
  inline static const Types kPhoneTypes = {{},       {"cell"},         {"work"},  {"home"},
                                           {"fax"},  {"pager"},        {"voice"}, {"work,voice"},
                                           {"CELL"}, {"home", "pref"}, {"text"},  {"work", "fax"}};
  inline static const Types kUrlTypes = {{}, {"work"}, {"pref"}};
  inline static const Types kAddressTypes = {{},       {"work"},         {"home"},  {"other"},
                                             {"WORK"}, {"home", "work"}, {"postal"}};

  int Below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  template <typename T>
  const T& Pick(const std::vector<T>& pool) {
    return pool[Below(static_cast<int>(pool.size()))];
  }
  std::vector<TypedValue> Values(const Types& types, int most) {
    std::vector<TypedValue> out;
    static const std::vector<std::string> kValues = {"", " ", "v1", "v2", "+1 555", "x@y"};
    for (int n = Below(most + 1); n > 0; --n) {
      out.push_back({Pick(kValues), Pick(types), Below(4) == 0});
    }
    return out;
  }

  std::mt19937 rng_;
};

}  // namespace roster::graph_test
