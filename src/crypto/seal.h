// Encryption at rest and keyed hashes, under a Key (crypto/keys.h).
//
// Seal/Open: XChaCha20-Poly1305 (IETF) with a random 24-byte nonce. A sealed
// value is
//   u8 format (1) | u32 key id (network byte order) | nonce [24] |
//   ciphertext | tag [16]
// and the associated data authenticated with it is that 5-byte header
// followed by the caller's associated data, so neither the key id nor the
// format can be changed without Open noticing. The caller's associated data
// says where the value lives (SealContext): a value copied into another row,
// column or table no longer opens.
//
// BlindIndex and Pseudonym: keyed BLAKE2b under subkeys of the index master,
// which never rotates; equal inputs give equal outputs for as long as the
// key file lives, and nothing about the input can be learnt without the key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "crypto/keys.h"

namespace roster::crypto {

// Where a sealed value lives, as associated data. `row` is the row's stable
// identity (its primary key, or a blind index of it), never something that
// changes when the row's other columns do. Views: the strings must outlive
// the call that uses the context.
struct SealContext {
  std::string_view table;
  std::string_view column;
  std::string_view row;

  // Each part as a 4-byte big-endian length and its bytes, so that no two
  // different contexts encode alike ("a"+"bc" is not "ab"+"c").
  std::string Encode() const;
};

// The bytes one sealed value adds to its plaintext: header, nonce and tag.
inline constexpr size_t kSealOverhead = 1 + 4 + 24 + 16;

// Seals `plaintext` under the key's current sealing key (key.key_id()).
std::string Seal(const Key& key, std::string_view plaintext, std::string_view associated_data);
std::string Seal(const Key& key, std::string_view plaintext, const SealContext& where);

// Opens a value sealed by Seal under the current or (during a rotation) the
// previous sealing key, chosen by the id in the value. A value that is
// truncated, of an unknown format, under a key id this key does not hold,
// altered, or bound to other associated data is kInvalidData with a message
// saying which; no message ever contains the plaintext or the row. The
// SealContext form names the table and column in its messages.
Result<std::string> Open(const Key& key, std::string_view sealed, std::string_view associated_data);
Result<std::string> Open(const Key& key, std::string_view sealed, const SealContext& where);

// The key id a sealed value was sealed under (without opening it), so that a
// re-sealer can find the values still under the previous key. kInvalidData
// when `sealed` is too short to be a sealed value or of an unknown format.
Result<uint32_t> KeyIdOf(std::string_view sealed);

// Characters of a BlindIndex: 16 bytes of keyed BLAKE2b, in lower-case hex.
inline constexpr size_t kBlindIndexChars = 32;

// A deterministic keyed hash of `value` for lookups and uniqueness in the
// state, never reversible without the key. `domain` names the use (such as
// "items.match" or "collections.user") and is hashed in, length-prefixed, so
// that one value gives unrelated indexes in different domains.
std::string BlindIndex(const Key& key, std::string_view domain, std::string_view value);

// A short stable name for a person in stored warnings and logs: "p:" and 12
// lower-case hex characters (48 bits) of keyed BLAKE2b under the pseudonym
// key. The same person gets the same name in every run; who it is can be
// found only by someone holding the key and a list of candidates.
std::string Pseudonym(const Key& key, std::string_view value);

}  // namespace roster::crypto
