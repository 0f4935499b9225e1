// libFuzzer target for the key layer (src/crypto): any text in a key file or
// key variable, which whoever can write there controls, parses to a key or
// one error; any bytes handed to Open as a sealed value (a state file someone
// changed) open or fail with one error, never crash. The first input byte
// chooses: even parses the rest as a key, odd opens the rest under a fixed key.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/keys.h"
#include "crypto/seal.h"

namespace {

using roster::crypto::Key;

// The known-answer key of src/crypto/seal_test.cc: key id 2, previous key id 1.
const Key& FixedKey() {
  static const Key* key = new Key(*roster::crypto::ParseKey(
      "roster-key-1:AQEAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHwAAAAJAQUJDREVGR0hJSktMTU5PUFFSU1"
      "RVVldYWVpbXF1eXwAAAAGAgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2enw=="));
  return *key;
}

const roster::crypto::SealContext kWhere{"items", "fields", "row-17"};

bool OneLine(const std::string& message) {
  return !message.empty() && message.find('\n') == std::string::npos;
}

std::string_view Trimmed(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\f\v";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

void FuzzKeyText(std::string_view text) {
  auto key = roster::crypto::ParseKey(text, "fuzz key");
  if (!key.ok()) {
    if (!OneLine(key.error().message) || key.error().message.rfind("fuzz key ", 0) != 0) {
      __builtin_trap();
    }
    return;
  }
  // A key has exactly one text form: what parsed is what was given.
  if (roster::crypto::FormatKey(*key).view() != Trimmed(text)) __builtin_trap();
  const std::string sealed = roster::crypto::Seal(*key, text, kWhere);
  auto opened = roster::crypto::Open(*key, sealed, kWhere);
  if (!opened.ok() || *opened != text) __builtin_trap();
  auto next = roster::crypto::BeginRotation(*key);
  if (next.ok()) {
    if (next->key_id() != key->key_id() + 1 || !roster::crypto::Open(*next, sealed, kWhere).ok()) {
      __builtin_trap();
    }
  } else if (!key->rotating() && key->key_id() != UINT32_MAX) {
    __builtin_trap();
  }
  Key finished = roster::crypto::FinishRotation(*key);
  if (finished.rotating() || finished.key_id() != key->key_id()) __builtin_trap();
}

void FuzzSealed(std::string_view sealed) {
  const Key& key = FixedKey();
  auto id = roster::crypto::KeyIdOf(sealed);
  for (auto opened : {roster::crypto::Open(key, sealed, kWhere),
                      roster::crypto::Open(key, sealed, std::string_view("raw"))}) {
    if (opened.ok()) {
      if (!id.ok() || (*id != 1 && *id != 2)) __builtin_trap();
      if (opened->size() + roster::crypto::kSealOverhead != sealed.size()) __builtin_trap();
    } else if (!OneLine(opened.error().message)) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    FuzzSealed(rest);
  } else {
    FuzzKeyText(rest);
  }
  return 0;
}
