// Field rules: which of a card's fields roster overwrites, fills only when
// blank, or leaves to the person who edited them on their phone.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/contact.h"
#include "core/result.h"

namespace roster {

enum class FieldMode {
  kOverwrite,  // the source's value, always
  kIfBlank,    // the card's value when it has one, else the source's
  kKeepUser,   // the source's value until someone edits the card; then theirs, for good
};

const char* FieldModeName(FieldMode mode);

// What to do when a user already has their own item for a person roster would create.
enum class AdoptMode {
  kNever,  // leave theirs alone and add nothing: no duplicate either way
  kMerge,  // manage theirs from now on, merged by the field rules
};

// Field name (ContactFieldNames() or "photo") -> mode; a field not listed is
// overwritten.
struct FieldPolicy {
  std::map<std::string, FieldMode> modes;

  FieldMode ModeOf(std::string_view field) const;
  // True when every field is overwritten (listing a field as overwrite
  // changes nothing).
  bool empty() const;
  // Changes exactly when the policy's effect does; empty for an empty policy.
  std::string Fingerprint() const;
};

// From config: field -> "overwrite" | "if_blank" | "keep_user". An unknown
// field or mode is kInvalidArgument naming it.
Result<FieldPolicy> ParseFieldPolicy(const std::map<std::string, std::string>& config);

// What roster last wrote for each keep_user field: field -> FieldValueHash of
// the value it wrote.
using FieldMemory = std::map<std::string, std::string>;

// "field=hash,field=hash": compact, for the state store.
std::string EncodeFieldMemory(const FieldMemory& memory);
// kInvalidData for anything EncodeFieldMemory cannot have written.
Result<FieldMemory> DecodeFieldMemory(std::string_view encoded);

// 16 hex digits standing for a field's value: the sorted list
// GetContactField returns, or for "photo" its bytes (else its URI).
std::string FieldValueHash(const Contact& contact, std::string_view field);

// The card roster should write: `source` with each field decided by its
// mode against `remote` (the card as it is now; null for a new card), and
// `after` (when not null) set to the memory to store with it. Properties no
// field covers come from the source. Pure: no I/O.
Contact MergeContact(const Contact& source, const Contact* remote, const FieldPolicy& policy,
                     const FieldMemory& before, FieldMemory* after);

}  // namespace roster
