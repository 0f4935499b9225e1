"""The crash matrix: roster is killed at every failpoint (core/failpoint.h), at
its first, a middle and its last hit, in every scenario, and the run after the
crash must converge: every book holds exactly the selected people, one card
each, the users' own cards are untouched, a user's edit to a managed card is
corrected, and one more sync writes nothing.

The target is tests/integration/fakedav.py, a CardDAV server running as its
own process (so it outlives the killed roster), restored to each scenario's
starting point before every cell. A seeded sample of the cells runs against
Radicale too.

    ROSTER_CRASH_SAMPLE=N   cells of the Radicale sample (default 8; 0 skips it)
    ROSTER_CRASH_ONLY=NAME  only the scenarios whose name contains NAME
"""
import concurrent.futures
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ROSTER, Suite, check, free_port, parse_card, write_people  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
USERS = ["alice", "bob", "carol"]
BOOK = "Company Contacts"
PEOPLE = 10
DAV = "{DAV:}"

CONFIG = """[state]
path = "{state}"

[sources.staff]
type = "csv"
path = "{csv}"
key = "id"
[sources.staff.columns]
given_name = "first_name"
family_name = "last_name"
email = "email"
mobile = "mobile"
title = "title"

[targets.dav]
type = "carddav"
url = "{url}"
users = [{users}]
max_in_flight = 2

[[rules]]
name = "company"
source = "staff"
target = "dav"
addressbook = "{book}"
filter = "has(email)"
max_delete_percent = 50
adopt = "{adopt}"
"""


# --- a small generic CardDAV client (works on fakedav and on Radicale) -----

class Dav:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def req(self, method, path, body=None, headers=None):
        data = body.encode() if isinstance(body, str) else body
        r = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace"), dict(e.headers)

    def propfind(self, path, depth, props):
        body = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop>' + props +
                "</d:prop></d:propfind>")
        status, text, _ = self.req("PROPFIND", path, body, {"Depth": str(depth)})
        if status == 404:
            return None
        assert status == 207, (path, status, text[:300])
        return ET.fromstring(text)

    def books(self, user):
        """{book path: display name} of the address books in the user's home."""
        root = self.propfind(f"/{user}/", 1, "<d:resourcetype/><d:displayname/>")
        out = {}
        if root is None:
            return out
        for r in root.iter(DAV + "response"):
            href = urllib.parse.unquote(r.find(DAV + "href").text)
            rt = r.find(f".//{DAV}resourcetype")
            if rt is None or not any(c.tag.endswith("addressbook") for c in rt):
                continue
            name = r.find(f".//{DAV}displayname")
            out[urllib.parse.urlsplit(href).path] = (name.text or "") if name is not None else ""
        return out

    def cards(self, book):
        """{href: vCard text} of every card in a book."""
        root = self.propfind(book, 1, "<d:getetag/><d:resourcetype/>")
        out = {}
        for r in root.iter(DAV + "response"):
            href = urllib.parse.urlsplit(urllib.parse.unquote(r.find(DAV + "href").text)).path
            if href.rstrip("/") == book.rstrip("/"):
                continue
            status, text, _ = self.req("GET", urllib.parse.quote(href))
            if status == 200:
                out[href] = text
        return out

    def mkbook(self, user, name, slug):
        self.req("MKCOL", f"/{user}/")
        body = ('<?xml version="1.0"?><d:mkcol xmlns:d="DAV:" '
                'xmlns:c="urn:ietf:params:xml:ns:carddav"><d:set><d:prop><d:resourcetype>'
                f'<d:collection/><c:addressbook/></d:resourcetype><d:displayname>{name}'
                '</d:displayname></d:prop></d:set></d:mkcol>')
        status, text, _ = self.req("MKCOL", f"/{user}/{slug}/", body)
        assert status in (201, 405), (status, text[:200])
        return f"/{user}/{slug}/"

    def put(self, href, card, etag=None):
        headers = {"Content-Type": "text/vcard"}
        if etag:
            headers["If-Match"] = etag
        status, text, _ = self.req("PUT", href, card, headers)
        assert status in (201, 204), (href, status, text[:200])

    def delete(self, href):
        status, _, _ = self.req("DELETE", href)
        assert status in (200, 204), (href, status)


def own_card(uid, name, email):
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\n"
            f"EMAIL:{email}\r\nNOTE:the user's own card\r\nEND:VCARD\r\n")


class FakeDav:
    """tests/integration/fakedav.py as its own process."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fakedav.py"),
                                      str(self.port)], stdout=subprocess.PIPE, text=True)
        check(self.proc.stdout.readline().strip() == "ready", "fakedav did not start")
        self.dav = Dav(self.url)

    def dump(self):
        return json.loads(self.dav.req("GET", "/_ctl/dump")[1])

    def load(self, state):
        self.dav.req("POST", "/_ctl/load", json.dumps(state))

    def reset(self):
        self.dav.req("POST", "/_ctl/reset", "")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


# --- one scenario's world: a folder with the CSV, the config and the state --

class World:
    def __init__(self, folder, server, adopt="never"):
        self.dir = folder
        os.makedirs(folder, exist_ok=True)
        self.server = server
        self.dav = server.dav if hasattr(server, "dav") else Dav(server.url)
        self.csv = os.path.join(folder, "staff.csv")
        self.state = os.path.join(folder, "roster.db")
        self.config = os.path.join(folder, "roster.toml")
        self.users = list(USERS)
        self.adopt = adopt
        self.rows = write_people(self.csv, PEOPLE, seed=7)
        self.own = {}  # href -> card text the user owns (must stay byte-identical)
        self.edited = set()  # keys whose managed card a user edited or deleted
        self.write_config()

    def write_config(self):
        with open(self.config, "w") as f:
            f.write(CONFIG.format(state=self.state, csv=self.csv, url=self.server.url,
                                  users=", ".join(f'"{u}"' for u in self.users), book=BOOK,
                                  adopt=self.adopt))

    def write_rows(self, rows):
        self.rows = rows
        write_people(self.csv, PEOPLE, seed=7, mutate=lambda _: rows)

    def roster(self, *args, env=None):
        cmd = [ROSTER, "--config", self.config, "--json"] + list(args)
        full = dict(os.environ)
        full.pop("ROSTER_FAILPOINTS", None)
        full.pop("ROSTER_FAILPOINT_LOG", None)
        full.update(env or {})
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=full)
        out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
        return p.returncode, out, p.stderr

    def sync(self, *args, expect=(0,)):
        code, out, err = self.roster("sync", *args)
        check(code in expect, f"sync {args} exited {code}: {err.strip()[:500]}")
        return out

    def book_of(self, user):
        for path, name in self.dav.books(user).items():
            if name == BOOK:
                return path
        return None

    def add_own_cards(self):
        """Each current user gets a card of their own (no marker) in the book."""
        for user in self.users:
            book = self.book_of(user)
            href = f"{book}own-{user}.vcf"
            card = own_card(f"own-{user}", f"Friend of {user}", f"friend.{user}@example.org")
            self.dav.put(href, card)
            self.own[href] = card

    def save(self):
        files = {}
        for suffix in ("", "-wal", "-shm"):
            p = self.state + suffix
            if os.path.exists(p):
                with open(p, "rb") as f:
                    files[suffix] = f.read()
        with open(self.csv, encoding="utf-8") as f:
            csv_text = f.read()
        return {"server": self.server.dump(), "files": files, "csv": csv_text,
                "users": list(self.users), "rows": self.rows, "own": dict(self.own),
                "edited": set(self.edited)}

    def restore(self, saved):
        self.server.load(saved["server"])
        for suffix in ("", "-wal", "-shm"):
            p = self.state + suffix
            if os.path.exists(p):
                os.remove(p)
            if suffix in saved["files"]:
                with open(p, "wb") as f:
                    f.write(saved["files"][suffix])
        with open(self.csv, "w", encoding="utf-8") as f:
            f.write(saved["csv"])
        self.users = list(saved["users"])
        self.rows = saved["rows"]
        self.own = dict(saved["own"])
        self.edited = set(saved["edited"])
        self.write_config()


def content_lines(card):
    """A card's unfolded lines, sorted: Radicale serves a stored card with its
    properties reordered, which is not a change."""
    if card is None:
        return None
    return sorted(l for l in card.replace("\r\n ", "").replace("\r\n", "\n").split("\n") if l)


def selected(rows):
    return {r["id"]: r for r in rows if r["email"]}


def check_converged(w, all_users, offboarded=(), taken_over=()):
    """Every book holds exactly the selected people, once each; own cards untouched."""
    want = selected(w.rows)
    problems = []
    for user in all_users:
        books = [p for p, n in w.dav.books(user).items() if n == BOOK]
        if len(books) > 1:
            problems.append(f"{user} has {len(books)} books named {BOOK}")
        cards = w.dav.cards(books[0]) if books else {}
        managed = {}
        for href, text in cards.items():
            props = parse_card(text)
            if "X-ROSTER-KEY" in props:
                managed.setdefault(props["X-ROSTER-KEY"][0], []).append((href, props))
        expected = {} if user in offboarded else want
        for key, copies in managed.items():
            if len(copies) > 1:
                problems.append(f"{user}: {len(copies)} cards for {key}")
            if key not in expected:
                problems.append(f"{user}: card for {key}, who should not be there")
                continue
            row = expected[key]
            props = copies[0][1]
            fn = f"{row['first_name']} {row['last_name']}"
            if props.get("FN", [""])[0] != fn or props.get("EMAIL", [""])[0] != row["email"]:
                problems.append(f"{user}: {key} reads {props.get('FN')} {props.get('EMAIL')}, "
                                f"not {fn} {row['email']}")
            tel = props.get("TEL", [""])[0]
            if row["mobile"] and not tel.endswith(row["mobile"][-4:]):
                problems.append(f"{user}: {key} has phone {tel!r}, not {row['mobile']!r}")
        for key in expected:
            if key not in managed and (user, key) not in taken_over:
                problems.append(f"{user}: no card for {key}")
        for href, text in w.own.items():
            if href.startswith(f"/{user}/") and href not in [h for h, _ in taken_over]:
                if content_lines(cards.get(href)) != content_lines(text):
                    problems.append(f"{user}: own card {href} was changed or removed")
    return problems


# --- the scenarios: (setup before the crashed run, the crashed run itself) --

def sc_first_load():
    def setup(w):
        book = w.dav.mkbook("alice", BOOK, "mine")
        card = own_card("own-alice", "Friend of alice", "friend.alice@example.org")
        w.dav.put(book + "own-alice.vcf", card)
        w.own[book + "own-alice.vcf"] = card

    return "first load", setup, lambda w: ()


def loaded(w):
    w.sync()
    w.add_own_cards()
    w.sync()


def sc_incremental():
    def step(w):
        rows = [dict(r) for r in w.rows]
        rows[1]["title"] = "Chief " + rows[1]["title"]
        rows[2]["mobile"] = "+44 20 7946 0999"
        del rows[3]
        w.write_rows(rows + [dict(rows[0], id="E999999", email="new.person@example.com",
                                  first_name="New", last_name="Person")])
        return ()

    return "incremental change", loaded, step


def sc_full_after_user_edits():
    def step(w):
        # A user edits one managed card and deletes another on the server.
        book = w.book_of("alice")
        cards = w.dav.cards(book)
        managed = sorted(h for h, t in cards.items() if "X-ROSTER-KEY" in t)
        text = cards[managed[0]].replace("FN:", "FN:Edited ", 1)
        w.dav.put(managed[0], text)
        bob = w.dav.cards(w.book_of("bob"))
        w.dav.delete(sorted(h for h, t in bob.items() if "X-ROSTER-KEY" in t)[1])
        return ()

    return "full pass after user edits", loaded, step


def sc_lost_state():
    def step(w):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(w.state + suffix):
                os.remove(w.state + suffix)
        return ()

    return "lost state", loaded, step


def sc_offboarding():
    def step(w):
        w.users = ["alice", "bob"]
        w.write_config()
        return ()

    return "offboarding", loaded, step


def sc_adopt_merge():
    def setup(w):
        w.adopt = "merge"
        w.write_config()
        book = w.dav.mkbook("alice", BOOK, "mine")
        row = w.rows[4]
        w.taken = (book + "colleague.vcf", row["id"])
        w.dav.put(book + "colleague.vcf", own_card("colleague", "My colleague", row["email"]))
        card = own_card("own-alice", "Friend of alice", "friend.alice@example.org")
        w.dav.put(book + "own-alice.vcf", card)
        w.own[book + "own-alice.vcf"] = card

    return "adopt = merge take-over", setup, lambda w: ()


def sc_guard_then_force():
    def setup(w):
        loaded(w)
        w.write_rows(w.rows[:3])
        w.sync(expect=(3,))

    return "guard trip, then --force", setup, lambda w: ("--force",)


def sc_rename():
    def step(w):
        rows = [dict(r) for r in w.rows]
        rows[5]["last_name"] = "Renamed"
        rows[5]["email"] = "renamed.person@example.com"
        w.write_rows(rows)
        return ()

    return "rename", loaded, step


SCENARIOS = [sc_first_load, sc_incremental, sc_full_after_user_edits, sc_lost_state,
             sc_offboarding, sc_adopt_merge, sc_guard_then_force, sc_rename]


def verify(w):
    problems = check_converged(w, USERS, offboarded=[u for u in USERS if u not in w.users],
                               taken_over=[getattr(w, "taken", ("", ""))] if hasattr(w, "taken")
                               else ())
    if hasattr(w, "taken"):
        href, key = w.taken
        text = w.dav.cards(w.book_of("alice")).get(href, "")
        if f"X-ROSTER-KEY:{key}" not in text.replace("\r\n ", ""):
            problems.append(f"alice's card {href} was not taken over for {key}")
    return problems


def hits_of(w, args):
    log = os.path.join(w.dir, "hits.log")
    if os.path.exists(log):
        os.remove(log)
    code, _, err = w.roster("sync", *args, env={"ROSTER_FAILPOINT_LOG": log})
    check(code == 0, f"uncrashed run exited {code}: {err[:300]}")
    counts = {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                counts[line.strip()] = counts.get(line.strip(), 0) + 1
    return counts


def run_cell(w, saved, step, failpoint, hit):
    """Crash at `failpoint`'s `hit`-th hit, run to completion, check; returns problems."""
    w.restore(saved)
    if hasattr(w, "taken_saved"):
        w.taken = w.taken_saved
    args = step(w)
    code, _, err = w.roster("sync", *args, env={"ROSTER_FAILPOINTS": f"{failpoint}:{hit}"})
    if code != -9:
        return [f"expected a crash, got exit {code}: {err.strip()[:200]}"]
    code, out, err = w.roster("sync", *args)
    if code != 0:
        return [f"the run after the crash exited {code}: {err.strip()[:300]}"]
    problems = verify(w)
    code, out, err = w.roster("sync")
    t = (out or {}).get("totals", {})
    if code != 0 or t.get("created") or t.get("updated") or t.get("deleted"):
        problems.append(f"the next sync was not quiet: exit {code}, {t}")
    return problems


def prepare(w, scenario):
    name, setup, step = scenario()
    setup(w)
    if hasattr(w, "taken"):
        w.taken_saved = w.taken
    saved = w.save()
    return name, step, saved


def matrix_for(scenario, folder, server):
    """Every failpoint x first/middle/last hit of one scenario, on one server."""
    server.reset()
    w = World(folder, server)
    name, step, saved = prepare(w, scenario)
    w.restore(saved)
    counts = hits_of(w, step(w))
    cells, failures = 0, []
    for fp in sorted(counts):
        n = counts[fp]
        for hit in sorted({1, (n + 1) // 2, n}):
            cells += 1
            for p in run_cell(w, saved, step, fp, hit):
                failures.append(f"{name} / {fp}:{hit} of {n}: {p}")
    return name, counts, cells, failures


def test_crash_matrix_on_fakedav(suite):
    only = os.environ.get("ROSTER_CRASH_ONLY", "")
    scenarios = [s for s in SCENARIOS if only in s()[0]]
    servers = [FakeDav(), FakeDav()]
    t0 = time.time()

    def worker(k):  # one server per worker; scenarios shared out by index
        return [matrix_for(sc, os.path.join(suite.workdir, f"m{i}"), servers[k])
                for i, sc in enumerate(scenarios) if i % len(servers) == k]

    try:
        with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
            results = [r for f in [pool.submit(worker, k) for k in range(len(servers))]
                       for r in f.result()]
    finally:
        for s in servers:
            s.stop()
    failpoints = set()
    total, failures = 0, []
    for name, counts, cells, fails in results:
        failpoints |= set(counts)
        total += cells
        failures += fails
        print(f"  {name}: {len(counts)} failpoints hit, {cells} crashes, "
              f"{len(fails)} failed", flush=True)
    print(f"  crash matrix: {len(failpoints)} failpoints, {len(results)} scenarios, "
          f"{total} crashes, {len(failures)} failed, {time.time() - t0:.0f} s", flush=True)
    for f in failures[:40]:
        print("   ", f)
    check(not failures, f"{len(failures)} of {total} crashes did not converge")
    check(only or total > 100, f"only {total} crashes ran")


def test_crash_sample_on_radicale(suite):
    sample = int(os.environ.get("ROSTER_CRASH_SAMPLE", "8"))
    if sample == 0:
        return
    rng = random.Random(20261201)
    # Which failpoints each scenario reaches, from the fakedav matrix's world.
    cells = []
    fake = FakeDav()
    try:
        for i, sc in enumerate(SCENARIOS):
            fake.reset()
            w = World(os.path.join(suite.workdir, f"count{i}"), fake)
            _, step, saved = prepare(w, sc)
            w.restore(saved)
            for fp, n in hits_of(w, step(w)).items():
                cells.append((i, fp, rng.randint(1, n)))
    finally:
        fake.stop()
    rng.shuffle(cells)
    failures = []
    for i, fp, hit in sorted(cells[:sample]):
        folder = os.path.join(suite.workdir, f"rad-{i}-{fp}-{hit}")
        os.makedirs(folder)
        rad = harness.Radicale(folder)
        try:
            rad.dav = Dav(rad.url)
            rad.dump = lambda: {}
            w = World(os.path.join(folder, "w"), rad)
            name, setup, step = SCENARIOS[i]()
            setup(w)
            args = step(w)
            code, _, err = w.roster("sync", *args, env={"ROSTER_FAILPOINTS": f"{fp}:{hit}"})
            problems = [] if code == -9 else [f"expected a crash, got exit {code}"]
            code, _, err = w.roster("sync", *args)
            if code != 0:
                problems.append(f"the run after the crash exited {code}: {err.strip()[:300]}")
            problems += verify(w)
            code, out, _ = w.roster("sync")
            t = (out or {}).get("totals", {})
            if code != 0 or t.get("created") or t.get("updated") or t.get("deleted"):
                problems.append(f"the next sync was not quiet: exit {code}, {t}")
            print(f"  radicale: {name} / {fp}:{hit}: {'ok' if not problems else problems}",
                  flush=True)
            failures += [f"{name} / {fp}:{hit}: {p}" for p in problems]
        finally:
            rad.stop()
    check(not failures, "; ".join(failures[:10]))


def main():
    suite = Suite("crash_matrix")
    code = suite.run([test_crash_matrix_on_fakedav, test_crash_sample_on_radicale])
    suite.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
