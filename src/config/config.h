// The configuration file (TOML): sources, targets, rules and the state file.
// Unknown keys, missing keys and wrong types are errors naming the key and line.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/result.h"

namespace roster {

struct SourceConfig {
  std::string name;
  std::string type;                            // "csv" | "vcard-dir"
  std::string path;                            // resolved against the config file's folder
  std::string key;                             // csv: column with the stable identity
  std::map<std::string, std::string> columns;  // csv: contact field -> column
  std::string delimiter = ",";
};

struct TargetConfig {
  std::string name;
  std::string type;  // "carddav"
  std::string url;
  std::string username;
  std::string password_env;
  std::string password_file;
  std::string home_template;  // optional: "{url}{user}/" style override of discovery
  std::string ca_file;
  std::string vcard_version = "3.0";
  int max_in_flight = 1;
  int timeout_seconds = 120;
  std::vector<std::string> users;
};

struct RuleConfig {
  std::string name;
  std::string source;
  std::string target;
  std::string addressbook;
  std::string filter;
  int max_delete_percent = 20;
};

struct Config {
  std::string path;        // of the file itself
  std::string state_path;  // resolved
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

}  // namespace roster
