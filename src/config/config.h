// The configuration file (TOML): sources, targets, rules and the state file,
// read once into typed, validated values that wiring only has to construct
// objects from. Every mistake is an error naming the key and line.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "filter/filter.h"
#include "formats/vcard.h"
#include "mapping/merge.h"
#include "mapping/phone.h"

namespace roster {

enum class SourceType { kCsv, kVCardDir, kLdap };  // "csv" | "vcard-dir" | "ldap"
enum class TargetType { kCardDav };                // "carddav"

struct SourceConfig {
  std::string name;
  SourceType type = SourceType::kCsv;
  std::string path;                            // resolved against the config file's folder
  std::string key;                             // csv: column; ldap: key attribute (optional)
  std::map<std::string, std::string> columns;  // csv: contact field -> column
  char delimiter = ',';

  // ldap
  std::string url;  // ldap://host:port/ or ldaps://host:port/
  bool starttls = false;
  std::string ca_file;
  std::string bind_dn;
  std::string password_env;
  std::string password_file;
  std::string base_dn;
  std::string filter;                             // LDAP search filter; default per schema
  std::string schema = "inetorgperson";           // or "ad"
  std::map<std::string, std::string> attributes;  // contact field -> LDAP attribute
  std::vector<std::string> extra_attributes;      // also read, for filters
  int page_size = 500;
  int timeout_seconds = 60;
  // A simple bind without TLS to a host that is not loopback is refused unless set.
  bool allow_insecure = false;

  // Every type.
  // Entries never sent; the empty filter excludes none (ldap default: kDefaultLdapExclude).
  Filter exclude;
  // ISO region for numbers written without a country code, as written; one
  // libphonenumber knows (checked at load).
  std::string phone_region;
  std::string phone_region_attribute;  // the person's own region (ldap default: "c")
  PhoneFormat phone_format = PhoneFormat::kE164;
  int photo_max_bytes = 100 * 1024;
  int photo_max_pixels = 512;  // 0: no photos
  std::string opt_out_attribute;
};

// For ldap sources unless `exclude` is given: disabled accounts (Active
// Directory's userAccountControl bit 2) and entries hidden from address lists.
inline constexpr const char* kDefaultLdapExclude =
    "bit(userAccountControl, 2) or msExchHideFromAddressLists == 'true'";

// Target users who are not eligible unless users_exclude says otherwise:
// disabled accounts (Active Directory's userAccountControl bit 2).
inline constexpr const char* kDefaultUsersExclude = "bit(userAccountControl, 2)";

struct TargetConfig {
  std::string name;
  TargetType type = TargetType::kCardDav;
  std::string url;
  std::string username;
  std::string password_env;
  std::string password_file;
  std::string home_template;  // optional: "{url}{user}/" style override of discovery
  std::string ca_file;
  VCardVersion vcard_version = VCardVersion::k30;
  int max_in_flight = 1;
  int timeout_seconds = 120;
  std::vector<std::string> users;  // the default target users of rules that name none
  // Per-user credentials: a file (no group or other permission bits) of
  // "USER:PASSWORD" lines; each target user then logs in as themselves.
  std::string credentials_file;
  // Basic authentication over plain http:// to a host that is not loopback is
  // refused unless set (then a warning says so).
  bool allow_insecure = false;
  // A Retry-After longer than this leaves the item for the next run.
  int max_retry_after_seconds = 60;
};

// Target users taken from a directory source.
struct UsersFrom {
  std::string source;     // an ldap source
  std::string group;      // DN of a group: its members, nested groups included
  std::string filter;     // or an LDAP filter
  std::string attribute;  // names the account in the target ("uid", "mail")
};

struct RuleConfig {
  std::string name;
  std::vector<std::string> sources;  // "source" or "sources", in priority order
  std::string target;
  std::string addressbook;
  Filter filter;  // empty: everyone
  int max_delete_percent = 20;
  int max_update_percent = 50;
  std::vector<std::string> users;  // a fixed list, overriding the target's
  std::optional<UsersFrom> users_from;
  // Directory users who do not receive the rule (a filter over their entry;
  // the empty filter excludes none). ParseConfig gives kDefaultUsersExclude
  // when the file names none.
  Filter users_exclude;
  bool include_self = false;
  FieldPolicy fields;                   // from field -> "overwrite" | "if_blank" | "keep_user"
  AdoptMode adopt = AdoptMode::kNever;  // "never" | "merge"
  bool offboard_remove = true;          // offboard = "remove" | "keep"
};

struct Config {
  std::string path;        // of the file itself
  std::string state_path;  // resolved
  // Each run stops cleanly once it has run this long: what is done is
  // recorded, the rest waits for the next run.
  int run_timeout_seconds = 3600;
  // What the file allows but an administrator should hear about (allow_insecure).
  std::vector<std::string> warnings;
  std::map<std::string, SourceConfig> sources;
  std::map<std::string, TargetConfig> targets;
  std::vector<RuleConfig> rules;
};

// Reads and validates the file. Errors look like
// "roster.toml:14: unknown key \"colums\" in [sources.staff]".
Result<Config> LoadConfig(const std::string& path);
Result<Config> ParseConfig(const std::string& text, const std::string& path);

// The password of a target, from its environment variable or file (never
// from the config file itself). Empty when the target has no credentials.
Result<std::string> ReadTargetPassword(const TargetConfig& target);
// The same for an ldap source's bind password.
Result<std::string> ReadSourcePassword(const SourceConfig& source);
// A target's per-user passwords from its credentials_file: user -> password.
Result<std::map<std::string, std::string>> ReadTargetCredentials(const TargetConfig& target);

// A secret file must be private to its owner: any group or other permission
// bit (0640, 0644...) is refused; 0400 and 0600 are fine (systemd credentials).
Status CheckSecretFile(const std::string& what, const std::string& path);

// Whether a URL's host is loopback (127.0.0.0/8, ::1, localhost).
bool IsLoopbackUrl(const std::string& url);

}  // namespace roster
