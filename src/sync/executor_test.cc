#include <gtest/gtest.h>

#include "connectors/memory/memory.h"
#include "core/fake_clock.h"
#include "sync/sync.h"

namespace roster {
namespace {

struct Fixture {
  std::shared_ptr<MemoryServer> server = std::make_shared<MemoryServer>();
  std::unique_ptr<Target> target = NewMemoryTarget(server);
  std::unique_ptr<StateStore> store = std::move(OpenSqliteStateStore(":memory:")).value();
  std::unique_ptr<Collection> collection;
  int64_t id = 0;
  FakeClock clock;
  std::map<std::string, DesiredItem> desired;

  Fixture() {
    collection = std::move(target->Open({"alice", "Book", "r", ""}, true)).value();
    id = store->OpenCollection({"r", "t", "alice"})->id;
  }
  void Want(const std::string& key, const std::string& name) {
    Contact c;
    c.formatted_name = name;
    auto p = std::make_shared<const ItemBody>(c);
    desired[key] = DesiredItem{key, ContentHash(c), p};
  }
  ExecuteResult Execute(const Plan& plan) {
    ExecuteContext ctx;
    ctx.collection = collection.get();
    ctx.store = store.get();
    ctx.collection_id = id;
    ctx.rule = "r";
    ctx.desired = [&](const std::string& k) -> const DesiredItem* {
      auto it = desired.find(k);
      return it == desired.end() ? nullptr : &it->second;
    };
    ctx.resource_name = [](const std::string& k) { return "roster-" + k; };
    ctx.clock = &clock;
    ctx.retry.initial_backoff = std::chrono::milliseconds(100);
    return ExecutePlan(plan, ctx);
  }
};

TEST(Executor, CreatesAndRecordsEachItem) {
  Fixture f;
  f.Want("a", "Ann");
  Plan plan;
  plan.actions.push_back(CreateAction{"a"});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.created, 1);
  EXPECT_TRUE(r.errors.empty());
  auto items = f.store->LoadItems(f.id);
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].href, "/alice/roster-a");
  EXPECT_EQ((*items)[0].key, "a");
  EXPECT_TRUE((*items)[0].known());
  EXPECT_EQ(f.server->Items("alice").begin()->second.tag->key, "a");
}

TEST(Executor, RetriesTransientFailuresWithBackoffAndRetryAfter) {
  Fixture f;
  f.Want("a", "Ann");
  int calls = 0;
  f.server->SetFault([&](const std::string&, const std::string&) -> std::optional<Error> {
    ++calls;
    if (calls == 1) return MakeError(ErrorKind::kTransient, "HTTP 502");
    if (calls == 2) return Error{ErrorKind::kThrottled, "HTTP 429", std::chrono::seconds(7)};
    return std::nullopt;
  });
  Plan plan;
  plan.actions.push_back(CreateAction{"a"});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.created, 1);
  ASSERT_EQ(f.clock.sleeps.size(), 2u);
  EXPECT_EQ(f.clock.sleeps[0], std::chrono::milliseconds(100));
  EXPECT_EQ(f.clock.sleeps[1], std::chrono::seconds(7));  // the server's Retry-After
}

TEST(Executor, ARetryAfterBeyondTheCapIsNotWaitedFor) {
  Fixture f;
  f.Want("a", "Ann");
  f.server->SetFault([&](const std::string&, const std::string&) -> std::optional<Error> {
    return Error{ErrorKind::kThrottled, "HTTP 503", std::chrono::seconds(99999999)};
  });
  Plan plan;
  plan.actions.push_back(CreateAction{"a"});
  ExecuteResult r = f.Execute(plan);  // the cap is 60 s by default
  EXPECT_TRUE(f.clock.sleeps.empty());
  EXPECT_EQ(r.counts.errors, 1);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("more than max_retry_after_seconds = 60"), std::string::npos)
      << r.errors[0];
  EXPECT_TRUE(f.store->LoadItems(f.id)->empty());  // nothing recorded as done
}

TEST(Executor, NoWaitOrActionReachesPastTheDeadline) {
  Fixture f;
  f.Want("a", "Ann");
  f.Want("b", "Bob");
  int calls = 0;
  f.server->SetFault([&](const std::string&, const std::string&) -> std::optional<Error> {
    if (++calls == 1) return Error{ErrorKind::kThrottled, "HTTP 429", std::chrono::seconds(30)};
    return std::nullopt;
  });
  Plan plan;
  plan.actions.push_back(CreateAction{"a"});
  plan.actions.push_back(CreateAction{"b"});
  // 10 s left: the 30 s wait would pass the deadline, so "a" fails at once;
  // then the clock is past it and "b" is not tried.
  RetryPolicy retry;
  retry.deadline = f.clock.Now() + std::chrono::seconds(10);
  ExecuteResult r = [&] {
    ExecuteContext c;
    c.collection = f.collection.get();
    c.store = f.store.get();
    c.collection_id = f.id;
    c.rule = "r";
    c.desired = [&](const std::string& k) -> const DesiredItem* { return &f.desired.at(k); };
    c.resource_name = [](const std::string& k) { return "roster-" + k; };
    c.clock = &f.clock;
    c.retry = retry;
    c.on_done = [&](const Action&, const Status&) { f.clock.SleepFor(std::chrono::seconds(11)); };
    return ExecutePlan(plan, c);
  }();
  EXPECT_EQ(r.counts.created, 0);
  EXPECT_EQ(r.counts.errors, 2);
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_NE(r.errors[0].find("deadline"), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[1].find("1 actions are left for the next run"), std::string::npos)
      << r.errors[1];
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(f.store->LoadItems(f.id)->empty());
}

TEST(Executor, PermanentFailureIsRecordedAsErrorAndNothingIsStored) {
  Fixture f;
  f.Want("a", "Ann");
  f.Want("b", "Bob");
  f.server->SetFault([&](const std::string&, const std::string& href) -> std::optional<Error> {
    if (href.ends_with("roster-a")) return MakeError(ErrorKind::kAccessDenied, "HTTP 403");
    return std::nullopt;
  });
  Plan plan;
  plan.actions.push_back(CreateAction{"a"});
  plan.actions.push_back(CreateAction{"b"});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.errors, 1);
  EXPECT_EQ(r.counts.created, 1);  // one failure does not stop the run
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("HTTP 403"), std::string::npos);
  auto items = f.store->LoadItems(f.id);
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].key, "b");
}

TEST(Executor, CreateThatFindsItsOwnEarlierCopyAdoptsIt) {
  // A crash after the server stored the create but before roster recorded it.
  Fixture f;
  f.Want("a", "Ann");
  Contact ann;
  ann.formatted_name = "Ann";
  f.server->PutByHand("alice", "/alice/roster-a", ann, ManagedTag{"r", "a"});
  Plan plan;
  plan.actions.push_back(CreateAction{"a"});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.created, 0);
  EXPECT_EQ(r.counts.adopted, 1);
  EXPECT_EQ(r.counts.errors, 0);
  EXPECT_EQ(f.server->Items("alice").size(), 1u);
  EXPECT_EQ(f.store->LoadItems(f.id)->size(), 1u);
}

TEST(Executor, CreateOntoSomeoneElsesItemIsAConflictAndLeavesItAlone) {
  Fixture f;
  f.Want("a", "Ann");
  Contact mine;
  mine.formatted_name = "Mine";
  f.server->PutByHand("alice", "/alice/roster-a", mine);
  Plan plan;
  plan.actions.push_back(CreateAction{"a"});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.conflicts, 1);
  EXPECT_EQ(f.server->Items("alice").begin()->second.contact.formatted_name, "Mine");
}

TEST(Executor, UpdateWithStaleEtagReReadsAndReplans) {
  Fixture f;
  f.Want("a", "Ann New");
  Contact old;
  old.formatted_name = "Ann";
  f.server->PutByHand("alice", "/alice/roster-a", old, ManagedTag{"r", "a"});
  Plan plan;
  plan.actions.push_back(UpdateAction{"a", "/alice/roster-a", "\"stale\"", false});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.updated, 1);
  EXPECT_EQ(r.counts.errors, 0);
  EXPECT_EQ(f.server->Items("alice").begin()->second.contact.formatted_name, "Ann New");
}

TEST(Executor, DeleteOfAnItemThatLostItsMarkerIsRefused) {
  Fixture f;
  Contact c;
  c.formatted_name = "Taken over";
  f.server->PutByHand("alice", "/alice/roster-a", c);  // the user removed the marker
  Plan plan;
  plan.actions.push_back(DeleteAction{"a", "/alice/roster-a", "\"old\"", false});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.deleted, 0);
  EXPECT_EQ(r.counts.conflicts, 1);
  EXPECT_EQ(f.server->Items("alice").size(), 1u);
}

// A stand-in for field rules: the note is the user's to keep once they edit it.
PreparedWrite KeepUserNote(const DesiredItem& want, const RemoteItem* remote,
                           const std::string& fields) {
  PreparedWrite out{std::get<Contact>(*want.body), "note=" + std::get<Contact>(*want.body).note};
  if (remote && !fields.empty() && fields != "note=" + std::get<Contact>(remote->body).note) {
    std::get<Contact>(out.body).note =
        std::get<Contact>(remote->body).note;  // edited on the phone: keep it
    out.fields = fields;
  }
  return out;
}

TEST(Executor, FieldRulesKeepAUsersEditAndSkipWritesThatChangeNothing) {
  Fixture f;
  f.Want("a", "Ann");
  f.desired["a"].body = std::make_shared<const ItemBody>([] {
    Contact c;
    c.formatted_name = "Ann";
    c.note = "from source";
    return c;
  }());
  auto execute = [&](const Plan& plan) {
    ExecuteContext ctx;
    ctx.collection = f.collection.get();
    ctx.store = f.store.get();
    ctx.collection_id = f.id;
    ctx.rule = "r";
    ctx.desired = [&](const std::string& k) -> const DesiredItem* { return &f.desired.at(k); };
    ctx.resource_name = [](const std::string& k) { return "roster-" + k; };
    ctx.clock = &f.clock;
    ctx.prepare = KeepUserNote;
    ctx.stored_fields = [&](const std::string& href) {
      auto rows = f.store->LoadItems(f.id);
      std::string fields;
      if (rows.ok()) {
        for (const ItemState& s : *rows) {
          if (s.href == href) fields = s.fields;
        }
      }
      return fields;
    };
    return ExecutePlan(plan, ctx);
  };
  Plan create;
  create.actions.push_back(CreateAction{"a"});
  ASSERT_EQ(execute(create).counts.created, 1);
  auto items = f.server->Items("alice");
  ASSERT_EQ(items.size(), 1u);
  std::string href = items.begin()->first;
  EXPECT_EQ(f.store->LoadItems(f.id)->front().fields, "note=from source");

  // The user edits the note on the phone; the source changes the name.
  Contact edited = items.begin()->second.contact;
  edited.note = "my own words";
  f.server->PutByHand("alice", href, edited, ManagedTag{"r", "a"});
  Contact renamed = std::get<Contact>(*f.desired["a"].body);
  renamed.formatted_name = "Ann B";
  f.desired["a"].body = std::make_shared<const ItemBody>(renamed);
  f.desired["a"].hash = ContentHash(renamed);
  f.server->ResetCounters();
  Plan update;
  update.actions.push_back(UpdateAction{"a", href, "stale-etag"});
  ExecuteResult r = execute(update);
  EXPECT_EQ(r.counts.updated, 1);
  EXPECT_EQ(f.server->counters().updates, 1);
  MemoryItem now = f.server->Items("alice").at(href);
  EXPECT_EQ(now.contact.formatted_name, "Ann B");
  EXPECT_EQ(now.contact.note, "my own words");

  // Planned again with nothing new to write: one read, no write, recorded.
  f.server->ResetCounters();
  ExecuteResult again = execute(update);
  EXPECT_EQ(again.counts.updated, 0);
  EXPECT_EQ(again.counts.unchanged, 1);
  EXPECT_EQ(f.server->counters().writes(), 0);
  ItemState row = f.store->LoadItems(f.id)->front();
  EXPECT_EQ(row.hash, f.desired["a"].hash);
  EXPECT_EQ(row.etag, now.etag);
}

TEST(Executor, TakeOverMarksTheUsersOwnCardAsManaged) {
  Fixture f;
  f.Want("b", "Bob");
  Contact bob = std::get<Contact>(*f.desired["b"].body);
  bob.emails.push_back({"bob@example.com", {"work"}, false});
  f.desired["b"].body = std::make_shared<const ItemBody>(bob);
  Contact own;
  own.formatted_name = "Bobby";
  own.note = "met at the fair";
  own.emails.push_back({"BOB@example.com", {"home"}, false});
  std::string etag = f.server->PutByHand("alice", "/alice/book/own-b.vcf", own);
  Plan plan;
  plan.actions.push_back(UpdateAction{"b", "/alice/book/own-b.vcf", etag, true, true});
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.updated, 1);
  EXPECT_EQ(r.counts.adopted, 1);
  MemoryItem item = f.server->Items("alice").at("/alice/book/own-b.vcf");
  ASSERT_TRUE(item.tag.has_value());
  EXPECT_EQ(item.tag->key, "b");
  EXPECT_EQ(item.contact.formatted_name, "Bob");
  EXPECT_EQ(f.server->Items("alice").size(), 1u);  // no second card
}

TEST(Executor, TakeOverLeavesACardThatChangedMeanwhile) {
  Fixture f;
  f.Want("b", "Bob");
  Contact bob = std::get<Contact>(*f.desired["b"].body);
  bob.emails.push_back({"bob@example.com", {"work"}, false});
  f.desired["b"].body = std::make_shared<const ItemBody>(bob);
  Contact other;
  other.formatted_name = "Someone else now";
  other.emails.push_back({"carol@example.com", {"home"}, false});
  std::string etag = f.server->PutByHand("alice", "/alice/book/own-1.vcf", other);
  Contact marked = other;
  marked.emails[0].value = "bob@example.com";
  std::string etag2 =
      f.server->PutByHand("alice", "/alice/book/own-2.vcf", marked, ManagedTag{"hr", "x"});
  Plan plan;
  plan.actions.push_back(UpdateAction{"b", "/alice/book/own-1.vcf", etag, true, true});
  plan.actions.push_back(UpdateAction{"b", "/alice/book/own-2.vcf", etag2, true, true});
  f.server->ResetCounters();
  ExecuteResult r = f.Execute(plan);
  EXPECT_EQ(r.counts.conflicts, 2);
  EXPECT_EQ(f.server->counters().writes(), 0);
  EXPECT_EQ(f.server->Items("alice").at("/alice/book/own-1.vcf").contact.formatted_name,
            "Someone else now");
  EXPECT_EQ(f.server->Items("alice").at("/alice/book/own-2.vcf").tag->rule, "hr");
}

}  // namespace
}  // namespace roster
