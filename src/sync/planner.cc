// The planner: pairs desired items with the collection's managed items by key.
#include <algorithm>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "sync/guard.h"
#include "sync/sync.h"

namespace roster {

Counts Plan::Predicted() const {
  Counts c;
  c.unchanged = unchanged;
  for (const Action& a : actions) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, CreateAction>) {
            ++c.created;
          } else if constexpr (std::is_same_v<T, UpdateAction>) {
            ++c.updated;
            if (x.adopt) ++c.adopted;
          } else if constexpr (std::is_same_v<T, DeleteAction>) {
            ++c.deleted;
          } else if constexpr (std::is_same_v<T, AdoptAction>) {
            ++c.unchanged;
            ++c.adopted;
          } else if constexpr (std::is_same_v<T, SkipAction>) {
            ++c.skipped;
          } else {
            ++c.conflicts;
          }
        },
        a);
  }
  return c;
}

std::string DescribeAction(const Action& action) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, CreateAction>) {
          return "create " + x.key;
        } else if constexpr (std::is_same_v<T, UpdateAction>) {
          if (x.take_over)
            return "take over the user's own card for " + x.key + " (" + x.href + ")";
          return (x.adopt ? "adopt and update " : "update ") + x.key + " (" + x.href + ")";
        } else if constexpr (std::is_same_v<T, DeleteAction>) {
          return (x.duplicate ? "delete duplicate of " : "delete ") + x.key + " (" + x.href + ")";
        } else if constexpr (std::is_same_v<T, AdoptAction>) {
          return "adopt " + x.key + " (" + x.href + ")";
        } else if constexpr (std::is_same_v<T, SkipAction>) {
          return "skip " + x.key + ": the user has their own card (" + x.href + ")";
        } else {
          return "conflict " + x.key + " (" + x.href + "): " + x.reason;
        }
      },
      action);
}

namespace {

// Blocks the plan when the guard trips.
bool TripGuard(Plan& plan, const char* name, const char* verb, int64_t count, int64_t total,
               int percent, const char* setting) {
  auto trip = CheckGuard(name, setting, count, total, percent);
  if (!trip) return false;
  plan.guard_name = name;
  plan.guard = std::string("would ") + verb + " " + trip->Share("managed items");
  return true;
}

}  // namespace

Plan PlanCollection(const PlanInput& input) {
  Plan plan;
  plan.unchanged = input.unchanged_outside;
  static const std::vector<DesiredItem> kNoDesired;
  static const std::vector<CurrentItem> kNoCurrent;
  const auto& desired = input.desired ? *input.desired : kNoDesired;
  const auto& current = input.current ? *input.current : kNoCurrent;

  // Managed items sorted by (key, href), merged with the desired items (sorted
  // by key). Items without this rule's marker never enter the plan: roster
  // does not change what it does not manage.
  std::vector<const CurrentItem*> managed;
  managed.reserve(current.size());
  // The user's own items by e-mail hash; each can stand for one person only.
  std::unordered_map<std::string_view, const CurrentItem*> own;
  std::unordered_set<const CurrentItem*> claimed;
  for (const CurrentItem& item : current) {
    if (!item.key.empty()) {
      managed.push_back(&item);
      continue;
    }
    for (const std::string& m : item.match) {
      auto [it, fresh] = own.emplace(m, &item);
      if (!fresh && item.href < it->second->href) it->second = &item;  // stable choice
    }
  }
  auto find_own = [&](const DesiredItem& want) -> const CurrentItem* {
    for (const std::string& m : want.match) {
      auto it = own.find(m);
      if (it != own.end() && !claimed.count(it->second)) return it->second;
    }
    return nullptr;
  };
  std::sort(managed.begin(), managed.end(), [](const CurrentItem* a, const CurrentItem* b) {
    int c = a->key.compare(b->key);
    return c != 0 ? c < 0 : a->href < b->href;
  });

  std::vector<const CurrentItem*> departed;  // managed items whose key is not desired
  size_t j = 0;
  for (const DesiredItem& want : desired) {
    while (j < managed.size() && managed[j]->key < want.key) departed.push_back(managed[j++]);
    size_t end = j;
    while (end < managed.size() && managed[end]->key == want.key) ++end;
    if (end == j) {
      if (const CurrentItem* mine = find_own(want)) {
        claimed.insert(mine);
        if (input.adopt == AdoptMode::kMerge) {
          plan.actions.push_back(UpdateAction{want.key, mine->href, mine->etag, true, true});
        } else {
          plan.actions.push_back(SkipAction{want.key, mine->href});
        }
        continue;
      }
      plan.actions.push_back(CreateAction{want.key});
      continue;
    }
    // Keep one copy: the one at the deterministic name if any, else the first
    // by href, so that the choice is stable from run to run.
    const CurrentItem* keep = managed[j];
    if (input.preferred_name && end - j > 1) {
      std::string name = "/" + input.preferred_name(want.key);
      for (size_t k = j; k < end; ++k) {
        if (managed[k]->href.ends_with(name)) keep = managed[k];
      }
    }
    for (size_t k = j; k < end; ++k) {
      const CurrentItem* c = managed[k];
      if (c != keep) plan.actions.push_back(DeleteAction{c->key, c->href, c->etag, true});
    }
    if (keep->hash != want.hash) {
      plan.actions.push_back(UpdateAction{want.key, keep->href, keep->etag, !keep->recorded});
    } else if (!keep->recorded) {
      plan.actions.push_back(AdoptAction{want.key, keep->href, keep->etag, keep->hash});
    } else {
      ++plan.unchanged;
    }
    j = end;
  }
  while (j < managed.size()) departed.push_back(managed[j++]);

  // The person left the source (or the filter): delete every managed copy.
  for (const CurrentItem* c : departed) {
    plan.actions.push_back(DeleteAction{c->key, c->href, c->etag, false});
  }

  // The deletion guard counts departures only: removing duplicates is repair.
  // The mass-change guard counts rewrites of managed items; a take-over of a
  // user's own card is a first write, not a change.
  int64_t updates = 0;
  for (const Action& a : plan.actions) {
    if (const auto* u = std::get_if<UpdateAction>(&a)) updates += u->take_over ? 0 : 1;
  }
  if (!input.force &&
      !TripGuard(plan, "deletion guard", "delete", static_cast<int64_t>(departed.size()),
                 input.managed_total, input.max_delete_percent, "max_delete_percent")) {
    TripGuard(plan, "mass-change guard", "update", updates, input.managed_total,
              input.max_update_percent, "max_update_percent");
  }
  return plan;
}

}  // namespace roster
