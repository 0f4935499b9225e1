"""A small CardDAV server that misbehaves on purpose, for roster's
hostile-server tests (tests/integration/hostile_server_test.py).

In mode "correct" it is a minimal correct server: a principal and home per
user at /USER/, address books inside it (extended MKCOL), PROPFIND (Depth 0
and 1), sync-collection (RFC 6578) with getctag, addressbook-multiget, PUT and
DELETE with etags, Basic auth checked against `users`. Other modes (set
`server.mode` between runs) make it lie in one way each; see MODES. A second
server on another port, `server.foreign`, stands for another origin: it
records every request it gets, with its Authorization header.

Everything runs in threads of the calling process, on 127.0.0.1, free ports.
"""
import base64
import hashlib
import http.server
import os
import posixpath
import ssl
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

DAV = "DAV:"
CARD = "urn:ietf:params:xml:ns:carddav"
TOKEN = "http://hostile.invalid/sync/"

MODES = {
    "correct": "a correct server",
    "foreign_home": "addressbook-home-set on the foreign origin",
    "foreign_principal": "the user's principal is 404; current-user-principal is foreign",
    "downgrade": "(with tls=True) addressbook-home-set on plain http://, another port",
    "redirect": "the principal answers 302 to the foreign origin",
    "hrefs_dotdot": "listings also name bob's cards as ../../bob/BOOK/NAME",
    "hrefs_absolute": "listings also name bob's cards as /bob/BOOK/NAME",
    "hrefs_encoded": "listings also name bob's cards as /alice/BOOK/%2e%2e/%2e%2e/bob/...",
    "hrefs_foreign": "listings also name cards as http://FOREIGN/alice/BOOK/NAME",
    "multiget_outside": "multiget answers also carry bob's cards",
    "home_member_outside": "the home listing names bob's book and a foreign one",
    "etag_crlf": "every etag carries CR LF and a header",
    "bad_utf8": "invalid UTF-8 and terminal escapes in names, hrefs and cards",
    "truncated_forever": "every sync report is truncated (507) with a new token",
    "empty_xml_60mb": "listings are 60 MB of empty XML elements (chunked, no length)",
    "empty_xml_under_cap": "listings are 7.5 MB of empty XML elements",
    "stream_3gb": "listings are a 3 GB body generated on the fly",
    "retry_after_forever": "listings answer 503 with Retry-After: 99999999",
    "trickle": "listings trickle one byte per second",
    "always_401": "every request is refused with 401",
}

CRLF_ETAG = "&#13;&#10;X-Evil: 1"


def _etag(data):
    return '"' + hashlib.sha1(data).hexdigest()[:16] + '"'


class Book:
    def __init__(self, displayname):
        self.displayname = displayname
        self.items = {}  # name -> (etag, data bytes)
        self.seq = 0
        self.log = []  # (seq, name)

    def touch(self, name):
        self.seq += 1
        self.log.append((self.seq, name))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- plumbing ---------------------------------------------------------
    @property
    def dav(self):
        return self.server.dav

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body=b"", headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def multistatus(self, inner, token=None):
        tok = f"<d:sync-token>{token}</d:sync-token>" if token is not None else ""
        self.reply(207, '<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:" '
                        f'xmlns:card="{CARD}" xmlns:cs="http://calendarserver.org/ns/">'
                        f"{inner}{tok}</d:multistatus>",
                   {"Content-Type": "application/xml; charset=utf-8"})

    @staticmethod
    def resp(href, props):
        return (f"<d:response><d:href>{href}</d:href><d:propstat><d:prop>{props}</d:prop>"
                "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>")

    def authorised(self):
        auth = self.headers.get("Authorization", "")
        self.dav.record(self.command, self.path, dict(self.headers))
        if self.dav.mode == "always_401" or not auth.startswith("Basic "):
            self.reply(401, "", {"WWW-Authenticate": 'Basic realm="hostile"'})
            return False
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        if self.dav.users.get(user) != password:
            self.reply(401, "", {"WWW-Authenticate": 'Basic realm="hostile"'})
            return False
        return True

    def split(self):
        """(user, book, name) of the request path; missing parts are None."""
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.split("/")
                 if p]
        return (parts + [None, None, None])[:3]

    # -- methods ----------------------------------------------------------
    def do_PROPFIND(self):
        self.body()
        if not self.authorised():
            return
        d = self.dav
        user, book, name = self.split()
        depth = self.headers.get("Depth", "0")
        if user is None:
            cup = "/roster/"
            if d.mode == "foreign_principal":
                cup = d.foreign.url + "alice/"
            return self.multistatus(self.resp("/", "<d:current-user-principal><d:href>" + cup +
                                              "</d:href></d:current-user-principal>"))
        if book is None:
            return self.propfind_home(user, depth)
        b = d.books.get((user, book))
        if b is None or name is not None:
            return self.reply(404)
        return self.propfind_book(user, book, b, depth)

    def propfind_home(self, user, depth):
        d = self.dav
        if d.mode == "redirect":
            return self.reply(302, "", {"Location": d.foreign.url + user + "/"})
        if d.mode == "foreign_principal" and user == "alice":
            return self.reply(404)
        if user not in d.homes:
            return self.reply(404)
        home = f"/{user}/"
        if d.mode in ("foreign_home", "bad_utf8"):
            home = d.foreign.url + user + "/"
            if d.mode == "bad_utf8":
                home += "\udcff\x1b[2J\udcfe/"  # raw bytes 0xff, ESC, 0xfe
        elif d.mode == "downgrade":
            home = d.foreign.url + user + "/"
        inner = self.resp(f"/{user}/", "<d:resourcetype><d:collection/></d:resourcetype>"
                          f"<card:addressbook-home-set><d:href>{home}</d:href>"
                          "</card:addressbook-home-set>")
        if depth == "1":
            for (u, name), b in sorted(d.books.items()):
                if u == user:
                    inner += self.resp(f"/{u}/{name}/", self.book_props(b))
            if d.mode == "home_member_outside" and user == "alice":
                for (u, name), b in sorted(d.books.items()):
                    if u == "bob":
                        inner += self.resp(f"/bob/{name}/", self.book_props(b))
                        inner += self.resp(f"/alice/../bob/{name}/", self.book_props(b))
                inner += self.resp(d.foreign.url + "alice/x/",
                                   self.book_props(Book("Company Contacts")))
        self.multistatus(inner)

    def book_props(self, b):
        name = b.displayname
        if self.dav.mode == "bad_utf8":
            name = "Bad \udcff\x1b[31mName"
        return ("<d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>"
                f"<d:displayname>{name}</d:displayname><cs:getctag>{b.seq}</cs:getctag>"
                "<d:supported-report-set><d:supported-report><d:report><d:sync-collection/>"
                "</d:report></d:supported-report></d:supported-report-set>")

    def item_props(self, etag):
        if self.dav.mode == "etag_crlf":
            etag = etag + CRLF_ETAG
        return f"<d:getetag>{etag}</d:getetag><d:getcontenttype>text/vcard</d:getcontenttype>"

    def propfind_book(self, user, book, b, depth):
        inner = self.resp(f"/{user}/{book}/", self.book_props(b))
        if depth == "1":
            for name, (etag, _) in sorted(b.items.items()):
                inner += self.resp(f"/{user}/{book}/{name}", self.item_props(etag))
            inner += self.outsiders(user, book)
        self.multistatus(inner)

    def outsiders(self, user, book):
        """Hrefs a lying listing of alice's book adds: bob's cards, spelled per mode."""
        d = self.dav
        if user != "alice" or not d.mode.startswith("hrefs_"):
            return ""
        out = ""
        for (u, name), b in sorted(d.books.items()):
            if u != "bob":
                continue
            for item, (etag, _) in sorted(b.items.items()):
                href = {"hrefs_dotdot": f"../../bob/{name}/{item}",
                        "hrefs_absolute": f"/bob/{name}/{item}",
                        "hrefs_encoded": f"/alice/{book}/%2e%2e/%2e%2e/bob/{name}/{item}",
                        "hrefs_foreign": f"{d.foreign.url}alice/{book}/{item}"}[d.mode]
                out += self.resp(href, self.item_props(etag))
        return out

    def do_REPORT(self):
        raw = self.body()
        if not self.authorised():
            return
        d = self.dav
        user, book, _ = self.split()
        b = d.books.get((user, book))
        if b is None:
            return self.reply(404)
        root = ET.fromstring(raw)
        if root.tag == f"{{{DAV}}}sync-collection":
            if d.hostile_body(self):
                return
            token = root.findtext(f"{{{DAV}}}sync-token") or ""
            return self.sync_report(user, book, b, token)
        if root.tag == f"{{{CARD}}}addressbook-multiget":
            hrefs = [h.text or "" for h in root.iter(f"{{{DAV}}}href")]
            return self.multiget(user, book, hrefs)
        self.reply(400)

    def sync_report(self, user, book, b, token):
        d = self.dav
        since = 0
        if token:
            if not token.startswith(TOKEN) or not token[len(TOKEN):].isdigit():
                return self.reply(403, '<d:error xmlns:d="DAV:"><d:valid-sync-token/></d:error>')
            since = int(token[len(TOKEN):])
        if d.mode == "truncated_forever":
            return self.truncated_page(user, book)
        names = sorted({n for seq, n in b.log if seq > since})
        inner = ""
        for name in names:
            if name in b.items:
                inner += self.resp(f"/{user}/{book}/{name}", self.item_props(b.items[name][0]))
            elif since:
                inner += (f"<d:response><d:href>/{user}/{book}/{name}</d:href>"
                          "<d:status>HTTP/1.1 404 Not Found</d:status></d:response>")
        inner += self.outsiders(user, book)
        self.multistatus(inner, TOKEN + str(b.seq))

    def truncated_page(self, user, book):
        """2,000 new members and a 507 on the collection, every time."""
        d = self.dav
        with d.lock:
            d.page += 1
            page = d.page
        inner = "".join(self.resp(f"/{user}/{book}/p{page}-{i}.vcf",
                                  f'<d:getetag>"{page}-{i}"</d:getetag>') for i in range(2000))
        inner += (f"<d:response><d:href>/{user}/{book}/</d:href>"
                  "<d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>")
        self.multistatus(inner, TOKEN + str(10 ** 6 + page))

    def multiget(self, user, book, hrefs):
        d = self.dav
        inner = ""
        asked = list(hrefs)
        if d.mode == "multiget_outside" and user == "alice":
            asked += [f"/bob/{n}/{i}" for (u, n), b in d.books.items() if u == "bob"
                      for i in b.items]
        for href in asked:
            # A naive server: whatever the href resolves to, in any book.
            path = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(href).path))
            parts = [p for p in path.split("/") if p]
            item = None
            if len(parts) == 3 and (parts[0], parts[1]) in d.books:
                item = d.books[(parts[0], parts[1])].items.get(parts[2])
            if item is None:
                inner += (f"<d:response><d:href>{href}</d:href>"
                          "<d:status>HTTP/1.1 404 Not Found</d:status></d:response>")
                continue
            data = item[1].decode("utf-8", "surrogateescape")
            data = data.replace("&", "&amp;").replace("<", "&lt;")
            inner += self.resp(href, self.item_props(item[0]) +
                               f"<card:address-data>{data}</card:address-data>")
        self.multistatus(inner)

    def do_MKCOL(self):
        raw = self.body()
        if not self.authorised():
            return
        d = self.dav
        user, book, name = self.split()
        d.writes.append(("MKCOL", self.path))
        if user is None or name is not None:
            return self.reply(403)
        if book is None:
            if user in d.homes:
                return self.reply(405)
            d.homes.add(user)
            return self.reply(201)
        if user not in d.homes:
            return self.reply(409)
        if (user, book) in d.books:
            return self.reply(405)
        display = ""
        if raw:
            el = ET.fromstring(raw).find(f".//{{{DAV}}}displayname")
            display = el.text if el is not None else ""
        d.books[(user, book)] = Book(display)
        self.reply(201)

    def do_PUT(self):
        data = self.body()
        if not self.authorised():
            return
        d = self.dav
        user, book, name = self.split()
        d.writes.append(("PUT", self.path))
        b = d.books.get((user, book))
        if b is None or name is None:
            return self.reply(409)
        current = b.items.get(name)
        if self.headers.get("If-None-Match") == "*" and current:
            return self.reply(412)
        match = self.headers.get("If-Match")
        if match and match != "*" and (not current or current[0] != match):
            return self.reply(412)
        if match == "*" and not current:
            return self.reply(412)
        etag = _etag(data)
        b.items[name] = (etag, data)
        b.touch(name)
        self.reply(204 if current else 201, "", {"ETag": etag})

    def do_DELETE(self):
        self.body()
        if not self.authorised():
            return
        d = self.dav
        user, book, name = self.split()
        d.writes.append(("DELETE", self.path))
        b = d.books.get((user, book))
        if b is None or name not in b.items:
            return self.reply(404)
        match = self.headers.get("If-Match")
        if match and match != "*" and b.items[name][0] != match:
            return self.reply(412)
        del b.items[name]
        b.touch(name)
        self.reply(204)


class Recorder(http.server.BaseHTTPRequestHandler):
    """The foreign origin: notes who asked, with which credentials, and says 404."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PROPFIND = do_REPORT = do_PUT = do_DELETE = do_MKCOL = answer


def _serve(handler, tls_dir=None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    scheme = "http"
    if tls_dir:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem"))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/"
    return server


def make_cert(folder):
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem) in `folder`."""
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", os.path.join(folder, "key.pem"),
                    "-out", os.path.join(folder, "cert.pem")],
                   check=True, capture_output=True)
    return os.path.join(folder, "cert.pem")


class HostileDav:
    """The server, its foreign twin, and what both saw."""

    def __init__(self, users, mode="correct", tls_dir=None):
        self.users = dict(users)
        self.mode = mode
        self.lock = threading.Lock()
        self.homes = set()
        self.books = {}  # (user, book) -> Book
        self.requests = []  # (method, path, headers)
        self.writes = []  # (method, path) of MKCOL, PUT, DELETE
        self.page = 0
        self.server = _serve(Handler, tls_dir)
        self.server.dav = self
        self.url = self.server.url
        self.foreign = _serve(Recorder)
        self.foreign.seen = []

    def record(self, method, path, headers):
        with self.lock:
            self.requests.append((method, path, headers))

    def add_book(self, user, name, displayname, cards):
        """A book with `cards` ({name: vCard text}) put there by hand."""
        self.homes.add(user)
        b = self.books[(user, name)] = Book(displayname)
        for item, text in cards.items():
            data = text.encode("utf-8", "surrogateescape")
            b.items[item] = (_etag(data), data)
            b.touch(item)
        return b

    def snapshot(self, user):
        """Every book of `user`, byte for byte."""
        return {name: dict(b.items) for (u, name), b in self.books.items() if u == user}

    # -- hostile bodies for listings ----------------------------------------
    def hostile_body(self, h):
        """Answers a listing with a hostile body when the mode says so; True if it did."""
        if self.mode == "empty_xml_60mb":
            return self._stream(h, b"<a/>" * 16384, 60 << 20, chunked=True)
        if self.mode == "stream_3gb":
            return self._stream(h, b"<d:x/>" * 10923, 3 << 30, chunked=False)
        if self.mode == "empty_xml_under_cap":
            h.multistatus("<a/>" * ((15 << 20) // 8))  # 7.5 MB
            return True
        if self.mode == "retry_after_forever":
            h.reply(503, "", {"Retry-After": "99999999"})
            return True
        if self.mode == "trickle":
            return self._trickle(h)
        return False

    @staticmethod
    def _stream(h, chunk, total, chunked):
        """`total` bytes of `chunk`s, generated as they go, never held whole."""
        h.send_response(207)
        h.send_header("Content-Type", "application/xml")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        head = b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">'
        sent = 0
        try:
            for piece in [head] + [chunk] * (total // len(chunk)):
                if chunked:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    h.wfile.write(piece)
                sent += len(piece)
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, OSError):
            h.close_connection = True  # roster hung up, as it should
        return True

    @staticmethod
    def _trickle(h):
        h.send_response(207)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            for _ in range(100000):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(1)
        except (ConnectionError, OSError):
            h.close_connection = True
        return True

    def stop(self):
        for s in (self.server, self.foreign):
            s.shutdown()
            s.server_close()
