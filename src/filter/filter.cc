// A tokenizer and recursive-descent parser for the filter language
// (docs/filters.md), and the evaluator of the tree it builds.
#include "filter/filter.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/text.h"

namespace roster {

struct Filter::Node {
  enum class Kind { kAnd, kOr, kNot, kHas, kBit, kCompare };
  enum class Op { kEq, kNe, kContains, kStartsWith, kEndsWith, kMatches, kNotMatches, kIn };

  Kind kind = Kind::kAnd;
  std::vector<Node> children;         // kAnd, kOr (two or more), kNot (one)
  std::string field;                  // kHas, kCompare
  Op op = Op::kEq;                    // kCompare
  std::vector<std::string> literals;  // kCompare, lower-cased; one unless kIn
  std::regex regex;                   // kMatches, kNotMatches
  uint64_t mask = 0;                  // kBit
};

namespace {

using Node = Filter::Node;

// Nesting is bounded so that a hostile expression cannot exhaust the stack of
// the recursive parser (or of evaluation and destruction, which follow the tree).
constexpr int kMaxDepth = 64;

// std::regex compiles bounded repetition by copying states, so `(a{1000}){1000}`
// would build a million of them, and matching costs states times value length.
// The expanded size is estimated as the pattern's length times the product of
// its `{}` counts: exact for nesting, pessimistic for repetitions side by side.
constexpr size_t kMaxRegexBytes = 1000;
constexpr unsigned long kMaxRegexExpandedSize = 20000;

// Case is compared in ASCII only (text::AsciiLower): full Unicode case
// folding would need ICU, and the values we filter on (departments, domains,
// flags) are overwhelmingly ASCII.
using text::AsciiLower;

bool IsIdentStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }

bool IsIdentChar(char c) {
  return IsIdentStart(c) || (c >= '0' && c <= '9') || c == '.' || c == ':' || c == '-';
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsOperatorChar(char c) { return c == '=' || c == '!' || c == '~' || c == '<' || c == '>'; }

enum class TokenKind { kEnd, kLParen, kRParen, kComma, kWord, kString, kNumber, kOperator, kError };

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string text;  // the word, number or operator as written; a string unescaped;
                     // for kError, what went wrong
  size_t column = 0;
};

bool IsKeyword(std::string_view lower) {
  return lower == "and" || lower == "or" || lower == "not" || lower == "has" || lower == "bit" ||
         lower == "in" || lower == "contains" || lower == "startswith" || lower == "endswith";
}

// Space between tokens; an expression of nothing else is the empty filter.
constexpr std::string_view kFilterSpace = " \t\n\r";

// The quoted string that opens at s[pos] into *token, unescaped; returns
// where it ends, after the closing quote. Without one, *token is a kError.
size_t ScanString(std::string_view s, size_t pos, Token* token) {
  const char quote = s[pos];
  token->kind = TokenKind::kString;
  size_t end = pos + 1;
  while (end < s.size()) {
    const char d = s[end];
    if (d == quote) return end + 1;
    // Only these three are escapes; any other backslash is kept, so that
    // regular expressions such as '\d+' can be written without doubling.
    if (d == '\\' && end + 1 < s.size() &&
        (s[end + 1] == '\\' || s[end + 1] == '\'' || s[end + 1] == '"')) {
      token->text += s[end + 1];
      end += 2;
      continue;
    }
    token->text += d;
    ++end;
  }
  token->kind = TokenKind::kError;
  token->text = "unterminated string";
  return end;
}

// The number that starts at s[pos] ("42", "-7", "1.5") into *token; returns
// where it ends. One that runs on into a word ("555-1234") is a kError.
size_t ScanNumber(std::string_view s, size_t pos, Token* token) {
  token->kind = TokenKind::kNumber;
  size_t end = pos + 1;
  while (end < s.size() && IsDigit(s[end])) ++end;
  if (end + 1 < s.size() && s[end] == '.' && IsDigit(s[end + 1])) {
    end += 2;
    while (end < s.size() && IsDigit(s[end])) ++end;
  }
  if (end < s.size() && IsIdentChar(s[end])) {
    // "555-1234" or "1.2.3": almost certainly meant as a string.
    while (end < s.size() && IsIdentChar(s[end])) ++end;
    token->kind = TokenKind::kError;
    token->text = "malformed number '" + std::string(s.substr(pos, end - pos)) +
                  "' (quote it to compare text)";
    return end;
  }
  token->text = std::string(s.substr(pos, end - pos));
  return end;
}

// The token that starts at s[pos] (not a space) into *token; returns where
// it ends.
size_t ScanToken(std::string_view s, size_t pos, Token* token) {
  const char c = s[pos];
  size_t end = pos + 1;
  if (c == '(' || c == ')' || c == ',') {
    token->kind = c == '(' ? TokenKind::kLParen : c == ')' ? TokenKind::kRParen : TokenKind::kComma;
    token->text = std::string(1, c);
    return end;
  }
  if (c == '\'' || c == '"') return ScanString(s, pos, token);
  if (IsDigit(c) || (c == '-' && pos + 1 < s.size() && IsDigit(s[pos + 1]))) {
    return ScanNumber(s, pos, token);
  }
  if (IsIdentStart(c)) {
    token->kind = TokenKind::kWord;
    while (end < s.size() && IsIdentChar(s[end])) ++end;
    token->text = std::string(s.substr(pos, end - pos));
    return end;
  }
  if (IsOperatorChar(c)) {
    token->kind = TokenKind::kOperator;
    while (end < s.size() && IsOperatorChar(s[end])) ++end;
    token->text = std::string(s.substr(pos, end - pos));
    return end;
  }
  token->kind = TokenKind::kError;
  token->text = c >= 0x21 && c <= 0x7E ? "unexpected character '" + std::string(1, c) + "'"
                                       : std::string("unexpected character");
  return end;
}

// Splits the expression into tokens. A lexical error becomes a kError token
// that ends the list, so the parser reports whichever error comes first.
std::vector<Token> Tokenize(std::string_view s) {
  std::vector<Token> tokens;
  size_t column = 1;  // counts code points, not bytes, to match what an editor shows
  size_t pos = 0;
  auto advance = [&](size_t to) {
    for (; pos < to; ++pos) {
      if ((static_cast<unsigned char>(s[pos]) & 0xC0) != 0x80) ++column;
    }
  };
  for (;;) {
    while (pos < s.size() && kFilterSpace.find(s[pos]) != std::string_view::npos) {
      advance(pos + 1);
    }
    Token token;
    token.column = column;
    if (pos == s.size()) {
      tokens.push_back(std::move(token));
      return tokens;
    }
    const size_t end = ScanToken(s, pos, &token);
    const bool error = token.kind == TokenKind::kError;
    tokens.push_back(std::move(token));
    if (error) return tokens;
    advance(end);
  }
}

// A short phrase for a std::regex error code; the library's own text is long
// and implementation-specific.
const char* RegexErrorText(std::regex_constants::error_type code) {
  namespace rc = std::regex_constants;
  switch (code) {
    case rc::error_collate:
      return "invalid collating element";
    case rc::error_ctype:
      return "invalid character class";
    case rc::error_escape:
      return "invalid escape";
    case rc::error_backref:
      return "invalid back-reference";
    case rc::error_brack:
      return "unbalanced '['";
    case rc::error_paren:
      // libstdc++ also reports a leading '*' this way.
      return "unbalanced parentheses, or '*', '+', '?' or '{' with nothing to repeat";
    case rc::error_brace:
      return "unbalanced '{'";
    case rc::error_badbrace:
      return "invalid range in '{}'";
    case rc::error_range:
      return "invalid character range";
    case rc::error_space:
      return "too large";
    case rc::error_badrepeat:
      return "'*', '+', '?' or '{' with nothing to repeat";
    case rc::error_complexity:
      // libstdc++'s linear-time matcher refuses back-references this way.
      return "too complex (back-references are not supported)";
    case rc::error_stack:
      return "too complex";
    default:
      return "invalid";
  }
}

// Whether the pattern's estimated size with `{}` counts expanded is within
// kMaxRegexExpandedSize.
bool ExpandedSizeIsBounded(std::string_view pattern) {
  const unsigned long length = std::max<unsigned long>(pattern.size(), 1);
  unsigned long product = 1;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;
    } else if (in_class) {
      if (c == ']') in_class = false;
    } else if (c == '[') {
      in_class = true;
    } else if (c == '{') {
      unsigned long largest = 0;
      unsigned long value = 0;
      for (++i; i < pattern.size() && pattern[i] != '}'; ++i) {
        if (IsDigit(pattern[i])) {
          value = value * 10 + static_cast<unsigned long>(pattern[i] - '0');
          if (value > kMaxRegexExpandedSize) return false;  // and no overflow
        } else {
          value = 0;
        }
        largest = std::max(largest, value);
      }
      product *= std::max(largest, 1UL);
      if (product * length > kMaxRegexExpandedSize) return false;
    }
  }
  return true;
}

std::regex_constants::syntax_option_type RegexFlags() {
  auto flags = std::regex::ECMAScript | std::regex::icase | std::regex::nosubs;
#if defined(__GLIBCXX__)
  // libstdc++'s default matcher backtracks recursively: `((a*)*)*c` takes
  // exponential time and a long value overflows the stack. This extension
  // selects its breadth-first matcher, linear in the value's length.
  flags |= std::regex_constants::__polynomial;
#endif
  return flags;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : tokens_(Tokenize(text)) {}

  Result<Node> ParseAll() {
    ROSTER_ASSIGN_OR_RETURN(Node node, ParseOr());
    const Token& t = Peek();
    if (t.kind == TokenKind::kEnd) return node;
    if (t.kind == TokenKind::kError) return Fail(t, t.text);
    if (t.kind == TokenKind::kRParen) return Fail(t, "unbalanced ')'");
    return Fail(t, "expected 'and', 'or' or the end of the expression");
  }

 private:
  const Token& Peek() const { return tokens_[next_]; }
  // Never moves past the kEnd or kError token that closes the list.
  const Token& Take() {
    const Token& t = tokens_[next_];
    if (next_ + 1 < tokens_.size()) ++next_;
    return t;
  }

  static Error Fail(const Token& at, std::string_view what) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "filter: column " + std::to_string(at.column) + ": " + std::string(what));
  }

  bool PeekKeyword(std::string_view keyword) const {
    return Peek().kind == TokenKind::kWord && AsciiLower(Peek().text) == keyword;
  }

  Result<Node> ParseOr() { return ParseList("or", Node::Kind::kOr); }

  Result<Node> ParseAnd() { return ParseList("and", Node::Kind::kAnd); }

  // operand (keyword operand)*, flattened into one node.
  Result<Node> ParseList(std::string_view keyword, Node::Kind kind) {
    auto operand = [&]() { return kind == Node::Kind::kOr ? ParseAnd() : ParseUnary(); };
    ROSTER_ASSIGN_OR_RETURN(Node first, operand());
    if (!PeekKeyword(keyword)) return first;
    Node list;
    list.kind = kind;
    list.children.push_back(std::move(first));
    while (PeekKeyword(keyword)) {
      Take();
      ROSTER_ASSIGN_OR_RETURN(Node next, operand());
      list.children.push_back(std::move(next));
    }
    return list;
  }

  Status Enter(const Token& at) {
    if (++depth_ > kMaxDepth) {
      return Fail(at, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    return {};
  }

  Result<Node> ParseUnary() {
    if (!PeekKeyword("not")) return ParsePrimary();
    ROSTER_RETURN_IF_ERROR(Enter(Take()));
    ROSTER_ASSIGN_OR_RETURN(Node operand, ParseUnary());
    --depth_;
    Node node;
    node.kind = Node::Kind::kNot;
    node.children.push_back(std::move(operand));
    return node;
  }

  Result<Node> ParsePrimary() {
    const Token& t = Take();
    switch (t.kind) {
      case TokenKind::kEnd:
        return Fail(t, "unexpected end of expression");
      case TokenKind::kError:
        return Fail(t, t.text);
      case TokenKind::kLParen: {
        ROSTER_RETURN_IF_ERROR(Enter(t));
        ROSTER_ASSIGN_OR_RETURN(Node inner, ParseOr());
        --depth_;
        const Token& close = Take();
        if (close.kind == TokenKind::kError) return Fail(close, close.text);
        if (close.kind != TokenKind::kRParen) {
          return Fail(close, "expected ')' to close the '(' at column " + std::to_string(t.column));
        }
        return inner;
      }
      case TokenKind::kRParen:
        return Fail(t, "unexpected ')'");
      case TokenKind::kWord:
        break;
      default:
        return Fail(t, "expected a field name");
    }
    const std::string lower = AsciiLower(t.text);
    if (lower == "has") return ParseHas(t);
    if (lower == "bit") return ParseBit(t);
    if (IsKeyword(lower)) return Fail(t, "expected a field name, not the keyword '" + lower + "'");
    return ParseComparison(t);
  }

  // "(" and a field name after has or bit (`name`).
  Result<std::string> ParseCallField(std::string_view name) {
    const std::string quoted = "'" + std::string(name) + "'";
    if (Peek().kind != TokenKind::kLParen) return Fail(Peek(), "expected '(' after " + quoted);
    Take();
    const Token& field = Take();
    if (field.kind == TokenKind::kError) return Fail(field, field.text);
    if (field.kind != TokenKind::kWord || IsKeyword(AsciiLower(field.text))) {
      return Fail(field, "expected a field name after '" + std::string(name) + "('");
    }
    return field.text;
  }

  // The ")" that closes the call `call` (has or bit, `name`) opened.
  Status ParseCallClose(const Token& call, std::string_view name) {
    const Token& close = Take();
    if (close.kind == TokenKind::kError) return Fail(close, close.text);
    if (close.kind != TokenKind::kRParen) {
      return Fail(close, "expected ')' to close the '(' after '" + std::string(name) +
                             "' at column " + std::to_string(call.column));
    }
    return {};
  }

  Result<Node> ParseHas(const Token& has) {
    Node node;
    node.kind = Node::Kind::kHas;
    ROSTER_ASSIGN_OR_RETURN(node.field, ParseCallField("has"));
    ROSTER_RETURN_IF_ERROR(ParseCallClose(has, "has"));
    return node;
  }

  // bit(field, mask): Active Directory's flag fields (userAccountControl).
  Result<Node> ParseBit(const Token& bit) {
    Node node;
    node.kind = Node::Kind::kBit;
    ROSTER_ASSIGN_OR_RETURN(node.field, ParseCallField("bit"));
    const Token& comma = Take();
    if (comma.kind == TokenKind::kError) return Fail(comma, comma.text);
    if (comma.kind != TokenKind::kComma) return Fail(comma, "expected ',' after the field name");
    const Token& mask = Take();
    if (mask.kind == TokenKind::kError) return Fail(mask, mask.text);
    uint64_t value = 0;
    bool valid = mask.kind == TokenKind::kNumber && !mask.text.empty() && mask.text.size() <= 19;
    for (char c : mask.text) {
      if (!IsDigit(c)) valid = false;
      value = value * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!valid || value == 0) return Fail(mask, "expected a positive whole number as the bit mask");
    ROSTER_RETURN_IF_ERROR(ParseCallClose(bit, "bit"));
    node.mask = value;
    return node;
  }

  // A literal: a quoted string or a bare number.
  Result<std::string> ParseLiteral(std::string_view what) {
    const Token& t = Take();
    if (t.kind == TokenKind::kError) return Fail(t, t.text);
    if (t.kind != TokenKind::kString && t.kind != TokenKind::kNumber) return Fail(t, what);
    return t.text;
  }

  Result<Node> ParseComparison(const Token& field) {
    Node node;
    node.kind = Node::Kind::kCompare;
    node.field = field.text;
    const Token& op = Take();
    std::string op_name;
    if (op.kind == TokenKind::kOperator) {
      op_name = op.text;
      if (op.text == "==" || op.text == "=") {
        node.op = Node::Op::kEq;
      } else if (op.text == "!=") {
        node.op = Node::Op::kNe;
      } else if (op.text == "=~") {
        node.op = Node::Op::kMatches;
      } else if (op.text == "!~") {
        node.op = Node::Op::kNotMatches;
      } else {
        return Fail(op, "unknown operator '" + op.text + "'");
      }
    } else if (op.kind == TokenKind::kWord) {
      op_name = AsciiLower(op.text);
      if (op_name == "contains") {
        node.op = Node::Op::kContains;
      } else if (op_name == "startswith") {
        node.op = Node::Op::kStartsWith;
      } else if (op_name == "endswith") {
        node.op = Node::Op::kEndsWith;
      } else if (op_name == "in") {
        node.op = Node::Op::kIn;
        ROSTER_RETURN_IF_ERROR(ParseInList(&node));
        return node;
      } else {
        return Fail(op, "unknown operator '" + op.text + "'");
      }
    } else if (op.kind == TokenKind::kError) {
      return Fail(op, op.text);
    } else {
      return Fail(op, "expected an operator after '" + field.text + "'");
    }

    const Token& literal_token = Peek();
    ROSTER_ASSIGN_OR_RETURN(std::string literal,
                            ParseLiteral("expected a quoted string after '" + op_name + "'"));
    if (node.op == Node::Op::kMatches || node.op == Node::Op::kNotMatches) {
      ROSTER_RETURN_IF_ERROR(CompileRegex(literal_token, literal, &node.regex));
    }
    node.literals.push_back(AsciiLower(literal));
    return node;
  }

  Status ParseInList(Node* node) {
    if (Peek().kind != TokenKind::kLParen) return Fail(Peek(), "expected '(' after 'in'");
    Take();
    for (;;) {
      ROSTER_ASSIGN_OR_RETURN(std::string literal,
                              ParseLiteral("expected a quoted string in the 'in' list"));
      node->literals.push_back(AsciiLower(literal));
      const Token& t = Take();
      if (t.kind == TokenKind::kRParen) return {};
      if (t.kind == TokenKind::kError) return Fail(t, t.text);
      if (t.kind != TokenKind::kComma) return Fail(t, "expected ',' or ')' in the 'in' list");
    }
  }

  static Status CompileRegex(const Token& at, const std::string& pattern, std::regex* out) {
    if (pattern.size() > kMaxRegexBytes) {
      return Fail(at,
                  "regular expression longer than " + std::to_string(kMaxRegexBytes) + " bytes");
    }
    if (!ExpandedSizeIsBounded(pattern)) {
      return Fail(at, "regular expression too large once its '{}' counts are expanded");
    }
    try {
      // Compiled alone first, so that a pattern such as `a)|(b` is reported
      // rather than changing the meaning of the wrapper below.
      std::regex check(pattern, RegexFlags());
      // A whole-value match with `[\s\S]*` on both sides finds the pattern
      // anywhere in one linear pass, where regex_search would restart the
      // matcher at every position (quadratic).
      *out = std::regex("[\\s\\S]*(?:" + pattern + ")[\\s\\S]*", RegexFlags());
    } catch (const std::regex_error& e) {
      return Fail(at, std::string("invalid regular expression: ") + RegexErrorText(e.code()));
    } catch (const std::exception&) {
      return Fail(at, "invalid regular expression: too large");
    }
    return {};
  }

  std::vector<Token> tokens_;
  size_t next_ = 0;
  int depth_ = 0;
};

bool RegexMatches(const std::regex& regex, const std::string& value) {
  try {
    return std::regex_match(value, regex);
  } catch (const std::exception&) {
    // Only resource exhaustion can land here; a value we cannot examine does not match.
    return false;
  }
}

// Whether one (lower-cased) value satisfies the positive form of the operator.
bool ValueMatches(const Node& node, const std::string& value) {
  switch (node.op) {
    case Node::Op::kEq:
    case Node::Op::kNe:
    case Node::Op::kIn:
      for (const std::string& literal : node.literals) {
        if (value == literal) return true;
      }
      return false;
    case Node::Op::kContains:
      return value.find(node.literals[0]) != std::string::npos;
    case Node::Op::kStartsWith:
      return value.starts_with(node.literals[0]);
    case Node::Op::kEndsWith:
      return value.ends_with(node.literals[0]);
    case Node::Op::kMatches:
    case Node::Op::kNotMatches:
      return RegexMatches(node.regex, value);
  }
  return false;
}

bool Evaluate(const Node& node, const FieldLookup& lookup) {
  switch (node.kind) {
    case Node::Kind::kAnd:
      for (const Node& child : node.children) {
        if (!Evaluate(child, lookup)) return false;
      }
      return true;
    case Node::Kind::kOr:
      for (const Node& child : node.children) {
        if (Evaluate(child, lookup)) return true;
      }
      return false;
    case Node::Kind::kNot:
      return !Evaluate(node.children[0], lookup);
    case Node::Kind::kHas:
      for (const std::string& value : lookup(node.field)) {
        if (!value.empty()) return true;
      }
      return false;
    case Node::Kind::kBit:
      // A value that is not a whole number has no bits set.
      for (const std::string& value : lookup(node.field)) {
        std::string_view v = text::Trim(value, " ");
        bool negative = !v.empty() && v.front() == '-';
        if (negative) v.remove_prefix(1);
        if (v.empty() || v.size() > 20) continue;
        uint64_t n = 0;
        bool digits = true;
        for (char c : v) {
          if (!IsDigit(c)) digits = false;
          n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        if (!digits) continue;
        // AD writes large flag values as signed 32-bit integers.
        if (negative) n = static_cast<uint64_t>(-static_cast<int64_t>(n));
        if ((n & node.mask) != 0) return true;
      }
      return false;
    case Node::Kind::kCompare: {
      // The regex carries icase itself, so values go to it unchanged.
      const bool is_regex = node.op == Node::Op::kMatches || node.op == Node::Op::kNotMatches;
      bool any = false;
      for (const std::string& value : lookup(node.field)) {
        if (ValueMatches(node, is_regex ? value : AsciiLower(value))) {
          any = true;
          break;
        }
      }
      const bool negative = node.op == Node::Op::kNe || node.op == Node::Op::kNotMatches;
      return negative ? !any : any;
    }
  }
  return false;
}

void CollectFields(const Node& node, std::set<std::string>* fields) {
  if (!node.field.empty()) fields->insert(node.field);
  for (const Node& child : node.children) CollectFields(child, fields);
}

}  // namespace

Result<Filter> Filter::Parse(std::string_view expression) {
  Filter filter;
  filter.text_ = std::string(expression);
  if (text::Trim(expression, kFilterSpace).empty()) return filter;
  Parser parser(expression);
  ROSTER_ASSIGN_OR_RETURN(Node root, parser.ParseAll());
  filter.root_ = std::make_shared<const Node>(std::move(root));
  return filter;
}

Filter::Filter() = default;
Filter::~Filter() = default;
Filter::Filter(Filter&&) noexcept = default;
Filter& Filter::operator=(Filter&&) noexcept = default;
Filter::Filter(const Filter&) = default;
Filter& Filter::operator=(const Filter&) = default;

bool Filter::Matches(const FieldLookup& lookup) const {
  return root_ == nullptr || Evaluate(*root_, lookup);
}

std::vector<std::string> Filter::Fields() const {
  std::set<std::string> fields;
  if (root_ != nullptr) CollectFields(*root_, &fields);
  return {fields.begin(), fields.end()};
}

}  // namespace roster
