// Inside the crypto module only: what a Key holds, and the subkeys derived
// from it. Not a public header: nothing outside src/crypto/ sees key bytes.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <cstdint>

#include "crypto/keys.h"

namespace roster::crypto {

inline constexpr size_t kMasterBytes = crypto_kdf_KEYBYTES;
inline constexpr size_t kSubkeyBytes = 32;
static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == kSubkeyBytes);
static_assert(crypto_sign_SEEDBYTES == kSubkeyBytes);
static_assert(crypto_generichash_KEYBYTES >= kSubkeyBytes &&
              crypto_generichash_KEYBYTES_MIN <= kSubkeyBytes);

// Lives in sodium_malloc'd memory, read-only once the subkeys are derived.
struct KeyMaterial {
  // What the key file holds.
  unsigned char index_master[kMasterBytes];
  uint32_t key_id;
  unsigned char sealing_master[kMasterBytes];
  uint32_t previous_key_id;  // 0: no rotation under way
  unsigned char previous_master[kMasterBytes];
  // Derived from it by DeriveSubkeys.
  unsigned char index_key[kSubkeyBytes];
  unsigned char pseudonym_key[kSubkeyBytes];
  unsigned char audit_seed[kSubkeyBytes];  // the audit log's Ed25519 key (sign.h)
  unsigned char sealing_key[kSubkeyBytes];
  unsigned char previous_sealing_key[kSubkeyBytes];
};

// sodium_init, once per process; aborts if libsodium cannot start (no usable
// randomness), since nothing here can work without it.
void EnsureSodium();

struct KeyAccess {
  // A key whose masters and ids `fill(KeyMaterial&)` writes straight into
  // guarded memory (so that they are never copied onto the stack); the
  // subkeys are then derived and the memory made read-only.
  template <typename Fill>
  static Key Make(Fill&& fill) {
    KeyMaterial* material = Allocate();
    fill(*material);
    Finish(material);
    return Key(material);
  }
  static const KeyMaterial& Of(const Key& key) { return *key.material_; }

 private:
  static KeyMaterial* Allocate();             // zeroed, writable
  static void Finish(KeyMaterial* material);  // derives subkeys, then read-only
};

}  // namespace roster::crypto
