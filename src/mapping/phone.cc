#include "mapping/phone.h"

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

#include <set>

#include "core/text.h"

namespace roster {
namespace {

constexpr size_t kMaxPhoneNumberLength = 250;  // libphonenumber's kMaxInputStringLength

}  // namespace

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

Result<PhoneFormat> ParsePhoneFormat(std::string_view name) {
  const std::string lower = text::AsciiLower(text::Trim(name));
  if (lower == "e164") return PhoneFormat::kE164;
  if (lower == "international") return PhoneFormat::kInternational;
  if (lower == "national") return PhoneFormat::kNational;
  if (lower == "as_is") return PhoneFormat::kAsIs;
  return MakeError(ErrorKind::kInvalidArgument,
                   "unknown phone format \"" + std::string(name) +
                       "\" (use e164, international, national or as_is)");
}

const char* PhoneFormatName(PhoneFormat format) {
  switch (format) {
    case PhoneFormat::kE164:
      return "e164";
    case PhoneFormat::kInternational:
      return "international";
    case PhoneFormat::kNational:
      return "national";
    case PhoneFormat::kAsIs:
      return "as_is";
  }
  return "e164";
}

Result<PhoneNormalizer> PhoneNormalizer::Create(std::string_view region, PhoneFormat format) {
  const std::string upper = text::AsciiUpper(text::Trim(region));
  std::set<std::string> known;
  PhoneNumberUtil::GetInstance()->GetSupportedRegions(&known);
  if (!known.contains(upper)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "\"" + std::string(region) +
                         "\" is not a region libphonenumber knows (use a two-letter country "
                         "code such as GB or US)");
  }
  return PhoneNormalizer(upper, format);
}

Result<std::string> PhoneNormalizer::Normalize(std::string_view number) const {
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  const std::string cleaned = text::StripTelScheme(number);
  PhoneNumber parsed;
  // libphonenumber refuses more than 250 characters too, but only after
  // running its patterns over all of them: 100 KB took 90 s.
  if (cleaned.empty() || cleaned.size() > kMaxPhoneNumberLength ||
      util.Parse(cleaned, region_, &parsed) != PhoneNumberUtil::NO_PARSING_ERROR ||
      !util.IsPossibleNumber(parsed)) {
    return MakeError(ErrorKind::kInvalidData,
                     "not a phone number roster can read in region " + region_);
  }
  std::string out;
  switch (format_) {
    case PhoneFormat::kAsIs:
      return std::string(number);
    case PhoneFormat::kE164:
      util.Format(parsed, PhoneNumberUtil::E164, &out);
      // E.164 has no room for an extension; libphonenumber's own spelling
      // reads back to the same number.
      if (parsed.has_extension() && !parsed.extension().empty()) {
        out += " ext. " + parsed.extension();
      }
      return out;
    case PhoneFormat::kInternational:
      util.Format(parsed, PhoneNumberUtil::INTERNATIONAL, &out);
      return out;
    case PhoneFormat::kNational:
      // A national format drops the country code, which is only safe for
      // numbers of the default region's country.
      util.Format(parsed,
                  parsed.country_code() == util.GetCountryCodeForRegion(region_)
                      ? PhoneNumberUtil::NATIONAL
                      : PhoneNumberUtil::INTERNATIONAL,
                  &out);
      return out;
  }
  return std::string(number);
}

}  // namespace roster
