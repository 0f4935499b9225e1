// Filter expressions select which source records a rule sends:
//   department != 'Contractors' and (has(mobile) or has(email))
// Comparisons are case-insensitive; a field with several values matches `==`
// when any value does and `!=` when none does.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace roster {

// Looks up the values of a field (contact field or raw source attribute).
using FieldLookup = std::function<std::vector<std::string>(std::string_view field)>;

class Filter {
 public:
  struct Node;

  // Parses an expression. Errors give the 1-based column:
  // "filter: column 14: expected a quoted string after '!='".
  static Result<Filter> Parse(std::string_view expression);

  // The empty filter matches everything.
  Filter();
  ~Filter();
  Filter(Filter&&) noexcept;
  Filter& operator=(Filter&&) noexcept;
  Filter(const Filter&);
  Filter& operator=(const Filter&);

  bool Matches(const FieldLookup& lookup) const;
  // Field names the expression reads, for validation and documentation.
  std::vector<std::string> Fields() const;
  const std::string& text() const { return text_; }

 private:
  std::shared_ptr<const Node> root_;
  std::string text_;
};

}  // namespace roster
