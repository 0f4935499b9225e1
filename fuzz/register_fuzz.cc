// The erasure register as read back from disk, which anyone who can write
// the file may have changed: Load must refuse what it cannot read with a
// message naming the file, never crash or loop. And whatever addresses are
// erased, what Save writes must load back holding every one of them.
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "crypto/keys.h"
#include "gdpr/register.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const roster::crypto::Key key = roster::crypto::GenerateKey();
  static const std::string path = "/tmp/roster-register-fuzz-" + std::to_string(::getpid());
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto loaded = roster::gdpr::ErasureRegister::Load(path, key);
  if (!loaded.ok() && loaded.error().message.find(path) == std::string::npos) __builtin_trap();
  std::remove(path.c_str());

  auto fresh = roster::gdpr::ErasureRegister::Load(path, key);
  if (!fresh.ok()) __builtin_trap();
  std::vector<std::string> erased;
  size_t start = 0;
  while (start <= input.size() && erased.size() < 50) {
    size_t nl = input.find('\n', start);
    std::string_view line = input.substr(start, nl == std::string_view::npos ? nl : nl - start);
    if (!line.empty()) {
      erased.emplace_back(line);
      fresh->Add(line, {std::string(line) + "-key"}, std::chrono::system_clock::now());
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  if (!fresh->Save().ok()) return 0;
  auto back = roster::gdpr::ErasureRegister::Load(path, key);
  if (!back.ok()) __builtin_trap();
  for (const std::string& e : erased) {
    if (!back->Contains(e)) __builtin_trap();
  }
  std::remove(path.c_str());
  return 0;
}
