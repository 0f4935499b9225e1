// Who has been erased (GDPR Article 17, `roster gdpr erase`): the one question
// the sync asks of the erasure register (src/gdpr), so that an erased person
// is never selected again and is redacted where other items name them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/connector.h"

namespace roster {

class ErasureList {
 public:
  virtual ~ErasureList() = default;
  // True when `source`'s record is about an erased person: one of its
  // e-mail addresses, its key (in that source) or its directory name (the
  // "dn" attribute) is listed.
  virtual bool Erased(std::string_view source, const SourceRecord& record) const = 0;
  // True when a reference to another entry (a manager's DN) names an erased
  // person, who may no longer be among the records at all.
  virtual bool ErasedReference(std::string_view dn) const = 0;
  // True when a name another record gives (a manager's, without a DN) is
  // an erased person's display name. Namesakes are redacted too: roster
  // errs on the side of the erased.
  virtual bool ErasedName(std::string_view name) const = 0;
  // Changes whenever the list does: part of every rule's version, so that
  // an erasure is never skipped as "nothing changed". Empty when nobody is
  // erased.
  virtual std::string Fingerprint() const = 0;
};

// How roster compares directory names it did not read itself: lower-case
// ASCII, without the spaces around ',' '=' and '+'.
std::string NormalizeReference(std::string_view dn);

// The identities of an erased person the register keeps (hashed), so that a
// changed address does not bring them back and others' records can be
// redacted: "key" + NUL + source + NUL + key, "dn" + NUL + NormalizeReference
// (dn), "name" + NUL + their display name trimmed and lower-cased.
std::vector<std::string> ErasureIds(std::string_view source, const SourceRecord& record);

// An erased person as a run found them in a source: their addresses
// (trimmed, lower-cased) and ErasureIds, for the register to learn.
struct ErasedPerson {
  std::vector<std::string> addresses;
  std::vector<std::string> ids;
};
std::string ErasureKeyId(std::string_view source, std::string_view key);
std::string ErasureDnId(std::string_view dn);
std::string ErasureNameId(std::string_view name);

}  // namespace roster
