"""A fake Microsoft Graph v1.0 for roster's Graph connector tests: personal
contact folders and contacts in Exchange Online mailboxes. It runs as its own
process on loopback, so it outlives a roster that crashes (crash and
convergence tests kill roster at a failpoint, then look at what the server
holds, as the crash matrix does with fakedav.py).

Emulated, as Microsoft documents it (names and types checked against
/work/shared/graph/graph-v1.0-contacts-calendars.csdl.xml):
- Bearer authentication: any token given with --token; else 401
  InvalidAuthenticationToken. Each token stands for one app.
- /v1.0/users/{id or userPrincipalName}: unknown mailboxes are 404 ErrorInvalidUser.
- contactFolders: list ($filter=displayName eq '...', $select, $top, paging),
  create (201; a duplicate name is 409 ErrorFolderExists), get, rename (PATCH),
  delete (its contacts go with it).
- contacts in a folder: list with $top (1..1000, default 10) and an absolute
  @odata.nextLink on this server's origin carrying a $skiptoken (an offset, as
  Exchange's own $skip: deleting while paging shifts later items), $select,
  $expand=singleValueExtendedProperties($filter=id eq '...'); create (201),
  get, PATCH as a merge (null or [] clears a property), delete (204), If-Match
  on PATCH and DELETE (412 ErrorIrresolvableConflict). Item ids are opaque
  URL-safe base64 ("AAMk...="), ids of another shape are 400
  ErrorInvalidIdMalformed, missing ones 404 ErrorItemNotFound.
  /users/{u}/contacts/{id} finds a contact in any folder of the mailbox.
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
  GET .../photo (height and width read from the image).
- JSON batching: POST /v1.0/$batch, 1..20 requests (more is 400), relative
  urls, JSON or base64 bodies, dependsOn (a failed dependency is 424),
  answers in completion order. Independent requests really run on 4 threads.
- Outlook throttling per (app, mailbox): 4 concurrent requests (a 5th is 429
  ApplicationThrottled, Retry-After: 1), a request window (10,000 per 600 s)
  and an upload window (150 MB of POST/PATCH/PUT bodies per 300 s), each 429
  with a Retry-After saying when its window frees. Every batch sub-request
  counts like a request of its own.

NOT emulated (a connector must not infer these from passing here):
- the default Contacts folder (/users/{u}/contacts as a collection is 501),
  well-known folder names, childFolders, /me, delta queries, $filter on
  contacts, $orderby, $search, $count, open extensions,
  multiValueExtendedProperties, primary/secondary/tertiaryEmailAddress: an
  unemulated query option or property is refused (400), never ignored;
- real OAuth (tokens are compared as strings: no expiry, scopes or tenant),
  permissions, the per-app concurrency limit across mailboxes, Graph's global
  per-app limits, x-ms-throttle headers, Exchange's string length limits and
  its reshaping of values (birthdays are kept as sent, in UTC; phones and
  addresses verbatim; an address is replaced whole on PATCH), If-None-Match,
  Retry-After on 503, Location headers;
- removing a contact's photo or an extended property: Graph offers neither
  (DELETE .../photo/$value is 405; a null extended property value is 400);
- exact error messages: codes follow Graph, texts are this server's own.
Choices of this fake where Graph's behaviour is not documented: more than two
businessPhones or homePhones is refused (Exchange keeps two); If-Match on a
photo PUT is ignored; $expand of extended properties needs the id filter; a
body bigger than the whole upload budget passes into an empty window. Each
throttling 429 carries x-fakegraph-throttle-cause (concurrency, requests,
upload, injected) for tests; a connector must not read it.

Tests control it under /_ctl/ (no authentication; the server only listens on
loopback): GET dump (every mailbox, folder and contact with its properties,
etag, marker and photo), POST load (replace the state with such a dump; a
minimal {"mailboxes": [{"userPrincipalName": "c@x"}]} creates mailboxes),
POST reset (the start-up state; faults, limits, windows and stats too),
GET/POST faults ({"rate_429", "rate_5xx", "seed", "drop_answer_after_write",
"drop_mode": "close"|"500", "latency_ms"}; each POST replaces them all),
GET/POST limits ({"concurrency", "window_requests", "window_seconds",
"upload_bytes", "upload_seconds"}), GET stats, POST stats/reset.

    python3 fakegraph.py [PORT] [--port 0] [--host 127.0.0.1] [--token T]...
        [--mailboxes a@x,b@x] [--window-requests N --window-seconds S]
        [--upload-bytes N --upload-seconds S] [--concurrency N]
prints "ready PORT" once it listens (PORT 0 picks a free one).
"""
import argparse
import base64
import copy
import http.server
import ipaddress
import json
import math
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone

MAX_BODY = 32 * 1024 * 1024   # one HTTP request; more is 413 (a guard, not Graph's)
MAX_PHOTO = 4 * 1024 * 1024   # Graph's documented limit for a photo
MAX_BATCH = 20
BATCH_PARALLEL = 4            # Graph runs up to 4 sub-requests of a batch at once
DEFAULT_PAGE = 10
MAX_PAGE = 1000
MAX_EMAILS = 3
MAX_PHONES = 2
JSON_TYPE = ("application/json;odata.metadata=minimal;odata.streaming=true;"
             "IEEE754Compatible=false;charset=utf-8")
ID_RE = re.compile(r"^AAMk[A-Za-z0-9_-]{8,}={0,2}$")
EXT_ID_RE = re.compile(r"^(\w+)\s+(?:(\{[0-9A-Fa-f-]{36}\})\s+(Name|Id)\s+(\S.*)"
                       r"|(0x[0-9A-Fa-f]+))$", re.IGNORECASE)
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


# --- errors and answers --------------------------------------------------------
def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(code, message):
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": now_iso(), "request-id": str(uuid.uuid4())}}}


class ApiError(Exception):
    """Ends an operation with a Graph-shaped error answer."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def response(self):
        return Response(self.status, error_body(self.code, self.message), self.headers)


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


# --- ids, etags, values ----------------------------------------------------------
_RNG = random.SystemRandom()


def mint_id():
    """Opaque like an Exchange item id: URL-safe base64 ending in "=", so a
    client that builds URLs without escaping or that parses ids shows up."""
    raw = bytes(_RNG.getrandbits(8) for _ in range(35))
    return "AAMk" + base64.urlsafe_b64encode(raw).decode()


def mint_change_key():
    return "EQAAAB" + base64.b64encode(bytes(_RNG.getrandbits(8) for _ in range(18))).decode()


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
    if not ID_RE.match(value):
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
    c.update({"emailAddresses": [], "birthday": None, "id": mint_id(), "ext": {},
              "photo": None, "explicit": set(), "parentFolderId": folder_id,
              "createdDateTime": now_iso()})
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
    item["changeKey"] = mint_change_key()
    item["lastModifiedDateTime"] = now_iso()


def contact_resource(c, select=None, expand=None):
    out = {"@odata.etag": etag_of(c), "id": c["id"]}
    for p in META_PROPS + OUTPUT_ORDER:
        if select is None or p in select:
            out[p] = copy.deepcopy(c[p])
    if expand is not None:
        found = [dict(e) for canon, e in c["ext"].items() if canon in expand]
        if found:
            out[EXT_PROP] = found
    return out


def folder_resource(f, select=None):
    return {p: f[p] for p in FOLDER_PROPS if select is None or p in select or p == "id"}


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


def parse_folder_filter(q):
    if "$filter" not in q:
        return None
    m = re.match(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", q["$filter"], re.IGNORECASE)
    if not m:
        raise bad_request("fakegraph filters contact folders only by displayName eq '...'.",
                          "ErrorInvalidUrlQuery")
    return m.group(1).replace("''", "'")


def page_of(ctx, items, q):
    """One page of items and the absolute nextLink (None on the last page)."""
    try:
        top = int(q.get("$top", DEFAULT_PAGE))
    except ValueError:
        raise bad_request("$top must be an integer.", "ErrorInvalidUrlQuery")
    if not 1 <= top <= MAX_PAGE:
        raise bad_request(f"$top must be between 1 and {MAX_PAGE}.", "ErrorInvalidUrlQuery")
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
        qs = "&".join(f"{urllib.parse.quote(k, safe='$')}={urllib.parse.quote(v, safe=',()$')}"
                      for k, v in keep)
        nxt = f"{ctx.origin}/v1.0{ctx.path}?{qs}"
    return page, nxt


# --- state ----------------------------------------------------------------------
class State:
    """Mailboxes -> contact folders -> contacts, guarded by one lock."""

    def __init__(self, upns):
        self.lock = threading.RLock()
        self.initial = list(upns)
        self.reset()

    def reset(self):
        with self.lock:
            self.mailboxes = {}
            self.writes = 0
            for upn in self.initial:
                self.add_mailbox({"userPrincipalName": upn})

    def add_mailbox(self, d):
        upn = d["userPrincipalName"]
        mb = {"id": d.get("id") or str(uuid.uuid5(uuid.NAMESPACE_DNS, upn.lower())),
              "userPrincipalName": upn, "rootFolderId": d.get("rootFolderId") or mint_id(),
              "folders": {}}
        self.mailboxes[upn.lower()] = mb
        return mb

    def mailbox(self, key):
        k = key.lower()
        mb = self.mailboxes.get(k)
        if mb is None:
            mb = next((m for m in self.mailboxes.values() if m["id"].lower() == k), None)
        if mb is None:
            raise ApiError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
        return mb

    def dump(self):
        with self.lock:
            out = []
            for mb in self.mailboxes.values():
                folders = [dict(folder_resource(f), contacts=[dump_contact(c) for c in
                                                              f["contacts"].values()])
                           for f in mb["folders"].values()]
                out.append({"id": mb["id"], "userPrincipalName": mb["userPrincipalName"],
                            "rootFolderId": mb["rootFolderId"], "contactFolders": folders})
            return {"mailboxes": out, "writes": self.writes}

    def load(self, d):
        """Replaces the state with a dump (or a smaller hand-written one); a bad
        one raises ApiError and leaves the state as it was."""
        with self.lock:
            saved = (self.mailboxes, self.writes)
            try:
                self.mailboxes, self.writes = {}, 0
                load_mailboxes(self, d)
            except ApiError:
                self.mailboxes, self.writes = saved
                raise
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                self.mailboxes, self.writes = saved
                raise bad_request(f"The state to load is not a fakegraph dump: {e!r}")


def dump_contact(c):
    d = contact_resource(c)
    d[EXT_PROP] = [dict(e) for e in c["ext"].values()]
    p = c["photo"]
    d["photo"] = None if p is None else {"contentType": p["type"], "size": len(p["data"]),
                                         "base64": base64.b64encode(p["data"]).decode()}
    d["serverFilled"] = [k for k in SERVER_FILLED if k not in c["explicit"]]
    return d


def load_mailboxes(state, d):
    if not isinstance(d, dict) or not isinstance(d.get("mailboxes"), list):
        raise bad_request("The state to load needs a \"mailboxes\" array.")
    state.writes = int(d.get("writes", 0))
    for m in d["mailboxes"]:
        mb = state.add_mailbox(m)
        check_id(mb["rootFolderId"])
        for f in m.get("contactFolders", []):
            fid = f.get("id") or mint_id()
            check_id(fid)
            folder = {"id": fid, "displayName": f["displayName"],
                      "parentFolderId": f.get("parentFolderId") or mb["rootFolderId"],
                      "contacts": {}}
            mb["folders"][fid] = folder
            for cd in f.get("contacts", []):
                c = load_contact(cd, fid)
                folder["contacts"][c["id"]] = c


def load_contact(d, folder_id):
    body = {k: v for k, v in d.items() if k not in ("photo", "serverFilled")}
    changes, ext = parse_contact_body(body)
    c = new_contact(folder_id)
    served = d.get("serverFilled")
    for k in SERVER_FILLED:
        if served is not None and k in served:
            changes.pop(k, None)
    apply_changes(c, changes, ext)
    if d.get("id"):
        check_id(d["id"])
        c["id"] = d["id"]
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
                      "writes": {k: 0 for k in WRITE_KINDS}}

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
    upload bytes per window (fixed windows opened by their first request)."""

    DEFAULTS = {"concurrency": 4, "window_requests": 10000, "window_seconds": 600.0,
                "upload_bytes": 150 * 1024 * 1024, "upload_seconds": 300.0}

    def __init__(self, limits):
        self.lock = threading.Lock()
        self.start = dict(limits)
        self.limits = dict(limits)
        self.buckets = {}

    def set(self, d):
        unknown = set(d) - set(self.DEFAULTS)
        if unknown:
            raise bad_request(f"Unknown limits: {sorted(unknown)}")
        with self.lock:
            for k, v in d.items():
                if not isinstance(v, (int, float)) or v <= 0:
                    raise bad_request(f"The limit {k} must be a positive number.")
                self.limits[k] = v
            self.buckets = {}

    def reset(self):
        with self.lock:
            self.limits, self.buckets = dict(self.start), {}

    def admit(self, app, mailbox, upload):
        """Takes a slot or raises the 429; the caller must release() after."""
        now, lim = time.monotonic(), self.limits
        with self.lock:
            b = self.buckets.setdefault((app, mailbox), Bucket())
            if b.active >= lim["concurrency"]:
                raise throttled("concurrency", 1, "Application is over its MailboxConcurrency "
                                "limit.")
            if b.req_start is None or now - b.req_start >= lim["window_seconds"]:
                b.req_start, b.req_count = now, 0
            if b.req_count >= lim["window_requests"]:
                raise throttled("requests", b.req_start + lim["window_seconds"] - now,
                                f"Application is over its limit of {lim['window_requests']} "
                                f"requests per {lim['window_seconds']} s for this mailbox.")
            if upload:
                if b.up_start is None or now - b.up_start >= lim["upload_seconds"]:
                    b.up_start, b.up_bytes = now, 0
                # A body larger than the whole budget still passes into an empty
                # window; otherwise it could never be sent.
                if b.up_bytes and b.up_bytes + upload > lim["upload_bytes"]:
                    raise throttled("upload", b.up_start + lim["upload_seconds"] - now,
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


def throttled(cause, seconds, message):
    STATS.add("throttled", cause)
    retry = str(max(1, math.ceil(seconds)))
    return ApiError(429, "ApplicationThrottled", message,
                    {"Retry-After": retry, "x-fakegraph-throttle-cause": cause})


class Faults:
    KEYS = {"rate_429": 0.0, "rate_5xx": 0.0, "seed": 0, "drop_answer_after_write": 0,
            "drop_mode": "close", "latency_ms": 0}

    def __init__(self):
        self.lock = threading.Lock()
        self.set({})

    def set(self, d):
        if not isinstance(d, dict) or set(d) - set(self.KEYS):
            raise bad_request(f"faults take only {sorted(self.KEYS)}")
        v = dict(self.KEYS, **d)
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
                        {"Retry-After": "1", "x-fakegraph-throttle-cause": "injected"})
    STATS.add("injected_5xx")
    return ApiError(503, "ServiceUnavailable", "The service is unavailable (injected).")


# --- the API: routing ---------------------------------------------------------------
class Ctx:
    """One API operation: a plain request or a batch sub-request."""

    def __init__(self, method, path, query, headers, body, app, origin):
        self.method, self.path, self.query = method, path, query
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body, self.app, self.origin = body, app, origin
        self.params, self.mailbox = {}, None

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


def route(pattern, kind, **methods):
    ROUTES.append(([s for s in pattern.split("/") if s], kind, methods))


def match_route(ctx):
    segs = [urllib.parse.unquote(s) for s in ctx.path.split("/") if s]
    for pattern, kind, methods in ROUTES:
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
            return kind, handler
    raise ApiError(404, "UnknownPath", f"fakegraph has no resource at '{ctx.path}'.")


def handle_api(ctx, fault):
    """Runs one operation through routing, faults and throttling."""
    try:
        kind, handler = match_route(ctx)
    except ApiError as e:
        return e.response()
    STATS.add("by_method", ctx.method)
    STATS.add("by_kind", kind)
    try:
        if fault:
            raise injected(fault)
        with STATE.lock:
            ctx.mailbox = STATE.mailbox(ctx.params["user"])
        upload = len(ctx.body) if ctx.method in ("POST", "PATCH", "PUT") else 0
        release = THROTTLE.admit(ctx.app, ctx.mailbox["userPrincipalName"], upload)
        try:
            if FAULTS.latency():
                time.sleep(FAULTS.latency())
            with STATE.lock:
                resp = handler(ctx)
                if resp.write:
                    STATE.writes += 1
        finally:
            release()
    except ApiError as e:
        return e.response()
    if resp.write:
        STATS.add("writes", resp.write)
        resp.dropped = FAULTS.take_drop()
        if resp.dropped:
            STATS.add("answers_dropped")
    return resp


def context_url(ctx, tail):
    return f"{ctx.origin}/v1.0/$metadata#users('{ctx.mailbox['userPrincipalName']}')/{tail}"


def find_folder(ctx):
    fid = ctx.params["folder"]
    check_id(fid)
    f = ctx.mailbox["folders"].get(fid)
    if f is None:
        raise not_found()
    return f


def find_contact(ctx):
    """(folder, contact) by the path's ids; a contact id alone is looked up in
    every folder, as /users/{u}/contacts/{id} does."""
    cid = ctx.params["contact"]
    check_id(cid)
    folders = [find_folder(ctx)] if "folder" in ctx.params else ctx.mailbox["folders"].values()
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


# --- the API: handlers ---------------------------------------------------------------
def get_user(ctx):
    parse_query(ctx.query, {"$select"})
    mb = ctx.mailbox
    return Response(200, {"id": mb["id"], "userPrincipalName": mb["userPrincipalName"],
                          "mail": mb["userPrincipalName"]})


def list_folders(ctx):
    q = parse_query(ctx.query, {"$filter", "$top", "$skiptoken", "$skip", "$select"})
    select = parse_select(q, FOLDER_PROPS)
    name = parse_folder_filter(q)
    folders = [f for f in ctx.mailbox["folders"].values()
               if name is None or f["displayName"].casefold() == name.casefold()]
    page, nxt = page_of(ctx, folders, q)
    out = {"@odata.context": context_url(ctx, "contactFolders"),
           "value": [folder_resource(f, select) for f in page]}
    if nxt:
        out["@odata.nextLink"] = nxt
    return Response(200, out)


def folder_name(body):
    if not isinstance(body, dict) or set(body) - {"displayName", "parentFolderId"} - {
            k for k in body if k.startswith("@odata.")}:
        raise bad_request("A contactFolder takes displayName (and parentFolderId).",
                          "RequestBodyRead")
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The contactFolder needs a non-empty displayName.", "ErrorInvalidRequest")
    return name


def check_unique_name(ctx, name, except_id=None):
    for f in ctx.mailbox["folders"].values():
        if f["id"] != except_id and f["displayName"].casefold() == name.casefold():
            raise ApiError(409, "ErrorFolderExists",
                           "A folder with the specified name already exists.")


def create_folder(ctx):
    parse_query(ctx.query, set())
    body = ctx.json_body()
    name = folder_name(body)
    parent = body.get("parentFolderId")
    if parent is not None and parent != ctx.mailbox["rootFolderId"]:
        raise bad_request("fakegraph creates folders only under the default Contacts folder.",
                          "NotEmulatedByFakeGraph")
    check_unique_name(ctx, name)
    f = {"id": mint_id(), "displayName": name, "parentFolderId": ctx.mailbox["rootFolderId"],
         "contacts": {}}
    ctx.mailbox["folders"][f["id"]] = f
    out = dict(folder_resource(f), **{"@odata.context": context_url(ctx, "contactFolders/$entity")})
    return Response(201, out, write="folder_create")


def get_folder(ctx):
    select = parse_select(parse_query(ctx.query, {"$select"}), FOLDER_PROPS)
    return Response(200, folder_resource(find_folder(ctx), select))


def update_folder(ctx):
    f = find_folder(ctx)
    name = folder_name(ctx.json_body())
    check_unique_name(ctx, name, f["id"])
    f["displayName"] = name
    return Response(200, folder_resource(f), write="folder_update")


def delete_folder(ctx):
    f = find_folder(ctx)
    del ctx.mailbox["folders"][f["id"]]
    return Response(204, write="folder_delete")


CONTACT_SELECT = ("id",) + META_PROPS + OUTPUT_ORDER


def list_contacts(ctx):
    q = parse_query(ctx.query, {"$top", "$skiptoken", "$skip", "$select", "$expand"})
    select, expand = parse_select(q, CONTACT_SELECT), parse_expand(q)
    f = find_folder(ctx)
    page, nxt = page_of(ctx, list(f["contacts"].values()), q)
    out = {"@odata.context": context_url(ctx, f"contactFolders('{f['id']}')/contacts"),
           "value": [contact_resource(c, select, expand) for c in page]}
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
    out = dict(contact_resource(c), **{"@odata.context": context_url(
        ctx, f"contactFolders('{f['id']}')/contacts/$entity")})
    return Response(201, out, write="contact_create")


def get_contact(ctx):
    q = parse_query(ctx.query, {"$select", "$expand"})
    select, expand = parse_select(q, CONTACT_SELECT), parse_expand(q)
    _, c = find_contact(ctx)
    return Response(200, contact_resource(c, select, expand))


def update_contact(ctx):
    parse_query(ctx.query, set())
    _, c = find_contact(ctx)
    check_if_match(ctx, c)
    changes, ext = parse_contact_body(ctx.json_body())
    apply_changes(c, changes, ext)
    return Response(200, contact_resource(c), write="contact_update")


def delete_contact(ctx):
    f, c = find_contact(ctx)
    check_if_match(ctx, c)
    del f["contacts"][c["id"]]
    return Response(204, write="contact_delete")


def get_photo_meta(ctx):
    _, c = find_contact(ctx)
    if c["photo"] is None:
        raise not_found("The photo wasn't found.")
    w, h = image_size(c["photo"]["data"])
    return Response(200, {"@odata.mediaContentType": c["photo"]["type"],
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
    raise ApiError(501, "NotEmulatedByFakeGraph", "fakegraph does not emulate the default "
                   "Contacts folder; use /contactFolders/{id}/contacts.")


route("users/{user}", "user", GET=get_user)
route("users/{user}/contactFolders", "contactFolders", GET=list_folders, POST=create_folder)
route("users/{user}/contactFolders/{folder}", "contactFolder", GET=get_folder,
      PATCH=update_folder, DELETE=delete_folder)
route("users/{user}/contactFolders/{folder}/contacts", "contacts", GET=list_contacts,
      POST=create_contact)
for _prefix in ("users/{user}/contactFolders/{folder}/contacts/{contact}",
                "users/{user}/contacts/{contact}"):
    route(_prefix, "contact", GET=get_contact, PATCH=update_contact, DELETE=delete_contact)
    route(_prefix + "/photo", "photo", GET=get_photo_meta)
    route(_prefix + "/photo/$value", "photo", GET=get_photo, PUT=put_photo, PATCH=put_photo,
          DELETE=delete_photo)
route("users/{user}/contacts", "contacts", GET=default_folder, POST=default_folder)


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


def run_sub_request(item, app, origin, fault):
    url = item.url.strip()
    if re.match(r"^([a-z]+:)?//", url, re.IGNORECASE):
        return ApiError(400, "BadRequest", "A batch request url must be relative, such as "
                        "/users/{id}/contactFolders.").response()
    path, _, query = ("/" + url.lstrip("/")).partition("?")
    if re.match(r"^/(v1\.0|beta)(/|$)", path, re.IGNORECASE):
        return ApiError(400, "BadRequest", "A batch request url is relative to the version: "
                        "drop the /v1.0.").response()
    STATS.add("sub_requests")
    return handle_api(Ctx(item.method, path, query, item.headers, item.body, app, origin), fault)


def run_batch(items, app, origin, faults):
    """Runs the batch on up to 4 threads, each request once its dependencies
    are done; returns [(item, Response)] in completion order."""
    results, order, pending, running = {}, [], list(items), {}
    with ThreadPoolExecutor(BATCH_PARALLEL) as pool:
        while pending or running:
            for item in list(pending):
                deps = [d.lower() for d in item.deps]
                if not all(d in results for d in deps):
                    continue
                pending.remove(item)
                failed = [d for d in deps if not 200 <= results[d].status < 300]
                if failed:
                    STATS.add("failed_dependency")
                    resp = ApiError(424, "FailedDependency", "A request this one depends on "
                                    "failed.").response()
                    results[item.id.lower()] = resp
                    order.append((item, resp))
                else:
                    fut = pool.submit(run_sub_request, item, app, origin, faults[item.id])
                    running[fut] = item
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                item = running.pop(fut)
                results[item.id.lower()] = fut.result()
                order.append((item, results[item.id.lower()]))
    return order


def sub_response(item, resp):
    out = {"id": item.id, "status": resp.status, "headers": dict(resp.headers)}
    out["headers"].pop("x-fakegraph-throttle-cause", None)
    if resp.raw is not None:
        out["headers"]["Content-Type"] = resp.ctype
        out["body"] = base64.b64encode(resp.raw).decode()
    elif resp.body is not None:
        out["headers"]["Content-Type"] = JSON_TYPE
        out["body"] = resp.body
    STATS.add("status", str(resp.status))
    return out


def handle_batch(body, app, origin):
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
    done = run_batch(items, app, origin, faults)
    resp = Response(200, {"responses": [sub_response(i, r) for i, r in done]})
    resp.dropped = next((r.dropped for _, r in done if r.dropped), None)
    return resp


# --- HTTP -------------------------------------------------------------------------------
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

    def route_request(self):
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        body = self.read_body()
        if path == "/_ctl" or path.startswith("/_ctl/"):
            return self.ctl(path, body)
        if not path.lower().startswith("/v1.0/"):
            return self.send_json(404, error_body("UnknownPath", f"No resource at '{path}'."))
        STATS.add("http_requests")
        app = self.authenticate()
        if app is None:
            return
        fault = FAULTS.draw()
        rest = path[len("/v1.0"):]
        if urllib.parse.unquote(rest).lower() == "/$batch":
            if self.command != "POST":
                resp = ApiError(405, "BadRequest", "A batch is sent with POST.").response()
            elif fault:
                resp = injected(fault).response()
            else:
                resp = handle_batch(body, app, ORIGIN)
        else:
            resp = handle_api(Ctx(self.command, rest, split.query, dict(self.headers.items()),
                                  body, app, ORIGIN), fault)
        self.answer(resp)

    def authenticate(self):
        auth = self.headers.get("Authorization", "")
        m = re.match(r"^Bearer\s+(\S+)\s*$", auth, re.IGNORECASE)
        if m and m.group(1) in TOKENS:
            return m.group(1)
        message = "Access token is empty." if not auth else "The access token is not valid."
        self.send_json(401, error_body("InvalidAuthenticationToken", message),
                       {"WWW-Authenticate": 'Bearer realm="fakegraph", error="invalid_token"'})
        STATS.add("status", "401")
        return None

    def answer(self, resp):
        if resp.dropped == "close":
            self.close_connection = True  # the write is done; its answer never comes
            return
        if resp.dropped == "500":
            resp = Response(500, error_body("InternalServerError", "The answer was lost "
                                            "(injected; the write was done)."))
        STATS.add("status", str(resp.status))
        if resp.raw is not None:
            return self.send_bytes(resp.status, resp.raw, resp.ctype, resp.headers)
        if resp.body is None:
            return self.send_bytes(resp.status, b"", None, resp.headers)
        self.send_json(resp.status, resp.body, resp.headers)

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_bytes(status, data, JSON_TYPE, headers)

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
    def ctl(self, path, body):
        try:
            status, out = self.ctl_action(path.rstrip("/"), body)
        except ApiError as e:
            status, out = e.status, error_body(e.code, e.message)
        if out is None:
            return self.send_bytes(status, b"", None)
        self.send_json(status, out)

    def ctl_action(self, path, body):
        get = self.command == "GET"
        post = self.command == "POST"
        doc = None
        if post and path in ("/_ctl/load", "/_ctl/faults", "/_ctl/limits"):
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
        if post and path == "/_ctl/load":
            STATE.load(doc)
            return 204, None
        if post and path == "/_ctl/reset":
            STATE.reset()
            FAULTS.set({})
            THROTTLE.reset()
            STATS.reset()
            return 204, None
        if post and path == "/_ctl/stats/reset":
            STATS.reset()
            return 204, None
        raise ApiError(404, "UnknownPath", f"No control endpoint {self.command} {path}.")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client killed mid-request (the crash tests do that) is no news


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
    a = p.parse_args(argv)
    if not loopback(a.host):
        p.error(f"refusing to listen on {a.host}: /_ctl has no authentication, so fakegraph "
                "listens on loopback only")
    limits = {"concurrency": a.concurrency, "window_requests": a.window_requests,
              "window_seconds": a.window_seconds, "upload_bytes": a.upload_bytes,
              "upload_seconds": a.upload_seconds}
    if min(limits.values()) <= 0:
        p.error("every limit must be positive")
    port = a.port if a.port is not None else (a.port_arg or 0)
    return a, port, limits


STATS = Stats()
FAULTS = Faults()
STATE = State([])
THROTTLE = Throttle(Throttle.DEFAULTS)
TOKENS = {"test-token"}
ORIGIN = ""


def main(argv):
    global STATE, THROTTLE, TOKENS, ORIGIN
    a, port, limits = parse_args(argv)
    TOKENS = set(a.token or ["test-token"])
    STATE = State([m.strip() for m in a.mailboxes.split(",") if m.strip()])
    THROTTLE = Throttle(limits)
    if ":" in a.host:
        Server.address_family = socket.AF_INET6
    server = Server((a.host, port), Handler)
    port = server.server_address[1]
    host = f"[{a.host}]" if ":" in a.host else a.host
    ORIGIN = f"http://{host}:{port}"
    print(f"ready {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
