// Builds the engine's sources, targets and rules from a loaded configuration:
// the one place that knows every concrete connector.
#pragma once

#include "app/engine.h"
#include "config/config.h"

namespace roster {

// Reads passwords (from the environment or files) and constructs connectors.
// Fails on the first problem with one sentence naming it.
Result<EngineConfig> BuildEngineConfig(const Config& config);

}  // namespace roster
