// The erasure register ([gdpr] register): who was erased with `roster gdpr
// erase`, kept outside the state file so that a lost or deleted state does
// not bring anyone back. It holds keyed hashes only (BLAKE2b under the
// state's index key, which never rotates), never an address in clear:
//
//   {"roster_erasure_register":1}
//   {"subject":"<32 hex>","ids":["<32 hex>",...],"erased_at":"2026-12-07"}
//   ...
//   {"mac":"<32 hex>"}
//
// "subject" is the hash of the address the erasure named; "ids" those of
// the other addresses, source keys and directory names roster found for the
// person when it was erased, so that a changed address does not bring them
// back either. The last line is a keyed hash of everything before it: a
// register changed by hand, or cut short, is refused rather than read as a
// shorter list.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/erasure.h"
#include "core/result.h"
#include "crypto/keys.h"

namespace roster::gdpr {

// The form roster compares e-mail addresses in: trimmed, lower-case ASCII.
std::string NormalizeAddress(std::string_view address);
// True for something that can be an e-mail address: one '@' with text on
// both sides, no space or control character.
bool IsAddress(std::string_view address);

class ErasureRegister : public ErasureList {
 public:
  // Reads the register at `path`. A missing file is an empty register that
  // does not exist yet (exists() false); anything unreadable, changed or cut
  // short is an error naming the file and the line.
  static Result<ErasureRegister> Load(const std::string& path, const crypto::Key& key);

  bool exists() const { return exists_; }
  size_t size() const { return entries_.size(); }
  const std::string& path() const { return path_; }

  // Lists the person erased under `address` together with `ids` (their
  // other addresses, keys and directory names, as given: they are hashed
  // here). Answers false when `address` was listed already; its ids are
  // merged then.
  bool Add(std::string_view address, const std::vector<std::string>& ids,
           std::chrono::system_clock::time_point now);
  // Removes the person erased under `address`; false when not listed.
  bool Remove(std::string_view address);
  bool Contains(std::string_view address) const;

  // Writes the register whole (mode 0600, fsynced, renamed into place).
  Status Save();

  // ErasureList:
  bool Erased(const SourceRecord& record) const override;
  bool ErasedReference(std::string_view dn) const override;
  std::string Fingerprint() const override;

 private:
  struct Entry {
    std::string subject;
    std::vector<std::string> ids;
    std::string erased_at;
  };
  ErasureRegister(std::string path, const crypto::Key& key) : path_(std::move(path)), key_(key) {}
  std::string SubjectHash(std::string_view address) const;
  std::string IdHash(std::string_view id) const;
  std::string Text() const;  // every line but the MAC
  void Index();

  std::string path_;
  crypto::Key key_;
  bool exists_ = false;
  std::vector<Entry> entries_;
  std::set<std::string> hashes_;  // every subject and id hash, for lookups
};

}  // namespace roster::gdpr
