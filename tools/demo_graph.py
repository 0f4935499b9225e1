#!/usr/bin/env python3
"""The Microsoft 365 part of scripts/demo: talks to the Graph emulator
(tests/integration/fakegraph.py) through its loopback-only /_ctl/ endpoints.

    demo_graph.py ORIGIN load              a small directory: 40 people, 5 org
                                           contacts, "Sales" (3 mailboxes and
                                           the nested "Sales EMEA", 2 more)
    demo_graph.py ORIGIN folders [after]   contacts in each mailbox's "Company
                                           Contacts" folder; exit 1 unless each
                                           holds what it should (before or
                                           after the change)
    demo_graph.py ORIGIN change            a new job title and a departure
    demo_graph.py ORIGIN check             after the change: the new title is
                                           in every folder, the leaver in none
    demo_graph.py ORIGIN writes            how many writes the emulator took
Python 3 standard library only."""
import json
import sys
import urllib.request

FOLDER = "Company Contacts"
DOMAIN = "contoso.com"
GIVEN = ["Alice", "Bilal", "Chloe", "Dmitri", "Elena", "Farah", "George", "Hana", "Ivan",
         "Julia", "Kofi", "Lena", "Marco", "Nadia", "Oscar", "Priya", "Quentin", "Rosa",
         "Samir", "Tara", "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Aaron", "Beatriz",
         "Carlos", "Dana", "Emil", "Fatima", "Gustav", "Helga", "Imran", "Jana", "Karl",
         "Lucia", "Mateo", "Nora"]
FAMILY = ["Archer", "Brandt", "Costa", "Dahl", "Evans", "Fischer", "Garcia", "Haddad", "Ito",
          "Jansen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Patel", "Quinn",
          "Rossi", "Schmidt", "Tanaka", "Usman", "Varga", "Wong", "Xu", "Yilmaz", "Zimmer",
          "Abbott", "Berg", "Cruz", "Dubois", "Eriksen", "Farouk", "Gruber", "Holm", "Iqbal",
          "Jovanovic", "Keller", "Lopez", "Meyer", "Nilsen"]
DEPARTMENTS = ["Sales", "Support", "Finance", "Research", "Operations"]
SALES = [0, 1, 2]        # members of "Sales" with a mailbox
SALES_EMEA = [3, 4]      # members of "Sales EMEA", itself a member of "Sales"
DISABLED, GUEST, HIDDEN = 37, 38, 39  # in the directory, not in the address list
ORG_CONTACTS = 5
# What each mailbox's folder holds: everyone listed but its owner, and the org contacts.
EXPECTED = len(GIVEN) - 3 - 1 + ORG_CONTACTS
CHANGED, LEAVER = 10, 20


def uid(kind, i):
    return f"{kind}0000000-0000-4000-8000-{i:012d}"


def upn(i):
    return f"{GIVEN[i].lower()}.{FAMILY[i].lower()}@{DOMAIN}"


def person(i):
    u = {
        "id": uid(0, i),
        "userPrincipalName": upn(i),
        "displayName": f"{GIVEN[i]} {FAMILY[i]}",
        "givenName": GIVEN[i],
        "surname": FAMILY[i],
        "mail": upn(i),
        "jobTitle": "Account Manager" if i in SALES + SALES_EMEA else
                    ["Engineer", "Analyst", "Team Lead", "Specialist"][i % 4],
        "department": "Sales" if i in SALES + SALES_EMEA else DEPARTMENTS[i % 5],
        "companyName": "Contoso",
        "businessPhones": [f"+44 20 7946 {i:04d}"],
        "mobilePhone": f"+44 7700 900{i:03d}",
        "officeLocation": ["London", "Manchester", "Dublin"][i % 3],
        "accountEnabled": i != DISABLED,
        "userType": "Guest" if i == GUEST else "Member",
        "mailbox": i in SALES + SALES_EMEA,
    }
    if i == HIDDEN:
        u["onPremisesExtensionAttributes"] = {"extensionAttribute1": "HideFromGAL"}
    return u


def org_contact(i):
    names = [("Paula", "Fabre", "Fabrikam"), ("Tom", "Lind", "Tailspin Toys"),
             ("Ana", "Wirth", "Woodgrove Bank"), ("Raj", "Mehta", "Northwind Traders"),
             ("Lisa", "Adler", "Adventure Works")]
    g, f, c = names[i]
    return {"id": uid(1, i), "displayName": f"{g} {f}", "givenName": g, "surname": f,
            "mail": f"{g.lower()}.{f.lower()}@{c.split()[0].lower()}.example",
            "companyName": c, "phones": [{"type": "business", "number": f"+1 425 555 01{i:02d}"}]}


def ctl(origin, method, name, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(f"{origin}/_ctl/{name}", data=data, method=method,
                               headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def folders(origin):
    """userPrincipalName -> the contacts of its FOLDER (None: no such folder)."""
    out = {}
    for m in ctl(origin, "GET", "dump")["mailboxes"]:
        out[m["userPrincipalName"]] = None
        for f in m.get("contactFolders", []):
            if f["displayName"] == FOLDER:
                out[m["userPrincipalName"]] = f["contacts"]
    return out


def load(origin):
    people = [person(i) for i in range(len(GIVEN))]
    groups = [
        {"id": uid(2, 1), "displayName": "Sales EMEA", "members": [uid(0, i) for i in SALES_EMEA]},
        {"id": uid(2, 2), "displayName": "Sales",
         "members": [uid(0, i) for i in SALES] + [uid(2, 1)]},
    ]
    ctl(origin, "POST", "load", {"users": people,
                                 "orgContacts": [org_contact(i) for i in range(ORG_CONTACTS)],
                                 "groups": groups})
    listed = len(people) - 3
    print(f"  {len(people)} people in Entra ID, {listed} of them in the address list "
          f"(left out: {person(DISABLED)['displayName']}, disabled;")
    print(f"  {person(GUEST)['displayName']}, a guest; {person(HIDDEN)['displayName']}, "
          "extensionAttribute1 = HideFromGAL)")
    print(f"  {ORG_CONTACTS} organisational contacts (partners and suppliers)")
    print("  group \"Sales\": " + ", ".join(upn(i) for i in SALES) + ",")
    print("    and the nested group \"Sales EMEA\": " + ", ".join(upn(i) for i in SALES_EMEA))
    print(f"  each of these {len(SALES + SALES_EMEA)} mailboxes gets {listed - 1} colleagues "
          f"+ {ORG_CONTACTS} org contacts = {EXPECTED} contacts in \"{FOLDER}\"")


def show_folders(origin, want):
    held = folders(origin)
    ok = len(held) == len(SALES + SALES_EMEA)
    for name, contacts in sorted(held.items()):
        n = "no folder" if contacts is None else f"{len(contacts)} contacts"
        print(f"  {name:28} \"{FOLDER}\": {n}")
        ok = ok and contacts is not None and len(contacts) == want
    if not ok:
        print(f"demo: each of the {len(SALES + SALES_EMEA)} mailboxes should hold {want} "
              "contacts", file=sys.stderr)
    return 0 if ok else 1


def change(origin):
    ctl(origin, "POST", "directory/upsert",
        {"users": [{"id": uid(0, CHANGED), "jobTitle": "Head of Partnerships"}]})
    ctl(origin, "POST", "directory/delete", {"users": [uid(0, LEAVER)]})
    print(f"  {person(CHANGED)['displayName']}: job title "
          f"\"{person(CHANGED)['jobTitle']}\" -> \"Head of Partnerships\"")
    print(f"  {person(LEAVER)['displayName']} left: the account was deleted")


def check(origin):
    bad = []
    for name, contacts in sorted(folders(origin).items()):
        by_name = {c.get("displayName"): c for c in contacts or []}
        c = by_name.get(person(CHANGED)["displayName"])
        if c is None or c.get("jobTitle") != "Head of Partnerships":
            bad.append(f"{name}: {person(CHANGED)['displayName']} is "
                       f"{c and c.get('jobTitle')!r}")
        if person(LEAVER)["displayName"] in by_name:
            bad.append(f"{name}: {person(LEAVER)['displayName']} is still there")
    if bad:
        print("demo: " + "; ".join(bad), file=sys.stderr)
        return 1
    print(f"  every folder: {person(CHANGED)['displayName']} is now Head of Partnerships, "
          f"{person(LEAVER)['displayName']} is gone")
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] not in ("load", "folders", "change", "check", "writes"):
        sys.exit(__doc__)
    origin, what = argv[0], argv[1]
    if what == "load":
        return load(origin) or 0
    if what == "folders":
        return show_folders(origin, EXPECTED - (argv[2:] == ["after"]))
    if what == "writes":
        print(ctl(origin, "GET", "dump")["writes"])
        return 0
    if what == "change":
        return change(origin) or 0
    return check(origin)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
