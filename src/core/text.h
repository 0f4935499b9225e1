// Small text normalisations shared by the contact model and the formats that
// read and write it; one copy, so the canonical form and the vCard writer can
// never drift apart.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace roster::text {

// Without surrounding whitespace (space, tab, CR, LF, FF, VT).
std::string_view Trim(std::string_view s);
std::string AsciiLower(std::string_view s);
std::string AsciiUpper(std::string_view s);
bool EqualsNoCase(std::string_view a, std::string_view b);
bool StartsWithNoCase(std::string_view s, std::string_view prefix);
// Trimmed, with CRLF and CR turned into LF: vCard text can only carry LF.
std::string NormalizeText(std::string_view s);
// "tel:" is vCard 4.0's URI spelling of a number; any number of them go.
std::string StripTelScheme(std::string_view value);
// vCard 3.0 names a photo format ("JPEG"), 4.0 a media type ("image/jpeg");
// both become the latter, limited to RFC 6838 name characters.
std::string NormalizeMediaType(std::string_view media_type);

// Text from outside (a server's message, an href, a name) made safe for a
// terminal, a log line or JSON: invalid UTF-8 becomes U+FFFD (one per byte
// that starts no valid sequence; overlong forms, surrogates and code points
// past U+10FFFF are invalid); C0 controls and DEL become "\xHH" (tab and
// newline too: one message stays one line); C1 controls, U+2028/U+2029 and
// the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069)
// become "\uHHHH". Everything else is kept as it is.
std::string SafeForOutput(std::string_view s);

// Contact types normalised: lower case, trimmed, comma lists split, empty and
// duplicate entries dropped, order kept; "pref" sets *preferred instead (vCard
// 3.0 spells preference as a type); for e-mail, "internet" (vCard 3.0's
// default) is dropped.
std::vector<std::string> NormalizeTypes(const std::vector<std::string>& types, bool is_email,
                                        bool* preferred);

}  // namespace roster::text
