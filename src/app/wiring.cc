#include "app/wiring.h"

#include <algorithm>

#include "connectors/carddav/carddav.h"
#include "connectors/csv/csv_source.h"
#include "connectors/graph/graph_source.h"
#include "connectors/graph/graph_target.h"
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

// What a graph source must $select beyond what it maps: every raw attribute
// a filter, an opt-out or a phone region names (contact fields and the
// summaries are roster's own names, not Graph's).
GraphDirectoryOptions GraphDirectoryOptionsOf(const std::string& name, const SourceConfig& s,
                                              const Config& config, const GraphTenants& tenants) {
  const GraphTenant& t = tenants.at(s.tenant);
  GraphDirectoryOptions o;
  o.name = name;
  o.tokens = t.tokens.get();
  o.client = t.client;
  o.read_users = s.read_users;
  o.read_org_contacts = s.read_org_contacts;
  o.mapping = s.attributes;
  o.groups = s.groups;
  o.page_size = s.page_size;
  o.photos = s.photo_max_pixels > 0;
  auto want = [&](const std::string& field) {
    if (field.empty() || IsContactField(field) || field == "phone" || field == "any_email" ||
        field == "memberOf") {
      return;
    }
    AddOnce(o.extra_attributes, field);
  };
  for (const std::string& a : s.extra_attributes) want(a);
  want(s.opt_out_attribute);
  want(s.phone_region_attribute);
  for (const std::string& f : s.exclude.Fields()) want(f);
  for (const RuleConfig& r : config.rules) {
    if (std::find(r.sources.begin(), r.sources.end(), name) != r.sources.end()) {
      for (const std::string& f : r.filter.Fields()) want(f);
    }
    if (r.users_from && r.users_from->source == name) {
      for (const std::string& f : r.users_exclude.Fields()) AddOnce(o.user_attributes, f);
    }
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
                 const GraphTenants& tenants, EngineConfig& out) {
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
    case SourceType::kGraph: {
      ROSTER_ASSIGN_OR_RETURN(
          auto dir, OpenGraphDirectory(GraphDirectoryOptionsOf(name, s, config, tenants)));
      out.directories[name] = dir.get();
      entry.source = std::move(dir);
      break;
    }
    case SourceType::kGraphFolder: {
      const GraphTenant& t = tenants.at(s.tenant);
      GraphFolderSourceOptions o;
      o.name = name;
      o.tokens = t.tokens.get();
      o.client = t.client;
      o.mailbox = s.mailbox;
      o.folder = s.folder;
      ROSTER_ASSIGN_OR_RETURN(entry.source, OpenGraphFolderSource(std::move(o)));
      break;
    }
  }
  entry.exclude = s.exclude;
  entry.transform = TransformOptionsOf(s);
  out.sources[name] = std::move(entry);
  return {};
}

Result<TargetEntry> BuildTarget(const TargetConfig& t,
                                std::chrono::steady_clock::time_point deadline,
                                const GraphTenants& tenants) {
  if (t.type == TargetType::kGraph) {
    const GraphTenant& tenant = tenants.at(t.tenant);
    GraphTargetOptions o;
    o.tokens = tenant.tokens.get();
    o.client = tenant.client;
    o.app_id = tenant.client_id;
    o.max_in_flight = t.max_in_flight;
    return TargetEntry{NewGraphTarget(std::move(o)), t.users,
                       std::chrono::seconds(t.max_retry_after_seconds)};
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
  spec.use_default_collection = r.placement_default;
  spec.category = r.category;
  return spec;
}

}  // namespace

Result<GraphTenants> BuildGraphTenants(const Config& config,
                                       std::chrono::steady_clock::time_point deadline) {
  GraphTenants tenants;
  for (const auto& [name, t] : config.tenants) {
    graph::GraphCredentials credentials;
    credentials.tenant_id = t.tenant_id;
    credentials.client_id = t.client_id;
    credentials.authority = t.authority;
    credentials.certificate_file = t.certificate_file;
    ROSTER_ASSIGN_OR_RETURN(credentials.client_secret, ReadTenantSecret(t));
    graph::TokenProviderOptions options;
    options.http.ca_file = t.ca_file;
    options.http.timeout = std::chrono::seconds(t.timeout_seconds);
    options.http.deadline = deadline;
    auto tokens = graph::TokenProvider::Create(std::move(credentials), std::move(options));
    if (!tokens.ok()) {
      return MakeError(tokens.error().kind, "tenant " + name + ": " + tokens.error().message);
    }
    GraphTenant tenant;
    tenant.tokens = std::shared_ptr<graph::TokenProvider>(std::move(tokens).value());
    tenant.client.graph_url = t.graph_url;
    tenant.client.http.ca_file = t.ca_file;
    tenant.client.http.timeout = std::chrono::seconds(t.timeout_seconds);
    tenant.client.http.deadline = deadline;
    tenant.client.max_retry_after = std::chrono::seconds(t.max_retry_after_seconds);
    tenant.client_id = t.client_id;
    tenants.emplace(name, std::move(tenant));
  }
  return tenants;
}

Result<EngineConfig> BuildEngineConfig(const Config& config) {
  EngineConfig out;
  out.warnings = config.warnings;
  // Every request of this run ends by the run's deadline, however slow the server.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(config.run_timeout_seconds);
  out.deadline = deadline;
  out.run_retention = std::chrono::hours(24) * config.retention_days;
  out.cache = config.cache == CacheMode::kEncrypted;
  out.cache_max_age = std::chrono::hours(24) * config.retention_days;
  out.purge_after_sync = config.purge_after_sync;
  ROSTER_ASSIGN_OR_RETURN(GraphTenants tenants, BuildGraphTenants(config, deadline));
  for (const auto& [name, t] : tenants) out.shared.push_back(t.tokens);
  for (const auto& [name, s] : config.sources) {
    ROSTER_RETURN_IF_ERROR(AddSource(name, s, config, tenants, out));
  }
  for (const auto& [name, t] : config.targets) {
    ROSTER_ASSIGN_OR_RETURN(out.targets[name], BuildTarget(t, deadline, tenants));
  }
  for (const RuleConfig& r : config.rules) out.rules.push_back(BuildRule(r));
  return out;
}

}  // namespace roster
