#include "connectors/ldap/ldap_connection.h"

#include <ldap.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "core/text.h"

namespace roster {
namespace {

// The CA bundle Debian (and most distributions) keep the system's trusted
// CAs in; used when neither ca_file nor ldap.conf names one.
constexpr const char* kSystemCaBundle = "/etc/ssl/certs/ca-certificates.crt";

// Base reads kept in flight at once by ReadMany: enough to hide the round
// trips to a distant server, few enough not to look like a flood.
constexpr size_t kReadWindow = 32;

// Owns what libldap hands out, so that every return path frees it.
struct MessageDeleter {
  void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
using MessagePtr = std::unique_ptr<LDAPMessage, MessageDeleter>;

struct HandleDeleter {
  void operator()(LDAP* ld) const { ldap_unbind_ext_s(ld, nullptr, nullptr); }
};
using HandlePtr = std::unique_ptr<LDAP, HandleDeleter>;

// The result of one operation: code, matched DN, diagnostic and controls.
struct ParsedResult {
  int code = LDAP_SUCCESS;
  char* matched = nullptr;
  char* diagnostic = nullptr;
  LDAPControl** controls = nullptr;
  ParsedResult() = default;
  ParsedResult(const ParsedResult&) = delete;
  ParsedResult& operator=(const ParsedResult&) = delete;
  ~ParsedResult() {
    ldap_memfree(matched);
    ldap_memfree(diagnostic);
    ldap_controls_free(controls);
  }
};

std::string ErrText(int code) { return ldap_err2string(code); }

// libldap's diagnostic message for the last operation on `ld`, when it says
// more than the result code does.
std::string Diagnostic(LDAP* ld) {
  char* message = nullptr;
  std::string out;
  if (ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &message) == LDAP_OPT_SUCCESS &&
      message != nullptr) {
    out = message;
    ldap_memfree(message);
  }
  if (out == "(unknown error code)") out.clear();  // what GnuTLS failures leave behind
  return out;
}

std::string WithDiagnostic(std::string text, const std::string& diagnostic) {
  if (!diagnostic.empty() && diagnostic != text) text += " (" + diagnostic + ")";
  return text;
}

timeval Seconds(int seconds) { return timeval{seconds, 0}; }

bool IsLdaps(const std::string& url) { return text::StartsWithNoCase(url, "ldaps://"); }

// Sets the per-connection TLS context: certificate checks always on
// (`require` is DEMAND except for the diagnostic probe), the configured or
// system CAs, TLS 1.2 at least. Options on a handle only take effect through
// LDAP_OPT_X_TLS_NEWCTX, and must be set before the connection is made.
Status SetUpTls(LDAP* ld, const LdapConnectionOptions& o, int require) {
  const std::string prefix = "source " + o.source + ": ";
  if (ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &require) != LDAP_OPT_SUCCESS) {
    return MakeError(ErrorKind::kInternal, prefix + "libldap refused LDAP_OPT_X_TLS_REQUIRE_CERT");
  }
  if (!o.ca_file.empty()) {
    if (ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, o.ca_file.c_str()) != LDAP_OPT_SUCCESS) {
      return MakeError(ErrorKind::kInvalidArgument, prefix + "cannot use ca_file " + o.ca_file);
    }
  } else {
    // A handle starts with ldap.conf's TLS_CACERT/TLS_CACERTDIR; with
    // neither, give it the system bundle rather than no CA at all.
    char* file = nullptr;
    char* dir = nullptr;
    ldap_get_option(ld, LDAP_OPT_X_TLS_CACERTFILE, &file);
    ldap_get_option(ld, LDAP_OPT_X_TLS_CACERTDIR, &dir);
    const bool none = file == nullptr && dir == nullptr;
    ldap_memfree(file);
    ldap_memfree(dir);
    if (none && access(kSystemCaBundle, R_OK) == 0) {
      ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, kSystemCaBundle);
    }
  }
  int min_version = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
  ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &min_version);
  int is_server = 0;
  if (ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &is_server) != LDAP_OPT_SUCCESS) {
    const std::string diagnostic = Diagnostic(ld);
    return MakeError(
        ErrorKind::kInvalidArgument,
        prefix + "cannot set up TLS with " +
            (o.ca_file.empty() ? std::string("the system CAs") : "ca_file " + o.ca_file) +
            (diagnostic.empty() ? "" : ": " + diagnostic));
  }
  return {};
}

// A handle for `o.url` with roster's options, not yet connected.
Result<HandlePtr> NewHandle(const LdapConnectionOptions& o, int require_cert) {
  const std::string prefix = "source " + o.source + ": ";
  LDAP* raw = nullptr;
  const int rc = ldap_initialize(&raw, o.url.c_str());
  if (rc != LDAP_SUCCESS || raw == nullptr) {
    return MakeError(ErrorKind::kInvalidArgument,
                     prefix + "url " + o.url + " is not an LDAP URL: " + ErrText(rc));
  }
  HandlePtr ld(raw);
  int version = LDAP_VERSION3;
  ldap_set_option(raw, LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option(raw, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
  ldap_set_option(raw, LDAP_OPT_RESTART, LDAP_OPT_ON);
  const timeval timeout = Seconds(o.timeout_seconds);
  ldap_set_option(raw, LDAP_OPT_NETWORK_TIMEOUT, &timeout);  // connect
  ldap_set_option(raw, LDAP_OPT_TIMEOUT, &timeout);          // each synchronous call
  if (IsLdaps(o.url) || o.starttls) ROSTER_RETURN_IF_ERROR(SetUpTls(raw, o, require_cert));
  return ld;
}

// Bounds the TLS handshake. libldap 2.5 with GnuTLS can spin in the
// handshake well past LDAP_OPT_NETWORK_TIMEOUT (using a whole core) when the
// peer accepts the TCP connection and never answers; shutting the socket down
// at the deadline ends the handshake with an error. The socket is learnt
// from libldap's connection callbacks, which run after the TCP connect and
// before TLS, and forgotten when libldap closes it, so that a descriptor
// number reused elsewhere is never touched.
class HandshakeWatchdog {
 public:
  HandshakeWatchdog(LDAP* ld, int seconds) : ld_(ld) {
    callbacks_.lc_add = &HandshakeWatchdog::OnAdd;
    callbacks_.lc_del = &HandshakeWatchdog::OnDel;
    callbacks_.lc_arg = this;
    ldap_set_option(ld_, LDAP_OPT_CONNECT_CB, &callbacks_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    thread_ = std::thread([this, deadline] {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_until(lock, deadline, [this] { return done_; }) && fd_ >= 0) {
        shutdown(fd_, SHUT_RDWR);
        fired_ = true;
      }
    });
  }
  ~HandshakeWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    // Getting LDAP_OPT_CONNECT_CB removes the callbacks again; libldap
    // would otherwise call OnDel on this object when the handle is freed.
    ldap_conncb* callbacks = &callbacks_;
    ldap_get_option(ld_, LDAP_OPT_CONNECT_CB, callbacks);
  }
  HandshakeWatchdog(const HandshakeWatchdog&) = delete;
  HandshakeWatchdog& operator=(const HandshakeWatchdog&) = delete;

  bool fired() {
    std::lock_guard<std::mutex> lock(mu_);
    return fired_;
  }

 private:
  static int OnAdd(LDAP*, Sockbuf* sb, LDAPURLDesc*, sockaddr*, ldap_conncb* ctx) {
    auto* self = static_cast<HandshakeWatchdog*>(ctx->lc_arg);
    ber_socket_t fd = -1;
    ber_sockbuf_ctrl(sb, LBER_SB_OPT_GET_FD, &fd);
    std::lock_guard<std::mutex> lock(self->mu_);
    self->fd_ = fd;
    return 0;
  }
  static void OnDel(LDAP*, Sockbuf*, ldap_conncb* ctx) {
    auto* self = static_cast<HandshakeWatchdog*>(ctx->lc_arg);
    std::lock_guard<std::mutex> lock(self->mu_);
    self->fd_ = -1;
  }

  LDAP* ld_;
  ldap_conncb callbacks_{};
  std::mutex mu_;
  std::condition_variable cv_;
  int fd_ = -1;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;
};

// Opens the TCP connection and, where asked, the TLS session, within the
// connection timeout; `*timed_out` tells a handshake cut short by it.
int Connect(LDAP* ld, const LdapConnectionOptions& o, bool* timed_out) {
  const bool tls = IsLdaps(o.url) || o.starttls;
  std::optional<HandshakeWatchdog> watchdog;
  if (tls) watchdog.emplace(ld, o.timeout_seconds);
  const int rc =
      o.starttls && !IsLdaps(o.url) ? ldap_start_tls_s(ld, nullptr, nullptr) : ldap_connect(ld);
  *timed_out = watchdog && watchdog->fired();
  return rc;
}

bool IsConnectFailure(int rc) {
  return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT;
}

Error ConnectError(LDAP* ld, int rc, const LdapConnectionOptions& o, bool timed_out) {
  const std::string prefix = "source " + o.source + ": ";
  const std::string diagnostic = Diagnostic(ld);
  const bool tls = IsLdaps(o.url) || o.starttls;
  if (timed_out) {
    return MakeError(ErrorKind::kUnavailable, prefix + "the TLS handshake with " + o.url +
                                                  " did not finish within " +
                                                  std::to_string(o.timeout_seconds) + " s");
  }
  if (tls && (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)) {
    // libldap (with GnuTLS) reports a certificate it could not verify as a
    // bare "Can't contact LDAP server" or "Connect error". Telling that from
    // a dead server takes a second handshake that accepts any certificate;
    // it sends nothing but the handshake and is closed at once.
    auto probe = NewHandle(o, LDAP_OPT_X_TLS_ALLOW);
    bool probe_timed_out = false;
    if (probe.ok() && Connect(probe->get(), o, &probe_timed_out) == LDAP_SUCCESS) {
      return MakeError(ErrorKind::kUnavailable,
                       prefix + "the certificate of " + o.url + " could not be verified with " +
                           (o.ca_file.empty() ? std::string("the system CAs (ca_file is not set)")
                                              : "ca_file " + o.ca_file) +
                           (diagnostic.empty() ? "" : " (" + diagnostic + ")") +
                           "; set ca_file to the CA that issued the server's certificate");
    }
  }
  if (o.starttls && !IsLdaps(o.url) && !IsConnectFailure(rc)) {
    return MakeError(ErrorKind::kUnavailable, prefix + "StartTLS on " + o.url + " was refused: " +
                                                  WithDiagnostic(ErrText(rc), diagnostic));
  }
  if (rc == LDAP_TIMEOUT) {
    return MakeError(ErrorKind::kUnavailable, prefix + "cannot reach " + o.url + " within " +
                                                  std::to_string(o.timeout_seconds) +
                                                  " s: " + ErrText(rc));
  }
  return MakeError(ErrorKind::kUnavailable, prefix + "cannot reach " + o.url + ": " +
                                                WithDiagnostic(ErrText(rc), diagnostic));
}

Error BindError(LDAP* ld, int rc, const LdapConnectionOptions& o) {
  const std::string prefix = "source " + o.source + ": ";
  const std::string who = o.bind_dn.empty() ? "anonymous bind" : "bind as " + o.bind_dn;
  if (rc == LDAP_TIMEOUT) {
    return MakeError(ErrorKind::kTransient, prefix + who + " to " + o.url + " timed out after " +
                                                std::to_string(o.timeout_seconds) + " s");
  }
  if (rc < 0) {
    // The connection (and any TLS) was up: this is a server that went away,
    // not one that could not be reached.
    return MakeError(ErrorKind::kUnavailable, prefix + "lost the connection to " + o.url +
                                                  " during the " + who + ": " + ErrText(rc));
  }
  std::string text = ErrText(rc);
  if (rc == LDAP_CONFIDENTIALITY_REQUIRED || rc == LDAP_STRONG_AUTH_REQUIRED) {
    text += " (the server wants TLS: use ldaps:// or starttls)";
  } else if (rc != LDAP_INVALID_CREDENTIALS) {
    // AD explains a refused bind in its diagnostic ("data 533": disabled);
    // for wrong credentials both servers say no more than the code.
    text = WithDiagnostic(text, Diagnostic(ld));
  }
  return MakeError(ErrorKind::kAccessDenied, prefix + who + " refused: " + text);
}

ErrorKind KindOf(int code) {
  switch (code) {
    case LDAP_SERVER_DOWN:
    case LDAP_CONNECT_ERROR:
      return ErrorKind::kUnavailable;
    case LDAP_TIMEOUT:
    case LDAP_TIMELIMIT_EXCEEDED:
    case LDAP_BUSY:
    case LDAP_UNAVAILABLE:
      return ErrorKind::kTransient;
    case LDAP_INSUFFICIENT_ACCESS:
    case LDAP_INAPPROPRIATE_AUTH:
    case LDAP_STRONG_AUTH_REQUIRED:
    case LDAP_CONFIDENTIALITY_REQUIRED:
    case LDAP_INVALID_CREDENTIALS:
      return ErrorKind::kAccessDenied;
    case LDAP_NO_SUCH_OBJECT:
    case LDAP_REFERRAL:
      return ErrorKind::kNotFound;
    case LDAP_FILTER_ERROR:
    case LDAP_INVALID_DN_SYNTAX:
    case LDAP_PARAM_ERROR:
      return ErrorKind::kInvalidArgument;
    case LDAP_DECODING_ERROR:
    case LDAP_PROTOCOL_ERROR:
      return ErrorKind::kInvalidData;
    case LDAP_NO_MEMORY:
      return ErrorKind::kInternal;
    default:
      return ErrorKind::kConflict;
  }
}

std::vector<char*> AttributeList(const std::vector<std::string>& attributes) {
  std::vector<char*> out;
  for (const std::string& a : attributes) out.push_back(const_cast<char*>(a.c_str()));
  // "1.1" asks for no attributes at all (an empty list would mean all).
  static char kNoAttributes[] = "1.1";
  if (out.empty()) out.push_back(kNoAttributes);
  out.push_back(nullptr);
  return out;
}

LdapEntry ToEntry(LDAP* ld, LDAPMessage* message) {
  LdapEntry entry;
  if (char* dn = ldap_get_dn(ld, message)) {
    entry.dn = dn;
    ldap_memfree(dn);
  }
  BerElement* ber = nullptr;
  for (char* name = ldap_first_attribute(ld, message, &ber); name != nullptr;
       name = ldap_next_attribute(ld, message, ber)) {
    std::vector<std::string> values;
    if (berval** vals = ldap_get_values_len(ld, message, name)) {
      for (int i = 0; vals[i] != nullptr; ++i)
        values.emplace_back(vals[i]->bv_val, vals[i]->bv_len);
      ldap_value_free_len(vals);
    }
    entry.attributes.emplace_back(name, std::move(values));
    ldap_memfree(name);
  }
  if (ber != nullptr) ber_free(ber, 0);
  return entry;
}

// "member;range=0-1499" -> ("member", 1499); "member;range=1500-*" ->
// ("member", -1). False for a name without a range option.
bool ParseRange(const std::string& name, std::string* base, long* high) {
  const std::string lower = text::AsciiLower(name);
  const size_t at = lower.find(";range=");
  if (at == std::string::npos) return false;
  *base = name.substr(0, at);
  const size_t dash = lower.find('-', at);
  if (dash == std::string::npos) return false;
  const std::string upper = lower.substr(dash + 1);
  if (upper == "*") {
    *high = -1;
    return true;
  }
  char* end = nullptr;
  *high = std::strtol(upper.c_str(), &end, 10);
  return end != nullptr && *end == '\0' && *high >= 0;
}

// The cookie a page's paged-results control carries: empty when the search
// is done (the last page, or a server that ignored paging and sent
// everything), nullopt when the control is malformed.
std::optional<std::string> NextPageCookie(LDAP* ld, LDAPControl** controls) {
  LDAPControl* response = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, controls, nullptr);
  if (response == nullptr) return std::string();
  ber_int_t estimate = 0;
  berval next{0, nullptr};
  if (ldap_parse_pageresponse_control(ld, response, &estimate, &next) != LDAP_SUCCESS) {
    return std::nullopt;
  }
  std::string cookie(next.bv_val != nullptr ? next.bv_val : "", next.bv_len);
  ber_memfree(next.bv_val);
  return cookie;
}

}  // namespace

LdapConnection::LdapConnection(LDAP* ld, LdapConnectionOptions options)
    : ld_(ld), options_(std::move(options)) {}

LdapConnection::~LdapConnection() { ldap_unbind_ext_s(ld_, nullptr, nullptr); }

Result<std::unique_ptr<LdapConnection>> LdapConnection::Open(const LdapConnectionOptions& o) {
  ROSTER_ASSIGN_OR_RETURN(HandlePtr ld, NewHandle(o, LDAP_OPT_X_TLS_DEMAND));
  bool timed_out = false;
  int rc = Connect(ld.get(), o, &timed_out);
  if (rc != LDAP_SUCCESS) return ConnectError(ld.get(), rc, o, timed_out);
  berval credentials{static_cast<ber_len_t>(o.password.size()),
                     const_cast<char*>(o.password.data())};
  rc = ldap_sasl_bind_s(ld.get(), o.bind_dn.empty() ? "" : o.bind_dn.c_str(), LDAP_SASL_SIMPLE,
                        &credentials, nullptr, nullptr, nullptr);
  if (rc != LDAP_SUCCESS) return BindError(ld.get(), rc, o);
  return std::unique_ptr<LdapConnection>(new LdapConnection(ld.release(), o));
}

Error LdapConnection::OperationError(int code, const std::string& what,
                                     const char* diagnostic) const {
  const std::string prefix = "source " + options_.source + ": ";
  std::string detail = diagnostic != nullptr ? diagnostic : Diagnostic(ld_);
  if (code == LDAP_TIMEOUT || code == LDAP_TIMELIMIT_EXCEEDED) {
    return MakeError(ErrorKind::kTransient, prefix + what + " on " + options_.url +
                                                " timed out after " +
                                                std::to_string(options_.timeout_seconds) + " s");
  }
  if (code == LDAP_SERVER_DOWN || code == LDAP_CONNECT_ERROR) {
    return MakeError(ErrorKind::kUnavailable, prefix + "lost the connection to " + options_.url +
                                                  " while " + what + ": " + ErrText(code));
  }
  return MakeError(KindOf(code), prefix + what + " on " + options_.url +
                                     " failed: " + WithDiagnostic(ErrText(code), detail));
}

Status LdapConnection::Search(const std::string& base, const std::string& filter,
                              const std::vector<std::string>& attributes, int page_size,
                              const std::function<Status(LdapEntry&&)>& on_entry) {
  const std::string prefix = "source " + options_.source + ": ";
  std::vector<char*> attrs = AttributeList(attributes);
  timeval timeout = Seconds(options_.timeout_seconds);
  std::string cookie;
  size_t received = 0;
  for (bool first = true;; first = false) {
    LDAPControl* page = nullptr;
    LDAPControl* controls[2] = {nullptr, nullptr};
    if (page_size > 0) {
      berval c{static_cast<ber_len_t>(cookie.size()), cookie.data()};
      // Not critical: a server without paging answers in one go, and a size
      // limit it then hits is reported below.
      if (ldap_create_page_control(ld_, page_size, first ? nullptr : &c, 0, &page) !=
          LDAP_SUCCESS) {
        return MakeError(ErrorKind::kInternal, prefix + "cannot build the paged results control");
      }
      controls[0] = page;
    }
    LDAPMessage* raw = nullptr;
    const int rc = ldap_search_ext_s(ld_, base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(),
                                     attrs.data(), 0, page != nullptr ? controls : nullptr, nullptr,
                                     &timeout, LDAP_NO_LIMIT, &raw);
    if (page != nullptr) ldap_control_free(page);
    MessagePtr result(raw);
    ParsedResult parsed;
    parsed.code = rc;
    if (result != nullptr) {
      ldap_parse_result(ld_, result.get(), &parsed.code, &parsed.matched, &parsed.diagnostic,
                        nullptr, &parsed.controls, 0);
    }
    if (parsed.code != LDAP_SUCCESS) {
      const size_t in_page =
          static_cast<size_t>(std::max(0, ldap_count_entries(ld_, result.get())));
      return SearchStatus(parsed.code, parsed.diagnostic, base, filter, page_size,
                          received + in_page);
    }
    for (LDAPMessage* e = ldap_first_entry(ld_, result.get()); e != nullptr;
         e = ldap_next_entry(ld_, e)) {
      ++received;
      ROSTER_RETURN_IF_ERROR(on_entry(ToEntry(ld_, e)));
    }
    if (page_size <= 0) return {};
    std::optional<std::string> next = NextPageCookie(ld_, parsed.controls);
    if (!next) {
      return MakeError(ErrorKind::kInvalidData,
                       prefix + "the server's paged results control is malformed (searching " +
                           base + " for " + filter + ")");
    }
    cookie = std::move(*next);
    if (cookie.empty()) return {};
  }
}

Status LdapConnection::SearchStatus(int code, const char* diagnostic, const std::string& base,
                                    const std::string& filter, int page_size,
                                    size_t received) const {
  const std::string prefix = "source " + options_.source + ": ";
  const std::string what = "searching " + base + " for " + filter;
  switch (code) {
    case LDAP_SUCCESS:
      return {};
    case LDAP_NO_SUCH_OBJECT:
      return MakeError(ErrorKind::kNotFound, prefix + "base DN " + base + " does not exist on " +
                                                 options_.url + ": " + ErrText(code));
    case LDAP_REFERRAL:
      return MakeError(ErrorKind::kNotFound, prefix + "base DN " + base + " is not held by " +
                                                 options_.url + ", which refers elsewhere");
    case LDAP_FILTER_ERROR:
      return MakeError(ErrorKind::kInvalidArgument,
                       prefix + "filter " + filter + " is not a valid LDAP filter");
    case LDAP_INVALID_DN_SYNTAX:
      return MakeError(ErrorKind::kInvalidArgument,
                       prefix + "base DN " + base + " is not a valid DN: " + ErrText(code));
    case LDAP_SIZELIMIT_EXCEEDED:
      return MakeError(
          ErrorKind::kConflict,
          prefix + "the server's size limit stopped " + what + " after " +
              std::to_string(received) + " entries" +
              (page_size > 0 ? " although the search was paged; raise the limit for the bind DN"
                             : "; set page_size so that roster pages its searches"));
    case LDAP_ADMINLIMIT_EXCEEDED:
      return MakeError(ErrorKind::kConflict, prefix + "the server refused " + what +
                                                 " as over an administrative " + "limit (" +
                                                 (diagnostic ? diagnostic : "no detail") +
                                                 "); a page_size of " + std::to_string(page_size) +
                                                 " may be larger than it allows");
    default:
      return OperationError(code, what, diagnostic);
  }
}

Result<std::vector<std::optional<LdapEntry>>> LdapConnection::ReadMany(
    const std::vector<std::string>& dns, const std::vector<std::string>& attributes) {
  std::vector<std::optional<LdapEntry>> out(dns.size());
  std::vector<char*> attrs = AttributeList(attributes);
  timeval timeout = Seconds(options_.timeout_seconds);
  std::map<int, size_t> pending;  // message id -> index in dns
  size_t next = 0;
  while (next < dns.size() || !pending.empty()) {
    while (next < dns.size() && pending.size() < kReadWindow) {
      int id = 0;
      const int rc = ldap_search_ext(ld_, dns[next].c_str(), LDAP_SCOPE_BASE, "(objectClass=*)",
                                     attrs.data(), 0, nullptr, nullptr, &timeout, 1, &id);
      if (rc == LDAP_INVALID_DN_SYNTAX) {
        ++next;  // not a DN: as good as missing
        continue;
      }
      if (rc != LDAP_SUCCESS) return OperationError(rc, "reading " + dns[next], nullptr);
      pending.emplace(id, next++);
    }
    if (pending.empty()) break;
    LDAPMessage* raw = nullptr;
    const int type = ldap_result(ld_, LDAP_RES_ANY, LDAP_MSG_ONE, &timeout, &raw);
    MessagePtr message(raw);
    if (type == 0) return OperationError(LDAP_TIMEOUT, "reading group members", nullptr);
    if (type < 0) {
      int code = LDAP_SERVER_DOWN;
      ldap_get_option(ld_, LDAP_OPT_RESULT_CODE, &code);
      return OperationError(code, "reading group members", nullptr);
    }
    for (LDAPMessage* m = ldap_first_message(ld_, message.get()); m != nullptr;
         m = ldap_next_message(ld_, m)) {
      auto it = pending.find(ldap_msgid(m));
      if (it == pending.end()) continue;
      const size_t index = it->second;
      const int msgtype = ldap_msgtype(m);
      if (msgtype == LDAP_RES_SEARCH_ENTRY) {
        out[index] = ToEntry(ld_, m);
      } else if (msgtype == LDAP_RES_SEARCH_RESULT) {
        pending.erase(it);
        ParsedResult parsed;
        ldap_parse_result(ld_, m, &parsed.code, &parsed.matched, &parsed.diagnostic, nullptr,
                          nullptr, 0);
        if (parsed.code == LDAP_NO_SUCH_OBJECT || parsed.code == LDAP_INVALID_DN_SYNTAX) {
          out[index].reset();
        } else if (parsed.code != LDAP_SUCCESS) {
          return OperationError(parsed.code, "reading " + dns[index], parsed.diagnostic);
        }
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i]) ROSTER_RETURN_IF_ERROR(CompleteRanges(dns[i], &*out[i]));
  }
  return out;
}

Status LdapConnection::CompleteRanges(const std::string& dn, LdapEntry* entry) {
  for (auto& [name, values] : entry->attributes) {
    std::string base;
    long high = 0;
    if (!ParseRange(name, &base, &high)) continue;
    // Each round asks for the rest from where the last one ended; a server
    // that does not move forward ends the loop.
    while (high >= 0) {
      const std::string want = base + ";range=" + std::to_string(high + 1) + "-*";
      std::vector<char*> attrs = AttributeList({want});
      timeval timeout = Seconds(options_.timeout_seconds);
      LDAPMessage* raw = nullptr;
      const int rc = ldap_search_ext_s(ld_, dn.c_str(), LDAP_SCOPE_BASE, "(objectClass=*)",
                                       attrs.data(), 0, nullptr, nullptr, &timeout, 1, &raw);
      MessagePtr result(raw);
      if (rc != LDAP_SUCCESS) return OperationError(rc, "reading " + want + " of " + dn, nullptr);
      LDAPMessage* e = ldap_first_entry(ld_, result.get());
      if (e == nullptr) break;
      const LdapEntry more = ToEntry(ld_, e);
      long next_high = high;
      for (const auto& [more_name, more_values] : more.attributes) {
        std::string more_base;
        long more_high = 0;
        if (ParseRange(more_name, &more_base, &more_high) && text::EqualsNoCase(more_base, base)) {
          values.insert(values.end(), more_values.begin(), more_values.end());
          next_high = more_high;
          break;
        }
      }
      if (next_high >= 0 && next_high <= high) break;
      high = next_high;
    }
    name = base;
  }
  return {};
}

}  // namespace roster
