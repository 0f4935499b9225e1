// The planner: pairs desired items with the collection's managed items by key.
#include <algorithm>
#include <unordered_map>

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
          return (x.adopt ? "adopt and update " : "update ") + x.key + " (" + x.href + ")";
        } else if constexpr (std::is_same_v<T, DeleteAction>) {
          return (x.duplicate ? "delete duplicate of " : "delete ") + x.key + " (" + x.href + ")";
        } else if constexpr (std::is_same_v<T, AdoptAction>) {
          return "adopt " + x.key + " (" + x.href + ")";
        } else {
          return "conflict " + x.key + " (" + x.href + "): " + x.reason;
        }
      },
      action);
}

Plan PlanCollection(const PlanInput& input) {
  Plan plan;
  plan.unchanged = input.unchanged_outside;
  static const std::vector<DesiredItem> kNoDesired;
  static const std::vector<CurrentItem> kNoCurrent;
  const auto& desired = input.desired ? *input.desired : kNoDesired;
  const auto& current = input.current ? *input.current : kNoCurrent;

  // Managed items grouped by key. Items without this rule's marker never enter
  // the plan: roster does not change what it does not manage.
  std::unordered_map<std::string_view, std::vector<const CurrentItem*>> by_key;
  by_key.reserve(current.size());
  for (const CurrentItem& item : current) {
    if (!item.key.empty()) by_key[item.key].push_back(&item);
  }

  auto delete_item = [&](const CurrentItem& item, bool duplicate) {
    plan.actions.push_back(DeleteAction{item.key, item.href, item.etag, duplicate});
  };

  for (const DesiredItem& want : desired) {
    auto it = by_key.find(want.key);
    if (it == by_key.end()) {
      plan.actions.push_back(CreateAction{want.key});
      continue;
    }
    std::vector<const CurrentItem*>& copies = it->second;
    // Keep one copy: the one at the deterministic href if any, else the first
    // by href, so that the choice is stable from run to run.
    std::sort(copies.begin(), copies.end(),
              [](const CurrentItem* a, const CurrentItem* b) { return a->href < b->href; });
    const CurrentItem* keep = copies.front();
    if (input.preferred_name && copies.size() > 1) {
      std::string name = "/" + input.preferred_name(want.key);
      for (const CurrentItem* c : copies) {
        if (c->href.size() >= name.size() &&
            c->href.compare(c->href.size() - name.size(), name.size(), name) == 0) {
          keep = c;
        }
      }
    }
    for (const CurrentItem* c : copies) {
      if (c != keep) delete_item(*c, /*duplicate=*/true);
    }
    if (keep->hash != want.hash) {
      plan.actions.push_back(UpdateAction{want.key, keep->href, keep->etag, !keep->recorded});
    } else if (!keep->recorded) {
      plan.actions.push_back(AdoptAction{want.key, keep->href, keep->etag, keep->hash});
    } else {
      ++plan.unchanged;
    }
    by_key.erase(it);
  }

  // Managed items whose key is no longer desired: the person left the source
  // (or the filter). Sorted for a stable plan.
  std::vector<const CurrentItem*> leftovers;
  for (auto& [key, copies] : by_key) {
    for (const CurrentItem* c : copies) leftovers.push_back(c);
  }
  std::sort(leftovers.begin(), leftovers.end(), [](const CurrentItem* a, const CurrentItem* b) {
    return std::tie(a->key, a->href) < std::tie(b->key, b->href);
  });
  int64_t departures = 0;
  for (const CurrentItem* c : leftovers) {
    delete_item(*c, /*duplicate=*/false);
    ++departures;
  }

  // The deletion guard counts departures only: removing duplicates is repair.
  if (!input.force && departures > 0 && input.managed_total > 0 &&
      departures * 100 > static_cast<int64_t>(input.max_delete_percent) * input.managed_total) {
    plan.guard = "would delete " + std::to_string(departures) + " of " +
                 std::to_string(input.managed_total) + " managed items (" +
                 std::to_string(departures * 100 / input.managed_total) +
                 "%), more than max_delete_percent = " + std::to_string(input.max_delete_percent);
  }
  return plan;
}

}  // namespace roster
