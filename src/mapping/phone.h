// Phone numbers in one shape: parsed with libphonenumber against a default
// region and written in the format the operator chose, extensions kept.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "core/result.h"

namespace roster {

enum class PhoneFormat {
  kE164,           // "+442079460958" (" ext. 42" appended when there is one)
  kInternational,  // "+44 20 7946 0958"
  kNational,       // "020 7946 0958"; numbers of other countries stay international
  kAsIs,           // checked, but kept exactly as written
};

// "e164", "international", "national" or "as_is", in any case.
Result<PhoneFormat> ParsePhoneFormat(std::string_view name);
const char* PhoneFormatName(PhoneFormat format);

// Parses numbers written the way people of one region write them. Cheap to
// copy; libphonenumber's metadata is shared and thread-safe.
class PhoneNormalizer {
 public:
  // `region` is an ISO 3166 code libphonenumber knows ("GB", "us"); any other
  // is kInvalidArgument.
  static Result<PhoneNormalizer> Create(std::string_view region, PhoneFormat format);

  // The number in the chosen format. kInvalidData when libphonenumber cannot
  // parse it or it is not a possible number; the caller then keeps it as
  // written. The error message never repeats the number.
  Result<std::string> Normalize(std::string_view number) const;

  const std::string& region() const { return region_; }
  PhoneFormat format() const { return format_; }

 private:
  PhoneNormalizer(std::string region, PhoneFormat format)
      : region_(std::move(region)), format_(format) {}

  std::string region_;
  PhoneFormat format_;
};

}  // namespace roster
