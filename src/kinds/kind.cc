#include "kinds/kind.h"

#include <algorithm>

#include "core/hash.h"
#include "core/text.h"

namespace roster {
namespace {

// Contacts: the contact model of core/contact.h, field names of ContactFieldNames().
class ContactKind final : public ItemKind {
 public:
  std::string_view name() const override { return "contact"; }

  std::string CanonicalForm(const ItemBody& body) const override {
    return roster::CanonicalForm(std::get<Contact>(body));
  }

  std::vector<std::string> MatchKeys(const ItemBody& body) const override {
    std::vector<std::string> out;
    for (const TypedValue& e : std::get<Contact>(body).emails) {
      std::string lower = text::AsciiLower(text::Trim(e.value));
      if (!lower.empty()) out.push_back(std::move(lower));
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  std::string Title(const ItemBody& body) const override {
    return std::get<Contact>(body).DisplayName();
  }

  std::vector<FieldChange> Diff(const ItemBody& before, const ItemBody& after) const override {
    const Contact& a = std::get<Contact>(before);
    const Contact& b = std::get<Contact>(after);
    std::vector<FieldChange> changes;
    for (std::string_view field : ContactFieldNames()) {
      std::string x = Joined(GetContactField(a, field));
      std::string y = Joined(GetContactField(b, field));
      if (x != y) changes.push_back({std::string(field), std::move(x), std::move(y)});
    }
    if (a.photo != b.photo) {
      changes.push_back({std::string(kPhotoField), PhotoText(a), PhotoText(b)});
    }
    if (changes.empty() && CanonicalForm(before) != CanonicalForm(after)) {
      // A difference no simple field name covers (a second address's types,
      // a URL's type): say so rather than show nothing.
      changes.push_back({"other", "", ""});
    }
    return changes;
  }

  ItemBody Merge(const ItemBody& source, const ItemBody* remote, const FieldPolicy& policy,
                 const FieldMemory& before, FieldMemory* after) const override {
    const Contact* theirs = remote ? &std::get<Contact>(*remote) : nullptr;
    return MergeContact(std::get<Contact>(source), theirs, policy, before, after);
  }

 private:
  static std::string Joined(const std::vector<std::string>& values) {
    std::string out;
    for (const std::string& v : values) {
      if (!out.empty()) out += ", ";
      out += v;
    }
    return out;
  }
  static std::string PhotoText(const Contact& c) {
    if (!c.photo) return "";
    if (c.photo->data.empty()) return c.photo->uri;
    return c.photo->media_type + ", " + std::to_string(c.photo->data.size()) + " bytes";
  }
};

}  // namespace

std::string ItemKind::ContentHash(const ItemBody& body) const {
  return HashHex(CanonicalForm(body));
}

const ItemKind& KindOf(const ItemBody& body) {
  static const ContactKind contacts;
  return std::visit([](const auto&) -> const ItemKind& { return contacts; }, body);
}

std::vector<std::string> MatchHashes(const ItemBody& body) {
  std::vector<std::string> out;
  for (const std::string& key : KindOf(body).MatchKeys(body)) {
    out.push_back(HashHex("roster-match\n" + key).substr(0, 16));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool SameSubject(const ItemBody& a, const ItemBody& b) {
  std::vector<std::string> x = KindOf(a).MatchKeys(a);
  std::vector<std::string> y = KindOf(b).MatchKeys(b);
  std::vector<std::string> both;
  std::set_intersection(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(both));
  return !both.empty();
}

}  // namespace roster
