#include "sync/audience.h"

#include <set>

#include "core/personal.h"
#include "core/text.h"

namespace roster {

bool IsSafeAccountName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (unsigned char c : name) {
    if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

namespace {

// A directory user as a candidate, or nullopt (with a warning) when their
// account name cannot name a book.
std::optional<Candidate> Eligible(const RuleSpec& rule, const UserSelection& sel,
                                  const DirectoryUser& u, RunNotes& notes) {
  if (u.values.empty() || u.values.front().empty()) {
    notes.Warn("rule " + rule.name + ": " + Personal(u.key.empty() ? u.dn : u.key, u.dn) +
               " has no " + sel.attribute + " and receives nothing");
    return std::nullopt;
  }
  if (!IsSafeAccountName(u.values.front())) {
    // It becomes a path segment of the user's home on the target.
    notes.Warn("rule " + rule.name + ": " + Personal(u.key.empty() ? u.dn : u.key, u.dn) + " has " +
               sel.attribute + " \"" + Personal(u.values.front(), u.values.front()) +
               "\", which cannot name an account (empty, . or .., a slash "
               "or a control character); it receives nothing");
    return std::nullopt;
  }
  return Candidate{u.values.front(), u.key};
}

bool Excluded(const UserSelection& sel, const DirectoryUser& u) {
  return !sel.exclude.text().empty() && sel.exclude.Matches([&](std::string_view f) {
    auto it = u.attributes.find(std::string(f));
    return it == u.attributes.end() ? std::vector<std::string>() : it->second;
  });
}

}  // namespace

Result<std::vector<Candidate>> FindCandidates(const RuleSpec& rule,
                                              const std::map<std::string, Directory*>& directories,
                                              const std::vector<std::string>& target_users,
                                              RunNotes& notes) {
  std::vector<Candidate> candidates;
  if (!rule.users || rule.users->directory.empty()) {
    for (const std::string& name : rule.users ? rule.users->fixed : target_users) {
      candidates.push_back({name, ""});
    }
    return candidates;
  }
  const UserSelection& sel = *rule.users;
  Directory* dir = directories.at(sel.directory);
  auto found = sel.group.empty() ? dir->SearchUsers(sel.query, sel.attribute)
                                 : dir->GroupMembers(sel.group, sel.attribute);
  if (!found.ok()) {
    return MakeError(found.error().kind, "rule " + rule.name +
                                             ": target users: " + found.error().message +
                                             "; no address book was changed");
  }
  std::set<std::string> seen;
  size_t ineligible = 0;
  for (const DirectoryUser& u : *found) {
    std::optional<Candidate> c = Eligible(rule, sel, u, notes);
    if (!c) continue;
    if (Excluded(sel, u)) {
      ++ineligible;  // a disabled account: as if they had left the rule
      continue;
    }
    if (!seen.insert(text::AsciiLower(c->name)).second) continue;
    candidates.push_back(std::move(*c));
  }
  if (ineligible > 0) {
    notes.Notice("rule " + rule.name + ": " + std::to_string(ineligible) +
                 " target users left out by users_exclude (" + sel.exclude.text() + ")");
  }
  // A person's key is the directory's own when the rule reads only it.
  if (!(rule.sources.size() == 1 && rule.sources.front() == sel.directory)) {
    for (Candidate& c : candidates) c.self = sel.directory + std::string(1, '\0') + c.self;
  }
  return candidates;
}

bool SelfResolvedFromPeople(const RuleSpec& rule, const Candidate& c) {
  return !rule.include_self && (c.self.empty() || c.self.find('\0') != std::string::npos);
}

std::string ResolveSelfKey(const RuleSpec& rule, const Candidate& c, const RuleSelection& in) {
  if (rule.include_self) return "";
  std::string self;
  if (c.self.find('\0') != std::string::npos) {
    auto it = in.origin.find(c.self);
    if (it != in.origin.end()) self = it->second;
  } else {
    self = c.self;
  }
  if (self.empty() && c.name.find('@') != std::string::npos) {
    // A user named by e-mail address: their own card has that address.
    auto it = in.by_email.find(LowerEmail(c.name));
    if (it != in.by_email.end()) self = it->second;
  } else if (self.empty()) {
    // A user named by account: their entry has that uid.
    auto it = in.by_account.find(text::AsciiLower(c.name));
    if (it != in.by_account.end()) self = it->second;
  }
  return self;
}

std::vector<std::pair<CollectionKey, CollectionState>> FindLeaving(
    const RuleSpec& rule, const std::vector<TargetUser>& users,
    std::vector<std::pair<CollectionKey, CollectionState>> known) {
  std::set<std::string> current;
  for (const TargetUser& u : users) current.insert(text::AsciiLower(u.name));
  std::vector<std::pair<CollectionKey, CollectionState>> leaving;
  for (auto& entry : known) {
    if (entry.first.target != rule.target || !current.count(text::AsciiLower(entry.first.user))) {
      leaving.push_back(std::move(entry));
    }
  }
  return leaving;
}

}  // namespace roster
