#include "crypto/seal.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/text.h"
#include "crypto/keys.h"

namespace roster::crypto {
namespace {

const SealContext kWhere{"items", "fields", "row-17"};

TEST(SealTest, OpensWhatItSealed) {
  Key key = GenerateKey();
  for (const std::string& plaintext : {std::string(), std::string("Ada Lovelace"),
                                       std::string("a\0b\xff", 4), std::string(1 << 20, 'x')}) {
    const std::string sealed = Seal(key, plaintext, kWhere);
    EXPECT_EQ(sealed.size(), plaintext.size() + kSealOverhead);
    auto opened = Open(key, sealed, kWhere);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(*opened, plaintext);
  }
}

TEST(SealTest, ValueLayoutIsFormatKeyIdNonceThenCiphertext) {
  Key key = GenerateKey();
  const std::string sealed = Seal(key, "Ada", kWhere);
  EXPECT_EQ(sealed[0], 1);
  EXPECT_EQ(sealed.substr(1, 4), std::string("\0\0\0\x01", 4));
  EXPECT_EQ(*KeyIdOf(sealed), 1u);
  EXPECT_EQ(sealed.find("Ada"), std::string::npos);
}

TEST(SealTest, EverySealUsesAFreshNonce) {
  Key key = GenerateKey();
  std::set<std::string> seen, nonces;
  for (int i = 0; i < 100; ++i) {
    const std::string sealed = Seal(key, "same", kWhere);
    seen.insert(sealed);
    nonces.insert(sealed.substr(5, 24));
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(nonces.size(), 100u);
}

TEST(SealTest, AValueMovedToAnotherRowColumnOrTableDoesNotOpen) {
  Key key = GenerateKey();
  const std::string sealed = Seal(key, "ada@example.org", kWhere);
  for (const SealContext& elsewhere :
       {SealContext{"items", "fields", "row-18"}, SealContext{"items", "match", "row-17"},
        SealContext{"cache", "fields", "row-17"}, SealContext{"items", "fields", ""}}) {
    auto opened = Open(key, sealed, elsewhere);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.error().kind, ErrorKind::kInvalidData);
    EXPECT_EQ(opened.error().message,
              "sealed value in " + std::string(elsewhere.table) + "." +
                  std::string(elsewhere.column) +
                  " does not open under key id 1: it was altered, moved from another row or "
                  "column, or sealed with another key");
    EXPECT_EQ(opened.error().message.find("ada@"), std::string::npos);
  }
  // Raw associated data binds the same way.
  const std::string raw = Seal(key, "x", "one");
  EXPECT_TRUE(Open(key, raw, "one").ok());
  EXPECT_FALSE(Open(key, raw, "two").ok());
  EXPECT_FALSE(Open(key, raw, "").ok());
}

TEST(SealTest, ContextEncodingIsUnambiguous) {
  const SealContext a{"ab", "c", "d"}, b{"a", "bc", "d"}, c{"a", "b", "cd"};
  EXPECT_NE(a.Encode(), b.Encode());
  EXPECT_NE(b.Encode(), c.Encode());
  EXPECT_EQ(a.Encode(), std::string("\0\0\0\x02"
                                    "ab\0\0\0\x01"
                                    "c\0\0\0\x01"
                                    "d",
                                    16));
  Key key = GenerateKey();
  EXPECT_FALSE(Open(key, Seal(key, "x", a), b).ok());
  EXPECT_FALSE(Open(key, Seal(key, "x", b), c).ok());
}

TEST(SealTest, EveryAlteredByteIsRefused) {
  Key key = *BeginRotation(GenerateKey());  // ids 2 and 1: a changed id can reach a real key
  const std::string sealed = Seal(key, "Grace Hopper", kWhere);
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80}) {
      std::string altered = sealed;
      altered[i] = static_cast<char>(altered[i] ^ flip);
      auto opened = Open(key, altered, kWhere);
      ASSERT_FALSE(opened.ok()) << "byte " << i;
      EXPECT_EQ(opened.error().kind, ErrorKind::kInvalidData);
      EXPECT_EQ(opened.error().message.find("Grace"), std::string::npos);
    }
  }
  // The id is authenticated: pointing a value at the other key held fails.
  std::string other_id = sealed;
  other_id[4] = 1;
  EXPECT_EQ(Open(key, other_id, kWhere).error().message,
            "sealed value in items.fields does not open under key id 1: it was altered, moved "
            "from another row or column, or sealed with another key");
  std::string bad_format = sealed;
  bad_format[0] = 2;
  EXPECT_EQ(Open(key, bad_format, kWhere).error().message,
            "sealed value in items.fields has format 2; this roster reads format 1");
}

TEST(SealTest, EveryTruncationIsRefused) {
  Key key = GenerateKey();
  const std::string sealed = Seal(key, "Grace Hopper", kWhere);
  for (size_t n = 0; n < sealed.size(); ++n) {
    auto opened = Open(key, sealed.substr(0, n), kWhere);
    ASSERT_FALSE(opened.ok()) << n;
    EXPECT_EQ(opened.error().kind, ErrorKind::kInvalidData);
  }
  EXPECT_EQ(Open(key, sealed.substr(0, 44), kWhere).error().message,
            "sealed value in items.fields is truncated (44 bytes; a sealed value has at least 45)");
  EXPECT_FALSE(Open(key, sealed + "x", kWhere).ok());
  EXPECT_EQ(KeyIdOf("short").error().message,
            "sealed value is truncated (5 bytes; a sealed value has at least 45)");
}

TEST(SealTest, AnotherKeyCannotOpen) {
  Key key = GenerateKey(), other = GenerateKey();
  auto opened = Open(other, Seal(key, "x", kWhere), kWhere);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().kind, ErrorKind::kInvalidData);
}

TEST(SealTest, DuringARotationBothKeysOpenAndAfterItOnlyTheNewOne) {
  Key first = GenerateKey();
  const std::string old_value = Seal(first, "old", kWhere);
  Key rotating = *BeginRotation(first);
  auto opened = Open(rotating, old_value, kWhere);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(*opened, "old");
  const std::string new_value = Seal(rotating, "new", kWhere);
  EXPECT_EQ(*KeyIdOf(old_value), 1u);
  EXPECT_EQ(*KeyIdOf(new_value), 2u);
  EXPECT_EQ(*Open(rotating, new_value, kWhere), "new");
  // The old key file (a crash before the new one was in place) cannot open
  // what the new key sealed, and says why.
  EXPECT_EQ(Open(first, new_value, kWhere).error().message,
            "sealed value in items.fields is sealed under key id 2, which this key does not "
            "hold (it holds key id 1); was it sealed with a newer key?");

  Key finished = FinishRotation(rotating);
  EXPECT_EQ(*Open(finished, new_value, kWhere), "new");
  auto lost = Open(finished, old_value, kWhere);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().kind, ErrorKind::kInvalidData);
  EXPECT_EQ(lost.error().message,
            "sealed value in items.fields is sealed under key id 1, which this key does not "
            "hold (it holds key id 2); was a rotation finished before this value was sealed "
            "again?");
  Key third = *BeginRotation(finished);
  EXPECT_EQ(Open(third, old_value, "x").error().message,
            "sealed value is sealed under key id 1, which this key does not hold (it holds key "
            "ids 3 and 2); was a rotation finished before this value was sealed again?");
}

TEST(BlindIndexTest, DeterministicDomainSeparatedAndKeyed) {
  Key key = GenerateKey();
  const std::string a = BlindIndex(key, "items.match", "ada@example.org");
  EXPECT_EQ(a.size(), kBlindIndexChars);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  EXPECT_EQ(BlindIndex(key, "items.match", "ada@example.org"), a);
  EXPECT_EQ(BlindIndex(*ParseKey(FormatKey(key).view()), "items.match", "ada@example.org"), a);
  EXPECT_NE(BlindIndex(key, "collections.user", "ada@example.org"), a);
  EXPECT_NE(BlindIndex(key, "items.match", "ada@example.com"), a);
  EXPECT_NE(BlindIndex(GenerateKey(), "items.match", "ada@example.org"), a);
  // The domain is length-prefixed: moving the boundary changes the index.
  EXPECT_NE(BlindIndex(key, "ab", "c"), BlindIndex(key, "a", "bc"));
  EXPECT_NE(BlindIndex(key, "", "x"), BlindIndex(key, "x", ""));
  // The same input under the pseudonym key is unrelated.
  EXPECT_EQ(Pseudonym(key, "ada@example.org").find(a.substr(0, 12)), std::string::npos);
}

TEST(PseudonymTest, ShortStableAndKeyed) {
  Key key = GenerateKey();
  const std::string p = Pseudonym(key, "ldap:uid=ada");
  ASSERT_EQ(p.size(), 14u);
  EXPECT_EQ(p.substr(0, 2), "p:");
  EXPECT_EQ(p.find_first_not_of("0123456789abcdef", 2), std::string::npos) << p;
  EXPECT_EQ(Pseudonym(key, "ldap:uid=ada"), p);
  EXPECT_NE(Pseudonym(key, "ldap:uid=bob"), p);
  EXPECT_NE(Pseudonym(GenerateKey(), "ldap:uid=ada"), p);
  std::set<std::string> names;
  for (int i = 0; i < 10000; ++i) names.insert(Pseudonym(key, "person " + std::to_string(i)));
  EXPECT_EQ(names.size(), 10000u);
}

std::string FromHex(std::string_view hex) {
  auto bin = text::Unhex(hex);
  EXPECT_TRUE(bin.has_value()) << hex;
  return bin.value_or("");
}

// Known answers, computed once: every index, pseudonym and sealed value in
// every state file depends on these derivations and layouts, so a change to
// any of them must fail here rather than silently orphan existing state.
// The key: index master 00..1f, key id 2 with sealing master 40..5f, previous
// key id 1 with sealing master 80..9f.
TEST(FrozenFormatTest, DerivationsAndLayoutsDoNotChange) {
  auto key = ParseKey(
      "roster-key-1:AQEAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHwAAAAJAQUJDREVGR0hJSktMTU5PUFFSU1"
      "RVVldYWVpbXF1eXwAAAAGAgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2enw==");
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(BlindIndex(*key, "items.match", "ada@example.org"), "305cb0eee4c09d08fc172ec615b7ab46");
  EXPECT_EQ(Pseudonym(*key, "ada"), "p:75b5e16e4dfa");
  const std::string under_2 = FromHex(
      "0100000002f561d67b38861a50d1f899b5e9186786bc161ce2376050529fac46cbcae162b02a53af46c4a0c50f"
      "741e4e70568926c93d0ed360");
  const std::string under_1 = FromHex(
      "0100000001a60a51816d044cd0bb557973609c4af9196f090ec09fffdb536d1a8adf94333f6843b80f12bd9346"
      "d63eb8d6d54afd389fbfadd4");
  auto a = Open(*key, under_2, kWhere);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(*a, "Ada Lovelace");
  auto b = Open(*key, under_1, kWhere);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(*b, "Grace Hopper");
}

}  // namespace
}  // namespace roster::crypto
