// The certificate credential: the PEM file read and checked once, and client
// assertions (RFC 7523 JWTs) signed with its key through OpenSSL's libcrypto.
// OpenSSL's own error text never reaches a message: it names ASN.1 internals,
// and a user needs one sentence about the file.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/text.h"
#include "graph/auth.h"

namespace roster::graph {

struct ClientCertificate::Key {
  EVP_PKEY* pkey = nullptr;
  ~Key() { EVP_PKEY_free(pkey); }
};

namespace {

constexpr size_t kMaxPemBytes = 1u << 20;
constexpr int kMinRsaBits = 2048;
constexpr std::chrono::minutes kAssertionLifetime{10};

template <typename T, void (*Free)(T*)>
struct Freer {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Freer<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Freer<BIO, BIO_free_all>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Freer<EVP_MD_CTX, EVP_MD_CTX_free>>;

// A buffer that held key material is overwritten before its memory is freed.
struct WipedString {
  std::string bytes;
  ~WipedString() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

std::string Base64Url(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = static_cast<uint8_t>(bytes[i]) << 16 |
                       static_cast<uint8_t>(bytes[i + 1]) << 8 | static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
  } else if (i + 2 == bytes.size()) {
    const uint32_t n = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1])
                                                                  << 8;
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
  }
  return out;
}

// Opened first and checked through the descriptor, so the file read is the
// file checked. The messages are config's CheckSecretFile's.
Result<WipedString> ReadPrivateFile(const std::string& path, const std::string& what) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return MakeError(ErrorKind::kInvalidArgument, what + " " + path + " cannot be read");
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    return MakeError(ErrorKind::kInvalidArgument, what + " " + path + " cannot be read");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " " + path + " has mode " + mode +
                         ", which lets group or others read it; chmod 600 (or 400) it");
  }
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorKind::kInvalidArgument, what + " " + path + " is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxPemBytes) {
    return MakeError(
        ErrorKind::kInvalidArgument,
        what + " " + path + " is larger than 1 MiB, too large for a certificate and its key");
  }
  WipedString pem;
  pem.bytes.resize(static_cast<size_t>(st.st_size) + 1);  // +1 sees a file that grew
  size_t got = 0;
  while (got < pem.bytes.size()) {
    const ssize_t n = read(fd, pem.bytes.data() + got, pem.bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return MakeError(ErrorKind::kInvalidArgument, what + " " + path + " cannot be read");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  pem.bytes.resize(got);
  return pem;
}

// What a PEM file holds, blocks in any order.
struct PemContents {
  std::vector<X509Ptr> certificates;
  std::vector<PkeyPtr> keys;
  bool encrypted_key = false;
  bool unreadable_key = false;
};

void AddPemBlock(std::string_view name, std::string_view header, const unsigned char* data,
                 long length, PemContents* out) {
  if (name == "CERTIFICATE") {
    const unsigned char* p = data;
    if (X509* cert = d2i_X509(nullptr, &p, length)) out->certificates.emplace_back(cert);
    return;
  }
  if (!name.ends_with("PRIVATE KEY")) return;  // parameters, CRLs, requests: not ours
  // PKCS#8 says so in its name; the traditional forms in a Proc-Type header.
  if (name == "ENCRYPTED PRIVATE KEY" || header.find("ENCRYPTED") != std::string_view::npos) {
    out->encrypted_key = true;
    return;
  }
  const unsigned char* p = data;
  if (EVP_PKEY* key = d2i_AutoPrivateKey(nullptr, &p, length)) {
    out->keys.emplace_back(key);
  } else {
    out->unreadable_key = true;
  }
}

// Every block of `pem`, or false when a block is damaged. Text around the
// blocks (the "Bag Attributes" an export from Windows adds) is skipped.
bool ReadPemBlocks(std::string_view pem, PemContents* out) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return false;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long length = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &length) != 1) break;
    AddPemBlock(name, header, data, length, out);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_clear_free(data, static_cast<size_t>(length));
  }
  // The loop ends with "no start line" when the text is used up; anything
  // else means a block that could not be decoded.
  const unsigned long last = ERR_peek_last_error();
  const bool clean =
      ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  return clean;
}

Result<std::string> SignPs256(EVP_PKEY* key, std::string_view input) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  size_t length = 0;
  std::string signature;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  bool ok = ctx && EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key) == 1 &&
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
            EVP_DigestSign(ctx.get(), nullptr, &length, in, input.size()) == 1;
  if (ok) {
    signature.resize(length);
    ok = EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length, in,
                        input.size()) == 1;
    signature.resize(length);
  }
  ERR_clear_error();
  if (!ok) return MakeError(ErrorKind::kInternal, "cannot sign the client assertion");
  return signature;
}

// jti: "a Guid", as the identity platform's page has it (a random version 4 UUID).
Result<std::string> RandomGuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    ERR_clear_error();
    return MakeError(ErrorKind::kInternal, "no random bytes for the client assertion's jti");
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const std::string hex = text::Hex(std::string_view(reinterpret_cast<char*>(b), sizeof b));
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

std::chrono::system_clock::time_point NotAfter(const X509* cert) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// The one private key of `contents`, checked for what Entra accepts.
Result<PkeyPtr> TheKey(PemContents& contents, const std::string& what) {
  const std::string why = "; it needs the certificate and its unencrypted RSA private key";
  if (contents.encrypted_key) {
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " holds an encrypted private key, which roster cannot unlock" +
                         " unattended; store it unencrypted (openssl pkey) in a file of mode 0600");
  }
  if (contents.unreadable_key) {
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " holds a private key that cannot be read");
  }
  if (contents.keys.empty()) {
    return MakeError(ErrorKind::kInvalidArgument, what + " holds no private key" + why);
  }
  if (contents.keys.size() > 1) {
    return MakeError(ErrorKind::kInvalidArgument, what + " holds more than one private key" + why);
  }
  PkeyPtr key = std::move(contents.keys.front());
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) {
    return MakeError(ErrorKind::kInvalidArgument,
                     what +
                         " holds a private key that is not RSA; Entra signs in apps with RSA "
                         "certificates (PS256)");
  }
  if (const int bits = EVP_PKEY_get_bits(key.get()); bits < kMinRsaBits) {
    return MakeError(
        ErrorKind::kInvalidArgument,
        what + " holds an RSA key of " + std::to_string(bits) + " bits; Entra needs at least 2048");
  }
  return key;
}

}  // namespace

Result<ClientCertificate> ClientCertificate::Load(const std::string& path,
                                                  const std::string& what) {
  ROSTER_ASSIGN_OR_RETURN(WipedString pem, ReadPrivateFile(path, what));
  return FromPem(pem.bytes, what + " " + path);
}

Result<ClientCertificate> ClientCertificate::FromPem(std::string_view pem,
                                                     const std::string& what) {
  PemContents contents;
  if (!ReadPemBlocks(pem, &contents)) {
    return MakeError(ErrorKind::kInvalidArgument, what + " is not a readable PEM file");
  }
  if (contents.certificates.empty()) {
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " holds no certificate; it needs the certificate and its private key");
  }
  ROSTER_ASSIGN_OR_RETURN(PkeyPtr key, TheKey(contents, what));
  // A chain may come along: the certificate is the one of this key.
  const X509* cert = nullptr;
  for (const X509Ptr& c : contents.certificates) {
    if (EVP_PKEY_eq(X509_get0_pubkey(c.get()), key.get()) == 1) cert = c.get();
  }
  ERR_clear_error();
  if (cert == nullptr) {
    return MakeError(
        ErrorKind::kInvalidArgument,
        what + " holds no certificate of its private key; the two must belong together");
  }
  unsigned char sha256[EVP_MAX_MD_SIZE];
  unsigned char sha1[EVP_MAX_MD_SIZE];
  unsigned int sha256_length = 0;
  unsigned int sha1_length = 0;
  if (X509_digest(cert, EVP_sha256(), sha256, &sha256_length) != 1 ||
      X509_digest(cert, EVP_sha1(), sha1, &sha1_length) != 1) {
    ERR_clear_error();
    return MakeError(ErrorKind::kInvalidArgument,
                     what + " holds a certificate that cannot be read");
  }
  ClientCertificate out;
  out.x5t_s256_ = Base64Url(std::string_view(reinterpret_cast<char*>(sha256), sha256_length));
  out.sha1_thumbprint_ = text::Hex(std::string_view(reinterpret_cast<char*>(sha1), sha1_length),
                                   text::HexCase::kUpper);
  out.not_after_ = NotAfter(cert);
  auto shared = std::make_shared<Key>();
  shared->pkey = key.release();
  out.key_ = std::move(shared);
  // One signature now: a key that cannot sign is found at load time, and
  // OpenSSL's lazily filled caches of the key are filled before threads share it.
  if (!SignPs256(out.key_->pkey, "probe").ok()) {
    return MakeError(ErrorKind::kInvalidArgument, what + " holds a key that cannot sign");
  }
  return out;
}

Result<std::string> ClientCertificate::Assertion(const std::string& audience,
                                                 const std::string& client_id,
                                                 std::chrono::system_clock::time_point now) const {
  ROSTER_ASSIGN_OR_RETURN(std::string jti, RandomGuid());
  const int64_t t =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t lifetime = std::chrono::seconds(kAssertionLifetime).count();
  std::string signing_input;
  try {
    const nlohmann::json header = {{"alg", "PS256"}, {"typ", "JWT"}, {"x5t#S256", x5t_s256_}};
    const nlohmann::json claims = {{"aud", audience},    {"iss", client_id}, {"sub", client_id},
                                   {"jti", jti},         {"nbf", t},         {"iat", t},
                                   {"exp", t + lifetime}};
    signing_input = Base64Url(header.dump()) + "." + Base64Url(claims.dump());
  } catch (const std::exception&) {  // dump() refuses invalid UTF-8
    return MakeError(ErrorKind::kInvalidArgument,
                     "the client assertion's audience or client_id is not valid UTF-8");
  }
  ROSTER_ASSIGN_OR_RETURN(std::string signature, SignPs256(key_->pkey, signing_input));
  return signing_input + "." + Base64Url(signature);
}

}  // namespace roster::graph
