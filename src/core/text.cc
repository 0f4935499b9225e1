#include "core/text.h"

#include <algorithm>
#include <utility>

namespace roster::text {

namespace {
constexpr std::string_view kSpace = " \t\r\n\f\v";
}  // namespace

std::string_view Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string AsciiUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && AsciiLower(a) == AsciiLower(b);
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsNoCase(s.substr(0, prefix.size()), prefix);
}

std::string NormalizeText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return std::string(Trim(out));
}

std::string StripTelScheme(std::string_view value) {
  // Views, not copies: a hostile "tel:tel:tel:..." must cost linear time.
  value = Trim(value);
  while (StartsWithNoCase(value, "tel:")) value = Trim(value.substr(4));
  return std::string(value);
}

std::string NormalizeMediaType(std::string_view media_type) {
  std::string lower = AsciiLower(media_type);
  lower = lower.substr(0, lower.find(';'));
  std::string out;
  for (char c : lower) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        std::string_view("!#$&^_.+-/").find(c) != std::string_view::npos) {
      out.push_back(c);
    }
  }
  if (!out.empty() && out.find('/') == std::string::npos) out = "image/" + out;
  return out;
}

namespace {

// The code point of the valid UTF-8 sequence at the start of `s` and its
// length, or length 0 when there is none.
std::pair<char32_t, size_t> DecodeUtf8(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t length;
  char32_t cp, min;
  if (lead < 0x80) return {lead, 1};
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2, cp = lead & 0x1f, min = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3, cp = lead & 0x0f, min = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4, cp = lead & 0x07, min = 0x10000;
  } else {
    return {0, 0};
  }
  if (s.size() < length) return {0, 0};
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return {0, 0};
    cp = (cp << 6) | (byte(i) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return {0, 0};
  return {cp, length};
}

bool NeedsUnicodeEscape(char32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

void AppendHex(std::string& out, char32_t value, int digits) {
  static const char kHex[] = "0123456789abcdef";
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out += kHex[(value >> shift) & 15];
}

}  // namespace

std::string SafeForOutput(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    auto [cp, length] = DecodeUtf8(s);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      s.remove_prefix(1);
      continue;
    }
    if (cp < 0x20 || cp == 0x7f) {
      out += "\\x";
      AppendHex(out, cp, 2);
    } else if (NeedsUnicodeEscape(cp)) {
      out += "\\u";
      AppendHex(out, cp, 4);
    } else {
      out.append(s.substr(0, length));
    }
    s.remove_prefix(length);
  }
  return out;
}

std::vector<std::string> NormalizeTypes(const std::vector<std::string>& types, bool is_email,
                                        bool* preferred) {
  std::vector<std::string> out;
  for (const std::string& type : types) {
    const std::string all = NormalizeText(type);
    size_t start = 0;
    while (start <= all.size()) {
      size_t comma = all.find(',', start);
      if (comma == std::string::npos) comma = all.size();
      std::string t = AsciiLower(NormalizeText(std::string_view(all).substr(start, comma - start)));
      start = comma + 1;
      if (t.empty() || (is_email && t == "internet")) continue;
      if (t == "pref") {
        if (preferred != nullptr) *preferred = true;
        continue;
      }
      if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace roster::text
