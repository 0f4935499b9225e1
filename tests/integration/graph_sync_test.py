"""roster against the Graph emulator (tests/integration/fakegraph.py) as its
own process: the Global Address List (2,000 users, some disabled, guests or
hidden, and 50 organisational contacts) into the "Company Contacts" folder of
20 mailboxes named by a nested group; the no-op run, 20 changes in one $batch
per mailbox, a departure, the users' own contacts, their edits, a lost state,
a mailbox without a licence, 10% faults, a certificate instead of a secret,
and the credentials and permissions that must fail with one clear line and
no write. Everything it checks is read back from the emulator's own state
(/_ctl/dump) and request log, not from roster's report alone."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import ROSTER, Suite, check  # noqa: E402

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "s3cr3t-value-for-the-emulator"
USERS = 2000
ORG_CONTACTS = 50
MAILBOXES = 20
SMALL = 300  # the directory of the fault and credential tests, which need no 2,000
FOLDER = "Company Contacts"
MARKER_PREFIX = "roster:v1:"
ALL_ROLES = "User.Read.All,OrgContact.Read.All,GroupMember.Read.All,Contacts.ReadWrite"


def upn(i):
    return f"u{i:04d}@contoso.com"


def user(i):
    u = {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "userPrincipalName": upn(i),
        "displayName": f"Given{i} Family{i}",
        "givenName": f"Given{i}",
        "surname": f"Family{i}",
        "mail": f"given{i}.family{i}@contoso.com",
        "jobTitle": "Engineer" if i % 3 else "Manager",
        "department": ["Sales", "Support", "Finance", "Research"][i % 4],
        "companyName": "Contoso",
        "businessPhones": [f"+44 20 7946 {i % 10000:04d}"],
        "mobilePhone": f"+44 7700 9{i % 100000:05d}",
        "officeLocation": "London",
        "accountEnabled": i % 97 != 5,
        "userType": "Guest" if i % 101 == 7 else "Member",
        "mailbox": i < MAILBOXES + 1,
    }
    if i == MAILBOXES:
        u["mailbox"] = False  # in the group, but no Exchange licence
    if i % 89 == 11:
        u["onPremisesExtensionAttributes"] = {"extensionAttribute1": "HideFromGAL"}
    return u


def org_contact(i):
    return {
        "id": f"10000000-0000-4000-8000-{i:012d}",
        "displayName": f"Partner{i} Supplier{i}",
        "givenName": f"Partner{i}",
        "surname": f"Supplier{i}",
        "mail": f"partner{i}@fabrikam.example",
        "companyName": "Fabrikam",
        "phones": [{"type": "business", "number": f"+1 425 555 {i:04d}"}],
    }


# The group's members who receive the folder: disabled accounts are left out
# (the default users_exclude), and u0020 has no mailbox.
TARGETS = [i for i in range(MAILBOXES) if user(i)["accountEnabled"]]


def selected_users(users):
    return [u for u in users if u["accountEnabled"] and u["userType"] != "Guest" and
            u.get("onPremisesExtensionAttributes", {}).get("extensionAttribute1") != "HideFromGAL"]


class Graph:
    """fakegraph.py on a free loopback port."""

    def __init__(self, workdir, *args):
        self.log = open(os.path.join(workdir, "fakegraph.log"), "a")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fakegraph.py"), "--port", "0",
             "--tenant", TENANT, "--client-id", CLIENT_ID, "--client-secret", SECRET,
             "--roles", ALL_ROLES, *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline().split()
        check(len(line) == 2 and line[0] == "ready", f"fakegraph did not start: {line}")
        self.origin = f"http://127.0.0.1:{line[1]}"

    def ctl(self, method, name, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.origin + "/_ctl/" + name, data=data, method=method,
                                   headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(r, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def token(self):
        form = (f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}"
                "&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default").encode()
        r = urllib.request.Request(f"{self.origin}/{TENANT}/oauth2/v2.0/token", data=form,
                                   method="POST")
        with urllib.request.urlopen(r, timeout=20) as resp:
            return json.loads(resp.read())["access_token"]

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.origin + "/v1.0" + path, data=data, method=method,
                                   headers={"Content-Type": "application/json",
                                            "Authorization": "Bearer " + self.token()})
        try:
            with urllib.request.urlopen(r, timeout=20) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def load_directory(self, count=USERS, managers=None):
        """managers: user number -> the manager's id or UPN, as the emulator's
        load takes them."""
        users = [user(i) for i in range(count)]
        for i, m in (managers or {}).items():
            users[i]["manager"] = m
        ids = {i: users[i]["id"] for i in range(count)}
        groups = [
            {"id": "20000000-0000-4000-8000-000000000001", "displayName": "Sales EMEA",
             "members": [ids[i] for i in range(15, MAILBOXES + 1)]},
            {"id": "20000000-0000-4000-8000-000000000002", "displayName": "Sales",
             "members": [ids[i] for i in range(15)] + ["20000000-0000-4000-8000-000000000001"]},
        ]
        self.ctl("POST", "load", {"users": users,
                                  "orgContacts": [org_contact(i) for i in range(ORG_CONTACTS)],
                                  "groups": groups})
        return users

    def folders(self):
        """userPrincipalName -> list of the mailbox's contacts in FOLDER."""
        return self.folders_named(FOLDER)

    def folders_named(self, name):
        out = {}
        for m in self.ctl("GET", "dump")["mailboxes"]:
            for f in m.get("contactFolders", []):
                if f["displayName"] == name:
                    out[m["userPrincipalName"]] = f["contacts"]
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def marker(contact):
    for p in contact.get("singleValueExtendedProperties") or []:
        if str(p.get("value", "")).startswith(MARKER_PREFIX):
            return p["value"]
    return None


def write_secret(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(SECRET + "\n")
    return path


CONFIG = """
[state]
path = "{state}"

[tenants.contoso]
tenant_id = "{tenant}"
client_id = "{client_id}"
{credential}
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
filter = "onPremisesExtensionAttributes.extensionAttribute1 != 'HideFromGAL'"
users_from = {{ source = "gal", group = "Sales" }}
{extra}
"""


def write_config(suite, graph, name="roster.toml", credential=None, extra="", tenant=TENANT):
    d = suite.workdir
    if credential is None:
        credential = f'client_secret_file = "{write_secret(os.path.join(d, "graph.secret"))}"'
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(CONFIG.format(state=os.path.join(d, "roster.db"), tenant=tenant,
                              client_id=CLIENT_ID, credential=credential, origin=graph.origin,
                              folder=FOLDER, extra=extra))
    return path


def run(config, *args, timeout=600):
    p = subprocess.run([ROSTER, "--config", config, "--json", *args], capture_output=True,
                       text=True, timeout=timeout)
    out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
    return p.returncode, out, p.stderr


def expect_converged(graph, users, removed=()):
    """Every mailbox of the group holds exactly the selected people, once each;
    the mailbox's own person is not among them."""
    want = {u["id"] for u in selected_users(users) if u["id"] not in removed}
    want |= {org_contact(i)["id"] for i in range(ORG_CONTACTS)}
    folders = graph.folders()
    check(len(folders) == len(TARGETS), f"{len(folders)} folders, want {len(TARGETS)}")
    for i in TARGETS:
        contacts = folders.get(upn(i))
        check(contacts is not None, f"no folder in {upn(i)}")
        keys = {}
        for c in contacts:
            m = marker(c)
            if m is not None:
                keys[m] = keys.get(m, 0) + 1
        dup = [k for k, n in keys.items() if n > 1]
        check(not dup, f"{upn(i)}: duplicates {dup[:3]}")
        got = {m.rsplit(":", 1)[1] for m in keys}
        own = {user(i)["id"]}
        check(got == want - own, f"{upn(i)}: {len(got)} managed, want {len(want - own)}; "
              f"missing {sorted(want - own - got)[:3]}, extra {sorted(got - want)[:3]}")


def check_directory_reads(entries, want, what):
    """The run read the directory by delta: no /users or /contacts listing, and
    exactly the users `want` (ids) by GET /users/{id}."""
    lists = [e for e in entries if e["method"] == "GET" and e["path"] in ("/v1.0/users",
                                                                        "/v1.0/contacts")]
    check(not lists, f"{what}: the directory was listed {len(lists)} times")
    deltas = [e for e in entries if e["kind"] == "users_delta"]
    check(deltas, f"{what}: the users' delta was not read")
    ids = {user(i)["id"] for i in range(USERS)}
    # A $batch's sub-requests are logged by their relative URL.
    got = [e["path"].rsplit("/", 1)[1] for e in entries
           if e["method"] == "GET" and e["kind"] == "user" and
           e["path"].rsplit("/", 1)[1] in ids]
    check(sorted(got) == sorted(want),
          f"{what}: read users {sorted(got)[:5]} ({len(got)}), want {sorted(want)[:5]} "
          f"({len(want)})")


def log_since(graph, offset):
    out = graph.ctl("GET", f"log?offset={offset}&limit=100000")
    return out["entries"], out["total"]


def totals(out):
    return out["totals"]


# --- the tests ---------------------------------------------------------------------
def test_gal_into_mailboxes_end_to_end(suite):
    graph = Graph(suite.workdir)
    try:
        users = graph.load_directory()
        config = write_config(suite, graph)
        # --debug: the skipped mailbox has no collection, so status cannot
        # say whose pseudonym it is; the output must name it to check it.
        code, out, err = run(config, "sync", "--debug")
        check(code == 0, f"first sync exit {code}: {err[-2000:]}")
        selected = {u["id"] for u in selected_users(users)}
        want = sum(len(selected) + ORG_CONTACTS - (user(i)["id"] in selected) for i in TARGETS)
        check(totals(out)["created"] == want, f"created {totals(out)['created']}, want {want}")
        expect_converged(graph, users)
        # The licence-less member is named and skipped, not a failure.
        skipped = [t for t in out["targets"] if t.get("no_such_user")]
        check([t["user"] for t in skipped] == [upn(MAILBOXES)], f"skipped {skipped}")
        check(upn(MAILBOXES) in json.dumps(skipped[0].get("warnings")), skipped)

        # Nothing changed: no writes, at most 2 requests per mailbox plus the directory's delta.
        _, offset = log_since(graph, 0)
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        check(t["created"] + t["updated"] + t["deleted"] == 0, f"quiet run wrote: {t}")
        entries, offset2 = log_since(graph, offset)
        per_mailbox = {}
        directory = []
        for e in entries:
            if e.get("parent") is not None or e["kind"] == "token":
                continue
            if e.get("mailbox") or e["path"].startswith(f"/v1.0/users/{upn(MAILBOXES)[:5]}"):
                per_mailbox[e["mailbox"]] = per_mailbox.get(e["mailbox"], 0) + 1
            else:
                directory.append(e["method"] + " " + e["path"][:120])
        worst = max(per_mailbox.values()) if per_mailbox else 0
        check(worst <= 2, f"quiet run: up to {worst} requests per mailbox: {per_mailbox}")
        # The two delta checks, the group's name resolved and its members read.
        check(len(directory) <= 4, f"quiet run: {len(directory)} directory requests: {directory}")

        # 20 users change: 20 updates per mailbox, one $batch each.
        changed = [users[i] for i in range(100, 300) if users[i] in selected_users(users)][:20]
        graph.ctl("POST", "directory/upsert",
                  {"users": [{"id": u["id"], "jobTitle": "Director"} for u in changed]})
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        check(totals(out)["updated"] == 20 * len(TARGETS), f"updated {totals(out)['updated']}")
        entries, offset3 = log_since(graph, offset2)
        batches = {}
        for e in entries:
            if e.get("parent") is not None and e["method"] == "PATCH":
                batches.setdefault(e["mailbox"], set()).add(e["parent"])
        check(len(batches) == len(TARGETS), f"updates reached {len(batches)} mailboxes")
        many = {m: len(p) for m, p in batches.items() if len(p) != 1}
        check(not many, f"20 updates took more than one $batch: {many}")
        for u in changed:
            u["jobTitle"] = "Director"
        expect_converged(graph, users)

        # A user deleted in the directory disappears from every mailbox in one run.
        gone = selected_users(users)[500]
        graph.ctl("POST", "directory/delete", {"users": [gone["id"]]})
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        check(totals(out)["deleted"] == len(TARGETS), f"deleted {totals(out)['deleted']}")
        expect_converged(graph, users, removed={gone["id"]})

        # A contact a user made in the same folder is never touched; an edit of a
        # managed contact is put back by the field rules (the source overwrites).
        fid = None
        for m in graph.ctl("GET", "dump")["mailboxes"]:
            if m["userPrincipalName"] == upn(3):
                fid = [f for f in m["contactFolders"] if f["displayName"] == FOLDER][0]["id"]
        s, own = graph.api("POST", f"/users/{upn(3)}/contactFolders/{fid}/contacts",
                           {"givenName": "Own", "surname": "Card", "jobTitle": "Friend"})
        check(s == 201, (s, own))
        victim = [c for c in graph.folders()[upn(3)] if marker(c)][0]
        s, b = graph.api("PATCH", f"/users/{upn(3)}/contactFolders/{fid}/contacts/{victim['id']}",
                         {"jobTitle": "Edited on the phone"})
        check(s == 200, (s, b))
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        check(totals(out)["updated"] == 1, f"edit: {totals(out)}")
        after = {c["id"]: c for c in graph.folders()[upn(3)]}
        check(after[own["id"]]["jobTitle"] == "Friend" and marker(after[own["id"]]) is None,
              "the user's own contact changed")
        check(after[victim["id"]]["jobTitle"] != "Edited on the phone", "the edit stayed")
        expect_converged(graph, users, removed={gone["id"]})

        # The state is lost: everything is found again by roster's marker, nothing created twice.
        os.remove(os.path.join(suite.workdir, "roster.db"))
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        check(totals(out)["created"] == 0, f"lost state created {totals(out)['created']}")
        expect_converged(graph, users, removed={gone["id"]})
        check(own["id"] in {c["id"] for c in graph.folders()[upn(3)]}, "own contact gone")

        # Every delta token expires (410 syncStateNotFound): a full read, no duplicate.
        graph.ctl("POST", "delta/expire", {"code": "syncStateNotFound"})
        moved = selected_users(users)[700]
        graph.ctl("POST", "directory/upsert", {"users": [{"id": moved["id"], "officeLocation": "Leeds"}]})
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        check(t["created"] == 0 and t["updated"] == len(TARGETS), f"after expiry: {t}")
        expect_converged(graph, users, removed={gone["id"]})
    finally:
        graph.stop()


def test_faults_converge_without_duplicates(suite):
    graph = Graph(suite.workdir)
    try:
        users = graph.load_directory(SMALL)
        os.path.exists(os.path.join(suite.workdir, "roster.db")) and os.remove(
            os.path.join(suite.workdir, "roster.db"))
        config = write_config(suite, graph, name="faults.toml")
        graph.ctl("POST", "faults", {"rate_429": 0.04, "rate_5xx": 0.04,
                                     "drop_answer_after_write": 0.02, "seed": 9})
        for attempt in range(6):
            code, out, err = run(config, "sync")
            if code == 0:
                break
        graph.ctl("POST", "faults", {"rate_429": 0, "rate_5xx": 0, "drop_answer_after_write": 0})
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        expect_converged(graph, users)
        code, out, err = run(config, "sync")
        t = totals(out)
        check(t["created"] + t["updated"] + t["deleted"] == 0, f"not quiet after faults: {t}")
    finally:
        graph.stop()
        os.path.exists(os.path.join(suite.workdir, "roster.db")) and os.remove(
            os.path.join(suite.workdir, "roster.db"))


def test_placement_default_with_a_category(suite):
    """placement = "default": the mailbox's main Contacts folder, every managed
    contact tagged with the category; the user's own contacts there untouched."""
    graph = Graph(suite.workdir)
    state = os.path.join(suite.workdir, "roster.db")
    try:
        users = graph.load_directory(SMALL)
        os.path.exists(state) and os.remove(state)
        own = {}
        for i in TARGETS[:3]:
            s, b = graph.api("POST", f"/users/{upn(i)}/contacts",
                             {"givenName": "Mum", "surname": f"Of{i}", "categories": ["Family"]})
            check(s == 201, (s, b))
            own[upn(i)] = b["id"]
        config = write_config(suite, graph, "default.toml",
                              extra='placement = "default"\ncategory = "Company"')
        config_text = open(config).read().replace(f'addressbook = "{FOLDER}"\n', "")
        open(config, "w").write(config_text)
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        selected = {u["id"] for u in selected_users(users)} | {
            org_contact(i)["id"] for i in range(ORG_CONTACTS)}
        for m in graph.ctl("GET", "dump")["mailboxes"]:
            i = int(m["userPrincipalName"][1:5]) if m["userPrincipalName"][0] == "u" else -1
            if i not in TARGETS:
                continue
            contacts = m.get("defaultContacts", [])
            managed = [c for c in contacts if marker(c)]
            keys = [marker(c).rsplit(":", 1)[1] for c in managed]
            check(len(keys) == len(set(keys)), f"{m['userPrincipalName']}: duplicates")
            check(set(keys) == selected - {user(i)["id"]},
                  f"{m['userPrincipalName']}: {len(keys)} managed")
            check(all("Company" in (c.get("categories") or []) for c in managed),
                  "a managed contact without the category")
            if m["userPrincipalName"] in own:
                mine = [c for c in contacts if c["id"] == own[m["userPrincipalName"]]]
                check(len(mine) == 1 and mine[0]["categories"] == ["Family"] and
                      marker(mine[0]) is None, f"own contact changed: {mine}")
            check(not [f for f in m.get("contactFolders", []) if f["displayName"] == FOLDER],
                  "a folder was made")
        code, out, err = run(config, "sync")
        t = totals(out)
        check(code == 0 and t["created"] + t["updated"] + t["deleted"] == 0, f"not quiet: {t}")
    finally:
        graph.stop()
        os.path.exists(state) and os.remove(state)


def test_gal_into_carddav_books(suite):
    """Any source feeds any target: the Global Address List into Radicale books."""
    import shutil
    from harness import Radicale
    if not shutil.which("radicale"):
        print("SKIP radicale is not installed")
        return
    graph = Graph(suite.workdir)
    dav = Radicale(os.path.join(suite.workdir, "dav"))
    state = os.path.join(suite.workdir, "roster.db")
    try:
        users = graph.load_directory(SMALL)
        os.path.exists(state) and os.remove(state)
        config = write_config(suite, graph, "carddav.toml")
        text = open(config).read()
        text = text.replace('[targets.m365]\ntype = "graph"\ntenant = "contoso"\n',
                            f'[targets.m365]\ntype = "carddav"\nurl = "{dav.url}"\n'
                            'username = "roster"\nusers = ["alice", "bob"]\n')
        text = text.replace('users_from = { source = "gal", group = "Sales" }\n', "")
        open(config, "w").write(text)
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        want = len(selected_users(users)) + ORG_CONTACTS
        for u in ("alice", "bob"):
            cards = dav.cards(u, FOLDER)
            check(len(cards) == want, f"{u}: {len(cards)} cards, want {want}")
        code, out, err = run(config, "sync")
        t = totals(out)
        check(code == 0 and t["created"] + t["updated"] + t["deleted"] == 0, f"not quiet: {t}")
    finally:
        dav.stop()
        graph.stop()
        os.path.exists(state) and os.remove(state)


def test_manager_names_from_the_directory(suite):
    """attributes = { manager = "manager" }: each card carries its person's
    manager's display name (a user's, by UPN or id, or an org contact's),
    read with $expand=manager($select=displayName,id); the users' delta (which
    selects manager) sees a new manager, a renamed manager renames it on every
    report's card, and a quiet directory is not read at all. With the cache
    (the default) each change reads only the users it touches, by id."""
    graph = Graph(suite.workdir)
    state = os.path.join(suite.workdir, "roster.db")
    managers = {i: upn(30) for i in range(40, 60)}
    managers.update({i: user(31)["id"] for i in range(60, 70)})
    managers[70] = org_contact(3)["id"]
    name = {30: "Given30 Family30", 31: "Given31 Family31"}

    def want_manager(i):
        m = managers.get(i)
        if m is None:
            return ""
        if m == org_contact(3)["id"]:
            return org_contact(3)["displayName"]
        return name[30] if m == upn(30) else name[31]

    def check_cards(what):
        ids = {user(i)["id"]: i for i in range(SMALL)}
        folders = graph.folders()
        check(len(folders) == len(TARGETS), f"{what}: {len(folders)} folders")
        for mailbox, contacts in folders.items():
            seen = 0
            for c in contacts:
                m = marker(c)
                i = ids.get(m.rsplit(":", 1)[1]) if m else None
                if i is None:
                    continue
                seen += 1
                got = c.get("manager") or ""
                check(got == want_manager(i),
                      f"{what}: {mailbox}: {upn(i)}'s manager is {got!r}, want "
                      f"{want_manager(i)!r}")
            check(seen > 200, f"{what}: {mailbox}: only {seen} users")

    try:
        os.path.exists(state) and os.remove(state)
        users = graph.load_directory(SMALL, managers)
        config = write_config(suite, graph, "manager.toml")
        text = open(config).read()
        open(config, "w").write(text.replace("photo_max_pixels = 0\n",
                                             "photo_max_pixels = 0\n"
                                             'attributes = { manager = "manager" }\n', 1))
        code, out, err = run(config, "sync")
        check(code == 0, f"first sync exit {code}: {err[-2000:]}")
        expect_converged(graph, users)
        check_cards("first run")

        # Nothing changed: the delta (with manager selected) says so; /users is not read.
        _, offset = log_since(graph, 0)
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        check(t["created"] + t["updated"] + t["deleted"] == 0, f"quiet run wrote: {t}")
        entries, offset = log_since(graph, offset)
        lists = [e for e in entries if e["path"] == "/v1.0/users" and e["method"] == "GET"]
        check(not lists, f"quiet run read /users {len(lists)} times")

        # u0045 gets another manager: only the users' delta's manager@delta tells.
        graph.ctl("POST", "directory/upsert", {"users": [{"id": user(45)["id"],
                                                          "manager": upn(31)}]})
        managers[45] = upn(31)
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        check(t["updated"] == len(TARGETS) and t["created"] + t["deleted"] == 0,
              f"new manager: {t}, want {len(TARGETS)} updates")
        check_cards("new manager")
        # With the cache the delta names who changed, and only they are read
        # again (by id, in a $batch): no listing of /users.
        entries, offset = log_since(graph, offset)
        check_directory_reads(entries, {user(45)["id"]}, "new manager")

        # The manager u0030 is renamed: her own card and each of her 19 reports' cards.
        name[30] = "Ann Manager"
        graph.ctl("POST", "directory/upsert", {"users": [{"id": user(30)["id"],
                                                          "displayName": name[30]}]})
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        reports = sum(1 for i, m in managers.items() if m == upn(30))
        check(t["updated"] == (1 + reports) * len(TARGETS) and t["created"] + t["deleted"] == 0,
              f"renamed manager: {t}, want {(1 + reports) * len(TARGETS)} updates")
        check_cards("renamed manager")
        # The manager and her reports (whose cached stamps name her) are read again.
        entries, offset = log_since(graph, offset)
        check_directory_reads(
            entries, {user(30)["id"]} | {user(i)["id"] for i, m in managers.items() if m == upn(30)},
            "renamed manager")

        # u0070 loses the manager: the field is cleared on every card.
        graph.ctl("POST", "directory/upsert", {"users": [{"id": user(70)["id"],
                                                          "manager": None}]})
        del managers[70]
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        check(t["updated"] == len(TARGETS), f"no manager: {t}, want {len(TARGETS)} updates")
        check_cards("no manager")
    finally:
        graph.stop()
        os.path.exists(state) and os.remove(state)


def png(shade):
    """A valid 8x8 grey PNG of one shade (no imaging library needed)."""
    import struct
    import zlib

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([shade]) * 8 for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_photo_changes_by_media_etag(suite):
    """With photos read, a photo change is in no delta: once a day (the clock
    moved by faketime) the cached users' photos are checked by their media
    ETag, in $batch, without their bytes; only the user whose photo changed
    is read again and only their cards are written."""
    import base64
    import shutil
    check(shutil.which("faketime"), "faketime is not installed (Debian package faketime)")
    graph = Graph(suite.workdir)
    state = os.path.join(suite.workdir, "roster.db")
    try:
        os.path.exists(state) and os.remove(state)
        users = [user(i) for i in range(SMALL)]
        for i in (100, 101, 102):
            users[i]["photo"] = {"contentType": "image/png",
                                 "base64": base64.b64encode(png(i)).decode()}
        graph.ctl("POST", "load", {"users": users,
                                   "orgContacts": [org_contact(i) for i in range(ORG_CONTACTS)],
                                   "groups": [{"id": "20000000-0000-4000-8000-000000000002",
                                               "displayName": "Sales",
                                               "members": [users[i]["id"]
                                                           for i in range(MAILBOXES + 1)]}]})
        config = write_config(suite, graph, "photos.toml")
        text = open(config).read()
        open(config, "w").write(text.replace("photo_max_pixels = 0\n", "", 1))
        code, out, err = run(config, "sync")
        check(code == 0, f"first sync exit {code}: {err[-2000:]}")

        # A new photo for u0101: the same day, the delta is quiet and nothing is read.
        graph.ctl("POST", "directory/upsert", {"users": [{
            "id": users[101]["id"],
            "photo": {"contentType": "image/png", "base64": base64.b64encode(png(7)).decode()}}]})
        _, offset = log_since(graph, 0)
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        check(t["created"] + t["updated"] + t["deleted"] == 0, f"same day: {t}")

        # A day later: the photos are checked by ETag and only u0101 is read again.
        env = dict(os.environ)
        p = subprocess.run(["faketime", "+25 hours", ROSTER, "--config", config, "--json",
                            "sync"], capture_output=True, text=True, timeout=600, env=env)
        check(p.returncode == 0, p.stderr[-2000:])
        out = json.loads(p.stdout)
        t = totals(out)
        mailboxes = len([i for i in range(MAILBOXES + 1)
                         if users[i]["accountEnabled"] and users[i]["mailbox"] and i != 101])
        check(t["updated"] == mailboxes and t["created"] + t["deleted"] == 0,
              f"a day later: {t}, want {mailboxes} updates (u0101's new photo)")
        entries, offset = log_since(graph, offset)
        # The directory's user photos (the target's own contact photos aside).
        mine = [e for e in entries if e["method"] == "GET" and e["kind"] == "user_photo"]
        meta = [e for e in mine if e["path"].endswith("/photo")]
        values = [e["path"] for e in mine if e["path"].endswith("/photo/$value")]
        check(len(meta) >= SMALL - 1, f"{len(meta)} photo ETags checked, want {SMALL - 1}")
        check(values == [f"/users/{users[101]['id']}/photo/$value"],
              f"photo bytes read: {values[:5]} ({len(values)})")
        lists = [e for e in entries if e["method"] == "GET" and e["path"] == "/v1.0/users"]
        check(not lists, f"the directory was listed {len(lists)} times")
    finally:
        graph.stop()
        os.path.exists(state) and os.remove(state)


FOLDER_CONFIG = """
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
photo_max_pixels = 0

[sources.partners]
type = "graph-folder"
tenant = "contoso"
mailbox = "{mailbox}"
folder = "Partners"

[targets.m365]
type = "graph"
tenant = "contoso"

[[rules]]
name = "partners"
source = "partners"
target = "m365"
addressbook = "Partner Contacts"
users_from = {{ source = "gal", group = "Sales" }}
"""


def test_shared_folder_by_delta(suite):
    """A shared mailbox's contact folder as the source, with the cache: after
    the first run, a changed and a deleted contact come from the folder's
    contacts delta alone (its pages carry changed contacts whole); the folder
    is not listed again, and only the affected cards are written."""
    graph = Graph(suite.workdir)
    state = os.path.join(suite.workdir, "roster.db")
    try:
        os.path.exists(state) and os.remove(state)
        graph.load_directory(SMALL)
        owner = upn(0)
        s, folder = graph.api("POST", f"/users/{owner}/contactFolders", {"displayName": "Partners"})
        check(s == 201, f"folder: {s} {folder}")
        ids = []
        for i in range(30):
            s, c = graph.api("POST", f"/users/{owner}/contactFolders/{folder['id']}/contacts",
                             {"givenName": f"Partner{i}", "surname": "Shared",
                              "displayName": f"Partner{i} Shared",
                              "emailAddresses": [{"address": f"p{i}@partner.example"}]})
            check(s == 201, f"contact {i}: {s} {c}")
            ids.append(c["id"])
        config = os.path.join(suite.workdir, "folder.toml")
        with open(config, "w") as f:
            f.write(FOLDER_CONFIG.format(
                state=state, tenant=TENANT, client_id=CLIENT_ID, origin=graph.origin,
                secret=write_secret(os.path.join(suite.workdir, "graph.secret")), mailbox=owner))
        code, out, err = run(config, "sync")
        check(code == 0, f"first sync exit {code}: {err[-2000:]}")
        t = totals(out)
        check(t["created"] == 30 * len(TARGETS), f"first sync: {t}")

        graph.api("PATCH", f"/users/{owner}/contactFolders/{folder['id']}/contacts/{ids[3]}",
                  {"displayName": "Partner3 Renamed"})
        graph.api("DELETE", f"/users/{owner}/contactFolders/{folder['id']}/contacts/{ids[4]}")
        _, offset = log_since(graph, 0)
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        t = totals(out)
        check(t["updated"] == len(TARGETS) and t["deleted"] == len(TARGETS) and
              t["created"] == 0, f"one changed, one deleted: {t}")
        entries, _ = log_since(graph, offset)
        source_folder = f"/contactFolders/{urllib.parse.quote(folder['id'], safe='')}/contacts"

        def source_lists(entries):
            return [e for e in entries if e["method"] == "GET" and e["kind"] == "contacts" and
                    e["path"].endswith(source_folder)]
        first_run, _ = log_since(graph, 0)
        check(source_lists(first_run), "the first run did not list the source folder")
        lists = source_lists(entries)
        check(not lists, f"the source folder was listed {len(lists)} times")
        fetched = [e for e in entries if e["method"] == "GET" and e["kind"] == "contact" and
                   source_folder + "/" in e["path"]]
        check(not fetched, f"{len(fetched)} source contacts were read one by one")
        names = {c.get("displayName") for c in graph.folders_named("Partner Contacts")[upn(1)]}
        check("Partner3 Renamed" in names and "Partner4 Shared" not in names, sorted(names)[:5])
    finally:
        graph.stop()
        os.path.exists(state) and os.remove(state)


def make_certificate(d, name):
    key = os.path.join(d, name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    key + ".key", "-out", key + ".crt", "-days", "2", "-subj", "/CN=roster"],
                   check=True, capture_output=True)
    with open(key, "w") as f:
        f.write(open(key + ".crt").read() + open(key + ".key").read())
    os.chmod(key, 0o600)
    return key, key + ".crt"


def test_certificate_and_refusals(suite):
    d = suite.workdir
    pem, crt = make_certificate(d, "app")
    other, _ = make_certificate(d, "other")
    graph = Graph(d, "--client-cert", crt)
    try:
        users = graph.load_directory(SMALL)
        state = os.path.join(d, "roster.db")
        os.path.exists(state) and os.remove(state)

        def refused(config, words):
            before = graph.ctl("GET", "dump").get("writes")
            code, out, err = run(config, "sync")
            check(code != 0, f"{words}: exit 0")
            text = err + json.dumps(out or {})
            check(any(w.lower() in text.lower() for w in words), f"{words}: {text[-1500:]}")
            check(SECRET not in text and "eyJ" not in text, "a secret or token was printed")
            check(graph.ctl("GET", "dump").get("writes") == before, f"{words}: wrote")

        bad_secret = os.path.join(d, "bad.secret")
        fd = os.open(bad_secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, b"not-the-secret\n")
        os.close(fd)
        refused(write_config(suite, graph, "bad-secret.toml",
                             credential=f'client_secret_file = "{bad_secret}"'),
                ["secret", "AADSTS7000215"])
        refused(write_config(suite, graph, "bad-cert.toml",
                             credential=f'certificate_file = "{other}"'),
                ["certificate", "AADSTS700027"])
        refused(write_config(suite, graph, "bad-tenant.toml", tenant="nobody.onmicrosoft.com"),
                ["tenant", "AADSTS90002"])
        # The certificate signs the assertion: the same sync as with the secret.
        config = write_config(suite, graph, "cert.toml", credential=f'certificate_file = "{pem}"')
        code, out, err = run(config, "sync")
        check(code == 0, err[-2000:])
        expect_converged(graph, users)
        # A key file others may read is refused before anything is sent.
        os.chmod(pem, 0o644)
        code, out, err = run(config, "sync")
        check(code != 0 and "certificate_file" in err + json.dumps(out or {}), err)
        os.chmod(pem, 0o600)
        # roster doctor: every check passes; Contacts.ReadWrite consented tenant-wide is
        # a warning, with the PowerShell that scopes it to the target mailboxes.
        before = graph.ctl("GET", "dump").get("writes")
        p = subprocess.run([ROSTER, "--config", config, "doctor"], capture_output=True, text=True,
                           timeout=120)
        check(p.returncode == 0, p.stdout + p.stderr)
        check("tenant-wide" in p.stdout and "New-ManagementRoleAssignment" in p.stdout, p.stdout)
        check(f"{upn(0)}: contacts can be written" in p.stdout, p.stdout)
        check("Exchange Online licence" in p.stdout, p.stdout)  # u0020
        check(graph.ctl("GET", "dump").get("writes") == before, "doctor wrote")
        # A missing permission: the mailboxes cannot be written, one clear line each.
        graph.ctl("POST", "auth", {"roles": ["User.Read.All", "OrgContact.Read.All",
                                             "GroupMember.Read.All"]})
        p = subprocess.run([ROSTER, "--config", config, "--json", "doctor"], capture_output=True,
                           text=True, timeout=120)
        report = json.loads(p.stdout)
        failed = [f for f in report["findings"] if f["level"] == "FAILED"]
        # (the licence-less u0020 too: the emulator judges the permission first)
        check(p.returncode == 1 and len(failed) >= len(TARGETS), p.stdout[-2000:])
        check(all("ErrorAccessDenied" in f["text"] for f in failed), failed)
        check(report["powershell"], "no PowerShell for the missing permission")
        graph.ctl("POST", "directory/upsert", {"users": [{"id": users[1]["id"],
                                                          "jobTitle": "Changed"}]})
        refused(config, ["Contacts.ReadWrite", "ErrorAccessDenied", "Access"])
    finally:
        graph.stop()


def main():
    suite = Suite("graph_sync")
    tests = [test_gal_into_mailboxes_end_to_end, test_faults_converge_without_duplicates,
             test_placement_default_with_a_category, test_gal_into_carddav_books,
             test_manager_names_from_the_directory, test_photo_changes_by_media_etag,
             test_shared_folder_by_delta, test_certificate_and_refusals]
    only = sys.argv[1:]
    code = suite.run([t for t in tests if not only or t.__name__ in only])
    suite.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
