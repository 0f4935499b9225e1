#include "config/config.h"

#include <toml++/toml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/contact.h"
#include "filter/filter.h"

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

Result<SourceConfig> ReadSource(const std::string& name, const toml::table& t,
                                const std::string& file, const std::string& dir) {
  TableReader r(t, "[sources." + name + "]", file);
  SourceConfig s;
  s.name = name;
  ROSTER_ASSIGN_OR_RETURN(s.type, r.String("type", true));
  ROSTER_ASSIGN_OR_RETURN(std::string path, r.String("path", true));
  s.path = Resolve(dir, path);
  if (s.type == "csv") {
    ROSTER_ASSIGN_OR_RETURN(s.key, r.String("key", true));
    ROSTER_ASSIGN_OR_RETURN(s.delimiter, r.String("delimiter", false, ","));
    if (s.delimiter.size() != 1) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At() + ": delimiter in " + r.where() + " must be one character");
    }
    ROSTER_ASSIGN_OR_RETURN(const toml::table* cols, r.Table("columns", true));
    TableReader cr(*cols, "[sources." + name + ".columns]", file);
    for (const auto& [k, node] : *cols) {
      std::string field(k.str());
      if (!IsContactField(field)) {
        return MakeError(ErrorKind::kInvalidArgument,
                         cr.At(node) + ": unknown contact field \"" + field + "\" in " +
                             cr.where() + " (see docs/configuration.md for the field names)");
      }
      ROSTER_ASSIGN_OR_RETURN(s.columns[field], cr.String(field, true));
    }
  } else if (s.type != "vcard-dir") {
    return MakeError(ErrorKind::kInvalidArgument, r.At() + ": type in " + r.where() +
                                                      " must be \"csv\" or \"vcard-dir\", not \"" +
                                                      s.type + "\"");
  }
  ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
  return s;
}

Result<TargetConfig> ReadTarget(const std::string& name, const toml::table& t,
                                const std::string& file, const std::string& dir) {
  TableReader r(t, "[targets." + name + "]", file);
  TargetConfig c;
  c.name = name;
  ROSTER_ASSIGN_OR_RETURN(c.type, r.String("type", true));
  if (c.type != "carddav") {
    return MakeError(
        ErrorKind::kInvalidArgument,
        r.At() + ": type in " + r.where() + " must be \"carddav\", not \"" + c.type + "\"");
  }
  ROSTER_ASSIGN_OR_RETURN(c.url, r.String("url", true));
  if (!c.url.starts_with("http://") && !c.url.starts_with("https://")) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": url in " + r.where() + " must start with http:// or https://");
  }
  if (!c.url.ends_with("/")) c.url += "/";
  ROSTER_ASSIGN_OR_RETURN(c.username, r.String("username", false));
  ROSTER_ASSIGN_OR_RETURN(c.password_env, r.String("password_env", false));
  ROSTER_ASSIGN_OR_RETURN(std::string pw_file, r.String("password_file", false));
  c.password_file = Resolve(dir, pw_file);
  if (r.String("password", false).value() != "") {
    return MakeError(
        ErrorKind::kInvalidArgument,
        r.At() + ": " + r.where() + " must not hold a password; use password_env or password_file");
  }
  if (!c.password_env.empty() && !c.password_file.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": " + r.where() + " has both password_env and password_file");
  }
  ROSTER_ASSIGN_OR_RETURN(c.home_template, r.String("home_template", false));
  ROSTER_ASSIGN_OR_RETURN(std::string ca, r.String("ca_file", false));
  c.ca_file = Resolve(dir, ca);
  ROSTER_ASSIGN_OR_RETURN(c.vcard_version, r.String("vcard_version", false, "3.0"));
  if (c.vcard_version != "3.0" && c.vcard_version != "4.0") {
    return MakeError(ErrorKind::kInvalidArgument,
                     r.At() + ": vcard_version in " + r.where() + " must be \"3.0\" or \"4.0\"");
  }
  ROSTER_ASSIGN_OR_RETURN(c.max_in_flight, r.Int("max_in_flight", 1, 1, 64));
  ROSTER_ASSIGN_OR_RETURN(c.timeout_seconds, r.Int("timeout_seconds", 120, 1, 3600));
  ROSTER_ASSIGN_OR_RETURN(c.users, r.Strings("users", true));
  std::set<std::string> seen;
  for (const std::string& u : c.users) {
    if (u.empty() || u.find('/') != std::string::npos) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At() + ": users in " + r.where() + ": \"" + u + "\" is not a user name");
    }
    if (!seen.insert(u).second) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At() + ": users in " + r.where() + " lists \"" + u + "\" twice");
    }
  }
  ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
  return c;
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
  if (state) {
    TableReader sr(*state, "[state]", path);
    ROSTER_ASSIGN_OR_RETURN(std::string p, sr.String("path", false, "roster.db"));
    config.state_path = Resolve(dir, p);
    ROSTER_RETURN_IF_ERROR(sr.NoUnknownKeys());
  }

  ROSTER_ASSIGN_OR_RETURN(const toml::table* sources, r.Table("sources", true));
  for (const auto& [k, node] : *sources) {
    std::string name(k.str());
    if (!node.is_table()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At(node) + ": sources." + name + " must be a table");
    }
    ROSTER_ASSIGN_OR_RETURN(config.sources[name], ReadSource(name, *node.as_table(), path, dir));
  }
  ROSTER_ASSIGN_OR_RETURN(const toml::table* targets, r.Table("targets", true));
  for (const auto& [k, node] : *targets) {
    std::string name(k.str());
    if (!node.is_table()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       r.At(node) + ": targets." + name + " must be a table");
    }
    ROSTER_ASSIGN_OR_RETURN(config.targets[name], ReadTarget(name, *node.as_table(), path, dir));
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
    const toml::table& t = *node.as_table();
    TableReader rr(t, "[[rules]]", path);
    RuleConfig rule;
    ROSTER_ASSIGN_OR_RETURN(rule.name, rr.String("name", true));
    TableReader named(t, "[[rules]] \"" + rule.name + "\"", path);
    ROSTER_ASSIGN_OR_RETURN(rule.name, named.String("name", true));
    ROSTER_ASSIGN_OR_RETURN(rule.source, named.String("source", true));
    ROSTER_ASSIGN_OR_RETURN(rule.target, named.String("target", true));
    ROSTER_ASSIGN_OR_RETURN(rule.addressbook, named.String("addressbook", true));
    ROSTER_ASSIGN_OR_RETURN(rule.filter, named.String("filter", false));
    ROSTER_ASSIGN_OR_RETURN(rule.max_delete_percent, named.Int("max_delete_percent", 20, 0, 100));
    ROSTER_RETURN_IF_ERROR(named.NoUnknownKeys());
    if (rule.name.empty() || !rule_names.insert(rule.name).second) {
      return MakeError(ErrorKind::kInvalidArgument,
                       named.At() + ": rule name \"" + rule.name + "\" is empty or used twice");
    }
    if (!config.sources.count(rule.source)) {
      return MakeError(ErrorKind::kInvalidArgument, named.At() + ": rule " + rule.name +
                                                        " names source \"" + rule.source +
                                                        "\", which is not defined in [sources]");
    }
    if (!config.targets.count(rule.target)) {
      return MakeError(ErrorKind::kInvalidArgument, named.At() + ": rule " + rule.name +
                                                        " names target \"" + rule.target +
                                                        "\", which is not defined in [targets]");
    }
    auto filter = Filter::Parse(rule.filter);
    if (!filter.ok()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       named.At() + ": rule " + rule.name + ": " + filter.error().message);
    }
    config.rules.push_back(std::move(rule));
  }
  ROSTER_RETURN_IF_ERROR(r.NoUnknownKeys());
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
  if (!target.password_env.empty()) {
    const char* v = std::getenv(target.password_env.c_str());
    if (!v) {
      return MakeError(ErrorKind::kInvalidArgument, "target " + target.name +
                                                        ": environment variable " +
                                                        target.password_env + " is not set");
    }
    return std::string(v);
  }
  if (!target.password_file.empty()) {
    std::ifstream in(target.password_file, std::ios::binary);
    if (!in) {
      return MakeError(
          ErrorKind::kInvalidArgument,
          "target " + target.name + ": cannot read password_file " + target.password_file);
    }
    std::string pw;
    std::getline(in, pw);
    while (!pw.empty() && (pw.back() == '\r' || pw.back() == '\n')) pw.pop_back();
    return pw;
  }
  return std::string();
}

}  // namespace roster
