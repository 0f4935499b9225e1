#include "mapping/mapping.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/personal.h"
#include "mapping/test_jpeg.h"

namespace roster {
namespace {

using Strings = std::vector<std::string>;

// Warnings as a console shows them (people by name, core/personal.h).
Strings Shown(const Strings& warnings) {
  Strings out;
  for (const std::string& w : warnings) out.push_back(ShowPersonal(w));
  return out;
}

SourceRecord Person(const std::string& key, const std::string& name) {
  SourceRecord r;
  r.key = key;
  r.contact.formatted_name = name;
  return r;
}

void ExpectNoneMentions(const std::vector<std::string>& warnings, const Strings& secrets) {
  for (const std::string& w : warnings) {
    for (const std::string& s : secrets) {
      EXPECT_EQ(w.find(s), std::string::npos) << "warning \"" << w << "\" shows \"" << s << "\"";
    }
  }
}

TEST(TransformRecordsTest, NormalisesPhonesAndWarnsWithoutNumbers) {
  std::vector<SourceRecord> records = {Person("3f2a1b2c-9d8e-4f00", "Jane Doe"),
                                       Person("u2", "John Roe")};
  SetContactField(records[0].contact, "mobile", "07700 900123");
  SetContactField(records[0].contact, "work_phone", "+44 (0)20 7946 0958");
  SetContactField(records[0].contact, "home_phone", "n/a");
  SetContactField(records[0].contact, "mobile", "ext. 42");
  SetContactField(records[1].contact, "fax", "+442079460958");  // already E.164
  TransformOptions options;
  options.default_region = "GB";
  TransformReport report;
  TransformRecords(options, records, report, "dir");

  EXPECT_EQ(GetContactField(records[0].contact, "mobile"), (Strings{"+447700900123", "ext. 42"}));
  EXPECT_EQ(GetContactField(records[0].contact, "work_phone"), Strings{"+442079460958"});
  EXPECT_EQ(GetContactField(records[0].contact, "home_phone"), Strings{"n/a"});
  EXPECT_EQ(GetContactField(records[1].contact, "fax"), Strings{"+442079460958"});
  EXPECT_EQ(report.phones_normalised, 2);
  EXPECT_EQ(Shown(report.warnings),
            (Strings{"source dir: home_phone of Jane Doe (3f2a1b2c\u2026) is not a phone number "
                     "roster can read in region GB; kept as written",
                     "source dir: mobile of Jane Doe (3f2a1b2c\u2026) is not a phone number roster "
                     "can read in region GB; kept as written"}));
  ExpectNoneMentions(Shown(report.warnings), {"n/a", "ext. 42", "9d8e", "07700"});
}

TEST(TransformRecordsTest, ReadsEachPersonsNumbersInTheirOwnRegion) {
  std::vector<SourceRecord> records = {Person("de", "Max"), Person("us", "Ann"),
                                       Person("none", "Kim"), Person("odd", "Lee")};
  SetContactField(records[0].contact, "work_phone", "030 12345678");
  records[0].attributes["c"] = {"DE"};
  SetContactField(records[1].contact, "work_phone", "(212) 555-0147");
  records[1].attributes["c"] = {"us"};
  SetContactField(records[2].contact, "work_phone", "020 7946 0958");  // no region: the default
  SetContactField(records[3].contact, "work_phone", "020 7946 0958");
  records[3].attributes["c"] = {"Atlantis"};  // not a region: the default
  TransformOptions options;
  options.default_region = "GB";
  options.region_attribute = "c";
  TransformReport report;
  TransformRecords(options, records, report, "dir");
  EXPECT_EQ(GetContactField(records[0].contact, "work_phone"), Strings{"+493012345678"});
  EXPECT_EQ(GetContactField(records[1].contact, "work_phone"), Strings{"+12125550147"});
  EXPECT_EQ(GetContactField(records[2].contact, "work_phone"), Strings{"+442079460958"});
  EXPECT_EQ(GetContactField(records[3].contact, "work_phone"), Strings{"+442079460958"});
  EXPECT_TRUE(report.warnings.empty());
}

TEST(TransformRecordsTest, LeavesPhonesAloneWithoutAUsableRegion) {
  std::vector<SourceRecord> records = {Person("k", "Jane Doe")};
  SetContactField(records[0].contact, "mobile", "07700 900123");
  TransformReport report;
  TransformRecords(TransformOptions{}, records, report, "dir");
  EXPECT_EQ(GetContactField(records[0].contact, "mobile"), Strings{"07700 900123"});
  EXPECT_TRUE(report.warnings.empty());

  TransformOptions bad;
  bad.default_region = "XX";
  EXPECT_FALSE(ValidateTransformOptions(bad).ok());
  EXPECT_TRUE(ValidateTransformOptions(TransformOptions{}).ok());
  TransformRecords(bad, records, report, "dir");
  EXPECT_EQ(GetContactField(records[0].contact, "mobile"), Strings{"07700 900123"});
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_EQ(report.warnings[0].find("source dir: \"XX\" is not a region"), 0u)
      << report.warnings[0];
}

TEST(TransformRecordsTest, HidesWhatPeopleOptedOutOf) {
  std::vector<SourceRecord> records = {Person("k1", "Jane Doe"), Person("k2", "John Roe")};
  for (SourceRecord& r : records) {
    SetContactField(r.contact, "mobile", "07700 900123");
    SetContactField(r.contact, "home_phone", "not a number");
    SetContactField(r.contact, "work_phone", "020 7946 0958");
    SetContactField(r.contact, "home_city", "Leeds");
    r.contact.photo = Photo{"image/png", "png", ""};
  }
  records[0].attributes["PrivacyHide"] = {"Mobile, home_phone", "PHOTO shoe_size;home_city"};
  records[1].attributes["other"] = {"mobile"};
  TransformOptions options;
  options.default_region = "GB";
  options.opt_out_attribute = "privacyhide";
  TransformReport report;
  TransformRecords(options, records, report, "dir");

  const Contact& jane = records[0].contact;
  EXPECT_TRUE(GetContactField(jane, "mobile").empty());
  EXPECT_TRUE(GetContactField(jane, "home_phone").empty());
  EXPECT_TRUE(GetContactField(jane, "home_city").empty());
  EXPECT_FALSE(jane.photo.has_value());
  EXPECT_EQ(GetContactField(jane, "work_phone"), Strings{"+442079460958"});
  EXPECT_EQ(GetContactField(records[1].contact, "mobile"), Strings{"+447700900123"});
  EXPECT_EQ(report.fields_hidden, 4);
  // Jane's hidden home number is not worth a warning; John's is.
  EXPECT_EQ(Shown(report.warnings),
            (Strings{"source dir: Jane Doe (k1) asks in privacyhide to hide a field roster does "
                     "not know; that part is ignored",
                     "source dir: home_phone of John Roe (k2) is not a phone number roster can "
                     "read in region GB; kept as written"}));
  ExpectNoneMentions(Shown(report.warnings), {"shoe_size"});
}

TEST(TransformRecordsTest, CapsPhotos) {
  std::vector<SourceRecord> records = {Person("k1", "Jane Doe"), Person("k2", "John Roe"),
                                       Person("k3", "Small Photo"), Person("k4", "No Photo")};
  const std::string big =
      test_jpeg::MakeJpeg(test_jpeg::JpegSpec{.width = 1200, .height = 900, .quality = 95});
  ASSERT_GT(big.size(), 100u * 1024);
  records[0].contact.photo = Photo{"image/jpeg", big, ""};
  records[1].contact.photo = Photo{"image/png", std::string(150 * 1024, 'p'), ""};
  records[2].contact.photo = Photo{"image/gif", "GIF89a", ""};
  TransformReport report;
  TransformRecords(TransformOptions{}, records, report, "dir");
  ASSERT_TRUE(records[0].contact.photo.has_value());
  EXPECT_LE(records[0].contact.photo->data.size(), 100u * 1024);
  EXPECT_FALSE(records[1].contact.photo.has_value());
  EXPECT_EQ(records[2].contact.photo->data, "GIF89a");
  EXPECT_EQ(report.photos_resampled, 1);
  EXPECT_EQ(report.photos_dropped, 1);
  EXPECT_EQ(Shown(report.warnings),
            Strings{"source dir: photo of John Roe (k2) dropped: a 150 KB image/png photo is over "
                    "the 100 KB limit, and only JPEG can be made smaller"});

  TransformOptions off;
  off.photo_max_pixels = 0;
  TransformReport quiet;
  TransformRecords(off, records, quiet, "dir");
  EXPECT_EQ(quiet.photos_dropped, 2);
  EXPECT_TRUE(quiet.warnings.empty());
  for (const SourceRecord& r : records) EXPECT_FALSE(r.contact.photo.has_value());
}

TEST(TransformRecordsTest, NamesPeopleWithoutRevealingMore) {
  std::vector<SourceRecord> records = {Person("jane.doe@example.org", ""), Person("", "")};
  records[0].contact.emails = {{"jane.doe@example.org", {}, false}};
  records[0].contact.photo = Photo{"image/png", std::string(200 * 1024, 'p'), ""};
  records[1].contact.organization = "Acme";
  records[1].contact.photo = records[0].contact.photo;
  TransformReport report;
  TransformRecords(TransformOptions{}, records, report, "dir");
  ASSERT_EQ(report.warnings.size(), 2u);
  const Strings shown = Shown(report.warnings);
  EXPECT_EQ(shown[0].find("source dir: photo of a person without a name (jane.doe\u2026)"), 0u)
      << shown[0];
  EXPECT_EQ(shown[1].find("source dir: photo of Acme dropped"), 0u) << shown[1];
  ExpectNoneMentions(shown, {"example.org"});
  // In a log, the person is a pseudonym of their key.
  EXPECT_EQ(HidePersonal(report.warnings[0],
                         [](std::string_view ref) { return "<" + std::string(ref) + ">"; })
                .find("source dir: photo of <jane.doe@example.org> dropped"),
            0u);
}

}  // namespace
}  // namespace roster
