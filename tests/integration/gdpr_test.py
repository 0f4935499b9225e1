#!/usr/bin/env python3
"""Issue 11's data subject rights and decommissioning, on the binary, with
everything checked against what the servers really hold:

- LDAP (a throwaway slapd, tools/gen_org.py) into three books on a throwaway
  Radicale, the cache on: `gdpr export` lists the cached fields and exactly
  the books Radicale holds the person in (none for someone not selected),
  with --vcard; after expiry (faketime) `cached` is empty while `copies`
  still lists them. `gdpr erase` of a manager removes them from every book
  and their name from their reports' cards in one run, and from the cache;
  the next sync, also after the state file was deleted, does not bring them
  back; a missing register stops a sync; `gdpr unerase` lets them return.
  `decommission --dry-run` after a lost state lists exactly what
  `decommission` then removes: every managed card and every book left
  empty, never a user's own card. `audit verify` passes throughout, and the
  audit log holds the entries, under pseudonyms only.
- The same export, erasure and decommissioning against the Graph emulator.

Needs Debian's slapd, ldap-utils, radicale and faketime."""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import harness
from harness import check
from slapd import Slapd
import gen_org  # noqa: E402  (harness puts tools/ on the path)
import graph_sync_test as gst

HERE = os.path.dirname(os.path.abspath(__file__))
PEOPLE = 300
BOOK = "Company Contacts"
USERS = ["u1.gdpr", "u2.gdpr", "u3.gdpr"]

CONFIG = """[state]
path = "{dir}/roster.db"

[sources.dir]
type = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
password_env = "ROSTER_LDAP_PW"
base_dn = "{base_dn}"
extra_attributes = ["uid"]
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


def write_config(s):
    with open(s.config, "w") as f:
        f.write(CONFIG.format(dir=s.dir, url=s.ldap.url, bind_dn=s.ldap.bind_dn,
                              base_dn=s.m["people_dn"], dav=s.radicale.url, book=BOOK,
                              users=", ".join(f'"{u}"' for u in USERS), filter=s.filter))


def run(s, *args, faketime=None, config=None):
    cmd = (["faketime", faketime] if faketime else []) + [
        harness.ROSTER, "--config", config or s.config, "--json"] + list(args)
    env = dict(os.environ, ROSTER_LDAP_PW=s.ldap.password) if hasattr(s, "ldap") else None
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    out = None
    if p.stdout.strip().startswith("{"):
        out = json.loads(p.stdout)
    return p.returncode, out, p.stderr


def ok(s, what, *args, **kw):
    code, out, err = run(s, *args, **kw)
    check(code == 0, f"{what}: exit {code}: {err.strip()[-1500:]}")
    return out


def holding(s, mail):
    """(user, card file) of every card on Radicale with this e-mail address."""
    out = []
    for u in USERS:
        for name, props in s.radicale.cards(u, BOOK).items():
            if any(mail.lower() in v.lower() for v in props.get("EMAIL", [])):
                out.append((u, name))
    return sorted(out)


def managers_named(s, name):
    out = []
    for u in USERS:
        for card, props in s.radicale.cards(u, BOOK).items():
            if any(name in v for v in props.get("X-MS-MANAGER", [])):
                out.append((u, card))
    return out


def audit_events(s):
    with open(os.path.join(s.dir, "roster-audit.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def verify_audit(s, what, config=None):
    out = ok(s, f"audit verify {what}", "audit", "verify", config=config)
    check(out["ok"], f"{what}: {out}")


def state_files(s):
    return [n for n in os.listdir(s.dir) if n.startswith("roster.db") and not n.endswith(".lock")]


# --- LDAP into Radicale --------------------------------------------------------

def test_export_lists_the_cache_and_every_book_radicale_holds(s):
    out = ok(s, "first sync", "sync")
    check(out["totals"]["created"] == len(s.sample) * len(USERS), f"{out['totals']}")
    p = s.report
    exported = ok(s, "export", "gdpr", "export", "--subject", p["mail"].upper(),
                  "--vcard", os.path.join(s.workdir, "person.vcf"))
    check(exported["subject"].lower() == p["mail"].lower(), exported["subject"])
    check(exported["cached"].get("formatted_name") == p["displayName"],
          f"cached: {exported['cached']}")
    check(exported["cached_from"][0]["key"] == p["entryUUID"], exported["cached_from"])
    got = sorted((c["user"], c["href"].rsplit("/", 1)[1]) for c in exported["copies"])
    want = holding(s, p["mail"])
    check(len(want) == len(USERS) and got == want, f"copies {got}, Radicale holds {want}")
    with open(os.path.join(s.workdir, "person.vcf"), encoding="utf-8") as f:
        card = f.read()
    check("BEGIN:VCARD" in card and p["mail"] in card, card[:300])
    # Someone cached but not selected: cached, and no copy anywhere.
    outsider = s.outsider
    exported = ok(s, "export of someone not selected", "gdpr", "export", "--subject",
                  outsider["mail"])
    check(exported["cached"] and exported["copies"] == [] and holding(s, outsider["mail"]) == [],
          f"outsider: {exported}")
    # Nobody roster knows: nothing, and exit 0.
    exported = ok(s, "export of a stranger", "gdpr", "export", "--subject", "nobody@nowhere.test")
    check(exported["cached"] == {} and exported["copies"] == [] and exported["audit"] == [],
          f"stranger: {exported}")
    events = [e["event"] for e in audit_events(s)]
    check(events.count("gdpr-export") == 3, f"three exports recorded: {events}")
    check(p["mail"].lower() not in open(os.path.join(s.dir, "roster-audit.jsonl")).read().lower(),
          "the audit log names nobody in clear")
    verify_audit(s, "after the exports")


def test_bad_subjects_are_refused(s):
    for args in (["gdpr", "export", "--subject", "not-an-address"],
                 ["gdpr", "erase", "--subject", "two@at@signs"],
                 ["gdpr", "unerase", "--subject", ""]):
        code, out, err = run(s, *args)
        check(code == 2 and "--subject must be the person's e-mail address" in err,
              f"{args}: exit {code}: {err}")
    code, out, err = run(s, "gdpr", "unerase", "--subject", "nobody@nowhere.test")
    check(code == 1 and ("not in the erasure register" in err or "nobody was erased" in err),
          f"unerase of someone never erased: {code} {err}")
    # A mistyped address: said so, exit 1, nothing removed; listed all the same.
    before = {u: s.radicale.cards(u, BOOK) for u in USERS}
    code, out, err = run(s, "gdpr", "erase", "--subject", "no.such.person@nowhere.test")
    check(code == 1 and "nobody with the address no.such.person@nowhere.test was found" in err,
          f"erase of nobody: {code} {err}")
    check({u: s.radicale.cards(u, BOOK) for u in USERS} == before, "a book changed")
    out = ok(s, "unerase the mistyped address", "gdpr", "unerase", "--subject",
             "no.such.person@nowhere.test")
    out = ok(s, "sync after the unerase (the cache is read again in full)", "sync")
    check(any("(in full)" in n for n in out["sources"]), f"{out['sources']}")


def test_erase_removes_a_manager_everywhere_and_their_name_from_reports(s):
    boss = s.boss
    check(len(holding(s, boss["mail"])) == len(USERS), "the manager is in every book first")
    check(managers_named(s, boss["displayName"]), "their reports name them first")
    code, out, err = run(s, "gdpr", "erase", "--subject", boss["mail"])
    check(code == 0, f"erase: exit {code}: {err[-1500:]}")
    t = out["totals"]
    reports = len(s.reports)
    check(t["deleted"] == len(USERS) and t["updated"] == reports * len(USERS),
          f"one delete per book and one update per report card: {t}")
    check(holding(s, boss["mail"]) == [], f"still held: {holding(s, boss['mail'])}")
    check(managers_named(s, boss["displayName"]) == [], "a report's card still names them")
    exported = ok(s, "export after erasure", "gdpr", "export", "--subject", boss["mail"])
    check(exported["erased"] and exported["cached"] == {} and exported["copies"] == [],
          f"after erasure: {exported}")
    with open(os.path.join(s.dir, "roster-erasures.jsonl"), encoding="utf-8") as f:
        register = f.read()
    check(boss["mail"].lower() not in register.lower() and boss["entryUUID"] not in register,
          "the register holds hashes only")
    events = audit_events(s)
    erase = [e for e in events if e["event"] == "gdpr-erase"][-1:]
    check(len(erase) == 1 and erase[0]["data"]["subject"].startswith("p:"), f"{erase}")
    check(erase[0]["data"]["cached"] == 1, f"the cached entry went: {erase}")
    verify_audit(s, "after the erasure")


def test_erased_stay_out_also_after_the_state_is_lost(s):
    out = ok(s, "sync after the erasure", "sync")
    t = out["totals"]
    check(t["created"] == 0 and t["updated"] == 0 and t["deleted"] == 0, f"quiet: {t}")
    for name in state_files(s):
        os.remove(os.path.join(s.dir, name))
    out = ok(s, "sync after the state was deleted", "sync")
    t = out["totals"]
    check(t["created"] == 0 and t["deleted"] == 0, f"adopted, nothing back: {t}")
    check(holding(s, s.boss["mail"]) == [], "the erased person came back")
    check(managers_named(s, s.boss["displayName"]) == [], "a report names them again")


def test_a_missing_register_stops_a_sync(s):
    register = os.path.join(s.dir, "roster-erasures.jsonl")
    aside = register + ".aside"
    os.rename(register, aside)
    try:
        code, out, err = run(s, "sync")
        check(code == 2 and "erasure register" in err and "is missing" in err and
              "nothing was synced" in err, f"missing register: {code} {err}")
        check(holding(s, s.boss["mail"]) == [], "nothing came back")
        # A register edited by hand is refused too.
        with open(aside, encoding="utf-8") as f:
            text = f.read()
        with open(register, "w", encoding="utf-8") as f:
            f.write(text.replace('"ids":[', '"ids":["' + "0" * 32 + '",', 1))
        code, out, err = run(s, "sync")
        check(code == 2 and "changed outside roster" in err, f"edited register: {code} {err}")
    finally:
        os.replace(aside, register)
    ok(s, "sync with the register back", "sync")
    # An older copy (a backup from before the last write) is refused too.
    with open(register, "rb") as f:
        older = f.read()
    run(s, "gdpr", "erase", "--subject", "later.person@nowhere.test")
    current = open(register, "rb").read()
    with open(register, "wb") as f:
        f.write(older)
    code, out, err = run(s, "sync")
    check(code == 2 and "is an older copy" in err, f"older register: {code} {err}")
    with open(register, "wb") as f:
        f.write(current)
    ok(s, "unerase the later person", "gdpr", "unerase", "--subject", "later.person@nowhere.test")
    ok(s, "sync with the newest register", "sync")


def test_a_cut_audit_log_stops_erasure_and_export_changing_nothing(s):
    log = os.path.join(s.dir, "roster-audit.jsonl")
    register = os.path.join(s.dir, "roster-erasures.jsonl")
    with open(log, "rb") as f:
        good = f.read()
    with open(register, "rb") as f:
        reg = f.read()
    try:
        with open(log, "wb") as f:
            f.write(good[:-7])
        before = {u: s.radicale.cards(u, BOOK) for u in USERS}
        code, out, err = run(s, "gdpr", "erase", "--subject", s.report["mail"])
        check(code == 2 and "not whole" in err and "nothing was synced" in err,
              f"erase on a cut log: {code} {err}")
        code, out, err = run(s, "gdpr", "export", "--subject", s.report["mail"])
        check(code == 2 and "nothing was exported" in err, f"export on a cut log: {code} {err}")
        code, out, err = run(s, "gdpr", "unerase", "--subject", s.boss["mail"])
        check(code == 2 and "nothing was changed" in err, f"unerase on a cut log: {code} {err}")
        with open(register, "rb") as f:
            check(f.read() == reg, "the register changed")
        check({u: s.radicale.cards(u, BOOK) for u in USERS} == before, "a book changed")
        with open(log, "rb") as f:
            check(f.read() == good[:-7], "something was appended to the cut log")
    finally:
        with open(log, "wb") as f:
            f.write(good)


def test_unerase_lets_them_return(s):
    out = ok(s, "unerase", "gdpr", "unerase", "--subject", s.boss["mail"])
    check(out["mode"] == "gdpr unerase", f"{out}")
    out = ok(s, "sync after unerase", "sync")
    check(out["totals"]["created"] == len(USERS), f"{out['totals']}")
    check(len(holding(s, s.boss["mail"])) == len(USERS), "back in every book")
    check(managers_named(s, s.boss["displayName"]), "their reports name them again")
    events = [e["event"] for e in audit_events(s)]
    check("gdpr-unerase" in events, f"{events}")
    verify_audit(s, "after unerase")


def test_after_expiry_cached_is_empty_and_copies_remain(s):
    p = s.report
    code, out, err = run(s, "gdpr", "export", "--subject", p["mail"], faketime="+61 days")
    check(code == 0, f"export 61 days on: {code} {err}")
    check(out["cached"] == {}, f"expired entries are not exported as held: {out['cached']}")
    got = sorted((c["user"], c["href"].rsplit("/", 1)[1]) for c in out["copies"])
    check(got == holding(s, p["mail"]) and len(got) == len(USERS), f"copies {got}")


def test_decommission_after_a_lost_state_removes_exactly_what_the_dry_run_lists(s):
    # A user's own card in u1's book: it, and so the book, must stay.
    d = s.radicale.book_dir(USERS[0], BOOK)
    own = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:own-card-1\r\nFN:My Own Plumber\r\n"
           "EMAIL:plumber@own.test\r\nEND:VCARD\r\n")
    status, _ = s.radicale.request("PUT", f"/{USERS[0]}/{os.path.basename(d)}/own.vcf",
                                   own.encode(), {"Content-Type": "text/vcard"})
    check(status in (201, 204), f"own card: {status}")
    for name in state_files(s):
        os.remove(os.path.join(s.dir, name))
    before = {u: s.radicale.cards(u, BOOK) for u in USERS}
    dry = ok(s, "decommission --dry-run", "decommission", "--dry-run")
    after_dry = {u: s.radicale.cards(u, BOOK) for u in USERS}
    check(after_dry == before, "the dry run changed something")
    check(not state_files(s), "the dry run made a state file")
    listed = sorted((i["user"], i["href"].rsplit("/", 1)[1]) for i in dry["items"])
    managed = sorted((u, n) for u in USERS for n, p in before[u].items() if "X-ROSTER-KEY" in p)
    check(listed == managed, f"dry run lists {len(listed)}, Radicale holds {len(managed)} managed")
    books = sorted(c["user"] for c in dry["collections"])
    check(books == USERS[1:], f"books to remove: {books}")
    out = ok(s, "decommission", "decommission")
    removed = sorted((i["user"], i["href"].rsplit("/", 1)[1]) for i in out["items"])
    check(removed == listed, "decommission removed other than the dry run listed")
    check(sorted(c["user"] for c in out["collections"]) == books, f"{out['collections']}")
    left = s.radicale.cards(USERS[0], BOOK)
    check(list(left) == ["own.vcf"], f"u1's book holds {sorted(left)}")
    for u in USERS[1:]:
        check(s.radicale.book_dir(u, BOOK) is None, f"{u}'s book is still there")
    check(out["state_wiped"] and not state_files(s), f"state: {state_files(s)}")
    events = [e["event"] for e in audit_events(s)]
    check("decommission-start" in events and events[-2] == "decommission-end",
          f"{events[-6:]}")
    # Nothing left: a second run finds nothing to remove.
    again = ok(s, "decommission again", "decommission")
    check(again["items"] == [] and again["collections"] == [], f"{again}")
    verify_audit(s, "after decommissioning")


# --- Graph -------------------------------------------------------------------

MAILBOXES = 4
GRAPH_USERS = 30

GRAPH_CONFIG = """[state]
path = "{dir}/roster.db"

[tenants.contoso]
tenant_id = "{tenant}"
client_id = "{client_id}"
client_secret_file = "{secret}"
authority = "{origin}"
graph_url = "{origin}"

[sources.gal]
type = "graph"
tenant = "contoso"
read = ["users"]
photo_max_pixels = 0

[targets.m365]
type = "graph"
tenant = "contoso"
users = [{users}]

[[rules]]
name = "gal"
source = "gal"
target = "m365"
addressbook = "{folder}"
max_delete_percent = 100
"""


def graph_user(i):
    return {"id": f"00000000-0000-4000-8000-{i:012d}", "userPrincipalName": f"gdpr{i}.person{i}@contoso.com",
            "displayName": f"Gdpr{i} Person{i}", "givenName": f"Gdpr{i}", "surname": f"Person{i}",
            "mail": f"gdpr{i}.person{i}@contoso.com", "jobTitle": "Engineer",
            "accountEnabled": True, "userType": "Member", "mailbox": i < MAILBOXES}


def graph_holding(g, mail):
    out = []
    for upn, contacts in g.folders_named(BOOK).items():
        for c in contacts:
            if any(e.get("address", "").lower() == mail.lower() for e in c.get("emailAddresses") or []):
                out.append((upn, c["immutableId"]))
    return sorted(out)


def test_graph_export_erase_and_decommission(s):
    d = os.path.join(s.workdir, "graph")
    os.makedirs(d)
    g = gst.Graph(s.workdir)
    try:
        secret = gst.write_secret(os.path.join(d, "graph.secret"))
        users = [graph_user(i) for i in range(GRAPH_USERS)]
        g.ctl("POST", "load", {"users": users})
        mailboxes = [u["userPrincipalName"] for u in users[:MAILBOXES]]
        config = os.path.join(d, "roster.toml")
        with open(config, "w") as f:
            f.write(GRAPH_CONFIG.format(dir=d, tenant=gst.TENANT, client_id=gst.CLIENT_ID,
                                        secret=secret, origin=g.origin,
                                        users=", ".join(f'"{m}"' for m in mailboxes), folder=BOOK))
        out = ok(s, "graph sync", "sync", config=config)
        check(out["totals"]["created"] == MAILBOXES * (GRAPH_USERS - 1), f"{out['totals']}")
        # A user's own contact in the first mailbox's folder of roster's.
        first = users[0]["userPrincipalName"]
        folder_id = next(f["id"] for m in g.ctl("GET", "dump")["mailboxes"]
                         if m["userPrincipalName"] == first for f in m["contactFolders"]
                         if f["displayName"] == BOOK)
        status, _ = g.api("POST", f"/users/{first}/contactFolders/{folder_id}/contacts",
                          {"displayName": "Own Contact",
                           "emailAddresses": [{"address": "own@x.test"}]})
        check(status == 201, f"own contact: {status}")
        subject = users[10]["mail"]
        exported = ok(s, "graph export", "gdpr", "export", "--subject", subject, config=config)
        got = sorted((c["user"], c["href"]) for c in exported["copies"])
        want = graph_holding(g, subject)
        check(len(want) == MAILBOXES and got == want, f"copies {got}, emulator holds {want}")
        # A mailbox's own person is not sent to themselves: not a copy.
        own = users[1]["mail"]
        exported = ok(s, "graph export of a mailbox owner", "gdpr", "export", "--subject", own,
                      config=config)
        check(sorted((c["user"], c["href"]) for c in exported["copies"]) == graph_holding(g, own)
              and len(exported["copies"]) == MAILBOXES - 1, f"{exported['copies']}")

        code, out, err = run(s, "gdpr", "erase", "--subject", subject, config=config)
        check(code == 0 and out["totals"]["deleted"] == MAILBOXES, f"erase: {code} {err[-800:]}")
        check(graph_holding(g, subject) == [], "still in a mailbox")
        for name in os.listdir(d):
            if name.startswith("roster.db"):
                os.remove(os.path.join(d, name))
        out = ok(s, "graph sync after a lost state", "sync", config=config)
        check(out["totals"]["created"] == 0 and graph_holding(g, subject) == [],
              f"came back: {out['totals']}")

        for name in os.listdir(d):
            if name.startswith("roster.db"):
                os.remove(os.path.join(d, name))
        dry = ok(s, "graph decommission --dry-run", "decommission", "--dry-run", config=config)
        managed = sorted((upn, c["immutableId"]) for upn, cs in g.folders_named(BOOK).items()
                         for c in cs if gst.marker(c) is not None)
        listed = sorted((i["user"], i["href"]) for i in dry["items"])
        check(listed == managed and len(listed) == MAILBOXES * (GRAPH_USERS - 2),
              f"dry run lists {len(listed)}, emulator holds {len(managed)}")
        out = ok(s, "graph decommission", "decommission", config=config)
        check(sorted((i["user"], i["href"]) for i in out["items"]) == listed, "removed != listed")
        folders = g.folders_named(BOOK)
        check([c["displayName"] for c in folders.get(first, [])] == ["Own Contact"],
              f"first mailbox: {folders.get(first)}")
        for m in mailboxes[1:]:
            check(m not in folders, f"{m}: folder left")
        check(sorted(c["user"] for c in out["collections"]) == sorted(mailboxes[1:]),
              f"{out['collections']}")
        verify_audit(s, "after the Graph tests", config)
    finally:
        g.stop()



def main():
    s = harness.Suite("gdpr")
    s.dir = os.path.join(s.workdir, "roster")
    os.makedirs(s.dir)
    s.config = os.path.join(s.dir, "roster.toml")
    ldif = os.path.join(s.workdir, "org.ldif")
    with open(ldif, "w", encoding="ascii") as f:
        s.m = gen_org.write_ldif(f, people=PEOPLE, seed=3)
    people = s.m["people"]
    ok_people = [p for p in people if p["employeeType"] == "Employee" and not p["disabled"]
                 and not p["hidden"] and p["mail"]]
    by_manager = {}
    for p in ok_people:
        if p["manager"]:
            by_manager.setdefault(p["manager"], []).append(p)
    boss_dn = min(by_manager, key=lambda d: (len(by_manager[d]) < 2, d))
    s.boss = next(p for p in people if p["dn"] == boss_dn)
    s.reports = by_manager[boss_dn][:2]
    heads = set(by_manager)
    plain = [p for p in ok_people if p["dn"] not in heads and p["manager"] != boss_dn]
    s.report = s.reports[0]
    s.sample = [s.boss] + s.reports + plain[:5]
    s.outsider = plain[6]
    s.filter = "uid in (" + ", ".join(f"'{p['uid']}'" for p in s.sample) + ")"
    s.ldap = Slapd(workdir=s.workdir, ldif=ldif)
    s.radicale = harness.Radicale(s.workdir)
    try:
        write_config(s)
        code = s.run([test_export_lists_the_cache_and_every_book_radicale_holds,
                      test_bad_subjects_are_refused,
                      test_erase_removes_a_manager_everywhere_and_their_name_from_reports,
                      test_erased_stay_out_also_after_the_state_is_lost,
                      test_a_missing_register_stops_a_sync,
                      test_a_cut_audit_log_stops_erasure_and_export_changing_nothing,
                      test_unerase_lets_them_return,
                      test_after_expiry_cached_is_empty_and_copies_remain,
                      test_decommission_after_a_lost_state_removes_exactly_what_the_dry_run_lists,
                      test_graph_export_erase_and_decommission])
    finally:
        s.close(s.ldap, s.radicale)
    return code


if __name__ == "__main__":
    sys.exit(main())
