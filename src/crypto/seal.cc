#include "crypto/seal.h"

#include <sodium.h>

#include <string>

#include "crypto/key_internal.h"

namespace roster::crypto {
namespace {

constexpr unsigned char kSealFormat = 1;
constexpr size_t kHeaderBytes = 1 + 4;  // format, key id
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
static_assert(kSealOverhead == kHeaderBytes + kNonceBytes + kTagBytes);

constexpr size_t kBlindIndexBytes = kBlindIndexChars / 2;
constexpr size_t kPseudonymBytes = 6;

void AppendU32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

void AppendPart(std::string& out, std::string_view part) {
  AppendU32(out, static_cast<uint32_t>(part.size()));
  out.append(part);
}

uint32_t GetU32(const unsigned char* in) {
  return (uint32_t{in[0]} << 24) | (uint32_t{in[1]} << 16) | (uint32_t{in[2]} << 8) | in[3];
}

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// What the AEAD authenticates: the value's own header, then the caller's.
std::string FullAssociatedData(std::string_view header, std::string_view associated_data) {
  std::string ad;
  ad.reserve(header.size() + associated_data.size());
  ad.append(header);
  ad.append(associated_data);
  return ad;
}

// The header checks shared by Open and KeyIdOf; `what` names the value.
Result<uint32_t> ReadHeader(std::string_view sealed, const std::string& what) {
  if (sealed.size() < kSealOverhead) {
    return MakeError(ErrorKind::kInvalidData, what + " is truncated (" +
                                                  std::to_string(sealed.size()) +
                                                  " bytes; a sealed value has at least " +
                                                  std::to_string(kSealOverhead) + ")");
  }
  const auto format = static_cast<unsigned char>(sealed[0]);
  if (format != kSealFormat) {
    return MakeError(ErrorKind::kInvalidData, what + " has format " + std::to_string(format) +
                                                  "; this roster reads format 1");
  }
  return GetU32(Bytes(sealed) + 1);
}

Error UnknownKeyId(const KeyMaterial& m, uint32_t id, const std::string& what) {
  std::string held = m.previous_key_id != 0 ? "key ids " + std::to_string(m.key_id) + " and " +
                                                  std::to_string(m.previous_key_id)
                                            : "key id " + std::to_string(m.key_id);
  const uint32_t oldest = m.previous_key_id != 0 ? m.previous_key_id : m.key_id;
  std::string hint = id > m.key_id ? "; was it sealed with a newer key?"
                     : id < oldest ? "; was a rotation finished before this value was sealed again?"
                                   : "";
  return MakeError(ErrorKind::kInvalidData, what + " is sealed under key id " + std::to_string(id) +
                                                ", which this key does not hold (it holds " + held +
                                                ")" + hint);
}

Result<std::string> OpenAs(const Key& key, std::string_view sealed,
                           std::string_view associated_data, const std::string& what) {
  ROSTER_ASSIGN_OR_RETURN(const uint32_t id, ReadHeader(sealed, what));
  const KeyMaterial& m = KeyAccess::Of(key);
  const unsigned char* subkey = id == m.key_id ? m.sealing_key
                                : m.previous_key_id != 0 && id == m.previous_key_id
                                    ? m.previous_sealing_key
                                    : nullptr;
  if (subkey == nullptr) return UnknownKeyId(m, id, what);
  const std::string ad = FullAssociatedData(sealed.substr(0, kHeaderBytes), associated_data);
  const std::string_view nonce = sealed.substr(kHeaderBytes, kNonceBytes);
  const std::string_view ciphertext = sealed.substr(kHeaderBytes + kNonceBytes);
  std::string plaintext(ciphertext.size() - kTagBytes, '\0');
  unsigned long long length = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plaintext.data()), &length, nullptr, Bytes(ciphertext),
          ciphertext.size(), Bytes(ad), ad.size(), Bytes(nonce), subkey) != 0) {
    sodium_memzero(plaintext.data(), plaintext.size());
    return MakeError(ErrorKind::kInvalidData,
                     what + " does not open under key id " + std::to_string(id) +
                         ": it was altered, moved from another row or column, or sealed with "
                         "another key");
  }
  plaintext.resize(static_cast<size_t>(length));
  return plaintext;
}

std::string ContextName(const SealContext& where) {
  return "sealed value in " + std::string(where.table) + "." + std::string(where.column);
}

// Keyed BLAKE2b of the parts, each but the last length-prefixed.
void KeyedHash(const unsigned char* subkey, std::string_view prefixed, std::string_view rest,
               unsigned char* out, size_t out_bytes) {
  crypto_generichash_state state;
  crypto_generichash_init(&state, subkey, kSubkeyBytes, out_bytes);
  std::string length;
  AppendU32(length, static_cast<uint32_t>(prefixed.size()));
  crypto_generichash_update(&state, Bytes(length), length.size());
  crypto_generichash_update(&state, Bytes(prefixed), prefixed.size());
  crypto_generichash_update(&state, Bytes(rest), rest.size());
  crypto_generichash_final(&state, out, out_bytes);
  sodium_memzero(&state, sizeof state);
}

std::string LowerHex(const unsigned char* bytes, size_t size) {
  std::string hex(size * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes, size);
  hex.pop_back();  // the NUL sodium writes
  return hex;
}

}  // namespace

std::string SealContext::Encode() const {
  std::string out;
  out.reserve(12 + table.size() + column.size() + row.size());
  AppendPart(out, table);
  AppendPart(out, column);
  AppendPart(out, row);
  return out;
}

std::string Seal(const Key& key, std::string_view plaintext, std::string_view associated_data) {
  EnsureSodium();
  const KeyMaterial& m = KeyAccess::Of(key);
  std::string out;
  out.reserve(kSealOverhead + plaintext.size());
  out.push_back(static_cast<char>(kSealFormat));
  AppendU32(out, m.key_id);
  out.resize(kHeaderBytes + kNonceBytes);
  // 24 random bytes: with XChaCha20 a random nonce never repeats in practice,
  // so no counter has to be kept anywhere.
  randombytes_buf(out.data() + kHeaderBytes, kNonceBytes);
  const std::string ad =
      FullAssociatedData(std::string_view(out).substr(0, kHeaderBytes), associated_data);
  out.resize(kSealOverhead + plaintext.size());
  unsigned long long length = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(out.data() + kHeaderBytes + kNonceBytes), &length,
      Bytes(plaintext), plaintext.size(), Bytes(ad), ad.size(), nullptr,
      Bytes(std::string_view(out).substr(kHeaderBytes, kNonceBytes)), m.sealing_key);
  out.resize(kHeaderBytes + kNonceBytes + static_cast<size_t>(length));
  return out;
}

std::string Seal(const Key& key, std::string_view plaintext, const SealContext& where) {
  return Seal(key, plaintext, where.Encode());
}

Result<std::string> Open(const Key& key, std::string_view sealed,
                         std::string_view associated_data) {
  return OpenAs(key, sealed, associated_data, "sealed value");
}

Result<std::string> Open(const Key& key, std::string_view sealed, const SealContext& where) {
  return OpenAs(key, sealed, where.Encode(), ContextName(where));
}

Result<uint32_t> KeyIdOf(std::string_view sealed) { return ReadHeader(sealed, "sealed value"); }

std::string BlindIndex(const Key& key, std::string_view domain, std::string_view value) {
  EnsureSodium();
  unsigned char out[kBlindIndexBytes];
  KeyedHash(KeyAccess::Of(key).index_key, domain, value, out, sizeof out);
  return LowerHex(out, sizeof out);
}

std::string Pseudonym(const Key& key, std::string_view value) {
  EnsureSodium();
  // BLAKE2b's shortest output is 16 bytes; the name keeps the first 6.
  unsigned char out[crypto_generichash_BYTES_MIN];
  static_assert(kPseudonymBytes <= sizeof out);
  KeyedHash(KeyAccess::Of(key).pseudonym_key, "person", value, out, sizeof out);
  return "p:" + LowerHex(out, kPseudonymBytes);
}

}  // namespace roster::crypto
