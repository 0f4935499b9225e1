#include "connectors/vcarddir/vcarddir_source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/personal.h"

namespace roster {
namespace {

namespace fs = std::filesystem;

std::string Card(const std::string& uid, const std::string& name) {
  return "BEGIN:VCARD\r\nVERSION:3.0\r\n" + (uid.empty() ? "" : "UID:" + uid + "\r\n") +
         "FN:" + name + "\r\nEMAIL:" + name + "@example.com\r\nEND:VCARD\r\n";
}

class VCardDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("roster-vcarddir-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary | std::ios::trunc) << text;
  }
  std::unique_ptr<Source> Open(std::chrono::nanoseconds min_age = {}) {
    return NewVCardDirSource(dir_.string(), min_age);
  }
  std::string Version() {
    auto v = Open()->Version();
    EXPECT_TRUE(v.ok()) << v.error().message;
    EXPECT_FALSE(v.ok() && v->empty());
    return v.ok() ? *v : "";
  }
  // Gives a file a fixed modification time; its change time moves to now.
  void SetMtime(const fs::path& path, time_t sec, long nsec) {
    timespec times[2] = {{sec, nsec}, {sec, nsec}};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  }
  // Past a clock tick, so that the kernel gives the next write new stamps.
  static void NextTick() { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }
  fs::path dir_;
};

TEST_F(VCardDirTest, ReadsEveryVcfFileKeyedByUidOrFileName) {
  Write("a.vcf", Card("uid-a", "ann") + Card("uid-b", "bob"));
  Write("carol.vcf", Card("", "carol"));
  Write("notes.txt", Card("uid-x", "ignored"));
  auto r = Open()->ReadAll();
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].key, "uid-a");
  EXPECT_EQ((*r)[1].key, "uid-b");
  EXPECT_EQ((*r)[2].key, "carol");
  EXPECT_EQ((*r)[2].contact.emails.size(), 1u);
}

TEST_F(VCardDirTest, DuplicateUidNamesBothFiles) {
  Write("a.vcf", Card("same", "ann"));
  Write("b.vcf", Card("same", "bob"));
  auto r = Open()->ReadAll();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(ShowPersonal(r.error().message).find("b.vcf: UID \"same\" is also used in a.vcf"),
            std::string::npos)
      << r.error().message;
}

// Root may read any file, so as root the read runs in a child that has
// dropped to nobody (65534).
TEST_F(VCardDirTest, UnreadableFileFailsTheRead) {
  Write("a.vcf", Card("uid-a", "ann"));
  fs::permissions(dir_ / "a.vcf", fs::perms::none);
  const std::string expected = "cannot open " + (dir_ / "a.vcf").string();
  if (geteuid() != 0) {
    auto r = Open()->ReadAll();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message, expected);
    return;
  }
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    auto r = Open()->ReadAll();
    _exit(!r.ok() && r.error().message == expected ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: could not drop to nobody; 1: the read did not fail";
}

TEST_F(VCardDirTest, UnchangedFolderKeepsItsVersion) {
  Write("a.vcf", Card("uid-a", "ann"));
  Write("b.vcf", Card("uid-b", "bob"));
  std::string v = Version();
  EXPECT_EQ(Version(), v);
  ASSERT_TRUE(Open()->ReadAll().ok());
  EXPECT_EQ(Version(), v);
}

TEST_F(VCardDirTest, EditOfTheSameSizeChangesTheVersion) {
  Write("a.vcf", Card("uid-a", "ann"));
  std::string v = Version();
  NextTick();
  Write("a.vcf", Card("uid-a", "amy"));
  EXPECT_NE(Version(), v);
}

TEST_F(VCardDirTest, NanosecondsOfAFilesTimesCount) {
  Write("a.vcf", Card("uid-a", "ann"));
  SetMtime(dir_ / "a.vcf", 1'700'000'000, 100);
  std::string v = Version();
  SetMtime(dir_ / "a.vcf", 1'700'000'000, 200);
  EXPECT_NE(Version(), v);
}

TEST_F(VCardDirTest, AddedRemovedAndRenamedInFilesChangeTheVersion) {
  Write("a.vcf", Card("uid-a", "ann"));
  std::string v1 = Version();
  NextTick();
  Write("b.vcf", Card("uid-b", "bob"));
  std::string v2 = Version();
  EXPECT_NE(v2, v1);
  NextTick();
  fs::remove(dir_ / "b.vcf");
  std::string v3 = Version();
  EXPECT_NE(v3, v2);
  // A file prepared elsewhere with the same size and times, renamed over a.vcf.
  SetMtime(dir_ / "a.vcf", 1'700'000'000, 0);
  std::string v4 = Version();
  fs::path other = dir_.string() + "-other.vcf";
  std::ofstream(other, std::ios::binary) << Card("uid-a", "amy");
  SetMtime(other, 1'700'000'000, 0);
  fs::rename(other, dir_ / "a.vcf");
  EXPECT_NE(Version(), v4);
}

TEST_F(VCardDirTest, RecentlyChangedFolderHasNoVersionYet) {
  Write("a.vcf", Card("uid-a", "ann"));
  auto v = Open(std::chrono::hours(1))->Version();
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(*v, "");  // read in full rather than trusted
}

TEST_F(VCardDirTest, MissingFolderIsAnErrorNotUnchanged) {
  auto v = NewVCardDirSource("/nonexistent/cards", {})->Version();
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().message, "cannot stat /nonexistent/cards: No such file or directory");
}

}  // namespace
}  // namespace roster
