#include "connectors/vcarddir/vcarddir_source.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "formats/vcard.h"

namespace roster {
namespace {

namespace fs = std::filesystem;

class VCardDirSource final : public Source {
 public:
  explicit VCardDirSource(std::string dir) : dir_(std::move(dir)) {}

  Result<std::vector<SourceRecord>> ReadAll() override {
    std::error_code ec;
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file() && it->path().extension() == ".vcf") files.push_back(it->path());
    }
    if (ec)
      return MakeError(ErrorKind::kNotFound, "cannot read folder " + dir_ + ": " + ec.message());
    std::sort(files.begin(), files.end());
    std::vector<SourceRecord> records;
    std::map<std::string, std::string> file_of_key;
    for (const fs::path& file : files) {
      std::ifstream in(file, std::ios::binary);
      std::string text(kMaxVCardBytes + 1, '\0');
      in.read(text.data(), static_cast<std::streamsize>(text.size()));
      text.resize(static_cast<size_t>(in.gcount()));
      if (text.size() > kMaxVCardBytes) {
        return MakeError(ErrorKind::kInvalidData, file.string() + ": larger than " +
                                                      std::to_string(kMaxVCardBytes) + " bytes");
      }
      auto cards = ParseVCards(text);
      if (!cards.ok())
        return MakeError(ErrorKind::kInvalidData, file.string() + ": " + cards.error().message);
      for (ParsedVCard& card : *cards) {
        SourceRecord r;
        r.key = card.uid.empty() ? file.stem().string() : card.uid;
        auto [it, fresh] = file_of_key.emplace(r.key, file.filename().string());
        if (!fresh) {
          return MakeError(ErrorKind::kInvalidData,
                           file.string() + ": UID \"" + r.key + "\" is also used in " + it->second);
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
};

}  // namespace

std::unique_ptr<Source> NewVCardDirSource(std::string directory) {
  return std::make_unique<VCardDirSource>(std::move(directory));
}

}  // namespace roster
