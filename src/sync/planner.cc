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

const char* DescribeWhy(Why why) {
  switch (why) {
    case Why::kNew:
      return "in the selection, not yet in the collection";
    case Why::kSourceChanged:
      return "changed in the source since the last sync";
    case Why::kEditedOnServer:
      return "edited on the server since roster wrote it";
    case Why::kDiffers:
      return "differs from what the rule now writes";
    case Why::kFoundUnrecorded:
      return "a copy of roster's the state did not know (lost state or an interrupted run)";
    case Why::kLeft:
      return "no longer selected";
    case Why::kDuplicate:
      return "a second copy of a person who stays";
    case Why::kUsersOwn:
      return "the user has their own card for the person (adopt = \"never\")";
    case Why::kTakeOver:
      return "the user's own card for the person, managed from now on (adopt = \"merge\")";
    case Why::kRepair:
      return "found again while writing";
  }
  return "";
}

const Decision& DecisionOf(const Action& action) {
  return std::visit([](const auto& x) -> const Decision& { return x.why; }, action);
}

Decision& DecisionOf(Action& action) {
  return std::visit([](auto& x) -> Decision& { return x.why; }, action);
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

namespace {

// One planning pass: the collection's items indexed, then every desired key
// decided against its managed copies (or the user's own item), then the
// departures and the guards.
class Planner {
 public:
  explicit Planner(const PlanInput& input) : in_(input) {
    static const std::vector<DesiredItem> kNoDesired;
    static const std::vector<CurrentItem> kNoCurrent;
    desired_ = input.desired ? input.desired : &kNoDesired;
    current_ = input.current ? input.current : &kNoCurrent;
    plan_.unchanged = input.unchanged_outside;
  }

  Plan Run() {
    Index();
    // Managed items sorted by (key, href), merged with the desired items
    // (sorted by key). Items without this rule's marker never enter the plan:
    // roster does not change what it does not manage.
    size_t j = 0;
    for (const DesiredItem& want : *desired_) {
      while (j < managed_.size() && managed_[j]->key < want.key) departed_.push_back(managed_[j++]);
      size_t end = j;
      while (end < managed_.size() && managed_[end]->key == want.key) ++end;
      if (end == j) {
        PlanMissing(want);
      } else {
        PlanCopies(want, j, end);
      }
      j = end;
    }
    while (j < managed_.size()) departed_.push_back(managed_[j++]);
    // The person left the source (or the filter): delete every managed copy.
    for (const CurrentItem* c : departed_) {
      plan_.actions.push_back(DeleteAction{c->key, c->href, c->etag, false, {Why::kLeft}});
    }
    Guard();
    return std::move(plan_);
  }

 private:
  void Index() {
    managed_.reserve(current_->size());
    for (const CurrentItem& item : *current_) {
      if (!item.key.empty()) {
        managed_.push_back(&item);
        continue;
      }
      for (const std::string& m : item.match) {
        auto [it, fresh] = own_.emplace(m, &item);
        if (!fresh && item.href < it->second->href) it->second = &item;  // stable choice
      }
    }
    std::sort(managed_.begin(), managed_.end(), [](const CurrentItem* a, const CurrentItem* b) {
      int c = a->key.compare(b->key);
      return c != 0 ? c < 0 : a->href < b->href;
    });
  }

  // The user's own item for the person, if they have one not yet claimed.
  const CurrentItem* FindOwn(const DesiredItem& want) const {
    for (const std::string& m : want.match) {
      auto it = own_.find(m);
      if (it != own_.end() && !claimed_.count(it->second)) return it->second;
    }
    return nullptr;
  }

  // No managed copy: the user's own item stands for it, or a create.
  void PlanMissing(const DesiredItem& want) {
    if (const CurrentItem* mine = FindOwn(want)) {
      claimed_.insert(mine);
      if (in_.adopt == AdoptMode::kMerge) {
        plan_.actions.push_back(
            UpdateAction{want.key, mine->href, mine->etag, true, true, {Why::kTakeOver}});
      } else {
        plan_.actions.push_back(SkipAction{want.key, mine->href, {Why::kUsersOwn}});
      }
      return;
    }
    plan_.actions.push_back(CreateAction{want.key, {Why::kNew}});
  }

  // Managed copies [j, end) of one desired key: keep one, delete the others.
  void PlanCopies(const DesiredItem& want, size_t j, size_t end) {
    // Keep the one at the deterministic name if any, else the first by
    // href, so that the choice is stable from run to run.
    const CurrentItem* keep = managed_[j];
    if (in_.preferred_name && end - j > 1) {
      std::string name = "/" + in_.preferred_name(want.key);
      for (size_t k = j; k < end; ++k) {
        if (managed_[k]->href.ends_with(name)) keep = managed_[k];
      }
    }
    for (size_t k = j; k < end; ++k) {
      const CurrentItem* c = managed_[k];
      if (c != keep) {
        plan_.actions.push_back(DeleteAction{c->key, c->href, c->etag, true, {Why::kDuplicate}});
      }
    }
    if (keep->hash != want.hash) {
      plan_.actions.push_back(UpdateAction{
          want.key, keep->href, keep->etag, !keep->recorded, false, {WhyUpdate(want, *keep)}});
    } else if (!keep->recorded) {
      plan_.actions.push_back(
          AdoptAction{want.key, keep->href, keep->etag, keep->hash, {Why::kFoundUnrecorded}});
    } else {
      ++plan_.unchanged;
    }
  }

  Why WhyUpdate(const DesiredItem& want, const CurrentItem& have) const {
    if (!have.recorded) return Why::kFoundUnrecorded;
    if (have.edited) return Why::kEditedOnServer;
    if (in_.source_changed && in_.source_changed(want.key)) return Why::kSourceChanged;
    return Why::kDiffers;
  }

  // The deletion guard counts departures only: removing duplicates is repair.
  // The mass-change guard counts rewrites of managed items; a take-over of a
  // user's own card is a first write, not a change.
  void Guard() {
    if (in_.force) return;
    int64_t updates = 0;
    for (const Action& a : plan_.actions) {
      if (const auto* u = std::get_if<UpdateAction>(&a)) updates += u->take_over ? 0 : 1;
    }
    if (!TripGuard(plan_, "deletion guard", "delete", static_cast<int64_t>(departed_.size()),
                   in_.managed_total, in_.max_delete_percent, "max_delete_percent")) {
      TripGuard(plan_, "mass-change guard", "update", updates, in_.managed_total,
                in_.max_update_percent, "max_update_percent");
    }
  }

  const PlanInput& in_;
  const std::vector<DesiredItem>* desired_;
  const std::vector<CurrentItem>* current_;
  Plan plan_;
  std::vector<const CurrentItem*> managed_;
  // The user's own items by e-mail hash; each can stand for one person only.
  std::unordered_map<std::string_view, const CurrentItem*> own_;
  std::unordered_set<const CurrentItem*> claimed_;
  std::vector<const CurrentItem*> departed_;  // managed items whose key is not desired
};

}  // namespace

Plan PlanCollection(const PlanInput& input) { return Planner(input).Run(); }

}  // namespace roster
