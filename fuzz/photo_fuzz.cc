// Feeds arbitrary bytes to CapPhoto as a JPEG, with limits small enough that
// most inputs that decode are also resampled and re-encoded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "mapping/photo.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  roster::Photo photo;
  photo.media_type = "image/jpeg";
  photo.data.assign(reinterpret_cast<const char*>(data), size);
  const roster::CappedPhoto capped = roster::CapPhoto(photo, 2048, 64);
  switch (capped.outcome) {
    case roster::CappedPhoto::Outcome::kKept:
      if (!capped.photo || capped.photo->data != photo.data) __builtin_trap();
      break;
    case roster::CappedPhoto::Outcome::kResampled:
      if (!capped.photo || capped.photo->data.size() > 2048) __builtin_trap();
      break;
    case roster::CappedPhoto::Outcome::kDropped:
      if (capped.photo || capped.reason.empty()) __builtin_trap();
      break;
  }
  return 0;
}
