#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "core/failpoint.h"
#include "crypto/keys.h"
#include "crypto/seal.h"
#include "crypto/test_support.h"

namespace roster::crypto {
namespace {

using testing::ShowsKey;
using testing::TempDir;

std::string Text(const Key& key) { return std::string(FormatKey(key).view()); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Runs `body` with the process umask set to `mask`.
template <typename Body>
void WithUmask(mode_t mask, Body body) {
  const mode_t before = umask(mask);
  body();
  umask(before);
}

TEST(KeyFileTest, CreateWritesOneLineWithMode0600WhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{022}, mode_t{0277}}) {
    TempDir dir;
    const std::string path = dir / "roster.key";
    WithUmask(mask, [&] {
      auto key = CreateKeyFile(path);
      ASSERT_TRUE(key.ok()) << key.error().message;
      EXPECT_EQ(ModeOf(path), 0600u);
      EXPECT_EQ(ReadFile(path), Text(*key) + "\n");
      auto loaded = LoadKeyFile(path);
      ASSERT_TRUE(loaded.ok()) << loaded.error().message;
      EXPECT_EQ(Text(*loaded), Text(*key));
    });
  }
}

TEST(KeyFileTest, CreateNeverReplacesAFile) {
  TempDir dir;
  const std::string path = dir / "roster.key";
  auto first = CreateKeyFile(path);
  ASSERT_TRUE(first.ok());
  const std::string before = ReadFile(path);
  auto second = CreateKeyFile(path);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().kind, ErrorKind::kConflict);
  EXPECT_EQ(second.error().message,
            "key file " + path + " exists; roster keys init never overwrites a key");
  EXPECT_EQ(ReadFile(path), before);
  // Not even an empty file, or a file that is not a key.
  WriteFile(dir / "empty", "", 0600);
  EXPECT_FALSE(CreateKeyFile(dir / "empty").ok());
  EXPECT_EQ(ReadFile(dir / "empty"), "");
}

TEST(KeyFileTest, CreateRefusesASymbolicLinkEvenADanglingOne) {
  TempDir dir;
  const std::string link = dir / "roster.key", target = dir / "elsewhere.key";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  auto key = CreateKeyFile(link);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().kind, ErrorKind::kConflict);
  EXPECT_FALSE(std::filesystem::exists(target));
}

TEST(KeyFileTest, CreateInAMissingDirectorySaysWhere) {
  TempDir dir;
  const std::string path = dir / "no/such/dir/roster.key";
  auto key = CreateKeyFile(path);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().message, "cannot create key file " + path + ": directory " +
                                     (dir / "no/such/dir") + " does not exist");
}

TEST(KeyFileTest, LoadRefusesAFileGroupOrOthersCanReach) {
  TempDir dir;
  const std::string path = dir / "roster.key";
  Key key = *CreateKeyFile(path);
  for (mode_t mode : {0644, 0640, 0660, 0604, 0620, 0606, 0610, 0601, 0444, 0777}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    auto loaded = LoadKeyFile(path);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.error().kind, ErrorKind::kInvalidArgument);
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    EXPECT_EQ(loaded.error().message, "key file " + path + " has mode " + octal +
                                          ", which gives group or others access to it; run "
                                          "`chmod 600 " +
                                          path + "`");
    EXPECT_FALSE(ShowsKey(loaded.error().message, key));
  }
  for (mode_t mode : {0600, 0400, 0700}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    auto loaded = LoadKeyFile(path);
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    EXPECT_EQ(Text(*loaded), Text(key));
  }
}

TEST(KeyFileTest, LoadOfAMissingFileSaysToRunKeysInit) {
  TempDir dir;
  auto loaded = LoadKeyFile(dir / "roster.key");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(loaded.error().message, "key file " + (dir / "roster.key") +
                                        " does not exist; create it with `roster keys init`");
}

TEST(KeyFileTest, ASymbolicLinkIsFollowedAndItsFileChecked) {
  TempDir dir;
  const std::string real = dir / "real.key", link = dir / "roster.key";
  Key key = *CreateKeyFile(real);
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  auto loaded = LoadKeyFile(link);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(Text(*loaded), Text(key));
  // The link's own mode (0777) does not matter; the file's does.
  ASSERT_EQ(chmod(real.c_str(), 0644), 0);
  auto loose = LoadKeyFile(link);
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.error().message.find("has mode 0644"), std::string::npos);
  EXPECT_NE(loose.error().message.find("chmod 600 " + link), std::string::npos);
  // A link that leads nowhere is a missing key.
  ASSERT_EQ(symlink((dir / "gone").c_str(), (dir / "dangling").c_str()), 0);
  EXPECT_EQ(LoadKeyFile(dir / "dangling").error().kind, ErrorKind::kNotFound);
}

TEST(KeyFileTest, LoadRefusesWhatIsNotARegularFile) {
  TempDir dir;
  ASSERT_EQ(mkdir((dir / "d").c_str(), 0700), 0);
  EXPECT_EQ(LoadKeyFile(dir / "d").error().message,
            "key file " + (dir / "d") + " is not a regular file");
  // A FIFO must be refused, not waited on.
  ASSERT_EQ(mkfifo((dir / "fifo").c_str(), 0600), 0);
  EXPECT_EQ(LoadKeyFile(dir / "fifo").error().message,
            "key file " + (dir / "fifo") + " is not a regular file");
}

TEST(KeyFileTest, LoadRefusesBadContentWithoutQuotingIt) {
  TempDir dir;
  const std::string path = dir / "roster.key";
  WriteFile(path, "hunter2 the password\n", 0600);
  auto loaded = LoadKeyFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, ErrorKind::kInvalidData);
  EXPECT_EQ(loaded.error().message, "key file " + path +
                                        " is not a roster key (one line starting "
                                        "\"roster-key-1:\")");
  WriteFile(path, "", 0600);
  EXPECT_EQ(LoadKeyFile(path).error().message, "key file " + path + " is empty");
  WriteFile(path, std::string(5000, 'k'), 0600);
  EXPECT_EQ(LoadKeyFile(path).error().message,
            "key file " + path + " is larger than 4 KiB; a key file holds one key");
  // A good key followed by anything else is not a key file either.
  Key key = GenerateKey();
  WriteFile(path, Text(key) + "\n" + Text(GenerateKey()) + "\n", 0600);
  auto two = LoadKeyFile(path);
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.error().message,
            "key file " + path + " is not valid base64 after \"roster-key-1:\"");
  EXPECT_FALSE(ShowsKey(two.error().message, key));
}

TEST(KeyFileTest, LoadFromTheEnvironment) {
  const char* kVar = "ROSTER_CRYPTO_TEST_KEY";
  unsetenv(kVar);
  auto unset = LoadKeyFromEnv(kVar);
  ASSERT_FALSE(unset.ok());
  EXPECT_EQ(unset.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(unset.error().message,
            "environment variable ROSTER_CRYPTO_TEST_KEY is not set; it must hold the state's key "
            "(`roster keys init` makes one)");
  setenv(kVar, "", 1);
  EXPECT_EQ(LoadKeyFromEnv(kVar).error().message,
            "environment variable ROSTER_CRYPTO_TEST_KEY is empty; it must hold the state's key "
            "(`roster keys init` makes one)");
  setenv(kVar, "roster-key-1:AQA=", 1);
  EXPECT_EQ(LoadKeyFromEnv(kVar).error().message,
            "environment variable ROSTER_CRYPTO_TEST_KEY is truncated (2 of 70 bytes)");
  Key key = GenerateKey();
  setenv(kVar, Text(key).c_str(), 1);
  auto loaded = LoadKeyFromEnv(kVar);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(Text(*loaded), Text(key));
  // The configuration's choice: the variable when it is named, else the file.
  EXPECT_EQ(Text(*LoadStateKey("/nonexistent/roster.key", kVar)), Text(key));
  EXPECT_EQ(LoadStateKey("/nonexistent/roster.key", "").error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(LoadStateKey("", "").error().message, "[state] names neither key_file nor key_env");
  unsetenv(kVar);
}

TEST(KeyFileTest, AtomicWriteReplacesTheKeyAndKeepsModeAndLink) {
  TempDir dir;
  const std::string path = dir / "roster.key";
  Key old_key = *CreateKeyFile(path);
  Key new_key = *BeginRotation(old_key);
  ASSERT_TRUE(WriteKeyFileAtomically(path, new_key).ok());
  EXPECT_EQ(Text(*LoadKeyFile(path)), Text(new_key));
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_FALSE(std::filesystem::exists(path + ".new"));
  // A systemd-style read-only key stays read-only.
  ASSERT_EQ(chmod(path.c_str(), 0400), 0);
  Key finished = FinishRotation(new_key);
  ASSERT_TRUE(WriteKeyFileAtomically(path, finished).ok());
  EXPECT_EQ(ModeOf(path), 0400u);
  EXPECT_EQ(Text(*LoadKeyFile(path)), Text(finished));
  // Through a link: the file it leads to is replaced, the link stays.
  const std::string link = dir / "link.key";
  ASSERT_EQ(symlink(path.c_str(), link.c_str()), 0);
  ASSERT_TRUE(WriteKeyFileAtomically(link, old_key).ok());
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_EQ(Text(*LoadKeyFile(path)), Text(old_key));
  EXPECT_FALSE(std::filesystem::exists(link + ".new"));
  // A file that did not exist yet is created.
  ASSERT_TRUE(WriteKeyFileAtomically(dir / "fresh.key", old_key).ok());
  EXPECT_EQ(ModeOf(dir / "fresh.key"), 0600u);
}

TEST(KeyFileTest, AtomicWriteRemovesALeftoverFromACrash) {
  TempDir dir;
  const std::string path = dir / "roster.key";
  Key key = *CreateKeyFile(path);
  WriteFile(path + ".new", "half a key", 0644);
  ASSERT_TRUE(WriteKeyFileAtomically(path, *BeginRotation(key)).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".new"));
  EXPECT_EQ(LoadKeyFile(path)->key_id(), 2u);
}

TEST(KeyFileTest, AtomicWriteRefusesADanglingLinkAndADirectory) {
  TempDir dir;
  ASSERT_EQ(symlink((dir / "gone").c_str(), (dir / "roster.key").c_str()), 0);
  Status s = WriteKeyFileAtomically(dir / "roster.key", GenerateKey());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(
      s.error().message.rfind(
          "key file " + (dir / "roster.key") + " is a symbolic link that leads to no file", 0),
      0u)
      << s.error().message;
  ASSERT_EQ(mkdir((dir / "d").c_str(), 0700), 0);
  EXPECT_EQ(WriteKeyFileAtomically(dir / "d", GenerateKey()).error().message,
            "key file " + (dir / "d") + " is not a regular file");
}

// The list in keys.h is the one the code passes, in order.
TEST(KeyFileCrashTest, EveryFailpointIsHitInOrder) {
  TempDir dir;
  const std::string path = dir / "roster.key";
  Key key = *CreateKeyFile(path);
  std::vector<std::string> hits;
  SetFailpointHandlerForTest([&](std::string_view name) { hits.emplace_back(name); });
  Status s = WriteKeyFileAtomically(path, *BeginRotation(key));
  SetFailpointHandlerForTest(nullptr);
  ASSERT_TRUE(s.ok()) << s.error().message;
  std::vector<std::string> listed;
  for (const char* const* n = KeyFileFailpointNames(); *n != nullptr; ++n) listed.emplace_back(*n);
  EXPECT_EQ(hits, listed);
  EXPECT_EQ(listed.size(), 4u);
}

// A kill at each step of the atomic write leaves a key file that loads and is
// either the old key or the new one (the new one once the rename is done), and
// the next write succeeds and leaves nothing behind.
TEST(KeyFileCrashTest, AKillAtEachFailpointLeavesTheOldOrTheNewKey) {
  // "fast" (fork): the child must write the very files the parent then reads.
  GTEST_FLAG_SET(death_test_style, "fast");
  const std::map<std::string, bool> renamed = {{"key-file-written", false},
                                               {"key-file-synced", false},
                                               {"key-file-renamed", true},
                                               {"key-file-done", true}};
  for (const char* const* n = KeyFileFailpointNames(); *n != nullptr; ++n) {
    const std::string name = *n;
    SCOPED_TRACE(name);
    ASSERT_TRUE(renamed.count(name)) << "a failpoint this test does not know: " << name;
    TempDir dir;
    const std::string path = dir / "roster.key";
    Key old_key = *CreateKeyFile(path);
    Key new_key = *BeginRotation(old_key);
    EXPECT_EXIT(
        {
          SetFailpointHandlerForTest([&](std::string_view hit) {
            if (hit == name) kill(getpid(), SIGKILL);  // as a crash: nothing runs after it
          });
          (void)WriteKeyFileAtomically(path, new_key);
          _exit(0);  // the failpoint was not reached
        },
        ::testing::KilledBySignal(SIGKILL), "");
    auto loaded = LoadKeyFile(path);
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    EXPECT_EQ(Text(*loaded), Text(renamed.at(name) ? new_key : old_key));
    // The next attempt (the rotation run again) goes through.
    ASSERT_TRUE(WriteKeyFileAtomically(path, new_key).ok());
    EXPECT_EQ(Text(*LoadKeyFile(path)), Text(new_key));
    EXPECT_FALSE(std::filesystem::exists(path + ".new"));
    EXPECT_EQ(ModeOf(path), 0600u);
  }
}

}  // namespace
}  // namespace roster::crypto
