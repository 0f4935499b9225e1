"""Checks of fakegraph.py (the fake Microsoft Graph for roster's Graph
connector) against what Graph documents: each test talks to the server in its
own process over HTTP with urllib only. Prints one line per test and
`fakegraph: N passed, N failed`; exits 0 when all passed."""
import base64
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "test-token"
MARKER = "String {00020329-0000-0000-C000-000000000046} Name roster-tag"
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


TESTS = [test_auth_unknown_paths_and_bad_json, test_folders_create_filter_page_delete,
         test_create_assigns_ids_etags_and_fills_fileas,
         test_patch_merges_clears_and_honours_if_match, test_more_than_three_emails_refused,
         test_paging_with_next_link_on_same_origin, test_listing_with_the_marker_expanded,
         test_batch_of_20_mixed_over_20_refused_and_depends_on, test_photo_put_then_get,
         test_five_concurrent_requests_one_throttled, test_request_and_upload_windows,
         test_faults_deterministic_per_seed, test_dump_load_round_trip,
         test_refuses_a_non_loopback_host]


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
