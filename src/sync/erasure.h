// Erased people in a run (`roster gdpr erase`): taken out of every source's
// records before anything is selected, and redacted where other records
// name them (a manager's name on their reports' cards), so that no target
// keeps or receives them again.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/connector.h"
#include "core/erasure.h"

namespace roster {

// What identifies an erased person inside other records, and in the
// register (ErasureIds).
struct ErasedName {
  std::string dn;       // NormalizeReference of their "dn" attribute; empty: none
  std::string name;     // their display name, trimmed and lower-cased; empty: none
  ErasedPerson person;  // their addresses and ErasureIds(source, record)
};

// Moves the records of `source` that `list` says are erased out of
// `records`, answering what names them.
std::vector<ErasedName> TakeErased(const ErasureList& list, std::string_view source,
                                   std::vector<SourceRecord>& records);

// Clears every reference in `records` to an erased person: a manager given
// by a DN that is listed or among `erased`, or by a name that is. Answers
// the indexes of the records it changed.
std::vector<size_t> RedactErased(const ErasureList& list, const std::vector<ErasedName>& erased,
                                 std::vector<SourceRecord>& records);

ErasedName NameOf(std::string_view source, const SourceRecord& record);

}  // namespace roster
