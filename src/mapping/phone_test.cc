#include "mapping/phone.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace roster {
namespace {

PhoneNormalizer Make(const char* region, PhoneFormat format) {
  Result<PhoneNormalizer> n = PhoneNormalizer::Create(region, format);
  EXPECT_TRUE(n.ok()) << region;
  return std::move(n).value();
}

TEST(PhoneNormalizerTest, KnowsItsRegions) {
  EXPECT_TRUE(PhoneNormalizer::Create("GB", PhoneFormat::kE164).ok());
  Result<PhoneNormalizer> lower = PhoneNormalizer::Create(" us ", PhoneFormat::kE164);
  ASSERT_TRUE(lower.ok());
  EXPECT_EQ(lower->region(), "US");
  for (const char* bad : {"", "ZZ", "GBR", "UK", "001", "xx"}) {
    Result<PhoneNormalizer> r = PhoneNormalizer::Create(bad, PhoneFormat::kE164);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().kind, ErrorKind::kInvalidArgument);
    EXPECT_NE(r.error().message.find("is not a region libphonenumber knows"), std::string::npos);
  }
}

struct Case {
  const char* region;
  const char* input;
  const char* e164;
  const char* international;
  const char* national;
};

TEST(PhoneNormalizerTest, FormatsNumbersAsPeopleWriteThem) {
  const std::vector<Case> cases = {
      // The UK's "(0)" trunk prefix inside an international number.
      {"GB", "+44 (0)20 7946 0958", "+442079460958", "+44 20 7946 0958", "020 7946 0958"},
      {"GB", "020 7946 0958", "+442079460958", "+44 20 7946 0958", "020 7946 0958"},
      {"GB", "07700 900123", "+447700900123", "+44 7700 900123", "07700 900123"},
      {"GB", "tel:+44-20-7946-0958", "+442079460958", "+44 20 7946 0958", "020 7946 0958"},
      {"US", "(201) 555-0123", "+12015550123", "+1 201-555-0123", "(201) 555-0123"},
      {"US", "1-800-FLOWERS", "+18003569377", "+1 800-356-9377", "(800) 356-9377"},
      {"DE", "030 12345678", "+493012345678", "+49 30 12345678", "030 12345678"},
      {"DE", "+49 (0)89 1234567", "+49891234567", "+49 89 1234567", "089 1234567"},
      {"FR", "01 23 45 67 89", "+33123456789", "+33 1 23 45 67 89", "01 23 45 67 89"},
      {"FR", "06.12.34.56.78", "+33612345678", "+33 6 12 34 56 78", "06 12 34 56 78"},
      // Extensions survive every format.
      {"US", "(201) 555-0123 ext. 42", "+12015550123 ext. 42", "+1 201-555-0123 ext. 42",
       "(201) 555-0123 ext. 42"},
      {"US", "201-555-0123 x42", "+12015550123 ext. 42", "+1 201-555-0123 ext. 42",
       "(201) 555-0123 ext. 42"},
      {"US", "+1 650 253 0000;ext=123", "+16502530000 ext. 123", "+1 650-253-0000 ext. 123",
       "(650) 253-0000 ext. 123"},
      // A national format for another country's number would lose its country.
      {"GB", "+1 201 555 0123", "+12015550123", "+1 201-555-0123", "+1 201-555-0123"},
      {"DE", "+44 20 7946 0958", "+442079460958", "+44 20 7946 0958", "+44 20 7946 0958"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.region) + " " + c.input);
    const struct {
      PhoneFormat format;
      const char* want;
    } formats[] = {{PhoneFormat::kE164, c.e164},
                   {PhoneFormat::kInternational, c.international},
                   {PhoneFormat::kNational, c.national}};
    for (const auto& [format, want] : formats) {
      const PhoneNormalizer n = Make(c.region, format);
      Result<std::string> got = n.Normalize(c.input);
      ASSERT_TRUE(got.ok()) << PhoneFormatName(format);
      EXPECT_EQ(*got, want) << PhoneFormatName(format);
      // A normalised number normalises to itself: no change on the next run.
      Result<std::string> again = n.Normalize(*got);
      ASSERT_TRUE(again.ok()) << *got;
      EXPECT_EQ(*again, *got);
    }
    Result<std::string> as_is = Make(c.region, PhoneFormat::kAsIs).Normalize(c.input);
    ASSERT_TRUE(as_is.ok());
    EXPECT_EQ(*as_is, c.input);
  }
}

TEST(PhoneNormalizerTest, RefusesWhatIsNotAPossibleNumber) {
  for (PhoneFormat format : {PhoneFormat::kE164, PhoneFormat::kAsIs}) {
    const PhoneNormalizer gb = Make("GB", format);
    for (const char* garbage : {"ext. 42", "n/a", "N/A", "", "   ", "123", "+", "tel:",
                                "see reception", "0", "+44 20 7946 0958 0958 0958 0958", "☎"}) {
      Result<std::string> r = gb.Normalize(garbage);
      ASSERT_FALSE(r.ok()) << garbage;
      EXPECT_EQ(r.error().kind, ErrorKind::kInvalidData);
      EXPECT_EQ(r.error().message, "not a phone number roster can read in region GB");
    }
  }
  // Overlong input is refused, not slow.
  EXPECT_FALSE(Make("GB", PhoneFormat::kE164).Normalize(std::string(100000, '1')).ok());
}

TEST(PhoneNormalizerTest, AsIsKeepsTheTextExactly) {
  Result<std::string> r = Make("GB", PhoneFormat::kAsIs).Normalize(" 020  7946 0958 ");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, " 020  7946 0958 ");
}

TEST(PhoneFormatTest, ParsesNames) {
  EXPECT_EQ(*ParsePhoneFormat("E164"), PhoneFormat::kE164);
  EXPECT_EQ(*ParsePhoneFormat("international"), PhoneFormat::kInternational);
  EXPECT_EQ(*ParsePhoneFormat(" National "), PhoneFormat::kNational);
  EXPECT_EQ(*ParsePhoneFormat("as_is"), PhoneFormat::kAsIs);
  for (PhoneFormat f : {PhoneFormat::kE164, PhoneFormat::kInternational, PhoneFormat::kNational,
                        PhoneFormat::kAsIs}) {
    EXPECT_EQ(*ParsePhoneFormat(PhoneFormatName(f)), f);
  }
  Result<PhoneFormat> bad = ParsePhoneFormat("pretty");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kInvalidArgument);
}

}  // namespace
}  // namespace roster
