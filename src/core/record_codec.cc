#include "core/record_codec.h"

#include <cstdint>

namespace roster {
namespace {

// Version 1. A string is its length as a varint, then its bytes; a list is
// its count, then its elements; a flag is one byte, 0 or 1.
constexpr std::string_view kMagic = "rr1";

class Writer {
 public:
  void Size(uint64_t n) {
    while (n >= 0x80) {
      out_.push_back(static_cast<char>((n & 0x7f) | 0x80));
      n >>= 7;
    }
    out_.push_back(static_cast<char>(n));
  }
  void Str(std::string_view s) {
    Size(s.size());
    out_.append(s);
  }
  void Flag(bool b) { out_.push_back(b ? '\1' : '\0'); }
  void Strs(const std::vector<std::string>& v) {
    Size(v.size());
    for (const std::string& s : v) Str(s);
  }
  void Typed(const std::vector<TypedValue>& v) {
    Size(v.size());
    for (const TypedValue& t : v) {
      Str(t.value);
      Strs(t.types);
      Flag(t.preferred);
    }
  }
  void Raw(std::string_view s) { out_.append(s); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return ok_ && in_.empty(); }

  uint64_t Size() {
    uint64_t n = 0;
    for (int shift = 0; ok_; shift += 7) {
      if (in_.empty() || shift > 63) return Fail();
      const auto byte = static_cast<unsigned char>(in_.front());
      in_.remove_prefix(1);
      // One encoding per number: no bits past 64, no overlong zero tail.
      if (shift == 63 && byte > 1) return Fail();
      n |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return (byte == 0 && shift > 0) ? Fail() : n;
    }
    return 0;
  }
  // A count of elements, each at least one byte long: a corrupted count
  // fails at once instead of growing a list past what the bytes can hold.
  uint64_t Count() {
    uint64_t n = Size();
    if (n > in_.size()) return Fail();
    return n;
  }
  void Str(std::string& s) {
    uint64_t n = Size();
    if (!ok_ || n > in_.size()) {
      Fail();
      return;
    }
    s.assign(in_.substr(0, n));
    in_.remove_prefix(n);
  }
  void Flag(bool& b) {
    if (in_.empty() || (in_.front() != '\0' && in_.front() != '\1')) {
      Fail();
      return;
    }
    b = in_.front() == '\1';
    in_.remove_prefix(1);
  }
  void Strs(std::vector<std::string>& v) {
    uint64_t n = Count();
    v.clear();
    for (uint64_t i = 0; ok_ && i < n; ++i) Str(v.emplace_back());
  }
  void Typed(std::vector<TypedValue>& v) {
    uint64_t n = Count();
    v.clear();
    for (uint64_t i = 0; ok_ && i < n; ++i) {
      TypedValue& t = v.emplace_back();
      Str(t.value);
      Strs(t.types);
      Flag(t.preferred);
    }
  }
  bool Magic(std::string_view magic) {
    if (!in_.starts_with(magic)) return Fail() != 0;
    in_.remove_prefix(magic.size());
    return true;
  }

 private:
  uint64_t Fail() {
    ok_ = false;
    return 0;
  }
  std::string_view in_;
  bool ok_ = true;
};

// One list of every text field, in a fixed order shared by both directions.
template <typename C, typename F>
void Texts(C& c, F&& f) {
  f(c.formatted_name);
  f(c.family_name);
  f(c.given_name);
  f(c.additional_names);
  f(c.honorific_prefix);
  f(c.honorific_suffix);
  f(c.nickname);
  f(c.organization);
  f(c.department);
  f(c.title);
  f(c.role);
  f(c.manager);
  f(c.note);
  f(c.birthday);
}

template <typename A, typename F>
void AddressParts(A& a, F&& f) {
  f(a.po_box);
  f(a.extended);
  f(a.street);
  f(a.locality);
  f(a.region);
  f(a.postal_code);
  f(a.country);
}

}  // namespace

std::string EncodeRecord(const SourceRecord& record) {
  Writer w;
  w.Raw(kMagic);
  w.Str(record.key);
  const Contact& c = record.contact;
  Texts(c, [&](const std::string& s) { w.Str(s); });
  w.Typed(c.emails);
  w.Typed(c.phones);
  w.Typed(c.urls);
  w.Size(c.addresses.size());
  for (const PostalAddress& a : c.addresses) {
    w.Strs(a.types);
    AddressParts(a, [&](const std::string& s) { w.Str(s); });
  }
  w.Strs(c.categories);
  w.Flag(c.photo.has_value());
  if (c.photo) {
    w.Str(c.photo->media_type);
    w.Str(c.photo->data);
    w.Str(c.photo->uri);
  }
  w.Size(record.attributes.size());
  for (const auto& [name, values] : record.attributes) {
    w.Str(name);
    w.Strs(values);
  }
  return w.Take();
}

std::optional<SourceRecord> DecodeRecord(std::string_view bytes) {
  Reader r(bytes);
  if (!r.Magic(kMagic)) return std::nullopt;
  SourceRecord record;
  r.Str(record.key);
  Contact& c = record.contact;
  Texts(c, [&](std::string& s) { r.Str(s); });
  r.Typed(c.emails);
  r.Typed(c.phones);
  r.Typed(c.urls);
  uint64_t addresses = r.Count();
  for (uint64_t i = 0; r.ok() && i < addresses; ++i) {
    PostalAddress& a = c.addresses.emplace_back();
    r.Strs(a.types);
    AddressParts(a, [&](std::string& s) { r.Str(s); });
  }
  r.Strs(c.categories);
  bool has_photo = false;
  r.Flag(has_photo);
  if (r.ok() && has_photo) {
    Photo& p = c.photo.emplace();
    r.Str(p.media_type);
    r.Str(p.data);
    r.Str(p.uri);
  }
  uint64_t attributes = r.Count();
  for (uint64_t i = 0; r.ok() && i < attributes; ++i) {
    std::string name;
    r.Str(name);
    std::vector<std::string> values;
    r.Strs(values);
    // A map wrote the names: unique and in order, so that bytes decode
    // only when they are the one encoding of their record.
    if (!r.ok()) break;
    if (!record.attributes.empty() && !(record.attributes.rbegin()->first < name)) {
      return std::nullopt;
    }
    record.attributes.emplace_hint(record.attributes.end(), std::move(name), std::move(values));
  }
  if (!r.done()) return std::nullopt;
  return record;
}

}  // namespace roster
