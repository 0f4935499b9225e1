// RFC 4180 reader. One pass over the bytes with an explicit state machine, so
// a hostile file costs time linear in its size and no recursion.
#include "formats/csv.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/text.h"

namespace roster {
namespace {

// Beyond this a field is certainly not contact data, and stopping early keeps
// a file with one runaway quote from being copied into memory whole.
constexpr size_t kMaxFieldBytes = 1024 * 1024;

Error LineError(size_t line, std::string_view what) {
  return MakeError(ErrorKind::kInvalidData,
                   "line " + std::to_string(line) + ": " + std::string(what));
}

bool IsLineBreak(char c) { return c == '\n' || c == '\r'; }

// Length of the well-formed UTF-8 sequence starting at text[pos] (whose first
// byte is >= 0x80), or 0 if it is malformed: overlong forms, surrogates and
// code points above U+10FFFF are rejected, as RFC 3629 requires.
size_t Utf8SequenceLength(std::string_view text, size_t pos) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char b0 = byte(pos);
  size_t length = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (text.size() - pos < length) return 0;
  const unsigned char b1 = byte(pos + 1);
  if (b1 < lo || b1 > hi) return 0;
  for (size_t i = 2; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
  }
  return length;
}

// Reads one record at a time. `line_` counts physical lines: LF, CRLF and a
// lone CR each end one, inside quotes or not, so error messages match what an
// editor shows.
class CsvReader {
 public:
  CsvReader(std::string_view text, char delimiter) : text_(text), delimiter_(delimiter) {
    if (text_.starts_with("\xEF\xBB\xBF")) pos_ = 3;
  }

  // Reads the next record into *row; false at the end of the input.
  Result<bool> Next(CsvRow* row) {
    if (!SkipBlankLines()) return false;
    row->line = line_;
    row->fields.clear();
    for (;;) {
      std::string field;
      ROSTER_RETURN_IF_ERROR(ReadField(&field));
      row->fields.push_back(std::move(field));
      if (pos_ == text_.size()) return true;
      const char c = text_[pos_];
      if (c == delimiter_) {
        ++pos_;
        continue;
      }
      // ReadField stops only at a delimiter, a line break or the end.
      ConsumeLineBreak();
      return true;
    }
  }

 private:
  // Skips empty lines and lines of nothing but spaces and tabs (which no
  // export writes on purpose); false when only such lines remain.
  bool SkipBlankLines() {
    for (;;) {
      size_t p = pos_;
      while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t') && text_[p] != delimiter_) {
        ++p;
      }
      if (p == text_.size()) {
        pos_ = p;
        return false;
      }
      if (!IsLineBreak(text_[p])) return true;
      pos_ = p;
      ConsumeLineBreak();
    }
  }

  // At a CR or LF: steps over it (CRLF as one) and counts the line.
  void ConsumeLineBreak() {
    if (text_[pos_] == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++line_;
  }

  // Appends the character at pos_ to *field, checking encoding and size. A run
  // of plain ASCII that cannot end the field is taken in one step, since
  // that is nearly all of a real file.
  Status Append(std::string* field, size_t field_line, bool quoted) {
    size_t end = pos_;
    while (end < text_.size()) {
      const char d = text_[end];
      if (static_cast<unsigned char>(d) >= 0x80 || d == '\0' || IsLineBreak(d) ||
          (quoted ? d == '"' : d == delimiter_)) {
        break;
      }
      ++end;
    }
    if (end > pos_) {
      if (field->size() + (end - pos_) > kMaxFieldBytes) {
        return LineError(field_line,
                         "field longer than " + std::to_string(kMaxFieldBytes) + " bytes");
      }
      field->append(text_.substr(pos_, end - pos_));
      pos_ = end;
      return {};
    }
    const char c = text_[pos_];
    if (c == '\0') return LineError(line_, "NUL byte");
    size_t length = 1;
    if (static_cast<unsigned char>(c) >= 0x80) {
      length = Utf8SequenceLength(text_, pos_);
      if (length == 0) return LineError(line_, "invalid UTF-8");
    }
    if (field->size() + length > kMaxFieldBytes) {
      return LineError(field_line,
                       "field longer than " + std::to_string(kMaxFieldBytes) + " bytes");
    }
    field->append(text_.substr(pos_, length));
    pos_ += length;
    return {};
  }

  // Reads one field and leaves pos_ at the delimiter, line break or end after it.
  Status ReadField(std::string* field) {
    const size_t field_line = line_;
    if (pos_ < text_.size() && text_[pos_] == '"') {
      ++pos_;
      for (;;) {
        if (pos_ == text_.size()) return LineError(field_line, "unterminated quoted field");
        const char c = text_[pos_];
        if (c == '"') {
          if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {
            ++pos_;  // the first of a doubled quote; Append takes the second
          } else {
            ++pos_;
            break;
          }
        } else if (IsLineBreak(c)) {
          // Kept verbatim (RFC 4180), but counted so later errors name the right line.
          const size_t start = pos_;
          ConsumeLineBreak();
          if (field->size() + (pos_ - start) > kMaxFieldBytes) {
            return LineError(field_line,
                             "field longer than " + std::to_string(kMaxFieldBytes) + " bytes");
          }
          field->append(text_.substr(start, pos_ - start));
          continue;
        }
        ROSTER_RETURN_IF_ERROR(Append(field, field_line, /*quoted=*/true));
      }
      if (pos_ < text_.size() && text_[pos_] != delimiter_ && !IsLineBreak(text_[pos_])) {
        return LineError(line_, "unexpected character after closing quote");
      }
      return {};
    }
    // Unquoted: a quote here is kept as an ordinary character, as most readers do.
    while (pos_ < text_.size() && text_[pos_] != delimiter_ && !IsLineBreak(text_[pos_])) {
      ROSTER_RETURN_IF_ERROR(Append(field, field_line, /*quoted=*/false));
    }
    return {};
  }

  std::string_view text_;
  char delimiter_;
  size_t pos_ = 0;
  size_t line_ = 1;
};

}  // namespace

int CsvTable::Column(std::string_view name) const {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return static_cast<int>(i);
  }
  return -1;
}

Result<CsvTable> ParseCsv(std::string_view text, char delimiter) {
  // These would make the grammar ambiguous; non-ASCII would split a UTF-8 sequence.
  if (delimiter == '"' || delimiter == '\0' || IsLineBreak(delimiter) ||
      static_cast<unsigned char>(delimiter) >= 0x80) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "CSV delimiter must be an ASCII character other "
                     "than a quote, a line break or NUL");
  }
  CsvReader reader(text, delimiter);
  CsvTable table;
  CsvRow header_row;
  ROSTER_ASSIGN_OR_RETURN(bool has_header, reader.Next(&header_row));
  if (!has_header) return LineError(1, "no header row");

  std::unordered_map<std::string, size_t> seen;  // name -> 1-based column
  for (size_t i = 0; i < header_row.fields.size(); ++i) {
    std::string name(text::Trim(header_row.fields[i]));
    // An unnamed column could never be mapped, and is usually a stray trailing
    // delimiter that would shift every row's count.
    if (name.empty()) {
      return LineError(header_row.line, "header column " + std::to_string(i + 1) + " has no name");
    }
    auto [it, inserted] = seen.emplace(name, i + 1);
    if (!inserted) {
      return LineError(header_row.line, "duplicate header name '" + name + "' (columns " +
                                            std::to_string(it->second) + " and " +
                                            std::to_string(i + 1) + ")");
    }
    table.header.push_back(std::move(name));
  }

  CsvRow row;
  for (;;) {
    ROSTER_ASSIGN_OR_RETURN(bool more, reader.Next(&row));
    if (!more) break;
    if (row.fields.size() != table.header.size()) {
      return LineError(row.line, std::to_string(row.fields.size()) +
                                     " fields where the header has " +
                                     std::to_string(table.header.size()));
    }
    table.rows.push_back(std::move(row));
    row = CsvRow{};
  }
  return table;
}

}  // namespace roster
