// The token provider: one client credentials request at a time, its answer
// cached, and the identity platform's refusals turned into one sentence.
#include "graph/auth.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/text.h"

namespace roster::graph {
namespace {

constexpr char kAssertionType[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
// A Graph access token is a JWT of a few kilobytes; it goes into a header.
constexpr size_t kMaxAccessTokenBytes = 64u << 10;
// Server text quoted in a message: one line, and not a page of it.
constexpr size_t kMaxQuotedBytes = 300;
// A lifetime past a day is not one Entra hands out; it is capped, not trusted.
constexpr std::chrono::seconds kMaxLifetime = std::chrono::hours(24);

using Json = nlohmann::json;

struct TokenAnswer {
  std::string access_token;
  std::chrono::seconds expires_in{0};
};

// RFC 6749 §5.2 plus the identity platform's diagnostics.
struct OAuthError {
  std::string error;        // "invalid_client"
  std::string description;  // "AADSTS7000215: Invalid client secret provided. ...\r\nTrace ID: ..."
  long code = 0;            // 7000215
  std::string correlation_id;
};

bool IsTenantChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-';
}

std::string FormField(std::string_view name, std::string_view value) {
  return text::PercentEncode(name) + "=" + text::PercentEncode(value);
}

std::string StripTrailingSlashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// Server text fit for one line of a message: its first line, bounded, made
// safe for a terminal, and never anything secret we sent (an endpoint that
// echoes its input must not make us print the secret or the assertion).
std::string Quote(std::string_view server_text, const std::vector<std::string>& secrets) {
  std::string_view line = server_text.substr(0, server_text.find_first_of("\r\n"));
  std::string s(text::Trim(line.substr(0, kMaxQuotedBytes)));
  for (const std::string& secret : secrets) {
    if (secret.size() < 4) continue;  // too short to matter, and would redact ordinary words
    for (size_t at = s.find(secret); at != std::string::npos; at = s.find(secret, at)) {
      s.replace(at, secret.size(), "[redacted]");
    }
  }
  // Also a secret cut off by the bound: no prefix of one may stay at the end.
  for (const std::string& secret : secrets) {
    for (size_t n = std::min(secret.size(), s.size()); n >= 8; --n) {
      if (s.ends_with(std::string_view(secret).substr(0, n))) {
        s.replace(s.size() - n, n, "[redacted]");
        break;
      }
    }
  }
  return text::SafeForOutput(s);
}

std::optional<OAuthError> ParseOAuthError(const std::string& body) {
  try {
    const Json j = Json::parse(body, nullptr, false);
    if (!j.is_object() || !j.contains("error") || !j["error"].is_string()) return std::nullopt;
    OAuthError e;
    e.error = j["error"].get<std::string>();
    if (j.contains("error_description") && j["error_description"].is_string()) {
      e.description = j["error_description"].get<std::string>();
    }
    if (j.contains("error_codes") && j["error_codes"].is_array() && !j["error_codes"].empty() &&
        j["error_codes"][0].is_number_integer()) {
      e.code = j["error_codes"][0].get<long>();
    } else if (e.description.starts_with("AADSTS")) {
      e.code = std::strtol(e.description.c_str() + 6, nullptr, 10);
    }
    if (j.contains("correlation_id") && j["correlation_id"].is_string()) {
      e.correlation_id = j["correlation_id"].get<std::string>();
      if (!IsSafeHeaderValue(e.correlation_id, 64)) e.correlation_id.clear();
    }
    return e;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string Iso8601Date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char out[16];
  std::strftime(out, sizeof out, "%Y-%m-%d", &tm);
  return out;
}

// What went wrong, for the codes an administrator meets while setting up an
// app registration. Microsoft warns that codes change, so an unknown one is
// quoted, never guessed at; the `error` field decides the kind, not the code.
std::string Explain(const OAuthError& e, const GraphCredentials& credentials,
                    const ClientCertificate* certificate,
                    std::chrono::system_clock::time_point now) {
  const std::string code = e.code ? "AADSTS" + std::to_string(e.code) : e.error;
  switch (e.code) {
    case 7000215:
      return "the client secret was refused (" + code +
             "); configure the secret's value, not its secret ID, from the app registration";
    case 7000222:
      return "the client secret has expired (" + code +
             "); add a new one to the app registration and configure it";
    case 90002:
    case 900023:
      return "the tenant was not found (" + code +
             "); check tenant_id (the directory's GUID or a verified domain) and, for a national "
             "cloud, authority";
    case 700016:
      return "the application " + text::SafeForOutput(credentials.client_id) +
             " was not found in the directory (" + code +
             "); check client_id, and that the app is registered or consented in this tenant";
    case 7000112:
      return "the application is disabled in this tenant (" + code + ")";
    case 700027:
    case 700023: {
      std::string s = "the certificate assertion was refused (" + code + ")";
      if (certificate != nullptr && certificate->not_after() <= now) {
        return s + "; the certificate expired on " + Iso8601Date(certificate->not_after()) +
               ": make a new one and upload it to the app registration";
      }
      return s + (certificate != nullptr
                      ? "; upload the certificate with thumbprint " +
                            certificate->sha1_thumbprint() + " to the app registration"
                      : std::string());
    }
    case 700024:
      return "the certificate assertion is outside its valid time range (" + code +
             "); check this machine's clock";
    case 70011:
    case 1002012:
      return "the scope " + text::SafeForOutput(credentials.scope) + " was refused (" + code +
             "); app-only access to Graph asks for https://graph.microsoft.com/.default";
    default:
      return std::string();
  }
}

std::string Prefix(const GraphCredentials& credentials) {
  return "tenant " + credentials.tenant_id + ": ";
}

// A non-200 answer as one sentence. An OAuth error on a 4xx refuses the
// credential, the tenant, the app or the scope: nothing will work until the
// configuration changes, so it is credential_refused and not retried.
Error AnswerError(const HttpResponse& response, const GraphCredentials& credentials,
                  const ClientCertificate* certificate, std::chrono::system_clock::time_point now,
                  const std::vector<std::string>& secrets) {
  const std::string prefix = Prefix(credentials);
  std::optional<OAuthError> oauth = ParseOAuthError(response.body);
  const bool refusal = oauth && response.status >= 400 && response.status < 500 &&
                       response.status != 429 && oauth->error != "temporarily_unavailable";
  if (!refusal) {
    Error e =
        HttpStatusError(response, prefix + "the token endpoint " + TokenEndpoint(credentials));
    if (oauth && e.kind != ErrorKind::kThrottled) {  // temporarily_unavailable, or a 5xx
      e.kind = ErrorKind::kTransient;
      e.credential_refused = false;
    }
    return e;
  }
  std::string why = Explain(*oauth, credentials, certificate, now);
  if (why.empty()) {
    std::string said = Quote(oauth->description, secrets);
    why = "the token request was refused (" + text::SafeForOutput(oauth->error) +
          (said.empty() ? "" : ": " + said) + ")" +
          (oauth->correlation_id.empty() ? "" : "; correlation id " + oauth->correlation_id);
  }
  Error e = MakeError(ErrorKind::kAccessDenied, prefix + why);
  e.credential_refused = true;
  return e;
}

std::optional<std::chrono::seconds> Lifetime(const Json& j) {
  const auto it = j.find("expires_in");
  if (it == j.end()) return std::nullopt;
  double seconds = -1;
  if (it->is_number()) {
    seconds = it->get<double>();
  } else if (it->is_string()) {  // the v1 endpoint and some emulators send "3599"
    const std::string& s = it->get_ref<const std::string&>();
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    seconds = std::stod(s);
  }
  // Under a second would mean a request per call; NaN fails this test too.
  if (!(seconds >= 1)) return std::nullopt;
  if (seconds >= static_cast<double>(kMaxLifetime.count())) return kMaxLifetime;
  return std::chrono::seconds(static_cast<int64_t>(seconds));
}

Result<TokenAnswer> ParseTokenAnswer(const std::string& body, const std::string& prefix) {
  const auto invalid = [&](const std::string& what) {
    return MakeError(ErrorKind::kInvalidData, prefix + "the token endpoint's answer " + what);
  };
  try {
    const Json j = Json::parse(body, nullptr, false);
    if (!j.is_object()) return invalid("is not a JSON object");
    const auto token = j.find("access_token");
    if (token == j.end() || !token->is_string() || token->get_ref<const std::string&>().empty()) {
      return invalid("has no access_token");
    }
    TokenAnswer answer;
    answer.access_token = token->get<std::string>();
    if (!IsSafeHeaderValue(answer.access_token, kMaxAccessTokenBytes)) {
      return invalid("holds an access token that cannot go into an Authorization header");
    }
    const auto type = j.find("token_type");
    if (type != j.end() &&
        !(type->is_string() && text::EqualsNoCase(type->get<std::string>(), "Bearer"))) {
      return invalid("holds a token that is not a Bearer token");
    }
    std::optional<std::chrono::seconds> lifetime = Lifetime(j);
    if (!lifetime) return invalid("has no valid expires_in");
    answer.expires_in = *lifetime;
    return answer;
  } catch (const std::exception&) {
    return invalid("cannot be read");
  }
}

// When to renew: `margin` before expiry, or at half the lifetime of a token
// that lives less than twice the margin (an emulator's short-lived ones).
std::chrono::seconds RenewAfter(std::chrono::seconds lifetime, std::chrono::seconds margin) {
  return std::max(lifetime - margin, lifetime / 2);
}

Status CheckCredentials(const GraphCredentials& c) {
  const std::string prefix = "tenant " + text::SafeForOutput(c.tenant_id) + ": ";
  if (c.tenant_id.empty() || c.tenant_id.size() > 256 ||
      !std::all_of(c.tenant_id.begin(), c.tenant_id.end(),
                   [](char ch) { return IsTenantChar(static_cast<unsigned char>(ch)); })) {
    return MakeError(ErrorKind::kInvalidArgument,
                     prefix + "tenant_id must be the directory's GUID or one of its domain names");
  }
  if (c.client_id.empty() || !IsSafeHeaderValue(c.client_id, 256)) {
    return MakeError(ErrorKind::kInvalidArgument,
                     prefix + "client_id must be the app registration's application (client) id");
  }
  if (c.certificate_file.empty() == c.client_secret.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     prefix + (c.certificate_file.empty()
                                   ? "set certificate_file (recommended) or a client secret"
                                   : "set certificate_file or a client secret, not both"));
  }
  const std::string origin = CanonicalOrigin(c.authority);
  if (origin.empty() ||
      !(text::StartsWithNoCase(c.authority, "https://") ||
        text::StartsWithNoCase(c.authority, "http://")) ||
      c.authority.find_first_of("?#") != std::string::npos) {
    return MakeError(ErrorKind::kInvalidArgument,
                     prefix + "authority " + text::SafeForOutput(c.authority) +
                         " is not an http(s) URL such as https://login.microsoftonline.com");
  }
  if (c.scope.empty()) return MakeError(ErrorKind::kInvalidArgument, prefix + "scope is empty");
  return {};
}

}  // namespace

std::string TokenEndpoint(const GraphCredentials& credentials) {
  return StripTrailingSlashes(credentials.authority) + "/" + credentials.tenant_id +
         "/oauth2/v2.0/token";
}

Result<std::unique_ptr<TokenProvider>> TokenProvider::Create(GraphCredentials credentials,
                                                             TokenProviderOptions options) {
  ROSTER_RETURN_IF_ERROR(CheckCredentials(credentials));
  std::optional<ClientCertificate> certificate;
  if (!credentials.certificate_file.empty()) {
    ROSTER_ASSIGN_OR_RETURN(certificate,
                            ClientCertificate::Load(credentials.certificate_file,
                                                    Prefix(credentials) + "certificate_file"));
  }
  // The secret and the assertion go to the authority's origin and nowhere
  // else, whatever a redirect or a caller's options say.
  options.http.allowed_origin = CanonicalOrigin(credentials.authority);
  if (options.http.max_response_bytes == 0 ||
      options.http.max_response_bytes > kMaxTokenResponseBytes) {
    options.http.max_response_bytes = kMaxTokenResponseBytes;
  }
  options.http.username.clear();
  options.http.password.clear();
  if (!options.http_factory) {
    options.http_factory = [](const HttpOptions& http) { return NewCurlHttpClient(http); };
  }
  if (!options.wall_clock) options.wall_clock = [] { return std::chrono::system_clock::now(); };
  std::string endpoint = TokenEndpoint(credentials);
  auto provider = std::unique_ptr<TokenProvider>(new TokenProvider(
      std::move(credentials), std::move(options), std::move(endpoint), std::move(certificate)));
  if (provider->http_ == nullptr) {
    return MakeError(ErrorKind::kInternal,
                     Prefix(provider->credentials_) + "cannot make an HTTP client");
  }
  return provider;
}

TokenProvider::TokenProvider(GraphCredentials credentials, TokenProviderOptions options,
                             std::string endpoint, std::optional<ClientCertificate> certificate)
    : credentials_(std::move(credentials)),
      options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      certificate_(std::move(certificate)),
      http_(options_.http_factory(options_.http)) {}

TokenProvider::~TokenProvider() = default;

Result<std::string> TokenProvider::RequestBody(std::string* assertion) {
  std::string body = FormField("client_id", credentials_.client_id) + "&" +
                     FormField("scope", credentials_.scope) + "&grant_type=client_credentials";
  if (!certificate_) return body + "&" + FormField("client_secret", credentials_.client_secret);
  // A fresh assertion per request: each has its own jti and a short life.
  ROSTER_ASSIGN_OR_RETURN(*assertion, certificate_->Assertion(endpoint_, credentials_.client_id,
                                                              options_.wall_clock()));
  return body + "&" + FormField("client_assertion_type", kAssertionType) + "&" +
         FormField("client_assertion", *assertion);
}

Status TokenProvider::Renew() {
  Clock& clock = options_.clock != nullptr ? *options_.clock : RealClock();
  // Taken before the request leaves: the token's life starts when the server
  // issues it, a little later, so the cache can only end early, never late.
  const auto sent = clock.Now();
  const std::string prefix = Prefix(credentials_);
  std::string assertion;
  ROSTER_ASSIGN_OR_RETURN(std::string body, RequestBody(&assertion));
  HttpRequest request{
      "POST",
      endpoint_,
      {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}},
      std::move(body)};
  Result<HttpResponse> response = http_->Send(request);
  if (!response.ok()) {
    Error e = response.take_error();
    e.message = prefix + e.message;
    return e;
  }
  if (response->body.size() > kMaxTokenResponseBytes) {
    return MakeError(ErrorKind::kInvalidData,
                     prefix + "the token endpoint's answer is larger than " +
                         std::to_string(kMaxTokenResponseBytes) + " bytes");
  }
  if (response->status != 200) {
    return AnswerError(*response, credentials_, certificate_ ? &*certificate_ : nullptr,
                       options_.wall_clock(), {credentials_.client_secret, assertion});
  }
  ROSTER_ASSIGN_OR_RETURN(TokenAnswer answer, ParseTokenAnswer(response->body, prefix));
  token_ = std::move(answer.access_token);
  renew_at_ = sent + RenewAfter(answer.expires_in, options_.renew_margin);
  return {};
}

Result<std::string> TokenProvider::Token() {
  std::lock_guard<std::mutex> lock(mu_);
  Clock& clock = options_.clock != nullptr ? *options_.clock : RealClock();
  const auto now = clock.Now();
  if (!token_.empty() && now < renew_at_) return token_;
  if (refusal_ && now < refusal_until_) return *refusal_;
  refusal_.reset();
  token_.clear();
  Status renewed = Renew();
  if (!renewed.ok()) {
    Error e = renewed.take_error();
    if (e.credential_refused) {
      refusal_ = e;
      refusal_until_ = now + options_.refusal_cooldown;
    }
    return e;
  }
  return token_;
}

void TokenProvider::Invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  token_.clear();
}

void TokenProvider::Invalidate(std::string_view rejected) {
  std::lock_guard<std::mutex> lock(mu_);
  if (token_ == rejected) token_.clear();
}

}  // namespace roster::graph
