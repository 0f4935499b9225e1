// App-only sign-in to Microsoft Graph: the OAuth 2.0 client credentials grant
// of the Microsoft identity platform, with a certificate (a signed JWT client
// assertion) or a client secret, and the access token cached until shortly
// before it expires. No message from here ever holds a secret, a private key,
// an assertion or a token.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/result.h"
#include "http/http.h"

namespace roster::graph {

// One Entra app registration in one tenant, as the config module hands it
// over: exactly one of certificate_file and client_secret is set.
struct GraphCredentials {
  std::string tenant_id;  // "contoso.onmicrosoft.com" or the directory's GUID
  std::string client_id;  // the app registration's application (client) id
  // Where the token endpoint lives: national clouds have their own, an
  // emulator sits on loopback. Plain http:// is the config module's to allow.
  std::string authority = "https://login.microsoftonline.com";
  std::string certificate_file;  // PEM: the certificate and its RSA private key, in any order
  std::string client_secret;     // already read from its file or environment variable
  std::string scope = "https://graph.microsoft.com/.default";
};

// "{authority}/{tenant_id}/oauth2/v2.0/token", a trailing slash of the
// authority dropped: the URL the token request goes to and the assertion's
// audience.
std::string TokenEndpoint(const GraphCredentials& credentials);

// A certificate credential: an X.509 certificate and the RSA private key that
// belongs to it, read once from one PEM file. Copies share the key; signing
// is safe from several threads at once.
class ClientCertificate {
 public:
  // Reads `path`. Refused, with one sentence that starts with `what` and
  // never quotes the file: when group or others may read it (0400 and 0600
  // are fine; the wording is config's CheckSecretFile's), when it is not a
  // regular file or is over 1 MiB, when it holds no certificate or no
  // private key, more than one key, an encrypted key, a key that is not RSA
  // or has fewer than 2048 bits (Entra's minimum), or no certificate of that
  // key. Other certificates (a chain) are ignored.
  static Result<ClientCertificate> Load(const std::string& path,
                                        const std::string& what = "certificate_file");
  // The same from PEM text already in memory; `what` names it in messages.
  static Result<ClientCertificate> FromPem(std::string_view pem, const std::string& what);

  // base64url (no padding) of the SHA-256 of the certificate's DER encoding:
  // the assertion's "x5t#S256" header.
  const std::string& x5t_s256() const { return x5t_s256_; }
  // Upper-case hex SHA-1 of the DER encoding: the "Thumbprint" the Entra
  // admin center lists for an uploaded certificate, so messages can name it.
  const std::string& sha1_thumbprint() const { return sha1_thumbprint_; }
  // When the certificate expires (its notAfter), so that a refused assertion
  // can say the certificate has expired rather than only that it was refused.
  std::chrono::system_clock::time_point not_after() const { return not_after_; }

  // A client assertion as the identity platform documents it: a JWT with the
  // header {"alg":"PS256","typ":"JWT","x5t#S256":...} and the claims aud =
  // `audience` (the token endpoint), iss = sub = `client_id`, jti = a random
  // GUID, nbf = iat = `now`, exp = `now` + 10 minutes, signed RSASSA-PSS with
  // SHA-256, MGF1 SHA-256 and a 32-byte salt.
  Result<std::string> Assertion(const std::string& audience, const std::string& client_id,
                                std::chrono::system_clock::time_point now) const;

 private:
  struct Key;  // OpenSSL's types stay in jwt.cc
  ClientCertificate() = default;

  std::shared_ptr<const Key> key_;
  std::string x5t_s256_;
  std::string sha1_thumbprint_;
  std::chrono::system_clock::time_point not_after_{};
};

struct TokenProviderOptions {
  // When a cached token is renewed (steady time); null means RealClock().
  Clock* clock = nullptr;
  // The wall clock an assertion's nbf and exp are taken from; null means
  // std::chrono::system_clock::now.
  std::function<std::chrono::system_clock::time_point()> wall_clock;
  // Makes the one connection to the token endpoint; null means
  // NewCurlHttpClient. It is handed `http` with allowed_origin set to the
  // authority's origin and max_response_bytes at most kMaxTokenResponseBytes.
  std::function<std::unique_ptr<HttpClient>(const HttpOptions&)> http_factory;
  HttpOptions http;  // CA file, timeouts, deadline
  // A token is renewed this long before it expires (or at half its lifetime
  // when that is shorter), so that no request leaves with one about to lapse.
  std::chrono::seconds renew_margin{300};
  // After the identity platform refuses the credential itself, Token()
  // answers the same error for this long without asking again: many
  // mailboxes' workers must not hammer the endpoint with a wrong secret.
  std::chrono::seconds refusal_cooldown{60};
};

// A token answer is a few kilobytes; anything far larger is not one.
inline constexpr size_t kMaxTokenResponseBytes = 256u << 10;

// Access tokens for one app registration in one tenant, shared by every
// worker that talks to that tenant's Graph. All members are thread-safe; at
// most one token request is in flight, and callers that arrive meanwhile
// wait for its answer instead of sending their own.
class TokenProvider {
 public:
  // Checks the credentials (a tenant id of letters, digits, '.' and '-'; a
  // client id; exactly one of certificate_file and client_secret; an absolute
  // authority URL) and loads the certificate, so that a bad key file is found
  // before any run. Sends nothing.
  static Result<std::unique_ptr<TokenProvider>> Create(GraphCredentials credentials,
                                                       TokenProviderOptions options = {});
  ~TokenProvider();
  TokenProvider(const TokenProvider&) = delete;
  TokenProvider& operator=(const TokenProvider&) = delete;

  // A valid access token: the cached one, or a new one from the token
  // endpoint. Errors are one line naming the tenant and what to fix:
  // kAccessDenied with credential_refused when the identity platform refuses
  // the credential, the tenant, the app or the scope (AADSTS codes are
  // explained); kThrottled or kTransient (with Retry-After) when it is busy
  // or failing; kInvalidData for an answer that is not a token; transport
  // errors as the HttpClient reports them.
  Result<std::string> Token();

  // Forgets the cached token, so the next Token() asks for a new one. For a
  // 401 from Graph: call Invalidate(the token sent), then Token() once more
  // and retry the request once; a second 401 is a failure.
  void Invalidate();
  // Forgets the cached token only if it still is `rejected`: when several
  // workers see a 401 for the same token, the first renews it and the others
  // get the new one instead of renewing it again.
  void Invalidate(std::string_view rejected);

  const std::string& tenant_id() const { return credentials_.tenant_id; }
  const std::string& token_endpoint() const { return endpoint_; }

 private:
  TokenProvider(GraphCredentials credentials, TokenProviderOptions options, std::string endpoint,
                std::optional<ClientCertificate> certificate);
  // The form body of one token request; *assertion is the one it carries
  // (if any), so that no message can quote it.
  Result<std::string> RequestBody(std::string* assertion);
  // Asks the token endpoint and caches its answer. Called with mu_ held.
  Status Renew();

  GraphCredentials credentials_;
  TokenProviderOptions options_;
  std::string endpoint_;
  std::optional<ClientCertificate> certificate_;

  std::mutex mu_;  // guards everything below, and the one request in flight
  std::unique_ptr<HttpClient> http_;
  std::string token_;  // empty: none cached
  std::chrono::steady_clock::time_point renew_at_{};
  std::optional<Error> refusal_;
  std::chrono::steady_clock::time_point refusal_until_{};
};

}  // namespace roster::graph
