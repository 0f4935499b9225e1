// Small text helpers shared by every module (trimming, ASCII case, hex,
// percent-encoding) and the normalisations of the contact model and the
// formats; one copy of each, so that no two callers can drift apart.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace roster::text {

// What Trim removes unless told otherwise: space, tab, CR, LF, FF, VT.
inline constexpr std::string_view kWhitespace = " \t\r\n\f\v";

// `s` without the characters of `chars` at both ends, at the start only, or
// at the end only. A protocol with its own notion of whitespace (XML: space,
// tab, CR, LF; HTTP: space and tab) passes that set.
std::string_view Trim(std::string_view s, std::string_view chars = kWhitespace);
std::string_view TrimLeft(std::string_view s, std::string_view chars = kWhitespace);
std::string_view TrimRight(std::string_view s, std::string_view chars = kWhitespace);

// ASCII letters only: full Unicode case folding would need ICU, and what is
// compared without case (protocol names, e-mail addresses, types) is ASCII.
std::string AsciiLower(std::string_view s);
std::string AsciiUpper(std::string_view s);
bool EqualsNoCase(std::string_view a, std::string_view b);
bool StartsWithNoCase(std::string_view s, std::string_view prefix);

enum class HexCase { kLower, kUpper };
// Two hex digits per byte, high nibble first: "\x0f\xa0" -> "0fa0" ("0FA0").
std::string Hex(std::string_view bytes, HexCase letters = HexCase::kLower);
// The bytes of `hex` (either case); nullopt when it is not whole hex digits.
std::optional<std::string> Unhex(std::string_view hex);

// RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~), which no part of a
// URI ever needs to escape.
bool IsUrlUnreserved(unsigned char c);
// `s` with every byte for which `keep` is false written as "%XX" in
// upper-case hex (RFC 3986 §2.1), the others as they are. The default keeps
// only unreserved characters: right for one path segment or query value.
std::string PercentEncode(std::string_view s, bool (*keep)(unsigned char) = IsUrlUnreserved);
// The byte (0-255) of the escape "%XX" (hex digits of either case) at s[i],
// or -1 when none starts there.
int PercentEscapeAt(std::string_view s, size_t i);

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

// What NormalizeTypes does, one comma-separated list at a time, for a reader
// that finds the lists one by one (vCard's TYPE parameters). Duplicates are
// found with a set: a hostile list may hold many thousands of entries.
class TypeList {
 public:
  // `preferred` may be null.
  TypeList(bool is_email, bool* preferred) : is_email_(is_email), preferred_(preferred) {}
  // Adds each entry of `list`, trimmed and lower-cased, unless it is empty,
  // "pref" (which sets *preferred instead), "internet" for e-mail, or
  // already there.
  void Add(std::string_view list);
  std::vector<std::string> Take() && { return std::move(types_); }

 private:
  bool is_email_;
  bool* preferred_;
  std::vector<std::string> types_;
  std::unordered_set<std::string> seen_;
};

}  // namespace roster::text
