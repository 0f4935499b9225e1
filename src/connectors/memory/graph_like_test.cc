#include "connectors/memory/graph_like.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <future>
#include <set>
#include <thread>

namespace roster {
namespace {

class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return now_; }
  void SleepFor(std::chrono::milliseconds d) override { now_ += d; }

 private:
  std::chrono::steady_clock::time_point now_{};
};

Contact Person(const std::string& given, const std::string& family) {
  Contact c;
  c.given_name = given;
  c.family_name = family;
  c.emails.push_back({given + "@example.com", {"work"}, false});
  return c;
}

Photo Jpeg(const std::string& bytes) { return Photo{"image/jpeg", "\xff\xd8\xff" + bytes, ""}; }

struct Fixture {
  FakeClock clock;
  std::shared_ptr<GraphLikeServer> server;
  std::unique_ptr<Target> target;
  std::unique_ptr<Collection> folder;
  std::deque<ItemBody> bodies;  // what the ops point at

  explicit Fixture(GraphLikeOptions options = {}, uint64_t seed = 7)
      : server(std::make_shared<GraphLikeServer>(seed)) {
    if (!options.clock) options.clock = &clock;
    target = NewGraphLikeTarget(server, options);
    folder = Open("alice");
  }
  std::unique_ptr<Collection> Open(const std::string& user) {
    return std::move(target->Open({user, "Company", "r", ""}, true)).value();
  }
  const ItemBody* Keep(const Contact& c) { return &bodies.emplace_back(c); }
  WriteOp CreateOp(const Contact& c, const std::string& key) {
    WriteOp op;
    op.kind = WriteOp::Kind::kCreate;
    op.tag = {"r", key};
    op.body = Keep(c);
    return op;
  }
  WriteOp UpdateOp(const RemoteItem& current, const Contact& c) {
    WriteOp op;
    op.kind = WriteOp::Kind::kUpdate;
    op.href = current.href;
    op.if_match = current.etag;
    op.tag = current.tag.value_or(ManagedTag{});
    op.body = Keep(c);
    op.current = &bodies.emplace_back(current.body);
    return op;
  }
  // Creates one item through a batch and reads it back.
  RemoteItem Put(const Contact& c, const std::string& key) {
    std::vector<WriteOutcome> out = folder->WriteBatch({CreateOp(c, key)});
    EXPECT_TRUE(out.at(0).status.ok());
    return Read(out.at(0).result.href);
  }
  RemoteItem Read(const std::string& href) {
    std::vector<RemoteItem> items = std::move(folder->Fetch({href})).value();
    EXPECT_EQ(items.size(), 1u);
    return items.at(0);
  }
  const Contact& Body(const RemoteItem& r) { return std::get<Contact>(r.body); }
  Contact Projected(const Contact& c) { return std::get<Contact>(target->Project(c)); }
};

TEST(GraphLike, FoldersAreFoundByDisplayNameAndGetServerIds) {
  auto server = std::make_shared<GraphLikeServer>();
  auto target = NewGraphLikeTarget(server);
  EXPECT_EQ(target->Open({"alice", "Company", "r", ""}, false).error().kind, ErrorKind::kNotFound);
  auto made = std::move(target->Open({"alice", "Company", "r", ""}, true)).value();
  const std::string fid = server->FolderId("alice", "Company");
  EXPECT_TRUE(fid.starts_with("AAMk"));
  EXPECT_EQ(made->id(), "graph-like:/users/alice/contactFolders/" + fid);
  auto found = std::move(target->Open({"alice", "company", "r", ""}, false)).value();
  EXPECT_EQ(found->id(), made->id());

  const int64_t before = server->counters().http_requests;
  auto known = std::move(target->Open({"alice", "Company", "r", made->id()}, false)).value();
  EXPECT_EQ(known->id(), made->id());
  EXPECT_EQ(server->counters().http_requests, before);  // opened without asking
  EXPECT_EQ(server->counters().folder_creates, 1);

  EXPECT_EQ(made->create_mode(), CreateMode::kServerId);
  EXPECT_EQ(made->max_batch(), 20u);
  EXPECT_TRUE(made->update_reads_current());
  EXPECT_EQ(made->limit_bucket(), "graph-like/alice");
  EXPECT_EQ(target->projection_name(), "graph-like-contact-1");
}

TEST(GraphLike, ServerAssignsIdsAndEveryWriteChangesTheEtag) {
  Fixture f;
  Result<WriteResult> a = f.folder->Create("roster-ignored", {"r", "a"}, Person("Ann", "Lee"));
  Result<WriteResult> b = f.folder->Create("roster-ignored", {"r", "b"}, Person("Bo", "Kim"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->href.starts_with("AAMk"));
  EXPECT_NE(a->href, b->href);
  EXPECT_EQ(a->href.find("ignored"), std::string::npos);
  EXPECT_TRUE(a->etag.starts_with("W/\""));

  Contact changed = Person("Ann", "Lee");
  changed.title = "CTO";
  Result<WriteResult> updated = f.folder->Update(a->href, a->etag, {"r", "a"}, changed);
  ASSERT_TRUE(updated.ok());
  EXPECT_NE(updated->etag, a->etag);
  changed.photo = Jpeg("x");
  Result<WriteResult> photo = f.folder->Update(a->href, updated->etag, {"r", "a"}, changed);
  ASSERT_TRUE(photo.ok());
  EXPECT_NE(photo->etag, updated->etag);
  EXPECT_EQ(f.server->Items("alice", "Company").at(a->href).etag, photo->etag);

  Fixture same({}, 7), other({}, 8);
  EXPECT_EQ(same.folder->Create("", {"r", "a"}, Person("Ann", "Lee"))->href, a->href);
  EXPECT_NE(other.folder->Create("", {"r", "a"}, Person("Ann", "Lee"))->href, a->href);
}

TEST(GraphLike, BatchOfTwentyIsNotAtomic) {
  Fixture f;
  f.server->SetFault([](const GraphLikeStep& step) -> std::optional<StepFault> {
    if (step.kind == "create" && step.key == "k7") {
      return StepFault{MakeError(ErrorKind::kInvalidData, "HTTP 400 (injected)")};
    }
    return std::nullopt;
  });
  std::vector<WriteOp> ops;
  for (int i = 0; i < 20; ++i) {
    ops.push_back(f.CreateOp(Person("P" + std::to_string(i), "X"), "k" + std::to_string(i)));
  }
  std::vector<WriteOutcome> out = f.folder->WriteBatch(ops);
  ASSERT_EQ(out.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(out[i].status.ok(), i != 7) << i;
  EXPECT_EQ(out[7].status.error().kind, ErrorKind::kInvalidData);
  EXPECT_EQ(f.server->Items("alice", "Company").size(), 19u);
  const GraphLikeCounters c = f.server->counters();
  EXPECT_EQ(c.batch_calls, 1);
  EXPECT_EQ(c.sub_requests, 20);
  EXPECT_EQ(c.creates, 19);
  EXPECT_EQ(c.max_in_flight.at("alice"), 4);
}

TEST(GraphLike, MoreThanTwentyOpsAreRefusedWhole) {
  Fixture f;
  std::vector<WriteOp> ops;
  for (int i = 0; i < 21; ++i) ops.push_back(f.CreateOp(Person("P", "X"), std::to_string(i)));
  std::vector<WriteOutcome> out = f.folder->WriteBatch(ops);
  ASSERT_EQ(out.size(), 21u);
  for (const WriteOutcome& o : out) EXPECT_EQ(o.status.error().kind, ErrorKind::kInvalidArgument);
  EXPECT_TRUE(f.server->Items("alice", "Company").empty());
  EXPECT_EQ(f.server->counters().sub_requests, 0);
}

TEST(GraphLike, UpdateMergesWhatDiffersWithExplicitClears) {
  Fixture f;
  Contact c = Person("Ann", "Lee");
  c.title = "CTO";
  c.department = "R&D";
  const RemoteItem current = f.Put(f.Projected(c), "a");
  Contact want = f.Body(current);
  want.title.clear();
  want.department = "Sales";
  const int64_t sent = f.server->counters().fields_sent;
  std::vector<WriteOutcome> out = f.folder->WriteBatch({f.UpdateOp(current, want)});
  ASSERT_TRUE(out[0].status.ok());
  EXPECT_EQ(f.server->counters().fields_sent - sent, 2);  // jobTitle cleared, department
  const GraphLikeItem stored = f.server->Items("alice", "Company").at(current.href);
  EXPECT_EQ(stored.contact.title, "");
  EXPECT_EQ(stored.contact.department, "Sales");
  EXPECT_EQ(stored.contact.given_name, "Ann");
  EXPECT_EQ(stored.etag, out[0].result.etag);
}

TEST(GraphLike, UnchangedUpdateSendsNothing) {
  Fixture f;
  const RemoteItem current = f.Put(f.Projected(Person("Ann", "Lee")), "a");
  const GraphLikeCounters before = f.server->counters();
  std::vector<WriteOutcome> out = f.folder->WriteBatch({f.UpdateOp(current, f.Body(current))});
  ASSERT_TRUE(out[0].status.ok());
  EXPECT_EQ(out[0].result.etag, current.etag);
  Result<WriteResult> single =
      f.folder->Update(current.href, current.etag, *current.tag, f.Body(current));
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->etag, current.etag);
  const GraphLikeCounters after = f.server->counters();
  EXPECT_EQ(after.fields_sent, before.fields_sent);
  EXPECT_EQ(after.sub_requests, before.sub_requests);
  EXPECT_EQ(after.updates, before.updates);
  EXPECT_EQ(after.noop_updates, before.noop_updates + 2);
}

TEST(GraphLike, ServerFilledDisplayNameIsNoDifference) {
  Fixture f;
  Contact x = Person("Ann", "Lee");
  x.honorific_prefix = "Dr.";  // the vCard side would say "Dr. Ann Lee"; Outlook says "Ann Lee"
  const Contact projected = f.Projected(x);
  EXPECT_EQ(projected.formatted_name, "Ann Lee");
  const RemoteItem from_projected = f.Put(projected, "a");
  const RemoteItem from_raw = f.Put(x, "b");  // displayName left to the server
  for (const RemoteItem& r : {from_projected, from_raw}) {
    EXPECT_EQ(f.Body(r), projected);
    EXPECT_EQ(r.content_hash, ContentHash(projected));
    EXPECT_EQ(f.server->Items("alice", "Company").at(r.href).file_as, "Lee, Ann");
  }
}

TEST(GraphLike, ProjectionKeepsWhatAGraphContactHolds) {
  Fixture f;
  Contact c = Person("Ann", "Lee");
  c.emails = {{"a@x", {"work"}, false},
              {"b@x", {"home"}, false},
              {"c@x", {}, true},
              {"d@x", {"other"}, false}};
  c.phones = {{"+1", {"cell"}, false}, {"+2", {"cell"}, false}, {"+3", {"work"}, false},
              {"+4", {"work"}, false}, {"+5", {"work"}, false}, {"+6", {"home"}, false},
              {"+7", {"fax"}, false},  {"+8", {"pager"}, false}};
  c.addresses = {PostalAddress{{"work"}, "", "Floor 3", "1 Main St"},
                 PostalAddress{{"home"}, "", "", "2 Elm St"},
                 PostalAddress{{"other"}, "", "", "3 Oak St"},
                 PostalAddress{{"postal"}, "", "", "4 Ash St"}};
  c.urls = {{"https://a", {}, false}, {"https://b", {}, true}};
  c.role = "Architect";
  c.photo = Jpeg("p");
  const Contact p = f.Projected(c);
  ASSERT_EQ(p.emails.size(), 3u);
  EXPECT_EQ(p.emails[0].value, "c@x");  // preferred first, then in order
  EXPECT_EQ(p.emails[1].value, "a@x");
  EXPECT_EQ(p.emails[2].value, "b@x");
  std::vector<std::string> phones;
  for (const TypedValue& tv : p.phones) phones.push_back(tv.value);
  EXPECT_EQ(phones, (std::vector<std::string>{"+1", "+3", "+4", "+6"}));
  ASSERT_EQ(p.addresses.size(), 3u);
  EXPECT_EQ(p.addresses[0].extended, "Floor 3");  // officeLocation
  ASSERT_EQ(p.urls.size(), 1u);
  EXPECT_EQ(p.urls[0].value, "https://b");
  EXPECT_EQ(p.role, "");
  EXPECT_EQ(p.photo, c.photo);
  EXPECT_EQ(f.Projected(p), p);  // a projection projects onto itself

  EXPECT_EQ(f.folder->Create("", {"r", "a"}, c).error().kind, ErrorKind::kInvalidArgument);
  const RemoteItem stored = f.Put(p, "a");
  EXPECT_EQ(f.Body(stored), p);

  // A single Create sends the contact, then the photo: two requests.
  const GraphLikeCounters before = f.server->counters();
  ASSERT_TRUE(f.folder->Create("", {"r", "b"}, p).ok());
  EXPECT_EQ(f.server->counters().http_requests - before.http_requests, 2);
  EXPECT_EQ(f.server->counters().sub_requests, before.sub_requests);
}

TEST(GraphLike, PhotoIsASecondSubRequest) {
  Fixture f;
  Contact c = f.Projected(Person("Ann", "Lee"));
  c.photo = Jpeg("p");
  std::vector<WriteOutcome> out = f.folder->WriteBatch({f.CreateOp(c, "a")});
  ASSERT_TRUE(out[0].status.ok());
  GraphLikeCounters counters = f.server->counters();
  EXPECT_EQ(counters.http_requests, 3);  // the folder's lookup and creation, and the $batch
  EXPECT_EQ(counters.sub_requests, 2);
  EXPECT_EQ(counters.photo_writes, 1);
  const GraphLikeItem stored = f.server->Items("alice", "Company").at(out[0].result.href);
  EXPECT_EQ(stored.photo, c.photo);
  EXPECT_EQ(stored.etag, out[0].result.etag);

  c.photo = Jpeg("q");  // a new photo alone: one sub-request, no PATCH
  const RemoteItem current = f.Read(out[0].result.href);
  out = f.folder->WriteBatch({f.UpdateOp(current, c)});
  ASSERT_TRUE(out[0].status.ok());
  counters = f.server->counters();
  EXPECT_EQ(counters.sub_requests, 2 + 1 + 1);  // and the Fetch's
  EXPECT_EQ(counters.updates, 0);
  EXPECT_EQ(counters.photo_writes, 2);
}

TEST(GraphLike, PhotoStepFailureReportsWhatLanded) {
  Fixture f;
  f.server->SetFault([](const GraphLikeStep& step) -> std::optional<StepFault> {
    if (step.kind != "photo") return std::nullopt;
    return StepFault{MakeError(ErrorKind::kTransient, "HTTP 503 (injected)")};
  });
  Contact c = f.Projected(Person("Ann", "Lee"));
  c.photo = Jpeg("p");
  std::vector<WriteOutcome> out = f.folder->WriteBatch({f.CreateOp(c, "a")});
  ASSERT_FALSE(out[0].status.ok());
  EXPECT_EQ(out[0].status.error().kind, ErrorKind::kTransient);
  EXPECT_FALSE(out[0].ambiguous);
  ASSERT_TRUE(out[0].landed.has_value());
  Contact without = c;
  without.photo.reset();
  EXPECT_EQ(std::get<Contact>(*out[0].landed), without);
  const GraphLikeItem stored = f.server->Items("alice", "Company").at(out[0].result.href);
  EXPECT_EQ(stored.etag, out[0].result.etag);
  EXPECT_FALSE(stored.photo.has_value());
  EXPECT_EQ(stored.tag, (ManagedTag{"r", "a"}));
}

TEST(GraphLike, PhotoCannotBeRemoved) {
  Fixture f;
  Contact c = f.Projected(Person("Ann", "Lee"));
  c.photo = Jpeg("p");
  const RemoteItem current = f.Put(c, "a");
  Contact want = c;
  want.photo.reset();
  want.title = "CTO";
  std::vector<WriteOutcome> out = f.folder->WriteBatch({f.UpdateOp(current, want)});
  ASSERT_FALSE(out[0].status.ok());
  EXPECT_EQ(out[0].status.error().kind, ErrorKind::kConflict);
  ASSERT_TRUE(out[0].landed.has_value());
  Contact landed = want;
  landed.photo = c.photo;
  EXPECT_EQ(std::get<Contact>(*out[0].landed), landed);
}

TEST(GraphLike, PreconditionsOfUpdateAndDelete) {
  Fixture f;
  const RemoteItem current = f.Put(f.Projected(Person("Ann", "Lee")), "a");
  Contact changed = f.Body(current);
  changed.title = "CTO";
  EXPECT_EQ(f.folder->Update(current.href, "W/\"old\"", {"r", "a"}, changed).error().kind,
            ErrorKind::kPreconditionFailed);
  EXPECT_EQ(f.folder->Update("AAMkmissing", "W/\"x\"", {"r", "a"}, changed).error().kind,
            ErrorKind::kNotFound);
  EXPECT_EQ(f.folder->Delete(current.href, "W/\"old\"").error().kind,
            ErrorKind::kPreconditionFailed);
  EXPECT_TRUE(f.folder->Delete("AAMkmissing", "W/\"x\"").ok());
  EXPECT_TRUE(f.folder->Delete(current.href, current.etag).ok());
  EXPECT_TRUE(f.server->Items("alice", "Company").empty());
}

TEST(GraphLike, SecondBatchOverTheMailboxConcurrencyIsThrottled) {
  Fixture f;
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> held{false};
  f.server->SetInFlightHook([&](const std::string& user, const std::string& call) {
    if (user == "alice" && call == "batch" && !held.exchange(true)) {
      entered.set_value();
      released.wait();
    }
  });
  auto batch = [&f](const std::string& prefix) {
    std::vector<WriteOp> ops;
    for (int i = 0; i < 20; ++i)
      ops.push_back(f.CreateOp(Person("P", "X"), prefix + std::to_string(i)));
    return ops;
  };
  const std::vector<WriteOp> first_ops = batch("a"), second_ops = batch("b"), bob_ops = batch("c");
  std::unique_ptr<Collection> second = f.Open("alice");
  std::unique_ptr<Collection> bob = f.Open("bob");
  std::vector<WriteOutcome> first_out, second_out;
  std::thread first([&] { first_out = f.folder->WriteBatch(first_ops); });
  entered.get_future().wait();
  EXPECT_EQ(f.server->in_flight("alice"), 4);
  std::thread other([&] { second_out = second->WriteBatch(second_ops); });
  other.join();
  const std::vector<WriteOutcome> bob_out = bob->WriteBatch(bob_ops);  // another mailbox
  release.set_value();
  first.join();

  for (const WriteOutcome& o : first_out) EXPECT_TRUE(o.status.ok());
  for (const WriteOutcome& o : bob_out) EXPECT_TRUE(o.status.ok());
  ASSERT_EQ(second_out.size(), 20u);
  for (const WriteOutcome& o : second_out) {
    ASSERT_FALSE(o.status.ok());
    EXPECT_EQ(o.status.error().kind, ErrorKind::kThrottled);
    EXPECT_EQ(o.status.error().retry_after, std::chrono::seconds(1));
  }
  const GraphLikeCounters c = f.server->counters();
  EXPECT_EQ(c.throttled_concurrency, 20);
  EXPECT_EQ(c.max_in_flight.at("alice"), 4);
  EXPECT_EQ(f.server->in_flight("alice"), 0);
  EXPECT_EQ(f.server->Items("alice", "Company").size(), 20u);
}

TEST(GraphLike, RequestWindowThrottlesUntilItFrees) {
  GraphLikeOptions options;
  options.window_requests = 5;
  options.window = std::chrono::seconds(60);
  Fixture f(options);
  std::vector<WriteOp> ops;
  for (int i = 0; i < 7; ++i) ops.push_back(f.CreateOp(Person("P", "X"), std::to_string(i)));
  std::vector<WriteOutcome> out = f.folder->WriteBatch(ops);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(out[i].status.ok(), i < 5) << i;
  EXPECT_EQ(out[6].status.error().kind, ErrorKind::kThrottled);
  EXPECT_EQ(out[6].status.error().retry_after, std::chrono::seconds(60));
  EXPECT_EQ(f.server->counters().throttled_window, 2);

  f.clock.SleepFor(std::chrono::seconds(30));
  Result<WriteResult> early = f.folder->Create("", {"r", "late"}, Person("L", "X"));
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().retry_after, std::chrono::seconds(30));
  f.clock.SleepFor(std::chrono::seconds(30));
  EXPECT_TRUE(f.folder->Create("", {"r", "late"}, Person("L", "X")).ok());
  EXPECT_EQ(f.server->counters().throttled_window, 3);
}

// The outcomes of 10 batches of 20 creates under seeded faults, a letter
// each: '.' done, 'T' throttled, 'X' transient, 'L' answer lost.
std::string RunWithFaults(uint64_t seed, GraphLikeCounters* counters = nullptr,
                          size_t* stored = nullptr) {
  Fixture f;
  f.server->SetRandomFaults({0.2, 0.1, 0.3, seed});
  std::string trace;
  for (int b = 0; b < 10; ++b) {
    std::vector<WriteOp> ops;
    for (int i = 0; i < 20; ++i) ops.push_back(f.CreateOp(Person("P", "X"), std::to_string(i)));
    for (const WriteOutcome& o : f.folder->WriteBatch(ops)) {
      if (o.ambiguous) {
        trace += 'L';
      } else if (o.status.ok()) {
        trace += '.';
      } else {
        trace += o.status.error().kind == ErrorKind::kThrottled ? 'T' : 'X';
      }
    }
  }
  if (counters) *counters = f.server->counters();
  if (stored) *stored = f.server->Items("alice", "Company").size();
  return trace;
}

TEST(GraphLike, RandomFaultsAreDeterministicPerSeed) {
  GraphLikeCounters c;
  size_t stored = 0;
  const std::string trace = RunWithFaults(11, &c, &stored);
  EXPECT_EQ(RunWithFaults(11), trace);
  EXPECT_NE(RunWithFaults(12), trace);
  EXPECT_GT(c.throttled_injected, 0);
  EXPECT_GT(c.injected_5xx, 0);
  EXPECT_GT(c.answers_lost, 0);
  EXPECT_NE(trace.find('L'), std::string::npos);
  // Lost answers hide writes that were done: more landed than were answered.
  EXPECT_EQ(static_cast<int64_t>(stored), c.creates);
  EXPECT_GT(c.creates, std::count(trace.begin(), trace.end(), '.'));
}

TEST(GraphLike, LostAnswerLeavesTheWriteDone) {
  Fixture f;
  f.server->SetFault([](const GraphLikeStep& step) -> std::optional<StepFault> {
    if (step.kind != "create") return std::nullopt;
    return StepFault{MakeError(ErrorKind::kTransient, "timeout (injected)"), true};
  });
  std::vector<WriteOutcome> out = f.folder->WriteBatch({f.CreateOp(Person("A", "L"), "a")});
  EXPECT_EQ(out[0].status.error().kind, ErrorKind::kTransient);
  EXPECT_TRUE(out[0].ambiguous);
  EXPECT_EQ(out[0].result.href, "");
  const auto items = f.server->Items("alice", "Company");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items.begin()->second.tag, (ManagedTag{"r", "a"}));
}

TEST(GraphLike, ListPagesAndDeltaCarryTheItems) {
  Fixture f;
  std::vector<std::string> hrefs;
  for (int i = 0; i < 250; ++i) {
    hrefs.push_back(f.server->PutByHand("alice", "Company", Person("P" + std::to_string(i), "X")));
  }
  f.server->ResetCounters();
  Listing full = std::move(f.folder->List("")).value();
  EXPECT_TRUE(full.full);
  EXPECT_EQ(full.changed.size(), 250u);
  ASSERT_EQ(full.items.size(), 250u);
  EXPECT_FALSE(full.items[0].tag.has_value());
  for (const RemoteItem& r : full.items) {
    EXPECT_EQ(r.content_hash, ContentHash(std::get<Contact>(r.body)));
    EXPECT_EQ(f.target->Project(r.body), r.body);  // listed in the projected form
  }
  EXPECT_EQ(f.server->counters().list_pages, 3);
  EXPECT_EQ(f.server->counters().http_requests, 3);

  ASSERT_FALSE(f.server->EditByHand("alice", "Company", hrefs[3], Person("Q", "X")).empty());
  f.server->RemoveByHand("alice", "Company", hrefs[4]);
  const std::string made = f.folder->Create("", {"r", "n"}, Person("N", "X"))->href;
  Listing delta = std::move(f.folder->List(full.sync_token)).value();
  EXPECT_FALSE(delta.full);
  EXPECT_EQ(delta.removed, std::vector<std::string>{hrefs[4]});
  ASSERT_EQ(delta.items.size(), 2u);
  std::set<std::string> changed;
  for (const RemoteItem& r : delta.items) changed.insert(r.href);
  EXPECT_EQ(changed, (std::set<std::string>{hrefs[3], made}));
  EXPECT_EQ(f.server->counters().list_pages, 4);

  EXPECT_TRUE(std::move(f.folder->List("bogus")).value().full);
  ASSERT_TRUE(f.server->RemoveFolder("alice", "Company"));
  EXPECT_EQ(f.folder->List(delta.sync_token).error().kind, ErrorKind::kNotFound);
}

TEST(GraphLike, FetchSendsBatchesOfTwenty) {
  Fixture f;
  std::vector<std::string> hrefs;
  for (int i = 0; i < 45; ++i) {
    hrefs.push_back(f.server->PutByHand("alice", "Company", Person("P" + std::to_string(i), "X")));
  }
  hrefs.push_back("AAMkmissing");
  f.server->ResetCounters();
  std::vector<RemoteItem> items = std::move(f.folder->Fetch(hrefs)).value();
  EXPECT_EQ(items.size(), 45u);
  const GraphLikeCounters c = f.server->counters();
  EXPECT_EQ(c.batch_calls, 3);
  EXPECT_EQ(c.http_requests, 3);
  EXPECT_EQ(c.sub_requests, 46);
  EXPECT_EQ(c.fetched, 45);
}

}  // namespace
}  // namespace roster
