#include "connectors/graph/graph_doctor.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "core/hash.h"

namespace roster {
namespace {

using nlohmann::json;

Finding Ok(std::string subject, std::string text) {
  return Finding{Finding::Level::kOk, std::move(subject), std::move(text)};
}
Finding Warn(std::string subject, std::string text) {
  return Finding{Finding::Level::kWarning, std::move(subject), std::move(text)};
}
Finding Fail(std::string subject, std::string text) {
  return Finding{Finding::Level::kFailed, std::move(subject), std::move(text)};
}

bool HasAny(const std::set<std::string>& roles, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (roles.count(n)) return true;
  }
  return false;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// One directory read: ok, or what is missing.
Finding CheckRead(graph::GraphClient& client, const std::string& subject, const std::string& path,
                  const std::string& what, const std::string& permission) {
  auto r = client.Send({"GET", path, {}, "", "", ""});
  if (!r.ok()) return Fail(subject, what + ": " + r.error().message);
  if (r->ok()) return Ok(subject, what + " can be read (" + permission + ")");
  Error e = graph::GraphError(*r, what);
  if (r->status == 403) {
    return Fail(subject, e.message + " (the app needs the application permission " + permission +
                             ", with admin consent)");
  }
  return Fail(subject, e.message);
}

}  // namespace

TokenClaims ReadTokenClaims(const std::string& token) {
  TokenClaims claims;
  const size_t a = token.find('.');
  const size_t b = a == std::string::npos ? a : token.find('.', a + 1);
  if (b == std::string::npos || b - a - 1 > 64 * 1024) return claims;
  std::string part = token.substr(a + 1, b - a - 1);
  for (char& c : part) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (part.size() % 4) part.push_back('=');
  std::string payload;
  if (!Base64Decode(part, &payload)) return claims;
  json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return claims;
  if (auto it = j.find("roles"); it != j.end() && it->is_array()) {
    for (const json& r : *it) {
      if (r.is_string() && r.get_ref<const std::string&>().size() < 200) {
        claims.roles.push_back(r.get<std::string>());
      }
    }
  }
  if (auto it = j.find("oid"); it != j.end() && it->is_string()) {
    claims.object_id = it->get<std::string>().substr(0, 64);
  }
  std::sort(claims.roles.begin(), claims.roles.end());
  return claims;
}

std::vector<std::string> ScopedContactsCommands(const std::string& client_id,
                                                const std::string& object_id,
                                                const std::string& example_mailbox) {
  const std::string oid =
      object_id.empty() ? "<object id of the roster enterprise application>" : object_id;
  const std::string mailbox = example_mailbox.empty() ? "<a target mailbox>" : example_mailbox;
  return {
      "Connect-ExchangeOnline",
      "New-ServicePrincipal -AppId \"" + client_id + "\" -ObjectId \"" + oid +
          "\" -DisplayName \"roster\"",
      "# the target mailboxes: members of a mail-enabled security group",
      "$dn = (Get-Group \"roster mailboxes\").DistinguishedName",
      "New-ManagementScope -Name \"roster mailboxes\" -RecipientRestrictionFilter "
      "\"MemberOfGroup -eq '$dn'\"",
      "New-ManagementRoleAssignment -App \"" + client_id +
          "\" -Role \"Application Contacts.ReadWrite\" -CustomResourceScope \"roster mailboxes\"",
      "# InScope must be True for a target mailbox and False for any other",
      "Test-ServicePrincipalAuthorization -Identity \"" + client_id + "\" -Resource \"" + mailbox +
          "\" | Format-Table",
  };
}

GraphDoctorReport DiagnoseGraphTenant(const GraphDoctorInput& in) {
  GraphDoctorReport report;
  const std::string tenant = "tenant " + in.tenant;
  auto token = in.tokens->Token();
  if (!token.ok()) {
    report.findings.push_back(Fail(tenant, "sign-in failed: " + token.error().message));
    return report;
  }
  report.findings.push_back(
      Ok(tenant, "signed in at " + in.tokens->token_endpoint() + " as app " + in.client_id));
  const TokenClaims claims = ReadTokenClaims(*token);
  const std::set<std::string> roles(claims.roles.begin(), claims.roles.end());
  report.findings.push_back(
      claims.roles.empty()
          ? Warn(tenant,
                 "the token carries no application roles: no Graph permission is consented in "
                 "Entra (mailbox access may still come from RBAC for Applications)")
          : Ok(tenant, "application roles consented in Entra: " + Join(claims.roles)));

  auto client = graph::GraphClient::Create(in.tokens, in.client);
  if (!client.ok()) {
    report.findings.push_back(Fail(tenant, client.error().message));
    return report;
  }
  graph::GraphClient& c = **client;
  if (in.reads_users) {
    report.findings.push_back(
        CheckRead(c, tenant, "/users?$top=1&$select=id", "users", "User.Read.All"));
  }
  if (in.reads_org_contacts) {
    report.findings.push_back(CheckRead(c, tenant, "/contacts?$top=1&$select=id",
                                        "organisational contacts", "OrgContact.Read.All"));
  }
  if (in.reads_groups) {
    report.findings.push_back(CheckRead(c, tenant, "/groups?$top=1&$select=id",
                                        "groups and their members", "GroupMember.Read.All"));
  }
  for (const std::string& m : in.folder_mailboxes) {
    report.findings.push_back(
        CheckRead(c, tenant + ": mailbox " + m,
                  "/users/" + graph::EncodeSegment(m) + "/contactFolders?$top=1&$select=id",
                  "contact folders of " + m, "Contacts.Read"));
  }

  bool denied = false;
  for (const std::string& m : in.target_mailboxes) {
    const std::string subject = tenant + ": mailbox " + m;
    const std::string folders = "/users/" + graph::EncodeSegment(m) + "/contactFolders";
    // A folder without a name is refused by Exchange (400) once the write is
    // allowed, and with 403 before; nothing is created either way.
    auto r = c.Send({"POST", folders, {}, R"({"displayName":""})", "", ""});
    if (!r.ok()) {
      report.findings.push_back(
          Fail(subject, "contact write access unknown: " + r.error().message));
      continue;
    }
    if (r->status == 400) {
      report.findings.push_back(Ok(subject, "contacts can be written"));
    } else if (r->status == 201) {
      // The server made it after all: take it away again at once.
      json made = json::parse(r->body, nullptr, false);
      std::string id = made.is_object() && made.contains("id") && made["id"].is_string()
                           ? made["id"].get<std::string>()
                           : std::string();
      if (!id.empty()) {
        (void)c.Send({"DELETE", folders + "/" + graph::EncodeSegment(id), {}, "", "", ""});
      }
      report.findings.push_back(Warn(subject,
                                     "contacts can be written (the server accepted a folder "
                                     "without a name; roster removed it again)"));
    } else {
      Error e = graph::GraphError(*r, "writing contacts of " + m);
      if (e.no_such_user) {
        report.findings.push_back(Warn(subject, e.message + "; a sync skips it"));
      } else if (r->status == 403) {
        denied = true;
        report.findings.push_back(
            Fail(subject, e.message + " (grant Contacts.ReadWrite for this mailbox; see below)"));
      } else {
        report.findings.push_back(Fail(subject, e.message));
      }
    }
  }
  const bool tenant_wide = HasAny(roles, {"Contacts.ReadWrite"});
  if (tenant_wide && !in.target_mailboxes.empty()) {
    report.findings.push_back(Warn(
        tenant,
        "Contacts.ReadWrite is consented tenant-wide in Entra: the app can write the contacts of "
        "every mailbox of the tenant, not only the " +
            std::to_string(in.target_mailboxes.size()) +
            " it serves; grant it through RBAC for Applications (below) and remove the Entra "
            "consent"));
  }
  if ((tenant_wide || denied) && !in.target_mailboxes.empty()) {
    report.powershell =
        ScopedContactsCommands(in.client_id, claims.object_id, in.target_mailboxes.front());
  }
  return report;
}

}  // namespace roster
