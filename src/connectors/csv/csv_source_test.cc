#include "connectors/csv/csv_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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
  EXPECT_NE(dup.error().message.find("line 3: key \"1\" already used on line 2"), std::string::npos)
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

}  // namespace
}  // namespace roster
