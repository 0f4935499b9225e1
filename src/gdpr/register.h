// The erasure register ([gdpr] register): who was erased with `roster gdpr
// erase`, kept outside the state file so that a lost or deleted state does
// not bring anyone back. It holds keyed hashes only (BLAKE2b under the
// state's index key, which never rotates), never an address in clear:
//
//   {"roster_erasure_register":1,"generation":7}
//   {"subject":"<32 hex>","ids":["<32 hex>",...],"erased_at":"2026-12-07"}
//   ...
//   {"mac":"<32 hex>"}
//
// "subject" is the hash of the address the erasure named; "ids" those of
// the person's source keys (per source), directory name and display name
// (core/erasure.h, ErasureIds) as roster found them, so that a changed
// address does not bring them back and others' records naming them are
// redacted. "generation" counts the writes: the state remembers the last
// one, so that an older copy is told from the current one. The last line
// is a keyed hash of everything before it: a register changed by hand, or
// cut short, is refused rather than read as a shorter list.
#pragma once

#include <chrono>
#include <cstdint>
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
  // How many times the register was written (0: never).
  int64_t generation() const { return generation_; }
  size_t size() const { return entries_.size(); }
  const std::string& path() const { return path_; }

  // Lists the person erased under `address` together with `ids`
  // (ErasureIds, as given: they are hashed here). Answers false when
  // `address` was listed already; its ids are merged then.
  bool Add(std::string_view address, const std::vector<std::string>& ids,
           std::chrono::system_clock::time_point now);
  // Removes the person erased under `address`; false when not listed.
  bool Remove(std::string_view address);
  bool Contains(std::string_view address) const;

  // Adds `ids` to the person erased under `address` (what a sync found of
  // them in its sources); false when nothing new was added.
  bool AddIds(std::string_view address, const std::vector<std::string>& ids);
  // What a sync found: each person's ids go to the entry erased under one
  // of their addresses (none when they were found by key alone). True when
  // anything new was learnt.
  bool Learn(const std::vector<ErasedPerson>& found);

  // Writes the register whole, one generation on (mode 0600, fsynced,
  // renamed into place).
  Status Save();

  // ErasureList:
  bool Erased(std::string_view source, const SourceRecord& record) const override;
  bool ErasedReference(std::string_view dn) const override;
  bool ErasedName(std::string_view name) const override;
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
  int64_t generation_ = 0;
  std::vector<Entry> entries_;
  std::set<std::string> hashes_;  // every subject and id hash, for lookups
};

}  // namespace roster::gdpr
