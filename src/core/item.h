// An item's content, whatever its kind: the one type the connector
// interfaces, the planner and the executor pass around. Contacts are the
// first kind; calendar events join the variant, and nothing that only moves,
// hashes or compares items changes when they do (see kinds/kind.h).
#pragma once

#include <string>
#include <variant>

#include "core/contact.h"

namespace roster {

using ItemBody = std::variant<Contact>;

// One field that differs between two versions of an item, by the kind's
// field names ("mobile", "title", "photo"). Values are shown to
// administrators in plans: `before`/`after` are the values as text, with
// binary fields (photos) given as a size.
struct FieldChange {
  std::string field;
  std::string before;
  std::string after;
  bool operator==(const FieldChange&) const = default;
};

}  // namespace roster
