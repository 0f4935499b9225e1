#include "app/reach.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "sync/audience.h"
#include "sync/notes.h"

namespace roster {

Result<std::vector<Place>> FindPlaces(EngineConfig& config, StateStore* store,
                                      std::vector<std::string>& notes) {
  std::set<std::tuple<std::string, std::string, std::string>> seen;
  RunNotes run_notes;
  for (const RuleSpec& rule : config.rules) {
    if (store) {
      ROSTER_ASSIGN_OR_RETURN(auto known, store->ListCollections(rule.name));
      for (const auto& [key, state] : known) seen.emplace(key.rule, key.target, key.user);
    }
    auto target = config.targets.find(rule.target);
    if (target == config.targets.end()) continue;
    ROSTER_ASSIGN_OR_RETURN(
        std::vector<Candidate> candidates,
        FindCandidates(rule, config.directories, target->second.users, run_notes));
    for (const Candidate& c : candidates) seen.emplace(rule.name, rule.target, c.name);
  }
  for (std::string& w : run_notes.TakeWarnings()) notes.push_back(std::move(w));
  std::vector<Place> out;
  out.reserve(seen.size());
  for (const auto& [rule, target, user] : seen) out.push_back(Place{rule, target, user});
  return out;
}

PlaceContents ReadPlace(EngineConfig& config, const Place& place,
                        std::unique_ptr<Collection>* keep) {
  PlaceContents out;
  out.place = place;
  const RuleSpec* rule = nullptr;
  for (const RuleSpec& r : config.rules) {
    if (r.name == place.rule) rule = &r;
  }
  auto target = config.targets.find(place.target);
  if (rule == nullptr || target == config.targets.end()) {
    // A rule or target no longer configured: its books cannot be found
    // again (nothing says where or how), which the caller reports.
    out.error = "rule " + place.rule + " or target " + place.target +
                " is no longer in the configuration; its address books are not looked for";
    return out;
  }
  CollectionSpec spec{place.user, rule->display_name, rule->name, ""};
  spec.use_default = rule->use_default_collection;
  spec.category = rule->category;
  auto opened = target->second.target->Open(spec, /*create=*/false);
  if (!opened.ok()) {
    if (opened.error().kind != ErrorKind::kNotFound || opened.error().no_such_user) {
      if (!opened.error().no_such_user) out.error = opened.error().message;
    }
    return out;
  }
  std::unique_ptr<Collection> collection = std::move(opened).value();
  out.found = true;
  out.collection = collection->id();
  out.owned = !rule->use_default_collection;
  auto listing = collection->List("");
  if (!listing.ok()) {
    if (listing.error().kind == ErrorKind::kNotFound) {
      out.found = false;
      return out;
    }
    out.error = listing.error().message;
    return out;
  }
  std::vector<RemoteItem> items = std::move(listing->items);
  std::set<std::string> have;
  for (const RemoteItem& i : items) have.insert(i.href);
  std::vector<std::string> fetch;
  for (const ItemRef& ref : listing->changed) {
    if (!have.count(ref.href)) fetch.push_back(ref.href);
  }
  constexpr size_t kChunk = 100;
  for (size_t i = 0; i < fetch.size(); i += kChunk) {
    std::vector<std::string> part(
        fetch.begin() + static_cast<std::ptrdiff_t>(i),
        fetch.begin() + static_cast<std::ptrdiff_t>(std::min(fetch.size(), i + kChunk)));
    auto got = collection->Fetch(part);
    if (!got.ok()) {
      out.error = got.error().message;
      return out;
    }
    for (RemoteItem& r : *got) items.push_back(std::move(r));
  }
  for (RemoteItem& r : items) {
    if (r.tag && r.tag->rule == place.rule && r.parse_error.empty()) {
      out.managed.push_back(FoundItem{r.href, r.etag, *r.tag, std::move(r.body)});
    } else {
      ++out.others;
    }
  }
  // Listed but not answered by the read (gone in between): not counted.
  std::sort(out.managed.begin(), out.managed.end(),
            [](const FoundItem& a, const FoundItem& b) { return a.href < b.href; });
  if (keep) *keep = std::move(collection);
  return out;
}

}  // namespace roster
