// `roster doctor` for one Microsoft Graph tenant: signs in, reads the
// application roles the token carries, and tries each permission roster
// needs with a request that changes nothing (a read of the directory; per
// target mailbox, a folder create the server must refuse for its empty name,
// which answers 403 without write access and 400 with it). It warns when
// contact write access is granted tenant-wide in Entra, and gives the
// Exchange Online PowerShell that scopes it to the target mailboxes through
// RBAC for Applications.
#pragma once

#include <string>
#include <vector>

#include "core/finding.h"
#include "graph/auth.h"
#include "graph/client.h"

namespace roster {

struct GraphDoctorInput {
  std::string tenant;  // the [tenants.NAME] name, for messages
  graph::TokenProvider* tokens = nullptr;
  graph::GraphClientOptions client;
  std::string client_id;
  // What the configuration's graph sources read.
  bool reads_users = false, reads_org_contacts = false, reads_groups = false;
  std::vector<std::string> folder_mailboxes;  // graph-folder sources: read access
  std::vector<std::string> target_mailboxes;  // graph targets: write access
};

struct GraphDoctorReport {
  std::vector<Finding> findings;
  // Exchange Online PowerShell to run (empty when nothing needs scoping).
  std::vector<std::string> powershell;
};

GraphDoctorReport DiagnoseGraphTenant(const GraphDoctorInput& input);

// The application roles of an access token (its "roles" claim) and the
// service principal's object id ("oid"); empty when the token cannot be
// read (Graph's tokens are not for clients to verify, only to read).
struct TokenClaims {
  std::vector<std::string> roles;
  std::string object_id;
};
TokenClaims ReadTokenClaims(const std::string& token);

// The commands that grant Contacts.ReadWrite to the members of one
// mail-enabled security group only, and check it, in Exchange Online
// PowerShell (each parameter as Microsoft documents the cmdlet).
std::vector<std::string> ScopedContactsCommands(const std::string& client_id,
                                                const std::string& object_id,
                                                const std::string& example_mailbox);

}  // namespace roster
