// The audit log as read back from disk, which anyone who can write the file
// may have changed: Verify and Log::Open must refuse whatever they cannot
// read, naming a line, and never crash or loop.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "audit/audit.h"
#include "crypto/keys.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const roster::crypto::Key key = roster::crypto::GenerateKey();
  static const std::string path = "/tmp/roster-audit-fuzz-" + std::to_string(::getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto v = roster::audit::Verify(path);
  if (v.ok() && !v->ok && v->problem.empty()) __builtin_trap();  // a failure always says why
  auto log = roster::audit::Log::Open(path, key);
  (void)log;
  std::remove(path.c_str());
  return 0;
}
