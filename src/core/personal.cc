#include "core/personal.h"

#include <cctype>

namespace roster {
namespace {

constexpr char kOpen = '\x1e';
constexpr char kSplit = '\x1f';
constexpr char kClose = '\x1d';

std::string Clean(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c != kOpen && c != kSplit && c != kClose) out.push_back(c);
  }
  return out;
}

// Calls `each(ref, shown)` for every mark and copies the rest of `message`.
template <typename F>
std::string Render(std::string_view message, F&& each) {
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  while (i < message.size()) {
    const size_t open = message.find(kOpen, i);
    if (open == std::string_view::npos) {
      out.append(message.substr(i));
      break;
    }
    out.append(message.substr(i, open - i));
    const size_t split = message.find(kSplit, open + 1);
    const size_t close = split == std::string_view::npos ? split : message.find(kClose, split + 1);
    if (close == std::string_view::npos) {
      // A broken mark (cut by a length limit): what follows may be personal.
      break;
    }
    out += each(message.substr(open + 1, split - open - 1),
                message.substr(split + 1, close - split - 1));
    i = close + 1;
  }
  return out;
}

std::string UrlEncoded(std::string_view value) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

}  // namespace

std::string Personal(std::string_view ref, std::string_view shown) {
  std::string out(1, kOpen);
  out += Clean(ref);
  out.push_back(kSplit);
  out += Clean(shown);
  out.push_back(kClose);
  return out;
}

std::string ShowPersonal(std::string_view message) {
  return Render(message,
                [](std::string_view, std::string_view shown) { return std::string(shown); });
}

std::string HidePersonal(std::string_view message, const PseudonymFn& pseudonym) {
  return Render(message, [&](std::string_view ref, std::string_view) { return pseudonym(ref); });
}

std::string MarkPersonal(std::string_view message, std::string_view value) {
  const std::string clean = Clean(value);
  if (clean.empty()) return std::string(message);
  std::vector<std::string> forms = {clean};
  std::string encoded = UrlEncoded(clean);
  if (encoded != clean) forms.push_back(std::move(encoded));
  const std::string mark = Personal(clean, clean);
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  int depth = 0;  // inside a mark already: left as it is
  while (i < message.size()) {
    const char c = message[i];
    if (c == kOpen) ++depth;
    if (c == kClose && depth > 0) --depth;
    if (depth == 0) {
      bool matched = false;
      for (const std::string& f : forms) {
        if (message.substr(i, f.size()) == f) {
          out += mark;
          i += f.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    out.push_back(c);
    ++i;
  }
  return out;
}

}  // namespace roster
