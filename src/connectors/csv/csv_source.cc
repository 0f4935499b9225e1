#include "connectors/csv/csv_source.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <fstream>
#include <sstream>
#include <system_error>
#include <unordered_map>

#include "core/hash.h"
#include "core/personal.h"
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

int64_t Nanos(const timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

// What stat(2) says that changes whenever the content may have: a rewrite
// moves the times, a file renamed over it has another inode.
std::string Stamp(const struct stat& st) {
  return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino) + " " +
         std::to_string(st.st_size) + " " + std::to_string(Nanos(st.st_mtim)) + " " +
         std::to_string(Nanos(st.st_ctim));
}

// False while the file's newest stamp is younger than `min_age` (or in the
// future): a second write within the same clock tick would not move it.
bool Settled(const struct stat& st, std::chrono::nanoseconds min_age) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t newest = std::max(Nanos(st.st_mtim), Nanos(st.st_ctim));
  return Nanos(now) - newest >= min_age.count();
}

class CsvSource final : public Source {
 public:
  explicit CsvSource(CsvSourceOptions options) : opt_(std::move(options)) {}

  Result<std::string> Version() override {
    struct stat st {};
    if (stat(opt_.path.c_str(), &st) != 0) {
      return MakeError(ErrorKind::kNotFound,
                       "cannot stat " + opt_.path + ": " +
                           std::error_code(errno, std::generic_category()).message());
    }
    if (!Settled(st, opt_.version_min_age)) return std::string();
    // The options shape the records as much as the file does.
    std::string material =
        "csv\n" + opt_.path + "\n" + opt_.key_column + "\n" + std::string(1, opt_.delimiter) + "\n";
    for (const auto& [field, column] : opt_.columns) material += field + "=" + column + "\n";
    return HashHex(material + Stamp(st));
  }

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
        return MakeError(ErrorKind::kInvalidData, opt_.path + ": line " + std::to_string(row.line) +
                                                      ": key \"" + Personal(r.key, r.key) +
                                                      "\" already used on line " +
                                                      std::to_string(it->second));
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
