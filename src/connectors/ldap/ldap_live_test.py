#!/usr/bin/env python3
"""Runs ldap_source_test against a throwaway slapd.

    python3 ldap_live_test.py --gtest-bin build/src/connectors/ldap/ldap_source_test [gtest args]

Starts a Slapd (tests/integration/slapd.py) with TLS and a size limit of 20
entries, loaded with the LDIF below: 25 people (non-ASCII names, a photo, a
manager, invalid UTF-8 in rosterLegacyNote, AD/Exchange attributes), nested
groups with a cycle and a missing member, and a reader account that the size
limit applies to (the rootdn is exempt). Before running the tests it checks
that the limit really stops an unpaged ldapsearch, so that the paged read
proves something. Person n has the entryUUID 0a000000-0000-4000-8000-<n, 12
digits>; ldap_source_test.cc relies on it."""
import argparse
import base64
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from slapd import Slapd  # noqa: E402

BASE = "dc=example,dc=org"
PEOPLE = 25
SIZE_LIMIT = 20
READER_DN = "cn=reader," + BASE
READER_PASSWORD = "reader-secret"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00roster-test-photo"


def b64(data):
    return base64.b64encode(data).decode()


# Latin-1 "é" and a lone 0xff: not UTF-8.
LEGACY_NOTE = b64(b"caf\xe9 note \xff")


def uuid(n):
    return f"0a000000-0000-4000-8000-{n:012d}"


def person(n, uid, cn, sn, extra="", aux=()):
    # slapadd wants all values of an attribute together: the object classes first.
    classes = "".join(f"objectClass: {c}\n" for c in ("inetOrgPerson",) + tuple(aux))
    return (f"dn: uid={uid},ou=people,{BASE}\n"
            f"{classes}"
            f"entryUUID: {uuid(n)}\n"
            f"uid: {uid}\n"
            f"cn:: {b64(cn.encode())}\n"
            f"sn:: {b64(sn.encode())}\n"
            f"{extra}\n")


def directory_ldif():
    out = [f"""dn: {BASE}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE}
objectClass: organizationalUnit
ou: groups

dn: ou=moved,{BASE}
objectClass: organizationalUnit
ou: moved

dn: {READER_DN}
objectClass: person
cn: reader
sn: reader
userPassword: {READER_PASSWORD}

"""]
    out.append(person(1, "ann", "Ann Lee", "Lee", f"""displayName: Ann Lee
givenName: Ann
mail: ann@example.org
mail: a.lee@example.org
telephoneNumber: +49 30 1234
ou: Sales
o: Example
l: Berlin
labeledURI: https://ann.example.org Ann's page
physicalDeliveryOfficeName: B2.14
jpegPhoto:: {b64(PHOTO)}
"""))
    jose = "José Müller"
    out.append(person(2, "jose", jose, "Müller", f"""displayName:: {b64(jose.encode())}
givenName:: {b64("José".encode())}
mail: jose@example.org
manager: uid=ann,ou=people,{BASE}
"""))
    out.append(person(3, "zoe", "Zoë Wang", "王", f"""displayName:: {b64("王 Zoë".encode())}
givenName:: {b64("Zoë".encode())}
mail: zoe@example.org
"""))
    # rosterLegacyNote is an octet string, so slapd takes bytes that are not UTF-8.
    out.append(person(4, "legacy", "Legacy Person", "Person", f"""rosterLegacyNote:: {LEGACY_NOTE}
proxyAddresses: SMTP:legacy@example.org
proxyAddresses: smtp:legacy.old@example.org
proxyAddresses: X500:/o=Example/ou=legacy
company: Legacy Corp
userAccountControl: 514
msExchHideFromAddressLists: TRUE
""", aux=("rosterADUser",)))
    out.append(person(5, "mover", "Mover", "Mover"))
    out.append(person(6, "victim", "Victim", "Victim", "title: Original\n"))
    out.append(person(7, "wanderer", "Wanderer", "Wanderer"))
    out.append(person(8, "big", "Big Photo", "Photo"))
    for n in range(9, PEOPLE + 1):
        out.append(person(n, f"p{n:02d}", f"Person {n}", f"Person{n}",
                          "ou: Sales\n" if n == 9 else ""))
    out.append(f"""dn: cn=all,ou=groups,{BASE}
objectClass: groupOfNames
cn: all
member: uid=ann,ou=people,{BASE}
member: cn=team-a,ou=groups,{BASE}

dn: cn=team-a,ou=groups,{BASE}
objectClass: groupOfNames
cn: team-a
member: uid=jose,ou=people,{BASE}
member: cn=team-b,ou=groups,{BASE}

dn: cn=team-b,ou=groups,{BASE}
objectClass: groupOfUniqueNames
cn: team-b
uniqueMember: uid=zoe,ou=people,{BASE}
uniqueMember: cn=all,ou=groups,{BASE}
uniqueMember: uid=ann,ou=people,{BASE}
uniqueMember: uid=ghost,ou=people,{BASE}
uniqueMember: UID=Jose, OU=People,{BASE}#'0101'B

""")
    return "".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtest-bin", required=True)
    args, gtest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="roster-ldap-live-") as work:
        ldif = os.path.join(work, "directory.ldif")
        with open(ldif, "w", encoding="utf-8") as f:
            f.write(directory_ldif())
        with Slapd(workdir=work, size_limit=SIZE_LIMIT, tls=True, ldif=ldif) as ldap:
            # The limit must bite an unpaged search, or paging proves nothing.
            reader = (READER_DN, READER_PASSWORD)
            code, out, err = ldap.search("(objectClass=inetOrgPerson)", ["1.1"], bind=reader)
            if code != 4 or out.count("dn: ") != SIZE_LIMIT:
                print(f"FAIL: an unpaged search should stop at {SIZE_LIMIT} entries "
                      f"(exit {code}, {out.count('dn: ')} entries): {err}")
                return 1
            code, out, err = ldap.search("(objectClass=inetOrgPerson)", ["entryUUID"],
                                         bind=reader, extra=["-E", "pr=7/noprompt"])
            if code != 0 or out.count("dn: ") != PEOPLE or f"entryUUID: {uuid(PEOPLE)}" not in out:
                print(f"FAIL: a paged ldapsearch should get {PEOPLE} entries with the LDIF's "
                      f"entryUUIDs (exit {code}): {err}")
                return 1
            env = dict(os.environ,
                       ROSTER_LDAP_URL=ldap.url,
                       ROSTER_LDAPS_URL=ldap.ldaps_url,
                       ROSTER_LDAP_CA=ldap.ca_file,
                       ROSTER_LDAP_OTHER_CA=ldap.other_ca_file,
                       ROSTER_LDAP_BASE=BASE,
                       ROSTER_LDAP_ADMIN_DN=ldap.bind_dn,
                       ROSTER_LDAP_ADMIN_PASSWORD=ldap.password,
                       ROSTER_LDAP_READER_DN=READER_DN,
                       ROSTER_LDAP_READER_PASSWORD=READER_PASSWORD,
                       ROSTER_LDAP_PEOPLE=str(PEOPLE),
                       ROSTER_LDAP_SIZE_LIMIT=str(SIZE_LIMIT))
            # ldap.conf or ~/.ldaprc must not change what the test sees.
            env["LDAPNOINIT"] = "1"
            return subprocess.run([args.gtest_bin] + gtest_args, env=env, timeout=540).returncode


if __name__ == "__main__":
    sys.exit(main())
