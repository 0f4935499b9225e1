#include "formats/vcard.h"

#include <algorithm>
#include <optional>

#include "core/hash.h"
#include "core/text.h"

namespace roster {
namespace {

using text::AsciiLower;
using text::AsciiUpper;
using text::EqualsNoCase;
using text::NormalizeMediaType;
using text::StartsWithNoCase;
using text::StripTelScheme;
using text::Trim;

std::string Norm(std::string_view s) { return text::NormalizeText(s); }

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned int cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

Error LineError(size_t line, std::string_view message) {
  return MakeError(ErrorKind::kInvalidData,
                   "vCard line " + std::to_string(line) + ": " + std::string(message));
}

// ---------------------------------------------------------------------------
// Reading: physical lines -> unfolded lines -> properties -> cards.

struct LogicalLine {
  size_t number = 0;  // 1-based physical line where the property starts
  std::string text;
};

Result<std::vector<LogicalLine>> Unfold(std::string_view text) {
  if (text.size() > kMaxVCardBytes) {
    return MakeError(ErrorKind::kInvalidData,
                     "vCard input larger than " + std::to_string(kMaxVCardBytes) + " bytes");
  }
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 byte order mark

  std::vector<LogicalLine> lines;
  auto finish = [&lines]() -> Status {
    if (!lines.empty() && !ValidUtf8(lines.back().text)) {
      return LineError(lines.back().number, "invalid UTF-8");
    }
    return {};
  };
  const std::string too_long =
      "property longer than " + std::to_string(kMaxVCardLineBytes) + " bytes";
  bool open = false;  // whether lines.back() may still take continuation lines
  size_t number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    ++number;
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view physical = text.substr(pos, end - pos);
    pos = end + 1;
    if (physical.ends_with('\r')) physical.remove_suffix(1);
    if (physical.empty()) continue;  // blank lines carry nothing, even mid-fold
    if (physical[0] == ' ' || physical[0] == '\t') {
      if (!open) return LineError(number, "continuation line without a property before it");
      LogicalLine& line = lines.back();
      if (line.text.size() + physical.size() - 1 > kMaxVCardLineBytes) {
        return LineError(line.number, too_long);
      }
      line.text.append(physical.substr(1));
      continue;
    }
    ROSTER_RETURN_IF_ERROR(finish());
    if (physical.size() > kMaxVCardLineBytes) return LineError(number, too_long);
    lines.push_back(LogicalLine{number, std::string(physical)});
    open = true;
  }
  ROSTER_RETURN_IF_ERROR(finish());
  return lines;
}

struct Param {
  std::string name;  // upper case
  std::vector<std::string> values;
};

struct Property {
  size_t line = 0;
  std::string group;
  std::string name;  // upper case
  std::vector<Param> params;
  std::string value;  // raw, still escaped

  // First value of the first parameter called `name`, or empty.
  std::string_view ParamValue(std::string_view param) const {
    for (const Param& p : params) {
      if (p.name == param && !p.values.empty()) return p.values.front();
    }
    return {};
  }
};

bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// RFC 6868: ^n is a line break, ^' a double quote, ^^ a caret, inside
// parameter values, which have no backslash escapes.
std::string CaretDecode(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '^' && i + 1 < v.size()) {
      const char next = v[i + 1];
      if (next == 'n' || next == 'N' || next == '\'' || next == '^') {
        out.push_back(next == '^' ? '^' : next == '\'' ? '"' : '\n');
        ++i;
        continue;
      }
    }
    out.push_back(v[i]);
  }
  return out;
}

Result<Property> ParseProperty(const LogicalLine& line) {
  const std::string_view s = line.text;
  size_t i = 0;
  auto read_name = [&]() {
    const size_t start = i;
    while (i < s.size() && IsNameChar(s[i])) ++i;
    return s.substr(start, i - start);
  };
  Property p;
  p.line = line.number;
  std::string_view name = read_name();
  if (i < s.size() && s[i] == '.' && !name.empty()) {
    p.group = std::string(name);
    ++i;
    name = read_name();
  }
  if (name.empty()) return LineError(line.number, "expected a property name");
  p.name = AsciiUpper(name);

  while (i < s.size() && s[i] == ';') {
    ++i;
    const std::string_view param_name = read_name();
    if (param_name.empty()) return LineError(line.number, "malformed parameter in " + p.name);
    Param param;
    param.name = AsciiUpper(param_name);
    if (i < s.size() && s[i] == '=') {
      ++i;
      while (true) {
        if (i < s.size() && s[i] == '"') {
          const size_t close = s.find('"', i + 1);
          if (close == std::string_view::npos) {
            return LineError(line.number, "unterminated quoted parameter value in " + p.name);
          }
          param.values.push_back(CaretDecode(s.substr(i + 1, close - i - 1)));
          i = close + 1;
        } else {
          size_t end = s.find_first_of(",;:", i);
          if (end == std::string_view::npos) end = s.size();
          param.values.push_back(CaretDecode(s.substr(i, end - i)));
          i = end;
        }
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        break;
      }
      if (i < s.size() && s[i] != ';' && s[i] != ':') {
        return LineError(line.number, "malformed parameter in " + p.name);
      }
    } else {
      // vCard 2.1 writes parameter values alone: "TEL;WORK;VOICE:",
      // "PHOTO;JPEG;BASE64:". Only encodings are not types.
      const std::string upper = AsciiUpper(param_name);
      param.name = (upper == "BASE64" || upper == "B" || upper == "QUOTED-PRINTABLE" ||
                    upper == "8BIT" || upper == "7BIT")
                       ? "ENCODING"
                       : "TYPE";
      param.values.push_back(upper);
    }
    p.params.push_back(std::move(param));
  }
  if (i >= s.size() || s[i] != ':') {
    return LineError(line.number, "expected ':' after the name and parameters of " + p.name);
  }
  p.value = std::string(s.substr(i + 1));
  return p;
}

// Text unescaping: \n and \N are line breaks; \\ \, \; and \: (which some
// writers put in URLs) are the character itself. Anything else is kept as
// written, since it was never an escape.
std::string UnescapeText(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) {
      const char next = v[i + 1];
      if (next == 'n' || next == 'N') {
        out.push_back('\n');
        ++i;
        continue;
      }
      if (next == '\\' || next == ',' || next == ';' || next == ':') {
        out.push_back(next);
        ++i;
        continue;
      }
    }
    out.push_back(v[i]);
  }
  return out;
}

// Splits on `sep` where it is not escaped by a backslash; parts stay escaped.
std::vector<std::string_view> SplitUnescaped(std::string_view v, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\') {
      ++i;
    } else if (v[i] == sep) {
      parts.push_back(v.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(v.substr(start));
  return parts;
}

std::vector<std::string> Components(std::string_view v, size_t count) {
  std::vector<std::string> out(count);
  const std::vector<std::string_view> parts = SplitUnescaped(v, ';');
  for (size_t k = 0; k < count && k < parts.size(); ++k) out[k] = UnescapeText(parts[k]);
  return out;
}

// TYPE values, lower case, from "TYPE=work,voice", "TYPE=work;TYPE=voice",
// "TYPE=\"work,voice\"" and 2.1's bare "WORK". Preference arrives as TYPE=pref
// (3.0) or PREF=1 (4.0).
std::vector<std::string> Types(const Property& p, bool drop_internet, bool* preferred) {
  text::TypeList types(drop_internet, preferred);
  for (const Param& param : p.params) {
    if (param.name == "PREF") {
      const std::string_view v = param.values.empty() ? "" : Trim(param.values.front());
      if (v.empty() || v == "1") *preferred = true;
      continue;
    }
    if (param.name != "TYPE") continue;
    // Parameter values know no backslash escapes, so every comma splits.
    for (const std::string& value : param.values) types.Add(value);
  }
  return std::move(types).Take();
}

// A photo as 3.0 embeds it (ENCODING=b;TYPE=JPEG), as 4.0 does (a data: URI),
// or as a link. nullopt when the embedded bytes are not valid base64.
std::optional<Photo> ParsePhoto(const Property& p, bool v4) {
  Photo photo;
  const std::string encoding = AsciiUpper(p.ParamValue("ENCODING"));
  if (encoding == "B" || encoding == "BASE64") {
    if (!Base64Decode(p.value, &photo.data)) return std::nullopt;
    photo.media_type = NormalizeMediaType(p.ParamValue("TYPE"));
    return photo;
  }
  std::string uri = std::string(Trim(UnescapeText(p.value)));
  if (StartsWithNoCase(uri, "data:")) {
    const size_t comma = uri.find(',');
    if (comma != std::string::npos) {
      const std::string_view header = std::string_view(uri).substr(5, comma - 5);
      bool base64 = false;
      size_t start = 0;
      std::string_view media;
      for (size_t k = 0; start <= header.size(); ++k) {
        size_t semi = header.find(';', start);
        if (semi == std::string_view::npos) semi = header.size();
        const std::string_view piece = header.substr(start, semi - start);
        if (k == 0) media = piece;
        if (k > 0 && EqualsNoCase(Trim(piece), "base64")) base64 = true;
        start = semi + 1;
      }
      // A data: URI without base64 is percent-encoded text; no photo format
      // uses it, so it stays a URI.
      if (base64) {
        if (!Base64Decode(std::string_view(uri).substr(comma + 1), &photo.data)) {
          return std::nullopt;
        }
        photo.media_type = NormalizeMediaType(media);
        return photo;
      }
    }
  }
  photo.uri = std::move(uri);
  std::string_view media = p.ParamValue("MEDIATYPE");
  if (media.empty() && !v4) media = p.ParamValue("TYPE");
  photo.media_type = NormalizeMediaType(media);
  return photo;
}

// Fills a card from the properties between BEGIN and END, one property at a
// time. Properties the model has no room for (a second FN, X-*, PRODID, REV,
// ...) go to `other`.
class CardBuilder {
 public:
  explicit CardBuilder(std::string version) : v4_(version == "4.0") {
    card_.version = std::move(version);
  }

  void Add(const Property& p) {
    Contact& c = card_.contact;
    const std::string& n = p.name;
    if (n == "VERSION") {
      if (have_version_) KeepOther(p);
      have_version_ = true;
    } else if (n == "FN") {
      SetOnce(p, c.formatted_name);
    } else if (n == "N") {
      AddName(p);
    } else if (n == "NICKNAME") {
      AddNickname(p);
    } else if (n == "ORG") {
      AddOrganization(p);
    } else if (n == "TITLE") {
      SetOnce(p, c.title);
    } else if (n == "ROLE") {
      SetOnce(p, c.role);
    } else if (n == "X-MS-MANAGER") {
      // Outlook's property; neither RFC has one for a manager.
      SetOnce(p, c.manager);
    } else if (n == "NOTE") {
      SetOnce(p, c.note);
    } else if (n == "BDAY") {
      SetOnce(p, c.birthday);
    } else if (n == "UID") {
      SetOnce(p, card_.uid);
    } else if (n == "EMAIL") {
      AddTyped(p, c.emails, /*is_email=*/true, /*is_phone=*/false);
    } else if (n == "TEL") {
      AddTyped(p, c.phones, /*is_email=*/false, /*is_phone=*/true);
    } else if (n == "URL") {
      AddTyped(p, c.urls, /*is_email=*/false, /*is_phone=*/false);
    } else if (n == "ADR") {
      AddAddress(p);
    } else if (n == "CATEGORIES") {
      AddCategories(p);
    } else if (n == "PHOTO") {
      AddPhoto(p);
    } else {
      KeepOther(p);
    }
  }

  ParsedVCard Take() && { return std::move(card_); }

 private:
  void KeepOther(const Property& p) {
    VCardProperty other;
    other.group = p.group;
    other.name = p.name;
    for (const Param& param : p.params) other.params.emplace_back(param.name, param.values);
    other.value = UnescapeText(p.value);
    card_.other.push_back(std::move(other));
  }

  // Single-valued fields take the first non-empty value.
  void SetOnce(const Property& p, std::string& field) {
    if (!Trim(field).empty()) return KeepOther(p);
    field = UnescapeText(p.value);
  }

  void AddTyped(const Property& p, std::vector<TypedValue>& list, bool is_email, bool is_phone) {
    TypedValue tv;
    tv.value = UnescapeText(p.value);
    if (is_phone) tv.value = StripTelScheme(tv.value);
    if (Trim(tv.value).empty()) return;
    tv.types = Types(p, is_email, &tv.preferred);
    list.push_back(std::move(tv));
  }

  void AddName(const Property& p) {
    if (have_n_) return KeepOther(p);
    Contact& c = card_.contact;
    std::vector<std::string> parts = Components(p.value, 5);
    // Like the single-valued fields, an empty N leaves room for a later one.
    have_n_ = std::any_of(parts.begin(), parts.end(),
                          [](const std::string& s) { return !Trim(s).empty(); });
    c.family_name = std::move(parts[0]);
    c.given_name = std::move(parts[1]);
    c.additional_names = std::move(parts[2]);
    c.honorific_prefix = std::move(parts[3]);
    c.honorific_suffix = std::move(parts[4]);
  }

  // NICKNAME is a list; several properties make one longer list.
  void AddNickname(const Property& p) {
    std::string& nickname = card_.contact.nickname;
    const std::string value = UnescapeText(p.value);
    if (Trim(value).empty()) return;
    if (!Trim(nickname).empty()) nickname += ',';
    nickname += value;
  }

  void AddOrganization(const Property& p) {
    if (have_org_) return KeepOther(p);
    Contact& c = card_.contact;
    const std::vector<std::string_view> units = SplitUnescaped(p.value, ';');
    c.organization = UnescapeText(units[0]);
    // The model has one department: deeper units join it.
    c.department.clear();
    for (size_t k = 1; k < units.size(); ++k) {
      const std::string unit = UnescapeText(units[k]);
      if (Trim(unit).empty()) continue;
      if (!c.department.empty()) c.department += ", ";
      c.department += Trim(unit);
    }
    have_org_ = !Trim(c.organization).empty() || !c.department.empty();
  }

  void AddAddress(const Property& p) {
    std::vector<std::string> parts = Components(p.value, 7);
    PostalAddress a;
    bool preferred = false;  // the model keeps no preferred address
    a.types = Types(p, false, &preferred);
    a.po_box = std::move(parts[0]);
    a.extended = std::move(parts[1]);
    a.street = std::move(parts[2]);
    a.locality = std::move(parts[3]);
    a.region = std::move(parts[4]);
    a.postal_code = std::move(parts[5]);
    a.country = std::move(parts[6]);
    card_.contact.addresses.push_back(std::move(a));
  }

  void AddCategories(const Property& p) {
    for (std::string_view raw : SplitUnescaped(p.value, ',')) {
      std::string category = UnescapeText(raw);
      if (!Trim(category).empty()) card_.contact.categories.push_back(std::move(category));
    }
  }

  void AddPhoto(const Property& p) {
    std::optional<Photo>& current = card_.contact.photo;
    std::optional<Photo> photo;
    if (!current.has_value() || (current->data.empty() && Trim(current->uri).empty())) {
      photo = ParsePhoto(p, v4_);
    }
    if (photo.has_value()) {
      current = std::move(photo);
    } else {
      KeepOther(p);  // a second photo, or one we cannot decode: keep it as read
    }
  }

  ParsedVCard card_;
  const bool v4_;
  bool have_version_ = false, have_n_ = false, have_org_ = false;
};

ParsedVCard BuildCard(const std::vector<Property>& props) {
  std::string version;
  for (const Property& p : props) {
    if (p.name == "VERSION") {
      version = std::string(Trim(p.value));
      break;
    }
  }
  CardBuilder builder(std::move(version));
  for (const Property& p : props) builder.Add(p);
  return std::move(builder).Take();
}

struct CardAt {
  size_t line;  // of its BEGIN
  ParsedVCard card;
};

Result<std::vector<CardAt>> ParseAll(std::string_view text) {
  ROSTER_ASSIGN_OR_RETURN(std::vector<LogicalLine> lines, Unfold(text));
  std::vector<CardAt> cards;
  std::vector<Property> props;
  bool in_card = false;
  size_t begin_line = 0;
  for (const LogicalLine& line : lines) {
    Result<Property> parsed = ParseProperty(line);
    // Between cards only BEGIN may appear; say so rather than how the
    // stray line fails to be a property.
    if (!in_card &&
        (!parsed.ok() || parsed->name != "BEGIN" || !EqualsNoCase(Trim(parsed->value), "VCARD"))) {
      return LineError(line.number, "expected BEGIN:VCARD");
    }
    if (!parsed.ok()) return parsed.take_error();
    Property p = std::move(parsed).value();
    const bool is_vcard = EqualsNoCase(Trim(p.value), "VCARD");
    if (!in_card) {
      in_card = true;
      begin_line = p.line;
      continue;
    }
    if (p.name == "BEGIN") return LineError(p.line, "BEGIN inside a vCard that has not ended");
    if (p.name == "END") {
      if (!is_vcard) return LineError(p.line, "expected END:VCARD");
      cards.push_back(CardAt{begin_line, BuildCard(props)});
      props.clear();
      in_card = false;
      continue;
    }
    props.push_back(std::move(p));
  }
  if (in_card) return LineError(begin_line, "vCard has no END:VCARD");
  return cards;
}

// ---------------------------------------------------------------------------
// Writing.

// Text values: backslash, line break, comma and semicolon escaped (RFC 6350
// 3.4, RFC 2426 5). `commas` false leaves commas as list separators.
std::string EscapeText(std::string_view raw, bool commas = true) {
  const std::string v = Norm(raw);
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case ';':
        out += "\\;";
        break;
      case ',':
        out += commas ? "\\," : ",";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// URI values have no text escapes, but our reader unescapes every value, so
// the two characters that would change meaning are still escaped.
std::string EscapeUri(std::string_view raw) {
  const std::string v = Norm(raw);
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// RFC 6868 caret encoding; the result never holds '"' or a line break.
std::string CaretEncode(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '^') {
      out += "^^";
    } else if (c == '\n') {
      out += "^n";
    } else if (c == '"') {
      out += "^'";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string ParamValue(std::string_view v) {
  std::string encoded = CaretEncode(v);
  if (encoded.find_first_of(",;: \t") != std::string::npos) return '"' + encoded + '"';
  return encoded;
}

// The contact's types as the writer puts them: the same normalisation as the
// canonical form, first spelling kept, order kept.
std::vector<std::string> WriterTypes(const std::vector<std::string>& raw, bool is_email,
                                     bool* preferred) {
  return text::NormalizeTypes(raw, is_email, preferred);
}

std::string TypeParams(const std::vector<std::string>& types, bool preferred, VCardVersion v) {
  std::string out;
  if (v == VCardVersion::k30) {
    std::vector<std::string> all = types;
    if (preferred) all.push_back("pref");
    for (size_t k = 0; k < all.size(); ++k) {
      out += k == 0 ? ";TYPE=" : ",";
      out += ParamValue(all[k]);
    }
    return out;
  }
  // A list unquoted (TYPE=work,voice): khard and python-vobject read a
  // quoted list as one type, while every reader takes the bare list as two.
  for (size_t k = 0; k < types.size(); ++k) {
    out += k == 0 ? ";TYPE=" : ",";
    out += ParamValue(types[k]);
  }
  if (preferred) out += ";PREF=1";
  return out;
}

// Appends one content line folded at 75 octets (RFC 6350 3.2), never inside
// a UTF-8 sequence, each continuation starting with a space.
void AppendFolded(std::string& out, std::string_view line) {
  constexpr size_t kMaxOctets = 75;
  bool first = true;
  while (true) {
    const size_t room = first ? kMaxOctets : kMaxOctets - 1;
    if (!first) out.push_back(' ');
    if (line.size() <= room) {
      out.append(line);
      out += "\r\n";
      return;
    }
    size_t cut = room;
    // Back up to the start of a UTF-8 sequence; at most three steps for valid
    // text, and never to nothing for invalid text.
    while (cut > room - 3 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    if ((static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) cut = room;
    out.append(line.substr(0, cut));
    out += "\r\n";
    line.remove_prefix(cut);
    first = false;
  }
}

bool LooksLikeDate(std::string_view v) {
  return !v.empty() && v.find_first_not_of("0123456789-T:Z+") == std::string_view::npos;
}

bool IsWritableExtraName(std::string_view name) {
  if (name.empty()) return false;
  if (!std::all_of(name.begin(), name.end(), [](char c) { return IsNameChar(c) && c != '_'; })) {
    return false;
  }
  // These are written from the contact (or frame the card); an extra copy
  // would either break the card or be read back into the contact.
  static constexpr std::string_view kOwn[] = {
      "BEGIN", "END",   "VERSION",    "FN",  "N",           "NICKNAME", "ORG",
      "TITLE", "ROLE",  "EMAIL",      "TEL", "ADR",         "URL",      "BDAY",
      "NOTE",  "PHOTO", "CATEGORIES", "UID", "X-MS-MANAGER"};
  const std::string upper = AsciiUpper(name);
  return std::find(std::begin(kOwn), std::end(kOwn), upper) == std::end(kOwn);
}

// N, which vCard 3.0 requires and 4.0 leaves out when there is nothing to say.
void WriteName(std::string& out, const Contact& c, bool v4) {
  const std::string n_parts[] = {c.family_name, c.given_name, c.additional_names,
                                 c.honorific_prefix, c.honorific_suffix};
  const bool has_n = std::any_of(std::begin(n_parts), std::end(n_parts),
                                 [](const std::string& s) { return !Trim(s).empty(); });
  if (!has_n && v4) return;
  std::string n = "N:";
  for (size_t k = 0; k < 5; ++k) {
    if (k > 0) n += ';';
    n += EscapeText(n_parts[k]);
  }
  AppendFolded(out, n);
}

// NICKNAME, ORG, TITLE, ROLE and X-MS-MANAGER, each when it has text.
void WriteWorkFields(std::string& out, const Contact& c) {
  if (!Trim(c.nickname).empty()) {
    AppendFolded(out, "NICKNAME:" + EscapeText(c.nickname, /*commas=*/false));
  }
  if (!Trim(c.organization).empty() || !Trim(c.department).empty()) {
    std::string org = "ORG:" + EscapeText(c.organization);
    if (!Trim(c.department).empty()) org += ';' + EscapeText(c.department);
    AppendFolded(out, org);
  }
  if (!Trim(c.title).empty()) AppendFolded(out, "TITLE:" + EscapeText(c.title));
  if (!Trim(c.role).empty()) AppendFolded(out, "ROLE:" + EscapeText(c.role));
  if (!Trim(c.manager).empty()) AppendFolded(out, "X-MS-MANAGER:" + EscapeText(c.manager));
}

// One EMAIL, TEL or URL line per value that is not empty.
void WriteTyped(std::string& out, std::string_view name, const std::vector<TypedValue>& values,
                VCardVersion version, bool is_email, bool is_phone, bool is_uri) {
  for (const TypedValue& tv : values) {
    std::string value = Norm(tv.value);
    if (is_phone) value = StripTelScheme(value);
    if (value.empty()) continue;
    bool preferred = tv.preferred;
    const std::vector<std::string> types = WriterTypes(tv.types, is_email, &preferred);
    AppendFolded(out, std::string(name) + TypeParams(types, preferred, version) + ":" +
                          (is_uri ? EscapeUri(value) : EscapeText(value)));
  }
}

void WriteAddresses(std::string& out, const std::vector<PostalAddress>& addresses,
                    VCardVersion version) {
  for (const PostalAddress& a : addresses) {
    const std::string parts[] = {a.po_box, a.extended,    a.street, a.locality,
                                 a.region, a.postal_code, a.country};
    if (std::all_of(std::begin(parts), std::end(parts),
                    [](const std::string& s) { return Trim(s).empty(); })) {
      continue;
    }
    std::string adr =
        "ADR" + TypeParams(WriterTypes(a.types, false, nullptr), false, version) + ":";
    for (size_t k = 0; k < 7; ++k) {
      if (k > 0) adr += ';';
      adr += EscapeText(parts[k]);
    }
    AppendFolded(out, adr);
  }
}

void WriteCategories(std::string& out, const std::vector<std::string>& all) {
  std::string categories;
  for (const std::string& cat : all) {
    if (Trim(cat).empty()) continue;
    if (!categories.empty()) categories += ',';
    categories += EscapeText(cat);
  }
  if (!categories.empty()) AppendFolded(out, "CATEGORIES:" + categories);
}

// Embedded bytes as each version spells them (a data: URI in 4.0,
// ENCODING=b in 3.0), else the link; nothing when there is neither.
void WritePhoto(std::string& out, const Photo& photo, bool v4) {
  const std::string media = NormalizeMediaType(photo.media_type);
  if (!photo.data.empty()) {
    if (v4) {
      AppendFolded(out, "PHOTO:data:" + media + ";base64," + Base64Encode(photo.data));
      return;
    }
    // 3.0 names the format without "image/" when it can.
    std::string type = media;
    if (type.starts_with("image/") && type.size() > 6 && type.find('/', 6) == std::string::npos) {
      type = AsciiUpper(type.substr(6));
    }
    AppendFolded(out, "PHOTO;ENCODING=b" + (type.empty() ? "" : ";TYPE=" + ParamValue(type)) + ":" +
                          Base64Encode(photo.data));
  } else if (const std::string uri = Norm(photo.uri); !uri.empty()) {
    std::string params = v4 ? "" : ";VALUE=uri";
    if (!media.empty()) params += (v4 ? ";MEDIATYPE=" : ";TYPE=") + ParamValue(media);
    AppendFolded(out, "PHOTO" + params + ":" + EscapeUri(uri));
  }
}

}  // namespace

std::string ParsedVCard::Get(std::string_view name) const {
  for (const VCardProperty& p : other) {
    if (p.name == name) return p.value;
  }
  return {};
}

Result<std::vector<ParsedVCard>> ParseVCards(std::string_view text) {
  ROSTER_ASSIGN_OR_RETURN(std::vector<CardAt> cards, ParseAll(text));
  std::vector<ParsedVCard> out;
  out.reserve(cards.size());
  for (CardAt& c : cards) out.push_back(std::move(c.card));
  return out;
}

Result<ParsedVCard> ParseVCard(std::string_view text) {
  ROSTER_ASSIGN_OR_RETURN(std::vector<CardAt> cards, ParseAll(text));
  if (cards.empty()) return LineError(1, "no BEGIN:VCARD found");
  if (cards.size() > 1) return LineError(cards[1].line, "a second vCard where one was expected");
  return std::move(cards[0].card);
}

std::string WriteVCard(const Contact& c, VCardVersion version, std::string_view uid,
                       const std::vector<std::pair<std::string, std::string>>& extra) {
  const bool v4 = version == VCardVersion::k40;
  std::string out;
  AppendFolded(out, "BEGIN:VCARD");
  AppendFolded(out, v4 ? "VERSION:4.0" : "VERSION:3.0");
  AppendFolded(out, "FN:" + EscapeText(c.DisplayName()));
  WriteName(out, c, v4);
  WriteWorkFields(out, c);
  WriteTyped(out, "EMAIL", c.emails, version, /*is_email=*/true, /*is_phone=*/false,
             /*is_uri=*/false);
  WriteTyped(out, "TEL", c.phones, version, /*is_email=*/false, /*is_phone=*/true,
             /*is_uri=*/false);
  WriteAddresses(out, c.addresses, version);
  WriteTyped(out, "URL", c.urls, version, /*is_email=*/false, /*is_phone=*/false,
             /*is_uri=*/true);
  if (const std::string bday = Norm(c.birthday); !bday.empty()) {
    // vCard 4.0 wants free-form birthdays ("circa 1800") marked as text.
    AppendFolded(out, std::string("BDAY") + (v4 && !LooksLikeDate(bday) ? ";VALUE=text" : "") +
                          ":" + EscapeText(bday));
  }
  if (!Trim(c.note).empty()) AppendFolded(out, "NOTE:" + EscapeText(c.note));
  WriteCategories(out, c.categories);
  if (c.photo.has_value()) WritePhoto(out, *c.photo, v4);
  if (!Trim(uid).empty()) AppendFolded(out, "UID:" + EscapeUri(uid));
  for (const auto& [name, value] : extra) {
    if (!IsWritableExtraName(name)) continue;
    AppendFolded(out, AsciiUpper(name) + ":" + EscapeText(value));
  }
  AppendFolded(out, "END:VCARD");
  return out;
}

}  // namespace roster
