#include "core/text.h"

#include <utility>

namespace roster::text {

std::string_view Trim(std::string_view s, std::string_view chars) {
  return TrimRight(TrimLeft(s, chars), chars);
}

std::string_view TrimLeft(std::string_view s, std::string_view chars) {
  const size_t begin = s.find_first_not_of(chars);
  return begin == std::string_view::npos ? std::string_view() : s.substr(begin);
}

std::string_view TrimRight(std::string_view s, std::string_view chars) {
  const size_t last = s.find_last_not_of(chars);
  return last == std::string_view::npos ? std::string_view() : s.substr(0, last + 1);
}

namespace {
char LowerChar(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
}  // namespace

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerChar(c);
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
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerChar(a[i]) != LowerChar(b[i])) return false;
  }
  return true;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsNoCase(s.substr(0, prefix.size()), prefix);
}

std::string Hex(std::string_view bytes, HexCase letters) {
  const char* digits = letters == HexCase::kUpper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

bool IsUrlUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string PercentEncode(std::string_view s, bool (*keep)(unsigned char)) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    if (keep(static_cast<unsigned char>(ch))) {
      out += ch;
    } else {
      out += '%';
      out += Hex(std::string_view(&ch, 1), HexCase::kUpper);
    }
  }
  return out;
}

namespace {
int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<std::string> Unhex(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int high = HexDigitValue(hex[i]), low = HexDigitValue(hex[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
  }
  return out;
}

int PercentEscapeAt(std::string_view s, size_t i) {
  if (i >= s.size() || s.size() - i < 3 || s[i] != '%') return -1;
  const int high = HexDigitValue(s[i + 1]), low = HexDigitValue(s[i + 2]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
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
      out += "\\x" + Hex(std::string(1, static_cast<char>(cp)));
    } else if (NeedsUnicodeEscape(cp)) {
      // Every code point escaped here is below U+10000: two bytes' worth.
      out += "\\u" + Hex(std::string{static_cast<char>(cp >> 8), static_cast<char>(cp & 0xff)});
    } else {
      out.append(s.substr(0, length));
    }
    s.remove_prefix(length);
  }
  return out;
}

std::vector<std::string> NormalizeTypes(const std::vector<std::string>& types, bool is_email,
                                        bool* preferred) {
  TypeList list(is_email, preferred);
  for (const std::string& type : types) list.Add(NormalizeText(type));
  return std::move(list).Take();
}

void TypeList::Add(std::string_view list) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string type = AsciiLower(Trim(list.substr(start, comma - start)));
    start = comma + 1;
    if (type.empty() || (is_email_ && type == "internet")) continue;
    if (type == "pref") {
      if (preferred_ != nullptr) *preferred_ = true;
      continue;
    }
    if (seen_.insert(type).second) types_.push_back(std::move(type));
  }
}

}  // namespace roster::text
