// Opens a configuration's state with its key ([state] key_file or key_env):
// the one place that decides where the key comes from and what to do when
// it is missing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "crypto/keys.h"
#include "state/state.h"

namespace roster {

enum class StateUse {
  kSync,     // may create the key file (first run, or a state from before keys) and migrate
  kReading,  // plan, status: creates nothing; a missing key with no sealed state is a key in memory
};

// The key of `config`'s state. A missing key file is created (mode 0600)
// for a sync whose state file does not exist yet or holds nothing sealed,
// with a note saying so in *notes; a plan or status then uses a throwaway
// key in memory. A missing key while the state file is sealed is an error
// that says to restore it. With key_env, an unset variable is an error for
// a sync, and a throwaway key for a plan of a state that does not exist.
Result<crypto::Key> StateKey(const Config& config, StateUse use, std::vector<std::string>* notes);

// The state store, opened with StateKey. Messages start with what failed.
Result<std::unique_ptr<StateStore>> OpenState(const Config& config, StateUse use,
                                              std::vector<std::string>* notes);

}  // namespace roster
