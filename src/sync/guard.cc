#include "sync/guard.h"

namespace roster {

std::string GuardTrip::Share(const std::string& noun, const std::string& qualifier) const {
  return std::to_string(count) + " of " + std::to_string(total) + " " + noun +
         (qualifier.empty() ? "" : " " + qualifier) + " (" +
         std::to_string(total ? count * 100 / total : 0) + "%), more than " + setting + " = " +
         std::to_string(percent);
}

std::optional<GuardTrip> CheckGuard(const std::string& guard, const std::string& setting,
                                    int64_t count, int64_t total, int percent) {
  if (count <= 0 || total <= 0 || count * 100 <= static_cast<int64_t>(percent) * total) {
    return std::nullopt;
  }
  return GuardTrip{guard, setting, count, total, percent};
}

}  // namespace roster
