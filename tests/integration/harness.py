"""Shared pieces of roster's integration tests: throwaway Radicale servers on
127.0.0.1, a roster runner, a demo-organisation writer, and readers that look
at what really landed in each address book (on Radicale's disk)."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gen_people  # noqa: E402

ROSTER = os.environ.get("ROSTER_BIN", os.path.join(ROOT, "build", "src", "cli", "roster"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Radicale:
    """A Radicale on 127.0.0.1 with its own storage; stopped by stop()."""

    def __init__(self, workdir, users=None, rights=None):
        """users: login -> password (htpasswd; none: no login). rights: the
        text of a Radicale rights file (none: every login may do anything)."""
        self.dir = os.path.join(workdir, "radicale")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.storage = os.path.join(self.dir, "storage")
        auth = "[auth]\ntype = none\n"
        if users:
            htpasswd = os.path.join(self.dir, "users")
            with open(htpasswd, "w") as f:
                for u, p in users.items():
                    f.write(f"{u}:{p}\n")
            auth = f"[auth]\ntype = htpasswd\nhtpasswd_filename = {htpasswd}\nhtpasswd_encryption = plain\n"
        rights_conf = "[rights]\ntype = authenticated\n"
        if rights:
            with open(os.path.join(self.dir, "rights"), "w") as f:
                f.write(rights)
            rights_conf = f"[rights]\ntype = from_file\nfile = {self.dir}/rights\n"
        conf = os.path.join(self.dir, "config")
        with open(conf, "w") as f:
            f.write(f"[server]\nhosts = 127.0.0.1:{self.port}\n{auth}{rights_conf}"
                    f"[storage]\nfilesystem_folder = {self.storage}\n"
                    f"[logging]\nlevel = warning\n")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["radicale", "--config", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("radicale exited; see " + self.log.name)
                time.sleep(0.1)
        raise RuntimeError("radicale did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def book_dir(self, user, display_name):
        home = os.path.join(self.storage, "collection-root", user)
        if not os.path.isdir(home):
            return None
        for name in sorted(os.listdir(home)):
            props = os.path.join(home, name, ".Radicale.props")
            if os.path.exists(props):
                with open(props, encoding="utf-8") as f:
                    if json.load(f).get("D:displayname") == display_name:
                        return os.path.join(home, name)
        return None

    def cards(self, user, display_name):
        """{file name: {property: [values]}} of every card in the book."""
        d = self.book_dir(user, display_name)
        out = {}
        if not d:
            return out
        for name in sorted(os.listdir(d)):
            if name.startswith(".") or not os.path.isfile(os.path.join(d, name)):
                continue
            with open(os.path.join(d, name), encoding="utf-8", newline="") as f:
                out[name] = parse_card(f.read())
        return out

    def request(self, method, path, body=None, headers=None, auth=None):
        req = urllib.request.Request(self.url.rstrip("/") + path, data=body, method=method,
                                     headers=headers or {})
        if auth:
            import base64
            req.add_header("Authorization",
                           "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def sync_token(self, user, display_name):
        d = self.book_dir(user, display_name)
        path = "/" + user + "/" + os.path.basename(d) + "/"
        body = (b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop><sync-token/></prop>'
                b'</propfind>')
        status, text = self.request("PROPFIND", path, body, {"Depth": "0"})
        assert status == 207, (status, text)
        start = text.find("sync-token>") + len("sync-token>")
        return text[start:text.find("<", start)]


def parse_card(text):
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    props = {}
    for line in lines:
        head, _, value = line.partition(":")
        name = head.split(";")[0].split(".")[-1].upper()
        props.setdefault(name, []).append(value)
    return props


def write_people(path, count, seed=1, mutate=None):
    rows = list(gen_people.people(count, seed))
    if mutate:
        rows = mutate(rows)
    import csv
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(gen_people.people(1, seed).__next__().keys()),
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return rows


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
work_phone = "phone"
organization = "company"
department = "department"
title = "title"

[targets.dav]
type = "carddav"
url = "{url}"
{auth}users = [{users}]
max_in_flight = {in_flight}

[[rules]]
name = "company"
source = "staff"
target = "dav"
addressbook = "Company Contacts"
filter = "{filter}"
max_delete_percent = 20
"""


def write_config(path, url, csv_path, users, state=None, filter="department != 'Contractors'",
                 auth='username = "roster"\n', in_flight=2):
    with open(path, "w") as f:
        f.write(CONFIG.format(state=state or os.path.join(os.path.dirname(path), "roster.db"),
                              csv=csv_path, url=url, users=", ".join(f'"{u}"' for u in users),
                              filter=filter, auth=auth, in_flight=in_flight))
    return path


def roster(config, *args, env=None, timeout=900):
    """Runs roster with --json when it plans or syncs; returns (code, json-or-None, stderr)."""
    cmd = [ROSTER, "--config", config]
    if args and args[0] in ("plan", "sync"):
        cmd.append("--json")
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    out = None
    if p.stdout.strip().startswith("{"):
        out = json.loads(p.stdout)
    if out and args[0] == "sync" and "--debug" not in args:
        named(config, out, full_env)
    return p.returncode, out, p.stderr


def named(config, out, env):
    """A sync's output names target users by pseudonym (p:...), as logs must:
    each target's "user" is checked to be one, kept as "user_ref", and
    replaced by the name `roster status --json` gives it, so that tests can
    say whose book they mean."""
    refs = {t["user"] for t in out.get("targets", [])}
    for ref in refs:
        if not re.fullmatch(r"p:[0-9a-f]{12}", ref):
            raise AssertionError(f"sync --json names a target user in clear: {ref!r}")
    if not refs:
        return
    p = subprocess.run([ROSTER, "--config", config, "status", "--json"], capture_output=True,
                       text=True, timeout=120, env=env)
    by_ref = {}
    if p.returncode == 0 and p.stdout.strip().startswith("["):
        for row in json.loads(p.stdout):
            by_ref[row["user_ref"]] = row["user"]
    for t in out.get("targets", []):
        t["user_ref"] = t["user"]
        t["user"] = by_ref.get(t["user"], t["user"])


class Suite:
    """A tiny runner: each test is a function; prints 'N passed, N failed'."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.workdir = tempfile.mkdtemp(prefix=f"roster-{name}-")

    def run(self, tests):
        for test in tests:
            t0 = time.time()
            try:
                test(self)
                self.passed += 1
                print(f"PASS {test.__name__} ({time.time() - t0:.1f}s)", flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                self.failed += 1
                import traceback
                traceback.print_exc()
                print(f"FAIL {test.__name__}: {e}", flush=True)
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0

    def close(self, *servers):
        """Stops the servers (None is skipped), then removes the work folder if
        every test passed; it is kept, and named, for a failure to be looked at."""
        for server in servers:
            if server is not None:
                server.stop()
        if self.failed == 0:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            print(f"work files kept in {self.workdir}")


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def write_credentials(path, passwords):
    """A target's credentials_file: one `USER:PASSWORD` line per user, created
    0600 (roster refuses one that group or others may read)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# roster test: each target user's own password\n")
        for user, password in passwords.items():
            f.write(f"{user}:{password}\n")
    os.chmod(path, 0o600)
    return path


def roster_measured(config, *args, env=None, timeout=120):
    """Runs roster like roster(), and measures that run alone: returns a dict
    with code (negative: the signal that ended it), out (parsed JSON or None),
    stdout, err, seconds, and max_rss_mb (os.wait4's rusage of that child).
    Output is read as bytes and decoded strictly, so invalid UTF-8 in it fails."""
    import signal
    import threading
    cmd = [ROSTER, "--config", config]
    if args and args[0] in ("plan", "sync"):
        cmd.append("--json")
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.time()
        p = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=full_env)
        timer = threading.Timer(timeout, lambda: os.kill(p.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.time() - t0
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode("utf-8")
        stderr = err_f.read().decode("utf-8")
    out = json.loads(stdout) if stdout.strip().startswith("{") else None
    return {"code": p.returncode, "out": out, "stdout": stdout, "err": stderr,
            "seconds": seconds, "max_rss_mb": usage.ru_maxrss / 1024.0}


def person_vcard(row):
    """One generated person (tools/gen_people.py row) as a plain vCard 3.0."""
    def esc(v):
        return v.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    return ("BEGIN:VCARD\r\nVERSION:3.0\r\n"
            f"UID:{row['id']}\r\n"
            f"FN:{esc(row['first_name'])} {esc(row['last_name'])}\r\n"
            f"N:{esc(row['last_name'])};{esc(row['first_name'])};;;\r\n"
            f"ORG:{esc(row['company'])};{esc(row['department'])}\r\n"
            f"TITLE:{esc(row['title'])}\r\n"
            f"EMAIL;TYPE=work:{row['email']}\r\n"
            f"TEL;TYPE=cell:{row['mobile']}\r\n"
            f"TEL;TYPE=work,voice:{row['phone']}\r\n"
            "END:VCARD\r\n")
