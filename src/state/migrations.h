// The schema migrations embedded from sql/*.sql, in version order.
#pragma once

#include <vector>

namespace roster {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

const std::vector<Migration>& Migrations();

}  // namespace roster
