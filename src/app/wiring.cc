#include "app/wiring.h"

#include <algorithm>

#include "connectors/carddav/carddav.h"
#include "connectors/csv/csv_source.h"
#include "connectors/ldap/ldap_source.h"
#include "connectors/vcarddir/vcarddir_source.h"

namespace roster {
namespace {

void AddOnce(std::vector<std::string>& list, const std::string& value) {
  if (std::find(list.begin(), list.end(), value) == list.end()) list.push_back(value);
}

Result<LdapOptions> LdapOptionsOf(const std::string& name, const SourceConfig& s,
                                  const Config& config) {
  LdapOptions o;
  o.name = name;
  o.url = s.url;
  o.starttls = s.starttls;
  o.ca_file = s.ca_file;
  o.bind_dn = s.bind_dn;
  ROSTER_ASSIGN_OR_RETURN(o.password, ReadSourcePassword(s));
  o.base_dn = s.base_dn;
  o.filter = s.filter;
  o.schema = s.schema;
  o.key_attribute = s.key;
  o.mapping = s.attributes;
  o.extra_attributes = s.extra_attributes;
  // Filters and opt-outs read raw attributes: make sure they are fetched.
  if (!s.opt_out_attribute.empty()) o.extra_attributes.push_back(s.opt_out_attribute);
  // Account names tell a listed target user's own entry.
  for (const char* a : {"uid", "sAMAccountName"}) AddOnce(o.extra_attributes, a);
  if (!s.phone_region_attribute.empty()) {
    o.extra_attributes.push_back(s.phone_region_attribute);
  }
  o.page_size = s.page_size;
  o.timeout_seconds = s.timeout_seconds;
  o.allow_insecure = s.allow_insecure;
  // Whatever the rules' users_exclude tests is read for every target user.
  for (const RuleConfig& r : config.rules) {
    if (!r.users_from || r.users_from->source != name) continue;
    for (const std::string& field : r.users_exclude.Fields()) AddOnce(o.user_attributes, field);
  }
  return o;
}

TransformOptions TransformOptionsOf(const SourceConfig& s) {
  TransformOptions t;
  t.default_region = s.phone_region;
  t.region_attribute = s.phone_region_attribute;
  t.phone_format = s.phone_format;
  t.photo_max_bytes = static_cast<size_t>(s.photo_max_bytes);
  t.photo_max_pixels = s.photo_max_pixels;
  t.opt_out_attribute = s.opt_out_attribute;
  return t;
}

// The source's connector into out.sources (and an ldap one into out.directories).
Status AddSource(const std::string& name, const SourceConfig& s, const Config& config,
                 EngineConfig& out) {
  SourceEntry entry;
  switch (s.type) {
    case SourceType::kCsv:
      entry.source = NewCsvSource(CsvSourceOptions{s.path, s.key, s.columns, s.delimiter});
      break;
    case SourceType::kLdap: {
      ROSTER_ASSIGN_OR_RETURN(LdapOptions o, LdapOptionsOf(name, s, config));
      ROSTER_ASSIGN_OR_RETURN(auto dir, OpenLdapDirectory(std::move(o)));
      out.directories[name] = dir.get();
      entry.source = std::move(dir);
      break;
    }
    case SourceType::kVCardDir:
      entry.source = NewVCardDirSource(s.path);
      break;
    case SourceType::kGraph:
    case SourceType::kGraphFolder:
      return MakeError(ErrorKind::kInvalidArgument,
                       "source " + name + ": Microsoft Graph sources are not wired in yet");
  }
  entry.exclude = s.exclude;
  entry.transform = TransformOptionsOf(s);
  out.sources[name] = std::move(entry);
  return {};
}

Result<TargetEntry> BuildTarget(const TargetConfig& t,
                                std::chrono::steady_clock::time_point deadline) {
  if (t.type == TargetType::kGraph) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "target " + t.name + ": Microsoft Graph targets are not wired in yet");
  }
  CardDavOptions o;
  o.url = t.url;
  o.home_template = t.home_template;
  o.http.username = t.username;
  ROSTER_ASSIGN_OR_RETURN(o.http.password, ReadTargetPassword(t));
  o.http.ca_file = t.ca_file;
  o.http.timeout = std::chrono::seconds(t.timeout_seconds);
  o.http.deadline = deadline;
  ROSTER_ASSIGN_OR_RETURN(o.user_passwords, ReadTargetCredentials(t));
  o.version = t.vcard_version;
  o.max_in_flight = t.max_in_flight;
  return TargetEntry{NewCardDavTarget(o), t.users, std::chrono::seconds(t.max_retry_after_seconds)};
}

RuleSpec BuildRule(const RuleConfig& r) {
  RuleSpec spec;
  spec.name = r.name;
  spec.sources = r.sources;
  spec.target = r.target;
  spec.display_name = r.addressbook;
  spec.filter = r.filter;
  spec.max_delete_percent = r.max_delete_percent;
  spec.max_update_percent = r.max_update_percent;
  if (r.users_from) {
    UserSelection sel;
    sel.directory = r.users_from->source;
    sel.group = r.users_from->group;
    sel.query = r.users_from->filter;
    sel.attribute = r.users_from->attribute;
    sel.exclude = r.users_exclude;
    spec.users = sel;
  } else if (!r.users.empty()) {
    spec.users = UserSelection{r.users, "", "", "", ""};
  }
  spec.include_self = r.include_self;
  spec.fields = r.fields;
  spec.adopt = r.adopt;
  spec.offboard_remove = r.offboard_remove;
  return spec;
}

}  // namespace

Result<EngineConfig> BuildEngineConfig(const Config& config) {
  EngineConfig out;
  out.warnings = config.warnings;
  // Every request of this run ends by the run's deadline, however slow the server.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(config.run_timeout_seconds);
  out.deadline = deadline;
  for (const auto& [name, s] : config.sources) {
    ROSTER_RETURN_IF_ERROR(AddSource(name, s, config, out));
  }
  for (const auto& [name, t] : config.targets) {
    ROSTER_ASSIGN_OR_RETURN(out.targets[name], BuildTarget(t, deadline));
  }
  for (const RuleConfig& r : config.rules) out.rules.push_back(BuildRule(r));
  return out;
}

}  // namespace roster
