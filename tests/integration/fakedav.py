"""A small, correct CardDAV server for roster's tests, run as its own process
on 127.0.0.1 so that it outlives a roster that crashes (the crash matrix kills
roster at every failpoint and then checks what the server holds).

It serves what roster's CardDAV client uses: a home per user at /USER/ (also
its principal), address books inside it (extended MKCOL), PROPFIND (Depth 0
and 1: resourcetype, displayname, supported-report-set, getctag, getetag,
addressbook-home-set), sync-collection (RFC 6578) and addressbook-multiget
REPORTs, and PUT and DELETE with If-Match / If-None-Match. Authentication is
not checked.

Tests control it under /_ctl/: GET dump (the whole state as JSON, plus a count
of writes), POST load (replace the state with a dump), POST reset, POST
drop_puts ("on": PUT answers 201 and keeps nothing, as a lying server would).

    python3 fakedav.py PORT      prints "ready" once it listens
"""
import hashlib
import http.server
import json
import re
import sys
import threading
import urllib.parse
import xml.etree.ElementTree as ET

DAV = "DAV:"
CARD = "urn:ietf:params:xml:ns:carddav"
CS = "http://calendarserver.org/ns/"
TOKEN_PREFIX = "http://fakedav.invalid/sync/"


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.seq = 0
        self.homes = set()
        # book path -> {"displayname", "items": {href: [etag, data]},
        #               "changes": {href: seq}, "born": seq}
        self.books = {}
        self.writes = 0
        # A lying server for one test: PUT answers 201 with an etag but keeps nothing.
        self.drop_puts = False

    def dump(self):
        return {"seq": self.seq, "homes": sorted(self.homes), "books": self.books,
                "writes": self.writes}

    def load(self, d):
        self.seq = d["seq"]
        self.homes = set(d["homes"])
        self.books = d["books"]
        self.writes = 0

    def bump(self, book, href):
        self.seq += 1
        book["changes"][href] = self.seq
        book["ctag"] = self.seq


STATE = State()


def esc(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def multistatus(responses, token=None):
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           f'<d:multistatus xmlns:d="{DAV}" xmlns:c="{CARD}" xmlns:cs="{CS}">']
    out += responses
    if token is not None:
        out.append(f"<d:sync-token>{esc(token)}</d:sync-token>")
    out.append("</d:multistatus>")
    return "\n".join(out).encode()


def response(href, props=None, status=None):
    if status is not None:
        return (f"<d:response><d:href>{esc(href)}</d:href>"
                f"<d:status>HTTP/1.1 {status}</d:status></d:response>")
    return (f"<d:response><d:href>{esc(href)}</d:href><d:propstat><d:prop>{''.join(props)}"
            "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>")


def requested_props(body):
    try:
        root = ET.fromstring(body) if body else None
    except ET.ParseError:
        return None
    if root is None:
        return None
    prop = root.find(f"{{{DAV}}}prop")
    return None if prop is None else [c.tag for c in prop]


def collection_props(path, book, wanted, user):
    props = []
    for tag in wanted:
        if tag == f"{{{DAV}}}resourcetype":
            inner = "<d:collection/>" + ("<c:addressbook/>" if book is not None else "")
            props.append(f"<d:resourcetype>{inner}</d:resourcetype>")
        elif tag == f"{{{DAV}}}displayname" and book is not None:
            props.append(f"<d:displayname>{esc(book['displayname'])}</d:displayname>")
        elif tag == f"{{{DAV}}}supported-report-set" and book is not None:
            props.append("<d:supported-report-set><d:supported-report><d:report>"
                         "<d:sync-collection/></d:report></d:supported-report>"
                         "</d:supported-report-set>")
        elif tag == f"{{{CS}}}getctag" and book is not None:
            props.append(f"<cs:getctag>{book.get('ctag', book['born'])}</cs:getctag>")
        elif tag == f"{{{CARD}}}addressbook-home-set" and book is None and user:
            props.append(f"<c:addressbook-home-set><d:href>/{esc(user)}/</d:href>"
                         "</c:addressbook-home-set>")
        elif tag == f"{{{DAV}}}current-user-principal":
            pass
    return props


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body=b"", headers=None, ctype="application/xml; charset=utf-8"):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def path_only(self):
        return urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)

    # --- control -----------------------------------------------------------
    def ctl(self, path):
        body = self.body()
        with STATE.lock:
            if path == "/_ctl/dump":
                return self.send(200, json.dumps(STATE.dump()).encode(), ctype="application/json")
            if path == "/_ctl/load":
                STATE.load(json.loads(body))
                return self.send(204)
            if path == "/_ctl/reset":
                STATE.reset()
                return self.send(204)
            if path == "/_ctl/drop_puts":
                STATE.drop_puts = body == b"on"
                return self.send(204)
        return self.send(404)

    # --- DAV ---------------------------------------------------------------
    def do_GET(self):
        path = self.path_only()
        if path.startswith("/_ctl/"):
            return self.ctl(path)
        with STATE.lock:
            book_path, name = split_item(path)
            book = STATE.books.get(book_path)
            if book is None or path not in book["items"]:
                return self.send(404)
            etag, data = book["items"][path]
            return self.send(200, data.encode(), {"ETag": etag}, ctype="text/vcard")

    def do_POST(self):
        path = self.path_only()
        if path.startswith("/_ctl/"):
            return self.ctl(path)
        self.body()
        return self.send(405)

    def do_PROPFIND(self):
        path = self.path_only()
        wanted = requested_props(self.body()) or []
        depth = self.headers.get("Depth", "1")
        with STATE.lock:
            if path == "/":
                return self.send(207, multistatus([response("/", [])]))
            parts = [p for p in path.split("/") if p]
            user = parts[0]
            if len(parts) == 1:  # principal and home
                if user not in STATE.homes:
                    return self.send(404)
                home = f"/{user}/"
                out = [response(home, collection_props(home, None, wanted, user))]
                if depth != "0":
                    for bp in sorted(STATE.books):
                        if bp.startswith(home) and bp.count("/") == 3:
                            out.append(response(bp, collection_props(bp, STATE.books[bp],
                                                                     wanted, None)))
                return self.send(207, multistatus(out))
            bp = "/" + "/".join(parts[:2]) + "/"
            book = STATE.books.get(bp)
            if book is None or len(parts) > 2:
                return self.send(404)
            out = [response(bp, collection_props(bp, book, wanted, None))]
            if depth != "0":
                for href, (etag, _) in sorted(book["items"].items()):
                    out.append(response(href, [f"<d:getetag>{esc(etag)}</d:getetag>",
                                               "<d:getcontenttype>text/vcard</d:getcontenttype>",
                                               "<d:resourcetype/>"]))
            return self.send(207, multistatus(out))

    def do_MKCOL(self):
        path = self.path_only()
        body = self.body().decode("utf-8", "replace")
        with STATE.lock:
            parts = [p for p in path.split("/") if p]
            if len(parts) == 1:
                if parts[0] in STATE.homes:
                    return self.send(405)
                STATE.homes.add(parts[0])
                STATE.writes += 1
                return self.send(201)
            if len(parts) != 2 or parts[0] not in STATE.homes:
                return self.send(409)
            bp = f"/{parts[0]}/{parts[1]}/"
            if bp in STATE.books:
                return self.send(405)
            m = re.search(r"displayname[^>]*>([^<]*)<", body)
            STATE.seq += 1
            STATE.books[bp] = {"displayname": m.group(1) if m else "", "items": {},
                               "changes": {}, "born": STATE.seq, "ctag": STATE.seq}
            STATE.writes += 1
            return self.send(201)

    def do_REPORT(self):
        path = self.path_only()
        raw = self.body()
        with STATE.lock:
            book = STATE.books.get(path)
            if book is None:
                return self.send(404)
            root = ET.fromstring(raw)
            if root.tag == f"{{{DAV}}}sync-collection":
                return self.sync_report(book, root)
            if root.tag == f"{{{CARD}}}addressbook-multiget":
                out = []
                for h in root.iter(f"{{{DAV}}}href"):
                    href = urllib.parse.unquote(h.text or "")
                    if href in book["items"]:
                        etag, data = book["items"][href]
                        out.append(response(href, [f"<d:getetag>{esc(etag)}</d:getetag>",
                                                   f"<c:address-data>{esc(data)}"
                                                   "</c:address-data>"]))
                    else:
                        out.append(response(href, status="404 Not Found"))
                return self.send(207, multistatus(out))
            return self.send(400)

    def sync_report(self, book, root):
        tok = root.find(f"{{{DAV}}}sync-token")
        token = (tok.text or "").strip() if tok is not None else ""
        since = 0
        if token:
            if not token.startswith(TOKEN_PREFIX):
                return self.send(403, multistatus([]))
            try:
                since = int(token[len(TOKEN_PREFIX):])
            except ValueError:
                return self.send(403, multistatus([]))
            if since > STATE.seq or since < book["born"]:
                return self.send(403, multistatus([]))
        out = []
        for href, seq in sorted(book["changes"].items()):
            if seq <= since:
                continue
            if href in book["items"]:
                out.append(response(href, [f"<d:getetag>{esc(book['items'][href][0])}</d:getetag>"]))
            elif since:
                out.append(response(href, status="404 Not Found"))
        return self.send(207, multistatus(out, TOKEN_PREFIX + str(STATE.seq)))

    def do_PUT(self):
        path = self.path_only()
        data = self.body().decode("utf-8")
        with STATE.lock:
            bp, name = split_item(path)
            book = STATE.books.get(bp)
            if book is None or not name:
                return self.send(409)
            current = book["items"].get(path)
            inm = self.headers.get("If-None-Match")
            im = self.headers.get("If-Match")
            if inm == "*" and current is not None:
                return self.send(412)
            if im is not None and (current is None or (im != "*" and im != current[0])):
                return self.send(412)
            etag = '"%d-%s"' % (STATE.seq + 1, hashlib.sha1(data.encode()).hexdigest()[:8])
            if STATE.drop_puts:
                return self.send(201, headers={"ETag": etag})
            book["items"][path] = [etag, data]
            STATE.bump(book, path)
            STATE.writes += 1
            return self.send(204 if current else 201, headers={"ETag": etag})

    def do_DELETE(self):
        path = self.path_only()
        with STATE.lock:
            bp, name = split_item(path)
            book = STATE.books.get(bp)
            if book is None:
                return self.send(404)
            if not name:  # the whole book
                del STATE.books[bp]
                STATE.writes += 1
                return self.send(204)
            current = book["items"].get(path)
            if current is None:
                return self.send(404)
            im = self.headers.get("If-Match")
            if im is not None and im != "*" and im != current[0]:
                return self.send(412)
            del book["items"][path]
            STATE.bump(book, path)
            STATE.writes += 1
            return self.send(204)


def split_item(path):
    """'/alice/book/x.vcf' -> ('/alice/book/', '/alice/book/x.vcf'); a book path -> (it, '')."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2:
        return "", ""
    bp = f"/{parts[0]}/{parts[1]}/"
    return bp, (path if len(parts) == 3 else "")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client killed mid-request (the crash matrix does that) is no news


def main():
    port = int(sys.argv[1])
    server = Server(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
