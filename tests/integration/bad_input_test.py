#!/usr/bin/env python3
"""Bad input, each a test: a malformed CSV row, an unknown config key, an
unreachable server, a wrong password, a server answering with broken XML, a
vCard with a 1 MB line. Each gives one clear line naming the problem, a
non-zero exit, and nothing recorded as done that was not done."""
import http.server
import os
import sqlite3
import sys
import threading

import harness
from harness import check

BOOK = "Company Contacts"


def one_line(err):
    """The error lines; the note of a first sync that it created the state's
    key is not one of them."""
    lines = [l for l in err.strip().splitlines()
             if l.strip() and "created the state's key in" not in l]
    return lines


def managed_rows(state):
    if not os.path.exists(state):
        return 0
    db = sqlite3.connect(state)
    try:
        return db.execute("SELECT COUNT(*) FROM items WHERE key IS NOT NULL").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_malformed_csv_row(s):
    harness.write_people(s.csv, 10)
    with open(s.csv, "a") as f:
        f.write('E999,"unterminated,Quote,x@example.com,,,,Sales,\n')
    code, out, err = harness.roster(s.config, "sync")
    check(code == 1, f"exit {code}")
    lines = one_line(err)
    check(len(lines) == 1, f"one line expected: {err!r}")
    check("staff.csv: line 12" in lines[0], f"message: {lines[0]}")
    check(s.radicale.book_dir("alice", BOOK) is None, "nothing should have been written")
    check(managed_rows(s.state) == 0, "nothing recorded")


def test_unknown_config_key(s):
    path = os.path.join(s.workdir, "bad.toml")
    with open(s.config) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('key = "id"', 'key = "id"\ncolums = "x"'))
    code, out, err = harness.roster(path, "plan")
    check(code == 2, f"exit {code}")
    lines = one_line(err)
    check(len(lines) == 1 and 'unknown key "colums"' in lines[0] and "bad.toml:" in lines[0],
          f"message: {err!r}")


def test_unreachable_server(s):
    harness.write_people(s.csv, 10)
    port = harness.free_port()
    cfg = harness.write_config(os.path.join(s.workdir, "down.toml"), f"http://127.0.0.1:{port}/",
                               s.csv, ["alice"], state=os.path.join(s.workdir, "down.db"))
    code, out, err = harness.roster(cfg, "sync")
    check(code == 1, f"exit {code}")
    lines = one_line(err)
    check(len(lines) == 1 and "cannot connect" in lines[0] and str(port) in lines[0],
          f"message: {err!r}")
    check(managed_rows(os.path.join(s.workdir, "down.db")) == 0, "nothing recorded")


def test_wrong_password(s):
    secure = harness.Radicale(os.path.join(s.workdir, "auth"), users={"roster": "right-pass"})
    try:
        harness.write_people(s.csv, 10)
        state = os.path.join(s.workdir, "auth.db")
        cfg = harness.write_config(os.path.join(s.workdir, "auth.toml"), secure.url, s.csv,
                                   ["roster"], state=state,
                                   auth='username = "roster"\npassword_env = "ROSTER_TEST_PW"\n')
        secret = "wrong-pass-7d1c"
        code, out, err = harness.roster(cfg, "sync", env={"ROSTER_TEST_PW": secret})
        check(code == 1, f"exit {code}")
        lines = one_line(err)
        check(len(lines) == 1 and "401" in lines[0] and "credentials" in lines[0],
              f"message: {err!r}")
        check(secret not in err and secret not in str(out), "the password leaked into the output")
        with open(state, "rb") as f:
            check(secret.encode() not in f.read(), "the password leaked into the state file")
        code, out, err = harness.roster(cfg, "sync", env={"ROSTER_TEST_PW": "right-pass"})
        check(code == 0, f"right password: exit {code}: {err}")
        check(out["totals"]["created"] == 9, f"{out['totals']}")
    finally:
        secure.stop()


class BrokenXml(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>/x'
        self.send_response(207)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PROPFIND = do_REPORT = do_GET = do_PUT = do_MKCOL = answer

    def log_message(self, *args):
        pass


def test_broken_xml_from_server(s):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BrokenXml)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        harness.write_people(s.csv, 10)
        state = os.path.join(s.workdir, "xml.db")
        cfg = harness.write_config(os.path.join(s.workdir, "xml.toml"),
                                   f"http://127.0.0.1:{server.server_address[1]}/", s.csv,
                                   ["alice"], state=state)
        code, out, err = harness.roster(cfg, "sync")
        check(code == 1, f"exit {code}")
        lines = one_line(err)
        check(len(lines) == 1 and "XML" in lines[0], f"message: {err!r}")
        check(managed_rows(state) == 0, "nothing recorded")
    finally:
        server.shutdown()


def test_vcard_with_a_1mb_line(s):
    folder = os.path.join(s.workdir, "cards")
    os.makedirs(folder)
    with open(os.path.join(folder, "good.vcf"), "w") as f:
        f.write("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:good\r\nFN:Good Person\r\nEND:VCARD\r\n")
    with open(os.path.join(folder, "huge.vcf"), "w") as f:
        f.write("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:huge\r\nFN:Huge\r\nNOTE:" + "x" * (1 << 20) +
                "\r\nEND:VCARD\r\n")
    cfg = os.path.join(s.workdir, "vcf.toml")
    state = os.path.join(s.workdir, "vcf.db")
    with open(cfg, "w") as f:
        f.write(f'[state]\npath = "{state}"\n[sources.cards]\ntype = "vcard-dir"\n'
                f'path = "{folder}"\n[targets.dav]\ntype = "carddav"\nurl = "{s.radicale.url}"\n'
                f'users = ["vcfuser"]\n[[rules]]\nname = "cards"\nsource = "cards"\n'
                f'target = "dav"\naddressbook = "{BOOK}"\n')
    code, out, err = harness.roster(cfg, "sync")
    check(code == 1, f"exit {code}")
    lines = one_line(err)
    check(len(lines) == 1 and "huge.vcf" in lines[0] and "line 5" in lines[0],
          f"message: {err!r}")
    check(s.radicale.book_dir("vcfuser", BOOK) is None, "nothing should have been written")
    os.remove(os.path.join(folder, "huge.vcf"))
    code, out, err = harness.roster(cfg, "sync")
    check(code == 0 and out["totals"]["created"] == 1, f"after removing it: {code} {err}")


def test_second_concurrent_sync_is_refused(s):
    import fcntl
    harness.write_people(s.csv, 10)
    with open(s.state + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, out, err = harness.roster(s.config, "sync")
        check(code == 2, f"exit {code}")
        check("another sync" in err and len(one_line(err)) == 1, f"message: {err!r}")
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"after the lock is gone: exit {code}: {err}")


def test_deleted_book_is_recreated(s):
    harness.write_people(s.csv, 10)
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    book = os.path.basename(s.radicale.book_dir("alice", BOOK))
    status, _ = s.radicale.request("DELETE", f"/alice/{book}/")
    check(status in (200, 204), f"DELETE book: {status}")
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    alice = [t for t in out["targets"] if t["user"] == "alice"][0]
    check(alice["created"] == 9, f"alice: {alice}")  # one of 10 is a contractor
    check(len(s.radicale.cards("alice", BOOK)) == 9, "the book was not refilled")


def main():
    s = harness.Suite("bad_input")
    s.radicale = harness.Radicale(s.workdir)
    s.csv = os.path.join(s.workdir, "staff.csv")
    s.state = os.path.join(s.workdir, "roster.db")
    s.config = harness.write_config(os.path.join(s.workdir, "roster.toml"), s.radicale.url, s.csv,
                                    ["alice", "bob"], state=s.state)
    try:
        return s.run([test_malformed_csv_row, test_unknown_config_key, test_unreachable_server,
                      test_wrong_password, test_broken_xml_from_server, test_vcard_with_a_1mb_line,
                      test_second_concurrent_sync_is_refused, test_deleted_book_is_recreated])
    finally:
        s.close(s.radicale)


if __name__ == "__main__":
    sys.exit(main())
