#!/usr/bin/env python3
"""Issue 10's cache and delta reads, on the binary: 50,000 people from
tools/gen_org.py (seed 1) in a throwaway slapd that logs every search
(`-d stats`), a rule that sends a sample of them into three listed users'
books on a throwaway Radicale, and [state] cache = "encrypted" (the default).

- The first sync reads the directory in full and caches all 50,000, sealed:
  no name, e-mail address or phone number of anyone in the directory is in
  the state file or its WAL.
- With one person changed, a sync asks slapd for the key listing and that
  one entry only (slapd's own log says so), and writes exactly one card per
  book; a manager's new name reaches their reports' cards from the cache.
- A plan reads the change but caches nothing; cache = "none" and
  purge_after_sync = true leave no cached person; expiry with the clock
  moved by faketime purges every cached person (`purge --expired`, and a sync
  reads them again), and `purge --all` too, their sealed values gone from the
  file and its WAL.

Set ROSTER_CACHE_PEOPLE for a smaller directory while working on it. Needs
Debian's slapd, ldap-utils, radicale and faketime."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

import harness
from harness import check
from slapd import Slapd
import gen_org  # noqa: E402  (harness puts tools/ on the path)

PEOPLE = int(os.environ.get("ROSTER_CACHE_PEOPLE", "50000"))
BOOK = "Company Contacts"
USERS = ["u1.cache", "u2.cache", "u3.cache"]

CONFIG = """[state]
path = "{dir}/roster.db"
{state_extra}

[sources.dir]
type = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
password_env = "ROSTER_LDAP_PW"
base_dn = "{base_dn}"
extra_attributes = ["uid", "employeeType"]
phone_region = "GB"

[targets.dav]
type = "carddav"
url = "{dav}"
username = "roster"
users = [{users}]

[[rules]]
name = "company"
source = "dir"
target = "dav"
addressbook = "{book}"
filter = "{filter}"
max_delete_percent = 100
"""


def write_config(s, state_extra=""):
    with open(s.config, "w") as f:
        f.write(CONFIG.format(dir=s.dir, url=s.ldap.url, bind_dn=s.ldap.bind_dn,
                              base_dn=s.m["people_dn"], dav=s.radicale.url, book=BOOK,
                              users=", ".join(f'"{u}"' for u in USERS), filter=s.filter,
                              state_extra=state_extra))


def run(s, *args, faketime=None):
    if faketime:
        return run_faked(s, faketime, *args)
    return harness.roster(s.config, *args, env={"ROSTER_LDAP_PW": s.ldap.password})


def run_faked(s, offset, *args):
    """roster under Debian's faketime, the clock moved by `offset` ("+61 days")."""
    cmd = ["faketime", offset, harness.ROSTER, "--config", s.config, "--json"] + list(args)
    env = dict(os.environ, ROSTER_LDAP_PW=s.ldap.password)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
    return p.returncode, out, p.stderr


def synced(s, what, *args):
    before = len(s.ldap.searches())
    t0 = time.time()
    code, out, err = run(s, "sync", *args)
    took = time.time() - t0
    check(code == 0, f"{what}: exit {code}: {err.strip()[-1500:]}")
    time.sleep(0.2)  # slapd writes its log line after the answer
    searches = s.ldap.searches()[before:]
    print(f"  {what}: {took:.1f}s, totals {out['totals']}, searches "
          f"{[(b[:20], sc, n) for b, sc, f, n in searches]}", flush=True)
    return out, searches


def source_notice(out):
    lines = [n for n in out["sources"] if n.startswith("source dir:")]
    check(len(lines) == 1, f"one notice for source dir: {out['sources']}")
    return lines[0]


def cached_rows(s):
    """Rows of the source cache, read from a copy of the state and its WAL."""
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            src = os.path.join(s.dir, "roster.db" + suffix)
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(tmp, "s.db" + suffix))
        db = sqlite3.connect(os.path.join(tmp, "s.db"))
        try:
            return [bytes(v) for (v,) in db.execute("SELECT sealed FROM source_cache")]
        finally:
            db.close()


def state_bytes(s):
    data = b""
    for name in sorted(os.listdir(s.dir)):
        if name.startswith("roster.db"):
            with open(os.path.join(s.dir, name), "rb") as f:
                data += f.read()
    return data


def personal_needles(s, n=40):
    """Names, e-mail addresses and phone numbers of people across the whole
    directory (selected or not: the cache holds everyone)."""
    out = []
    step = max(1, len(s.m["people"]) // n)
    for p in s.m["people"][::step]:
        for field in ("displayName", "mail", "telephoneNumber", "mobile", "telephoneNumber_e164",
                      "mobile_e164"):
            v = p.get(field)
            if v and len(v) >= 8:
                out.append(v)
    return out


def scan_state(s, needles, blobs=(), what=""):
    data = state_bytes(s)
    folded = data.lower()
    found = [n for n in needles if n.encode("utf-8").lower() in folded]
    check(not found, f"{what}: in the state file: {found[:10]}")
    left = sum(1 for b in blobs if b in data)
    check(left == 0, f"{what}: {left} of {len(blobs)} sealed cache values still in the file or WAL")


def card(s, user, uid_key):
    for name, props in s.radicale.cards(user, BOOK).items():
        if props.get("X-ROSTER-KEY", [None])[0] == uid_key:
            return props
    return None


def modify(s, dn, attribute, value):
    s.ldap.ldapmodify(f"dn: {dn}\nchangetype: modify\nreplace: {attribute}\n"
                      f"{gen_org.ldif_line(attribute, value)}\n")


def listings(searches):
    """The subtree searches as roster sent them: the pages of one paged search
    (slapd logs each page as a search of its own, one after another with the
    same base and filter) counted as one, with the entries of all its pages."""
    out = []
    for base, scope, flt, n in searches:
        if scope != 2:
            continue
        if out and out[-1][0] == base and out[-1][2] == flt and out[-1][4] == 500:
            out[-1] = (base, scope, flt, out[-1][3] + n, n)
        else:
            out.append((base, scope, flt, n, n))
    return [(b, sc, f, total) for b, sc, f, total, last in out]


def expect_delta(searches, dns, what):
    """The listing (one subtree search that answered every entry) and one
    base-scope read per changed entry: nothing else read a body."""
    listing = listings(searches)
    check(len(listing) == 1 and listing[0][3] >= PEOPLE - 100,
          f"{what}: one subtree listing of the directory, got {listing}")
    reads = sorted(b.lower() for b, scope, f, n in searches if scope == 0 and b and n == 1)
    check(reads == sorted(d.lower() for d in dns),
          f"{what}: read by DN {reads}, expected {dns}")
    other = [x for x in searches if x[1] != 2 and x[0] and x[0].lower() not in reads]
    check(not other, f"{what}: other searches {other}")


# --- the tests ----------------------------------------------------------------

def test_first_sync_reads_everyone_and_caches_them_sealed(s):
    out, searches = synced(s, "first sync")
    check(out["totals"]["created"] == len(s.sample) * len(USERS), f"created {out['totals']}")
    notice = source_notice(out)
    check(f"{PEOPLE} read (in full)" in notice, notice)
    rows = cached_rows(s)
    check(len(rows) == PEOPLE, f"{len(rows)} cached, expected {PEOPLE}")
    scan_state(s, personal_needles(s), what="after the first sync")


def test_a_quiet_sync_lists_keys_only_and_writes_nothing(s):
    out, searches = synced(s, "quiet sync")
    t = out["totals"]
    check(t["created"] + t["updated"] + t["deleted"] == 0, f"quiet sync wrote: {t}")
    check(len(listings(searches)) == 1, f"one listing: {searches}")
    check(not [x for x in searches if x[1] == 0 and x[0] and x[3] > 0], f"no body read: {searches}")


def test_one_change_reads_that_entry_and_writes_one_card_per_book(s):
    p = s.roles["changed"]
    modify(s, p["dn"], "title", "Chief Cache Officer")
    out, searches = synced(s, "one change")
    expect_delta(searches, [p["dn"]], "one change")
    t = out["totals"]
    check(t["updated"] == len(USERS) and t["created"] == 0 and t["deleted"] == 0,
          f"one update per book: {t}")
    check(f"{PEOPLE} read ({PEOPLE - 1} of them from the cache)" in source_notice(out),
          source_notice(out))
    for u in USERS:
        c = card(s, u, p["entryUUID"])
        check(c and c.get("TITLE") == ["Chief Cache Officer"], f"{u}: {c and c.get('TITLE')}")


def test_a_managers_new_name_reaches_their_reports_from_the_cache(s):
    boss = s.roles["manager"]
    reports = [p for p in s.sample if p["manager"] == boss["dn"]]
    modify(s, boss["dn"], "displayName", "Renamed Boss Zq")
    out, searches = synced(s, "manager renamed")
    expect_delta(searches, [boss["dn"]], "manager renamed")
    want = (1 + len(reports)) * len(USERS)
    check(out["totals"]["updated"] == want, f"updated {out['totals']}, expected {want}")
    for u in USERS:
        for r in reports:
            c = card(s, u, r["entryUUID"])
            check(c and c.get("X-MS-MANAGER") == ["Renamed Boss Zq"],
                  f"{u}: {r['uid']}'s manager is {c and c.get('X-MS-MANAGER')}")


def test_a_plan_reads_the_change_but_caches_nothing(s):
    p = s.roles["planned"]
    modify(s, p["dn"], "title", "Planned Title")
    before = len(s.ldap.searches())
    code, out, err = run(s, "plan")
    check(code == 0, f"plan: {code} {err}")
    time.sleep(0.2)
    expect_delta(s.ldap.searches()[before:], [p["dn"]], "plan")
    check(out["totals"]["updated"] == len(USERS), f"plan: {out['totals']}")
    # The sync after it still finds that entry unread in the cache.
    out, searches = synced(s, "sync after the plan")
    expect_delta(searches, [p["dn"]], "sync after the plan")
    check(out["totals"]["updated"] == len(USERS), f"sync: {out['totals']}")


def test_departures_leave_the_cache(s):
    p = s.roles["leaver"]
    s.ldap.delete(p["dn"])
    out, searches = synced(s, "a departure")
    expect_delta(searches, [], "a departure")
    check(out["totals"]["deleted"] == len(USERS), f"deleted {out['totals']}")
    check(len(cached_rows(s)) == PEOPLE - 1, "the cache forgot the leaver")


def test_expiry_with_the_clock_moved_purges_and_a_sync_reads_again(s):
    blobs = cached_rows(s)
    check(len(blobs) == PEOPLE - 1, f"{len(blobs)} cached")
    code, out, err = run(s, "purge", "--expired", faketime="+30 days")
    check(code == 0 and out["cached"] == 0, f"30 days: nothing expired: {code} {out} {err}")
    code, out, err = run(s, "purge", "--expired", faketime="+61 days")
    check(code == 0 and out["cached"] == PEOPLE - 1, f"61 days: all expired: {code} {out} {err}")
    check(cached_rows(s) == [], "nothing cached after expiry")
    scan_state(s, personal_needles(s), blobs[:2000], "after purge --expired")
    # Nothing is read while the directory stays as it was; a change reads everyone.
    modify(s, s.roles["late"]["dn"], "title", "After Expiry")
    out, searches = synced(s, "sync after expiry")
    check(f"{PEOPLE - 1} read (in full)" in source_notice(out), source_notice(out))
    check(len(cached_rows(s)) == PEOPLE - 1, "cached again")


def test_a_sync_long_after_purges_expired_entries_first(s):
    p = s.roles["late"]
    modify(s, p["dn"], "title", "Late Change")
    code, out, err = run(s, "sync", faketime="+90 days")
    check(code == 0, f"sync 90 days on: {code} {err[-1000:]}")
    check(any("had expired and were purged" in n for n in out["sources"]), out["sources"])
    check(f"{PEOPLE - 1} read (in full)" in source_notice(out), source_notice(out))
    check(out["totals"]["updated"] == len(USERS), f"{out['totals']}")


def test_cache_none_and_purge_after_sync_keep_no_one(s):
    write_config(s, 'cache = "none"')
    p = s.roles["none"]
    modify(s, p["dn"], "title", "No Cache")
    out, _ = synced(s, "cache = none")
    check(out["totals"]["updated"] == len(USERS), f"{out['totals']}")
    check("from the cache" not in source_notice(out), source_notice(out))
    check(any('purged (cache = "none")' in n for n in out["sources"]), out["sources"])
    check(cached_rows(s) == [], "cache = none keeps no one")
    scan_state(s, personal_needles(s), what="cache = none")
    write_config(s, "purge_after_sync = true")
    modify(s, p["dn"], "title", "Purged After")
    out, _ = synced(s, "purge_after_sync")
    check(out["totals"]["updated"] == len(USERS), f"{out['totals']}")
    check(cached_rows(s) == [], "purge_after_sync keeps no one")
    write_config(s)


def test_purge_all_leaves_no_cached_value(s):
    modify(s, s.roles["none"]["dn"], "title", "Cached Again")
    out, _ = synced(s, "sync to fill the cache")
    blobs = cached_rows(s)
    check(len(blobs) == PEOPLE - 1, f"{len(blobs)} cached")
    code, out, err = run(s, "purge", "--all")
    check(code == 0, f"purge --all: {code} {err}")
    check(cached_rows(s) == [], "purge --all keeps no one")
    scan_state(s, personal_needles(s), blobs[:2000], "after purge --all")
    out, _ = synced(s, "sync after purge --all")
    t = out["totals"]
    check(t["created"] == 0 and t["deleted"] == 0, f"adopted, no duplicates: {t}")


def main():
    s = harness.Suite("ldap_cache")
    s.dir = os.path.join(s.workdir, "roster")
    os.makedirs(s.dir)
    s.config = os.path.join(s.dir, "roster.toml")
    ldif = os.path.join(s.workdir, "org.ldif")
    t0 = time.time()
    with open(ldif, "w", encoding="ascii") as f:
        s.m = gen_org.write_ldif(f, people=PEOPLE, seed=1)
    people = s.m["people"]
    ok = [p for p in people if p["employeeType"] == "Employee" and not p["disabled"]
          and not p["hidden"] and p["mail"]]
    # A manager with a few reports, and people for each change.
    by_manager = {}
    for p in ok:
        if p["manager"]:
            by_manager.setdefault(p["manager"], []).append(p)
    boss_dn = min(by_manager, key=lambda d: (len(by_manager[d]) < 3, d))
    boss = next(p for p in people if p["dn"] == boss_dn)
    heads = set(by_manager)
    plain = [p for p in ok if p["dn"] not in heads and p["manager"] != boss_dn]
    s.roles = {"manager": boss, "changed": plain[0], "planned": plain[1], "leaver": plain[2],
               "late": plain[3], "none": plain[4]}
    s.sample = [boss] + by_manager[boss_dn][:3] + plain[:10]
    s.filter = "uid in (" + ", ".join(f"'{p['uid']}'" for p in s.sample) + ")"
    s.ldap = Slapd(workdir=s.workdir, ldif=ldif, size_limit=500, log_stats=True)
    s.radicale = harness.Radicale(s.workdir)
    print(f"{PEOPLE} people in slapd, {len(s.sample)} in the sample, in {time.time() - t0:.1f}s",
          flush=True)
    try:
        write_config(s)
        code = s.run([test_first_sync_reads_everyone_and_caches_them_sealed,
               test_a_quiet_sync_lists_keys_only_and_writes_nothing,
               test_one_change_reads_that_entry_and_writes_one_card_per_book,
               test_a_managers_new_name_reaches_their_reports_from_the_cache,
               test_a_plan_reads_the_change_but_caches_nothing,
               test_departures_leave_the_cache,
               test_expiry_with_the_clock_moved_purges_and_a_sync_reads_again,
               test_a_sync_long_after_purges_expired_entries_first,
               test_cache_none_and_purge_after_sync_keep_no_one,
               test_purge_all_leaves_no_cached_value])
    finally:
        s.close(s.ldap, s.radicale)
    return code


if __name__ == "__main__":
    sys.exit(main())
