#include "gdpr/register.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace roster::gdpr {
namespace {

class RegisterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("roster-register-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "erasures.jsonl").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Read() const {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void Write(const std::string& text) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
  }

  static SourceRecord Person(const std::string& key, const std::string& mail) {
    SourceRecord r;
    r.key = key;
    r.contact.formatted_name = "Someone";
    r.contact.emails.push_back({mail, {}});
    return r;
  }

  std::filesystem::path dir_;
  std::string path_;
  crypto::Key key_ = crypto::GenerateKey();
  std::chrono::system_clock::time_point now_ = std::chrono::system_clock::now();
};

TEST_F(RegisterTest, AMissingRegisterIsEmptyAndNotThere) {
  auto reg = ErasureRegister::Load(path_, key_);
  ASSERT_TRUE(reg.ok()) << reg.error().message;
  EXPECT_FALSE(reg->exists());
  EXPECT_EQ(reg->size(), 0u);
  EXPECT_EQ(reg->Fingerprint(), "");
  EXPECT_FALSE(reg->Erased("staff", Person("k1", "ann@example.com")));
  EXPECT_EQ(reg->generation(), 0);
}

TEST_F(RegisterTest, ErasedPeopleAreFoundByAnyAddressKeyOrNameAndTheFileHoldsNoneInClear) {
  auto reg = ErasureRegister::Load(path_, key_);
  ASSERT_TRUE(reg.ok());
  SourceRecord ann = Person("k1", "ann@example.com");
  ann.contact.formatted_name = "Ann Lee";
  ann.attributes["dn"] = {"cn=ann lee,dc=example"};
  EXPECT_TRUE(reg->Add(" Ann@Example.COM ", ErasureIds("staff", ann), now_));
  ASSERT_TRUE(reg->Save().ok());
  const std::string text = Read();
  for (const char* clear : {"ann", "Ann", "k1", "example", "lee", "staff"}) {
    EXPECT_EQ(text.find(clear), std::string::npos) << clear << " in " << text;
  }
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);

  auto back = ErasureRegister::Load(path_, key_);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(back->exists());
  EXPECT_EQ(back->size(), 1u);
  EXPECT_TRUE(back->Contains("ann@example.com"));
  EXPECT_EQ(back->generation(), 1);
  EXPECT_TRUE(back->Erased("staff", Person("other-key", "ANN@example.com")));
  EXPECT_TRUE(back->Erased("staff", Person("k1", "new-address@example.com")));
  // A key is a key of its source: row k1 of another source is someone else.
  EXPECT_FALSE(back->Erased("hr", Person("k1", "new-address@example.com")));
  // Only the address named is hers alone; a DN reused by a new hire is not.
  SourceRecord by_dn = Person("k9", "x@example.com");
  by_dn.attributes["dn"] = {"CN=Ann Lee, DC=Example"};
  EXPECT_FALSE(back->Erased("staff", by_dn));
  EXPECT_TRUE(back->ErasedReference("cn=Ann Lee,dc=example"));
  EXPECT_FALSE(back->ErasedReference("cn=Bob,dc=example"));
  EXPECT_TRUE(back->ErasedName(" ann LEE "));
  EXPECT_FALSE(back->ErasedName("Ann"));
  EXPECT_FALSE(back->Erased("staff", Person("k2", "bob@example.com")));
  EXPECT_NE(back->Fingerprint(), "");
  // Written again unchanged: the next generation, the same list.
  const std::string fingerprint = back->Fingerprint();
  ASSERT_TRUE(back->Save().ok());
  EXPECT_EQ(back->generation(), 2);
  EXPECT_EQ(back->Fingerprint(), fingerprint);
  EXPECT_FALSE(back->AddIds("ann@example.com", ErasureIds("staff", ann)));
  EXPECT_TRUE(back->AddIds("ann@example.com", {ErasureKeyId("hr", "77")}));
  EXPECT_TRUE(back->Erased("hr", Person("77", "z@example.com")));
  EXPECT_FALSE(back->AddIds("nobody@example.com", {ErasureKeyId("hr", "78")}));
}

TEST_F(RegisterTest, AddingTwiceMergesAndRemovingLetsThemBack) {
  auto reg = ErasureRegister::Load(path_, key_);
  ASSERT_TRUE(reg.ok());
  EXPECT_TRUE(reg->Add("ann@example.com", {ErasureKeyId("s", "k1")}, now_));
  const std::string once = reg->Fingerprint();
  EXPECT_FALSE(reg->Add("ANN@example.com", {ErasureKeyId("s", "k2")}, now_));
  EXPECT_EQ(reg->size(), 1u);
  EXPECT_NE(reg->Fingerprint(), once);
  EXPECT_TRUE(reg->Erased("s", Person("k2", "z@example.com")));
  EXPECT_TRUE(reg->Remove("ann@example.com"));
  EXPECT_FALSE(reg->Remove("ann@example.com"));
  EXPECT_FALSE(reg->Erased("s", Person("k1", "ann@example.com")));
  ASSERT_TRUE(reg->Save().ok());
  auto back = ErasureRegister::Load(path_, key_);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(back->exists());
  EXPECT_EQ(back->size(), 0u);
  EXPECT_EQ(back->Fingerprint(), "");
}

TEST_F(RegisterTest, AChangedCutOrForeignRegisterIsRefusedNamingTheFile) {
  auto reg = ErasureRegister::Load(path_, key_);
  ASSERT_TRUE(reg.ok());
  reg->Add("ann@example.com", {}, now_);
  reg->Add("bob@example.com", {}, now_);
  ASSERT_TRUE(reg->Save().ok());
  const std::string good = Read();

  auto expect_refused = [&](const std::string& text, const char* what) {
    Write(text);
    auto r = ErasureRegister::Load(path_, key_);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_NE(r.error().message.find("erasure register " + path_), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("nothing was done"), std::string::npos);
  };
  // A line removed (someone un-erased by hand): the closing hash no longer matches.
  {
    std::string text = good;
    size_t second = text.find('\n') + 1;
    text.erase(second, text.find('\n', second) + 1 - second);
    expect_refused(text, "line removed");
  }
  expect_refused(good.substr(0, good.rfind("{\"mac\"")), "closing hash cut");
  expect_refused(good.substr(0, good.size() / 2), "cut in the middle");
  expect_refused("", "empty");
  expect_refused("not json\n", "garbage");
  {
    std::string text = good;
    text[text.find("subject") + 11] ^= 1;
    expect_refused(text, "one byte changed");
  }
  Write(good);
  auto other = ErasureRegister::Load(path_, crypto::GenerateKey());
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message.find("not the one"), std::string::npos);
  EXPECT_TRUE(ErasureRegister::Load(path_, key_).ok());
}

TEST_F(RegisterTest, AddressesAreRecognised) {
  EXPECT_TRUE(IsAddress("ann@example.com"));
  EXPECT_TRUE(IsAddress(" ann@example.com "));
  EXPECT_FALSE(IsAddress("ann"));
  EXPECT_FALSE(IsAddress("@example.com"));
  EXPECT_FALSE(IsAddress("ann@"));
  EXPECT_FALSE(IsAddress("a@b@c"));
  EXPECT_FALSE(IsAddress("ann lee@example.com"));
  EXPECT_EQ(NormalizeAddress("  Ann@Example.COM\n"), "ann@example.com");
  EXPECT_EQ(NormalizeReference(" CN=Ann Lee , OU=People,DC=x "), "cn=ann lee,ou=people,dc=x");
}

}  // namespace
}  // namespace roster::gdpr
