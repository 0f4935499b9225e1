// The Graph sign-in against a scripted token endpoint: the assertion as the
// identity platform documents it (checked with libcrypto, independently of
// jwt.cc), the form fields of both credential kinds, the token cache, and
// one clear line for every refusal, with no secret in it.
#include "graph/auth.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace roster::graph {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using std::chrono::seconds;

constexpr char kTenant[] = "contoso.onmicrosoft.com";
constexpr char kClient[] = "11111111-2222-3333-4444-555555555555";
constexpr char kSecret[] = "s3cr3t~Value.ThatMustNeverBePrinted";
constexpr char kEndpoint[] =
    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";
// 2026-12-01T00:00:00Z: the fixed wall clock of the assertion tests.
const auto kWallNow = std::chrono::system_clock::time_point(seconds(1796083200));

// ---- keys and certificates, made with libcrypto for each test run ----

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

Pkey RsaKey(unsigned bits) { return Pkey(EVP_RSA_gen(bits)); }

Pkey EcKey() { return Pkey(EVP_EC_gen("P-256")); }

Cert SelfSigned(EVP_PKEY* key, const char* cn, long valid_seconds = 365L * 86400) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), valid_seconds);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_sign(cert.get(), key, EVP_sha256());
  return cert;
}

std::string FromBio(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string CertPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  return FromBio(bio);
}

std::string KeyPem(EVP_PKEY* key) {  // PKCS#8 "PRIVATE KEY", unencrypted
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  return FromBio(bio);
}

std::string TraditionalKeyPem(EVP_PKEY* key) {  // "RSA PRIVATE KEY"
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey_traditional(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  return FromBio(bio);
}

std::string EncryptedKeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  char password[] = "correct horse";
  PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), password, sizeof password - 1, nullptr,
                                nullptr);
  return FromBio(bio);
}

std::string Der(X509* cert) {
  const int n = i2d_X509(cert, nullptr);
  std::string der(static_cast<size_t>(n), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509(cert, &p);
  return der;
}

std::string Sha256(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), n);
}

// base64url decoding of our own (OpenSSL's base64 after the alphabet swap),
// so that the test does not trust jwt.cc's encoder.
std::string Unbase64Url(std::string s) {
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  const size_t pad = (4 - s.size() % 4) % 4;
  s.append(pad, '=');
  std::string out(s.size() / 4 * 3, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  EXPECT_GE(n, 0) << "not base64url";
  out.resize(static_cast<size_t>(std::max(n, 0)) - pad);
  return out;
}

struct Jwt {
  std::string header_b64, claims_b64, signature_b64;
  Json header, claims;
  std::string signature;
};

Jwt Split(const std::string& jwt) {
  Jwt out;
  const size_t a = jwt.find('.');
  const size_t b = jwt.find('.', a + 1);
  EXPECT_NE(b, std::string::npos);
  EXPECT_EQ(jwt.find('.', b + 1), std::string::npos);
  out.header_b64 = jwt.substr(0, a);
  out.claims_b64 = jwt.substr(a + 1, b - a - 1);
  out.signature_b64 = jwt.substr(b + 1);
  for (const std::string* part : {&out.header_b64, &out.claims_b64, &out.signature_b64}) {
    EXPECT_EQ(part->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789-_"),
              std::string::npos)
        << "not unpadded base64url: " << *part;
  }
  out.header = Json::parse(Unbase64Url(out.header_b64));
  out.claims = Json::parse(Unbase64Url(out.claims_b64));
  out.signature = Unbase64Url(out.signature_b64);
  return out;
}

// 1 when `signature` is RSASSA-PSS over `input` by `cert`'s key with
// SHA-256, MGF1 SHA-256 and `salt_length` (-1: exactly the digest length).
int VerifyPss(X509* cert, const std::string& input, const std::string& signature,
              int padding = RSA_PKCS1_PSS_PADDING, int salt_length = RSA_PSS_SALTLEN_DIGEST) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  int ok = EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), nullptr, X509_get0_pubkey(cert));
  if (ok == 1) ok = EVP_PKEY_CTX_set_rsa_padding(pctx, padding);
  if (ok == 1 && padding == RSA_PKCS1_PSS_PADDING) {
    ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt_length);
    if (ok == 1) ok = EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256());
  }
  if (ok == 1) {
    ok = EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(input.data()),
                          input.size());
  }
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

// ---- files ----

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/graph_auth_test.XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& content, mode_t mode = 0600) {
    const std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary) << content;
    chmod(file.c_str(), mode);
    return file;
  }

 private:
  std::string path_;
};

// ---- a scripted token endpoint ----

struct Answer {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct Endpoint {
  std::mutex mu;
  std::deque<Answer> answers;
  std::vector<HttpRequest> seen;
  std::vector<HttpOptions> clients;  // the options of each client made
  std::chrono::milliseconds delay{0};
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};

  void Token(const std::string& token, int expires_in = 3599) {
    answers.push_back({200, Json{{"token_type", "Bearer"},
                                 {"expires_in", expires_in},
                                 {"ext_expires_in", expires_in},
                                 {"access_token", token}}
                                .dump()});
  }
  void Refuse(int status, const std::string& error, const std::string& description, long code) {
    answers.push_back({status, Json{{"error", error},
                                    {"error_description", description},
                                    {"error_codes", {code}},
                                    {"timestamp", "2026-12-01 00:00:00Z"},
                                    {"trace_id", "0000aaaa-11bb-cccc-dd33-eeeeee333333"},
                                    {"correlation_id", "aaaa0000-bb11-2222-33cc-444444dddddd"}}
                                   .dump()});
  }
};

class FakeHttp : public HttpClient {
 public:
  explicit FakeHttp(Endpoint* endpoint) : endpoint_(endpoint) {}
  Result<HttpResponse> Send(const HttpRequest& request) override {
    const int now = ++endpoint_->in_flight;
    for (int seen = endpoint_->max_in_flight; now > seen;) {
      endpoint_->max_in_flight.compare_exchange_weak(seen, now);
    }
    std::this_thread::sleep_for(endpoint_->delay);
    --endpoint_->in_flight;
    std::lock_guard<std::mutex> lock(endpoint_->mu);
    endpoint_->seen.push_back(request);
    if (endpoint_->answers.empty()) {
      ADD_FAILURE() << "unexpected token request";
      return MakeError(ErrorKind::kInternal, "script exhausted");
    }
    Answer a = endpoint_->answers.front();
    endpoint_->answers.pop_front();
    HttpResponse response;
    response.status = a.status;
    response.body = a.body;
    response.headers = a.headers;
    response.effective_url = request.url;
    return response;
  }

 private:
  Endpoint* endpoint_;
};

class FakeClock : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return now_; }
  void SleepFor(std::chrono::milliseconds d) override { now_ += d; }
  void Advance(std::chrono::steady_clock::duration d) { now_ += d; }

 private:
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1000)};
};

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 2).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> Form(const std::string& body) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start <= body.size()) {
    size_t end = body.find('&', start);
    if (end == std::string::npos) end = body.size();
    const std::string pair = body.substr(start, end - start);
    const size_t eq = pair.find('=');
    EXPECT_NE(eq, std::string::npos) << pair;
    EXPECT_FALSE(out.count(PercentDecode(pair.substr(0, eq)))) << "repeated field " << pair;
    out[PercentDecode(pair.substr(0, eq))] = PercentDecode(pair.substr(eq + 1));
    start = end + 1;
  }
  return out;
}

std::string Header(const HttpRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  }
  return "";
}

// ---- fixtures ----

// One 2048-bit key for the whole suite: making one takes a while.
class GraphAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    key_ = RsaKey(2048).release();
    cert_ = SelfSigned(key_, "roster-app").release();
  }
  static void TearDownTestSuite() {
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }

  std::string Pem() const { return CertPem(cert_) + KeyPem(key_); }

  TokenProviderOptions Options() {
    TokenProviderOptions options;
    options.clock = &clock_;
    options.wall_clock = [] { return kWallNow; };
    options.http_factory = [this](const HttpOptions& http) {
      endpoint_.clients.push_back(http);
      return std::make_unique<FakeHttp>(&endpoint_);
    };
    return options;
  }

  GraphCredentials SecretCredentials() const {
    GraphCredentials c;
    c.tenant_id = kTenant;
    c.client_id = kClient;
    c.client_secret = kSecret;
    return c;
  }

  GraphCredentials CertificateCredentials() {
    GraphCredentials c;
    c.tenant_id = kTenant;
    c.client_id = kClient;
    c.certificate_file = dir_.Write("app.pem", Pem());
    return c;
  }

  std::unique_ptr<TokenProvider> Provider(GraphCredentials c) {
    auto provider = TokenProvider::Create(std::move(c), Options());
    EXPECT_TRUE(provider.ok()) << provider.error().message;
    return provider.ok() ? std::move(provider).value() : nullptr;
  }

  static EVP_PKEY* key_;
  static X509* cert_;
  TempDir dir_;
  FakeClock clock_;
  Endpoint endpoint_;
};

EVP_PKEY* GraphAuthTest::key_ = nullptr;
X509* GraphAuthTest::cert_ = nullptr;

// ---- the assertion ----

TEST_F(GraphAuthTest, AssertionCarriesTheDocumentedHeaderAndClaims) {
  auto cert = ClientCertificate::FromPem(Pem(), "app.pem");
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  auto assertion = cert->Assertion(kEndpoint, kClient, kWallNow);
  ASSERT_TRUE(assertion.ok()) << assertion.error().message;
  const Jwt jwt = Split(*assertion);

  EXPECT_EQ(jwt.header.size(), 3u) << jwt.header.dump();
  EXPECT_EQ(jwt.header["alg"], "PS256");
  EXPECT_EQ(jwt.header["typ"], "JWT");
  EXPECT_EQ(Unbase64Url(jwt.header["x5t#S256"]), Sha256(Der(cert_)));
  EXPECT_EQ(jwt.header["x5t#S256"], cert->x5t_s256());

  const int64_t now = 1796083200;
  EXPECT_EQ(jwt.claims.size(), 7u) << jwt.claims.dump();
  EXPECT_EQ(jwt.claims["aud"], kEndpoint);
  EXPECT_EQ(jwt.claims["iss"], kClient);
  EXPECT_EQ(jwt.claims["sub"], kClient);
  EXPECT_EQ(jwt.claims["nbf"], now);
  EXPECT_EQ(jwt.claims["iat"], now);
  EXPECT_EQ(jwt.claims["exp"], now + 600);
  const std::string jti = jwt.claims["jti"];
  ASSERT_EQ(jti.size(), 36u);
  for (size_t i : {8, 13, 18, 23}) EXPECT_EQ(jti[i], '-') << jti;
  EXPECT_EQ(jti[14], '4') << "a version 4 GUID: " << jti;

  auto again = cert->Assertion(kEndpoint, kClient, kWallNow);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(Split(*again).claims["jti"], jti) << "each assertion has its own jti";
}

TEST_F(GraphAuthTest, AssertionSignatureVerifiesAsPs256WithTheCertificatesKey) {
  auto cert = ClientCertificate::FromPem(Pem(), "app.pem");
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  auto assertion = cert->Assertion(kEndpoint, kClient, kWallNow);
  ASSERT_TRUE(assertion.ok());
  const Jwt jwt = Split(*assertion);
  const std::string input = jwt.header_b64 + "." + jwt.claims_b64;

  EXPECT_EQ(jwt.signature.size(), 256u);
  // PSS with SHA-256, MGF1 SHA-256 and a salt of exactly 32 bytes.
  EXPECT_EQ(VerifyPss(cert_, input, jwt.signature), 1);
  EXPECT_EQ(VerifyPss(cert_, input, jwt.signature, RSA_PKCS1_PSS_PADDING, 32), 1);
  // Not PKCS#1 v1.5 (RS256), not another salt length, not other bytes.
  EXPECT_NE(VerifyPss(cert_, input, jwt.signature, RSA_PKCS1_PADDING), 1);
  EXPECT_NE(VerifyPss(cert_, input, jwt.signature, RSA_PKCS1_PSS_PADDING, 20), 1);
  std::string tampered = input;
  tampered[tampered.size() - 1] ^= 1;
  EXPECT_NE(VerifyPss(cert_, tampered, jwt.signature), 1);
  // Nor does another key's certificate verify it.
  Pkey other = RsaKey(2048);
  Cert other_cert = SelfSigned(other.get(), "someone-else");
  EXPECT_NE(VerifyPss(other_cert.get(), input, jwt.signature), 1);
}

TEST_F(GraphAuthTest, ThumbprintsAreThoseOfTheDerCertificate) {
  auto cert = ClientCertificate::FromPem(Pem(), "app.pem");
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(Unbase64Url(cert->x5t_s256()), Sha256(Der(cert_)));
  unsigned char sha1[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  X509_digest(cert_, EVP_sha1(), sha1, &n);
  std::string hex;
  for (unsigned i = 0; i < n; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02X", sha1[i]);
    hex += b;
  }
  EXPECT_EQ(cert->sha1_thumbprint(), hex);
  EXPECT_GT(cert->not_after(), std::chrono::system_clock::now());
}

// ---- the PEM file ----

TEST_F(GraphAuthTest, PemBlocksMayComeInAnyOrderWithAChainAndExportNoise) {
  Pkey ca_key = RsaKey(2048);
  Cert ca = SelfSigned(ca_key.get(), "some CA");
  const std::string pems[] = {
      KeyPem(key_) + CertPem(cert_),
      "Bag Attributes\n    localKeyID: 01 00 00 00\n" + TraditionalKeyPem(key_) +
          "subject=/CN=some CA\n" + CertPem(ca.get()) + CertPem(cert_),
      CertPem(ca.get()) + CertPem(cert_) + KeyPem(key_),
  };
  for (const std::string& pem : pems) {
    auto cert = ClientCertificate::FromPem(pem, "app.pem");
    ASSERT_TRUE(cert.ok()) << cert.error().message;
    EXPECT_EQ(Unbase64Url(cert->x5t_s256()), Sha256(Der(cert_))) << "the key's own certificate";
  }
}

TEST_F(GraphAuthTest, APemWithoutKeyOrCertificateOrWithTheWrongOnesIsAClearError) {
  Pkey small = RsaKey(1024);
  Pkey ec = EcKey();
  Pkey other = RsaKey(2048);
  Cert other_cert = SelfSigned(other.get(), "other");
  const struct {
    std::string pem;
    std::string says;
  } cases[] = {
      {CertPem(cert_), "app.pem holds no private key"},
      {KeyPem(key_), "app.pem holds no certificate"},
      {"", "app.pem holds no certificate"},
      {"not a PEM file at all\n", "app.pem holds no certificate"},
      {CertPem(cert_) + EncryptedKeyPem(key_), "app.pem holds an encrypted private key"},
      {CertPem(other_cert.get()) + KeyPem(key_), "app.pem holds no certificate of its private key"},
      {CertPem(cert_) + KeyPem(key_) + KeyPem(other.get()), "holds more than one private key"},
      {CertPem(SelfSigned(small.get(), "small").get()) + KeyPem(small.get()),
       "holds an RSA key of 1024 bits; Entra needs at least 2048"},
      {CertPem(SelfSigned(ec.get(), "ec").get()) + KeyPem(ec.get()), "private key that is not RSA"},
      {CertPem(cert_) + "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
       "app.pem is not a readable PEM file"},
  };
  for (const auto& c : cases) {
    auto cert = ClientCertificate::FromPem(c.pem, "app.pem");
    ASSERT_FALSE(cert.ok()) << c.says;
    EXPECT_EQ(cert.error().kind, ErrorKind::kInvalidArgument);
    EXPECT_NE(cert.error().message.find(c.says), std::string::npos) << cert.error().message;
    EXPECT_EQ(cert.error().message.find("BEGIN"), std::string::npos) << cert.error().message;
    EXPECT_EQ(cert.error().message.find('\n'), std::string::npos) << cert.error().message;
  }
}

TEST_F(GraphAuthTest, AKeyFileGroupOrOthersCanReadIsRefusedLikeEverySecretFile) {
  const std::string loose = dir_.Write("loose.pem", Pem(), 0644);
  auto refused = ClientCertificate::Load(loose, "tenant contoso: certificate_file");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "tenant contoso: certificate_file " + loose +
                " has mode 0644, which lets group or others read it; chmod 600 (or 400) it");
  const std::string group = dir_.Write("group.pem", Pem(), 0640);
  EXPECT_FALSE(ClientCertificate::Load(group).ok());

  EXPECT_TRUE(ClientCertificate::Load(dir_.Write("rw.pem", Pem(), 0600)).ok());
  EXPECT_TRUE(ClientCertificate::Load(dir_.Write("ro.pem", Pem(), 0400)).ok());

  auto missing = ClientCertificate::Load("/nonexistent/app.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "certificate_file /nonexistent/app.pem cannot be read");

  // The provider refuses it before anything is sent, naming the tenant.
  GraphCredentials c = CertificateCredentials();
  chmod(c.certificate_file.c_str(), 0644);
  auto provider = TokenProvider::Create(c, Options());
  ASSERT_FALSE(provider.ok());
  EXPECT_EQ(provider.error().message.rfind("tenant contoso.onmicrosoft.com: certificate_file ", 0),
            0u)
      << provider.error().message;
  EXPECT_TRUE(endpoint_.seen.empty());
}

// ---- the token request ----

TEST_F(GraphAuthTest, SecretRequestSendsTheDocumentedFormToThePinnedOrigin) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  EXPECT_EQ(provider->token_endpoint(), kEndpoint);
  endpoint_.Token("eyJ0eXAi.token.one");
  auto token = provider->Token();
  ASSERT_TRUE(token.ok()) << token.error().message;
  EXPECT_EQ(*token, "eyJ0eXAi.token.one");

  ASSERT_EQ(endpoint_.clients.size(), 1u);
  EXPECT_EQ(endpoint_.clients[0].allowed_origin, "https://login.microsoftonline.com:443");
  EXPECT_LE(endpoint_.clients[0].max_response_bytes, kMaxTokenResponseBytes);
  ASSERT_EQ(endpoint_.seen.size(), 1u);
  const HttpRequest& r = endpoint_.seen[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, kEndpoint);
  EXPECT_EQ(Header(r, "Content-Type"), "application/x-www-form-urlencoded");
  const std::map<std::string, std::string> want = {
      {"client_id", kClient},
      {"scope", "https://graph.microsoft.com/.default"},
      {"grant_type", "client_credentials"},
      {"client_secret", kSecret}};
  EXPECT_EQ(Form(r.body), want);
}

TEST_F(GraphAuthTest, CertificateRequestSendsAFreshVerifiableAssertionAndNoSecret) {
  auto provider = Provider(CertificateCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.Token("token-1", 1);  // lives a second: the next Token() asks again
  endpoint_.Token("token-2");
  ASSERT_TRUE(provider->Token().ok());
  clock_.Advance(seconds(1));
  ASSERT_TRUE(provider->Token().ok());
  ASSERT_EQ(endpoint_.seen.size(), 2u);

  std::vector<std::string> jtis;
  for (const HttpRequest& r : endpoint_.seen) {
    auto form = Form(r.body);
    EXPECT_EQ(form.size(), 5u);
    EXPECT_EQ(form["client_id"], kClient);
    EXPECT_EQ(form["scope"], "https://graph.microsoft.com/.default");
    EXPECT_EQ(form["grant_type"], "client_credentials");
    EXPECT_EQ(form["client_assertion_type"],
              "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    EXPECT_FALSE(form.count("client_secret"));
    const Jwt jwt = Split(form["client_assertion"]);
    EXPECT_EQ(jwt.claims["aud"], kEndpoint);
    EXPECT_EQ(jwt.claims["nbf"], 1796083200) << "the injected wall clock";
    EXPECT_EQ(VerifyPss(cert_, jwt.header_b64 + "." + jwt.claims_b64, jwt.signature), 1);
    jtis.push_back(jwt.claims["jti"]);
  }
  EXPECT_NE(jtis[0], jtis[1]);
}

TEST_F(GraphAuthTest, TheTokenIsCachedUntilShortlyBeforeItExpires) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.Token("first", 3600);
  endpoint_.Token("second", 3600);
  EXPECT_EQ(*provider->Token(), "first");
  EXPECT_EQ(*provider->Token(), "first");
  EXPECT_EQ(endpoint_.seen.size(), 1u) << "two Token() calls, one request";

  clock_.Advance(seconds(3600 - 300 - 1));  // the default margin is 5 minutes
  EXPECT_EQ(*provider->Token(), "first");
  EXPECT_EQ(endpoint_.seen.size(), 1u);
  clock_.Advance(seconds(1));
  EXPECT_EQ(*provider->Token(), "second");
  EXPECT_EQ(endpoint_.seen.size(), 2u);
}

TEST_F(GraphAuthTest, AShortLivedTokenIsRenewedAtHalfItsLife) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.Token("short", 120);
  endpoint_.Token("next", 120);
  EXPECT_EQ(*provider->Token(), "short");
  clock_.Advance(seconds(59));
  EXPECT_EQ(*provider->Token(), "short");
  clock_.Advance(seconds(1));
  EXPECT_EQ(*provider->Token(), "next");
}

TEST_F(GraphAuthTest, InvalidateRenewsOnceEvenWhenManyWorkersSawThe401) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.Token("rejected");
  endpoint_.Token("renewed");
  endpoint_.Token("third");
  const std::string old = *provider->Token();
  // Two workers got a 401 for the same token: the first renews, the second
  // finds the new one already there.
  provider->Invalidate(old);
  EXPECT_EQ(*provider->Token(), "renewed");
  provider->Invalidate(old);
  EXPECT_EQ(*provider->Token(), "renewed");
  EXPECT_EQ(endpoint_.seen.size(), 2u);
  provider->Invalidate();
  EXPECT_EQ(*provider->Token(), "third");
  EXPECT_EQ(endpoint_.seen.size(), 3u);
}

TEST_F(GraphAuthTest, WorkersThatAskAtOnceShareOneRequest) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.delay = std::chrono::milliseconds(50);
  endpoint_.Token("shared");
  std::vector<std::thread> workers;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    workers.emplace_back([&] {
      auto t = provider->Token();
      if (t.ok() && *t == "shared") ++good;
    });
  }
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(good, 8);
  EXPECT_EQ(endpoint_.seen.size(), 1u);
  EXPECT_EQ(endpoint_.max_in_flight, 1);
}

// ---- refusals and bad answers ----

void ExpectOneCleanLine(const Error& e, const std::vector<std::string>& never) {
  EXPECT_EQ(e.message.rfind("tenant contoso.onmicrosoft.com: ", 0), 0u) << e.message;
  EXPECT_EQ(e.message.find('\n'), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find('\r'), std::string::npos) << e.message;
  for (const std::string& s : never) {
    EXPECT_EQ(e.message.find(s), std::string::npos) << "leaks " << s << ": " << e.message;
  }
}

TEST_F(GraphAuthTest, AWrongSecretIsOneLineWithoutTheSecretAndIsNotAskedAgainAtOnce) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.Refuse(401, "invalid_client",
                   "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                   "the request is the client secret value, not the client secret ID, for a secret "
                   "added to app '11111111-2222-3333-4444-555555555555'.\r\nTrace ID: x\r\n",
                   7000215);
  auto token = provider->Token();
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.error().kind, ErrorKind::kAccessDenied);
  EXPECT_TRUE(token.error().credential_refused);
  EXPECT_NE(token.error().message.find("the client secret was refused (AADSTS7000215)"),
            std::string::npos)
      << token.error().message;
  ExpectOneCleanLine(token.error(), {kSecret});

  // Every worker gets the same answer for a while, without a request each.
  auto again = provider->Token();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().message, token.error().message);
  EXPECT_EQ(endpoint_.seen.size(), 1u);
  clock_.Advance(seconds(60));
  endpoint_.Token("fixed");
  EXPECT_EQ(*provider->Token(), "fixed");
}

TEST_F(GraphAuthTest, EachRefusalNamesTheTenantAndTheProblem) {
  const struct {
    int status;
    std::string error;
    long code;
    std::string says;
  } cases[] = {
      {400, "invalid_request", 90002, "the tenant was not found (AADSTS90002); check tenant_id"},
      {400, "unauthorized_client", 700016,
       "the application 11111111-2222-3333-4444-555555555555 was not found in the directory"},
      {401, "invalid_client", 7000222, "the client secret has expired (AADSTS7000222)"},
      {400, "invalid_scope", 70011, "the scope https://graph.microsoft.com/.default was refused"},
  };
  for (const auto& c : cases) {
    auto provider = Provider(SecretCredentials());
    ASSERT_NE(provider, nullptr);
    endpoint_.Refuse(c.status, c.error,
                     "AADSTS" + std::to_string(c.code) + ": whatever Entra says.\r\nTrace ID: t",
                     c.code);
    auto token = provider->Token();
    ASSERT_FALSE(token.ok());
    EXPECT_TRUE(token.error().credential_refused);
    EXPECT_NE(token.error().message.find(c.says), std::string::npos) << token.error().message;
    ExpectOneCleanLine(token.error(), {kSecret});
  }
}

TEST_F(GraphAuthTest, ABadAssertionNamesTheCertificateButNeverQuotesTheAssertion) {
  auto provider = Provider(CertificateCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.Refuse(401, "invalid_client",
                   "AADSTS700027: The certificate with identifier used to sign the client "
                   "assertion is not registered on application.\r\nTrace ID: t",
                   700027);
  auto token = provider->Token();
  ASSERT_FALSE(token.ok());
  auto cert = ClientCertificate::FromPem(Pem(), "app.pem");
  ASSERT_TRUE(cert.ok());
  EXPECT_NE(token.error().message.find("the certificate assertion was refused (AADSTS700027); "
                                       "upload the certificate with thumbprint " +
                                       cert->sha1_thumbprint()),
            std::string::npos)
      << token.error().message;
  const std::string assertion = Form(endpoint_.seen.at(0).body)["client_assertion"];
  const Jwt jwt = Split(assertion);
  ExpectOneCleanLine(token.error(), {jwt.header_b64, jwt.claims_b64, jwt.signature_b64});
}

TEST_F(GraphAuthTest, AnUnknownCodeIsQuotedWithAnythingWeSentRedacted) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  // An endpoint that echoes its input (a broken proxy, an emulator) must not
  // make the secret appear in our message.
  endpoint_.Refuse(400, "invalid_request",
                   std::string("AADSTS9999999: bad request client_secret=") + kSecret +
                       " \x1b[31m\r\nTrace ID: t",
                   9999999);
  auto token = provider->Token();
  ASSERT_FALSE(token.ok());
  EXPECT_NE(token.error().message.find("the token request was refused (invalid_request: "
                                       "AADSTS9999999: bad request client_secret=[redacted]"),
            std::string::npos)
      << token.error().message;
  EXPECT_NE(token.error().message.find("correlation id aaaa0000-bb11-2222-33cc-444444dddddd"),
            std::string::npos);
  EXPECT_EQ(token.error().message.find('\x1b'), std::string::npos);
  ExpectOneCleanLine(token.error(), {kSecret, "s3cr3t~Value"});
}

TEST_F(GraphAuthTest, BusyOrFailingEndpointsAreRetryableNotRefusals) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.answers.push_back({503, "", {{"retry-after", "7"}}});
  endpoint_.answers.push_back({500, "<html>oops</html>", {}});
  endpoint_.Refuse(400, "temporarily_unavailable", "AADSTS50196: try later", 50196);
  endpoint_.Token("after all");

  auto busy = provider->Token();
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().kind, ErrorKind::kThrottled);
  EXPECT_EQ(busy.error().retry_after, std::chrono::seconds(7));
  EXPECT_FALSE(busy.error().credential_refused);
  ExpectOneCleanLine(busy.error(), {kSecret});

  auto failing = provider->Token();
  ASSERT_FALSE(failing.ok());
  EXPECT_EQ(failing.error().kind, ErrorKind::kTransient);
  EXPECT_EQ(failing.error().message.find("oops"), std::string::npos);

  auto later = provider->Token();
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().kind, ErrorKind::kTransient);
  EXPECT_FALSE(later.error().credential_refused);

  EXPECT_EQ(*provider->Token(), "after all") << "nothing cached a transient failure";
}

TEST_F(GraphAuthTest, AnAnswerThatIsNotATokenIsAClearError) {
  const struct {
    std::string body;
    std::string says;
  } cases[] = {
      {"<html>login page</html>", "the token endpoint's answer is not a JSON object"},
      {"[1,2]", "the token endpoint's answer is not a JSON object"},
      {R"({"token_type":"Bearer","expires_in":3599})", "has no access_token"},
      {R"({"token_type":"Bearer","expires_in":3599,"access_token":""})", "has no access_token"},
      {R"({"token_type":"Bearer","expires_in":3599,"access_token":7})", "has no access_token"},
      {R"({"token_type":"Bearer","access_token":"t"})", "has no valid expires_in"},
      {R"({"token_type":"Bearer","expires_in":-5,"access_token":"t"})", "has no valid expires_in"},
      {R"({"token_type":"pop","expires_in":3599,"access_token":"t"})", "not a Bearer token"},
      {R"({"token_type":"Bearer","expires_in":3599,"access_token":"a\r\nX-Evil: 1"})",
       "cannot go into an Authorization header"},
      {std::string(kMaxTokenResponseBytes + 1, ' '), "larger than 262144 bytes"},
  };
  for (const auto& c : cases) {
    auto provider = Provider(SecretCredentials());
    ASSERT_NE(provider, nullptr);
    endpoint_.answers.push_back({200, c.body, {}});
    auto token = provider->Token();
    ASSERT_FALSE(token.ok()) << c.says;
    EXPECT_EQ(token.error().kind, ErrorKind::kInvalidData);
    EXPECT_NE(token.error().message.find(c.says), std::string::npos) << token.error().message;
    ExpectOneCleanLine(token.error(), {kSecret});
  }
}

TEST_F(GraphAuthTest, ExpiresInMayBeAString) {
  auto provider = Provider(SecretCredentials());
  ASSERT_NE(provider, nullptr);
  endpoint_.answers.push_back(
      {200, R"({"token_type":"bearer","expires_in":"3599","access_token":"t"})", {}});
  EXPECT_EQ(*provider->Token(), "t");
  clock_.Advance(seconds(3599 - 301));
  EXPECT_EQ(*provider->Token(), "t");
  EXPECT_EQ(endpoint_.seen.size(), 1u);
}

TEST_F(GraphAuthTest, TransportErrorsNameTheTenant) {
  TokenProviderOptions options = Options();
  options.http_factory = [](const HttpOptions&) {
    struct Down : HttpClient {
      Result<HttpResponse> Send(const HttpRequest&) override {
        return MakeError(ErrorKind::kUnavailable, "cannot connect to https://login.example:443");
      }
    };
    return std::make_unique<Down>();
  };
  auto provider = TokenProvider::Create(SecretCredentials(), options);
  ASSERT_TRUE(provider.ok());
  auto token = (*provider)->Token();
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(token.error().message,
            "tenant contoso.onmicrosoft.com: cannot connect to https://login.example:443");
}

TEST_F(GraphAuthTest, CredentialsAreCheckedBeforeAnythingIsSent) {
  GraphCredentials both = CertificateCredentials();
  both.client_secret = kSecret;
  GraphCredentials neither = SecretCredentials();
  neither.client_secret.clear();
  GraphCredentials path_tenant = SecretCredentials();
  path_tenant.tenant_id = "../common";
  GraphCredentials no_client = SecretCredentials();
  no_client.client_id.clear();
  GraphCredentials bad_authority = SecretCredentials();
  bad_authority.authority = "login.microsoftonline.com";
  const struct {
    GraphCredentials c;
    std::string says;
  } cases[] = {
      {both, "set certificate_file or a client secret, not both"},
      {neither, "set certificate_file (recommended) or a client secret"},
      {path_tenant, "tenant_id must be the directory's GUID or one of its domain names"},
      {no_client, "client_id must be the app registration's application (client) id"},
      {bad_authority, "authority login.microsoftonline.com is not an http(s) URL"},
  };
  for (const auto& c : cases) {
    auto provider = TokenProvider::Create(c.c, Options());
    ASSERT_FALSE(provider.ok()) << c.says;
    EXPECT_EQ(provider.error().kind, ErrorKind::kInvalidArgument);
    EXPECT_NE(provider.error().message.find(c.says), std::string::npos) << provider.error().message;
    EXPECT_EQ(provider.error().message.find(kSecret), std::string::npos);
  }
  EXPECT_TRUE(endpoint_.seen.empty());
}

TEST_F(GraphAuthTest, AnEmulatorOnLoopbackIsItsOwnOrigin) {
  GraphCredentials c = SecretCredentials();
  c.authority = "http://127.0.0.1:8400/";
  c.tenant_id = "00000000-0000-0000-0000-0000000000aa";
  auto provider = Provider(c);
  ASSERT_NE(provider, nullptr);
  EXPECT_EQ(provider->token_endpoint(),
            "http://127.0.0.1:8400/00000000-0000-0000-0000-0000000000aa/oauth2/v2.0/token");
  EXPECT_EQ(endpoint_.clients.at(0).allowed_origin, "http://127.0.0.1:8400");
}

}  // namespace
}  // namespace roster::graph
