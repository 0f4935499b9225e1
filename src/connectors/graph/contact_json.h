// Microsoft Graph v1.0 contacts as JSON text: the body that creates one, the
// PATCH that turns one into another, and a contact or a page of contacts
// (a listing or a delta) read back into roster's Contact. Pure functions, no
// HTTP; the adapter sends and receives what these make and read. Property
// names and types are Graph's (checked against Microsoft's CSDL by a test).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/connector.h"
#include "core/contact.h"
#include "core/result.h"

namespace roster {

// Bounds on what the readers accept: a bigger answer is an error, never a
// big allocation. Graph pages hold at most 1000 contacts ($top), a contact 3
// e-mail addresses and 2 phones of a kind, so these leave generous room.
inline constexpr size_t kMaxGraphContactBytes = size_t{1} << 20;  // one contact
inline constexpr size_t kMaxGraphPageBytes = size_t{32} << 20;    // one page
inline constexpr size_t kMaxGraphPageItems = 10000;               // contacts in a page
inline constexpr size_t kMaxGraphArrayEntries = 1000;             // entries of one property
inline constexpr size_t kMaxGraphLinkBytes = 16 * 1024;           // nextLink, deltaLink

// Whether JSON text nests deeper than `limit` arrays and objects, told
// before parsing, so that no hostile document costs a deep tree.
bool JsonNestsDeeperThan(std::string_view text, int limit);

// roster's ownership marker as the value of a single-value extended property
// of type String: "roster:v1:" + PercentEncode(rule) + ":" + PercentEncode(key),
// escaping every byte but RFC 3986's unreserved characters. Any rule and key
// (colons, newlines, quotes, NUL, non-UTF-8 bytes) encode to printable ASCII
// without a colon of their own, which a $filter can quote as it is.
std::string EncodeGraphMarker(const ManagedTag& tag);
// The tag of a value EncodeGraphMarker made; nullopt for anything else
// (another prefix or version, a bad escape, an empty rule or key).
std::optional<ManagedTag> DecodeGraphMarker(std::string_view value);

// Whether two extended property ids name the same property, as Exchange
// compares them: the type, GUID, "Name"/"Id" and a tag without regard to
// case, the name itself exactly ("String {GUID} Name roster-marker").
bool SameGraphPropertyId(std::string_view a, std::string_view b);

// The JSON body that creates `projected` (ProjectGraphContact's form; any
// other contact is sent as that form would be) with POST: only the
// properties it has, each as Graph types it (the birthday as a date at
// midnight UTC, "1604-MM-DD..." without a year), e-mail addresses named by
// displayName. With a tag and a non-empty marker_property_id it carries the
// marker in singleValueExtendedProperties. The photo is not in it: Graph
// takes photos at their own endpoint.
std::string GraphContactBody(const Contact& projected, const ManagedTag* tag,
                             const std::string& marker_property_id);

// The JSON body of a PATCH that turns `before` (as read from Graph) into
// `after`: only the properties that differ. A property `after` lacks is
// cleared explicitly: null for text and the birthday, [] for a collection
// (Graph replaces a collection whole), an address with every member null.
// An address that changes is sent with all five members, null for the empty
// ones, so that merging and replacing servers agree. The marker is sent when
// tag_after differs from tag_before (Graph cannot remove one, so a null
// tag_after sends none). Empty when nothing differs: send no request.
std::string GraphContactPatch(const Contact& before, const Contact& after,
                              const ManagedTag* tag_before, const ManagedTag* tag_after,
                              const std::string& marker_property_id);

// A contact as Graph answers it.
struct GraphContact {
  std::string id;          // the contact's id (validated: Graph's id characters, bounded)
  std::string etag;        // @odata.etag as sent, the If-Match of a write; empty if none
  std::string change_key;  // changeKey; empty if none
  // ProjectGraphContact's form, no photo; server-filled fileAs is ignored,
  // displayName is kept.
  Contact contact;
  // roster's marker, when the contact carries the extended property
  // marker_property_id (expanded in the request; delta answers have none).
  std::optional<ManagedTag> tag;
  // Items of a page only: why the contact could not be read (a property of
  // the wrong type, an unreadable etag or marker); then `contact` and `tag`
  // are empty and the item must be left alone. ParseGraphContact answers
  // these as errors instead.
  std::string parse_error;
};

// Reads one contact (GET .../contacts/{id}). Unknown properties are ignored
// and null is an unset property; text is cleaned as ProjectGraphContact
// cleans it. kInvalidData, in one line naming the property, for input that
// is not a JSON object, too big or too deep, has no usable id, a property of
// the wrong type, an unusable etag, or a marker property whose value is not
// EncodeGraphMarker's. Never throws.
Result<GraphContact> ParseGraphContact(std::string_view json,
                                       const std::string& marker_property_id);

enum class GraphPageKind {
  kList,   // a page of GET .../contacts: @removed entries are an error
  kDelta,  // a page of .../contacts/delta: it must end in a nextLink or a deltaLink
};

// One page of contacts.
struct GraphContactPage {
  std::vector<GraphContact> items;   // changed or listed contacts, in order
  std::vector<std::string> removed;  // delta: ids of "@removed" entries
  std::string next_link;             // @odata.nextLink: fetch it for the next page
  std::string delta_link;            // @odata.deltaLink: the last page of a delta; keep it
};

// Reads a page ({"value": [...], "@odata.nextLink": ...}). Links are returned
// as sent when they are absolute http(s) URLs of printable ASCII within
// kMaxGraphLinkBytes; checking that they stay on Graph's origin before a
// token follows them is the caller's. An item whose id is unusable fails the
// page (it cannot be named); any other problem with an item is its
// parse_error. A delta page with neither a nextLink nor a deltaLink is an
// error (the answer was cut short), as is one with both. An id may appear
// more than once across the pages of a delta; the caller keeps the last.
// Never throws.
Result<GraphContactPage> ParseGraphContactPage(std::string_view json,
                                               const std::string& marker_property_id,
                                               GraphPageKind kind);

}  // namespace roster
