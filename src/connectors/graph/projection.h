// What a Microsoft Graph v1.0 `contact` can hold, as a pure function: the
// Graph target's Target::Project. Desired items are hashed on this form and
// contacts read back from Graph (contact_json.h) come out in it, so a lossy
// target never rewrites an unchanged item.
#pragma once

#include <cstddef>
#include <optional>

#include "core/contact.h"
#include "core/item.h"

namespace roster {

// What Exchange keeps of the multi-valued fields.
inline constexpr size_t kGraphMaxEmails = 3;                    // emailAddresses
inline constexpr size_t kGraphMaxBusinessPhones = 2;            // businessPhones
inline constexpr size_t kGraphMaxHomePhones = 2;                // homePhones
inline constexpr size_t kGraphMaxPhotoBytes = size_t{4} << 20;  // a contact photo

// Names this projection for Target::projection_name(). Change it whenever
// ProjectGraphContact changes, so that every managed item is rewritten once.
inline constexpr char kGraphContactProjectionName[] = "graph-contact-1";

// The contact as Graph holds it (photo apart, which Graph keeps beside it):
// - the first 3 non-blank e-mail addresses, preferred ones first, else in
//   order; types and preference are not kept;
// - phones into Graph's slots, preferred first: the first cell number becomes
//   mobilePhone, work numbers up to 2 businessPhones, home numbers up to 2
//   homePhones; fax, pager and other numbers are dropped;
// - one business, home and other address (chosen as the twin in
//   connectors/memory/graph_like.cc chooses them), without PO box; the
//   business address's extended part is officeLocation;
// - at most one URL (businessHomePage), preferred first; no role;
// - the birthday as YYYY-MM-DD, or --MM-DD for a date without a year (also
//   when written with year 1604, the year that stands for "no year" on the
//   wire); anything that is not a real calendar date is dropped;
// - a photo only when it has bytes (one given by URI cannot be uploaded),
//   is a JPEG or a PNG (what Exchange takes; the media type as given) and
//   is at most 4 MiB: GraphPhotoOf;
// - formatted_name, when empty, filled as the server fills displayName when
//   none is sent: "Given Family";
// - every text as Graph can carry it: valid UTF-8 (an invalid byte becomes
//   U+FFFD), and no control characters other than tab, LF and CR (each one
//   becomes U+FFFD).
// Idempotent: ProjectGraphContact(ProjectGraphContact(c)) == ProjectGraphContact(c).
Contact ProjectGraphContact(const Contact& contact);

// The photo ProjectGraphContact keeps, without projecting the rest.
// (Dropping photos Exchange refuses did not rename the projection: such a
// photo never landed, so no item holding it needs rewriting.)
std::optional<Photo> GraphPhotoOf(const Contact& contact);

// Target::Project for a Graph contact folder: contacts as above, any other
// kind unchanged.
ItemBody ProjectGraphContact(const ItemBody& body);

}  // namespace roster
