// The pure steps of one collection's run: choosing how much to read (quiet,
// incremental, full), reconciling a listing with what the state knew, and
// confirming the run's own writes in the listing after them. No I/O: the
// collection run feeds them what it listed and read.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/connector.h"
#include "state/state.h"
#include "sync/sync.h"

namespace roster {

enum class CollectionMode {
  kQuiet,        // nothing changed on either side since a clean run: read nothing
  kIncremental,  // only the source changed: plan the changed keys from the state
  kFull,         // the collection changed (or the state cannot tell): plan it all
};

struct ModeInput {
  const Listing* listing = nullptr;
  const CollectionState* state = nullptr;
  bool has_previous = false;  // the rule has a snapshot from an earlier sync
  // The collection-specific fingerprints (see CollectionFingerprint) of the
  // selection now and of the previous snapshot's.
  std::string now;
  std::string previous;
};

// Quiet when the listing from the stored token is empty and the book matched
// this very selection at the end of its last clean run; incremental when it
// matched the previous one; full otherwise.
CollectionMode ChooseMode(const ModeInput& input);

// What a collection records as matched: the rule's selection fingerprint,
// specialised by what makes this collection's content differ from it (the
// user's own person left out, adoption).
std::string CollectionFingerprint(const std::string& selection, const std::string& self_key,
                                  AdoptMode adopt);

// One item of the collection during a full pass: what the state knew, merged
// with the listing.
struct ReconciledItem {
  ItemState s;
  bool recorded = false;  // a managed item the state knew before this run
  bool gone = false;      // not in the collection any more
  bool edited = false;    // known before, and its etag moved since
};

struct Reconciliation {
  std::vector<ReconciledItem> items;  // the stored ones by href, then the new ones
  std::vector<std::string> removed;   // stored hrefs the listing no longer has
  std::vector<std::string> unknown;   // hrefs whose content must be read
};

// Merges the stored items (sorted by href) with a listing: a full listing
// marks every stored item it does not name as gone, a delta only those it
// removes; new hrefs become unknown items, changed etags make known ones
// unknown.
Reconciliation ReconcileListing(std::vector<ItemState> stored, const Listing& listing);

// Learns what the reads of `r.unknown` answered: the marker of `rule` (any
// other marker or an unreadable body makes an item unmanaged), the content
// hash, and for the user's own items their match hashes. Items not answered
// are gone, unless `rest_gone` is false (the items came with the listing,
// which need not carry every one): then they stay in `r.unknown` to be read.
// Returns the rows to store; unreadable items add a warning.
std::vector<ItemState> LearnFetched(Reconciliation& r, std::vector<RemoteItem> fetched,
                                    const std::string& rule, std::vector<std::string>& warnings,
                                    bool rest_gone = true);

// The planner's view of a reconciled collection: managed items, and the
// unmanaged ones that can be matched to a person. Counts the managed ones and
// hands over their field memory by href.
std::vector<CurrentItem> CurrentItems(Reconciliation&& r, int64_t* managed,
                                      std::unordered_map<std::string, std::string>* fields);

// The listing after a run's writes, from the token the run started with.
struct Confirmation {
  std::vector<ItemRef> seen;         // everything listed: the new etags to store
  std::vector<ItemState> confirmed;  // own writes whose etag only the listing told
  std::vector<std::string> removed;  // gone, or acknowledged but not listed
  std::vector<std::string> errors;   // one per acknowledged write that is not there
  // Nothing but the run's own writes changed: the book matches the selection.
  bool clean = true;
};

// Our own writes come back (their etags confirm what was recorded); anything
// else is someone's concurrent change and leaves the book unclean, to be read
// next run. A write the server acknowledged but does not list is not done.
Confirmation ConfirmWrites(const std::vector<ItemState>& written,
                           const std::vector<std::string>& deleted, const Listing& after);

}  // namespace roster
