#include "crypto/keys.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <string>
#include <vector>

#include "crypto/seal.h"
#include "crypto/test_support.h"

namespace roster::crypto {
namespace {

using testing::BlobOf;
using testing::ShowsKey;
using testing::TextOf;

std::string U32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string RandomMaster() {
  std::string m(32, '\0');
  randombytes_buf(m.data(), m.size());
  return m;
}

// A blob as keys.h lays it out, with every field chosen by the test.
struct Blob {
  unsigned char format = 1;
  unsigned char flags = 0;
  std::string index = RandomMaster();
  uint32_t id = 1;
  std::string sealing = RandomMaster();
  uint32_t previous_id = 0;
  std::string previous = RandomMaster();

  std::string Bytes() const {
    std::string b;
    b.push_back(static_cast<char>(format));
    b.push_back(static_cast<char>(flags));
    b += index + U32(id) + sealing;
    if (flags & 1) b += U32(previous_id) + previous;
    return b;
  }
};

std::string Text(const Key& key) { return std::string(FormatKey(key).view()); }

TEST(KeyTest, NewKeyHasIdOneAndNoPreviousKey) {
  Key key = GenerateKey();
  EXPECT_EQ(key.key_id(), 1u);
  EXPECT_FALSE(key.rotating());
  EXPECT_EQ(key.previous_key_id(), std::nullopt);
  EXPECT_NE(Text(key), Text(GenerateKey()));
}

TEST(KeyTest, TextFormIsThePrefixAndPaddedBase64OfTheBlob) {
  Key key = GenerateKey();
  const std::string text = Text(key);
  EXPECT_EQ(text.substr(0, kKeyPrefix.size()), "roster-key-1:");
  EXPECT_EQ(text.size(), kKeyPrefix.size() + 96);  // 70 bytes
  const std::string blob = BlobOf(key);
  ASSERT_EQ(blob.size(), 70u);
  EXPECT_EQ(blob[0], 1);                  // format
  EXPECT_EQ(blob[1], 0);                  // flags: no previous key
  EXPECT_EQ(blob.substr(34, 4), U32(1));  // key id after the index master
}

TEST(KeyTest, ParseGivesBackTheSameKey) {
  Key key = GenerateKey();
  auto parsed = ParseKey(Text(key));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(Text(*parsed), Text(key));
  EXPECT_EQ(parsed->key_id(), 1u);
  // The same key opens what the original sealed, and indexes alike.
  EXPECT_EQ(*Open(*parsed, Seal(key, "x", "ad"), "ad"), "x");
  EXPECT_EQ(BlindIndex(*parsed, "d", "v"), BlindIndex(key, "d", "v"));
}

TEST(KeyTest, ParseIgnoresSurroundingWhitespaceOnly) {
  Key key = GenerateKey();
  EXPECT_TRUE(ParseKey(Text(key) + "\n").ok());
  EXPECT_TRUE(ParseKey("  " + Text(key) + "\r\n").ok());
  std::string inner = Text(key);
  inner.insert(40, " ");
  EXPECT_FALSE(ParseKey(inner).ok());
}

// Found by fuzz/key_fuzz.cc: libsodium alone reads 0xf6 as '/'.
TEST(KeyTest, EveryByteOutsideTheBase64AlphabetIsRefused) {
  const std::string text = Text(GenerateKey());
  const size_t at = kKeyPrefix.size() + 40;
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int c = 0; c < 256; ++c) {
    if (alphabet.find(static_cast<char>(c)) != std::string::npos) continue;
    std::string altered = text;
    altered[at] = static_cast<char>(c);
    auto key = ParseKey(altered, "test key");
    ASSERT_FALSE(key.ok()) << "byte " << c;
    EXPECT_EQ(key.error().message, "test key is not valid base64 after \"roster-key-1:\"");
  }
}

TEST(KeyTest, HandMadeBlobWithKnownFieldsParses) {
  Blob b;
  b.id = 7;
  b.flags = 1;
  b.previous_id = 6;
  auto key = ParseKey(TextOf(b.Bytes()));
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(key->key_id(), 7u);
  EXPECT_EQ(key->previous_key_id(), 6u);
  EXPECT_EQ(BlobOf(*key), b.Bytes());
}

struct BadKey {
  std::string name;
  std::string text;
  std::string message;  // what follows "test key " in the error
};

std::vector<BadKey> BadKeys() {
  Blob good;
  std::vector<BadKey> cases;
  cases.push_back({"empty", "", "is empty"});
  cases.push_back({"blank", " \n\t", "is empty"});
  cases.push_back({"not a key", "hunter2", "is not a roster key (one line starting"});
  cases.push_back(
      {"lower-case prefix", "ROSTER-KEY-1:" + Base64Encode(good.Bytes()), "is not a roster key"});
  cases.push_back({"newer format", "roster-key-2:" + Base64Encode(good.Bytes()),
                   "is in a key format this roster cannot read"});
  cases.push_back({"nothing after the prefix", "roster-key-1:", "is not valid base64"});
  cases.push_back(
      {"not base64", "roster-key-1:!!!!" + Base64Encode(good.Bytes()), "is not valid base64"});
  std::string unpadded = TextOf(good.Bytes());
  while (unpadded.back() == '=') unpadded.pop_back();
  cases.push_back({"padding missing", unpadded, "is not valid base64"});
  cases.push_back(
      {"url-safe base64", "roster-key-1:" + std::string(92, '_') + "AA==", "is not valid base64"});
  // The last character before "==" carries 4 unused bits that must be zero.
  std::string noncanonical = TextOf(good.Bytes());
  char& last = noncanonical[noncanonical.size() - 3];
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  last = alphabet[alphabet.find(last) ^ 1];
  cases.push_back({"unused bits set", noncanonical, "is not valid base64"});
  cases.push_back(
      {"whitespace inside", TextOf(good.Bytes()).insert(30, "\n"), "is not valid base64"});
  cases.push_back({"far too long", "roster-key-1:" + Base64Encode(std::string(2000, 'k')),
                   "is too long to be a roster key"});
  cases.push_back({"one byte", TextOf("\x01"), "is truncated (1 of 70 bytes)"});
  cases.push_back(
      {"short by one", TextOf(good.Bytes().substr(0, 69)), "is truncated (69 of 70 bytes)"});
  cases.push_back(
      {"a trailing byte", TextOf(good.Bytes() + "x"), "has 1 byte after the end of the key"});
  Blob rotating = good;
  rotating.flags = 1;
  rotating.id = 2;
  rotating.previous_id = 1;
  cases.push_back({"rotating, truncated", TextOf(rotating.Bytes().substr(0, 100)),
                   "is truncated (100 of 106 bytes)"});
  cases.push_back({"rotating, trailing bytes", TextOf(rotating.Bytes() + "zz"),
                   "has 2 bytes after the end of the key"});
  cases.push_back({"previous key without its flag", TextOf(good.Bytes() + U32(1) + RandomMaster()),
                   "has 36 bytes after the end of the key"});
  Blob b = good;
  b.format = 2;
  cases.push_back(
      {"format byte", TextOf(b.Bytes()), "holds key format 2; this roster reads format 1"});
  b = good;
  b.flags = 2;
  cases.push_back({"unknown flag", TextOf(b.Bytes()), "has unknown flags 2"});
  b = good;
  b.id = 0;
  cases.push_back({"key id 0", TextOf(b.Bytes()), "has key id 0; key ids start at 1"});
  b = rotating;
  b.previous_id = 0;
  cases.push_back({"previous id 0", TextOf(b.Bytes()), "has previous key id 0"});
  b = rotating;
  b.previous_id = 2;
  cases.push_back(
      {"previous id equal", TextOf(b.Bytes()), "has previous key id 2, not below its key id 2"});
  b.previous_id = 3;
  cases.push_back(
      {"previous id above", TextOf(b.Bytes()), "has previous key id 3, not below its key id 2"});
  b = good;
  b.index = std::string(32, '\0');
  cases.push_back({"zero index master", TextOf(b.Bytes()), "has a master key of zero bytes only"});
  b = rotating;
  b.previous = std::string(32, '\0');
  cases.push_back(
      {"zero previous master", TextOf(b.Bytes()), "has a master key of zero bytes only"});
  return cases;
}

TEST(KeyTest, EachMalformedKeyIsRefusedWithItsReason) {
  for (const BadKey& c : BadKeys()) {
    SCOPED_TRACE(c.name);
    auto key = ParseKey(c.text, "test key");
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.error().kind, ErrorKind::kInvalidData);
    const std::string& message = key.error().message;
    EXPECT_EQ(message.rfind("test key " + c.message, 0), 0u) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    // The input is never quoted back, in any part.
    if (c.text.size() > kKeyPrefix.size() + 8) {
      const std::string body = c.text.substr(kKeyPrefix.size(), 8);
      EXPECT_EQ(message.find(body), std::string::npos) << message;
    }
  }
}

TEST(KeyTest, NoErrorMessageShowsKeyBytes) {
  Key key = *BeginRotation(GenerateKey());
  const std::string text = Text(key);
  const std::string blob = BlobOf(key);
  std::vector<std::string> messages;
  auto refuse = [&](const std::string& input) {
    auto parsed = ParseKey(input);
    EXPECT_FALSE(parsed.ok());
    if (!parsed.ok()) messages.push_back(parsed.error().message);
  };
  refuse(text + "x");
  refuse(TextOf(blob + std::string(1, '\0')));
  refuse(TextOf(blob.substr(0, 105)));
  refuse("roster-key-2:" + text.substr(kKeyPrefix.size()));
  refuse(text.substr(kKeyPrefix.size()));
  std::string other_format = blob;
  other_format[0] = 9;
  refuse(TextOf(other_format));
  // Opening a value with the wrong associated data, or another key's value.
  const std::string sealed = Seal(key, "secret value", "row 1");
  auto moved = Open(key, sealed, "row 2");
  ASSERT_FALSE(moved.ok());
  messages.push_back(moved.error().message);
  auto foreign = Open(key, Seal(GenerateKey(), "x", "ad"), "ad");
  ASSERT_FALSE(foreign.ok());
  messages.push_back(foreign.error().message);
  ASSERT_FALSE(BeginRotation(key).ok());
  messages.push_back(BeginRotation(key).error().message);
  ASSERT_GE(messages.size(), 9u);
  for (const std::string& m : messages) {
    EXPECT_FALSE(ShowsKey(m, key)) << m;
    EXPECT_EQ(m.find("secret value"), std::string::npos) << m;
  }
  // The check itself finds a key where there is one.
  EXPECT_TRUE(ShowsKey("oops: " + text, key));
}

TEST(KeyTest, RotationKeepsTheIndexMasterAndTheOldSealingMaster) {
  Key first = GenerateKey();
  auto second = BeginRotation(first);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->key_id(), 2u);
  EXPECT_EQ(second->previous_key_id(), 1u);
  const std::string a = BlobOf(first), b = BlobOf(*second);
  ASSERT_EQ(b.size(), 106u);
  EXPECT_EQ(b[1], 1);                             // flags: a previous key follows
  EXPECT_EQ(b.substr(2, 32), a.substr(2, 32));    // the index master never rotates
  EXPECT_NE(b.substr(38, 32), a.substr(38, 32));  // a new sealing master
  EXPECT_EQ(b.substr(70, 4), U32(1));
  EXPECT_EQ(b.substr(74, 32), a.substr(38, 32));  // the old one, kept
  EXPECT_EQ(BlindIndex(*second, "items.match", "a@example.org"),
            BlindIndex(first, "items.match", "a@example.org"));
  EXPECT_EQ(Pseudonym(*second, "a"), Pseudonym(first, "a"));

  // The rotating key survives its text form.
  auto reread = ParseKey(Text(*second));
  ASSERT_TRUE(reread.ok()) << reread.error().message;
  EXPECT_EQ(Text(*reread), Text(*second));

  Key done = FinishRotation(*second);
  EXPECT_EQ(done.key_id(), 2u);
  EXPECT_FALSE(done.rotating());
  EXPECT_EQ(BlobOf(done), b.substr(0, 1) + std::string(1, '\0') + b.substr(2, 68));
  EXPECT_EQ(BlindIndex(done, "items.match", "x"), BlindIndex(first, "items.match", "x"));
}

TEST(KeyTest, ARotationMustFinishBeforeTheNextBegins) {
  auto rotating = BeginRotation(GenerateKey());
  ASSERT_TRUE(rotating.ok());
  auto again = BeginRotation(*rotating);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::kConflict);
  EXPECT_EQ(again.error().message,
            "a key rotation from key id 1 to 2 is unfinished; finish it before starting another");
  auto third = BeginRotation(FinishRotation(*rotating));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->key_id(), 3u);
  EXPECT_EQ(third->previous_key_id(), 2u);
}

TEST(KeyTest, FinishingAFinishedRotationChangesNothing) {
  Key key = GenerateKey();
  EXPECT_EQ(Text(FinishRotation(key)), Text(key));
}

TEST(KeyTest, TheLastKeyIdCannotRotate) {
  Blob b;
  b.id = 0xffffffff;
  auto key = ParseKey(TextOf(b.Bytes()));
  ASSERT_TRUE(key.ok()) << key.error().message;
  auto next = BeginRotation(*key);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().message, "key id 4294967295 is the last one; make a new key");
}

TEST(KeyTest, CopiesAndMovesKeepTheKey) {
  Key key = GenerateKey();
  const std::string text = Text(key);
  Key copy = key;
  EXPECT_EQ(Text(copy), text);
  Key moved = std::move(copy);
  EXPECT_EQ(Text(moved), text);
  Key other = GenerateKey();
  other = moved;
  EXPECT_EQ(Text(other), text);
  other = GenerateKey();
  EXPECT_NE(Text(other), text);
  other = std::move(moved);
  EXPECT_EQ(Text(other), text);
}

TEST(SecretTest, HoldsBytesAndShrinks) {
  Secret s(std::string_view("abc\0def", 7));
  EXPECT_EQ(s.size(), 7u);
  EXPECT_EQ(s.view(), std::string_view("abc\0def", 7));
  s.Shrink(3);
  EXPECT_EQ(s.view(), "abc");
  s.Shrink(10);  // never grows
  EXPECT_EQ(s.view(), "abc");
  Secret copy = s;
  EXPECT_EQ(copy.view(), "abc");
  Secret empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.view(), "");
  EXPECT_EQ(Secret(4).view(), std::string_view("\0\0\0\0", 4));
}

}  // namespace
}  // namespace roster::crypto
