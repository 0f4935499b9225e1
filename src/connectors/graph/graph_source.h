// Microsoft Graph as a source of people: a tenant's directory (its users and
// organisational contacts, the GAL) as a Source, with its groups naming
// target users as a Directory; and one mailbox's contact folder as a Source.
// Built on graph::GraphClient; the pure page readers below are fuzzed.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/connector.h"
#include "core/result.h"
#include "graph/auth.h"
#include "graph/client.h"

namespace roster {

struct GraphDirectoryOptions {
  std::string name;                        // source name, in every message: "source gal: ..."
  graph::TokenProvider* tokens = nullptr;  // shared, outlives the source
  graph::GraphClientOptions client;        // graph_url, http options, clock
  bool read_users = true, read_org_contacts = true;
  // Contact field -> Graph property path of a user ("mobile" ->
  // "mobilePhone", "office" -> "onPremisesExtensionAttributes.extensionAttribute3");
  // overrides a default; "" removes the field, for org contacts as well.
  // "manager" (the navigation property) is the manager's display name, as
  // "manager.displayName"; no default maps it.
  std::map<std::string, std::string> mapping;
  // More user properties to $select (top-level names or dotted paths), kept
  // in SourceRecord.attributes for filters. Paths into the manager
  // ("manager.displayName") are $expand'ed instead.
  std::vector<std::string> extra_attributes;
  // Ids or display names: their transitive members get memberOf values
  // (the group's display name and its id).
  std::vector<std::string> groups;
  // Read for every target user (users_exclude) into DirectoryUser::attributes.
  std::vector<std::string> user_attributes;
  int page_size = 999;  // $top of /users (1..999)
  bool photos = true;   // read user photos
};

// Reads a tenant's users and organisational contacts (Source) and its
// groups' transitive members (Directory). Not thread-safe.
class GraphDirectory final : public Source, public Directory {
 public:
  ~GraphDirectory() override;

  // /users (every mapped, filtered and extra property $select'ed; the
  // manager, when anything reads it, $expand'ed) and /contacts, paged;
  // memberOf from the configured groups; photos by $batch.
  // Before reading, fresh delta links are taken ($deltatoken=latest) for
  // Cursor(); when that fails, a warning, and no cursor. Fails as a whole on
  // any error of the read itself.
  Result<std::vector<SourceRecord>> ReadAll() override;
  std::vector<std::string> Warnings() const override { return warnings_; }
  // With a restored cursor: follows its delta links; when neither reports
  // an object, the version the cursor holds (and the new links are kept);
  // else, or when a link fails (410 expired, any error), "". Without a
  // cursor, with groups configured (a membership change is no user
  // change), or with photos read more than a day ago (a photo change is no
  // delta change), "" at once.
  Result<std::string> Version() override;
  void RestoreCursor(const std::string& saved) override;
  std::string Cursor() const override;

  // Delta reads, with the cache: follows the saved delta links (users and
  // org contacts) and reads again, by id in $batch, what they report
  // changed, the reports of a manager who changed (each cached stamp names
  // the manager a user was read with), and, once a day with photos, the
  // users whose photo's media ETag is not the cached one (photo changes are
  // in no delta). Reads in full when the links fail or expire, when the
  // cache does not hold exactly what the links were taken after (a digest
  // of every stamp is kept in the cursor), or when more than
  // max(1000, a quarter) changed. memberOf is derived (Derive), from the
  // group memberships read every run.
  bool ReadsChanges() const override { return true; }
  Result<SourceChanges> ReadChanges(
      const std::unordered_map<std::string, std::string>& cached) override;
  std::string CacheShape() const override;
  void Derive(std::vector<SourceRecord>& records) const override;
  // Managers are read with their reports (ReadChanges re-reads those), so
  // only memberOf is derived: with groups, every record may depend on
  // memberships read this run, and all are prepared (nullopt).
  std::optional<std::vector<std::string>> DerivedDependents(
      const std::vector<SourceRecord>& records,
      const std::vector<const SourceRecord*>& touched) const override;

  // `group` is an object id (a GUID) or a display name (exactly one group
  // must have it). Users only, each once; values from `attribute`
  // (default userPrincipalName; any property or dotted path).
  Result<std::vector<DirectoryUser>> GroupMembers(const std::string& group,
                                                  const std::string& attribute) override;
  // kInvalidArgument: Graph directories name users by group.
  Result<std::vector<DirectoryUser>> SearchUsers(const std::string& query,
                                                 const std::string& attribute) override;

  // What /users is asked to $select (top-level property names, sorted).
  const std::vector<std::string>& user_select() const { return user_select_; }
  // What /users is asked to $expand: "manager($select=displayName)" (and
  // whatever else is read of the manager) when the mapping or an extra
  // attribute reads the manager, else "".
  const std::string& user_expand() const { return user_expand_; }

 private:
  struct State;
  friend Result<std::unique_ptr<GraphDirectory>> OpenGraphDirectory(GraphDirectoryOptions options);
  explicit GraphDirectory(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
  std::vector<std::string> user_select_;
  std::string user_expand_;
  std::vector<std::string> warnings_;
};

// Checks the options (a name, a token provider, property names, page size)
// and creates the client; sends nothing. Errors are kInvalidArgument
// sentences starting with "source NAME: ".
Result<std::unique_ptr<GraphDirectory>> OpenGraphDirectory(GraphDirectoryOptions options);

struct GraphFolderSourceOptions {
  std::string name;
  graph::TokenProvider* tokens = nullptr;
  graph::GraphClientOptions client;
  std::string mailbox;  // user principal name or id
  std::string folder;   // display name; "Parent/Child" walks childFolders
};

// The contacts of one contact folder of one mailbox: key = the contact's
// (immutable) id. Version() by the folder's contacts delta, as the
// directory's. Checks the options; sends nothing.
Result<std::unique_ptr<Source>> OpenGraphFolderSource(GraphFolderSourceOptions options);

// --- the pure part, for tests and the fuzzer --------------------------------

enum class GraphObjectKind { kUser, kOrgContact };

// Where contact fields come from: per field a Graph property path, the
// defaults with GraphDirectoryOptions::mapping applied (users), and the
// fields an org contact fills (its typed phones and office address).
struct GraphMapping {
  std::vector<std::pair<std::string, std::string>> user_fields;
  std::vector<std::pair<std::string, std::string>> contact_fields;
  std::vector<std::string> removed;  // fields mapped to "": never filled
};

// Applies `overrides` (contact field -> property path; "" removes) to the
// defaults; "manager" by itself becomes "manager.displayName". An unknown
// field or a property that is not a Graph name (letters, digits, '_',
// dotted) is kInvalidArgument naming it.
Result<GraphMapping> ResolveGraphMapping(const std::map<std::string, std::string>& overrides);

// One page of /users, /contacts or their deltas (or of transitiveMembers).
struct GraphDirectoryPage {
  std::vector<SourceRecord> records;     // in order; directory objects of other types left out
  size_t removed = 0;                    // "@removed" entries (deltas)
  std::vector<std::string> removed_ids;  // their ids, in order
  std::string next_link, delta_link;     // as sent (absolute http(s), printable, bounded)
};

// Reads a page: every object's properties flattened into attributes
// (strings as they are, booleans "true"/"false", numbers as JSON writes
// them, arrays one value each, objects and arrays of objects by dotted
// path), the contact filled from them as `mapping` says. An expanded
// "manager" gives "manager.displayName" only when the manager is an object
// whose displayName is a string of at most 1 KiB, not blank (control
// characters become U+FFFD), and nothing at all when it is no object. An
// object without a usable id fails the page; an object whose "@odata.type"
// is not the kind's is skipped. Bounded (kMaxGraphPageBytes, kMaxGraphPageItems,
// nesting, values per object); never throws.
Result<GraphDirectoryPage> ParseGraphDirectoryPage(std::string_view json, GraphObjectKind kind,
                                                   const GraphMapping& mapping);

}  // namespace roster
