"""Checks of fakegraph.py (the Microsoft Graph emulator for roster's Graph
connector) against what Graph documents: each test talks to the server in its
own process over HTTP with urllib only. The token tests make a certificate
and PS256 client assertions with the `openssl` command; every resource shape
the emulator emits or accepts is checked against Microsoft's v1.0 schema cut
(tests/data/graph, through graph_schema.py), and so are fakegraph's own
property tables. Prints one line per test and `fakegraph: N passed, N
failed`; exits 0 when all passed."""
import base64
import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "test-token"
MARKER = "String {00020329-0000-0000-C000-000000000046} Name roster-tag"
EXT_PROP_NAME = "singleValueExtendedProperties"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" \
       b"\xff\xc0\x00\x11\x08\x00\x30\x00\x40\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01" \
       + b"\x00" * 64 + b"\xff\xd9"


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class FakeGraph:
    """tests/integration/fakegraph.py as its own process on a free port."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fakegraph.py"),
                                      "--port", "0", "--mailboxes",
                                      "alice@example.org,bob@example.org", *args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        check(len(line) == 2 and line[0] == "ready", f"fakegraph did not start: {line}")
        self.origin = f"http://127.0.0.1:{line[1]}"

    def req(self, method, path, body=None, headers=None, token=TOKEN, raw=None):
        """(status, headers, parsed JSON or bytes); path may be absolute."""
        url = path if path.startswith("http") else self.origin + path
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if token:
            h["Authorization"] = f"Bearer {token}"
        r = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(r, timeout=20) as resp:
                return resp.status, resp.headers, decode(resp)
        except urllib.error.HTTPError as e:
            return e.code, e.headers, decode(e)

    def ctl(self, method, name, body=None):
        return self.req(method, "/_ctl/" + name, body, token=None)[2]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def decode(resp):
    data = resp.read()
    if "json" in (resp.headers.get("Content-Type") or ""):
        return json.loads(data)
    return data


def code_of(body):
    return body["error"]["code"] if isinstance(body, dict) and "error" in body else None


U = "/v1.0/users/alice@example.org"


def folder(g, name="Company"):
    s, _, b = g.req("POST", f"{U}/contactFolders", {"displayName": name})
    check(s == 201, (s, b))
    return b["id"]


def contact(g, fid, **props):
    s, _, b = g.req("POST", f"{U}/contactFolders/{fid}/contacts", props)
    check(s == 201, (s, b))
    return b


# --- the tests ---------------------------------------------------------------------
def test_auth_unknown_paths_and_bad_json(g):
    s, h, b = g.req("GET", f"{U}/contactFolders", token=None)
    check(s == 401 and code_of(b) == "InvalidAuthenticationToken", (s, b))
    s, _, b = g.req("GET", f"{U}/contactFolders", token="wrong")
    check(s == 401 and code_of(b) == "InvalidAuthenticationToken", (s, b))
    s, _, b = g.req("GET", "/v1.0/users/nobody@example.org/contactFolders")
    check(s == 404 and code_of(b) == "ErrorInvalidUser", (s, b))
    s, _, b = g.req("GET", f"{U}/calendars")
    check(s == 404 and code_of(b), (s, b))
    s, _, b = g.req("GET", "/nothing")
    check(s == 404, s)
    s, _, b = g.req("POST", f"{U}/contactFolders", raw=b"{not json",
                    headers={"Content-Type": "application/json"})
    check(s == 400 and code_of(b) == "BadRequest", (s, b))
    s, _, b = g.req("POST", "/v1.0/$batch", raw=b"[1,",
                    headers={"Content-Type": "application/json"})
    check(s == 400 and code_of(b), (s, b))
    s, _, b = g.req("POST", "/_ctl/load", raw=b"nope", token=None)
    check(s == 400 and code_of(b), (s, b))
    s, _, b = g.req("GET", f"{U}/contactFolders/not-an-id")
    check(s == 400 and code_of(b) == "ErrorInvalidIdMalformed", (s, b))
    # the mailbox is found by its id as well as its name
    s, _, user = g.req("GET", U)
    s, _, b = g.req("GET", f"/v1.0/users/{user['id']}/contactFolders")
    check(s == 200 and b["value"] == [], (s, b))


def test_folders_create_filter_page_delete(g):
    ids = [folder(g, f"Folder {i}") for i in range(3)]
    check(len(set(ids)) == 3, ids)
    s, _, b = g.req("POST", f"{U}/contactFolders", {"displayName": "folder 1"})
    check(s == 409 and code_of(b) == "ErrorFolderExists", (s, b))
    q = urllib.parse.quote("displayName eq 'Folder 1'")
    s, _, b = g.req("GET", f"{U}/contactFolders?$filter={q}")
    check(s == 200 and [f["id"] for f in b["value"]] == [ids[1]], b)
    s, _, b = g.req("GET", f"{U}/contactFolders?$top=2")
    check(len(b["value"]) == 2 and b["@odata.nextLink"].startswith(g.origin + "/v1.0/"), b)
    s, _, b2 = g.req("GET", b["@odata.nextLink"])
    check(s == 200 and [f["id"] for f in b2["value"]] == [ids[2]], b2)
    check("@odata.nextLink" not in b2, "the last page has a nextLink")
    s, _, _ = g.req("DELETE", f"{U}/contactFolders/{ids[0]}")
    check(s == 204, s)
    s, _, b = g.req("GET", f"{U}/contactFolders/{ids[0]}")
    check(s == 404 and code_of(b) == "ErrorItemNotFound", (s, b))


def test_create_assigns_ids_etags_and_fills_fileas(g):
    fid = folder(g)
    a = contact(g, fid, givenName="Ada", surname="Lovelace", jobTitle="Analyst")
    b = contact(g, fid, givenName="Alan", surname="Turing", displayName="Dr Turing")
    check(a["id"] != b["id"] and a["id"].startswith("AAMk"), (a["id"], b["id"]))
    for c in (a, b):
        check(c["@odata.etag"].startswith('W/"') and c["changeKey"] in c["@odata.etag"], c)
        check(c["createdDateTime"].endswith("Z") and c["parentFolderId"] == fid, c)
    check(a["displayName"] == "Ada Lovelace" and a["fileAs"] == "Lovelace, Ada", a)
    check(b["displayName"] == "Dr Turing" and b["fileAs"] == "Turing, Alan", b)
    check(a["homeAddress"] == {} and a["businessPhones"] == [] and a["mobilePhone"] is None, a)
    s, _, got = g.req("GET", f"{U}/contactFolders/{fid}/contacts/{a['id']}")
    check(s == 200 and got == {k: v for k, v in a.items() if k != "@odata.context"}, got)
    s, _, got = g.req("GET", f"{U}/contacts/{a['id']}?$select=givenName")
    check(s == 200 and set(got) == {"@odata.etag", "id", "givenName"}, got)


def test_patch_merges_clears_and_honours_if_match(g):
    fid = folder(g)
    c = contact(g, fid, givenName="Grace", surname="Hopper", mobilePhone="+1 555 0100",
                businessPhones=["+1 555 0101"], homeAddress={"city": "Arlington"},
                emailAddresses=[{"name": "Grace", "address": "grace@example.org"}])
    url = f"{U}/contactFolders/{fid}/contacts/{c['id']}"
    s, _, p = g.req("PATCH", url, {"jobTitle": "Rear Admiral"})
    check(s == 200 and p["jobTitle"] == "Rear Admiral" and p["givenName"] == "Grace", p)
    check(p["mobilePhone"] == "+1 555 0100" and p["emailAddresses"] == c["emailAddresses"], p)
    check(p["@odata.etag"] != c["@odata.etag"], "the etag did not change on PATCH")
    s, _, q = g.req("PATCH", url, {"mobilePhone": None, "businessPhones": [], "homeAddress": None,
                                   "surname": "Murray"})
    check(s == 200 and q["mobilePhone"] is None and q["businessPhones"] == [], q)
    check(q["homeAddress"] == {} and q["fileAs"] == "Murray, Grace", q)
    check(q["displayName"] == "Grace Murray" and q["jobTitle"] == "Rear Admiral", q)
    s, _, b = g.req("PATCH", url, {"jobTitle": "x"}, headers={"If-Match": c["@odata.etag"]})
    check(s == 412 and code_of(b) == "ErrorIrresolvableConflict", (s, b))
    s, _, b = g.req("PATCH", url, {"jobTitle": "y"}, headers={"If-Match": q["@odata.etag"]})
    check(s == 200 and b["jobTitle"] == "y", (s, b))
    s, _, b = g.req("DELETE", url, headers={"If-Match": q["@odata.etag"]})
    check(s == 412 and code_of(b) == "ErrorIrresolvableConflict", (s, b))
    s, _, _ = g.req("DELETE", url, headers={"If-Match": "*"})
    check(s == 204, s)
    s, _, b = g.req("DELETE", url)
    check(s == 404 and code_of(b) == "ErrorItemNotFound", (s, b))
    s, _, b = g.req("PATCH", url, {"jobTitle": "z"})
    check(s == 404 and code_of(b) == "ErrorItemNotFound", (s, b))
    s, _, b = g.req("PATCH", f"{U}/contactFolders/{fid}/contacts", {"jobTitle": "z"})
    check(s == 405, s)
    s, _, b = g.req("POST", f"{U}/contactFolders/{fid}/contacts", {"favouriteColour": "blue"})
    check(s == 400 and code_of(b) == "RequestBodyRead", (s, b))


def test_more_than_three_emails_refused(g):
    fid = folder(g)
    four = [{"name": f"n{i}", "address": f"a{i}@example.org"} for i in range(4)]
    s, _, b = g.req("POST", f"{U}/contactFolders/{fid}/contacts",
                    {"givenName": "Many", "emailAddresses": four})
    check(s == 400 and code_of(b) == "ErrorInvalidRequest", (s, b))
    c = contact(g, fid, givenName="Few", emailAddresses=four[:3])
    s, _, b = g.req("PATCH", f"{U}/contacts/{c['id']}", {"emailAddresses": four, "jobTitle": "x"})
    check(s == 400 and code_of(b) == "ErrorInvalidRequest", (s, b))
    s, _, b = g.req("GET", f"{U}/contacts/{c['id']}")
    check(b["emailAddresses"] == c["emailAddresses"] and b["jobTitle"] is None, "a refused "
          "PATCH changed the contact")
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts")
    check(len(b["value"]) == 1, "a refused POST created a contact")


def test_paging_with_next_link_on_same_origin(g):
    fid = folder(g)
    made = {contact(g, fid, givenName=f"P{i:02d}")["id"] for i in range(25)}
    seen, sizes = [], []
    url = f"{U}/contactFolders/{fid}/contacts?$top=10&$select=givenName"
    while url:
        s, _, b = g.req("GET", url)
        check(s == 200, (s, b))
        sizes.append(len(b["value"]))
        seen += [c["id"] for c in b["value"]]
        check(all(set(c) == {"@odata.etag", "id", "givenName"} for c in b["value"]), b["value"][0])
        url = b.get("@odata.nextLink")
        if url:
            parts = urllib.parse.urlsplit(url)
            check(f"{parts.scheme}://{parts.netloc}" == g.origin and "$skiptoken=" in url, url)
    check(sizes == [10, 10, 5] and len(seen) == 25 and set(seen) == made, sizes)
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts")
    check(len(b["value"]) == 10, "the default page is not 10")
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts?$top=1001")
    check(s == 400, s)
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts?$orderby=surname")
    check(s == 400, "an unemulated query option was silently ignored")


def test_listing_with_the_marker_expanded(g):
    fid = folder(g)
    mine = contact(g, fid, givenName="Owned",
                   singleValueExtendedProperties=[{"id": MARKER, "value": "roster:1"}])
    theirs = contact(g, fid, givenName="Users own")
    q = urllib.parse.quote(f"singleValueExtendedProperties($filter=id eq '{MARKER}')")
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts?$expand={q}&$select=givenName")
    check(s == 200, (s, b))
    by_id = {c["id"]: c for c in b["value"]}
    check(by_id[mine["id"]]["singleValueExtendedProperties"] == [
        {"id": MARKER, "value": "roster:1"}], by_id[mine["id"]])
    check("singleValueExtendedProperties" not in by_id[theirs["id"]], by_id[theirs["id"]])
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts")
    check(all("singleValueExtendedProperties" not in c for c in b["value"]),
          "the marker came back without $expand")
    # the GUID's case does not matter; PATCH merges by id
    g.req("PATCH", f"{U}/contacts/{mine['id']}", {"singleValueExtendedProperties": [
        {"id": MARKER.replace("C000", "c000"), "value": "roster:2"}]})
    s, _, one = g.req("GET", f"{U}/contacts/{mine['id']}?$expand={q}")
    props = one["singleValueExtendedProperties"]
    check(len(props) == 1 and props[0]["value"] == "roster:2", props)


def batch(g, requests):
    return g.req("POST", "/v1.0/$batch", {"requests": requests})


def test_batch_of_20_mixed_over_20_refused_and_depends_on(g):
    fid = folder(g)
    ids = [contact(g, fid, givenName=f"B{i}")["id"] for i in range(19)]
    gone = contact(g, fid, givenName="Gone")["id"]
    g.req("DELETE", f"{U}/contacts/{gone}")
    base = f"/users/alice@example.org/contactFolders/{fid}/contacts"
    reqs = [{"id": str(i), "method": "GET", "url": f"{base}/{cid}"} for i, cid in enumerate(ids)]
    reqs.append({"id": "missing", "method": "GET", "url": f"{base}/{gone}"})
    s, _, b = batch(g, reqs)
    check(s == 200 and len(b["responses"]) == 20, (s, b))
    status = {r["id"]: r["status"] for r in b["responses"]}
    check(status.pop("missing") == 404 and set(status.values()) == {200}, status)
    bodies = {r["id"]: r["body"] for r in b["responses"]}
    check(bodies["3"]["id"] == ids[3], bodies["3"])
    s, _, b = batch(g, reqs + [{"id": "21", "method": "GET", "url": f"{base}/{ids[0]}"}])
    check(s == 400 and code_of(b), (s, b))
    four = [{"address": f"x{i}@example.org"} for i in range(4)]
    s, _, b = batch(g, [
        {"id": "1", "method": "POST", "url": base, "headers": {"Content-Type": "application/json"},
         "body": {"givenName": "Bad", "emailAddresses": four}},
        {"id": "2", "dependsOn": ["1"], "method": "PATCH", "url": f"{base}/{ids[0]}",
         "headers": {"Content-Type": "application/json"}, "body": {"jobTitle": "never"}},
        {"id": "3", "dependsOn": ["2"], "method": "GET", "url": f"{base}/{ids[0]}"}])
    status = {r["id"]: r["status"] for r in b["responses"]}
    check(s == 200 and status == {"1": 400, "2": 424, "3": 424}, status)
    s, _, c = g.req("GET", f"{U}/contacts/{ids[0]}")
    check(c["jobTitle"] is None, "a request after a failed dependency ran")
    s, _, b = batch(g, [
        {"id": "a", "method": "POST", "url": base, "headers": {"Content-Type": "application/json"},
         "body": {"givenName": "Good"}},
        {"id": "b", "dependsOn": ["a"], "method": "PATCH", "url": f"{base}/{ids[1]}",
         "headers": {"Content-Type": "application/json"}, "body": {"jobTitle": "ran"}}])
    status = {r["id"]: r["status"] for r in b["responses"]}
    check(status == {"a": 201, "b": 200}, status)
    s, _, b = batch(g, [{"id": "p", "method": "PUT", "url": f"{base}/{ids[2]}/photo/$value",
                         "headers": {"Content-Type": "image/jpeg"},
                         "body": base64.b64encode(JPEG).decode()},
                        {"id": "q", "dependsOn": ["p"], "method": "GET",
                         "url": f"{base}/{ids[2]}/photo/$value"}])
    got = {r["id"]: r for r in b["responses"]}
    check(got["p"]["status"] == 200 and base64.b64decode(got["q"]["body"]) == JPEG, got)
    s, _, b = batch(g, [{"id": "x", "method": "GET", "url": f"/v1.0{base}"}])
    check(b["responses"][0]["status"] == 400, b)


def test_photo_put_then_get(g):
    fid = folder(g)
    c = contact(g, fid, givenName="Pic")
    url = f"{U}/contactFolders/{fid}/contacts/{c['id']}/photo/$value"
    s, _, _ = g.req("GET", url)
    check(s == 404, f"a photo before any was written: {s}")
    s, _, _ = g.req("PUT", url, raw=JPEG, headers={"Content-Type": "image/jpeg"})
    check(s in (200, 204), s)
    s, h, data = g.req("GET", url)
    check(s == 200 and data == JPEG and h["Content-Type"] == "image/jpeg", (s, h))
    s, _, meta = g.req("GET", url[:-len("/$value")])
    check(meta["width"] == 64 and meta["height"] == 48, meta)
    s, _, after = g.req("GET", f"{U}/contacts/{c['id']}")
    check(after["@odata.etag"] != c["@odata.etag"], "writing the photo kept the etag")
    g.req("DELETE", f"{U}/contacts/{c['id']}")
    s, _, b = g.req("PUT", url, raw=JPEG, headers={"Content-Type": "image/jpeg"})
    check(s == 404 and code_of(b) == "ErrorItemNotFound", (s, b))
    dump = g.ctl("GET", "dump")
    check(dump["writes"] >= 3, dump["writes"])


def test_five_concurrent_requests_one_throttled(g):
    g.ctl("POST", "stats/reset")
    g.ctl("POST", "faults", {"latency_ms": 400})
    barrier, results = threading.Barrier(5), []

    def one():
        barrier.wait()
        s, h, b = g.req("GET", f"{U}/contactFolders")
        results.append((s, h.get("Retry-After"), code_of(b)))
    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r[0] for r in results)
    check(statuses == [200, 200, 200, 200, 429], results)
    throttled = next(r for r in results if r[0] == 429)
    check(throttled[1] == "1" and throttled[2] == "ApplicationThrottled", throttled)
    stats = g.ctl("GET", "stats")
    check(stats["throttled"]["concurrency"] == 1, stats["throttled"])
    check(stats["max_concurrency"]["alice@example.org"] == 4, stats["max_concurrency"])
    # a batch of 8 runs 4 at a time on threads, so it never throttles itself
    g.ctl("POST", "stats/reset")
    g.ctl("POST", "faults", {"latency_ms": 150})
    s, _, b = batch(g, [{"id": str(i), "method": "GET", "url": "/users/alice@example.org"}
                        for i in range(8)])
    g.ctl("POST", "faults", {})
    check({r["status"] for r in b["responses"]} == {200}, b)
    stats = g.ctl("GET", "stats")
    check(stats["max_concurrency"]["alice@example.org"] == 4,
          f"a batch of 8 ran {stats['max_concurrency']} at once, not 4")
    check(stats["sub_requests"] == 8 and stats["batch_calls"] == 1, stats)


def test_request_and_upload_windows(g):
    small = FakeGraph("--window-requests", "5", "--window-seconds", "2",
                      "--upload-bytes", "3000", "--upload-seconds", "30")
    try:
        for _ in range(5):
            s, _, _ = small.req("GET", U)
            check(s == 200, s)
        t0 = time.time()
        s, h, b = small.req("GET", U)
        check(s == 429 and code_of(b) == "ApplicationThrottled", (s, b))
        retry = int(h["Retry-After"])
        check(1 <= retry <= 2, f"Retry-After {retry} does not match a 2 s window")
        s, h, b = small.req("GET", "/v1.0/users/bob@example.org")
        check(s == 200, "one mailbox's window throttled another")
        time.sleep(max(0, retry - (time.time() - t0)) + 0.05)
        s, _, _ = small.req("GET", U)
        check(s == 200, f"still throttled after Retry-After: {s}")
        s, _, f = small.req("POST", "/v1.0/users/bob@example.org/contactFolders",
                            {"displayName": "Up"})
        s, _, c = small.req("POST", f"/v1.0/users/bob@example.org/contactFolders/{f['id']}"
                            "/contacts", {"givenName": "Up"})
        photo = JPEG + b"\x00" * 2000
        url = f"/v1.0/users/bob@example.org/contacts/{c['id']}/photo/$value"
        s, _, _ = small.req("PUT", url, raw=photo, headers={"Content-Type": "image/jpeg"})
        check(s == 200, s)
        s, h, b = small.req("PUT", url, raw=photo, headers={"Content-Type": "image/jpeg"})
        check(s == 429 and 1 <= int(h["Retry-After"]) <= 30, (s, dict(h)))
        stats = small.ctl("GET", "stats")["throttled"]
        check(stats["requests"] == 1 and stats["upload"] == 1, stats)
    finally:
        small.stop()


def test_faults_deterministic_per_seed(g):
    def run(seed):
        g.ctl("POST", "faults", {"rate_429": 0.25, "rate_5xx": 0.25, "seed": seed})
        out = [g.req("GET", U)[0] for _ in range(30)]
        out.append(tuple(r["status"] for r in sorted(batch(g, [
            {"id": str(i), "method": "GET", "url": "/users/alice@example.org"}
            for i in range(6)])[2].get("responses", []), key=lambda r: r["id"])))
        return out
    g.ctl("POST", "stats/reset")
    first, again, other = run(7), run(7), run(8)
    g.ctl("POST", "faults", {})
    check(first == again, "the same seed gave different faults")
    check(first != other, "another seed gave the same faults")
    check(429 in first and 503 in first and 200 in first, first)
    stats = g.ctl("GET", "stats")
    check(stats["throttled"]["injected"] > 0 and stats["injected_5xx"] > 0, stats)
    # a lost answer: the write is done, the client hears nothing
    fid = folder(g, "Drops")
    g.ctl("POST", "faults", {"drop_answer_after_write": 1})
    lost = False
    try:
        g.req("POST", f"{U}/contactFolders/{fid}/contacts", {"givenName": "Lost"})
    except (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError):
        lost = True
    check(lost, "the answer was not dropped")
    s, _, b = g.req("POST", f"{U}/contactFolders/{fid}/contacts", {"givenName": "Heard"})
    check(s == 201, "the drop outlived its count")
    g.ctl("POST", "faults", {"drop_answer_after_write": 1, "drop_mode": "500"})
    s, _, b = g.req("PATCH", f"{U}/contacts/{b['id']}", {"jobTitle": "done"})
    check(s == 500, s)
    s, _, names = g.req("GET", f"{U}/contactFolders/{fid}/contacts")
    check(sorted(c["givenName"] for c in names["value"]) == ["Heard", "Lost"], names)
    check(any(c["jobTitle"] == "done" for c in names["value"]), "the dropped PATCH was not done")
    check(g.ctl("GET", "stats")["answers_dropped"] == 2, g.ctl("GET", "stats"))


def test_dump_load_round_trip(g):
    fid = folder(g, "Round trip")
    c = contact(g, fid, givenName="Kept", surname="Safe", displayName="K. Safe",
                birthday="1970-01-02T00:00:00Z",
                singleValueExtendedProperties=[{"id": MARKER, "value": "roster:9"}])
    g.req("PUT", f"{U}/contacts/{c['id']}/photo/$value", raw=JPEG,
          headers={"Content-Type": "image/jpeg"})
    before = g.ctl("GET", "dump")
    saved = [x for m in before["mailboxes"] for f in m["contactFolders"] for x in f["contacts"]
             if x["id"] == c["id"]][0]
    check(saved["photo"]["size"] == len(JPEG) and saved["@odata.etag"].startswith('W/"'), saved)
    check(g.req("POST", "/_ctl/reset", token=None)[0] == 204, "reset failed")
    check(all(not m["contactFolders"] for m in g.ctl("GET", "dump")["mailboxes"]),
          "reset kept data")
    s, _, _ = g.req("POST", "/_ctl/load", before, token=None)
    check(s == 204, s)
    after = g.ctl("GET", "dump")
    check(after == before, "dump -> load -> dump differs")
    s, _, got = g.req("GET", f"{U}/contacts/{c['id']}")
    check(got["@odata.etag"] == saved["@odata.etag"] and got["displayName"] == "K. Safe", got)
    small_state = {"mailboxes": [{"userPrincipalName": "carol@example.org", "contactFolders": [
        {"displayName": "X", "contacts": [{"givenName": "Z"}]}]}]}
    s, _, b = g.req("POST", "/_ctl/load", small_state, token=None)
    check(s == 204, (s, b))
    s, _, b = g.req("GET", "/v1.0/users/carol@example.org/contactFolders")
    check(s == 200 and b["value"][0]["displayName"] == "X", b)
    s, _, b = g.req("GET", U)
    check(s == 404, "load did not replace the state")
    s, _, b = g.req("POST", "/_ctl/load", {"mailboxes": [{"contactFolders": []}]}, token=None)
    check(s == 400 and code_of(b), (s, b))
    check(g.req("GET", "/v1.0/users/carol@example.org")[0] == 200, "a bad load changed the state")


def test_refuses_a_non_loopback_host(_g):
    p = subprocess.run([sys.executable, os.path.join(HERE, "fakegraph.py"), "--port", "0",
                        "--host", "0.0.0.0"], capture_output=True, text=True, timeout=10)
    check(p.returncode != 0 and "loopback" in p.stderr, (p.returncode, p.stderr))


# --- the directory, auth and checks (issue 9's emulator) ----------------------------
sys.path.insert(0, HERE)
import fakegraph  # noqa: E402 - its property tables, checked against the schema below
import graph_schema  # noqa: E402

SCHEMA = graph_schema.load()
TENANT = "contoso.onmicrosoft.com"
TENANT_GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "s3cret~value"
SKU = "c7df2760-2c81-4ef7-b578-5b5392b571df"
DEFAULT_USER_KEYS = {"businessPhones", "displayName", "givenName", "jobTitle", "mail",
                     "mobilePhone", "officeLocation", "preferredLanguage", "surname",
                     "userPrincipalName", "id"}


def person(i, **kw):
    upn = f"user{i:03d}@example.org"
    d = {"id": str(uuid.UUID(int=i + 1)), "userPrincipalName": upn, "mail": upn,
         "displayName": f"User {i:03d}", "givenName": "User", "surname": f"N{i:03d}",
         "jobTitle": "Engineer", "businessPhones": ["+1 555 0100"], "mobilePhone": None,
         "accountEnabled": i % 10 != 9, "userType": "Guest" if i % 25 == 24 else "Member",
         "department": "R&D", "companyName": "Example", "officeLocation": "HQ",
         "proxyAddresses": [f"SMTP:{upn}", f"smtp:alias{i}@example.org"],
         "onPremisesExtensionAttributes": {"extensionAttribute1": "hide" if i == 7 else None},
         "assignedLicenses": [{"skuId": SKU, "disabledPlans": []}],
         "createdDateTime": "2024-01-02T03:04:05Z"}
    d.update(kw)
    return d


def load(g, **parts):
    doc = {"mailboxes": [{"userPrincipalName": "alice@example.org"},
                         {"userPrincipalName": "bob@example.org"}]}
    doc.update(parts)
    s, _, b = g.req("POST", "/_ctl/load", doc, token=None)
    check(s == 204, (s, b))


def directory(g, action, body):
    s, _, b = g.req("POST", f"/_ctl/directory/{action}", body, token=None)
    check(s == 200, (s, b))
    return b


def walk(g, url, headers=None):
    """Every page of a listing or delta round: (items, pages, final answer)."""
    items, pages = [], 0
    while True:
        s, _, b = g.req("GET", url, headers=headers)
        check(s == 200, (s, b))
        items += b["value"]
        pages += 1
        check(not ("@odata.nextLink" in b and "@odata.deltaLink" in b), "both links on a page")
        url = b.get("@odata.nextLink")
        if not url:
            return items, pages, b


def schema_ok(type_name, obj):
    SCHEMA.check(type_name, obj)


def test_users_paging_default_set_and_select(g):
    load(g, users=[person(i) for i in range(230)])
    items, pages, last = walk(g, "/v1.0/users")
    check(pages == 3 and len(items) == 232, (pages, len(items)))   # + alice and bob
    check(all(set(u) == DEFAULT_USER_KEYS for u in items), items[0])
    check("@odata.deltaLink" not in last, last)
    for u in items[:5]:
        schema_ok("user", u)
    s, _, b = g.req("GET", "/v1.0/users?$top=7&$select=displayName,accountEnabled,userType,"
                    "onPremisesExtensionAttributes,assignedLicenses,proxyAddresses,id")
    check(s == 200 and len(b["value"]) == 7 and "$skiptoken=" in b["@odata.nextLink"], b)
    u = b["value"][0]
    check(set(u) == {"displayName", "accountEnabled", "userType", "onPremisesExtensionAttributes",
                     "assignedLicenses", "proxyAddresses", "id"}, u)
    check(len(u["onPremisesExtensionAttributes"]) == 15, u["onPremisesExtensionAttributes"])
    check(b["@odata.context"].endswith("$metadata#users(displayName,accountEnabled,userType,"
                                       "onPremisesExtensionAttributes,assignedLicenses,"
                                       "proxyAddresses,id)"), b["@odata.context"])
    s, _, nxt = g.req("GET", b["@odata.nextLink"])
    check(set(nxt["value"][0]) == set(u), "the nextLink lost $select")
    s, _, b = g.req("GET", "/v1.0/users?$select=displayName")
    check("id" not in b["value"][0], "id came back without being selected")
    every = ",".join(fakegraph.USER_SPEC)
    s, _, b = g.req("GET", f"/v1.0/users?$top=3&$select={every}")
    check(s == 200, (s, b))
    for u in b["value"]:
        schema_ok("user", u)
    s, _, b = g.req("GET", "/v1.0/users?$top=1000")
    check(s == 400, s)
    s, _, b = g.req("GET", "/v1.0/users?$select=favouriteColour")
    check(s == 400 and code_of(b) == "Request_BadRequest", (s, b))
    s, _, b = g.req("GET", "/v1.0/users?$select=showInAddressList")
    check(s == 400 and code_of(b) == "NotEmulatedByFakeGraph", (s, b))
    s, _, b = g.req("GET", "/v1.0/users?$filter=" + urllib.parse.quote("accountEnabled eq true"))
    check(s == 400, "an unemulated $filter was ignored")
    s, _, b = g.req("GET", "/v1.0/users/USER005@example.org")
    check(s == 200 and set(b) == DEFAULT_USER_KEYS | {"@odata.context"}, b)
    s, _, b = g.req("GET", f"/v1.0/users/{person(5)['id']}?$select=department,id")
    check(b == {"@odata.context": b["@odata.context"], "department": "R&D",
                "id": person(5)["id"]}, b)
    directory(g, "delete", {"users": [person(5)["id"]]})
    s, _, b = g.req("GET", "/v1.0/users/user005@example.org")
    check(s == 404 and code_of(b) == "Request_ResourceNotFound", (s, b))


def test_users_delta_removed_and_410(g):
    load(g, users=[person(i) for i in range(150)])
    items, pages, last = walk(g, "/v1.0/users/delta")
    check(pages == 2 and len(items) == 152 and "@odata.deltaLink" in last, (pages, len(items)))
    check(all("mobilePhone" not in u and "id" in u for u in items), "a never-set property came")
    check({u["id"] for u in items} >= {person(i)["id"] for i in range(150)}, "a user is missing")
    link = last["@odata.deltaLink"]
    check(link.startswith(g.origin + "/v1.0/users/delta?$deltatoken="), link)
    _, _, b = g.req("GET", link)
    check(b["value"] == [] and "@odata.deltaLink" in b, b)
    _, _, sel = walk(g, "/v1.0/users/delta?$select=displayName,jobTitle,mobilePhone")
    sel_link = sel["@odata.deltaLink"]
    p0, p1, p2, p3 = (person(i)["id"] for i in range(4))
    directory(g, "upsert", {"users": [{"id": p0, "jobTitle": "Director"},
                                      {"id": p3, "department": "Sales"},
                                      person(500, displayName="New Hire")]})
    directory(g, "delete", {"users": [p1]})
    directory(g, "delete", {"users": [p2], "permanent": True})
    items, _, last = walk(g, link)
    by_id = {u["id"]: u for u in items}
    check(by_id[p0]["jobTitle"] == "Director" and by_id[p0]["displayName"] == "User 000",
          by_id[p0])
    check(by_id[p1] == {"id": p1, "@removed": {"reason": "changed"}}, by_id.get(p1))
    check(by_id[p2] == {"id": p2, "@removed": {"reason": "deleted"}}, by_id.get(p2))
    check(by_id[person(500)["id"]]["displayName"] == "New Hire", items)
    check(p3 not in by_id, "a change to an unselected property (department) came in the "
                           "default-set round")
    check(len(items) == 4, [u["id"] for u in items])
    items, _, _ = walk(g, sel_link)
    check({u["id"] for u in items} == {p0, p1, p2, person(500)["id"]}, items)
    check(set(next(u for u in items if u["id"] == p0)) == {"id", "displayName", "jobTitle"},
          "the $select round changed its properties (or sent a never-set one)")
    # Prefer: return=minimal sends only what changed
    _, _, base = walk(g, "/v1.0/users/delta?$deltatoken=latest")
    check(base["value"] == [] and "@odata.deltaLink" in base, base)
    directory(g, "upsert", {"users": [{"id": p0, "officeLocation": "Annex"}]})
    s, _, b = g.req("GET", base["@odata.deltaLink"], headers={"Prefer": "return=minimal"})
    check(b["value"] == [{"officeLocation": "Annex", "id": p0}], b["value"])
    # restoring a soft-deleted user brings it back
    directory(g, "upsert", {"users": [{"id": p1}]})
    items, _, _ = walk(g, base["@odata.deltaLink"])
    check(any(u["id"] == p1 and "@removed" not in u for u in items), items)
    # 410: an unknown token, then every token after a reset of the sync state
    bad = link.split("$deltatoken=")[0] + "$deltatoken=nonsense"
    s, h, b = g.req("GET", bad)
    check(s == 410 and code_of(b) == "syncStateNotFound", (s, b))
    check(h["Location"].startswith(g.origin + "/v1.0/users/delta?") and
          h["Location"].endswith("$deltatoken="), h["Location"])
    s, _, b = g.req("GET", h["Location"])
    check(s == 200 and b["value"], "the Location of a 410 does not start over")
    g.req("POST", "/_ctl/delta/expire", {"code": "resyncRequired"}, token=None)
    s, _, b = g.req("GET", link)
    check(s == 410 and code_of(b) == "resyncRequired", (s, b))
    for u in items:
        if "@removed" not in u:
            schema_ok("user", u)


def test_org_contacts_list_and_delta(g):
    org = [{"id": str(uuid.UUID(int=9000 + i)), "displayName": f"Partner {i}",
            "givenName": "Partner", "surname": str(i), "mail": f"p{i}@partner.example",
            "companyName": "Partner Ltd", "proxyAddresses": [f"SMTP:p{i}@partner.example"],
            "phones": [{"type": "business", "number": f"+44 20 7946 00{i:02d}"},
                       {"type": "mobile", "number": None}],
            "addresses": [{"city": "London", "countryOrRegion": "UK"}]} for i in range(12)]
    load(g, orgContacts=org)
    items, pages, last = walk(g, "/v1.0/contacts?$top=5")
    check(pages == 3 and len(items) == 12, (pages, len(items)))
    for c in items:
        schema_ok("orgContact", c)
    check(items[0]["phones"][0] == {"type": "business", "number": "+44 20 7946 0000",
                                    "region": None, "language": None}, items[0]["phones"])
    s, _, one = g.req("GET", f"/v1.0/contacts/{org[3]['id']}")
    check(s == 200 and one["displayName"] == "Partner 3", one)
    _, _, last = walk(g, "/v1.0/contacts/delta")
    directory(g, "upsert", {"orgContacts": [{"id": org[0]["id"], "jobTitle": "Buyer"}]})
    directory(g, "delete", {"orgContacts": [org[1]["id"]], "permanent": True})
    items, _, _ = walk(g, last["@odata.deltaLink"])
    check(sorted((c["id"], c.get("@removed", {}).get("reason")) for c in items) ==
          sorted([(org[0]["id"], None), (org[1]["id"], "deleted")]), items)
    s, _, b = g.req("GET", f"/v1.0/contacts/{org[1]['id']}")
    check(s == 404, s)
    s, _, b = g.req("POST", "/_ctl/load", {"orgContacts": [{"phones": [{"type": "pigeon"}]}]},
                    token=None)
    check(s == 400 and code_of(b), (s, b))


def test_groups_and_transitive_members(g):
    users = [person(i) for i in range(8)]
    ids = [u["id"] for u in users]
    contact_id = str(uuid.UUID(int=7777))
    gid = {n: str(uuid.UUID(int=5000 + i)) for i, n in enumerate(("Sales", "Nested", "Deeper",
                                                                   "Other"))}
    groups = [
        {"id": gid["Sales"], "displayName": "Sales", "mailEnabled": True, "securityEnabled": True,
         "groupTypes": [], "members": [ids[0], gid["Nested"], contact_id]},
        {"id": gid["Nested"], "displayName": "Nested", "members": [ids[1], ids[2], gid["Deeper"]]},
        {"id": gid["Deeper"], "displayName": "Deeper", "members": [ids[3], ids[0], ids[7]]},
        {"id": gid["Other"], "displayName": "sales", "members": [ids[5]]}]
    load(g, users=users, groups=groups,
         orgContacts=[{"id": contact_id, "displayName": "Ext Partner"}])
    q = urllib.parse.quote("displayName eq 'Sales'")
    s, _, b = g.req("GET", f"/v1.0/groups?$filter={q}")
    check(s == 200 and sorted(x["id"] for x in b["value"]) == sorted([gid["Sales"],
                                                                     gid["Other"]]),
          "displayName eq compares case-insensitively, so two groups match: " + str(b))
    for x in b["value"]:
        schema_ok("group", x)
    directory(g, "delete", {"users": [ids[7]]})   # soft-deleted: not a member any more
    items, pages, _ = walk(g, f"/v1.0/groups/{gid['Sales']}/transitiveMembers?$top=3")
    got = [x["id"] for x in items]
    check(pages == 3 and len(got) == len(set(got)), (pages, got))
    check(set(got) == {ids[0], gid["Nested"], contact_id, ids[1], ids[2], gid["Deeper"], ids[3]},
          got)
    types = {x["id"]: x["@odata.type"] for x in items}
    check(types[contact_id] == "#microsoft.graph.orgContact" and
          types[gid["Deeper"]] == "#microsoft.graph.group" and
          types[ids[3]] == "#microsoft.graph.user", types)
    for x in items:
        schema_ok("directoryObject", x)
    url = f"/v1.0/groups/{gid['Sales']}/transitiveMembers/microsoft.graph.user"
    s, _, b = g.req("GET", url)
    check(s == 400, "an OData cast without ConsistencyLevel: eventual passed")
    s, _, b = g.req("GET", url + "?$count=true&$select=id,userPrincipalName",
                    headers={"ConsistencyLevel": "eventual"})
    check(s == 200 and b["@odata.count"] == 4 and
          {x["id"] for x in b["value"]} == {ids[0], ids[1], ids[2], ids[3]}, b)
    check(all(set(x) == {"@odata.type", "id", "userPrincipalName"} for x in b["value"]), b)
    s, _, b = g.req("GET", f"/v1.0/groups/{gid['Sales']}/members")
    check({x["id"] for x in b["value"]} == {ids[0], gid["Nested"], contact_id}, b)
    s, _, b = g.req("GET", f"/v1.0/groups/{uuid.UUID(int=1)}/transitiveMembers")
    check(s == 404 and code_of(b) == "Request_ResourceNotFound", (s, b))
    s, _, b = g.req("GET", "/v1.0/groups?$filter=" + urllib.parse.quote("startswith(x,'a')"))
    check(s == 400, s)


def test_user_photos(g):
    load(g, users=[person(0, photo={"contentType": "image/jpeg",
                                    "base64": base64.b64encode(JPEG).decode()}), person(1)])
    s, h, data = g.req("GET", f"/v1.0/users/{person(0)['id']}/photo/$value")
    check(s == 200 and data == JPEG and h["Content-Type"] == "image/jpeg", (s, h))
    s, _, meta = g.req("GET", f"/v1.0/users/{person(0)['id']}/photo")
    check(meta["width"] == 64 and meta["height"] == 48 and meta["@odata.mediaEtag"], meta)
    schema_ok("profilePhoto", meta)
    s, _, b = g.req("GET", "/v1.0/users/user001@example.org/photo/$value")
    check(s == 404 and code_of(b) == "ImageNotFound", (s, b))
    # a photo change is not a change of the user for delta (a navigation property)
    _, _, last = walk(g, "/v1.0/users/delta")
    directory(g, "upsert", {"users": [{"id": person(1)["id"], "photo": {
        "contentType": "image/jpeg", "base64": base64.b64encode(JPEG).decode()}}]})
    _, _, b = g.req("GET", last["@odata.deltaLink"])
    check(b["value"] == [], b["value"])


def test_immutable_ids(g):
    fid = folder(g)
    imm = {"Prefer": 'IdType="ImmutableId"'}
    s, h, c = g.req("POST", f"{U}/contactFolders/{fid}/contacts", {"givenName": "Imm"}, imm)
    check(s == 201 and c["id"].startswith("AAkA") and c["parentFolderId"] == fid, c)
    check(h["Preference-Applied"] == 'IdType="ImmutableId"', dict(h))
    s, _, plain = g.req("GET", f"{U}/contacts/{c['id']}")
    check(s == 200 and plain["id"].startswith("AAMk") and plain["id"] != c["id"], plain)
    s, _, again = g.req("GET", f"{U}/contacts/{plain['id']}", headers=imm)
    check(again["id"] == c["id"], "the immutable id is not stable")
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts", headers=imm)
    check([x["id"] for x in b["value"]] == [c["id"]], b)
    s, _, b = g.req("GET", f"{U}/contactFolders", headers=imm)
    check(b["value"][0]["id"] == fid, "a folder id changed: containers keep their ids")
    s, _, b = g.req("PATCH", f"{U}/contactFolders/{fid}/contacts/{c['id']}", {"jobTitle": "x"},
                    imm)
    check(s == 200 and b["id"] == c["id"] and b["jobTitle"] == "x", b)
    s, _, b = batch(g, [
        {"id": "1", "method": "GET", "url": f"/users/alice@example.org/contacts/{plain['id']}",
         "headers": imm},
        {"id": "2", "method": "GET", "url": f"/users/alice@example.org/contacts/{c['id']}"}])
    got = {r["id"]: r for r in b["responses"]}
    check(got["1"]["body"]["id"] == c["id"] and got["2"]["body"]["id"] == plain["id"], got)
    check(got["1"]["headers"].get("Preference-Applied") == 'IdType="ImmutableId"', got["1"])
    s, _, _ = g.req("DELETE", f"{U}/contacts/{c['id']}")
    check(s == 204, s)
    s, _, b = g.req("GET", f"{U}/contacts/{plain['id']}")
    check(s == 404, "deleting by immutable id left the contact")
    dump = g.ctl("GET", "dump")
    check(all("immutableId" in x for m in dump["mailboxes"] for f in m["contactFolders"]
              for x in f["contacts"]), "the dump lost immutable ids")


def test_folder_found_by_marker_filter(g):
    mark = [{"id": MARKER, "value": "roster:Company"}]
    s, _, f = g.req("POST", f"{U}/contactFolders", {"displayName": "Company Contacts",
                                                   EXT_PROP_NAME: mark})
    check(s == 201 and EXT_PROP_NAME not in f, f)
    folder(g, "Personal")
    flt = urllib.parse.quote(f"singleValueExtendedProperties/any(ep: ep/id eq '{MARKER}' and "
                             "ep/value eq 'ROSTER:company')")
    s, _, b = g.req("GET", f"{U}/contactFolders?$filter={flt}")
    check(s == 200 and [x["id"] for x in b["value"]] == [f["id"]], b)
    s, _, _ = g.req("PATCH", f"{U}/contactFolders/{f['id']}", {"displayName": "Renamed by user"})
    check(s == 200, s)
    s, _, b = g.req("GET", f"{U}/contactFolders?$filter={flt}")
    check([x["displayName"] for x in b["value"]] == ["Renamed by user"], b)
    ex = urllib.parse.quote(f"singleValueExtendedProperties($filter=id eq '{MARKER}')")
    s, _, b = g.req("GET", f"{U}/contactFolders/{f['id']}?$expand={ex}")
    check(b[EXT_PROP_NAME] == mark, b)
    schema_ok("contactFolder", b)
    s, _, _ = g.req("PATCH", f"{U}/contactFolders/{f['id']}", {EXT_PROP_NAME: [
        {"id": MARKER, "value": "roster:Other"}]})
    s, _, b = g.req("GET", f"{U}/contactFolders?$filter={flt}")
    check(b["value"] == [], "the folder still matched its old marker value")
    other = urllib.parse.quote(f"singleValueExtendedProperties/any(x: x/id eq '{MARKER}' and "
                               "x/value eq 'roster:Other')")
    mine = contact(g, f["id"], givenName="Tagged", **{EXT_PROP_NAME: [
        {"id": MARKER, "value": "roster:Other"}]})
    contact(g, f["id"], givenName="Untagged")
    s, _, b = g.req("GET", f"{U}/contactFolders/{f['id']}/contacts?$filter={other}")
    check([x["id"] for x in b["value"]] == [mine["id"]] and EXT_PROP_NAME not in b["value"][0],
          b)
    s, _, b = g.req("GET", f"{U}/contactFolders?$filter=" + urllib.parse.quote(
        f"singleValueExtendedProperties/any(ep: ep/id eq 'nonsense' and ep/value eq 'x')"))
    check(s == 400, s)


def test_mailbox_not_enabled(g):
    load(g, users=[person(0), person(1, mailbox=True), person(24)],
         mailboxes=[{"userPrincipalName": "alice@example.org"},
                    {"userPrincipalName": "user000@example.org"}])
    s, _, b = g.req("GET", "/v1.0/users/user000@example.org/contactFolders")
    check(s == 200, (s, b))
    s, _, b = g.req("GET", "/v1.0/users/user001@example.org/contactFolders")
    check(s == 200, "\"mailbox\": true in a loaded user made no mailbox")
    s, _, b = g.req("GET", "/v1.0/users/user024@example.org/contactFolders")
    check(s == 404 and code_of(b) == "MailboxNotEnabledForRESTAPI", (s, b))
    s, _, b = g.req("GET", f"/v1.0/users/{person(24)['id']}/contactFolders")
    check(s == 404 and code_of(b) == "MailboxNotEnabledForRESTAPI", (s, b))
    s, _, b = g.req("GET", "/v1.0/users/nobody@example.org/contactFolders")
    check(s == 404 and code_of(b) == "ErrorInvalidUser", (s, b))
    directory(g, "delete", {"users": ["user000@example.org"]})
    s, _, b = g.req("GET", "/v1.0/users/user000@example.org/contactFolders")
    check(s == 404 and code_of(b) == "MailboxNotEnabledForRESTAPI", "a soft-deleted user's "
          f"mailbox answered: {s}")
    directory(g, "upsert", {"users": [{"id": person(0)["id"]}]})
    s, _, b = g.req("GET", "/v1.0/users/user000@example.org/contactFolders")
    check(s == 200, "a restored user's mailbox did not come back")
    directory(g, "upsert", {"users": [{"id": person(0)["id"], "mailbox": False}]})
    s, _, b = g.req("GET", "/v1.0/users/user000@example.org/contactFolders")
    check(s == 404 and code_of(b) == "MailboxNotEnabledForRESTAPI", (s, b))
    s, _, b = batch(g, [{"id": "1", "method": "GET",
                         "url": "/users/user024@example.org/contactFolders"}])
    check(b["responses"][0]["status"] == 404 and
          b["responses"][0]["body"]["error"]["code"] == "MailboxNotEnabledForRESTAPI", b)


def test_contact_folder_delta(g):
    fid = folder(g)
    made = [contact(g, fid, givenName=f"D{i:02d}", **{EXT_PROP_NAME: [
        {"id": MARKER, "value": f"roster:{i}"}]}) for i in range(15)]
    url = f"{U}/contactFolders/{fid}/contacts/delta"
    page = {"Prefer": "odata.maxpagesize=10"}
    s, h, b = g.req("GET", url, headers=page)
    check(s == 200 and len(b["value"]) == 10 and "@odata.nextLink" in b, b)
    check(h["Preference-Applied"] == "odata.maxpagesize=10", dict(h))
    check(all(EXT_PROP_NAME not in x and x["@odata.type"] == "#microsoft.graph.contact"
              for x in b["value"]), b["value"][0])
    items, pages, last = walk(g, b["@odata.nextLink"], page)
    check(len(items) == 5 and "@odata.deltaLink" in last, (len(items), last))
    link = last["@odata.deltaLink"]
    s, _, quiet = g.req("GET", link)
    check(quiet["value"] == [] and "@odata.deltaLink" in quiet, quiet)
    g.req("PATCH", f"{U}/contacts/{made[0]['id']}", {"jobTitle": "Edited by the user"})
    g.req("DELETE", f"{U}/contacts/{made[1]['id']}")
    new = contact(g, fid, givenName="New")
    items, _, last = walk(g, link)
    by_id = {x["id"]: x for x in items}
    check(set(by_id) == {made[0]["id"], made[1]["id"], new["id"]}, list(by_id))
    check(by_id[made[0]["id"]]["jobTitle"] == "Edited by the user" and
          EXT_PROP_NAME not in by_id[made[0]["id"]], by_id[made[0]["id"]])
    check(by_id[made[1]["id"]]["@removed"] == {"reason": "deleted"}, by_id[made[1]["id"]])
    for x in items:
        if "@removed" not in x:
            schema_ok("contact", x)
    # with immutable ids, a later round names contacts by them
    g.req("PATCH", f"{U}/contacts/{new['id']}", {"jobTitle": "again"})
    s, _, b = g.req("GET", last["@odata.deltaLink"], headers={"Prefer": 'IdType="ImmutableId"'})
    check(len(b["value"]) == 1 and b["value"][0]["id"].startswith("AAkA"), b)
    g.req("POST", "/_ctl/delta/expire", {}, token=None)
    s, h, b = g.req("GET", link)
    check(s == 410 and code_of(b) == "SyncStateNotFound" and "/contacts/delta?" in h["Location"],
          (s, b))
    s, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts/delta?$expand=x")
    check(s == 400, "delta took $expand")


def test_dump_load_with_directory(g):
    users = [person(i) for i in range(3)]
    users[1]["photo"] = {"contentType": "image/jpeg", "base64": base64.b64encode(JPEG).decode()}
    load(g, users=users, orgContacts=[{"id": str(uuid.UUID(int=42)), "displayName": "Org"}],
         groups=[{"id": str(uuid.UUID(int=43)), "displayName": "G",
                  "members": [users[0]["id"], str(uuid.UUID(int=42))]}])
    directory(g, "delete", {"users": [users[2]["id"]]})
    before = g.ctl("GET", "dump")
    check(len(before["users"]) == 5 and before["users"][1]["photo"]["base64"], before["users"][1])
    check(before["users"][2]["deletedDateTime"], "a soft-deleted user lost deletedDateTime")
    g.req("POST", "/_ctl/reset", token=None)
    s, _, b = g.req("POST", "/_ctl/load", before, token=None)
    check(s == 204, (s, b))
    check(g.ctl("GET", "dump") == before, "dump -> load -> dump differs (directory)")
    s, _, b = g.req("POST", "/_ctl/load", {"users": [person(0)], "groups": [
        {"displayName": "X", "members": ["no-such-id"]}]}, token=None)
    check(s == 400 and code_of(b), (s, b))
    check(g.ctl("GET", "dump") == before, "a bad load changed the state")


def test_ctl_bad_input_is_graph_shaped(g):
    cases = [("POST", "/_ctl/directory/upsert", {"users": [{"accountEnabled": "yes",
                                                             "userPrincipalName": "x@y"}]}),
             ("POST", "/_ctl/directory/upsert", {"users": [{"displayName": "no upn"}]}),
             ("POST", "/_ctl/directory/upsert", {"users": "nope"}),
             ("POST", "/_ctl/directory/upsert", [1, 2]),
             ("POST", "/_ctl/directory/upsert", {"groups": [{"members": [7]}]}),
             ("POST", "/_ctl/directory/delete", {"users": ["nobody"]}),
             ("POST", "/_ctl/directory/delete", {"users": [{}]}),
             ("POST", "/_ctl/auth", {"client_certs": ["not a pem"]}),
             ("POST", "/_ctl/auth", {"token_lifetime": -1}),
             ("POST", "/_ctl/auth", {"nonsense": 1}),
             ("POST", "/_ctl/limits", {"time_scale": 0}),
             ("POST", "/_ctl/delta/expire", {"code": "whatever"}),
             ("GET", "/_ctl/bound?mailboxes=many", None),
             ("GET", "/_ctl/bound?batch_size=21", None),
             ("GET", "/_ctl/log?offset=x", None),
             ("POST", "/_ctl/load", {"users": [{"userPrincipalName": "a@b", "assignedLicenses": [
                 {"skuId": "not-a-guid"}]}]}),
             ("GET", "/_ctl/nothing", None)]
    for method, path, body in cases:
        s, _, b = g.req(method, path, body, token=None)
        check(400 <= s < 500 and code_of(b), (method, path, s, b))
    s, _, b = g.req("POST", "/_ctl/directory/upsert", raw=b"{bad", token=None,
                    headers={"Content-Type": "application/json"})
    check(s == 400 and code_of(b), (s, b))
    check(g.req("GET", U)[0] == 200, "bad control input broke the server")


# --- authentication ---------------------------------------------------------------------
def openssl(*args, data=None):
    p = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)
    check(p.returncode == 0, p.stderr.decode(errors="replace"))
    return p.stdout


class Keys:
    """A self-signed certificate and its key, made by openssl in a temporary
    folder, and client assertions signed with it."""

    def __init__(self, tmp, name):
        self.key, self.cert = os.path.join(tmp, f"{name}.key"), os.path.join(tmp, f"{name}.pem")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out",
                self.cert, "-days", "2", "-subj", f"/CN={name}")
        with open(self.cert) as fh:
            der = ssl.PEM_cert_to_DER_cert(fh.read())
        self.x5t256 = b64url(hashlib.sha256(der).digest())

    def assertion(self, aud, iss=CLIENT_ID, sub=None, alg="PS256", thumb=None, lifetime=600,
                  nbf_shift=0, jti=True, sign_with=None):
        now = int(time.time())
        header = {"alg": alg, "typ": "JWT", "x5t#S256": thumb or self.x5t256}
        claims = {"aud": aud, "iss": iss, "sub": sub or iss, "nbf": now + nbf_shift,
                  "exp": now + nbf_shift + lifetime, "iat": now}
        if jti:
            claims["jti"] = str(uuid.uuid4())
        signing_input = f"{b64url(json.dumps(header).encode())}." \
                        f"{b64url(json.dumps(claims).encode())}"
        opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"] \
            if alg == "PS256" else []
        sig = openssl("dgst", "-sha256", *opts, "-sign", sign_with or self.key,
                      data=signing_input.encode())
        return f"{signing_input}.{b64url(sig)}"


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def token_request(g, tenant=TENANT, **form):
    fields = {"grant_type": "client_credentials", "client_id": CLIENT_ID,
              "scope": "https://graph.microsoft.com/.default"}
    fields.update(form)
    fields = {k: v for k, v in fields.items() if v is not None}
    return g.req("POST", f"/{tenant}/oauth2/v2.0/token", token=None,
                 raw=urllib.parse.urlencode(fields).encode(),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})


def sts_code(body):
    return body.get("error"), body.get("error_codes", [None])[0]


def test_token_endpoint_secret_certificate_and_errors(_g):
    tmp = tempfile.mkdtemp(prefix="fakegraph-test-")
    try:
        good, other = Keys(tmp, "roster-app"), Keys(tmp, "stranger")
        a = FakeGraph("--tenant", f"{TENANT},{TENANT_GUID}", "--client-id", CLIENT_ID,
                      "--client-secret", SECRET, "--client-cert", good.cert)
        try:
            run_token_checks(a, good, other)
        finally:
            a.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_token_checks(a, good, other):
    s, h, b = token_request(a, client_secret=SECRET)
    check(s == 200 and b["token_type"] == "Bearer" and b["expires_in"] == 3599, (s, b))
    check(h["Cache-Control"] == "no-store", dict(h))
    claims = json.loads(base64.urlsafe_b64decode(b["access_token"].split(".")[1] + "=="))
    check(claims["roles"] == ["User.Read.All", "OrgContact.Read.All", "GroupMember.Read.All",
                              "Contacts.ReadWrite"] and claims["tid"] == TENANT_GUID and
          claims["appid"] == CLIENT_ID and claims["aud"] == "https://graph.microsoft.com", claims)
    s, _, users = a.req("GET", "/v1.0/users", token=b["access_token"])
    check(s == 200 and users["value"], (s, users))
    s, _, b2 = token_request(a, client_secret=SECRET)
    check(b2["access_token"] != b["access_token"], "the same token twice")
    for form, tenant, status, error, code in [
            ({"client_secret": "wrong"}, TENANT, 401, "invalid_client", 7000215),
            ({"client_secret": SECRET}, "fabrikam.onmicrosoft.com", 400, "invalid_request",
             90002),
            ({"client_secret": SECRET, "scope": "User.Read"}, TENANT, 400, "invalid_scope",
             70011),
            ({"client_secret": SECRET, "grant_type": "password"}, TENANT, 400,
             "unsupported_grant_type", 70003),
            ({"client_secret": SECRET, "client_id": str(uuid.uuid4())}, TENANT, 400,
             "unauthorized_client", 700016),
            ({}, TENANT, 401, "invalid_client", 7000218),
            ({"client_secret": SECRET, "scope": None}, TENANT, 400, "invalid_request", 900144)]:
        s, _, e = token_request(a, tenant, **form)
        check((s, sts_code(e)) == (status, (error, code)), (form, tenant, s, e))
        check(e["error_description"].startswith(f"AADSTS{code}:") and e["trace_id"] and
              e["correlation_id"] and e["timestamp"], e)
    s, _, e = a.req("GET", f"/{TENANT}/oauth2/v2.0/token", token=None)
    check(s == 400 and sts_code(e)[1] == 900561, e)
    # the certificate: a PS256 assertion made by openssl
    aud = f"{a.origin}/{TENANT_GUID}/oauth2/v2.0/token"
    jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    s, _, b = token_request(a, TENANT_GUID, client_assertion=good.assertion(aud),
                            client_assertion_type=jwt_type)
    check(s == 200 and b["access_token"], (s, b))
    check(a.req("GET", "/v1.0/users", token=b["access_token"])[0] == 200, "a cert token failed")
    last = a.ctl("GET", "auth")["last_assertion"]
    check(last["alg"] == "PS256" and last["thumbprint"] == "x5t#S256", last)
    for assertion, code in [
            (good.assertion(aud, sign_with=other.key), 700027),        # wrong key
            (other.assertion(aud), 700027),                            # unregistered cert
            (good.assertion(f"{a.origin}/common/oauth2/v2.0/token"), 700027),   # audience
            (good.assertion(aud, iss=str(uuid.uuid4())), 700021),      # iss and sub
            (good.assertion(aud, lifetime=60, nbf_shift=-7200), 700024),        # expired
            (good.assertion(aud, nbf_shift=7200), 700024),             # not yet valid
            (good.assertion(aud, jti=False), 50027),
            (good.assertion(aud, alg="RS512"), 700027),
            ("not.a.jwt", 50027)]:
        s, _, e = token_request(a, TENANT_GUID, client_assertion=assertion,
                                client_assertion_type=jwt_type)
        check(s == 401 and sts_code(e) == ("invalid_client", code), (code, s, e))
    # roles, expiry and renewal
    a.req("POST", "/_ctl/auth", {"roles": ["Contacts.ReadWrite"], "token_lifetime": 0.4},
          token=None)
    s, _, b = token_request(a, client_secret=SECRET)
    t = b["access_token"]
    s, _, e = a.req("GET", "/v1.0/users", token=t)
    check(s == 403 and code_of(e) == "Authorization_RequestDenied", (s, e))
    check(a.req("GET", f"{U}/contactFolders", token=t)[0] == 200, "Contacts.ReadWrite refused")
    time.sleep(0.5)
    s, _, e = a.req("GET", f"{U}/contactFolders", token=t)
    check(s == 401 and code_of(e) == "InvalidAuthenticationToken" and "expired" in
          e["error"]["message"], (s, e))
    a.req("POST", "/_ctl/auth", {"roles": "", "token_lifetime": 3599}, token=None)
    s, _, b = token_request(a, client_secret=SECRET)
    check("roles" not in json.loads(base64.urlsafe_b64decode(
        b["access_token"].split(".")[1] + "==")), "a token without roles has a roles claim")
    s, _, e = a.req("GET", f"{U}/contactFolders", token=b["access_token"])
    check(s == 403 and code_of(e) == "ErrorAccessDenied", (s, e))
    a.req("POST", "/_ctl/auth", {"roles": "Contacts.ReadWrite"}, token=None)
    s, _, b = token_request(a, client_secret=SECRET)
    check(a.req("GET", f"{U}/contactFolders", token=b["access_token"])[0] == 200, "renewal")
    check(a.ctl("POST", "auth/expire")["expired"] >= 1, "auth/expire")
    s, _, e = a.req("GET", f"{U}/contactFolders", token=b["access_token"])
    check(s == 401, s)
    check(a.req("GET", f"{U}/contactFolders", token=TOKEN)[0] == 200, "--token stopped working")
    log = a.ctl("GET", "log/summary")
    check(log["token_requests"] >= 20, log)
    check(SECRET not in json.dumps(a.ctl("GET", "auth")), "the secret is shown by /_ctl/auth")


# --- time, the request log and the bound --------------------------------------------------
def test_time_scale_windows_and_delta_lifetime(_g):
    fast = FakeGraph("--time-scale", "100", "--window-requests", "3", "--window-seconds", "150",
                     "--delta-lifetime", "60")
    try:
        for _ in range(3):
            check(fast.req("GET", f"{U}/contactFolders")[0] == 200, "window")
        t0 = time.time()
        s, h, b = fast.req("GET", f"{U}/contactFolders")
        check(s == 429 and h["Retry-After"] == "2", (s, dict(h)))   # 150 s / 100 -> 1.5 s -> 2
        ms = int(h["x-fakegraph-retry-after-ms"])
        check(1000 <= ms <= 1500, ms)
        time.sleep(max(0, ms / 1000 - (time.time() - t0)) + 0.05)
        check(fast.req("GET", f"{U}/contactFolders")[0] == 200, "still throttled")
        _, _, b = fast.req("GET", "/v1.0/users/delta")
        link = b["@odata.deltaLink"]
        check(fast.req("GET", link)[0] == 200, "a fresh delta token was refused")
        time.sleep(0.7)          # 60 emulated seconds are 0.6 s here
        s, _, b = fast.req("GET", link)
        check(s == 410 and code_of(b) == "syncStateNotFound", (s, b))
        check(fast.ctl("GET", "limits")["time_scale"] == 100, "limits lack the time scale")
    finally:
        fast.stop()


def test_request_log_and_wall_time_bound(g):
    fid = folder(g, "Bench")
    g.req("POST", "/_ctl/log/reset", token=None)
    g.ctl("POST", "faults", {"latency_ms": 20})
    base = f"/users/alice@example.org/contactFolders/{fid}/contacts"
    t0 = time.time()
    g.req("GET", f"{U}/contactFolders/{fid}")
    g.req("GET", f"{U}/contactFolders/{fid}")
    for n in range(2):
        s, _, b = batch(g, [{"id": str(i), "method": "POST", "url": base,
                             "headers": {"Content-Type": "application/json"},
                             "body": {"givenName": f"B{n}-{i}"}} for i in range(20)])
        check(s == 200 and {r["status"] for r in b["responses"]} == {201}, b)
    wall = time.time() - t0
    g.ctl("POST", "faults", {})
    log = g.ctl("GET", "log")
    rows = log["entries"]
    check(log["total"] == len(rows) == 2 + 2 + 40, log["total"])
    envelopes = [r for r in rows if r["kind"] == "batch"]
    check(len(envelopes) == 2 and all(r["sub_requests"] == 20 and r["status"] == 200 and
                                      r["mailbox"] == "alice@example.org" for r in envelopes),
          envelopes)
    subs = [r for r in rows if r["parent"] is not None]
    check(len(subs) == 40 and {r["parent"] for r in subs} == {r["id"] for r in envelopes}, subs[:2])
    check(all(r["kind"] == "contacts" and r["method"] == "POST" and r["status"] == 201 and
              r["mailbox"] == "alice@example.org" and r["start"] <= r["end"] for r in subs),
          subs[0])
    summary = g.ctl("GET", "log/summary")
    check(summary["http_requests"] == 4 and summary["batch_calls"] == 2 and
          summary["sub_requests"] == 40 and
          summary["mailboxes"]["alice@example.org"] == {"http_requests": 4, "batch_calls": 2,
                                                        "sub_requests": 40}, summary)
    page = g.ctl("GET", "log?offset=40&limit=10")
    check(len(page["entries"]) == 4 and page["next_offset"] == 44, page)
    bound = g.ctl("GET", "bound?mailboxes=1&batches=2&setup=2&latency_ms=20")
    check(abs(bound["bound_seconds"] - (2 * 0.02 + 10 * 0.02)) < 1e-9, bound)
    check(bound["min_http_calls"] == 4 and bound["sub_requests"] == 40, bound)
    check(summary["wall_seconds"] >= bound["bound_seconds"] * 0.95 and wall >= 0.2,
          (summary["wall_seconds"], bound))
    big = g.ctl("GET", "bound?mailboxes=100&contacts=2000&latency_ms=50")
    check(abs(big["per_mailbox_seconds"] - (2 * 0.05 + 500 * 0.05)) < 1e-9 and
          big["min_http_calls"] == 100 * 102 and big["sub_requests"] == 200000, big)
    g.ctl("POST", "limits", {"window_requests": 1000, "time_scale": 10})
    windowed = g.ctl("GET", "bound?mailboxes=100&contacts=2000&latency_ms=50&parallel=50")
    check(abs(windowed["per_mailbox_seconds"] - 2 * 60.0) < 1e-9 and
          abs(windowed["bound_seconds"] - 240.0) < 1e-9, windowed)
    g.req("POST", "/_ctl/log/reset", token=None)
    check(g.ctl("GET", "log")["total"] == 0, "log/reset kept rows")


# --- the schema: every shape fakegraph emits or accepts -------------------------------------
KIND_TYPES = {"str": "Edm.String", "bool": "Edm.Boolean", "date": "Edm.DateTimeOffset",
              "strs": "Collection(Edm.String)", "licenses": "Collection(graph.assignedLicense)",
              "extattrs": "graph.onPremisesExtensionAttributes",
              "offaddrs": "Collection(graph.physicalOfficeAddress)",
              "phones": "Collection(graph.phone)"}


def test_schema_of_every_shape(g):
    for type_name, spec in fakegraph.DIR_TYPES.items():
        for name, kind in spec.items():
            t = SCHEMA.property_type(type_name, name)
            check(t == KIND_TYPES[kind], f"{type_name}.{name}: fakegraph {kind}, schema {t}")
        check(set(fakegraph.DIR_DEFAULT[type_name]) <= set(spec), type_name)
    for name in fakegraph.STRING_PROPS:
        check(SCHEMA.property_type("contact", name) == "Edm.String", name)
    for name in fakegraph.LIST_PROPS:
        check(SCHEMA.property_type("contact", name) == "Collection(Edm.String)", name)
    for name in fakegraph.ADDRESS_PROPS:
        check(SCHEMA.property_type("contact", name) == "graph.physicalAddress", name)
    check(set(fakegraph.ADDRESS_FIELDS) == set(SCHEMA.properties("physicalAddress")), "address")
    for name in fakegraph.META_PROPS + ("birthday", "emailAddresses", "id"):
        check(SCHEMA.property_type("contact", name), name)
    check(set(fakegraph.FOLDER_PROPS) <= set(SCHEMA.properties("contactFolder")), "folder")
    check(set(fakegraph.EXT_ATTRS) == set(SCHEMA.properties("onPremisesExtensionAttributes")),
          "extension attributes")
    check(set(fakegraph.PHONE_TYPES) == set(SCHEMA.types["phoneType"].members), "phone types")
    check(set(fakegraph.OFFICE_FIELDS) == set(SCHEMA.properties("physicalOfficeAddress")),
          "office address")
    # what the emulator accepts: the fullest contact body and folder body
    accepted = {"givenName": "Ada", "surname": "Lovelace", "middleName": "A", "nickName": "Ad",
                "initials": "AL", "title": "Countess", "generation": "I", "fileAs": "L, A",
                "displayName": "Ada Lovelace", "yomiGivenName": "a", "yomiSurname": "l",
                "yomiCompanyName": "c", "jobTitle": "Analyst", "companyName": "Engines",
                "department": "Maths", "officeLocation": "London", "profession": "Maths",
                "businessHomePage": "https://example.org", "assistantName": "B",
                "manager": "C", "mobilePhone": "+44 7700 900000", "spouseName": "W",
                "personalNotes": "n", "categories": ["Company"], "imAddresses": ["sip:a@x"],
                "homePhones": ["+44 20 0000 0000"], "businessPhones": ["+44 20 0000 0001"],
                "children": ["B"], "birthday": "1815-12-10T00:00:00Z",
                "emailAddresses": [{"name": "Ada", "address": "ada@example.org"}],
                "homeAddress": {"street": "1 St", "city": "London", "state": "LDN",
                                "countryOrRegion": "UK", "postalCode": "W1"},
                "businessAddress": {"city": "London"}, "otherAddress": {},
                EXT_PROP_NAME: [{"id": MARKER, "value": "roster:1"}]}
    schema_ok("contact", accepted)
    schema_ok("contactFolder", {"displayName": "Company Contacts",
                                EXT_PROP_NAME: [{"id": MARKER, "value": "roster:f"}]})
    fid = folder(g)
    c = contact(g, fid, **accepted)
    schema_ok("contact", c)
    ex = urllib.parse.quote(f"singleValueExtendedProperties($filter=id eq '{MARKER}')")
    for path in (f"{U}/contactFolders/{fid}/contacts?$expand={ex}", f"{U}/contactFolders",
                 f"{U}/contacts/{c['id']}?$expand={ex}", f"{U}/contacts/{c['id']}/photo"):
        if path.endswith("/photo"):
            g.req("PUT", path + "/$value", raw=JPEG, headers={"Content-Type": "image/jpeg"})
        s, _, b = g.req("GET", path)
        check(s == 200, (path, s, b))
        type_name = "profilePhoto" if path.endswith("/photo") else (
            "contactFolder" if path.endswith("contactFolders") else "contact")
        for obj in b.get("value", [b]):
            schema_ok(type_name, obj)
    _, _, b = g.req("GET", f"{U}/contactFolders/{fid}/contacts/delta")
    for obj in b["value"]:
        schema_ok("contact", obj)
    full = person(0, employeeId="E1", employeeType="Staff", employeeHireDate="2020-01-01T00:00:00Z",
                  streetAddress="1 Road", city="Town", state="ST", postalCode="1", country="UK",
                  usageLocation="GB", faxNumber="+1", mailNickname="u0", otherMails=["o@x"],
                  imAddresses=["sip:u0@x"], onPremisesImmutableId="abc=",
                  onPremisesSamAccountName="u0", onPremisesUserPrincipalName="u0@corp",
                  onPremisesDistinguishedName="CN=u0", onPremisesDomainName="corp",
                  onPremisesSyncEnabled=True, onPremisesLastSyncDateTime="2024-01-01T00:00:00Z",
                  preferredLanguage="en-GB")
    load(g, users=[full], orgContacts=[{"id": str(uuid.UUID(int=8)), "displayName": "O",
                                        "phones": [{"type": "businessFax", "number": "1"}],
                                        "addresses": [{"officeLocation": "B1"}],
                                        "onPremisesSyncEnabled": False}],
         groups=[{"id": str(uuid.UUID(int=9)), "displayName": "G", "groupTypes": ["Unified"],
                  "visibility": "Private", "members": [full["id"], str(uuid.UUID(int=8))]}])
    every = {t: ",".join(["id"] + list(spec)) for t, spec in fakegraph.DIR_TYPES.items()}
    for path, type_name in ((f"/v1.0/users?$select={every['user']}", "user"),
                            ("/v1.0/users", "user"), ("/v1.0/users/delta", "user"),
                            (f"/v1.0/contacts?$select={every['orgContact']}", "orgContact"),
                            ("/v1.0/contacts/delta", "orgContact"),
                            (f"/v1.0/groups?$select={every['group']}", "group"),
                            (f"/v1.0/groups/{uuid.UUID(int=9)}/transitiveMembers",
                             "directoryObject"),
                            (f"/v1.0/groups/{uuid.UUID(int=9)}", "group"),
                            (f"/v1.0/users/{full['id']}", "user")):
        s, _, b = g.req("GET", path)
        check(s == 200, (path, s, b))
        for obj in b.get("value", [b]):
            schema_ok(type_name, obj)
    # and the checker itself catches what it should
    check(SCHEMA.problems("user", {"accountEnabled": "yes"}) and
          SCHEMA.problems("user", {"favouriteColour": "x"}) and
          SCHEMA.problems("orgContact", {"phones": [{"type": "pigeon"}]}) and
          SCHEMA.problems("user", {"businessPhones": None}) and
          SCHEMA.problems("user", {"assignedLicenses": [{"skuId": "x"}]}) and
          SCHEMA.problems("directoryObject", {"@odata.type": "#microsoft.graph.contact"}),
          "graph_schema accepted a wrong object")


def test_default_contacts_folder(g):
    """The mailbox's own Contacts folder: the well-known name "contacts" opens
    it under its real id, /users/{u}/contacts is it, its folder routes (delta
    too) work, and it is neither listed among contactFolders nor changeable."""
    root = next(m for m in g.ctl("GET", "dump")["mailboxes"]
                if m["userPrincipalName"] == "alice@example.org")["rootFolderId"]
    s, _, f = g.req("GET", f"{U}/contactFolders/contacts?$select=id,displayName")
    check(s == 200 and f["id"] == root and f["displayName"] == "Contacts", (s, f))
    s, _, f2 = g.req("GET", f"{U}/contactFolders/Contacts")
    check(s == 200 and f2["id"] == root, (s, f2))
    mine = folder(g, "Contacts")  # a child folder may share the name
    s, _, listed = g.req("GET", f"{U}/contactFolders")
    check([x["id"] for x in listed["value"]] == [mine], listed)
    c = contact(g, "contacts", givenName="Own", **{EXT_PROP_NAME: [
        {"id": MARKER, "value": "roster:x"}]})
    s, _, b = g.req("POST", f"{U}/contacts", {"givenName": "Direct"})
    check(s == 201, (s, b))
    for path in (f"{U}/contacts", f"{U}/contactFolders/contacts/contacts",
                 f"{U}/contactFolders/{root}/contacts"):
        s, _, page = g.req("GET", path)
        check(s == 200 and {x["id"] for x in page["value"]} == {c["id"], b["id"]}, (path, page))
    s, _, page = g.req("GET", f"{U}/contactFolders/{mine}/contacts")
    check(page["value"] == [], page)
    q = urllib.parse.quote(f"singleValueExtendedProperties($filter=id eq '{MARKER}')")
    s, _, one = g.req("GET", f"{U}/contactFolders/contacts/contacts/{c['id']}?$expand={q}")
    check(s == 200 and one[EXT_PROP_NAME][0]["value"] == "roster:x", one)
    s, _, d = g.req("GET", f"{U}/contactFolders/contacts/contacts/delta?$select=id")
    check(s == 200 and len(d["value"]) == 2 and "@odata.deltaLink" in d, d)
    g.req("DELETE", f"{U}/contactFolders/contacts/contacts/{b['id']}")
    s, _, d2 = g.req("GET", d["@odata.deltaLink"])
    check([x.get("@removed") for x in d2["value"]] == [{"reason": "deleted"}], d2)
    s, _, p = g.req("PUT", f"{U}/contactFolders/contacts/contacts/{c['id']}/photo/$value",
                    raw=JPEG, headers={"Content-Type": "image/jpeg"})
    check(s == 200, (s, p))
    s, _, e = g.req("PATCH", f"{U}/contactFolders/contacts", {"displayName": "Mine"})
    check(s == 403 and code_of(e) == "ErrorAccessDenied", (s, e))
    s, _, e = g.req("DELETE", f"{U}/contactFolders/{root}")
    check(s == 400 and code_of(e) == "ErrorDeleteDistinguishedFolder", (s, e))
    s, _, e = g.req("GET", f"{U}/contacts/delta")
    check(s == 501, (s, e))
    saved = g.ctl("GET", "dump")
    box = next(m for m in saved["mailboxes"] if m["userPrincipalName"] == "alice@example.org")
    check([x["id"] for x in box["defaultContacts"]] == [c["id"]], box)
    g.ctl("POST", "load", saved)
    s, _, page = g.req("GET", f"{U}/contacts")
    check([x["id"] for x in page["value"]] == [c["id"]], page)
    s, _, data = g.req("GET", f"{U}/contacts/{c['id']}/photo/$value")
    check(s == 200 and data == JPEG, s)


TESTS = [test_auth_unknown_paths_and_bad_json, test_folders_create_filter_page_delete,
         test_create_assigns_ids_etags_and_fills_fileas,
         test_patch_merges_clears_and_honours_if_match, test_more_than_three_emails_refused,
         test_paging_with_next_link_on_same_origin, test_listing_with_the_marker_expanded,
         test_batch_of_20_mixed_over_20_refused_and_depends_on, test_photo_put_then_get,
         test_five_concurrent_requests_one_throttled, test_request_and_upload_windows,
         test_faults_deterministic_per_seed, test_dump_load_round_trip,
         test_refuses_a_non_loopback_host,
         test_users_paging_default_set_and_select, test_users_delta_removed_and_410,
         test_org_contacts_list_and_delta, test_groups_and_transitive_members, test_user_photos,
         test_immutable_ids, test_folder_found_by_marker_filter, test_mailbox_not_enabled,
         test_contact_folder_delta, test_default_contacts_folder, test_dump_load_with_directory,
         test_ctl_bad_input_is_graph_shaped, test_token_endpoint_secret_certificate_and_errors,
         test_time_scale_windows_and_delta_lifetime, test_request_log_and_wall_time_bound,
         test_schema_of_every_shape]


def main():
    g = FakeGraph()
    passed = failed = 0
    try:
        for test in TESTS:
            g.req("POST", "/_ctl/reset", token=None)
            t0 = time.time()
            try:
                test(g)
                passed += 1
                print(f"PASS {test.__name__} ({time.time() - t0:.1f}s)", flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure on one line
                failed += 1
                reason = " ".join(f"{type(e).__name__}: {e}".split())[:400]
                print(f"FAIL {test.__name__}: {reason}", flush=True)
    finally:
        g.stop()
    print(f"fakegraph: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
