#include "audit/audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/hash.h"
#include "core/text.h"
#include "crypto/sign.h"

namespace roster::audit {
namespace {

using nlohmann::json;

constexpr char kHashDomain[] = "roster-audit-1\n";
constexpr char kSignDomain[] = "roster-audit-checkpoint-1\n";
const std::string kZeros(64, '0');

std::chrono::system_clock::time_point Now(const WallClock& now) {
  return now ? now() : std::chrono::system_clock::now();
}

std::string FormatTime(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

std::optional<std::chrono::system_clock::time_point> ParseTime(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// The hash a line must carry: over its JSON without "hash" and "sig".
std::string LineHash(json body) {
  body.erase("hash");
  body.erase("sig");
  return HashHex(kHashDomain + body.dump(), 32);
}

bool IsHex64(const json& v) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// One line parsed and checked on its own: an entry in canonical form whose
// hash is its own. Empty problem when it is.
struct Entry {
  json j;
  int64_t seq = 0;
  std::string event, prev, hash, time;
  std::string problem;
};

Entry ParseLine(const std::string& line) {
  Entry e;
  try {
    e.j = json::parse(line);
  } catch (const json::exception&) {
    e.problem = "is not JSON (changed, or cut)";
    return e;
  }
  if (!e.j.is_object() || !e.j.contains("seq") || !e.j["seq"].is_number_integer() ||
      !e.j.contains("event") || !e.j["event"].is_string() || !e.j.contains("time") ||
      !e.j["time"].is_string() || !IsHex64(e.j.value("prev", json())) ||
      !IsHex64(e.j.value("hash", json())) || !e.j.contains("data") || !e.j["data"].is_object()) {
    e.problem = "is not an audit entry (seq, time, event, data, prev and hash)";
    return e;
  }
  if (e.j.dump() != line) {
    e.problem = "is not as roster wrote it (changed)";
    return e;
  }
  e.seq = e.j["seq"].get<int64_t>();
  e.event = e.j["event"].get<std::string>();
  e.time = e.j["time"].get<std::string>();
  e.prev = e.j["prev"].get<std::string>();
  e.hash = e.j["hash"].get<std::string>();
  if (LineHash(e.j) != e.hash) e.problem = "does not match its own hash (changed)";
  return e;
}

// Whether a checkpoint's signature holds, by `public_key` when given.
std::string CheckSignature(const Entry& e, const std::string& public_key) {
  const json& data = e.j["data"];
  std::optional<std::string> signer, sig;
  if (data.contains("signer") && data["signer"].is_string()) {
    signer = text::Unhex(data["signer"].get<std::string>());
  }
  if (e.j.contains("sig") && e.j["sig"].is_string())
    sig = text::Unhex(e.j["sig"].get<std::string>());
  if (!signer || !sig) return "is a checkpoint without a signer and a signature";
  if (!public_key.empty() && *signer != public_key) {
    return "is a checkpoint signed by another key than the one given";
  }
  if (!crypto::VerifySignature(*signer, kSignDomain + e.hash, *sig)) {
    return "is a checkpoint whose signature does not hold (the chain was rewritten)";
  }
  return "";
}

Result<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorKind::kNotFound, Errno("audit log " + path));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return MakeError(ErrorKind::kInvalidArgument, Errno("audit log " + path));
  return s.str();
}

std::vector<std::string> SplitLines(const std::string& all, bool* whole) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < all.size()) {
    size_t nl = all.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(all.substr(start));
      *whole = false;
      return lines;
    }
    lines.push_back(all.substr(start, nl - start));
    start = nl + 1;
  }
  *whole = true;
  return lines;
}

// Writes all of `data` to `fd` and fsyncs it.
Status WriteAll(int fd, std::string_view data, const std::string& what) {
  for (size_t done = 0; done < data.size();) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return MakeError(ErrorKind::kInvalidArgument, Errno(what));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return MakeError(ErrorKind::kInvalidArgument, Errno(what));
  return {};
}

Status SyncDirectory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return MakeError(ErrorKind::kInvalidArgument, Errno("audit log directory " + dir));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return MakeError(ErrorKind::kInvalidArgument, Errno("audit log directory " + dir));
  return {};
}

}  // namespace

Log::Log(std::string path, const crypto::Key& key, WallClock now, int fd)
    : path_(std::move(path)), key_(key), now_(std::move(now)), fd_(fd) {}

Log::~Log() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<Log>> Log::Open(const std::string& path, const crypto::Key& key,
                                       WallClock now) {
  const std::string what = "audit log " + path;
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return MakeError(ErrorKind::kInvalidArgument, Errno(what));
  std::unique_ptr<Log> log(new Log(path, key, std::move(now), fd));
  struct stat st {};
  if (::fstat(fd, &st) != 0) return MakeError(ErrorKind::kInvalidArgument, Errno(what));
  if (!S_ISREG(st.st_mode)) return MakeError(ErrorKind::kInvalidArgument, what + " is not a file");
  if (st.st_mode & 022) {
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " may be written by group or others; chmod 600 it");
  }
  log->head_hash_ = kZeros;
  if (st.st_size == 0) return log;
  // The head is the last line: read the tail only (entries are short).
  const off_t tail = std::min<off_t>(st.st_size, 1 << 20);
  std::string buf(static_cast<size_t>(tail), '\0');
  if (::pread(fd, buf.data(), buf.size(), st.st_size - tail) != static_cast<ssize_t>(tail)) {
    return MakeError(ErrorKind::kInvalidArgument, Errno(what));
  }
  if (buf.back() != '\n') {
    return MakeError(ErrorKind::kInvalidData,
                     what +
                         ": its last line is not whole (cut short?); nothing was appended "
                         "(roster audit verify says more)");
  }
  buf.pop_back();
  size_t nl = buf.rfind('\n');
  Entry last = ParseLine(nl == std::string::npos ? buf : buf.substr(nl + 1));
  if (!last.problem.empty()) {
    return MakeError(ErrorKind::kInvalidData, what + ": its last line " + last.problem +
                                                  "; nothing was appended (roster audit verify "
                                                  "says more)");
  }
  log->head_seq_ = last.seq;
  log->head_hash_ = last.hash;
  return log;
}

Status Log::Write(const std::string& event, const Details& details, bool sign) {
  json data = json::object();
  for (const auto& [name, value] : details) {
    if (const auto* s = std::get_if<std::string>(&value)) {
      data[name] = *s;
    } else {
      data[name] = std::get<int64_t>(value);
    }
  }
  if (sign) data["signer"] = HexEncode(crypto::AuditPublicKey(key_));
  json j = {{"seq", head_seq_ + 1},
            {"time", FormatTime(Now(now_))},
            {"event", event},
            {"data", std::move(data)},
            {"prev", head_hash_}};
  const std::string hash = LineHash(j);
  if (sign) j["sig"] = HexEncode(crypto::SignAudit(key_, kSignDomain + hash));
  j["hash"] = hash;
  std::string line;
  try {
    line = j.dump() + "\n";
  } catch (const json::exception&) {
    // Invalid UTF-8 in a detail: a caller's bug, never written half.
    return MakeError(ErrorKind::kInvalidArgument,
                     "audit log " + path_ + ": an entry for " + event + " is not valid UTF-8");
  }
  ROSTER_RETURN_IF_ERROR(WriteAll(fd_, line, "audit log " + path_));
  ++head_seq_;
  head_hash_ = hash;
  return {};
}

Status Log::Append(const std::string& event, const Details& details) {
  return Write(event, details, false);
}

Status Log::Checkpoint() { return Write("checkpoint", {}, true); }

namespace {

Verification VerifyLines(const std::vector<std::string>& lines, bool whole,
                         const VerifyOptions& options) {
  Verification v;
  auto fail = [&](size_t index, const std::string& why) {
    v.ok = false;
    v.bad_line = static_cast<int64_t>(index) + 1;
    v.problem = "line " + std::to_string(index + 1) + " " + why;
    return v;
  };
  std::string prev_hash = kZeros;
  int64_t prev_seq = 0;
  size_t last_checkpoint = std::string::npos;
  bool head_seen = options.expected_head.empty();
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i + 1 == lines.size() && !whole) return fail(i, "is not whole (the log was cut short)");
    Entry e = ParseLine(lines[i]);
    if (!e.problem.empty()) return fail(i, e.problem);
    const std::string entry = "(entry " + std::to_string(e.seq) + ")";
    if (e.event == "checkpoint") {
      std::string bad = CheckSignature(e, options.public_key);
      if (!bad.empty()) return fail(i, entry + " " + bad);
      ++v.checkpoints;
      last_checkpoint = i;
    }
    if (i == 0) {
      v.first_seq = e.seq;
      if (e.seq < 1) return fail(i, entry + " has no valid number");
      if (e.seq == 1 && e.prev != kZeros) return fail(i, entry + " is the first but follows one");
      if (e.seq > 1) {
        // What pruning leaves: a signed checkpoint, old enough.
        if (e.event != "checkpoint") {
          return fail(i, entry +
                             " starts the log but is not a signed checkpoint: entries "
                             "before it were removed");
        }
        auto t = ParseTime(e.time);
        if (options.retention.count() > 0 && (!t || *t > Now(options.now) - options.retention)) {
          return fail(i, entry +
                             " starts the log but is younger than retention_days: entries "
                             "before it were removed early");
        }
      }
    } else {
      if (e.seq != prev_seq + 1) {
        return fail(i, entry + " follows entry " + std::to_string(prev_seq) +
                           ": a line was deleted, inserted or moved");
      }
      if (e.prev != prev_hash) {
        return fail(i, entry +
                           " is not bound to the line before it: a line was deleted, "
                           "inserted, moved or rewritten");
      }
    }
    if (!head_seen && e.hash == options.expected_head) head_seen = true;
    prev_hash = e.hash;
    prev_seq = e.seq;
    ++v.entries;
  }
  v.head_seq = prev_seq;
  v.head_hash = prev_hash;
  if (!lines.empty() && last_checkpoint + 1 != lines.size()) {
    size_t first = last_checkpoint == std::string::npos ? 0 : last_checkpoint + 1;
    return fail(first,
                "and those after it are not signed by a checkpoint: a run that did not "
                "finish (the next one signs them), or lines added or rewritten");
  }
  if (!head_seen) {
    v.ok = false;
    v.bad_line = static_cast<int64_t>(lines.size());
    v.problem = "the head recorded elsewhere (" + options.expected_head +
                ") is not in the log: its tail was cut or the chain rewritten";
    return v;
  }
  v.ok = true;
  return v;
}

}  // namespace

Result<Verification> Verify(const std::string& path, const VerifyOptions& options) {
  ROSTER_ASSIGN_OR_RETURN(std::string all, ReadAll(path));
  bool whole = true;
  std::vector<std::string> lines = SplitLines(all, &whole);
  return VerifyLines(lines, whole, options);
}

Result<int64_t> Prune(std::unique_ptr<Log>& log, const crypto::Key& key,
                      std::chrono::seconds retention, WallClock now) {
  const std::string path = log->path();
  ROSTER_ASSIGN_OR_RETURN(std::string all, ReadAll(path));
  bool whole = true;
  std::vector<std::string> lines = SplitLines(all, &whole);
  // The newest checkpoint older than the retention, past the first line.
  const auto cutoff = Now(now) - retention;
  size_t start = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    Entry e = ParseLine(lines[i]);
    auto t = ParseTime(e.time);
    if (!t || *t > cutoff) break;
    if (e.event == "checkpoint") start = i;
  }
  // Nothing old enough (every command but about one a day): the log is not
  // read again in full, let alone rewritten.
  if (start == 0) return int64_t{0};
  Verification v = VerifyLines(lines, whole, {.public_key = crypto::AuditPublicKey(key)});
  if (!v.ok) {
    return MakeError(ErrorKind::kInvalidData,
                     "audit log " + path + " does not verify (" + v.problem + "); not pruned");
  }
  const std::string fresh = path + ".new";
  std::filesystem::remove(fresh);
  {
    int fd = ::open(fresh.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return MakeError(ErrorKind::kInvalidArgument, Errno("audit log " + fresh));
    std::string rest;
    for (size_t i = start; i < lines.size(); ++i) rest += lines[i] + "\n";
    Status written = WriteAll(fd, rest, "audit log " + fresh);
    ::close(fd);
    ROSTER_RETURN_IF_ERROR(written);
  }
  if (::rename(fresh.c_str(), path.c_str()) != 0) {
    return MakeError(ErrorKind::kInvalidArgument, Errno("audit log " + path));
  }
  ROSTER_RETURN_IF_ERROR(SyncDirectory(path));
  log.reset();
  ROSTER_ASSIGN_OR_RETURN(log, Log::Open(path, key, now));
  const auto removed = static_cast<int64_t>(start);
  ROSTER_RETURN_IF_ERROR(log->Append(
      "prune", {{"removed", removed}, {"retention_days", int64_t{retention.count() / 86400}}}));
  ROSTER_RETURN_IF_ERROR(log->Checkpoint());
  return removed;
}

std::string HeadLine(const Log& log) {
  return "roster audit: head seq " + std::to_string(log.head_seq()) + " hash " + log.head_hash() +
         " (path " + log.path() + ")";
}

}  // namespace roster::audit
