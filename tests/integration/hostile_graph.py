"""A Microsoft Graph that misbehaves on purpose, for roster's hostile-Graph
tests (tests/integration/hostile_graph_test.py).

It is an HTTP proxy in front of the real emulator, tests/integration/
fakegraph.py (started as graph_sync_test.Graph starts it, as its own
process): roster's `authority` and `graph_url` both point at the proxy, which
forwards every request to the emulator and, in mode "correct", hands the
answer back unchanged but for the emulator's own origin in links, which it
rewrites to its own (the emulator writes absolute nextLinks on the origin it
listens on). Other modes (set with `set(mode, where)` between runs) lie in one
way each on the requests `where` names (of the target mailboxes, `targets`);
see MODES and WHERE; a mode's parameters go in `state`. The proxy
resolves dot segments in $batch sub-request URLs before it forwards them
(RFC 3986 5.2.4), as a web server in front of Graph may: a client that puts a
".." id into a URL reaches the folder above, which the emulator alone (which
takes ".." for a malformed id) would hide.

A second listener on another port, `foreign`, stands for another origin: it
records the raw bytes of every connection it gets (an HTTP request with its
Authorization header, or a TLS hello) and answers an empty collection.

The proxy judges every request and $batch sub-request as it arrives (one
outside the target mailboxes' contact folders, a dot segment, a header value
with CR or LF, the longest Authorization header, counts) and keeps the first
500 whole; it records every access token the token endpoint issued and any
request for a link it poisoned (links roster must refuse that still lead to
the proxy: userinfo, another scheme), so tests can check where the token went
and what was written. Everything runs on 127.0.0.1, free ports; the
proxy in threads of the calling process.
"""
import copy
import http.client
import http.server
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import graph_sync_test as gst  # noqa: E402  (the emulator's runner and its tenant)

POISON = "hostile_poison"  # in the query of every link on this proxy roster must not follow
EVIL = "X-Evil"           # a header a CR LF in a value would inject
MB = 1 << 20

MODES = {
    "correct": "forwards; rewrites the emulator's origin in links to the proxy's",
    # links (each on a listing page: the existing nextLink/deltaLink, or a nextLink added)
    "link_foreign": "links on the foreign origin (127.0.0.1, another port)",
    "link_foreign_https": "links on https:// and the foreign port",
    "link_userinfo": "links http://x@127.0.0.1:PROXY/... (userinfo on Graph's own origin)",
    "link_userinfo_foreign": "links http://127.0.0.1:PROXY@127.0.0.1:FOREIGN/... (the "
                             "host after the userinfo is the foreign one)",
    "link_https": "links https://127.0.0.1:PROXY/... (another scheme, Graph's host and port)",
    "link_scheme_relative": "links //127.0.0.1:FOREIGN/v1.0/...",
    "link_backslash": "links http://127.0.0.1:FOREIGN\\@127.0.0.1:PROXY/v1.0/...",
    "link_dotdot": "links http://127.0.0.1:PROXY/v1.0/../_ctl/dump (outside /v1.0)",
    "link_encoded_dotdot": "links http://127.0.0.1:PROXY/v1.0/%2e%2e/_ctl/dump (escaped dots)",
    "next_loop": "every page's nextLink is the page's own URL (served again for ever)",
    "pages_forever": "pages that never end: one new object a page, a new nextLink each",
    # bodies
    "huge_stream": "a 200 MB chunked JSON body generated on the fly",
    "huge_string": "a 50 MB JSON string (displayName) in an answer with Content-Length",
    "many_items": "a page of 300,000 tiny objects",
    "deep_json": "JSON nested 100,000 deep",
    "bad_text": "displayName, givenName, jobTitle with ESC sequences, BEL, C1 CSI, lone "
                "surrogates (valid JSON)",
    "raw_bytes": "the same, and invalid UTF-8 bytes (0xff, 0xfe, overlong) in the JSON itself",
    "error_text": "a 400 error whose code and message carry ESC sequences and invalid UTF-8",
    "truncated": "Content-Length larger than the body, then the connection is closed",
    "empty_200": "200 with an empty body",
    "huge_header": "a 1 MB response header line",
    "redirect_foreign": "307 to the foreign origin",
    # listing contents
    "id_traversal": "a listing adds managed-looking contacts (roster's marker, departed keys) "
                    "with the ids in state['ids'] ('..', '.', '../../users/BOB/...')",
    "etag_crlf": "every contact's @odata.etag and changeKey carry CR LF and a header",
    "duplicate_ids": "every contact of a listing is listed twice, the copy with another marker",
    # $batch answers (the batch is forwarded and carried out first)
    "batch_unknown_ids": "every other sub-response has an id never sent",
    "batch_dup_ids": "every sub-response comes twice, the copy with another status",
    "batch_missing_ids": "every other sub-response is left out",
    "batch_bad_status": "statuses of the wrong type or range: '200', null, -1, 99999, true, "
                        "2.5, 1e300, [200], {}",
    "batch_garbage": "responses that are not objects, or not an array",
    "batch_sub_429": "every sub-response is 429 with Retry-After: 999999999",
    "batch_other_object": "a sub-response to GET /users/{id} (a directory read by id) names "
                          "another object: its id replaced",
    # throttling and stalls
    "retry_after_huge": "429 with Retry-After: 999999999 (not forwarded)",
    "retry_after_date": "503 with Retry-After: Fri, 31 Dec 9999 23:59:59 GMT (not forwarded)",
    "trickle": "headers, then one byte a second of a 100,000-byte body",
    "silent": "reads the request and never answers",
    "always_401": "401 InvalidAuthenticationToken (not forwarded)",
    # token endpoint
    "token_10mb": "an access_token of 10 MB",
    "token_not_json": "200 with an HTML body",
    "token_crlf": "an access_token carrying CR LF and a header",
    "token_expired": "a valid token with expires_in -100",
    # folder creation
    "location_foreign": "201 with Location and @odata.id on the foreign origin",
    "folder_id_traversal": "the folder's id, as found (state['on'] = 'lookup') or created "
                           "('create'), is state['folder_id'] ('..', '.', '../../users/BOB/...')",
}

# Which requests a mode lies on (anything else is forwarded as it is).
WHERE = {
    "listing": "the target mailbox's contact listings and contact deltas (GET)",
    "contacts": "the target mailbox's contact listings only (GET .../contacts, not delta)",
    "delta": "the target mailbox's contact deltas only (GET .../contacts/delta)",
    "directory": "directory reads: /users, /users/delta, /contacts, /contacts/delta, /groups",
    "batch": "POST /v1.0/$batch",
    "token": "the token endpoint",
    "folders": "the target mailbox's contactFolders lookup and create",
    "mailbox": "every request to the target mailbox (plain and $batch sub-requests)",
}

TOKEN_RE = re.compile(r"^/([^/]+)/oauth2/v2\.0/token/?$", re.IGNORECASE)
# Valid JSON (written with \\u escapes), each a character no output may carry raw.
BAD_TEXT = ("Bad \u001b[31mName\u001b]0;pwned\u0007\u009b2J\u0000\u202e\u0008\r\n"
            "X-Evil: 1 \U0001f600 End")
# Not valid: a lone surrogate (\\ud800 in the JSON text) and raw invalid UTF-8.
LONE_SURROGATE = "Bad \ud800 and \udc00 End"
RAW_BAD = b"Raw \xff\xfe \xc0\xaf \xed\xa0\x80 \x1b[2J\x1b]0;pwned\x07 End"
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
       "upgrade", "proxy-connection"}


def classify(method, path):
    """(kind, mailbox) of a request path (under /v1.0 or a token path).
    kind: token, batch, listing, contact, folders, folder, mailbox_other,
    directory, other; mailbox: the lower-cased user segment of /users/{u}/...
    (None for the directory)."""
    if TOKEN_RE.match(path):
        return "token", None
    raw = [s for s in path.split("/") if s]
    segs = [urllib.parse.unquote(s) for s in raw]
    if not segs or segs[0].lower() != "v1.0":
        return "other", None
    segs = segs[1:]
    if [s.lower() for s in segs] == ["$batch"]:
        return "batch", None
    low = [s.lower() for s in segs]
    if len(segs) >= 3 and low[0] == "users":
        box = segs[1].lower()
        rest = low[2:]
        if rest[0] == "contactfolders":
            if len(rest) == 1:
                return "folders", box
            if len(rest) >= 3 and rest[2] == "contacts":
                if len(rest) == 3 or (len(rest) == 4 and rest[3] in ("delta",
                                                                      "microsoft.graph.delta")):
                    return "listing", box
                return "contact", box
            return "folder", box
        if rest[0] == "contacts":
            return ("listing" if len(rest) == 1 or rest[1] == "delta" else "contact"), box
        return "mailbox_other", box
    if low and low[0] in ("users", "contacts", "groups", "directoryobjects"):
        return "directory", None
    return "other", None


def remove_dot_segments(path):
    """RFC 3986 5.2.4 on a path (its query kept apart by the caller)."""
    out = []
    segs = path.split("/")
    for i, s in enumerate(segs):
        if s == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segs) - 1:
                out.append("")
        elif s == ".":
            if i == len(segs) - 1:
                out.append("")
        else:
            out.append(s)
    return "/".join(out)


class Foreign(socketserver.ThreadingTCPServer):
    """The other origin: records the first bytes of every connection."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.seen = []
        super().__init__(("127.0.0.1", 0), ForeignHandler)
        self.port = self.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class ForeignHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
                if data[:1] == b"\x16":  # a TLS hello: nothing to answer
                    break
        except OSError:
            pass
        self.server.seen.append(data[:65536])
        if data[:1] != b"\x16":
            body = b'{"value": []}'
            try:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))
            except OSError:
                pass


class Request:
    def __init__(self, method, target, headers, body):
        self.method, self.target, self.headers, self.body = method, target, headers, body
        split = urllib.parse.urlsplit(target)
        self.path, self.query = split.path, split.query


class HostileGraph:
    """The emulator, the proxy in front of it and the foreign origin."""

    def __init__(self, workdir, mailboxes, *graph_args):
        self.graph = gst.Graph(workdir, *graph_args)
        self.upstream = self.graph.origin  # http://127.0.0.1:PORT
        up = urllib.parse.urlsplit(self.upstream)
        self.up_host, self.up_port = up.hostname, up.port
        self.targets = {m.lower() for m in mailboxes}  # the mailboxes the modes lie to
        self.lock = threading.Lock()
        self.mode, self.where = "correct", "listing"
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.hg = self
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.foreign = Foreign()
        self.local = threading.local()
        self.reset_records()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # -- control -----------------------------------------------------------------
    def set(self, mode, where="listing", targets=None):
        if mode not in MODES or where not in WHERE:
            raise ValueError(f"unknown mode {mode!r} or where {where!r}")
        with self.lock:
            if targets is not None:
                self.targets = {m.lower() for m in targets}
            self.mode, self.where = mode, where
            self.state = {}  # a mode's own memory (a cached page, a page counter)

    def reset_records(self):
        with self.lock:
            self.requests = []     # the first KEEP requests
            self.counts = {"token": 0, "api": 0, "target": 0, "sub": 0}
            self.outside = []      # requests that reach outside the targets' folders
            self.injected = []     # requests with CR, LF or the injected header in a header
            self.longest_authorization = 0
            self.tokens = set()    # access tokens the token endpoint issued
            self.poisoned = []     # targets of poisoned links that reached the proxy
            self.not_http = []     # connections to the proxy that were not HTTP (TLS)
            self.lies = 0          # answers a mode changed
            self.state = {}
            self.foreign.seen = []

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.foreign.shutdown()
        self.foreign.server_close()
        self.graph.stop()

    # -- upstream ------------------------------------------------------------------
    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection(self.up_host, self.up_port,
                                                             timeout=120)
        return c

    def forward(self, req, body=None):
        """The emulator's answer to req: (status, [(name, value)], body bytes),
        its origin rewritten to the proxy's."""
        body = req.body if body is None else body
        headers = [(k, v) for k, v in req.headers if k.lower() not in HOP]
        headers.append(("Content-Length", str(len(body))))
        for attempt in range(2):
            c = self._conn()
            try:
                c.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    c.putheader(k, v)
                c.endheaders(body)
                r = c.getresponse()
                data = r.read()
                out = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
                if r.will_close:
                    c.close()
                    self.local.conn = None
                break
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        up = self.upstream.encode()
        data = data.replace(up, self.origin.encode())
        out = [(k, v.replace(self.upstream, self.origin)) for k, v in out]
        return r.status, out, data

    # -- what roster did -------------------------------------------------------------
    # Judged as requests arrive and kept in counts (a run that pages 50,000
    # times must not make the test process big: see send_big).
    KEEP = 500  # requests kept whole, for a failure to be looked at

    def record(self, req):
        kind, box = classify(req.method, req.path)
        bad = self._outside(req.method, req.path, kind, box)
        inj = [k for k, v in req.headers
               if EVIL.lower() in k.lower() or EVIL.lower() in v.lower() or "\r" in v or "\n" in v]
        auth = max((len(v) for k, v in req.headers if k.lower() == "authorization"), default=0)
        with self.lock:
            if len(self.requests) < self.KEEP:
                self.requests.append(req)
            if POISON in req.target:
                self.poisoned.append(req.target[:500])
            if kind == "token":
                self.counts["token"] += 1
            else:
                self.counts["api"] += 1
                if box in self.targets:
                    self.counts["target"] += 1
            if bad and len(self.outside) < 50:
                self.outside.append(bad)
            if inj and len(self.injected) < 50:
                self.injected.append((req.method, req.path[:300], inj))
            self.longest_authorization = max(self.longest_authorization, auth)

    def record_subrequests(self, reqs):
        with self.lock:
            self.counts["sub"] += len(reqs)
        for r in reqs:
            if not isinstance(r, dict):
                continue
            method = str(r.get("method"))
            path = "/v1.0" + str(r.get("url", "")).split("?")[0]
            kind, box = classify(method, path)
            bad = self._outside(method, path, kind, box)
            headers = r.get("headers") if isinstance(r.get("headers"), dict) else {}
            inj = [k for k, v in headers.items()
                   if any(x in f"{k}: {v}" for x in ("\r", "\n")) or
                   EVIL.lower() in f"{k}: {v}".lower()]
            with self.lock:
                if bad and len(self.outside) < 50:
                    self.outside.append(bad + ("in a $batch",))
                if inj and len(self.injected) < 50:
                    self.injected.append((method, path[:300], inj, "in a $batch"))

    def _outside(self, method, path, kind, box):
        """Why a request (plain or a $batch sub-request) reaches outside the
        target mailboxes' contact folders (another mailbox, a dot segment, a
        write elsewhere than contactFolders), or None."""
        if kind in ("token", "batch"):
            return None
        why = None
        if any(s in (".", "..") or urllib.parse.unquote(s) in (".", "..") for s in path.split("/")):
            why = "a dot segment"
        elif box is not None and box not in self.targets:
            why = "another mailbox"
        elif method.upper() != "GET" and kind not in ("folders", "folder", "listing", "contact"):
            why = "a write outside the contact folders"
        return (method, path[:300], why) if why else None

    def outside_requests(self):
        return list(self.outside)

    def injected_headers(self):
        return list(self.injected)

    def token_requests(self):
        return self.counts["token"]

    def api_requests(self, targets_only=False):
        return self.counts["target" if targets_only else "api"]

    # -- lying ------------------------------------------------------------------------
    def applies(self, kind, box, method, path):
        w = self.where
        if self.mode == "correct":
            return False
        if w in ("listing", "contacts", "delta"):
            if kind != "listing" or box not in self.targets or method != "GET":
                return False
            delta = path.rstrip("/").lower().endswith("delta")
            return w == "listing" or (w == "delta") == delta
        if w == "directory":
            return kind == "directory" and method == "GET"
        if w == "batch":
            return kind == "batch"
        if w == "token":
            return kind == "token"
        if w == "folders":
            return kind == "folders" and box in self.targets
        if w == "mailbox":  # its $batch calls too (the mode looks inside)
            return box in self.targets or kind == "batch"
        return False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    @property
    def hg(self):
        return self.server.hg

    def setup(self):
        super().setup()
        # Headers and body go in separate writes: without this, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self):
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
            if first[:1] == b"\x16":
                self.hg.not_http.append("a TLS hello")
                self.close_connection = True
                return
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        body = self.read_body()
        hg = self.hg
        req = Request(self.command, self.path, list(self.headers.items()), body)
        hg.record(req)
        if POISON in self.path:
            return self.send(404, [("Content-Type", "application/json")],
                             b'{"error":{"code":"Poisoned","message":"a link that must '
                             b'not be followed"}}')
        kind, box = classify(self.command, req.path)
        if kind == "batch":
            body = self.prepare_batch(req)
        try:
            if hg.applies(kind, box, self.command, req.path):
                fn = getattr(self, "m_" + hg.mode)
                with hg.lock:
                    hg.lies += 1
                if fn(req, kind, body) is not False:
                    return
            status, headers, data = hg.forward(req, body)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
            return
        if kind == "token":
            self.note_token(data)
        self.send(status, headers, data)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # -- plumbing ----------------------------------------------------------------------
    def send(self, status, headers, data):
        self.send_response_only(status)
        for k, v in headers:
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, doc, headers=None):
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.send(status, [("Content-Type", "application/json")] + list(headers or []), data)

    def note_token(self, data):
        try:
            tok = json.loads(data).get("access_token")
        except (ValueError, AttributeError):
            return
        if isinstance(tok, str):
            with self.hg.lock:
                self.hg.tokens.add(tok)

    def prepare_batch(self, req):
        """Records the sub-requests; answers the body to forward, its URLs'
        dot segments resolved."""
        try:
            doc = json.loads(req.body)
            reqs = doc["requests"]
        except (ValueError, KeyError, TypeError):
            return req.body
        if isinstance(reqs, list):
            self.hg.record_subrequests(reqs)
        for r in reqs:
            if isinstance(r, dict) and isinstance(r.get("url"), str):
                path, q, query = r["url"].partition("?")
                r["url"] = remove_dot_segments(path) + q + query
        # A sub-request with a dot segment reaching a mailbox other than the
        # target's is recorded through outside_requests (the URL as sent).
        return json.dumps(doc).encode()

    def forward_json(self, req, body=None):
        status, headers, data = self.hg.forward(req, body)
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        return status, [(k, v) for k, v in headers if k.lower() != "content-type"], doc, data

    def stream(self, status, pieces, ctype="application/json", chunked=True, length=None):
        """Sends generated pieces; stops quietly when the client hangs up."""
        self.send_response_only(status)
        self.send_header("Content-Type", ctype)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            self.send_header("Content-Length", str(length))
        self.close_connection = True
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for p in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p) if chunked else p)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ConnectionError, OSError):
            pass

    def page_link(self, req):
        return self.hg.origin + req.target

    # -- links -------------------------------------------------------------------------
    def _relink(self, req, make):
        status, headers, doc, data = self.forward_json(req)
        if not isinstance(doc, dict):
            self.send(status, headers, data)
            return
        same = self.hg.origin
        links = [k for k in ("@odata.nextLink", "@odata.deltaLink") if isinstance(doc.get(k), str)]
        if not links and "value" in doc:
            doc["@odata.nextLink"] = same + req.target
            links = ["@odata.nextLink"]
        for k in links:
            tail = doc[k][len(same):] if doc[k].startswith(same) else req.target
            doc[k] = make(tail)
        self.send_json(status, doc, headers)

    def _poison(self, tail):
        return tail + ("&" if "?" in tail else "?") + POISON + "=1"

    def m_link_foreign(self, req, kind, body):
        self._relink(req, lambda t: self.hg.foreign.url + t)

    def m_link_foreign_https(self, req, kind, body):
        self._relink(req, lambda t: self.hg.foreign.url.replace("http:", "https:") + t)

    def m_link_userinfo(self, req, kind, body):
        self._relink(req, lambda t: f"http://x@127.0.0.1:{self.hg.port}" + self._poison(t))

    def m_link_userinfo_foreign(self, req, kind, body):
        self._relink(req, lambda t: f"http://127.0.0.1:{self.hg.port}@127.0.0.1:"
                                    f"{self.hg.foreign.port}" + t)

    def m_link_https(self, req, kind, body):
        self._relink(req, lambda t: f"https://127.0.0.1:{self.hg.port}" + self._poison(t))

    def m_link_scheme_relative(self, req, kind, body):
        self._relink(req, lambda t: f"//127.0.0.1:{self.hg.foreign.port}" + t)

    def m_link_backslash(self, req, kind, body):
        self._relink(req, lambda t: f"http://127.0.0.1:{self.hg.foreign.port}\\@127.0.0.1:"
                                    f"{self.hg.port}" + t)

    def m_link_dotdot(self, req, kind, body):
        self._relink(req, lambda t: self.hg.origin + "/v1.0/../_ctl/dump?" + POISON + "=1")

    def m_link_encoded_dotdot(self, req, kind, body):
        self._relink(req, lambda t: self.hg.origin + "/v1.0/%2e%2E/_ctl/dump?" + POISON + "=1")

    def m_next_loop(self, req, kind, body):
        hg = self.hg
        with hg.lock:
            cached = hg.state.get("page")
        if cached is None:
            status, headers, doc, data = self.forward_json(req)
            if not isinstance(doc, dict) or status != 200:
                return self.send(status, headers, data)
            doc.pop("@odata.deltaLink", None)
            doc["@odata.nextLink"] = self.page_link(req)
            cached = json.dumps(doc).encode()
            with hg.lock:
                hg.state["page"] = cached
        with hg.lock:
            hg.state["served"] = hg.state.get("served", 0) + 1
        self.send_json(200, cached)

    def m_pages_forever(self, req, kind, body):
        hg = self.hg
        with hg.lock:
            n = hg.state["served"] = hg.state.get("served", 0) + 1
        path = req.path
        keep = [(k, v) for k, v in urllib.parse.parse_qsl(req.query, keep_blank_values=True)
                if k not in ("$skiptoken", "$deltatoken")]
        keep.append(("$skiptoken", f"hostile{n}"))
        link = hg.origin + path + "?" + urllib.parse.urlencode(keep, safe="$(),'=/ ",
                                                                quote_via=urllib.parse.quote)
        oid = str(uuid.UUID(int=n))
        if kind == "directory":
            item = {"id": oid, "displayName": f"Page {n}", "userPrincipalName": f"p{n}@contoso.com",
                    "accountEnabled": True, "userType": "Member"}
        else:
            item = {"id": "AAMk" + f"{n:016d}" + "AAA=", "displayName": f"Page {n}",
                    "@odata.etag": f'W/"{n}"'}
        self.send_json(200, {"value": [item], "@odata.nextLink": link})

    # -- bodies ------------------------------------------------------------------------
    def _huge_pieces(self, total, head, item):
        chunk = item * max(1, MB // len(item))
        yield head
        sent = len(head)
        while sent < total:
            yield chunk
            sent += len(chunk)

    def m_huge_stream(self, req, kind, body):
        if kind == "batch":
            self.hg.forward(req, body)  # carried out; the answer never ends
            head = b'{"responses":[' + b'{"id":"1","status":200,"headers":{},"body":{}},'
            item = b'{"id":"x","status":200,"body":{"displayName":"xxxxxxxxxxxxxxxx"}},'
        elif kind == "token":
            head = b'{"token_type":"Bearer","expires_in":3599,"access_token":"'
            item = b"A" * 64
        else:
            head = b'{"value":['
            item = b'{"id":"AAMkAAAAAAAAAAAAAAAAAAA=","displayName":"x"},'
        self.stream(200, self._huge_pieces(200 * MB, head, item))

    def send_big(self, status, head, filler, total, tail):
        """head + `total` bytes of `filler` + tail, with a Content-Length,
        generated as it goes: the proxy never holds the body (a test process
        that grows would inflate the ru_maxrss its children report)."""
        n, rest = divmod(total, len(filler))
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(head) + total + len(tail)))
        self.end_headers()
        try:
            self.wfile.write(head)
            for _ in range(n):
                self.wfile.write(filler)
            self.wfile.write(filler[:rest] + tail)
        except (ConnectionError, OSError):
            self.close_connection = True

    def m_huge_string(self, req, kind, body):
        size, filler = 50 * MB, b"A" * MB
        if kind == "batch":
            status, headers, doc, data = self.forward_json(req, body)
            if not (isinstance(doc, dict) and isinstance(doc.get("responses"), list) and
                    doc["responses"] and isinstance(doc["responses"][0], dict)):
                return self.send(status, headers, data)
            first = doc["responses"][0]
            first["body"] = {"id": (first.get("body") or {}).get("id", "x"), "displayName": "@@"}
            text = json.dumps(doc).encode()
            head, _, tail = text.partition(b"@@")
            return self.send_big(status, head, filler, size, tail)
        if kind == "token":
            return self.send_big(200, b'{"token_type":"Bearer","expires_in":3599,'
                                 b'"access_token":"eyJ', filler, size, b'"}')
        status, headers, doc, data = self.forward_json(req)
        if not isinstance(doc, dict):
            return self.send(status, headers, data)
        first = doc["value"][0] if isinstance(doc.get("value"), list) and doc["value"] else None
        if isinstance(first, dict):
            first["displayName"] = "@@"
        else:
            doc["value"] = [{"id": "AAMkAAAAAAAAAAAAAAAAAAA=", "displayName": "@@"}]
        head, _, tail = json.dumps(doc).encode().partition(b"@@")
        self.send_big(status, head, filler, size, tail)

    def m_many_items(self, req, kind, body):
        item = b'{"id":"AAMkAAAAAAAAAAAAAAAAAAA="},'
        count = 300000
        self.send_big(200, b'{"value":[' + item[:-1], item[-1:] + item[:-1] * 1,
                      len(item) * (count - 1), b"]}")

    def m_deep_json(self, req, kind, body):
        deep = b"[" * 100000 + b"]" * 100000
        if kind == "batch":
            self.hg.forward(req, body)
            data = b'{"responses":[{"id":"1","status":200,"headers":{},"body":' + deep + b"}]}"
        elif kind == "token":
            data = b'{"token_type":"Bearer","expires_in":3599,"access_token":"x","deep":' + \
                   deep + b"}"
        else:
            data = b'{"value":' + deep + b"}"
        self.send_json(200, data)

    def _bad_texts(self, doc):
        if isinstance(doc, dict) and isinstance(doc.get("value"), list):
            for item in doc["value"]:
                if isinstance(item, dict):
                    for k in ("displayName", "givenName", "surname", "jobTitle", "companyName"):
                        item[k] = BAD_TEXT
        return doc

    def m_bad_text(self, req, kind, body):
        status, headers, doc, data = self.forward_json(req, body)
        if kind == "batch" and isinstance(doc, dict):
            for r in doc.get("responses") or []:
                if isinstance(r, dict) and isinstance(r.get("body"), dict):
                    r["body"]["displayName"] = BAD_TEXT
                    if "error" in r["body"]:
                        r["body"]["error"] = {"code": BAD_TEXT, "message": BAD_TEXT}
        else:
            self._bad_texts(doc)
        self.send_json(status, doc if doc is not None else data, headers)

    def m_raw_bytes(self, req, kind, body):
        """Every bad text a lone surrogate (as \\ud800 escapes), then every
        other one raw invalid UTF-8 bytes instead."""
        status, headers, doc, data = self.forward_json(req, body)
        if doc is None:
            return self.send(status, headers, data)
        self._bad_texts(doc)
        text = json.dumps(doc).encode()  # ASCII: the bad text as \\u escapes
        escaped = json.dumps(BAD_TEXT).encode()[1:-1]
        with self.hg.lock:
            n = self.hg.state["served"] = self.hg.state.get("served", 0) + 1
        text = text.replace(escaped, json.dumps(LONE_SURROGATE).encode()[1:-1] if n % 2
                            else RAW_BAD)
        self.send_json(status, text, headers)

    def m_error_text(self, req, kind, body):
        code = b"Evil\x1b[31m\xff\xfeCode"
        msg = (b"Denied \x1b[2J\x1b]0;pwned\x07 \xc0\xaf\xed\xa0\x80 \\u001b[1m \\ud800 " +
               b"M" * 4000)
        if kind == "token":
            data = (b'{"error":"invalid_client\x1b[2J","error_description":"AADSTS7000215: ' + msg +
                    b'","error_codes":[7000215]}')
            return self.send(401, [("Content-Type", "application/json")], data)
        if kind == "batch":
            # The batch is carried out; each sub-response says it failed, in bad text.
            status, headers, doc, _ = self.forward_json(req, body)
            subs = []
            for r in (doc or {}).get("responses") or []:
                subs.append(b'{"id":%s,"status":400,"headers":{"Content-Type":"application/json"},'
                            b'"body":{"error":{"code":"%s","message":"%s"}}}'
                            % (json.dumps(r.get("id")).encode(), code, msg))
            return self.send_json(200, b'{"responses":[' + b",".join(subs) + b"]}")
        data = b'{"error":{"code":"' + code + b'","message":"' + msg + b'"}}'
        self.send(400, [("Content-Type", "application/json"),
                        ("X-Evil-Header", "\x1b[31m")], data)

    def m_truncated(self, req, kind, body):
        if kind == "batch":
            status, headers, data = self.hg.forward(req, body)
        else:
            status, headers, data = self.hg.forward(req)
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) + 5000))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(data[: len(data) // 2])

    def m_empty_200(self, req, kind, body):
        if kind == "batch":
            self.hg.forward(req, body)
        self.send(200, [("Content-Type", "application/json")], b"")

    def m_huge_header(self, req, kind, body):
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Junk", "j" * MB)
        self.send_header("Content-Length", "13")
        self.end_headers()
        try:
            self.wfile.write(b'{"value": []}')
        except OSError:
            pass

    def m_redirect_foreign(self, req, kind, body):
        self.send(307, [("Location", self.hg.foreign.url + req.target)], b"")

    # -- listing contents --------------------------------------------------------------
    def _listing_doc(self, req):
        status, headers, doc, data = self.forward_json(req)
        ok = status == 200 and isinstance(doc, dict) and isinstance(doc.get("value"), list)
        return status, headers, doc, data, ok

    def m_id_traversal(self, req, kind, body):
        """Adds, for each id in state["ids"], a copy of the listing's first
        managed contact under that id (a departed key in its marker)."""
        status, headers, doc, data, ok = self._listing_doc(req)
        if not ok:
            return self.send(status, headers, data)
        managed = [c for c in doc["value"] if isinstance(c, dict) and
                   c.get("singleValueExtendedProperties")]
        for i, cid in enumerate(self.hg.state.get("ids", ()) if managed else ()):
            c = copy.deepcopy(managed[0])
            c["id"] = cid
            c["jobTitle"] = "Hostile"
            for p in c["singleValueExtendedProperties"]:
                v = p.get("value")
                if isinstance(v, str) and v.startswith(gst.MARKER_PREFIX):
                    p["value"] = v.rsplit(":", 1)[0] + f":departed-{i}"
            doc["value"].append(c)
        self.send_json(status, doc, headers)

    def m_etag_crlf(self, req, kind, body):
        status, headers, doc, data, ok = self._listing_doc(req)
        if ok:
            for c in doc["value"]:
                if isinstance(c, dict):
                    for k in ("@odata.etag", "changeKey"):
                        if isinstance(c.get(k), str):
                            c[k] = c[k] + "\r\n" + EVIL + ": 1"
        self.send_json(status, doc if doc is not None else data, headers)

    def m_duplicate_ids(self, req, kind, body):
        status, headers, doc, data, ok = self._listing_doc(req)
        if ok:
            extra = []
            for c in doc["value"]:
                if isinstance(c, dict):
                    d = copy.deepcopy(c)
                    for p in d.get("singleValueExtendedProperties") or []:
                        v = p.get("value")
                        if isinstance(v, str) and v.startswith(gst.MARKER_PREFIX):
                            p["value"] = v + "-twin"
                    d["jobTitle"] = "Twin"
                    extra.append(d)
            doc["value"] += extra
        self.send_json(status, doc if doc is not None else data, headers)

    # -- $batch answers ------------------------------------------------------------------
    def _batch_doc(self, req, body):
        status, headers, doc, data = self.forward_json(req, body)
        ok = status == 200 and isinstance(doc, dict) and isinstance(doc.get("responses"), list)
        return status, headers, doc, data, ok

    def m_batch_unknown_ids(self, req, kind, body):
        status, headers, doc, data, ok = self._batch_doc(req, body)
        if ok:
            for i, r in enumerate(doc["responses"]):
                if i % 2 == 0 and isinstance(r, dict):
                    r["id"] = "9" + str(r.get("id")) + "9"
        self.send_json(status, doc if doc is not None else data, headers)

    def m_batch_dup_ids(self, req, kind, body):
        status, headers, doc, data, ok = self._batch_doc(req, body)
        if ok:
            twins = []
            for r in doc["responses"]:
                t = copy.deepcopy(r)
                t["status"] = 500 if 200 <= (r.get("status") or 0) < 300 else 201
                twins.append(t)
            doc["responses"] += twins
        self.send_json(status, doc if doc is not None else data, headers)

    def m_batch_other_object(self, req, kind, body):
        status, headers, doc, data, ok = self._batch_doc(req, body)
        if ok:
            try:
                sent = {str(r.get("id")): str(r.get("url", "")) for r in json.loads(body)["requests"]}
            except (ValueError, KeyError, TypeError, AttributeError):
                sent = {}
            for r in doc["responses"]:
                if not isinstance(r, dict) or not isinstance(r.get("body"), dict):
                    continue
                path = sent.get(str(r.get("id")), "").split("?")[0]
                if re.fullmatch(r"/users/[^/]+", path) and "id" in r["body"]:
                    r["body"]["id"] = "00000000-0000-4000-8000-999999999999"
        self.send_json(status, doc if doc is not None else data, headers)

    def m_batch_missing_ids(self, req, kind, body):
        status, headers, doc, data, ok = self._batch_doc(req, body)
        if ok:
            doc["responses"] = doc["responses"][1::2]
        self.send_json(status, doc if doc is not None else data, headers)

    def m_batch_bad_status(self, req, kind, body):
        status, headers, doc, data, ok = self._batch_doc(req, body)
        if ok:
            bad = ["200", None, -1, 99999, True, 2.5, 1e300, [200], {}, "OK"]
            for i, r in enumerate(doc["responses"]):
                r["status"] = bad[i % len(bad)]
        self.send_json(status, doc if doc is not None else data, headers)

    def m_batch_garbage(self, req, kind, body):
        status, headers, doc, data, ok = self._batch_doc(req, body)
        with self.hg.lock:
            n = self.hg.state["served"] = self.hg.state.get("served", 0) + 1
        garbage = [{"responses": [1, "x", None, [], {"id": 5}, {"id": "1", "status": 200,
                                                                "body": "not base64 ~~"}]},
                   {"responses": {"1": {"status": 200}}}, {"responses": None}, [], "x"]
        self.send_json(200, garbage[(n - 1) % len(garbage)])

    def m_batch_sub_429(self, req, kind, body):
        status, headers, doc, data, ok = self._batch_doc(req, body)
        if ok:
            for r in doc["responses"]:
                r["status"] = 429
                r["headers"] = {"Retry-After": "999999999", "Content-Type": "application/json"}
                r["body"] = {"error": {"code": "ApplicationThrottled", "message": "later"}}
        self.send_json(status, doc if doc is not None else data, headers)

    # -- throttling and stalls -----------------------------------------------------------
    def m_retry_after_huge(self, req, kind, body):
        self.send_json(429, {"error": {"code": "ApplicationThrottled", "message": "Slow down."}},
                       [("Retry-After", "999999999")])

    def m_retry_after_date(self, req, kind, body):
        self.send_json(503, {"error": {"code": "ServiceUnavailable", "message": "Later."}},
                       [("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")])

    def m_trickle(self, req, kind, body):
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b'{"value":[')
            for _ in range(100000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1)
        except (ConnectionError, OSError):
            pass

    def m_silent(self, req, kind, body):
        self.close_connection = True
        self.connection.settimeout(1)
        for _ in range(600):
            try:
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def m_always_401(self, req, kind, body):
        if kind == "batch":
            # A $batch of the target mailbox's requests: the envelope is 401 too.
            if not any(classify(str(s.get("method")), "/v1.0" + str(s.get("url", "")))[1]
                       in self.hg.targets
                       for s in (json.loads(req.body).get("requests") or [])):
                return False
        self.send_json(401, {"error": {"code": "InvalidAuthenticationToken",
                                       "message": "Access token validation failure."}},
                       [("WWW-Authenticate", 'Bearer realm="hostile", error="invalid_token"')])

    # -- token endpoint ----------------------------------------------------------------
    def _token(self, req):
        status, headers, data = self.hg.forward(req)
        self.note_token(data)
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        return status, headers, doc, data

    def m_token_10mb(self, req, kind, body):
        self._token(req)
        head = b'{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ'
        with self.hg.lock:
            self.hg.tokens.add("eyJ" + "A" * 1000)  # what of it would show in any output
        self.send_big(200, head, b"A" * MB, 10 * MB, b'"}')

    def m_token_not_json(self, req, kind, body):
        self.send(200, [("Content-Type", "text/html")],
                  b"<html><head><title>Sign in</title></head><body>\x1b[2JPlease sign in"
                  b"</body></html>")

    def m_token_crlf(self, req, kind, body):
        status, headers, doc, data = self._token(req)
        if isinstance(doc, dict) and isinstance(doc.get("access_token"), str):
            doc["access_token"] += "\r\n" + EVIL + ": 1"
            with self.hg.lock:
                self.hg.tokens.add(doc["access_token"])
        self.send_json(status, doc if doc is not None else data, headers)

    def m_token_expired(self, req, kind, body):
        status, headers, doc, data = self._token(req)
        if isinstance(doc, dict):
            doc["expires_in"] = -100
            doc["ext_expires_in"] = -100
        self.send_json(status, doc if doc is not None else data, headers)

    # -- folders ---------------------------------------------------------------------------
    def m_location_foreign(self, req, kind, body):
        status, headers, doc, data = self.forward_json(req)
        if req.method == "POST" and isinstance(doc, dict):
            where = f"{self.hg.foreign.url}/v1.0{req.path[len('/v1.0'):]}/{doc.get('id')}"
            doc["@odata.id"] = where
            doc["@odata.context"] = self.hg.foreign.url + "/v1.0/$metadata#contactFolders"
            headers = headers + [("Location", where), ("Content-Location", where)]
        self.send_json(status, doc if doc is not None else data, headers)

    def m_folder_id_traversal(self, req, kind, body):
        """The folder lookup's folders (state["on"] "lookup") or the create's
        answer ("create") get the id state["folder_id"]."""
        status, headers, doc, data = self.forward_json(req)
        fid, on = self.hg.state.get("folder_id", ".."), self.hg.state.get("on", "lookup")
        if on == "lookup" and isinstance(doc, dict) and isinstance(doc.get("value"), list):
            for f in doc["value"]:
                if isinstance(f, dict):
                    f["id"] = fid
        elif on == "create" and req.method == "POST" and isinstance(doc, dict) and "id" in doc:
            doc["id"] = fid
        self.send_json(status, doc if doc is not None else data, headers)
