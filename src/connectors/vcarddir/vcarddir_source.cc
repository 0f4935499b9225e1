#include "connectors/vcarddir/vcarddir_source.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>

#include "core/hash.h"
#include "core/personal.h"
#include "formats/vcard.h"

namespace roster {
namespace {

namespace fs = std::filesystem;

int64_t Nanos(const timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

// What stat(2) says that changes whenever the content may have: a rewrite
// moves the times, a file renamed in has another inode, an added or removed
// file moves the folder's times. Fails when `path` cannot be stat'ed.
Result<struct stat> StatOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return MakeError(
        ErrorKind::kNotFound,
        "cannot stat " + path + ": " + std::error_code(errno, std::generic_category()).message());
  }
  return st;
}

std::string Stamp(const struct stat& st) {
  return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino) + " " +
         std::to_string(st.st_size) + " " + std::to_string(Nanos(st.st_mtim)) + " " +
         std::to_string(Nanos(st.st_ctim));
}

int64_t Newest(const struct stat& st) { return std::max(Nanos(st.st_mtim), Nanos(st.st_ctim)); }

int64_t NowNanos() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return Nanos(now);
}

// The files ReadAll reads, sorted: regular files (links followed) named *.vcf.
Result<std::vector<fs::path>> CardFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file() && it->path().extension() == ".vcf") files.push_back(it->path());
  }
  if (ec) return MakeError(ErrorKind::kNotFound, "cannot read folder " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

Result<std::string> ReadCardFile(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  // An unreadable file must fail the read: its people would look like departures.
  if (!in) return MakeError(ErrorKind::kUnavailable, "cannot open " + file.string());
  std::string text(kMaxVCardBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return MakeError(ErrorKind::kUnavailable, "cannot read " + file.string());
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxVCardBytes) {
    return MakeError(ErrorKind::kInvalidData,
                     file.string() + ": larger than " + std::to_string(kMaxVCardBytes) + " bytes");
  }
  return text;
}

class VCardDirSource final : public Source {
 public:
  VCardDirSource(std::string dir, std::chrono::nanoseconds min_age)
      : dir_(std::move(dir)), min_age_(min_age) {}

  Result<std::string> Version() override {
    // The folder first: a file added after its stat moves its times again.
    ROSTER_ASSIGN_OR_RETURN(struct stat folder, StatOf(dir_));
    ROSTER_ASSIGN_OR_RETURN(std::vector<fs::path> files, CardFiles(dir_));
    std::string material = "vcard-dir\n" + dir_ + "\n" + Stamp(folder) + "\n";
    int64_t newest = Newest(folder);
    for (const fs::path& file : files) {
      ROSTER_ASSIGN_OR_RETURN(struct stat st, StatOf(file.string()));
      material += file.filename().string() + " " + Stamp(st) + "\n";
      newest = std::max(newest, Newest(st));
    }
    if (NowNanos() - newest < min_age_.count()) return std::string();
    return HashHex(material);
  }

  Result<std::vector<SourceRecord>> ReadAll() override {
    ROSTER_ASSIGN_OR_RETURN(std::vector<fs::path> files, CardFiles(dir_));
    std::vector<SourceRecord> records;
    std::map<std::string, std::string> file_of_key;
    for (const fs::path& file : files) {
      ROSTER_ASSIGN_OR_RETURN(std::string text, ReadCardFile(file));
      auto cards = ParseVCards(text);
      if (!cards.ok())
        return MakeError(ErrorKind::kInvalidData, file.string() + ": " + cards.error().message);
      for (ParsedVCard& card : *cards) {
        SourceRecord r;
        r.key = card.uid.empty() ? file.stem().string() : card.uid;
        auto [it, fresh] = file_of_key.emplace(r.key, file.filename().string());
        if (!fresh) {
          return MakeError(ErrorKind::kInvalidData, file.string() + ": UID \"" +
                                                        Personal(r.key, r.key) +
                                                        "\" is also used in " + it->second);
        }
        r.contact = std::move(card.contact);
        for (const VCardProperty& p : card.other) r.attributes[p.name].push_back(p.value);
        records.push_back(std::move(r));
      }
    }
    return records;
  }

 private:
  std::string dir_;
  std::chrono::nanoseconds min_age_;
};

}  // namespace

std::unique_ptr<Source> NewVCardDirSource(std::string directory,
                                          std::chrono::nanoseconds version_min_age) {
  return std::make_unique<VCardDirSource>(std::move(directory), version_min_age);
}

}  // namespace roster
