// A CSV file as a source of people: one row per person, columns mapped to
// contact fields by the configuration, one column as the stable identity.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "core/connector.h"

namespace roster {

struct CsvSourceOptions {
  std::string path;
  std::string key_column;
  std::map<std::string, std::string> columns;  // contact field -> CSV column
  char delimiter = ',';
  // Version() trusts the file's stamps only once it has been left alone this
  // long: file times advance in clock ticks (milliseconds on Linux, 2 s on
  // FAT), so a rewrite within the tick in which we looked would keep them.
  // A younger file has no version and is read in full. Tests set 0.
  std::chrono::nanoseconds version_min_age = std::chrono::seconds(2);
};

// Version() is a hash of the options and of the file's device, inode, size,
// and modification and change times (to the nanosecond): any rewrite,
// rename-over or `touch` changes it. It fails when the file cannot be
// stat'ed, and is empty while the file is younger than version_min_age.
std::unique_ptr<Source> NewCsvSource(CsvSourceOptions options);

}  // namespace roster
