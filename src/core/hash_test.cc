#include "core/hash.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace roster {
namespace {

// Expected values from Python's hashlib.blake2b, an independent implementation.
TEST(HashHexTest, MatchesReferenceBlake2b) {
  EXPECT_EQ(HashHex("", 16), "cae66941d9efbd404e4d88758ea67670");
  EXPECT_EQ(HashHex("abc"), "cf4ab791c62b8d2b2109c90275287816");
  EXPECT_EQ(HashHex("abc", 32), "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
  EXPECT_EQ(HashHex("abc", 64),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
            "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
}

TEST(HashHexTest, OutOfRangeSizesAreClamped) {
  EXPECT_EQ(HashHex("abc", 1), HashHex("abc", 16));
  EXPECT_EQ(HashHex("abc", 1000), HashHex("abc", 64));
}

TEST(HashHexTest, HashesEmbeddedNulBytes) {
  EXPECT_NE(HashHex(std::string("a\0b", 3)), HashHex("a"));
}

TEST(HashHexTest, SafeFromManyThreadsAtOnce) {
  const std::string expected = HashHex("abc");
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&results, i] { results[i] = HashHex("abc"); });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& r : results) EXPECT_EQ(r, expected);
}

TEST(HexEncodeTest, EncodesAllByteValues) {
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(HexEncode(std::string("\x00\x0f\xf0\xff", 4)), "000ff0ff");
}

TEST(Base64Test, EncodesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
}

TEST(Base64Test, DecodesWhatItEncodes) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  std::string out;
  ASSERT_TRUE(Base64Decode(Base64Encode(all), &out));
  EXPECT_EQ(out, all);
}

TEST(Base64Test, SkipsWhitespace) {
  std::string out;
  ASSERT_TRUE(Base64Decode(" Zm9v\r\n YmFy\t", &out));
  EXPECT_EQ(out, "foobar");
  ASSERT_TRUE(Base64Decode("Z g = =", &out));
  EXPECT_EQ(out, "f");
}

TEST(Base64Test, EmptyInputIsEmptyOutput) {
  std::string out = "old";
  ASSERT_TRUE(Base64Decode("  ", &out));
  EXPECT_EQ(out, "");
}

// libsodium 1.0.18 reads some bytes above 127 as alphabet characters
// (0xf6 as '/'): every byte outside the alphabet, padding and whitespace
// must make the input not base64, so that one text has one reading.
TEST(Base64Test, EveryByteOutsideTheAlphabetIsRefused) {
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    if (alphabet.find(c) != std::string::npos ||
        std::string(" \t\r\n\f\v").find(c) != std::string::npos) {
      continue;
    }
    std::string text = "Zm9v";
    text[3] = c;  // "Zm9" + the byte
    std::string out;
    EXPECT_FALSE(Base64Decode(text, &out)) << "byte " << b;
  }
}

TEST(Base64Test, RejectsMalformedInput) {
  std::string out = "untouched";
  EXPECT_FALSE(Base64Decode("Zm9v!", &out));
  EXPECT_FALSE(Base64Decode("Zm9", &out));       // missing padding
  EXPECT_FALSE(Base64Decode("Zg=", &out));       // short padding
  EXPECT_FALSE(Base64Decode("Zg==Zg==", &out));  // data after padding
  EXPECT_FALSE(Base64Decode("Zm9v-_", &out));    // URL-safe alphabet
  EXPECT_EQ(out, "untouched");
}

}  // namespace
}  // namespace roster
