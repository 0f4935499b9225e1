// Selection: a rule's sources merged into one list of people, filtered, and
// turned into the items every target user's collection should hold, with the
// indexes the rest of the run asks (by key, by e-mail, by account name) and
// the difference from the last sync's snapshot.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/connector.h"
#include "state/state.h"
#include "sync/rule.h"
#include "sync/sync.h"

namespace roster {

// Attributes that name a person's account: a target user listed by account
// name is recognised by them.
inline constexpr const char* kAccountAttributes[] = {"uid", "sAMAccountName"};

// A field of a record as filters see it: a contact field, "phone" (any
// phone), "any_email", or a raw attribute.
std::vector<std::string> LookupField(const SourceRecord& record, std::string_view field);

// Trimmed, lower-cased: how e-mail addresses are compared everywhere.
std::string LowerEmail(std::string_view email);

// Match hashes (kinds/kind.h's MatchHashes) as the state stores them.
std::string JoinMatch(const std::vector<std::string>& match);
std::vector<std::string> SplitMatch(const std::string& joined);

// One source's people as a rule sees them.
struct SourcePeople {
  std::string name;
  const std::vector<SourceRecord>* records = nullptr;
  // Keys the source's own `exclude` left out, and that filter's text: to say
  // why someone is no longer selected.
  const std::vector<std::string>* excluded = nullptr;
  std::string exclude_text;
};

// Several sources into one list of people: records that share an e-mail
// address are one person; for each field the first source (in priority
// order) with a value wins. Keys become "source:key" of the first record.
// `origin` maps "source NUL key" to the merged person's key.
std::vector<SourceRecord> MergeSources(const std::vector<SourcePeople>& sources,
                                       std::unordered_map<std::string, std::string>* origin);

// The selected, mapped people of one rule, sorted by key.
struct RuleSelection {
  std::vector<DesiredItem> desired;
  std::unordered_map<std::string_view, const DesiredItem*> by_key;
  std::string fingerprint;
  Snapshot previous;
  std::vector<std::string> changed_keys;  // added, modified or removed since `previous`
  // "source NUL key" -> the person's key in this rule (differs when merged).
  std::unordered_map<std::string, std::string> origin;
  // Lower-cased e-mail address -> key, to recognise a target user's own card.
  std::unordered_map<std::string, std::string> by_email;
  // Lower-cased account name (uid, sAMAccountName) -> key, likewise.
  std::unordered_map<std::string, std::string> by_account;
  // Keys read but not selected -> why ("does not match the rule's filter
  // ..."): the reason a plan gives for removing them.
  std::unordered_map<std::string, std::string> left_out;

  // Set when the sources' versions matched the last snapshot's, so that the
  // people were not read: `fingerprint` is the previous one, and the members
  // above stay empty until a collection that changed on the server needs them.
  struct Loader {
    std::mutex mu;
    std::atomic<bool> done{false};
    Status status;
    std::function<Status()> load;
    // What a partial selection's Load() read: everyone.
    std::shared_ptr<const RuleSelection> complete;
  };
  std::shared_ptr<Loader> loader;

  // Set after a delta read (SelectChanges): `desired` and the indexes above
  // hold only the people the read touched (never changed afterwards, since
  // collections on other threads use them), `entries` holds everyone's key
  // and hash, and Load() reads everyone when a collection needs them all.
  bool partial = false;
  std::vector<SnapshotEntry> entries;  // sorted by key; partial only

  bool Loaded() const { return !loader || loader->done.load(); }
  // Reads the people now if they were deferred; once, whatever the threads.
  Status Load() const;
  size_t Count() const;
  bool Has(const std::string& key) const;
  const DesiredItem* Find(const std::string& key) const;
  // Everyone selected, sorted by key: Load() first.
  const std::vector<DesiredItem>& All() const { return Complete().desired; }
  // This selection, or the one a partial selection's Load() read.
  const RuleSelection& Complete() const;
  // Every person's key and hash, as a snapshot keeps them.
  std::vector<SnapshotEntry> Entries() const;
  // Why `key` is not selected, as far as this run knows ("" when it does not).
  std::string WhyLeftOut(const std::string& key) const;
  // Takes over the people of `other` (a deferred read that finished).
  void AdoptPeople(RuleSelection&& other);
};

// The selection after a delta read of a single source: `source` holds the
// prepared records of the `dirty` keys that are still there (the others
// went), and everyone else is as `previous` (the last complete snapshot,
// taken under the same configuration) has them. The result is partial (see
// RuleSelection::partial), with `entries`, the fingerprint SelectPeople
// would compute over everyone, and the changed keys.
Result<RuleSelection> SelectChanges(const RuleSpec& rule, const SourcePeople& source,
                                    const std::unordered_set<std::string>& dirty,
                                    const Snapshot& previous, const Target* target = nullptr);

// Selects and maps the people of `rule` from its sources' records (in the
// rule's priority order), each item as the rule's target projects it (null:
// as it is). Fails when two people share a key.
Result<RuleSelection> SelectPeople(const RuleSpec& rule, const std::vector<SourcePeople>& sources,
                                   const Target* target = nullptr);

// The fingerprint of a selection (sorted by key): equal fingerprints mean the
// same people with the same content.
std::string SelectionFingerprint(const std::vector<DesiredItem>& sorted);

// Keys whose desired state differs between the previous snapshot and now
// (added, changed or gone), sorted.
std::vector<std::string> DiffKeys(const std::vector<SnapshotEntry>& before,
                                  const std::vector<DesiredItem>& now);

}  // namespace roster
