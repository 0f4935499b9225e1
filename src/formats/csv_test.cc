#include "formats/csv.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace roster {
namespace {

using Fields = std::vector<std::string>;

CsvTable MustParse(std::string_view text, char delimiter = ',') {
  auto table = ParseCsv(text, delimiter);
  EXPECT_TRUE(table.ok()) << table.error().message;
  return table.ok() ? std::move(table).value() : CsvTable{};
}

TEST(CsvTest, HeaderAndRows) {
  CsvTable t = MustParse("name,email\nAda,ada@example.org\nBob,bob@example.org\n");
  EXPECT_EQ(t.header, (Fields{"name", "email"}));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"Ada", "ada@example.org"}));
  EXPECT_EQ(t.rows[0].line, 2u);
  EXPECT_EQ(t.rows[1].fields, (Fields{"Bob", "bob@example.org"}));
  EXPECT_EQ(t.rows[1].line, 3u);
  EXPECT_EQ(t.Column("email"), 1);
  EXPECT_EQ(t.Column("name"), 0);
  EXPECT_EQ(t.Column("Email"), -1);  // exact match
  EXPECT_EQ(t.Column("phone"), -1);
}

TEST(CsvTest, HeaderOnlyHasNoRows) {
  CsvTable t = MustParse("a,b");
  EXPECT_EQ(t.header, (Fields{"a", "b"}));
  EXPECT_TRUE(t.rows.empty());
}

TEST(CsvTest, NoTrailingNewline) {
  CsvTable t = MustParse("a,b\n1,2");
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"1", "2"}));
}

TEST(CsvTest, CrlfLineEnds) {
  CsvTable t = MustParse("a,b\r\n1,2\r\n3,4\r\n");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"1", "2"}));
  EXPECT_EQ(t.rows[1].fields, (Fields{"3", "4"}));
  EXPECT_EQ(t.rows[1].line, 3u);
}

TEST(CsvTest, LoneCrEndsALine) {
  CsvTable t = MustParse("a,b\r1,2\r3,4");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[1].fields, (Fields{"3", "4"}));
  EXPECT_EQ(t.rows[1].line, 3u);
}

TEST(CsvTest, EmptyFields) {
  CsvTable t = MustParse("a,b,c\n,,\n1,,\n,,3\n\"\",x,\"\"\n");
  ASSERT_EQ(t.rows.size(), 4u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"", "", ""}));
  EXPECT_EQ(t.rows[1].fields, (Fields{"1", "", ""}));
  EXPECT_EQ(t.rows[2].fields, (Fields{"", "", "3"}));
  EXPECT_EQ(t.rows[3].fields, (Fields{"", "x", ""}));
}

TEST(CsvTest, QuotedFields) {
  CsvTable t = MustParse(
      "a,b\n"
      "\"x,y\",\"say \"\"hi\"\"\"\n"
      "\"\"\"\",\"\"\n");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"x,y", "say \"hi\""}));
  EXPECT_EQ(t.rows[1].fields, (Fields{"\"", ""}));
}

TEST(CsvTest, LineBreaksInsideQuotesAreKeptAndCounted) {
  CsvTable t = MustParse(
      "a,b\n"
      "\"one\ntwo\",\"three\r\nfour\rfive\"\n"
      "x,y\n");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].line, 2u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"one\ntwo", "three\r\nfour\rfive"}));
  // The quoted breaks span lines 2-5, so the next row is on line 6.
  EXPECT_EQ(t.rows[1].line, 6u);
}

TEST(CsvTest, UnquotedQuoteIsLiteral) {
  CsvTable t = MustParse("size,label\n5\",a\"b\n");
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"5\"", "a\"b"}));
}

TEST(CsvTest, FieldsAreNotTrimmedButHeaderNamesAre) {
  CsvTable t = MustParse(" name ,\t\"email\" \n  Ada , x \n");
  EXPECT_EQ(t.header, (Fields{"name", "\"email\""}));
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].fields, (Fields{"  Ada ", " x "}));
}

TEST(CsvTest, QuotedHeaderNamesAreTrimmed) {
  CsvTable t = MustParse("\" name \",\"e\nmail\"\n1,2\n");
  EXPECT_EQ(t.header, (Fields{"name", "e\nmail"}));
  EXPECT_EQ(t.rows[0].line, 3u);
}

TEST(CsvTest, BomIsSkipped) {
  CsvTable t = MustParse("\xEF\xBB\xBFname,email\nAda,a@x\n");
  EXPECT_EQ(t.header, (Fields{"name", "email"}));
  EXPECT_EQ(t.Column("name"), 0);
}

TEST(CsvTest, BomOnlyInFrontIsSkipped) {
  // A BOM elsewhere is an ordinary (valid) character.
  CsvTable t = MustParse("a\n\xEF\xBB\xBFx\n");
  EXPECT_EQ(t.rows[0].fields, (Fields{"\xEF\xBB\xBFx"}));
}

TEST(CsvTest, BlankLinesAreSkipped) {
  CsvTable t = MustParse("\n\r\n  \na,b\n\n1,2\r\n\r\n \t \n3,4\n\n");
  EXPECT_EQ(t.header, (Fields{"a", "b"}));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].line, 6u);
  EXPECT_EQ(t.rows[1].line, 9u);
}

TEST(CsvTest, QuotedEmptyLineIsARow) {
  CsvTable t = MustParse("a\n\"\"\n");
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].fields, (Fields{""}));
}

TEST(CsvTest, OtherDelimiters) {
  CsvTable t = MustParse("a;b\n\"x;y\";2\n", ';');
  EXPECT_EQ(t.rows[0].fields, (Fields{"x;y", "2"}));
  CsvTable tabs = MustParse("a\tb\n\t\n", '\t');
  ASSERT_EQ(tabs.rows.size(), 1u);  // a line of one tab is two empty fields, not blank
  EXPECT_EQ(tabs.rows[0].fields, (Fields{"", ""}));
}

TEST(CsvTest, BadDelimiter) {
  for (char d : {'"', '\n', '\r', '\0', static_cast<char>(0xC3)}) {
    auto t = ParseCsv("a,b\n", d);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.error().kind, ErrorKind::kInvalidArgument);
  }
}

TEST(CsvTest, Utf8IsAccepted) {
  CsvTable t = MustParse("名前,ville\nZoë,Zürich 🏔\n");
  EXPECT_EQ(t.header, (Fields{"名前", "ville"}));
  EXPECT_EQ(t.rows[0].fields, (Fields{"Zoë", "Zürich 🏔"}));
}

TEST(CsvTest, FieldAtTheSizeLimitIsAccepted) {
  std::string big(1048576, 'x');
  CsvTable t = MustParse("a,b\n" + big + ",\"" + big + "\"\n");
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].fields[0].size(), 1048576u);
  EXPECT_EQ(t.rows[0].fields[1].size(), 1048576u);
}

struct ErrorCase {
  const char* name;
  std::string text;
  std::string message;
};

class CsvErrorTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(CsvErrorTest, Fails) {
  const ErrorCase& c = GetParam();
  auto t = ParseCsv(c.text);
  ASSERT_FALSE(t.ok()) << c.name;
  EXPECT_EQ(t.error().kind, ErrorKind::kInvalidData);
  EXPECT_EQ(t.error().message, c.message);
}

INSTANTIATE_TEST_SUITE_P(
    All, CsvErrorTest,
    testing::Values(
        ErrorCase{"empty", "", "line 1: no header row"},
        ErrorCase{"blank", "\n \r\n\n", "line 1: no header row"},
        ErrorCase{"bom only", "\xEF\xBB\xBF", "line 1: no header row"},
        ErrorCase{"unnamed column", "a,,b\n", "line 1: header column 2 has no name"},
        ErrorCase{"trailing delimiter in header", "a,b,\n1,2,\n",
                  "line 1: header column 3 has no name"},
        ErrorCase{"blank name", "a, \t \n", "line 1: header column 2 has no name"},
        ErrorCase{"duplicate", "\nemail,name, email\n",
                  "line 2: duplicate header name 'email' (columns 1 and 3)"},
        ErrorCase{"too few", "a,b,c,d,e,f,g,h\n1,2,3,4,5,6,7,8\n\n\n\n\n1,2,3,4,5\n",
                  "line 7: 5 fields where the header has 8"},
        ErrorCase{"too many", "a,b\n1,2,3\n", "line 2: 3 fields where the header has 2"},
        ErrorCase{"count after multiline", "a,b\n\"x\ny\",1\n\"p\nq\"\n",
                  "line 4: 1 fields where the header has 2"},
        ErrorCase{"unterminated", "a,b\n1,2\n3,\"abc\ndef\n", "line 3: unterminated quoted field"},
        ErrorCase{"unterminated header", "\"a", "line 1: unterminated quoted field"},
        ErrorCase{"after closing quote", "a,b\n1,2\n\"x\"y,2\n",
                  "line 3: unexpected character after closing quote"},
        ErrorCase{"space after closing quote", "a,b\n\"x\" ,2\n",
                  "line 2: unexpected character after closing quote"},
        ErrorCase{"after multiline quote", "a,b\n\"x\n\"y,2\n",
                  "line 3: unexpected character after closing quote"},
        ErrorCase{"bad utf8 lead", "a,b\n1,2\n\xFF,2\n", "line 3: invalid UTF-8"},
        ErrorCase{"truncated utf8", "a,b\n1,\xC3", "line 2: invalid UTF-8"},
        ErrorCase{"bad continuation", "a,b\n1,\xC3x\n", "line 2: invalid UTF-8"},
        ErrorCase{"overlong", "a,b\n1,\xC0\xAF\n", "line 2: invalid UTF-8"},
        ErrorCase{"overlong 3", "a,b\n1,\xE0\x80\xAF\n", "line 2: invalid UTF-8"},
        ErrorCase{"surrogate", "a,b\n1,\xED\xA0\x80\n", "line 2: invalid UTF-8"},
        ErrorCase{"above max", "a,b\n1,\xF4\x90\x80\x80\n", "line 2: invalid UTF-8"},
        ErrorCase{"bad utf8 in quotes", "a,b\n\"1\n\n\x80\",2\n", "line 4: invalid UTF-8"},
        ErrorCase{"bad utf8 in header", "a\xFE,b\n", "line 1: invalid UTF-8"},
        ErrorCase{"nul", std::string("a,b\n1,\0\n", 8), "line 2: NUL byte"},
        ErrorCase{"nul in quotes", std::string("a,b\n\"\0\",1\n", 10), "line 2: NUL byte"},
        ErrorCase{"long unquoted", "a\n" + std::string(1048577, 'x') + "\n",
                  "line 2: field longer than 1048576 bytes"},
        ErrorCase{"long quoted", "a\n\n\"" + std::string(1048576, 'x') + "\n\"\n",
                  "line 3: field longer than 1048576 bytes"},
        ErrorCase{"long quote pairs", "a\n\"" + std::string(2 * 1048577, '"') + "\"\n",
                  "line 2: field longer than 1048576 bytes"},
        ErrorCase{"long multibyte", "a\n" + std::string(1048575, 'x') + "é\n",
                  "line 2: field longer than 1048576 bytes"}),
    [](const testing::TestParamInfo<ErrorCase>& info) {
      std::string name = info.param.name;
      for (char& ch : name) {
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

// Every prefix of a tricky document parses or fails cleanly (a cheap stand-in
// for the fuzzer in ordinary test runs).
TEST(CsvTest, EveryPrefixIsHandled) {
  const std::string doc =
      "\xEF\xBB\xBF"
      "a,\"b\"\r\n\"x\"\"y\",\"p\r\nq\"\n\n\xC3\xA9,\"\"\r";
  for (size_t n = 0; n <= doc.size(); ++n) {
    auto t = ParseCsv(std::string_view(doc).substr(0, n));
    if (!t.ok()) {
      EXPECT_FALSE(t.error().message.empty());
    }
  }
}

}  // namespace
}  // namespace roster
