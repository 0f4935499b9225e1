// A CSV file as a source of people: one row per person, columns mapped to
// contact fields by the configuration, one column as the stable identity.
#pragma once

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
};

std::unique_ptr<Source> NewCsvSource(CsvSourceOptions options);

}  // namespace roster
