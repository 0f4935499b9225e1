#include "crypto/sign.h"

#include <sodium.h>

#include "crypto/key_internal.h"

namespace roster::crypto {
namespace {

// The secret half lives only in guarded memory, for the length of one call.
template <typename Use>
auto WithKeypair(const Key& key, Use&& use) {
  EnsureSodium();
  const KeyMaterial& m = KeyAccess::Of(key);
  Secret secret(crypto_sign_SECRETKEYBYTES);
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  crypto_sign_seed_keypair(pk, secret.data(), m.audit_seed);
  return use(pk, secret.data());
}

}  // namespace

std::string AuditPublicKey(const Key& key) {
  return WithKeypair(key, [](const unsigned char* pk, const unsigned char*) {
    return std::string(reinterpret_cast<const char*>(pk), crypto_sign_PUBLICKEYBYTES);
  });
}

std::string SignAudit(const Key& key, std::string_view message) {
  return WithKeypair(key, [&](const unsigned char*, const unsigned char* sk) {
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                         message.size(), sk);
    return std::string(reinterpret_cast<const char*>(sig), sizeof sig);
  });
}

bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature) {
  EnsureSodium();
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) {
    return false;
  }
  return crypto_sign_verify_detached(
             reinterpret_cast<const unsigned char*>(signature.data()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(),
             reinterpret_cast<const unsigned char*>(public_key.data())) == 0;
}

}  // namespace roster::crypto
