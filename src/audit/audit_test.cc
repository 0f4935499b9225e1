#include "audit/audit.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/hash.h"
#include "crypto/sign.h"

namespace roster::audit {
namespace {

using std::chrono::hours;
using std::chrono::system_clock;

class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("roster-audit-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "audit.jsonl").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  WallClock Clock() {
    return [this] { return now_; };
  }
  std::unique_ptr<Log> Open() {
    auto log = Log::Open(path_, key_, Clock());
    EXPECT_TRUE(log.ok()) << log.error().message;
    return log.ok() ? std::move(log).value() : nullptr;
  }
  // Two runs' worth: a run entry, two writes and a checkpoint each.
  void TwoRuns() {
    auto log = Open();
    for (int run = 0; run < 2; ++run) {
      ASSERT_TRUE(
          log->Append("run", {{"rule", std::string("company")}, {"run", int64_t{run}}}).ok());
      ASSERT_TRUE(
          log->Append("write", {{"user", std::string("p:0123456789ab")}, {"updated", int64_t{3}}})
              .ok());
      ASSERT_TRUE(
          log->Append("write", {{"user", std::string("p:ba9876543210")}, {"created", int64_t{1}}})
              .ok());
      ASSERT_TRUE(log->Checkpoint().ok());
      now_ += hours(1);
    }
  }
  std::vector<std::string> Lines() {
    std::ifstream in(path_);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  void Write(const std::vector<std::string>& lines, bool final_newline = true) {
    std::ofstream out(path_, std::ios::trunc | std::ios::binary);
    for (size_t i = 0; i < lines.size(); ++i) {
      out << lines[i];
      if (i + 1 < lines.size() || final_newline) out << "\n";
    }
  }
  Verification Check(const VerifyOptions& o = {}) {
    auto v = Verify(path_, o);
    EXPECT_TRUE(v.ok()) << v.error().message;
    return v.ok() ? *v : Verification{};
  }
  VerifyOptions Mine() { return {.public_key = crypto::AuditPublicKey(key_)}; }

  std::filesystem::path dir_;
  std::string path_;
  crypto::Key key_ = crypto::GenerateKey();
  system_clock::time_point now_ = system_clock::from_time_t(1'800'000'000);
};

TEST_F(AuditTest, AChainOfEntriesWithCheckpointsVerifies) {
  TwoRuns();
  Verification v = Check(Mine());
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.entries, 8);
  EXPECT_EQ(v.checkpoints, 2);
  EXPECT_EQ(v.first_seq, 1);
  EXPECT_EQ(v.head_seq, 8);
  auto log = Open();
  EXPECT_EQ(log->head_seq(), 8);
  EXPECT_EQ(log->head_hash(), v.head_hash);
  EXPECT_NE(HeadLine(*log).find("head seq 8 hash " + v.head_hash), std::string::npos);
  // Each line is one JSON object with what the header promises.
  auto first = nlohmann::json::parse(Lines().front());
  EXPECT_EQ(first["seq"], 1);
  EXPECT_EQ(first["event"], "run");
  EXPECT_EQ(first["time"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(first["data"]["rule"], "company");
  EXPECT_EQ(first["prev"], std::string(64, '0'));
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(AuditTest, AnEmptyOrMissingLogIsSaidSo) {
  EXPECT_EQ(Verify(path_).error().kind, ErrorKind::kNotFound);
  Write({}, false);
  Verification v = Check();
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(v.entries, 0);
}

// One changed byte anywhere in an entry is caught at that entry.
TEST_F(AuditTest, EveryChangedByteIsCaughtAtItsLine) {
  TwoRuns();
  const std::vector<std::string> lines = Lines();
  for (size_t line : {1u, 3u}) {  // a write and a checkpoint
    for (size_t at = 0; at < lines[line].size(); ++at) {
      std::vector<std::string> changed = lines;
      changed[line][at] = static_cast<char>(changed[line][at] ^ 0x01);
      Write(changed);
      Verification v = Check();
      ASSERT_FALSE(v.ok) << "line " << line + 1 << " byte " << at;
      EXPECT_EQ(v.bad_line, static_cast<int64_t>(line) + 1) << v.problem << " byte " << at;
    }
  }
}

TEST_F(AuditTest, DeletedInsertedAndSwappedLinesAreNamed) {
  TwoRuns();
  const std::vector<std::string> lines = Lines();
  struct Case {
    const char* name;
    std::vector<std::string> lines;
    int64_t bad_line;
  };
  auto without = [&](size_t i) {
    auto l = lines;
    l.erase(l.begin() + static_cast<std::ptrdiff_t>(i));
    return l;
  };
  auto swapped = lines;
  std::swap(swapped[1], swapped[2]);
  auto inserted = lines;
  inserted.insert(inserted.begin() + 2, lines[1]);
  const Case cases[] = {
      {"second line deleted", without(1), 2},
      {"first line deleted", without(0), 1},
      {"lines 2 and 3 swapped", swapped, 2},
      {"line 2 repeated", inserted, 3},
  };
  for (const Case& c : cases) {
    Write(c.lines);
    Verification v = Check();
    EXPECT_FALSE(v.ok) << c.name;
    EXPECT_EQ(v.bad_line, c.bad_line) << c.name << ": " << v.problem;
  }
}

TEST_F(AuditTest, ACutTailIsCaught) {
  TwoRuns();
  const std::vector<std::string> lines = Lines();
  // Cut inside the last line.
  auto cut = lines;
  cut.back().resize(cut.back().size() / 2);
  Write(cut, false);
  Verification v = Check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.bad_line, 8) << v.problem;
  // A log that does not end whole is not appended to either.
  auto reopened = Log::Open(path_, key_, Clock());
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.error().message.find("last line is not whole"), std::string::npos);
  // Cut at a line boundary before the last checkpoint: the tail is unsigned.
  Write({lines.begin(), lines.begin() + 6});
  v = Check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.bad_line, 5) << v.problem;
  // Cut at a checkpoint: only the head recorded elsewhere (syslog) knows.
  Write({lines.begin(), lines.begin() + 4});
  EXPECT_TRUE(Check().ok);
  VerifyOptions with_head;
  with_head.expected_head = nlohmann::json::parse(lines.back())["hash"];
  v = Check(with_head);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("is not in the log"), std::string::npos) << v.problem;
  Write(lines);
  EXPECT_TRUE(Check(with_head).ok);
}

// Someone who can write the log but not read the key rewrites it from the
// start with fresh hashes: the first checkpoint's signature no longer holds;
// re-signed with a key of their own, the public half kept elsewhere differs.
TEST_F(AuditTest, AChainRewrittenWithFreshHashesIsCaughtByTheCheckpoints) {
  TwoRuns();
  auto rewrite = [&](const crypto::Key* signer) {
    std::vector<std::string> out;
    std::string prev(64, '0');
    for (const std::string& line : Lines()) {
      auto j = nlohmann::json::parse(line);
      if (j["event"] == "write") j["data"]["updated"] = 0;  // hide what was written
      j["prev"] = prev;
      j.erase("hash");
      auto body = j;
      body.erase("sig");
      std::string hash = HashHex("roster-audit-1\n" + body.dump(), 32);
      if (signer && j["event"] == "checkpoint") {
        j["data"]["signer"] = HexEncode(crypto::AuditPublicKey(*signer));
        body = j;
        body.erase("sig");
        hash = HashHex("roster-audit-1\n" + body.dump(), 32);
        j["sig"] = HexEncode(crypto::SignAudit(*signer, "roster-audit-checkpoint-1\n" + hash));
      }
      j["hash"] = hash;
      prev = hash;
      out.push_back(j.dump());
    }
    return out;
  };
  Write(rewrite(nullptr));
  Verification v = Check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.bad_line, 4) << v.problem;
  EXPECT_NE(v.problem.find("signature does not hold"), std::string::npos) << v.problem;

  crypto::Key theirs = crypto::GenerateKey();
  Write(rewrite(&theirs));
  EXPECT_TRUE(Check().ok) << "whole, but by whom: only the public half kept elsewhere says";
  v = Check(Mine());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.bad_line, 4) << v.problem;
  EXPECT_NE(v.problem.find("another key"), std::string::npos) << v.problem;
}

TEST_F(AuditTest, PruningStartsTheLogAtASignedCheckpointThatStillVerifies) {
  TwoRuns();  // runs at hours 0 and 1
  now_ += hours(24 * 10);
  {
    auto log = Open();
    ASSERT_TRUE(log->Append("run", {{"run", int64_t{2}}}).ok());
    ASSERT_TRUE(log->Checkpoint().ok());
  }
  auto log = Open();
  auto removed = Prune(log, key_, hours(24 * 5), Clock());
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(*removed, 7) << "everything before the second run's checkpoint";
  VerifyOptions o = Mine();
  o.retention = hours(24 * 5);
  o.now = Clock();
  Verification v = Check(o);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.first_seq, 8);
  EXPECT_EQ(v.head_seq, 12) << "the run, its checkpoint, the prune and its checkpoint";
  EXPECT_EQ(nlohmann::json::parse(Lines()[3])["event"], "prune");
  // The log goes on from there.
  ASSERT_TRUE(log->Append("run").ok());
  ASSERT_TRUE(log->Checkpoint().ok());
  EXPECT_TRUE(Check(o).ok);
  // Nothing old enough: nothing rewritten.
  EXPECT_EQ(*Prune(log, key_, hours(24 * 5), Clock()), 0);

  // Entries removed before their time look like a prune, but the checkpoint
  // the log now starts at is younger than the retention.
  auto lines = Lines();
  Write({lines.begin() + 4, lines.end()});  // from the prune's checkpoint
  v = Check(o);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.bad_line, 1);
  EXPECT_NE(v.problem.find("removed early"), std::string::npos) << v.problem;
}

TEST_F(AuditTest, PruningRefusesALogThatDoesNotVerify) {
  TwoRuns();
  auto lines = Lines();
  lines.erase(lines.begin() + 1);
  Write(lines);
  auto log = Open();
  now_ += hours(24 * 30);
  auto removed = Prune(log, key_, hours(24), Clock());
  ASSERT_FALSE(removed.ok());
  EXPECT_NE(removed.error().message.find("does not verify (line 2"), std::string::npos)
      << removed.error().message;
  EXPECT_EQ(Lines(), lines) << "nothing rewritten";
}

TEST_F(AuditTest, ALogOthersMayWriteIsRefused) {
  TwoRuns();
  ASSERT_EQ(::chmod(path_.c_str(), 0620), 0);
  auto log = Log::Open(path_, key_, Clock());
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().message.find("chmod 600"), std::string::npos) << log.error().message;
  ASSERT_EQ(::chmod(path_.c_str(), 0640), 0);
  EXPECT_TRUE(Log::Open(path_, key_, Clock()).ok()) << "others may read: it holds no personal data";
}

}  // namespace
}  // namespace roster::audit
