// Where the state's key comes from, and what happens when it is missing.
#include "app/state_open.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "app/doctor.h"

namespace roster {
namespace {

class StateOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("roster-state-open-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    config_.state_path = (dir_ / "roster.db").string();
    config_.state_key_file = (dir_ / "roster.key").string();
  }
  void TearDown() override {
    unsetenv("ROSTER_TEST_STATE_KEY");
    std::filesystem::remove_all(dir_);
  }
  bool Exists(const std::string& path) { return std::filesystem::exists(path); }

  std::filesystem::path dir_;
  Config config_;
};

TEST_F(StateOpenTest, AFirstSyncCreatesThePrivateKeyFileAndSaysSo) {
  std::vector<std::string> notes;
  auto store = OpenState(config_, StateUse::kSync, &notes);
  ASSERT_TRUE(store.ok()) << store.error().message;
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("created the state's key in " + config_.state_key_file),
            std::string::npos);
  struct stat st {};
  ASSERT_EQ(stat(config_.state_key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE((*store)->OpenCollection({"r", "t", "alice"}).ok());
  store->reset();
  notes.clear();
  store = OpenState(config_, StateUse::kSync, &notes);  // the key is used, not made again
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_TRUE(notes.empty());
  EXPECT_TRUE((*store)->FindCollection({"r", "t", "alice"}).ok());
}

TEST_F(StateOpenTest, APlanCreatesNoKeyAndNoState) {
  std::vector<std::string> notes;
  auto store = OpenState(config_, StateUse::kReading, &notes);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_TRUE(notes.empty());
  EXPECT_FALSE(Exists(config_.state_key_file));
  EXPECT_FALSE(Exists(config_.state_path));
}

TEST_F(StateOpenTest, AMissingKeyForASealedStateIsAnErrorThatSaysWhatToDo) {
  ASSERT_TRUE(OpenState(config_, StateUse::kSync, nullptr).ok());
  std::filesystem::remove(config_.state_key_file);
  for (StateUse use : {StateUse::kSync, StateUse::kReading}) {
    auto store = OpenState(config_, use, nullptr);
    ASSERT_FALSE(store.ok());
    EXPECT_NE(store.error().message.find("is encrypted, but its key file " +
                                         config_.state_key_file + " is missing"),
              std::string::npos)
        << store.error().message;
    EXPECT_NE(store.error().message.find("restore the key"), std::string::npos);
  }
  EXPECT_FALSE(Exists(config_.state_key_file));  // no new key over a sealed state
}

TEST_F(StateOpenTest, AnotherKeyIsRefusedNamingWhereItCameFrom) {
  ASSERT_TRUE(OpenState(config_, StateUse::kSync, nullptr).ok());
  std::filesystem::remove(config_.state_key_file);
  ASSERT_TRUE(crypto::CreateKeyFile(config_.state_key_file).ok());
  auto store = OpenState(config_, StateUse::kSync, nullptr);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("sealed under another key"), std::string::npos);
  EXPECT_NE(store.error().message.find("(the key came from key file " + config_.state_key_file),
            std::string::npos)
      << store.error().message;
}

TEST_F(StateOpenTest, KeyEnvMustBeSetForASync) {
  config_.state_key_env = "ROSTER_TEST_STATE_KEY";
  auto store = OpenState(config_, StateUse::kSync, nullptr);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("ROSTER_TEST_STATE_KEY ([state] key_env) holds no key"),
            std::string::npos)
      << store.error().message;
  EXPECT_FALSE(Exists(config_.state_key_file));
  EXPECT_TRUE(OpenState(config_, StateUse::kReading, nullptr).ok());  // a plan of nothing

  const crypto::Secret key = crypto::FormatKey(crypto::GenerateKey());
  setenv("ROSTER_TEST_STATE_KEY", std::string(key.view()).c_str(), 1);
  store = OpenState(config_, StateUse::kSync, nullptr);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_FALSE(Exists(config_.state_key_file));
}

// roster doctor says whether the next sync can open the state, and why not.
TEST_F(StateOpenTest, DoctorReportsTheKeyAndTheStateAndChangesNothing) {
  auto finding = [&]() -> Finding {
    for (const Finding& f : RunDoctor(config_).findings) {
      if (f.subject == "state " + config_.state_path) return f;
    }
    ADD_FAILURE() << "no finding about the state";
    return {};
  };
  Finding f = finding();
  EXPECT_EQ(f.level, Finding::Level::kWarning);
  EXPECT_NE(f.text.find("the first sync creates key file"), std::string::npos) << f.text;
  EXPECT_FALSE(Exists(config_.state_key_file));

  ASSERT_TRUE(OpenState(config_, StateUse::kSync, nullptr).ok());
  f = finding();
  EXPECT_EQ(f.level, Finding::Level::kOk);
  EXPECT_NE(f.text.find("sealed, and opens with the key (id 1)"), std::string::npos) << f.text;

  std::filesystem::permissions(config_.state_key_file, std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  f = finding();
  EXPECT_EQ(f.level, Finding::Level::kFailed);
  EXPECT_NE(f.text.find("chmod 600"), std::string::npos) << f.text;

  std::filesystem::remove(config_.state_key_file);
  ASSERT_TRUE(crypto::CreateKeyFile(config_.state_key_file).ok());
  f = finding();
  EXPECT_EQ(f.level, Finding::Level::kFailed);
  EXPECT_NE(f.text.find("sealed under another key"), std::string::npos) << f.text;

  std::filesystem::remove(config_.state_key_file);
  f = finding();
  EXPECT_EQ(f.level, Finding::Level::kFailed);
  EXPECT_NE(f.text.find("restore the key"), std::string::npos) << f.text;
  EXPECT_FALSE(Exists(config_.state_key_file));
}

}  // namespace
}  // namespace roster
