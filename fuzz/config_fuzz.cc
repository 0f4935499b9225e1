// libFuzzer target for the configuration loader: any file an administrator
// (or an attacker with write access to it) hands roster must come back as a
// config or one error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto config = roster::ParseConfig(text, "/fuzz/roster.toml");
  if (!config.ok() && config.error().message.empty()) __builtin_trap();
  return 0;
}
