// RFC 4180 CSV reading: quoted fields, embedded separators and line breaks,
// CRLF or LF, an optional UTF-8 byte order mark, a header row.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace roster {

struct CsvRow {
  size_t line = 0;  // 1-based line where the row starts
  std::vector<std::string> fields;
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<CsvRow> rows;

  // Index of a header column, or -1.
  int Column(std::string_view name) const;
};

// Parses the whole text. The first row is the header; every other row must
// have as many fields as the header. Blank lines are skipped. Errors name the
// line: "line 7: 5 fields where the header has 8".
Result<CsvTable> ParseCsv(std::string_view text, char delimiter = ',');

}  // namespace roster
