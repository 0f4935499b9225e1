#include "core/connector.h"

#include "core/hash.h"

namespace roster {

std::string Target::DefaultResourceName(const ManagedTag& tag) {
  std::string material = tag.rule;
  material.push_back('\0');
  material += tag.key;
  return "roster-" + HashHex(material);
}

}  // namespace roster
