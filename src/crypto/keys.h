// The state's key: what it holds, how it is written down, read back, created
// and rotated. One key serves one configuration; crypto_kdf derives from it
// a key per purpose, so that no two purposes ever share key bytes.
//
// What a key holds:
//   - the index master (32 random bytes), which never rotates. It derives the
//     blind-index key (crypto_kdf context "rostridx") and the log-pseudonym
//     key ("rostpsnm"): keyed hashes cannot be recomputed without the
//     plaintext, so changing this master means reading the sources again;
//   - the current sealing master and its key id (1, 2, ...). It derives the
//     XChaCha20-Poly1305 key of that id (context "rostseal", subkey id = the
//     key id), so the id is part of the derivation as well as of every value;
//   - during a rotation only, the previous sealing master and its (smaller)
//     id, so that values not yet sealed again can still be opened.
//
// Written down as one line, "roster-key-1:" followed by base64 (libsodium's
// original variant, with padding) of a binary blob in network byte order:
//   u8 format (1) | u8 flags (0, or 1 when a previous master follows) |
//   index master [32] | u32 key id | sealing master [32] |
//   (flags 1 only) u32 previous key id | previous sealing master [32]
// which is 70 bytes (96 base64 characters), or 106 (144) during a rotation.
//
// Key bytes live only in memory from sodium_malloc (guard pages, locked
// against swap where allowed, wiped when freed) and never appear in an
// error message: messages name the file or variable and what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace roster::crypto {

// Bytes that must not outlive their use: held in sodium_malloc'd memory and
// wiped when destroyed. A serialised key travels in one of these.
class Secret {
 public:
  Secret() = default;
  explicit Secret(size_t size);  // `size` zero bytes
  explicit Secret(std::string_view bytes);
  Secret(const Secret& other);
  Secret& operator=(const Secret& other);
  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  ~Secret();

  unsigned char* data() { return data_; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }
  // Forgets the bytes past `size` (wiping them); never grows.
  void Shrink(size_t size);

 private:
  unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

struct KeyMaterial;  // crypto/key_internal.h

// A loaded key with its derived subkeys. Copies are deep (each in its own
// guarded memory); a moved-from Key may only be destroyed or assigned to.
// Const methods are safe to call from several threads at once.
class Key {
 public:
  Key(const Key& other);
  Key& operator=(const Key& other);
  Key(Key&& other) noexcept;
  Key& operator=(Key&& other) noexcept;
  ~Key();

  // The id new values are sealed under (1 for a new key, +1 per rotation).
  uint32_t key_id() const;
  // The id of the sealing master kept for an unfinished rotation, if any.
  std::optional<uint32_t> previous_key_id() const;
  bool rotating() const { return previous_key_id().has_value(); }

 private:
  friend struct KeyAccess;
  explicit Key(KeyMaterial* material);
  KeyMaterial* material_ = nullptr;
};

// The text that starts every serialised key of the format this roster writes.
inline constexpr std::string_view kKeyPrefix = "roster-key-1:";

// A new random key: a fresh index master and sealing master, key id 1.
Key GenerateKey();

// Reads a serialised key. ASCII whitespace around it (a file's final line
// break) is ignored; anything else that is not exactly one well-formed key is
// refused with kInvalidData and a message starting with `source` (such as
// "key file /etc/roster/roster.key"), never quoting the input.
Result<Key> ParseKey(std::string_view text, std::string_view source = "the key");

// The one-line text form of `key`, without a line break.
Secret FormatKey(const Key& key);

// Starts a rotation: a new random sealing master with id key_id() + 1
// becomes current and the current one is kept as previous. Refused while a
// rotation is unfinished, so that no sealed value can lose its key.
Result<Key> BeginRotation(const Key& key);
// Ends a rotation: the previous sealing master is dropped, and values still
// sealed under it can no longer be opened. Once every value has been sealed
// again under key_id(). A key that is not rotating comes back unchanged, so
// that a rotation resumed after a crash can finish twice.
Key FinishRotation(const Key& key);

// Reads the key file at `path`. Refuses (kInvalidArgument) anything but a
// regular file, and a file that group or others may read, write or execute
// (mode & 077; 0600 and 0400 are fine, so systemd credentials work), naming
// the fix. A symbolic link is followed, and the checks apply to the file it
// leads to, on the very descriptor that is read. A missing file
// (kNotFound) says to run `roster keys init`.
Result<Key> LoadKeyFile(const std::string& path);

// Reads the key from environment variable `variable`. Unset or empty is
// kNotFound, naming the variable.
Result<Key> LoadKeyFromEnv(const std::string& variable);

// The key of a configuration's [state]: from `key_env` when it is set,
// otherwise from `key_file`.
Result<Key> LoadStateKey(const std::string& key_file, const std::string& key_env);

// Creates `path` holding a new random key (GenerateKey) with mode 0600, and
// returns that key. Never replaces anything: an existing file, or a symbolic
// link even if dangling, is refused (kConflict). The file and its directory
// are fsync'd before this returns, so the key survives a power cut.
Result<Key> CreateKeyFile(const std::string& path);

// Replaces the key file at `path` with `key` so that a crash at any moment
// leaves either the old file or the new one, whole: the key is written to
// "<path>.new" (mode 0600, or the old file's 0400; owner and group as the old
// file's), fsync'd, renamed over `path`, and the directory fsync'd. A
// leftover "<path>.new" from an earlier crash is removed first. When `path`
// is a symbolic link, the file it leads to is replaced (through "<that
// file>.new" beside it) and the link kept. A missing `path` is created.
// Not for two writers at once: the caller holds the state's lock.
Status WriteKeyFileAtomically(const std::string& path, const Key& key);

// The failpoints (core/failpoint.h) of WriteKeyFileAtomically, in the order
// it passes them, null-terminated:
//   key-file-written   "<path>.new" holds the key, not yet fsync'd
//   key-file-synced    "<path>.new" fsync'd and closed, not yet renamed
//   key-file-renamed   renamed over `path`, directory not yet fsync'd
//   key-file-done      the directory fsync'd
const char* const* KeyFileFailpointNames();

}  // namespace roster::crypto
