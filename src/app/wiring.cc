#include "app/wiring.h"

#include <algorithm>

#include "connectors/carddav/carddav.h"
#include "connectors/csv/csv_source.h"
#include "connectors/ldap/ldap_source.h"
#include "connectors/vcarddir/vcarddir_source.h"

namespace roster {

Result<EngineConfig> BuildEngineConfig(const Config& config) {
  EngineConfig out;
  out.warnings = config.warnings;
  // Every request of this run ends by the run's deadline, however slow the server.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(config.run_timeout_seconds);
  out.deadline = deadline;
  for (const auto& [name, s] : config.sources) {
    SourceEntry entry;
    if (s.type == "csv") {
      entry.source = NewCsvSource(CsvSourceOptions{s.path, s.key, s.columns, s.delimiter[0]});
    } else if (s.type == "ldap") {
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
      for (const char* a : {"uid", "sAMAccountName"}) {
        if (std::find(o.extra_attributes.begin(), o.extra_attributes.end(), a) ==
            o.extra_attributes.end()) {
          o.extra_attributes.push_back(a);
        }
      }
      if (!s.phone_region_attribute.empty()) {
        o.extra_attributes.push_back(s.phone_region_attribute);
      }
      o.page_size = s.page_size;
      o.timeout_seconds = s.timeout_seconds;
      o.allow_insecure = s.allow_insecure;
      // Whatever the rules' users_exclude tests is read for every target user.
      for (const RuleConfig& r : config.rules) {
        if (!r.users_from || r.users_from->source != name) continue;
        ROSTER_ASSIGN_OR_RETURN(Filter f, Filter::Parse(r.users_exclude));
        for (const std::string& field : f.Fields()) {
          if (std::find(o.user_attributes.begin(), o.user_attributes.end(), field) ==
              o.user_attributes.end()) {
            o.user_attributes.push_back(field);
          }
        }
      }
      ROSTER_ASSIGN_OR_RETURN(auto dir, OpenLdapDirectory(std::move(o)));
      out.directories[name] = dir.get();
      entry.source = std::move(dir);
    } else {
      entry.source = NewVCardDirSource(s.path);
    }
    ROSTER_ASSIGN_OR_RETURN(entry.exclude, Filter::Parse(s.exclude));
    entry.transform.default_region = s.phone_region;
    entry.transform.region_attribute = s.phone_region_attribute;
    ROSTER_ASSIGN_OR_RETURN(entry.transform.phone_format, ParsePhoneFormat(s.phone_format));
    entry.transform.photo_max_bytes = static_cast<size_t>(s.photo_max_bytes);
    entry.transform.photo_max_pixels = s.photo_max_pixels;
    entry.transform.opt_out_attribute = s.opt_out_attribute;
    Status valid = ValidateTransformOptions(entry.transform);
    if (!valid.ok()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       config.path + ": [sources." + name + "]: " + valid.error().message);
    }
    out.sources[name] = std::move(entry);
  }
  for (const auto& [name, t] : config.targets) {
    CardDavOptions o;
    o.url = t.url;
    o.home_template = t.home_template;
    o.http.username = t.username;
    ROSTER_ASSIGN_OR_RETURN(o.http.password, ReadTargetPassword(t));
    o.http.ca_file = t.ca_file;
    o.http.timeout = std::chrono::seconds(t.timeout_seconds);
    o.http.deadline = deadline;
    ROSTER_ASSIGN_OR_RETURN(o.user_passwords, ReadTargetCredentials(t));
    o.version = t.vcard_version == "4.0" ? VCardVersion::k40 : VCardVersion::k30;
    o.max_in_flight = t.max_in_flight;
    out.targets[name] =
        TargetEntry{NewCardDavTarget(o), t.users, std::chrono::seconds(t.max_retry_after_seconds)};
  }
  for (const RuleConfig& r : config.rules) {
    RuleSpec spec;
    spec.name = r.name;
    spec.sources = r.sources;
    spec.target = r.target;
    spec.display_name = r.addressbook;
    ROSTER_ASSIGN_OR_RETURN(spec.filter, Filter::Parse(r.filter));
    spec.max_delete_percent = r.max_delete_percent;
    spec.max_update_percent = r.max_update_percent;
    if (r.users_from) {
      UserSelection sel;
      sel.directory = r.users_from->source;
      sel.group = r.users_from->group;
      sel.query = r.users_from->filter;
      sel.attribute = r.users_from->attribute;
      ROSTER_ASSIGN_OR_RETURN(sel.exclude, Filter::Parse(r.users_exclude));
      spec.users = sel;
    } else if (!r.users.empty()) {
      spec.users = UserSelection{r.users, "", "", "", ""};
    }
    spec.include_self = r.include_self;
    auto policy = ParseFieldPolicy(r.fields);
    if (!policy.ok()) {
      return MakeError(ErrorKind::kInvalidArgument,
                       config.path + ": rule " + r.name + ": " + policy.error().message);
    }
    spec.fields = std::move(policy).value();
    spec.adopt = r.adopt == "merge" ? AdoptMode::kMerge : AdoptMode::kNever;
    spec.offboard_remove = r.offboard == "remove";
    out.rules.push_back(std::move(spec));
  }
  return out;
}

}  // namespace roster
