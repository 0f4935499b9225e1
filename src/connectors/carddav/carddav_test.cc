#include "connectors/carddav/carddav.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "connectors/carddav/webdav.h"
#include "core/hash.h"
#include "core/text.h"

extern char** environ;

namespace roster {
namespace {

// ---------------------------------------------------------------------------
// A scripted HTTP fake: each expected request (method, URL) with its answer.

struct Step {
  std::string method;
  std::string url;
  int status = 207;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct Script {
  std::mutex mu;
  std::deque<Step> steps;
  std::vector<HttpRequest> seen;
  std::vector<std::string> seen_as;  // the login of the client each request went through
  std::vector<std::string> logins;   // the login of each client made
  int clients = 0;
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};

  void Add(std::string method, std::string url, int status, std::string body = "",
           std::vector<std::pair<std::string, std::string>> headers = {}) {
    steps.push_back(
        {std::move(method), std::move(url), status, std::move(body), std::move(headers)});
  }
};

class FakeHttp : public HttpClient {
 public:
  explicit FakeHttp(Script* script, std::string login = "")
      : script_(script), login_(std::move(login)) {}
  Result<HttpResponse> Send(const HttpRequest& request) override {
    // Counted outside the lock: how many requests the pools let overlap.
    int now = ++script_->in_flight;
    for (int seen = script_->max_in_flight; now > seen;) {
      script_->max_in_flight.compare_exchange_weak(seen, now);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    struct Done {
      Script* s;
      ~Done() { --s->in_flight; }
    } done{script_};
    std::lock_guard<std::mutex> lock(script_->mu);
    script_->seen.push_back(request);
    script_->seen_as.push_back(login_);
    if (script_->steps.empty()) {
      ADD_FAILURE() << "unexpected request " << request.method << " " << request.url;
      return MakeError(ErrorKind::kInternal, "script exhausted");
    }
    Step step = script_->steps.front();
    script_->steps.pop_front();
    EXPECT_EQ(request.method, step.method);
    if (!step.url.empty()) {  // empty: any URL
      EXPECT_EQ(request.url, step.url);
    }
    HttpResponse response;
    response.status = step.status;
    response.body = step.body;
    response.headers = step.headers;
    response.effective_url = request.url;
    return response;
  }

 private:
  Script* script_;
  std::string login_;
};

std::string RequestHeader(const HttpRequest& request, const std::string& name) {
  for (const auto& [key, value] : request.headers) {
    if (strcasecmp(key.c_str(), name.c_str()) == 0) return value;
  }
  return "";
}

// A multistatus with a prefix other than "D:" on purpose: names are matched by URI.
std::string Ms(const std::string& inner, const std::string& sync_token = "") {
  return "<?xml version=\"1.0\"?>\n<d:multistatus xmlns:d=\"DAV:\" "
         "xmlns:card=\"urn:ietf:params:xml:ns:carddav\">" +
         (sync_token.empty() ? "" : "<d:sync-token>" + sync_token + "</d:sync-token>") + inner +
         "</d:multistatus>";
}

std::string Resp(const std::string& href, const std::string& props) {
  return "<d:response><d:href>" + href + "</d:href><d:propstat><d:prop>" + props +
         "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>";
}

std::string Gone(const std::string& href) {
  return "<d:response><d:href>" + href +
         "</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>";
}

const char kBookType[] = "<d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>";
const char kSyncReports[] =
    "<d:supported-report-set><d:supported-report><d:report><d:sync-collection/></d:report>"
    "</d:supported-report></d:supported-report-set>";

std::string Etag(const std::string& etag) { return "<d:getetag>\"" + etag + "\"</d:getetag>"; }

class CardDavFakeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Target> MakeTarget(bool with_template = true, int max_in_flight = 2,
                                     bool use_ctag = false) {
    CardDavOptions options;
    options.url = "http://h/";
    options.use_ctag = use_ctag;
    if (with_template) options.home_template = "http://h/{user}/";
    options.max_in_flight = max_in_flight;
    return NewCardDavTarget(options, [this](const HttpOptions& http) {
      ++script_.clients;
      script_.logins.push_back(http.username);
      return std::make_unique<FakeHttp>(&script_, http.username);
    });
  }

  // Opens alice's book at http://h/alice/book/ (found by display name).
  std::unique_ptr<Collection> OpenBook(bool sync = true) {
    target_ = MakeTarget();
    script_.Add("PROPFIND", "http://h/alice/", 207,
                Ms(Resp("/alice/", "<d:resourcetype><d:collection/></d:resourcetype>") +
                   Resp("/alice/book/", std::string(kBookType) +
                                            "<d:displayname>Company Contacts</d:displayname>" +
                                            (sync ? kSyncReports : ""))));
    auto opened = target_->Open({"alice", "Company Contacts", "staff", ""}, true);
    EXPECT_TRUE(opened.ok()) << opened.error().message;
    script_.seen.clear();
    return opened.ok() ? std::move(opened).value() : nullptr;
  }

  void TearDown() override {
    EXPECT_TRUE(script_.steps.empty()) << script_.steps.size() << " scripted requests not made";
  }

  Script script_;
  std::unique_ptr<Target> target_;
};

std::string Deterministic(const std::string& rule) {
  return "roster-" + HashHex(rule).substr(0, 16);
}

TEST(CardDavResourceNameTest, IsDeterministicHex) {
  std::string name = CardDavResourceName("staff", "e-17");
  EXPECT_EQ(name, "roster-" + HashHex(std::string("staff\0e-17", 10)) + ".vcf");
  EXPECT_EQ(name.size(), 7u + 32u + 4u);
  EXPECT_NE(name, CardDavResourceName("staff", "e-18"));
  EXPECT_NE(CardDavResourceName("a", "bc"), CardDavResourceName("ab", "c"));
  auto target =
      NewCardDavTarget({}, [](const HttpOptions&) { return std::unique_ptr<HttpClient>(); });
  EXPECT_EQ(target->ResourceName({"staff", "e-17"}), name);
}

TEST_F(CardDavFakeTest, DiscoversHomeThroughPrincipal) {
  auto target = MakeTarget(/*with_template=*/false);
  script_.Add("PROPFIND", "http://h/alice/", 207,
              Ms(Resp("/alice/",
                      "<card:addressbook-home-set><d:href>/homes/alice/</d:href>"
                      "</card:addressbook-home-set>")));
  script_.Add("PROPFIND", "http://h/homes/alice/", 207,
              Ms(Resp("/homes/alice/", "<d:resourcetype><d:collection/></d:resourcetype>") +
                 Resp("/homes/alice/other/",
                      std::string(kBookType) + "<d:displayname>Private</d:displayname>") +
                 Resp("/homes/alice/b2/",
                      std::string(kBookType) + "<d:displayname>Company Contacts</d:displayname>")));
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, false);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book)->id(), "http://h/homes/alice/b2/");
  ASSERT_EQ(script_.seen.size(), 2u);
  EXPECT_EQ(RequestHeader(script_.seen[0], "Depth"), "0");
  EXPECT_NE(script_.seen[0].body.find("addressbook-home-set"), std::string::npos);
  EXPECT_EQ(RequestHeader(script_.seen[1], "Depth"), "1");
}

TEST_F(CardDavFakeTest, PrefersDeterministicBookOverDisplayName) {
  auto target = MakeTarget();
  const std::string det = Deterministic("staff");
  script_.Add("PROPFIND", "http://h/alice/", 207,
              Ms(Resp("/alice/a/",
                      std::string(kBookType) + "<d:displayname>Company Contacts</d:displayname>") +
                 Resp("/alice/" + det + "/",
                      std::string(kBookType) + "<d:displayname>Renamed</d:displayname>")));
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, false);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book)->id(), "http://h/alice/" + det + "/");
}

TEST_F(CardDavFakeTest, MissingHomeAndBookAreCreated) {
  auto target = MakeTarget(/*with_template=*/false);
  const std::string det = Deterministic("staff");
  // "%40" and "@" are the same path; URLs are spelled one canonical way.
  script_.Add("PROPFIND", "http://h/alice@corp/", 404);
  // The logged-in principal belongs to a service account: not alice's.
  script_.Add("PROPFIND", "http://h/", 207,
              Ms(Resp("/",
                      "<d:current-user-principal><d:href>/roster/</d:href>"
                      "</d:current-user-principal>")));
  script_.Add("PROPFIND", "http://h/alice@corp/", 404);
  script_.Add("MKCOL", "http://h/alice@corp/", 201);
  script_.Add("MKCOL", "http://h/alice@corp/" + det + "/", 201);
  script_.Add("PROPFIND", "http://h/alice@corp/" + det + "/", 207,
              Ms(Resp("/alice@corp/" + det + "/", std::string(kBookType) + kSyncReports)));
  auto book = target->Open({"alice@corp", "Company & Contacts", "staff", ""}, true);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book)->id(), "http://h/alice@corp/" + det + "/");
  ASSERT_EQ(script_.seen.size(), 6u);
  EXPECT_EQ(script_.seen[3].body, "");  // a plain MKCOL for the home
  const std::string& mkcol = script_.seen[4].body;
  EXPECT_NE(mkcol.find("<D:mkcol"), std::string::npos);
  EXPECT_NE(mkcol.find("<C:addressbook/>"), std::string::npos);
  EXPECT_NE(mkcol.find("<D:displayname>Company &amp; Contacts</D:displayname>"), std::string::npos);
}

TEST_F(CardDavFakeTest, CurrentUserPrincipalUsedWhenItIsTheUsers) {
  auto target = MakeTarget(/*with_template=*/false);
  script_.Add("PROPFIND", "http://h/alice/", 404);
  script_.Add("PROPFIND", "http://h/", 207,
              Ms(Resp("/",
                      "<d:current-user-principal><d:href>/principals/alice/</d:href>"
                      "</d:current-user-principal>")));
  script_.Add("PROPFIND", "http://h/principals/alice/", 207,
              Ms(Resp("/principals/alice/",
                      "<card:addressbook-home-set><d:href>http://h/books/alice/</d:href>"
                      "</card:addressbook-home-set>")));
  script_.Add("PROPFIND", "http://h/books/alice/", 207,
              Ms(Resp("/books/alice/c/",
                      std::string(kBookType) + "<d:displayname>Company Contacts</d:displayname>")));
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, false);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book)->id(), "http://h/books/alice/c/");
}

TEST_F(CardDavFakeTest, MissingBookWithoutCreateIsNotFound) {
  auto target = MakeTarget();
  script_.Add("PROPFIND", "http://h/alice/", 207,
              Ms(Resp("/alice/", "<d:resourcetype><d:collection/></d:resourcetype>")));
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, false);
  ASSERT_FALSE(book.ok());
  EXPECT_EQ(book.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(book.error().message, "no address book \"Company Contacts\" in http://h/alice/");
}

TEST_F(CardDavFakeTest, KnownUrlIsOpenedWithoutARequest) {
  // A quiet run costs one request per book: the sync-collection report.
  auto target = MakeTarget();
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/x/"}, true);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book)->id(), "http://h/alice/x/");
  EXPECT_TRUE(script_.seen.empty());
  script_.Add("REPORT", "http://h/alice/x/", 207, Ms("", "tok-1"));
  auto listing = (*book)->List("tok-1");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->changed.empty());
  EXPECT_EQ(script_.seen.size(), 1u);
}

TEST_F(CardDavFakeTest, UnchangedCtagSkipsTheListing) {
  auto target = MakeTarget(true, 2, /*use_ctag=*/true);
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/x/"}, true);
  ASSERT_TRUE(book.ok()) << book.error().message;
  const std::string ctag = "<cs:getctag xmlns:cs=\"http://calendarserver.org/ns/\">c1</cs:getctag>";
  // First listing: CTag read, then the report; the token carries both.
  script_.Add("PROPFIND", "http://h/alice/x/", 207, Ms(Resp("/alice/x/", ctag)));
  script_.Add("REPORT", "http://h/alice/x/", 207, Ms(Resp("/alice/x/a.vcf", Etag("1")), "tok-1"));
  auto first = (*book)->List("");
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->sync_token, "c1\ntok-1");
  ASSERT_EQ(first->changed.size(), 1u);
  // Same CTag: no report at all, an empty delta, the same token.
  script_.Add("PROPFIND", "http://h/alice/x/", 207, Ms(Resp("/alice/x/", ctag)));
  auto quiet = (*book)->List(first->sync_token);
  ASSERT_TRUE(quiet.ok()) << quiet.error().message;
  EXPECT_FALSE(quiet->full);
  EXPECT_TRUE(quiet->changed.empty());
  EXPECT_EQ(quiet->sync_token, "c1\ntok-1");
  // A new CTag: the report runs from the stored sync token.
  script_.Add("PROPFIND", "http://h/alice/x/", 207,
              Ms(Resp("/alice/x/",
                      "<cs:getctag xmlns:cs=\"http://calendarserver.org/ns/\">c2</cs:getctag>")));
  script_.Add("REPORT", "http://h/alice/x/", 207, Ms(Resp("/alice/x/b.vcf", Etag("2")), "tok-2"));
  auto delta = (*book)->List(quiet->sync_token);
  ASSERT_TRUE(delta.ok()) << delta.error().message;
  EXPECT_EQ(delta->sync_token, "c2\ntok-2");
  EXPECT_NE(script_.seen.back().body.find("tok-1"), std::string::npos);
  EXPECT_EQ(script_.seen.size(), 5u);
}

TEST_F(CardDavFakeTest, StaleKnownUrlListsAsNotFound) {
  auto target = MakeTarget();
  script_.Add("REPORT", "http://h/alice/gone/", 404);
  script_.Add("PROPFIND", "http://h/alice/gone/", 404);
  auto book = target->Open({"alice", "Company Contacts", "staff", "/alice/gone/"}, true);
  ASSERT_TRUE(book.ok()) << book.error().message;
  auto listing = (*book)->List("tok-1");
  ASSERT_FALSE(listing.ok());
  EXPECT_EQ(listing.error().kind, ErrorKind::kNotFound);
}

TEST_F(CardDavFakeTest, KnownUrlWithoutSyncSupportFallsBackToPropfind) {
  auto target = MakeTarget();
  script_.Add("REPORT", "http://h/alice/x/", 501);
  script_.Add("PROPFIND", "http://h/alice/x/", 207, Ms(Resp("/alice/x/", kBookType)));
  script_.Add("PROPFIND", "http://h/alice/x/", 207,
              Ms(Resp("/alice/x/", kBookType) + Resp("/alice/x/a.vcf", Etag("1"))));
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/x/"}, true);
  ASSERT_TRUE(book.ok()) << book.error().message;
  auto listing = (*book)->List("");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  ASSERT_EQ(listing->changed.size(), 1u);
  EXPECT_EQ(listing->changed[0].href, "/alice/x/a.vcf");
}

TEST_F(CardDavFakeTest, HttpErrorsAreOneSentence) {
  auto target = MakeTarget();
  script_.Add("PROPFIND", "http://h/alice/", 401);
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, true);
  ASSERT_FALSE(book.ok());
  EXPECT_EQ(book.error().kind, ErrorKind::kAccessDenied);
  EXPECT_EQ(book.error().message,
            "PROPFIND http://h/alice/: the server asks for credentials and none are configured "
            "(HTTP 401)");
}

TEST_F(CardDavFakeTest, BrokenXmlIsInvalidData) {
  auto target = MakeTarget();
  script_.Add("PROPFIND", "http://h/alice/", 207, "<d:multistatus xmlns:d=\"DAV:\"><d:response>");
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, true);
  ASSERT_FALSE(book.ok());
  EXPECT_EQ(book.error().kind, ErrorKind::kInvalidData);
  EXPECT_TRUE(
      book.error().message.starts_with("malformed XML in PROPFIND response from http://h/alice/: "))
      << book.error().message;
}

TEST_F(CardDavFakeTest, SyncFullListing) {
  auto book = OpenBook();
  script_.Add(
      "REPORT", "http://h/alice/book/", 207,
      Ms(Resp("/alice/book/", Etag("col")) + Resp("/alice/book/a.vcf", Etag("1")) +
             Resp("/alice/book/sub/", Etag("9")) + Resp("http://h/alice/book/b%2Dx.vcf", Etag("2")),
         "tok-1"));
  auto listing = book->List("");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  EXPECT_EQ(listing->sync_token, "tok-1");
  ASSERT_EQ(listing->changed.size(), 2u);
  EXPECT_EQ(listing->changed[0].href, "/alice/book/a.vcf");
  EXPECT_EQ(listing->changed[0].etag, "\"1\"");
  EXPECT_EQ(listing->changed[1].href, "/alice/book/b-x.vcf");
  EXPECT_TRUE(listing->removed.empty());
  const HttpRequest& report = script_.seen.at(0);
  EXPECT_EQ(RequestHeader(report, "Depth"), "0");
  EXPECT_NE(report.body.find("<D:sync-token/>"), std::string::npos);
  EXPECT_NE(report.body.find("<D:sync-level>1</D:sync-level>"), std::string::npos);
}

TEST_F(CardDavFakeTest, SyncDelta) {
  auto book = OpenBook();
  script_.Add("REPORT", "http://h/alice/book/", 207,
              Ms(Resp("/alice/book/a.vcf", Etag("3")) + Gone("/alice/book/c.vcf"), "tok-2"));
  auto listing = book->List("tok-1");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_FALSE(listing->full);
  EXPECT_EQ(listing->sync_token, "tok-2");
  ASSERT_EQ(listing->changed.size(), 1u);
  EXPECT_EQ(listing->changed[0].href, "/alice/book/a.vcf");
  EXPECT_EQ(listing->removed, std::vector<std::string>{"/alice/book/c.vcf"});
  EXPECT_NE(script_.seen.at(0).body.find("<D:sync-token>tok-1</D:sync-token>"), std::string::npos);
}

TEST_F(CardDavFakeTest, TruncatedSyncIsContinued) {
  auto book = OpenBook();
  script_.Add("REPORT", "http://h/alice/book/", 207,
              Ms(Resp("/alice/book/a.vcf", Etag("1")) +
                     "<d:response><d:href>/alice/book/</d:href><d:status>HTTP/1.1 507 "
                     "Insufficient Storage</d:status></d:response>",
                 "tok-p1"));
  script_.Add("REPORT", "http://h/alice/book/", 207,
              Ms(Resp("/alice/book/b.vcf", Etag("2")), "tok-p2"));
  auto listing = book->List("");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  EXPECT_EQ(listing->changed.size(), 2u);
  EXPECT_EQ(listing->sync_token, "tok-p2");
}

TEST_F(CardDavFakeTest, InvalidTokenFallsBackToFullListing) {
  auto book = OpenBook();
  script_.Add("REPORT", "http://h/alice/book/", 403,
              "<?xml version=\"1.0\"?><error xmlns=\"DAV:\"><valid-sync-token/></error>");
  script_.Add("REPORT", "http://h/alice/book/", 207,
              Ms(Resp("/alice/book/a.vcf", Etag("1")), "tok-new"));
  auto listing = book->List("tok-old");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  EXPECT_EQ(listing->sync_token, "tok-new");
  EXPECT_EQ(listing->changed.size(), 1u);
}

TEST_F(CardDavFakeTest, AccessDeniedOnSyncIsNotATokenProblem) {
  auto book = OpenBook();
  script_.Add("REPORT", "http://h/alice/book/", 401);
  auto listing = book->List("tok");
  ASSERT_FALSE(listing.ok());
  EXPECT_EQ(listing.error().kind, ErrorKind::kAccessDenied);
}

TEST_F(CardDavFakeTest, PropfindListingWithoutSyncSupport) {
  auto book = OpenBook(/*sync=*/false);
  script_.Add(
      "PROPFIND", "http://h/alice/book/", 207,
      Ms(Resp("/alice/book/", std::string(kBookType)) +
         Resp("/alice/book/a.vcf", Etag("1") + "<d:getcontenttype>text/vcard</d:getcontenttype>") +
         Resp("/alice/book/notes.txt",
              Etag("5") + "<d:getcontenttype>text/plain</d:getcontenttype>") +
         Resp("/alice/book/sub", "<d:resourcetype><d:collection/></d:resourcetype>")));
  auto listing = book->List("ignored");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  EXPECT_TRUE(listing->full);
  EXPECT_EQ(listing->sync_token, "");
  ASSERT_EQ(listing->changed.size(), 1u);
  EXPECT_EQ(listing->changed[0].href, "/alice/book/a.vcf");
  EXPECT_EQ(RequestHeader(script_.seen.at(0), "Depth"), "1");
}

std::string Card(const std::string& fn, const std::string& extra = "") {
  return "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nFN:" + fn + "\r\nN:;" + fn + ";;;\r\n" + extra +
         "END:VCARD\r\n";
}

TEST_F(CardDavFakeTest, MultigetParsesCardsTagsAndErrors) {
  auto book = OpenBook();
  script_.Add(
      "REPORT", "http://h/alice/book/", 207,
      Ms(Resp("/alice/book/a.vcf", Etag("1") + "<card:address-data>" +
                                       Card("Ann", "X-ROSTER-RULE:staff\r\nX-ROSTER-KEY:e-1\r\n") +
                                       "</card:address-data>") +
         Resp("/alice/book/b.vcf", Etag("2") + "<card:address-data><![CDATA[" + Card("Bob") +
                                       "]]></card:address-data>") +
         Resp("/alice/book/c.vcf",
              Etag("3") + "<card:address-data>not a vcard</card:address-data>") +
         Gone("/alice/book/d.vcf") + Resp("/alice/book/unasked.vcf", Etag("4"))));
  auto items = book->Fetch(
      {"/alice/book/a.vcf", "/alice/book/b.vcf", "/alice/book/c.vcf", "/alice/book/d.vcf"});
  ASSERT_TRUE(items.ok()) << items.error().message;
  ASSERT_EQ(items->size(), 3u);
  const RemoteItem& a = (*items)[0];
  EXPECT_EQ(a.href, "/alice/book/a.vcf");
  EXPECT_EQ(a.etag, "\"1\"");
  ASSERT_TRUE(a.tag.has_value());
  EXPECT_EQ(*a.tag, (ManagedTag{"staff", "e-1"}));
  EXPECT_EQ(std::get<Contact>(a.body).formatted_name, "Ann");
  EXPECT_EQ(a.content_hash, ContentHash(std::get<Contact>(a.body)));
  EXPECT_TRUE(a.parse_error.empty());
  EXPECT_FALSE((*items)[1].tag.has_value());
  EXPECT_EQ(std::get<Contact>((*items)[1].body).formatted_name, "Bob");
  EXPECT_FALSE((*items)[2].parse_error.empty());

  const HttpRequest& report = script_.seen.at(0);
  EXPECT_NE(report.body.find("<C:addressbook-multiget"), std::string::npos);
  EXPECT_NE(report.body.find("<D:href>/alice/book/d.vcf</D:href>"), std::string::npos);
  EXPECT_NE(report.body.find("<C:address-data/>"), std::string::npos);
}

TEST(WebDav, MultigetAsksForVCard4WhenRosterWritesIt) {
  // RFC 6352 §10.4: without it Cyrus serves a lossy 3.0 conversion of a 4.0
  // card, and a photo card would look changed after lost state.
  EXPECT_NE(webdav::MultigetBody({"/a.vcf"}, true)
                .find("<C:address-data content-type=\"text/vcard\" version=\"4.0\"/>"),
            std::string::npos);
  EXPECT_NE(webdav::MultigetBody({"/a.vcf"}).find("<C:address-data/>"), std::string::npos);
}

TEST(WebDav, EncodeSegmentKeepsOnlyUnreservedCharacters) {
  // A user name or resource name becomes one path segment: "/" and "%" must
  // not survive, and the spelling is what servers were sent before.
  std::string ascii;
  for (char c = 0x20; c < 0x7f; ++c) ascii += c;
  EXPECT_EQ(webdav::EncodeSegment(ascii),
            "%20%21%22%23%24%25%26%27%28%29%2A%2B%2C-.%2F0123456789%3A%3B%3C%3D%3E%3F%40"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ%5B%5C%5D%5E_%60abcdefghijklmnopqrstuvwxyz%7B%7C%7D~");
  EXPECT_EQ(webdav::EncodeSegment(std::string("\x00\x01\t\n\r\x1f\x7f\x80\xc3\xa9\xff", 11)),
            "%00%01%09%0A%0D%1F%7F%80%C3%A9%FF");
  EXPECT_EQ(webdav::EncodeSegment(""), "");
}

TEST(WebDav, DecodePercentDecodesOnlyCompleteEscapes) {
  EXPECT_EQ(webdav::DecodePercent("%41%7a%2F%2f%c3%A9%g1%4%%%25x%"), "Az//\xc3\xa9%g1%4%%%x%");
  EXPECT_EQ(webdav::DecodePercent(webdav::EncodeSegment("a/b c%")), "a/b c%");
}

TEST_F(CardDavFakeTest, MultigetInChunksOf100) {
  auto book = OpenBook();
  std::vector<std::string> hrefs;
  for (int i = 0; i < 150; ++i) hrefs.push_back("/alice/book/" + std::to_string(i) + ".vcf");
  script_.Add("REPORT", "http://h/alice/book/", 207, Ms(""));
  script_.Add("REPORT", "http://h/alice/book/", 207, Ms(""));
  auto items = book->Fetch(hrefs);
  ASSERT_TRUE(items.ok()) << items.error().message;
  ASSERT_EQ(script_.seen.size(), 2u);
  EXPECT_NE(script_.seen[0].body.find("/99.vcf<"), std::string::npos);
  EXPECT_EQ(script_.seen[0].body.find("/100.vcf<"), std::string::npos);
  EXPECT_NE(script_.seen[1].body.find("/149.vcf<"), std::string::npos);
}

TEST_F(CardDavFakeTest, CreatePutsWithIfNoneMatch) {
  auto book = OpenBook();
  const std::string name = CardDavResourceName("staff", "e-1");
  script_.Add("PUT", "http://h/alice/book/" + name, 201, "", {{"etag", "\"e1\""}});
  Contact ann;
  ann.formatted_name = "Ann";
  ann.given_name = "Ann";
  auto written = book->Create(name, {"staff", "e-1"}, ann);
  ASSERT_TRUE(written.ok()) << written.error().message;
  EXPECT_EQ(written->href, "/alice/book/" + name);
  EXPECT_EQ(written->etag, "\"e1\"");
  const HttpRequest& put = script_.seen.at(0);
  EXPECT_EQ(RequestHeader(put, "If-None-Match"), "*");
  EXPECT_EQ(RequestHeader(put, "Content-Type"), "text/vcard; charset=utf-8");
  EXPECT_NE(put.body.find("X-ROSTER-RULE:staff"), std::string::npos);
  EXPECT_NE(put.body.find("X-ROSTER-KEY:e-1"), std::string::npos);
  EXPECT_NE(put.body.find("UID:" + name.substr(0, name.size() - 4)), std::string::npos);

  script_.Add("PUT", "http://h/alice/book/" + name, 412);
  auto again = book->Create(name, {"staff", "e-1"}, ann);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::kPreconditionFailed);
  EXPECT_EQ(again.error().message,
            "PUT http://h/alice/book/" + name + ": HTTP 412 Precondition Failed");
}

TEST_F(CardDavFakeTest, UpdateAndDeleteUseIfMatch) {
  auto book = OpenBook();
  Contact ann;
  ann.formatted_name = "Ann";
  script_.Add("PUT", "http://h/alice/book/a.vcf", 204);  // no ETag from this server
  auto updated = book->Update("/alice/book/a.vcf", "\"1\"", {"staff", "e-1"}, ann);
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ(updated->etag, "");
  EXPECT_EQ(RequestHeader(script_.seen.at(0), "If-Match"), "\"1\"");
  EXPECT_NE(script_.seen.at(0).body.find("UID:a\r\n"), std::string::npos);

  script_.Add("PUT", "http://h/alice/book/a.vcf", 412);
  auto stale = book->Update("/alice/book/a.vcf", "\"0\"", {"staff", "e-1"}, ann);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().kind, ErrorKind::kPreconditionFailed);

  script_.Add("DELETE", "http://h/alice/book/a.vcf", 204);
  EXPECT_TRUE(book->Delete("/alice/book/a.vcf", "\"2\"").ok());
  EXPECT_EQ(RequestHeader(script_.seen.back(), "If-Match"), "\"2\"");
  script_.Add("DELETE", "http://h/alice/book/a.vcf", 404);
  EXPECT_TRUE(book->Delete("/alice/book/a.vcf", "\"2\"").ok());
  script_.Add("DELETE", "http://h/alice/book/a.vcf", 412);
  Status deleted = book->Delete("/alice/book/a.vcf", "\"1\"");
  ASSERT_FALSE(deleted.ok());
  EXPECT_EQ(deleted.error().kind, ErrorKind::kPreconditionFailed);
  script_.Add("DELETE", "http://h/alice/book/a.vcf", 500);
  deleted = book->Delete("/alice/book/a.vcf", "\"1\"");
  ASSERT_FALSE(deleted.ok());
  EXPECT_EQ(deleted.error().kind, ErrorKind::kTransient);
  EXPECT_EQ(deleted.error().message,
            "DELETE http://h/alice/book/a.vcf: HTTP 500 Internal Server Error");
}

TEST_F(CardDavFakeTest, ClientsArePooled) {
  auto target = MakeTarget(true, /*max_in_flight=*/2);
  EXPECT_EQ(target->max_in_flight(), 2);
  std::vector<std::unique_ptr<Collection>> books;
  for (int i = 0; i < 3; ++i) {
    script_.Add("PROPFIND", "http://h/alice/", 207,
                Ms(Resp("/alice/b/", std::string(kBookType) +
                                         "<d:displayname>Company Contacts</d:displayname>")));
    auto book = target->Open({"alice", "Company Contacts", "staff", ""}, false);
    ASSERT_TRUE(book.ok());
    books.push_back(std::move(book).value());
  }
  // Requests from several threads at once never need more than the pool.
  for (int i = 0; i < 6; ++i) script_.Add("DELETE", "http://h/alice/b/x.vcf", 204);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&books, i] { (void)books[i % 3]->Delete("/alice/b/x.vcf", "\"1\""); });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(script_.clients, 2);
}

// ---------------------------------------------------------------------------
// Against a hostile or broken server.

class HostileServerTest : public CardDavFakeTest {
 protected:
  std::unique_ptr<Target> MakeTargetWith(CardDavOptions options) {
    return NewCardDavTarget(options, [this](const HttpOptions& http) {
      ++script_.clients;
      script_.logins.push_back(http.username);
      options_seen_.push_back(http);
      return std::make_unique<FakeHttp>(&script_, http.username);
    });
  }
  static CardDavOptions Discovering(const std::string& url = "http://h/") {
    CardDavOptions options;
    options.url = url;
    options.use_ctag = false;
    return options;
  }
  std::vector<HttpOptions> options_seen_;
};

TEST_F(HostileServerTest, ClientsMayAskOnlyTheConfiguredOrigin) {
  CardDavOptions options = Discovering("https://H.example/dav/");
  options.http.max_response_bytes = 1u << 30;
  auto target = MakeTargetWith(options);
  script_.Add("PROPFIND", "https://H.example/dav/alice/", 404);
  script_.Add("PROPFIND", "https://H.example/dav/", 207, Ms(""));
  script_.Add("PROPFIND", "https://H.example/dav/alice/", 404);
  (void)target->Open({"alice", "Company Contacts", "staff", ""}, false);
  ASSERT_FALSE(options_seen_.empty());
  EXPECT_EQ(options_seen_[0].allowed_origin, "https://h.example:443");
  EXPECT_EQ(options_seen_[0].max_response_bytes, options.max_response_bytes);  // capped
}

TEST_F(HostileServerTest, HomeSetOnAnotherOriginIsRefused) {
  for (const std::string& home :
       {std::string("http://127.0.0.1:9/alice/"), std::string("http://h.example/alice/"),
        std::string("//h.example:8443/alice/")}) {
    auto target = MakeTargetWith(Discovering("https://h.example/"));
    script_.Add("PROPFIND", "https://h.example/alice/", 207,
                Ms(Resp("/alice/", "<card:addressbook-home-set><d:href>" + home +
                                       "</d:href></card:addressbook-home-set>")));
    auto book = target->Open({"alice", "Company Contacts", "staff", ""}, true);
    ASSERT_FALSE(book.ok()) << home;
    EXPECT_EQ(book.error().kind, ErrorKind::kAccessDenied);
    EXPECT_NE(book.error().message.find("\"" + home + "\""), std::string::npos)
        << book.error().message;
    EXPECT_NE(book.error().message.find("https://h.example:443"), std::string::npos);
    EXPECT_TRUE(script_.steps.empty());  // nothing was asked of the other origin
  }
}

TEST_F(HostileServerTest, CurrentUserPrincipalOnAnotherOriginIsRefused) {
  CardDavOptions options = Discovering();
  options.http.username = "alice";
  auto target = MakeTargetWith(options);
  script_.Add("PROPFIND", "http://h/alice/", 404);
  script_.Add("PROPFIND", "http://h/", 207,
              Ms(Resp("/",
                      "<d:current-user-principal><d:href>http://evil/alice/</d:href>"
                      "</d:current-user-principal>")));
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, true);
  ASSERT_FALSE(book.ok());
  EXPECT_EQ(book.error().kind, ErrorKind::kAccessDenied);
  EXPECT_NE(book.error().message.find("http://evil/alice/"), std::string::npos);
}

TEST_F(HostileServerTest, RememberedBookOnAnotherOriginIsLookedUpAgain) {
  auto target = MakeTarget();
  script_.Add("PROPFIND", "http://h/alice/", 207,
              Ms(Resp("/alice/b/",
                      std::string(kBookType) + "<d:displayname>Company Contacts</d:displayname>")));
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://evil/alice/b/"}, true);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book)->id(), "http://h/alice/b/");
  auto warnings = (*book)->TakeWarnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("http://evil/alice/b/"), std::string::npos);
}

// The hrefs a hostile listing used to make roster write into bob's book.
std::string Outsiders(const std::string& props) {
  return Resp("../bob/book/a.vcf", props) + Resp("/bob/book/b.vcf", props) +
         Resp("/alice/book/%2e%2e/%2E%2E/bob/book/c.vcf", props) +
         Resp("%2e%2e/%2e%2e/bob/book/d.vcf", props) + Resp("http://evil/alice/book/e.vcf", props) +
         Resp("https://h/alice/book/f.vcf", props) + Resp("/alice/book/sub/g.vcf", props) +
         Resp("/alice/h.vcf", props) + Gone("/bob/book/gone.vcf");
}

TEST_F(HostileServerTest, ListingsKeepOnlyDirectMembersOfTheBook) {
  auto book = OpenBook();
  script_.Add("REPORT", "http://h/alice/book/", 207,
              Ms(Outsiders(Etag("x")) + Resp("/alice/book/ok.vcf", Etag("1")), "tok-1"));
  auto listing = book->List("tok-0");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  ASSERT_EQ(listing->changed.size(), 1u);
  EXPECT_EQ(listing->changed[0].href, "/alice/book/ok.vcf");
  EXPECT_TRUE(listing->removed.empty());
  auto warnings = book->TakeWarnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("9 hrefs outside http://h/alice/book/ ignored"), std::string::npos)
      << warnings[0];
  EXPECT_TRUE(book->TakeWarnings().empty());

  auto plain = OpenBook(/*sync=*/false);
  script_.Add("PROPFIND", "http://h/alice/book/", 207,
              Ms(Outsiders(Etag("x")) + Resp("/alice/book/ok.vcf", Etag("1"))));
  listing = plain->List("");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  ASSERT_EQ(listing->changed.size(), 1u);
  EXPECT_EQ(plain->TakeWarnings().size(), 1u);
}

TEST_F(HostileServerTest, MultigetReadsOnlyItemsOfTheBook) {
  auto book = OpenBook();
  const std::string card = "<card:address-data>" + Card("Bob") + "</card:address-data>";
  script_.Add("REPORT", "http://h/alice/book/", 207,
              Ms(Outsiders(Etag("x") + card) + Resp("/alice/book/ok.vcf", Etag("1") + card)));
  auto items = book->Fetch({"/alice/book/ok.vcf", "/bob/book/b.vcf", "../bob/book/a.vcf",
                            "http://evil/alice/book/e.vcf"});
  ASSERT_TRUE(items.ok()) << items.error().message;
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].href, "/alice/book/ok.vcf");
  const std::string& asked = script_.seen.at(0).body;
  EXPECT_EQ(asked.find("bob"), std::string::npos) << asked;
  EXPECT_EQ(asked.find("evil"), std::string::npos) << asked;
  EXPECT_EQ(book->TakeWarnings().size(), 2u);  // what was asked, what was answered
}

TEST_F(HostileServerTest, UpdateAndDeleteRefuseHrefsOutsideTheBook) {
  auto book = OpenBook();
  Contact ann;
  ann.formatted_name = "Ann";
  for (const std::string& href :
       {std::string("/bob/book/a.vcf"), std::string("/alice/book/../../bob/book/a.vcf"),
        std::string("/alice/book/%2e%2e/x.vcf"), std::string("http://evil/alice/book/a.vcf"),
        std::string("/alice/book/"), std::string("/alice/book/sub/a.vcf"),
        std::string("/alice/book/sub/")}) {
    auto updated = book->Update(href, "\"1\"", {"staff", "e-1"}, ann);
    ASSERT_FALSE(updated.ok()) << href;
    EXPECT_EQ(updated.error().kind, ErrorKind::kInvalidData);
    Status deleted = book->Delete(href, "\"1\"");
    ASSERT_FALSE(deleted.ok()) << href;
    EXPECT_EQ(deleted.error().kind, ErrorKind::kInvalidData);
    EXPECT_NE(deleted.error().message.find("not an item of http://h/alice/book/"),
              std::string::npos);
  }
  EXPECT_TRUE(script_.seen.empty());
}

TEST_F(HostileServerTest, OnlyBooksStrictlyInsideTheHomeAreTaken) {
  auto target = MakeTarget();
  const std::string det = Deterministic("staff");
  const std::string named =
      std::string(kBookType) + "<d:displayname>Company Contacts</d:displayname>";
  script_.Add(
      "PROPFIND", "http://h/alice/", 207,
      Ms(Resp("/alice/", "<d:resourcetype><d:collection/></d:resourcetype>") +
         Resp("/bob/" + det + "/", named) + Resp("../bob/b/", named) +
         Resp("http://evil/alice/c/", named) + Resp("/alice/x/y/", named) + Resp("/", named)));
  script_.Add("MKCOL", "http://h/alice/" + det + "/", 201);
  script_.Add("PROPFIND", "http://h/alice/" + det + "/", 207,
              Ms(Resp("/alice/" + det + "/", kBookType)));
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, true);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book)->id(), "http://h/alice/" + det + "/");
  auto warnings = (*book)->TakeWarnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("5 hrefs outside http://h/alice/"), std::string::npos) << warnings[0];
}

TEST_F(HostileServerTest, UnsafeEtagsTokensAndCtagsCountAsAbsent) {
  auto target = MakeTarget(true, 2, /*use_ctag=*/true);
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/b/"}, true);
  ASSERT_TRUE(book.ok());
  script_.Add("PROPFIND", "http://h/alice/b/", 207,
              Ms(Resp("/alice/b/",
                      "<cs:getctag xmlns:cs=\"http://calendarserver.org/ns/\">c&#13;"
                      "&#10;X: 1</cs:getctag>")));
  script_.Add(
      "REPORT", "http://h/alice/b/", 207,
      Ms(Resp("/alice/b/a.vcf", "<d:getetag>\"1\"&#13;&#10;X-Evil: 1</d:getetag>") +
             Resp("/alice/b/b.vcf", "<d:getetag>\"" + std::string(2000, 'x') + "\"</d:getetag>") +
             Resp("/alice/b/c.vcf", Etag("3")),
         "tok&#27;en"));
  auto listing = (*book)->List("");
  ASSERT_TRUE(listing.ok()) << listing.error().message;
  ASSERT_EQ(listing->changed.size(), 3u);
  EXPECT_EQ(listing->changed[0].etag, "");
  EXPECT_EQ(listing->changed[1].etag, "");
  EXPECT_EQ(listing->changed[2].etag, "\"3\"");
  EXPECT_EQ(listing->sync_token, "");  // no CTag, no token: the next run lists in full
  auto warnings = (*book)->TakeWarnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("2 etags"), std::string::npos);

  Contact ann;
  ann.formatted_name = "Ann";
  script_.Add("PUT", "http://h/alice/b/c.vcf", 204, "", {{"etag", "\"4\"\r\nX-Evil: 1"}});
  auto written = (*book)->Update("/alice/b/c.vcf", "\"3\"", {"staff", "e-1"}, ann);
  ASSERT_TRUE(written.ok()) << written.error().message;
  EXPECT_EQ(written->etag, "");
}

TEST_F(HostileServerTest, AlwaysTruncatedSyncIsBoundedByBytes) {
  CardDavOptions options;
  options.url = "http://h/";
  options.home_template = "http://h/{user}/";
  options.use_ctag = false;
  options.max_listing_bytes = 4000;
  auto target = MakeTargetWith(options);
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/b/"}, true);
  ASSERT_TRUE(book.ok());
  const std::string truncated =
      "<d:response><d:href>/alice/b/</d:href><d:status>HTTP/1.1 507 Insufficient Storage"
      "</d:status></d:response>";
  for (int i = 0; i < 100; ++i) {
    script_.Add("REPORT", "http://h/alice/b/", 207,
                Ms(Resp("/alice/b/" + std::to_string(i) + ".vcf", Etag("1")) + truncated,
                   "tok-" + std::to_string(i)));
  }
  auto listing = (*book)->List("");
  ASSERT_FALSE(listing.ok());
  EXPECT_EQ(listing.error().kind, ErrorKind::kInvalidData);
  EXPECT_NE(listing.error().message.find("the listing of http://h/alice/b/ was stopped after"),
            std::string::npos)
      << listing.error().message;
  EXPECT_LT(script_.seen.size(), 20u);
  script_.steps.clear();
}

TEST_F(HostileServerTest, AlwaysTruncatedSyncIsBoundedByItems) {
  CardDavOptions options;
  options.url = "http://h/";
  options.use_ctag = false;
  options.max_listing_items = 5;
  auto target = MakeTargetWith(options);
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/b/"}, true);
  ASSERT_TRUE(book.ok());
  for (int i = 0; i < 10; ++i) {
    script_.Add("REPORT", "http://h/alice/b/", 207,
                Ms(Resp("/alice/b/" + std::to_string(i) + "a.vcf", Etag("1")) +
                       Resp("/alice/b/" + std::to_string(i) + "b.vcf", Etag("1")) +
                       "<d:response><d:href>/alice/b/</d:href><d:status>HTTP/1.1 507 x"
                       "</d:status></d:response>",
                   "tok-" + std::to_string(i)));
  }
  auto listing = (*book)->List("");
  ASSERT_FALSE(listing.ok());
  EXPECT_NE(listing.error().message.find("or 5 items"), std::string::npos)
      << listing.error().message;
  EXPECT_EQ(script_.seen.size(), 3u);
  script_.steps.clear();
}

TEST_F(HostileServerTest, RunByteBudgetStopsFurtherRequests) {
  CardDavOptions options;
  options.url = "http://h/";
  options.use_ctag = false;
  options.max_run_bytes = 1000;
  auto target = MakeTargetWith(options);
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/b/"}, true);
  ASSERT_TRUE(book.ok());
  std::string big;
  for (int i = 0; i < 20; ++i) big += Resp("/alice/b/" + std::to_string(i) + ".vcf", Etag("1"));
  script_.Add("REPORT", "http://h/alice/b/", 207, Ms(big, "tok-1"));
  ASSERT_TRUE((*book)->List("").ok());
  auto again = (*book)->List("tok-1");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::kAborted);
  EXPECT_NE(again.error().message.find("not sent: this run already read"), std::string::npos)
      << again.error().message;
  EXPECT_EQ(script_.seen.size(), 1u);
}

TEST_F(HostileServerTest, OversizedAnswerIsRefused) {
  CardDavOptions options;
  options.url = "http://h/";
  options.use_ctag = false;
  options.max_response_bytes = 500;
  auto target = MakeTargetWith(options);
  auto book = target->Open({"alice", "Company Contacts", "staff", "http://h/alice/b/"}, true);
  ASSERT_TRUE(book.ok());
  script_.Add("REPORT", "http://h/alice/b/", 207, Ms(std::string(1000, ' '), "tok-1"));
  auto listing = (*book)->List("");
  ASSERT_FALSE(listing.ok());
  EXPECT_EQ(listing.error().kind, ErrorKind::kInvalidData);
  EXPECT_NE(listing.error().message.find("response larger than 500 bytes"), std::string::npos);
}

TEST_F(HostileServerTest, PerUserLoginsNeverFallBackToTheSharedAccount) {
  CardDavOptions options;
  options.url = "http://h/";
  options.home_template = "http://h/{user}/";
  options.http.username = "roster";
  options.http.password = "shared-secret";
  options.user_passwords = {{"alice", "alice-pw"}, {"carol", "carol-pw"}};
  auto target = MakeTargetWith(options);
  auto bob = target->Open({"bob", "Company Contacts", "staff", ""}, true);
  ASSERT_FALSE(bob.ok());
  EXPECT_EQ(bob.error().kind, ErrorKind::kAccessDenied);
  EXPECT_NE(bob.error().message.find("\"bob\""), std::string::npos);
  EXPECT_EQ(bob.error().message.find("secret"), std::string::npos);
  EXPECT_TRUE(script_.seen.empty());

  const std::string named =
      std::string(kBookType) + "<d:displayname>Company Contacts</d:displayname>";
  script_.Add("PROPFIND", "http://h/alice/", 207, Ms(Resp("/alice/b/", named)));
  script_.Add("PROPFIND", "http://h/carol/", 207, Ms(Resp("/carol/b/", named)));
  auto alice = target->Open({"alice", "Company Contacts", "staff", ""}, true);
  auto carol = target->Open({"carol", "Company Contacts", "staff", ""}, true);
  ASSERT_TRUE(alice.ok() && carol.ok());
  script_.Add("DELETE", "http://h/alice/b/x.vcf", 204);
  script_.Add("DELETE", "http://h/carol/b/x.vcf", 204);
  ASSERT_TRUE((*alice)->Delete("/alice/b/x.vcf", "\"1\"").ok());
  ASSERT_TRUE((*carol)->Delete("/carol/b/x.vcf", "\"1\"").ok());
  EXPECT_EQ(script_.seen_as, (std::vector<std::string>{"alice", "carol", "alice", "carol"}));
  ASSERT_EQ(options_seen_.size(), 2u);  // one connection each, reused
  EXPECT_EQ(options_seen_[0].password, "alice-pw");
  EXPECT_EQ(options_seen_[1].password, "carol-pw");
}

TEST_F(HostileServerTest, PerUserPoolsShareOneInFlightLimit) {
  CardDavOptions options;
  options.url = "http://h/";
  options.home_template = "http://h/{user}/";
  options.max_in_flight = 2;
  std::vector<std::string> users = {"u0", "u1", "u2", "u3"};
  for (const std::string& u : users) options.user_passwords[u] = "pw-" + u;
  auto target = MakeTargetWith(options);
  std::vector<std::unique_ptr<Collection>> books;
  for (const std::string& u : users) {
    auto book = target->Open({u, "Company Contacts", "staff", "http://h/" + u + "/b/"}, true);
    ASSERT_TRUE(book.ok());
    books.push_back(std::move(book).value());
  }
  for (int i = 0; i < 16; ++i) {
    script_.Add("DELETE", "", 204);  // URLs differ by thread; checked below
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&books, &users, i] {
      const std::string& u = users[i % 4];
      (void)books[i % 4]->Delete("/" + u + "/b/x.vcf", "\"1\"");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(script_.max_in_flight.load(), 2);
  for (size_t i = 0; i < script_.seen.size(); ++i) {
    EXPECT_TRUE(script_.seen[i].url.starts_with("http://h/" + script_.seen_as[i] + "/"))
        << script_.seen[i].url << " sent as " << script_.seen_as[i];
  }
}

TEST_F(HostileServerTest, RefusedLoginNamesTheUser) {
  CardDavOptions options;
  options.url = "http://h/";
  options.home_template = "http://h/{user}/";
  options.http.username = "roster";
  options.http.password = "pw-7d1c";
  auto target = MakeTargetWith(options);
  script_.Add("PROPFIND", "http://h/alice/", 401);
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, true);
  ASSERT_FALSE(book.ok());
  EXPECT_EQ(book.error().kind, ErrorKind::kAccessDenied);
  EXPECT_EQ(book.error().message,
            "PROPFIND http://h/alice/: the server refused the credentials of user \"roster\" "
            "(HTTP 401)");
}

TEST_F(HostileServerTest, MissingPrincipalIsSaidSo) {
  CardDavOptions options = Discovering("http://h/dav/principals/user/");
  options.http.username = "alice";
  auto target = MakeTargetWith(options);
  const std::string principal = "http://h/dav/principals/user/alice/";
  script_.Add("PROPFIND", principal, 404);
  script_.Add("PROPFIND", "http://h/dav/principals/user/", 207, Ms(""));
  script_.Add("PROPFIND", principal, 404);
  script_.Add("MKCOL", principal, 403);
  auto book = target->Open({"alice", "Company Contacts", "staff", ""}, true);
  ASSERT_FALSE(book.ok());
  EXPECT_EQ(book.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(book.error().message,
            "the principal " + principal + " does not exist (the user may never have logged in)");
}

// ---------------------------------------------------------------------------
// The multistatus parser on its own.

TEST(MultistatusTest, NamespacesByUriNotPrefix) {
  auto ms = webdav::ParseMultistatus(
      "<multistatus xmlns='DAV:'><response><href> /a/ </href><propstat><prop>"
      "<resourcetype><collection/><x:addressbook xmlns:x='urn:ietf:params:xml:ns:carddav'/>"
      "<y:addressbook xmlns:y='urn:other'/></resourcetype></prop>"
      "<status>HTTP/1.1 200 OK</status></propstat><propstat><prop><displayname/></prop>"
      "<status>HTTP/1.1 404 Not Found</status></propstat></response>"
      "<D:response xmlns:D='urn:not-dav'><D:href>/b/</D:href></D:response></multistatus>",
      "test");
  ASSERT_TRUE(ms.ok()) << ms.error().message;
  ASSERT_EQ(ms->responses.size(), 1u);  // the second "response" is not DAV's
  EXPECT_EQ(ms->responses[0].href, "/a/");
  EXPECT_TRUE(ms->responses[0].IsAddressBook());
  EXPECT_TRUE(ms->responses[0].IsCollection());
  EXPECT_EQ(ms->responses[0].Find("DAV:", "displayname"), nullptr);  // 404 propstat
}

TEST(MultistatusTest, RejectsWrongRootAndDeepNesting) {
  auto wrong = webdav::ParseMultistatus("<html><body>Login</body></html>", "PROPFIND response");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().kind, ErrorKind::kInvalidData);

  std::string deep =
      "<d:multistatus xmlns:d='DAV:'><d:response><d:href>/a</d:href><d:propstat>"
      "<d:status>HTTP/1.1 200 OK</d:status><d:prop><d:x>";
  for (int i = 0; i < 5000; ++i) deep += "<d:y>";
  for (int i = 0; i < 5000; ++i) deep += "</d:y>";
  deep += "</d:x></d:prop></d:propstat></d:response></d:multistatus>";
  auto nested = webdav::ParseMultistatus(deep, "test");
  ASSERT_FALSE(nested.ok());
  EXPECT_EQ(nested.error().kind, ErrorKind::kInvalidData);

  EXPECT_FALSE(webdav::ParseMultistatus("", "test").ok());
  EXPECT_FALSE(webdav::ParseMultistatus(std::string("\0\xff<", 3), "test").ok());
}

TEST(MultistatusTest, DomOfEmptyElementsIsCapped) {
  std::string xml = "<d:multistatus xmlns:d='DAV:'>";
  while (xml.size() < (8u << 20)) xml += "<a/><a/><a/><a/><a/><a/><a/><a/>";
  xml += "</d:multistatus>";
  auto ms = webdav::ParseMultistatus(xml, "REPORT response from http://h/");
  ASSERT_FALSE(ms.ok());
  EXPECT_EQ(ms.error().kind, ErrorKind::kInvalidData);
  EXPECT_NE(ms.error().message.find("too complex to parse"), std::string::npos)
      << ms.error().message;
}

TEST(MultistatusTest, ARealListingAsLargeAsAnAnswerMayBeParses) {
  // Radicale's spelling of a sync-collection answer, up to the 8 MiB cap.
  std::string xml = "<?xml version='1.0' encoding='utf-8'?>\n<multistatus xmlns=\"DAV:\">";
  int n = 0;
  const std::string tail = "<sync-token>http://radicale.org/ns/sync/abc</sync-token></multistatus>";
  for (;; ++n) {
    std::string r =
        "<response><href>/alice/roster-0123456789abcdef/roster-" + std::to_string(1000000 + n) +
        "0123456789abcdef01234.vcf</href><propstat><prop><getetag>\"" + std::to_string(n) +
        "-0123456789abcdef0123\"</getetag><getcontenttype>text/vcard;charset=utf-8"
        "</getcontenttype></prop><status>HTTP/1.1 200 OK</status></propstat>"
        "</response>";
    if (xml.size() + r.size() + tail.size() > (8u << 20)) break;
    xml += r;
  }
  xml += tail;
  auto ms = webdav::ParseMultistatus(xml, "test");
  ASSERT_TRUE(ms.ok()) << ms.error().message;
  EXPECT_EQ(ms->responses.size(), static_cast<size_t>(n));
}

TEST(HrefTest, ResolvedOnceAndComparedByOrigin) {
  const std::string book = "http://h/alice/book/";
  webdav::Href h = webdav::ResolveHref(book, "%2e%2e/%2E%2E/bob/book/x.vcf");
  EXPECT_TRUE(h.same_origin);
  EXPECT_EQ(h.path, "/bob/book/x.vcf");
  EXPECT_FALSE(webdav::IsDirectMember("/alice/book/", h.path));
  h = webdav::ResolveHref(book, " http://H:80/alice/book/a%2Dx.vcf?q#f ");
  EXPECT_TRUE(h.same_origin);
  EXPECT_EQ(h.path, "/alice/book/a-x.vcf");
  EXPECT_EQ(h.url, "http://h/alice/book/a-x.vcf");
  EXPECT_TRUE(webdav::IsDirectMember("/alice/book/", h.path));
  EXPECT_FALSE(webdav::ResolveHref(book, "https://h/alice/book/a.vcf").same_origin);
  EXPECT_FALSE(webdav::ResolveHref(book, "//evil/alice/book/a.vcf").same_origin);
  EXPECT_TRUE(webdav::ResolveHref(book, "").same_origin);

  EXPECT_TRUE(webdav::IsDirectMember("/a/b/", "/a/b/sub/"));
  EXPECT_FALSE(webdav::IsDirectMember("/a/b/", "/a/b/"));
  EXPECT_FALSE(webdav::IsDirectMember("/a/b/", "/a/b//"));
  EXPECT_FALSE(webdav::IsDirectMember("/a/b/", "/a/b/c/d"));
  EXPECT_FALSE(webdav::IsDirectMember("/a/b/", "/a/bc"));
  EXPECT_FALSE(webdav::IsDirectMember("/a/b", "/a/b/c"));
  // A server that decodes %2F before removing dot segments must not be led out.
  h = webdav::ResolveHref(book, "..%2f..%2Fbob%2fbook%2Fx.vcf");
  EXPECT_EQ(h.path, "/alice/book/..%2F..%2Fbob%2Fbook%2Fx.vcf");
  EXPECT_FALSE(webdav::IsDirectMember("/alice/book/", h.path));
  EXPECT_FALSE(
      webdav::IsDirectMember("/alice/book/", webdav::ResolveHref(book, "..%5c..%5Cx").path));
}

// ---------------------------------------------------------------------------
// Against a real Radicale, started here on a free port.

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool PortAnswers(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

class RadicaleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v radicale >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "radicale is not on the PATH";
    }
    char dir_template[] = "/tmp/roster-radicale-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    port_ = FreePort();
    std::ofstream(dir_ + "/config") << "[server]\nhosts = 127.0.0.1:" << port_
                                    << "\n[auth]\ntype = none\n[rights]\ntype = authenticated\n"
                                    << "[storage]\nfilesystem_folder = " << dir_ << "/data\n";
    const std::string config = dir_ + "/config";
    const std::string log = dir_ + "/log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const char* argv[] = {"radicale", "--config", config.c_str(), nullptr};
    int rc = posix_spawnp(&pid_, "radicale", &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0);
    for (int i = 0; i < 200 && !PortAnswers(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(PortAnswers(port_)) << "radicale did not start; see " << log;
    base_ = "http://127.0.0.1:" + std::to_string(port_) + "/";
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  CardDavOptions Options() const {
    CardDavOptions options;
    options.url = base_;
    options.http.username = "roster";  // [auth] type = none accepts any login
    options.http.password = "unused";
    return options;
  }

  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string base_;
};

Contact Person(const std::string& given, const std::string& family) {
  Contact c;
  c.given_name = given;
  c.family_name = family;
  c.formatted_name = given + " " + family;
  c.emails.push_back({text::AsciiLower(given) + "@example.com", {"work"}, false});
  return c;
}

const CollectionSpec kAliceBook{"alice", "Company Contacts", "staff", ""};

// The three people the tests below write, by record key.
std::vector<std::pair<std::string, Contact>> People() {
  return {
      {"e-1", Person("Ann", "Lee")}, {"e-2", Person("Bo", "Chan")}, {"e-3", Person("Cy", "Díaz")}};
}

std::unique_ptr<Collection> OpenOrCreate(Target& target, const CollectionSpec& spec) {
  auto book = target.Open(spec, /*create=*/true);
  EXPECT_TRUE(book.ok()) << book.error().message;
  return book.ok() ? std::move(book).value() : nullptr;
}

// Creates People() in `book`; key -> where each went.
std::map<std::string, WriteResult> CreatePeople(Collection& book) {
  std::map<std::string, WriteResult> written;
  for (const auto& [key, contact] : People()) {
    auto w = book.Create(CardDavResourceName("staff", key), {"staff", key}, contact);
    EXPECT_TRUE(w.ok()) << w.error().message;
    if (w.ok()) written[key] = *w;
  }
  return written;
}

TEST_F(RadicaleTest, BooksAreCreatedOnceAndFoundAgain) {
  auto target = NewCardDavTarget(Options());
  auto missing = target->Open(kAliceBook, /*create=*/false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ErrorKind::kNotFound);

  auto alice = OpenOrCreate(*target, kAliceBook);
  auto bob = OpenOrCreate(*target, {"bob", "Company Contacts", "staff", ""});
  ASSERT_TRUE(alice && bob);
  EXPECT_NE(alice->id(), bob->id());
  EXPECT_EQ(alice->id(), base_ + "alice/roster-" + HashHex("staff").substr(0, 16) + "/");

  // Opening again finds the same book, by known URL and by search.
  auto again = target->Open({"alice", "Company Contacts", "staff", alice->id()}, false);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)->id(), alice->id());
  again = target->Open(kAliceBook, false);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)->id(), alice->id());
}

TEST_F(RadicaleTest, CardsAreListedUpdatedAndReadBack) {
  auto target = NewCardDavTarget(Options());
  auto alice = OpenOrCreate(*target, kAliceBook);
  auto bob = OpenOrCreate(*target, {"bob", "Company Contacts", "staff", ""});
  ASSERT_TRUE(alice && bob);
  std::map<std::string, WriteResult> written = CreatePeople(*alice);
  ASSERT_EQ(written.size(), 3u);
  auto dup =
      alice->Create(CardDavResourceName("staff", "e-1"), {"staff", "e-1"}, People()[0].second);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().kind, ErrorKind::kPreconditionFailed);
  // The executor finds what is at a name after a 412 through HrefOf.
  EXPECT_EQ(alice->HrefOf(CardDavResourceName("staff", "e-1")), written["e-1"].href);

  auto full = alice->List("");
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_TRUE(full->full);
  EXPECT_FALSE(full->sync_token.empty());
  ASSERT_EQ(full->changed.size(), 3u);
  for (const ItemRef& ref : full->changed) {
    bool matched = false;
    for (const auto& [key, w] : written) {
      if (w.href == ref.href) {
        matched = true;
        if (!w.etag.empty()) {
          EXPECT_EQ(w.etag, ref.etag);
        }
      }
    }
    EXPECT_TRUE(matched) << ref.href;
  }
  auto bob_list = bob->List("");
  ASSERT_TRUE(bob_list.ok()) << bob_list.error().message;
  EXPECT_TRUE(bob_list->changed.empty());

  // One update, then a delta from the token.
  Contact ann2 = People()[0].second;
  ann2.title = "Engineer";
  auto updated = alice->Update(written["e-1"].href, written["e-1"].etag, {"staff", "e-1"}, ann2);
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  auto delta = alice->List(full->sync_token);
  ASSERT_TRUE(delta.ok()) << delta.error().message;
  EXPECT_FALSE(delta->full);
  ASSERT_EQ(delta->changed.size(), 1u);
  EXPECT_EQ(delta->changed[0].href, written["e-1"].href);
  EXPECT_TRUE(delta->removed.empty());
  EXPECT_NE(delta->sync_token, full->sync_token);

  // Multiget reads them back with roster's marker.
  std::vector<std::string> hrefs;
  for (const auto& [key, w] : written) hrefs.push_back(w.href);
  hrefs.push_back(alice->id() + "missing.vcf");
  auto items = alice->Fetch(hrefs);
  ASSERT_TRUE(items.ok()) << items.error().message;
  ASSERT_EQ(items->size(), 3u);
  for (const RemoteItem& item : *items) {
    ASSERT_TRUE(item.tag.has_value()) << item.href;
    EXPECT_TRUE(item.parse_error.empty()) << item.parse_error;
    EXPECT_EQ(item.href, written[item.tag->key].href);
    EXPECT_EQ(item.content_hash, ContentHash(std::get<Contact>(item.body)));
    if (item.tag->key == "e-1") {
      EXPECT_EQ(std::get<Contact>(item.body).title, "Engineer");
      EXPECT_EQ(item.content_hash, ContentHash(ann2));
    }
    if (item.tag->key == "e-3") {
      EXPECT_EQ(std::get<Contact>(item.body).family_name, "Díaz");
    }
  }
}

TEST_F(RadicaleTest, StaleWritesAreRefusedAndDeletionsShowInTheDelta) {
  auto target = NewCardDavTarget(Options());
  auto alice = OpenOrCreate(*target, kAliceBook);
  ASSERT_TRUE(alice);
  std::map<std::string, WriteResult> written = CreatePeople(*alice);
  ASSERT_EQ(written.size(), 3u);

  // An etag an update has replaced is refused.
  Contact ann2 = People()[0].second;
  ann2.title = "Engineer";
  ASSERT_TRUE(alice->Update(written["e-1"].href, written["e-1"].etag, {"staff", "e-1"}, ann2).ok());
  auto stale = alice->Update(written["e-1"].href, written["e-1"].etag, {"staff", "e-1"}, ann2);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().kind, ErrorKind::kPreconditionFailed);

  // Delete, then the delta reports it removed; deleting again is fine.
  auto before_delete = alice->List("");
  ASSERT_TRUE(before_delete.ok());
  std::string e2_etag;
  for (const ItemRef& ref : before_delete->changed) {
    if (ref.href == written["e-2"].href) e2_etag = ref.etag;
  }
  ASSERT_FALSE(e2_etag.empty());
  EXPECT_EQ(alice->Delete(written["e-2"].href, "\"stale\"").error().kind,
            ErrorKind::kPreconditionFailed);
  ASSERT_TRUE(alice->Delete(written["e-2"].href, e2_etag).ok());
  EXPECT_TRUE(alice->Delete(written["e-2"].href, e2_etag).ok());
  auto after_delete = alice->List(before_delete->sync_token);
  ASSERT_TRUE(after_delete.ok()) << after_delete.error().message;
  EXPECT_EQ(after_delete->removed, std::vector<std::string>{written["e-2"].href});
}

TEST_F(RadicaleTest, AHandMadeCardHasNoMarkerAndAnUnknownTokenListsInFull) {
  auto target = NewCardDavTarget(Options());
  auto alice = OpenOrCreate(*target, kAliceBook);
  ASSERT_TRUE(alice);
  ASSERT_EQ(CreatePeople(*alice).size(), 3u);
  auto listed = alice->List("");
  ASSERT_TRUE(listed.ok()) << listed.error().message;

  // A card a person put there by hand has no marker.
  HttpOptions http = Options().http;
  auto raw = NewCurlHttpClient(http);
  auto put = raw->Send({"PUT",
                        alice->id() + "by%20hand.vcf",
                        {{"Content-Type", "text/vcard"}},
                        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:by-hand\r\nFN:Hand Made\r\n"
                        "N:Made;Hand;;;\r\nEND:VCARD\r\n"});
  ASSERT_TRUE(put.ok()) << put.error().message;
  EXPECT_EQ(put->status, 201);
  auto with_hand = alice->List(listed->sync_token);
  ASSERT_TRUE(with_hand.ok()) << with_hand.error().message;
  ASSERT_EQ(with_hand->changed.size(), 1u);
  const std::string hand_href = with_hand->changed[0].href;
  auto hand = alice->Fetch({hand_href});
  ASSERT_TRUE(hand.ok()) << hand.error().message;
  ASSERT_EQ(hand->size(), 1u);
  EXPECT_EQ((*hand)[0].href, hand_href);
  EXPECT_FALSE((*hand)[0].tag.has_value());
  EXPECT_EQ(std::get<Contact>((*hand)[0].body).formatted_name, "Hand Made");

  // An unknown token costs a full listing, not an error.
  auto reset = alice->List("http://radicale.org/ns/sync/0000");
  ASSERT_TRUE(reset.ok()) << reset.error().message;
  EXPECT_TRUE(reset->full);
  EXPECT_EQ(reset->changed.size(), 4u);  // the three people and the one by hand
}

}  // namespace
}  // namespace roster
