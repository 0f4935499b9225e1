#include "core/record_codec.h"

#include <gtest/gtest.h>

namespace roster {
namespace {

SourceRecord Everything() {
  SourceRecord r;
  r.key = "0a000000-0000-4000-8000-000000000001";
  Contact& c = r.contact;
  c.formatted_name = "Zoë Ångström";
  c.family_name = "Ångström";
  c.given_name = "Zoë";
  c.additional_names = "M";
  c.honorific_prefix = "Dr.";
  c.honorific_suffix = "PhD";
  c.nickname = "Z";
  c.organization = "Example";
  c.department = "Research";
  c.title = "Chemist";
  c.role = "Lead";
  c.manager = "Kenji Bernard";
  c.emails = {{"zoe@example.org", {"work"}, true}, {"z@home.example", {"home", "x-other"}, false}};
  c.phones = {{"+33 1 23 45 67 89", {"work", "voice"}, false}};
  c.urls = {{"https://example.org/~zoe", {}, false}};
  c.addresses = {
      PostalAddress{{"work"}, "PO 1", "Bldg 2", "1 Main St", "Paris", "IdF", "75001", "France"},
      PostalAddress{}};
  c.note = std::string("line one\nline two\0with a NUL", 29);
  c.birthday = "--04-02";
  c.categories = {"staff", "paris"};
  c.photo = Photo{"image/jpeg", std::string("\xff\xd8\xff\0\x01", 5), ""};
  r.attributes = {{"dn", {"uid=zoe,ou=people,dc=example,dc=org"}},
                  {"c", {"FR"}},
                  {"empty", {}},
                  {"memberOf", {"cn=a", "cn=b", ""}}};
  return r;
}

TEST(RecordCodecTest, EveryFieldComesBack) {
  const SourceRecord r = Everything();
  auto back = DecodeRecord(EncodeRecord(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->key, r.key);
  EXPECT_EQ(back->contact, r.contact);
  EXPECT_EQ(back->attributes, r.attributes);
}

TEST(RecordCodecTest, AnEmptyRecordAndOneWithoutPhotoComeBack) {
  SourceRecord empty;
  auto back = DecodeRecord(EncodeRecord(empty));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->contact, Contact());
  EXPECT_TRUE(back->attributes.empty());

  SourceRecord r = Everything();
  r.contact.photo.reset();
  back = DecodeRecord(EncodeRecord(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->contact.photo.has_value());
  // A photo with no bytes is not the same as none.
  r.contact.photo = Photo{"", "", "https://example.org/p.jpg"};
  back = DecodeRecord(EncodeRecord(r));
  ASSERT_TRUE(back.has_value());
  ASSERT_TRUE(back->contact.photo.has_value());
  EXPECT_EQ(back->contact.photo->uri, "https://example.org/p.jpg");
}

TEST(RecordCodecTest, EveryTruncationAndTrailingByteIsRefused) {
  const std::string bytes = EncodeRecord(Everything());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeRecord(std::string_view(bytes).substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(DecodeRecord(bytes + "x").has_value());
  EXPECT_FALSE(DecodeRecord("rr2" + bytes.substr(3)).has_value());
}

TEST(RecordCodecTest, AHugeCountDoesNotAllocate) {
  // "rr1", an empty key, then a count of 2^62 where the formatted name's length goes.
  std::string bytes = "rr1";
  bytes.push_back('\0');
  for (int i = 0; i < 8; ++i) bytes.push_back('\xff');
  bytes.push_back('\x3f');
  EXPECT_FALSE(DecodeRecord(bytes).has_value());
  // An over-long varint.
  std::string varint = "rr1" + std::string(11, '\x80') + "\x01";
  EXPECT_FALSE(DecodeRecord(varint).has_value());
}

TEST(RecordCodecTest, AFlagOtherThanZeroOrOneIsRefused) {
  SourceRecord r;
  r.contact.emails = {{"a@example.org", {}, true}};
  std::string bytes = EncodeRecord(r);
  const size_t flag =
      bytes.find("a@example.org") + 13 + 1;  // after the value and an empty type list
  ASSERT_EQ(bytes[flag], '\1');
  bytes[flag] = '\2';
  EXPECT_FALSE(DecodeRecord(bytes).has_value());
}

TEST(RecordCodecTest, OnlyTheOneEncodingOfARecordDecodes) {
  // A key of length 1 written as a padded varint (0x81 0x00) instead of 0x01.
  SourceRecord r;
  r.key = "k";
  const std::string bytes = EncodeRecord(r);
  ASSERT_TRUE(DecodeRecord(bytes).has_value());
  ASSERT_EQ(bytes.substr(3, 2), std::string("\x01k", 2));
  std::string padded = bytes.substr(0, 3) + std::string("\x81\x00", 2) + bytes.substr(4);
  EXPECT_FALSE(DecodeRecord(padded).has_value());
  // Bits past 64 in the last byte of a ten-byte varint.
  std::string wide = "rr1" + std::string(9, '\xff') + "\x02";
  EXPECT_FALSE(DecodeRecord(wide).has_value());
  // Attributes out of order: swap the two names of a record that has "a" and "b".
  r.attributes = {{"a", {"1"}}, {"b", {"2"}}};
  std::string ordered = EncodeRecord(r);
  ASSERT_TRUE(DecodeRecord(ordered).has_value());
  const size_t a =
      ordered.rfind(std::string("\x01"
                                "a\x01\x01"
                                "1",
                                5));
  const size_t b =
      ordered.rfind(std::string("\x01"
                                "b\x01\x01"
                                "2",
                                5));
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  std::string swapped = ordered;
  swapped.replace(a, 5, ordered.substr(b, 5));
  swapped.replace(b, 5, ordered.substr(a, 5));
  EXPECT_FALSE(DecodeRecord(swapped).has_value());
}

}  // namespace
}  // namespace roster
