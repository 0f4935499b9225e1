// A folder of .vcf files as a source of people. Each card's UID is its
// identity (the file name when a card has none).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "core/connector.h"

namespace roster {

// Version() is a hash of the folder's own stat and, for every file ReadAll
// would read, its name, device, inode, size, and modification and change
// times (to the nanosecond): an edited, added, removed or renamed-in file
// changes it. It fails when the folder or a file cannot be stat'ed, and is
// empty while any of them changed less than `version_min_age` ago (file times
// advance in clock ticks, so a rewrite within the tick we looked in would
// keep them; such a folder is read in full). Tests set 0.
std::unique_ptr<Source> NewVCardDirSource(
    std::string directory, std::chrono::nanoseconds version_min_age = std::chrono::seconds(2));

}  // namespace roster
