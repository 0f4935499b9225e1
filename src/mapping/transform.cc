#include <map>
#include <optional>
#include <set>

#include "core/personal.h"
#include "core/text.h"
#include "mapping/mapping.h"

namespace roster {
namespace {

// "Jane Doe (3f2a1b2c…)": enough to find the person, no more. A key can be an
// e-mail address, so only its start is shown; a name that DisplayName() took
// from an e-mail address is not shown at all. Marked as personal (a log
// shows a pseudonym instead).
std::string ShownPerson(const SourceRecord& record) {
  const Contact& c = record.contact;
  std::string name = c.DisplayName();
  for (const TypedValue& email : c.emails) {
    if (!name.empty() && text::Trim(email.value) == name) {
      name.clear();
      break;
    }
  }
  if (name.empty()) name = "a person without a name";
  std::string_view key = text::Trim(record.key);
  if (key.empty()) return name;
  constexpr size_t kShown = 8;
  if (key.size() <= kShown) return name + " (" + std::string(key) + ")";
  size_t cut = kShown;
  while (cut > 0 && (static_cast<unsigned char>(key[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8
  return name + " (" + std::string(key.substr(0, cut)) + "\u2026)";
}

std::string Person(const SourceRecord& record) { return Personal(record.key, ShownPerson(record)); }

const std::vector<std::string>* FindAttribute(const SourceRecord& record, std::string_view name) {
  // Directory attribute names are case-insensitive.
  for (const auto& [key, values] : record.attributes) {
    if (text::EqualsNoCase(key, name)) return &values;
  }
  return nullptr;
}

void HideOptedOutFields(const TransformOptions& options, SourceRecord& record,
                        TransformReport& report, const std::string& source_name) {
  if (options.opt_out_attribute.empty()) return;
  const std::vector<std::string>* values = FindAttribute(record, options.opt_out_attribute);
  if (values == nullptr) return;
  bool unknown = false;
  for (const std::string& value : *values) {
    size_t start = 0;
    while (start < value.size()) {
      size_t end = value.find_first_of(", \t\r\n;", start);
      if (end == std::string::npos) end = value.size();
      const std::string field =
          text::AsciiLower(std::string_view(value).substr(start, end - start));
      start = end + 1;
      if (field.empty()) continue;
      const bool had = field == kPhotoField ? record.contact.photo.has_value()
                                            : !GetContactField(record.contact, field).empty();
      if (!ClearContactField(record.contact, field)) {
        unknown = true;
      } else if (had) {
        ++report.fields_hidden;
      }
    }
  }
  if (unknown) {
    report.warnings.push_back("source " + source_name + ": " + Person(record) + " asks in " +
                              options.opt_out_attribute +
                              " to hide a field roster does not know; that part is ignored");
  }
}

void NormalisePhones(const PhoneNormalizer& normalizer, SourceRecord& record,
                     TransformReport& report, const std::string& source_name) {
  std::set<std::string_view> warned;
  for (TypedValue& phone : record.contact.phones) {
    if (text::Trim(phone.value).empty()) continue;
    Result<std::string> normalised = normalizer.Normalize(phone.value);
    if (!normalised.ok()) {
      const std::string_view field = PhoneFieldName(phone);
      if (warned.insert(field).second) {
        report.warnings.push_back("source " + source_name + ": " + std::string(field) + " of " +
                                  Person(record) + " is " + normalised.error().message +
                                  "; kept as written");
      }
      continue;
    }
    if (*normalised != phone.value) {
      phone.value = std::move(normalised).value();
      ++report.phones_normalised;
    }
  }
}

void CapRecordPhoto(const TransformOptions& options, SourceRecord& record, TransformReport& report,
                    const std::string& source_name) {
  std::optional<Photo>& photo = record.contact.photo;
  if (!photo.has_value()) return;
  if (options.photo_max_pixels <= 0) {
    // Photos turned off: the operator knows, so no warning per person.
    photo.reset();
    ++report.photos_dropped;
    return;
  }
  CappedPhoto capped = CapPhoto(*photo, options.photo_max_bytes, options.photo_max_pixels);
  switch (capped.outcome) {
    case CappedPhoto::Outcome::kKept:
      return;
    case CappedPhoto::Outcome::kResampled:
      photo = std::move(capped.photo);
      ++report.photos_resampled;
      return;
    case CappedPhoto::Outcome::kDropped:
      photo.reset();
      ++report.photos_dropped;
      report.warnings.push_back("source " + source_name + ": photo of " + Person(record) +
                                " dropped: " + capped.reason);
      return;
  }
}

}  // namespace

Status ValidateTransformOptions(const TransformOptions& options) {
  if (options.default_region.empty()) return {};
  Result<PhoneNormalizer> normalizer =
      PhoneNormalizer::Create(options.default_region, options.phone_format);
  if (!normalizer.ok()) return normalizer.take_error();
  return {};
}

void TransformRecords(const TransformOptions& options, std::vector<SourceRecord>& records,
                      TransformReport& report, const std::string& source_name) {
  std::optional<PhoneNormalizer> normalizer;
  if (!options.default_region.empty()) {
    Result<PhoneNormalizer> made =
        PhoneNormalizer::Create(options.default_region, options.phone_format);
    if (made.ok()) {
      normalizer = std::move(made).value();
    } else {
      report.warnings.push_back("source " + source_name + ": " + made.error().message +
                                "; phone numbers left as written");
    }
  }
  // One normaliser per region people name; nullopt for names that are none.
  std::map<std::string, std::optional<PhoneNormalizer>> by_region;
  auto own_region = [&](const SourceRecord& record) -> const PhoneNormalizer* {
    if (options.region_attribute.empty()) return nullptr;
    auto it = record.attributes.find(options.region_attribute);
    if (it == record.attributes.end() || it->second.empty()) return nullptr;
    std::string region(text::Trim(it->second.front()));
    if (region.size() != 2) return nullptr;
    auto [at, fresh] = by_region.try_emplace(region);
    if (fresh) {
      Result<PhoneNormalizer> made = PhoneNormalizer::Create(region, options.phone_format);
      if (made.ok()) at->second = std::move(made).value();
    }
    return at->second ? &*at->second : nullptr;
  };
  for (SourceRecord& record : records) {
    // Hidden first: a field the person asked to hide is neither normalised
    // nor mentioned in a warning.
    HideOptedOutFields(options, record, report, source_name);
    const PhoneNormalizer* own = own_region(record);
    if (own) {
      NormalisePhones(*own, record, report, source_name);
    } else if (normalizer.has_value()) {
      NormalisePhones(*normalizer, record, report, source_name);
    }
    CapRecordPhoto(options, record, report, source_name);
  }
}

}  // namespace roster
