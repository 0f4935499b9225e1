#include "http/http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>

namespace roster {
namespace {

// A one-thread HTTP/1.1 server on 127.0.0.1 that answers each request with
// whatever the handler returns, keeping connections open unless told not to.
class TinyServer {
 public:
  using Handler = std::function<std::string(const std::string& request)>;

  explicit TinyServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 8);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TinyServer() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
  int connections() const { return connections_; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  static std::string Reply(int status, const std::string& body,
                           const std::string& extra_headers = "") {
    return "HTTP/1.1 " + std::to_string(status) +
           " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers +
           "\r\n" + body;
  }

 private:
  bool WaitReadable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) return true;
    }
    return false;
  }

  void Serve() {
    while (WaitReadable(listen_fd_)) {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      std::string buffer;
      bool open = true;
      while (open) {
        size_t header_end;
        while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
          if (!Read(fd, &buffer)) {
            open = false;
            break;
          }
        }
        if (!open) break;
        size_t length = 0;
        size_t cl = buffer.find("Content-Length: ");
        if (cl != std::string::npos && cl < header_end) length = std::stoul(buffer.substr(cl + 16));
        while (buffer.size() < header_end + 4 + length) {
          if (!Read(fd, &buffer)) {
            open = false;
            break;
          }
        }
        if (!open) break;
        std::string request = buffer.substr(0, header_end + 4 + length);
        buffer.erase(0, request.size());
        {
          std::lock_guard<std::mutex> lock(mu_);
          requests_.push_back(request);
        }
        std::string reply = handler_(request);
        if (!reply.empty()) send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
        if (reply.empty() || reply.find("Connection: close") != std::string::npos) open = false;
      }
      close(fd);
    }
  }

  bool Read(int fd, std::string* buffer) {
    if (!WaitReadable(fd)) return false;
    char chunk[4096];
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer->append(chunk, static_cast<size_t>(n));
    return true;
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

TEST(HttpResponseTest, HeaderLooksUpFirstMatchIgnoringCase) {
  HttpResponse response;
  response.headers = {{"etag", "\"1\""}, {"dav", "1, 2"}, {"etag", "\"2\""}};
  EXPECT_EQ(response.Header("etag"), "\"1\"");
  EXPECT_EQ(response.Header("ETag"), "\"1\"");
  EXPECT_EQ(response.Header("location"), "");
}

TEST(HttpStatusErrorTest, NamesRequestAndStatus) {
  HttpResponse response;
  response.status = 412;
  Error error = HttpStatusError(response, "PUT http://host/alice/book/x.vcf");
  EXPECT_EQ(error.kind, ErrorKind::kPreconditionFailed);
  EXPECT_EQ(error.message, "PUT http://host/alice/book/x.vcf: HTTP 412 Precondition Failed");
}

TEST(HttpStatusErrorTest, MapsKinds) {
  auto kind = [](int status) {
    HttpResponse response;
    response.status = status;
    return HttpStatusError(response, "GET http://h/").kind;
  };
  EXPECT_EQ(kind(404), ErrorKind::kNotFound);
  EXPECT_EQ(kind(403), ErrorKind::kAccessDenied);
  EXPECT_EQ(kind(409), ErrorKind::kConflict);
  EXPECT_EQ(kind(500), ErrorKind::kTransient);
  EXPECT_EQ(kind(502), ErrorKind::kTransient);
  EXPECT_EQ(kind(503), ErrorKind::kThrottled);
  EXPECT_EQ(kind(429), ErrorKind::kThrottled);
}

TEST(HttpStatusErrorTest, UnauthorizedSaysCredentials) {
  HttpResponse response;
  response.status = 401;
  Error error = HttpStatusError(response, "PROPFIND http://h/alice/");
  EXPECT_EQ(error.kind, ErrorKind::kAccessDenied);
  EXPECT_EQ(error.message,
            "PROPFIND http://h/alice/: the server rejected the credentials (HTTP 401)");
}

TEST(HttpStatusErrorTest, RetryAfterSeconds) {
  HttpResponse response;
  response.status = 429;
  response.headers = {{"retry-after", "120"}};
  Error error = HttpStatusError(response, "GET http://h/");
  EXPECT_EQ(error.kind, ErrorKind::kThrottled);
  EXPECT_EQ(error.retry_after, std::chrono::seconds(120));
  EXPECT_TRUE(error.retryable());
}

TEST(HttpStatusErrorTest, RetryAfterHttpDate) {
  HttpResponse response;
  response.status = 503;
  time_t later = time(nullptr) + 300;
  char date[64];
  struct tm tm;
  gmtime_r(&later, &tm);
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  response.headers = {{"retry-after", date}};
  Error error = HttpStatusError(response, "GET http://h/");
  EXPECT_EQ(error.kind, ErrorKind::kThrottled);
  EXPECT_GT(error.retry_after, std::chrono::seconds(290));
  EXPECT_LE(error.retry_after, std::chrono::seconds(300));

  response.headers = {{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}};  // past
  EXPECT_EQ(HttpStatusError(response, "GET http://h/").retry_after.count(), 0);
  response.headers = {{"retry-after", "soon"}};
  EXPECT_EQ(HttpStatusError(response, "GET http://h/").retry_after.count(), 0);
  // Centuries ahead (found by the Graph batch fuzzer): a day, not an overflow.
  response.headers = {{"retry-after", "Wed, 21 Oct 8919 07:28:00 GMT"}};
  EXPECT_EQ(HttpStatusError(response, "GET http://h/").retry_after, std::chrono::hours(24));
}

TEST(ResolveUrlTest, AbsoluteAndRelative) {
  const std::string base = "http://127.0.0.1:5232/alice/book/";
  EXPECT_EQ(ResolveUrl(base, "https://other/x.vcf"), "https://other/x.vcf");
  EXPECT_EQ(ResolveUrl(base, "/bob/"), "http://127.0.0.1:5232/bob/");
  EXPECT_EQ(ResolveUrl(base, "x.vcf"), "http://127.0.0.1:5232/alice/book/x.vcf");
  EXPECT_EQ(ResolveUrl("http://h/alice/book/y.vcf", "x.vcf"), "http://h/alice/book/x.vcf");
  EXPECT_EQ(ResolveUrl(base, "../other/"), "http://127.0.0.1:5232/alice/other/");
  EXPECT_EQ(ResolveUrl(base, "./a/./b/../c"), "http://127.0.0.1:5232/alice/book/a/c");
  EXPECT_EQ(ResolveUrl(base, "//host2/p"), "http://host2/p");
  EXPECT_EQ(ResolveUrl("http://h", "a"), "http://h/a");
  EXPECT_EQ(ResolveUrl(base, ""), base);
  EXPECT_EQ(ResolveUrl(base, "x?y=1"), "http://127.0.0.1:5232/alice/book/x?y=1");
}

TEST(ResolveUrlTest, CanonicalPercentEncoding) {
  const std::string base = "http://h/";
  // Whatever a server escapes, the result is spelled one way.
  EXPECT_EQ(ResolveUrl(base, "/a%40b/"), "http://h/a@b/");
  EXPECT_EQ(ResolveUrl(base, "/a@b/"), "http://h/a@b/");
  EXPECT_EQ(ResolveUrl(base, "/bob smith/"), "http://h/bob%20smith/");
  EXPECT_EQ(ResolveUrl(base, "/bob%20smith/"), "http://h/bob%20smith/");
  EXPECT_EQ(ResolveUrl(base, "/x%2fy/%c3%a9"), "http://h/x%2Fy/%C3%A9");
  EXPECT_EQ(ResolveUrl(base, "/\xc3\xa9"), "http://h/%C3%A9");
  EXPECT_EQ(ResolveUrl(base, "/%7Euser/"), "http://h/~user/");
  EXPECT_EQ(ResolveUrl(base, "/100%"), "http://h/100%25");
  EXPECT_EQ(ResolveUrl(base, "http://h/a%2C b"), "http://h/a,%20b");
}

TEST(ResolveUrlTest, CanonicalPathSpellsEveryByteOneWay) {
  const std::string base = "http://h/";
  // RFC 3986 pchar and '/' stay bare, everything else is "%XX" in upper case.
  EXPECT_EQ(ResolveUrl(base, "/!$&'()*+,-./0189:;=@AZ[\\]^_`az{|}~\"<> "),
            "http://h/!$&'()*+,-./0189:;=@AZ%5B%5C%5D%5E_%60az%7B%7C%7D~%22%3C%3E%20");
  EXPECT_EQ(ResolveUrl(base, "/" + std::string("\x00\x01\t\n\r\x1f\x7f\x80\xc3\xa9\xff", 11)),
            "http://h/%00%01%09%0A%0D%1F%7F%80%C3%A9%FF");
  // Escapes of pchar are decoded, others re-spelled; a broken escape is a '%'.
  EXPECT_EQ(ResolveUrl(base,
                       "/%21%24%26%27%28%29%2a%2B%2c%3b%3D%3a%40%41%7a%2d%2E%5f%7E%2f%2F%25%20%22"
                       "%3c%5B%5c%5d%5e%60%7b%7c%7d%00%7f%80%ff%c3%a9%g1%4%"),
            "http://h/!$&'()*+,;=:@Az-._~%2F%2F%25%20%22%3C%5B%5C%5D%5E%60%7B%7C%7D%00%7F%80%FF"
            "%C3%A9%25g1%254%25");
}

TEST(ResolveUrlTest, EncodedDotSegmentsAreRemovedToo) {
  const std::string base = "http://h/alice/book/";
  EXPECT_EQ(ResolveUrl(base, "%2e%2e/%2E%2E/bob/book/x.vcf"), "http://h/bob/book/x.vcf");
  EXPECT_EQ(ResolveUrl(base, "/alice/book/%2e%2e/x.vcf"), "http://h/alice/x.vcf");
  EXPECT_EQ(ResolveUrl(base, "../../../../x"), "http://h/x");
  EXPECT_EQ(ResolveUrl(base, "a%2F..%2Fb"), "http://h/alice/book/a%2F..%2Fb");  // not a segment
}

TEST(CanonicalOriginTest, OneSpellingPerServer) {
  EXPECT_EQ(CanonicalOrigin("http://H.example/x"), "http://h.example:80");
  EXPECT_EQ(CanonicalOrigin("HTTP://h.example:80/"), "http://h.example:80");
  EXPECT_EQ(CanonicalOrigin("https://h.example"), "https://h.example:443");
  EXPECT_EQ(CanonicalOrigin("https://user:pw@h.example:8443/a?b"), "https://h.example:8443");
  EXPECT_EQ(CanonicalOrigin("http://[::1]:5232/"), "http://[::1]:5232");
  EXPECT_EQ(CanonicalOrigin("http://[::1]/"), "http://[::1]:80");
  EXPECT_NE(CanonicalOrigin("http://h/"), CanonicalOrigin("https://h/"));
  EXPECT_NE(CanonicalOrigin("http://h/"), CanonicalOrigin("http://h:8080/"));
  EXPECT_EQ(CanonicalOrigin("/relative/path"), "");
  EXPECT_EQ(CanonicalOrigin("http://h:port/"), "");
  EXPECT_EQ(CanonicalOrigin("http://:80/"), "");
}

TEST(IsSafeHeaderValueTest, PrintableAsciiWithinTheCap) {
  EXPECT_TRUE(IsSafeHeaderValue("\"abc-123\"", 1024));
  EXPECT_TRUE(IsSafeHeaderValue("", 1024));
  EXPECT_FALSE(IsSafeHeaderValue("\"a\"\r\nX-Evil: 1", 1024));
  EXPECT_FALSE(IsSafeHeaderValue("a\nb", 1024));
  EXPECT_FALSE(IsSafeHeaderValue(std::string("a\0b", 3), 1024));
  EXPECT_FALSE(IsSafeHeaderValue("a\tb", 1024));
  EXPECT_FALSE(IsSafeHeaderValue("caf\xc3\xa9", 1024));
  EXPECT_FALSE(IsSafeHeaderValue("\x7f", 1024));
  EXPECT_FALSE(IsSafeHeaderValue(std::string(1025, 'a'), 1024));
  EXPECT_TRUE(IsSafeHeaderValue(std::string(1024, 'a'), 1024));
}

TEST(CurlHttpClientTest, RefusesAnotherOriginBeforeConnecting) {
  TinyServer server([](const std::string&) { return TinyServer::Reply(200, ""); });
  HttpOptions options;
  options.username = "roster";
  options.password = "secret";
  options.allowed_origin = "http://127.0.0.1:1";  // not this server's port
  auto response = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kAccessDenied);
  EXPECT_NE(response.error().message.find("refusing to send GET " + server.url()),
            std::string::npos);
  EXPECT_EQ(response.error().message.find("secret"), std::string::npos);
  EXPECT_EQ(server.connections(), 0);

  options.allowed_origin = server.url();  // any spelling of the same origin
  EXPECT_TRUE(NewCurlHttpClient(options)->Send({"GET", server.url() + "x", {}, ""}).ok());
}

TEST(CurlHttpClientTest, RedirectsAreNeverFollowed) {
  TinyServer other([](const std::string&) { return TinyServer::Reply(200, "stolen"); });
  TinyServer server([&other](const std::string&) {
    return TinyServer::Reply(302, "", "Location: " + other.url() + "x\r\n");
  });
  HttpOptions options;
  options.username = "roster";
  options.password = "secret";
  auto response = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 302);
  EXPECT_EQ(other.connections(), 0);
  Error error = HttpStatusError(*response, "GET x");
  EXPECT_NE(error.message.find("redirects to " + other.url() + "x"), std::string::npos);
}

TEST(CurlHttpClientTest, RefusesHeaderValuesThatWouldInjectALine) {
  TinyServer server([](const std::string&) { return TinyServer::Reply(200, ""); });
  auto client = NewCurlHttpClient({});
  for (const std::string& value :
       {std::string("\"1\"\r\nX-Evil: 1"), std::string("a\nb"), std::string("a\0b", 3)}) {
    auto response = client->Send({"PUT", server.url(), {{"If-Match", value}}, "x"});
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(response.error().kind, ErrorKind::kInvalidData);
    EXPECT_NE(response.error().message.find("If-Match header"), std::string::npos);
  }
  auto bad_url = client->Send({"GET", server.url() + "a\r\nX: y", {}, ""});
  ASSERT_FALSE(bad_url.ok());
  EXPECT_TRUE(server.requests().empty());
}

TEST(CurlHttpClientTest, DeadlinePassedFailsAtOnce) {
  TinyServer server([](const std::string&) { return TinyServer::Reply(200, ""); });
  HttpOptions options;
  options.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto response = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kAborted);
  EXPECT_FALSE(response.error().retryable());
  EXPECT_NE(response.error().message.find("the run's deadline passed"), std::string::npos);
  EXPECT_EQ(server.connections(), 0);
}

TEST(CurlHttpClientTest, NoRequestRunsPastTheDeadline) {
  TinyServer server([](const std::string&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    return TinyServer::Reply(200, "late");
  });
  HttpOptions options;
  options.timeout = std::chrono::seconds(60);
  options.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  auto start = std::chrono::steady_clock::now();
  auto response = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kAborted);
  EXPECT_NE(response.error().message.find("deadline"), std::string::npos);
  EXPECT_LT(took, std::chrono::milliseconds(1500));
}

// A server that sends its headers, then one body byte every 300 ms.
class TrickleServer {
 public:
  TrickleServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 1);
    thread_ = std::thread([this] {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) return;
      int client = accept(fd_, nullptr, nullptr);
      std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
      send(client, head.data(), head.size(), MSG_NOSIGNAL);
      for (int i = 0; i < 30 && !stop_; ++i) {
        if (send(client, "x", 1, MSG_NOSIGNAL) <= 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      close(client);
    });
  }
  ~TrickleServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(CurlHttpClientTest, TricklingServerIsCutOff) {
  TrickleServer server;
  HttpOptions options;
  options.low_speed_limit = 100;
  options.low_speed_time = std::chrono::seconds(1);
  auto start = std::chrono::steady_clock::now();
  auto response = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kTransient);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(CurlHttpClientTest, GetReturnsStatusBodyAndLowerCaseHeaders) {
  TinyServer server([](const std::string&) {
    return TinyServer::Reply(200, "hello",
                             "ETag: \"abc\"\r\nX-Thing:  v  \r\nX-Tabs:\t v\t \r\nX-Empty: \r\n"
                             "X-Inner: a \t b\r\n");
  });
  auto client = NewCurlHttpClient({});
  auto response = client->Send({"GET", server.url() + "x", {}, ""});
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello");
  EXPECT_EQ(response->Header("etag"), "\"abc\"");
  EXPECT_EQ(response->Header("x-thing"), "v");
  EXPECT_EQ(response->Header("x-tabs"), "v");  // optional whitespace goes at both ends
  EXPECT_EQ(response->Header("x-empty"), "");
  EXPECT_EQ(response->Header("x-inner"), "a \t b");
  bool lower = true;
  for (const auto& [name, value] : response->headers) {
    for (char c : name) lower = lower && !(c >= 'A' && c <= 'Z');
  }
  EXPECT_TRUE(lower);
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_TRUE(server.requests()[0].starts_with("GET /x HTTP/1.1\r\n"));
}

TEST(CurlHttpClientTest, CustomMethodsSendBodyWithoutExpectAndReuseConnection) {
  TinyServer server([](const std::string&) { return TinyServer::Reply(207, "<ok/>"); });
  auto client = NewCurlHttpClient({});
  std::string body(200000, 'x');  // large enough that curl would otherwise use 100-continue
  auto a = client->Send({"PROPFIND", server.url() + "alice/", {{"Depth", "0"}}, body});
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->status, 207);
  auto b = client->Send({"PUT", server.url() + "alice/x.vcf", {{"If-None-Match", "*"}}, ""});
  ASSERT_TRUE(b.ok()) << b.error().message;
  auto c = client->Send({"DELETE", server.url() + "alice/x.vcf", {{"If-Match", "\"1\""}}, ""});
  ASSERT_TRUE(c.ok()) << c.error().message;

  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_TRUE(requests[0].starts_with("PROPFIND /alice/ HTTP/1.1\r\n"));
  EXPECT_NE(requests[0].find("Depth: 0\r\n"), std::string::npos);
  EXPECT_EQ(requests[0].find("Expect"), std::string::npos);
  EXPECT_EQ(requests[0].find("x-www-form-urlencoded"), std::string::npos);
  EXPECT_TRUE(requests[0].ends_with(body));
  EXPECT_TRUE(requests[1].starts_with("PUT /alice/x.vcf HTTP/1.1\r\n"));
  EXPECT_NE(requests[1].find("Content-Length: 0\r\n"), std::string::npos);
  EXPECT_NE(requests[1].find("If-None-Match: *\r\n"), std::string::npos);
  EXPECT_TRUE(requests[2].starts_with("DELETE /alice/x.vcf HTTP/1.1\r\n"));
  EXPECT_EQ(server.connections(), 1);  // kept alive
}

TEST(CurlHttpClientTest, BasicAuthOnlyWithUsername) {
  TinyServer server([](const std::string&) { return TinyServer::Reply(200, ""); });
  HttpOptions options;
  ASSERT_TRUE(NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""}).ok());
  options.username = "roster";
  options.password = "secret";
  ASSERT_TRUE(NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""}).ok());
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].find("Authorization"), std::string::npos);
  // base64("roster:secret")
  EXPECT_NE(requests[1].find("Authorization: Basic cm9zdGVyOnNlY3JldA==\r\n"), std::string::npos);
}

TEST(CurlHttpClientTest, HttpErrorsAreResponses) {
  TinyServer server([](const std::string&) { return TinyServer::Reply(500, "oops"); });
  auto response = NewCurlHttpClient({})->Send({"GET", server.url(), {}, ""});
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 500);
}

TEST(CurlHttpClientTest, CapsResponseSize) {
  TinyServer server(
      [](const std::string&) { return TinyServer::Reply(200, std::string(5000, 'a')); });
  HttpOptions options;
  options.max_response_bytes = 1000;
  auto response = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kInvalidData);
  EXPECT_NE(response.error().message.find("response larger than 1000 bytes"), std::string::npos);

  // Without Content-Length curl cannot refuse up front; the body callback stops it.
  TinyServer streaming([](const std::string&) {
    return "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(5000, 'a');
  });
  response = NewCurlHttpClient(options)->Send({"GET", streaming.url(), {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kInvalidData);
  EXPECT_NE(response.error().message.find("response larger than 1000 bytes"), std::string::npos);
}

TEST(CurlHttpClientTest, RequestAsksForASmallerCap) {
  TinyServer server(
      [](const std::string&) { return TinyServer::Reply(200, std::string(5000, 'a')); });
  HttpRequest request{"GET", server.url(), {}, ""};
  request.max_response_bytes = 4000;
  auto response = NewCurlHttpClient({})->Send(request);
  ASSERT_FALSE(response.ok());
  EXPECT_TRUE(response.error().too_large);
  EXPECT_NE(response.error().message.find("response larger than 4000 bytes"), std::string::npos);
  request.max_response_bytes = 1u << 30;  // never more than the option's
  HttpOptions options;
  options.max_response_bytes = 1000;
  response = NewCurlHttpClient(options)->Send(request);
  ASSERT_FALSE(response.ok());
  EXPECT_NE(response.error().message.find("response larger than 1000 bytes"), std::string::npos);
}

TEST(AnswerMemoryTest, TakesUpToTheLimitAndGivesBack) {
  AnswerMemory memory(100);
  EXPECT_TRUE(memory.TryTake(60));
  EXPECT_FALSE(memory.TryTake(41));
  EXPECT_TRUE(memory.TryTake(40));
  EXPECT_FALSE(memory.TryTake(1));
  EXPECT_FALSE(memory.TryTake(SIZE_MAX));  // no overflow
  memory.Give(100);
  EXPECT_EQ(memory.in_use(), 0u);
  EXPECT_EQ(memory.peak(), 100u);
  {
    AnswerHold hold(&memory);
    EXPECT_TRUE(hold.Grow(70));
    EXPECT_FALSE(hold.Grow(31));
    EXPECT_EQ(hold.bytes(), 70u);
    EXPECT_EQ(memory.in_use(), 70u);
  }
  EXPECT_EQ(memory.in_use(), 0u);
}

// Answers kept alive hold their bytes: one client cannot take what another's
// unparsed answer holds, and gets it once that answer is gone.
TEST(CurlHttpClientTest, AnswersShareOneMemory) {
  TinyServer server(
      [](const std::string&) { return TinyServer::Reply(200, std::string(60000, 'a')); });
  AnswerMemory memory(100000);
  HttpOptions options;
  options.answer_memory = &memory;
  auto first = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->body.size(), 60000u);
  EXPECT_GE(memory.in_use(), 60000u);
  EXPECT_EQ(memory.in_use(), first->hold->bytes());
  EXPECT_GE(first->body.capacity(), first->hold->bytes() - 1);  // what is counted is what is held

  auto second = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().kind, ErrorKind::kTransient);
  EXPECT_NE(second.error().message.find("more than 100000 bytes of memory"), std::string::npos)
      << second.error().message;

  first = MakeError(ErrorKind::kInternal, "dropped");
  EXPECT_EQ(memory.in_use(), 0u);
  second = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_LE(memory.peak(), 100000u);
}

TEST(CurlHttpClientTest, ConnectionRefusedIsOneSentence) {
  auto response = NewCurlHttpClient({})->Send({"GET", "http://127.0.0.1:1/x", {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(response.error().message, "cannot connect to http://127.0.0.1:1/: Connection refused");
}

TEST(CurlHttpClientTest, UnresolvableHost) {
  auto response = NewCurlHttpClient({})->Send({"GET", "http://roster-test.invalid/", {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kUnavailable);
  EXPECT_NE(response.error().message.find("cannot connect to http://roster-test.invalid/"),
            std::string::npos);
}

TEST(CurlHttpClientTest, TimeoutIsTransient) {
  TinyServer server([](const std::string&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    return TinyServer::Reply(200, "late");
  });
  HttpOptions options;
  options.timeout = std::chrono::seconds(1);
  auto response = NewCurlHttpClient(options)->Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kTransient);
  EXPECT_TRUE(response.error().retryable());
}

TEST(CurlHttpClientTest, ResetConnectionIsTransient) {
  TinyServer server([](const std::string&) { return std::string(); });  // closes, no reply
  auto response = NewCurlHttpClient({})->Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().kind, ErrorKind::kTransient);
}

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

bool WaitForPort(int port) {
  for (int i = 0; i < 100; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A self-signed certificate served by `openssl s_server`: refused by default,
// accepted once it is given as ca_file.
TEST(CurlHttpClientTest, TlsVerificationUsesCaFile) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl";
  char dir_template[] = "/tmp/roster-tls-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const int port = FreePort();
  std::string setup = "cd " + dir +
                      " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
                      " -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem"
                      " >/dev/null 2>&1 && (openssl s_server -accept 127.0.0.1:" +
                      std::to_string(port) +
                      " -cert cert.pem -key key.pem -www -quiet >/dev/null 2>&1 & echo $! > pid)";
  ASSERT_EQ(std::system(setup.c_str()), 0);
  ASSERT_TRUE(WaitForPort(port));
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/";

  auto refused = NewCurlHttpClient({})->Send({"GET", url, {}, ""});
  HttpOptions options;
  options.ca_file = dir + "/cert.pem";
  auto accepted = NewCurlHttpClient(options)->Send({"GET", url, {}, ""});

  std::system(("kill $(cat " + dir + "/pid); rm -rf " + dir).c_str());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kUnavailable);
  EXPECT_NE(refused.error().message.find("cannot verify the TLS certificate of " + url),
            std::string::npos)
      << refused.error().message;
  ASSERT_TRUE(accepted.ok()) << accepted.error().message;
  EXPECT_EQ(accepted->status, 200);
}

}  // namespace
}  // namespace roster
