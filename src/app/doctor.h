// `roster doctor`: checks, without changing anything, that every source can
// be read and every target user's collection reached with the configured
// credentials (LDAP: bind and TLS; CardDAV: discovery and login; Microsoft
// Graph: sign-in, the roles granted, each permission tried by a harmless
// request per mailbox), and says what fails and how to fix it.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "core/finding.h"

namespace roster {

struct DoctorReport {
  std::vector<Finding> findings;
  // Exchange Online PowerShell that scopes contact write access to the
  // target mailboxes (RBAC for Applications), when a tenant needs it.
  std::vector<std::string> powershell;
  int failed() const;
  int warnings() const;
  int ExitCode() const { return failed() > 0 ? 1 : 0; }
};

DoctorReport RunDoctor(const Config& config);

}  // namespace roster
