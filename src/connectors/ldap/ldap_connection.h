// The protocol half of the LDAP connector: one connection to one server
// through libldap (TLS, simple bind, paged searches, pipelined base reads),
// with every failure turned into one sentence naming the source and the
// operation. Private to the module; ldap_source.cc maps it onto the interfaces.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connectors/ldap/ldap_mapping.h"
#include "core/result.h"

typedef struct ldap LDAP;  // NOLINT: libldap's own spelling of the handle type

namespace roster {

struct LdapConnectionOptions {
  std::string source;  // the source's name, for messages
  std::string url;
  bool starttls = false;
  std::string ca_file;
  std::string bind_dn;
  std::string password;
  int timeout_seconds = 60;
};

class LdapConnection {
 public:
  // Connects (with TLS for ldaps:// or StartTLS, certificates always
  // verified) and binds. Fails with kUnavailable (unreachable, certificate
  // not verified), kAccessDenied (bind refused) or kInvalidArgument.
  static Result<std::unique_ptr<LdapConnection>> Open(const LdapConnectionOptions& options);
  ~LdapConnection();  // unbinds
  LdapConnection(const LdapConnection&) = delete;
  LdapConnection& operator=(const LdapConnection&) = delete;

  // A subtree search of `base`, in pages of `page_size` entries (RFC 2696;
  // 0 asks for everything at once), calling `on_entry` for every entry. Fails
  // as a whole; an error from `on_entry` stops the search and is returned.
  // Search continuation references (AD's DomainDnsZones and the like) are
  // not followed.
  Status Search(const std::string& base, const std::string& filter,
                const std::vector<std::string>& attributes, int page_size,
                const std::function<Status(LdapEntry&&)>& on_entry);

  // Base reads of many DNs, several in flight at once. An entry that does
  // not exist, or whose DN is not a DN, comes back as nullopt. Values AD
  // sends in ranges ("member;range=0-1499") are fetched in full and kept
  // under the plain attribute name.
  Result<std::vector<std::optional<LdapEntry>>> ReadMany(
      const std::vector<std::string>& dns, const std::vector<std::string>& attributes);

 private:
  LdapConnection(LDAP* ld, LdapConnectionOptions options);
  Status CompleteRanges(const std::string& dn, LdapEntry* entry);
  Error OperationError(int code, const std::string& what, const char* diagnostic) const;
  // What a search's result code means: OK, or the error, in the words of
  // this search. `received` counts the entries including this page's.
  Status SearchStatus(int code, const char* diagnostic, const std::string& base,
                      const std::string& filter, int page_size, size_t received) const;

  LDAP* ld_;
  LdapConnectionOptions options_;
};

}  // namespace roster
