// The Graph contact-folder target against a scripted Graph: each test's
// handler answers the requests the client sends (a $batch one sub-request
// at a time, in any order, or not at all), and the test checks both what was
// sent and what the Collection made of the answers.
#include "connectors/graph/graph_target.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "connectors/graph/contact_json.h"
#include "connectors/graph/projection.h"
#include "connectors/graph/test_contacts.h"
#include "core/fake_clock.h"
#include "core/hash.h"
#include "core/text.h"

namespace roster {
namespace {

using graph::GraphCredentials;
using graph::TokenProvider;
using graph::TokenProviderOptions;
using Json = nlohmann::json;
using graph_test::Jpeg;
using graph_test::Person;

constexpr char kGraph[] = "https://graph.microsoft.com";
constexpr char kV1[] = "https://graph.microsoft.com/v1.0";
constexpr char kUser[] = "alice@contoso.com";
constexpr char kUserPath[] = "/users/alice%40contoso.com";
constexpr char kFolder[] = "AAMkFOLDER1=";

struct Reply {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply JsonReply(int status, const Json& body,
                std::vector<std::pair<std::string, std::string>> h = {}) {
  h.emplace_back("content-type", "application/json");
  return {status, body.dump(), std::move(h)};
}

Reply GraphErrorReply(int status, const std::string& code,
                      std::vector<std::pair<std::string, std::string>> h = {}) {
  return JsonReply(status, {{"error", {{"code", code}, {"message", "scripted " + code}}}},
                   std::move(h));
}

// What a Graph sub-response answers: an object for the envelope's list, or
// nullopt to leave the sub-request out of the answer.
using SubHandler = std::function<std::optional<Json>(const Json& sub)>;

Json Sub(const Json& request, int status, const Json& body = nullptr,
         Json headers = Json::object()) {
  if (!body.is_null() && !headers.contains("Content-Type")) {
    headers["Content-Type"] = "application/json";
  }
  Json out = {{"id", request["id"]}, {"status", status}, {"headers", headers}};
  if (!body.is_null()) out["body"] = body;
  return out;
}

// A contact as Graph answers it, with roster's marker when `tag` is set.
Json ContactJson(const std::string& id, const std::string& etag, const Contact& c,
                 const ManagedTag* tag, bool photo_hint = false) {
  Json j = Json::parse(GraphContactBody(ProjectGraphContact(c), tag, kGraphMarkerPropertyId));
  j["id"] = id;
  j["@odata.etag"] = etag;
  if (photo_hint) {
    Json hint = Json::object();
    hint["id"] = kGraphPhotoPropertyId;
    hint["value"] = "h";
    if (!j.contains("singleValueExtendedProperties"))
      j["singleValueExtendedProperties"] = Json::array();
    j["singleValueExtendedProperties"].push_back(hint);
  }
  return j;
}

class GraphTargetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GraphCredentials c;
    c.tenant_id = "contoso.onmicrosoft.com";
    c.client_id = "11111111-2222-3333-4444-555555555555";
    c.client_secret = "s3cr3t";
    TokenProviderOptions options;
    options.clock = &clock_;
    options.http_factory = [](const HttpOptions&) {
      struct Endpoint : HttpClient {
        Result<HttpResponse> Send(const HttpRequest&) override {
          HttpResponse r;
          r.status = 200;
          r.body =
              Json{{"token_type", "Bearer"}, {"expires_in", 3599}, {"access_token", "tok"}}.dump();
          return r;
        }
      };
      return std::make_unique<Endpoint>();
    };
    auto provider = TokenProvider::Create(c, options);
    ASSERT_TRUE(provider.ok()) << provider.error().message;
    tokens_ = std::move(provider).value();

    GraphTargetOptions o;
    o.tokens = tokens_.get();
    o.app_id = "app1";
    o.client.graph_url = kGraph;
    o.client.clock = &clock_;
    o.client.seed = 7;
    o.client.http_factory = [this](const HttpOptions&) {
      struct Scripted : HttpClient {
        explicit Scripted(GraphTargetTest* t) : t_(t) {}
        Result<HttpResponse> Send(const HttpRequest& request) override {
          t_->seen_.push_back(request);
          if (!t_->handler_) {
            ADD_FAILURE() << "unexpected " << request.method << " " << request.url;
            return MakeError(ErrorKind::kInternal, "no handler");
          }
          Reply reply = t_->handler_(request);
          HttpResponse r;
          r.status = reply.status;
          r.body = std::move(reply.body);
          r.headers = std::move(reply.headers);
          r.effective_url = request.url;
          return r;
        }
        GraphTargetTest* t_;
      };
      return std::make_unique<Scripted>(this);
    };
    target_ = NewGraphTarget(std::move(o));
  }

  CollectionSpec Spec() {
    CollectionSpec spec;
    spec.user = kUser;
    spec.display_name = "Company Contacts";
    spec.rule = "staff";
    return spec;
  }

  // A collection on kFolder, opened from a known url without a request.
  std::unique_ptr<Collection> OpenKnown(CollectionSpec spec) {
    spec.known_url =
        std::string("graph:") + kUserPath + "/contactFolders/" + graph::EncodeSegment(kFolder);
    auto c = target_->Open(spec, false);
    EXPECT_TRUE(c.ok()) << c.error().message;
    EXPECT_TRUE(seen_.empty());
    return c.ok() ? std::move(c).value() : nullptr;
  }
  std::unique_ptr<Collection> OpenKnown() { return OpenKnown(Spec()); }

  std::string FolderUrl() const {
    return std::string(kV1) + kUserPath + "/contactFolders/" + graph::EncodeSegment(kFolder);
  }

  // Answers a $batch envelope: each sub-request through `each`, the answers
  // in reverse order (Graph answers in completion order).
  static Reply Batch(const HttpRequest& envelope, const SubHandler& each) {
    Json requests = Json::parse(envelope.body)["requests"];
    Json responses = Json::array();
    for (auto it = requests.rbegin(); it != requests.rend(); ++it) {
      if (auto answer = each(*it)) responses.push_back(*answer);
    }
    return JsonReply(200, {{"responses", responses}});
  }

  static bool IsBatch(const HttpRequest& r) {
    return r.method == "POST" && r.url == std::string(kV1) + "/$batch";
  }

  FakeClock clock_;
  std::unique_ptr<TokenProvider> tokens_;
  std::unique_ptr<Target> target_;
  std::function<Reply(const HttpRequest&)> handler_;
  std::vector<HttpRequest> seen_;
};

std::string Decoded(const std::string& url) {
  std::string out;
  for (size_t i = 0; i < url.size(); ++i) {
    const int b = url[i] == '%' ? text::PercentEscapeAt(url, i) : -1;
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
      i += 2;
    } else {
      out.push_back(url[i]);
    }
  }
  return out;
}

std::string HeaderOf(const HttpRequest& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (text::EqualsNoCase(n, name)) return v;
  }
  return "";
}

// --- opening ---

TEST_F(GraphTargetTest, FindsTheFolderByItsPropertyNotByName) {
  handler_ = [](const HttpRequest&) {
    return JsonReply(200, {{"value", {{{"id", kFolder}, {"displayName", "Renamed by Alice"}}}}});
  };
  auto c = target_->Open(Spec(), true);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(seen_.size(), 1u);
  const std::string url = Decoded(seen_[0].url);
  EXPECT_EQ(seen_[0].method, "GET");
  EXPECT_TRUE(
      url.starts_with(std::string(kV1) + "/users/alice@contoso.com/contactFolders?$filter="))
      << url;
  EXPECT_NE(url.find(std::string("ep/id eq '") + kGraphFolderPropertyId + "'"), std::string::npos);
  EXPECT_NE(url.find("ep/value eq '" + GraphFolderMarker("staff") + "'"), std::string::npos);
  EXPECT_EQ(url.find("displayName eq"), std::string::npos);
  EXPECT_EQ((*c)->id(), std::string("graph:") + kUserPath + "/contactFolders/AAMkFOLDER1%3D");
  EXPECT_EQ((*c)->limit_bucket(), "app1/alice@contoso.com");
  EXPECT_EQ((*c)->create_mode(), CreateMode::kServerId);
  EXPECT_EQ((*c)->max_batch(), 20u);
  EXPECT_EQ((*c)->parallel_per_batch(), 4);
  EXPECT_TRUE((*c)->update_reads_current());
  // The rule's bytes in hex: Exchange compares values without regard to case.
  EXPECT_NE(GraphFolderMarker("Staff"), GraphFolderMarker("staff"));
}

TEST_F(GraphTargetTest, CreatesTheFolderOnceThenOpensItFromItsId) {
  handler_ = [](const HttpRequest& r) {
    if (r.method == "GET") return JsonReply(200, {{"value", Json::array()}});
    return JsonReply(201, {{"id", kFolder}, {"displayName", "Company Contacts"}});
  };
  EXPECT_EQ(target_->Open(Spec(), false).error().kind, ErrorKind::kNotFound);
  seen_.clear();
  auto c = target_->Open(Spec(), true);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[1].method, "POST");
  EXPECT_EQ(seen_[1].url, std::string(kV1) + kUserPath + "/contactFolders");
  const Json body = Json::parse(seen_[1].body);
  EXPECT_EQ(body["displayName"], "Company Contacts");
  EXPECT_EQ(body["singleValueExtendedProperties"][0]["id"], kGraphFolderPropertyId);
  EXPECT_EQ(body["singleValueExtendedProperties"][0]["value"], GraphFolderMarker("staff"));

  seen_.clear();
  CollectionSpec again = Spec();
  again.known_url = (*c)->id();
  auto known = target_->Open(again, true);
  ASSERT_TRUE(known.ok());
  EXPECT_TRUE(seen_.empty());
  EXPECT_EQ((*known)->id(), (*c)->id());
  // Another user's stored id is not taken for this one's.
  again.user = "bob@contoso.com";
  EXPECT_EQ(target_->Open(again, false).error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(seen_.size(), 1u);
}

// A folder created a moment ago is known to be empty: its first full
// listing reads only the delta link (the contacts' listing would be one more
// request per mailbox for nothing). Once written to, listings read it.
TEST_F(GraphTargetTest, AJustCreatedFolderIsListedByItsDeltaLinkOnly) {
  const std::string delta_link = std::string(kV1) + kUserPath + "/contactFolders/" +
                                 graph::EncodeSegment(kFolder) + "/contacts/delta?$deltatoken=d1";
  handler_ = [&](const HttpRequest& r) {
    if (r.method == "POST") return JsonReply(201, {{"id", kFolder}, {"displayName", "C"}});
    if (r.url.find("/contacts/delta") != std::string::npos) {
      return JsonReply(200, {{"value", Json::array()}, {"@odata.deltaLink", delta_link}});
    }
    return JsonReply(200, {{"value", Json::array()}});  // no folder yet; an empty listing
  };
  auto c = target_->Open(Spec(), true);
  ASSERT_TRUE(c.ok()) << c.error().message;
  seen_.clear();
  auto listing = (*c)->List("");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  EXPECT_TRUE(listing->changed.empty());
  EXPECT_EQ(listing->sync_token, delta_link);
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_NE(seen_[0].url.find("/contacts/delta"), std::string::npos);

  // A second full listing (the state lost its link, say) reads the contacts.
  seen_.clear();
  ASSERT_TRUE((*c)->List("").ok());
  EXPECT_EQ(seen_.size(), 2u);

  // A folder found again (not created) is listed in full the first time.
  seen_.clear();
  auto found = OpenKnown();
  ASSERT_TRUE(found->List("").ok());
  EXPECT_EQ(seen_.size(), 2u);
}

TEST_F(GraphTargetTest, AUsersFolderOfTheSameNameIsNotAdopted) {
  handler_ = [](const HttpRequest& r) {
    if (r.method == "GET") return JsonReply(200, {{"value", Json::array()}});
    return GraphErrorReply(409, "ErrorFolderExists");
  };
  auto c = target_->Open(Spec(), true);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kConflict);
  EXPECT_NE(c.error().message.find("alice@contoso.com"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("\"Company Contacts\""), std::string::npos);
  EXPECT_NE(c.error().message.find("roster did not create"), std::string::npos);
  EXPECT_EQ(c.error().message.find("tok"), std::string::npos);
  EXPECT_EQ(seen_.size(), 2u);
}

TEST_F(GraphTargetTest, AMailboxWithoutExchangeIsNoSuchUser) {
  handler_ = [](const HttpRequest&) { return GraphErrorReply(404, "MailboxNotEnabledForRESTAPI"); };
  auto c = target_->Open(Spec(), true);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.error().no_such_user);
  EXPECT_NE(c.error().message.find("alice@contoso.com"), std::string::npos);
  handler_ = [](const HttpRequest&) { return GraphErrorReply(404, "ErrorInvalidUser"); };
  EXPECT_TRUE(target_->Open(Spec(), true).error().no_such_user);
}

// --- listing ---

TEST_F(GraphTargetTest, FullListingReadsItemsAndADeltaLink) {
  const ManagedTag ann{"staff", "k-ann"}, bo{"staff", "k-bo"};
  const std::string delta_link = FolderUrl() + "/contacts/delta?$deltatoken=D1";
  const std::string page2 = FolderUrl() + "/contacts?$skiptoken=2";
  handler_ = [&](const HttpRequest& r) {
    if (r.url.find("/contacts/delta") != std::string::npos) {
      return JsonReply(200, {{"value", {{{"id", "AAMkA="}, {"@odata.etag", "W/\"a1\""}}}},
                             {"@odata.deltaLink", delta_link}});
    }
    if (r.url == page2) {
      return JsonReply(200, {{"value",
                              {ContactJson("AAMkC=", "W/\"c1\"", Person("Cy", "Wu"), &bo,
                                           /*photo_hint=*/true)}}});
    }
    return JsonReply(200, {{"value",
                            {ContactJson("AAMkA=", "W/\"a1\"", Person("Ann", "Lee"), &ann),
                             ContactJson("AAMkB=", "W/\"b1\"", Person("Own", "Card"), nullptr)}},
                           {"@odata.nextLink", page2}});
  };
  auto c = OpenKnown();
  auto listing = c->List("");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  EXPECT_EQ(listing->sync_token, delta_link);
  ASSERT_EQ(listing->changed.size(), 3u);
  EXPECT_EQ(listing->changed[2].href, "AAMkC=");
  EXPECT_EQ(listing->changed[2].etag, "W/\"c1\"");
  // The contact with roster's photo hint is left for Fetch, which reads its photo.
  ASSERT_EQ(listing->items.size(), 2u);
  EXPECT_EQ(listing->items[0].tag, ann);
  EXPECT_FALSE(listing->items[1].tag.has_value());
  const ItemBody ann_body = ProjectGraphContact(ItemBody(Person("Ann", "Lee")));
  EXPECT_EQ(listing->items[0].body, ann_body);
  EXPECT_EQ(listing->items[0].content_hash, ContentHash(std::get<Contact>(ann_body)));
  // The delta round first, then the listing with the marker expanded.
  ASSERT_EQ(seen_.size(), 3u);
  EXPECT_NE(seen_[0].url.find("/contacts/delta"), std::string::npos);
  const std::string list_url = Decoded(seen_[1].url);
  EXPECT_NE(list_url.find("$top=1000"), std::string::npos);
  EXPECT_NE(list_url.find(std::string("$expand=singleValueExtendedProperties($filter=id eq '") +
                          kGraphMarkerPropertyId),
            std::string::npos)
      << list_url;
}

TEST_F(GraphTargetTest, DeltaReportsChangesAndRemovals) {
  const std::string link = FolderUrl() + "/contacts/delta?$deltatoken=D1";
  const std::string next = FolderUrl() + "/contacts/delta?$skiptoken=S1";
  const std::string link2 = FolderUrl() + "/contacts/delta?$deltatoken=D2";
  handler_ = [&](const HttpRequest& r) {
    if (r.url == link) {
      return JsonReply(200, {{"value",
                              {{{"id", "AAMkA="}, {"@odata.etag", "W/\"a2\""}},
                               {{"id", "AAMkB="}, {"@odata.etag", "W/\"b2\""}}}},
                             {"@odata.nextLink", next}});
    }
    EXPECT_EQ(r.url, next);
    return JsonReply(200, {{"value",
                            {{{"id", "AAMkA="}, {"@odata.etag", "W/\"a3\""}},
                             {{"id", "AAMkB="}, {"@removed", {{"reason", "deleted"}}}},
                             {{"id", "AAMkG="}, {"@removed", {{"reason", "deleted"}}}}}},
                           {"@odata.deltaLink", link2}});
  };
  auto c = OpenKnown();
  auto listing = c->List(link);
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_FALSE(listing->full);
  ASSERT_EQ(listing->changed.size(), 1u);
  EXPECT_EQ(listing->changed[0].href, "AAMkA=");
  EXPECT_EQ(listing->changed[0].etag, "W/\"a3\"");  // the last word counts
  EXPECT_EQ(listing->removed, (std::vector<std::string>{"AAMkB=", "AAMkG="}));
  EXPECT_TRUE(listing->items.empty());  // delta carries no marker: the core fetches
  EXPECT_EQ(listing->sync_token, link2);
  EXPECT_EQ(seen_.size(), 2u);
}

TEST_F(GraphTargetTest, AGoneDeltaTokenListsInFull) {
  const std::string old_link = FolderUrl() + "/contacts/delta?$deltatoken=OLD";
  const std::string new_link = FolderUrl() + "/contacts/delta?$deltatoken=NEW";
  handler_ = [&](const HttpRequest& r) {
    if (r.url == old_link) return GraphErrorReply(410, "SyncStateNotFound");
    if (r.url.find("/contacts/delta") != std::string::npos) {
      return JsonReply(200, {{"value", Json::array()}, {"@odata.deltaLink", new_link}});
    }
    return JsonReply(200, {{"value", Json::array()}});
  };
  auto c = OpenKnown();
  auto listing = c->List(old_link);
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  EXPECT_EQ(listing->sync_token, new_link);
  EXPECT_EQ(seen_.size(), 3u);
  // A token that is not a Graph link at all is not followed, and costs a full listing too.
  seen_.clear();
  auto again = c->List("https://evil.example/v1.0/delta");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->full);
  for (const HttpRequest& r : seen_) EXPECT_TRUE(r.url.starts_with(kV1)) << r.url;
  EXPECT_EQ(c->TakeWarnings().size(), 1u);
}

TEST_F(GraphTargetTest, AnOffOriginNextLinkIsRefused) {
  handler_ = [&](const HttpRequest& r) {
    if (r.url.find("/contacts/delta") != std::string::npos) {
      return JsonReply(200, {{"value", Json::array()},
                             {"@odata.deltaLink", FolderUrl() + "/contacts/delta?$deltatoken=D"}});
    }
    return JsonReply(200, {{"value", Json::array()},
                           {"@odata.nextLink", "https://evil.example/v1.0/users/x/contacts"}});
  };
  auto c = OpenKnown();
  auto listing = c->List("");
  ASSERT_FALSE(listing.ok());
  EXPECT_EQ(listing.error().kind, ErrorKind::kInvalidData);
  EXPECT_NE(listing.error().message.find("alice@contoso.com"), std::string::npos);
  for (const HttpRequest& r : seen_) EXPECT_TRUE(r.url.starts_with(kV1)) << r.url;
}

TEST_F(GraphTargetTest, AFolderGoneIsNotFound) {
  handler_ = [](const HttpRequest&) { return GraphErrorReply(404, "ErrorItemNotFound"); };
  auto c = OpenKnown();
  EXPECT_EQ(c->List("").error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(c->List(FolderUrl() + "/contacts/delta?$deltatoken=D").error().kind,
            ErrorKind::kNotFound);
}

// A stored folder id Graph calls malformed is looked up again, like a gone
// folder, instead of failing every run.
TEST_F(GraphTargetTest, AFolderIdGraphCallsMalformedIsLookedUpAgain) {
  handler_ = [](const HttpRequest&) { return GraphErrorReply(400, "ErrorInvalidIdMalformed"); };
  auto c = OpenKnown();
  auto listed = c->List("");
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.error().kind, ErrorKind::kNotFound);
  EXPECT_NE(listed.error().message.find("looked up again"), std::string::npos);
  EXPECT_EQ(c->List(FolderUrl() + "/contacts/delta?$deltatoken=D").error().kind,
            ErrorKind::kNotFound);
  // Another 400 is an error like any other.
  handler_ = [](const HttpRequest&) { return GraphErrorReply(400, "BadRequest"); };
  EXPECT_NE(c->List("").error().kind, ErrorKind::kNotFound);
}

// Folder and contact ids with a dot segment would climb out of the folder
// ('.' is not escaped in a path): refused wherever Graph hands them out.
TEST_F(GraphTargetTest, IdsWithDotSegmentsAreRefused) {
  for (const char* bad : {"..", ".", "../x", "a/../b", "a/.", "./a"}) {
    seen_.clear();
    handler_ = [&](const HttpRequest& r) {
      if (r.method == "GET") return JsonReply(200, {{"value", {{{"id", bad}}}}});
      return JsonReply(201, {{"id", bad}});
    };
    auto found = target_->Open(Spec(), true);
    ASSERT_FALSE(found.ok()) << bad;
    EXPECT_EQ(found.error().kind, ErrorKind::kInvalidData) << bad;
    handler_ = [&](const HttpRequest& r) {
      if (r.method == "GET") return JsonReply(200, {{"value", Json::array()}});
      return JsonReply(201, {{"id", bad}});
    };
    auto created = target_->Open(Spec(), true);
    ASSERT_FALSE(created.ok()) << bad;
    for (const HttpRequest& r : seen_) EXPECT_EQ(r.url.find("/../"), std::string::npos) << r.url;
  }
  // Dots inside an id are fine.
  handler_ = [](const HttpRequest& r) {
    if (r.method == "GET") return JsonReply(200, {{"value", {{{"id", "AA.k..x="}}}}});
    return JsonReply(500, {});
  };
  EXPECT_TRUE(target_->Open(Spec(), true).ok());
}

// --- writing ---

TEST_F(GraphTargetTest, WriteBatchAnswersEachOpOnItsOwn) {
  const ManagedTag ta{"staff", "a"}, tb{"staff", "b"}, td{"staff", "d"}, te{"staff", "e"};
  const ItemBody a = Person("Ann", "Lee"), d = Person("Dee", "Ray"), e = Person("Eve", "Ng");
  Contact b_now = Person("Bo", "Kim");
  Contact b_want = b_now;
  b_want.title = "CTO";
  const ItemBody b_cur = b_now, b = b_want;
  std::vector<WriteOp> ops(6);
  ops[0] = {WriteOp::Kind::kCreate, "", "", "", ta, &a, nullptr};
  ops[1] = {WriteOp::Kind::kUpdate, "", "AAMkB=", "W/\"b1\"", tb, &b, &b_cur};
  ops[2] = {WriteOp::Kind::kDelete, "", "AAMkC=", "W/\"c1\"", {}, nullptr, nullptr};
  ops[3] = {WriteOp::Kind::kCreate, "", "", "", td, &d, nullptr};
  ops[4] = {WriteOp::Kind::kUpdate, "", "AAMkE=", "W/\"e1\"", te, &e, nullptr};
  ops[5] = {WriteOp::Kind::kDelete, "", "AAMkF=", "W/\"f1\"", {}, nullptr, nullptr};
  handler_ = [&](const HttpRequest& r) {
    EXPECT_TRUE(IsBatch(r));
    return Batch(r, [&](const Json& sub) -> std::optional<Json> {
      const std::string id = sub["id"];
      if (id == "1")
        return Sub(sub, 201, ContactJson("AAMkNEW=", "W/\"n1\"", Person("Ann", "Lee"), &ta));
      if (id == "2") return Sub(sub, 200, ContactJson("AAMkB=", "W/\"b2\"", b_want, &tb));
      if (id == "3") return Sub(sub, 204);
      if (id == "4") return std::nullopt;  // left out of the answer
      if (id == "5") {
        return Sub(sub, 412,
                   {{"error", {{"code", "ErrorIrresolvableConflict"}, {"message", "x"}}}});
      }
      return Sub(sub, 429, {{"error", {{"code", "ApplicationThrottled"}, {"message", "slow"}}}},
                 {{"Retry-After", "7"}});
    });
  };
  auto c = OpenKnown();
  std::vector<WriteOutcome> out = c->WriteBatch(ops);
  ASSERT_EQ(out.size(), 6u);
  ASSERT_EQ(seen_.size(), 1u);  // one $batch, no retry of writes
  ASSERT_TRUE(out[0].status.ok()) << out[0].status.error().message;
  EXPECT_EQ(out[0].result.href, "AAMkNEW=");
  EXPECT_EQ(out[0].result.etag, "W/\"n1\"");
  ASSERT_TRUE(out[1].status.ok());
  EXPECT_EQ(out[1].result.href, "AAMkB=");
  EXPECT_EQ(out[1].result.etag, "W/\"b2\"");
  EXPECT_TRUE(out[2].status.ok());
  EXPECT_EQ(out[3].status.error().kind, ErrorKind::kTransient);
  EXPECT_TRUE(out[3].ambiguous);
  EXPECT_EQ(out[3].result.href, "");
  EXPECT_EQ(out[4].status.error().kind, ErrorKind::kPreconditionFailed);
  EXPECT_FALSE(out[4].ambiguous);
  EXPECT_EQ(out[5].status.error().kind, ErrorKind::kThrottled);
  EXPECT_EQ(out[5].status.error().retry_after, std::chrono::seconds(7));
  for (const WriteOutcome& o : out) {
    if (!o.status.ok()) {
      EXPECT_NE(o.status.error().message.find("alice@contoso.com"), std::string::npos)
          << o.status.error().message;
    }
  }

  // What was sent: a POST with the marker, a PATCH and DELETEs with If-Match.
  const Json requests = Json::parse(seen_[0].body)["requests"];
  ASSERT_EQ(requests.size(), 6u);
  EXPECT_EQ(requests[0]["method"], "POST");
  EXPECT_EQ(requests[0]["url"], std::string(kUserPath) + "/contactFolders/AAMkFOLDER1%3D/contacts");
  EXPECT_EQ(requests[0]["body"]["singleValueExtendedProperties"][0]["value"],
            EncodeGraphMarker(ta));
  EXPECT_EQ(requests[1]["method"], "PATCH");
  EXPECT_EQ(requests[1]["headers"]["If-Match"], "W/\"b1\"");
  EXPECT_EQ(requests[2]["method"], "DELETE");
  EXPECT_EQ(requests[2]["headers"]["If-Match"], "W/\"c1\"");
}

TEST_F(GraphTargetTest, ADeleteOfAGoneContactIsDoneAndAThrottledEnvelopeRanNothing) {
  const ManagedTag ta{"staff", "a"};
  const ItemBody a = Person("Ann", "Lee");
  handler_ = [&](const HttpRequest& r) {
    return Batch(r, [](const Json& sub) {
      return Sub(sub, 404, {{"error", {{"code", "ErrorItemNotFound"}}}});
    });
  };
  auto c = OpenKnown();
  std::vector<WriteOp> del(1);
  del[0] = {WriteOp::Kind::kDelete, "", "AAMkC=", "W/\"c1\"", {}, nullptr, nullptr};
  EXPECT_TRUE(c->WriteBatch(del)[0].status.ok());

  handler_ = [](const HttpRequest&) { return Reply{503, "", {{"retry-after", "3"}}}; };
  std::vector<WriteOp> create(1);
  create[0] = {WriteOp::Kind::kCreate, "", "", "", ta, &a, nullptr};
  WriteOutcome o = c->WriteBatch(create)[0];
  EXPECT_FALSE(o.status.ok());
  EXPECT_FALSE(o.ambiguous);  // a throttled envelope ran nothing
}

TEST_F(GraphTargetTest, UpdatesSendOnlyWhatDiffers) {
  const ManagedTag tb{"staff", "b"};
  const Contact now = Person("Bo", "Kim");
  handler_ = [&](const HttpRequest& r) {
    return Batch(r, [&](const Json& sub) -> std::optional<Json> {
      if (sub["method"] == "GET") return Sub(sub, 200, ContactJson("AAMkB=", "W/\"b1\"", now, &tb));
      return Sub(sub, 200, ContactJson("AAMkB=", "W/\"b2\"", now, &tb));
    });
  };
  auto c = OpenKnown();
  auto fetched = c->Fetch({"AAMkB="});
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  ASSERT_EQ(fetched->size(), 1u);
  EXPECT_EQ((*fetched)[0].tag, tb);

  Contact want = now;
  want.title = "CTO";
  const ItemBody desired = want, current = (*fetched)[0].body;
  std::vector<WriteOp> ops(1);
  ops[0] = {WriteOp::Kind::kUpdate, "", "AAMkB=", "W/\"b1\"", tb, &desired, &current};
  seen_.clear();
  ASSERT_TRUE(c->WriteBatch(ops)[0].status.ok());
  ASSERT_EQ(seen_.size(), 1u);
  const Json body = Json::parse(seen_[0].body)["requests"][0]["body"];
  EXPECT_EQ(body, Json({{"jobTitle", "CTO"}})) << body.dump();

  // Nothing differs: success without a request, the etag as it was.
  seen_.clear();
  ops[0].body = &current;
  WriteOutcome same = c->WriteBatch(ops)[0];
  ASSERT_TRUE(same.status.ok());
  EXPECT_EQ(same.result.etag, "W/\"b1\"");
  EXPECT_TRUE(seen_.empty());
}

TEST_F(GraphTargetTest, APhotoIsADependentWrite) {
  const ManagedTag ta{"staff", "a"};
  Contact with_photo = Person("Ann", "Lee");
  with_photo.photo = Jpeg("ann");
  const ItemBody a = with_photo;
  int photo_status = 500;
  handler_ = [&](const HttpRequest& r) {
    if (IsBatch(r)) {
      return Batch(r, [&](const Json& sub) {
        return Sub(sub, 201, ContactJson("AAMkNEW=", "W/\"n1\"", Person("Ann", "Lee"), &ta));
      });
    }
    if (r.method == "PUT") return Reply{photo_status, "", {}};
    return JsonReply(200, {{"id", "AAMkNEW="}, {"@odata.etag", "W/\"n2\""}});
  };
  auto c = OpenKnown();
  std::vector<WriteOp> ops(1);
  ops[0] = {WriteOp::Kind::kCreate, "", "", "", ta, &a, nullptr};
  WriteOutcome failed = c->WriteBatch(ops)[0];
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[1].method, "PUT");
  EXPECT_EQ(seen_[1].url, FolderUrl() + "/contacts/AAMkNEW%3D/photo/$value");
  EXPECT_EQ(HeaderOf(seen_[1], "content-type"), "image/jpeg");
  EXPECT_EQ(seen_[1].body, with_photo.photo->data);
  // The create carried the photo hint, so that reads know to fetch the photo.
  const Json post = Json::parse(seen_[0].body)["requests"][0]["body"];
  EXPECT_EQ(post["singleValueExtendedProperties"].size(), 2u);
  ASSERT_FALSE(failed.status.ok());
  EXPECT_EQ(failed.result.href, "AAMkNEW=");
  ASSERT_TRUE(failed.landed.has_value());
  Contact landed_want = ProjectGraphContact(with_photo);
  landed_want.photo.reset();
  EXPECT_EQ(*failed.landed, ItemBody(landed_want));
  EXPECT_NE(failed.status.error().message.find("photo"), std::string::npos);

  seen_.clear();
  photo_status = 200;
  WriteOutcome ok = c->WriteBatch(ops)[0];
  ASSERT_TRUE(ok.status.ok()) << ok.status.error().message;
  EXPECT_EQ(ok.result.href, "AAMkNEW=");
  EXPECT_EQ(ok.result.etag, "W/\"n2\"");  // read after the photo changed it
  EXPECT_EQ(seen_.size(), 3u);
}

// The limiter counts a photo's PUT and the read after it with the batch;
// a photo the contact holds already, a delete and a photo Exchange would
// refuse (a GIF) cost nothing more.
TEST_F(GraphTargetTest, EachPhotoToPutCostsTwoMoreRequestsAndItsBytes) {
  auto c = OpenKnown();
  const ManagedTag t{"staff", "a"};
  Contact ann = Person("Ann", "Lee");
  ann.photo = Jpeg("ann");
  Contact gif = Person("Gus", "Lee");
  gif.photo = Photo{"image/gif", "GIF89a..", ""};
  const ItemBody with_photo = ann, plain = Person("Bo", "Lee"), refused = gif;
  const ItemBody same = ProjectGraphContact(ann);
  std::vector<WriteOp> ops(5);
  ops[0] = {WriteOp::Kind::kCreate, "", "", "", t, &with_photo, nullptr};
  ops[1] = {WriteOp::Kind::kCreate, "", "", "", t, &plain, nullptr};
  ops[2] = {WriteOp::Kind::kUpdate, "", "AAMkA=", "W/\"1\"", t, &with_photo, &same};
  ops[3] = {WriteOp::Kind::kUpdate, "", "AAMkB=", "W/\"1\"", t, &with_photo, &plain};
  ops[4] = {WriteOp::Kind::kCreate, "", "", "", t, &refused, nullptr};
  const WriteVolume v = c->DependentVolume(ops);
  EXPECT_EQ(v.requests, 4);  // ops 0 and 3
  EXPECT_EQ(v.upload_bytes, 2 * static_cast<int64_t>(ann.photo->data.size()));
  EXPECT_TRUE(seen_.empty());  // counting sends nothing
}

TEST_F(GraphTargetTest, FetchReadsHintedPhotosAndAnUnchangedPhotoIsNotSentAgain) {
  const ManagedTag ta{"staff", "a"};
  Contact ann = Person("Ann", "Lee");
  ann.photo = Jpeg("ann");
  handler_ = [&](const HttpRequest& r) {
    return Batch(r, [&](const Json& sub) -> std::optional<Json> {
      const std::string url = sub["url"];
      if (url.find("AAMkGONE") != std::string::npos) {
        return Sub(sub, 404, {{"error", {{"code", "ErrorItemNotFound"}}}});
      }
      if (url.ends_with("/photo/$value")) {
        return Sub(sub, 200, Base64Encode(ann.photo->data), {{"Content-Type", "image/jpeg"}});
      }
      if (sub["method"] == "PATCH")
        return Sub(sub, 200, ContactJson("AAMkA=", "W/\"a2\"", ann, &ta));
      return Sub(sub, 200, ContactJson("AAMkA=", "W/\"a1\"", ann, &ta, /*photo_hint=*/true));
    });
  };
  auto c = OpenKnown();
  auto fetched = c->Fetch({"AAMkA=", "AAMkGONE="});
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  ASSERT_EQ(fetched->size(), 1u);
  const ItemBody want = ProjectGraphContact(ItemBody(ann));
  EXPECT_EQ((*fetched)[0].body, want);
  EXPECT_EQ((*fetched)[0].content_hash, ContentHash(std::get<Contact>(want)));
  EXPECT_EQ(seen_.size(), 2u);  // the contacts, then the photos

  seen_.clear();
  Contact renamed = ann;
  renamed.title = "CTO";
  const ItemBody desired = renamed;
  std::vector<WriteOp> ops(1);
  ops[0] = {WriteOp::Kind::kUpdate, "", "AAMkA=", "W/\"a1\"", ta, &desired, &(*fetched)[0].body};
  WriteOutcome o = c->WriteBatch(ops)[0];
  ASSERT_TRUE(o.status.ok()) << o.status.error().message;
  EXPECT_EQ(seen_.size(), 1u);  // no photo PUT
  EXPECT_EQ(o.result.etag, "W/\"a2\"");

  // The source dropped the photo: Graph cannot remove it; said once.
  seen_.clear();
  Contact no_photo = renamed;
  no_photo.photo.reset();
  const ItemBody dropped = no_photo;
  ops[0].body = &dropped;
  ASSERT_TRUE(c->WriteBatch(ops)[0].status.ok());
  ASSERT_TRUE(c->WriteBatch(ops)[0].status.ok());
  EXPECT_EQ(c->TakeWarnings().size(), 1u);
}

TEST_F(GraphTargetTest, DefaultFolderCarriesTheCategoryAndReadsBackEqual) {
  const ManagedTag ta{"staff", "a"};
  Json stored;
  handler_ = [&](const HttpRequest& r) {
    if (r.url.find("$filter=") != std::string::npos) {
      return JsonReply(200, {{"value", Json::array()}});
    }
    if (!IsBatch(r)) {
      EXPECT_EQ(r.url,
                std::string(kV1) + kUserPath + "/contactFolders/contacts?$select=id,displayName");
      return JsonReply(200, {{"id", "AAMkDEFAULT="}, {"displayName", "Contacts"}});
    }
    return Batch(r, [&](const Json& sub) -> std::optional<Json> {
      if (sub["method"] == "POST") {
        stored = sub["body"];
        stored["id"] = "AAMkA=";
        stored["@odata.etag"] = "W/\"a1\"";
        return Sub(sub, 201, stored);
      }
      return Sub(sub, 200, stored);
    });
  };
  CollectionSpec spec = Spec();
  spec.use_default = true;
  spec.category = "Company";
  auto opened = target_->Open(spec, true);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto& c = *opened;
  EXPECT_EQ(c->id(), std::string("graph:") + kUserPath + "/defaultContactFolder/AAMkDEFAULT%3D");
  // Its stored id opens it again without a request, but not for a rule of its own folder.
  seen_.clear();
  CollectionSpec known = spec;
  known.known_url = c->id();
  ASSERT_TRUE(target_->Open(known, true).ok());
  EXPECT_TRUE(seen_.empty());
  known.use_default = false;
  (void)target_->Open(known, false);
  EXPECT_FALSE(seen_.empty());  // looked up by its property instead

  Contact ann = Person("Ann", "Lee");
  ann.categories = {"VIP"};
  const ItemBody body = target_->Project(ann);
  std::vector<WriteOp> ops(1);
  ops[0] = {WriteOp::Kind::kCreate, "", "", "", ta, &body, nullptr};
  ASSERT_TRUE(c->WriteBatch(ops)[0].status.ok());
  EXPECT_EQ(stored["categories"], Json({"VIP", "Company"}));

  auto fetched = c->Fetch({"AAMkA="});
  ASSERT_TRUE(fetched.ok()) << fetched.error().message;
  ASSERT_EQ(fetched->size(), 1u);
  EXPECT_EQ((*fetched)[0].body, body);
  EXPECT_EQ((*fetched)[0].content_hash, ContentHash(std::get<Contact>(body)));
  EXPECT_EQ((*fetched)[0].tag, ta);

  // A user's own card taken over (read without the category) gets it.
  Json own = ContactJson("AAMkOWN=", "W/\"o1\"", Person("Own", "Card"), nullptr);
  handler_ = [&](const HttpRequest& r) {
    return Batch(r, [&](const Json& sub) -> std::optional<Json> {
      if (sub["method"] == "GET") return Sub(sub, 200, own);
      stored = sub["body"];
      return Sub(sub, 200, own);
    });
  };
  auto read = c->Fetch({"AAMkOWN="});
  ASSERT_TRUE(read.ok() && read->size() == 1u);
  const ItemBody take = target_->Project(ItemBody(Person("Own", "Card")));
  ops[0] = {WriteOp::Kind::kUpdate, "", "AAMkOWN=", "W/\"o1\"", ta, &take, &(*read)[0].body};
  ASSERT_TRUE(c->WriteBatch(ops)[0].status.ok());
  EXPECT_EQ(stored["categories"], Json({"Company"})) << stored.dump();
  EXPECT_EQ(stored["singleValueExtendedProperties"][0]["value"], EncodeGraphMarker(ta));
}

TEST_F(GraphTargetTest, ACreateWhoseEnvelopeFailedOnTheServerIsAmbiguous) {
  const ManagedTag ta{"staff", "a"};
  const ItemBody a = Person("Ann", "Lee");
  handler_ = [](const HttpRequest&) { return GraphErrorReply(500, "InternalServerError"); };
  auto c = OpenKnown();
  std::vector<WriteOp> ops(2);
  ops[0] = {WriteOp::Kind::kCreate, "", "", "", ta, &a, nullptr};
  ops[1] = {WriteOp::Kind::kDelete, "", "AAMkC=", "W/\"c1\"", {}, nullptr, nullptr};
  std::vector<WriteOutcome> out = c->WriteBatch(ops);
  EXPECT_EQ(out[0].status.error().kind, ErrorKind::kTransient);
  EXPECT_TRUE(out[0].ambiguous);
  EXPECT_FALSE(out[1].status.ok());
  EXPECT_FALSE(out[1].ambiguous);
  EXPECT_EQ(seen_.size(), 1u);  // writes are not sent again
}

// --- against the emulator ------------------------------------------------------------

// tests/integration/fakegraph.py in its own process on a free loopback port.
class FakeGraphProcess {
 public:
  FakeGraphProcess() {
    const std::filesystem::path script =
        std::filesystem::path(__FILE__).parent_path() / "../../../tests/integration/fakegraph.py";
    if (!std::filesystem::exists(script)) return;
    int out[2];
    if (pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      execlp("python3", "python3", script.c_str(), "--port", "0", "--mailboxes",
             "alice@contoso.com", "--tenant", "contoso.example", "--client-id", "app1",
             "--client-secret", "s3cr3t", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    char line[128] = {};
    int port = 0;
    if (f && fgets(line, sizeof line, f) && sscanf(line, "ready %d", &port) == 1) {
      origin_ = "http://127.0.0.1:" + std::to_string(port);
    }
    if (f) fclose(f);
  }
  ~FakeGraphProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& origin() const { return origin_; }

 private:
  pid_t pid_ = -1;
  std::string origin_;
};

class GraphTargetEmulatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (server_.origin().empty()) GTEST_SKIP() << "python3 or fakegraph.py is not available";
    GraphCredentials c;
    c.tenant_id = "contoso.example";
    c.client_id = "app1";
    c.client_secret = "s3cr3t";
    c.authority = server_.origin();
    auto provider = TokenProvider::Create(c);
    ASSERT_TRUE(provider.ok()) << provider.error().message;
    tokens_ = std::move(provider).value();
    GraphTargetOptions o;
    o.tokens = tokens_.get();
    o.app_id = "app1";
    o.client.graph_url = server_.origin();
    target_ = NewGraphTarget(std::move(o));
  }

  static Contact Numbered(int i) {
    Contact c = Person("P" + std::to_string(i), "Tester");
    c.title = "Engineer";
    if (i % 10 == 3) c.photo = Jpeg("photo-" + std::to_string(i));
    return c;
  }

  // Every contact of the folder, read as the core reads them: the listing's
  // items, and Fetch for the rest.
  std::map<std::string, RemoteItem> ReadAll(Collection& c, Listing* listing) {
    auto l = c.List("");
    EXPECT_TRUE(l.ok()) << l.error().message;
    std::map<std::string, RemoteItem> out;
    if (!l.ok()) return out;
    std::vector<std::string> rest;
    for (RemoteItem& item : l->items) out[item.href] = item;
    for (const ItemRef& ref : l->changed) {
      if (!out.contains(ref.href)) rest.push_back(ref.href);
    }
    auto fetched = c.Fetch(rest);
    EXPECT_TRUE(fetched.ok()) << fetched.error().message;
    if (fetched.ok()) {
      for (RemoteItem& item : *fetched) out[item.href] = item;
    }
    *listing = std::move(l).value();
    return out;
  }

  FakeGraphProcess server_;
  std::unique_ptr<TokenProvider> tokens_;
  std::unique_ptr<Target> target_;
};

TEST_F(GraphTargetEmulatorTest, CreateListUpdateDeleteConverges) {
  CollectionSpec spec;
  spec.user = "alice@contoso.com";
  spec.display_name = "Company Contacts";
  spec.rule = "staff";
  auto opened = target_->Open(spec, true);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  Collection& c = **opened;

  // 45 creates in batches of 20, photos on a few.
  std::map<std::string, ItemBody> want;  // by key
  std::map<std::string, std::string> href_of, etag_of;
  std::vector<ItemBody> bodies;
  for (int i = 0; i < 45; ++i) bodies.push_back(target_->Project(Numbered(i)));
  for (int start = 0; start < 45; start += 20) {
    std::vector<WriteOp> ops;
    for (int i = start; i < std::min(45, start + 20); ++i) {
      const std::string key = "k" + std::to_string(i);
      want[key] = bodies[i];
      ops.push_back(
          {WriteOp::Kind::kCreate, "", "", "", ManagedTag{"staff", key}, &bodies[i], nullptr});
    }
    std::vector<WriteOutcome> out = c.WriteBatch(ops);
    for (size_t k = 0; k < ops.size(); ++k) {
      ASSERT_TRUE(out[k].status.ok()) << out[k].status.error().message;
      href_of[ops[k].tag.key] = out[k].result.href;
      etag_of[ops[k].tag.key] = out[k].result.etag;
    }
  }

  Listing listing;
  std::map<std::string, RemoteItem> items = ReadAll(c, &listing);
  EXPECT_TRUE(listing.full);
  EXPECT_FALSE(listing.sync_token.empty());
  ASSERT_EQ(items.size(), 45u);
  EXPECT_EQ(listing.items.size(), 40u);  // the 5 with photos are fetched
  std::set<std::string> keys;
  for (const auto& [href, item] : items) {
    ASSERT_TRUE(item.tag.has_value()) << href;
    EXPECT_TRUE(keys.insert(item.tag->key).second) << "a duplicate of " << item.tag->key;
    EXPECT_EQ(href_of[item.tag->key], href);
    EXPECT_EQ(etag_of[item.tag->key], item.etag) << item.tag->key;  // what was recorded
    EXPECT_EQ(item.body, want[item.tag->key]) << item.tag->key;
    EXPECT_EQ(item.content_hash, ContentHash(std::get<Contact>(want[item.tag->key])));
  }

  // Update 10 (one with a photo, which is not sent again), delete 5.
  std::vector<ItemBody> updated;
  updated.reserve(10);
  std::vector<WriteOp> ops;
  for (int i = 0; i < 10; ++i) {
    const std::string key = "k" + std::to_string(i);
    Contact changed = std::get<Contact>(want[key]);
    changed.title = "Manager";
    updated.push_back(changed);
    want[key] = updated.back();
    const RemoteItem& now = items[href_of[key]];
    ops.push_back({WriteOp::Kind::kUpdate, "", now.href, now.etag, ManagedTag{"staff", key},
                   &updated.back(), &now.body});
  }
  for (int i = 40; i < 45; ++i) {
    const std::string key = "k" + std::to_string(i);
    const RemoteItem& now = items[href_of[key]];
    ops.push_back({WriteOp::Kind::kDelete, "", now.href, now.etag, {}, nullptr, nullptr});
    want.erase(key);
  }
  for (const WriteOutcome& o : c.WriteBatch(ops)) {
    ASSERT_TRUE(o.status.ok()) << o.status.error().message;
  }

  auto delta = c.List(listing.sync_token);
  ASSERT_TRUE(delta.ok()) << delta.error().message;
  EXPECT_FALSE(delta->full);
  EXPECT_EQ(delta->changed.size(), 10u);
  EXPECT_EQ(delta->removed.size(), 5u);
  auto quiet = c.List(delta->sync_token);
  ASSERT_TRUE(quiet.ok()) << quiet.error().message;
  EXPECT_TRUE(quiet->changed.empty() && quiet->removed.empty());

  // Opened again by property: the same folder, holding exactly what is wanted.
  auto again = target_->Open(spec, false);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)->id(), c.id());
  items = ReadAll(**again, &listing);
  ASSERT_EQ(items.size(), want.size());
  keys.clear();
  for (const auto& [href, item] : items) {
    ASSERT_TRUE(item.tag.has_value());
    EXPECT_TRUE(keys.insert(item.tag->key).second);
    EXPECT_EQ(item.body, want[item.tag->key]) << item.tag->key;
  }
}

TEST_F(GraphTargetEmulatorTest, ALostAnswerLeavesAmbiguousCreatesTheListingFinds) {
  CollectionSpec spec;
  spec.user = "alice@contoso.com";
  spec.display_name = "Lost Answers";
  spec.rule = "lost";
  auto opened = target_->Open(spec, true);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  Collection& c = **opened;
  // The next write's answer is lost: the batch ran, and its envelope answers
  // 500. (With "close" on a kept-alive connection, libcurl itself sends the
  // POST again on a fresh one, so the batch runs twice; see the README.)
  auto ctl = NewCurlHttpClient(HttpOptions{});
  auto set = ctl->Send({"POST",
                        server_.origin() + "/_ctl/faults",
                        {{"Content-Type", "application/json"}},
                        R"({"drop_answer_after_write": 1, "drop_mode": "500"})"});
  ASSERT_TRUE(set.ok() && set->status == 200);
  std::vector<ItemBody> bodies;
  for (int i = 0; i < 3; ++i) bodies.push_back(target_->Project(Numbered(i)));
  std::vector<WriteOp> ops;
  for (int i = 0; i < 3; ++i) {
    ops.push_back({WriteOp::Kind::kCreate, "", "", "", ManagedTag{"lost", "k" + std::to_string(i)},
                   &bodies[i], nullptr});
  }
  for (const WriteOutcome& o : c.WriteBatch(ops)) {
    EXPECT_FALSE(o.status.ok());
    EXPECT_TRUE(o.ambiguous);
  }
  Listing listing;
  std::map<std::string, RemoteItem> items = ReadAll(c, &listing);
  ASSERT_EQ(items.size(), 3u);  // each landed once, with its marker: the core adopts them
  std::set<std::string> keys;
  for (const auto& [href, item] : items) {
    ASSERT_TRUE(item.tag.has_value());
    keys.insert(item.tag->key);
  }
  EXPECT_EQ(keys, (std::set<std::string>{"k0", "k1", "k2"}));
}

TEST_F(GraphTargetEmulatorTest, DefaultFolderWithCategoryReadsBackEqual) {
  CollectionSpec spec;
  spec.user = "alice@contoso.com";
  spec.rule = "staff";
  spec.use_default = true;
  spec.category = "Company";
  auto opened = target_->Open(spec, false);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  Collection& c = **opened;
  const ItemBody body = target_->Project(Numbered(1));
  std::vector<WriteOp> ops = {
      {WriteOp::Kind::kCreate, "", "", "", ManagedTag{"staff", "k1"}, &body, nullptr}};
  ASSERT_TRUE(c.WriteBatch(ops)[0].status.ok());
  Listing listing;
  std::map<std::string, RemoteItem> items = ReadAll(c, &listing);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items.begin()->second.body, body);
  // A second open finds the same folder; nothing is created.
  auto again = target_->Open(spec, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->id(), c.id());
}

}  // namespace
}  // namespace roster
