#include "mapping/merge.h"

#include <algorithm>
#include <vector>

#include "core/hash.h"
#include "core/text.h"

namespace roster {
namespace {

bool IsRuleField(std::string_view field) { return field == kPhotoField || IsContactField(field); }

bool IsHex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

bool IsFieldName(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string_view::npos;
}

bool HasValue(const Contact& contact, std::string_view field) {
  if (field == kPhotoField) {
    return contact.photo.has_value() &&
           (!contact.photo->data.empty() || !text::Trim(contact.photo->uri).empty());
  }
  return !GetContactField(contact, field).empty();
}

}  // namespace

const char* FieldModeName(FieldMode mode) {
  switch (mode) {
    case FieldMode::kOverwrite:
      return "overwrite";
    case FieldMode::kIfBlank:
      return "if_blank";
    case FieldMode::kKeepUser:
      return "keep_user";
  }
  return "overwrite";
}

FieldMode FieldPolicy::ModeOf(std::string_view field) const {
  const auto it = modes.find(std::string(field));
  return it == modes.end() ? FieldMode::kOverwrite : it->second;
}

bool FieldPolicy::empty() const {
  return std::all_of(modes.begin(), modes.end(),
                     [](const auto& entry) { return entry.second == FieldMode::kOverwrite; });
}

std::string FieldPolicy::Fingerprint() const {
  std::string text;
  for (const auto& [field, mode] : modes) {
    if (mode == FieldMode::kOverwrite) continue;
    text += field + '=' + FieldModeName(mode) + '\n';
  }
  return text.empty() ? std::string() : HashHex(text, 16).substr(0, 16);
}

Result<FieldPolicy> ParseFieldPolicy(const std::map<std::string, std::string>& config) {
  FieldPolicy policy;
  for (const auto& [raw_field, raw_mode] : config) {
    const std::string field = text::AsciiLower(text::Trim(raw_field));
    if (!IsRuleField(field)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "field rules name an unknown field \"" + raw_field + "\"");
    }
    const std::string mode = text::AsciiLower(text::Trim(raw_mode));
    FieldMode parsed;
    if (mode == "overwrite") {
      parsed = FieldMode::kOverwrite;
    } else if (mode == "if_blank") {
      parsed = FieldMode::kIfBlank;
    } else if (mode == "keep_user") {
      parsed = FieldMode::kKeepUser;
    } else {
      return MakeError(ErrorKind::kInvalidArgument,
                       "field rule for " + field + " has unknown mode \"" + raw_mode +
                           "\" (use overwrite, if_blank or keep_user)");
    }
    if (const auto [it, inserted] = policy.modes.emplace(field, parsed);
        !inserted && it->second != parsed) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "field rules give " + field + " two different modes");
    }
  }
  return policy;
}

std::string EncodeFieldMemory(const FieldMemory& memory) {
  std::string out;
  for (const auto& [field, hash] : memory) {
    if (!out.empty()) out += ',';
    out += field + '=' + hash;
  }
  return out;
}

Result<FieldMemory> DecodeFieldMemory(std::string_view encoded) {
  FieldMemory memory;
  if (encoded.empty()) return memory;
  size_t start = 0, entry = 1;
  while (start <= encoded.size()) {
    size_t comma = encoded.find(',', start);
    if (comma == std::string_view::npos) comma = encoded.size();
    const std::string_view item = encoded.substr(start, comma - start);
    const size_t eq = item.find('=');
    const std::string_view field = item.substr(0, eq);
    const std::string_view hash = eq == std::string_view::npos ? "" : item.substr(eq + 1);
    if (!IsFieldName(field) || !IsHex(hash) || hash.size() > 64 ||
        !memory.emplace(field, hash).second) {
      return MakeError(ErrorKind::kInvalidData,
                       "stored field memory is damaged at entry " + std::to_string(entry));
    }
    start = comma + 1;
    ++entry;
  }
  return memory;
}

std::string FieldValueHash(const Contact& contact, std::string_view field) {
  // Length-prefixed, so that no two lists share an encoding.
  std::string encoded;
  auto put = [&encoded](std::string_view tag, std::string_view value) {
    encoded += tag;
    encoded += std::to_string(value.size());
    encoded += ':';
    encoded += value;
  };
  if (field == kPhotoField) {
    if (contact.photo.has_value()) {
      if (!contact.photo->data.empty()) {
        put("data", contact.photo->data);
      } else if (const std::string_view uri = text::Trim(contact.photo->uri); !uri.empty()) {
        put("uri", uri);
      }
    }
  } else {
    std::vector<std::string> values = GetContactField(contact, field);
    std::sort(values.begin(), values.end());
    for (const std::string& v : values) put("v", v);
  }
  return HashHex(encoded, 16).substr(0, 16);
}

Contact MergeContact(const Contact& source, const Contact* remote, const FieldPolicy& policy,
                     const FieldMemory& before, FieldMemory* after) {
  Contact merged = source;
  FieldMemory memory;
  for (const auto& [field, mode] : policy.modes) {
    if (mode == FieldMode::kOverwrite) continue;
    bool take_remote = false;
    if (mode == FieldMode::kIfBlank) {
      take_remote = remote != nullptr && HasValue(*remote, field);
    } else {
      const std::string source_hash = FieldValueHash(source, field);
      memory[field] = source_hash;
      if (remote != nullptr) {
        const std::string remote_hash = FieldValueHash(*remote, field);
        if (const auto it = before.find(field); it != before.end()) {
          // The card differs from what roster last wrote: someone edited it
          // (clearing counts). Their value stays, and so does the memory of
          // roster's, so that the edit is still an edit next time.
          if (remote_hash != it->second) {
            take_remote = true;
            memory[field] = it->second;
          }
        } else if (HasValue(*remote, field) && remote_hash != source_hash) {
          // No memory: a card roster adopts (the person's own, made before
          // roster managed it). What they wrote wins, recorded against the
          // source's value so that it reads as an edit from now on.
          take_remote = true;
        }
      }
    }
    if (take_remote) CopyContactField(*remote, field, merged);
  }
  if (after != nullptr) *after = std::move(memory);
  return merged;
}

}  // namespace roster
