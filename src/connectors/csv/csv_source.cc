#include "connectors/csv/csv_source.h"

#include <fstream>
#include <sstream>
#include <unordered_map>

#include "formats/csv.h"

namespace roster {
namespace {

// A source file larger than this is refused rather than read into memory.
constexpr std::streamoff kMaxCsvBytes = 512ll << 20;

Result<std::string> ReadFile(const std::string& path, std::streamoff limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorKind::kNotFound, "cannot open " + path);
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size > limit) {
    return MakeError(ErrorKind::kInvalidData,
                     path + " is larger than " + std::to_string(limit) + " bytes");
  }
  in.seekg(0);
  std::string data(static_cast<size_t>(size), '\0');
  in.read(data.data(), size);
  if (!in) return MakeError(ErrorKind::kUnavailable, "cannot read " + path);
  return data;
}

class CsvSource final : public Source {
 public:
  explicit CsvSource(CsvSourceOptions options) : opt_(std::move(options)) {}

  Result<std::vector<SourceRecord>> ReadAll() override {
    ROSTER_ASSIGN_OR_RETURN(std::string text, ReadFile(opt_.path, kMaxCsvBytes));
    auto table = ParseCsv(text, opt_.delimiter);
    if (!table.ok())
      return MakeError(ErrorKind::kInvalidData, opt_.path + ": " + table.error().message);
    int key_col = table->Column(opt_.key_column);
    if (key_col < 0) {
      return MakeError(ErrorKind::kInvalidData, opt_.path + ": the key column \"" +
                                                    opt_.key_column + "\" is not in the header");
    }
    std::vector<std::pair<std::string, int>> mapped;
    for (const auto& [field, column] : opt_.columns) {
      int c = table->Column(column);
      if (c < 0) {
        return MakeError(ErrorKind::kInvalidData, opt_.path + ": column \"" + column +
                                                      "\" (mapped to " + field +
                                                      ") is not in the header");
      }
      mapped.emplace_back(field, c);
    }
    std::vector<SourceRecord> records;
    records.reserve(table->rows.size());
    std::unordered_map<std::string, size_t> line_of_key;
    for (const CsvRow& row : table->rows) {
      SourceRecord r;
      r.key = row.fields[key_col];
      if (r.key.empty()) {
        return MakeError(ErrorKind::kInvalidData, opt_.path + ": line " + std::to_string(row.line) +
                                                      ": the key column \"" + opt_.key_column +
                                                      "\" is empty");
      }
      auto [it, fresh] = line_of_key.emplace(r.key, row.line);
      if (!fresh) {
        return MakeError(ErrorKind::kInvalidData,
                         opt_.path + ": line " + std::to_string(row.line) + ": key \"" + r.key +
                             "\" already used on line " + std::to_string(it->second));
      }
      for (const auto& [field, c] : mapped) SetContactField(r.contact, field, row.fields[c]);
      for (size_t c = 0; c < table->header.size(); ++c) {
        r.attributes[table->header[c]].push_back(row.fields[c]);
      }
      records.push_back(std::move(r));
    }
    return records;
  }

 private:
  CsvSourceOptions opt_;
};

}  // namespace

std::unique_ptr<Source> NewCsvSource(CsvSourceOptions options) {
  return std::make_unique<CsvSource>(std::move(options));
}

}  // namespace roster
