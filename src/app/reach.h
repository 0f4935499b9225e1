// What a configuration holds on its targets, read back from them rather
// than guessed from the state: every collection a rule may have written to
// (those the state knows, and those of everyone who receives the rule now),
// found again by its name in the user's home and listed in full. `roster
// gdpr export` looks for a person's copies in it; `roster decommission`
// removes all of roster's items and then its empty collections. Never
// creates anything.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "app/engine.h"
#include "core/connector.h"
#include "state/state.h"

namespace roster {

// One collection a rule may hold items in.
struct Place {
  std::string rule;
  std::string target;
  std::string user;
  std::string known_url;  // where the state last found it; empty: not known
};

// Every place of every rule (sorted, each once): every collection the state
// knows, also of rules no longer configured, and those of everyone the
// rules' audiences name now. A directory that cannot answer is an error (a
// place left out would be an incomplete answer).
Result<std::vector<Place>> FindPlaces(EngineConfig& config, StateStore* store,
                                      std::vector<std::string>& notes);

// One of roster's items found on a target.
struct FoundItem {
  std::string href;
  std::string etag;
  ManagedTag tag;
  ItemBody body;
};

// What one place holds now.
struct PlaceContents {
  Place place;
  bool found = false;              // the collection exists
  std::string collection;          // its id (URL), when found
  bool owned = false;              // roster's own collection (not the user's main one)
  std::vector<FoundItem> managed;  // items with the rule's marker
  size_t others = 0;               // everything else in it (the user's own, other rules')
  std::string error;               // the place could not be read
};

// Opens `place` without creating it (where the state last found it, else
// by its name in the user's home), lists it in full and reads every item.
PlaceContents ReadPlace(EngineConfig& config, const Place& place,
                        std::unique_ptr<Collection>* keep = nullptr);

}  // namespace roster
