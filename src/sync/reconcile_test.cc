// The pure steps of a collection run, table-driven: mode choice, merging a
// listing with the state, learning what the reads told, and confirming writes.
#include "sync/reconcile.h"

#include <gtest/gtest.h>

namespace roster {
namespace {

struct ModeCase {
  const char* name;
  bool full;
  bool delta_empty;
  const char* token;
  bool has_previous;
  const char* synced;
  CollectionMode want;
};

TEST(ChooseMode, Table) {
  // "now" and "prev" are the collection fingerprints of this run's selection
  // and of the previous snapshot's.
  const ModeCase cases[] = {
      {"nothing changed anywhere", false, true, "t1", true, "now", CollectionMode::kQuiet},
      {"only the source changed", false, true, "t1", true, "prev", CollectionMode::kIncremental},
      {"the book changed", false, false, "t1", true, "now", CollectionMode::kFull},
      {"a full listing (token unknown)", true, true, "t1", true, "now", CollectionMode::kFull},
      {"no stored token", false, true, "", true, "now", CollectionMode::kFull},
      {"first sync of the rule", false, true, "t1", false, "now", CollectionMode::kFull},
      {"last run did not finish clean", false, true, "t1", true, "", CollectionMode::kFull},
      {"matched some older selection", false, true, "t1", true, "older", CollectionMode::kFull},
  };
  for (const ModeCase& c : cases) {
    Listing listing;
    listing.full = c.full;
    if (!c.delta_empty) listing.changed.push_back({"/b/x.vcf", "e2"});
    CollectionState state;
    state.sync_token = c.token;
    state.synced_snapshot = c.synced;
    ModeInput in{&listing, &state, c.has_previous, "now", "prev"};
    EXPECT_EQ(ChooseMode(in), c.want) << c.name;
  }
}

TEST(CollectionFingerprint, SpecialisedOnlyWhenTheBookDiffers) {
  EXPECT_EQ(CollectionFingerprint("sel", "", AdoptMode::kNever), "sel");
  EXPECT_EQ(CollectionFingerprint("", "p1", AdoptMode::kMerge), "");
  std::string self = CollectionFingerprint("sel", "p1", AdoptMode::kNever);
  std::string merge = CollectionFingerprint("sel", "", AdoptMode::kMerge);
  EXPECT_NE(self, "sel");
  EXPECT_NE(merge, "sel");
  EXPECT_NE(self, merge);
  EXPECT_NE(self, CollectionFingerprint("sel", "p2", AdoptMode::kNever));
}

ItemState Stored(const std::string& href, const std::string& etag, const std::string& key) {
  return ItemState{href, etag, etag, key, "h-" + href, "", ""};
}

struct ReconcileCase {
  const char* name;
  bool full;
  std::vector<ItemRef> changed;
  std::vector<std::string> removed;
  std::vector<std::string> want_removed;
  std::vector<std::string> want_unknown;
};

TEST(ReconcileListing, Table) {
  // The state knows /a (managed, e1), /b (managed, e1) and /c (the user's, e1).
  const ReconcileCase cases[] = {
      {"full listing, all the same", true, {{"/a", "e1"}, {"/b", "e1"}, {"/c", "e1"}}, {}, {}, {}},
      {"full listing drops what it does not name", true, {{"/a", "e1"}}, {}, {"/b", "/c"}, {}},
      {"full listing, changed etag and new item",
       true,
       {{"/a", "e2"}, {"/b", "e1"}, {"/c", "e1"}, {"/d", "e1"}},
       {},
       {},
       {"/a", "/d"}},
      {"delta: removed and changed", false, {{"/b", "e9"}}, {"/a"}, {"/a"}, {"/b"}},
      {"delta: removing an unknown href is nothing", false, {}, {"/zz"}, {}, {}},
      {"delta: removed then listed again stays", false, {{"/a", "e1"}}, {"/a"}, {}, {}},
  };
  for (const ReconcileCase& c : cases) {
    Listing listing;
    listing.full = c.full;
    listing.changed = c.changed;
    listing.removed = c.removed;
    Reconciliation r = ReconcileListing(
        {Stored("/a", "e1", "k1"), Stored("/b", "e1", "k2"), Stored("/c", "e1", "")}, listing);
    EXPECT_EQ(r.removed, c.want_removed) << c.name;
    EXPECT_EQ(r.unknown, c.want_unknown) << c.name;
  }
}

RemoteItem Remote(const std::string& href, const std::string& etag, const char* rule,
                  const std::string& key, const std::string& email = "") {
  RemoteItem item;
  item.href = href;
  item.etag = etag;
  if (rule) item.tag = ManagedTag{rule, key};
  Contact contact;
  if (!email.empty()) contact.emails.push_back({email, {}, false});
  item.body = contact;
  item.content_hash = "remote-" + href;
  return item;
}

TEST(LearnFetched, MarkersDecideOwnership) {
  Listing listing;
  listing.full = true;
  listing.changed = {{"/a", "e2"}, {"/b", "e2"}, {"/c", "e2"}, {"/d", "e1"}, {"/e", "e1"}};
  Reconciliation r = ReconcileListing(
      {Stored("/a", "e1", "k1"), Stored("/b", "e1", "k2"), Stored("/c", "e1", "k3")}, listing);
  ASSERT_EQ(r.unknown.size(), 5u);
  std::vector<RemoteItem> fetched;
  fetched.push_back(Remote("/a", "e2", "company", "k1"));                 // still ours, same person
  fetched.push_back(Remote("/b", "e2", "other", "k2"));                   // another rule's now
  fetched.push_back(Remote("/c", "e2", "company", "k9"));                 // ours, another person
  fetched.push_back(Remote("/d", "e1", nullptr, "", "Ann@Example.com"));  // the user's own
  RemoteItem broken = Remote("/x", "e1", "company", "k5");                // not asked for: ignored
  fetched.push_back(broken);
  // /e was listed but is gone by the time it is read.
  std::vector<std::string> warnings;
  std::vector<ItemState> learned = LearnFetched(r, std::move(fetched), "company", warnings);
  ASSERT_EQ(learned.size(), 4u);
  EXPECT_EQ(learned[0].key, "k1");
  EXPECT_EQ(learned[1].key, "");    // another rule's item is not ours to change
  EXPECT_EQ(learned[1].match, "");  // nor a user's own card to adopt
  EXPECT_EQ(learned[2].key, "k9");
  EXPECT_EQ(learned[3].key, "");
  EXPECT_NE(learned[3].match, "");
  EXPECT_EQ(r.removed, std::vector<std::string>{"/e"});
  EXPECT_TRUE(warnings.empty());

  int64_t managed = 0;
  std::unordered_map<std::string, std::string> fields;
  std::vector<CurrentItem> current = CurrentItems(std::move(r), &managed, &fields);
  EXPECT_EQ(managed, 2);              // /a and /c
  ASSERT_EQ(current.size(), 3u);      // and /d, which can be matched by e-mail
  EXPECT_TRUE(current[0].recorded);   // /a: known before, same key
  EXPECT_FALSE(current[1].recorded);  // /c: a key the state did not know there
  EXPECT_EQ(current[2].href, "/d");
}

TEST(LearnFetched, AnUnreadableItemIsOursOnlyByItsMarker) {
  Listing listing;
  listing.full = true;
  listing.changed = {{"/a", "e1"}, {"/b", "e1"}};
  Reconciliation r = ReconcileListing({}, listing);
  RemoteItem ours = Remote("/a", "e1", "company", "k1");
  ours.parse_error = "the property 'givenName' is a number, not a string";
  RemoteItem nobodys = Remote("/b", "e1", nullptr, "", "ann@example.com");
  nobodys.parse_error = "no END:VCARD";
  std::vector<RemoteItem> fetched{ours, nobodys};
  std::vector<std::string> warnings;
  auto learned = LearnFetched(r, std::move(fetched), "company", warnings);
  ASSERT_EQ(learned.size(), 2u);
  // The marker says it is ours: managed, so it is rewritten, never duplicated.
  EXPECT_EQ(learned[0].key, "k1");
  // No marker: left alone, and not matched to a person by its unreadable body.
  EXPECT_EQ(learned[1].key, "");
  EXPECT_EQ(learned[1].match, "");
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("carries roster's marker and is written again"), std::string::npos);
  EXPECT_NE(warnings[1].find("/b could not be read and is left alone"), std::string::npos);
}

struct ConfirmCase {
  const char* name;
  std::vector<ItemRef> changed;
  std::vector<std::string> removed;
  bool clean;
  size_t confirmed;
  size_t errors;
};

TEST(ConfirmWrites, Table) {
  // This run wrote /a (etag e2, told by the server) and /b (no etag told),
  // and deleted /z.
  const ConfirmCase cases[] = {
      {"only our writes", {{"/a", "e2"}, {"/b", "e7"}}, {"/z"}, true, 1, 0},
      {"someone else changed /c too",
       {{"/a", "e2"}, {"/b", "e7"}, {"/c", "e1"}},
       {"/z"},
       false,
       1,
       0},
      {"our /a changed again since", {{"/a", "e3"}, {"/b", "e7"}}, {"/z"}, false, 1, 0},
      {"someone deleted /y", {{"/a", "e2"}, {"/b", "e7"}}, {"/z", "/y"}, false, 1, 0},
      {"/b acknowledged but not listed", {{"/a", "e2"}}, {"/z"}, false, 0, 1},
      {"/a deleted by someone right after", {{"/b", "e7"}}, {"/z", "/a"}, false, 1, 0},
  };
  std::vector<ItemState> written{{"/a", "e2", "e2", "k1", "h1", "", ""},
                                 {"/b", "", "", "k2", "h2", "", ""}};
  for (const ConfirmCase& c : cases) {
    Listing after;
    after.changed = c.changed;
    after.removed = c.removed;
    Confirmation got = ConfirmWrites(written, {"/z"}, after);
    EXPECT_EQ(got.clean, c.clean) << c.name;
    EXPECT_EQ(got.confirmed.size(), c.confirmed) << c.name;
    EXPECT_EQ(got.errors.size(), c.errors) << c.name;
    EXPECT_EQ(got.seen.size(), c.changed.size()) << c.name;
    if (c.confirmed) {
      EXPECT_EQ(got.confirmed[0].href, "/b") << c.name;
      EXPECT_EQ(got.confirmed[0].etag, "e7") << c.name;
    }
    if (c.errors) {
      EXPECT_NE(std::find(got.removed.begin(), got.removed.end(), "/b"), got.removed.end());
    }
  }
}

}  // namespace
}  // namespace roster
