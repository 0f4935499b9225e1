#include "core/hash.h"

#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace roster {
namespace {

// sodium_init() must run before any other libsodium call. A function-local
// static is initialised exactly once even when threads race to get here.
void EnsureSodium() {
  static const bool initialised = [] {
    // -1 means the library could not initialise (no usable randomness). The
    // hash and base64 functions used here do not need randomness, but a
    // broken libsodium is a bug in the environment worth stopping on.
    if (sodium_init() < 0) std::abort();
    return true;
  }();
  (void)initialised;
}

}  // namespace

std::string HashHex(std::string_view data, size_t bytes) {
  EnsureSodium();
  bytes = std::clamp<size_t>(bytes, crypto_generichash_BYTES_MIN, crypto_generichash_BYTES_MAX);
  unsigned char out[crypto_generichash_BYTES_MAX];
  crypto_generichash(out, bytes, reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                     nullptr, 0);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(out), bytes));
}

std::string HexEncode(std::string_view bytes) {
  EnsureSodium();
  std::string hex(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                 bytes.size());
  hex.pop_back();  // the terminating NUL sodium writes
  return hex;
}

std::string Base64Encode(std::string_view bytes) {
  EnsureSodium();
  const size_t len = sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  std::string text(len, '\0');
  sodium_bin2base64(text.data(), text.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  text.pop_back();  // the terminating NUL sodium writes
  return text;
}

bool Base64Decode(std::string_view text, std::string* out) {
  EnsureSodium();
  // Folded vCard lines leave spaces and line breaks inside the base64 text;
  // dropping them first lets libsodium check the rest strictly.
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') continue;
    // libsodium 1.0.18 takes some bytes above 127 for alphabet characters
    // (0xf6 for '/'): only the alphabet itself and padding are base64.
    const bool alphabet = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
    if (!alphabet) return false;
    clean.push_back(c);
  }
  std::string bin(clean.size() / 4 * 3 + 3, '\0');
  size_t bin_len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bin.data()), bin.size(), clean.data(),
                        clean.size(), nullptr, &bin_len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return false;
  }
  // sodium stops quietly at the first character outside the alphabet; any
  // leftover means the input was not base64.
  if (end != clean.data() + clean.size()) return false;
  bin.resize(bin_len);
  *out = std::move(bin);
  return true;
}

}  // namespace roster
