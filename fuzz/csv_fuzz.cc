// libFuzzer target for the CSV reader: any input must parse or fail cleanly,
// and a parsed table must keep its promises (rectangular, named columns).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "formats/csv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first byte picks the delimiter (';', tab or '|', else ','), so files
  // in other dialects are explored too.
  if (size == 0) return 0;
  const char first = static_cast<char>(data[0]);
  const char delimiter = (first == ';' || first == '\t' || first == '|') ? first : ',';
  ++data;
  --size;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto table = roster::ParseCsv(text, delimiter);
  if (!table.ok()) {
    if (table.error().message.empty()) std::abort();
    return 0;
  }
  if (table->header.empty()) std::abort();
  for (size_t i = 0; i < table->header.size(); ++i) {
    if (table->header[i].empty() || table->Column(table->header[i]) != static_cast<int>(i)) {
      std::abort();
    }
  }
  size_t previous_line = 0;
  for (const roster::CsvRow& row : table->rows) {
    if (row.fields.size() != table->header.size() || row.line <= previous_line) std::abort();
    previous_line = row.line;
  }
  return 0;
}
