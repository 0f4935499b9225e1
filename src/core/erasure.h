// Who has been erased (GDPR Article 17, `roster gdpr erase`): the one question
// the sync asks of the erasure register (src/gdpr), so that an erased person
// is never selected again and is redacted where other items name them.
#pragma once

#include <string>
#include <string_view>

#include "core/connector.h"

namespace roster {

class ErasureList {
 public:
  virtual ~ErasureList() = default;
  // True when the record is about an erased person: one of its e-mail
  // addresses, its key or its directory name (the "dn" attribute) is listed.
  virtual bool Erased(const SourceRecord& record) const = 0;
  // True when a reference to another entry (a manager's DN) names an erased
  // person, who may no longer be among the records at all.
  virtual bool ErasedReference(std::string_view dn) const = 0;
  // Changes whenever the list does: part of every rule's version, so that
  // an erasure is never skipped as "nothing changed". Empty when nobody is
  // erased.
  virtual std::string Fingerprint() const = 0;
};

// How roster compares directory names it did not read itself: lower-case
// ASCII, without the spaces around ',' '=' and '+'.
std::string NormalizeReference(std::string_view dn);

}  // namespace roster
