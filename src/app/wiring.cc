#include "app/wiring.h"

#include "connectors/carddav/carddav.h"
#include "connectors/csv/csv_source.h"
#include "connectors/vcarddir/vcarddir_source.h"

namespace roster {

Result<EngineConfig> BuildEngineConfig(const Config& config) {
  EngineConfig out;
  for (const auto& [name, s] : config.sources) {
    if (s.type == "csv") {
      out.sources[name] = NewCsvSource(CsvSourceOptions{s.path, s.key, s.columns, s.delimiter[0]});
    } else {
      out.sources[name] = NewVCardDirSource(s.path);
    }
  }
  for (const auto& [name, t] : config.targets) {
    CardDavOptions o;
    o.url = t.url;
    o.home_template = t.home_template;
    o.http.username = t.username;
    ROSTER_ASSIGN_OR_RETURN(o.http.password, ReadTargetPassword(t));
    o.http.ca_file = t.ca_file;
    o.http.timeout = std::chrono::seconds(t.timeout_seconds);
    o.version = t.vcard_version == "4.0" ? VCardVersion::k40 : VCardVersion::k30;
    o.max_in_flight = t.max_in_flight;
    out.targets[name] = TargetEntry{NewCardDavTarget(o), t.users};
  }
  for (const RuleConfig& r : config.rules) {
    RuleSpec spec;
    spec.name = r.name;
    spec.source = r.source;
    spec.target = r.target;
    spec.display_name = r.addressbook;
    ROSTER_ASSIGN_OR_RETURN(spec.filter, Filter::Parse(r.filter));
    spec.max_delete_percent = r.max_delete_percent;
    out.rules.push_back(std::move(spec));
  }
  return out;
}

}  // namespace roster
