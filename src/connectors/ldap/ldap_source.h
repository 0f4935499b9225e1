// An LDAP directory (OpenLDAP's inetOrgPerson or Active Directory) as a
// source of people and as a directory of target users: paged searches
// through libldap, entries mapped to contacts as ldap_mapping.h describes.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "connectors/ldap/ldap_mapping.h"
#include "core/connector.h"
#include "core/result.h"

namespace roster {

class LdapConnection;

struct LdapOptions {
  std::string name;       // source name, used in every message: "source dir: ..."
  std::string url;        // ldap://host:port/ or ldaps://host:port/
  bool starttls = false;  // require StartTLS on ldap:// (ldaps:// is always TLS)
  // PEM bundle; empty = ldap.conf's TLS_CACERT, else the system CAs.
  // Certificates are always verified (DEMAND), per connection.
  std::string ca_file;
  std::string bind_dn;   // empty = anonymous
  std::string password;  // already read from env/file by the caller; never in a message
  std::string base_dn;
  // Default per schema: "(objectClass=inetOrgPerson)" /
  // AD: "(&(objectCategory=person)(objectClass=user))".
  std::string filter;
  std::string schema = "inetorgperson";  // or "ad": defaults for key, filter and mapping
  std::string key_attribute;             // default entryUUID / AD: objectGUID
  // Contact field (or "photo", "office", "manager", "proxy_addresses") ->
  // attribute; overrides a default; an empty attribute removes the default.
  std::map<std::string, std::string> mapping;
  std::vector<std::string> extra_attributes;  // also fetched into SourceRecord.attributes
  int page_size = 500;                        // RFC 2696 page size; 0 = do not page
  int timeout_seconds = 60;                   // connect timeout and the limit on each request
  // A simple bind over ldap:// without StartTLS sends the password in clear,
  // so it is refused unless every server is this machine (127.0.0.0/8, ::1,
  // localhost) or this is set; then it is a warning in every ReadAll.
  bool allow_insecure = false;
  // Also read for every target user (GroupMembers, SearchUsers) into
  // DirectoryUser::attributes: what the rules' users_exclude tests.
  std::vector<std::string> user_attributes;
};

// Reads people (Source) and target users (Directory) from one LDAP server.
// Every call opens its own connection, binds, works and unbinds. Not
// thread-safe: one thread at a time.
class LdapDirectory final : public Source, public Directory {
 public:
  ~LdapDirectory() override;

  // A paged subtree search of base_dn with the filter; every entry with a
  // key becomes a record (key: entryUUID in lower case, or objectGUID as a
  // GUID string; never the DN). Fails as a whole on any error.
  Result<std::vector<SourceRecord>> ReadAll() override;
  // Skipped entries and repaired attributes of the last ReadAll, and of any
  // GroupMembers/SearchUsers since; ReadAll starts the list afresh.
  std::vector<std::string> Warnings() const override { return warnings_; }
  // A hash over every entry's key, DN and modification stamps
  // (modifyTimestamp, entryCSN, uSNChanged), read with the same base and
  // filter as ReadAll but without the bodies.
  Result<std::string> Version() override;

  // Delta reads (see Source::ReadChanges): the listing Version() makes
  // (each entry's key, DN and modification stamps; on Active Directory the
  // domain controller's invocationId too, so that another controller's
  // uSNChanged never passes for the same), then a base read of each entry
  // that is new or whose stamp moved. More than max(1000, a quarter of the
  // directory), an empty cache, or an entry gone between the listing and its
  // read: one paged read of everything instead. A Version() just before
  // lends its listing to the next ReadChanges, so that a run lists once.
  bool ReadsChanges() const override { return true; }
  Result<SourceChanges> ReadChanges(
      const std::unordered_map<std::string, std::string>& cached) override;
  std::string CacheShape() const override;
  // The manager's display name on each report (ResolveManagers).
  void Derive(std::vector<SourceRecord>& records) const override;
  // The reports of every touched entry (ManagerDependents).
  std::optional<std::vector<std::string>> DerivedDependents(
      const std::vector<SourceRecord>& records,
      const std::vector<const SourceRecord*>& touched) const override;
  // Searches and base reads made so far (each one request), for tests.
  int64_t searches() const { return searches_; }

  // Follows member and uniqueMember from `group` through nested groups
  // (groupOfNames, groupOfUniqueNames, AD's group), each person once
  // whatever the cycles; a member DN that does not exist is skipped with a
  // warning. A missing group is kNotFound. `attribute` may be empty.
  Result<std::vector<DirectoryUser>> GroupMembers(const std::string& group,
                                                  const std::string& attribute) override;
  // A paged subtree search of base_dn with the LDAP filter `query`.
  Result<std::vector<DirectoryUser>> SearchUsers(const std::string& query,
                                                 const std::string& attribute) override;

  const LdapOptions& options() const { return options_; }
  const LdapMapping& mapping() const { return mapping_; }

 private:
  friend Result<std::unique_ptr<LdapDirectory>> OpenLdapDirectory(LdapOptions options);
  LdapDirectory(LdapOptions options, LdapMapping mapping);
  Result<std::unique_ptr<LdapConnection>> Connect() const;
  // The user an entry names, or nullopt (with a warning) without a key.
  std::optional<DirectoryUser> ToUser(const LdapEntry& entry, const std::string& attribute,
                                      const std::string& context);
  std::string Prefix() const { return "source " + options_.name + ": "; }

  // One entry of a listing: its DN and its stamp (see Version()).
  struct Listed {
    std::string dn;
    std::string stamp;
  };
  struct Listing {
    std::unordered_map<std::string, Listed> by_key;
    std::string version;
  };
  Result<Listing> List(LdapConnection& connection);
  // Every entry, mapped but not derived (no manager names resolved).
  Result<std::vector<SourceRecord>> ReadUnderived(LdapConnection& connection);
  std::optional<Listing> listing_;  // what the last Version() listed, for one ReadChanges
  int64_t searches_ = 0;

  LdapOptions options_;
  LdapMapping mapping_;
  std::vector<std::string> warnings_;
  std::string insecure_warning_;  // set when allow_insecure let a clear-text bind through
};

// Whether a delta read reads everything instead: an empty cache, or more
// changed entries than max(1000, a quarter of those listed).
bool ReadChangesInFull(size_t changed, size_t listed, size_t cached);

// Checks the options (URL scheme, schema, mapping, names, limits, a
// password that would travel in clear: see allow_insecure) and
// returns a directory that connects only when used. Errors are
// kInvalidArgument sentences starting with "source NAME: ".
Result<std::unique_ptr<LdapDirectory>> OpenLdapDirectory(LdapOptions options);

}  // namespace roster
