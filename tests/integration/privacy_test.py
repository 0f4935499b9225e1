#!/usr/bin/env python3
"""The sealed state, checked on the binary (docs/security.md, "Keys" and "The
sealed state"): after a real sync into a throwaway Radicale no file roster
wrote holds a person's name, e-mail, phone or key, a target user's name, the
DAV password or a book's URL (UTF-8 or UTF-16LE); `purge --all` empties the
tables and leaves no sealed value on disk, and the next sync adopts without
duplicates; `purge --expired` with the clock moved by faketime drops old runs
and their sealed messages; a key file others can read, a missing key, a wrong
key, an altered or moved sealed value are refused with one line and change
nothing; `keys rotate` killed at every failpoint is finished by running it
again; and `key_env`'s two-step rotation.

Needs Debian's radicale and faketime (for the expiry test)."""
import base64
import csv
import datetime
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import harness
from harness import check

ROSTER = harness.ROSTER
BOOK = "Company Contacts"
SVC_USER = "svc.zq7"
PASSWORD = "Pw-Kq83-vXr!9"
ALICE = "alice.zq7@example.org"
BOB = "bob.xv9@example.org"
CAROL = "carol.zq7@example.org"  # Radicale's rights refuse her home: her book fails
USERS = [ALICE, BOB]
KEY_PREFIX = "roster-key-1:"

PEOPLE = [
    {"id": "zqid-7731", "first_name": "Zebulon", "last_name": "Quixwell",
     "email": "zebulon.quixwell@zq7corp.example", "mobile": "+44 7700 900431",
     "phone": "+44 20 7946 0817"},
    {"id": "zqid-7732", "first_name": "Ysolde", "last_name": "Vänträkker",
     "email": "ysolde.vantrakker@zq7corp.example", "mobile": "+44 7700 900562",
     "phone": "+44 20 7946 0923"},
    {"id": "zqid-7733", "first_name": "Þórdís", "last_name": "Ødegård",
     "email": "thordis.odegard@zq7corp.example", "mobile": "+47 412 34 567",
     "phone": "+47 22 12 34 56"},
]

# Where sealed values live (src/state/sql/005-sealed.sql).
SEALED_COLUMNS = {
    "collections": ["user", "url", "sync_token"],
    "items": ["sealed"],
    "snapshots": ["self_keys", "entries"],
    "run_results": ["user", "message"],
    "source_cursors": ["cursor"],
}
PURGED_TABLES = ["collections", "items", "snapshots", "run_results", "runs", "source_cursors"]
# Inputs in a work folder that are not roster's to write.
INPUTS = {"roster.toml", "staff.csv", "dav.pw", "roster.key"}


# ---------------------------------------------------------------- servers

class Radicale(harness.Radicale):
    """Radicale on 127.0.0.1 with htpasswd logins and a rights file that lets
    every login write everywhere except under CAROL's home."""

    def __init__(self, workdir):
        carol = CAROL.replace(".", r"\.")
        super().__init__(workdir, users={SVC_USER: PASSWORD},
                         rights=f"[blocked]\nuser: .*\ncollection: {carol}(/.*)?\npermissions:\n\n"
                                "[root]\nuser: .+\ncollection:\npermissions: R\n\n"
                                "[all]\nuser: .+\ncollection: .*\npermissions: RrWw\n")

    def snapshot(self):
        """Every stored card and collection property, by path: what a run changed."""
        out = {}
        root = os.path.join(self.storage, "collection-root")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != ".Radicale.cache"]
            for name in filenames:
                if name.endswith(".lock"):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
        return out


# ---------------------------------------------------------------- roster

CONFIG = """[state]
path = "{dir}/roster.db"
{state_extra}
[sources.staff]
type = "csv"
path = "{dir}/staff.csv"
key = "id"
[sources.staff.columns]
given_name = "first_name"
family_name = "last_name"
email = "email"
mobile = "mobile"
work_phone = "phone"
organization = "company"
department = "department"
title = "title"

[targets.dav]
type = "carddav"
url = "{url}"
username = "{svc}"
password_file = "{dir}/dav.pw"
users = [{users}]
max_in_flight = 2

[[rules]]
name = "{rule}"
source = "staff"
target = "dav"
addressbook = "{book}"
max_delete_percent = 100
"""


def make_workdir(path, url, users=USERS, rule="company", book=BOOK, state_extra=""):
    """A folder with the CSV, the password file (0600) and roster.toml; no key."""
    os.makedirs(path)
    with open(os.path.join(path, "staff.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "first_name", "last_name", "email", "mobile",
                                          "phone", "company", "department", "title"],
                           lineterminator="\n")
        w.writeheader()
        for p in PEOPLE:
            w.writerow(dict(p, company="Zq7 Corp", department="Sales", title="Engineer"))
    fd = os.open(os.path.join(path, "dav.pw"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(PASSWORD + "\n")
    return write_config(path, url, users, rule, book, state_extra)


def write_config(path, url, users=USERS, rule="company", book=BOOK, state_extra=""):
    cfg = os.path.join(path, "roster.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(dir=path, url=url, svc=SVC_USER, rule=rule, book=book,
                              users=", ".join(f'"{u}"' for u in users), state_extra=state_extra))
    return cfg


class Run:
    def __init__(self, code, stdout, stderr):
        self.code, self.stdout, self.stderr = code, stdout, stderr
        self.json = None
        if stdout.strip().startswith(("{", "[")):
            try:
                self.json = json.loads(stdout)
            except ValueError:
                pass

    def lines(self):
        return [l for l in self.stderr.strip().splitlines() if l.strip()]

    def __repr__(self):
        return f"exit {self.code}, stderr {self.stderr!r}, stdout {self.stdout[:400]!r}"


def roster(config, *args, env=None, faketime=None, as_json=True, unset=()):
    """roster --config CONFIG [--json] ARGS; faketime='+3 days' runs it under faketime."""
    cmd = ["faketime", faketime] if faketime else []
    cmd += [ROSTER, "--config", config] + (["--json"] if as_json else []) + list(args)
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("ROSTER_FAILPOINT") and k not in unset}
    full.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=full)
    return Run(p.returncode, p.stdout, p.stderr)


def state_path(d):
    return os.path.join(d, "roster.db")


def copy_workdir(src, dst, url):
    """A fresh copy of a synced folder (state, its WAL, key), with its own config."""
    shutil.copytree(src, dst, symlinks=True)
    return write_config(dst, url)


def files_snapshot(d):
    """{name: (mode, sha256)} of every file in folder d."""
    out = {}
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[name] = (oct(os.stat(path).st_mode & 0o7777), hashlib.sha256(f.read()).hexdigest())
    return out


def query(d, sql, params=()):
    """Rows of `sql` over a copy of d's state (and its WAL): never touches the real file."""
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            src = state_path(d) + suffix
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(tmp, "s.db" + suffix))
        db = sqlite3.connect(os.path.join(tmp, "s.db"))
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


def sealed_blobs(d, where=None):
    """Every non-empty sealed value in d's state (optionally only run_results of some runs)."""
    out = []
    for table, cols in SEALED_COLUMNS.items():
        if where and table not in where:
            continue
        cond = where[table] if where else "1"
        for col in cols:
            for (v,) in query(d, f"SELECT {col} FROM {table} WHERE {cond}"):
                if v:
                    out.append(bytes(v))
    return out


def roster_files(d):
    """Paths of every file in d that roster wrote (all but its inputs), recursively."""
    out = []
    for dirpath, _, filenames in os.walk(d):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if dirpath == d and name in INPUTS:
                continue
            out.append(path)
    return sorted(out)


def scan(d, needles, blobs=()):
    """Fails naming each needle (text, as UTF-8 and UTF-16LE, ASCII case folded) or
    raw blob found in any file roster wrote in d."""
    found = []
    files = roster_files(d)
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        folded = data.lower()
        for n in needles:
            for enc in ("utf-8", "utf-16-le"):
                b = n.encode(enc)
                if b in data or b.lower() in folded:
                    found.append(f"{os.path.basename(path)}: {n!r} ({enc})")
        for i, b in enumerate(blobs):
            if b in data:
                found.append(f"{os.path.basename(path)}: old sealed value #{i} ({len(b)} bytes)")
    check(not found, "found on disk: " + "; ".join(found[:20]))
    return files


def assert_present(d, blobs, what):
    """The blobs are in d's files as they are: so that their absence later means
    they are gone, not that the search cannot see them."""
    data = b"".join(open(p, "rb").read() for p in roster_files(d))
    missing = sum(1 for b in blobs if b not in data)
    check(blobs and missing == 0, f"{what}: {missing} of {len(blobs)} sealed values not found "
          "as they are in the files before")


def parse_key(text):
    """(key id, previous key id or None, index master, sealing master, previous master)."""
    text = text.strip()
    check(text.startswith(KEY_PREFIX), f"key text does not start with {KEY_PREFIX}")
    raw = base64.b64decode(text[len(KEY_PREFIX):], validate=True)
    check(raw[0] == 1 and raw[1] in (0, 1), "key format/flags")
    key_id = int.from_bytes(raw[34:38], "big")
    if raw[1] == 1:
        check(len(raw) == 106, f"rotating key of {len(raw)} bytes")
        return key_id, int.from_bytes(raw[70:74], "big"), raw[2:34], raw[38:70], raw[74:106]
    check(len(raw) == 70, f"key of {len(raw)} bytes")
    return key_id, None, raw[2:34], raw[38:70], None


def read_key(d):
    with open(os.path.join(d, "roster.key")) as f:
        return f.read().strip()


def key_needles(text):
    """The key's text and its raw masters: none may be in the state."""
    _, _, index, sealing, prev = parse_key(text)
    blobs = [index, sealing] + ([prev] if prev else [])
    return [text[len(KEY_PREFIX):]], blobs


def person_needles():
    out = []
    for p in PEOPLE:
        digits = lambda s: "".join(ch for ch in s if ch.isdigit())  # noqa: E731
        out += [p["id"], p["first_name"], p["last_name"], f"{p['first_name']} {p['last_name']}",
                f"{p['last_name']};{p['first_name']}", p["email"]]
        for tel in (p["mobile"], p["phone"]):
            out += [tel, "+" + digits(tel), digits(tel)]
    return out


def user_needles(url, users):
    out = [PASSWORD]
    for u in users:
        enc = u.replace("@", "%40")
        out += [u, u.split("@")[0], enc, f"/{u}/", f"/{enc}/", f"{url}{u}/", f"{url}{enc}/"]
    return out


def book_needles(radicale, users, book):
    """The names Radicale gave each book and card: they are in sealed url/href columns."""
    out = []
    for u in users:
        d = radicale.book_dir(u, book)
        check(d is not None, f"{u}: no book {book!r}")
        out.append(os.path.basename(d))
        out += [n[:-4] if n.endswith(".vcf") else n for n in radicale.cards(u, book)]
    return out


def expect_books(radicale, users, book):
    """Each person exactly once in each book, with their name and e-mail."""
    for u in users:
        cards = radicale.cards(u, book)
        keys = {}
        for name, props in cards.items():
            key = props.get("X-ROSTER-KEY", [None])[0]
            check(key is not None, f"{u}: card {name} has no roster key")
            check(key not in keys, f"{u}: duplicate card for {key}: {name} and {keys.get(key)}")
            keys[key] = name
        check(sorted(keys) == sorted(p["id"] for p in PEOPLE) and len(cards) == len(PEOPLE),
              f"{u}/{book}: {len(cards)} cards, keys {sorted(keys)}")
        for p in PEOPLE:
            props = cards[keys[p["id"]]]
            check(props["EMAIL"][0] == p["email"], f"{u}: EMAIL {props['EMAIL']}")


def status_users(config, env=None):
    r = roster(config, "status", env=env)
    check(r.code == 0 and isinstance(r.json, list), f"status: {r}")
    return r, sorted(t["user"] for t in r.json)


def totals(r):
    check(r.json is not None and "totals" in r.json, f"no JSON report: {r}")
    return r.json["totals"]


# ---------------------------------------------------------------- tests

N = len(PEOPLE)


def test_a_synced_state_holds_no_plaintext(s):
    d = s.base
    key_path = os.path.join(d, "roster.key")
    r = roster(s.base_cfg, "plan")
    check(r.code == 0, f"plan: {r}")
    check(not os.path.exists(key_path) and not os.path.exists(state_path(d)),
          f"a plan created files: {sorted(os.listdir(d))}")
    r = roster(s.base_cfg, "sync")
    check(r.code == 0, f"sync: {r}")
    t = totals(r)
    check(t["created"] == N * len(USERS) and t["errors"] == 0, f"totals {t}")
    check(any("created the state's key in " + key_path in l for l in r.lines()),
          f"the first sync did not say it created the key: {r.stderr!r}")
    check(os.stat(key_path).st_mode & 0o777 == 0o600, "key file not 0600")
    expect_books(s.radicale, USERS, BOOK)
    written = sorted(os.path.basename(p) for p in roster_files(d))
    check("roster.db" in written, f"no state file among {written}")
    key_text, key_blobs = key_needles(read_key(d))
    s.needles = (person_needles() + user_needles(s.radicale.url, USERS) +
                 book_needles(s.radicale, USERS, BOOK) + key_text)
    files = scan(d, s.needles, key_blobs)
    # The scan sees what is there: the CSV, as a file roster wrote, and in UTF-16LE.
    probe = os.path.join(s.workdir, "probe")
    os.makedirs(probe)
    with open(os.path.join(d, "staff.csv"), encoding="utf-8") as f:
        csv_text = f.read()
    for name, data in (("copy.csv", csv_text.encode("utf-8")),
                       ("copy16", csv_text.encode("utf-16-le"))):
        with open(os.path.join(probe, name), "wb") as f:
            f.write(data)
        try:
            scan(probe, [PEOPLE[1]["last_name"], PEOPLE[2]["first_name"], PEOPLE[0]["email"]])
        except AssertionError:
            pass
        else:
            raise AssertionError(f"the scan did not find the CSV's plaintext in {name}")
        os.remove(os.path.join(probe, name))
    print(f"  scanned {len(files)} files ({', '.join(os.path.basename(f) for f in files)}) "
          f"for {len(s.needles)} strings", flush=True)
    # Sealed, not absent: status opens it and names both users.
    r, users = status_users(s.base_cfg)
    check(users == sorted(USERS), f"status users {users}: {r}")
    text = roster(s.base_cfg, "status", as_json=False)
    check(text.code == 0 and all(u in text.stdout for u in USERS), f"status text: {text}")


def test_purge_all_forgets_everything_and_sync_adopts(s):
    d = s.base
    before = sealed_blobs(d)
    check(len(before) >= 2 * N, f"only {len(before)} sealed values before the purge")
    assert_present(d, before, "before purge --all")
    r = roster(s.base_cfg, "purge", "--all")
    check(r.code == 0, f"purge --all: {r}")
    for table in PURGED_TABLES:
        (count,), = query(d, f"SELECT COUNT(*) FROM {table}")
        check(count == 0, f"{table} still holds {count} rows after purge --all")
    scan(d, s.needles, before)
    wal = state_path(d) + "-wal"
    check(not os.path.exists(wal) or os.path.getsize(wal) == 0, "a WAL is left after purge --all")
    r = roster(s.base_cfg, "sync")
    check(r.code == 0, f"sync after purge: {r}")
    t = totals(r)
    check(t["created"] == 0 and t["deleted"] == 0 and t["errors"] == 0 and
          t["adopted"] == N * len(USERS), f"sync after purge: {t}")
    expect_books(s.radicale, USERS, BOOK)
    r = roster(s.base_cfg, "sync")
    t = totals(r)
    check(r.code == 0 and t["unchanged"] == N * len(USERS) and t["adopted"] == 0,
          f"second sync after purge: {t}")
    scan(d, s.needles)
    s.radicale_synced = s.radicale.snapshot()


def _refused(s, name, prepare, expect, commands=("sync", "plan", "status"), lines=1,
             keep_tables=False):
    """Copies the synced folder, breaks it with prepare(dir), and checks that each
    command fails with `lines` stderr lines containing every `expect` text, and that
    neither the folder's files nor Radicale change."""
    d = os.path.join(s.workdir, "refuse-" + name)
    cfg = copy_workdir(s.base, d, s.radicale.url)
    ctx = prepare(d) or {}
    files = files_snapshot(d)
    tables = dump_tables(d)
    dav = s.radicale.snapshot()
    problems = []
    for cmd in commands:
        r = roster(cfg, *cmd.split())
        if r.code == 0:
            problems.append(f"{cmd} succeeded: {r}")
        ls = r.lines()
        if len(ls) != lines:
            problems.append(f"{cmd}: {len(ls)} stderr lines: {r.stderr!r}")
        for text in expect(d):
            if text not in r.stderr:
                problems.append(f"{cmd}: {text!r} not in {r.stderr!r}")
        for secret in ctx.get("absent", []):
            if secret in r.stderr or secret in r.stdout:
                problems.append(f"{cmd} shows {secret!r}: {r}")
        if s.radicale.snapshot() != dav:
            problems.append(f"{cmd} changed Radicale")
        if keep_tables:
            if dump_tables(d) != tables:
                problems.append(f"{cmd} changed the state's tables")
        elif files_snapshot(d) != files:
            now = files_snapshot(d)
            changed = sorted(n for n in set(files) | set(now) if files.get(n) != now.get(n))
            problems.append(f"{cmd} changed {', '.join(changed)}")
            files = now
    check(not problems, f"{name}: " + " | ".join(problems))
    return d


def dump_tables(d):
    """The rows roster keeps about books and people (not run history, nor the
    settings that record a run happened: the audit log's head, the
    configuration's hash)."""
    out = {t: query(d, f"SELECT * FROM {t} ORDER BY 1, 2") for t in
           ("collections", "items", "snapshots", "source_cursors")}
    out["state_meta"] = query(d, "SELECT * FROM state_meta WHERE name NOT IN "
                                 "('setting:audit_head', 'setting:config_hash') ORDER BY 1")
    return out


def test_key_file_others_can_read_is_refused(s):
    def prepare(d):
        os.chmod(os.path.join(d, "roster.key"), 0o644)
    _refused(s, "mode", prepare, lambda d: [
        os.path.join(d, "roster.key"), "0644", f"chmod 600 {os.path.join(d, 'roster.key')}"])


def test_missing_key_with_sealed_state_is_refused(s):
    def prepare(d):
        os.remove(os.path.join(d, "roster.key"))
    d = _refused(s, "missing", prepare, lambda d: [
        state_path(d), os.path.join(d, "roster.key"), "restore the key",
        "move the state file away"])
    check(not os.path.exists(os.path.join(d, "roster.key")), "a new key was created")


def _replace_with_foreign_key(s, d):
    other = os.path.join(d, "other")
    os.makedirs(other)
    cfg = write_config(other, s.radicale.url)
    r = roster(cfg, "keys", "init", as_json=False)
    check(r.code == 0, f"keys init: {r}")
    check(not os.path.exists(os.path.join(other, "roster.db")), "keys init wrote a state")
    check(os.stat(os.path.join(other, "roster.key")).st_mode & 0o777 == 0o600, "not 0600")
    shutil.copyfile(os.path.join(other, "roster.key"), os.path.join(d, "roster.key"))
    shutil.rmtree(other)


def test_wrong_key_is_refused(s):
    _refused(s, "wrong", lambda d: _replace_with_foreign_key(s, d), lambda d: [
        "sealed under another key", os.path.join(d, "roster.key")])


def test_rotate_with_a_wrong_key_changes_nothing(s):
    """`keys rotate` with another configuration's key must not touch the key
    file (nor the state) before finding out that the key does not open it."""
    _refused(s, "rotate-wrong", lambda d: _replace_with_foreign_key(s, d),
             lambda d: ["sealed under another key", os.path.join(d, "roster.key")],
             commands=("keys rotate",))


def _flip_url(d):
    db = sqlite3.connect(state_path(d))
    (cid, url), = db.execute("SELECT id, url FROM collections ORDER BY id LIMIT 1").fetchall()
    url = bytearray(url)
    url[-1] ^= 0x01  # in the tag: the value no longer opens
    db.execute("UPDATE collections SET url = ? WHERE id = ?", (bytes(url), cid))
    db.commit()
    db.close()


def test_altered_sealed_value_is_refused(s):
    def prepare(d):
        _flip_url(d)
        return {"absent": [f"{s.radicale.url}{u}" for u in USERS] +
                [f"{s.radicale.url}{u.replace('@', '%40')}" for u in USERS]}
    _refused(s, "altered", prepare, lambda d: ["collections.url", "does not open"],
             commands=("sync",), keep_tables=True)


def test_sealed_user_moved_to_another_row_is_refused(s):
    def prepare(d):
        db = sqlite3.connect(state_path(d))
        rows = db.execute("SELECT id, user FROM collections ORDER BY id").fetchall()
        check(len(rows) == 2, f"collections: {len(rows)} rows")
        db.execute("UPDATE collections SET user = ? WHERE id = ?", (rows[0][1], rows[1][0]))
        db.commit()
        db.close()
        return {"absent": USERS}
    _refused(s, "moved", prepare, lambda d: ["collections.user", "does not open"],
             commands=("sync",), keep_tables=True)


ROTATION_CASES = ([(n, h) for n in ("key-file-written", "key-file-synced", "key-file-renamed",
                                    "key-file-done") for h in (1, 2)] +
                  [("state-before-commit", 1), ("state-after-commit", 1), ("state-rebuilt", 1)])


def _rotation_case(s, name, hit):
    d = os.path.join(s.workdir, f"rotate-{name}-{hit}")
    cfg = copy_workdir(s.base, d, s.radicale.url)
    old_text = read_key(d)
    old_id, old_prev, old_index, old_sealing, _ = parse_key(old_text)
    check(old_prev is None, "the synced key is rotating")
    old_blobs = sealed_blobs(d)
    assert_present(d, old_blobs, "before the rotation")
    log = os.path.join(d, "..", f"hits-{name}-{hit}")
    r = roster(cfg, "keys", "rotate", as_json=False,
               env={"ROSTER_FAILPOINTS": f"{name}:{hit}", "ROSTER_FAILPOINT_LOG": log})
    hits = open(log).read().split() if os.path.exists(log) else []
    check(r.code == -9, f"not killed at {name}:{hit} ({r}); failpoints hit in keys rotate: "
          f"{' '.join(hits)}")
    # Killed anywhere, the key file is whole: the old key, or old and new together.
    text = read_key(d)
    kid, prev, index, sealing, prev_master = parse_key(text)
    check(index == old_index, "the index master changed")
    # The id the rerun ends at: the killed rotation's, finished; or, when the
    # kill came after its final key had landed (it was complete), one more.
    expected_id = old_id + 1
    if text != old_text:
        if prev is not None:
            check(kid == old_id + 1 and prev == old_id and prev_master == old_sealing,
                  f"rotating key ids {kid}/{prev} after the kill")
        else:  # the second write landed: the final key
            check(kid == old_id + 1 and hit == 2, f"final key id {kid} after a kill at {hit}")
            expected_id = old_id + 2
    r = roster(cfg, "keys", "rotate", as_json=False)
    check(r.code == 0, f"rotate after the kill: {r}")
    text = read_key(d)
    body = text[len(KEY_PREFIX):]
    check(len(body) == 96, f"key is {len(body)} base64 characters after the rotation (144: "
          "still rotating)")
    kid, prev, index, _, _ = parse_key(text)
    check(prev is None and kid == expected_id and index == old_index,
          f"key id {kid} (was {old_id}, expected {expected_id}), previous {prev}")
    check(not os.path.exists(os.path.join(d, "roster.key.new")), "roster.key.new left behind")
    check(os.stat(os.path.join(d, "roster.key")).st_mode & 0o777 == 0o600, "key not 0600")
    (n_under_new,) = query(d, "SELECT COUNT(*) FROM collections")[0]
    check(n_under_new == len(USERS), f"{n_under_new} collections after the rotation")
    # No value sealed under the old key stays anywhere on disk.
    scan(d, s.needles + key_needles(old_text)[0], old_blobs + key_needles(old_text)[1])
    r = roster(cfg, "sync")
    t = totals(r)
    check(r.code == 0 and t["created"] == 0 and t["deleted"] == 0 and t["errors"] == 0 and
          t["adopted"] == 0 and t["unchanged"] == N * len(USERS), f"sync after rotation: {t}")
    r, users = status_users(cfg)
    check(users == sorted(USERS), f"status users {users}")
    check(s.radicale.snapshot() == s.radicale_synced, "Radicale changed")


def test_rotation_killed_at_each_failpoint_then_rerun(s):
    failures = []
    for name, hit in ROTATION_CASES:
        t0 = time.time()
        try:
            _rotation_case(s, name, hit)
            print(f"  ok   {name}:{hit} ({time.time() - t0:.1f}s)", flush=True)
        except AssertionError as e:
            failures.append(f"{name}:{hit}: {e}")
            print(f"  FAIL {name}:{hit}: {e}", flush=True)
    check(not failures, f"{len(failures)} of {len(ROTATION_CASES)} cases failed: " +
          " | ".join(failures))
    expect_books(s.radicale, USERS, BOOK)


def test_key_env_two_step_rotation(s):
    var = "ROSTER_PRIVACY_KEY"
    d = os.path.join(s.workdir, "env")
    cfg = make_workdir(d, s.radicale.url, rule="envrule", book="Env Contacts",
                       state_extra=f'key_env = "{var}"')
    r = roster(cfg, "keys", "init", as_json=False, unset=(var,))
    check(r.code == 0 and len(r.stdout.strip().splitlines()) == 1, f"keys init: {r}")
    k1 = r.stdout.strip()
    id1, prev, _, _, _ = parse_key(k1)
    check(prev is None and len(k1) == len(KEY_PREFIX) + 96, f"printed key {len(k1)} chars")
    check(sorted(os.listdir(d)) == ["dav.pw", "roster.toml", "staff.csv"],
          f"keys init with key_env wrote files: {os.listdir(d)}")
    r = roster(cfg, "sync", unset=(var,))
    check(r.code == 2 and var in r.stderr, f"sync without the key: {r}")
    r = roster(cfg, "sync", env={var: k1})
    t = totals(r)
    check(r.code == 0 and t["created"] == N * len(USERS) and t["errors"] == 0, f"sync: {t}")
    expect_books(s.radicale, USERS, "Env Contacts")
    scan(d, person_needles() + user_needles(s.radicale.url, USERS) +
         book_needles(s.radicale, USERS, "Env Contacts") + key_needles(k1)[0], key_needles(k1)[1])
    files = files_snapshot(d)
    r = roster(cfg, "keys", "rotate", as_json=False, env={var: k1})
    check(r.code == 0 and len(r.stdout.strip().splitlines()) == 1, f"first rotate: {r}")
    k2 = r.stdout.strip()
    id2, prev2, _, _, _ = parse_key(k2)
    check(id2 == id1 + 1 and prev2 == id1 and len(k2) == len(KEY_PREFIX) + 144,
          f"transitional key id {id2}, previous {prev2}, {len(k2)} chars")
    check(files_snapshot(d) == files, "the first rotate with key_env changed files")
    check(not os.path.exists(os.path.join(d, "roster.key")), "a key file was written")
    r = roster(cfg, "keys", "rotate", as_json=False, env={var: k2})
    check(r.code == 0 and len(r.stdout.strip().splitlines()) == 1, f"second rotate: {r}")
    k3 = r.stdout.strip()
    id3, prev3, _, _, _ = parse_key(k3)
    check(id3 == id2 and prev3 is None and len(k3) == len(KEY_PREFIX) + 96,
          f"final key id {id3}, previous {prev3}, {len(k3)} chars")
    check(files_snapshot(d) != files, "the second rotate did not seal the state again")
    r = roster(cfg, "sync", env={var: k3})
    t = totals(r)
    check(r.code == 0 and t["created"] == 0 and t["deleted"] == 0 and t["errors"] == 0 and
          t["adopted"] == 0 and t["unchanged"] == N * len(USERS), f"sync with the final key: {r}")
    r = roster(cfg, "status", env={var: k2})
    check(r.code == 0, f"the transitional key no longer opens the state: {r}")
    before = files_snapshot(d)
    for cmd in ("sync", "status"):
        r = roster(cfg, cmd, env={var: k1})
        check(r.code != 0 and len(r.lines()) == 1 and "sealed under another key" in r.stderr and
              var in r.stderr, f"{cmd} with the original key: {r}")
        check(k1[len(KEY_PREFIX):] not in r.stderr + r.stdout, "the key was printed")
    check(files_snapshot(d) == before, "a refused run changed files")
    for k in (k1, k2, k3):
        scan(d, key_needles(k)[0], key_needles(k)[1])


def test_expiry_with_the_clock_moved_by_faketime(s):
    check(shutil.which("faketime"), "faketime is not installed (Debian package faketime)")
    d = os.path.join(s.workdir, "expiry")
    users = [ALICE, CAROL]
    cfg = make_workdir(d, s.radicale.url, users=users, rule="expiry", book="Expiry Contacts",
                       state_extra="retention_days = 1")
    r = roster(cfg, "sync", "--debug")  # names Carol, whose home is refused
    check(r.code == 1, f"sync with Carol's home refused: {r}")
    carol = [t for t in r.json["targets"] if t["user"] == CAROL][0]
    check(carol["messages"] and CAROL in carol["messages"][0], f"carol: {carol}")
    r, _ = status_users(cfg)
    row = [t for t in r.json if t["user"] == CAROL]
    # Kept, and sealed; the stored message names her by her pseudonym only.
    check(row and row[0]["user_ref"] in row[0]["message"] and CAROL not in row[0]["message"],
          f"the message naming Carol was not kept by pseudonym: {r}")
    run_a = row[0]["run"]
    blobs_a = sealed_blobs(d, {"run_results": f"run_id = {run_a}"})
    check(len(blobs_a) >= 3, f"run {run_a}: {len(blobs_a)} sealed values")
    assert_present(d, blobs_a, f"run {run_a}")
    needles = [CAROL, carol["messages"][0], "access denied"] + user_needles(s.radicale.url, users)
    scan(d, needles)
    # 20 hours later: run A is younger than retention_days = 1, and stays.
    r = roster(cfg, "sync", faketime="+20 hours")
    check(r.code == 1, f"sync 20 hours later: {r}")
    runs = query(d, "SELECT id FROM runs ORDER BY id")
    check(len(runs) == 2 and runs[0][0] == run_a, f"runs after 20 hours: {runs}")
    run_b = runs[1][0]
    (a_at,), (b_at,) = query(d, "SELECT started_at FROM runs ORDER BY id")
    gap = (datetime.datetime.fromisoformat(b_at.rstrip("Z")) -
           datetime.datetime.fromisoformat(a_at.rstrip("Z"))).total_seconds() / 3600
    check(19.9 < gap < 20.1, f"faketime did not move roster's clock: runs at {a_at}, {b_at}")
    # 36 hours after A: A is older than a day, B is not.
    r = roster(cfg, "purge", "--expired", faketime="+36 hours")
    check(r.code == 0 and r.json["runs"] == 1, f"purge --expired at +36h: {r}")
    check(query(d, "SELECT id FROM runs") == [(run_b,)], f"runs: {query(d, 'SELECT id FROM runs')}")
    left = query(d, "SELECT DISTINCT run_id FROM run_results")
    check(left == [(run_b,)], f"run_results left: {left}")
    r, _ = status_users(cfg)
    check({t["run"] for t in r.json} == {run_b}, f"status still lists run {run_a}: {r}")
    text = roster(cfg, "status", as_json=False)
    check(f"run {run_a} " not in text.stdout and f"run {run_b} " in text.stdout, f"{text}")
    scan(d, needles, blobs_a)
    blobs_b = sealed_blobs(d, {"run_results": f"run_id = {run_b}"})
    assert_present(d, blobs_b, f"run {run_b}")
    # Three days on, everything in the history has expired.
    r = roster(cfg, "purge", "--expired", faketime="+3 days")
    check(r.code == 0 and r.json["runs"] == 1, f"purge --expired at +3 days: {r}")
    for table in ("runs", "run_results"):
        (count,), = query(d, f"SELECT COUNT(*) FROM {table}")
        check(count == 0, f"{table}: {count} rows left")
    r, _ = status_users(cfg)
    check(r.json == [], f"status after expiry: {r}")
    scan(d, needles, blobs_a + blobs_b)
    wal = state_path(d) + "-wal"
    check(not os.path.exists(wal) or os.path.getsize(wal) == 0, "a WAL is left after purging")


def audit_lines(d):
    with open(os.path.join(d, "roster-audit.jsonl"), encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def test_audit_log_records_every_change_and_catches_tampering(s):
    """[audit]: a sync, a purge and a rotation append their entries and a signed
    checkpoint; a plan appends nothing; `audit verify` passes, then names the
    line of a changed byte, a deleted line, and fails on another public key and
    on a head (as syslog has it) cut off; a log cut mid-line stops the next
    sync before it writes anything. No entry holds personal data."""
    d = os.path.join(s.workdir, "audit")
    cfg = copy_workdir(s.base, d, s.radicale.url)
    log = os.path.join(d, "roster-audit.jsonl")
    before = len(audit_lines(d))
    r = roster(cfg, "sync")
    check(r.code == 0, f"sync: {r}")
    # The copy has a configuration of its own: its hash is recorded once.
    events = [l["event"] for l in audit_lines(d)[before:]]
    check(events == ["config-change", "run", "run-end", "checkpoint"], f"first sync: {events}")
    change = audit_lines(d)[before]["data"]
    check(change["from"] != change["to"] and len(change["to"]) == 64, f"config-change {change}")
    before = len(audit_lines(d))
    r = roster(cfg, "sync")
    check(r.code == 0, f"sync: {r}")
    lines = audit_lines(d)
    events = [l["event"] for l in lines[before:]]
    check(events == ["run", "run-end", "checkpoint"], f"a quiet sync appended {events}")
    r = roster(cfg, "plan")
    check(r.code == 0 and len(audit_lines(d)) == len(lines), f"a plan appended to the log: {r}")
    # One person changes: one write entry per book, by pseudonym.
    with open(os.path.join(d, "staff.csv"), encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(d, "staff.csv"), "w", encoding="utf-8") as f:
        f.write(text.replace("Engineer", "Architect", 1))
    r = roster(cfg, "sync")
    check(r.code == 0, f"sync: {r}")
    writes = [l for l in audit_lines(d)[len(lines):] if l["event"] == "write"]
    check(len(writes) == len(USERS) and all(w["data"]["updated"] == 1 for w in writes),
          f"write entries {writes}")
    refs = sorted(w["data"]["user"] for w in writes)
    check(all(ref.startswith("p:") for ref in refs), f"users in clear: {refs}")
    r, users = status_users(cfg)
    check(sorted(u["user_ref"] for u in r.json) == refs, f"status refs {r.json}")
    r = roster(cfg, "purge", "--expired")
    check(r.code == 0 and audit_lines(d)[-2]["event"] == "purge", f"purge: {r}")
    r = roster(cfg, "keys", "rotate")
    check(r.code == 0 and audit_lines(d)[-2]["event"] == "keys-rotate", f"rotate: {r}")
    scan(d, s.needles)

    r = roster(cfg, "audit", "public-key")
    check(r.code == 0 and len(r.json["public_key"]) == 64, f"public-key: {r}")
    public_key = r.json["public_key"]
    r = roster(cfg, "audit", "verify", "--public-key", public_key)
    check(r.code == 0 and r.json["ok"] and r.json["checkpoints"] >= 4, f"verify: {r}")
    head = r.json["head_hash"]
    r = roster(cfg, "audit", "verify", "--public-key", "ab" * 32)
    check(r.code == 1 and "another key" in r.json["problem"], f"another key: {r}")
    text = roster(cfg, "audit", "verify", as_json=False)
    check(text.code == 0 and "whole" in text.stdout, f"verify text: {text}")

    with open(log, "rb") as f:
        good = f.read()
    raw = good.split(b"\n")

    def tampered(data, expect_line, what):
        with open(log, "wb") as f:
            f.write(data)
        r = roster(cfg, "audit", "verify", as_json=False)
        check(r.code == 1 and r.lines() and r.lines()[0].startswith("roster: audit log ")
              and f"line {expect_line} " in r.lines()[0], f"{what}: {r}")

    changed = bytearray(good)
    changed[len(raw[0]) + 1 + 20] ^= 1  # a byte inside line 2
    tampered(bytes(changed), 2, "a changed byte")
    tampered(b"\n".join(raw[:2] + raw[3:]), 3, "a deleted line")
    tampered(b"\n".join(raw[:1] + [raw[2], raw[1]] + raw[3:]), 2, "two lines swapped")
    # Cut back to an earlier checkpoint: whole on its own, but the head the
    # state recorded (and the one syslog saw) is gone.
    cut = [i for i, l in enumerate(raw) if b'"event":"checkpoint"' in l][-2]
    with open(log, "wb") as f:
        f.write(b"\n".join(raw[:cut + 1]) + b"\n")
    r = roster(cfg, "audit", "verify")
    check(r.code == 1 and r.json["head_checked"] == "state" and
          "the head the state recorded" in r.json["problem"], f"cut, the state's head: {r}")
    r = roster(cfg, "audit", "verify", "--head", head)
    check(r.code == 1 and "is not in the log" in r.json["problem"], f"--head: {r}")
    # Without the state, only the head kept elsewhere tells.
    shutil.move(state_path(d), state_path(d) + ".aside")
    r = roster(cfg, "audit", "verify")
    check(r.code == 0 and r.json["head_checked"] == "none", f"cut, no state: {r}")
    shutil.move(state_path(d) + ".aside", state_path(d))
    # A log cut mid-line: the next sync refuses before it changes anything.
    with open(log, "wb") as f:
        f.write(good[:-10])
    r = roster(cfg, "sync")
    check(r.code == 2 and "last line is not whole" in r.stderr and "nothing was synced" in r.stderr,
          f"sync on a cut log: {r}")
    with open(log, "rb") as f:
        check(f.read() == good[:-10], "a refused sync appended to the cut log")
    r = roster(cfg, "audit", "verify", as_json=False)
    check(r.code == 1 and "is not whole" in r.stderr, f"verify a cut log: {r}")
    with open(log, "wb") as f:
        f.write(good)
    r = roster(cfg, "audit", "verify", "--head", head)
    check(r.code == 0, f"restored: {r}")


def main():
    t0 = time.time()
    s = harness.Suite("privacy")
    s.radicale = Radicale(s.workdir)
    s.base = os.path.join(s.workdir, "base")
    s.base_cfg = make_workdir(s.base, s.radicale.url)
    try:
        code = s.run([test_a_synced_state_holds_no_plaintext,
                      test_purge_all_forgets_everything_and_sync_adopts,
                      test_key_file_others_can_read_is_refused,
                      test_missing_key_with_sealed_state_is_refused,
                      test_wrong_key_is_refused,
                      test_rotate_with_a_wrong_key_changes_nothing,
                      test_altered_sealed_value_is_refused,
                      test_sealed_user_moved_to_another_row_is_refused,
                      test_rotation_killed_at_each_failpoint_then_rerun,
                      test_key_env_two_step_rotation,
                      test_expiry_with_the_clock_moved_by_faketime,
                      test_audit_log_records_every_change_and_catches_tampering])
    finally:
        s.close(s.radicale)
    print(f"privacy: {time.time() - t0:.1f}s in all")
    return code


if __name__ == "__main__":
    sys.exit(main())
