#include "config/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>

namespace roster {
namespace {

constexpr const char* kExample = R"([state]
path = "roster.db"

[sources.staff]
type = "csv"            # or "vcard-dir"
path = "staff.csv"
key = "id"
[sources.staff.columns]
given_name = "first_name"
family_name = "last_name"
email = "email"
mobile = "mobile"
work_phone = "phone"
organization = "company"
department = "department"
title = "title"

[targets.dav]
type = "carddav"
url = "http://127.0.0.1:5232/"
username = "roster"
password_env = "ROSTER_DAV_PASSWORD"
users = ["alice", "bob"]

[[rules]]
name = "company"
source = "staff"
target = "dav"
addressbook = "Company Contacts"
filter = "department != 'Contractors'"
max_delete_percent = 20
)";

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

std::string ErrorOf(const std::string& text) {
  auto c = ParseConfig(text, "/etc/roster/roster.toml");
  EXPECT_FALSE(c.ok());
  return c.ok() ? "" : c.error().message;
}

TEST(Config, TheDocumentedExampleLoads) {
  auto c = ParseConfig(kExample, "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->state_path, "/etc/roster/roster.db");
  const SourceConfig& s = c->sources.at("staff");
  EXPECT_EQ(s.path, "/etc/roster/staff.csv");
  EXPECT_EQ(s.key, "id");
  EXPECT_EQ(s.columns.at("given_name"), "first_name");
  const TargetConfig& t = c->targets.at("dav");
  EXPECT_EQ(t.users, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(t.password_env, "ROSTER_DAV_PASSWORD");
  ASSERT_EQ(c->rules.size(), 1u);
  EXPECT_EQ(c->rules[0].addressbook, "Company Contacts");
  EXPECT_EQ(c->rules[0].max_delete_percent, 20);
}

TEST(Config, UnknownKeyIsNamedWithItsLine) {
  std::string e = ErrorOf(Replace(kExample, "key = \"id\"", "key = \"id\"\ncolour = \"red\""));
  EXPECT_EQ(e, "/etc/roster/roster.toml:8: unknown key \"colour\" in [sources.staff]");
}

TEST(Config, UnknownKeyInRuleAndTopLevel) {
  EXPECT_NE(ErrorOf(std::string(kExample) + "max_delete = 5\n").find("unknown key \"max_delete\""),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(std::string(kExample) + "[extra]\n").find("unknown key \"extra\" in the top level"),
      std::string::npos);
}

TEST(Config, MissingKeyIsNamed) {
  std::string e = ErrorOf(Replace(kExample, "addressbook = \"Company Contacts\"\n", ""));
  EXPECT_NE(e.find("missing key \"addressbook\" in [[rules]] \"company\""), std::string::npos) << e;
}

TEST(Config, WrongTypeIsNamedWithItsLine) {
  std::string e =
      ErrorOf(Replace(kExample, "max_delete_percent = 20", "max_delete_percent = \"20\""));
  EXPECT_EQ(
      e,
      "/etc/roster/roster.toml:31: max_delete_percent in [[rules]] \"company\" must be an integer");
  e = ErrorOf(Replace(kExample, "users = [\"alice\", \"bob\"]", "users = \"alice\""));
  EXPECT_NE(e.find("users in [targets.dav] must be an array of strings"), std::string::npos) << e;
}

TEST(Config, UnknownContactFieldIsNamed) {
  std::string e = ErrorOf(Replace(kExample, "title = \"title\"", "job = \"title\""));
  EXPECT_NE(e.find("unknown contact field \"job\""), std::string::npos) << e;
}

TEST(Config, SyntaxErrorGivesLine) {
  std::string e = ErrorOf("[state\npath = 1\n");
  EXPECT_EQ(e.rfind("/etc/roster/roster.toml:1:", 0), 0u) << e;
}

TEST(Config, PasswordInTheFileIsRefused) {
  std::string e = ErrorOf(
      Replace(kExample, "username = \"roster\"", "username = \"roster\"\npassword = \"hunter2\""));
  EXPECT_NE(e.find("must not hold a password"), std::string::npos) << e;
  EXPECT_EQ(e.find("hunter2"), std::string::npos);
}

TEST(Config, PasswordOfAnyTypeIsRefusedNotRead) {
  // Found by config_fuzz: a password that is not a string threw.
  for (const char* value : {"20", "\"\"", "[1]", "{ a = 1 }"}) {
    std::string e = ErrorOf(Replace(kExample, "username = \"roster\"",
                                    std::string("username = \"roster\"\npassword = ") + value));
    EXPECT_NE(e.find("must not hold a password"), std::string::npos) << value << ": " << e;
  }
}

TEST(Config, BadFilterIsReportedWithColumn) {
  std::string e = ErrorOf(Replace(kExample, "department != 'Contractors'", "department != "));
  EXPECT_NE(e.find("rule company: filter: column"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("/etc/roster/roster.toml:30: ", 0), 0u) << e;  // the filter's own line
}

TEST(Config, RulesMustNameDefinedSourcesAndTargets) {
  std::string e = ErrorOf(Replace(kExample, "source = \"staff\"", "source = \"people\""));
  EXPECT_NE(e.find("names source \"people\", which is not defined"), std::string::npos) << e;
}

TEST(Config, PasswordComesFromTheEnvironment) {
  auto c = ParseConfig(kExample, "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok());
  unsetenv("ROSTER_DAV_PASSWORD");
  auto missing = ReadTargetPassword(c->targets.at("dav"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message,
            "target dav: environment variable ROSTER_DAV_PASSWORD is not set");
  setenv("ROSTER_DAV_PASSWORD", "s3cret", 1);
  EXPECT_EQ(*ReadTargetPassword(c->targets.at("dav")), "s3cret");
  unsetenv("ROSTER_DAV_PASSWORD");
}

constexpr const char* kDirectory = R"([sources.dir]
type = "ldap"
url = "ldaps://ldap.example.org/"
ca_file = "ca.pem"
bind_dn = "cn=roster,ou=Services,dc=example,dc=org"
password_file = "ldap.secret"
base_dn = "ou=People,dc=example,dc=org"
schema = "ad"
attributes = { note = "info", photo = "jpegPhoto" }
extra_attributes = ["employeeType"]
phone_region = "GB"
phone_format = "international"
photo_max_bytes = 65536
opt_out_attribute = "extensionAttribute1"

[sources.hr]
type = "csv"
path = "hr.csv"
key = "id"
columns = { email = "mail", mobile = "mobile" }

[targets.dav]
type = "carddav"
url = "http://127.0.0.1:5232/"

[[rules]]
name = "company"
sources = ["dir", "hr"]
target = "dav"
addressbook = "Company"
filter = "employeeType != 'Contractor'"
users_from = { source = "dir", group = "cn=Sales,ou=Groups,dc=example,dc=org", attribute = "uid" }
fields = { note = "keep_user", mobile = "if_blank" }
adopt = "merge"
offboard = "keep"
)";

TEST(Config, DirectorySourcesAndRuleOptionsLoad) {
  auto c = ParseConfig(kDirectory, "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const SourceConfig& dir = c->sources.at("dir");
  EXPECT_EQ(dir.type, SourceType::kLdap);
  EXPECT_EQ(dir.ca_file, "/etc/roster/ca.pem");
  EXPECT_EQ(dir.password_file, "/etc/roster/ldap.secret");
  EXPECT_EQ(dir.schema, "ad");
  EXPECT_EQ(dir.attributes.at("photo"), "jpegPhoto");
  EXPECT_EQ(dir.exclude.text(), kDefaultLdapExclude);  // disabled and hidden entries, by default
  EXPECT_EQ(dir.phone_region, "GB");
  EXPECT_EQ(dir.phone_format, PhoneFormat::kInternational);
  EXPECT_EQ(dir.photo_max_bytes, 65536);
  EXPECT_EQ(c->sources.at("hr").type, SourceType::kCsv);
  EXPECT_EQ(c->sources.at("hr").exclude.text(), "");
  EXPECT_EQ(c->sources.at("hr").phone_format, PhoneFormat::kE164);
  const RuleConfig& rule = c->rules.at(0);
  EXPECT_EQ(rule.sources, (std::vector<std::string>{"dir", "hr"}));
  ASSERT_TRUE(rule.users_from.has_value());
  EXPECT_EQ(rule.users_from->attribute, "uid");
  EXPECT_EQ(rule.filter.text(), "employeeType != 'Contractor'");
  EXPECT_EQ(rule.users_exclude.text(), kDefaultUsersExclude);
  EXPECT_EQ(rule.fields.ModeOf("note"), FieldMode::kKeepUser);
  EXPECT_EQ(rule.fields.ModeOf("mobile"), FieldMode::kIfBlank);
  EXPECT_EQ(rule.fields.ModeOf("email"), FieldMode::kOverwrite);
  EXPECT_EQ(rule.adopt, AdoptMode::kMerge);
  EXPECT_FALSE(rule.offboard_remove);
  EXPECT_FALSE(rule.include_self);
}

TEST(Config, ValuesComeOutTypedWithTheirDefaults) {
  auto c = ParseConfig(kExample, "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const SourceConfig& s = c->sources.at("staff");
  EXPECT_EQ(s.type, SourceType::kCsv);
  EXPECT_EQ(s.delimiter, ',');
  EXPECT_EQ(s.exclude.text(), "");  // no exclusions but ldap's
  EXPECT_EQ(s.phone_region, "");
  EXPECT_EQ(s.phone_format, PhoneFormat::kE164);
  const TargetConfig& t = c->targets.at("dav");
  EXPECT_EQ(t.type, TargetType::kCardDav);
  EXPECT_EQ(t.vcard_version, VCardVersion::k30);
  const RuleConfig& rule = c->rules.at(0);
  EXPECT_EQ(rule.filter.text(), "department != 'Contractors'");
  EXPECT_EQ(rule.filter.Fields(), (std::vector<std::string>{"department"}));
  EXPECT_EQ(rule.users_exclude.text(), kDefaultUsersExclude);
  EXPECT_TRUE(rule.fields.empty());
  EXPECT_EQ(rule.adopt, AdoptMode::kNever);
  EXPECT_TRUE(rule.offboard_remove);
}

TEST(Config, EachChoiceBecomesItsValue) {
  auto load = [](const std::string& from, const std::string& to) {
    auto c = ParseConfig(Replace(kExample, from, to), "/etc/roster/roster.toml");
    EXPECT_TRUE(c.ok()) << to << ": " << c.error().message;
    return c.ok() ? std::move(c).value() : Config{};
  };
  const std::string key = "key = \"id\"";
  const std::pair<const char*, PhoneFormat> formats[] = {
      {"e164", PhoneFormat::kE164},
      {"international", PhoneFormat::kInternational},
      {"national", PhoneFormat::kNational},
      {"as_is", PhoneFormat::kAsIs},
  };
  for (const auto& [name, format] : formats) {
    Config c = load(key, key + "\nphone_format = \"" + name + "\"");
    EXPECT_EQ(c.sources["staff"].phone_format, format) << name;
  }
  EXPECT_EQ(load(key, key + "\ndelimiter = \";\"").sources["staff"].delimiter, ';');
  EXPECT_EQ(load("users = [", "vcard_version = \"4.0\"\nusers = [").targets["dav"].vcard_version,
            VCardVersion::k40);
  Config dir = load("[targets.dav]",
                    "[sources.people]\ntype = \"vcard-dir\"\npath = \"people\"\n[targets.dav]");
  EXPECT_EQ(dir.sources["people"].type, SourceType::kVCardDir);
  EXPECT_EQ(dir.sources["people"].path, "/etc/roster/people");
  Config rule = load("max_delete_percent = 20",
                     "max_delete_percent = 20\nadopt = \"merge\"\noffboard = \"remove\"\n"
                     "users_exclude = \"department == 'Board'\"\n"
                     "fields = { photo = \"keep_user\", email = \"overwrite\" }");
  ASSERT_EQ(rule.rules.size(), 1u);
  EXPECT_EQ(rule.rules[0].adopt, AdoptMode::kMerge);
  EXPECT_TRUE(rule.rules[0].offboard_remove);
  EXPECT_EQ(rule.rules[0].users_exclude.text(), "department == 'Board'");
  EXPECT_EQ(rule.rules[0].fields.ModeOf("photo"), FieldMode::kKeepUser);
  EXPECT_EQ(rule.rules[0].fields.ModeOf("email"), FieldMode::kOverwrite);
}

TEST(Config, AnUnknownPhoneRegionIsNamedWithItsLine) {
  auto error = [](const std::string& from, const std::string& to) {
    auto c = ParseConfig(Replace(kDirectory, from, to), "roster.toml");
    return c.ok() ? std::string("loaded") : c.error().message;
  };
  EXPECT_EQ(error("phone_region = \"GB\"", "phone_region = \"XX\""),
            "roster.toml:11: phone_region in [sources.dir]: \"XX\" is not a region libphonenumber "
            "knows (use a two-letter country code such as GB or US)");
  EXPECT_EQ(error("key = \"id\"", "key = \"id\"\nphone_region = \"Britain\"")
                .rfind("roster.toml:20: phone_region in [sources.hr]: \"Britain\" is not", 0),
            0u);
  // libphonenumber's own spelling is not required: the region stays as written.
  auto lower = ParseConfig(Replace(kDirectory, "phone_region = \"GB\"", "phone_region = \"gb\""),
                           "roster.toml");
  ASSERT_TRUE(lower.ok()) << lower.error().message;
  EXPECT_EQ(lower->sources.at("dir").phone_region, "gb");
  // Any other mistake in the file is still the one reported.
  EXPECT_EQ(error("phone_region = \"GB\"", "phone_region = \"XX\"\ncolour = \"red\""),
            "roster.toml:12: unknown key \"colour\" in [sources.dir]");
}

TEST(Config, DirectoryMistakesAreNamed) {
  auto error = [](const std::string& from, const std::string& to) {
    auto c = ParseConfig(Replace(kDirectory, from, to), "roster.toml");
    return c.ok() ? std::string("loaded") : c.error().message;
  };
  EXPECT_EQ(error("url = \"ldaps://ldap.example.org/\"", "url = \"http://ldap/\""),
            "roster.toml:1: url in [sources.dir] must start with ldap:// or ldaps://");
  EXPECT_EQ(error("schema = \"ad\"", "schema = \"novell\""),
            "roster.toml:8: schema in [sources.dir] must be \"inetorgperson\" or \"ad\", not "
            "\"novell\"");
  EXPECT_NE(error("note = \"info\"", "notes = \"info\"").find("unknown contact field \"notes\""),
            std::string::npos);
  EXPECT_NE(error("note = \"keep_user\"", "note = \"keep\"")
                .find("fields.note of rule company must be \"overwrite\", \"if_blank\" or "
                      "\"keep_user\", not \"keep\""),
            std::string::npos);
  EXPECT_NE(error("adopt = \"merge\"", "adopt = \"always\"")
                .find("adopt in [[rules]] \"company\" must be \"never\" or \"merge\""),
            std::string::npos);
  EXPECT_NE(error("source = \"dir\", group", "source = \"hr\", group").find("not an ldap source"),
            std::string::npos);
  EXPECT_NE(error("group = \"cn=Sales,ou=Groups,dc=example,dc=org\", ", "")
                .find("needs either group or filter"),
            std::string::npos);
  EXPECT_NE(
      error("users_from = { source = \"dir\", group = \"cn=Sales,ou=Groups,dc=example,dc=org\", "
            "attribute = \"uid\" }",
            "")
          .find("has no target users"),
      std::string::npos);
  EXPECT_NE(error("phone_region = \"GB\"", "phone_region = \"GB\"\nexclude = \"bit(uac\"")
                .find("exclude in [sources.dir]: filter: column 8"),
            std::string::npos);
  EXPECT_NE(error("password_file = \"ldap.secret\"", "password = \"hunter2\"")
                .find("must not hold a password"),
            std::string::npos);
  EXPECT_NE(error("sources = [\"dir\", \"hr\"]", "sources = [\"dir\", \"dir\"]")
                .find("lists source \"dir\" twice"),
            std::string::npos);
}

}  // namespace

TEST(Config, SafetyOptionsLoadWithTheirDefaults) {
  auto c = ParseConfig(kExample, "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->run_timeout_seconds, 3600);
  EXPECT_EQ(c->rules[0].max_update_percent, 50);
  EXPECT_EQ(c->targets.at("dav").max_retry_after_seconds, 60);
  auto set = ParseConfig("run_timeout_seconds = 600\n" +
                             Replace(Replace(kExample, "max_delete_percent = 20",
                                             "max_delete_percent = 20\nmax_update_percent = 80"),
                                     "users = [\"alice\", \"bob\"]",
                                     "users = [\"alice\", \"bob\"]\nmax_retry_after_seconds = 5"),
                         "/etc/roster/roster.toml");
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->run_timeout_seconds, 600);
  EXPECT_EQ(set->rules[0].max_update_percent, 80);
  EXPECT_EQ(set->targets.at("dav").max_retry_after_seconds, 5);
  EXPECT_NE(ErrorOf(Replace(kExample, "max_delete_percent = 20", "max_update_percent = 101"))
                .find("max_update_percent in [[rules]] \"company\" must be between 0 and 100"),
            std::string::npos);
}

TEST(Config, CredentialsInAUrlAreRefused) {
  EXPECT_NE(ErrorOf(Replace(kExample, "http://127.0.0.1:5232/", "http://roster:hunter2@127.0.0.1/"))
                .find("must not carry a user name or password"),
            std::string::npos);
}

TEST(Config, PasswordsInClearOverHttpAreRefusedUnlessLoopbackOrAllowed) {
  std::string remote = Replace(kExample, "http://127.0.0.1:5232/", "http://dav.example.org/");
  EXPECT_NE(ErrorOf(remote).find("would send its password in clear over http://"),
            std::string::npos);
  auto allowed = ParseConfig(
      Replace(remote, "username = \"roster\"", "username = \"roster\"\nallow_insecure = true"),
      "/etc/roster/roster.toml");
  ASSERT_TRUE(allowed.ok()) << allowed.error().message;
  ASSERT_EQ(allowed->warnings.size(), 1u);
  EXPECT_NE(allowed->warnings[0].find("allow_insecure"), std::string::npos);
  // No password, or https, or loopback: nothing to say.
  EXPECT_TRUE(ParseConfig(Replace(remote, "password_env = \"ROSTER_DAV_PASSWORD\"\n", ""),
                          "/etc/roster/roster.toml")
                  .ok());
  EXPECT_TRUE(ParseConfig(Replace(kExample, "http://127.0.0.1:5232/", "https://dav.example.org/"),
                          "/etc/roster/roster.toml")
                  .ok());
  for (const char* url : {"http://localhost:5232/", "http://127.1.2.3/", "http://[::1]:80/"}) {
    EXPECT_TRUE(IsLoopbackUrl(url)) << url;
  }
  for (const char* url : {"http://127.0.0.1.example.org/", "http://10.0.0.1/", "http://[::2]/",
                          "http://localhost.example.org/", "http://1270.0.0.1/"}) {
    EXPECT_FALSE(IsLoopbackUrl(url)) << url;
  }
}

class SecretFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/roster-config-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string Write(const std::string& name, const std::string& text, int mode) {
    std::string path = dir_ + "/" + name;
    FILE* f = fopen(path.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
    chmod(path.c_str(), mode);
    return path;
  }
  std::string dir_;
};

TEST_F(SecretFiles, ASecretFileOthersCanReadIsRefused) {
  TargetConfig t;
  t.name = "dav";
  t.password_file = Write("pw", "hunter2\n", 0644);
  auto loose = ReadTargetPassword(t);
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.error().message.find("has mode 0644"), std::string::npos);
  EXPECT_EQ(loose.error().message.find("hunter2"), std::string::npos);
  for (int mode : {0600, 0400}) {
    chmod(t.password_file.c_str(), mode);
    auto ok = ReadTargetPassword(t);
    ASSERT_TRUE(ok.ok()) << ok.error().message;
    EXPECT_EQ(*ok, "hunter2");
  }
}

TEST_F(SecretFiles, PerUserCredentialsAreReadFromAPrivateFile) {
  TargetConfig t;
  t.name = "cyrus";
  t.credentials_file = Write("users", "# one line per user\nalice:pa:ss\n\nbob:s3cret\r\n", 0600);
  auto creds = ReadTargetCredentials(t);
  ASSERT_TRUE(creds.ok()) << creds.error().message;
  EXPECT_EQ(creds->size(), 2u);
  EXPECT_EQ(creds->at("alice"), "pa:ss");
  EXPECT_EQ(creds->at("bob"), "s3cret");
  t.credentials_file = Write("bad", "alice:one\nno-colon-hunter2\n", 0600);
  auto bad = ReadTargetCredentials(t);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find(":2: expected USER:PASSWORD"), std::string::npos);
  EXPECT_EQ(bad.error().message.find("hunter2"), std::string::npos);
  t.credentials_file = Write("loose", "alice:one\n", 0640);
  EXPECT_FALSE(ReadTargetCredentials(t).ok());
  std::string both = Replace(kExample, "username = \"roster\"", "credentials_file = \"users\"");
  EXPECT_NE(ErrorOf(both).find("has both credentials_file"), std::string::npos);
}

}  // namespace roster
