// Item kinds: what the sync engine must know about items of one kind without
// knowing the kind — their canonical form and content hash, the keys that
// recognise a user's own copy of a person (or event), a title for messages,
// the field rules' merge, and a field-level difference for plans and audits.
// Contacts are the first kind; events add a class here, not a branch in the
// planner, executor or state store.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/item.h"
#include "mapping/merge.h"

namespace roster {

class ItemKind {
 public:
  virtual ~ItemKind() = default;
  // "contact": for messages and the plan.
  virtual std::string_view name() const = 0;
  // A deterministic serialisation: equal forms mean the same item to roster
  // (property order, folding and server-added properties never count).
  virtual std::string CanonicalForm(const ItemBody& body) const = 0;
  // Hex BLAKE2b-128 of the canonical form.
  std::string ContentHash(const ItemBody& body) const;
  // Normalised values that identify the item's subject among a user's own
  // items (for contacts: e-mail addresses, trimmed and lower-cased), sorted,
  // unique. Two items sharing one are copies of the same person.
  virtual std::vector<std::string> MatchKeys(const ItemBody& body) const = 0;
  // A short human title ("Ann Lee"), for plans and messages.
  virtual std::string Title(const ItemBody& body) const = 0;
  // The fields that differ from `before` to `after`, in the kind's field order.
  virtual std::vector<FieldChange> Diff(const ItemBody& before, const ItemBody& after) const = 0;
  // The item to write: `source` with each field decided by the policy
  // against `remote` (null for a new item) and the memory of what roster
  // wrote before; `after` receives the memory to store.
  virtual ItemBody Merge(const ItemBody& source, const ItemBody* remote, const FieldPolicy& policy,
                         const FieldMemory& before, FieldMemory* after) const = 0;
};

// The kind of an item's content.
const ItemKind& KindOf(const ItemBody& body);

// Hashes of MatchKeys, 16 hex digits each, sorted: how a user's own item is
// recognised without keeping the addresses in the state.
std::vector<std::string> MatchHashes(const ItemBody& body);

// True when the two items share a match key.
bool SameSubject(const ItemBody& a, const ItemBody& b);

}  // namespace roster
