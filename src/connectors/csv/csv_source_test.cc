#include "connectors/csv/csv_source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/personal.h"

namespace roster {
namespace {

class CsvSourceTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() /
            ("roster-csv-" + std::to_string(getpid()) + ".csv");
    std::ofstream(path_) << text;
    return path_.string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  Result<std::vector<SourceRecord>> Read(const std::string& text) {
    CsvSourceOptions o{Write(text), "id", {{"given_name", "first"}, {"email", "mail"}}, ','};
    return NewCsvSource(o)->ReadAll();
  }
  std::filesystem::path path_;
};

TEST_F(CsvSourceTest, MapsColumnsAndKeepsRawAttributes) {
  auto r = Read("id,first,mail,dept\n7,Ann,ann@example.com,Sales\n");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].key, "7");
  EXPECT_EQ((*r)[0].contact.given_name, "Ann");
  ASSERT_EQ((*r)[0].contact.emails.size(), 1u);
  EXPECT_EQ((*r)[0].attributes.at("dept"), std::vector<std::string>{"Sales"});
}

TEST_F(CsvSourceTest, MalformedRowNamesFileAndLine) {
  auto r = Read("id,first,mail\n1,Ann,a@x\n2,Bob\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(path_.string() + ": line 3"), std::string::npos)
      << r.error().message;
}

TEST_F(CsvSourceTest, DuplicateAndEmptyKeysAreErrors) {
  auto dup = Read("id,first,mail\n1,Ann,a@x\n1,Bob,b@x\n");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(ShowPersonal(dup.error().message).find("line 3: key \"1\" already used on line 2"),
            std::string::npos)
      << dup.error().message;
  auto empty = Read("id,first,mail\n,Ann,a@x\n");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("line 2: the key column \"id\" is empty"),
            std::string::npos);
}

TEST_F(CsvSourceTest, MissingMappedColumnIsNamed) {
  auto r = Read("id,first\n1,Ann\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("column \"mail\" (mapped to email) is not in the header"),
            std::string::npos);
}

TEST_F(CsvSourceTest, MissingFileIsAnError) {
  CsvSourceOptions o{"/nonexistent/staff.csv", "id", {}, ','};
  auto r = NewCsvSource(o)->ReadAll();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "cannot open /nonexistent/staff.csv");
}

class CsvVersionTest : public CsvSourceTest {
 protected:
  std::string VersionOf(CsvSourceOptions o) {
    auto v = NewCsvSource(std::move(o))->Version();
    EXPECT_TRUE(v.ok()) << v.error().message;
    return v.ok() ? *v : "";
  }
  std::string Version() { return VersionOf(Options()); }
  CsvSourceOptions Options() {
    CsvSourceOptions o{path_.string(), "id", {{"email", "mail"}}, ','};
    o.version_min_age = std::chrono::nanoseconds(0);
    return o;
  }
  // Sets the file's modification time; its change time moves to now.
  void SetMtime(const std::string& path, time_t sec, long nsec) {
    timespec times[2] = {{sec, nsec}, {sec, nsec}};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  }
};

TEST_F(CsvVersionTest, UnchangedFileKeepsItsVersion) {
  Write("id,mail\n1,a@x\n");
  std::string v = Version();
  EXPECT_FALSE(v.empty());
  EXPECT_EQ(Version(), v);
  // Reading it does not change it either.
  ASSERT_TRUE(NewCsvSource(Options())->ReadAll().ok());
  EXPECT_EQ(Version(), v);
}

TEST_F(CsvVersionTest, RewriteOfTheSameSizeChangesIt) {
  Write("id,mail\n1,a@x\n");
  std::string v = Version();
  // Past a clock tick, so the kernel gives the rewrite new stamps.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(path_, std::ios::trunc) << "id,mail\n2,b@x\n";
  EXPECT_NE(Version(), v);
}

TEST_F(CsvVersionTest, NanosecondsOfTheTimesCount) {
  Write("id,mail\n1,a@x\n");
  SetMtime(path_.string(), 1'700'000'000, 100);
  struct stat before {};
  ASSERT_EQ(stat(path_.c_str(), &before), 0);
  std::string v = Version();
  SetMtime(path_.string(), 1'700'000'000, 200);
  struct stat after {};
  ASSERT_EQ(stat(path_.c_str(), &after), 0);
  ASSERT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  ASSERT_EQ(before.st_size, after.st_size);
  EXPECT_NE(Version(), v);
}

TEST_F(CsvVersionTest, FileRenamedOverItChangesIt) {
  Write("id,mail\n1,a@x\n");
  SetMtime(path_.string(), 1'700'000'000, 0);
  std::string v = Version();
  std::string other = path_.string() + ".new";
  std::ofstream(other) << "id,mail\n2,b@x\n";
  SetMtime(other, 1'700'000'000, 0);  // same size and mtime: only the inode tells
  std::filesystem::rename(other, path_);
  EXPECT_NE(Version(), v);
}

TEST_F(CsvVersionTest, OptionsArePartOfIt) {
  Write("id,mail,first\n1,a@x,Ann\n");
  std::string v = Version();
  CsvSourceOptions o = Options();
  o.columns["given_name"] = "first";
  EXPECT_NE(VersionOf(o), v);
  o = Options();
  o.key_column = "mail";
  EXPECT_NE(VersionOf(o), v);
}

TEST_F(CsvVersionTest, AFileJustWrittenHasNoVersionYet) {
  Write("id,mail\n1,a@x\n");
  CsvSourceOptions o = Options();
  o.version_min_age = std::chrono::hours(1);
  auto v = NewCsvSource(o)->Version();
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(*v, "");  // read in full rather than trusted
}

TEST_F(CsvVersionTest, MissingFileIsAnErrorNotUnchanged) {
  CsvSourceOptions o = Options();
  o.path = "/nonexistent/staff.csv";
  auto v = NewCsvSource(o)->Version();
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().message, "cannot stat /nonexistent/staff.csv: No such file or directory");
}

}  // namespace
}  // namespace roster
