// Audiences: who receives a rule's collection (a fixed list, or members of a
// directory group or query, minus the ineligible), which person of the
// selection is each user's own (never sent to them), and which users known
// from earlier runs no longer receive it.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/connector.h"
#include "state/state.h"
#include "sync/notes.h"
#include "sync/rule.h"
#include "sync/selection.h"

namespace roster {

// A user who may receive the rule, before their own person is known.
struct Candidate {
  std::string name;
  // The person's key as the directory told it: the key itself when the rule
  // reads only that directory, else "directory NUL key" (resolved through
  // the selection's origin map); empty for listed users.
  std::string self;
};

// A target user of one rule, as resolved for this run.
struct TargetUser {
  std::string name;
  std::string self_key;  // their own person in the selection; empty: none
};

// The rule's candidates: the directory's group members or query matches
// (each account once, without case; unsafe or missing account names and
// users_exclude matches left out, with a warning or notice), else the listed
// users. Fails as a whole when the directory cannot answer.
Result<std::vector<Candidate>> FindCandidates(const RuleSpec& rule,
                                              const std::map<std::string, Directory*>& directories,
                                              const std::vector<std::string>& target_users,
                                              RunNotes& notes);

// True when the candidate's own person is found from the people (their card's
// e-mail or account name) rather than told by the directory: then the answer
// can be stored and reused while the sources do not change.
bool SelfResolvedFromPeople(const RuleSpec& rule, const Candidate& candidate);

// The candidate's own person: told by the directory, or the person with
// their e-mail address or account name. Empty with include_self.
std::string ResolveSelfKey(const RuleSpec& rule, const Candidate& candidate,
                           const RuleSelection& selection);

// One safe path segment: not empty, not . or .., no slash, no control character.
bool IsSafeAccountName(std::string_view name);

// The collections `known` for the rule whose user is not among `users`
// (compared without case: "JDoe" and "jdoe" name the same book) or whose
// target changed.
std::vector<std::pair<CollectionKey, CollectionState>> FindLeaving(
    const RuleSpec& rule, const std::vector<TargetUser>& users,
    std::vector<std::pair<CollectionKey, CollectionState>> known);

}  // namespace roster
