#include "filter/filter.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace roster {
namespace {

using Values = std::vector<std::string>;

// One record that every match case is evaluated against.
const std::map<std::string, Values, std::less<>>& Record() {
  static const auto* record = new std::map<std::string, Values, std::less<>>{
      {"department", {"Sales"}},
      {"email", {"Ada@Example.org", "ada.work@corp.example.com"}},
      {"phone", {"+44 20 7946 0958"}},
      {"blank", {""}},
      {"title", {"Chief Ünïcode Officer"}},
      {"x-custom:tag", {"VIP"}},
      {"org.unit", {"EMEA"}},
      {"age", {"42"}},
      {"notes", {"line one\nline two"}},
      {"quote", {"it's \"quoted\" \\ here"}},
  };
  return *record;
}

Values Lookup(std::string_view field) {
  auto it = Record().find(field);
  return it == Record().end() ? Values{} : it->second;
}

struct MatchCase {
  std::string expression;
  bool matches;
};

class FilterMatchTest : public testing::TestWithParam<MatchCase> {};

TEST_P(FilterMatchTest, Evaluates) {
  const MatchCase& c = GetParam();
  auto filter = Filter::Parse(c.expression);
  ASSERT_TRUE(filter.ok()) << c.expression << ": " << filter.error().message;
  EXPECT_EQ(filter->Matches(Lookup), c.matches) << c.expression;
  EXPECT_EQ(filter->text(), c.expression);
}

INSTANTIATE_TEST_SUITE_P(
    Operators, FilterMatchTest,
    testing::Values(
        // Equality, case-insensitive on both sides.
        MatchCase{"department == 'Sales'", true}, MatchCase{"department == 'sales'", true},
        MatchCase{"department == \"SALES\"", true}, MatchCase{"department = 'sales'", true},
        MatchCase{"department=='Sales'", true}, MatchCase{"department == 'Sale'", false},
        MatchCase{"department != 'Contractors'", true}, MatchCase{"department != 'sales'", false},
        // Any value for positive operators, no value for negative ones.
        MatchCase{"email == 'ada@example.org'", true},
        MatchCase{"email == 'ADA.WORK@corp.example.com'", true},
        MatchCase{"email != 'ada@example.org'", false},
        MatchCase{"email != 'someone@else.org'", true}, MatchCase{"email endswith '.com'", true},
        MatchCase{"email endswith '.net'", false}, MatchCase{"email startswith 'ADA.'", true},
        MatchCase{"email startswith 'bob'", false}, MatchCase{"email contains 'CORP'", true},
        MatchCase{"email contains 'xyz'", false}, MatchCase{"email contains ''", true},
        MatchCase{"email =~ '^ada@'", true}, MatchCase{"email !~ '^ada@'", false},
        MatchCase{"email !~ '^bob@'", true}, MatchCase{"email =~ 'EXAMPLE\\.ORG$'", true},
        MatchCase{"email =~ 'example\\.net'", false},
        // Operator keywords are case-insensitive.
        MatchCase{"email CONTAINS 'corp'", true}, MatchCase{"email StartsWith 'ada'", true},
        MatchCase{"email ENDSWITH 'org'", true},
        // in
        MatchCase{"department in ('Marketing', 'sales')", true},
        MatchCase{"department IN ('Marketing','Support')", false},
        MatchCase{"department in ('SALES')", true}, MatchCase{"age in (41, 42)", true},
        MatchCase{"email in ('x', 'ada@example.org')", true},
        // Numbers compare as text.
        MatchCase{"age == 42", true}, MatchCase{"age == 042", false}, MatchCase{"age != -42", true},
        MatchCase{"age == 42.0", false}, MatchCase{"age =~ 4", true},
        // A field with no values.
        MatchCase{"mobile == 'x'", false}, MatchCase{"mobile != 'x'", true},
        MatchCase{"mobile !~ 'x'", true}, MatchCase{"mobile =~ ''", false},
        MatchCase{"mobile contains ''", false}, MatchCase{"mobile in ('', 'x')", false},
        MatchCase{"has(mobile)", false}, MatchCase{"not has(mobile)", true},
        // has() ignores empty values.
        MatchCase{"has(email)", true}, MatchCase{"HAS ( email )", true},
        MatchCase{"has(blank)", false}, MatchCase{"blank == ''", true},
        // Field names with the extra characters.
        MatchCase{"x-custom:tag == 'vip'", true}, MatchCase{"org.unit == 'emea'", true},
        MatchCase{"_x != 'a'", true},
        // Escapes.
        MatchCase{"quote == 'it\\'s \"quoted\" \\\\ here'", true},
        MatchCase{"quote == \"it's \\\"quoted\\\" \\\\ here\"", true},
        // Non-ASCII is compared exactly (only ASCII letters fold).
        MatchCase{"title contains 'Ünïcode'", true}, MatchCase{"title contains 'ünïcode'", false},
        MatchCase{"title contains 'ÜNÏCODE'", false},
        MatchCase{"title == 'CHIEF Ünïcode OFFICER'", true},
        // Regex details: backslash kept, case-insensitive, searched, `.` and lines.
        MatchCase{"phone =~ '\\d{4} \\d{4}$'", true}, MatchCase{"phone =~ '^\\d'", false},
        MatchCase{"phone =~ '^\\+44'", true}, MatchCase{"department =~ '[a-z]+'", true},
        MatchCase{"department =~ '^[A-Z]+$'", true}, MatchCase{"notes =~ 'one.line'", false},
        MatchCase{"notes =~ 'one[\\s\\S]line'", true}, MatchCase{"notes =~ '^line two'", false},
        MatchCase{"notes =~ 'two$'", true}, MatchCase{"department =~ ''", true},
        MatchCase{"department =~ 'x|sal'", true}, MatchCase{"department =~ '(?=s)sales'", true},
        MatchCase{"department =~ '\\bales'", false}, MatchCase{"department =~ '^.{1,1000}$'", true},
        MatchCase{"age =~ '^\\d{2}$'", true}, MatchCase{"department =~ '[{]{0}'", true}));

INSTANTIATE_TEST_SUITE_P(
    Logic, FilterMatchTest,
    testing::Values(MatchCase{"", true}, MatchCase{"   \t\n", true},
                    MatchCase{"department != 'Contractors' and (has(mobile) or has(email))", true},
                    MatchCase{"department != 'Contractors' and (has(mobile) or has(fax))", false},
                    MatchCase{"has(email) and has(phone) and has(age)", true},
                    MatchCase{"has(email) and has(phone) and has(fax)", false},
                    MatchCase{"has(fax) or has(mobile) or has(age)", true},
                    MatchCase{"has(fax) or has(mobile) or has(pager)", false},
                    // and binds tighter than or.
                    MatchCase{"has(age) or has(fax) and has(mobile)", true},
                    MatchCase{"(has(age) or has(fax)) and has(mobile)", false},
                    MatchCase{"has(fax) and has(mobile) or has(age)", true},
                    MatchCase{"not has(age) or has(email)", true},
                    MatchCase{"not (has(age) or has(email))", false},
                    MatchCase{"not not has(age)", true}, MatchCase{"NOT has(age)", false},
                    MatchCase{"has(age) AND has(email)", true},
                    MatchCase{"has(fax) OR has(email)", true}, MatchCase{"((((has(age)))))", true},
                    MatchCase{"not(has(age))", false},
                    MatchCase{"department == 'sales'and age == 42", true}));

struct ErrorCase {
  std::string expression;
  std::string message;
};

class FilterErrorTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(FilterErrorTest, Fails) {
  const ErrorCase& c = GetParam();
  auto filter = Filter::Parse(c.expression);
  ASSERT_FALSE(filter.ok()) << c.expression;
  EXPECT_EQ(filter.error().kind, ErrorKind::kInvalidArgument);
  EXPECT_EQ(filter.error().message, c.message) << c.expression;
}

INSTANTIATE_TEST_SUITE_P(
    All, FilterErrorTest,
    testing::Values(
        ErrorCase{"department !=", "filter: column 14: expected a quoted string after '!='"},
        ErrorCase{"department != Contractors",
                  "filter: column 15: expected a quoted string after '!='"},
        ErrorCase{"email contains (",
                  "filter: column 16: expected a quoted string after 'contains'"},
        ErrorCase{"email CONTAINS", "filter: column 15: expected a quoted string after 'contains'"},
        ErrorCase{"(", "filter: column 2: unexpected end of expression"},
        ErrorCase{"not", "filter: column 4: unexpected end of expression"},
        ErrorCase{"has(a) and", "filter: column 11: unexpected end of expression"},
        ErrorCase{"has(a) or ", "filter: column 11: unexpected end of expression"},
        ErrorCase{"(has(a)", "filter: column 8: expected ')' to close the '(' at column 1"},
        ErrorCase{"((has(a))", "filter: column 10: expected ')' to close the '(' at column 1"},
        ErrorCase{"(has(a) x", "filter: column 9: expected ')' to close the '(' at column 1"},
        ErrorCase{"has(a))", "filter: column 7: unbalanced ')'"},
        ErrorCase{")", "filter: column 1: unexpected ')'"},
        ErrorCase{"()", "filter: column 2: unexpected ')'"},
        ErrorCase{"has(a) has(b)",
                  "filter: column 8: expected 'and', 'or' or the end of the expression"},
        ErrorCase{"a == 'x' 'y'",
                  "filter: column 10: expected 'and', 'or' or the end of the expression"},
        ErrorCase{"a < 'x'", "filter: column 3: unknown operator '<'"},
        ErrorCase{"a <= 'x'", "filter: column 3: unknown operator '<='"},
        ErrorCase{"a === 'x'", "filter: column 3: unknown operator '==='"},
        ErrorCase{"a ! 'x'", "filter: column 3: unknown operator '!'"},
        ErrorCase{"a is 'x'", "filter: column 3: unknown operator 'is'"},
        ErrorCase{"a not in ('x')", "filter: column 3: unknown operator 'not'"},
        ErrorCase{"a", "filter: column 2: expected an operator after 'a'"},
        ErrorCase{"a 'x'", "filter: column 3: expected an operator after 'a'"},
        ErrorCase{"'x' == a", "filter: column 1: expected a field name"},
        ErrorCase{"42 == a", "filter: column 1: expected a field name"},
        ErrorCase{"== 'x'", "filter: column 1: expected a field name"},
        ErrorCase{"and == 'x'", "filter: column 1: expected a field name, not the keyword 'and'"},
        ErrorCase{"a == 'x' or OR b == 'y'",
                  "filter: column 13: expected a field name, not the keyword 'or'"},
        ErrorCase{"contains == 'x'",
                  "filter: column 1: expected a field name, not the keyword 'contains'"},
        ErrorCase{"has == 'x'", "filter: column 5: expected '(' after 'has'"},
        ErrorCase{"has()", "filter: column 5: expected a field name after 'has('"},
        ErrorCase{"has('a')", "filter: column 5: expected a field name after 'has('"},
        ErrorCase{"has(in)", "filter: column 5: expected a field name after 'has('"},
        ErrorCase{"has(a b)",
                  "filter: column 7: expected ')' to close the '(' after 'has' at column 1"},
        ErrorCase{"a in 'x'", "filter: column 6: expected '(' after 'in'"},
        ErrorCase{"a in ()", "filter: column 7: expected a quoted string in the 'in' list"},
        ErrorCase{"a in ('x',)", "filter: column 11: expected a quoted string in the 'in' list"},
        ErrorCase{"a in ('x' 'y')", "filter: column 11: expected ',' or ')' in the 'in' list"},
        ErrorCase{"a in ('x'", "filter: column 10: expected ',' or ')' in the 'in' list"},
        ErrorCase{"a == 'x", "filter: column 6: unterminated string"},
        ErrorCase{"a == \"x\\\"", "filter: column 6: unterminated string"},
        ErrorCase{"a == 'x' and b == \"", "filter: column 19: unterminated string"},
        ErrorCase{"a == 555-1234",
                  "filter: column 6: malformed number '555-1234' (quote it to compare text)"},
        ErrorCase{"a == 1.2.3",
                  "filter: column 6: malformed number '1.2.3' (quote it to compare text)"},
        ErrorCase{"a == 12abc",
                  "filter: column 6: malformed number '12abc' (quote it to compare text)"},
        ErrorCase{"a == 'x' & b", "filter: column 10: unexpected character '&'"},
        ErrorCase{"a == 'x' && b == 'y'", "filter: column 10: unexpected character '&'"},
        ErrorCase{"$a == 'x'", "filter: column 1: unexpected character '$'"},
        ErrorCase{"a == -", "filter: column 6: unexpected character '-'"},
        ErrorCase{"a == 'x'\x01", "filter: column 9: unexpected character"},
        // The column counts characters, not bytes.
        ErrorCase{"a == 'Zürich' $", "filter: column 15: unexpected character '$'"},
        ErrorCase{"a == 'Zürich' b",
                  "filter: column 15: expected 'and', 'or' or the end of the expression"},
        // The first error wins, even if a later one is lexical.
        ErrorCase{"'x' $", "filter: column 1: expected a field name"},
        // Regular expressions.
        ErrorCase{"a =~ '('",
                  "filter: column 6: invalid regular expression: unbalanced parentheses, or '*', "
                  "'+', '?' or '{' with nothing to repeat"},
        ErrorCase{"a =~ '[ab'", "filter: column 6: invalid regular expression: unbalanced '['"},
        ErrorCase{"a !~ '*'",
                  "filter: column 6: invalid regular expression: unbalanced parentheses, or '*', "
                  "'+', '?' or '{' with nothing to repeat"},
        ErrorCase{"a =~ 'a{2,1}'",
                  "filter: column 6: invalid regular expression: invalid range in '{}'"},
        ErrorCase{"a =~ 'x{3'", "filter: column 6: invalid regular expression: unbalanced '{'"},
        ErrorCase{"a =~ '[z-a]'",
                  "filter: column 6: invalid regular expression: invalid character range"},
        ErrorCase{"a =~ 'a)|(b'",
                  "filter: column 6: invalid regular expression: unbalanced parentheses, or '*', "
                  "'+', '?' or '{' with nothing to repeat"},
        ErrorCase{"a =~ '(a)\\1'",
                  "filter: column 6: invalid regular expression: too complex (back-references are "
                  "not supported)"},
        ErrorCase{"a =~ 'x' or b =~ 'a{5000}'",
                  "filter: column 18: regular expression too large once its '{}' counts are "
                  "expanded"},
        ErrorCase{"a =~ '(a{20}){200}'",
                  "filter: column 6: regular expression too large once its '{}' counts are "
                  "expanded"},
        ErrorCase{"a =~ '\\d{99999999999999999999999}'",
                  "filter: column 6: regular expression too large once its '{}' counts are "
                  "expanded"},
        ErrorCase{"a =~ '" + std::string(1001, 'x') + "'",
                  "filter: column 6: regular expression longer than 1000 bytes"}));

TEST(FilterTest, NestingIsCapped) {
  const std::string ok = std::string(64, '(') + "has(a)" + std::string(64, ')');
  EXPECT_TRUE(Filter::Parse(ok).ok());
  const std::string deep = std::string(65, '(') + "has(a)" + std::string(65, ')');
  auto parsed = Filter::Parse(deep);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "filter: column 65: nesting deeper than 64 levels");

  std::string nots;
  for (int i = 0; i < 64; ++i) nots += "not ";
  auto even = Filter::Parse(nots + "has(age)");
  ASSERT_TRUE(even.ok());
  EXPECT_TRUE(even->Matches(Lookup));
  auto too_many = Filter::Parse(nots + "not has(age)");
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().message, "filter: column 257: nesting deeper than 64 levels");

  // Parentheses and `not` count together; a long flat list does not nest.
  EXPECT_FALSE(
      Filter::Parse(std::string(40, '(') + nots.substr(0, 100) + "has(a)" + std::string(40, ')'))
          .ok());
  std::string flat = "has(a)";
  for (int i = 0; i < 10000; ++i) flat += " or has(a)";
  EXPECT_TRUE(Filter::Parse(flat).ok());
}

TEST(FilterTest, HugeInputFailsCleanly) {
  EXPECT_FALSE(Filter::Parse(std::string(100000, '(')).ok());
  EXPECT_FALSE(Filter::Parse(std::string(100000, 'n')).ok());
  EXPECT_FALSE(Filter::Parse(std::string(100000, '\'')).ok());
}

TEST(FilterTest, FieldsAreSortedAndUnique) {
  auto filter = Filter::Parse(
      "zeta == 'a' and (has(alpha) or not Beta in ('x')) and alpha != 'b' or x-y:z =~ 'q'");
  ASSERT_TRUE(filter.ok()) << filter.error().message;
  EXPECT_EQ(filter->Fields(), (std::vector<std::string>{"Beta", "alpha", "x-y:z", "zeta"}));
  EXPECT_TRUE(Filter().Fields().empty());
  EXPECT_TRUE(Filter::Parse("  ")->Fields().empty());
}

TEST(FilterTest, EmptyFilterMatchesEverything) {
  Filter filter;
  EXPECT_TRUE(filter.Matches(Lookup));
  EXPECT_TRUE(filter.Matches([](std::string_view) { return Values{}; }));
  EXPECT_EQ(filter.text(), "");
}

TEST(FilterTest, CopiesAndMovesShareTheTree) {
  auto parsed = Filter::Parse("department == 'sales'");
  ASSERT_TRUE(parsed.ok());
  Filter copy = *parsed;
  Filter moved = std::move(*parsed);
  EXPECT_TRUE(copy.Matches(Lookup));
  EXPECT_TRUE(moved.Matches(Lookup));
  EXPECT_EQ(copy.text(), "department == 'sales'");
  Filter assigned;
  assigned = copy;
  EXPECT_TRUE(assigned.Matches(Lookup));
  EXPECT_FALSE(assigned.Matches([](std::string_view) { return Values{"other"}; }));
}

TEST(FilterTest, LookupReceivesFieldNamesAsWritten) {
  std::vector<std::string> asked;
  auto filter = Filter::Parse("Email == 'x' or X-Tag != 'y'");
  ASSERT_TRUE(filter.ok());
  filter->Matches([&](std::string_view field) {
    asked.emplace_back(field);
    return Values{};
  });
  EXPECT_EQ(asked, (std::vector<std::string>{"Email", "X-Tag"}));
}

TEST(FilterTest, RegexOnLongValuesIsLinear) {
  // Nested stars backtrack exponentially in a naive matcher, and a recursive
  // matcher overflows the stack on a long value.
  auto filter = Filter::Parse("notes =~ '((a*)*)*c' or notes =~ '(a|a)*c'");
  ASSERT_TRUE(filter.ok()) << filter.error().message;
  const std::string value(200000, 'a');
  EXPECT_FALSE(filter->Matches([&](std::string_view) { return Values{value}; }));
  auto found = Filter::Parse("notes =~ 'b$'");
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->Matches([&](std::string_view) { return Values{value + "B"}; }));
}

}  // namespace

TEST(FilterBit, TestsFlagFields) {
  auto disabled = Filter::Parse("bit(userAccountControl, 2)");
  ASSERT_TRUE(disabled.ok()) << disabled.error().message;
  auto with = [](std::string v) {
    return [v](std::string_view f) -> std::vector<std::string> {
      if (f == "userAccountControl") return {v};
      return {};
    };
  };
  EXPECT_TRUE(disabled->Matches(with("514")));
  EXPECT_FALSE(disabled->Matches(with("512")));
  EXPECT_FALSE(disabled->Matches(with("")));
  EXPECT_FALSE(disabled->Matches(with("abc")));
  EXPECT_TRUE(disabled->Matches(with("-2")));  // signed 32-bit form
  EXPECT_FALSE(disabled->Matches([](std::string_view) { return std::vector<std::string>{}; }));
  auto active = Filter::Parse("not BIT(userAccountControl, 2) and has(mail)");
  ASSERT_TRUE(active.ok());
  EXPECT_EQ(active->Fields(), (std::vector<std::string>{"mail", "userAccountControl"}));
}

TEST(FilterBit, ReportsErrorsWithColumns) {
  EXPECT_EQ(Filter::Parse("bit(uac 2)").error().message,
            "filter: column 9: expected ',' after the field name");
  EXPECT_EQ(Filter::Parse("bit(uac, 'x')").error().message,
            "filter: column 10: expected a positive whole number as the bit mask");
  EXPECT_EQ(Filter::Parse("bit(uac, 0)").error().message,
            "filter: column 10: expected a positive whole number as the bit mask");
  EXPECT_EQ(Filter::Parse("bit(uac, 2").error().message,
            "filter: column 11: expected ')' to close the '(' after 'bit' at column 1");
  EXPECT_EQ(Filter::Parse("bit == 'x'").error().message,
            "filter: column 5: expected '(' after 'bit'");
}

}  // namespace roster
