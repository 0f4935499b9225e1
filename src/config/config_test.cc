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

// [state] as issue 10 writes it: the key, the cache, retention.
TEST(Config, StateKeysLoadAsWritten) {
  auto c = ParseConfig(kExample, "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->state_key_file, "/etc/roster/roster.key");  // the default
  EXPECT_EQ(c->state_key_env, "");
  EXPECT_EQ(c->cache, CacheMode::kEncrypted);
  EXPECT_EQ(c->retention_days, 60);
  EXPECT_FALSE(c->purge_after_sync);

  const std::string state = R"([state]
path = "roster.db"
key_file = "keys/roster.key"
cache = "none"
retention_days = 30
purge_after_sync = true
)";
  c = ParseConfig(Replace(kExample, "[state]\npath = \"roster.db\"\n", state),
                  "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->state_key_file, "/etc/roster/keys/roster.key");
  EXPECT_EQ(c->cache, CacheMode::kNone);
  EXPECT_EQ(c->retention_days, 30);
  EXPECT_TRUE(c->purge_after_sync);

  c = ParseConfig(Replace(kExample, "path = \"roster.db\"",
                          "path = \"roster.db\"\nkey_env = \"ROSTER_STATE_KEY\""),
                  "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->state_key_env, "ROSTER_STATE_KEY");
  EXPECT_EQ(c->state_key_file, "");
}

TEST(Config, AuditLoadsAsWrittenAndDefaultsBesideTheState) {
  auto c = ParseConfig(Replace(kExample, "path = \"roster.db\"", "path = \"var/roster.db\""),
                       "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->audit_path, "/etc/roster/var/roster-audit.jsonl");
  EXPECT_EQ(c->audit_retention_days, 400);
  c = ParseConfig(
      std::string(kExample) + "\n[audit]\npath = \"log/audit.jsonl\"\nretention_days = 30\n",
      "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->audit_path, "/etc/roster/log/audit.jsonl");
  EXPECT_EQ(c->audit_retention_days, 30);
  auto with = [](const std::string& lines) {
    return ErrorOf(std::string(kExample) + "\n[audit]\n" + lines + "\n");
  };
  EXPECT_NE(with("path = \"\"").find("path in [audit] must name a file"), std::string::npos);
  EXPECT_NE(
      with("retention_days = 0").find("retention_days in [audit] must be between 1 and 36500"),
      std::string::npos);
  EXPECT_NE(with("keep = 3").find("keep"), std::string::npos);
}

TEST(Config, TheErasureRegisterDefaultsBesideTheState) {
  auto c = ParseConfig(Replace(kExample, "path = \"roster.db\"", "path = \"var/roster.db\""),
                       "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->erasure_register, "/etc/roster/var/roster-erasures.jsonl");
  c = ParseConfig(std::string(kExample) + "\n[gdpr]\nregister = \"keep/erased.jsonl\"\n",
                  "/etc/roster/roster.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->erasure_register, "/etc/roster/keep/erased.jsonl");
  auto with = [](const std::string& lines) {
    return ErrorOf(std::string(kExample) + "\n[gdpr]\n" + lines + "\n");
  };
  EXPECT_NE(with("register = \"\"").find("register in [gdpr] must name a file"), std::string::npos);
  EXPECT_NE(with("path = \"x\"").find("path"), std::string::npos);
}

TEST(Config, StateKeyMistakesAreNamed) {
  auto with = [](const std::string& lines) {
    return ErrorOf(Replace(kExample, "path = \"roster.db\"", "path = \"roster.db\"\n" + lines));
  };
  EXPECT_EQ(with("key_file = \"k\"\nkey_env = \"K\""),
            "/etc/roster/roster.toml:4: [state] has key_file and key_env; give only one of them");
  EXPECT_EQ(with("key_env = \"not a name\""),
            "/etc/roster/roster.toml:3: key_env in [state] must be an environment variable's name");
  EXPECT_EQ(with("key_file = \"\""),
            "/etc/roster/roster.toml:3: key_file in [state] must name a file");
  EXPECT_EQ(with("cache = \"plain\""),
            "/etc/roster/roster.toml:3: cache in [state] must be \"encrypted\" or \"none\", not "
            "\"plain\"");
  EXPECT_EQ(with("retention_days = 0"),
            "/etc/roster/roster.toml:3: retention_days in [state] must be between 1 and 36500");
  EXPECT_EQ(with("purge_after_sync = \"yes\""),
            "/etc/roster/roster.toml:3: purge_after_sync in [state] must be true or false");
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
  EXPECT_NE(error("source = \"dir\", group", "source = \"hr\", group")
                .find("which is not an ldap or graph source"),
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

namespace roster {
namespace {

// Issue 9's example, exactly as the documentation gives it.
constexpr const char* kGraphExample =
    R"([tenants.contoso]                      # one Entra app registration
tenant_id = "contoso.onmicrosoft.com"  # or the directory's GUID
client_id = "00000000-0000-0000-0000-000000000000"
certificate_file = "roster-app.pem"    # PEM: certificate and private key (recommended), or:
# client_secret_file = "graph.secret"  # or client_secret_env = "ROSTER_GRAPH_SECRET"
# authority = "https://login.microsoftonline.com"  # national clouds; an emulator on loopback
# graph_url = "https://graph.microsoft.com"

[sources.gal]
type = "graph"
tenant = "contoso"
read = ["users", "org_contacts"]       # the Global Address List

[sources.partners]
type = "graph-folder"                  # a contact folder of a (shared) mailbox
tenant = "contoso"
mailbox = "partners@contoso.com"
folder = "Partners"

[targets.m365]
type = "graph"
tenant = "contoso"

[[rules]]
name = "gal"
source = "gal"
target = "m365"
addressbook = "Company Contacts"       # the contact folder's name in each mailbox
# placement = "default", category = "Company"  # instead: the main Contacts folder, each managed contact tagged
users_from = { source = "gal", group = "Sales" }   # a group's object id or its display name (an ambiguous name is an error); nested groups count
)";

constexpr const char* kPath = "/etc/roster/roster.toml";

Config GraphConfig(const std::string& text) {
  auto c = ParseConfig(text, kPath);
  EXPECT_TRUE(c.ok()) << c.error().message;
  return c.ok() ? std::move(c).value() : Config{};
}

// The one-line error of a variant of the example.
std::string GraphError(const std::string& from, const std::string& to) {
  std::string e = ErrorOf(Replace(kGraphExample, from, to));
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  return e;
}

TEST(GraphConfig, TheExampleOfIssue9LoadsWithItsDefaults) {
  Config c = GraphConfig(kGraphExample);
  EXPECT_TRUE(c.warnings.empty());
  ASSERT_EQ(c.tenants.size(), 1u);
  const TenantConfig& t = c.tenants.at("contoso");
  EXPECT_EQ(t.name, "contoso");
  EXPECT_EQ(t.tenant_id, "contoso.onmicrosoft.com");
  EXPECT_EQ(t.client_id, "00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(t.certificate_file, "/etc/roster/roster-app.pem");
  EXPECT_EQ(t.client_secret_file, "");
  EXPECT_EQ(t.client_secret_env, "");
  EXPECT_EQ(t.authority, "https://login.microsoftonline.com");
  EXPECT_EQ(t.graph_url, "https://graph.microsoft.com");
  EXPECT_EQ(t.ca_file, "");
  EXPECT_FALSE(t.allow_insecure);
  EXPECT_EQ(t.timeout_seconds, 120);
  EXPECT_EQ(t.max_retry_after_seconds, 60);

  const SourceConfig& gal = c.sources.at("gal");
  EXPECT_EQ(gal.type, SourceType::kGraph);
  EXPECT_EQ(gal.tenant, "contoso");
  EXPECT_TRUE(gal.read_users);
  EXPECT_TRUE(gal.read_org_contacts);
  EXPECT_EQ(gal.exclude.text(), kDefaultGraphExclude);
  EXPECT_EQ(gal.phone_region_attribute, "usageLocation");
  EXPECT_EQ(gal.page_size, 999);
  EXPECT_TRUE(gal.groups.empty());
  EXPECT_TRUE(gal.attributes.empty());

  const SourceConfig& partners = c.sources.at("partners");
  EXPECT_EQ(partners.type, SourceType::kGraphFolder);
  EXPECT_EQ(partners.tenant, "contoso");
  EXPECT_EQ(partners.mailbox, "partners@contoso.com");
  EXPECT_EQ(partners.folder, "Partners");
  EXPECT_EQ(partners.folder_path, (std::vector<std::string>{"Partners"}));
  EXPECT_EQ(partners.exclude.text(), "");
  EXPECT_EQ(partners.phone_region_attribute, "");

  const TargetConfig& m365 = c.targets.at("m365");
  EXPECT_EQ(m365.type, TargetType::kGraph);
  EXPECT_EQ(m365.tenant, "contoso");
  EXPECT_EQ(m365.max_in_flight, 4);
  EXPECT_EQ(m365.max_retry_after_seconds, 600);
  EXPECT_EQ(m365.timeout_seconds, 120);
  EXPECT_TRUE(m365.users.empty());

  ASSERT_EQ(c.rules.size(), 1u);
  const RuleConfig& rule = c.rules[0];
  EXPECT_EQ(rule.addressbook, "Company Contacts");
  EXPECT_FALSE(rule.placement_default);
  EXPECT_EQ(rule.category, "");
  ASSERT_TRUE(rule.users_from.has_value());
  EXPECT_EQ(rule.users_from->source, "gal");
  EXPECT_EQ(rule.users_from->group, "Sales");
  EXPECT_EQ(rule.users_from->filter, "");
  EXPECT_EQ(rule.users_from->attribute, "userPrincipalName");
  EXPECT_EQ(rule.users_exclude.text(), kDefaultGraphUsersExclude);
}

TEST(GraphConfig, TheDefaultExclusionsMeanWhatTheySay) {
  auto matches = [](const char* filter, std::map<std::string, std::string> entry) {
    auto f = Filter::Parse(filter);
    EXPECT_TRUE(f.ok()) << filter;
    return f->Matches([&](std::string_view field) {
      auto it = entry.find(std::string(field));
      return it == entry.end() ? std::vector<std::string>{} : std::vector<std::string>{it->second};
    });
  };
  EXPECT_FALSE(matches(kDefaultGraphExclude, {{"accountEnabled", "true"}, {"userType", "Member"}}));
  EXPECT_TRUE(matches(kDefaultGraphExclude, {{"accountEnabled", "false"}, {"userType", "Member"}}));
  EXPECT_TRUE(matches(kDefaultGraphExclude, {{"accountEnabled", "true"}, {"userType", "Guest"}}));
  EXPECT_FALSE(matches(kDefaultGraphExclude, {}));  // an org contact has neither
  EXPECT_TRUE(matches(kDefaultGraphUsersExclude, {{"accountEnabled", "false"}}));
  EXPECT_FALSE(matches(kDefaultGraphUsersExclude, {{"accountEnabled", "true"}}));
}

TEST(GraphConfig, TheCommentedAlternativesLoadToo) {
  const std::string cert = "certificate_file = \"roster-app.pem\"";
  Config file = GraphConfig(Replace(kGraphExample, cert, "client_secret_file = \"graph.secret\""));
  EXPECT_EQ(file.tenants.at("contoso").client_secret_file, "/etc/roster/graph.secret");
  EXPECT_EQ(file.tenants.at("contoso").certificate_file, "");
  Config env =
      GraphConfig(Replace(kGraphExample, cert, "client_secret_env = \"ROSTER_GRAPH_SECRET\""));
  EXPECT_EQ(env.tenants.at("contoso").client_secret_env, "ROSTER_GRAPH_SECRET");
  Config urls = GraphConfig(
      Replace(kGraphExample, cert,
              cert + "\nauthority = \"https://login.microsoftonline.us/\"\n"
                     "graph_url = \"https://graph.microsoft.us\"\nca_file = \"ca.pem\"\n"
                     "timeout_seconds = 30\nmax_retry_after_seconds = 0"));
  const TenantConfig& t = urls.tenants.at("contoso");
  EXPECT_EQ(t.authority, "https://login.microsoftonline.us");  // the trailing '/' dropped
  EXPECT_EQ(t.graph_url, "https://graph.microsoft.us");
  EXPECT_EQ(t.ca_file, "/etc/roster/ca.pem");
  EXPECT_EQ(t.timeout_seconds, 30);
  EXPECT_EQ(t.max_retry_after_seconds, 0);
  EXPECT_EQ(urls.targets.at("m365").timeout_seconds, 30);

  const std::string book = "addressbook = \"Company Contacts\"";
  Config tagged = GraphConfig(
      Replace(kGraphExample, book, book + "\nplacement = \"default\"\ncategory = \"Company\""));
  EXPECT_TRUE(tagged.rules[0].placement_default);
  EXPECT_EQ(tagged.rules[0].category, "Company");
  EXPECT_EQ(tagged.rules[0].addressbook, "Company Contacts");
  // Either names the other.
  Config by_book = GraphConfig(Replace(kGraphExample, book, book + "\nplacement = \"default\""));
  EXPECT_EQ(by_book.rules[0].category, "Company Contacts");
  Config by_category =
      GraphConfig(Replace(kGraphExample, book, "placement = \"default\"\ncategory = \"Company\""));
  EXPECT_EQ(by_category.rules[0].addressbook, "Company");
  EXPECT_EQ(by_category.rules[0].category, "Company");
  // A category on a folder of the rule's own tags its contacts as well.
  Config folder = GraphConfig(Replace(kGraphExample, book, book + "\ncategory = \"Company\""));
  EXPECT_FALSE(folder.rules[0].placement_default);
  EXPECT_EQ(folder.rules[0].category, "Company");
  Config explicit_folder =
      GraphConfig(Replace(kGraphExample, book, book + "\nplacement = \"folder\""));
  EXPECT_FALSE(explicit_folder.rules[0].placement_default);
}

TEST(GraphConfig, GraphSourceAndTargetOptionsLoad) {
  std::string text =
      Replace(kGraphExample, "read = [\"users\", \"org_contacts\"]",
              "read = [\"org_contacts\"]\n"
              "attributes = { note = \"onPremisesExtensionAttributes.extensionAttribute2\", "
              "office = \"\" }\n"
              "extra_attributes = [\"employeeType\", \"onPremisesExtensionAttributes\"]\n"
              "groups = [\"Sales\", \"0f6a5b3e-0000-0000-0000-000000000001\"]\n"
              "page_size = 100\nexclude = \"\"\nphone_region = \"GB\"\n"
              "phone_region_attribute = \"country\"\n"
              "opt_out_attribute = \"onPremisesExtensionAttributes.extensionAttribute1\"");
  text =
      Replace(text, "folder = \"Partners\"", "folder = \"Partners/EU\"\nexclude = \"has(note)\"");
  text = Replace(text, "type = \"graph\"\ntenant = \"contoso\"\n\n[[rules]]",
                 "type = \"graph\"\ntenant = \"contoso\"\nusers = [\"a@contoso.com\"]\n"
                 "max_in_flight = 16\nmax_retry_after_seconds = 120\n\n[[rules]]");
  text = Replace(text, "group = \"Sales\" }", "group = \"Sales\", attribute = \"id\" }");
  Config c = GraphConfig(text);
  const SourceConfig& gal = c.sources.at("gal");
  EXPECT_FALSE(gal.read_users);
  EXPECT_TRUE(gal.read_org_contacts);
  EXPECT_EQ(gal.attributes.at("note"), "onPremisesExtensionAttributes.extensionAttribute2");
  EXPECT_EQ(gal.attributes.at("office"), "");
  EXPECT_EQ(gal.extra_attributes.size(), 2u);
  EXPECT_EQ(gal.groups,
            (std::vector<std::string>{"Sales", "0f6a5b3e-0000-0000-0000-000000000001"}));
  EXPECT_EQ(gal.page_size, 100);
  EXPECT_EQ(gal.exclude.text(), "");
  EXPECT_EQ(gal.phone_region_attribute, "country");
  const SourceConfig& partners = c.sources.at("partners");
  EXPECT_EQ(partners.folder, "Partners/EU");
  EXPECT_EQ(partners.folder_path, (std::vector<std::string>{"Partners", "EU"}));
  EXPECT_EQ(partners.exclude.text(), "has(note)");
  const TargetConfig& m365 = c.targets.at("m365");
  EXPECT_EQ(m365.users, (std::vector<std::string>{"a@contoso.com"}));
  EXPECT_EQ(m365.max_in_flight, 16);
  EXPECT_EQ(m365.max_retry_after_seconds, 120);
  EXPECT_EQ(c.rules[0].users_from->attribute, "id");
}

TEST(GraphConfig, AnySourceFeedsAnyTarget) {
  // A graph source into a CardDAV target, and a CSV source into a graph target.
  std::string text = std::string(kGraphExample) +
                     "\n[sources.hr]\ntype = \"csv\"\npath = \"hr.csv\"\nkey = \"id\"\n"
                     "columns = { email = \"mail\" }\n"
                     "[targets.dav]\ntype = \"carddav\"\nurl = \"https://dav.example.org/\"\n"
                     "[[rules]]\nname = \"to-dav\"\nsource = \"gal\"\ntarget = \"dav\"\n"
                     "addressbook = \"GAL\"\n"
                     "users_from = { source = \"gal\", group = \"Sales\", attribute = \"mail\" }\n"
                     "[[rules]]\nname = \"hr\"\nsource = \"hr\"\ntarget = \"m365\"\n"
                     "addressbook = \"HR\"\nusers = [\"a@contoso.com\"]\n";
  Config c = GraphConfig(text);
  ASSERT_EQ(c.rules.size(), 3u);
  EXPECT_EQ(c.rules[1].users_from->attribute, "mail");  // a CardDAV account name may be one
  EXPECT_EQ(c.rules[1].users_exclude.text(), kDefaultGraphUsersExclude);
  EXPECT_EQ(c.rules[2].users_exclude.text(), kDefaultUsersExclude);
}

TEST(GraphConfig, TenantMistakesAreOneLineNamingFileLineAndKey) {
  const std::string cert = "certificate_file = \"roster-app.pem\"";
  EXPECT_EQ(GraphError(cert + "    # PEM: certificate and private key (recommended), or:\n", ""),
            "/etc/roster/roster.toml:1: [tenants.contoso] needs one of certificate_file "
            "(recommended), client_secret_file or client_secret_env");
  EXPECT_EQ(GraphError(cert, cert + "\nclient_secret_env = \"ROSTER_GRAPH_SECRET\""),
            "/etc/roster/roster.toml:1: [tenants.contoso] has certificate_file and "
            "client_secret_env; give only one of certificate_file (recommended), "
            "client_secret_file or client_secret_env");
  EXPECT_NE(GraphError(cert, cert + "\nclient_secret_file = \"a\"\nclient_secret_env = \"B\"")
                .find("has certificate_file, client_secret_file and client_secret_env"),
            std::string::npos);
  EXPECT_EQ(GraphError(cert, cert + "\nclient_secret = \"hunter2\""),
            "/etc/roster/roster.toml:5: [tenants.contoso] must not hold a secret; use "
            "certificate_file, client_secret_file or client_secret_env");
  EXPECT_EQ(GraphError("tenant_id = \"contoso.onmicrosoft.com\"", "tenant_id = \"../common\""),
            "/etc/roster/roster.toml:2: tenant_id in [tenants.contoso] must be a domain "
            "(contoso.onmicrosoft.com) or the directory's GUID: letters, digits, '.' and '-', not "
            "\"../common\"");
  EXPECT_EQ(GraphError("tenant_id = \"contoso.onmicrosoft.com\"  # or the directory's GUID\n", ""),
            "/etc/roster/roster.toml:1: missing key \"tenant_id\" in [tenants.contoso]");
  EXPECT_EQ(GraphError("client_id = \"00000000-0000-0000-0000-000000000000\"", "client_id = \"\""),
            "/etc/roster/roster.toml:3: client_id in [tenants.contoso] must be the app "
            "registration's application (client) id, such as 00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(GraphError(cert, cert + "\ncolour = \"red\""),
            "/etc/roster/roster.toml:5: unknown key \"colour\" in [tenants.contoso]");
  EXPECT_EQ(GraphError(cert, cert + "\ntimeout_seconds = 0"),
            "/etc/roster/roster.toml:5: timeout_seconds in [tenants.contoso] must be between 1 and "
            "3600");
  EXPECT_EQ(GraphError("[tenants.contoso]  ", "tenants.contoso = 1\n[x]  "),
            "/etc/roster/roster.toml:1: tenants.contoso must be a table");
  // A client id that is not a GUID is allowed (an emulator's), and said.
  Config odd =
      GraphConfig(Replace(kGraphExample, "00000000-0000-0000-0000-000000000000", "roster"));
  ASSERT_EQ(odd.warnings.size(), 1u);
  EXPECT_EQ(odd.warnings[0],
            "tenant contoso: client_id \"roster\" is not a GUID, as Entra's application (client) "
            "ids are; check it");
}

TEST(GraphConfig, PlainHttpLeavesThisMachineOnlyWithAllowInsecure) {
  const std::string cert = "certificate_file = \"roster-app.pem\"";
  EXPECT_EQ(GraphError(cert, cert + "\nauthority = \"http://login.example.org\""),
            "/etc/roster/roster.toml:5: authority in [tenants.contoso] is plain http:// to "
            "http://login.example.org, where anyone on the path reads the credential and tokens; "
            "use https://, or set allow_insecure = true if this network is trusted");
  EXPECT_NE(GraphError(cert, cert + "\ngraph_url = \"http://graph.example.org/\"")
                .find(":5: graph_url in [tenants.contoso] is plain http://"),
            std::string::npos);
  Config allowed = GraphConfig(
      Replace(kGraphExample, cert,
              cert + "\nallow_insecure = true\ngraph_url = \"http://graph.example.org/\""));
  ASSERT_EQ(allowed.warnings.size(), 1u);
  EXPECT_EQ(allowed.warnings[0],
            "tenant contoso: allow_insecure is set: credentials and tokens travel in clear over "
            "http:// to http://graph.example.org");
  // An emulator on loopback needs nothing, and nothing is said.
  Config local = GraphConfig(Replace(kGraphExample, cert,
                                     cert + "\nauthority = \"http://127.0.0.1:8443/\"\n"
                                            "graph_url = \"http://[::1]:8443/graph/\""));
  EXPECT_TRUE(local.warnings.empty());
  EXPECT_EQ(local.tenants.at("contoso").authority, "http://127.0.0.1:8443");
  EXPECT_EQ(local.tenants.at("contoso").graph_url, "http://[::1]:8443/graph");
  for (const char* bad : {"ftp://graph.example.org", "https://graph.example.org/?x=1",
                          "https://graph.example.org/#top", "graph.microsoft.com", "https://",
                          "https:///v1.0", "https://graph example.org"}) {
    EXPECT_NE(GraphError(cert, cert + "\ngraph_url = \"" + bad + "\"")
                  .find(":5: graph_url in [tenants.contoso] must be an absolute http:// or "
                        "https:// URL without query or fragment"),
              std::string::npos)
        << bad;
  }
  EXPECT_EQ(GraphError(cert, cert + "\nauthority = \"https://me:pw@login.example.org\""),
            "/etc/roster/roster.toml:5: authority in [tenants.contoso] must not carry a user name "
            "or password (user:pass@)");
}

TEST(GraphConfig, SourceMistakesAreOneLineNamingFileLineAndKey) {
  EXPECT_EQ(GraphError("tenant = \"contoso\"\nread", "read"),
            "/etc/roster/roster.toml:9: missing key \"tenant\" in [sources.gal]");
  EXPECT_EQ(GraphError("tenant = \"contoso\"\nread", "tenant = \"fabrikam\"\nread"),
            "/etc/roster/roster.toml:11: [sources.gal] names tenant \"fabrikam\", which is not "
            "defined in [tenants]");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "read = [\"users\", \"groups\"]"),
            "/etc/roster/roster.toml:12: read in [sources.gal]: \"groups\" is not \"users\" or "
            "\"org_contacts\"");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "read = []"),
            "/etc/roster/roster.toml:12: read in [sources.gal] must list \"users\", "
            "\"org_contacts\" or both");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "read = [\"users\", \"users\"]"),
            "/etc/roster/roster.toml:12: read in [sources.gal] lists \"users\" twice");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "read = \"users\""),
            "/etc/roster/roster.toml:12: read in [sources.gal] must be an array of strings");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "page_size = 1000"),
            "/etc/roster/roster.toml:12: page_size in [sources.gal] must be between 1 and 999");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "base_dn = \"dc=x\""),
            "/etc/roster/roster.toml:12: unknown key \"base_dn\" in [sources.gal]");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "attributes = { job = \"title\" }"),
            "/etc/roster/roster.toml:9: unknown contact field \"job\" in [sources.gal.attributes] "
            "(see docs/configuration.md for the field names)");
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "attributes = { note = \"a..b\" }"),
            "/etc/roster/roster.toml:12: attributes in [sources.gal]: \"a..b\" is not a Graph "
            "property name (letters, digits and '_', '.' between the parts of a path)");
  EXPECT_NE(GraphError("read = [\"users\", \"org_contacts\"]", "attributes = { photo = \"x\" }")
                .find(":12: photo in [sources.gal.attributes]: a graph source reads photos"),
            std::string::npos);
  EXPECT_NE(GraphError("read = [\"users\", \"org_contacts\"]", "extra_attributes = [\"$select\"]")
                .find(":12: extra_attributes in [sources.gal]: \"$select\" is not a Graph"),
            std::string::npos);
  EXPECT_EQ(GraphError("read = [\"users\", \"org_contacts\"]", "groups = [\"Sales\", \"Sales\"]"),
            "/etc/roster/roster.toml:12: groups in [sources.gal] lists \"Sales\" twice");
  EXPECT_NE(GraphError("type = \"graph\"\ntenant", "type = \"msgraph\"\ntenant")
                .find(":9: type in [sources.gal] must be \"csv\", \"vcard-dir\", \"ldap\", "
                      "\"graph\" or \"graph-folder\", not \"msgraph\""),
            std::string::npos);
  EXPECT_EQ(GraphError("mailbox = \"partners@contoso.com\"\n", ""),
            "/etc/roster/roster.toml:14: missing key \"mailbox\" in [sources.partners]");
  EXPECT_EQ(GraphError("folder = \"Partners\"\n", ""),
            "/etc/roster/roster.toml:14: missing key \"folder\" in [sources.partners]");
  EXPECT_NE(GraphError("mailbox = \"partners@contoso.com\"", "mailbox = \"a b@contoso.com\"")
                .find(":17: mailbox in [sources.partners] must be a user principal name"),
            std::string::npos);
  for (const char* bad : {"Partners/", "/Partners", "Partners//EU", "Partners / EU", ""}) {
    EXPECT_NE(GraphError("folder = \"Partners\"", std::string("folder = \"") + bad + "\"")
                  .find(":18: folder in [sources.partners]: "),
              std::string::npos)
        << bad;
  }
  EXPECT_EQ(GraphError("folder = \"Partners\"", "folder = \"Partners\"\npage_size = 10"),
            "/etc/roster/roster.toml:19: unknown key \"page_size\" in [sources.partners]");
}

TEST(GraphConfig, TargetMistakesAreOneLineNamingFileLineAndKey) {
  const std::string target = "type = \"graph\"\ntenant = \"contoso\"\n\n[[rules]]";
  EXPECT_EQ(GraphError(target, "type = \"graph\"\n\n[[rules]]"),
            "/etc/roster/roster.toml:20: missing key \"tenant\" in [targets.m365]");
  EXPECT_EQ(GraphError(target, "type = \"graph\"\ntenant = \"fabrikam\"\n\n[[rules]]"),
            "/etc/roster/roster.toml:22: [targets.m365] names tenant \"fabrikam\", which is not "
            "defined in [tenants]");
  for (const char* key :
       {"url = \"https://dav.example.org/\"", "username = \"roster\"", "password_env = \"X\"",
        "password_file = \"x\"", "password = \"x\"", "home_template = \"{url}{user}/\"",
        "vcard_version = \"4.0\"", "credentials_file = \"users\""}) {
    std::string name = std::string(key).substr(0, std::string(key).find(' '));
    EXPECT_EQ(GraphError(target, "type = \"graph\"\ntenant = \"contoso\"\n" + std::string(key) +
                                     "\n\n[[rules]]"),
              "/etc/roster/roster.toml:23: " + name +
                  " in [targets.m365] is a CardDAV setting; a graph target signs in and connects "
                  "as [tenants.contoso] says");
  }
  for (const char* key : {"ca_file = \"ca.pem\"", "allow_insecure = true", "timeout_seconds = 5"}) {
    std::string name = std::string(key).substr(0, std::string(key).find(' '));
    EXPECT_EQ(GraphError(target, "type = \"graph\"\ntenant = \"contoso\"\n" + std::string(key) +
                                     "\n\n[[rules]]"),
              "/etc/roster/roster.toml:23: " + name +
                  " in [targets.m365] belongs in [tenants.contoso] for a graph target");
  }
  EXPECT_EQ(
      GraphError(target, "type = \"graph\"\ntenant = \"contoso\"\nmax_in_flight = 17\n\n[[rules]]"),
      "/etc/roster/roster.toml:23: max_in_flight in [targets.m365] must be between 1 and 16");
  EXPECT_EQ(GraphError(target, "type = \"exchange\"\ntenant = \"contoso\"\n\n[[rules]]"),
            "/etc/roster/roster.toml:20: type in [targets.m365] must be \"carddav\" or \"graph\", "
            "not \"exchange\"");
  // And the graph key on a CardDAV target.
  EXPECT_EQ(GraphError(target,
                       "type = \"carddav\"\nurl = \"https://dav.example.org/\"\n"
                       "tenant = \"contoso\"\n\n[[rules]]"),
            "/etc/roster/roster.toml:23: tenant in [targets.m365] is for graph targets (type = "
            "\"graph\"); a carddav target has none");
}

TEST(GraphConfig, RuleMistakesAreOneLineNamingFileLineAndKey) {
  const std::string book = "addressbook = \"Company Contacts\"";
  const std::string dav = "type = \"carddav\"\nurl = \"https://dav.example.org/\"\n\n[[rules]]";
  const std::string target = "type = \"graph\"\ntenant = \"contoso\"\n\n[[rules]]";
  std::string to_dav = Replace(kGraphExample, target, dav);
  EXPECT_EQ(ErrorOf(Replace(to_dav, book, book + "\nplacement = \"default\"")),
            "/etc/roster/roster.toml:29: placement in [[rules]] \"gal\" is for graph targets only, "
            "and target m365 is a carddav target");
  EXPECT_EQ(ErrorOf(Replace(to_dav, book, book + "\ncategory = \"Company\"")),
            "/etc/roster/roster.toml:29: category in [[rules]] \"gal\" is for graph targets only, "
            "and target m365 is a carddav target");
  EXPECT_TRUE(ParseConfig(Replace(to_dav, book, book + "\nplacement = \"folder\""), kPath).ok());
  EXPECT_EQ(GraphError(book, book + "\nplacement = \"inbox\""),
            "/etc/roster/roster.toml:29: placement in [[rules]] \"gal\" must be \"folder\" or "
            "\"default\", not \"inbox\"");
  EXPECT_EQ(GraphError(book + "       # the contact folder's name in each mailbox\n", ""),
            "/etc/roster/roster.toml:24: missing key \"addressbook\" in [[rules]] \"gal\"");
  EXPECT_EQ(GraphError(book, "placement = \"default\""),
            "/etc/roster/roster.toml:28: rule gal has placement = \"default\": give category (or "
            "addressbook, its default), which marks the rule's contacts in the main Contacts "
            "folder");
  EXPECT_EQ(GraphError(book, book + "\ncategory = \"\""),
            "/etc/roster/roster.toml:29: category in [[rules]] \"gal\" must be a category's name "
            "(1 to 255 characters)");
}

TEST(GraphConfig, UsersFromMistakesAreOneLineNamingFileLineAndKey) {
  const std::string from = "users_from = { source = \"gal\", group = \"Sales\" }";
  EXPECT_EQ(GraphError(from,
                       "users_from = { source = \"gal\", group = \"Sales\", attribute = "
                       "\"mail\" }"),
            "/etc/roster/roster.toml:30: attribute = \"mail\" in users_from of rule gal cannot "
            "name mailboxes of graph target m365: a mail address can differ from the mailbox's "
            "user principal name; use \"userPrincipalName\" (the default) or \"id\"");
  EXPECT_EQ(GraphError(from,
                       "users_from = { source = \"gal\", group = \"Sales\", attribute = "
                       "\"displayName\" }"),
            "/etc/roster/roster.toml:30: attribute in users_from of rule gal must be "
            "\"userPrincipalName\" or \"id\" for graph target m365, not \"displayName\"");
  EXPECT_EQ(GraphError(from, "users_from = { source = \"gal\", filter = \"(department=Sales)\" }"),
            "/etc/roster/roster.toml:30: filter in users_from of rule gal is not supported for a "
            "graph source (it is an LDAP filter); use group, and users_exclude for the rest");
  EXPECT_EQ(GraphError(from, "users_from = { source = \"gal\" }"),
            "/etc/roster/roster.toml:30: users_from of rule gal needs group (a group's object id "
            "or display name)");
  EXPECT_EQ(GraphError(from, "users_from = { source = \"partners\", group = \"Sales\" }"),
            "/etc/roster/roster.toml:30: users_from of rule gal names source \"partners\", which "
            "is not an ldap or graph source");
  // An ldap directory feeding a graph target must say which attribute is the UPN.
  std::string ldap = Replace(kGraphExample, "[targets.m365]",
                             "[sources.dir]\ntype = \"ldap\"\nurl = \"ldaps://dc.contoso.com/\"\n"
                             "base_dn = \"dc=contoso,dc=com\"\nschema = \"ad\"\n\n[targets.m365]");
  const std::string dn = "users_from = { source = \"dir\", group = \"cn=Sales,dc=contoso,dc=com\"";
  EXPECT_EQ(ErrorOf(Replace(ldap, from, dn + " }")),
            "/etc/roster/roster.toml:36: users_from of rule gal feeds graph target m365: give "
            "attribute, the directory attribute holding each user's user principal name "
            "(userPrincipalName in Active Directory)");
  EXPECT_EQ(ErrorOf(Replace(ldap, from, dn + ", attribute = \"mail\" }")),
            "/etc/roster/roster.toml:36: attribute = \"mail\" in users_from of rule gal cannot "
            "name mailboxes of graph target m365: a mail address can differ from the mailbox's "
            "user principal name; use the attribute holding the UPN (userPrincipalName in Active "
            "Directory)");
  auto upn = ParseConfig(Replace(ldap, from, dn + ", attribute = \"userPrincipalName\" }"), kPath);
  ASSERT_TRUE(upn.ok()) << upn.error().message;
  EXPECT_EQ(upn->rules[0].users_from->attribute, "userPrincipalName");
  EXPECT_EQ(upn->rules[0].users_exclude.text(), kDefaultUsersExclude);  // AD's, for an ldap source
}

}  // namespace

class TenantSecrets : public SecretFiles {};

TEST_F(TenantSecrets, TheExampleLoadsFromItsFolder) {
  Write("roster-app.pem", "-----BEGIN CERTIFICATE-----\n", 0600);
  std::string path = Write("roster.toml", kGraphExample, 0644);
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->tenants.at("contoso").certificate_file, dir_ + "/roster-app.pem");
  // A certificate tenant has no secret to read.
  auto secret = ReadTenantSecret(c->tenants.at("contoso"));
  ASSERT_TRUE(secret.ok()) << secret.error().message;
  EXPECT_EQ(*secret, "");
}

TEST_F(TenantSecrets, AClientSecretComesFromItsPrivateFile) {
  TenantConfig t;
  t.name = "contoso";
  t.client_secret_file = Write("graph.secret", "s3cr~et.value\n", 0600);
  auto ok = ReadTenantSecret(t);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(*ok, "s3cr~et.value");
  Write("graph.secret", "s3cr~et.value\r\n", 0400);
  EXPECT_EQ(*ReadTenantSecret(t), "s3cr~et.value");

  chmod(t.client_secret_file.c_str(), 0644);
  auto loose = ReadTenantSecret(t);
  ASSERT_FALSE(loose.ok());
  EXPECT_EQ(loose.error().message, "tenant contoso: client_secret_file " + t.client_secret_file +
                                       " has mode 0644, which lets group or others read it; "
                                       "chmod 600 (or 400) it");

  t.client_secret_file = Write("empty.secret", "\n", 0600);
  auto empty = ReadTenantSecret(t);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().message,
            "tenant contoso: client_secret_file " + t.client_secret_file + " is empty");
  t.client_secret_file = Write("two.secret", "hunter2\nhunter3\n", 0600);
  auto two = ReadTenantSecret(t);
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.error().message.find("hunter"), std::string::npos);
  EXPECT_NE(two.error().message.find("holds more than one line"), std::string::npos);
  t.client_secret_file = dir_ + "/missing.secret";
  auto missing = ReadTenantSecret(t);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message,
            "tenant contoso: client_secret_file " + t.client_secret_file + " cannot be read");
}

TEST(TenantSecret, AClientSecretComesFromTheEnvironment) {
  TenantConfig t;
  t.name = "contoso";
  t.client_secret_env = "ROSTER_TEST_GRAPH_SECRET";
  unsetenv("ROSTER_TEST_GRAPH_SECRET");
  auto unset = ReadTenantSecret(t);
  ASSERT_FALSE(unset.ok());
  EXPECT_EQ(unset.error().message,
            "tenant contoso: environment variable ROSTER_TEST_GRAPH_SECRET is not set");
  setenv("ROSTER_TEST_GRAPH_SECRET", "", 1);
  auto empty = ReadTenantSecret(t);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().message,
            "tenant contoso: environment variable ROSTER_TEST_GRAPH_SECRET is empty");
  setenv("ROSTER_TEST_GRAPH_SECRET", "s3cret\n", 1);
  EXPECT_EQ(*ReadTenantSecret(t), "s3cret");
  unsetenv("ROSTER_TEST_GRAPH_SECRET");
}

}  // namespace roster
