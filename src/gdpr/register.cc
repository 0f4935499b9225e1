#include "gdpr/register.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/failpoint.h"
#include "core/text.h"
#include "crypto/seal.h"

namespace roster::gdpr {
namespace {

using nlohmann::json;

std::string Header(int64_t generation) {
  return R"({"roster_erasure_register":1,"generation":)" + std::to_string(generation) + "}";
}

Error Bad(const std::string& path, size_t line, const std::string& what) {
  return MakeError(ErrorKind::kInvalidData,
                   "erasure register " + path + ", line " + std::to_string(line) + ": " + what +
                       "; it was changed outside roster or cut short. Restore it from the "
                       "backup kept with the configuration and the key; nothing was done");
}

bool IsHash(const json& v) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  if (s.size() != crypto::kBlindIndexChars) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Error Io(const std::string& what, const std::string& path) {
  return MakeError(ErrorKind::kInvalidArgument,
                   what + " " + path + ": " + std::string(std::strerror(errno)));
}

}  // namespace

std::string NormalizeAddress(std::string_view address) {
  return text::AsciiLower(text::Trim(address));
}

bool IsAddress(std::string_view address) {
  address = text::Trim(address);
  size_t at = address.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) return false;
  if (address.find('@', at + 1) != std::string_view::npos) return false;
  for (unsigned char c : address) {
    if (c <= ' ' || c == 0x7f) return false;
  }
  return true;
}

std::string ErasureRegister::SubjectHash(std::string_view address) const {
  return crypto::BlindIndex(key_, "erasure-subject", NormalizeAddress(address));
}

std::string ErasureRegister::IdHash(std::string_view id) const {
  return crypto::BlindIndex(key_, "erasure-id", id);
}

std::string ErasureRegister::Text() const {
  std::string out = Header(generation_);
  out += "\n";
  for (const Entry& e : entries_) {
    json ids = json::array();
    for (const std::string& id : e.ids) ids.push_back(id);
    out += json{{"subject", e.subject}, {"ids", std::move(ids)}, {"erased_at", e.erased_at}}.dump();
    out += "\n";
  }
  return out;
}

void ErasureRegister::Index() {
  hashes_.clear();
  for (const Entry& e : entries_) {
    hashes_.insert(e.subject);
    hashes_.insert(e.ids.begin(), e.ids.end());
  }
}

Result<ErasureRegister> ErasureRegister::Load(const std::string& path, const crypto::Key& key) {
  ErasureRegister reg(path, key);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return reg;
    return Io("cannot read erasure register", path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in || !S_ISREG(st.st_mode)) return Io("cannot read erasure register", path);
  reg.exists_ = true;
  std::string line, text, mac;
  size_t n = 0;
  bool ended = false;
  while (std::getline(in, line)) {
    ++n;
    if (ended) return Bad(path, n, "a line after the closing hash");
    if (n == 1) {
      json head = json::parse(line, nullptr, false);
      if (!head.is_object() || head.size() != 2 || head.value("roster_erasure_register", 0) != 1 ||
          !head.contains("generation") || !head["generation"].is_number_unsigned()) {
        return Bad(path, n, "not an erasure register");
      }
      reg.generation_ = head["generation"].get<int64_t>();
      if (line != Header(reg.generation_)) return Bad(path, n, "not an erasure register");
      text += line + "\n";
      continue;
    }
    json v = json::parse(line, nullptr, false);
    if (!v.is_object()) return Bad(path, n, "not a JSON object");
    if (v.size() == 1 && v.contains("mac")) {
      if (!IsHash(v["mac"])) return Bad(path, n, "a closing hash that is not 32 hex digits");
      mac = v["mac"].get<std::string>();
      ended = true;
      continue;
    }
    Entry e;
    if (!IsHash(v.value("subject", json()))) return Bad(path, n, "no subject hash");
    e.subject = v["subject"].get<std::string>();
    const json ids = v.value("ids", json::array());
    if (!ids.is_array()) return Bad(path, n, "\"ids\" is not a list");
    for (const json& id : ids) {
      if (!IsHash(id)) return Bad(path, n, "an id that is not a hash");
      e.ids.push_back(id.get<std::string>());
    }
    const json at = v.value("erased_at", json(""));
    if (!at.is_string()) return Bad(path, n, "\"erased_at\" is not text");
    e.erased_at = at.get<std::string>();
    reg.entries_.push_back(std::move(e));
    text += line + "\n";
  }
  if (n == 0) return Bad(path, 1, "the file is empty");
  if (!ended) return Bad(path, n, "no closing hash (the file ends early)");
  if (crypto::BlindIndex(key, "erasure-register", text) != mac) {
    return Bad(path, n,
               "the closing hash does not match the entries (or the key is not the one the "
               "register was written under)");
  }
  // Written by Save, so its own text must read back the same.
  if (reg.Text() != text) return Bad(path, n, "entries not in roster's own form");
  reg.Index();
  return reg;
}

bool ErasureRegister::Add(std::string_view address, const std::vector<std::string>& ids,
                          std::chrono::system_clock::time_point now) {
  const std::string subject = SubjectHash(address);
  Entry* entry = nullptr;
  for (Entry& e : entries_) {
    if (e.subject == subject) entry = &e;
  }
  const bool fresh = entry == nullptr;
  if (fresh) {
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char day[16];
    std::strftime(day, sizeof day, "%Y-%m-%d", &tm);
    entries_.push_back(Entry{subject, {}, day});
    entry = &entries_.back();
  }
  std::set<std::string> merged(entry->ids.begin(), entry->ids.end());
  for (const std::string& id : ids) {
    if (!id.empty()) merged.insert(IdHash(id));
  }
  merged.erase(subject);
  entry->ids.assign(merged.begin(), merged.end());
  Index();
  return fresh;
}

bool ErasureRegister::AddIds(std::string_view address, const std::vector<std::string>& ids) {
  const std::string subject = SubjectHash(address);
  for (Entry& e : entries_) {
    if (e.subject != subject) continue;
    std::set<std::string> merged(e.ids.begin(), e.ids.end());
    const size_t before = merged.size();
    for (const std::string& id : ids) {
      if (!id.empty()) merged.insert(IdHash(id));
    }
    merged.erase(subject);
    if (merged.size() == before) return false;
    e.ids.assign(merged.begin(), merged.end());
    Index();
    return true;
  }
  return false;
}

bool ErasureRegister::Learn(const std::vector<ErasedPerson>& found) {
  bool learnt = false;
  for (const ErasedPerson& p : found) {
    for (const std::string& a : p.addresses) {
      if (Contains(a)) {
        learnt = AddIds(a, p.ids) || learnt;
        break;
      }
    }
  }
  return learnt;
}

bool ErasureRegister::Remove(std::string_view address) {
  const std::string subject = SubjectHash(address);
  const size_t before = entries_.size();
  std::erase_if(entries_, [&](const Entry& e) { return e.subject == subject; });
  Index();
  return entries_.size() != before;
}

bool ErasureRegister::Contains(std::string_view address) const {
  const std::string subject = SubjectHash(address);
  for (const Entry& e : entries_) {
    if (e.subject == subject) return true;
  }
  return false;
}

Status ErasureRegister::Save() {
  ++generation_;
  std::string body = Text();
  body += json{{"mac", crypto::BlindIndex(key_, "erasure-register", body)}}.dump() + "\n";
  const std::string temp = path_ + ".new";
  if (unlink(temp.c_str()) != 0 && errno != ENOENT) {
    --generation_;
    return Io("cannot remove the leftover", temp);
  }
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    --generation_;
    return Io("cannot create erasure register", temp);
  }
  for (size_t done = 0; done < body.size();) {
    ssize_t w = write(fd, body.data() + done, body.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      Error e = Io("cannot write erasure register", temp);
      close(fd);
      unlink(temp.c_str());
      --generation_;
      return e;
    }
    done += static_cast<size_t>(w);
  }
  if (fsync(fd) != 0) {
    Error e = Io("cannot write erasure register", temp);
    close(fd);
    unlink(temp.c_str());
    --generation_;
    return e;
  }
  close(fd);
  Failpoint("erasure-register-written");
  if (rename(temp.c_str(), path_.c_str()) != 0) {
    Error e = Io("cannot replace erasure register", path_);
    unlink(temp.c_str());
    --generation_;
    return e;
  }
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  exists_ = true;
  return {};
}

bool ErasureRegister::Erased(std::string_view source, const SourceRecord& record) const {
  if (hashes_.empty()) return false;
  if (hashes_.count(IdHash(ErasureKeyId(source, record.key)))) return true;
  for (const TypedValue& e : record.contact.emails) {
    const std::string address = NormalizeAddress(e.value);
    if (!address.empty() && hashes_.count(SubjectHash(address))) return true;
  }
  return false;
}

bool ErasureRegister::ErasedReference(std::string_view dn) const {
  if (hashes_.empty()) return false;
  return hashes_.count(IdHash(ErasureDnId(dn))) > 0;
}

bool ErasureRegister::ErasedName(std::string_view name) const {
  if (hashes_.empty()) return false;
  return hashes_.count(IdHash(ErasureNameId(name))) > 0;
}

std::string ErasureRegister::Fingerprint() const {
  if (entries_.empty()) return std::string();
  // The entries only: writing the same list again keeps it.
  const std::string text = Text();
  return crypto::BlindIndex(key_, "erasure-fingerprint", text.substr(text.find('\n') + 1));
}

}  // namespace roster::gdpr
