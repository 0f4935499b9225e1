#include "core/text.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace roster::text {
namespace {

TEST(TrimTest, WhitespaceByDefault) {
  EXPECT_EQ(Trim(" \t\r\n\f\vx y\v\f\n\r\t "), "x y");
  EXPECT_EQ(Trim(""), "");
  EXPECT_EQ(Trim(" \t\r\n\f\v"), "");
  EXPECT_EQ(Trim("x"), "x");
  EXPECT_EQ(TrimLeft("  x  "), "x  ");
  EXPECT_EQ(TrimRight("  x  "), "  x");
  EXPECT_EQ(TrimLeft("   "), "");
  EXPECT_EQ(TrimRight("   "), "");
}

TEST(TrimTest, OnlyTheGivenCharacters) {
  // XML's whitespace: a form feed is text there.
  EXPECT_EQ(Trim("\f \t\r\nx\n\r\t \f", " \t\r\n"), "\f \t\r\nx\n\r\t \f");
  EXPECT_EQ(Trim(" \t\r\nx\n\r\t ", " \t\r\n"), "x");
  // An HTTP header value: optional whitespace before, the line end after.
  EXPECT_EQ(TrimRight(TrimLeft(" \t v \t\r\n", " \t"), " \t\r\n"), "v");
  EXPECT_EQ(TrimLeft("\r\n v", " \t"), "\r\n v");
  EXPECT_EQ(Trim("xxaxx", "x"), "a");
  EXPECT_EQ(Trim("abc", ""), "abc");
}

TEST(CaseTest, AsciiLettersOnly) {
  EXPECT_EQ(AsciiLower("Ab-Z\xc3\x89@"), "ab-z\xc3\x89@");
  EXPECT_EQ(AsciiUpper("aB-z\xc3\xa9@"), "AB-Z\xc3\xa9@");
  EXPECT_TRUE(EqualsNoCase("Content-Type", "content-TYPE"));
  EXPECT_FALSE(EqualsNoCase("abc", "abd"));
  EXPECT_FALSE(EqualsNoCase("abc", "ab"));
  EXPECT_FALSE(EqualsNoCase("\xc3\x89", "\xc3\xa9"));  // not Unicode folding
  EXPECT_TRUE(EqualsNoCase("", ""));
  EXPECT_TRUE(StartsWithNoCase("TEL:+1", "tel:"));
  EXPECT_FALSE(StartsWithNoCase("te", "tel:"));
}

TEST(HexTest, TwoDigitsPerByte) {
  EXPECT_EQ(Hex(""), "");
  EXPECT_EQ(Hex(std::string("\x00\x0f\xf0\xff\x7f\x80", 6)), "000ff0ff7f80");
  EXPECT_EQ(Hex("\xab\xcd", HexCase::kUpper), "ABCD");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  const std::string hex = Hex(all);
  ASSERT_EQ(hex.size(), 512u);
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(PercentEscapeAt("%" + hex.substr(2 * i, 2), 0), i);
  }
}

TEST(HexTest, UnhexUndoesHexAndRefusesWhatIsNotHex) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_EQ(Unhex(Hex(all)), all);
  EXPECT_EQ(Unhex(Hex(all, HexCase::kUpper)), all);
  EXPECT_EQ(Unhex(""), std::string());
  EXPECT_EQ(Unhex("abc"), std::nullopt);  // half a byte
  EXPECT_EQ(Unhex("zz"), std::nullopt);
  EXPECT_EQ(Unhex("0g"), std::nullopt);
}

TEST(PercentEscapeAtTest, OnlyACompleteEscape) {
  EXPECT_EQ(PercentEscapeAt("%41", 0), 0x41);
  EXPECT_EQ(PercentEscapeAt("a%c3%A9", 1), 0xc3);
  EXPECT_EQ(PercentEscapeAt("a%c3%A9", 4), 0xa9);
  EXPECT_EQ(PercentEscapeAt("%fF", 0), 0xff);
  EXPECT_EQ(PercentEscapeAt("%00", 0), 0);
  EXPECT_EQ(PercentEscapeAt("%41", 1), -1);  // not at a '%'
  EXPECT_EQ(PercentEscapeAt("%4", 0), -1);   // truncated
  EXPECT_EQ(PercentEscapeAt("%", 0), -1);
  EXPECT_EQ(PercentEscapeAt("", 0), -1);
  EXPECT_EQ(PercentEscapeAt("%41", 7), -1);  // past the end
  for (char c : std::string("gG/:@`\0 %", 9)) {
    EXPECT_EQ(PercentEscapeAt(std::string("%") + c + "0", 0), -1) << c;
    EXPECT_EQ(PercentEscapeAt(std::string("%0") + c, 0), -1) << c;
  }
}

TEST(PercentEncodeTest, KeepsUnreservedByDefault) {
  std::string ascii;
  for (char c = 0x20; c < 0x7f; ++c) ascii += c;
  EXPECT_EQ(PercentEncode(ascii),
            "%20%21%22%23%24%25%26%27%28%29%2A%2B%2C-.%2F0123456789%3A%3B%3C%3D%3E%3F%40"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ%5B%5C%5D%5E_%60abcdefghijklmnopqrstuvwxyz%7B%7C%7D~");
  EXPECT_EQ(PercentEncode(std::string("\x00\x7f\x80\xc3\xa9\xff", 6)), "%00%7F%80%C3%A9%FF");
  EXPECT_EQ(PercentEncode(""), "");
}

TEST(PercentEncodeTest, KeepsWhatTheCallerSays) {
  // SQLite's URI filenames: only '%', '?' and '#' would be misread.
  const auto sqlite_keep = [](unsigned char c) { return c != '%' && c != '?' && c != '#'; };
  EXPECT_EQ(PercentEncode("/tmp/a b%41?x=1#f\xc3\xa9", sqlite_keep),
            "/tmp/a b%2541%3Fx=1%23f\xc3\xa9");
  const auto keep_nothing = [](unsigned char) { return false; };
  EXPECT_EQ(PercentEncode("a/", keep_nothing), "%61%2F");
}

TEST(NormalizeTypesTest, SplitsTrimsLowersAndDropsWhatSaysNothing) {
  bool preferred = false;
  EXPECT_EQ(
      NormalizeTypes({" Work ,VOICE", "pref", "work", "", ",,", "Cell\r\n"}, false, &preferred),
      (std::vector<std::string>{"work", "voice", "cell"}));
  EXPECT_TRUE(preferred);
  preferred = false;
  EXPECT_EQ(NormalizeTypes({"INTERNET,home"}, true, &preferred), std::vector<std::string>{"home"});
  EXPECT_FALSE(preferred);
  EXPECT_EQ(NormalizeTypes({"internet"}, false, nullptr), std::vector<std::string>{"internet"});
  EXPECT_EQ(NormalizeTypes({"a\rb"}, false, nullptr), std::vector<std::string>{"a\nb"});
}

TEST(TypeListTest, ListsAddUpWithoutDuplicates) {
  bool preferred = false;
  TypeList list(true, &preferred);
  list.Add("WORK,internet");
  list.Add(" home , work ,PREF");
  list.Add("");
  EXPECT_EQ(std::move(list).Take(), (std::vector<std::string>{"work", "home"}));
  EXPECT_TRUE(preferred);
  TypeList no_flag(false, nullptr);
  no_flag.Add("pref,x\ry");  // a CR is kept: vCard parameter values are taken as read
  EXPECT_EQ(std::move(no_flag).Take(), std::vector<std::string>{"x\ry"});
}

TEST(TypeListTest, ManyDistinctEntriesStayFast) {
  std::string hostile;
  for (int i = 0; i < 200000; ++i) hostile += "t" + std::to_string(i) + ",";
  TypeList list(false, nullptr);
  list.Add(hostile);
  EXPECT_EQ(std::move(list).Take().size(), 200000u);
  EXPECT_EQ(NormalizeTypes({hostile, hostile}, false, nullptr).size(), 200000u);
}

TEST(SafeForOutputTest, KeepsValidTextAsItIs) {
  EXPECT_EQ(SafeForOutput(""), "");
  EXPECT_EQ(SafeForOutput("PROPFIND http://h/alice/: HTTP 404"),
            "PROPFIND http://h/alice/: HTTP 404");
  EXPECT_EQ(SafeForOutput("Jos\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80"),
            "Jos\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80");
}

TEST(SafeForOutputTest, InvalidUtf8BecomesReplacementCharacters) {
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(SafeForOutput("a\xff"
                          "b"),
            "a" + fffd + "b");
  EXPECT_EQ(SafeForOutput("\xc3"), fffd);                                   // truncated
  EXPECT_EQ(SafeForOutput("\xc0\xaf"), fffd + fffd);                        // overlong '/'
  EXPECT_EQ(SafeForOutput("\xed\xa0\x80"), fffd + fffd + fffd);             // a surrogate
  EXPECT_EQ(SafeForOutput("\xf4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // > U+10FFFF
  EXPECT_EQ(SafeForOutput("\xe6\x9d"), fffd + fffd);
}

TEST(SafeForOutputTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(SafeForOutput("red\x1b[31m"), "red\\x1b[31m");
  EXPECT_EQ(SafeForOutput("line\r\nX-Evil: 1"), "line\\x0d\\x0aX-Evil: 1");
  EXPECT_EQ(SafeForOutput(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(SafeForOutput("tab\tdel\x7f"), "tab\\x09del\\x7f");
  EXPECT_EQ(SafeForOutput("c1\xc2\x85"), "c1\\u0085");
  EXPECT_EQ(SafeForOutput("bidi\xe2\x80\xae"
                          "txt"),
            "bidi\\u202etxt");
  EXPECT_EQ(SafeForOutput("sep\xe2\x80\xa8"), "sep\\u2028");
}

TEST(SafeForOutputTest, OutputIsAlwaysValidUtf8) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  std::string safe = SafeForOutput(all + all);
  EXPECT_EQ(SafeForOutput(safe), safe);  // nothing left to clean
}

}  // namespace
}  // namespace roster::text
