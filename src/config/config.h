// The configuration file (TOML): tenants, sources, targets, rules and the state file,
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

// "csv" | "vcard-dir" | "ldap" | "graph" | "graph-folder"
enum class SourceType { kCsv, kVCardDir, kLdap, kGraph, kGraphFolder };
enum class TargetType { kCardDav, kGraph };  // "carddav" | "graph"

// One Entra app registration in one tenant ([tenants.NAME]): how graph
// sources and targets sign in and where they send requests. Exactly one of
// certificate_file, client_secret_file and client_secret_env is set.
struct TenantConfig {
  std::string name;
  std::string tenant_id;  // a domain ("contoso.onmicrosoft.com") or the directory's GUID
  std::string client_id;  // the application (client) id; not a GUID gives a warning
  // PEM: certificate and private key. Resolved against the config file's
  // folder; its permissions are checked when the Graph auth module loads it.
  std::string certificate_file;
  std::string client_secret_file;  // resolved; read by ReadTenantSecret
  std::string client_secret_env;   // an environment variable's name
  // Absolute http(s) URLs, no query or fragment, trailing '/' dropped. Plain
  // http:// only to loopback or with allow_insecure (then a warning).
  std::string authority = "https://login.microsoftonline.com";
  std::string graph_url = "https://graph.microsoft.com";
  std::string ca_file;  // resolved; extra CA certificates (PEM) for both URLs
  bool allow_insecure = false;
  int timeout_seconds = 120;  // per request, token requests included
  // A longer Retry-After fails a graph source's read (targets have their own).
  int max_retry_after_seconds = 60;
};

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
  std::string filter;                    // LDAP search filter; default per schema
  std::string schema = "inetorgperson";  // or "ad"
  // contact field -> LDAP attribute (graph: Graph property, dotted paths allowed)
  std::map<std::string, std::string> attributes;
  std::vector<std::string> extra_attributes;  // also read, for filters
  int page_size = 500;                        // graph: 999 (1..999)
  int timeout_seconds = 60;
  // A simple bind without TLS to a host that is not loopback is refused unless set.
  bool allow_insecure = false;

  // graph and graph-folder
  std::string tenant;  // a key of Config::tenants
  // graph: what `read` lists ("users", "org_contacts"); both by default.
  bool read_users = true;
  bool read_org_contacts = true;
  // graph: groups (object ids or display names) whose transitive membership
  // filters test through the memberOf field.
  std::vector<std::string> groups;
  // graph-folder: a contact folder of one mailbox.
  std::string mailbox;                   // a UPN or the user's object id
  std::string folder;                    // as written: "Partners" or "Parent/Child"
  std::vector<std::string> folder_path;  // folder split at '/': {"Parent", "Child"}

  // Every type.
  // Entries never sent; the empty filter excludes none (defaults: ldap
  // kDefaultLdapExclude, graph kDefaultGraphExclude).
  Filter exclude;
  // ISO region for numbers written without a country code, as written; one
  // libphonenumber knows (checked at load).
  std::string phone_region;
  // The person's own region (defaults: ldap "c", graph "usageLocation").
  std::string phone_region_attribute;
  PhoneFormat phone_format = PhoneFormat::kE164;
  int photo_max_bytes = 100 * 1024;
  int photo_max_pixels = 512;  // 0: no photos
  std::string opt_out_attribute;
};

// For ldap sources unless `exclude` is given: disabled accounts (Active
// Directory's userAccountControl bit 2) and entries hidden from address lists.
inline constexpr const char* kDefaultLdapExclude =
    "bit(userAccountControl, 2) or msExchHideFromAddressLists == 'true'";

// For graph sources unless `exclude` is given: disabled accounts and guests
// (Graph's booleans arrive as "true"/"false"; org contacts have neither property).
inline constexpr const char* kDefaultGraphExclude =
    "accountEnabled == 'false' or userType == 'Guest'";

// Target users who are not eligible unless users_exclude says otherwise:
// disabled accounts (Active Directory's userAccountControl bit 2), for an
// ldap users_from source.
inline constexpr const char* kDefaultUsersExclude = "bit(userAccountControl, 2)";
// The same for a graph users_from source.
inline constexpr const char* kDefaultGraphUsersExclude = "accountEnabled == 'false'";

struct TargetConfig {
  std::string name;
  TargetType type = TargetType::kCardDav;
  std::string tenant;  // graph: a key of Config::tenants
  // carddav only: url, username, password_*, home_template, ca_file,
  // vcard_version, credentials_file, allow_insecure.
  std::string url;
  std::string username;
  std::string password_env;
  std::string password_file;
  std::string home_template;  // optional: "{url}{user}/" style override of discovery
  std::string ca_file;
  VCardVersion vcard_version = VCardVersion::k30;
  int max_in_flight = 1;      // carddav: address books at once (1..64); graph: mailboxes, 4 (1..16)
  int timeout_seconds = 120;  // graph: a copy of its tenant's (not a key of a graph target)
  std::vector<std::string> users;  // the default target users of rules that name none
  // Per-user credentials: a file (no group or other permission bits) of
  // "USER:PASSWORD" lines; each target user then logs in as themselves.
  std::string credentials_file;
  // Basic authentication over plain http:// to a host that is not loopback is
  // refused unless set (then a warning says so).
  bool allow_insecure = false;
  // A Retry-After longer than this leaves the item for the next run
  // (carddav default 60, graph 600; 0..600).
  int max_retry_after_seconds = 60;
};

// Target users taken from a directory source.
struct UsersFrom {
  std::string source;  // an ldap or graph source
  // ldap: DN of a group; graph: its object id or display name. Its members,
  // nested groups included.
  std::string group;
  std::string filter;  // ldap only: or an LDAP filter
  // Names the account in the target ("uid", "mail"; graph source default
  // "userPrincipalName"). For a graph target "userPrincipalName" or "id" with
  // a graph source, the UPN attribute with an ldap one; never "mail".
  std::string attribute;
};

struct RuleConfig {
  std::string name;
  std::vector<std::string> sources;  // "source" or "sources", in priority order
  std::string target;
  // The address book's (graph: contact folder's) display name. With
  // placement "default" it defaults to the category, and names the rule's
  // book in messages only.
  std::string addressbook;
  // graph targets only. placement = "default": the mailbox's main Contacts
  // folder instead of a folder of the rule's own.
  bool placement_default = false;
  // graph targets only: an Outlook category on each managed contact. With
  // placement "default" it is never empty (default: addressbook).
  std::string category;
  Filter filter;  // empty: everyone
  int max_delete_percent = 20;
  int max_update_percent = 50;
  std::vector<std::string> users;  // a fixed list, overriding the target's
  std::optional<UsersFrom> users_from;
  // Directory users who do not receive the rule (a filter over their entry;
  // the empty filter excludes none). ParseConfig gives kDefaultUsersExclude
  // (kDefaultGraphUsersExclude for a graph users_from source) when the file
  // names none.
  Filter users_exclude;
  bool include_self = false;
  FieldPolicy fields;                   // from field -> "overwrite" | "if_blank" | "keep_user"
  AdoptMode adopt = AdoptMode::kNever;  // "never" | "merge"
  bool offboard_remove = true;          // offboard = "remove" | "keep"
};

// What the state keeps between runs ([state] cache).
enum class CacheMode {
  kEncrypted,  // "encrypted": people's fields sealed, for delta reads
  kNone,       // "none": keyed identities, etags and content hashes only
};

struct Config {
  std::string path;        // of the file itself
  std::string state_path;  // resolved
  // The state's key: a file (resolved; "roster.key" beside the config by
  // default), or the name of an environment variable holding it (base64),
  // never both. `roster keys init` creates it.
  std::string state_key_file;
  std::string state_key_env;
  CacheMode cache = CacheMode::kEncrypted;
  // A cached entry expires this many days after it was last read from its
  // source; run history older than that goes too.
  int retention_days = 60;
  bool purge_after_sync = false;  // wipe the cache at the end of every run
  // [audit]: the tamper-evident log of what roster did (audit/audit.h),
  // "roster-audit.jsonl" beside the state file unless `path` says otherwise;
  // entries older than retention_days are pruned at a signed checkpoint.
  std::string audit_path;  // resolved
  int audit_retention_days = 400;
  // [gdpr] register: who was erased (gdpr/register.h), kept outside the
  // state so that a lost state does not bring them back;
  // "roster-erasures.jsonl" beside the state file by default.
  std::string erasure_register;  // resolved
  // Each run stops cleanly once it has run this long: what is done is
  // recorded, the rest waits for the next run.
  int run_timeout_seconds = 3600;
  // What the file allows but an administrator should hear about (allow_insecure).
  std::vector<std::string> warnings;
  std::map<std::string, TenantConfig> tenants;
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
// A tenant's client secret, from client_secret_file (CheckSecretFile applies)
// or client_secret_env, without a trailing newline. Empty for a certificate
// tenant; an unset variable, an empty secret or a file of several lines is
// an error naming it (never quoting it).
Result<std::string> ReadTenantSecret(const TenantConfig& tenant);
// A target's per-user passwords from its credentials_file: user -> password.
Result<std::map<std::string, std::string>> ReadTargetCredentials(const TargetConfig& target);

// A secret file must be private to its owner: any group or other permission
// bit (0640, 0644...) is refused; 0400 and 0600 are fine (systemd credentials).
Status CheckSecretFile(const std::string& what, const std::string& path);

// Whether a URL's host is loopback (127.0.0.0/8, ::1, localhost).
bool IsLoopbackUrl(const std::string& url);

}  // namespace roster
