// The audit log ([audit] path): one JSON line per thing roster did (a run,
// a collection's writes, a purge, a key rotation, a changed configuration),
// each bound to the one before it, with signed checkpoints. Nothing in it is
// personal in clear: people and target users appear as pseudonyms.
//
// A line is a JSON object with
//   "seq"    its number, 1 for the first entry ever, +1 per line
//   "time"   when it was written, RFC 3339 UTC to the second
//   "event"  what happened ("run", "write", "purge", "checkpoint", ...)
//   "data"   the event's details (counts, names of rules, pseudonyms)
//   "prev"   the "hash" of the line before (64 zeros before the first)
//   "hash"   BLAKE2b-256, hex, of "roster-audit-1\n" and the line's JSON
//            without "hash" and "sig" (keys sorted, as nlohmann dumps them)
//   "sig"    checkpoints only: Ed25519 (crypto/sign.h) over
//            "roster-audit-checkpoint-1\n" and the line's hash, by the key
//            whose public half is "data"."signer" (hex)
// so that a changed line no longer matches its own hash, a deleted,
// inserted or moved line breaks "seq" or "prev", and a chain rewritten with
// fresh hashes no longer matches the signatures of its checkpoints. Every
// run ends with a checkpoint, whose hash also goes to syslog (journald), so
// that a tail cut at a checkpoint is caught against that record.
//
// Retention: Prune drops the entries before the newest checkpoint older
// than the retention, so that the log then starts at a signed checkpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/result.h"
#include "crypto/keys.h"

namespace roster::audit {

// An event's details, in the order given: names and values, never personal
// data in clear.
using Value = std::variant<std::string, int64_t>;
using Details = std::vector<std::pair<std::string, Value>>;

// Wall-clock time, a seam for tests.
using WallClock = std::function<std::chrono::system_clock::time_point()>;

class Log {
 public:
  // Opens the log at `path` for appending, creating it (mode 0600) when it
  // does not exist. Reads it to find the head; a log whose last line is not
  // whole or not an entry is refused, naming the line (`roster audit verify`
  // says more), and so is one that group or others may write.
  static Result<std::unique_ptr<Log>> Open(const std::string& path, const crypto::Key& key,
                                           WallClock now = {});
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // Appends one entry and fsyncs it before returning.
  Status Append(const std::string& event, const Details& details = {});
  // Appends a signed checkpoint over everything before it.
  Status Checkpoint();

  int64_t head_seq() const { return head_seq_; }
  const std::string& head_hash() const { return head_hash_; }
  const std::string& path() const { return path_; }

 private:
  Log(std::string path, const crypto::Key& key, WallClock now, int fd);
  Status Write(const std::string& event, const Details& details, bool sign);

  std::string path_;
  const crypto::Key& key_;
  WallClock now_;
  int fd_ = -1;
  int64_t head_seq_ = 0;
  std::string head_hash_;
};

struct Verification {
  bool ok = false;
  int64_t entries = 0;      // lines read
  int64_t checkpoints = 0;  // valid signed checkpoints among them
  int64_t first_seq = 0;    // the first entry's seq (above 1 after pruning)
  int64_t head_seq = 0;
  std::string head_hash;
  int64_t bad_line = 0;  // the first line that is wrong (1-based), 0 when none
  std::string problem;   // one sentence naming it
};

struct VerifyOptions {
  // The public half the checkpoints must be signed by (32 bytes). Empty: the
  // signer each checkpoint names (which proves only that the chain is
  // whole, not who signed it).
  std::string public_key;
  // A head hash recorded elsewhere (syslog): the log must contain it.
  std::string expected_head;
  // With a retention, a log that starts after entry 1 must start at a
  // checkpoint older than it (entries removed early are a deletion).
  std::chrono::seconds retention{0};
  WallClock now;
};

// Reads and checks the whole log. Fails (not ok) on the first line that is
// not whole, not an entry, changed, out of sequence, not bound to the line
// before, or a checkpoint whose signature does not hold; on a log that does
// not end with a checkpoint (entries after the last one are unsigned); and
// on an expected head it does not contain. The Result fails only when the
// file cannot be read.
Result<Verification> Verify(const std::string& path, const VerifyOptions& options = {});

// Drops the entries older than `retention`: the log is rewritten (a new
// file renamed over it) to start at the newest checkpoint that is older,
// then a "prune" entry and a new checkpoint are appended. Returns how many
// entries went (0: nothing was old enough, nothing rewritten). The log must
// verify first; `log` is reopened on the new file.
Result<int64_t> Prune(std::unique_ptr<Log>& log, const crypto::Key& key,
                      std::chrono::seconds retention, WallClock now = {});

// The syslog line of a head: "roster audit: head seq N hash H (path P)".
std::string HeadLine(const Log& log);

}  // namespace roster::audit
