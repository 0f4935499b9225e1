#include "core/text.h"

#include <algorithm>

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
