#include "core/result.h"

namespace roster {

const char* ErrorKindName(ErrorKind kind) {
  // Spelled like the enumerators without the "k", so a log line can be grepped
  // for the same word a reader finds in the code.
  switch (kind) {
    case ErrorKind::kInvalidArgument:
      return "InvalidArgument";
    case ErrorKind::kInvalidData:
      return "InvalidData";
    case ErrorKind::kNotFound:
      return "NotFound";
    case ErrorKind::kPreconditionFailed:
      return "PreconditionFailed";
    case ErrorKind::kConflict:
      return "Conflict";
    case ErrorKind::kThrottled:
      return "Throttled";
    case ErrorKind::kTransient:
      return "Transient";
    case ErrorKind::kAccessDenied:
      return "AccessDenied";
    case ErrorKind::kUnavailable:
      return "Unavailable";
    case ErrorKind::kAborted:
      return "Aborted";
    case ErrorKind::kInternal:
      return "Internal";
  }
  // Only reachable for a value cast from an out-of-range integer.
  return "Unknown";
}

}  // namespace roster
