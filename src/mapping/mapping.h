// Mapping: what roster does to a source's records before they become cards,
// and how a card roster writes meets the one on the server. Phone numbers in
// one format, photos small enough, fields a person asked to hide removed, and
// field rules that let people keep their own edits. Pure: no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/connector.h"
#include "core/result.h"
#include "mapping/merge.h"
#include "mapping/phone.h"
#include "mapping/photo.h"

namespace roster {

struct TransformOptions {
  std::string default_region;  // empty: phone numbers untouched (unless region_attribute gives one)
  // A raw attribute holding the person's own ISO region ("c" in LDAP and
  // Active Directory): when it names a region libphonenumber knows, that
  // person's numbers are read in it, else in default_region.
  std::string region_attribute;
  PhoneFormat phone_format = PhoneFormat::kE164;
  size_t photo_max_bytes = kDefaultPhotoMaxBytes;
  int photo_max_pixels = kDefaultPhotoMaxPixels;  // 0: no photos at all
  // A raw attribute whose values name fields to hide ("mobile, home_phone",
  // comma or space separated, any case, several values allowed); empty: none.
  std::string opt_out_attribute;
};

// Counts and warnings for the run summary. Warnings name the source, the
// person (display name and the start of their key) and the field, never a
// value: they end up in logs.
struct TransformReport {
  int phones_normalised = 0;
  int photos_resampled = 0;
  int photos_dropped = 0;
  int fields_hidden = 0;
  std::vector<std::string> warnings;
};

// Checks options once, at configuration time: kInvalidArgument for a region
// libphonenumber does not know.
Status ValidateTransformOptions(const TransformOptions& options);

// Per record: fields the person opted out of cleared (ClearContactField),
// phone numbers normalised (unreadable ones kept as written, with a warning),
// photos capped (CapPhoto). Adds to `report`; never fails as a whole.
void TransformRecords(const TransformOptions& options, std::vector<SourceRecord>& records,
                      TransformReport& report, const std::string& source_name);

}  // namespace roster
