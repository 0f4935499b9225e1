// Photos small enough for every phone and server: a JPEG over the limits is
// re-encoded smaller with libjpeg; any other photo over them is dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "core/contact.h"

namespace roster {

inline constexpr size_t kDefaultPhotoMaxBytes = 100 * 1024;
inline constexpr int kDefaultPhotoMaxPixels = 512;

// A JPEG claiming more is refused before any pixel memory is allocated.
inline constexpr int kMaxPhotoSide = 20000;
inline constexpr int64_t kMaxPhotoPixels = 100'000'000;

struct CappedPhoto {
  enum class Outcome { kKept, kResampled, kDropped };
  Outcome outcome = Outcome::kKept;
  std::optional<Photo> photo;  // empty when dropped
  std::string reason;          // for kResampled and kDropped: a short phrase, never the bytes
};

// Within the limits (at most `max_bytes`, and a JPEG at most `max_pixels` on
// its longer side), or given only by URI, the photo comes back unchanged,
// except that a JPEG whose header does not read or claims absurd dimensions
// is dropped whatever its size (a few bytes can claim 20000x20000). A
// JPEG over a limit is decoded at 1/1, 1/2, 1/4 or 1/8 scale (libjpeg's DCT
// scaling), turned upright by its EXIF orientation, shrunk by area averaging
// until its longer side fits `max_pixels`, and re-encoded at quality 85, then
// lower qualities and smaller sizes until it fits `max_bytes`. Anything else
// over the limits, a JPEG that does not decode cleanly (corrupt, truncated,
// absurd dimensions) or `max_pixels` <= 0 drops the photo. Deterministic: the
// same input always gives the same bytes.
CappedPhoto CapPhoto(const Photo& photo, size_t max_bytes = kDefaultPhotoMaxBytes,
                     int max_pixels = kDefaultPhotoMaxPixels);

}  // namespace roster
