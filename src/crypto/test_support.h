// Helpers for the crypto tests only: a key's raw blob, and a check that no
// text shows any part of a key.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <string>
#include <vector>

#include "core/hash.h"
#include "crypto/key_internal.h"
#include "crypto/keys.h"

namespace roster::crypto::testing {

// The decoded blob of a key's text form (see keys.h for its layout).
inline std::string BlobOf(const Key& key) {
  const std::string text(FormatKey(key).view());
  std::string blob;
  EXPECT_TRUE(Base64Decode(text.substr(kKeyPrefix.size()), &blob));
  return blob;
}

// A key's text form from a blob made by hand.
inline std::string TextOf(const std::string& blob) {
  return std::string(kKeyPrefix) + Base64Encode(blob);
}

// Every form in which a key's bytes could leak into a message: the base64 of
// its text form and the hex of every master and subkey.
inline std::vector<std::string> SecretForms(const Key& key) {
  const KeyMaterial& m = KeyAccess::Of(key);
  auto hex = [](const unsigned char* p, size_t n) {
    return HexEncode(std::string_view(reinterpret_cast<const char*>(p), n));
  };
  std::vector<std::string> forms = {std::string(FormatKey(key).view()).substr(kKeyPrefix.size()),
                                    hex(m.index_master, kMasterBytes),
                                    hex(m.sealing_master, kMasterBytes),
                                    hex(m.index_key, kSubkeyBytes),
                                    hex(m.pseudonym_key, kSubkeyBytes),
                                    hex(m.sealing_key, kSubkeyBytes)};
  if (m.previous_key_id != 0) {
    forms.push_back(hex(m.previous_master, kMasterBytes));
    forms.push_back(hex(m.previous_sealing_key, kSubkeyBytes));
  }
  return forms;
}

// True when `text` holds any 12 consecutive characters of any secret form
// of `key` (12 base64 or hex characters are 48 to 72 bits: never chance).
inline bool ShowsKey(const std::string& text, const Key& key) {
  constexpr size_t kWindow = 12;
  for (const std::string& form : SecretForms(key)) {
    for (size_t i = 0; i + kWindow <= form.size(); ++i) {
      if (text.find(form.substr(i, kWindow)) != std::string::npos) return true;
      // Hex might be printed in upper case too.
      std::string upper = form.substr(i, kWindow);
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (text.find(upper) != std::string::npos) return true;
    }
  }
  return false;
}

// A fresh directory under the test's temporary directory, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "roster-crypto-XXXXXX";
    const char* made = mkdtemp(pattern.data());
    if (made == nullptr) ADD_FAILURE() << "mkdtemp " << pattern << " failed";
    path_ = made != nullptr ? made : pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace roster::crypto::testing
