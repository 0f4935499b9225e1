// Key material in guarded memory, its text form, and rotation. Files and the
// environment are in key_file.cc.
#include "crypto/keys.h"

#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "crypto/key_internal.h"

namespace roster::crypto {
namespace {

constexpr unsigned char kFormat = 1;
constexpr unsigned char kFlagPrevious = 1;
// format, flags, index master, key id, sealing master.
constexpr size_t kBlobBytes = 1 + 1 + kMasterBytes + 4 + kMasterBytes;
// ... then previous key id and previous sealing master.
constexpr size_t kRotatingBlobBytes = kBlobBytes + 4 + kMasterBytes;
// Far more than a key's 144 characters; refused before decoding anything.
constexpr size_t kMaxBase64Chars = 1024;

// crypto_kdf contexts: exactly 8 characters each, one per purpose.
constexpr char kIndexContext[] = "rostridx";
constexpr char kPseudonymContext[] = "rostpsnm";
constexpr char kSealingContext[] = "rostseal";
constexpr char kAuditContext[] = "rostaudt";
static_assert(sizeof kAuditContext - 1 == crypto_kdf_CONTEXTBYTES);
static_assert(sizeof kIndexContext - 1 == crypto_kdf_CONTEXTBYTES);
static_assert(sizeof kPseudonymContext - 1 == crypto_kdf_CONTEXTBYTES);
static_assert(sizeof kSealingContext - 1 == crypto_kdf_CONTEXTBYTES);

void PutU32(unsigned char* out, uint32_t v) {
  out[0] = static_cast<unsigned char>(v >> 24);
  out[1] = static_cast<unsigned char>(v >> 16);
  out[2] = static_cast<unsigned char>(v >> 8);
  out[3] = static_cast<unsigned char>(v);
}

uint32_t GetU32(const unsigned char* in) {
  return (uint32_t{in[0]} << 24) | (uint32_t{in[1]} << 16) | (uint32_t{in[2]} << 8) | in[3];
}

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

// libsodium 1.0.18 decodes some bytes above 127 as if they were base64
// characters (0xf6 as '/'), so that one key would have many text forms: the
// alphabet is checked here first.
bool IsBase64Alphabet(std::string_view s) {
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '+' || c == '/' || c == '=';
    if (!ok) return false;
  }
  return true;
}

void* GuardedAlloc(size_t size) {
  EnsureSodium();
  void* p = sodium_malloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

// The blob's fields after its text form has been decoded; `bad` makes the
// error, starting with where the key came from.
template <typename Bad>
Result<Key> DecodeBlob(const Secret& blob, const Bad& bad) {
  const unsigned char* b = blob.data();
  const size_t n = blob.size();
  if (n < 2) {
    return bad("is truncated (" + std::to_string(n) + " of " + std::to_string(kBlobBytes) +
               " bytes)");
  }
  if (b[0] != kFormat) {
    return bad("holds key format " + std::to_string(b[0]) + "; this roster reads format 1");
  }
  if ((b[1] & ~kFlagPrevious) != 0) return bad("has unknown flags " + std::to_string(b[1]));
  const bool rotating = b[1] & kFlagPrevious;
  const size_t expected = rotating ? kRotatingBlobBytes : kBlobBytes;
  if (n < expected) {
    return bad("is truncated (" + std::to_string(n) + " of " + std::to_string(expected) +
               " bytes)");
  }
  if (n > expected) {
    const size_t extra = n - expected;
    return bad("has " + std::to_string(extra) + (extra == 1 ? " byte" : " bytes") +
               " after the end of the key");
  }
  const unsigned char* index_master = b + 2;
  const uint32_t key_id = GetU32(index_master + kMasterBytes);
  const unsigned char* sealing_master = index_master + kMasterBytes + 4;
  uint32_t previous_id = 0;
  const unsigned char* previous_master = nullptr;
  if (rotating) {
    previous_id = GetU32(sealing_master + kMasterBytes);
    previous_master = sealing_master + kMasterBytes + 4;
  }
  if (key_id == 0) return bad("has key id 0; key ids start at 1");
  if (rotating && previous_id == 0) return bad("has previous key id 0; key ids start at 1");
  if (rotating && previous_id >= key_id) {
    return bad("has previous key id " + std::to_string(previous_id) + ", not below its key id " +
               std::to_string(key_id));
  }
  // No random master is all zeros: such a key was damaged or made by hand.
  if (sodium_is_zero(index_master, kMasterBytes) || sodium_is_zero(sealing_master, kMasterBytes) ||
      (rotating && sodium_is_zero(previous_master, kMasterBytes))) {
    return bad("has a master key of zero bytes only; it is damaged");
  }
  return KeyAccess::Make([&](KeyMaterial& m) {
    std::memcpy(m.index_master, index_master, kMasterBytes);
    m.key_id = key_id;
    std::memcpy(m.sealing_master, sealing_master, kMasterBytes);
    m.previous_key_id = previous_id;
    if (rotating) std::memcpy(m.previous_master, previous_master, kMasterBytes);
  });
}

}  // namespace

void EnsureSodium() {
  static const bool initialised = [] {
    if (sodium_init() < 0) std::abort();
    return true;
  }();
  (void)initialised;
}

// --- Secret ---

Secret::Secret(size_t size) : size_(size) {
  if (size == 0) return;
  data_ = static_cast<unsigned char*>(GuardedAlloc(size));
  sodium_memzero(data_, size);
}

Secret::Secret(std::string_view bytes) : Secret(bytes.size()) {
  if (!bytes.empty()) std::memcpy(data_, bytes.data(), bytes.size());
}

Secret::Secret(const Secret& other) : Secret(other.view()) {}

Secret& Secret::operator=(const Secret& other) {
  if (this != &other) *this = Secret(other);
  return *this;
}

Secret::Secret(Secret&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Secret& Secret::operator=(Secret&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  return *this;
}

Secret::~Secret() {
  if (data_ != nullptr) sodium_free(data_);  // wipes before it frees
}

void Secret::Shrink(size_t size) {
  if (size >= size_) return;
  sodium_memzero(data_ + size, size_ - size);
  size_ = size;
}

// --- Key ---

KeyMaterial* KeyAccess::Allocate() {
  auto* m = static_cast<KeyMaterial*>(GuardedAlloc(sizeof(KeyMaterial)));
  sodium_memzero(m, sizeof(KeyMaterial));
  return m;
}

void KeyAccess::Finish(KeyMaterial* m) {
  crypto_kdf_derive_from_key(m->index_key, kSubkeyBytes, 1, kIndexContext, m->index_master);
  crypto_kdf_derive_from_key(m->pseudonym_key, kSubkeyBytes, 1, kPseudonymContext, m->index_master);
  crypto_kdf_derive_from_key(m->audit_seed, kSubkeyBytes, 1, kAuditContext, m->index_master);
  crypto_kdf_derive_from_key(m->sealing_key, kSubkeyBytes, m->key_id, kSealingContext,
                             m->sealing_master);
  if (m->previous_key_id != 0) {
    crypto_kdf_derive_from_key(m->previous_sealing_key, kSubkeyBytes, m->previous_key_id,
                               kSealingContext, m->previous_master);
  } else {
    sodium_memzero(m->previous_master, kMasterBytes);
    sodium_memzero(m->previous_sealing_key, kSubkeyBytes);
  }
  // Nothing writes a key after this: a stray write now faults at once.
  sodium_mprotect_readonly(m);
}

Key::Key(KeyMaterial* material) : material_(material) {}

Key::Key(const Key& other)
    : Key(KeyAccess::Make(
          [&](KeyMaterial& m) { std::memcpy(&m, other.material_, sizeof(KeyMaterial)); })) {}

Key& Key::operator=(const Key& other) {
  if (this != &other) *this = Key(other);
  return *this;
}

Key::Key(Key&& other) noexcept : material_(std::exchange(other.material_, nullptr)) {}

Key& Key::operator=(Key&& other) noexcept {
  std::swap(material_, other.material_);
  return *this;
}

Key::~Key() {
  if (material_ != nullptr) sodium_free(material_);  // makes it writable, wipes, frees
}

uint32_t Key::key_id() const { return material_->key_id; }

std::optional<uint32_t> Key::previous_key_id() const {
  if (material_->previous_key_id == 0) return std::nullopt;
  return material_->previous_key_id;
}

// --- creating, reading and writing keys ---

Key GenerateKey() {
  return KeyAccess::Make([](KeyMaterial& m) {
    crypto_kdf_keygen(m.index_master);
    m.key_id = 1;
    crypto_kdf_keygen(m.sealing_master);
  });
}

Result<Key> ParseKey(std::string_view text, std::string_view source) {
  EnsureSodium();
  auto bad = [&](const std::string& what) -> Error {
    return MakeError(ErrorKind::kInvalidData, std::string(source) + " " + what);
  };
  while (!text.empty() && IsAsciiSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsAsciiSpace(text.back())) text.remove_suffix(1);
  if (text.empty()) return bad("is empty");
  if (text.substr(0, kKeyPrefix.size()) != kKeyPrefix) {
    if (text.starts_with("roster-key-")) {
      return bad(
          "is in a key format this roster cannot read (it reads \"roster-key-1:\"); was it "
          "written by a newer roster?");
    }
    return bad("is not a roster key (one line starting \"roster-key-1:\")");
  }
  const std::string_view base64 = text.substr(kKeyPrefix.size());
  if (base64.size() > kMaxBase64Chars) return bad("is too long to be a roster key");
  Secret blob(base64.size() / 4 * 3 + 3);
  size_t length = 0;
  const char* end = nullptr;
  // `end` catches what libsodium stops at quietly: a character outside the
  // alphabet. Padding and unused bits must be exact, so each key has exactly
  // one text form.
  if (base64.empty() || !IsBase64Alphabet(base64) ||
      sodium_base642bin(blob.data(), blob.size(), base64.data(), base64.size(), nullptr, &length,
                        &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != base64.data() + base64.size()) {
    return bad("is not valid base64 after \"roster-key-1:\"");
  }
  blob.Shrink(length);
  return DecodeBlob(blob, bad);
}

Secret FormatKey(const Key& key) {
  const KeyMaterial& m = KeyAccess::Of(key);
  const bool rotating = m.previous_key_id != 0;
  Secret blob(rotating ? kRotatingBlobBytes : kBlobBytes);
  unsigned char* b = blob.data();
  b[0] = kFormat;
  b[1] = rotating ? kFlagPrevious : 0;
  unsigned char* p = b + 2;
  std::memcpy(p, m.index_master, kMasterBytes);
  p += kMasterBytes;
  PutU32(p, m.key_id);
  p += 4;
  std::memcpy(p, m.sealing_master, kMasterBytes);
  p += kMasterBytes;
  if (rotating) {
    PutU32(p, m.previous_key_id);
    p += 4;
    std::memcpy(p, m.previous_master, kMasterBytes);
  }
  // ENCODED_LEN counts the NUL that sodium_bin2base64 writes.
  Secret base64(sodium_base64_ENCODED_LEN(blob.size(), sodium_base64_VARIANT_ORIGINAL));
  sodium_bin2base64(reinterpret_cast<char*>(base64.data()), base64.size(), blob.data(), blob.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  const size_t chars = base64.size() - 1;
  Secret text(kKeyPrefix.size() + chars);
  std::memcpy(text.data(), kKeyPrefix.data(), kKeyPrefix.size());
  std::memcpy(text.data() + kKeyPrefix.size(), base64.data(), chars);
  return text;
}

Result<Key> BeginRotation(const Key& key) {
  const KeyMaterial& m = KeyAccess::Of(key);
  if (m.previous_key_id != 0) {
    return MakeError(ErrorKind::kConflict, "a key rotation from key id " +
                                               std::to_string(m.previous_key_id) + " to " +
                                               std::to_string(m.key_id) +
                                               " is unfinished; finish it before starting another");
  }
  if (m.key_id == std::numeric_limits<uint32_t>::max()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "key id " + std::to_string(m.key_id) + " is the last one; make a new key");
  }
  return KeyAccess::Make([&](KeyMaterial& n) {
    std::memcpy(n.index_master, m.index_master, kMasterBytes);
    n.previous_key_id = m.key_id;
    std::memcpy(n.previous_master, m.sealing_master, kMasterBytes);
    n.key_id = m.key_id + 1;
    crypto_kdf_keygen(n.sealing_master);
  });
}

Key FinishRotation(const Key& key) {
  const KeyMaterial& m = KeyAccess::Of(key);
  return KeyAccess::Make([&](KeyMaterial& n) {
    std::memcpy(n.index_master, m.index_master, kMasterBytes);
    n.key_id = m.key_id;
    std::memcpy(n.sealing_master, m.sealing_master, kMasterBytes);
    n.previous_key_id = 0;
  });
}

}  // namespace roster::crypto
