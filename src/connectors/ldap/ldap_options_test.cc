// OpenLdapDirectory's checks that need no server: a password must not travel
// in clear to another machine unless allow_insecure says so.
#include <gtest/gtest.h>

#include "connectors/ldap/ldap_source.h"

namespace roster {
namespace {

LdapOptions Bind(const std::string& url) {
  LdapOptions o;
  o.name = "dir";
  o.url = url;
  o.base_dn = "dc=example,dc=org";
  o.bind_dn = "cn=reader,dc=example,dc=org";
  o.password = "s3cret-pw";
  return o;
}

TEST(LdapInsecureBindTest, RemoteSimpleBindOverPlainLdapIsRefused) {
  auto d = OpenLdapDirectory(Bind("ldap://ldap.example.com:389/"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().kind, ErrorKind::kInvalidArgument);
  EXPECT_EQ(d.error().message,
            "source dir: a simple bind as cn=reader,dc=example,dc=org over ldap:// without "
            "StartTLS would send its password unencrypted to ldap.example.com; set starttls = "
            "true, use ldaps://, or allow_insecure = true");
  EXPECT_EQ(d.error().message.find("s3cret-pw"), std::string::npos);
}

TEST(LdapInsecureBindTest, ThisMachineIsAllowedWithoutAWarning) {
  for (const char* url :
       {"ldap://127.0.0.1:3890/", "ldap://127.8.9.10/", "ldap://[::1]:389/", "ldap://localhost/",
        "ldap://LocalHost:389/", "ldap://[::ffff:127.0.0.1]/"}) {
    auto d = OpenLdapDirectory(Bind(url));
    ASSERT_TRUE(d.ok()) << url << ": " << d.error().message;
    EXPECT_TRUE((*d)->Warnings().empty()) << url;
  }
}

TEST(LdapInsecureBindTest, TlsOrNoPasswordIsAllowed) {
  LdapOptions tls = Bind("ldap://ldap.example.com/");
  tls.starttls = true;
  EXPECT_TRUE(OpenLdapDirectory(tls).ok());
  EXPECT_TRUE(OpenLdapDirectory(Bind("ldaps://ldap.example.com/")).ok());
  LdapOptions anonymous = Bind("ldap://ldap.example.com/");
  anonymous.bind_dn.clear();
  anonymous.password.clear();
  EXPECT_TRUE(OpenLdapDirectory(anonymous).ok());
}

TEST(LdapInsecureBindTest, LookalikesOfLoopbackAreRemote) {
  for (const char* url : {"ldap://128.0.0.1/", "ldap://127.0.0.1.example.com/",
                          "ldap://localhost.example.com/", "ldap://[::2]/", "ldap:///"}) {
    auto d = OpenLdapDirectory(Bind(url));
    EXPECT_FALSE(d.ok()) << url;
  }
}

// libldap would try each server of a list in turn; the URL check refuses a
// list, so a loopback first server cannot wave a remote second one through.
TEST(LdapInsecureBindTest, AListOfServersIsRefused) {
  for (const char* url :
       {"ldap://127.0.0.1/ ldap://ldap.example.com/", "ldap://127.0.0.1 ldap://ldap.example.com",
        "ldap://127.0.0.1,ldap://ldap.example.com"}) {
    EXPECT_FALSE(OpenLdapDirectory(Bind(url)).ok()) << url;
  }
}

TEST(LdapInsecureBindTest, AllowInsecureLetsItThroughWithAWarning) {
  LdapOptions o = Bind("ldap://ldap.example.com/");
  o.allow_insecure = true;
  auto d = OpenLdapDirectory(o);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ((*d)->Warnings().size(), 1u);
  EXPECT_EQ((*d)->Warnings()[0],
            "source dir: the password of cn=reader,dc=example,dc=org goes unencrypted to "
            "ldap.example.com (ldap:// without StartTLS, allowed by allow_insecure)");
}

TEST(LdapDeltaTest, ManyChangesOrNoCacheReadEverything) {
  EXPECT_TRUE(ReadChangesInFull(0, 50000, 0));       // nothing cached
  EXPECT_FALSE(ReadChangesInFull(1, 50000, 50000));  // one change
  EXPECT_FALSE(ReadChangesInFull(12500, 50000, 50000));
  EXPECT_TRUE(ReadChangesInFull(12501, 50000, 50000));  // past a quarter
  // A small directory reads up to 1,000 entries one by one.
  EXPECT_FALSE(ReadChangesInFull(1000, 1200, 1200));
  EXPECT_TRUE(ReadChangesInFull(1001, 1200, 1200));
}

}  // namespace
}  // namespace roster
