// libFuzzer target for the source cache's record codec (src/core/record_codec):
// the bytes come out of a sealed value, so only someone holding the key can
// choose them, but a decoder must still never read past its input or crash.
// Whatever decodes encodes back to the same bytes and decodes to an equal
// record.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/record_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto record = roster::DecodeRecord(in);
  if (!record) return 0;
  const std::string again = roster::EncodeRecord(*record);
  if (again != in) std::abort();
  auto back = roster::DecodeRecord(again);
  if (!back || back->key != record->key || !(back->contact == record->contact) ||
      back->attributes != record->attributes) {
    std::abort();
  }
  return 0;
}
