// The LDAP connector against a real slapd. ldap_live_test.py starts one
// (tests/integration/slapd.py) with the directory it describes and passes
// it in ROSTER_LDAP_* variables; without them every test is skipped.
#include "connectors/ldap/ldap_source.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <unordered_map>

#include "core/personal.h"

namespace roster {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// The script gives person n the entryUUID 0a000000-0000-4000-8000-<n, 12 digits>.
std::string Uuid(int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0a000000-0000-4000-8000-%012d", n);
  return buf;
}

constexpr char kPhoto[] = "\xFF\xD8\xFF\xE0\x00\x10JFIF\x00roster-test-photo";
constexpr size_t kPhotoSize = sizeof kPhoto - 1;

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class LdapLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = Env("ROSTER_LDAP_URL");
    if (url_.empty()) GTEST_SKIP() << "ROSTER_LDAP_URL is not set (run ldap_live_test.py)";
    base_ = Env("ROSTER_LDAP_BASE");
    people_ = std::atoi(Env("ROSTER_LDAP_PEOPLE").c_str());
    size_limit_ = std::atoi(Env("ROSTER_LDAP_SIZE_LIMIT").c_str());
  }

  // Reads as the reader account: an ordinary entry, so the size limit holds
  // (the rootdn is exempt from every limit).
  LdapOptions Options() const {
    LdapOptions o;
    o.name = "dir";
    o.url = url_;
    o.bind_dn = Env("ROSTER_LDAP_READER_DN");
    o.password = Env("ROSTER_LDAP_READER_PASSWORD");
    o.base_dn = base_;
    o.timeout_seconds = 10;
    return o;
  }

  static std::unique_ptr<LdapDirectory> Open(LdapOptions o) {
    auto d = OpenLdapDirectory(std::move(o));
    EXPECT_TRUE(d.ok()) << d.error().message;
    return d.ok() ? std::move(*d) : nullptr;
  }

  static const SourceRecord* ByKey(const std::vector<SourceRecord>& records,
                                   const std::string& key) {
    for (const SourceRecord& r : records) {
      if (r.key == key) return &r;
    }
    return nullptr;
  }

  // Applies LDIF change records as the rootdn, through ldapmodify.
  void Change(const std::string& ldif) const {
    const std::string cmd = "ldapmodify -x -H '" + url_ + "' -D '" + Env("ROSTER_LDAP_ADMIN_DN") +
                            "' -w '" + Env("ROSTER_LDAP_ADMIN_PASSWORD") + "' >/dev/null";
    FILE* p = popen(cmd.c_str(), "w");
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(std::fwrite(ldif.data(), 1, ldif.size(), p), ldif.size());
    ASSERT_EQ(pclose(p), 0) << ldif.substr(0, 200);
  }

  std::string Person(const std::string& uid) const { return "uid=" + uid + ",ou=people," + base_; }

  std::string url_, base_;
  int people_ = 0;
  int size_limit_ = 0;
};

TEST_F(LdapLiveTest, PagedReadGetsEveryoneDespiteTheSizeLimit) {
  ASSERT_GT(people_, size_limit_);
  ASSERT_GT(size_limit_, 0);
  for (int page_size : {500, 7}) {
    LdapOptions o = Options();
    o.page_size = page_size;
    auto d = Open(o);
    auto records = d->ReadAll();
    ASSERT_TRUE(records.ok()) << records.error().message;
    ASSERT_EQ(records->size(), static_cast<size_t>(people_)) << "page_size " << page_size;
    // Keys are the entryUUIDs the LDIF gave, never DNs.
    std::set<std::string> keys, expected;
    for (const SourceRecord& r : *records) keys.insert(r.key);
    for (int i = 1; i <= people_; ++i) expected.insert(Uuid(i));
    EXPECT_EQ(keys, expected);
  }
}

TEST_F(LdapLiveTest, UnpagedReadStopsAtTheSizeLimitAndSaysSo) {
  LdapOptions o = Options();
  o.page_size = 0;
  auto records = Open(o)->ReadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.error().kind, ErrorKind::kConflict);
  EXPECT_TRUE(Has(records.error().message, "source dir: the server's size limit stopped"))
      << records.error().message;
  EXPECT_TRUE(Has(records.error().message, "after " + std::to_string(size_limit_) + " entries"))
      << records.error().message;
}

TEST_F(LdapLiveTest, AnonymousReadWorks) {
  LdapOptions o = Options();
  o.bind_dn.clear();
  o.password.clear();
  auto records = Open(o)->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  EXPECT_EQ(records->size(), static_cast<size_t>(people_));
}

TEST_F(LdapLiveTest, MapsPeopleWithNonAsciiNamesPhotoAndManager) {
  LdapOptions o = Options();
  o.extra_attributes = {"uid"};
  auto records = Open(o)->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  const SourceRecord* ann = ByKey(*records, Uuid(1));
  ASSERT_NE(ann, nullptr);
  EXPECT_EQ(ann->contact.formatted_name, "Ann Lee");
  EXPECT_EQ(GetContactField(ann->contact, "email"), std::vector<std::string>{"ann@example.org"});
  EXPECT_EQ(GetContactField(ann->contact, "email_other"),
            std::vector<std::string>{"a.lee@example.org"});
  EXPECT_EQ(GetContactField(ann->contact, "url"),
            std::vector<std::string>{"https://ann.example.org"});
  EXPECT_EQ(ann->contact.department, "Sales");
  ASSERT_TRUE(ann->contact.photo.has_value());
  EXPECT_EQ(ann->contact.photo->media_type, "image/jpeg");
  EXPECT_EQ(ann->contact.photo->data, std::string(kPhoto, kPhotoSize));
  EXPECT_EQ(ann->attributes.at("dn"), std::vector<std::string>{Person("ann")});
  EXPECT_EQ(ann->attributes.at("office"), std::vector<std::string>{"B2.14"});
  EXPECT_EQ(ann->attributes.at("uid"), std::vector<std::string>{"ann"});
  EXPECT_EQ(ann->attributes.count("jpegPhoto"), 0u);

  const SourceRecord* jose = ByKey(*records, Uuid(2));
  ASSERT_NE(jose, nullptr);
  EXPECT_EQ(jose->contact.given_name, "José");
  EXPECT_EQ(jose->contact.family_name, "Müller");
  EXPECT_EQ(jose->attributes.at("manager"), std::vector<std::string>{"Ann Lee"});
  const SourceRecord* zoe = ByKey(*records, Uuid(3));
  ASSERT_NE(zoe, nullptr);
  EXPECT_EQ(zoe->contact.formatted_name, "王 Zoë");
}

TEST_F(LdapLiveTest, InvalidUtf8IsRepairedWithAWarning) {
  LdapOptions o = Options();
  o.mapping["note"] = "rosterLegacyNote";
  o.extra_attributes = {"uid"};
  auto d = Open(o);
  for (int round = 0; round < 2; ++round) {  // warnings start afresh on each read
    auto records = d->ReadAll();
    ASSERT_TRUE(records.ok()) << records.error().message;
    const SourceRecord* legacy = ByKey(*records, Uuid(4));
    ASSERT_NE(legacy, nullptr);
    EXPECT_EQ(legacy->contact.note, "caf\uFFFD note \uFFFD");
    // AD/Exchange-like attributes: proxyAddresses fill the e-mails, the raw
    // ones are there for filters.
    EXPECT_EQ(GetContactField(legacy->contact, "email"),
              std::vector<std::string>{"legacy@example.org"});
    EXPECT_EQ(GetContactField(legacy->contact, "email_other"),
              std::vector<std::string>{"legacy.old@example.org"});
    EXPECT_EQ(legacy->attributes.at("userAccountControl"), std::vector<std::string>{"514"});
    EXPECT_EQ(legacy->attributes.at("msExchHideFromAddressLists"),
              std::vector<std::string>{"TRUE"});
    const std::vector<std::string> warnings = d->Warnings();
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_EQ(ShowPersonal(warnings[0]),
              "source dir: entry " + Person("legacy") +
                  ": attribute rosterLegacyNote is not valid UTF-8; the invalid "
                  "bytes were replaced with U+FFFD");
  }
}

TEST_F(LdapLiveTest, RenameAndMoveKeepTheKey) {
  auto d = Open(Options());
  auto before = d->ReadAll();
  ASSERT_TRUE(before.ok()) << before.error().message;
  const SourceRecord* mover = ByKey(*before, Uuid(5));
  ASSERT_NE(mover, nullptr);
  EXPECT_EQ(mover->attributes.at("dn"), std::vector<std::string>{Person("mover")});
  Change("dn: " + Person("mover") +
         "\nchangetype: modrdn\nnewrdn: uid=moved-mover\ndeleteoldrdn: 1\nnewsuperior: ou=moved," +
         base_ + "\n");
  auto after = d->ReadAll();
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(after->size(), before->size());
  const SourceRecord* moved = ByKey(*after, Uuid(5));
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(moved->attributes.at("dn"),
            std::vector<std::string>{"uid=moved-mover,ou=moved," + base_});
}

TEST_F(LdapLiveTest, VersionChangesWithEveryKindOfChangeAndOnlyThen) {
  auto d = Open(Options());
  auto v1 = d->Version();
  ASSERT_TRUE(v1.ok()) << v1.error().message;
  EXPECT_EQ(v1->size(), 32u);
  auto v2 = d->Version();
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(*v1, *v2);

  Change("dn: " + Person("victim") + "\nchangetype: modify\nreplace: title\ntitle: Changed\n");
  auto modified = d->Version();
  ASSERT_TRUE(modified.ok());
  EXPECT_NE(*modified, *v2);
  EXPECT_EQ(*d->Version(), *modified);

  Change("dn: " + Person("temp") +
         "\nchangetype: add\nobjectClass: inetOrgPerson\nuid: temp\ncn: Temp\nsn: Temp\n");
  auto added = d->Version();
  ASSERT_TRUE(added.ok());
  EXPECT_NE(*added, *modified);

  Change("dn: " + Person("temp") + "\nchangetype: delete\n");
  auto deleted = d->Version();
  ASSERT_TRUE(deleted.ok());
  EXPECT_NE(*deleted, *added);

  Change("dn: " + Person("wanderer") + "\nchangetype: modrdn\nnewrdn: uid=wandered\n" +
         "deleteoldrdn: 1\n");
  auto renamed = d->Version();
  ASSERT_TRUE(renamed.ok());
  EXPECT_NE(*renamed, *deleted);
  EXPECT_EQ(*d->Version(), *renamed);

  // The same entries read another way are another version: a mapping change
  // must not be mistaken for "nothing changed".
  LdapOptions remapped = Options();
  remapped.mapping["note"] = "description";
  auto other = Open(remapped)->Version();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, *renamed);
}

TEST_F(LdapLiveTest, TenMegabytePhoto) {
  std::string photo(10u << 20, '\x5A');
  photo.replace(0, 4, "\xFF\xD8\xFF\xE0");
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string encoded;
  for (size_t i = 0; i < photo.size(); i += 3) {
    const auto b = [&](size_t k) {
      return k < photo.size() ? static_cast<unsigned>(static_cast<unsigned char>(photo[k])) : 0u;
    };
    const unsigned n = b(i) << 16 | b(i + 1) << 8 | b(i + 2);
    encoded += kB64[n >> 18 & 63];
    encoded += kB64[n >> 12 & 63];
    encoded += i + 1 < photo.size() ? kB64[n >> 6 & 63] : '=';
    encoded += i + 2 < photo.size() ? kB64[n & 63] : '=';
  }
  Change("dn: " + Person("big") +
         "\nchangetype: modify\nreplace: jpegPhoto\njpegPhoto:: " + encoded + "\n");
  auto records = Open(Options())->ReadAll();
  ASSERT_TRUE(records.ok()) << records.error().message;
  const SourceRecord* big = ByKey(*records, Uuid(8));
  ASSERT_NE(big, nullptr);
  ASSERT_TRUE(big->contact.photo.has_value());
  EXPECT_EQ(big->contact.photo->data.size(), photo.size());
  EXPECT_TRUE(big->contact.photo->data == photo);
  EXPECT_EQ(big->contact.photo->media_type, "image/jpeg");
}

TEST_F(LdapLiveTest, StartTlsAndLdapsWithTheRightCa) {
  LdapOptions starttls = Options();
  starttls.starttls = true;
  starttls.ca_file = Env("ROSTER_LDAP_CA");
  auto a = Open(starttls)->ReadAll();
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->size(), static_cast<size_t>(people_));

  LdapOptions ldaps = Options();
  ldaps.url = Env("ROSTER_LDAPS_URL");
  ldaps.ca_file = Env("ROSTER_LDAP_CA");
  auto b = Open(ldaps)->ReadAll();
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->size(), static_cast<size_t>(people_));
}

TEST_F(LdapLiveTest, AnUnrelatedCaDoesNotVerify) {
  const std::string other = Env("ROSTER_LDAP_OTHER_CA");
  LdapOptions ldaps = Options();
  ldaps.url = Env("ROSTER_LDAPS_URL");
  ldaps.ca_file = other;
  LdapOptions starttls = Options();
  starttls.starttls = true;
  starttls.ca_file = other;
  for (const LdapOptions& o : {ldaps, starttls}) {
    auto r = Open(o)->ReadAll();
    ASSERT_FALSE(r.ok()) << o.url;
    EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);
    EXPECT_TRUE(Has(r.error().message, "source dir: the certificate of " + o.url +
                                           " could not be verified with ca_file " + other))
        << r.error().message;
    EXPECT_FALSE(Has(r.error().message, o.password));
  }
  // No ca_file: the system CAs do not know the test CA either.
  ldaps.ca_file.clear();
  auto r = Open(ldaps)->ReadAll();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      Has(r.error().message, "could not be verified with the system CAs (ca_file is not set)"))
      << r.error().message;
}

TEST_F(LdapLiveTest, WrongPasswordIsAccessDeniedWithoutThePassword) {
  LdapOptions o = Options();
  o.password = "not-the-Password-42";
  auto r = Open(o)->ReadAll();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kAccessDenied);
  EXPECT_EQ(r.error().message,
            "source dir: bind as " + o.bind_dn + " refused: Invalid credentials");
  EXPECT_FALSE(Has(r.error().message, o.password));
}

TEST_F(LdapLiveTest, UnreachableServerIsUnavailable) {
  LdapOptions o = Options();
  o.url = "ldap://127.0.0.1:1/";
  auto r = Open(o)->ReadAll();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(r.error().message,
            "source dir: cannot reach ldap://127.0.0.1:1/: Can't contact LDAP server");
}

TEST_F(LdapLiveTest, SilentServerTimesOut) {
  // A socket that listens but never answers: the kernel completes the TCP
  // handshake, then the bind waits for a reply that never comes.
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(s, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  LdapOptions o = Options();
  o.url = "ldap://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  o.timeout_seconds = 1;
  const auto start = std::chrono::steady_clock::now();
  auto r = Open(o)->ReadAll();
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Has(r.error().message, "timed out after 1 s")) << r.error().message;
  EXPECT_LT(took, std::chrono::seconds(8));

  // The same over ldaps://: libldap alone would spin in the TLS handshake.
  o.url = "ldaps://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  o.ca_file = Env("ROSTER_LDAP_CA");
  const auto tls_start = std::chrono::steady_clock::now();
  auto tls = Open(o)->ReadAll();
  const auto tls_took = std::chrono::steady_clock::now() - tls_start;
  close(s);
  ASSERT_FALSE(tls.ok());
  EXPECT_EQ(tls.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(tls.error().message,
            "source dir: the TLS handshake with " + o.url + " did not finish within 1 s");
  EXPECT_LT(tls_took, std::chrono::seconds(8));
}

TEST_F(LdapLiveTest, MissingBaseDnIsNotFound) {
  LdapOptions o = Options();
  o.base_dn = "ou=nowhere," + base_;
  auto r = Open(o)->ReadAll();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kNotFound);
  EXPECT_TRUE(Has(r.error().message, "source dir: base DN ou=nowhere," + base_ + " does not exist"))
      << r.error().message;
}

TEST_F(LdapLiveTest, BadFilterIsInvalidArgument) {
  LdapOptions o = Options();
  o.filter = "(objectClass=inetOrgPerson";
  auto r = Open(o)->ReadAll();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalidArgument);
  EXPECT_TRUE(Has(r.error().message, "is not a valid LDAP filter")) << r.error().message;
}

TEST_F(LdapLiveTest, GroupMembersFlattensNestedGroupsWithACycle) {
  auto d = Open(Options());
  auto users = d->GroupMembers("cn=all,ou=groups," + base_, "mail");
  ASSERT_TRUE(users.ok()) << users.error().message;
  std::map<std::string, DirectoryUser> by_key;
  for (const DirectoryUser& u : *users) {
    EXPECT_TRUE(by_key.emplace(u.key, u).second) << "twice: " << u.dn;
  }
  ASSERT_EQ(by_key.size(), 3u);
  EXPECT_EQ(by_key.at(Uuid(1)).values,
            (std::vector<std::string>{"ann@example.org", "a.lee@example.org"}));
  EXPECT_EQ(by_key.at(Uuid(1)).dn, Person("ann"));
  EXPECT_EQ(by_key.at(Uuid(2)).values, std::vector<std::string>{"jose@example.org"});
  EXPECT_EQ(by_key.at(Uuid(3)).values, std::vector<std::string>{"zoe@example.org"});
  bool ghost_warned = false;
  for (const std::string& w : d->Warnings()) {
    ghost_warned =
        ghost_warned || Has(ShowPersonal(w), "member " + Person("ghost") + " of group cn=team-b");
  }
  EXPECT_TRUE(ghost_warned);

  auto missing = d->GroupMembers("cn=nope,ou=groups," + base_, "mail");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ErrorKind::kNotFound);
  EXPECT_TRUE(Has(missing.error().message, "group cn=nope,ou=groups," + base_ + " does not exist"))
      << missing.error().message;
}

TEST_F(LdapLiveTest, SearchUsersPagesThroughAFilter) {
  LdapOptions o = Options();
  o.page_size = 5;
  auto d = Open(o);
  auto sales = d->SearchUsers("(ou=Sales)", "uid");
  ASSERT_TRUE(sales.ok()) << sales.error().message;
  std::set<std::string> uids;
  for (const DirectoryUser& u : *sales) uids.insert(u.values.at(0));
  EXPECT_EQ(uids, (std::set<std::string>{"ann", "p09"}));
  auto everyone = d->SearchUsers("(objectClass=inetOrgPerson)", "");
  ASSERT_TRUE(everyone.ok()) << everyone.error().message;
  EXPECT_EQ(everyone->size(), static_cast<size_t>(people_));
}

// Delta reads (issue 10): after a first read in full, a change reads the
// one entry that moved (besides the key listing), a deletion reads
// nothing, and a manager's new name reaches the report when the cached and
// fresh records are derived together.
TEST_F(LdapLiveTest, ADeltaReadReadsOnlyWhatMovedAndManagersAreDerivedAgain) {
  Change("dn: " + Person("delta-temp") +
         "\nchangetype: add\nobjectClass: inetOrgPerson\nuid: delta-temp\ncn: Delta Temp\n"
         "sn: Temp\n");
  auto first = Open(Options())->ReadChanges({});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->full);
  std::unordered_map<std::string, std::string> cached;
  std::map<std::string, SourceRecord> records;
  std::string temp_key;
  for (const StampedRecord& c : first->changed) {
    cached[c.record.key] = c.stamp;
    records[c.record.key] = c.record;
    if (c.record.attributes.at("dn") == std::vector<std::string>{Person("delta-temp")}) {
      temp_key = c.record.key;
    }
  }
  ASSERT_FALSE(temp_key.empty());

  // Nothing changed: the listing only.
  auto quiet_dir = Open(Options());
  auto quiet = quiet_dir->ReadChanges(cached);
  ASSERT_TRUE(quiet.ok()) << quiet.error().message;
  EXPECT_FALSE(quiet->full);
  EXPECT_TRUE(quiet->changed.empty());
  EXPECT_TRUE(quiet->removed.empty());
  EXPECT_EQ(quiet->entries_read, 0);

  // Ann (José's manager) renamed, and the temporary person deleted.
  Change("dn: " + Person("ann") +
         "\nchangetype: modify\nreplace: displayName\ndisplayName: Ann Lee-Smith\n");
  Change("dn: " + Person("delta-temp") + "\nchangetype: delete\n");
  auto d = Open(Options());
  auto changes = d->ReadChanges(cached);
  ASSERT_TRUE(changes.ok()) << changes.error().message;
  EXPECT_FALSE(changes->full);
  ASSERT_EQ(changes->changed.size(), 1u);
  EXPECT_EQ(changes->changed[0].record.key, Uuid(1));
  EXPECT_NE(changes->changed[0].stamp, cached.at(Uuid(1)));
  EXPECT_EQ(changes->removed, std::vector<std::string>{temp_key});
  EXPECT_EQ(changes->entries_read, 1);

  records.erase(temp_key);
  records[Uuid(1)] = changes->changed[0].record;
  std::vector<SourceRecord> all;
  for (auto& [key, r] : records) all.push_back(r);
  d->Derive(all);
  const SourceRecord* jose = ByKey(all, Uuid(2));
  ASSERT_NE(jose, nullptr);
  EXPECT_EQ(jose->attributes.at("manager"), std::vector<std::string>{"Ann Lee-Smith"});
  EXPECT_EQ(jose->contact.manager, "Ann Lee-Smith");

  Change("dn: " + Person("ann") +
         "\nchangetype: modify\nreplace: displayName\ndisplayName: Ann Lee\n");
}

}  // namespace
}  // namespace roster
