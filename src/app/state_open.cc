#include "app/state_open.h"

#include <utility>

namespace roster {

Result<crypto::Key> StateKey(const Config& config, StateUse use, std::vector<std::string>* notes) {
  const bool from_env = !config.state_key_env.empty();
  auto key = crypto::LoadStateKey(config.state_key_file, config.state_key_env);
  if (key.ok() || key.error().kind != ErrorKind::kNotFound) return key;
  ROSTER_ASSIGN_OR_RETURN(StateFileKind kind, InspectStateFile(config.state_path));
  if (kind == StateFileKind::kSealed) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "the state file " + config.state_path + " is encrypted, but its key " +
                         (from_env ? "variable " + config.state_key_env + " is not set"
                                   : "file " + config.state_key_file + " is missing") +
                         ": restore the key from the configuration's backup, or move the state "
                         "file away to start afresh (roster finds its own items on the targets "
                         "again by their markers)");
  }
  if (use == StateUse::kReading) {
    // Nothing sealed to read: a plan or status reads an empty or old state,
    // and nothing it holds in memory outlives it.
    return crypto::GenerateKey();
  }
  if (from_env) {
    return MakeError(ErrorKind::kInvalidArgument,
                     "environment variable " + config.state_key_env +
                         " ([state] key_env) holds no key: `roster keys init` prints a new one "
                         "to put there");
  }
  ROSTER_ASSIGN_OR_RETURN(crypto::Key created, crypto::CreateKeyFile(config.state_key_file));
  if (notes != nullptr) {
    notes->push_back("created the state's key in " + config.state_key_file +
                     " (mode 0600): back it up with the configuration; without it the encrypted "
                     "state cannot be read");
  }
  return created;
}

Result<std::unique_ptr<StateStore>> OpenState(const Config& config, StateUse use,
                                              std::vector<std::string>* notes) {
  ROSTER_ASSIGN_OR_RETURN(crypto::Key key, StateKey(config, use, notes));
  auto store = use == StateUse::kSync ? OpenSqliteStateStore(config.state_path, key)
                                      : OpenSqliteStateStoreForReading(config.state_path, key);
  if (!store.ok() && store.error().credential_refused) {
    Error e = store.take_error();
    const std::string source = config.state_key_env.empty()
                                   ? "key file " + config.state_key_file
                                   : "environment variable " + config.state_key_env;
    e.message += " (the key came from " + source + ")";
    return e;
  }
  return store;
}

}  // namespace roster
