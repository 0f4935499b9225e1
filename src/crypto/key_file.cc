// Key files and the key in the environment: reading with the permission
// checks, creating without ever replacing, and the crash-safe replacement a
// rotation needs.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "core/failpoint.h"
#include "crypto/keys.h"

namespace roster::crypto {
namespace {

// A key line is about 160 bytes; anything far larger is not a key file.
constexpr size_t kMaxKeyFileBytes = 4096;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting what close() says (a late write error on some
  // file systems).
  int Close() { return close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

std::string ErrnoText(int e) { return std::strerror(e); }

std::string ModeText(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status SyncDirectory(const std::string& dir) {
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || fsync(fd.get()) != 0) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "cannot sync directory " + dir + ": " + ErrnoText(errno));
  }
  return {};
}

// The key and a line break, written in full to `fd` and fsync'd.
Status WriteKeyLine(int fd, const Key& key, const std::string& path) {
  const Secret text = FormatKey(key);
  Secret line(text.size() + 1);
  std::memcpy(line.data(), text.data(), text.size());
  line.data()[text.size()] = '\n';
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "cannot write key file " + path + ": " + ErrnoText(errno));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status Fsync(int fd, const std::string& path) {
  if (fsync(fd) != 0) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "cannot sync key file " + path + ": " + ErrnoText(errno));
  }
  return {};
}

Error OpenError(const std::string& what, const std::string& path, int e) {
  if (e == EACCES || e == EPERM) {
    return MakeError(ErrorKind::kAccessDenied, what + " " + path + ": permission denied");
  }
  return MakeError(ErrorKind::kInvalidArgument, what + " " + path + ": " + ErrnoText(e));
}

// Where WriteKeyFileAtomically writes: `path` itself, or the file a symbolic
// link at `path` leads to (rename would replace the link, not its file).
Result<std::string> ReplacementTarget(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return path;
  std::unique_ptr<char, decltype(&std::free)> real(realpath(path.c_str(), nullptr), &std::free);
  if (real == nullptr) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "key file " + path + " is a symbolic link that leads to no file (" +
                         ErrnoText(errno) + ")");
  }
  return std::string(real.get());
}

// Gives the new file at `fd` the old file's owner, group and (0400 or 0600)
// mode, so that a rotation run by root leaves a key the service can read.
Status MatchOldFile(int fd, const struct stat& old, const std::string& path) {
  const mode_t mode = (old.st_mode & 07777) == 0400 ? 0400 : 0600;
  struct stat now {};
  if (fstat(fd, &now) != 0 || fchmod(fd, mode) != 0) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "cannot set the mode of the new key file " + path + ": " + ErrnoText(errno));
  }
  if ((now.st_uid != old.st_uid || now.st_gid != old.st_gid) &&
      fchown(fd, old.st_uid, old.st_gid) != 0) {
    return MakeError(ErrorKind::kAccessDenied,
                     "cannot give the new key file the owner of " + path + " (uid " +
                         std::to_string(old.st_uid) + ", gid " + std::to_string(old.st_gid) +
                         "): " + ErrnoText(errno) + "; run this as that user or as root");
  }
  return {};
}

// Steps 2-5 of WriteKeyFileAtomically, once "<target>.new" is open as `fd`.
Status WriteAndRename(Fd& fd, const std::string& temp, const std::string& target,
                      const struct stat* old, const Key& key) {
  if (old != nullptr) {
    ROSTER_RETURN_IF_ERROR(MatchOldFile(fd.get(), *old, target));
  } else if (fchmod(fd.get(), 0600) != 0) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "cannot set the mode of the new key file " + temp + ": " + ErrnoText(errno));
  }
  ROSTER_RETURN_IF_ERROR(WriteKeyLine(fd.get(), key, temp));
  Failpoint("key-file-written");
  ROSTER_RETURN_IF_ERROR(Fsync(fd.get(), temp));
  if (fd.Close() != 0) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "cannot write key file " + temp + ": " + ErrnoText(errno));
  }
  Failpoint("key-file-synced");
  if (rename(temp.c_str(), target.c_str()) != 0) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "cannot rename " + temp + " to " + target + ": " + ErrnoText(errno));
  }
  return {};
}

}  // namespace

Result<Key> LoadKeyFile(const std::string& path) {
  // O_NONBLOCK: a FIFO planted at the path must not hang roster; it is then
  // refused as not a regular file.
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    const int e = errno;
    if (e == ENOENT) {
      return MakeError(ErrorKind::kNotFound,
                       "key file " + path + " does not exist; create it with `roster keys init`");
    }
    return OpenError("cannot read key file", path, e);
  }
  // The checks are made on the descriptor that is read, so that nothing can
  // swap the file between the check and the read.
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return OpenError("cannot read key file", path, errno);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorKind::kInvalidArgument, "key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "key file " + path + " has mode " + ModeText(st.st_mode) +
                         ", which gives group or others access to it; run `chmod 600 " + path +
                         "`");
  }
  Secret buffer(kMaxKeyFileBytes + 1);
  size_t size = 0;
  while (size < buffer.size()) {
    const ssize_t n = read(fd.get(), buffer.data() + size, buffer.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return OpenError("cannot read key file", path, errno);
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  if (size > kMaxKeyFileBytes) {
    return MakeError(ErrorKind::kInvalidData,
                     "key file " + path + " is larger than 4 KiB; a key file holds one key");
  }
  buffer.Shrink(size);
  return ParseKey(buffer.view(), "key file " + path);
}

Result<Key> LoadKeyFromEnv(const std::string& variable) {
  const char* value = std::getenv(variable.c_str());
  if (value == nullptr || *value == '\0') {
    return MakeError(ErrorKind::kNotFound,
                     "environment variable " + variable +
                         (value == nullptr ? " is not set" : " is empty") +
                         "; it must hold the state's key (`roster keys init` makes one)");
  }
  return ParseKey(value, "environment variable " + variable);
}

Result<Key> LoadStateKey(const std::string& key_file, const std::string& key_env) {
  if (!key_env.empty()) return LoadKeyFromEnv(key_env);
  if (key_file.empty()) {
    return MakeError(ErrorKind::kInvalidArgument, "[state] names neither key_file nor key_env");
  }
  return LoadKeyFile(key_file);
}

Result<Key> CreateKeyFile(const std::string& path) {
  // O_EXCL also refuses a symbolic link at `path`, even one leading nowhere.
  Fd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
  if (fd.get() < 0) {
    const int e = errno;
    if (e == EEXIST) {
      return MakeError(ErrorKind::kConflict,
                       "key file " + path + " exists; roster keys init never overwrites a key");
    }
    if (e == ENOENT) {
      return MakeError(ErrorKind::kInvalidArgument, "cannot create key file " + path +
                                                        ": directory " + DirectoryOf(path) +
                                                        " does not exist");
    }
    return OpenError("cannot create key file", path, e);
  }
  Key key = GenerateKey();
  // 0600 whatever the umask: the owner must be able to read it back.
  Status written = fchmod(fd.get(), 0600) == 0
                       ? WriteKeyLine(fd.get(), key, path)
                       : MakeError(ErrorKind::kInvalidArgument, "cannot set the mode of key file " +
                                                                    path + ": " + ErrnoText(errno));
  if (written.ok()) written = Fsync(fd.get(), path);
  if (written.ok() && fd.Close() != 0) {
    written = MakeError(ErrorKind::kInvalidArgument,
                        "cannot write key file " + path + ": " + ErrnoText(errno));
  }
  if (written.ok()) written = SyncDirectory(DirectoryOf(path));
  if (!written.ok()) {
    unlink(path.c_str());  // ours, and not a usable key
    return written.take_error();
  }
  return key;
}

Status WriteKeyFileAtomically(const std::string& path, const Key& key) {
  ROSTER_ASSIGN_OR_RETURN(const std::string target, ReplacementTarget(path));
  struct stat old {};
  const bool exists = stat(target.c_str(), &old) == 0;
  if (!exists && errno != ENOENT) return OpenError("cannot read key file", target, errno);
  if (exists && !S_ISREG(old.st_mode)) {
    return MakeError(ErrorKind::kInvalidArgument, "key file " + target + " is not a regular file");
  }
  // A leftover from a crash before its rename holds a key nothing was sealed
  // with yet (the rotation starts only once the new key is in place).
  const std::string temp = target + ".new";
  if (unlink(temp.c_str()) != 0 && errno != ENOENT) {
    return OpenError("cannot remove the leftover key file", temp, errno);
  }
  Fd fd(open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
  if (fd.get() < 0) return OpenError("cannot create key file", temp, errno);
  Status renamed = WriteAndRename(fd, temp, target, exists ? &old : nullptr, key);
  if (!renamed.ok()) {
    unlink(temp.c_str());
    return renamed;
  }
  Failpoint("key-file-renamed");
  ROSTER_RETURN_IF_ERROR(SyncDirectory(DirectoryOf(target)));
  Failpoint("key-file-done");
  return {};
}

const char* const* KeyFileFailpointNames() {
  static const char* const kNames[] = {"key-file-written", "key-file-synced", "key-file-renamed",
                                       "key-file-done", nullptr};
  return kNames;
}

}  // namespace roster::crypto
