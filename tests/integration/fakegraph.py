"""A Microsoft Graph v1.0 emulator for roster's Microsoft 365 connector: the
identity platform's token endpoint, the directory (users, organisational
contacts, groups) and personal contact folders and contacts in Exchange Online
mailboxes. It runs as its own process on loopback, so it outlives a roster that
crashes (crash and convergence tests kill roster at a failpoint, then look at
what the server holds, as the crash matrix does with fakedav.py). Python 3.11
standard library only; the `openssl` command verifies certificate assertions.

Emulated, as Microsoft documents it (names and types checked against
tests/data/graph/graph-v1.0-contacts-calendars.csdl.xml by graph_schema.py
and fakegraph_test.py):
- Token endpoint POST /{tenant}/oauth2/v2.0/token (form-encoded), app-only:
  grant_type=client_credentials, client_id, scope=https://graph.microsoft.com/
  .default (or 00000003-0000-0000-c000-000000000000/.default), and either a
  client_secret equal to a --client-secret, or client_assertion_type=urn:ietf:
  params:oauth:client-assertion-type:jwt-bearer with a client_assertion JWT:
  alg PS256 (RSASSA-PSS, SHA-256, salt = digest length; RS256 is accepted too),
  header x5t#S256 = base64url(SHA-256(DER)) of a --client-cert (x5t, SHA-1, as
  well), signature verified with the certificate's public key by `openssl
  dgst`, aud = this endpoint's URL (http://HOST:PORT/{tenant}/oauth2/v2.0/token
  with any configured tenant name, by the server's origin or the Host header),
  iss = sub = client id, nbf <= now < exp with 300 s of skew, jti present.
  Every --tenant name (a domain, the GUID) stands for the one directory.
  client_id and client_secret may come in Authorization: Basic instead of the
  form (RFC 6749 2.3.1, "also supported" by the page; not both: 400).
  Answer {"token_type": "Bearer", "expires_in", "ext_expires_in",
  "access_token"}; Cache-Control: no-store. Errors as the identity platform
  answers them ({"error", "error_description": "AADSTSnnn: ...\r\nTrace ID:
  ...", "error_codes", "timestamp", "trace_id", "correlation_id",
  "error_uri"}): unknown tenant 400 invalid_request AADSTS90002; wrong secret
  401 invalid_client AADSTS7000215; neither secret nor assertion 401
  AADSTS7000218; unknown client id 400 unauthorized_client AADSTS700016;
  wrong scope 400 invalid_scope AADSTS70011; other grant 400
  unsupported_grant_type AADSTS70003; a missing parameter 400 AADSTS900144; GET
  400 AADSTS900561; a bad assertion 401 invalid_client: AADSTS700027 (unknown
  thumbprint, bad signature, algorithm, audience), AADSTS700021 (iss/sub),
  AADSTS700024 (outside nbf..exp), AADSTS50027 (malformed, no jti). The codes
  other than 90002, 7000215, 700027 and 70011 are this fake's best match.
- Issued tokens are JWT-shaped but unsigned for any client's purpose (the third
  part is random; Graph's own tokens are not for clients to verify either):
  the payload carries aud https://graph.microsoft.com, iss/idp
  https://sts.windows.net/{tid}/, tid (the first GUID --tenant, else a GUID
  derived from the first name), appid, appidacr (1 secret, 2 certificate),
  idtyp "app", oid/sub, iat/nbf/exp, uti, ver 1.0 and "roles" (--roles; no
  claim when empty), so `roster doctor` can read what was granted. A token is
  good for --token-lifetime wall-clock seconds (not time-scaled; expires_in
  says so), then 401 InvalidAuthenticationToken "Access token has expired or
  is not yet valid.". --token values stay valid for ever and carry every role.
- Permissions of issued tokens (roles): /users, /users/delta, /users/{id},
  user photos need User.Read.All (or User.ReadWrite.All, Directory.*);
  /contacts (organisational) OrgContact.Read.All (or Directory.*); /groups and
  members GroupMember.Read.All (or Group.Read.All, Group(Member).ReadWrite.All,
  Directory.*); contact folders and contacts Contacts.Read for GET and
  Contacts.ReadWrite for writes. Missing: 403 Authorization_RequestDenied
  (directory) or 403 ErrorAccessDenied (Outlook).
- Bearer authentication on /v1.0: a --token or an issued, unexpired token;
  else 401 InvalidAuthenticationToken. A --token stands for one app; issued
  tokens for the app (client id) that got them (the throttling key).
- Directory users: GET /users ($select, $top 1..999 default 100, paging by an
  absolute @odata.nextLink with $skiptoken), /users/{id or userPrincipalName}
  ($select), /users/{id}/photo (metadata: @odata.mediaContentType,
  @odata.mediaEtag, width, height) and /photo/$value (bytes; 404 ImageNotFound
  without one). Without $select only Graph's default set comes back (id,
  businessPhones, displayName, givenName, jobTitle, mail, mobilePhone,
  officeLocation, preferredLanguage, surname, userPrincipalName); with it only
  what was selected (id too only if selected). Properties held:
  fakegraph.USER_SPEC (those, accountEnabled, userType, department,
  companyName, employeeId/Type/HireDate, address fields, usageLocation,
  faxNumber, mailNickname, otherMails, proxyAddresses, imAddresses,
  onPremisesExtensionAttributes (extensionAttribute1..15), onPremises*,
  assignedLicenses, createdDateTime, deletedDateTime). $select of a schema
  property not held (showInAddressList, ...) is 400 NotEmulatedByFakeGraph; of
  no property 400 Request_BadRequest. A deleted user is 404
  Request_ResourceNotFound.
- A user's manager (user-list-manager, query-parameters): a user loaded or
  upserted with "manager" (a user's id or UPN, or an orgContact's id) has one.
  GET /users and /users/{id} take $expand=manager or
  $expand=manager($select=a,b), with $select, $top and paging (the nextLink
  keeps the $expand): each user with a live manager gets "manager":
  {"@odata.type": "#microsoft.graph.user" (or .orgContact), the manager's
  default properties, or only the $select'ed ones (id too only if selected,
  as at the top level)}; a user without one has no "manager" property (Graph
  leaves it out; OData would allow null). With $select the @odata.context
  lists "manager()". On one user only, with ConsistencyLevel: eventual,
  $expand=manager($levels=n|max[;$select=...]) nests the chain (a cycle
  ends it); $levels on the list, or without the header, is 400
  Request_UnsupportedQuery, as documented; $count=true is accepted beside
  it (the page's example sends it) and counts nothing. GET
  /users/{id}/manager answers the manager ($select; @odata.context
  directoryObjects/$entity) or 404 Request_ResourceNotFound. $select=manager
  outside users/delta, other expansions and options inside manager(...) are
  400 NotEmulatedByFakeGraph. Every role that reads users reads managers
  (the stored v1.0 page lists User.Read.All for Application).
- Organisational contacts: GET /contacts, /contacts/{id} (displayName,
  givenName, surname, mail, mailNickname, jobTitle, companyName, department,
  addresses (physicalOfficeAddress), phones (phone, phoneType), proxyAddresses,
  onPremisesSyncEnabled, onPremisesLastSyncDateTime; all returned by default).
- Delta: GET /users/delta and /contacts/delta ($select; /microsoft.graph.delta
  too): the first round pages (100 objects a page) every existing object, the
  last page has @odata.deltaLink (never both links); from a deltaLink only
  objects changed since (whole, with their selected or default properties;
  properties never set are left out, as documented), soft-deleted ones as
  {"id", "@removed": {"reason": "changed"}}, permanently deleted ones
  "deleted". With $select only changes to selected properties count (a
  changed department does not bring a user into a displayName round); without
  it every property counts (delta-query-users), the answer still the default
  set. Prefer: return=minimal keeps only changed properties. $deltatoken=latest
  gives a deltaLink and no objects. A photo change is not a change (a
  navigation property). Changes made while a round is paged come again next
  round. $expand is 400 Request_UnsupportedQuery (delta-query-overview:
  "$expand isn't supported"); users/delta?$select=...,manager tracks the
  manager instead: "manager@delta": [{"@odata.type", "id"}] for the current
  manager in the first round (none: no annotation), and in later rounds, when
  it changed, the old link as {"@odata.type", "id", "@removed": {"reason":
  "deleted"}} followed by the new one (with return=minimal only when it
  changed). A manager change counts only when manager is selected; a manager
  deleted for good unlinks its users (a change).
- Groups: GET /groups ($filter=displayName eq '...' only, compared
  case-insensitively; $select, $top, paging; the default set is group-list's
  example's, deletedDateTime to onPremisesProvisioningErrors), /groups/{id},
  /groups/{id}/members and /transitiveMembers (members of nested groups
  flattened, nested groups included, each object once, deleted ones left out;
  directoryObjects with "@odata.type"; $select, $top, paging). An OData cast
  (/transitiveMembers/microsoft.graph.user, .group, .orgContact) or $count=true
  needs ConsistencyLevel: eventual and $count=true, as documented (else 400
  Request_UnsupportedQuery); then @odata.count.
- /v1.0/users/{id or userPrincipalName}/... of Outlook: an unknown user is 404
  ErrorInvalidUser; a user without a mailbox (no Exchange licence, a guest) or
  soft-deleted is 404 MailboxNotEnabledForRESTAPI. GET /users/{id} of a user
  with a mailbox counts against that mailbox's Outlook limits (as before).
- contactFolders: list ($filter=displayName eq '...' or
  singleValueExtendedProperties/any(ep: ep/id eq '...' and ep/value eq '...')
  -- the id as Exchange compares it, the value case-insensitively, as
  documented --, $select, $top, $expand of extended properties, paging),
  create (201; displayName and singleValueExtendedProperties; a duplicate name
  is 409 ErrorFolderExists), get ($select, $expand), PATCH (rename and/or
  extended properties merged by id), delete (its contacts go with it).
- contacts in a folder: list with $top (1..1000, default 10) and an absolute
  @odata.nextLink on this server's origin carrying a $skiptoken (an offset, as
  Exchange's own $skip: deleting while paging shifts later items), $select,
  $expand=singleValueExtendedProperties($filter=id eq '...'), $filter by one
  extended property as for folders; create (201), get, PATCH as a merge (null
  or [] clears a property), delete (204), If-Match on PATCH and DELETE (412
  ErrorIrresolvableConflict). Item ids are opaque URL-safe base64 ("AAMk...="),
  ids of another shape are 400 ErrorInvalidIdMalformed, missing ones 404
  ErrorItemNotFound. /users/{u}/contacts/{id} finds a contact in any folder.
- Immutable ids: with Prefer: IdType="ImmutableId" on a request (a $batch
  sub-request's own headers; the envelope's do not count, "the header only
  applies to the request it is included with") contacts are named by their
  immutable id ("AAkA..."), another id space kept beside the regular one, and
  the answer has Preference-Applied: IdType="ImmutableId". Both ids are
  accepted in URLs whatever the header. Folders keep their ids (containers
  have no immutable ids, as documented). Nothing moves in this fake, so both
  ids are stable; the point is that a client stores the kind it asked for.
- The default Contacts folder: every mailbox has one, its id the dump's
  rootFolderId, displayName "Contacts". GET /users/{u}/contactFolders/contacts
  (the well-known name, any case) or /contactFolders/{its id} answers it with
  its real id; /users/{u}/contacts lists it and creates in it (GET, POST), and
  every folder route (contacts, delta, photos) takes "contacts" or its id.
  GET /contactFolders lists the folders under it, not itself (so a $filter
  never finds it and a new folder may be named "Contacts"); renaming it is
  403 ErrorAccessDenied, deleting it 400 ErrorDeleteDistinguishedFolder (this
  fake's codes). Dumps carry its contacts as the mailbox's "defaultContacts".
- Contact folder delta: GET /users/{u}/contactFolders/{id}/contacts/delta
  ($select; Prefer: odata.maxpagesize=N, 1..1000, default 10, answered with
  Preference-Applied): every contact, then created and changed contacts whole
  with "@odata.type" (never extended properties: delta takes no $expand, so
  changed items must be read back) and deleted ones {"@odata.type", "id",
  "@removed": {"reason": "deleted"}}; the nextLink/deltaLink work with both id
  kinds.
- Delta tokens live --delta-lifetime emulated seconds (default 7 days, Graph's
  figure for directory objects), at most 50,000 are kept (the oldest go first,
  as Outlook's cache does). An unknown, expired or evicted token is 410 Gone
  with a Location that starts the round over (an empty $deltatoken, the same
  $select): code syncStateNotFound (directory), SyncStateNotFound (Outlook;
  its exact code is undocumented), resyncRequired after POST
  /_ctl/delta/expire {"code": "resyncRequired"}. /_ctl/load and reset drop
  every token.
- every contact property of the schema except those listed below; unset ones
  come back as null, [] or {} as Graph does. At most 3 emailAddresses and 2
  businessPhones / homePhones (Exchange keeps no more): more is 400
  ErrorInvalidRequest. The server fills fileAs ("Surname, Given") and
  displayName ("Given Surname") when the client leaves them unset, and
  re-derives them on later writes: a client that compares must ignore them.
  Every write gives a new changeKey, @odata.etag (W/"changeKey") and
  lastModifiedDateTime.
- single-value extended properties (the ownership marker): set on POST, merged
  by id on PATCH; returned only when $expand'ed, and then only if set.
- contact photos: PUT/PATCH .../photo/$value (image/jpeg or image/png, at most
  4 MB; 200; the contact's etag changes), GET .../photo/$value (bytes or 404),
  GET .../photo (@odata.context, @odata.mediaContentType, @odata.mediaEtag,
  id "WxH", height and width read from the image). A contact read alone
  (GET .../contacts/{id}) carries its @odata.context.
- JSON batching: POST /v1.0/$batch, 1..20 requests (more is 400), relative
  urls, JSON or base64 bodies, dependsOn (a failed dependency is 424),
  answers in completion order, shuffled within each wave. Up to 4 requests
  whose dependencies are done run as one wave: they take their mailbox slots
  together, spend one --latency-ms and run.
- Outlook throttling per (app, mailbox): 4 concurrent requests (a 5th is 429
  ApplicationThrottled, Retry-After: 1), a request window (10,000 per 600 s)
  and an upload window (150 MB of POST/PATCH/PUT bodies per 300 s), each 429
  with a Retry-After saying when its window frees. Every batch sub-request
  counts like a request of its own. A 429's innerError carries "code": "429",
  "status": "429" and "message" as the throttling page's sample does.
- Time: --time-scale X runs emulated time X times faster than the wall clock:
  each window lasts window_seconds / X and delta tokens delta_seconds / X.
  Retry-After is the wall-clock wait in whole seconds, at least 1 (HTTP allows
  no fraction; at a large X this overstates short waits, so a benchmark should
  keep clear of 429s); x-fakegraph-retry-after-ms has the exact wall wait, for
  tests only. --latency-ms L is the service time of each plain request and each
  sub-request, spent holding its mailbox slot; a $batch envelope adds none.

NOT emulated (a connector must not infer these from passing here):
- the undocumented /users/{u}/contacts/delta (501: use the default folder's
  own delta); well-known folder names other than "contacts", childFolders,
  contactFolders/delta and groups/delta (501), /me,
  $filter on users and org contacts and any other $filter form, $orderby,
  $search, $count outside members, $expand other than extended properties
  and a user's manager (no directReports, memberOf, an orgContact's
  manager), open extensions, multiValueExtendedProperties,
  primary/secondary/tertiaryEmailAddress, showInAddressList: an unemulated
  query option or property is refused (400), never ignored;
- user properties outside USER_SPEC; users/delta $filter=id eq; members@delta
  annotations; a soft-deleted manager (it is not expanded, and users/delta
  reports nothing until it is deleted for good); x-ms-resource-unit;
  replication delays; a limited-information answer
  for members an app may not read; moving items (so immutable and regular
  ids never diverge in value stability); orgContact/group photos;
- delegated (user) tokens, refresh tokens, other grants and resources,
  national clouds, Conditional Access, certificate expiry or revocation
  (only the thumbprint and signature are checked), replay of a jti, RBAC for
  Applications (mailbox scoping of Contacts.ReadWrite: every role is
  tenant-wide here); the token endpoint has no faults or latency;
- the per-app concurrency limit across mailboxes, Graph's global per-app and
  directory (identity) limits: directory requests are never throttled; no
  x-ms-throttle headers, Exchange's string length limits and its reshaping of
  values (birthdays are kept as sent, in UTC; phones and addresses verbatim;
  an address is replaced whole on PATCH), If-None-Match, Retry-After on 503,
  Location headers on create;
- removing a contact's photo or an extended property: Graph offers neither
  (DELETE .../photo/$value is 405; a null extended property value is 400);
- exact error messages: codes follow Graph, texts are this server's own.
  Every API answer has Cache-Control: no-cache and a successful JSON one
  OData-Version: 4.0 (as json-batching's sub-responses show); an error's
  innerError has date, request-id and client-request-id (the request id
  again: no client id is taken over).
Choices of this fake where Graph's behaviour is not documented: more than two
businessPhones or homePhones is refused (Exchange keeps two); If-Match on a
photo PUT is ignored; $expand of extended properties needs the id filter; a
body bigger than the whole upload budget passes into an empty window; the
group displayName filter ignores case; a deleted user's mailbox is kept
(MailboxNotEnabledForRESTAPI) until the user is deleted permanently; every
mailbox is a directory user (one is made, displayName = the UPN's local part,
when a mailbox's UPN names none). Each throttling 429 carries
x-fakegraph-throttle-cause (concurrency, requests, upload, injected) for
tests; a connector must not read it.

Tests control it under /_ctl/ (no authentication; answered only on loopback;
bad input is a Graph-shaped 4xx error): GET dump, POST load (replace the state
with such a dump), POST reset (the start-up state: faults, limits, windows,
stats, issued tokens and the request log too), GET/POST faults ({"rate_429",
"rate_5xx", "seed", "drop_answer_after_write", "drop_mode": "close"|"500",
"latency_ms"}; each POST replaces them all, unnamed ones going back to the
command line's), GET/POST limits ({"concurrency", "window_requests",
"window_seconds", "upload_bytes", "upload_seconds", "time_scale",
"delta_seconds"}), GET stats, POST stats/reset, and:
- GET/POST auth ({"tenants", "client_id", "client_secrets", "client_certs"
  (PEM texts), "roles", "token_lifetime"}; a POST changes the keys it names;
  GET shows secrets as a count, the certificates' thumbprints and the last
  assertion's alg, thumbprint kind and claim names); POST auth/expire (every
  issued token expires now, to test renewal on 401);
- POST directory/upsert {"users": [...], "orgContacts": [...], "groups":
  [...]}: an object with a known id (a user also by userPrincipalName) is
  merged (given properties replace, null clears; a soft-deleted one is
  restored), else added (id made if absent); a user may carry "mailbox": true
  or false (give it one, or take it away: MailboxNotEnabledForRESTAPI),
  "photo": {"contentType", "base64"} or null and "manager": a user's id or
  UPN, an orgContact's id (existing or in the same upsert; not itself) or
  null (unlinks); a group "members": [ids] (replaces). All are checked before
  any applies; answers the ids.
- POST directory/delete {"users": [ids or UPNs], "orgContacts": [...],
  "groups": [...], "permanent": false}: soft (deletedDateTime set; delta says
  "changed") or permanent (gone, its mailbox too; delta says "deleted").
- POST delta/expire {"code": "syncStateNotFound" | "resyncRequired"}: every
  delta token issued so far answers 410 with that code.
- GET log[?offset=N&limit=M]: {"entries": [{"id", "parent" (a sub-request's
  $batch envelope), "method", "kind" (the route: contacts, contact,
  contactFolders, batch, token, users_delta, ...), "path", "mailbox", "app",
  "status" (0: the answer was dropped), "start", "end" (wall seconds since the
  log's reset), "sub_requests" (of an envelope)}], "next_offset", "total",
  "dropped"}, in completion order; GET log/summary (counts by kind, status and
  mailbox, HTTP calls, batch calls, sub-requests, 429s, wall_seconds from the
  first start to the last end, server_cpu_seconds); POST log/reset.
- GET bound?mailboxes=N&batches=M (or contacts=K: M = ceil(K / batch_size))
  [&batch_size=20&setup=2&bytes_per_request=B&latency_ms=L&parallel=P]: the
  least wall time the limits and latency allow for N mailboxes, each getting
  `setup` plain requests (find, create the folder: one after another) then
  M $batch calls of batch_size sub-requests (R = M * batch_size, or K):
      per mailbox = max(setup*L + ceil(R/C)*L,            C: concurrency
                        floor((setup+R-1)/W) * T/X,       W per T s: requests
                        floor((R*B-1)/U) * Tu/X)          U per Tu s: uploads
      bound = per mailbox * max(1, N/P)   (P: mailboxes served at once,
                                           default N: no cross-mailbox limit)
  with X the time scale; also min_http_calls = N*(setup+M), sub_requests, and
  every input used. latency_ms defaults to the current fault setting.

Dump format (GET dump, POST load): {"mailboxes": [{"id", "userPrincipalName",
"rootFolderId", "contactFolders": [{"id", "displayName", "parentFolderId",
"singleValueExtendedProperties": [...], "contacts": [{contact properties,
"@odata.etag", "immutableId", "singleValueExtendedProperties", "photo":
{"contentType", "size", "base64"} | null, "serverFilled": [...]}]}],
"defaultContacts": [contacts of the default Contacts folder, as above]}],
"writes": N, "users": [{"id", every USER_SPEC property, "photo"?:
{"contentType", "base64"}, "manager"?: id}], "orgContacts": [{"id", ORG_SPEC
properties}],
"groups": [{"id", GROUP_SPEC properties, "members": [ids]}]}. A load may be
smaller: {"mailboxes": [{"userPrincipalName": "c@x"}]} creates mailboxes (and
their users), {"users": [...]} a directory (a user with "mailbox": true gets
one); users load first and a mailbox joins the user of its UPN (same id). A
user with deletedDateTime is soft-deleted. Members and managers (a user's
"manager": id or UPN of a user, id of an orgContact) must name loaded objects.

    python3 fakegraph.py [PORT] [--port 0] [--host 127.0.0.1] [--token T]...
        [--mailboxes a@x,b@x] [--window-requests N --window-seconds S]
        [--upload-bytes N --upload-seconds S] [--concurrency N]
        [--time-scale X] [--latency-ms L] [--delta-lifetime S]
        [--tenant ID[,ID]]... [--client-id ID] [--client-secret S]...
        [--client-cert PEM]... [--roles R1,R2] [--token-lifetime S]
prints "ready PORT" once it listens (PORT 0 picks a free one).
"""
import argparse
import base64
import copy
import hashlib
import http.server
import ipaddress
import json
import math
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict
from datetime import datetime, timezone

MAX_BODY = 32 * 1024 * 1024   # one HTTP request; more is 413 (a guard, not Graph's)
MAX_PHOTO = 4 * 1024 * 1024   # Graph's documented limit for a photo
MAX_BATCH = 20
BATCH_PARALLEL = 4            # Graph runs up to 4 sub-requests of a batch at once
DEFAULT_PAGE = 10
MAX_PAGE = 1000
DIR_PAGE = 100                # directory collections: $top default ...
DIR_MAX_PAGE = 999            # ... and maximum
DIR_DELTA_PAGE = 100          # objects per page of /users/delta and /contacts/delta
MAX_EMAILS = 3
MAX_PHONES = 2
JSON_TYPE = ("application/json;odata.metadata=minimal;odata.streaming=true;"
             "IEEE754Compatible=false;charset=utf-8")
ID_RE = re.compile(r"^AAMk[A-Za-z0-9_-]{8,}={0,2}$")
IMM_ID_RE = re.compile(r"^AAkA[A-Za-z0-9_-]{8,}={0,2}$")   # Prefer: IdType="ImmutableId"
EXT_ID_RE = re.compile(r"^(\w+)\s+(?:(\{[0-9A-Fa-f-]{36}\})\s+(Name|Id)\s+(\S.*)"
                       r"|(0x[0-9A-Fa-f]+))$", re.IGNORECASE)
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")
EXT_PROP = "singleValueExtendedProperties"

# Contact properties in the order Graph returns them.
STRING_PROPS = ("fileAs", "displayName", "givenName", "initials", "middleName", "nickName",
                "surname", "title", "yomiGivenName", "yomiSurname", "yomiCompanyName",
                "generation", "jobTitle", "companyName", "department", "officeLocation",
                "profession", "businessHomePage", "assistantName", "manager", "mobilePhone",
                "spouseName", "personalNotes")
LIST_PROPS = ("categories", "imAddresses", "homePhones", "businessPhones", "children")
ADDRESS_PROPS = ("homeAddress", "businessAddress", "otherAddress")
ADDRESS_FIELDS = ("street", "city", "state", "countryOrRegion", "postalCode")
OUTPUT_ORDER = ("categories", "birthday", "fileAs", "displayName", "givenName", "initials",
                "middleName", "nickName", "surname", "title", "yomiGivenName", "yomiSurname",
                "yomiCompanyName", "generation", "imAddresses", "jobTitle", "companyName",
                "department", "officeLocation", "profession", "businessHomePage",
                "assistantName", "manager", "homePhones", "mobilePhone", "businessPhones",
                "spouseName", "personalNotes", "children", "emailAddresses") + ADDRESS_PROPS
META_PROPS = ("createdDateTime", "lastModifiedDateTime", "changeKey", "parentFolderId")
READ_ONLY = ("id",) + META_PROPS
SERVER_FILLED = ("fileAs", "displayName")
NOT_EMULATED_PROPS = ("primaryEmailAddress", "secondaryEmailAddress", "tertiaryEmailAddress",
                      "extensions", "multiValueExtendedProperties", "photo")
FOLDER_PROPS = ("id", "displayName", "parentFolderId")
WRITE_KINDS = ("folder_create", "folder_update", "folder_delete", "contact_create",
               "contact_update", "contact_delete", "photo_put")
CAUSES = ("concurrency", "requests", "upload", "injected")

# --- the directory: users, organisational contacts, groups ---------------------------
# name -> kind; the order is the output order. Kinds: str, bool, date (an
# Edm.DateTimeOffset), strs (a string collection), licenses (assignedLicense),
# extattrs (onPremisesExtensionAttributes), offaddrs (physicalOfficeAddress),
# phones (phone), proverrs (onPremisesProvisioningError).
USER_DEFAULT = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                "officeLocation", "preferredLanguage", "surname", "userPrincipalName")
USER_SPEC = OrderedDict([(p, "strs" if p == "businessPhones" else "str") for p in USER_DEFAULT])
USER_SPEC.update([
    ("accountEnabled", "bool"), ("userType", "str"), ("department", "str"),
    ("companyName", "str"), ("employeeId", "str"), ("employeeType", "str"),
    ("employeeHireDate", "date"), ("streetAddress", "str"), ("city", "str"), ("state", "str"),
    ("postalCode", "str"), ("country", "str"), ("usageLocation", "str"), ("faxNumber", "str"),
    ("mailNickname", "str"), ("otherMails", "strs"), ("proxyAddresses", "strs"),
    ("imAddresses", "strs"), ("onPremisesExtensionAttributes", "extattrs"),
    ("onPremisesImmutableId", "str"), ("onPremisesSamAccountName", "str"),
    ("onPremisesUserPrincipalName", "str"), ("onPremisesDistinguishedName", "str"),
    ("onPremisesDomainName", "str"), ("onPremisesSyncEnabled", "bool"),
    ("onPremisesLastSyncDateTime", "date"), ("assignedLicenses", "licenses"),
    ("createdDateTime", "date"), ("deletedDateTime", "date")])
ORG_SPEC = OrderedDict([
    ("displayName", "str"), ("givenName", "str"), ("surname", "str"), ("mail", "str"),
    ("mailNickname", "str"), ("jobTitle", "str"), ("companyName", "str"),
    ("department", "str"), ("addresses", "offaddrs"), ("phones", "phones"),
    ("proxyAddresses", "strs"), ("onPremisesSyncEnabled", "bool"),
    ("onPremisesLastSyncDateTime", "date"), ("deletedDateTime", "date")])
# The group's default property set, as group-list's example answers it (in that order).
GROUP_SPEC = OrderedDict([
    ("deletedDateTime", "date"), ("classification", "str"), ("createdDateTime", "date"),
    ("description", "str"), ("displayName", "str"), ("expirationDateTime", "date"),
    ("groupTypes", "strs"), ("isAssignableToRole", "bool"), ("mail", "str"),
    ("mailEnabled", "bool"), ("mailNickname", "str"), ("membershipRule", "str"),
    ("membershipRuleProcessingState", "str"), ("onPremisesLastSyncDateTime", "date"),
    ("onPremisesSecurityIdentifier", "str"), ("onPremisesSyncEnabled", "bool"),
    ("preferredDataLocation", "str"), ("preferredLanguage", "str"), ("proxyAddresses", "strs"),
    ("renewedDateTime", "date"), ("resourceBehaviorOptions", "strs"),
    ("resourceProvisioningOptions", "strs"), ("securityEnabled", "bool"), ("theme", "str"),
    ("visibility", "str"), ("onPremisesProvisioningErrors", "proverrs")])
DIR_TYPES = {"user": USER_SPEC, "orgContact": ORG_SPEC, "group": GROUP_SPEC}
DIR_DEFAULT = {"user": USER_DEFAULT,
               "orgContact": tuple(p for p in ORG_SPEC if p != "deletedDateTime"),
               "group": tuple(GROUP_SPEC)}
DIR_SETS = {"user": "users", "orgContact": "contacts", "group": "groups"}
DIR_READ_ONLY = ("deletedDateTime",)
EXT_ATTRS = tuple(f"extensionAttribute{i}" for i in range(1, 16))
OFFICE_FIELDS = ("city", "countryOrRegion", "officeLocation", "postalCode", "state", "street")
PHONE_FIELDS = ("type", "number", "region", "language")
PROV_ERROR_FIELDS = ("category", "occurredDateTime", "propertyCausingError", "value")
PHONE_TYPES = ("home", "business", "mobile", "other", "assistant", "homeFax", "businessFax",
               "otherFax", "pager", "radio")

# --- app permissions (the "roles" of an app-only token) -----------------------------
DEFAULT_ROLES = ("User.Read.All", "OrgContact.Read.All", "GroupMember.Read.All",
                 "Contacts.ReadWrite")
_GROUP_ROLES = {"GroupMember.Read.All", "Group.Read.All", "GroupMember.ReadWrite.All",
                "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
PERMS = {
    "users": {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All",
              "Directory.ReadWrite.All"},
    "orgContacts": {"OrgContact.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"},
    "groups": _GROUP_ROLES,
    "contacts_read": {"Contacts.Read", "Contacts.ReadWrite"},
    "contacts_write": {"Contacts.ReadWrite"},
}
GRAPH_SCOPES = ("https://graph.microsoft.com/.default",
                "00000003-0000-0000-c000-000000000000/.default")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300              # seconds of nbf/exp leeway for client assertions


# --- errors and answers --------------------------------------------------------
def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(code, message, inner=None):
    """Graph's error JSON. innerError has date, request-id and client-request-id
    (json-batching's examples show all three; without a client's own id Graph
    uses its request id for both)."""
    rid = str(uuid.uuid4())
    return {"error": {"code": code, "message": message,
                      "innerError": dict(inner or {}, **{"date": now_iso(), "request-id": rid,
                                                         "client-request-id": rid})}}


def standard_headers(resp):
    """Headers every Graph API answer has (json-batching's sub-responses show
    them): Cache-Control: no-cache, and OData-Version: 4.0 on a successful
    JSON answer."""
    out = {"Cache-Control": "no-cache"}
    if resp.body is not None and resp.status < 400:
        out["OData-Version"] = "4.0"
    return out


class ApiError(Exception):
    """Ends an operation with a Graph-shaped error answer; inner: more
    innerError members."""

    def __init__(self, status, code, message, headers=None, inner=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.inner = inner

    def response(self):
        return Response(self.status, error_body(self.code, self.message, self.inner),
                        self.headers)


# A 429's innerError as the throttling page's sample answer has it.
THROTTLED_INNER = {"code": "429", "message": "Please retry after", "status": "429"}


class Response:
    """One answer: a JSON body (dict), raw bytes (raw + ctype), or nothing.
    `write` names the kind of a successful write; `dropped` is set when the
    answer is to be lost (the drop_answer_after_write fault)."""

    def __init__(self, status, body=None, headers=None, raw=None, ctype=None, write=None):
        self.status, self.body, self.headers = status, body, dict(headers or {})
        self.raw, self.ctype, self.write = raw, ctype, write
        self.dropped = None


def bad_request(message, code="BadRequest"):
    return ApiError(400, code, message)


def not_found(message="The specified object was not found in the store."):
    return ApiError(404, "ErrorItemNotFound", message)


def dir_not_found(key):
    return ApiError(404, "Request_ResourceNotFound", f"Resource '{key}' does not exist or one "
                    "of its queried reference-property objects are not present.")


# --- ids, etags, values ----------------------------------------------------------

def _random_bytes(n):
    return os.urandom(n)


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text):
    if not re.match(r"^[A-Za-z0-9_-]*$", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_id():
    """Opaque like an Exchange item id: URL-safe base64 ending in "=", so a
    client that builds URLs without escaping or that parses ids shows up."""
    return "AAMk" + base64.urlsafe_b64encode(_random_bytes(35)).decode()


def mint_immutable_id():
    """An item's immutable id (Prefer: IdType="ImmutableId"), "AAkA..." as
    Exchange's restImmutableEntryId; another id space than mint_id's."""
    return "AAkALg" + base64.urlsafe_b64encode(_random_bytes(38)).decode()


def mint_change_key():
    return "EQAAAB" + base64.b64encode(_random_bytes(18)).decode()


def etag_of(item):
    return f'W/"{item["changeKey"]}"'


def etag_matches(header, etag):
    def bare(t):
        t = t.strip()
        return t[2:] if t.startswith("W/") else t
    if header.strip() == "*":
        return True
    return any(bare(p) == bare(etag) for p in header.split(","))


def check_id(value):
    if not ID_RE.match(value) and not IMM_ID_RE.match(value):
        raise ApiError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def canonical_ext_id(ext_id):
    """Extended property ids compare with the type and GUID case-insensitive
    and the Name case-sensitive, as Exchange does; None when malformed."""
    m = EXT_ID_RE.match(ext_id.strip())
    if not m:
        return None
    kind, guid, how, name, tag = m.groups()
    if tag:
        return f"{kind.lower()} {tag.lower()}"
    name = name if how.lower() == "name" else name.lower()
    return f"{kind.lower()} {guid.lower()} {how.lower()} {name}"


def image_size(data):
    """(width, height) of a JPEG or PNG, (0, 0) if it cannot be read."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return 0, 0


def parse_prefer(headers):
    """{preference name (lower case): value} of the Prefer header(s)."""
    out = {}
    for part in headers.get("prefer", "").split(","):
        k, _, v = part.strip().partition("=")
        if k:
            out[k.strip().lower()] = v.strip().strip('"')
    return out


# --- contact bodies: validation and merging ------------------------------------
def _string(name, v):
    if v is not None and not isinstance(v, str):
        raise bad_request(f"The property '{name}' must be a string or null.", "RequestBodyRead")
    return v


def _string_list(name, v):
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise bad_request(f"The property '{name}' must be an array of strings.", "RequestBodyRead")
    if name in ("businessPhones", "homePhones") and len(v) > MAX_PHONES:
        raise bad_request(f"At most {MAX_PHONES} {name} are kept; {len(v)} were sent.",
                          "ErrorInvalidRequest")
    return list(v)


def _emails(v):
    if v is None:
        return []
    if not isinstance(v, list):
        raise bad_request("The property 'emailAddresses' must be an array.", "RequestBodyRead")
    if len(v) > MAX_EMAILS:
        raise bad_request(f"A contact holds at most {MAX_EMAILS} e-mail addresses; "
                          f"{len(v)} were sent.", "ErrorInvalidRequest")
    out = []
    for e in v:
        if (not isinstance(e, dict) or set(e) - {"name", "address"}
                or not isinstance(e.get("address"), str)
                or not isinstance(e.get("name", ""), (str, type(None)))):
            raise bad_request("Each of emailAddresses must be {\"name\", \"address\"} with a "
                              "string address.", "RequestBodyRead")
        out.append({"name": e.get("name"), "address": e["address"]})
    return out


def _address(name, v):
    if v is None:
        return {}
    if not isinstance(v, dict) or set(v) - set(ADDRESS_FIELDS) or not all(
            isinstance(x, (str, type(None))) for x in v.values()):
        raise bad_request(f"The property '{name}' must be a physicalAddress "
                          f"({', '.join(ADDRESS_FIELDS)}).", "RequestBodyRead")
    return {k: v[k] for k in ADDRESS_FIELDS if v.get(k) is not None}


def _birthday(v):
    if v is None:
        return None
    if not isinstance(v, str) or "T" not in v:
        raise bad_request("The property 'birthday' must be an Edm.DateTimeOffset such as "
                          "1974-07-22T00:00:00Z.", "RequestBodyRead")
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise bad_request(f"Cannot convert '{v}' to Edm.DateTimeOffset.", "RequestBodyRead")
    if dt.tzinfo is None:
        raise bad_request("The property 'birthday' needs a time zone offset.", "RequestBodyRead")
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ext_list(v):
    if not isinstance(v, list):
        raise bad_request(f"The property '{EXT_PROP}' must be an array.", "RequestBodyRead")
    out = []
    for e in v:
        if (not isinstance(e, dict) or set(e) != {"id", "value"} or not isinstance(e["id"], str)
                or not isinstance(e["value"], str)):
            raise bad_request(f"Each of {EXT_PROP} must be {{\"id\", \"value\"}} with string "
                              "values (a null value is not accepted).", "RequestBodyRead")
        canon = canonical_ext_id(e["id"])
        if canon is None:
            raise bad_request(f"The extended property id '{e['id']}' is malformed.",
                              "ErrorInvalidProperty")
        out.append((canon, {"id": e["id"], "value": e["value"]}))
    return out


def parse_contact_body(body):
    """A client's contact JSON -> (changes {property: value}, extended properties).
    Validates everything first, so that a refused write changes nothing."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    changes, ext = {}, []
    for k, v in body.items():
        if k.startswith("@odata.") or k in READ_ONLY:
            continue  # a client may send back what it read
        if k in STRING_PROPS:
            changes[k] = _string(k, v)
        elif k in LIST_PROPS:
            changes[k] = _string_list(k, v)
        elif k == "emailAddresses":
            changes[k] = _emails(v)
        elif k in ADDRESS_PROPS:
            changes[k] = _address(k, v)
        elif k == "birthday":
            changes[k] = _birthday(v)
        elif k == EXT_PROP:
            ext = _ext_list(v)
        elif k in NOT_EMULATED_PROPS:
            raise bad_request(f"The property '{k}' is not emulated by fakegraph.",
                              "NotEmulatedByFakeGraph")
        else:
            raise bad_request(f"The property '{k}' does not exist on type "
                              "'microsoft.graph.contact'.", "RequestBodyRead")
    return changes, ext


def new_contact(folder_id):
    c = {p: None for p in STRING_PROPS}
    c.update({p: [] for p in LIST_PROPS})
    c.update({p: {} for p in ADDRESS_PROPS})
    c.update({"emailAddresses": [], "birthday": None, "id": mint_id(),
              "iid": mint_immutable_id(), "ext": {}, "photo": None, "explicit": set(),
              "parentFolderId": folder_id, "createdDateTime": now_iso()})
    return c


def apply_changes(c, changes, ext):
    for k, v in changes.items():
        if k in SERVER_FILLED:
            if v:
                c["explicit"].add(k)
            else:
                c["explicit"].discard(k)
        c[k] = v
    for canon, e in ext:
        c["ext"][canon] = e
    derive(c)
    touch(c)


def derive(c):
    """fileAs and displayName, as Outlook fills them when the client did not."""
    given, sur = c.get("givenName") or "", c.get("surname") or ""
    if "displayName" not in c["explicit"]:
        c["displayName"] = " ".join(x for x in (given, sur) if x)
    if "fileAs" not in c["explicit"]:
        c["fileAs"] = ", ".join(x for x in (sur, given) if x)


def touch(item):
    """A write: new change key, modification time and change sequence (the
    position delta queries compare with)."""
    item["changeKey"] = mint_change_key()
    item["lastModifiedDateTime"] = now_iso()
    item["seq"] = STATE.next_seq()


def _copy(v):
    """A copy of a contact value (a string, a list of strings or of flat
    objects, a flat object): faster than deepcopy, which a benchmark feels."""
    if isinstance(v, list):
        return [dict(x) if isinstance(x, dict) else x for x in v]
    return dict(v) if isinstance(v, dict) else v


def contact_resource(c, select=None, expand=None, immutable=False):
    out = {"@odata.etag": etag_of(c), "id": c["iid"] if immutable else c["id"]}
    for p in META_PROPS + OUTPUT_ORDER:
        if select is None or p in select:
            out[p] = _copy(c[p])
    if expand is not None:
        found = [dict(e) for canon, e in c["ext"].items() if canon in expand]
        if found:
            out[EXT_PROP] = found
    return out


def folder_resource(f, select=None, expand=None):
    out = {p: f[p] for p in FOLDER_PROPS if select is None or p in select or p == "id"}
    if expand is not None:
        found = [dict(e) for canon, e in f["ext"].items() if canon in expand]
        if found:
            out[EXT_PROP] = found
    return out


# --- query options ---------------------------------------------------------------
def parse_query(raw, allowed):
    """OData system options (case-insensitive, '$' required); others ignored.
    An option this fake does not emulate is refused rather than ignored."""
    q = {}
    for k, v in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        key = k.lower()
        if not key.startswith("$"):
            continue
        if key not in allowed:
            raise bad_request(f"The query option '{k}' is not supported here by fakegraph.",
                              "ErrorInvalidUrlQuery")
        q[key] = v
    return q


def parse_select(q, allowed):
    if "$select" not in q:
        return None
    names = [s.strip() for s in q["$select"].split(",") if s.strip()]
    for n in names:
        if n not in allowed:
            raise ApiError(400, "RequestBroker--ParseUri",
                           f"Could not find a property named '{n}' on the resource.")
    return set(names)


def parse_expand(q):
    """$expand=singleValueExtendedProperties($filter=id eq 'X' [or id eq 'Y'])
    -> the set of canonical ids, or None without $expand."""
    if "$expand" not in q:
        return None
    m = re.match(r"^\s*singleValueExtendedProperties\s*\(\s*\$filter\s*=\s*(.*)\)\s*$",
                 q["$expand"], re.IGNORECASE | re.DOTALL)
    if not m:
        raise bad_request("fakegraph expands only singleValueExtendedProperties($filter=id eq "
                          "'...').", "ErrorInvalidUrlQuery")
    ids = set()
    for part in re.split(r"\s+or\s+", m.group(1).strip(), flags=re.IGNORECASE):
        pm = re.match(r"^id\s+eq\s+'((?:[^']|'')*)'$", part.strip(), re.IGNORECASE)
        canon = pm and canonical_ext_id(pm.group(1).replace("''", "'"))
        if not canon:
            raise bad_request(f"Cannot read the $expand filter '{part}'.", "ErrorInvalidUrlQuery")
        ids.add(canon)
    return ids


EXT_FILTER_RE = re.compile(
    r"^\s*singleValueExtendedProperties\s*/\s*any\s*\(\s*(\w+)\s*:\s*(\w+)/id\s+eq\s+"
    r"'((?:[^']|'')*)'\s+and\s+(\w+)/value\s+eq\s+'((?:[^']|'')*)'\s*\)\s*$", re.IGNORECASE)


def parse_ext_filter(text):
    """singleValueExtendedProperties/any(ep: ep/id eq 'ID' and ep/value eq 'V')
    -> a predicate on an item (its "ext"), or None if text is not of that form.
    The id compares as canonical_ext_id does; the value case-insensitively, as
    Graph documents for string extended properties."""
    m = EXT_FILTER_RE.match(text)
    if not m:
        return None
    var, v1, ext_id, v2, value = m.groups()
    if not var == v1 == v2:
        raise bad_request(f"The lambda variable '{var}' is not the one used in '{text}'.",
                          "ErrorInvalidUrlQuery")
    canon = canonical_ext_id(ext_id.replace("''", "'"))
    if canon is None:
        raise bad_request(f"The extended property id '{ext_id}' is malformed.",
                          "ErrorInvalidProperty")
    value = value.replace("''", "'").casefold()

    def pred(item):
        e = item["ext"].get(canon)
        return e is not None and e["value"].casefold() == value
    return pred


def parse_folder_filter(q):
    """A predicate on folders for $filter, or None without one."""
    if "$filter" not in q:
        return None
    m = re.match(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", q["$filter"], re.IGNORECASE)
    if m:
        name = m.group(1).replace("''", "'").casefold()
        return lambda f: f["displayName"].casefold() == name
    pred = parse_ext_filter(q["$filter"])
    if pred is None:
        raise bad_request("fakegraph filters contact folders only by displayName eq '...' or "
                          "singleValueExtendedProperties/any(ep: ep/id eq '...' and ep/value eq "
                          "'...').", "ErrorInvalidUrlQuery")
    return pred


def page_size(q, default, maximum):
    try:
        top = int(q.get("$top", default))
    except ValueError:
        raise bad_request("$top must be an integer.", "ErrorInvalidUrlQuery")
    if not 1 <= top <= maximum:
        raise bad_request(f"$top must be between 1 and {maximum}.", "ErrorInvalidUrlQuery")
    return top


def page_of(ctx, items, q, default=DEFAULT_PAGE, maximum=MAX_PAGE):
    """One page of items and the absolute nextLink (None on the last page)."""
    top = page_size(q, default, maximum)
    offset = 0
    try:
        if "$skiptoken" in q:
            token = q["$skiptoken"]
            if not token.startswith("fg1."):
                raise ValueError
            offset = int(base64.urlsafe_b64decode(token[4:] + "==").decode())
        elif "$skip" in q:
            offset = int(q["$skip"])
        if offset < 0:
            raise ValueError
    except ValueError:
        raise bad_request("The $skiptoken is not valid.", "ErrorInvalidUrlQuery")
    page = items[offset:offset + top]
    nxt = None
    if offset + top < len(items):
        token = "fg1." + base64.urlsafe_b64encode(str(offset + top).encode()).decode().rstrip("=")
        keep = [(k, v) for k, v in urllib.parse.parse_qsl(ctx.query, keep_blank_values=True)
                if k.lower() not in ("$skiptoken", "$skip", "$top")]
        keep += [("$top", str(top)), ("$skiptoken", token)]
        nxt = f"{ctx.origin}/v1.0{ctx.path}?{encode_query(keep)}"
    return page, nxt


def encode_query(pairs):
    return "&".join(f"{urllib.parse.quote(k, safe='$')}={urllib.parse.quote(v, safe=',()$')}"
                    for k, v in pairs)


# --- directory values ------------------------------------------------------------------
def _dir_error(where, what):
    return bad_request(f"Invalid value for '{where}': {what}.", "Request_BadRequest")


def _iso_date(where, v):
    if not isinstance(v, str) or "T" not in v:
        raise _dir_error(where, "an Edm.DateTimeOffset such as 2024-01-31T00:00:00Z is needed")
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise _dir_error(where, f"cannot read '{v}' as a date and time")
    if dt.tzinfo is None:
        raise _dir_error(where, "a time zone offset is needed")
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dicts(where, v, fields, required=()):
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise _dir_error(where, "an array of objects is needed")
    out = []
    for x in v:
        if set(x) - set(fields) or not all(isinstance(x.get(f), (str, type(None)))
                                           for f in fields if f != "disabledPlans"):
            raise _dir_error(where, f"objects take only string or null {', '.join(fields)}")
        for r in required:
            if not x.get(r):
                raise _dir_error(where, f"'{r}' is required")
        out.append({f: x.get(f) for f in fields})
    return out


def coerce_dir(where, kind, v):
    """A directory property value from a load or an upsert, checked and
    normalised (unset collections become [], extension attributes a full set)."""
    if kind == "str":
        if v is not None and not isinstance(v, str):
            raise _dir_error(where, "a string or null is needed")
        return v
    if kind == "bool":
        if v is not None and not isinstance(v, bool):
            raise _dir_error(where, "true, false or null is needed")
        return v
    if kind == "date":
        return None if v is None else _iso_date(where, v)
    if kind == "strs":
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise _dir_error(where, "an array of strings is needed")
        return list(v)
    if kind == "extattrs":
        if v is None:
            v = {}
        if not isinstance(v, dict) or set(v) - set(EXT_ATTRS) or not all(
                isinstance(x, (str, type(None))) for x in v.values()):
            raise _dir_error(where, "an object of extensionAttribute1..15 strings is needed")
        return {a: v.get(a) for a in EXT_ATTRS}
    if kind == "licenses":
        if v is None:
            return []
        if not isinstance(v, list):
            raise _dir_error(where, "an array of assignedLicense is needed")
        out = []
        for x in v:
            if (not isinstance(x, dict) or set(x) - {"skuId", "disabledPlans"}
                    or not isinstance(x.get("skuId"), str) or not GUID_RE.match(x["skuId"])):
                raise _dir_error(where, "each assignedLicense needs a GUID skuId")
            plans = x.get("disabledPlans") or []
            if not isinstance(plans, list) or not all(
                    isinstance(p, str) and GUID_RE.match(p) for p in plans):
                raise _dir_error(where, "disabledPlans must be an array of GUIDs")
            out.append({"disabledPlans": list(plans), "skuId": x["skuId"]})
        return out
    if kind == "offaddrs":
        return _dicts(where, v, OFFICE_FIELDS)
    if kind == "proverrs":
        out = _dicts(where, v, PROV_ERROR_FIELDS)
        for e in out:
            if e["occurredDateTime"] is not None:
                e["occurredDateTime"] = _iso_date(f"{where}.occurredDateTime",
                                                  e["occurredDateTime"])
        return out
    if kind == "phones":
        out = _dicts(where, v, PHONE_FIELDS, required=("type",))
        for p in out:
            if p["type"] not in PHONE_TYPES:
                raise _dir_error(where, f"phone type '{p['type']}' is not one of "
                                 f"{', '.join(PHONE_TYPES)}")
        return out
    raise AssertionError(kind)


def empty_dir_value(kind):
    return coerce_dir("", kind, None)


def is_unset(v):
    return v is None or v == [] or (isinstance(v, dict) and not any(
        x is not None for x in v.values()))


_SCHEMA = {}


def schema_has(type_name, prop):
    """Whether Graph's schema cut (graph_schema.py, if it can be loaded) has the
    property; None when the schema is not available."""
    if "s" not in _SCHEMA:
        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import graph_schema  # noqa: E402 - optional, next to this file
            _SCHEMA["s"] = graph_schema.load()
        except Exception:  # noqa: BLE001 - the fake works without it
            _SCHEMA["s"] = None
    s = _SCHEMA["s"]
    return None if s is None else prop in s.properties(type_name)


def parse_dir_select(q, types, navigation=()):
    """$select for directory objects of the given types -> a list of names
    (None without $select). Unknown names are 400 Request_BadRequest; names in
    Graph's schema that this fake does not hold are 400 NotEmulatedByFakeGraph.
    navigation: relationships that may be selected here (users/delta: manager)."""
    if "$select" not in q:
        return None
    names = []
    for n in (s.strip() for s in q["$select"].split(",")):
        if not n or n in names:
            continue
        if n == "manager" and "user" in types and "manager" not in navigation:
            raise ApiError(400, "NotEmulatedByFakeGraph", "manager is a relationship: "
                           "fakegraph answers it to $expand=manager (or "
                           "manager($select=...)) and, on /users/delta, to $select=manager "
                           "(a manager@delta annotation); not to $select here.")
        if n in navigation:
            names.append(n)
            continue
        if n != "id" and not any(n in DIR_TYPES[t] for t in types):
            if any(schema_has(t, n) for t in types):
                raise ApiError(400, "NotEmulatedByFakeGraph", f"fakegraph does not emulate the "
                               f"property '{n}' of microsoft.graph.{types[0]}.")
            raise ApiError(400, "Request_BadRequest", "Parsing OData Select and Expand failed: "
                           f"Could not find a property named '{n}' on type "
                           f"'microsoft.graph.{types[0]}'.")
        names.append(n)
    return names


def render_dir(o, select=None, since=None, minimal=False, typed=False):
    """A directory object as Graph returns it: the default property set or the
    $select'ed one. In a delta answer (since given), properties never set are
    left out and the id is always there; minimal (Prefer: return=minimal) keeps
    only properties changed since."""
    spec = DIR_TYPES[o["type"]]
    out = {"@odata.type": f"#microsoft.graph.{o['type']}"} if typed else {}
    for n in (select if select is not None else DIR_DEFAULT[o["type"]]):
        if n == "id" or n not in spec:
            continue
        v = o["p"][n]
        if since is not None:
            if n not in o["set"] and is_unset(v):
                continue
            if minimal and o["cseq"] <= since and o["pseq"].get(n, 0) <= since:
                continue
        out[n] = _copy(v)
    if select is None or "id" in select or since is not None:
        out["id"] = o["id"]
    return out


def removed_dir(oid, reason):
    return {"id": oid, "@removed": {"reason": reason}}


MANAGER_LEVELS_MAX = 1000   # user-list-manager: $levels is max or 1..1000


def parse_manager_expand(ctx, q, single):
    """$expand on /users and /users/{id}: manager, manager($select=a,b), and on
    one user (documented there only, with ConsistencyLevel: eventual)
    manager($levels=n|max[;$select=a,b]) -> {"select": names or None,
    "levels": n}, or None without $expand. Other expansions are refused."""
    if "$expand" not in q:
        return None
    text = q["$expand"].strip()
    m = re.match(r"^manager\s*(?:\((.*)\))?$", text, re.IGNORECASE | re.DOTALL)
    if not m:
        first = re.split(r"[(,]", text, maxsplit=1)[0].strip()
        if first and schema_has("user", first):
            raise ApiError(400, "NotEmulatedByFakeGraph", f"fakegraph expands only manager on "
                           f"users, not '{text}'.")
        raise ApiError(400, "Request_BadRequest", "Parsing OData Select and Expand failed: "
                       f"Could not find a property named '{first}' on type "
                       "'microsoft.graph.user'.")
    select, levels = None, None
    for part in (x.strip() for x in (m.group(1) or "").split(";")):
        if not part:
            continue
        key, _, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "$select":
            select = parse_dir_select({"$select": value}, ["user", "orgContact"])
        elif key == "$levels":
            if value.lower() == "max":
                levels = MANAGER_LEVELS_MAX
            elif value.isdigit() and 1 <= int(value) <= MANAGER_LEVELS_MAX:
                levels = int(value)
            else:
                raise ApiError(400, "Request_BadRequest", f"$levels must be max or a number "
                               f"from 1 to {MANAGER_LEVELS_MAX}, not '{value}'.")
        else:
            raise ApiError(400, "NotEmulatedByFakeGraph", f"fakegraph takes only $select and "
                           f"$levels inside $expand=manager(...), not '{part}'.")
    if levels is not None:
        if not single:
            raise ApiError(400, "Request_UnsupportedQuery", "$levels in $expand=manager(...) "
                           "is supported on a single user (/users/{id}) only, not on the "
                           "list of users.")
        if ctx.headers.get("consistencylevel", "").lower() != "eventual":
            raise ApiError(400, "Request_UnsupportedQuery", "$levels in $expand=manager(...) "
                           "needs the ConsistencyLevel header set to eventual.")
    return {"select": select, "levels": levels or 1}


def expand_manager(o, spec, seen=None):
    """A user's manager as $expand answers it: {"@odata.type", its default or
    $select'ed properties (id only if selected, as at the top level)}, with
    its own manager nested while $levels lasts; None when the user has none
    (or the manager is deleted): the caller leaves "manager" out."""
    seen = seen or {o["id"].lower()}
    m = STATE.find_any(o["manager"]) if o.get("manager") else None
    if m is None or m["type"] not in ("user", "orgContact") or m["id"].lower() in seen:
        return None
    out = render_dir(m, spec["select"], typed=True)
    if spec["levels"] > 1 and m["type"] == "user":
        up = expand_manager(m, dict(spec, levels=spec["levels"] - 1), seen | {m["id"].lower()})
        if up is not None:
            out["manager"] = up
    return out


def manager_link(mid, removed=False):
    o = STATE.find_any(mid, live=False)
    kind = o["type"] if o else next((t for t in ("user", "orgContact")
                                     if mid in STATE.gone[t]), "user")
    out = {"@odata.type": f"#microsoft.graph.{kind}", "id": mid}
    if removed:
        out["@removed"] = {"reason": "deleted"}
    return out


def manager_delta(o, since, minimal):
    """The manager@delta annotation of a user in users/delta?$select=...,manager
    (delta-query-overview: relationships are annotations "propertyName@delta";
    a link that went away has "@removed", as directoryRole-delta shows for a
    member): the current manager in the first round; in later ones the old
    link removed and the new one added when it changed; None to leave it out
    (no manager, or Prefer: return=minimal and no change)."""
    cur = o["manager"]
    changed = since > 0 and any(seq > since for seq, _ in o["mhist"])
    if not changed:
        return None if (not cur or (minimal and since > 0)) else [manager_link(cur)]
    before = None
    for seq, mid in o["mhist"]:
        if seq <= since:
            before = mid
    out = []
    if before and (before or "").lower() != (cur or "").lower():
        out.append(manager_link(before, removed=True))
    if cur:
        out.append(manager_link(cur))
    return out or None


# --- state ----------------------------------------------------------------------
class State:
    """Mailboxes -> contact folders -> contacts, and the directory (users,
    organisational contacts, groups), guarded by one lock. Every change takes
    the next number of one sequence; delta queries compare with it."""

    def __init__(self, upns):
        self.lock = threading.RLock()
        self.initial = list(upns)
        self.seq = 0
        self.reset()

    def next_seq(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def reset(self):
        with self.lock:
            self._empty()
            for upn in self.initial:
                self.add_mailbox({"userPrincipalName": upn})

    def _empty(self):
        self.mailboxes = {}
        self.writes = 0
        self.iids = {}            # immutable contact id -> contact id
        self.dir = {t: OrderedDict() for t in DIR_TYPES}   # type -> id.lower() -> object
        self.gone = {t: {} for t in DIR_TYPES}             # permanently deleted: id -> seq
        self.upns = {}            # userPrincipalName.lower() -> user id.lower()
        DELTA.clear()

    # --- mailboxes ---------------------------------------------------------------
    def add_mailbox(self, d):
        upn = d["userPrincipalName"]
        if not isinstance(upn, str) or not upn:
            raise bad_request("A mailbox needs a userPrincipalName.")
        user = self.find_user(upn, live=False)
        mid = d.get("id")
        if user is not None:
            if mid and mid.lower() != user["id"].lower():
                raise bad_request(f"The mailbox {upn} has id {mid}, but its user has "
                                  f"{user['id']}.")
            mid = user["id"]
        mid = mid or str(uuid.uuid5(uuid.NAMESPACE_DNS, upn.lower()))
        if user is None:  # every mailbox is a user of the directory
            local = upn.split("@")[0]
            self.create_dir("user", {"id": mid, "userPrincipalName": upn, "mail": upn,
                                     "displayName": local, "accountEnabled": True,
                                     "userType": "Member"})
        root = d.get("rootFolderId") or mint_id()
        mb = {"id": mid, "userPrincipalName": upn, "rootFolderId": root, "folders": {},
              "default": {"id": root, "displayName": "Contacts",
                          "parentFolderId": "AAMk" + base64.urlsafe_b64encode(
                              hashlib.sha256(root.encode()).digest()[:35]).decode(),
                          "contacts": {}, "gone": {}, "ext": {}, "default": True}}
        self.mailboxes[upn.lower()] = mb
        return mb

    def _mailbox_by_key(self, key):
        k = key.lower()
        mb = self.mailboxes.get(k)
        if mb is None:
            mb = next((m for m in self.mailboxes.values() if m["id"].lower() == k), None)
        return mb

    def mailbox(self, key):
        """The mailbox of /users/{key}/...: 404 ErrorInvalidUser for nobody,
        404 MailboxNotEnabledForRESTAPI for a user without an Exchange Online
        mailbox (no licence, a guest) or whose account is soft-deleted."""
        mb = self._mailbox_by_key(key)
        user = self.find_user(mb["id"] if mb else key, live=False)
        if mb is not None and (user is None or not user["deleted"]):
            return mb
        if user is not None:
            raise ApiError(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, "
                           "soft-deleted, or is hosted on-premise.")
        raise ApiError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")

    def mailbox_or_none(self, key):
        try:
            return self.mailbox(key)
        except ApiError:
            return None

    # --- directory -----------------------------------------------------------------
    def find_dir(self, type_name, key, live=True):
        o = self.dir[type_name].get(key.lower())
        if o is None and type_name == "user":
            o = self.dir["user"].get(self.upns.get(key.lower(), ""))
        if o is None or (live and o["deleted"]):
            return None
        return o

    def find_user(self, key, live=True):
        return self.find_dir("user", key, live)

    def find_any(self, key, live=True):
        """A user, organisational contact or group by its id."""
        for t in DIR_TYPES:
            o = self.dir[t].get(key.lower())
            if o is not None and (not live or not o["deleted"]):
                return o
        return None

    def create_dir(self, type_name, props, seq=None):
        seq = seq or self.next_seq()
        spec = DIR_TYPES[type_name]
        oid = props.get("id") or str(uuid.uuid4())
        o = {"type": type_name, "id": oid, "p": {n: empty_dir_value(k) for n, k in spec.items()},
             "set": set(), "pseq": {}, "cseq": seq, "dseq": 0, "deleted": False, "photo": None,
             "members": [], "manager": None, "mhist": []}
        for n, v in props.items():
            if n in spec:
                o["p"][n] = v
        o["set"] = {n for n, v in o["p"].items() if not is_unset(v)}
        o["deleted"] = o["p"]["deletedDateTime"] is not None
        if type_name == "user" and not o["p"]["userPrincipalName"]:
            raise bad_request("A user needs a userPrincipalName.", "Request_BadRequest")
        if type_name == "user":
            other = self.upns.get(o["p"]["userPrincipalName"].lower())
            if other and other != oid.lower():
                raise bad_request(f"Another object with the same value for property "
                                  f"userPrincipalName ({o['p']['userPrincipalName']}) already "
                                  "exists.", "Request_BadRequest")
            self.upns[o["p"]["userPrincipalName"].lower()] = oid.lower()
        self.dir[type_name][oid.lower()] = o
        self.gone[type_name].pop(oid, None)
        return o

    def prepare_dir(self, type_name, d, loading=False):
        """Checks one object of a load or upsert: -> (existing object or None,
        {property: value}, extras {"photo", "members", "mailbox"})."""
        where = type_name
        if not isinstance(d, dict):
            raise bad_request(f"Each {type_name} must be a JSON object.", "Request_BadRequest")
        spec = DIR_TYPES[type_name]
        props, extras = {}, {}
        for k, v in d.items():
            if k.startswith("@") or (k in DIR_READ_ONLY and not loading):
                continue  # what was read may be sent back; deletion is /_ctl/directory/delete
            if k == "id":
                if not isinstance(v, str) or not v or re.search(r"[/?#\s]", v):
                    raise _dir_error(f"{where}.id", "a non-empty string without / ? # is needed")
                props["id"] = v
            elif k == "photo":
                extras["photo"] = None if v is None else load_photo(f"{where}.photo", v)
            elif k == "members" and type_name == "group":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise _dir_error(f"{where}.members", "an array of object ids is needed")
                extras["members"] = list(v)
            elif k == "mailbox" and type_name == "user":
                if not isinstance(v, bool):
                    raise _dir_error(f"{where}.mailbox", "true or false is needed")
                extras["mailbox"] = v
            elif k == "manager" and type_name == "user":
                if v is not None and (not isinstance(v, str) or not v):
                    raise _dir_error(f"{where}.manager", "the id or userPrincipalName of a "
                                     "user (or an organisational contact's id), or null, is "
                                     "needed")
                extras["manager"] = v
            elif k in spec:
                props[k] = coerce_dir(f"{where}.{k}", spec[k], v)
            elif schema_has(type_name, k):
                raise ApiError(400, "NotEmulatedByFakeGraph", f"fakegraph does not emulate the "
                               f"property '{k}' of microsoft.graph.{type_name}.")
            else:
                raise bad_request(f"Property '{k}' does not exist on type "
                                  f"'microsoft.graph.{type_name}'.", "Request_BadRequest")
        existing = None
        if "id" in props:
            existing = self.dir[type_name].get(props["id"].lower())
        elif type_name == "user" and props.get("userPrincipalName"):
            existing = self.find_user(props["userPrincipalName"], live=False)
        if existing is None and type_name == "user" and not props.get("userPrincipalName"):
            raise bad_request("A new user needs a userPrincipalName.", "Request_BadRequest")
        return existing, props, extras

    def upsert_dir(self, doc):
        """/_ctl/directory/upsert: adds or merges users, orgContacts and groups
        (given properties replace, null clears); all checked before any applies."""
        if not isinstance(doc, dict) or set(doc) - {"users", "orgContacts", "groups"}:
            raise bad_request("An upsert takes {\"users\", \"orgContacts\", \"groups\"}: arrays.")
        plan = []
        for key, type_name in (("users", "user"), ("orgContacts", "orgContact"),
                               ("groups", "group")):
            items = doc.get(key, [])
            if not isinstance(items, list):
                raise bad_request(f"\"{key}\" must be an array.")
            for d in items:
                existing, props, extras = self.prepare_dir(type_name, d)
                if existing is None and "id" not in props:
                    props["id"] = str(uuid.uuid4())
                plan.append((type_name, existing, props, extras))
        self._check_upns(plan)
        known = {o["id"].lower() for t in DIR_TYPES for o in self.dir[t].values()}
        known |= {(e["id"] if e else p["id"]).lower() for _, e, p, _ in plan}
        for _, _, _, extras in plan:
            for m in extras.get("members", []):
                if m.lower() not in known:
                    raise bad_request(f"The member '{m}' is not a directory object.",
                                      "Request_BadRequest")
        self._check_managers(plan)
        out = {"users": [], "orgContacts": [], "groups": []}
        applied = []
        for type_name, existing, props, extras in plan:
            o = self._apply_dir(type_name, existing, props, extras)
            applied.append((o, extras))
            out[{"user": "users", "orgContact": "orgContacts", "group": "groups"}[type_name]] \
                .append(o["id"])
        for o, extras in applied:
            if "manager" in extras:
                m = self.resolve_manager(extras["manager"])
                self.set_manager(o, m["id"] if m else None)
        return out

    def _check_managers(self, plan):
        """Every "manager" of an upsert names a user (id or UPN) or an
        organisational contact (id) that exists or comes in the same upsert,
        and not the user itself."""
        keys = {}   # key.lower() -> the object's id.lower()
        for t in ("user", "orgContact"):
            for o in self.dir[t].values():
                keys[o["id"].lower()] = o["id"].lower()
                if t == "user":
                    keys[o["p"]["userPrincipalName"].lower()] = o["id"].lower()
        for type_name, existing, props, _ in plan:
            if type_name in ("user", "orgContact"):
                oid = (existing["id"] if existing else props["id"]).lower()
                keys[oid] = oid
                if props.get("userPrincipalName"):
                    keys[props["userPrincipalName"].lower()] = oid
        for type_name, existing, props, extras in plan:
            key = extras.get("manager")
            if key is None:
                continue
            me = (existing["id"] if existing else props["id"]).lower()
            if key.lower() not in keys:
                raise bad_request(f"The manager '{key}' is not a user or organisational contact "
                                  "of the directory.", "Request_BadRequest")
            if keys[key.lower()] == me:
                raise bad_request(f"The user '{key}' cannot be its own manager.",
                                  "Request_BadRequest")

    def resolve_manager(self, key):
        """The user (by id or UPN) or organisational contact (by id) a
        "manager" names, deleted ones too; None for None or nobody."""
        if key is None:
            return None
        return self.find_dir("user", key, live=False) or self.find_dir("orgContact", key,
                                                                       live=False)

    def set_manager(self, o, manager_id):
        """Links (or, with None, unlinks) a user's manager; a change takes the
        next sequence number, which users/delta?$select=manager compares."""
        if (o["manager"] or "").lower() == (manager_id or "").lower():
            return
        o["manager"] = manager_id
        o["mhist"].append((self.next_seq(), manager_id))

    def _check_upns(self, plan):
        seen = {}
        for type_name, existing, props, _ in plan:
            if type_name != "user" or "userPrincipalName" not in props:
                continue
            upn = (props["userPrincipalName"] or "").lower()
            if not upn:
                raise bad_request("userPrincipalName cannot be cleared.", "Request_BadRequest")
            me = (existing["id"] if existing else props["id"]).lower()
            other = seen.get(upn) or self.upns.get(upn)
            if other and other != me:
                raise bad_request(f"Another object with the same value for property "
                                  f"userPrincipalName ({upn}) already exists.",
                                  "Request_BadRequest")
            seen[upn] = me

    def _apply_dir(self, type_name, existing, props, extras):
        seq = self.next_seq()
        if existing is None:
            o = self.create_dir(type_name, props, seq)
        else:
            o = existing
            if o["deleted"]:  # restored from the deleted items
                o["deleted"], o["dseq"] = False, seq
                o["p"]["deletedDateTime"] = None
            old_upn = o["p"].get("userPrincipalName")
            for n, v in props.items():
                if n == "id" or o["p"].get(n) == v:
                    continue
                o["p"][n] = v
                o["pseq"][n] = seq
                if not is_unset(v):
                    o["set"].add(n)
            if type_name == "user" and o["p"]["userPrincipalName"] != old_upn:
                self.upns.pop(old_upn.lower(), None)
                self.upns[o["p"]["userPrincipalName"].lower()] = o["id"].lower()
                mb = self.mailboxes.pop(old_upn.lower(), None)
                if mb is not None:
                    mb["userPrincipalName"] = o["p"]["userPrincipalName"]
                    self.mailboxes[mb["userPrincipalName"].lower()] = mb
        if "photo" in extras:
            o["photo"] = extras["photo"]
        if "members" in extras:
            o["members"] = extras["members"]
        if type_name == "user" and "mailbox" in extras:
            upn = o["p"]["userPrincipalName"]
            has = self._mailbox_by_key(o["id"]) is not None
            if extras["mailbox"] and not has:
                self.add_mailbox({"userPrincipalName": upn, "id": o["id"]})
            elif not extras["mailbox"] and has:
                self.mailboxes.pop(self._mailbox_by_key(o["id"])["userPrincipalName"].lower())
        return o

    def delete_dir(self, doc):
        """/_ctl/directory/delete: soft (to the deleted items; delta says
        @removed "changed") or, with "permanent": true, for good ("deleted")."""
        if not isinstance(doc, dict) or set(doc) - {"users", "orgContacts", "groups",
                                                    "permanent"}:
            raise bad_request("A delete takes {\"users\", \"orgContacts\", \"groups\": [ids], "
                              "\"permanent\": false}.")
        permanent = doc.get("permanent", False)
        if not isinstance(permanent, bool):
            raise bad_request("\"permanent\" must be true or false.")
        targets = []
        for key, type_name in (("users", "user"), ("orgContacts", "orgContact"),
                               ("groups", "group")):
            keys = doc.get(key, [])
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise bad_request(f"\"{key}\" must be an array of ids.")
            for k in keys:
                o = self.find_dir(type_name, k, live=False)
                if o is None:
                    raise dir_not_found(k)
                if all(t is not o for t in targets):
                    targets.append(o)
        for o in targets:
            seq = self.next_seq()
            if not permanent:
                if not o["deleted"]:
                    o["deleted"], o["dseq"] = True, seq
                    o["p"]["deletedDateTime"] = now_iso()
                continue
            del self.dir[o["type"]][o["id"].lower()]
            self.gone[o["type"]][o["id"]] = seq
            for g in self.dir["group"].values():
                g["members"] = [m for m in g["members"] if m.lower() != o["id"].lower()]
            for u in self.dir["user"].values():
                if (u["manager"] or "").lower() == o["id"].lower():
                    self.set_manager(u, None)
            if o["type"] == "user":
                self.upns.pop(o["p"]["userPrincipalName"].lower(), None)
                mb = self._mailbox_by_key(o["id"])
                if mb is not None:
                    self.mailboxes.pop(mb["userPrincipalName"].lower())
        return {"deleted": [o["id"] for o in targets], "permanent": permanent}

    def transitive_members(self, group):
        """Members of the group and of every group nested in it (those groups
        too), each once, breadth first; deleted objects are left out."""
        out, seen, queue = [], {group["id"].lower()}, list(group["members"])
        while queue:
            mid = queue.pop(0)
            if mid.lower() in seen:
                continue
            seen.add(mid.lower())
            o = self.find_any(mid)
            if o is None:
                continue
            out.append(o)
            if o["type"] == "group":
                queue.extend(o["members"])
        return out

    # --- dump and load -----------------------------------------------------------
    def dump(self):
        with self.lock:
            out = []
            for mb in self.mailboxes.values():
                folders = [dict(folder_resource(f), **{
                    EXT_PROP: [dict(e) for e in f["ext"].values()],
                    "contacts": [dump_contact(c) for c in f["contacts"].values()]})
                    for f in mb["folders"].values()]
                out.append({"id": mb["id"], "userPrincipalName": mb["userPrincipalName"],
                            "rootFolderId": mb["rootFolderId"], "contactFolders": folders,
                            "defaultContacts": [dump_contact(c) for c in
                                                mb["default"]["contacts"].values()]})
            d = {"mailboxes": out, "writes": self.writes}
            for key, type_name in (("users", "user"), ("orgContacts", "orgContact"),
                                   ("groups", "group")):
                d[key] = [dump_dir(o) for o in self.dir[type_name].values()]
            return d

    def load(self, d):
        """Replaces the state with a dump (or a smaller hand-written one); a bad
        one raises ApiError and leaves the state as it was."""
        with self.lock:
            saved = (self.mailboxes, self.writes, self.iids, self.dir, self.gone, self.upns)
            try:
                self._empty()
                load_state(self, d)
            except ApiError:
                (self.mailboxes, self.writes, self.iids, self.dir, self.gone,
                 self.upns) = saved
                raise
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                (self.mailboxes, self.writes, self.iids, self.dir, self.gone,
                 self.upns) = saved
                raise bad_request(f"The state to load is not a fakegraph dump: {e!r}")


def load_photo(where, v):
    if not isinstance(v, dict) or not isinstance(v.get("base64"), str):
        raise _dir_error(where, "{\"contentType\", \"base64\"} is needed")
    try:
        data = base64.b64decode(v["base64"], validate=True)
    except ValueError:
        raise _dir_error(where, "the base64 is not valid")
    ctype = v.get("contentType", "image/jpeg")
    if ctype not in ("image/jpeg", "image/png"):
        raise _dir_error(where, "contentType must be image/jpeg or image/png")
    return {"type": ctype, "data": data, "etag": hashlib.sha1(data).hexdigest()}


def dump_dir(o):
    d = {"id": o["id"]}
    d.update(copy.deepcopy(o["p"]))
    if o["photo"] is not None:
        d["photo"] = {"contentType": o["photo"]["type"],
                      "base64": base64.b64encode(o["photo"]["data"]).decode()}
    if o["type"] == "group":
        d["members"] = list(o["members"])
    if o["manager"]:
        d["manager"] = o["manager"]
    return d


def dump_contact(c):
    d = contact_resource(c)
    d["immutableId"] = c["iid"]
    d[EXT_PROP] = [dict(e) for e in c["ext"].values()]
    p = c["photo"]
    d["photo"] = None if p is None else {"contentType": p["type"], "size": len(p["data"]),
                                         "base64": base64.b64encode(p["data"]).decode()}
    d["serverFilled"] = [k for k in SERVER_FILLED if k not in c["explicit"]]
    return d


def load_state(state, d):
    keys = ("mailboxes", "users", "orgContacts", "groups")
    if not isinstance(d, dict) or not any(isinstance(d.get(k), list) for k in keys):
        raise bad_request("The state to load needs a \"mailboxes\" array (and may have "
                          "\"users\", \"orgContacts\", \"groups\").")
    state.writes = int(d.get("writes", 0))
    plan = []
    for key, type_name in (("users", "user"), ("orgContacts", "orgContact"),
                           ("groups", "group")):
        items = d.get(key, [])
        if not isinstance(items, list):
            raise bad_request(f"\"{key}\" must be an array.")
        for item in items:
            existing, props, extras = state.prepare_dir(type_name, item, loading=True)
            if existing is not None:
                raise bad_request(f"The {type_name} {props.get('id') or item} is there twice.")
            o = state.create_dir(type_name, props)
            if "photo" in extras:
                o["photo"] = extras["photo"]
            plan.append((o, extras))
    for o, extras in plan:
        for m in extras.get("members", []):
            if state.find_any(m, live=False) is None:
                raise bad_request(f"The member '{m}' of group {o['id']} is not a directory "
                                  "object.")
        o["members"] = extras.get("members", [])
    for o, extras in plan:
        key = extras.get("manager")
        if key is None:
            continue
        m = state.resolve_manager(key)
        if m is None:
            raise bad_request(f"The manager '{key}' of user {o['id']} is not a loaded user or "
                              "organisational contact.")
        if m is o:
            raise bad_request(f"The user {o['id']} cannot be its own manager.")
        o["manager"], o["mhist"] = m["id"], [(o["cseq"], m["id"])]
    mailbox_users = []
    for o, extras in plan:
        if extras.get("mailbox"):
            mailbox_users.append(o)
    for m in d.get("mailboxes", []):
        mb = state.add_mailbox(m)
        check_id(mb["rootFolderId"])
        for cd in m.get("defaultContacts", []):
            c = load_contact(state, cd, mb["rootFolderId"])
            mb["default"]["contacts"][c["id"]] = c
        for f in m.get("contactFolders", []):
            fid = f.get("id") or mint_id()
            check_id(fid)
            ext = _ext_list(f.get(EXT_PROP) or [])
            folder = {"id": fid, "displayName": f["displayName"],
                      "parentFolderId": f.get("parentFolderId") or mb["rootFolderId"],
                      "contacts": {}, "gone": {}, "ext": dict(ext)}
            mb["folders"][fid] = folder
            for cd in f.get("contacts", []):
                c = load_contact(state, cd, fid)
                folder["contacts"][c["id"]] = c
    for o in mailbox_users:
        if state._mailbox_by_key(o["id"]) is None:
            state.add_mailbox({"userPrincipalName": o["p"]["userPrincipalName"], "id": o["id"]})


def load_contact(state, d, folder_id):
    body = {k: v for k, v in d.items() if k not in ("photo", "serverFilled", "immutableId")}
    changes, ext = parse_contact_body(body)
    c = new_contact(folder_id)
    served = d.get("serverFilled")
    for k in SERVER_FILLED:
        if served is not None and k in served:
            changes.pop(k, None)
    apply_changes(c, changes, ext)
    if d.get("id"):
        if not ID_RE.match(d["id"]):
            raise ApiError(400, "ErrorInvalidIdMalformed", f"The contact id {d['id']} is "
                           "malformed.")
        c["id"] = d["id"]
    if d.get("immutableId"):
        if not IMM_ID_RE.match(d["immutableId"]):
            raise ApiError(400, "ErrorInvalidIdMalformed", f"The immutable id "
                           f"{d['immutableId']} is malformed.")
        c["iid"] = d["immutableId"]
    state.iids[c["iid"]] = c["id"]
    etag = d.get("@odata.etag", "")
    c["changeKey"] = d.get("changeKey") or (etag[3:-1] if etag.startswith('W/"') else
                                            c["changeKey"])
    for k in ("createdDateTime", "lastModifiedDateTime"):
        c[k] = d.get(k) or c[k]
    if d.get("photo"):
        c["photo"] = {"type": d["photo"].get("contentType", "image/jpeg"),
                      "data": base64.b64decode(d["photo"]["base64"])}
    return c


# --- throttling, faults, statistics -------------------------------------------------
class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.d = {"http_requests": 0, "batch_calls": 0, "sub_requests": 0,
                      "by_method": {}, "by_kind": {}, "status": {},
                      "throttled": {c: 0 for c in CAUSES}, "injected_5xx": 0,
                      "answers_dropped": 0, "failed_dependency": 0, "max_concurrency": {},
                      "writes": {k: 0 for k in WRITE_KINDS}, "token_requests": 0,
                      "tokens_issued": 0}

    def add(self, key, sub=None, n=1):
        with self.lock:
            if sub is None:
                self.d[key] += n
            else:
                self.d[key][sub] = self.d[key].get(sub, 0) + n

    def concurrency(self, mailbox, active):
        with self.lock:
            m = self.d["max_concurrency"]
            m[mailbox] = max(m.get(mailbox, 0), active)

    def json(self):
        with self.lock:
            return copy.deepcopy(self.d)


class Bucket:
    def __init__(self):
        self.active = 0
        self.req_start, self.req_count = None, 0
        self.up_start, self.up_bytes = None, 0


class Throttle:
    """Outlook's limits per (app, mailbox): concurrency, requests per window,
    upload bytes per window (fixed windows opened by their first request).
    Window lengths are in emulated seconds; time_scale X makes each last 1/X
    of that on the wall clock. delta_seconds is how long a delta token lives
    (emulated seconds too)."""

    DEFAULTS = {"concurrency": 4, "window_requests": 10000, "window_seconds": 600.0,
                "upload_bytes": 150 * 1024 * 1024, "upload_seconds": 300.0,
                "time_scale": 1.0, "delta_seconds": 7 * 24 * 3600.0}

    def __init__(self, limits):
        self.lock = threading.Lock()
        self.start = dict(self.DEFAULTS, **limits)
        self.limits = dict(self.start)
        self.buckets = {}

    def set(self, d):
        unknown = set(d) - set(self.DEFAULTS)
        if unknown:
            raise bad_request(f"Unknown limits: {sorted(unknown)}")
        with self.lock:
            for k, v in d.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                    raise bad_request(f"The limit {k} must be a positive number.")
            self.limits.update(d)
            self.buckets = {}

    def reset(self):
        with self.lock:
            self.limits, self.buckets = dict(self.start), {}

    def wall(self, emulated_seconds):
        return emulated_seconds / self.limits["time_scale"]

    def admit(self, app, mailbox, upload):
        """Takes a slot or raises the 429; the caller must release() after."""
        now, lim = time.monotonic(), self.limits
        req_window, up_window = self.wall(lim["window_seconds"]), self.wall(lim["upload_seconds"])
        with self.lock:
            b = self.buckets.setdefault((app, mailbox), Bucket())
            if b.active >= lim["concurrency"]:
                raise throttled("concurrency", 1, "Application is over its MailboxConcurrency "
                                "limit.")
            if b.req_start is None or now - b.req_start >= req_window:
                b.req_start, b.req_count = now, 0
            if b.req_count >= lim["window_requests"]:
                raise throttled("requests", b.req_start + req_window - now,
                                f"Application is over its limit of {lim['window_requests']} "
                                f"requests per {lim['window_seconds']} s for this mailbox.")
            if upload:
                if b.up_start is None or now - b.up_start >= up_window:
                    b.up_start, b.up_bytes = now, 0
                # A body larger than the whole budget still passes into an empty
                # window; otherwise it could never be sent.
                if b.up_bytes and b.up_bytes + upload > lim["upload_bytes"]:
                    raise throttled("upload", b.up_start + up_window - now,
                                    f"Application is over its upload limit of "
                                    f"{lim['upload_bytes']} bytes per {lim['upload_seconds']} s "
                                    "for this mailbox.")
                b.up_bytes += upload
            b.req_count += 1
            b.active += 1
            STATS.concurrency(mailbox, b.active)
        return lambda: self.release(b)

    def release(self, b):
        with self.lock:
            b.active -= 1


def throttled(cause, wall_seconds, message):
    """A 429: Retry-After is the wall-clock wait (already divided by the time
    scale), in whole seconds and at least 1 as HTTP requires; the exact wait
    in milliseconds goes in x-fakegraph-retry-after-ms for tests only."""
    STATS.add("throttled", cause)
    retry = str(max(1, math.ceil(wall_seconds)))
    return ApiError(429, "ApplicationThrottled", message,
                    {"Retry-After": retry, "x-fakegraph-throttle-cause": cause,
                     "x-fakegraph-retry-after-ms": str(max(0, int(wall_seconds * 1000)))},
                    THROTTLED_INNER)


class Faults:
    KEYS = {"rate_429": 0.0, "rate_5xx": 0.0, "seed": 0, "drop_answer_after_write": 0,
            "drop_mode": "close", "latency_ms": 0}

    def __init__(self, latency_ms=0):
        self.lock = threading.Lock()
        self.defaults = dict(self.KEYS, latency_ms=latency_ms)
        self.set({})

    def set(self, d):
        if not isinstance(d, dict) or set(d) - set(self.KEYS):
            raise bad_request(f"faults take only {sorted(self.KEYS)}")
        v = dict(self.defaults, **d)
        for k in ("rate_429", "rate_5xx", "latency_ms", "drop_answer_after_write", "seed"):
            if not isinstance(v[k], (int, float)) or isinstance(v[k], bool) or v[k] < 0:
                raise bad_request(f"The fault {k} must be a number >= 0.")
        if v["rate_429"] + v["rate_5xx"] > 1 or v["drop_mode"] not in ("close", "500"):
            raise bad_request("rate_429 + rate_5xx must be <= 1; drop_mode \"close\" or \"500\".")
        with self.lock:
            self.v = v
            self.rng = random.Random(v["seed"])
            self.drops_left = int(v["drop_answer_after_write"])

    def json(self):
        with self.lock:
            return dict(self.v, drops_left=self.drops_left)

    def draw(self):
        """The injected fault for the next request: "429", "5xx" or None, from
        the seeded sequence (deterministic for requests in a given order)."""
        with self.lock:
            if not self.v["rate_429"] and not self.v["rate_5xx"]:
                return None
            r = self.rng.random()
            if r < self.v["rate_429"]:
                return "429"
            return "5xx" if r < self.v["rate_429"] + self.v["rate_5xx"] else None

    def take_drop(self):
        with self.lock:
            if self.drops_left <= 0:
                return None
            self.drops_left -= 1
            return self.v["drop_mode"]

    def latency(self):
        return self.v["latency_ms"] / 1000.0


def injected(fault):
    if fault == "429":
        STATS.add("throttled", "injected")
        return ApiError(429, "ApplicationThrottled", "Too many requests (injected by fakegraph).",
                        {"Retry-After": "1", "x-fakegraph-throttle-cause": "injected"},
                        THROTTLED_INNER)
    STATS.add("injected_5xx")
    return ApiError(503, "ServiceUnavailable", "The service is unavailable (injected).")


# --- the request log -----------------------------------------------------------------
class RequestLog:
    """Every HTTP request (parent None) and every $batch sub-request (parent:
    its envelope's id), with wall-clock start and end in seconds since the
    server started (or since the last log reset)."""

    FIELDS = ("id", "parent", "method", "kind", "path", "mailbox", "app", "status", "start",
              "end", "sub_requests")

    def __init__(self, cap=2_000_000):
        self.lock = threading.Lock()
        self.cap = cap
        self.reset()

    def reset(self):
        with self.lock:
            self.t0, self.cpu0 = time.monotonic(), time.process_time()
            self.rows, self.next_id, self.dropped = [], 1, 0

    def now(self):
        return time.monotonic() - self.t0

    def reserve(self):
        with self.lock:
            rid, self.next_id = self.next_id, self.next_id + 1
            return rid

    def add(self, rid, parent, method, kind, path, mailbox, app, status, start, sub=None):
        row = (rid, parent, method, sys.intern(kind or "unknown"), sys.intern(path), mailbox,
               app, status, round(start, 6), round(self.now(), 6), sub)
        with self.lock:
            if len(self.rows) >= self.cap:
                self.dropped += 1
                return
            self.rows.append(row)

    def entries(self, offset=0, limit=None):
        with self.lock:
            rows = self.rows[offset:None if limit is None else offset + limit]
            total = len(self.rows)
        return {"entries": [dict(zip(self.FIELDS, r)) for r in rows],
                "next_offset": offset + len(rows), "total": total, "dropped": self.dropped}

    def summary(self):
        with self.lock:
            rows = list(self.rows)
        out = {"entries": len(rows), "http_requests": 0, "token_requests": 0, "batch_calls": 0,
               "sub_requests": 0, "by_kind": {}, "by_status": {}, "throttled_429": 0,
               "mailboxes": {}, "first_start": None, "last_end": None, "wall_seconds": 0.0}
        for r in rows:
            (rid, parent, method, kind, path, mailbox, app, status, start, end, sub) = r
            if parent is None:
                out["http_requests"] += 1
                out["first_start"] = start if out["first_start"] is None else min(
                    out["first_start"], start)
                out["last_end"] = end if out["last_end"] is None else max(out["last_end"], end)
            if kind == "token":
                out["token_requests"] += 1
            if kind == "batch":
                out["batch_calls"] += 1
            if parent is not None:
                out["sub_requests"] += 1
            out["by_kind"][kind] = out["by_kind"].get(kind, 0) + 1
            out["by_status"][str(status)] = out["by_status"].get(str(status), 0) + 1
            if status == 429:
                out["throttled_429"] += 1
            if mailbox:
                m = out["mailboxes"].setdefault(mailbox, {"http_requests": 0, "batch_calls": 0,
                                                          "sub_requests": 0})
                if parent is not None:
                    m["sub_requests"] += 1
                elif kind == "batch":
                    m["batch_calls"] += 1
                    m["http_requests"] += 1
                else:
                    m["http_requests"] += 1
        if out["first_start"] is not None:
            out["wall_seconds"] = round(out["last_end"] - out["first_start"], 6)
        # fakegraph's own CPU time since the reset: near wall_seconds, the
        # emulator (one Python process) and not the limits bounded the run
        out["server_cpu_seconds"] = round(time.process_time() - self.cpu0, 3)
        return out


# --- delta tokens --------------------------------------------------------------------
class DeltaStore:
    """The state tokens of delta queries ($skiptoken of a nextLink, $deltatoken
    of a deltaLink), kept here and opaque to clients. An unknown, expired or
    evicted token is 410 Gone. Outlook documents a cache of limited size: the
    oldest tokens past CAP are dropped."""

    CAP = 50000

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = OrderedDict()

    def clear(self):
        with self.lock:
            self.tokens = OrderedDict()

    def put(self, entry):
        tok = b64url(_random_bytes(24))
        entry["created"] = time.monotonic()
        with self.lock:
            self.tokens[tok] = entry
            while len(self.tokens) > self.CAP:
                self.tokens.popitem(last=False)
        return tok

    def get(self, tok, scope, outlook, restart):
        with self.lock:
            e = self.tokens.get(tok)
        if e is None or e["scope"] != scope:
            raise gone(outlook, "syncStateNotFound", restart)
        if e.get("forced"):
            raise gone(outlook, e["forced"], restart)
        if time.monotonic() - e["created"] > THROTTLE.wall(THROTTLE.limits["delta_seconds"]):
            raise gone(outlook, "syncStateNotFound", restart)
        return e

    def expire(self, code):
        with self.lock:
            for e in self.tokens.values():
                e["forced"] = code
            return len(self.tokens)


def gone(outlook, code, restart):
    """410 Gone with a Location that starts the delta over (empty $deltatoken),
    as Graph documents for an expired token or a synchronization reset."""
    if code == "resyncRequired":
        message = ("Resync required. The delta token can no longer be used: replace the local "
                   "copy with a full synchronization.")
    elif outlook:
        code, message = "SyncStateNotFound", ("The sync state is not found: the delta token is "
                                              "unknown, expired or was evicted from the cache.")
    else:
        message = ("The sync state generation is not found. The delta token is expired and data "
                   "must be synchronized again.")
    return ApiError(410, code, message, {"Location": restart})


# --- the identity platform: app-only tokens --------------------------------------------
class App:
    """Who a bearer token stands for: a label (the throttling key; the client
    id for issued tokens) and its roles (None: every permission)."""

    def __init__(self, label, roles=None):
        self.label, self.roles = label, roles


def openssl(args, data=None):
    try:
        return subprocess.run(["openssl"] + args, input=data, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"openssl could not run: {e}")


def parse_certificates(pem_text):
    """[{"der", "x5t#S256", "x5t", "public_key"}] for each certificate in the PEM
    text (a private key beside them is ignored)."""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem_text,
                        re.DOTALL)
    if not blocks:
        raise ValueError("no PEM certificate found")
    out = []
    for block in blocks:
        der = ssl.PEM_cert_to_DER_cert(block)
        p = openssl(["x509", "-pubkey", "-noout"], block.encode())
        if p.returncode != 0 or b"PUBLIC KEY" not in p.stdout:
            raise ValueError("openssl cannot read the certificate: " +
                             p.stderr.decode(errors="replace").strip()[:200])
        out.append({"der": der, "x5t#S256": b64url(hashlib.sha256(der).digest()),
                    "x5t": b64url(hashlib.sha1(der).digest()), "public_key": p.stdout})
    return out


def verify_signature(public_key, data, signature, alg):
    """RSASSA-PSS (PS256: SHA-256, MGF1 SHA-256, salt = digest length) or
    PKCS#1 v1.5 (RS256) over data, by openssl dgst."""
    with tempfile.TemporaryDirectory(prefix="fakegraph-") as tmp:
        paths = {n: os.path.join(tmp, n) for n in ("pub.pem", "sig.bin", "data.bin")}
        for n, content in (("pub.pem", public_key), ("sig.bin", signature), ("data.bin", data)):
            with open(paths[n], "wb") as fh:
                fh.write(content)
        opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"] \
            if alg == "PS256" else []
        p = openssl(["dgst", "-sha256"] + opts + ["-verify", paths["pub.pem"], "-signature",
                                                  paths["sig.bin"], paths["data.bin"]])
        return p.returncode == 0


def sts_error(status, error, code, text):
    """An error answer of the identity platform's token endpoint."""
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    return status, {"error": error,
                    "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
                                         f"Correlation ID: {corr}\r\nTimestamp: {ts}",
                    "error_codes": [code], "timestamp": ts, "trace_id": trace,
                    "correlation_id": corr,
                    "error_uri": f"https://login.microsoftonline.com/error?code={code}"}


def as_list(v, what):
    if v is None:
        return []
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return [x.strip() for x in v if x.strip()]
    raise bad_request(f"{what} must be a list of strings or a comma-separated string.")


class Auth:
    """The token endpoint's configuration (one app registration in one
    directory, which every configured tenant name stands for) and the tokens
    it issued."""

    KEYS = ("tenants", "client_id", "client_secrets", "client_certs", "roles", "token_lifetime")

    def __init__(self, conf):
        self.lock = threading.Lock()
        self.start = dict(conf)
        self.reset()

    def reset(self):
        with self.lock:
            self.issued = {}
            self.last_assertion = None
            self.conf = {"tenants": [], "client_id": None, "client_secrets": [],
                         "client_certs": [], "roles": list(DEFAULT_ROLES),
                         "token_lifetime": 3599.0}
            self.certs = []
        self.set(self.start)

    def set(self, d):
        if not isinstance(d, dict) or set(d) - set(self.KEYS):
            raise bad_request(f"auth takes only {list(self.KEYS)}")
        conf = dict(self.conf)
        for k in ("tenants", "client_secrets", "client_certs", "roles"):
            if k in d:
                conf[k] = as_list(d[k], k) if k != "client_certs" else (
                    d[k] if isinstance(d[k], list) else [d[k]])
        if "client_id" in d:
            if d["client_id"] is not None and not isinstance(d["client_id"], str):
                raise bad_request("client_id must be a string.")
            conf["client_id"] = d["client_id"]
        if "token_lifetime" in d:
            v = d["token_lifetime"]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise bad_request("token_lifetime must be a positive number of seconds.")
            conf["token_lifetime"] = float(v)
        certs = self.certs
        if "client_certs" in d:
            certs = []
            for pem in conf["client_certs"]:
                if not isinstance(pem, str):
                    raise bad_request("client_certs must be PEM texts.")
                try:
                    certs += parse_certificates(pem)
                except (ValueError, RuntimeError) as e:
                    raise bad_request(f"A client certificate cannot be used: {e}")
        with self.lock:
            self.conf, self.certs = conf, certs

    def json(self):
        with self.lock:
            c = self.conf
            return {"tenants": c["tenants"], "client_id": c["client_id"],
                    "client_secrets": len(c["client_secrets"]),
                    "client_certs": [{"x5t#S256": x["x5t#S256"], "x5t": x["x5t"]}
                                     for x in self.certs],
                    "roles": c["roles"], "token_lifetime": c["token_lifetime"],
                    "tokens_issued": len(self.issued), "last_assertion": self.last_assertion}

    def expire_all(self):
        with self.lock:
            for t in self.issued.values():
                t["expires"] = 0.0
            return len(self.issued)

    def lookup(self, token):
        """App for a token this endpoint issued, "expired", or None."""
        with self.lock:
            t = self.issued.get(token)
        if t is None:
            return None
        if time.monotonic() >= t["expires"]:
            return "expired"
        return App(t["app"], t["roles"])

    def tenant_id(self):
        c = self.conf
        guid = next((t for t in c["tenants"] if GUID_RE.match(t)), None)
        return (guid or str(uuid.uuid5(uuid.NAMESPACE_DNS, (c["tenants"] or ["fakegraph"])[0]
                                       .lower()))).lower()

    def token_request(self, method, tenant, ctype, body, origins, authorization=""):
        """POST /{tenant}/oauth2/v2.0/token -> (status, JSON body). The client
        id and secret may come in an Authorization: Basic header instead of
        the form (RFC 6749 2.3.1; the client credentials page says it is
        supported)."""
        c = self.conf
        if method != "POST":
            return sts_error(400, "invalid_request", 900561,
                             "The endpoint only accepts POST requests. Received a "
                             f"{method} request.")
        if tenant.lower() not in (t.lower() for t in c["tenants"]):
            return sts_error(400, "invalid_request", 90002,
                             f"Tenant '{tenant}' not found. Check to make sure you have the "
                             "correct tenant ID and are signing into the correct cloud.")
        form = {}
        if "application/x-www-form-urlencoded" in ctype.lower():
            try:
                for k, v in urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True):
                    form.setdefault(k, v)
            except UnicodeDecodeError:
                form = {}
        basic = re.match(r"^Basic\s+([A-Za-z0-9+/=]+)\s*$", authorization or "", re.IGNORECASE)
        if basic:
            try:
                user, sep, password = base64.b64decode(basic.group(1)).decode("utf-8") \
                    .partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:
                return sts_error(401, "invalid_client", 7000218, "The Authorization header's "
                                 "Basic credentials are not client_id:client_secret.")
            user, password = urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)
            if form.get("client_secret") or form.get("client_assertion") or (
                    form.get("client_id") and form["client_id"] != user):
                return sts_error(400, "invalid_request", 90023, "The client credentials were "
                                 "sent both in the Authorization header and in the body.")
            form["client_id"], form["client_secret"] = user, password
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                return sts_error(400, "invalid_request", 900144, "The request body must contain "
                                 f"the following parameter: '{name}'.")
        if form["grant_type"] != "client_credentials":
            return sts_error(400, "unsupported_grant_type", 70003, "The app requested an "
                             f"unsupported grant type '{form['grant_type']}'.")
        client_id = form["client_id"]
        if not c["client_id"] or client_id.lower() != c["client_id"].lower():
            return sts_error(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the "
                             f"directory '{tenant}'. This can happen if the application has not "
                             "been installed by the administrator of the tenant or consented to "
                             "by any user in the tenant. You may have sent your authentication "
                             "request to the wrong tenant.")
        if form["scope"] not in GRAPH_SCOPES:
            return sts_error(400, "invalid_scope", 70011,
                             "The provided request must include a 'scope' input parameter. The "
                             "provided value for the input parameter 'scope' is not valid. The "
                             f"scope {form['scope']} is not valid.")
        secret, assertion = form.get("client_secret"), form.get("client_assertion")
        if secret and assertion:
            return sts_error(400, "invalid_request", 90023, "The request must contain either "
                             "client_secret or client_assertion, not both.")
        if secret:
            if secret not in c["client_secrets"]:
                return sts_error(401, "invalid_client", 7000215,
                                 "Invalid client secret provided. Ensure the secret being sent in "
                                 "the request is the client secret value, not the client secret "
                                 f"ID, for a secret added to app '{client_id}'.")
            how = "secret"
        elif assertion:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return sts_error(400, "invalid_request", 900144, "The request body must contain "
                                 "the following parameter: 'client_assertion_type' with the value "
                                 f"'{ASSERTION_TYPE}'.")
            failure = self.check_assertion(assertion, client_id,
                                           [f"{o}/{t}/oauth2/v2.0/token" for o in origins
                                            for t in c["tenants"]])
            if failure:
                return failure
            how = "certificate"
        else:
            return sts_error(401, "invalid_client", 7000218, "The request body must contain the "
                             "following parameter: 'client_assertion' or 'client_secret'.")
        return 200, self.issue(client_id, how)

    def check_assertion(self, assertion, client_id, audiences):
        """None if the client assertion is good, else the error answer."""
        def bad(code, text):
            return sts_error(401, "invalid_client", code, text)
        parts = assertion.split(".")
        try:
            if len(parts) != 3:
                raise ValueError
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
            if not isinstance(header, dict) or not isinstance(claims, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            return bad(50027, "JWT token is invalid or malformed.")
        alg = header.get("alg")
        thumb = header.get("x5t#S256") or header.get("x5t")
        kind = "x5t#S256" if header.get("x5t#S256") else "x5t"
        with self.lock:
            self.last_assertion = {"alg": alg, "typ": header.get("typ"), "thumbprint": kind,
                                   "claims": sorted(claims)}
        if alg not in ("PS256", "RS256"):
            return bad(700027, f"Client assertion failed signature validation. [Reason - The "
                       f"signing algorithm '{alg}' is not supported; use PS256.]")
        cert = next((x for x in self.certs if thumb and x[kind] == thumb), None)
        if cert is None:
            return bad(700027, "Client assertion failed signature validation. [Reason - The key "
                       "was not found., Thumbprint of key used by client: "
                       f"'{thumb}', Please visit the Microsoft Entra admin center and verify "
                       "that the certificate is registered for the application.]")
        if not verify_signature(cert["public_key"], f"{parts[0]}.{parts[1]}".encode(),
                                signature, alg):
            return bad(700027, "Client assertion failed signature validation. [Reason - The "
                       "provided signature value did not match the expected signature value.]")
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud.rstrip("/").lower() not in (
                a.lower() for a in audiences):
            return bad(700027, f"Client assertion audience claim does not match the token "
                       f"endpoint. [Reason - aud is '{aud}', expected one of "
                       f"{', '.join(audiences[:2])}.]")
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return bad(700021, "Client assertion application identifier doesn't match "
                       "'client_id' parameter (the iss and sub claims must both be it).")
        now = time.time()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not number(exp) or (nbf is not None and not number(nbf)):
            return bad(50027, "JWT token is invalid or malformed (exp and nbf must be numbers).")
        if now >= exp + CLOCK_SKEW or (nbf is not None and nbf > now + CLOCK_SKEW):
            return bad(700024, "Client assertion is not within its valid time range. Current "
                       f"time: {int(now)}, assertion valid from {nbf} to {exp} (seconds since "
                       "1970).")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            return bad(50027, "JWT token is invalid or malformed (the jti claim is missing).")
        return None

    def issue(self, client_id, how):
        c = self.conf
        tid = self.tenant_id()
        now, lifetime = int(time.time()), c["token_lifetime"]
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, "fakegraph-sp:" + client_id.lower()))
        header = {"typ": "JWT", "alg": "RS256", "x5t": "fakegraph", "kid": "fakegraph"}
        claims = {"aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{tid}/",
                  "iat": now, "nbf": now, "exp": now + int(math.ceil(lifetime)),
                  "app_displayname": "fakegraph app", "appid": client_id,
                  "appidacr": "2" if how == "certificate" else "1",
                  "idp": f"https://sts.windows.net/{tid}/", "idtyp": "app", "oid": oid,
                  "sub": oid, "tid": tid, "uti": b64url(_random_bytes(16)), "ver": "1.0"}
        if c["roles"]:
            claims["roles"] = list(c["roles"])
        token = ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                          b64url(_random_bytes(64))))
        with self.lock:
            if len(self.issued) > 10000:
                now_m = time.monotonic()
                self.issued = {k: v for k, v in self.issued.items() if v["expires"] > now_m}
            self.issued[token] = {"app": client_id, "roles": set(c["roles"]),
                                  "expires": time.monotonic() + lifetime}
        STATS.add("tokens_issued")
        expires_in = max(1, int(lifetime))
        return {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
                "access_token": token}


# --- the lower bound of a benchmark's wall time ---------------------------------------------
def wall_time_bound(params):
    """The least wall time a client can take, under the emulated limits and
    latency, to send `batches` $batch calls of `batch_size` sub-requests to
    each of `mailboxes` mailboxes after `setup` plain requests each.

    Per mailbox, with L the latency of one operation (--latency-ms: a plain
    request or one sub-request; a $batch envelope adds none), C the
    concurrency limit, W requests per window of T emulated seconds, U upload
    bytes per window of Tu, X the time scale, R = batches * batch_size and
    B = bytes per sub-request body:
        latency  = setup * L + ceil(R / C) * L
                   (the setup requests, find and create the folder, depend on
                   each other; then at most C operations run at once)
        requests = floor((setup + R - 1) / W) * T / X
                   (each full window must have passed before the next one opens)
        uploads  = floor((R * B - 1) / U) * Tu / X      (only when B > 0)
        mailbox  = max(latency, requests, uploads)
    and for all: bound = mailbox * max(1, mailboxes / parallel), parallel
    being how many mailboxes the client serves at once (default: all;
    fakegraph emulates no limit across mailboxes). Minimum HTTP calls:
    mailboxes * (setup + batches)."""
    def num(name, default, integer=True):
        raw = params.get(name)
        if raw is None:
            return default
        try:
            v = int(raw) if integer else float(raw)
        except ValueError:
            raise bad_request(f"{name} must be a number.")
        if v < 0:
            raise bad_request(f"{name} must be >= 0.")
        return v
    lim = THROTTLE.limits
    n = num("mailboxes", 1)
    size = num("batch_size", MAX_BATCH)
    if not 1 <= size <= MAX_BATCH:
        raise bad_request(f"batch_size must be between 1 and {MAX_BATCH}.")
    contacts = num("contacts", None)
    batches = num("batches", math.ceil(contacts / size) if contacts is not None else 1)
    subs = contacts if contacts is not None and "batches" not in params else batches * size
    setup = num("setup", 2)
    body = num("bytes_per_request", 0)
    latency = num("latency_ms", FAULTS.v["latency_ms"], integer=False) / 1000.0
    parallel = num("parallel", n) or n
    conc = lim["concurrency"]
    lat = setup * latency + math.ceil(subs / conc) * latency
    req = math.floor((setup + subs - 1) / lim["window_requests"]) * THROTTLE.wall(
        lim["window_seconds"]) if setup + subs > 0 else 0.0
    up = (math.floor((subs * body - 1) / lim["upload_bytes"]) *
          THROTTLE.wall(lim["upload_seconds"])) if subs * body > 0 else 0.0
    per_mailbox = max(lat, req, up)
    bound = per_mailbox * max(1.0, n / parallel) if n else 0.0
    return {"bound_seconds": round(bound, 6), "per_mailbox_seconds": round(per_mailbox, 6),
            "latency_seconds": round(lat, 6), "request_window_seconds": round(req, 6),
            "upload_window_seconds": round(up, 6),
            "min_http_calls": n * (setup + batches), "sub_requests": n * subs,
            "inputs": {"mailboxes": n, "batches": batches, "batch_size": size,
                       "sub_requests_per_mailbox": subs, "setup": setup,
                       "bytes_per_request": body, "latency_ms": latency * 1000,
                       "parallel": parallel, "concurrency": conc,
                       "window_requests": lim["window_requests"],
                       "window_seconds": lim["window_seconds"],
                       "upload_bytes": lim["upload_bytes"],
                       "upload_seconds": lim["upload_seconds"], "time_scale": lim["time_scale"]},
            "formula": "max(setup*L + ceil(R/C)*L, floor((setup+R-1)/W)*T/X, "
                       "floor((R*B-1)/U)*Tu/X) * max(1, mailboxes/parallel)"}


# --- the API: routing ---------------------------------------------------------------
class Ctx:
    """One API operation: a plain request or a batch sub-request."""

    def __init__(self, method, path, query, headers, body, app, origin):
        self.method, self.path, self.query = method, path, query
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body, self.app, self.origin = body, app, origin
        self.params, self.mailbox, self.kind = {}, None, None
        self.prefer = parse_prefer(self.headers)
        self.immutable = self.prefer.get("idtype", "").lower() == "immutableid"

    def json_body(self):
        ctype = self.headers.get("content-type", "")
        if "json" not in ctype.lower():
            raise bad_request("Unable to read JSON request payload. Please ensure Content-Type "
                              "header is set and payload is of valid JSON format.")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise bad_request("Unable to read JSON request payload. Please ensure Content-Type "
                              "header is set and payload is of valid JSON format.")


ROUTES = []


def route(pattern, kind, scope="mailbox", perm="contacts", **methods):
    """scope: "mailbox" (an Exchange mailbox: /users/{user} must have one; its
    Outlook limits apply), "user" (a directory user; the mailbox's limits apply
    when there is one) or "directory"."""
    ROUTES.append(([s for s in pattern.split("/") if s], kind, scope, perm, methods))


def match_route(ctx):
    segs = [urllib.parse.unquote(s) for s in ctx.path.split("/") if s]
    # /delta is Graph's shortcut for the function's full name
    segs = ["delta" if s.lower() in ("microsoft.graph.delta", "microsoft.graph.delta()") else s
            for s in segs]
    for pattern, kind, scope, perm, methods in ROUTES:
        if len(pattern) != len(segs):
            continue
        params = {}
        for p, s in zip(pattern, segs):
            if p.startswith("{"):
                params[p[1:-1]] = s
            elif p.lower() != s.lower():
                break
        else:
            ctx.params = params
            handler = methods.get(ctx.method)
            if handler is None:
                raise ApiError(405, "BadRequest", "Specified HTTP method is not allowed for the "
                               "request target.")
            return kind, handler, scope, perm
    raise ApiError(404, "UnknownPath", f"fakegraph has no resource at '{ctx.path}'.")


def check_permission(ctx, scope, perm):
    roles = ctx.app.roles
    if roles is None:
        return
    if perm == "contacts":
        perm = "contacts_read" if ctx.method == "GET" else "contacts_write"
    if roles & PERMS[perm]:
        return
    if perm.startswith("contacts"):
        raise ApiError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try "
                       "again.")
    raise ApiError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the "
                   "operation.")


class Op:
    """An admitted operation: routed, allowed, holding its mailbox slot."""

    def __init__(self, ctx, handler, scope, release):
        self.ctx, self.handler, self.scope, self.release = ctx, handler, scope, release


def begin_api(ctx, fault):
    """Routing, faults, permissions, the mailbox and its throttling slot ->
    an Op to finish, or the error Response."""
    try:
        kind, handler, scope, perm = match_route(ctx)
    except ApiError as e:
        return e.response()
    ctx.kind = kind
    STATS.add("by_method", ctx.method)
    STATS.add("by_kind", kind)
    try:
        if fault:
            raise injected(fault)
        check_permission(ctx, scope, perm)
        with STATE.lock:
            if scope == "mailbox":
                ctx.mailbox = STATE.mailbox(ctx.params["user"])
            elif scope == "user":
                ctx.mailbox = STATE.mailbox_or_none(ctx.params["user"])
        release = None
        if ctx.mailbox is not None:
            upload = len(ctx.body) if ctx.method in ("POST", "PATCH", "PUT") else 0
            release = THROTTLE.admit(ctx.app.label, ctx.mailbox["userPrincipalName"], upload)
    except ApiError as e:
        return e.response()
    return Op(ctx, handler, scope, release)


def finish_api(op):
    """Runs an admitted operation's handler (after its latency) and frees its slot."""
    ctx = op.ctx
    try:
        try:
            with STATE.lock:
                resp = op.handler(ctx)
                if resp.write:
                    STATE.writes += 1
        finally:
            if op.release:
                op.release()
    except ApiError as e:
        return e.response()
    if op.scope == "mailbox" and ctx.immutable and resp.status < 300:
        applied = resp.headers.get("Preference-Applied")
        resp.headers["Preference-Applied"] = ", ".join(
            x for x in (applied, 'IdType="ImmutableId"') if x)
    if resp.write:
        STATS.add("writes", resp.write)
        resp.dropped = FAULTS.take_drop()
        if resp.dropped:
            STATS.add("answers_dropped")
    return resp


def handle_api(ctx, fault):
    """Runs one operation through routing, faults, permissions, throttling and
    its latency (the slot is held meanwhile)."""
    op = begin_api(ctx, fault)
    if isinstance(op, Response):
        return op
    if FAULTS.latency():
        time.sleep(FAULTS.latency())
    return finish_api(op)


def context_url(ctx, tail):
    return f"{ctx.origin}/v1.0/$metadata#users('{ctx.mailbox['userPrincipalName']}')/{tail}"


def find_folder(ctx):
    """A folder by id; the default Contacts folder also by its well-known
    name "contacts" (and /users/{u}/contacts, which has no folder segment)."""
    fid = ctx.params.get("folder", "contacts")
    if fid.lower() == "contacts" or fid == ctx.mailbox["rootFolderId"]:
        return ctx.mailbox["default"]
    check_id(fid)
    f = ctx.mailbox["folders"].get(fid)
    if f is None:
        raise not_found()
    return f


def find_contact(ctx):
    """(folder, contact) by the path's ids (the regular or the immutable one);
    a contact id alone is looked up in every folder, as
    /users/{u}/contacts/{id} does."""
    cid = ctx.params["contact"]
    check_id(cid)
    if IMM_ID_RE.match(cid):
        cid = STATE.iids.get(cid, "")
    folders = [find_folder(ctx)] if "folder" in ctx.params else (
        [ctx.mailbox["default"]] + list(ctx.mailbox["folders"].values()))
    for f in folders:
        if cid in f["contacts"]:
            return f, f["contacts"][cid]
    raise not_found()


def check_if_match(ctx, item):
    im = ctx.headers.get("if-match")
    if im is not None and not etag_matches(im, etag_of(item)):
        raise ApiError(412, "ErrorIrresolvableConflict",
                       "The send or update operation could not be performed because the change "
                       "key passed in the request does not match the current change key for "
                       "the item.")


def max_page_size(ctx, default):
    """Prefer: odata.maxpagesize=N (1..1000) for Outlook delta; the default otherwise."""
    raw = ctx.prefer.get("odata.maxpagesize")
    if raw is None:
        return default, None
    try:
        n = int(raw)
    except ValueError:
        raise bad_request("odata.maxpagesize must be an integer.", "ErrorInvalidUrlQuery")
    if not 1 <= n <= MAX_PAGE:
        raise bad_request(f"odata.maxpagesize must be between 1 and {MAX_PAGE}.",
                          "ErrorInvalidUrlQuery")
    return n, f"odata.maxpagesize={n}"


def run_delta(ctx, q, scope, outlook, compute, render, select, size, context):
    """One page of a delta round. compute(since, select) -> the keys of the
    round (computed once, at its first page; the pages that follow are cut from
    it); render(key, select, since) -> one item, rendered when its page is
    served. A deltaLink remembers the sequence number at the round's start, so
    a change made while paging comes again in the next round (Graph documents
    replays)."""
    sel = ",".join(select) if select else None
    restart = f"{ctx.origin}/v1.0{ctx.path}?" + encode_query(
        ([("$select", sel)] if sel else []) + [("$deltatoken", "")])
    if "$skiptoken" in q:
        if "$select" in q or "$deltatoken" in q:
            raise bad_request("Follow a nextLink as it is: $select or $deltatoken cannot be added "
                              "to it.", "ErrorInvalidUrlQuery")
        e = DELTA.get(q["$skiptoken"], scope, outlook, restart)
        rnd, offset = e["round"], e["offset"]
    else:
        token, since = q.get("$deltatoken"), 0
        if token == "latest" and not outlook:  # "sync from now" (directory objects only)
            link = DELTA.put({"scope": scope, "seq": STATE.seq, "select": select})
            return {"@odata.context": context, "value": [], "@odata.deltaLink":
                    f"{ctx.origin}/v1.0{ctx.path}?{encode_query([('$deltatoken', link)])}"}
        if token:
            e = DELTA.get(token, scope, outlook, restart)
            since = e["seq"]
            if "$select" not in q:
                select = e["select"]
        rnd = {"keys": compute(since, select), "upto": STATE.seq, "since": since,
               "select": select}
        offset = 0
    keys = rnd["keys"][offset:offset + size]
    out = {"@odata.context": context,
           "value": [render(k, rnd["select"], rnd["since"]) for k in keys]}
    if offset + size < len(rnd["keys"]):
        tok = DELTA.put({"scope": scope, "round": rnd, "offset": offset + size})
        out["@odata.nextLink"] = f"{ctx.origin}/v1.0{ctx.path}?" + encode_query(
            [("$skiptoken", tok)])
    else:
        tok = DELTA.put({"scope": scope, "seq": rnd["upto"], "select": rnd["select"]})
        out["@odata.deltaLink"] = f"{ctx.origin}/v1.0{ctx.path}?" + encode_query(
            [("$deltatoken", tok)])
    return out


# --- the API: Outlook handlers ---------------------------------------------------------------
def list_folders(ctx):
    q = parse_query(ctx.query, {"$filter", "$top", "$skiptoken", "$skip", "$select",
                                "$expand"})
    select, expand = parse_select(q, FOLDER_PROPS), parse_expand(q)
    pred = parse_folder_filter(q)
    folders = [f for f in ctx.mailbox["folders"].values() if pred is None or pred(f)]
    page, nxt = page_of(ctx, folders, q)
    out = {"@odata.context": context_url(ctx, "contactFolders"),
           "value": [folder_resource(f, select, expand) for f in page]}
    if nxt:
        out["@odata.nextLink"] = nxt
    return Response(200, out)


def parse_folder_body(body, creating):
    """A contactFolder body -> (displayName or None, parentFolderId, extended
    properties)."""
    if not isinstance(body, dict) or set(body) - {"displayName", "parentFolderId", EXT_PROP} - {
            k for k in body if k.startswith("@odata.")}:
        raise bad_request("A contactFolder takes displayName, parentFolderId and "
                          f"{EXT_PROP}.", "RequestBodyRead")
    name = body.get("displayName")
    if creating or "displayName" in body:
        if not isinstance(name, str) or not name.strip():
            raise bad_request("The contactFolder needs a non-empty displayName.",
                              "ErrorInvalidRequest")
    ext = _ext_list(body[EXT_PROP]) if EXT_PROP in body else []
    if not creating and name is None and not ext:
        raise bad_request("The update names nothing to change (displayName or "
                          f"{EXT_PROP}).", "ErrorInvalidRequest")
    return name, body.get("parentFolderId"), ext


def check_unique_name(ctx, name, except_id=None):
    for f in ctx.mailbox["folders"].values():
        if f["id"] != except_id and f["displayName"].casefold() == name.casefold():
            raise ApiError(409, "ErrorFolderExists",
                           "A folder with the specified name already exists.")


def create_folder(ctx):
    parse_query(ctx.query, set())
    name, parent, ext = parse_folder_body(ctx.json_body(), True)
    if parent is not None and parent != ctx.mailbox["rootFolderId"]:
        raise bad_request("fakegraph creates folders only under the default Contacts folder.",
                          "NotEmulatedByFakeGraph")
    check_unique_name(ctx, name)
    f = {"id": mint_id(), "displayName": name, "parentFolderId": ctx.mailbox["rootFolderId"],
         "contacts": {}, "gone": {}, "ext": dict(ext)}
    ctx.mailbox["folders"][f["id"]] = f
    out = dict(folder_resource(f), **{"@odata.context": context_url(ctx, "contactFolders/$entity")})
    return Response(201, out, write="folder_create")


def get_folder(ctx):
    q = parse_query(ctx.query, {"$select", "$expand"})
    select, expand = parse_select(q, FOLDER_PROPS), parse_expand(q)
    return Response(200, folder_resource(find_folder(ctx), select, expand))


def update_folder(ctx):
    f = find_folder(ctx)
    if f.get("default"):
        raise ApiError(403, "ErrorAccessDenied", "The default Contacts folder cannot be "
                       "renamed or changed.")
    name, _, ext = parse_folder_body(ctx.json_body(), False)
    if name is not None:
        check_unique_name(ctx, name, f["id"])
        f["displayName"] = name
    for canon, e in ext:
        f["ext"][canon] = e
    return Response(200, folder_resource(f), write="folder_update")


def delete_folder(ctx):
    f = find_folder(ctx)
    if f.get("default"):
        raise ApiError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be "
                       "deleted.")
    del ctx.mailbox["folders"][f["id"]]
    return Response(204, write="folder_delete")


CONTACT_SELECT = ("id",) + META_PROPS + OUTPUT_ORDER


def list_contacts(ctx):
    q = parse_query(ctx.query, {"$top", "$skiptoken", "$skip", "$select", "$expand",
                                "$filter"})
    select, expand = parse_select(q, CONTACT_SELECT), parse_expand(q)
    pred = None
    if "$filter" in q:
        pred = parse_ext_filter(q["$filter"])
        if pred is None:
            raise bad_request("fakegraph filters contacts only by singleValueExtendedProperties/"
                              "any(ep: ep/id eq '...' and ep/value eq '...').",
                              "ErrorInvalidUrlQuery")
    f = find_folder(ctx)
    items = [c for c in f["contacts"].values() if pred is None or pred(c)]
    page, nxt = page_of(ctx, items, q)
    out = {"@odata.context": context_url(ctx, f"contactFolders('{f['id']}')/contacts"),
           "value": [contact_resource(c, select, expand, ctx.immutable) for c in page]}
    if nxt:
        out["@odata.nextLink"] = nxt
    return Response(200, out)


def create_contact(ctx):
    parse_query(ctx.query, set())
    f = find_folder(ctx)
    changes, ext = parse_contact_body(ctx.json_body())
    c = new_contact(f["id"])
    apply_changes(c, changes, ext)
    f["contacts"][c["id"]] = c
    STATE.iids[c["iid"]] = c["id"]
    out = dict(contact_resource(c, immutable=ctx.immutable), **{"@odata.context": context_url(
        ctx, f"contactFolders('{f['id']}')/contacts/$entity")})
    return Response(201, out, write="contact_create")


def get_contact(ctx):
    q = parse_query(ctx.query, {"$select", "$expand"})
    select, expand = parse_select(q, CONTACT_SELECT), parse_expand(q)
    f, c = find_contact(ctx)
    where = (f"contactFolders('{f['id']}')/contacts" if "folder" in ctx.params
             else "contacts")
    return Response(200, dict({"@odata.context": context_url(ctx, f"{where}/$entity")},
                              **contact_resource(c, select, expand, ctx.immutable)))


def update_contact(ctx):
    parse_query(ctx.query, set())
    _, c = find_contact(ctx)
    check_if_match(ctx, c)
    changes, ext = parse_contact_body(ctx.json_body())
    apply_changes(c, changes, ext)
    return Response(200, contact_resource(c, immutable=ctx.immutable), write="contact_update")


def delete_contact(ctx):
    f, c = find_contact(ctx)
    check_if_match(ctx, c)
    del f["contacts"][c["id"]]
    f["gone"][c["id"]] = (STATE.next_seq(), c["iid"])
    return Response(204, write="contact_delete")


def contacts_delta(ctx):
    """GET .../contactFolders/{id}/contacts/delta: the folder's contacts, then
    what changed: created and updated contacts whole (never with extended
    properties: delta takes no $expand), deleted ones as @removed."""
    q = parse_query(ctx.query, {"$select", "$skiptoken", "$deltatoken"})
    select = parse_select(q, CONTACT_SELECT)
    select = sorted(select) if select is not None else None
    f = find_folder(ctx)
    size, applied = max_page_size(ctx, DEFAULT_PAGE)

    def compute(since, _select):
        if since == 0:
            return list(f["contacts"])
        keys = [cid for cid, c in f["contacts"].items() if c["seq"] > since]
        return keys + [cid for cid, (seq, _) in f["gone"].items()
                       if seq > since and cid not in f["contacts"]]

    def render(cid, sel, _since):
        c = f["contacts"].get(cid)
        if c is None:
            iid = f["gone"].get(cid, (0, cid))[1]
            return {"@odata.type": "#microsoft.graph.contact",
                    "id": iid if ctx.immutable else cid, "@removed": {"reason": "deleted"}}
        return dict({"@odata.type": "#microsoft.graph.contact"},
                    **contact_resource(c, set(sel) if sel else None, None, ctx.immutable))
    out = run_delta(ctx, q, ("contacts", ctx.mailbox["id"], f["id"]), True, compute, render,
                    select, size, f"{ctx.origin}/v1.0/$metadata#Collection(contact)")
    return Response(200, out, {"Preference-Applied": applied} if applied else None)


def get_photo_meta(ctx):
    f, c = find_contact(ctx)
    if c["photo"] is None:
        raise not_found("The photo wasn't found.")
    w, h = image_size(c["photo"]["data"])
    where = (f"contactFolders('{f['id']}')/contacts('{c['id']}')" if "folder" in ctx.params
             else f"contacts('{c['id']}')")
    etag = hashlib.sha1(c["photo"]["data"]).hexdigest()[:8].upper()
    return Response(200, {"@odata.context": context_url(ctx, f"{where}/photo/$entity"),
                          "@odata.mediaContentType": c["photo"]["type"],
                          "@odata.mediaEtag": f'"{etag}"',
                          "id": f"{w}X{h}", "width": w, "height": h})


def get_photo(ctx):
    _, c = find_contact(ctx)
    if c["photo"] is None:
        raise not_found("The photo wasn't found.")
    return Response(200, raw=c["photo"]["data"], ctype=c["photo"]["type"])


def put_photo(ctx):
    _, c = find_contact(ctx)
    ctype = ctx.headers.get("content-type", "").split(";")[0].strip().lower()
    data = ctx.body
    magic = {"image/jpeg": b"\xff\xd8", "image/png": b"\x89PNG"}
    if ctype not in magic:
        raise bad_request("A contact photo must be sent as image/jpeg or image/png.",
                          "ErrorInvalidRequest")
    if not data.startswith(magic[ctype]):
        raise bad_request(f"The body is not {ctype} data.", "ErrorInvalidRequest")
    if len(data) > MAX_PHOTO:
        raise ApiError(413, "ErrorRequestEntityTooLarge", "A photo is limited to 4 MB.")
    c["photo"] = {"type": ctype, "data": bytes(data)}
    touch(c)
    return Response(200, write="photo_put")


def delete_photo(ctx):
    raise ApiError(405, "ErrorInvalidRequest", "The photo of an Outlook contact cannot be deleted.")


def default_folder(ctx):
    raise ApiError(501, "NotEmulatedByFakeGraph", "the delta of /users/{u}/contacts is not "
                   "documented; use /contactFolders/contacts/contacts/delta (or the folder's id).")


# --- the API: directory handlers -------------------------------------------------------------
def dir_context(ctx, set_name, select, entity=False, expand=None):
    names = list(select or []) + (["manager()"] if expand is not None and select else [])
    tail = f"({','.join(names)})" if names else ""
    return f"{ctx.origin}/v1.0/$metadata#{set_name}{tail}" + ("/$entity" if entity else "")


def render_with_manager(o, select, expand):
    out = render_dir(o, select)
    if expand is not None:
        m = expand_manager(o, expand)
        if m is not None:
            out["manager"] = m
    return out


def list_dir(ctx, type_name, pred=None, extra=()):
    q = parse_query(ctx.query, {"$select", "$top", "$skiptoken"} | set(extra) |
                    ({"$expand"} if type_name == "user" else set()))
    select = parse_dir_select(q, [type_name])
    expand = parse_manager_expand(ctx, q, False) if type_name == "user" else None
    items = [o for o in STATE.dir[type_name].values()
             if not o["deleted"] and (pred is None or pred(o))]
    page, nxt = page_of(ctx, items, q, DIR_PAGE, DIR_MAX_PAGE)
    out = {"@odata.context": dir_context(ctx, DIR_SETS[type_name], select, expand=expand),
           "value": [render_with_manager(o, select, expand) for o in page]}
    if nxt:
        out["@odata.nextLink"] = nxt
    return Response(200, out)


def get_dir(ctx, type_name, key):
    allowed = {"$select"} | ({"$expand", "$count"} if type_name == "user" else set())
    q = parse_query(ctx.query, allowed)
    select = parse_dir_select(q, [type_name])
    expand = parse_manager_expand(ctx, q, True) if type_name == "user" else None
    if "$count" in q and (expand is None or expand["levels"] == 1
                          or q["$count"].lower() != "true"):
        # user-list-manager's chain example sends $count=true with $levels;
        # on one object it counts nothing. Elsewhere it is not emulated.
        raise bad_request("fakegraph takes $count=true on a single user only beside "
                          "$expand=manager($levels=...).", "ErrorInvalidUrlQuery")
    o = STATE.find_dir(type_name, key)
    if o is None:
        raise dir_not_found(key)
    return Response(200, dict({"@odata.context": dir_context(ctx, DIR_SETS[type_name], select,
                                                             True, expand)},
                              **render_with_manager(o, select, expand)))


def get_user_manager(ctx):
    """GET /users/{id}/manager (user-list-manager): the manager as a
    directoryObject with its @odata.type; 404 when the user has none."""
    q = parse_query(ctx.query, {"$select"})
    select = parse_dir_select(q, ["user", "orgContact"])
    o = STATE.find_user(ctx.params["user"])
    if o is None:
        raise dir_not_found(ctx.params["user"])
    m = STATE.find_any(o["manager"]) if o["manager"] else None
    if m is None or m["type"] not in ("user", "orgContact"):
        raise dir_not_found("manager")
    return Response(200, dict({"@odata.context": f"{ctx.origin}/v1.0/$metadata#"
                                                 "directoryObjects/$entity"},
                              **render_dir(m, select, typed=True)))


def dir_delta(ctx, type_name):
    """/users/delta and /contacts/delta: every object, then what changed: a
    changed object whole (its $select'ed or default properties, never-set
    ones left out), a deleted one {"id", "@removed": {"reason": "changed"}}
    (restorable) or "deleted" (gone for good). With $select only changes to
    the selected properties count, without it all; $select=...,manager adds
    manager@delta (manager_delta)."""
    q = parse_query(ctx.query, {"$select", "$skiptoken", "$deltatoken", "$expand"})
    if "$expand" in q:
        raise bad_request("$expand isn't supported by delta on users and organisational "
                          "contacts (delta-query-overview); track the manager with "
                          "$select=...,manager (a manager@delta annotation).",
                          "Request_UnsupportedQuery")
    select = parse_dir_select(q, [type_name], ("manager",) if type_name == "user" else ())
    minimal = ctx.prefer.get("return", "").lower() == "minimal"
    objs, gone = STATE.dir[type_name], STATE.gone[type_name]

    def compute(since, sel):
        if since == 0:
            return [o["id"] for o in objs.values() if not o["deleted"]]
        # Only selected properties are tracked; without $select, all of them
        # (delta-query-users). The manager only when selected.
        props = [p for p in (sel if sel is not None else DIR_TYPES[type_name])
                 if p not in ("id", "manager")]
        links = sel is not None and "manager" in sel
        keys = [o["id"] for o in objs.values()
                if o["cseq"] > since or o["dseq"] > since
                or any(o["pseq"].get(p, 0) > since for p in props)
                or (links and any(seq > since for seq, _ in o["mhist"]))]
        return keys + [oid for oid, seq in gone.items() if seq > since and oid.lower() not in objs]

    def render(oid, sel, since):
        o = objs.get(oid.lower())
        if o is None:
            return removed_dir(oid, "deleted")
        if o["deleted"]:
            return removed_dir(o["id"], "changed")
        out = render_dir(o, sel, since, minimal and since > 0)
        if sel is not None and "manager" in sel:
            links = manager_delta(o, since, minimal)
            if links is not None:
                out["manager@delta"] = links
        return out
    out = run_delta(ctx, q, (type_name,), False, compute, render, select, DIR_DELTA_PAGE,
                    dir_context(ctx, DIR_SETS[type_name], None))
    return Response(200, out)


def list_users(ctx):
    return list_dir(ctx, "user")


def get_user(ctx):
    return get_dir(ctx, "user", ctx.params["user"])


def users_delta(ctx):
    return dir_delta(ctx, "user")


def user_photo(ctx, meta):
    parse_query(ctx.query, set())
    o = STATE.find_user(ctx.params["user"])
    if o is None:
        raise dir_not_found(ctx.params["user"])
    p = o["photo"]
    if p is None:
        raise ApiError(404, "ImageNotFound", "Exception of type 'Microsoft.Fast.Profile.Core."
                       "Exception.ImageNotFoundException' was thrown.")
    if not meta:
        return Response(200, raw=p["data"], ctype=p["type"], headers={"ETag": f'"{p["etag"]}"'})
    w, h = image_size(p["data"])
    return Response(200, {"@odata.context": f"{ctx.origin}/v1.0/$metadata#users('{o['id']}')/"
                                            "photo/$entity",
                          "@odata.mediaContentType": p["type"],
                          "@odata.mediaEtag": f'W/"{p["etag"]}"',
                          "id": f"{w}X{h}", "height": h, "width": w})


def list_org_contacts(ctx):
    return list_dir(ctx, "orgContact")


def get_org_contact(ctx):
    return get_dir(ctx, "orgContact", ctx.params["id"])


def org_contacts_delta(ctx):
    return dir_delta(ctx, "orgContact")


def list_groups(ctx):
    q = parse_query(ctx.query, {"$select", "$top", "$skiptoken", "$filter"})
    pred = None
    if "$filter" in q:
        m = re.match(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", q["$filter"],
                     re.IGNORECASE)
        if not m:
            raise ApiError(400, "Request_UnsupportedQuery", "fakegraph filters groups only by "
                           "displayName eq '...'.")
        name = m.group(1).replace("''", "'").casefold()
        pred = lambda o: (o["p"]["displayName"] or "").casefold() == name  # noqa: E731
    return list_dir(ctx, "group", pred, {"$filter"})


def get_group(ctx):
    return get_dir(ctx, "group", ctx.params["group"])


def group_members(ctx, transitive):
    q = parse_query(ctx.query, {"$select", "$top", "$skiptoken", "$count"})
    cast = ctx.params.get("cast")
    types = list(DIR_TYPES)
    if cast is not None:
        t = next((t for t in DIR_TYPES if cast.lower() == f"microsoft.graph.{t}".lower()), None)
        if t is None:
            raise ApiError(400, "Request_BadRequest", f"'{cast}' is not a type a member can "
                           "be cast to (microsoft.graph.user, .group or .orgContact).")
        types = [t]
    eventual = ctx.headers.get("consistencylevel", "").lower() == "eventual"
    count = q.get("$count", "").lower() == "true"
    if (cast is not None or count) and not (eventual and count):
        raise ApiError(400, "Request_UnsupportedQuery", "An OData cast or $count on members "
                       "needs the advanced query parameters: the ConsistencyLevel header set to "
                       "eventual and $count=true.")
    select = parse_dir_select(q, types)
    g = STATE.find_dir("group", ctx.params["group"])
    if g is None:
        raise dir_not_found(ctx.params["group"])
    if transitive:
        members = STATE.transitive_members(g)
    else:
        members = [o for o in (STATE.find_any(m) for m in g["members"]) if o is not None]
    members = [o for o in members if o["type"] in types]
    page, nxt = page_of(ctx, members, q, DIR_PAGE, DIR_MAX_PAGE)
    out = {"@odata.context": dir_context(ctx, DIR_SETS[types[0]] if cast else
                                         "directoryObjects", select)}
    if count:
        out["@odata.count"] = len(members)
    out["value"] = [render_dir(o, select, typed=True) for o in page]
    if nxt:
        out["@odata.nextLink"] = nxt
    return Response(200, out)


def not_emulated_delta(ctx):
    raise ApiError(501, "NotEmulatedByFakeGraph", "fakegraph emulates delta for users, "
                   "organisational contacts and contacts in a contact folder only.")


# Literal segments come before parameters: the first match wins.
route("users", "users", "directory", "users", GET=list_users)
route("users/delta", "users_delta", "directory", "users", GET=users_delta)
route("users/{user}", "user", "user", "users", GET=get_user)
route("users/{user}/manager", "user_manager", "directory", "users", GET=get_user_manager)
route("users/{user}/photo", "user_photo", "directory", "users",
      GET=lambda ctx: user_photo(ctx, True))
route("users/{user}/photo/$value", "user_photo", "directory", "users",
      GET=lambda ctx: user_photo(ctx, False))
route("users/{user}/contactFolders", "contactFolders", GET=list_folders, POST=create_folder)
route("users/{user}/contactFolders/delta", "contactFolders_delta", GET=not_emulated_delta)
route("users/{user}/contactFolders/{folder}", "contactFolder", GET=get_folder,
      PATCH=update_folder, DELETE=delete_folder)
route("users/{user}/contactFolders/{folder}/contacts", "contacts", GET=list_contacts,
      POST=create_contact)
route("users/{user}/contactFolders/{folder}/contacts/delta", "contacts_delta",
      GET=contacts_delta)
route("users/{user}/contacts/delta", "contacts_delta", GET=default_folder)
for _prefix in ("users/{user}/contactFolders/{folder}/contacts/{contact}",
                "users/{user}/contacts/{contact}"):
    route(_prefix, "contact", GET=get_contact, PATCH=update_contact, DELETE=delete_contact)
    route(_prefix + "/photo", "photo", GET=get_photo_meta)
    route(_prefix + "/photo/$value", "photo", GET=get_photo, PUT=put_photo, PATCH=put_photo,
          DELETE=delete_photo)
route("users/{user}/contacts", "contacts", GET=list_contacts, POST=create_contact)
route("contacts", "orgContacts", "directory", "orgContacts", GET=list_org_contacts)
route("contacts/delta", "orgContacts_delta", "directory", "orgContacts", GET=org_contacts_delta)
route("contacts/{id}", "orgContact", "directory", "orgContacts", GET=get_org_contact)
route("groups", "groups", "directory", "groups", GET=list_groups)
route("groups/delta", "groups_delta", "directory", "groups", GET=not_emulated_delta)
route("groups/{group}", "group", "directory", "groups", GET=get_group)
route("groups/{group}/members", "members", "directory", "groups",
      GET=lambda ctx: group_members(ctx, False))
route("groups/{group}/members/{cast}", "members", "directory", "groups",
      GET=lambda ctx: group_members(ctx, False))
route("groups/{group}/transitiveMembers", "transitiveMembers", "directory", "groups",
      GET=lambda ctx: group_members(ctx, True))
route("groups/{group}/transitiveMembers/{cast}", "transitiveMembers", "directory", "groups",
      GET=lambda ctx: group_members(ctx, True))


# --- JSON batching ------------------------------------------------------------------
class BatchItem:
    def __init__(self, rid, method, url, headers, body, deps):
        self.id, self.method, self.url = rid, method, url
        self.headers, self.body, self.deps = headers, body, deps


def parse_batch(doc):
    """The $batch payload -> [BatchItem]; a malformed payload is one 400."""
    reqs = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(reqs, list) or not reqs:
        raise bad_request("Invalid batch payload format: a \"requests\" array is required.")
    if len(reqs) > MAX_BATCH:
        raise bad_request(f"Invalid batch payload format: {len(reqs)} requests; a batch holds "
                          f"at most {MAX_BATCH}.")
    items, seen = [], set()
    for r in reqs:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r["id"]:
            raise bad_request("Each batch request needs a string id.")
        if r["id"].lower() in seen:
            raise bad_request(f"The batch request id '{r['id']}' is not unique.")
        seen.add(r["id"].lower())
        method = r.get("method")
        if not isinstance(method, str) or method.upper() not in ("GET", "POST", "PUT", "PATCH",
                                                                  "DELETE"):
            raise bad_request(f"The batch request '{r['id']}' has no valid method.")
        headers = r.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise bad_request(f"The headers of batch request '{r['id']}' must be strings.")
        deps = r.get("dependsOn") or []
        if not isinstance(deps, list) or not all(isinstance(x, str) for x in deps):
            raise bad_request(f"dependsOn of batch request '{r['id']}' must be an array of ids.")
        if not isinstance(r.get("url"), str):
            raise bad_request(f"The batch request '{r['id']}' needs a url.")
        items.append(BatchItem(r["id"], method.upper(), r["url"], headers,
                               batch_body(r, headers), deps))
    check_dependencies(items)
    return items


def batch_body(r, headers):
    if r.get("body") is None:
        return b""
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if ctype is None:
        raise bad_request(f"The batch request '{r['id']}' has a body but no Content-Type header.")
    if "json" in ctype.lower():
        return json.dumps(r["body"]).encode()
    if not isinstance(r["body"], str):
        raise bad_request(f"The body of batch request '{r['id']}' must be base64 for {ctype}.")
    try:
        s = r["body"].replace("-", "+").replace("_", "/")
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except ValueError:
        raise bad_request(f"The body of batch request '{r['id']}' is not valid base64.")


def check_dependencies(items):
    ids = {i.id.lower(): i for i in items}
    for i in items:
        for d in i.deps:
            if d.lower() not in ids or d.lower() == i.id.lower():
                raise bad_request(f"Batch request '{i.id}' depends on unknown request '{d}'.")
    state = {}

    def visit(i):  # a cycle would never run
        if state.get(i.id) == 1:
            raise bad_request("The batch requests' dependsOn form a cycle.")
        if state.get(i.id) != 2:
            state[i.id] = 1
            for d in i.deps:
                visit(ids[d.lower()])
            state[i.id] = 2
    for i in items:
        visit(i)


def begin_sub_request(item, app, origin, fault):
    """A sub-request admitted (an Op) or answered at once (a Response). Its
    own headers count (Prefer: IdType too): Graph applies a header to the
    request it is sent with."""
    url = item.url.strip()
    path, _, query = ("/" + url.lstrip("/")).partition("?")
    item.path, item.ctx = path, None
    if re.match(r"^([a-z]+:)?//", url, re.IGNORECASE):
        return ApiError(400, "BadRequest", "A batch request url must be relative, such as "
                        "/users/{id}/contactFolders.").response()
    if re.match(r"^/(v1\.0|beta)(/|$)", path, re.IGNORECASE):
        return ApiError(400, "BadRequest", "A batch request url is relative to the version: "
                        "drop the /v1.0.").response()
    STATS.add("sub_requests")
    item.ctx = Ctx(item.method, path, query, item.headers, item.body, app, origin)
    return begin_api(item.ctx, fault)


def run_batch(items, app, origin, faults, parent):
    """Runs the batch in waves: up to 4 requests whose dependencies are done
    take their mailbox slots together, spend one latency at once (as 4
    parallel requests would) and run; a request after a failed dependency is
    424. Returns [(item, Response)] in completion order, shuffled within a
    wave (Graph answers in any order)."""
    results, order, pending = {}, [], list(items)
    while pending:
        wave, start = [], LOG.now()
        for item in list(pending):
            deps = [d.lower() for d in item.deps]
            if not all(d in results for d in deps):
                continue
            pending.remove(item)
            if any(not 200 <= results[d].status < 300 for d in deps):
                STATS.add("failed_dependency")
                resp = ApiError(424, "FailedDependency", "A request this one depends on "
                                "failed.").response()
                item.path, item.ctx = item.url.split("?")[0], None
                item.kind = "failed_dependency"
                wave.append((item, resp))
                continue
            wave.append((item, begin_sub_request(item, app, origin, faults[item.id])))
            if sum(1 for _, r in wave if isinstance(r, Op)) >= BATCH_PARALLEL:
                break
        if any(isinstance(r, Op) for _, r in wave) and FAULTS.latency():
            time.sleep(FAULTS.latency())
        done = []
        for item, r in wave:
            resp = finish_api(r) if isinstance(r, Op) else r
            ctx = item.ctx
            resp.mailbox = ctx.mailbox["userPrincipalName"] if ctx and ctx.mailbox else None
            kind = getattr(item, "kind", None) or (ctx.kind if ctx else "invalid")
            LOG.add(LOG.reserve(), parent, item.method, kind or "unknown", item.path,
                    resp.mailbox, app.label, resp.status, start)
            results[item.id.lower()] = resp
            done.append((item, resp))
        _SHUFFLE.shuffle(done)
        order += done
    return order


_SHUFFLE = random.Random()


def sub_response(item, resp):
    out = {"id": item.id, "status": resp.status,
           "headers": dict(standard_headers(resp), **resp.headers)}
    out["headers"].pop("x-fakegraph-throttle-cause", None)
    out["headers"].pop("x-fakegraph-retry-after-ms", None)
    if resp.raw is not None:
        out["headers"]["Content-Type"] = resp.ctype
        out["body"] = base64.b64encode(resp.raw).decode()
    elif resp.body is not None:
        out["headers"]["Content-Type"] = JSON_TYPE
        out["body"] = resp.body
    STATS.add("status", str(resp.status))
    return out


def handle_batch(body, app, origin, parent):
    STATS.add("batch_calls")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return bad_request("Invalid batch payload format: the body is not JSON.").response()
    try:
        items = parse_batch(doc)
    except ApiError as e:
        return e.response()
    faults = {i.id: FAULTS.draw() for i in items}  # in request order: deterministic
    done = run_batch(items, app, origin, faults, parent)
    resp = Response(200, {"responses": [sub_response(i, r) for i, r in done]})
    resp.dropped = next((r.dropped for _, r in done if r.dropped), None)
    mailboxes = {r.mailbox for _, r in done if getattr(r, "mailbox", None)}
    resp.mailbox = mailboxes.pop() if len(mailboxes) == 1 else None
    resp.sub_count = len(items)
    return resp


# --- HTTP -------------------------------------------------------------------------------
TOKEN_PATH = re.compile(r"^/([^/]+)/oauth2/v2\.0/token/?$", re.IGNORECASE)


class BodyTooLarge(Exception):
    pass


class BadFraming(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakegraph"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def dispatch(self):
        try:
            self.route_request()
        except BodyTooLarge:
            self.close_connection = True
            self.send_json(413, error_body("RequestEntityTooLarge", "The request is too large."))
        except BadFraming:
            self.close_connection = True
            self.send_json(400, error_body("BadRequest", "The request body is not framed right "
                                           "(Content-Length or chunked encoding)."))
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - a test server answers, it does not die
            sys.stderr.write(f"fakegraph: internal error on {self.command} {self.path}: {e!r}\n")
            self.close_connection = True
            try:
                self.send_json(500, error_body("InternalServerError", "fakegraph failed."))
            except OSError:
                pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            while True:
                try:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise BadFraming()
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    raise BodyTooLarge()
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadFraming()
        if n < 0:
            raise BadFraming()
        if n > MAX_BODY:
            raise BodyTooLarge()
        return self.rfile.read(n) if n else b""

    def origins(self):
        """This server's origin and the one the client named in Host."""
        out = [ORIGIN]
        host = self.headers.get("Host")
        if host and re.match(r"^[\w.\-\[\]:]+$", host):
            out.append(f"http://{host}")
        return out

    def route_request(self):
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        body = self.read_body()
        if path == "/_ctl" or path.startswith("/_ctl/"):
            return self.ctl(path, split.query, body)
        start, rid = LOG.now(), LOG.reserve()
        m = TOKEN_PATH.match(path)
        if m:
            STATS.add("token_requests")
            status, out = AUTH.token_request(self.command, urllib.parse.unquote(m.group(1)),
                                             self.headers.get("Content-Type", ""), body,
                                             self.origins(),
                                             self.headers.get("Authorization", ""))
            LOG.add(rid, None, self.command, "token", path, None, None, status, start)
            self.send_json(status, out, {"Cache-Control": "no-store", "Pragma": "no-cache"},
                           "application/json; charset=utf-8")
            return
        if not path.lower().startswith("/v1.0/"):
            self.send_json(404, error_body("UnknownPath", f"No resource at '{path}'."))
            LOG.add(rid, None, self.command, "unknown", path, None, None, 404, start)
            return
        STATS.add("http_requests")
        app = self.authenticate()
        if app is None:
            LOG.add(rid, None, self.command, "unauthenticated", path, None, None, 401, start)
            return
        fault = FAULTS.draw()
        rest = path[len("/v1.0"):]
        kind, mailbox, subs = None, None, None
        if urllib.parse.unquote(rest).lower() == "/$batch":
            kind = "batch"
            if self.command != "POST":
                resp = ApiError(405, "BadRequest", "A batch is sent with POST.").response()
            elif fault:
                resp = injected(fault).response()
            else:
                resp = handle_batch(body, app, ORIGIN, rid)
                mailbox, subs = getattr(resp, "mailbox", None), getattr(resp, "sub_count", None)
        else:
            ctx = Ctx(self.command, rest, split.query, dict(self.headers.items()), body, app,
                      ORIGIN)
            resp = handle_api(ctx, fault)
            kind = ctx.kind or "unknown"
            mailbox = ctx.mailbox["userPrincipalName"] if ctx.mailbox else None
        # Logged before the answer goes out: a client that has its answer finds
        # the request in the log (and a log/reset it sends next clears it).
        self.answer(resp, lambda status: LOG.add(rid, None, self.command, kind, path, mailbox,
                                                 app.label, status, start, subs))

    def authenticate(self):
        auth = self.headers.get("Authorization", "")
        m = re.match(r"^Bearer\s+(\S+)\s*$", auth, re.IGNORECASE)
        message = "Access token is empty." if not auth else "The access token is not valid."
        if m and m.group(1) in TOKENS:
            return App(TOKENS[m.group(1)])
        if m:
            found = AUTH.lookup(m.group(1))
            if isinstance(found, App):
                return found
            if found == "expired":
                message = "Access token has expired or is not yet valid."
        self.send_json(401, error_body("InvalidAuthenticationToken", message),
                       {"WWW-Authenticate": 'Bearer realm="fakegraph", error="invalid_token", '
                        f'client_id="{GRAPH_APP_ID}"'})
        STATS.add("status", "401")
        return None

    def answer(self, resp, log=None):
        """Sends the answer; returns the status sent (0: none, the connection
        was closed), which log (if given) is told first."""
        if resp.dropped == "close":
            self.close_connection = True  # the write is done; its answer never comes
            if log:
                log(0)
            return 0
        if resp.dropped == "500":
            resp = Response(500, error_body("InternalServerError", "The answer was lost "
                                            "(injected; the write was done)."))
        STATS.add("status", str(resp.status))
        if log:
            log(resp.status)
        headers = dict(standard_headers(resp), **resp.headers)
        if resp.raw is not None:
            self.send_bytes(resp.status, resp.raw, resp.ctype, headers)
        elif resp.body is None:
            self.send_bytes(resp.status, b"", None, headers)
        else:
            self.send_json(resp.status, resp.body, headers)
        return resp.status

    def send_json(self, status, obj, headers=None, ctype=JSON_TYPE):
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_bytes(status, data, ctype, headers)

    def send_bytes(self, status, data, ctype, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("request-id", str(uuid.uuid4()))
        cid = self.headers.get("client-request-id")
        if cid and re.match(r"^[\w.-]{1,100}$", cid):
            self.send_header("client-request-id", cid)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    # --- control -------------------------------------------------------------------------
    def ctl(self, path, query, body):
        try:
            if not loopback(self.client_address[0]):
                raise ApiError(403, "Forbidden", "/_ctl answers loopback clients only.")
            status, out = self.ctl_action(path.rstrip("/"), query, body)
        except ApiError as e:
            status, out = e.status, error_body(e.code, e.message)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            status, out = 400, error_body("BadRequest", f"The control request is not "
                                          f"understood: {e!r}")
        if out is None:
            return self.send_bytes(status, b"", None)
        self.send_json(status, out)

    CTL_BODIES = ("/_ctl/load", "/_ctl/faults", "/_ctl/limits", "/_ctl/auth",
                  "/_ctl/directory/upsert", "/_ctl/directory/delete", "/_ctl/delta/expire")

    def ctl_action(self, path, query, body):
        get = self.command == "GET"
        post = self.command == "POST"
        params = dict(urllib.parse.parse_qsl(query))
        doc = None
        if post and path in self.CTL_BODIES:
            try:
                doc = json.loads(body.decode("utf-8") or "{}")
            except (UnicodeDecodeError, ValueError):
                raise bad_request("The control request body is not JSON.")
        if path == "/_ctl/dump" and (get or post):
            return 200, STATE.dump()
        if path == "/_ctl/stats" and (get or post):
            return 200, STATS.json()
        if path == "/_ctl/faults" and (get or post):
            if post:
                FAULTS.set(doc)
            return 200, FAULTS.json()
        if path == "/_ctl/limits" and (get or post):
            if post:
                THROTTLE.set(doc if isinstance(doc, dict) else {"": 0})
            return 200, dict(THROTTLE.limits)
        if path == "/_ctl/auth" and (get or post):
            if post:
                AUTH.set(doc)
            return 200, AUTH.json()
        if post and path == "/_ctl/auth/expire":
            return 200, {"expired": AUTH.expire_all()}
        if post and path == "/_ctl/load":
            STATE.load(doc)
            return 204, None
        if post and path == "/_ctl/directory/upsert":
            with STATE.lock:
                return 200, STATE.upsert_dir(doc)
        if post and path == "/_ctl/directory/delete":
            with STATE.lock:
                return 200, STATE.delete_dir(doc)
        if post and path == "/_ctl/delta/expire":
            code = (doc or {}).get("code", "syncStateNotFound") if isinstance(doc, dict) else None
            if code not in ("syncStateNotFound", "resyncRequired"):
                raise bad_request("delta/expire takes {\"code\": \"syncStateNotFound\" or "
                                  "\"resyncRequired\"}.")
            return 200, {"expired": DELTA.expire(code)}
        if path == "/_ctl/log" and get:
            try:
                offset = int(params.get("offset", 0))
                limit = int(params["limit"]) if "limit" in params else None
            except ValueError:
                raise bad_request("offset and limit must be integers.")
            return 200, LOG.entries(max(0, offset), limit)
        if path == "/_ctl/log/summary" and get:
            return 200, LOG.summary()
        if post and path == "/_ctl/log/reset":
            LOG.reset()
            return 204, None
        if path == "/_ctl/bound" and get:
            return 200, wall_time_bound(params)
        if post and path == "/_ctl/reset":
            STATE.reset()
            FAULTS.set({})
            THROTTLE.reset()
            STATS.reset()
            AUTH.reset()
            LOG.reset()
            return 204, None
        if post and path == "/_ctl/stats/reset":
            STATS.reset()
            return 204, None
        raise ApiError(404, "UnknownPath", f"No control endpoint {self.command} {path}.")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass  # a client killed mid-request (the crash tests do that) is no news

    def get_request(self):
        # http.server writes an answer's headers and body apart: with Nagle's
        # algorithm and the client's delayed ACK the body waits ~40 ms, which
        # is no latency of Graph's (--latency-ms is the one to set).
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


def loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv):
    p = argparse.ArgumentParser(description="A fake Microsoft Graph for contact sync tests.")
    p.add_argument("port_arg", nargs="?", type=int, help="the port (as fakedav.py takes it)")
    p.add_argument("--port", type=int, default=None, help="0 picks a free port")
    p.add_argument("--host", default="127.0.0.1", help="a loopback address")
    p.add_argument("--token", action="append", help="an accepted bearer token (repeatable)")
    p.add_argument("--mailboxes", default="", help="comma-separated user principal names")
    p.add_argument("--concurrency", type=int, default=Throttle.DEFAULTS["concurrency"])
    p.add_argument("--window-requests", type=int, default=Throttle.DEFAULTS["window_requests"])
    p.add_argument("--window-seconds", type=float, default=Throttle.DEFAULTS["window_seconds"])
    p.add_argument("--upload-bytes", type=int, default=Throttle.DEFAULTS["upload_bytes"])
    p.add_argument("--upload-seconds", type=float, default=Throttle.DEFAULTS["upload_seconds"])
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="emulated seconds per wall second (windows, Retry-After, delta tokens)")
    p.add_argument("--delta-lifetime", type=float, default=Throttle.DEFAULTS["delta_seconds"],
                   help="emulated seconds a delta token stays valid (default 7 days)")
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="service time of each request and each batch sub-request")
    p.add_argument("--tenant", action="append", default=[],
                   help="a tenant id or domain the token endpoint knows (repeatable, or a "
                        "comma list; all name the one emulated directory)")
    p.add_argument("--client-id", default=None, help="the app registration's client id")
    p.add_argument("--client-secret", action="append", default=[],
                   help="an accepted client secret (repeatable)")
    p.add_argument("--client-cert", action="append", default=[],
                   help="a PEM file with the app's certificate (repeatable)")
    p.add_argument("--roles", default=",".join(DEFAULT_ROLES),
                   help="application permissions in issued tokens (comma list; '' for none)")
    p.add_argument("--token-lifetime", type=float, default=3599.0,
                   help="seconds an issued token is valid (wall clock)")
    a = p.parse_args(argv)
    if not loopback(a.host):
        p.error(f"refusing to listen on {a.host}: /_ctl has no authentication, so fakegraph "
                "listens on loopback only")
    limits = {"concurrency": a.concurrency, "window_requests": a.window_requests,
              "window_seconds": a.window_seconds, "upload_bytes": a.upload_bytes,
              "upload_seconds": a.upload_seconds, "time_scale": a.time_scale,
              "delta_seconds": a.delta_lifetime}
    if min(limits.values()) <= 0 or a.token_lifetime <= 0 or a.latency_ms < 0:
        p.error("every limit, the time scale and the token lifetime must be positive")
    certs = []
    for path in a.client_cert:
        try:
            with open(path, encoding="ascii") as fh:
                certs.append(fh.read())
        except (OSError, UnicodeDecodeError) as e:
            p.error(f"cannot read --client-cert {path}: {e}")
    auth = {"tenants": [t.strip() for x in a.tenant for t in x.split(",") if t.strip()],
            "client_id": a.client_id, "client_secrets": a.client_secret, "client_certs": certs,
            "roles": a.roles, "token_lifetime": a.token_lifetime}
    port = a.port if a.port is not None else (a.port_arg or 0)
    return a, port, limits, auth


STATS = Stats()
FAULTS = Faults()
DELTA = DeltaStore()
LOG = RequestLog()
THROTTLE = Throttle(Throttle.DEFAULTS)
AUTH = Auth({})
STATE = State([])
TOKENS = {"test-token": "static-token-1"}   # accepted token -> the app it stands for
ORIGIN = ""


def main(argv):
    global STATE, THROTTLE, TOKENS, ORIGIN, FAULTS, AUTH
    a, port, limits, auth = parse_args(argv)
    TOKENS = {t: f"static-token-{i}" for i, t in enumerate(a.token or ["test-token"], 1)}
    THROTTLE = Throttle(limits)
    FAULTS = Faults(a.latency_ms)
    try:
        AUTH = Auth(auth)
    except ApiError as e:
        sys.exit(f"fakegraph: {e.message}")
    STATE = State([m.strip() for m in a.mailboxes.split(",") if m.strip()])
    if ":" in a.host:
        Server.address_family = socket.AF_INET6
    server = Server((a.host, port), Handler)
    port = server.server_address[1]
    host = f"[{a.host}]" if ":" in a.host else a.host
    ORIGIN = f"http://{host}:{port}"
    LOG.reset()
    print(f"ready {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
