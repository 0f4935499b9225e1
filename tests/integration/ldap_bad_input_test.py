#!/usr/bin/env python3
"""Bad LDAP input, each a test, after one good sync of a small organisation
(tools/gen_org.py, 300 people, 6 target users) from a slapd with TLS into a
Radicale: an unreachable server, a wrong bind password (never printed or
stored), an unrelated CA (ldaps:// and StartTLS), invalid UTF-8 in an
attribute, a 10 MB photo, a filter with a syntax error, a users_from group
that does not exist, and a source that suddenly returns 5 people. Each gives
one clear line on stderr and a non-zero exit (or, for bad data, a warning and
a good sync), and no address book loses anything."""
import base64
import hashlib
import os
import random
import re
import sys
import time

import harness
from harness import check
from slapd import Slapd
import gen_org  # noqa: E402  (harness puts tools/ on the path)

PEOPLE = 300
BOOK = "Company Contacts"
ROSTER_DN = "cn=roster,dc=example,dc=org"
ROSTER_PW = "roster-bind-pw-1f5a"
FILTER = "employeeType == 'Employee' and department in ('Legal', 'Finance')"

CONFIG = """[state]
path = "{state}"

[sources.dir]
type = "ldap"
url = "{url}"
{tls}bind_dn = "{bind_dn}"
password_env = "ROSTER_LDAP_PW"
base_dn = "{base_dn}"
extra_attributes = ["employeeType"]
phone_region = "GB"
{attributes}
[targets.dav]
type = "carddav"
url = "{dav}"
username = "roster"

[[rules]]
name = "company"
source = "dir"
target = "dav"
addressbook = "{book}"
users_from = {{ source = "dir", group = "{group}", attribute = "uid" }}
filter = "{filter}"
"""


def write_config(s, name, url=None, tls="", base_dn=None, group=None, filter=FILTER,
                 attributes=""):
    path = os.path.join(s.workdir, name)
    with open(path, "w") as f:
        f.write(CONFIG.format(state=s.state, url=url or s.ldap.url, tls=tls, bind_dn=ROSTER_DN,
                              base_dn=base_dn or s.m["people_dn"], dav=s.radicale.url, book=BOOK,
                              group=group or s.m["target_group"]["dn"], filter=filter,
                              attributes=attributes))
    return path


def run(config, *args, password=ROSTER_PW):
    t0 = time.time()
    code, out, err = harness.roster(config, *args, env={"ROSTER_LDAP_PW": password})
    print(f"  roster {' '.join(args)} ({os.path.basename(config)}): exit {code} in "
          f"{time.time() - t0:.1f}s" + (f" totals {out['totals']}" if out else ""), flush=True)
    return code, out, err


def lines(err):
    return [line for line in err.strip().splitlines() if line.strip()]


def snapshot(s):
    """{path: sha256} of every card and book property file on Radicale's disk."""
    out = {}
    root = os.path.join(s.radicale.storage, "collection-root")
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".Radicale.cache")]
        for name in files:
            if name == ".Radicale.lock":
                continue
            with open(os.path.join(d, name), "rb") as f:
                out[os.path.relpath(os.path.join(d, name), root)] = hashlib.sha256(
                    f.read()).hexdigest()
    return out


def unchanged_since(s, before, what):
    after = snapshot(s)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    check(not changed, f"{what}: {len(changed)} files on Radicale changed: {changed[:5]}")


def card_of(s, user, key):
    for name, props in s.radicale.cards(user, BOOK).items():
        if props.get("X-ROSTER-KEY") == [key]:
            return name, props
    return None, None


def expect_books(s, where):
    for user, own in s.users.items():
        keys = {}
        for name, props in s.radicale.cards(user, BOOK).items():
            if "X-ROSTER-KEY" in props:
                key = props["X-ROSTER-KEY"][0]
                check(key not in keys, f"{where}: {user} has two cards for {key}")
                keys[key] = name
        want = s.included - {own}
        check(set(keys) == want, f"{where}: {user} has {len(keys)} cards, want {len(want)}")


def one_error_line(err, *words):
    ls = lines(err)
    check(len(ls) == 1, f"one line expected on stderr: {err!r}")
    print(f"  stderr: {ls[0]}", flush=True)
    for w in words:
        check(w.lower() in ls[0].lower(), f"{w!r} not in the message: {ls[0]}")
    return ls[0]


def ldif_modify(dn, *changes):
    out = [gen_org.ldif_line("dn", dn), "changetype: modify"]
    for op, attr, values in changes:
        out.append(f"{op}: {attr}")
        out += [gen_org.ldif_line(attr, v, fold=False) for v in values]
        out.append("-")
    return "\n".join(out) + "\n"


# --- the tests ----------------------------------------------------------------

def test_a_good_sync_first(s):
    code, out, err = run(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    want = sum(len(s.included - {own}) for own in s.users.values())
    check(out["totals"]["created"] == want, f"totals {out['totals']}, want {want}")
    expect_books(s, "after the good sync")
    s.before = snapshot(s)


def test_unreachable_server(s):
    port = harness.free_port()
    cfg = write_config(s, "down.toml", url=f"ldap://127.0.0.1:{port}/")
    code, out, err = run(cfg, "sync")
    check(code == 1, f"exit {code}")
    one_error_line(err, "source dir", "cannot reach", str(port))
    unchanged_since(s, s.before, "unreachable server")


def test_wrong_bind_password(s):
    secret = "wrong-bind-pw-51c7e0"
    code, out, err = run(s.config, "sync", password=secret)
    check(code == 1, f"exit {code}")
    one_error_line(err, "source dir", "bind", "refused")
    check(secret not in err and secret not in str(out), "the password leaked into the output")
    for suffix in ("", "-wal"):
        if os.path.exists(s.state + suffix):
            with open(s.state + suffix, "rb") as f:
                check(secret.encode() not in f.read(), f"the password is in roster.db{suffix}")
    unchanged_since(s, s.before, "wrong password")


def test_unrelated_ca_is_refused_and_the_right_one_works(s):
    ldaps = f'ca_file = "{s.ldap.other_ca_file}"\n'
    for name, url, tls in (("ldaps-other.toml", s.ldap.ldaps_url, ldaps),
                           ("starttls-other.toml", s.ldap.url, "starttls = true\n" + ldaps)):
        code, out, err = run(write_config(s, name, url=url, tls=tls), "sync")
        check(code == 1, f"{name}: exit {code}: {err}")
        one_error_line(err, "source dir", "certificate", "could not be verified")
        unchanged_since(s, s.before, name)
    right = f'ca_file = "{s.ldap.ca_file}"\n'
    for name, url, tls in (("ldaps.toml", s.ldap.ldaps_url, right),
                           ("starttls.toml", s.ldap.url, "starttls = true\n" + right)):
        code, out, err = run(write_config(s, name, url=url, tls=tls), "sync")
        check(code == 0, f"{name}: exit {code}: {err}")
        t = out["totals"]
        check(t["created"] == t["updated"] == t["deleted"] == 0, f"{name}: {t}")
    unchanged_since(s, s.before, "the right CA")


def test_invalid_utf8_is_repaired_and_reported(s):
    v = s.utf8_person
    raw = base64.b64encode(b"caf\xe9 au lait").decode()   # Latin-1 e-acute: not UTF-8
    s.ldap.ldapmodify(f"dn: {v['dn']}\nchangetype: modify\nreplace: rosterLegacyNote\n"
                      f"rosterLegacyNote:: {raw}\n-\n")
    cfg = write_config(s, "note.toml", attributes='\n[sources.dir.attributes]\n'
                                                  'note = "rosterLegacyNote"\n')
    code, out, err = run(cfg, "sync", "--debug")  # its warnings name the entry
    check(code == 0, f"exit {code}: {err}")
    books = [u for u, own in s.users.items() if own != v["entryUUID"]]
    t = out["totals"]
    check(t["updated"] == len(books) and t["created"] == 0 and t["deleted"] == 0, f"totals {t}")
    for user in books:
        name, props = card_of(s, user, v["entryUUID"])
        check(props is not None and props.get("NOTE") == ["caf\ufffd au lait"],
              f"{user}: NOTE {props and props.get('NOTE')}")
    named = [w for w in out["warnings"] if v["dn"] in w and "rosterLegacyNote" in w]
    check(named, f"no warning names {v['dn']} and rosterLegacyNote: {out['warnings'][:5]}")


def test_a_mapping_change_alone_is_applied(s):
    # Back to the configuration without the note mapping, nothing changed in the
    # directory: the note must leave the cards.
    v = s.utf8_person
    code, out, err = run(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    try:
        users = [u for u, own in s.users.items() if own != v["entryUUID"]]
        notes = {u: card_of(s, u, v["entryUUID"])[1].get("NOTE") for u in users}
        check(all(n is None for n in notes.values()),
              f"removing attributes.note was not applied (notices {out['sources']}); "
              f"NOTE still {list(notes.values())[0]}")
    finally:
        code, out, err = run(s.config, "sync", "--force")  # converge for the next tests
        check(code == 0, f"forced sync: exit {code}: {err}")
        s.before = snapshot(s)


def test_a_10_mb_photo_is_left_out_or_capped(s):
    v = s.photo_person
    rng = random.Random(7)
    huge = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + rng.randbytes(
        10 * 1024 * 1024)
    s.ldap.ldapmodify(ldif_modify(v["dn"], ("replace", "jpegPhoto", [huge])))
    code, out, err = run(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    books = [u for u, own in s.users.items() if own != v["entryUUID"]]
    t = out["totals"]
    check(t["created"] == 0 and t["deleted"] == 0 and t["updated"] == len(books),
          f"totals {t} (the person's old photo should go from {len(books)} books)")
    for user in books:
        name, props = card_of(s, user, v["entryUUID"])
        if "PHOTO" in props:
            data = base64.b64decode(props["PHOTO"][0])
            check(len(data) <= 100 * 1024 and data[:2] == b"\xff\xd8",
                  f"{user}: a photo of {len(data)} bytes")
    said = [w for w in out["warnings"] + out["sources"] if "photo" in w.lower()]
    print(f"  said: {said}", flush=True)
    check(said, f"nothing says the photo was left out: {out['warnings'][:3]} {out['sources']}")
    # Nothing else changed: every file that changed is this person's card.
    after = snapshot(s)
    root = os.path.join(s.radicale.storage, "collection-root")
    foreign = []
    for k in sorted(set(s.before) | set(after)):
        if s.before.get(k) == after.get(k):
            continue
        path = os.path.join(root, k)
        if not os.path.exists(path):
            foreign.append(k)
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            if v["entryUUID"] not in f.read():
                foreign.append(k)
    check(not foreign, f"other files changed: {foreign[:5]}")
    s.before = after


def test_filter_syntax_error(s):
    cfg = write_config(s, "badfilter.toml", filter="department == 'Legal' and (title")
    with open(cfg) as f:
        text = f.read().splitlines()
    filter_line = next(i + 1 for i, line in enumerate(text) if line.startswith("filter ="))
    rule_line = next(i + 1 for i, line in enumerate(text) if line.startswith("[[rules]]"))
    code, out, err = run(cfg, "sync")
    check(code == 2, f"exit {code}: {err}")
    line = one_error_line(err, "company", "column")
    m = re.search(r"badfilter\.toml:(\d+)", line)
    check(m is not None, f"no file:line in {line}")
    # The rule's [[rules]] line or, better, the filter's own line.
    check(int(m.group(1)) in (filter_line, rule_line),
          f"the message names line {m.group(1)}, the filter is on line {filter_line} "
          f"([[rules]] on {rule_line}): {line}")
    unchanged_since(s, s.before, "filter syntax error")


def test_a_users_from_group_that_does_not_exist(s):
    group = "cn=no-such-group,ou=Groups,dc=example,dc=org"
    code, out, err = run(write_config(s, "nogroup.toml", group=group), "sync")
    check(code == 1, f"exit {code}: {err}")
    one_error_line(err, group)
    unchanged_since(s, s.before, "missing group")


def test_a_source_that_shrinks_to_5_trips_the_guard(s):
    alumni = s.m["alumni_dn"]
    for i in range(5):
        s.ldap.ldapadd(f"dn: uid=alum{i},{alumni}\nobjectClass: inetOrgPerson\n"
                       f"objectClass: rosterADUser\nuid: alum{i}\ncn: Alum {i}\nsn: Alum\n"
                       f"mail: alum{i}@example.org\nou: Legal\nemployeeType: Employee\n"
                       f"userAccountControl: 512\n")
    code, out, err = run(write_config(s, "shrunk.toml", base_dn=alumni), "sync")
    check(code == 3, f"exit {code}: {err}")
    one_error_line(err, "deletion guard", "--force")
    unchanged_since(s, s.before, "the deletion guard")
    expect_books(s, "after the guard")


def main():
    s = harness.Suite("ldap_bad_input")
    t0 = time.time()
    ldif = os.path.join(s.workdir, "org.ldif")
    with open(ldif, "w", encoding="ascii", newline="\n") as f:
        s.m = gen_org.write_ldif(f, people=PEOPLE, seed=1, target_members=6, large_photos=0)
    people = s.m["people"]
    s.users = {p["uid"]: p["entryUUID"] for p in people if p["target_member"]}
    picked = [p for p in people if p["employeeType"] == "Employee" and not p["disabled"]
              and not p["hidden"] and p["department"] in ("Legal", "Finance")]
    s.included = {p["entryUUID"] for p in picked}
    others = [p for p in picked if not p["target_member"]]
    s.utf8_person = others[0]
    s.photo_person = next(p for p in others if p["photo_attribute"] == "jpegPhoto")
    s.ldap = Slapd(workdir=s.workdir, ldif=ldif, tls=True)
    s.radicale = None
    try:
        s.ldap.ldapadd(f"dn: {ROSTER_DN}\nobjectClass: organizationalRole\n"
                       f"objectClass: simpleSecurityObject\ncn: roster\n"
                       f"userPassword: {ROSTER_PW}\n")
        s.radicale = harness.Radicale(s.workdir)
        s.state = os.path.join(s.workdir, "roster.db")
        s.config = write_config(s, "roster.toml")
        print(f"setup: {time.time() - t0:.1f}s; {len(s.users)} books of "
              f"{len(s.included) - 1}-{len(s.included)} people", flush=True)
        code = s.run([test_a_good_sync_first,
                      test_unreachable_server,
                      test_wrong_bind_password,
                      test_unrelated_ca_is_refused_and_the_right_one_works,
                      test_invalid_utf8_is_repaired_and_reported,
                      test_a_mapping_change_alone_is_applied,
                      test_a_10_mb_photo_is_left_out_or_capped,
                      test_filter_syntax_error,
                      test_a_users_from_group_that_does_not_exist,
                      test_a_source_that_shrinks_to_5_trips_the_guard])
        print(f"ldap_bad_input: total {time.time() - t0:.1f}s")
        return code
    finally:
        s.close(s.radicale, s.ldap)


if __name__ == "__main__":
    sys.exit(main())
