// A rule as the sync algorithm runs it: which sources feed which target, who
// receives the collection, and the policy (filter, field rules, guards,
// adoption, offboarding). Typed and validated by the config module.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "filter/filter.h"
#include "mapping/merge.h"
#include "sync/sync.h"

namespace roster {

// Who receives a rule's collection: a fixed list, or people of a directory.
struct UserSelection {
  std::vector<std::string> fixed;  // used when `directory` is empty
  std::string directory;           // a source that can name users (a Directory)
  std::string group;               // every member of this group, nested groups included
  std::string query;               // or everyone matching this directory query
  std::string attribute;           // the directory attribute that names the account
  // Directory users who are not eligible (users_exclude; by default disabled
  // accounts): they receive nothing, as if they had left the rule.
  Filter exclude;
};

struct RuleSpec {
  std::string name;
  // In priority order. With several, people are merged on e-mail address and
  // each field comes from the first source that has a value for it.
  std::vector<std::string> sources;
  std::string target;
  std::string display_name;  // of the collection roster manages in each user's account
  Filter filter;
  int max_delete_percent = 20;
  int max_update_percent = 50;         // the mass-change guard, per collection
  std::optional<UserSelection> users;  // absent: the target's own user list
  bool include_self = false;           // send target users their own card
  FieldPolicy fields;                  // per-field rules; empty: the source overwrites all
  AdoptMode adopt = AdoptMode::kNever;
  bool offboard_remove = true;  // a user who leaves the rule loses roster's items
  // The user's main collection (Graph's Contacts folder) instead of one of
  // roster's own; `category` tags every managed item (empty: none).
  bool use_default_collection = false;
  std::string category;
};

}  // namespace roster
