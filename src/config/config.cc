#include "config/config.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/contact.h"
#include "core/text.h"

namespace roster {
namespace {

namespace fs = std::filesystem;

// Reads one TOML table, remembering which keys were used so that anything left
// over is reported as unknown: a misspelt key must never be silently ignored.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string where, const std::string& file)
      : table_(table), where_(std::move(where)), file_(file) {}

  std::string At(const toml::node& node) const {
    return file_ + ":" + std::to_string(node.source().begin.line);
  }
  std::string At() const { return At(table_); }
  // The line of `key`, or of the table when the key is absent.
  std::string AtKey(const std::string& key) const {
    const toml::node* node = table_.get(key);
    return node ? At(*node) : At();
  }

  Result<std::string> String(const std::string& key, bool required, std::string fallback = "") {
    used_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) {
      if (required) return Missing(key);
      return fallback;
    }
    if (!node->is_string()) return WrongType(*node, key, "a string");
    return std::string(*node->value<std::string>());
  }

  Result<int> Int(const std::string& key, int fallback, int min, int max) {
    used_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) return fallback;
    if (!node->is_integer()) return WrongType(*node, key, "an integer");
    int64_t v = *node->value<int64_t>();
    if (v < min || v > max) {
      return MakeError(ErrorKind::kInvalidArgument, At(*node) + ": " + key + " in " + where_ +
                                                        " must be between " + std::to_string(min) +
                                                        " and " + std::to_string(max));
    }
    return static_cast<int>(v);
  }

  // Whether the key is present (and marks it as used).
  bool Has(const std::string& key) {
    used_.insert(key);
    return table_.get(key) != nullptr;
  }

  Result<bool> Bool(const std::string& key, bool fallback) {
    used_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) return fallback;
    if (!node->is_boolean()) return WrongType(*node, key, "true or false");
    return *node->value<bool>();
  }

  // One of `choices`, or the fallback when absent.
  Result<std::string> Choice(const std::string& key, std::vector<std::string> choices) {
    ROSTER_ASSIGN_OR_RETURN(std::string v, String(key, false, choices.front()));
    for (const std::string& c : choices) {
      if (v == c) return v;
    }
    std::string list;
    for (size_t i = 0; i < choices.size(); ++i) {
      list += (i == 0 ? "\"" : i + 1 == choices.size() ? " or \"" : ", \"") + choices[i] + "\"";
    }
    return MakeError(ErrorKind::kInvalidArgument, At(*table_.get(key)) + ": " + key + " in " +
                                                      where_ + " must be " + list + ", not \"" + v +
                                                      "\"");
  }

  // One of the names in `choices` (the first when absent), as its value.
  template <typename T>
  Result<T> Enum(const std::string& key, const std::vector<std::pair<std::string, T>>& choices) {
    std::vector<std::string> names;
    for (const auto& choice : choices) names.push_back(choice.first);
    ROSTER_ASSIGN_OR_RETURN(std::string name, Choice(key, names));
    // Choice gave one of the names, so the search cannot miss.
    return std::find_if(choices.begin(), choices.end(),
                        [&](const auto& choice) { return choice.first == name; })
        ->second;
  }

  // A table of string values: { field = "value", ... }.
  Result<std::map<std::string, std::string>> StringMap(const std::string& key) {
    ROSTER_ASSIGN_OR_RETURN(const toml::table* t, Table(key, false));
    std::map<std::string, std::string> out;
    if (!t) return out;
    for (const auto& [k, node] : *t) {
      if (!node.is_string()) return WrongType(node, key + "." + std::string(k.str()), "a string");
      out[std::string(k.str())] = *node.value<std::string>();
    }
    return out;
  }

  Result<std::vector<std::string>> Strings(const std::string& key, bool required) {
    used_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) {
      if (required) return Missing(key);
      return std::vector<std::string>{};
    }
    const toml::array* arr = node->as_array();
    if (!arr) return WrongType(*node, key, "an array of strings");
    std::vector<std::string> out;
    for (const toml::node& e : *arr) {
      if (!e.is_string()) return WrongType(e, key, "an array of strings");
      out.push_back(*e.value<std::string>());
    }
    return out;
  }

  Result<const toml::table*> Table(const std::string& key, bool required) {
    used_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) {
      if (required) return Missing(key);
      return static_cast<const toml::table*>(nullptr);
    }
    if (!node->is_table()) return WrongType(*node, key, "a table");
    return node->as_table();
  }

  Status NoUnknownKeys() const {
    for (const auto& [k, node] : table_) {
      std::string key(k.str());
      if (!used_.count(key)) {
        return MakeError(ErrorKind::kInvalidArgument,
                         At(node) + ": unknown key \"" + key + "\" in " + where_);
      }
    }
    return {};
  }

  const std::string& where() const { return where_; }

 private:
  Error Missing(const std::string& key) const {
    return MakeError(ErrorKind::kInvalidArgument,
                     At() + ": missing key \"" + key + "\" in " + where_);
  }
  Error WrongType(const toml::node& node, const std::string& key, const char* want) const {
    return MakeError(ErrorKind::kInvalidArgument,
                     At(node) + ": " + key + " in " + where_ + " must be " + want);
  }

  const toml::table& table_;
  std::string where_;
  const std::string& file_;
  std::set<std::string> used_;
};

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

// Secrets do not belong in the config file: a "password" key of any type or
// value is refused (never read, so it cannot end up in a message).
Status RefusePassword(TableReader& r) {
  if (!r.Has("password")) return {};
  return MakeError(ErrorKind::kInvalidArgument, r.At() + ": " + r.where() +
                                                    " must not hold a password; use "
                                                    "password_env or password_file");
}

// "scheme://user:pass@host/" hides a credential in a URL, where logs and
// process listings show it: refused, whatever follows.
Status RefuseUserInfo(TableReader& r, const std::string& url) {
  size_t start = url.find("://");
  if (start == std::string::npos) return {};
  start += 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority = url.substr(start, end == std::string::npos ? end : end - start);
  if (authority.find('@') == std::string::npos) return {};
  return MakeError(ErrorKind::kInvalidArgument,
                   r.At() + ": url in " + r.where() +
                       " must not carry a user name or password (user:pass@); use username "
                       "and password_env or password_file");
}

// A field name of the contact model, or "photo" where photos are meant.
bool IsFieldName(const std::string& field, bool photo_too) {
  return IsContactField(field) || (photo_too && field == "photo");
}

Error UnknownField(const TableReader& r, const std::string& field, const std::string& where) {
  return MakeError(ErrorKind::kInvalidArgument,
                   r.At() + ": unknown contact field \"" + field + "\" in " + where +
                       " (see docs/configuration.md for the field names)");
}

// An expression of the filter language (filter/filter.h) under `key`;
// an error names the key's own line, so that its column points into it.
Result<Filter> ReadFilter(const TableReader& r, const toml::table& t, const std::string& key,
                          const std::string& text, const std::string& what) {
  auto filter = Filter::Parse(text);
  if (filter.ok()) return filter;
  const toml::node* at = t.get(key);
  return MakeError(ErrorKind::kInvalidArgument,
                   (at ? r.At(*at) : r.At()) + ": " + what + filter.error().message);
}

// A tenant id goes into the token endpoint's path: a domain name or a GUID.
bool IsTenantId(const std::string& id) {
  return !id.empty() && id.size() <= 256 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
  });
}

// 8-4-4-4-12 hex digits, as Entra's application (client) ids are.
bool IsGuid(const std::string& id) {
  if (id.size() != 36) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? id[i] != '-' : !std::isxdigit(static_cast<unsigned char>(id[i]))) return false;
  }
  return true;
}

// Text that goes into a request or a message as it is: no spaces or control
// characters (so no line breaks in an error, no header injection).
bool IsPlainToken(const std::string& s) {
  return !s.empty() && s.size() <= 256 && std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
  });
}

bool HasControl(const std::string& s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// A Graph property, or a dotted path into a complex one
// ("onPremisesExtensionAttributes.extensionAttribute1").
bool IsGraphProperty(const std::string& name) {
  if (name.empty() || name.size() > 256) return false;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string part = name.substr(start, dot == std::string::npos ? dot : dot - start);
    if (part.empty() || !std::all_of(part.begin(), part.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
        })) {
      return false;
    }
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

Error BadGraphProperty(const TableReader& r, const std::string& key, const std::string& name) {
  return MakeError(ErrorKind::kInvalidArgument,
                   r.AtKey(key) + ": " + key + " in " + r.where() + ": \"" +
                       text::SafeForOutput(name) +
                       "\" is not a Graph property name (letters, digits and '_', '.' between "
                       "the parts of a path)");
}

// The key's value names a [tenants.NAME].
Result<std::string> ReadTenantName(TableReader& r,
                                   const std::map<std::string, TenantConfig>& tenants) {
  ROSTER_ASSIGN_OR_RETURN(std::string tenant, r.String("tenant", true));
  if (!tenants.count(tenant)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.AtKey("tenant") + ": " + r.where() + " names tenant \"" +
                         text::SafeForOutput(tenant) + "\", which is not defined in [tenants]");
  }
  return tenant;
}

// An absolute http(s) URL without query, fragment or user:pass@, the
// trailing '/' dropped. Plain http:// leaves this machine only with
// allow_insecure, and then the administrator hears of it every run.
Result<std::string> ReadHttpUrl(TableReader& r, const std::string& key, const std::string& fallback,
                                bool allow_insecure, std::vector<std::string>& warnings,
                                const std::string& owner) {
  ROSTER_ASSIGN_OR_RETURN(std::string url, r.String(key, false, fallback));
  const std::string at = r.AtKey(key) + ": " + key + " in " + r.where();
  const bool https = text::StartsWithNoCase(url, "https://");
  const bool http = text::StartsWithNoCase(url, "http://");
  const size_t host = http ? 7 : https ? 8 : 0;
  const size_t host_end = url.find('/', host);
  const std::string authority =
      (http || https) ? url.substr(host, host_end == std::string::npos ? host_end : host_end - host)
                      : "";
  if ((!http && !https) || authority.empty() || authority[0] == ':' ||
      url.find_first_of("?# \t") != std::string::npos || HasControl(url)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     at +
                         " must be an absolute http:// or https:// URL without query or "
                         "fragment, such as " +
                         fallback + ", not \"" + text::SafeForOutput(url) + "\"");
  }
  if (authority.find('@') != std::string::npos) {
    return MakeError(ErrorKind::kInvalidArgument,
                     at + " must not carry a user name or password (user:pass@)");
  }
  while (url.size() > host + authority.size() && url.back() == '/') url.pop_back();
  if (http && !IsLoopbackUrl(url)) {
    if (!allow_insecure) {
      return MakeError(ErrorKind::kInvalidArgument,
                       at + " is plain http:// to " + url +
                           ", where anyone on the path reads the credential and tokens; use "
                           "https://, or set allow_insecure = true if this network is trusted");
    }
    warnings.push_back(owner + ": allow_insecure is set: credentials and tokens travel in clear " +
                       "over http:// to " + url);
  }
  return url;
}

Result<TenantConfig> ReadTenant(const std::string& name, const toml::table& t,
                                const std::string& file, const std::string& dir,
                                std::vector<std::string>& warnings) {
  TableReader r(t, "[tenants." + name + "]", file);
  TenantConfig c;
  c.name = name;
  ROSTER_ASSIGN_OR_RETURN(c.tenant_id, r.String("tenant_id", true));
  if (!IsTenantId(c.tenant_id)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.AtKey("tenant_id") + ": tenant_id in " + r.where() +
                         " must be a domain (contoso.onmicrosoft.com) or the directory's GUID: "
                         "letters, digits, '.' and '-', not \"" +
                         text::SafeForOutput(c.tenant_id) + "\"");
  }
  ROSTER_ASSIGN_OR_RETURN(c.client_id, r.String("client_id", true));
  if (!IsPlainToken(c.client_id)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.AtKey("client_id") + ": client_id in " + r.where() +
                         " must be the app registration's application (client) id, such as "
                         "00000000-0000-0000-0000-000000000000");
  }
  if (!IsGuid(c.client_id)) {
    warnings.push_back("tenant " + name + ": client_id \"" + text::SafeForOutput(c.client_id) +
                       "\" is not a GUID, as Entra's application (client) ids are; check it");
  }
  ROSTER_ASSIGN_OR_RETURN(std::string cert, r.String("certificate_file", false));
  c.certificate_file = Resolve(dir, cert);
  ROSTER_ASSIGN_OR_RETURN(std::string secret_file, r.String("client_secret_file", false));
  c.client_secret_file = Resolve(dir, secret_file);
  ROSTER_ASSIGN_OR_RETURN(c.client_secret_env, r.String("client_secret_env", false));
  // Secrets do not belong in the config file: refused, never read.
  for (const char* key : {"client_secret", "password"}) {
    if (r.Has(key)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.AtKey(key) + ": " + r.where() +
                           " must not hold a secret; use certificate_file, client_secret_file or "
                           "client_secret_env");
    }
  }
  std::vector<std::string> given;
  if (!c.certificate_file.empty()) given.push_back("certificate_file");
  if (!c.client_secret_file.empty()) given.push_back("client_secret_file");
  if (!c.client_secret_env.empty()) given.push_back("client_secret_env");
  if (given.size() != 1) {
    std::string both = given.empty() ? "" : given[0] + " and " + given[1];
    if (given.size() == 3) both = "certificate_file, client_secret_file and client_secret_env";
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": " + r.where() +
                         (given.empty() ? " needs " : " has " + both + "; give only ") +
                         "one of certificate_file (recommended), client_secret_file or "
                         "client_secret_env");
  }
  if (!c.client_secret_env.empty() && !IsPlainToken(c.client_secret_env)) {
    return MakeError(ErrorKind::kInvalidArgument, r.AtKey("client_secret_env") +
                                                      ": client_secret_env in " + r.where() +
                                                      " must be an environment variable's name");
  }
  ROSTER_ASSIGN_OR_RETURN(c.allow_insecure, r.Bool("allow_insecure", false));
  const std::string owner = "tenant " + name;
  ROSTER_ASSIGN_OR_RETURN(
      c.authority, ReadHttpUrl(r, "authority", c.authority, c.allow_insecure, warnings, owner));
  ROSTER_ASSIGN_OR_RETURN(
      c.graph_url, ReadHttpUrl(r, "graph_url", c.graph_url, c.allow_insecure, warnings, owner));
  ROSTER_ASSIGN_OR_RETURN(std::string ca, r.String("ca_file", false));
  c.ca_file = Resolve(dir, ca);
  ROSTER_ASSIGN_OR_RETURN(c.timeout_seconds, r.Int("timeout_seconds", 120, 1, 3600));
  ROSTER_ASSIGN_OR_RETURN(c.max_retry_after_seconds, r.Int("max_retry_after_seconds", 60, 0, 600));
  ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
  return c;
}

Status ReadCsvSource(TableReader& r, const std::string& file, const std::string& dir,
                     SourceConfig& s) {
  ROSTER_ASSIGN_OR_RETURN(std::string path, r.String("path", true));
  s.path = Resolve(dir, path);
  ROSTER_ASSIGN_OR_RETURN(s.key, r.String("key", true));
  ROSTER_ASSIGN_OR_RETURN(std::string delimiter, r.String("delimiter", false, ","));
  if (delimiter.size() != 1) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": delimiter in " + r.where() + " must be one character");
  }
  s.delimiter = delimiter[0];
  ROSTER_ASSIGN_OR_RETURN(const toml::table* cols, r.Table("columns", true));
  TableReader cr(*cols, "[sources." + s.name + ".columns]", file);
  for (const auto& [k, node] : *cols) {
    std::string field(k.str());
    if (!IsContactField(field)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       cr.At(node) + ": unknown contact field \"" + field + "\" in " + cr.where() +
                           " (see docs/configuration.md for the field names)");
    }
    ROSTER_ASSIGN_OR_RETURN(s.columns[field], cr.String(field, true));
  }
  return {};
}

Status ReadLdapSource(TableReader& r, const std::string& dir, SourceConfig& s) {
  ROSTER_ASSIGN_OR_RETURN(s.url, r.String("url", true));
  if (!s.url.starts_with("ldap://") && !s.url.starts_with("ldaps://")) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": url in " + r.where() + " must start with ldap:// or ldaps://");
  }
  ROSTER_ASSIGN_OR_RETURN(s.starttls, r.Bool("starttls", false));
  if (s.starttls && s.url.starts_with("ldaps://")) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": " + r.where() + " has starttls with an ldaps:// url; use one");
  }
  ROSTER_ASSIGN_OR_RETURN(std::string ca, r.String("ca_file", false));
  s.ca_file = Resolve(dir, ca);
  ROSTER_ASSIGN_OR_RETURN(s.bind_dn, r.String("bind_dn", false));
  ROSTER_ASSIGN_OR_RETURN(s.password_env, r.String("password_env", false));
  ROSTER_ASSIGN_OR_RETURN(std::string pw_file, r.String("password_file", false));
  s.password_file = Resolve(dir, pw_file);
  ROSTER_RETURN_IF_ERROR(RefusePassword(r));
  if (!s.password_env.empty() && !s.password_file.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": " + r.where() + " has both password_env and password_file");
  }
  ROSTER_ASSIGN_OR_RETURN(s.base_dn, r.String("base_dn", true));
  ROSTER_ASSIGN_OR_RETURN(s.filter, r.String("filter", false));
  ROSTER_ASSIGN_OR_RETURN(s.schema, r.Choice("schema", {"inetorgperson", "ad"}));
  ROSTER_ASSIGN_OR_RETURN(s.key, r.String("key", false));
  ROSTER_ASSIGN_OR_RETURN(s.attributes, r.StringMap("attributes"));
  for (const auto& [field, attr] : s.attributes) {
    if (!IsFieldName(field, true) && field != "proxy_addresses") {
      return UnknownField(r, field, "[sources." + s.name + ".attributes]");
    }
  }
  ROSTER_ASSIGN_OR_RETURN(s.extra_attributes, r.Strings("extra_attributes", false));
  ROSTER_ASSIGN_OR_RETURN(s.page_size, r.Int("page_size", 500, 1, 100000));
  ROSTER_ASSIGN_OR_RETURN(s.timeout_seconds, r.Int("timeout_seconds", 60, 1, 3600));
  ROSTER_RETURN_IF_ERROR(RefuseUserInfo(r, s.url));
  ROSTER_ASSIGN_OR_RETURN(s.allow_insecure, r.Bool("allow_insecure", false));
  return {};
}

// A list of distinct, non-empty strings.
Status CheckDistinct(const TableReader& r, const std::string& key,
                     const std::vector<std::string>& values) {
  std::set<std::string> seen;
  for (const std::string& v : values) {
    if (v.empty() || HasControl(v)) {
      return MakeError(ErrorKind::kInvalidArgument, r.AtKey(key) + ": " + key + " in " + r.where() +
                                                        " holds an empty or unprintable name");
    }
    if (!seen.insert(v).second) {
      return MakeError(ErrorKind::kInvalidArgument, r.AtKey(key) + ": " + key + " in " + r.where() +
                                                        " lists \"" + text::SafeForOutput(v) +
                                                        "\" twice");
    }
  }
  return {};
}

// type = "graph": the tenant's users and organisational contacts (the GAL).
Status ReadGraphSource(TableReader& r, const std::map<std::string, TenantConfig>& tenants,
                       SourceConfig& s) {
  ROSTER_ASSIGN_OR_RETURN(s.tenant, ReadTenantName(r, tenants));
  if (r.Has("read")) {
    ROSTER_ASSIGN_OR_RETURN(std::vector<std::string> read, r.Strings("read", false));
    if (read.empty()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.AtKey("read") + ": read in " + r.where() +
                           " must list \"users\", \"org_contacts\" or both");
    }
    ROSTER_RETURN_IF_ERROR(CheckDistinct(r, "read", read));
    s.read_users = s.read_org_contacts = false;
    for (const std::string& what : read) {
      if (what == "users") {
        s.read_users = true;
      } else if (what == "org_contacts") {
        s.read_org_contacts = true;
      } else {
        return MakeError(ErrorKind::kInvalidArgument,
                         r.AtKey("read") + ": read in " + r.where() + ": \"" +
                             text::SafeForOutput(what) + "\" is not \"users\" or \"org_contacts\"");
      }
    }
  }
  ROSTER_ASSIGN_OR_RETURN(s.attributes, r.StringMap("attributes"));
  for (const auto& [field, property] : s.attributes) {
    if (field == "photo") {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.AtKey("attributes") + ": photo in [sources." + s.name +
                           ".attributes]: a graph source reads photos from each user's photo; "
                           "photo_max_pixels = 0 sends none");
    }
    if (!IsFieldName(field, false) && field != "proxy_addresses") {
      return UnknownField(r, field, "[sources." + s.name + ".attributes]");
    }
    // "" removes a default mapping, as for ldap.
    if (!property.empty() && !IsGraphProperty(property)) {
      return BadGraphProperty(r, "attributes", property);
    }
  }
  ROSTER_ASSIGN_OR_RETURN(s.extra_attributes, r.Strings("extra_attributes", false));
  for (const std::string& property : s.extra_attributes) {
    if (!IsGraphProperty(property)) return BadGraphProperty(r, "extra_attributes", property);
  }
  ROSTER_ASSIGN_OR_RETURN(s.groups, r.Strings("groups", false));
  ROSTER_RETURN_IF_ERROR(CheckDistinct(r, "groups", s.groups));
  ROSTER_ASSIGN_OR_RETURN(s.page_size, r.Int("page_size", 999, 1, 999));
  return {};
}

// type = "graph-folder": one contact folder of one (shared) mailbox.
Status ReadGraphFolderSource(TableReader& r, const std::map<std::string, TenantConfig>& tenants,
                             SourceConfig& s) {
  ROSTER_ASSIGN_OR_RETURN(s.tenant, ReadTenantName(r, tenants));
  ROSTER_ASSIGN_OR_RETURN(s.mailbox, r.String("mailbox", true));
  if (!IsPlainToken(s.mailbox) || s.mailbox.find_first_of("/?#") != std::string::npos) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.AtKey("mailbox") + ": mailbox in " + r.where() +
                         " must be a user principal name (partners@contoso.com) or a user's "
                         "object id, not \"" +
                         text::SafeForOutput(s.mailbox) + "\"");
  }
  ROSTER_ASSIGN_OR_RETURN(s.folder, r.String("folder", true));
  size_t start = 0;
  while (true) {
    size_t slash = s.folder.find('/', start);
    std::string part = s.folder.substr(start, slash == std::string::npos ? slash : slash - start);
    if (part.empty() || HasControl(part) || part.front() == ' ' || part.back() == ' ') {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.AtKey("folder") + ": folder in " + r.where() + ": \"" +
                           text::SafeForOutput(s.folder) +
                           "\" must be a folder's display name, or names joined by '/' "
                           "(\"Parent/Child\"), none empty or with spaces around it");
    }
    s.folder_path.push_back(part);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return {};
}

// The keys every type of source has: exclusions, phones, photos, opt-out.
Status ReadSourceMapping(TableReader& r, const toml::table& t, SourceConfig& s) {
  const bool ldap = s.type == SourceType::kLdap;
  const bool graph = s.type == SourceType::kGraph;
  ROSTER_ASSIGN_OR_RETURN(std::string exclude, r.String("exclude", false,
                                                        ldap    ? kDefaultLdapExclude
                                                        : graph ? kDefaultGraphExclude
                                                                : ""));
  ROSTER_ASSIGN_OR_RETURN(s.exclude,
                          ReadFilter(r, t, "exclude", exclude, "exclude in " + r.where() + ": "));
  ROSTER_ASSIGN_OR_RETURN(s.phone_region, r.String("phone_region", false));
  ROSTER_ASSIGN_OR_RETURN(s.phone_region_attribute, r.String("phone_region_attribute", false,
                                                             ldap    ? "c"
                                                             : graph ? "usageLocation"
                                                                     : ""));
  ROSTER_ASSIGN_OR_RETURN(
      s.phone_format,
      r.Enum<PhoneFormat>("phone_format", {{"e164", PhoneFormat::kE164},
                                           {"international", PhoneFormat::kInternational},
                                           {"national", PhoneFormat::kNational},
                                           {"as_is", PhoneFormat::kAsIs}}));
  ROSTER_ASSIGN_OR_RETURN(s.photo_max_bytes,
                          r.Int("photo_max_bytes", 100 * 1024, 1024, 10 * 1024 * 1024));
  ROSTER_ASSIGN_OR_RETURN(s.photo_max_pixels, r.Int("photo_max_pixels", 512, 0, 4096));
  ROSTER_ASSIGN_OR_RETURN(s.opt_out_attribute, r.String("opt_out_attribute", false));
  return {};
}

Result<SourceConfig> ReadSource(const std::string& name, const toml::table& t,
                                const std::string& file, const std::string& dir,
                                const std::map<std::string, TenantConfig>& tenants) {
  TableReader r(t, "[sources." + name + "]", file);
  SourceConfig s;
  s.name = name;
  ROSTER_ASSIGN_OR_RETURN(std::string type, r.String("type", true));
  if (type == "csv") {
    s.type = SourceType::kCsv;
    ROSTER_RETURN_IF_ERROR(ReadCsvSource(r, file, dir, s));
  } else if (type == "vcard-dir") {
    s.type = SourceType::kVCardDir;
    ROSTER_ASSIGN_OR_RETURN(std::string path, r.String("path", true));
    s.path = Resolve(dir, path);
  } else if (type == "ldap") {
    s.type = SourceType::kLdap;
    ROSTER_RETURN_IF_ERROR(ReadLdapSource(r, dir, s));
  } else if (type == "graph") {
    s.type = SourceType::kGraph;
    ROSTER_RETURN_IF_ERROR(ReadGraphSource(r, tenants, s));
  } else if (type == "graph-folder") {
    s.type = SourceType::kGraphFolder;
    ROSTER_RETURN_IF_ERROR(ReadGraphFolderSource(r, tenants, s));
  } else {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": type in " + r.where() +
                         " must be \"csv\", \"vcard-dir\", \"ldap\", \"graph\" or "
                         "\"graph-folder\", not \"" +
                         text::SafeForOutput(type) + "\"");
  }
  ROSTER_RETURN_IF_ERROR(ReadSourceMapping(r, t, s));
  ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
  return s;
}

Status CheckUserNames(const TableReader& r, const std::string& key,
                      const std::vector<std::string>& users) {
  std::set<std::string> seen;
  for (const std::string& u : users) {
    if (u.empty() || u.find('/') != std::string::npos) {
      return MakeError(ErrorKind::kInvalidArgument, r.At() + ": " + key + " in " + r.where() +
                                                        ": \"" + u + "\" is not a user name");
    }
    if (!seen.insert(u).second) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At() + ": " + key + " in " + r.where() + " lists \"" + u + "\" twice");
    }
  }
  return {};
}

// type = "graph": each target user's mailbox, signed in as the tenant's app.
// CardDAV's keys have no meaning here and are refused by name, so that a
// target whose type was changed does not keep settings that do nothing.
Status ReadGraphTarget(TableReader& r, const std::map<std::string, TenantConfig>& tenants,
                       TargetConfig& c) {
  ROSTER_ASSIGN_OR_RETURN(c.tenant, ReadTenantName(r, tenants));
  for (const char* key : {"url", "username", "password", "password_env", "password_file",
                          "home_template", "vcard_version", "credentials_file"}) {
    if (r.Has(key)) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.AtKey(key) + ": " + key + " in " + r.where() +
                           " is a CardDAV setting; a graph target signs in and connects as "
                           "[tenants." +
                           c.tenant + "] says");
    }
  }
  for (const char* key : {"ca_file", "allow_insecure", "timeout_seconds"}) {
    if (r.Has(key)) {
      return MakeError(ErrorKind::kInvalidArgument, r.AtKey(key) + ": " + key + " in " + r.where() +
                                                        " belongs in [tenants." + c.tenant +
                                                        "] for a graph target");
    }
  }
  c.timeout_seconds = tenants.at(c.tenant).timeout_seconds;
  ROSTER_ASSIGN_OR_RETURN(c.users, r.Strings("users", false));
  ROSTER_RETURN_IF_ERROR(CheckUserNames(r, "users", c.users));
  ROSTER_ASSIGN_OR_RETURN(c.max_in_flight, r.Int("max_in_flight", 4, 1, 16));
  ROSTER_ASSIGN_OR_RETURN(c.max_retry_after_seconds, r.Int("max_retry_after_seconds", 600, 0, 600));
  return {};
}

Result<TargetConfig> ReadTarget(const std::string& name, const toml::table& t,
                                const std::string& file, const std::string& dir,
                                const std::map<std::string, TenantConfig>& tenants) {
  TableReader r(t, "[targets." + name + "]", file);
  TargetConfig c;
  c.name = name;
  ROSTER_ASSIGN_OR_RETURN(std::string type, r.String("type", true));
  if (type == "graph") {
    c.type = TargetType::kGraph;
    ROSTER_RETURN_IF_ERROR(ReadGraphTarget(r, tenants, c));
    ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
    return c;
  }
  if (type != "carddav") {
    return MakeError(ErrorKind::kInvalidArgument, r.At() + ": type in " + r.where() +
                                                      " must be \"carddav\" or \"graph\", not \"" +
                                                      text::SafeForOutput(type) + "\"");
  }
  c.type = TargetType::kCardDav;
  if (r.Has("tenant")) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.AtKey("tenant") + ": tenant in " + r.where() +
                         " is for graph targets (type = \"graph\"); a carddav target has none");
  }
  ROSTER_ASSIGN_OR_RETURN(c.url, r.String("url", true));
  if (!c.url.starts_with("http://") && !c.url.starts_with("https://")) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": url in " + r.where() + " must start with http:// or https://");
  }
  if (!c.url.ends_with("/")) c.url += "/";
  ROSTER_RETURN_IF_ERROR(RefuseUserInfo(r, c.url));
  ROSTER_ASSIGN_OR_RETURN(c.username, r.String("username", false));
  ROSTER_ASSIGN_OR_RETURN(c.password_env, r.String("password_env", false));
  ROSTER_ASSIGN_OR_RETURN(std::string pw_file, r.String("password_file", false));
  c.password_file = Resolve(dir, pw_file);
  ROSTER_RETURN_IF_ERROR(RefusePassword(r));
  if (!c.password_env.empty() && !c.password_file.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": " + r.where() + " has both password_env and password_file");
  }
  ROSTER_ASSIGN_OR_RETURN(c.home_template, r.String("home_template", false));
  ROSTER_ASSIGN_OR_RETURN(std::string ca, r.String("ca_file", false));
  c.ca_file = Resolve(dir, ca);
  ROSTER_ASSIGN_OR_RETURN(std::string version, r.String("vcard_version", false, "3.0"));
  if (version != "3.0" && version != "4.0") {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": vcard_version in " + r.where() + " must be \"3.0\" or \"4.0\"");
  }
  c.vcard_version = version == "4.0" ? VCardVersion::k40 : VCardVersion::k30;
  ROSTER_ASSIGN_OR_RETURN(c.max_in_flight, r.Int("max_in_flight", 1, 1, 64));
  ROSTER_ASSIGN_OR_RETURN(c.timeout_seconds, r.Int("timeout_seconds", 120, 1, 3600));
  ROSTER_ASSIGN_OR_RETURN(c.users, r.Strings("users", false));
  ROSTER_RETURN_IF_ERROR(CheckUserNames(r, "users", c.users));
  ROSTER_ASSIGN_OR_RETURN(std::string creds, r.String("credentials_file", false));
  c.credentials_file = Resolve(dir, creds);
  if (!c.credentials_file.empty() && (!c.password_env.empty() || !c.password_file.empty())) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": " + r.where() +
                         " has both credentials_file (each user logs in as themselves) and a "
                         "shared password");
  }
  ROSTER_ASSIGN_OR_RETURN(c.allow_insecure, r.Bool("allow_insecure", false));
  ROSTER_ASSIGN_OR_RETURN(c.max_retry_after_seconds, r.Int("max_retry_after_seconds", 60, 0, 600));
  ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
  return c;
}

// Basic authentication sends the password with every request: over plain
// http:// anyone on the path reads it. Loopback is the one safe exception.
Status CheckTransport(Config& config, const TargetConfig& t, const std::string& at) {
  bool sends_password =
      !t.password_env.empty() || !t.password_file.empty() || !t.credentials_file.empty();
  if (!sends_password || !t.url.starts_with("http://") || IsLoopbackUrl(t.url)) return {};
  if (!t.allow_insecure) {
    return MakeError(ErrorKind::kInvalidArgument,
                     at + ": [targets." + t.name +
                         "] would send its password in clear over http:// to " + t.url +
                         "; use https://, or set allow_insecure = true if this network is trusted");
  }
  config.warnings.push_back("target " + t.name + ": allow_insecure is set: passwords travel " +
                            "in clear over http:// to " + t.url);
  return {};
}

// A graph target finds each mailbox by its user principal name or object id.
// A mail address is not one: it can differ from the UPN (and proxy addresses
// from both), so it would find the wrong mailbox or none.
Status CheckGraphAccount(const TableReader& fr, const UsersFrom& u, bool given,
                         const SourceConfig& source, const TargetConfig& target) {
  const std::string at = fr.AtKey("attribute") + ": ";
  // An ldap source's default ("mail") is never right here: the UPN's
  // attribute differs between directories, so it must be named.
  if (source.type != SourceType::kGraph && !given) {
    return MakeError(ErrorKind::kInvalidArgument,
                     at + fr.where() + " feeds graph target " + target.name +
                         ": give attribute, the directory attribute holding each user's user "
                         "principal name (userPrincipalName in Active Directory)");
  }
  if (text::EqualsNoCase(u.attribute, "mail")) {
    return MakeError(ErrorKind::kInvalidArgument,
                     at + "attribute = \"mail\" in " + fr.where() +
                         " cannot name mailboxes of graph target " + target.name +
                         ": a mail address can differ from the mailbox's user principal name; "
                         "use " +
                         (source.type == SourceType::kGraph
                              ? "\"userPrincipalName\" (the default) or \"id\""
                              : "the attribute holding the UPN (userPrincipalName in Active "
                                "Directory)"));
  }
  if (source.type == SourceType::kGraph) {
    if (u.attribute == "userPrincipalName" || u.attribute == "id") return {};
    return MakeError(ErrorKind::kInvalidArgument,
                     at + "attribute in " + fr.where() + " must be \"userPrincipalName\" or " +
                         "\"id\" for graph target " + target.name + ", not \"" +
                         text::SafeForOutput(u.attribute) + "\"");
  }
  return {};
}

// users_from = { source, group | filter, attribute }: target users from an
// ldap or graph source, instead of a fixed list.
Result<std::optional<UsersFrom>> ReadUsersFrom(TableReader& named, const Config& config,
                                               const RuleConfig& rule, const std::string& path) {
  ROSTER_ASSIGN_OR_RETURN(const toml::table* from, named.Table("users_from", false));
  if (!from) return std::optional<UsersFrom>();
  TableReader fr(*from, "users_from of rule " + rule.name, path);
  UsersFrom u;
  ROSTER_ASSIGN_OR_RETURN(u.source, fr.String("source", true));
  auto it = config.sources.find(u.source);
  const bool graph = it != config.sources.end() && it->second.type == SourceType::kGraph;
  ROSTER_ASSIGN_OR_RETURN(u.group, fr.String("group", false));
  ROSTER_ASSIGN_OR_RETURN(u.filter, fr.String("filter", false));
  const bool attribute_given = fr.Has("attribute");
  ROSTER_ASSIGN_OR_RETURN(u.attribute,
                          fr.String("attribute", false, graph ? "userPrincipalName" : "mail"));
  ROSTER_RETURN_IF_ERROR(fr.NoUnknownKeys());
  if (it == config.sources.end() ||
      (it->second.type != SourceType::kLdap && it->second.type != SourceType::kGraph)) {
    return MakeError(ErrorKind::kInvalidArgument, fr.At() + ": " + fr.where() + " names source \"" +
                                                      text::SafeForOutput(u.source) +
                                                      "\", which is not an ldap or graph source");
  }
  if (graph && fr.Has("filter")) {
    return MakeError(ErrorKind::kInvalidArgument,
                     fr.AtKey("filter") + ": filter in " + fr.where() +
                         " is not supported for a graph source (it is an LDAP filter); use group, "
                         "and users_exclude for the rest");
  }
  if (u.group.empty() == u.filter.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     fr.At() + ": " + fr.where() +
                         (graph ? " needs group (a group's object id or display name)"
                                : " needs either group or filter"));
  }
  if (graph && !IsGraphProperty(u.attribute)) return BadGraphProperty(fr, "attribute", u.attribute);
  auto target = config.targets.find(rule.target);
  if (target != config.targets.end() && target->second.type == TargetType::kGraph) {
    ROSTER_RETURN_IF_ERROR(CheckGraphAccount(fr, u, attribute_given, it->second, target->second));
  }
  if (!rule.users.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     named.At() + ": rule " + rule.name + " has both users and users_from");
  }
  return std::optional<UsersFrom>(std::move(u));
}

// fields = { field = "mode", ... }: which fields people may keep as they edited them.
Result<FieldPolicy> ReadFieldRules(TableReader& named, const std::string& rule) {
  ROSTER_ASSIGN_OR_RETURN(auto fields, named.StringMap("fields"));
  for (const auto& [field, mode] : fields) {
    if (!IsFieldName(field, true)) {
      return UnknownField(named, field, "fields of rule " + rule);
    }
    if (mode != "overwrite" && mode != "if_blank" && mode != "keep_user") {
      return MakeError(ErrorKind::kInvalidArgument,
                       named.At() + ": fields." + field + " of rule " + rule +
                           " must be \"overwrite\", \"if_blank\" or \"keep_user\", not \"" + mode +
                           "\"");
    }
  }
  // Every field and mode is known by now: the policy's own checks agree.
  auto policy = ParseFieldPolicy(fields);
  if (!policy.ok()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     named.At() + ": rule " + rule + ": " + policy.error().message);
  }
  return policy;
}

// What a rule names must exist: its own name once, its sources, its target
// and someone to send to.
Status CheckRuleNames(const TableReader& named, const RuleConfig& rule, const Config& config,
                      std::set<std::string>& rule_names) {
  if (rule.name.empty() || !rule_names.insert(rule.name).second) {
    return MakeError(ErrorKind::kInvalidArgument,
                     named.At() + ": rule name \"" + rule.name + "\" is empty or used twice");
  }
  std::set<std::string> seen_sources;
  for (const std::string& src : rule.sources) {
    if (!config.sources.count(src)) {
      return MakeError(ErrorKind::kInvalidArgument, named.At() + ": rule " + rule.name +
                                                        " names source \"" + src +
                                                        "\", which is not defined in [sources]");
    }
    if (!seen_sources.insert(src).second) {
      return MakeError(ErrorKind::kInvalidArgument,
                       named.At() + ": rule " + rule.name + " lists source \"" + src + "\" twice");
    }
  }
  auto target = config.targets.find(rule.target);
  if (target == config.targets.end()) {
    return MakeError(ErrorKind::kInvalidArgument, named.At() + ": rule " + rule.name +
                                                      " names target \"" + rule.target +
                                                      "\", which is not defined in [targets]");
  }
  if (rule.users.empty() && !rule.users_from && target->second.users.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     named.At() + ": rule " + rule.name +
                         " has no target users: give users or users_from, or users in [targets." +
                         rule.target + "]");
  }
  return {};
}

// placement = "default" and category exist only in Outlook: a graph target's.
// With placement "default" each fills in the other.
Status CheckPlacement(TableReader& named, const Config& config, RuleConfig& rule) {
  const bool has_category = named.Has("category");
  if (has_category &&
      (rule.category.empty() || rule.category.size() > 255 || HasControl(rule.category))) {
    return MakeError(ErrorKind::kInvalidArgument,
                     named.AtKey("category") + ": category in " + named.where() +
                         " must be a category's name (1 to 255 characters)");
  }
  const TargetConfig& target = config.targets.at(rule.target);
  if (target.type != TargetType::kGraph && (rule.placement_default || has_category)) {
    const char* key = rule.placement_default ? "placement" : "category";
    return MakeError(ErrorKind::kInvalidArgument, named.AtKey(key) + ": " + key + " in " +
                                                      named.where() +
                                                      " is for graph targets only, and target " +
                                                      rule.target + " is a carddav target");
  }
  if (!rule.placement_default) return {};
  if (rule.addressbook.empty() && rule.category.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     named.AtKey("placement") + ": rule " + rule.name +
                         " has placement = \"default\": give category (or addressbook, its "
                         "default), which marks the rule's contacts in the main Contacts folder");
  }
  if (rule.category.empty()) rule.category = rule.addressbook;
  if (rule.addressbook.empty()) rule.addressbook = rule.category;
  return {};
}

// One [[rules]] table; `rule_names` holds the names of the rules before it.
Result<RuleConfig> ReadRule(const toml::table& t, const Config& config, const std::string& path,
                            std::set<std::string>& rule_names) {
  TableReader rr(t, "[[rules]]", path);
  RuleConfig rule;
  ROSTER_ASSIGN_OR_RETURN(rule.name, rr.String("name", true));
  TableReader named(t, "[[rules]] \"" + rule.name + "\"", path);
  ROSTER_ASSIGN_OR_RETURN(rule.name, named.String("name", true));
  ROSTER_ASSIGN_OR_RETURN(std::string source, named.String("source", false));
  ROSTER_ASSIGN_OR_RETURN(rule.sources, named.Strings("sources", false));
  if (source.empty() == rule.sources.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     named.At() + ": rule " + rule.name +
                         " needs either source = \"name\" or sources = [\"first\", \"second\"]");
  }
  if (!source.empty()) rule.sources = {source};
  ROSTER_ASSIGN_OR_RETURN(rule.target, named.String("target", true));
  ROSTER_ASSIGN_OR_RETURN(rule.placement_default,
                          named.Enum<bool>("placement", {{"folder", false}, {"default", true}}));
  // With placement "default" the book is the main Contacts folder: the
  // addressbook name only names it in messages, and the category is what
  // tells roster's contacts apart there.
  ROSTER_ASSIGN_OR_RETURN(rule.addressbook, named.String("addressbook", !rule.placement_default));
  ROSTER_ASSIGN_OR_RETURN(rule.category, named.String("category", false));
  ROSTER_ASSIGN_OR_RETURN(std::string filter, named.String("filter", false));
  ROSTER_ASSIGN_OR_RETURN(rule.max_delete_percent, named.Int("max_delete_percent", 20, 0, 100));
  ROSTER_ASSIGN_OR_RETURN(rule.max_update_percent, named.Int("max_update_percent", 50, 0, 100));
  ROSTER_ASSIGN_OR_RETURN(rule.users, named.Strings("users", false));
  ROSTER_RETURN_IF_ERROR(CheckUserNames(named, "users", rule.users));
  ROSTER_ASSIGN_OR_RETURN(rule.users_from, ReadUsersFrom(named, config, rule, path));
  const bool graph_users =
      rule.users_from && config.sources.at(rule.users_from->source).type == SourceType::kGraph;
  ROSTER_ASSIGN_OR_RETURN(
      std::string users_exclude,
      named.String("users_exclude", false,
                   graph_users ? kDefaultGraphUsersExclude : kDefaultUsersExclude));
  ROSTER_ASSIGN_OR_RETURN(rule.users_exclude,
                          ReadFilter(named, t, "users_exclude", users_exclude,
                                     "rule " + rule.name + ": users_exclude: "));
  ROSTER_ASSIGN_OR_RETURN(rule.include_self, named.Bool("include_self", false));
  ROSTER_ASSIGN_OR_RETURN(rule.fields, ReadFieldRules(named, rule.name));
  ROSTER_ASSIGN_OR_RETURN(
      rule.adopt,
      named.Enum<AdoptMode>("adopt", {{"never", AdoptMode::kNever}, {"merge", AdoptMode::kMerge}}));
  ROSTER_ASSIGN_OR_RETURN(rule.offboard_remove,
                          named.Enum<bool>("offboard", {{"remove", true}, {"keep", false}}));
  ROSTER_RETURN_IF_ERROR(named.NoUnknownKeys());
  ROSTER_RETURN_IF_ERROR(CheckRuleNames(named, rule, config, rule_names));
  ROSTER_RETURN_IF_ERROR(CheckPlacement(named, config, rule));
  ROSTER_ASSIGN_OR_RETURN(rule.filter,
                          ReadFilter(named, t, "filter", filter, "rule " + rule.name + ": "));
  return rule;
}

// Regions are checked once the rest of the file is known to be good: the
// first check loads libphonenumber's metadata, which a file with another
// mistake never needs (and each mistake is still reported as it always was).
Status CheckPhoneRegions(const Config& config, const toml::table& sources,
                         const std::string& path) {
  for (const auto& [name, s] : config.sources) {
    if (s.phone_region.empty()) continue;
    auto region = PhoneNormalizer::Create(s.phone_region, s.phone_format);
    if (region.ok()) continue;
    const toml::table& t = *sources.get(name)->as_table();
    TableReader r(t, "[sources." + name + "]", path);
    return MakeError(ErrorKind::kInvalidArgument, r.At(*t.get("phone_region")) +
                                                      ": phone_region in " + r.where() + ": " +
                                                      region.error().message);
  }
  return {};
}

Result<std::string> ReadSecret(const std::string& owner, const std::string& env,
                               const std::string& file) {
  if (env.empty() && !file.empty()) {
    ROSTER_RETURN_IF_ERROR(CheckSecretFile(owner + ": password_file", file));
  }
  if (!env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (!v) {
      return MakeError(ErrorKind::kInvalidArgument,
                       owner + ": environment variable " + env + " is not set");
    }
    return std::string(v);
  }
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
      return MakeError(ErrorKind::kInvalidArgument, owner + ": cannot read password_file " + file);
    std::string pw;
    std::getline(in, pw);
    while (!pw.empty() && (pw.back() == '\r' || pw.back() == '\n')) pw.pop_back();
    return pw;
  }
  return std::string();
}

}  // namespace

Result<Config> ParseConfig(const std::string& text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return MakeError(
        ErrorKind::kInvalidArgument,
        path + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
  std::string dir = fs::path(path).parent_path().string();
  Config config;
  config.path = path;
  TableReader r(root, "the top level", path);

  ROSTER_ASSIGN_OR_RETURN(const toml::table* state, r.Table("state", false));
  config.state_path = Resolve(dir, "roster.db");
  config.state_key_file = Resolve(dir, "roster.key");
  ROSTER_ASSIGN_OR_RETURN(config.run_timeout_seconds,
                          r.Int("run_timeout_seconds", 3600, 1, 7 * 24 * 3600));
  if (state) {
    TableReader sr(*state, "[state]", path);
    ROSTER_ASSIGN_OR_RETURN(std::string p, sr.String("path", false, "roster.db"));
    config.state_path = Resolve(dir, p);
    const bool has_file = sr.Has("key_file"), has_env = sr.Has("key_env");
    if (has_file && has_env) {
      return MakeError(
          ErrorKind::kInvalidArgument,
          sr.AtKey("key_env") + ": [state] has key_file and key_env; give only one of them");
    }
    ROSTER_ASSIGN_OR_RETURN(std::string key_file, sr.String("key_file", false, "roster.key"));
    if (key_file.empty()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       sr.AtKey("key_file") + ": key_file in [state] must name a file");
    }
    ROSTER_ASSIGN_OR_RETURN(config.state_key_env, sr.String("key_env", false));
    if (has_env) {
      if (!IsPlainToken(config.state_key_env)) {
        return MakeError(
            ErrorKind::kInvalidArgument,
            sr.AtKey("key_env") + ": key_env in [state] must be an environment variable's name");
      }
      config.state_key_file.clear();
    } else {
      config.state_key_file = Resolve(dir, key_file);
    }
    ROSTER_ASSIGN_OR_RETURN(std::string cache, sr.Choice("cache", {"encrypted", "none"}));
    config.cache = cache == "none" ? CacheMode::kNone : CacheMode::kEncrypted;
    ROSTER_ASSIGN_OR_RETURN(config.retention_days, sr.Int("retention_days", 60, 1, 36500));
    ROSTER_ASSIGN_OR_RETURN(config.purge_after_sync, sr.Bool("purge_after_sync", false));
    ROSTER_RETURN_IF_ERROR(sr.NoUnknownKeys());
  }

  config.audit_path = (fs::path(config.state_path).parent_path() / "roster-audit.jsonl")
                          .lexically_normal()
                          .string();
  ROSTER_ASSIGN_OR_RETURN(const toml::table* audit, r.Table("audit", false));
  if (audit) {
    TableReader ar(*audit, "[audit]", path);
    ROSTER_ASSIGN_OR_RETURN(std::string p, ar.String("path", false));
    if (ar.Has("path")) {
      if (p.empty()) {
        return MakeError(ErrorKind::kInvalidArgument,
                         ar.AtKey("path") + ": path in [audit] must name a file");
      }
      config.audit_path = Resolve(dir, p);
    }
    ROSTER_ASSIGN_OR_RETURN(config.audit_retention_days, ar.Int("retention_days", 400, 1, 36500));
    ROSTER_RETURN_IF_ERROR(ar.NoUnknownKeys());
  }

  config.erasure_register = (fs::path(config.state_path).parent_path() / "roster-erasures.jsonl")
                                .lexically_normal()
                                .string();
  ROSTER_ASSIGN_OR_RETURN(const toml::table* gdpr, r.Table("gdpr", false));
  if (gdpr) {
    TableReader gr(*gdpr, "[gdpr]", path);
    ROSTER_ASSIGN_OR_RETURN(std::string p, gr.String("register", false));
    if (gr.Has("register")) {
      if (p.empty()) {
        return MakeError(ErrorKind::kInvalidArgument,
                         gr.AtKey("register") + ": register in [gdpr] must name a file");
      }
      config.erasure_register = Resolve(dir, p);
    }
    ROSTER_RETURN_IF_ERROR(gr.NoUnknownKeys());
  }

  ROSTER_ASSIGN_OR_RETURN(const toml::table* tenants, r.Table("tenants", false));
  if (tenants) {
    for (const auto& [k, node] : *tenants) {
      std::string name(k.str());
      if (!node.is_table()) {
        return MakeError(ErrorKind::kInvalidArgument,
                         r.At(node) + ": tenants." + name + " must be a table");
      }
      ROSTER_ASSIGN_OR_RETURN(config.tenants[name],
                              ReadTenant(name, *node.as_table(), path, dir, config.warnings));
    }
  }

  ROSTER_ASSIGN_OR_RETURN(const toml::table* sources, r.Table("sources", true));
  for (const auto& [k, node] : *sources) {
    std::string name(k.str());
    if (!node.is_table()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At(node) + ": sources." + name + " must be a table");
    }
    ROSTER_ASSIGN_OR_RETURN(config.sources[name],
                            ReadSource(name, *node.as_table(), path, dir, config.tenants));
  }
  ROSTER_ASSIGN_OR_RETURN(const toml::table* targets, r.Table("targets", true));
  for (const auto& [k, node] : *targets) {
    std::string name(k.str());
    if (!node.is_table()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At(node) + ": targets." + name + " must be a table");
    }
    ROSTER_ASSIGN_OR_RETURN(config.targets[name],
                            ReadTarget(name, *node.as_table(), path, dir, config.tenants));
    ROSTER_RETURN_IF_ERROR(CheckTransport(config, config.targets[name], r.At(node)));
  }

  const toml::node* rules = root.get("rules");
  (void)r.Table("rules", false);  // marks the key as used; shape checked below
  if (!rules || !rules->is_array_of_tables()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     path + ":" + std::to_string(rules ? rules->source().begin.line : 1) +
                         ": expected one or more [[rules]] tables");
  }
  std::set<std::string> rule_names;
  for (const toml::node& node : *rules->as_array()) {
    ROSTER_ASSIGN_OR_RETURN(RuleConfig rule, ReadRule(*node.as_table(), config, path, rule_names));
    config.rules.push_back(std::move(rule));
  }
  ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
  ROSTER_RETURN_IF_ERROR(CheckPhoneRegions(config, *sources, path));
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorKind::kInvalidArgument, "cannot open config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

Result<std::string> ReadTargetPassword(const TargetConfig& target) {
  return ReadSecret("target " + target.name, target.password_env, target.password_file);
}

Result<std::string> ReadSourcePassword(const SourceConfig& source) {
  return ReadSecret("source " + source.name, source.password_env, source.password_file);
}

Result<std::string> ReadTenantSecret(const TenantConfig& tenant) {
  const std::string owner = "tenant " + tenant.name + ": ";
  std::string secret;
  std::string what;
  if (!tenant.client_secret_env.empty()) {
    what = "environment variable " + tenant.client_secret_env;
    const char* v = std::getenv(tenant.client_secret_env.c_str());
    if (!v) return MakeError(ErrorKind::kInvalidArgument, owner + what + " is not set");
    secret = v;
  } else if (!tenant.client_secret_file.empty()) {
    what = "client_secret_file " + tenant.client_secret_file;
    ROSTER_RETURN_IF_ERROR(
        CheckSecretFile(owner + "client_secret_file", tenant.client_secret_file));
    std::ifstream in(tenant.client_secret_file, std::ios::binary);
    if (!in) return MakeError(ErrorKind::kInvalidArgument, owner + what + " cannot be read");
    // A secret is a few dozen characters; a large file is not one.
    constexpr size_t kMaxSecretBytes = 64 * 1024;
    secret.resize(kMaxSecretBytes + 1);
    in.read(secret.data(), static_cast<std::streamsize>(secret.size()));
    secret.resize(static_cast<size_t>(in.gcount()));
    if (secret.size() > kMaxSecretBytes) {
      return MakeError(ErrorKind::kInvalidArgument, owner + what + " is larger than 64 KiB");
    }
  } else {
    return std::string();  // a certificate tenant
  }
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return MakeError(ErrorKind::kInvalidArgument, owner + what + " is empty");
  // Never quoted: it is the secret.
  if (secret.find_first_of("\r\n") != std::string::npos) {
    return MakeError(ErrorKind::kInvalidArgument,
                     owner + what + " holds more than one line; it must hold the secret alone");
  }
  return secret;
}

Status CheckSecretFile(const std::string& what, const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return MakeError(ErrorKind::kInvalidArgument, what + " " + path + " cannot be read");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " " + path + " has mode " + mode +
                         ", which lets group or others read it; chmod 600 (or 400) it");
  }
  return {};
}

Result<std::map<std::string, std::string>> ReadTargetCredentials(const TargetConfig& target) {
  std::map<std::string, std::string> out;
  if (target.credentials_file.empty()) return out;
  const std::string what = "target " + target.name + ": credentials_file";
  ROSTER_RETURN_IF_ERROR(CheckSecretFile(what, target.credentials_file));
  std::ifstream in(target.credentials_file, std::ios::binary);
  if (!in) {
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " " + target.credentials_file + " cannot be read");
  }
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == line.size()) {
      // Never quote the line: it holds a password.
      return MakeError(ErrorKind::kInvalidArgument, what + " " + target.credentials_file + ":" +
                                                        std::to_string(n) +
                                                        ": expected USER:PASSWORD");
    }
    std::string user = line.substr(0, colon);
    if (!out.emplace(user, line.substr(colon + 1)).second) {
      return MakeError(ErrorKind::kInvalidArgument, what + " " + target.credentials_file + ":" +
                                                        std::to_string(n) + ": user " + user +
                                                        " is listed twice");
    }
  }
  return out;
}

bool IsLoopbackUrl(const std::string& url) {
  size_t start = url.find("://");
  if (start == std::string::npos) return false;
  start += 3;
  std::string host;
  if (start < url.size() && url[start] == '[') {
    size_t close = url.find(']', start);
    if (close == std::string::npos) return false;
    host = url.substr(start + 1, close - start - 1);
  } else {
    size_t end = url.find_first_of(":/?#", start);
    host = url.substr(start, end == std::string::npos ? end : end - start);
  }
  host = text::AsciiLower(host);
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written as a dotted quad.
  int parts = 0;
  size_t pos = 0;
  while (pos <= host.size()) {
    size_t dot = host.find('.', pos);
    std::string part = host.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (part.empty() || part.size() > 3 ||
        part.find_first_not_of("0123456789") != std::string::npos || std::stoi(part) > 255) {
      return false;
    }
    if (parts == 0 && part != "127") return false;
    ++parts;
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return parts == 4;
}

}  // namespace roster
