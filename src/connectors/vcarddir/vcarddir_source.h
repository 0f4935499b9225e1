// A folder of .vcf files as a source of people. Each card's UID is its
// identity (the file name when a card has none).
#pragma once

#include <memory>
#include <string>

#include "core/connector.h"

namespace roster {

std::unique_ptr<Source> NewVCardDirSource(std::string directory);

}  // namespace roster
