// Builds the engine's sources, targets and rules from a loaded configuration:
// the one place that knows every concrete connector.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "app/engine.h"
#include "config/config.h"
#include "graph/auth.h"
#include "graph/client.h"

namespace roster {

// Reads passwords (from the environment or files) and constructs connectors.
// Fails on the first problem with one sentence naming it.
Result<EngineConfig> BuildEngineConfig(const Config& config);

// One Entra app registration ([tenants.NAME]): signed in once per run and
// shared by every source and target of its tenant.
struct GraphTenant {
  std::shared_ptr<graph::TokenProvider> tokens;
  graph::GraphClientOptions client;  // graph_url, CA file, timeouts, deadline
  std::string client_id;
};
using GraphTenants = std::map<std::string, GraphTenant>;

// Every tenant's token provider (secrets read, certificates loaded; nothing
// sent yet) and request options.
Result<GraphTenants> BuildGraphTenants(const Config& config,
                                       std::chrono::steady_clock::time_point deadline);

}  // namespace roster
