"""The crash matrix against Microsoft 365: roster is killed at every failpoint
(core/failpoint.h) its run reaches, at the first, a middle and the last hit, in
every scenario, with the Graph target writing into the Graph emulator
(tests/integration/fakegraph.py) running as its own process, so that it
outlives the killed roster. The run after the crash must converge: every
mailbox's folder holds exactly the selected people (50 directory users and 5
organisational contacts, the mailbox's own person left out), one managed
contact per source identity (counted by roster's marker in the emulator's
/_ctl/dump, so a create whose answer was lost and a second copy both show),
each reading as the directory says; the users' own contacts are untouched; a
user's edit of a managed contact is corrected, a managed contact the user
deleted is back; and one more sync writes nothing. A second kind of cell
deletes the state after the crash: the run must then adopt what is there by
marker and create exactly what is missing (nothing where all landed).

Every cell restores the scenario's starting point: the emulator by POST
/_ctl/load of a saved dump (which drops every delta token, so the crashed run
starts its directory and folder rounds again with a 410, as the dry pass that
counted the hits did; the run after the crash uses the tokens the crashed run
committed) and the state database from a saved copy.

The emulator is fakegraph.py itself (the matrix runs about 1,000 syncs).

    ROSTER_CRASH_ONLY=NAME   only the scenarios whose name contains NAME
    ROSTER_CRASH_WORKERS=N   emulators and cells run at once (default 2)
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import graph_sync_test as G  # noqa: E402
from harness import ROSTER, Suite, check  # noqa: E402

PEOPLE = 50
ORG = 5
MAILBOXES = 3  # u0000..u0002, the members of the group "Sales"
FOLDER = G.FOLDER
GROUP_ID = "20000000-0000-4000-8000-000000000002"
EXT_HIDE = "HideFromGAL"

CONFIG = """
[state]
path = "{state}"

[tenants.contoso]
tenant_id = "{tenant}"
client_id = "{client_id}"
client_secret_file = "{secret}"
authority = "{origin}"
graph_url = "{origin}"

[sources.gal]
type = "graph"
tenant = "contoso"
read = ["users", "org_contacts"]
photo_max_pixels = 0

[targets.m365]
type = "graph"
tenant = "contoso"

[[rules]]
name = "gal"
source = "gal"
target = "m365"
addressbook = "{folder}"
filter = "onPremisesExtensionAttributes.extensionAttribute1 != '{hide}'"
users_from = {{ source = "gal", group = "Sales" }}
max_delete_percent = 50
"""


def person(i):
    u = G.user(i)
    u["accountEnabled"] = True
    u["userType"] = "Member"
    u.pop("onPremisesExtensionAttributes", None)
    u["mailbox"] = i < MAILBOXES
    if i == 7:  # one person hidden from the address list: never a contact
        u["onPremisesExtensionAttributes"] = {"extensionAttribute1": EXT_HIDE}
    if i == 9:  # one disabled account: never a contact
        u["accountEnabled"] = False
    return u


def directory():
    users = [person(i) for i in range(PEOPLE)]
    return {"users": users, "orgContacts": [G.org_contact(i) for i in range(ORG)],
            "groups": [{"id": GROUP_ID, "displayName": "Sales",
                        "members": [users[i]["id"] for i in range(MAILBOXES)]}]}


# fakegraph.py sets TCP_NODELAY on its connections itself: http.server writes an
# answer's headers and body apart, and Nagle's algorithm with the client's
# delayed ACK would hold the body back (0.45 s for a 50x3 sync instead of 0.07).
Emulator = G.Graph


# --- reading the emulator's dump ----------------------------------------------

def selected(dump):
    """source id -> (kind, directory object) of everyone who must be a contact."""
    out = {}
    for u in dump["users"]:
        if u.get("deletedDateTime") or not u.get("accountEnabled", True):
            continue
        if u.get("userType") == "Guest":
            continue
        ext = u.get("onPremisesExtensionAttributes") or {}
        if ext.get("extensionAttribute1") == EXT_HIDE:
            continue
        out[u["id"]] = ("user", u)
    for c in dump["orgContacts"]:
        if not c.get("deletedDateTime"):
            out[c["id"]] = ("org", c)
    return out


def receivers(dump):
    """userPrincipalName -> user id of the group's members who get the folder."""
    users = {u["id"]: u for u in dump["users"]}
    group = [g for g in dump["groups"] if g["id"] == GROUP_ID][0]
    return {users[m]["userPrincipalName"]: m for m in group["members"]
            if m in users and users[m].get("accountEnabled", True) and
            not users[m].get("deletedDateTime")}


def folders_of(dump):
    """userPrincipalName -> [folders named FOLDER]."""
    out = {}
    for m in dump["mailboxes"]:
        out[m["userPrincipalName"]] = [f for f in m.get("contactFolders", [])
                                       if f["displayName"] == FOLDER]
    return out


def source_id(contact):
    m = G.marker(contact)
    return None if m is None else m.rsplit(":", 1)[1]


def reads_wrong(contact, kind, obj):
    """What of a managed contact differs from its directory object, or None."""
    mails = [e.get("address") for e in contact.get("emailAddresses") or []]
    want = {"givenName": obj.get("givenName"), "surname": obj.get("surname"),
            "mail": obj.get("mail")}
    got = {"givenName": contact.get("givenName"), "surname": contact.get("surname"),
           "mail": mails[0] if mails else None}
    if kind == "user":
        want["jobTitle"] = obj.get("jobTitle")
        got["jobTitle"] = contact.get("jobTitle")
        want["mobilePhone"] = obj.get("mobilePhone")
        got["mobilePhone"] = contact.get("mobilePhone")
    bad = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    return bad or None


def present(dump):
    """userPrincipalName -> {source id: copies} of the managed contacts in FOLDER."""
    out = {}
    for upn, folders in folders_of(dump).items():
        keys = {}
        for f in folders:
            for c in f["contacts"]:
                k = source_id(c)
                if k is not None:
                    keys[k] = keys.get(k, 0) + 1
        out[upn] = keys
    return out


def missing_count(dump):
    """How many contacts the converged state has that this dump lacks."""
    want = selected(dump)
    have = present(dump)
    n = 0
    for upn, uid in receivers(dump).items():
        n += len(set(want) - {uid} - set(have.get(upn, {})))
    return n


def problems_of(dump, own, forgotten=False):
    """Everything that keeps the dump from being converged. `forgotten`: the
    state was lost, so who left the rule is not known any more and a folder
    of a mailbox that no longer receives it may keep roster's contacts (its
    duplicates still count)."""
    want = selected(dump)
    recv = receivers(dump)
    problems = []
    for upn, folders in folders_of(dump).items():
        if upn in recv and len(folders) != 1:
            problems.append(f"{upn}: {len(folders)} folders named {FOLDER}")
        expected = {k: v for k, v in want.items() if k != recv.get(upn)} if upn in recv else {}
        seen = {}
        for f in folders:
            for c in f["contacts"]:
                k = source_id(c)
                if k is None:
                    continue
                seen[k] = seen.get(k, 0) + 1
                if k not in expected:
                    if not (forgotten and upn not in recv):
                        problems.append(f"{upn}: a contact for {k}, who should not be there")
                    continue
                bad = reads_wrong(c, *expected[k])
                if bad:
                    problems.append(f"{upn}: {k} reads wrong: {bad}")
        dup = {k: n for k, n in seen.items() if n > 1}
        if dup:
            problems.append(f"{upn}: duplicates {sorted(dup.items())[:4]}")
        lost = sorted(set(expected) - set(seen))
        if lost:
            problems.append(f"{upn}: {len(lost)} missing, e.g. {lost[:3]}")
    contacts = {}
    for m in dump["mailboxes"]:
        for f in m.get("contactFolders", []):
            for c in f["contacts"]:
                contacts[c["id"]] = c
    for cid, before in own.items():
        after = contacts.get(cid)
        if after is None:
            problems.append(f"the user's own contact {before.get('displayName')} is gone")
        elif after != before:
            diff = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            problems.append(f"the user's own contact {before.get('displayName')} changed: {diff}")
    return problems


# --- one scenario's world -------------------------------------------------------

class World:
    def __init__(self, folder, graph):
        self.dir = folder
        os.makedirs(folder, exist_ok=True)
        self.graph = graph
        self.state = os.path.join(folder, "roster.db")
        self.config = os.path.join(folder, "roster.toml")
        self.own = {}  # contact id -> its dump: the user's own, must stay as it is
        secret = G.write_secret(os.path.join(folder, "graph.secret"))
        with open(self.config, "w") as f:
            f.write(CONFIG.format(state=self.state, tenant=G.TENANT, client_id=G.CLIENT_ID,
                                  secret=secret, origin=graph.origin, folder=FOLDER,
                                  hide=EXT_HIDE))

    def roster(self, *args, env=None):
        full = dict(os.environ)
        full.pop("ROSTER_FAILPOINTS", None)
        full.pop("ROSTER_FAILPOINT_LOG", None)
        full.update(env or {})
        p = subprocess.run([ROSTER, "--config", self.config, "--json", *args],
                                         capture_output=True, text=True, timeout=120, env=full)
        out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
        return p.returncode, out, p.stderr

    def sync(self, *args, expect=(0,)):
        code, out, err = self.roster("sync", *args)
        check(code in expect, f"sync {args} exited {code}: {err.strip()[-800:]}")
        return out

    def dump(self):
        return self.graph.ctl("GET", "dump")

    def lose_state(self):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.state + suffix):
                os.remove(self.state + suffix)

    def folder_id(self, upn):
        return folders_of(self.dump())[upn][0]["id"]

    def contacts(self, upn):
        return folders_of(self.dump())[upn][0]["contacts"]

    def api(self, method, path, body=None):
        s, b = self.graph.api(method, path, body)
        check(200 <= s < 300, f"{method} {path}: {s} {b}")
        return b

    def add_own_contacts(self):
        """Each mailbox's user makes a contact of their own in the folder."""
        made = []
        for i in range(MAILBOXES):
            upn = G.upn(i)
            c = self.api("POST", f"/users/{upn}/contactFolders/{self.folder_id(upn)}/contacts",
                         {"givenName": "Friend", "surname": f"Of{i}", "jobTitle": "Friend",
                          "emailAddresses": [{"address": f"friend{i}@example.org"}]})
            made.append(c["id"])
        self.remember_own(made)

    def remember_own(self, ids):
        for m in self.dump()["mailboxes"]:
            for f in m.get("contactFolders", []):
                for c in f["contacts"]:
                    if c["id"] in ids:
                        self.own[c["id"]] = c

    def save(self):
        files = {}
        for suffix in ("", "-wal", "-shm"):
            p = self.state + suffix
            if os.path.exists(p):
                with open(p, "rb") as f:
                    files[suffix] = f.read()
        return {"server": self.dump(), "files": files, "own": dict(self.own)}

    def restore(self, saved):
        self.graph.ctl("POST", "load", saved["server"])
        self.lose_state()
        for suffix, data in saved["files"].items():
            with open(self.state + suffix, "wb") as f:
                f.write(data)
        self.own = dict(saved["own"])


def loaded(w):
    w.sync()
    w.add_own_contacts()
    w.sync()
    check(not problems_of(w.dump(), w.own), "the loaded world did not converge")


# --- the scenarios: (name, setup once, step before the crashed run -> args) -------

def SETUP_NONE(w):
    pass


def sc_first_load():
    return "first load", SETUP_NONE, lambda w: ()


def sc_incremental():
    def step(w):
        d = directory()["users"]
        w.graph.ctl("POST", "directory/upsert", {
            "users": [{"id": d[11]["id"], "jobTitle": "Director"},
                      {"id": d[12]["id"], "mobilePhone": "+44 7700 900999"},
                      {"id": "00000000-0000-4000-8000-000000000999", "accountEnabled": True,
                       "userPrincipalName": "new.person@contoso.com", "displayName": "New Person",
                       "givenName": "New", "surname": "Person", "userType": "Member",
                       "mail": "new.person@contoso.com", "jobTitle": "Engineer"}],
            "orgContacts": [{"id": G.org_contact(1)["id"], "surname": "Renamed"}]})
        w.graph.ctl("POST", "directory/delete", {"users": [d[13]["id"]]})
        return ()

    return "incremental change", loaded, step


def sc_user_edits():
    def step(w):
        # u0000 edits a managed contact and their own; u0001 deletes a managed one.
        upn = G.upn(0)
        fid = w.folder_id(upn)
        victim = sorted((c for c in w.contacts(upn) if G.marker(c)), key=lambda c: c["id"])[0]
        w.api("PATCH", f"/users/{upn}/contactFolders/{fid}/contacts/{victim['id']}",
              {"jobTitle": "Edited on the phone", "surname": "Wrong"})
        own = [cid for cid, c in w.own.items() if c["parentFolderId"] == fid][0]
        w.api("PATCH", f"/users/{upn}/contactFolders/{fid}/contacts/{own}",
              {"jobTitle": "Best friend"})
        w.remember_own([own])
        upn = G.upn(1)
        fid = w.folder_id(upn)
        gone = sorted((c for c in w.contacts(upn) if G.marker(c)), key=lambda c: c["id"])[1]
        w.api("DELETE", f"/users/{upn}/contactFolders/{fid}/contacts/{gone['id']}")
        return ()

    return "user edits", loaded, step


def sc_lost_state():
    def step(w):
        w.lose_state()
        return ()

    return "lost state", loaded, step


def sc_offboarding():
    def step(w):
        members = [person(i)["id"] for i in range(MAILBOXES - 1)]
        w.graph.ctl("POST", "directory/upsert",
                    {"groups": [{"id": GROUP_ID, "members": members}]})
        return ()

    return "offboarding", loaded, step


def sc_mass_departure():
    def setup(w):
        loaded(w)
        w.graph.ctl("POST", "directory/delete",
                    {"users": [person(i)["id"] for i in range(18, 48)]})
        w.sync(expect=(3,))  # the guard holds the deletions back

    return "mass departure, then --force", setup, lambda w: ("--force",)


def sc_rename():
    def step(w):
        d = directory()["users"]
        w.graph.ctl("POST", "directory/upsert", {"users": [
            {"id": d[15]["id"], "surname": "Renamed", "displayName": "Given15 Renamed",
             "mail": "given15.renamed@contoso.com"},
            {"id": d[16]["id"], "givenName": "Other", "displayName": "Other Family16"}]})
        return ()

    return "rename", loaded, step


SCENARIOS = [sc_first_load, sc_incremental, sc_user_edits, sc_lost_state, sc_offboarding,
             sc_mass_departure, sc_rename]


# --- the matrix -----------------------------------------------------------------

def hits_of(w, args):
    log = os.path.join(w.dir, "hits.log")
    if os.path.exists(log):
        os.remove(log)
    code, out, err = w.roster("sync", *args, env={"ROSTER_FAILPOINT_LOG": log})
    check(code == 0, f"uncrashed run exited {code}: {err.strip()[-500:]}")
    problems = problems_of(w.dump(), w.own)
    check(not problems, f"the uncrashed run did not converge: {problems[:5]}")
    counts = {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                counts[line.strip()] = counts.get(line.strip(), 0) + 1
    return counts


def quiet(w):
    code, out, err = w.roster("sync")
    t = (out or {}).get("totals", {})
    if code != 0 or t.get("created") or t.get("updated") or t.get("deleted"):
        return [f"the next sync was not quiet: exit {code}, {t} {err.strip()[-300:]}"]
    return []


def settled(w):
    """The emulator's dump once its write count has stopped moving."""
    last = w.dump()
    for _ in range(100):
        time.sleep(0.05)
        now = w.dump()
        if now["writes"] == last["writes"]:
            return now
        last = now
    return last


def replay(w, setup):
    """The scenario's starting point made again by its own runs (not by a
    dump), so the state's delta tokens are the emulator's live ones."""
    w.graph.ctl("POST", "load", directory())
    w.lose_state()
    w.own = {}
    setup(w)


def run_cell(w, start, step, failpoint, hit, kind):
    """Crash at `failpoint`'s `hit`-th hit, run to completion, check; returns
    the problems. kind: "race" (the run after the crash starts at once, while
    a $batch the killed roster sent may still be running on the server),
    "settled" (it starts once the emulator is idle, and must create exactly
    what is missing: a create that landed unrecorded is adopted, not sent
    again), "state deleted" (settled, then the state is deleted: everything
    there is adopted by marker, only what is missing is created)."""
    start(w)
    args = step(w)
    code, _, err = w.roster("sync", *args, env={"ROSTER_FAILPOINTS": f"{failpoint}:{hit}"})
    if code != -9:
        return [f"expected a crash, got exit {code}: {err.strip()[-300:]}"]
    problems = []
    want_created = None
    if kind != "race":
        # A $batch the killed roster had sent still runs to its end on the
        # server: count what is missing once the emulator is idle.
        want_created = missing_count(settled(w))
    if kind == "state deleted":
        w.lose_state()
    code, out, err = w.roster("sync", *args)
    if code != 0:
        return [f"the run after the crash exited {code}: {err.strip()[-400:]}"]
    t = out["totals"]
    if want_created is not None and t.get("created") != want_created:
        problems.append(f"the run after the crash created {t.get('created')}, but "
                        f"{want_created} were missing")
    problems += problems_of(w.dump(), w.own, forgotten=kind == "state deleted")
    return problems + quiet(w)


def cells_of(counts, replayed):
    """(failpoint, hit, kind) of the cells for the hits counted in a dry pass."""
    out = []
    for fp in sorted(counts):
        n = counts[fp]
        mid = (n + 1) // 2
        if replayed:
            out.append((fp, mid, "settled"))
            continue
        for hit in sorted({1, mid, n}):
            out.append((fp, hit, "settled" if hit == mid else "race"))
            out.append((fp, hit, "state deleted"))
    return out


def matrix_for(scenario, folder, graph):
    """Every failpoint x first/middle/last hit of one scenario, on one
    emulator, from a restored dump; then every failpoint's middle hit from a
    replayed starting point."""
    graph.ctl("POST", "reset")
    graph.ctl("POST", "load", directory())
    w = World(folder, graph)
    name, setup, step = scenario()
    setup(w)
    saved = w.save()
    cells, failures, counts = 0, [], {}
    modes = [("restored", lambda w: w.restore(saved))]
    if setup is not SETUP_NONE:
        modes.append(("replayed", lambda w: replay(w, setup)))
    for mode, start in modes:
        start(w)
        hits = hits_of(w, step(w))
        for fp, n in hits.items():
            counts[fp] = max(counts.get(fp, 0), n)
        for fp, hit, kind in cells_of(hits, mode == "replayed"):
            cells += 1
            problems = run_cell(w, start, step, fp, hit, kind)
            if problems:
                more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
                failures.append(f"{name} ({mode}) / {fp}:{hit} of {hits[fp]}, {kind}: "
                                f"{'; '.join(problems[:3])}{more}")
    return name, counts, cells, failures


def test_graph_crash_matrix(suite):
    only = os.environ.get("ROSTER_CRASH_ONLY", "")
    scenarios = [s for s in SCENARIOS if only in s()[0]]
    workers = max(1, int(os.environ.get("ROSTER_CRASH_WORKERS", "2")))
    graphs = []
    t0 = time.time()
    try:
        for k in range(workers):
            d = os.path.join(suite.workdir, f"g{k}")
            os.makedirs(d)
            graphs.append(Emulator(d))

        def worker(k):  # one emulator per worker; scenarios shared out by index
            return [(i, matrix_for(sc, os.path.join(suite.workdir, f"m{i}"), graphs[k]))
                    for i, sc in enumerate(scenarios) if i % workers == k]

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(worker, k) for k in range(workers)]
            results = [r for _, r in sorted(x for f in futures for x in f.result())]
    finally:
        for g in graphs:
            g.stop()
    failpoints = {}
    total, failures = 0, []
    for name, counts, cells, fails in results:
        for fp, n in counts.items():
            failpoints[fp] = failpoints.get(fp, 0) + n
        total += cells
        failures += fails
        print(f"  {name}: {len(counts)} failpoints hit, {cells} crashes, "
              f"{len(fails)} failed", flush=True)
    print("  failpoints reached (most hits of one dry pass, summed over the scenarios): " +
          ", ".join(f"{fp} {n}" for fp, n in sorted(failpoints.items())), flush=True)
    print(f"  graph crash matrix: {len(failpoints)} failpoints, {len(results)} scenarios, "
          f"{total} crashes, {len(failures)} failures, {time.time() - t0:.0f} s", flush=True)
    for f in failures[:40]:
        print("   ", f, flush=True)
    check(not failures, f"{len(failures)} of {total} crashes did not converge")
    check(only or total > 100, f"only {total} crashes ran")
    # The crash that matters most with server-assigned ids: right after a $batch of creates.
    for fp in ("after-create", "after-update", "after-delete", "state-before-commit"):
        check(only or fp in failpoints, f"no run reached {fp}")


def main():
    suite = Suite("graph_crash")
    code = suite.run([test_graph_crash_matrix])
    suite.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
