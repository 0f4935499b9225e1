#include "sync/reconcile.h"

#include <algorithm>
#include <string_view>
#include <unordered_set>

#include "core/hash.h"
#include "kinds/kind.h"
#include "sync/selection.h"

namespace roster {

CollectionMode ChooseMode(const ModeInput& in) {
  const Listing& l = *in.listing;
  bool quiet = !l.full && l.changed.empty() && l.removed.empty() && !in.state->sync_token.empty() &&
               in.has_previous;
  if (quiet && in.state->synced_snapshot == in.now) return CollectionMode::kQuiet;
  if (quiet && in.state->synced_snapshot == in.previous) return CollectionMode::kIncremental;
  return CollectionMode::kFull;
}

std::string CollectionFingerprint(const std::string& selection, const std::string& self_key,
                                  AdoptMode adopt) {
  if (selection.empty()) return selection;
  if (self_key.empty() && adopt == AdoptMode::kNever) return selection;
  return HashHex(selection + "\nself " + self_key + "\nadopt " +
                 (adopt == AdoptMode::kMerge ? "merge" : "never"));
}

Reconciliation ReconcileListing(std::vector<ItemState> stored, const Listing& listing) {
  Reconciliation r;
  r.items.reserve(stored.size() + listing.changed.size());
  for (ItemState& s : stored) {
    bool recorded = !s.key.empty();
    r.items.push_back(ReconciledItem{std::move(s), recorded, listing.full});
  }
  stored.clear();
  const size_t known_end = r.items.size();
  auto find = [&](const std::string& href) -> ReconciledItem* {
    auto end = r.items.begin() + static_cast<std::ptrdiff_t>(known_end);
    auto it = std::lower_bound(
        r.items.begin(), end, href,
        [](const ReconciledItem& w, const std::string& h) { return w.s.href < h; });
    return it != end && it->s.href == href ? &*it : nullptr;
  };
  for (const std::string& href : listing.removed) {
    if (ReconciledItem* w = find(href)) w->gone = true;
  }
  for (const ItemRef& ref : listing.changed) {
    if (ReconciledItem* w = find(ref.href)) {
      w->gone = false;
      w->edited = !w->s.etag.empty() && w->s.etag != ref.etag;
      w->s.etag_seen = ref.etag;
    } else {
      r.items.push_back(ReconciledItem{ItemState{ref.href, ref.etag, "", "", ""}, false, false});
    }
  }
  for (size_t i = 0; i < known_end; ++i) {
    if (r.items[i].gone) r.removed.push_back(r.items[i].s.href);
  }
  for (const ReconciledItem& w : r.items) {
    if (!w.gone && !w.s.known()) r.unknown.push_back(w.s.href);
  }
  return r;
}

std::vector<ItemState> LearnFetched(Reconciliation& r, std::vector<RemoteItem> fetched,
                                    const std::string& rule, std::vector<std::string>& warnings,
                                    bool rest_gone) {
  std::unordered_map<std::string_view, ReconciledItem*> unknown_at;
  for (ReconciledItem& w : r.items) {
    if (!w.gone && !w.s.known()) unknown_at[w.s.href] = &w;
  }
  std::vector<ItemState> learned;
  for (RemoteItem& item : fetched) {
    auto it = unknown_at.find(item.href);
    if (it == unknown_at.end()) continue;
    ReconciledItem& w = *it->second;
    // Ownership is the marker's: an item whose marker names this rule is ours
    // even when the rest of it cannot be read (a target that keeps the marker
    // apart, as Graph does). Taking it for someone else's would make a
    // second copy where the server picks ids; it is written again instead.
    std::string key = item.tag && item.tag->rule == rule ? item.tag->key : "";
    w.recorded = w.recorded && key == w.s.key;
    if (key != w.s.key) w.s.fields.clear();  // what we wrote belongs to another item
    w.s.etag = w.s.etag_seen = item.etag;
    w.s.key = std::move(key);
    w.s.hash = item.content_hash;
    // Someone's own card (not another rule's): remember how to recognise it.
    w.s.match = w.s.key.empty() && item.parse_error.empty() && !item.tag
                    ? JoinMatch(MatchHashes(item.body))
                    : std::string();
    if (!item.parse_error.empty()) {
      warnings.push_back(item.href + " could not be read" +
                         (w.s.key.empty() ? " and is left alone: "
                                          : "; it carries roster's marker and is written again: ") +
                         item.parse_error);
    }
    learned.push_back(w.s);
    unknown_at.erase(it);
  }
  if (rest_gone) {
    for (auto& [href, w] : unknown_at) {  // gone between the listing and the read
      w->gone = true;
      r.removed.push_back(w->s.href);
    }
  }
  r.unknown.clear();
  for (const ReconciledItem& w : r.items) {
    if (!w.gone && !w.s.known()) r.unknown.push_back(w.s.href);
  }
  return learned;
}

std::vector<CurrentItem> CurrentItems(Reconciliation&& r, int64_t* managed,
                                      std::unordered_map<std::string, std::string>* fields) {
  std::vector<CurrentItem> current;
  current.reserve(r.items.size());
  *managed = 0;
  for (ReconciledItem& w : r.items) {
    if (w.gone) continue;
    if (w.s.key.empty()) {
      if (!w.s.match.empty()) {
        current.push_back({std::move(w.s.href), std::move(w.s.etag), "", std::move(w.s.hash), true,
                           SplitMatch(w.s.match)});
      }
      continue;
    }
    ++*managed;
    (*fields)[w.s.href] = std::move(w.s.fields);
    current.push_back({std::move(w.s.href),
                       std::move(w.s.etag),
                       std::move(w.s.key),
                       std::move(w.s.hash),
                       w.recorded,
                       {},
                       w.edited});
  }
  r.items.clear();
  return current;
}

Confirmation ConfirmWrites(const std::vector<ItemState>& written,
                           const std::vector<std::string>& deleted, const Listing& after) {
  Confirmation c;
  std::unordered_map<std::string, const ItemState*> ours;
  for (const ItemState& w : written) ours[w.href] = &w;
  std::unordered_set<std::string> listed;
  for (const ItemRef& ref : after.changed) {
    auto it = ours.find(ref.href);
    if (it != ours.end() && it->second->etag.empty()) {
      // The server did not answer an etag to our write: take the listing's.
      ItemState row = *it->second;
      row.etag = row.etag_seen = ref.etag;
      c.confirmed.push_back(std::move(row));
    } else if (it == ours.end() || it->second->etag != ref.etag) {
      c.clean = false;  // someone else's change: read it next run
    }
    c.seen.push_back(ref);
    listed.insert(ref.href);
  }
  std::unordered_set<std::string> gone(deleted.begin(), deleted.end());
  for (const std::string& href : after.removed) c.clean = c.clean && gone.count(href) > 0;
  c.removed = after.removed;
  std::unordered_set<std::string> gone_after(after.removed.begin(), after.removed.end());
  for (const ItemState& w : written) {
    if (listed.count(w.href) || gone_after.count(w.href) || gone.count(w.href)) continue;
    // Its record goes, and the next run (a full pass) finds out what is there.
    c.errors.push_back("the server acknowledged writing " + w.href +
                       " but does not list it; it is checked again next run");
    c.removed.push_back(w.href);
    c.clean = false;
  }
  return c;
}

}  // namespace roster
