// Signatures for the audit log's checkpoints: Ed25519 (libsodium's
// crypto_sign) under a key derived from the index master (crypto_kdf
// context "rostaudt"), which never rotates, so that one public half checks
// every checkpoint the configuration ever signed. The administrator keeps
// that public half away from the machine (`roster audit public-key`), so
// that someone who can rewrite the log but cannot read the key file cannot
// sign a rewritten chain.
#pragma once

#include <string>
#include <string_view>

#include "crypto/keys.h"

namespace roster::crypto {

// Bytes of a public key and of a signature.
inline constexpr size_t kSignPublicKeyBytes = 32;
inline constexpr size_t kSignatureBytes = 64;

// The public half of the key's audit signing key (32 bytes).
std::string AuditPublicKey(const Key& key);

// A detached signature (64 bytes) of `message` under the audit signing key.
std::string SignAudit(const Key& key, std::string_view message);

// Whether `signature` is `public_key`'s over `message`; false for anything
// of the wrong size.
bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature);

}  // namespace roster::crypto
