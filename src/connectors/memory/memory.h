// An in-memory target: collections held in process memory, with counters of
// every request and a hook to inject failures. For tests and benchmarks of the
// planner, executor and state store without a server.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "core/connector.h"

namespace roster {

struct MemoryItem {
  std::string etag;
  std::optional<ManagedTag> tag;
  Contact contact;
};

struct MemoryCounters {
  int64_t lists = 0, fetched = 0, creates = 0, updates = 0, deletes = 0;
  int64_t writes() const { return creates + updates + deletes; }
};

// The shared store behind a MemoryTarget. Thread-safe.
class MemoryServer {
 public:
  // Items of one user's collection, by href. Empty if the collection is missing.
  std::map<std::string, MemoryItem> Items(const std::string& user);
  // Puts an item as a user's phone would (no marker unless given).
  std::string PutByHand(const std::string& user, const std::string& href, const Contact& contact,
                        std::optional<ManagedTag> tag = std::nullopt);
  void RemoveByHand(const std::string& user, const std::string& href);
  bool HasCollection(const std::string& user);
  std::string SyncToken(const std::string& user);
  MemoryCounters counters();
  void ResetCounters();
  // Called before each write (op is "create", "update" or "delete"); a returned
  // error is answered instead of doing the write.
  void SetFault(
      std::function<std::optional<Error>(const std::string& op, const std::string& href)> fault);
  // Users who have no account on this server at all (Graph: no mailbox):
  // opening their collection fails with Error::no_such_user.
  void SetMissingUsers(std::set<std::string> users);
  bool IsMissingUser(const std::string& user);

 private:
  friend class MemoryCollection;
  struct Book {
    std::map<std::string, MemoryItem> items;
    int64_t version = 1;
    std::map<std::string, int64_t> changed_at;  // href -> version of last change (incl. deletes)
    // The same the other way round, so that a delta listing costs what
    // changed, as a server's sync-collection does, not the whole book.
    std::map<int64_t, std::string> by_version;
    void Touch(const std::string& href) {
      auto [it, added] = changed_at.try_emplace(href, 0);
      if (!added) by_version.erase(it->second);
      it->second = ++version;
      by_version.emplace(it->second, href);
    }
  };
  std::mutex mu_;
  std::map<std::string, Book> books_;
  MemoryCounters counters_;
  int64_t next_etag_ = 1;
  std::function<std::optional<Error>(const std::string&, const std::string&)> fault_;
  std::set<std::string> missing_users_;
};

std::unique_ptr<Target> NewMemoryTarget(std::shared_ptr<MemoryServer> server,
                                        int max_in_flight = 4);

}  // namespace roster
