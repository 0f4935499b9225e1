#include "app/reach.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "sync/audience.h"
#include "sync/notes.h"

namespace roster {

Result<std::vector<Place>> FindPlaces(EngineConfig& config, StateStore* store,
                                      std::vector<std::string>& notes) {
  std::map<std::tuple<std::string, std::string, std::string>, std::string> seen;  // -> url
  RunNotes run_notes;
  if (store) {
    ROSTER_ASSIGN_OR_RETURN(std::vector<std::string> rules, store->CollectionRules());
    for (const std::string& rule : rules) {
      ROSTER_ASSIGN_OR_RETURN(auto known, store->ListCollections(rule));
      for (const auto& [key, state] : known) seen[{key.rule, key.target, key.user}] = state.url;
    }
  }
  for (const RuleSpec& rule : config.rules) {
    auto target = config.targets.find(rule.target);
    if (target == config.targets.end()) continue;
    ROSTER_ASSIGN_OR_RETURN(
        std::vector<Candidate> candidates,
        FindCandidates(rule, config.directories, target->second.users, run_notes));
    for (const Candidate& c : candidates) seen.try_emplace({rule.name, rule.target, c.name});
  }
  for (std::string& w : run_notes.TakeWarnings()) notes.push_back(std::move(w));
  std::vector<Place> out;
  out.reserve(seen.size());
  for (const auto& [where, url] : seen) {
    const auto& [rule, target, user] = where;
    out.push_back(Place{rule, target, user, url});
  }
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
  CollectionSpec spec{place.user, rule->display_name, rule->name, place.known_url};
  spec.use_default = rule->use_default_collection;
  spec.category = rule->category;
  auto opened = target->second.target->Open(spec, /*create=*/false);
  if (!opened.ok() && opened.error().kind == ErrorKind::kNotFound && !spec.known_url.empty()) {
    spec.known_url.clear();  // moved or gone: looked for by its name
    opened = target->second.target->Open(spec, /*create=*/false);
  }
  if (!opened.ok()) {
    if (opened.error().kind != ErrorKind::kNotFound || opened.error().no_such_user) {
      if (!opened.error().no_such_user) out.error = opened.error().message;
    }
    return out;
  }
  std::unique_ptr<Collection> collection = std::move(opened).value();
  out.found = true;
  out.collection = collection->id();
  out.owned = !rule->use_default_collection && collection->created_by_roster();
  auto listing = collection->List("");
  if (!listing.ok() && listing.error().kind == ErrorKind::kNotFound && !spec.known_url.empty()) {
    // Opened from the stored URL without asking: gone there, looked for by name.
    spec.known_url.clear();
    auto again = target->second.target->Open(spec, /*create=*/false);
    if (!again.ok()) {
      out.found = false;
      if (again.error().kind != ErrorKind::kNotFound) out.error = again.error().message;
      return out;
    }
    collection = std::move(again).value();
    out.collection = collection->id();
    out.owned = !rule->use_default_collection && collection->created_by_roster();
    listing = collection->List("");
  }
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
