#include "core/contact.h"

#include <gtest/gtest.h>

#include <string>

namespace roster {
namespace {

Contact Sample() {
  Contact c;
  c.formatted_name = "Dr. Ada King";
  c.family_name = "King";
  c.given_name = "Ada";
  c.honorific_prefix = "Dr.";
  c.nickname = "Countess";
  c.organization = "Analytical Engines Ltd";
  c.department = "Research";
  c.title = "Mathematician";
  c.emails = {{"ada@example.org", {"work"}, true}, {"ada@home.example", {"home"}, false}};
  c.phones = {{"+44 20 7946 0000", {"work", "voice"}, false}, {"+44 7700 900000", {"cell"}, false}};
  c.urls = {{"https://example.org/ada", {}, false}};
  c.addresses = {{{"work"}, "", "", "1 Engine Row", "London", "", "N1 1AA", "United Kingdom"}};
  c.note = "Wrote the first program.\nLikes poetry; also numbers, obviously.";
  c.birthday = "1815-12-10";
  c.categories = {"history", "computing"};
  c.photo = Photo{"image/png", std::string("\x89PNG\r\n\x1a\n\0\1", 10), ""};
  return c;
}

TEST(DisplayNameTest, PrefersFormattedName) {
  Contact c;
  c.formatted_name = "  Ada  ";
  c.given_name = "Augusta";
  EXPECT_EQ(c.DisplayName(), "Ada");
}

TEST(DisplayNameTest, FallsBackToNamePartsThenOrganisationThenEmail) {
  Contact c;
  c.formatted_name = "   ";
  c.honorific_prefix = "Dr.";
  c.given_name = "Ada";
  c.family_name = "King";
  c.honorific_suffix = "FRS";
  EXPECT_EQ(c.DisplayName(), "Dr. Ada King FRS");

  Contact org;
  org.organization = " Acme ";
  org.emails = {{"a@example.org", {}, false}};
  EXPECT_EQ(org.DisplayName(), "Acme");

  Contact mail;
  mail.emails = {{" ", {}, false}, {" b@example.org ", {}, false}};
  EXPECT_EQ(mail.DisplayName(), "b@example.org");

  EXPECT_EQ(Contact{}.DisplayName(), "");
}

TEST(CanonicalFormTest, IgnoresWhitespaceCaseOrderAndEmptyEntries) {
  const Contact a = Sample();
  Contact b = Sample();
  b.formatted_name = "  Dr. Ada King\t";
  b.note = "\r\nWrote the first program.\r\nLikes poetry; also numbers, obviously.  ";
  std::swap(b.emails[0], b.emails[1]);
  b.emails.push_back({"   ", {"work"}, true});
  b.phones[0].types = {"VOICE", " Work "};
  std::swap(b.phones[0], b.phones[1]);
  b.categories = {" computing", "", "history "};
  b.addresses.push_back(PostalAddress{{"home"}, " ", "", "", "", "", "", ""});
  b.urls.insert(b.urls.begin(), TypedValue{"", {"home"}, false});
  EXPECT_EQ(CanonicalForm(a), CanonicalForm(b));
  EXPECT_EQ(ContentHash(a), ContentHash(b));
}

TEST(CanonicalFormTest, FoldsVCardSpellingsOfTheSameThing) {
  Contact a = Sample();
  Contact b = Sample();
  b.emails[0] = {"ada@example.org", {"INTERNET", "work", "PREF"}, false};  // vCard 3.0 style
  b.phones[0].value = "tel:+44 20 7946 0000";                              // vCard 4.0 URI
  b.phones[0].types = {"work,voice"};
  b.photo->media_type = "PNG";  // vCard 3.0 TYPE=PNG
  EXPECT_EQ(ContentHash(a), ContentHash(b));

  // An empty FN is the name a writer derives from the parts.
  a.formatted_name = "";
  a.given_name = "Ada";
  a.family_name = "King";
  a.honorific_prefix = "";
  Contact c = a;
  c.formatted_name = "Ada King";
  EXPECT_EQ(ContentHash(a), ContentHash(c));
}

TEST(CanonicalFormTest, SeesEveryRealChange) {
  const std::string base = ContentHash(Sample());
  auto changed = [&](auto mutate) {
    Contact c = Sample();
    mutate(c);
    return ContentHash(c) != base;
  };
  EXPECT_TRUE(changed([](Contact& c) { c.formatted_name = "Ada Lovelace"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.family_name = "Lovelace"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.given_name = "Augusta"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.additional_names = "Augusta"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.honorific_suffix = "FRS"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.nickname = ""; }));
  EXPECT_TRUE(changed([](Contact& c) { c.organization = "Other"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.department = "R&D"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.title = "Countess"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.role = "Author"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.manager = "Charles Babbage"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.addresses[0].extended = "Room 4"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.emails[0].value = "ada@example.com"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.emails[0].preferred = false; }));
  EXPECT_TRUE(changed([](Contact& c) { c.emails[1].types = {"work"}; }));
  EXPECT_TRUE(changed([](Contact& c) { c.phones[1].value = "+44 7700 900001"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.urls.clear(); }));
  EXPECT_TRUE(changed([](Contact& c) { c.addresses[0].po_box = "PO 1"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.addresses[0].types = {"home"}; }));
  EXPECT_TRUE(changed([](Contact& c) { c.note += "!"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.note = "Wrote the first program. Likes poetry"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.birthday = "--12-10"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.categories.push_back("maths"); }));
  EXPECT_TRUE(changed([](Contact& c) { c.photo->data.back() = '\2'; }));
  EXPECT_TRUE(changed([](Contact& c) { c.photo->media_type = "image/jpeg"; }));
  EXPECT_TRUE(changed([](Contact& c) { c.photo.reset(); }));
  EXPECT_TRUE(changed([](Contact& c) { c.photo = Photo{"", "", "https://example.org/a.png"}; }));
  EXPECT_TRUE(changed([](Contact& c) { c.emails.push_back(c.emails[0]); }));
}

TEST(CanonicalFormTest, FieldBoundariesCannotCollide) {
  Contact a;
  a.given_name = "Ada";
  a.family_name = "King";
  Contact b;
  b.given_name = "Ada\ngiven 4:King";
  EXPECT_NE(CanonicalForm(a), CanonicalForm(b));

  Contact c;
  c.categories = {"a,b"};
  Contact d;
  d.categories = {"a", "b"};
  EXPECT_NE(ContentHash(c), ContentHash(d));

  Contact e;
  e.emails = {{"x", {"work"}, false}};
  Contact f;
  f.emails = {{"x\ntype 4:work", {}, false}};
  EXPECT_NE(ContentHash(e), ContentHash(f));
}

TEST(CanonicalFormTest, UriPhotoCountsOnlyWithoutBytes) {
  Contact a;
  a.photo = Photo{"image/png", "bytes", ""};
  Contact b = a;
  b.photo->uri = "https://example.org/a.png";
  EXPECT_EQ(ContentHash(a), ContentHash(b));
  Contact empty;
  empty.photo = Photo{};
  EXPECT_EQ(ContentHash(empty), ContentHash(Contact{}));
}

TEST(ContactFieldTest, EveryListedFieldIsSettableAndReadable) {
  for (std::string_view field : ContactFieldNames()) {
    Contact c;
    EXPECT_TRUE(IsContactField(field)) << field;
    ASSERT_TRUE(SetContactField(c, field, " value ")) << field;
    EXPECT_EQ(GetContactField(c, field), std::vector<std::string>{"value"}) << field;
  }
  EXPECT_EQ(ContactFieldNames().size(), 36u);
  EXPECT_FALSE(IsContactField(kPhotoField));  // not text: only the field rules know it
}

TEST(ContactFieldTest, UnknownFieldsAndEmptyValues) {
  Contact c;
  EXPECT_FALSE(IsContactField("shoe_size"));
  EXPECT_FALSE(SetContactField(c, "shoe_size", "42"));
  EXPECT_TRUE(GetContactField(c, "shoe_size").empty());
  EXPECT_TRUE(SetContactField(c, "email", "   "));
  EXPECT_TRUE(c.emails.empty());
  EXPECT_EQ(c, Contact{});
}

TEST(ContactFieldTest, MapsFieldsOntoTheModel) {
  Contact c;
  SetContactField(c, "display_name", "Ada King");
  SetContactField(c, "middle_name", "Augusta");
  SetContactField(c, "prefix", "Dr.");
  SetContactField(c, "suffix", "FRS");
  SetContactField(c, "email", "w@example.org");
  SetContactField(c, "email_home", "h@example.org");
  SetContactField(c, "email_other", "o@example.org");
  SetContactField(c, "mobile", "1");
  SetContactField(c, "work_phone", "2");
  SetContactField(c, "home_phone", "3");
  SetContactField(c, "fax", "4");
  SetContactField(c, "pager", "5");
  SetContactField(c, "phone_other", "6");
  SetContactField(c, "birthday", "--04-02");
  EXPECT_EQ(c.formatted_name, "Ada King");
  EXPECT_EQ(c.additional_names, "Augusta");
  EXPECT_EQ(c.honorific_prefix, "Dr.");
  EXPECT_EQ(c.honorific_suffix, "FRS");
  EXPECT_EQ(c.birthday, "--04-02");
  ASSERT_EQ(c.emails.size(), 3u);
  EXPECT_EQ(c.emails[0], (TypedValue{"w@example.org", {"work"}, false}));
  EXPECT_EQ(c.emails[1], (TypedValue{"h@example.org", {"home"}, false}));
  EXPECT_EQ(c.emails[2], (TypedValue{"o@example.org", {"other"}, false}));
  ASSERT_EQ(c.phones.size(), 6u);
  EXPECT_EQ(c.phones[0].types, (std::vector<std::string>{"cell"}));
  EXPECT_EQ(c.phones[1].types, (std::vector<std::string>{"work", "voice"}));
  EXPECT_EQ(c.phones[2].types, (std::vector<std::string>{"home", "voice"}));
  EXPECT_EQ(c.phones[3].types, (std::vector<std::string>{"work", "fax"}));
  EXPECT_EQ(c.phones[4].types, (std::vector<std::string>{"pager"}));
  EXPECT_EQ(c.phones[5].types, (std::vector<std::string>{"other"}));
  // Each number reads back from its own column only.
  EXPECT_EQ(GetContactField(c, "work_phone"), std::vector<std::string>{"2"});
  EXPECT_EQ(GetContactField(c, "fax"), std::vector<std::string>{"4"});
  EXPECT_EQ(GetContactField(c, "phone_other"), std::vector<std::string>{"6"});
  EXPECT_EQ(GetContactField(c, "email_home"), std::vector<std::string>{"h@example.org"});
}

TEST(ContactFieldTest, MultiValuedFieldsAppend) {
  Contact c;
  SetContactField(c, "email", "a@example.org");
  SetContactField(c, "email", "b@example.org");
  SetContactField(c, "url", "https://a.example");
  SetContactField(c, "categories", "friends, work,,family ");
  SetContactField(c, "categories", "chess");
  EXPECT_EQ(GetContactField(c, "email"),
            (std::vector<std::string>{"a@example.org", "b@example.org"}));
  EXPECT_EQ(GetContactField(c, "url"), std::vector<std::string>{"https://a.example"});
  EXPECT_EQ(GetContactField(c, "categories"),
            (std::vector<std::string>{"friends", "work", "family", "chess"}));
  SetContactField(c, "note", "first");
  SetContactField(c, "note", "second");
  EXPECT_EQ(c.note, "second");
}

TEST(ContactFieldTest, UntypedEmailCountsAsTheMainOne) {
  Contact c;
  c.emails = {{"plain@example.org", {"internet", "pref"}, false},
              {"x@example.org", {"x-custom"}, false}};
  EXPECT_EQ(GetContactField(c, "email"), std::vector<std::string>{"plain@example.org"});
  EXPECT_EQ(GetContactField(c, "email_other"), std::vector<std::string>{"x@example.org"});
}

TEST(ContactFieldTest, AddressFieldsShareOneAddressPerKind) {
  Contact c;
  SetContactField(c, "street", "1 Main St");
  SetContactField(c, "city", "Springfield");
  SetContactField(c, "home_street", "2 Elm St");
  SetContactField(c, "home_country", "Canada");
  SetContactField(c, "postal_code", "12345");
  ASSERT_EQ(c.addresses.size(), 2u);
  EXPECT_EQ(c.addresses[0],
            (PostalAddress{{"work"}, "", "", "1 Main St", "Springfield", "", "12345", ""}));
  EXPECT_EQ(c.addresses[1], (PostalAddress{{"home"}, "", "", "2 Elm St", "", "", "", "Canada"}));
  EXPECT_EQ(GetContactField(c, "home_street"), std::vector<std::string>{"2 Elm St"});
  EXPECT_EQ(GetContactField(c, "city"), std::vector<std::string>{"Springfield"});
  EXPECT_TRUE(GetContactField(c, "home_city").empty());
}

TEST(ContactFieldTest, ManagerAndOffice) {
  Contact c;
  ASSERT_TRUE(SetContactField(c, "manager", " Charles Babbage "));
  EXPECT_EQ(c.manager, "Charles Babbage");
  // An office alone makes a work address holding only it.
  ASSERT_TRUE(SetContactField(c, "office", "Room 4"));
  ASSERT_EQ(c.addresses.size(), 1u);
  EXPECT_EQ(c.addresses[0], (PostalAddress{{"work"}, "", "Room 4", "", "", "", "", ""}));
  // It joins the work address, never the home one.
  Contact both;
  SetContactField(both, "home_street", "2 Elm St");
  SetContactField(both, "street", "1 Main St");
  SetContactField(both, "office", "Building 7");
  ASSERT_EQ(both.addresses.size(), 2u);
  EXPECT_EQ(both.addresses[1].extended, "Building 7");
  EXPECT_EQ(both.addresses[0].extended, "");
  EXPECT_FALSE(IsContactField("home_office"));
  EXPECT_FALSE(SetContactField(both, "home_office", "x"));
}

// A contact with every field set through the flat interface, values naming
// their field, so a test can tell exactly which field something touched.
Contact EveryField(std::string_view prefix) {
  Contact c;
  for (std::string_view field : ContactFieldNames()) {
    SetContactField(c, field, std::string(prefix) + std::string(field));
  }
  c.phones.push_back({std::string(prefix) + "car", {"car"}, false});  // phone_other
  c.photo = Photo{"image/png", std::string(prefix) + "png", ""};
  return c;
}

TEST(ClearContactFieldTest, RemovesExactlyWhatTheFieldCovers) {
  const Contact full = EveryField("v-");
  std::vector<std::string_view> fields = ContactFieldNames();
  fields.push_back(kPhotoField);
  for (std::string_view field : fields) {
    Contact c = full;
    ASSERT_TRUE(ClearContactField(c, field)) << field;
    if (field == kPhotoField) {
      EXPECT_FALSE(c.photo.has_value());
    } else if (field == "display_name") {
      // FN goes; the name then comes from its parts, as a writer derives it.
      EXPECT_EQ(c.formatted_name, "");
      EXPECT_EQ(GetContactField(c, field),
                std::vector<std::string>{"v-prefix v-given_name v-middle_name v-family_name "
                                         "v-suffix"});
    } else {
      EXPECT_TRUE(GetContactField(c, field).empty()) << field;
    }
    for (std::string_view other : ContactFieldNames()) {
      if (other == field || other == "display_name") continue;
      EXPECT_EQ(GetContactField(c, other), GetContactField(full, other))
          << "clearing " << field << " changed " << other;
    }
    if (field != kPhotoField) {
      EXPECT_EQ(c.photo, full.photo) << field;
    }
  }
}

TEST(ClearContactFieldTest, MultiValuedFieldsLoseOnlyTheirOwnValues) {
  Contact c;
  c.phones = {{"1", {"cell"}, false},
              {"2", {"CELL", "voice"}, true},
              {"3", {"work"}, false},
              {"4", {"car"}, false}};
  ASSERT_TRUE(ClearContactField(c, "mobile"));
  EXPECT_EQ(c.phones, (std::vector<TypedValue>{{"3", {"work"}, false}, {"4", {"car"}, false}}));
  c.emails = {{"a@x", {}, false}, {"b@x", {"home"}, false}};
  ASSERT_TRUE(ClearContactField(c, "email"));  // an untyped address is the main one
  EXPECT_EQ(c.emails, (std::vector<TypedValue>{{"b@x", {"home"}, false}}));
}

TEST(ClearContactFieldTest, AnEmptiedAddressGoesAndUnknownFieldsFail) {
  Contact c;
  SetContactField(c, "city", "London");
  SetContactField(c, "home_city", "Leeds");
  ASSERT_TRUE(ClearContactField(c, "city"));
  ASSERT_EQ(c.addresses.size(), 1u);
  EXPECT_EQ(c.addresses[0].locality, "Leeds");
  EXPECT_TRUE(ClearContactField(c, "street"));  // nothing there: still a known field
  EXPECT_FALSE(ClearContactField(c, "shoe_size"));
  EXPECT_FALSE(ClearContactField(c, "home_office"));
  EXPECT_EQ(c.addresses.size(), 1u);
}

TEST(CopyContactFieldTest, ReplacesOneFieldWithTheOthersEntries) {
  const Contact from = EveryField("a-");
  const Contact base = EveryField("b-");
  std::vector<std::string_view> fields = ContactFieldNames();
  fields.push_back(kPhotoField);
  for (std::string_view field : fields) {
    Contact to = base;
    ASSERT_TRUE(CopyContactField(from, field, to)) << field;
    if (field == kPhotoField) {
      EXPECT_EQ(to.photo, from.photo);
    } else {
      EXPECT_EQ(GetContactField(to, field), GetContactField(from, field)) << field;
    }
    for (std::string_view other : ContactFieldNames()) {
      if (other == field || other == "display_name") continue;
      EXPECT_EQ(GetContactField(to, other), GetContactField(base, other))
          << "copying " << field << " changed " << other;
    }
  }
  Contact to = base;
  EXPECT_FALSE(CopyContactField(from, "shoe_size", to));
  EXPECT_EQ(to, base);
}

TEST(CopyContactFieldTest, KeepsTypesFlagsAndEmptiness) {
  Contact from;
  from.phones = {{"+1 555 0100", {"cell", "iphone"}, true}, {"2", {"work"}, false}};
  from.addresses = {{{"work", "postal"}, "", "", "", "Paris", "", "", ""}};
  Contact to;
  to.phones = {{"9", {"cell"}, false}};
  CopyContactField(from, "mobile", to);
  EXPECT_EQ(to.phones, (std::vector<TypedValue>{{"+1 555 0100", {"cell", "iphone"}, true}}));
  CopyContactField(from, "city", to);
  EXPECT_EQ(to.addresses,
            (std::vector<PostalAddress>{{{"work", "postal"}, "", "", "", "Paris", "", "", ""}}));
  // Copying an empty field empties it.
  CopyContactField(Contact{}, "mobile", to);
  CopyContactField(Contact{}, "city", to);
  CopyContactField(Contact{}, kPhotoField, to);
  EXPECT_TRUE(to.phones.empty());
  EXPECT_TRUE(to.addresses.empty());
}

TEST(PhoneFieldNameTest, NamesTheColumnANumberFallsIn) {
  EXPECT_EQ(PhoneFieldName({"1", {"cell", "work"}, false}), "mobile");
  EXPECT_EQ(PhoneFieldName({"1", {"WORK", "voice"}, false}), "work_phone");
  EXPECT_EQ(PhoneFieldName({"1", {"work", "fax"}, false}), "fax");
  EXPECT_EQ(PhoneFieldName({"1", {"home"}, false}), "home_phone");
  EXPECT_EQ(PhoneFieldName({"1", {"pager"}, false}), "pager");
  EXPECT_EQ(PhoneFieldName({"1", {"car"}, false}), "phone_other");
  EXPECT_EQ(PhoneFieldName({"1", {}, false}), "phone_other");
}

}  // namespace
}  // namespace roster
