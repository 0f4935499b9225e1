#include "core/text.h"

#include <gtest/gtest.h>

#include <string>

namespace roster::text {
namespace {

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
