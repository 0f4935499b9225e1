#include "connectors/graph/projection.h"

#include <gtest/gtest.h>

#include <memory>

#include "connectors/graph/graph_props.h"
#include "connectors/graph/test_contacts.h"
#include "connectors/memory/graph_like.h"

namespace roster {
namespace {

using graph_test::Everything;
using graph_test::Jpeg;
using graph_test::Person;

// The in-process twin's projection, which ours must equal wherever the twin
// can say what Graph holds.
Contact TwinProjection(const Contact& c) {
  static const std::unique_ptr<Target> twin =
      NewGraphLikeTarget(std::make_shared<GraphLikeServer>());
  return std::get<Contact>(twin->Project(c));
}

std::vector<std::string> PhoneValues(const Contact& c) {
  std::vector<std::string> out;
  for (const TypedValue& tv : c.phones) out.push_back(tv.value);
  return out;
}

TEST(GraphProjection, KeepsWhatAGraphContactHolds) {
  const Contact c = Everything();
  const Contact p = ProjectGraphContact(c);
  ASSERT_EQ(p.emails.size(), 3u);
  EXPECT_EQ(p.emails[0].value, "c@x.example");  // preferred first, then in order
  EXPECT_EQ(p.emails[1].value, "a@x.example");
  EXPECT_EQ(p.emails[2].value, "b@x.example");
  EXPECT_EQ(PhoneValues(p), (std::vector<std::string>{"+1", "+3", "+4", "+6"}));
  EXPECT_EQ(p.phones[0].types, (std::vector<std::string>{"cell"}));
  ASSERT_EQ(p.addresses.size(), 3u);
  EXPECT_EQ(p.addresses[0].types, (std::vector<std::string>{"work"}));
  EXPECT_EQ(p.addresses[0].extended, "Floor 3");  // officeLocation
  EXPECT_EQ(p.addresses[0].po_box, "");           // Graph has no PO box
  EXPECT_EQ(p.addresses[0].postal_code, "62701");
  EXPECT_EQ(p.addresses[2].country, "Canada");
  ASSERT_EQ(p.urls.size(), 1u);
  EXPECT_EQ(p.urls[0].value, "https://b.example");
  EXPECT_EQ(p.role, "");
  EXPECT_EQ(p.formatted_name, c.formatted_name);
  EXPECT_EQ(p.categories, (std::vector<std::string>{"Company", "Sales"}));
  EXPECT_EQ(p.note, c.note);  // tab and newline are text
  EXPECT_EQ(p.photo, c.photo);
}

TEST(GraphProjection, FillsDisplayNameAsTheServerDoes) {
  Contact x = Person("Ann", "Lee");
  x.honorific_prefix = "Dr.";  // the vCard side would say "Dr. Ann Lee"; Outlook says "Ann Lee"
  EXPECT_EQ(ProjectGraphContact(x).formatted_name, "Ann Lee");
  EXPECT_EQ(ProjectGraphContact(Person("", "Lee")).formatted_name, "Lee");
  EXPECT_EQ(ProjectGraphContact(Person("", "")).formatted_name, "");
  x.formatted_name = "Lee, Ann";
  EXPECT_EQ(ProjectGraphContact(x).formatted_name, "Lee, Ann");
}

TEST(GraphProjection, PhotoOnlyWithBytes) {
  Contact c = Person("Ann", "Lee");
  c.photo = Photo{"image/jpeg", "", "https://photo.example/a.jpg"};
  EXPECT_EQ(ProjectGraphContact(c).photo, std::nullopt);
  c.photo = Photo{"image/jpeg", "\xff\xd8\xffz", "https://photo.example/a.jpg"};
  EXPECT_EQ(ProjectGraphContact(c).photo, (Photo{"image/jpeg", "\xff\xd8\xffz", ""}));
}

// Exchange takes JPEG and PNG photos only, of at most 4 MiB: anything else
// would be refused on every run, so the projection leaves it out and an
// item whose only difference is such a photo is never rewritten.
TEST(GraphProjection, PhotoOnlyAsJpegOrPngWithinTheLimit) {
  Contact c = Person("Ann", "Lee");
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "data";
  c.photo = Photo{"image/png", png, ""};
  EXPECT_EQ(ProjectGraphContact(c).photo, (Photo{"image/png", png, ""}));
  c.photo = Photo{"image/gif", "GIF89a....", ""};
  EXPECT_EQ(ProjectGraphContact(c).photo, std::nullopt);
  c.photo = Photo{"image/jpeg", "GIF89a....", ""};  // the type does not decide: the bytes do
  EXPECT_EQ(ProjectGraphContact(c).photo, std::nullopt);
  c.photo = Photo{"image/jpeg", "\xff\xd8", ""};  // too short to be a JPEG
  EXPECT_EQ(ProjectGraphContact(c).photo, std::nullopt);
  c.photo = Photo{"image/jpeg", "\xff\xd8\xff" + std::string(kGraphMaxPhotoBytes - 3, 'x'), ""};
  EXPECT_TRUE(ProjectGraphContact(c).photo.has_value());
  c.photo->data.push_back('x');
  EXPECT_EQ(ProjectGraphContact(c).photo, std::nullopt);
  Contact gif = Person("Ann", "Lee");
  gif.photo = Photo{"image/gif", "GIF89a....", ""};
  EXPECT_EQ(ProjectGraphContact(gif), ProjectGraphContact(Person("Ann", "Lee")));
}

struct BirthdayCase {
  const char* written;
  const char* projected;
};

TEST(GraphProjection, BirthdaysBecomeDatesOrGo) {
  const BirthdayCase cases[] = {
      {"1980-04-02", "1980-04-02"},
      {" 1980-04-02 ", "1980-04-02"},
      {"19800402", "1980-04-02"},
      {"1980-04-02T10:30:00Z", "1980-04-02"},
      {"--04-02", "--04-02"},
      {"--0402", "--04-02"},
      {"--02-29", "--02-29"},
      {"2000-02-29", "2000-02-29"},
      {"1604-07-01", "--07-01"},  // Graph's "no year" reads back as what it means
      {"16040701", "--07-01"},
      // Not a date Graph could take: dropped rather than a refused create.
      {"1900-02-29", ""},
      {"1981-02-29", ""},
      {"2020-13-01", ""},
      {"2020-04-31", ""},
      {"2020-00-10", ""},
      {"0000-04-02", ""},
      {"--13-01", ""},
      {"--02-30", ""},
      {"1980-04-02X", ""},
      {"April 2nd", ""},
      {"", ""},
  };
  for (const BirthdayCase& bc : cases) {
    Contact c = Person("Ann", "Lee");
    c.birthday = bc.written;
    EXPECT_EQ(ProjectGraphContact(c).birthday, bc.projected) << bc.written;
  }
}

TEST(GraphProjection, TextIsWhatGraphCanCarry) {
  Contact c = Person("A\x01nn",
                     "L\xff"
                     "ee");
  c.note = "tab\there\r\nand\x7f\x1b[31m";
  c.emails[0].value = "a\x80@x.example";
  const Contact p = ProjectGraphContact(c);
  EXPECT_EQ(p.given_name, "A\uFFFDnn");
  EXPECT_EQ(p.family_name, "L\uFFFDee");
  EXPECT_EQ(p.note, "tab\there\r\nand\uFFFD\uFFFD[31m");
  EXPECT_EQ(p.emails[0].value, "a\uFFFD@x.example");
  EXPECT_EQ(p.formatted_name, "A\uFFFDnn L\uFFFDee");
  // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
  EXPECT_EQ(graph_detail::GraphText("\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82"),
            "\uFFFD\uFFFD|\uFFFD\uFFFD\uFFFD|\uFFFD\uFFFD\uFFFD\uFFFD|\uFFFD\uFFFD");
  EXPECT_EQ(graph_detail::GraphText("ok € 🎉"), "ok € 🎉");
}

TEST(GraphProjection, IsIdempotent) {
  for (const Contact& c : graph_test::Samples()) {
    const Contact p = ProjectGraphContact(c);
    EXPECT_EQ(ProjectGraphContact(p), p) << CanonicalForm(c);
  }
  graph_test::RandomContacts random(42);
  for (int i = 0; i < 3000; ++i) {
    const Contact c = random.Next();
    const Contact p = ProjectGraphContact(c);
    ASSERT_EQ(ProjectGraphContact(p), p) << CanonicalForm(c);
  }
  Contact hostile = Person("\xff\x01", "\xe2\x82");
  hostile.birthday = "1604-02-29";
  const Contact p = ProjectGraphContact(hostile);
  EXPECT_EQ(ProjectGraphContact(p), p);
}

// The twin in connectors/memory/graph_like.cc has the same rules: on every
// contact both can describe, the two projections agree.
TEST(GraphProjection, EqualsTheInProcessTwin) {
  for (const Contact& c : graph_test::Samples()) {
    EXPECT_EQ(ProjectGraphContact(c), TwinProjection(c)) << CanonicalForm(c);
  }
  graph_test::RandomContacts random(7);
  for (int i = 0; i < 3000; ++i) {
    const Contact c = random.Next();
    ASSERT_EQ(ProjectGraphContact(c), TwinProjection(c)) << CanonicalForm(c);
  }
}

TEST(GraphProjection, ItemBodyOverload) {
  const Contact c = Everything();
  const ItemBody body = c;
  EXPECT_EQ(std::get<Contact>(ProjectGraphContact(body)), ProjectGraphContact(c));
}

}  // namespace
}  // namespace roster
