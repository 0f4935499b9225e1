// Private to roster_graph: a contact as a set of Graph properties, the one
// representation projection.cc and contact_json.cc share, so that what is
// projected, sent and read back can never drift apart.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/contact.h"

namespace roster::graph_detail {

// Each property's values as strings: one for a scalar, the entries of a
// collection, the five parts of an address (kAddressParts order), the
// birthday as "YYYY-MM-DD" or "--MM-DD". A property that is not set is
// absent, never present and empty: two contacts differ exactly in the
// properties whose values differ.
using Props = std::map<std::string, std::vector<std::string>>;

// How a property is written in JSON.
enum class Shape {
  kString,    // Edm.String
  kStrings,   // Collection(Edm.String)
  kEmails,    // Collection(graph.emailAddress): the addresses
  kAddress,   // graph.physicalAddress
  kBirthday,  // Edm.DateTimeOffset holding a date
};

struct Property {
  std::string_view name;
  Shape shape;
};

// Every contact property roster writes and reads, in a fixed order.
const std::vector<Property>& Properties();

// graph.physicalAddress's members, in the order of an address's parts.
inline constexpr std::string_view kAddressParts[5] = {"street", "city", "state", "postalCode",
                                                      "countryOrRegion"};

// What Graph keeps of the contact (photo apart), with displayName filled as
// the server fills it when the contact has none.
Props ProjectedProps(const Contact& contact);

// The contact the properties describe (no photo).
Contact FromProps(const Props& props);

// `s` as Graph can carry it: invalid UTF-8 bytes and control characters
// other than tab, LF and CR each become U+FFFD.
std::string GraphText(std::string_view s);

// "YYYY-MM-DD" or "--MM-DD" for a birthday written as a date (vCard's forms,
// or a date and time), the year 1604 read as no year; empty when it is not
// a real calendar date.
std::string GraphBirthday(std::string_view birthday);

// Year 1604 is what Graph carries for a birthday without a year (it is a
// leap year, so --02-29 survives).
inline constexpr std::string_view kNoYear = "1604";

}  // namespace roster::graph_detail
