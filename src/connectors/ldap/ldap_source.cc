#include "connectors/ldap/ldap_source.h"

#include <arpa/inet.h>
#include <ldap.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "connectors/ldap/ldap_connection.h"
#include "core/hash.h"
#include "core/personal.h"
#include "core/text.h"

namespace roster {
namespace {

using text::EqualsNoCase;

// What Version() hashes besides the key: each is present on one kind of
// server (entryCSN on OpenLDAP, uSNChanged on AD) and a request for one the
// server lacks is simply not answered.
constexpr std::array<const char*, 3> kStampAttributes = {"modifyTimestamp", "entryCSN",
                                                         "uSNChanged"};

constexpr std::array<std::string_view, 3> kGroupClasses = {"groupOfNames", "groupOfUniqueNames",
                                                           "group"};

bool IsGroup(const LdapEntry& entry) {
  if (const auto* classes = entry.Find("objectClass")) {
    for (const std::string& c : *classes) {
      for (std::string_view g : kGroupClasses) {
        if (EqualsNoCase(text::Trim(c), g)) return true;
      }
    }
  }
  return entry.Find("member") != nullptr || entry.Find("uniqueMember") != nullptr;
}

// uniqueMember values may end in an optional unique identifier,
// "cn=x,dc=y#'0101'B" (RFC 4517 Name and Optional UID); the DN is before it.
std::string WithoutOptionalUid(std::string_view value) {
  value = text::Trim(value);
  if (value.ends_with("'B")) {
    const size_t hash = value.rfind("#'");
    if (hash != std::string_view::npos && hash > 0 && value[hash - 1] != '\\') {
      const std::string_view bits = value.substr(hash + 2, value.size() - hash - 4);
      if (std::all_of(bits.begin(), bits.end(), [](char c) { return c == '0' || c == '1'; })) {
        return std::string(value.substr(0, hash));
      }
    }
  }
  return std::string(value);
}

std::vector<std::string> MembersOf(const LdapEntry& entry) {
  std::vector<std::string> out;
  for (const char* attribute : {"member", "uniqueMember"}) {
    if (const auto* values = entry.Find(attribute)) {
      for (const std::string& v : *values) {
        std::string dn = WithoutOptionalUid(v);
        if (!dn.empty()) out.push_back(std::move(dn));
      }
    }
  }
  return out;
}

// Appends a field so that no two different field lists hash alike.
void AppendField(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out.push_back(':');
  out.append(field);
}

// libldap writes to its socket with write(2): a server that closed the
// connection would raise SIGPIPE and end the whole process. While a guard
// lives, SIGPIPE is blocked for the calling thread (a write then fails with
// EPIPE, which libldap reports), and one raised meanwhile is consumed, so
// that the process-wide disposition stays the application's business.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    already_pending_ = sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    if (!already_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      sigtimedwait(&pipe_, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool already_pending_ = false;
  bool blocked_ = false;
};

bool IsValidDn(const std::string& dn) {
  LDAPDN parsed = nullptr;
  const bool ok = ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAP) == LDAP_SUCCESS;
  ldap_dnfree(parsed);
  return ok;
}

// 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) or localhost: a password sent
// there in clear does not leave the machine.
bool IsLoopback(const std::string& host) {
  std::string h = text::AsciiLower(host);
  if (h == "localhost" || h == "localhost.") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

}  // namespace

LdapDirectory::LdapDirectory(LdapOptions options, LdapMapping mapping)
    : options_(std::move(options)), mapping_(std::move(mapping)) {}

LdapDirectory::~LdapDirectory() = default;

Result<std::unique_ptr<LdapDirectory>> OpenLdapDirectory(LdapOptions o) {
  if (o.name.empty()) {
    return MakeError(ErrorKind::kInvalidArgument, "an LDAP source needs a name");
  }
  const std::string prefix = "source " + o.name + ": ";
  auto invalid = [&](const std::string& what) {
    return MakeError(ErrorKind::kInvalidArgument, prefix + what);
  };
  LDAPURLDesc* url = nullptr;
  if (o.url.empty() || ldap_url_parse(o.url.c_str(), &url) != LDAP_URL_SUCCESS) {
    return invalid("url \"" + o.url + "\" is not an ldap:// or ldaps:// URL");
  }
  const std::string scheme = url->lud_scheme != nullptr ? url->lud_scheme : "";
  const bool has_dn = url->lud_dn != nullptr && url->lud_dn[0] != '\0';
  // Empty: ldap.conf's default host, which may be anywhere.
  const std::string host = url->lud_host != nullptr ? url->lud_host : "";
  ldap_free_urldesc(url);
  if (scheme != "ldap" && scheme != "ldaps") {
    return invalid("url \"" + o.url + "\" is not an ldap:// or ldaps:// URL");
  }
  if (has_dn) return invalid("url \"" + o.url + "\" names a DN; put it in base_dn instead");
  if (o.base_dn.empty()) return invalid("base_dn is not set");
  if (!IsValidDn(o.base_dn)) return invalid("base_dn \"" + o.base_dn + "\" is not a valid DN");
  if (!o.bind_dn.empty() && !IsValidDn(o.bind_dn) && o.bind_dn.find('@') == std::string::npos) {
    return invalid("bind_dn \"" + o.bind_dn + "\" is not a valid DN");
  }
  // A DN with an empty password is an "unauthenticated bind": servers that
  // allow it treat it as anonymous, which would hide a missing secret.
  if (!o.bind_dn.empty() && o.password.empty()) {
    return invalid("bind_dn " + o.bind_dn + " is set but its password is empty");
  }
  if (o.bind_dn.empty() && !o.password.empty()) {
    return invalid("a password is set but bind_dn is empty");
  }
  // A list of servers does not get this far (it parses as a DN or not at
  // all), so `host` is the only one a connection can reach.
  std::string insecure_warning;
  if (!o.bind_dn.empty() && scheme == "ldap" && !o.starttls && !IsLoopback(host)) {
    const std::string where = host.empty() ? "the default host of ldap.conf" : host;
    if (!o.allow_insecure) {
      return invalid("a simple bind as " + o.bind_dn +
                     " over ldap:// without StartTLS would send its password unencrypted to " +
                     where + "; set starttls = true, use ldaps://, or allow_insecure = true");
    }
    insecure_warning = prefix + "the password of " + o.bind_dn + " goes unencrypted to " + where +
                       " (ldap:// without StartTLS, allowed by allow_insecure)";
  }
  if (!o.ca_file.empty()) {
    // libldap with GnuTLS takes a file without certificates silently, and
    // the failure would later read as an unverifiable server.
    std::ifstream in(o.ca_file, std::ios::binary);
    if (!in) return invalid("ca_file " + o.ca_file + " cannot be read");
    std::string head(1 << 20, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
    if (head.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return invalid("ca_file " + o.ca_file + " holds no PEM certificate");
    }
  }
  if (o.page_size < 0) return invalid("page_size must be 0 (no paging) or more");
  if (o.timeout_seconds < 1) return invalid("timeout_seconds must be at least 1");
  auto mapping = ResolveLdapMapping(o.schema, o.key_attribute, o.mapping, o.extra_attributes);
  if (!mapping.ok()) return invalid(mapping.error().message);
  if (o.filter.empty()) o.filter = DefaultLdapFilter(o.schema);
  std::unique_ptr<LdapDirectory> dir(new LdapDirectory(std::move(o), std::move(*mapping)));
  dir->insecure_warning_ = std::move(insecure_warning);
  if (!dir->insecure_warning_.empty()) dir->warnings_.push_back(dir->insecure_warning_);
  return dir;
}

Result<std::unique_ptr<LdapConnection>> LdapDirectory::Connect() const {
  return LdapConnection::Open(LdapConnectionOptions{options_.name, options_.url, options_.starttls,
                                                    options_.ca_file, options_.bind_dn,
                                                    options_.password, options_.timeout_seconds});
}

Result<std::vector<SourceRecord>> LdapDirectory::ReadUnderived(LdapConnection& connection) {
  std::vector<SourceRecord> records;
  std::unordered_map<std::string, std::string> dn_of_key;
  ++searches_;
  ROSTER_RETURN_IF_ERROR(connection.Search(
      options_.base_dn, options_.filter, mapping_.RequestedAttributes(), options_.page_size,
      [&](LdapEntry&& entry) -> Status {
        std::optional<SourceRecord> record =
            MapLdapEntry(entry, mapping_, options_.name, &warnings_);
        if (!record) return {};
        auto [it, fresh] = dn_of_key.emplace(record->key, entry.dn);
        if (!fresh) {
          // Only a configured key attribute can repeat; entryUUID cannot.
          return MakeError(ErrorKind::kInvalidData,
                           Prefix() + "entries " + Personal(it->second, it->second) + " and " +
                               Personal(entry.dn, entry.dn) + " have the same " +
                               mapping_.key_attribute + " \"" + Personal(record->key, record->key) +
                               "\", so it cannot be the key");
        }
        records.push_back(std::move(*record));
        return {};
      }));
  return records;
}

Result<std::vector<SourceRecord>> LdapDirectory::ReadAll() {
  warnings_.clear();
  if (!insecure_warning_.empty()) warnings_.push_back(insecure_warning_);
  SigpipeGuard sigpipe_guard;
  ROSTER_ASSIGN_OR_RETURN(std::unique_ptr<LdapConnection> connection, Connect());
  ROSTER_ASSIGN_OR_RETURN(std::vector<SourceRecord> records, ReadUnderived(*connection));
  ResolveManagers(&records);
  return records;
}

void LdapDirectory::Derive(std::vector<SourceRecord>& records) const { ResolveManagers(&records); }

std::optional<std::vector<std::string>> LdapDirectory::DerivedDependents(
    const std::vector<SourceRecord>& records,
    const std::vector<const SourceRecord*>& touched) const {
  return ManagerDependents(records, touched);
}

Result<LdapDirectory::Listing> LdapDirectory::List(LdapConnection& connection) {
  // Active Directory numbers its changes per domain controller: the
  // controller's invocationId goes into every stamp, so that after a switch
  // to another one (or a restore) every entry reads as changed.
  std::string epoch;
  ++searches_;
  ROSTER_ASSIGN_OR_RETURN(auto root, connection.ReadMany({""}, {"dsServiceName"}));
  if (!root.empty() && root.front()) {
    if (const auto* service = root.front()->Find("dsServiceName"); service && !service->empty()) {
      ++searches_;
      ROSTER_ASSIGN_OR_RETURN(auto dsa, connection.ReadMany({service->front()}, {"invocationId"}));
      if (!dsa.empty() && dsa.front()) {
        if (const auto* id = dsa.front()->Find("invocationId"); id && !id->empty()) {
          epoch = HashHex(id->front(), 16);
        }
      }
    }
  }
  std::vector<std::string> attributes = {mapping_.key_attribute};
  for (const char* a : kStampAttributes) attributes.emplace_back(a);
  // memberOf is a back link: on Active Directory a change of membership
  // does not move the member's uSNChanged. When the records carry it, it is
  // part of the stamp.
  bool member_of = false;
  for (const std::string& a : mapping_.extra_attributes) {
    if (EqualsNoCase(a, "memberOf")) member_of = true;
  }
  if (member_of) attributes.emplace_back("memberOf");
  Listing listing;
  std::vector<std::string> lines;
  ++searches_;
  ROSTER_RETURN_IF_ERROR(connection.Search(
      options_.base_dn, options_.filter, attributes, options_.page_size,
      [&](LdapEntry&& entry) -> Status {
        std::string problem;
        std::optional<std::string> key = LdapEntryKey(entry, mapping_.key_attribute, &problem);
        if (!key) return {};  // a read skips it too
        // The DN catches a rename or move even on a server whose stamps have
        // coarse resolution.
        std::string stamp;
        AppendField(stamp, epoch);
        AppendField(stamp, NormalizeDn(entry.dn));
        for (const char* a : kStampAttributes) {
          if (const auto* values = entry.Find(a)) {
            for (const std::string& v : *values) AppendField(stamp, v);
          } else {
            AppendField(stamp, "");
          }
        }
        if (member_of) {
          std::vector<std::string> groups;
          if (const auto* values = entry.Find("memberOf")) groups = *values;
          std::sort(groups.begin(), groups.end());
          AppendField(stamp, "memberOf");
          for (const std::string& g : groups) AppendField(stamp, g);
        }
        std::string line;
        AppendField(line, *key);
        AppendField(line, stamp);
        lines.push_back(std::move(line));
        listing.by_key[*key] = Listed{entry.dn, HashHex(stamp, 16)};
        return {};
      }));
  std::sort(lines.begin(), lines.end());
  std::string all;
  AppendField(all, "roster-ldap-version-3");
  AppendField(all, CacheShape());
  for (const std::string& line : lines) AppendField(all, line);
  listing.version = HashHex(all, 16);
  return listing;
}

std::string LdapDirectory::CacheShape() const {
  // What a read would make of the entries: a changed mapping is a change.
  std::string all;
  AppendField(all, "roster-ldap-cache-1");
  AppendField(all, options_.url);
  AppendField(all, options_.base_dn);
  AppendField(all, options_.filter);
  AppendField(all, options_.schema);
  AppendField(all, mapping_.key_attribute);
  for (const auto& [field, attributes] : mapping_.fields) {
    AppendField(all, field);
    for (const std::string& a : attributes) AppendField(all, a);
  }
  AppendField(all, "extra");
  for (const std::string& a : mapping_.extra_attributes) AppendField(all, a);
  return HashHex(all, 16);
}

Result<std::string> LdapDirectory::Version() {
  SigpipeGuard sigpipe_guard;
  ROSTER_ASSIGN_OR_RETURN(std::unique_ptr<LdapConnection> connection, Connect());
  ROSTER_ASSIGN_OR_RETURN(Listing listing, List(*connection));
  std::string version = listing.version;
  listing_ = std::move(listing);
  return version;
}

bool ReadChangesInFull(size_t changed, size_t listed, size_t cached) {
  return cached == 0 || changed > std::max<size_t>(1000, listed / 4);
}

Result<SourceChanges> LdapDirectory::ReadChanges(
    const std::unordered_map<std::string, std::string>& cached) {
  warnings_.clear();
  if (!insecure_warning_.empty()) warnings_.push_back(insecure_warning_);
  SigpipeGuard sigpipe_guard;
  ROSTER_ASSIGN_OR_RETURN(std::unique_ptr<LdapConnection> connection, Connect());
  std::optional<Listing> listing = std::move(listing_);
  listing_.reset();  // lent once: a later read lists afresh
  if (!listing) {
    ROSTER_ASSIGN_OR_RETURN(Listing fresh, List(*connection));
    listing = std::move(fresh);
  }
  SourceChanges out;
  for (const auto& [key, stamp] : cached) {
    if (!listing->by_key.count(key)) out.removed.push_back(key);
  }
  std::sort(out.removed.begin(), out.removed.end());
  std::vector<std::pair<std::string, const Listed*>> changed;
  for (const auto& [key, listed] : listing->by_key) {
    auto it = cached.find(key);
    if (it == cached.end() || it->second != listed.stamp) changed.emplace_back(key, &listed);
  }
  std::sort(changed.begin(), changed.end());
  auto full = [&]() -> Result<SourceChanges> {
    SourceChanges all;
    all.full = true;
    ROSTER_ASSIGN_OR_RETURN(std::vector<SourceRecord> records, ReadUnderived(*connection));
    all.entries_read = static_cast<int64_t>(records.size());
    for (SourceRecord& r : records) {
      auto it = listing->by_key.find(r.key);
      // Not in the listing (added since): no stamp, so read again next time.
      std::string stamp = it == listing->by_key.end() ? std::string() : it->second.stamp;
      all.changed.push_back(StampedRecord{std::move(r), std::move(stamp)});
    }
    return all;
  };
  if (ReadChangesInFull(changed.size(), listing->by_key.size(), cached.size())) return full();
  if (changed.empty()) return out;
  std::vector<std::string> dns;
  dns.reserve(changed.size());
  for (const auto& [key, listed] : changed) dns.push_back(listed->dn);
  searches_ += static_cast<int64_t>(dns.size());
  ROSTER_ASSIGN_OR_RETURN(auto entries, connection->ReadMany(dns, mapping_.RequestedAttributes()));
  for (size_t i = 0; i < changed.size(); ++i) {
    if (i >= entries.size() || !entries[i]) return full();  // gone or moved since the listing
    std::optional<SourceRecord> record =
        MapLdapEntry(*entries[i], mapping_, options_.name, &warnings_);
    if (!record) continue;                               // skipped, with a warning
    if (record->key != changed[i].first) return full();  // another entry under that DN now
    out.changed.push_back(StampedRecord{std::move(*record), changed[i].second->stamp});
  }
  out.entries_read = static_cast<int64_t>(entries.size());
  return out;
}

std::optional<DirectoryUser> LdapDirectory::ToUser(const LdapEntry& entry,
                                                   const std::string& attribute,
                                                   const std::string& context) {
  std::string problem;
  std::optional<std::string> key = LdapEntryKey(entry, mapping_.key_attribute, &problem);
  if (!key) {
    warnings_.push_back(Prefix() + "entry " + Personal(entry.dn, entry.dn) + " (" + context + ") " +
                        problem + "; skipped");
    return std::nullopt;
  }
  DirectoryUser user{std::move(*key), entry.dn, {}};
  if (const auto* values = attribute.empty() ? nullptr : entry.Find(attribute)) {
    for (const std::string& v : *values) {
      if (mapping_.IsBinary(attribute)) {
        // Of the binary attributes only a GUID can name an account.
        if (std::string guid = FormatGuid(v); !guid.empty()) user.values.push_back(std::move(guid));
        continue;
      }
      bool repaired = false;
      user.values.push_back(RepairUtf8(v, &repaired));
      if (repaired) {
        warnings_.push_back(Prefix() + "entry " + Personal(entry.dn, entry.dn) + ": attribute " +
                            attribute +
                            " is not valid UTF-8; the invalid bytes were replaced with U+FFFD");
      }
    }
  }
  for (const std::string& a : options_.user_attributes) {
    const auto* values = entry.Find(a);
    if (values == nullptr || mapping_.IsBinary(a)) continue;
    bool repaired = false;
    for (const std::string& v : *values) user.attributes[a].push_back(RepairUtf8(v, &repaired));
  }
  return user;
}

Result<std::vector<DirectoryUser>> LdapDirectory::GroupMembers(const std::string& group,
                                                               const std::string& attribute) {
  if (!attribute.empty() && !IsValidAttributeName(attribute)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     Prefix() + "\"" + attribute + "\" is not an attribute name");
  }
  if (!IsValidDn(group)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     Prefix() + "group \"" + group + "\" is not a valid DN");
  }
  std::vector<std::string> attributes = {"objectClass", "member", "uniqueMember",
                                         mapping_.key_attribute};
  if (!attribute.empty()) attributes.push_back(attribute);
  for (const std::string& a : options_.user_attributes) attributes.push_back(a);
  SigpipeGuard sigpipe_guard;
  ROSTER_ASSIGN_OR_RETURN(std::unique_ptr<LdapConnection> connection, Connect());
  ROSTER_ASSIGN_OR_RETURN(auto top, connection->ReadMany({group}, attributes));
  if (!top[0]) {
    return MakeError(ErrorKind::kNotFound,
                     Prefix() + "group " + group + " does not exist on " + options_.url);
  }
  if (!IsGroup(*top[0])) {
    return MakeError(
        ErrorKind::kInvalidArgument,
        Prefix() + group + " is not a group (groupOfNames, groupOfUniqueNames or group)");
  }
  // Breadth first, one batch of reads per level of nesting; `seen` holds
  // every DN ever queued, so a cycle or a repeated member costs nothing.
  std::unordered_set<std::string> seen = {NormalizeDn(group)};
  std::unordered_set<std::string> keys;
  std::vector<DirectoryUser> users;
  std::vector<std::pair<std::string, std::string>> level;  // (member DN, group DN)
  for (std::string& m : MembersOf(*top[0])) level.emplace_back(std::move(m), top[0]->dn);
  while (!level.empty()) {
    std::vector<std::string> dns;
    std::vector<std::string> parents;
    for (auto& [dn, parent] : level) {
      if (seen.insert(NormalizeDn(dn)).second) {
        dns.push_back(std::move(dn));
        parents.push_back(std::move(parent));
      }
    }
    level.clear();
    if (dns.empty()) break;
    ROSTER_ASSIGN_OR_RETURN(auto entries, connection->ReadMany(dns, attributes));
    for (size_t i = 0; i < dns.size(); ++i) {
      if (!entries[i]) {
        warnings_.push_back(Prefix() + "member " + Personal(dns[i], dns[i]) + " of group " +
                            parents[i] + " does not exist; skipped");
        continue;
      }
      const LdapEntry& entry = *entries[i];
      if (IsGroup(entry)) {
        for (std::string& m : MembersOf(entry)) level.emplace_back(std::move(m), entry.dn);
        continue;
      }
      std::optional<DirectoryUser> user = ToUser(entry, attribute, "member of " + parents[i]);
      if (user && keys.insert(user->key).second) users.push_back(std::move(*user));
    }
  }
  return users;
}

Result<std::vector<DirectoryUser>> LdapDirectory::SearchUsers(const std::string& query,
                                                              const std::string& attribute) {
  if (text::Trim(query).empty()) {
    return MakeError(ErrorKind::kInvalidArgument, Prefix() + "the user query is empty");
  }
  if (!attribute.empty() && !IsValidAttributeName(attribute)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     Prefix() + "\"" + attribute + "\" is not an attribute name");
  }
  std::vector<std::string> attributes = {mapping_.key_attribute};
  if (!attribute.empty()) attributes.push_back(attribute);
  for (const std::string& a : options_.user_attributes) attributes.push_back(a);
  SigpipeGuard sigpipe_guard;
  ROSTER_ASSIGN_OR_RETURN(std::unique_ptr<LdapConnection> connection, Connect());
  std::vector<DirectoryUser> users;
  std::unordered_set<std::string> keys;
  ROSTER_RETURN_IF_ERROR(connection->Search(
      options_.base_dn, query, attributes, options_.page_size, [&](LdapEntry&& entry) -> Status {
        std::optional<DirectoryUser> user = ToUser(entry, attribute, "found by " + query);
        if (user && keys.insert(user->key).second) users.push_back(std::move(*user));
        return {};
      }));
  return users;
}

}  // namespace roster
