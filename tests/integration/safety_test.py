"""Safety promises checked from outside, on the real binary against fakedav.py
(a CardDAV server in its own process): a plan changes nothing on disk or on
the server, a verbose plan says which fields change and why, the mass-change
guard holds back an export whose every mobile
number went blank until --force, a run that ends with conflicts only says why
on stderr, secret and state files are kept private, and `roster keys init`
makes a private key once and never prints one it writes."""
import hashlib
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crash_matrix_test import (BOOK, ROSTER, FakeDav, World, check_converged,  # noqa: E402
                               own_card)
from harness import Suite, check  # noqa: E402

USERS = ["alice", "bob", "carol"]


def world(suite, server, name):
    server.reset()
    return World(os.path.join(suite.workdir, name), server)


def state_files(w):
    """Each state file's bytes, hashed: what "changed nothing" compares."""
    return {k: hashlib.sha256(v).hexdigest() for k, v in w.save()["files"].items()}


def test_plan_creates_and_writes_nothing(suite, server):
    w = world(suite, server, "plan")
    code, out, err = w.roster("plan")
    check(code == 0, f"plan exited {code}: {err}")
    check(out["totals"]["created"] == 30, out["totals"])
    check(not os.path.exists(w.state), "a plan created the state file")
    check(server.dump()["writes"] == 0, "a plan wrote to the server")
    w.sync()
    rows = [dict(r) for r in w.rows]
    rows[0]["title"] = "Changed"
    w.write_rows(rows)
    before = state_files(w)
    writes = server.dump()["writes"]
    code, out, err = w.roster("plan")
    check(code == 0 and out["totals"]["updated"] == 3, (code, out and out["totals"], err))
    check(state_files(w) == before, "a plan changed the state files")
    check(server.dump()["writes"] == writes, "a plan wrote to the server")


def test_verbose_plan_says_which_fields_change_and_why(suite, server):
    w = world(suite, server, "explain")
    w.sync()
    rows = [dict(r) for r in w.rows]
    with_email = [i for i, r in enumerate(rows) if r["email"]]
    changed, dropped = rows[with_email[0]], rows[with_email[1]]
    old_title = changed["title"]
    changed["title"] = "Chief Explainer"
    dropped["email"] = ""  # the rule's filter is has(email)
    w.write_rows(rows)
    code, out, err = w.roster("plan", "--verbose")
    check(code == 0, f"plan exited {code}: {err}")
    decisions = [d for t in out["targets"] if t["user"] == "alice" for d in t["decisions"]]
    update = [d for d in decisions if d["key"] == changed["id"]]
    check(len(update) == 1, decisions)
    check(update[0]["why"] == "changed in the source since the last sync", update[0])
    check({"field": "title", "before": old_title, "after": "Chief Explainer"} in
          update[0].get("changes", []), update[0])
    check(all(c["field"] == "title" for c in update[0]["changes"]), update[0])
    gone = [d for d in decisions if d["key"] == dropped["id"]]
    check(len(gone) == 1 and gone[0]["why"] == "no longer selected", gone)
    check("does not match the rule's filter (has(email))" in gone[0].get("detail", ""), gone)
    # The same in words, for a person at a terminal.
    p = subprocess.run([ROSTER, "--config", w.config, "plan", "--verbose"], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 0, p.stderr)
    check(f'title: "{old_title}" -> "Chief Explainer"' in p.stdout, p.stdout)
    check("why: changed in the source since the last sync" in p.stdout, p.stdout)
    # Without --verbose the plan does not read the cards to say so.
    code, out, err = w.roster("plan")
    check(all("changes" not in d for t in out["targets"] for d in t["decisions"]), out)


def test_mass_change_guard_holds_back_blank_mobiles_until_forced(suite, server):
    w = world(suite, server, "mass")
    w.sync()
    rows = [dict(r, mobile="") for r in w.rows]
    w.write_rows(rows)
    writes = server.dump()["writes"]
    code, out, err = w.roster("sync")
    check(code == 3, f"exit {code}, not 3: {err}")
    check("mass-change guard" in err and "max_update_percent = 50" in err, err)
    check(server.dump()["writes"] == writes, "the guard let writes through")
    code, out, err = w.roster("sync", "--force")
    check(code == 0, f"--force exited {code}: {err}")
    check(out["totals"]["updated"] == 3 * len([r for r in w.rows if r["email"]]), out["totals"])
    check(not check_converged(w, USERS), check_converged(w, USERS))


def test_conflicts_only_exit_1_with_the_reason_on_stderr(suite, server):
    w = world(suite, server, "conflict")
    book = w.dav.mkbook("alice", BOOK, "mine")
    key = w.rows[0]["id"]
    name = "roster-" + hashlib.blake2b(b"company\0" + key.encode(), digest_size=16).hexdigest()
    # Someone else's card sits at the name roster would create for this person.
    w.dav.put(f"{book}{name}.vcf", own_card("squatter", "Not roster's", "x@example.org"))
    code, out, err = w.roster("sync", "--debug")  # the conflict names alice
    check(code == 1, f"exit {code}, not 1: {err}")
    check("alice: conflict:" in err and name in err, err)


def test_a_write_the_server_does_not_keep_is_not_recorded_as_done(suite, server):
    w = world(suite, server, "lying")
    server.dav.req("POST", "/_ctl/drop_puts", "on")
    try:
        code, out, err = w.roster("sync")
    finally:
        server.dav.req("POST", "/_ctl/drop_puts", "off")
    check(code == 1, f"exit {code}, not 1: {err}")
    check("acknowledged writing" in err and "does not list it" in err, err)
    code, out, err = w.roster("sync")  # an honest server again: everything is written
    check(code == 0, f"exit {code}: {err}")
    check(out["totals"]["created"] == 3 * len([r for r in w.rows if r["email"]]), out["totals"])
    check(not check_converged(w, USERS), check_converged(w, USERS))


def test_secret_and_state_files_are_private(suite, server):
    w = world(suite, server, "perms")
    secret = os.path.join(w.dir, "dav.secret")
    with open(secret, "w") as f:
        f.write("hunter2-secret\n")
    os.chmod(secret, 0o644)
    with open(w.config) as f:
        text = f.read()
    with open(w.config, "w") as f:
        f.write(text.replace('users = [', 'username = "roster"\npassword_file = "dav.secret"\n'
                                          'users = ['))
    code, _, err = w.roster("sync")
    check(code == 2 and "has mode 0644" in err, (code, err))
    check("hunter2" not in err, "the password leaked")
    os.chmod(secret, 0o600)
    w.sync()
    os.chmod(w.state, 0o644)
    code, out, err = w.roster("sync")
    check(code == 0, err)
    check(any("had mode 0644" in x for x in out["warnings"]), out["warnings"])
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(w.state + suffix):
            mode = stat.S_IMODE(os.stat(w.state + suffix).st_mode)
            check(mode & 0o077 == 0, f"roster.db{suffix} has mode {mode:o}")


def test_keys_init_makes_a_private_key_once(suite, server):
    """`roster keys init` writes [state] key_file once, mode 0600 under any
    umask, and never prints it; a second run refuses and changes nothing.
    With key_env it prints a new key instead and writes nothing."""
    w = world(suite, server, "keys")
    key_file = os.path.join(w.dir, "roster.key")  # the default: beside the configuration

    def keys_init(config, *extra, env=None):
        full = dict(os.environ)
        full.update(env or {})
        return subprocess.run([ROSTER, "--config", config, "keys", "init", *extra],
                              capture_output=True, text=True, timeout=60, umask=0o022, env=full)

    p = keys_init(w.config)
    check(p.returncode == 0, (p.returncode, p.stderr))
    check(f"Wrote a new key to {key_file}" in p.stdout and "Back it up" in p.stdout, p.stdout)
    mode = stat.S_IMODE(os.stat(key_file).st_mode)
    check(mode == 0o600, f"the key file has mode {mode:o}")
    with open(key_file) as f:
        key = f.read()
    check(key.startswith("roster-key-1:") and key.endswith("\n") and key.count("\n") == 1, key[:13])
    body = key[len("roster-key-1:"):].strip()
    check(len(body) == 96, len(body))
    check(body[:16] not in p.stdout + p.stderr, "keys init printed the key it wrote")

    for extra in ((), ("--json",)):
        again = keys_init(w.config, *extra)
        check(again.returncode == 2, (again.returncode, again.stdout, again.stderr))
        check(again.stderr == f"roster: key file {key_file} exists; roster keys init never "
                              "overwrites a key\n", again.stderr)
        with open(key_file) as f:
            check(f.read() == key, "a second keys init changed the key file")

    # key_env: the key goes to stdout, for the operator; no file is written.
    env_config = os.path.join(w.dir, "env.toml")
    with open(w.config) as f:
        text = f.read()
    with open(env_config, "w") as f:
        f.write(text.replace("[state]\n", '[state]\nkey_env = "ROSTER_TEST_STATE_KEY"\n', 1))
    before = sorted(os.listdir(w.dir))
    printed = []
    for _ in range(2):
        p = keys_init(env_config, env={"ROSTER_TEST_STATE_KEY": ""})
        check(p.returncode == 0, (p.returncode, p.stderr))
        lines = p.stdout.splitlines()
        check(len(lines) == 1 and lines[0].startswith("roster-key-1:"), p.stdout)
        check(len(lines[0]) == len("roster-key-1:") + 96, lines[0][:13])
        check("ROSTER_TEST_STATE_KEY" in p.stderr and "shown only this once" in p.stderr, p.stderr)
        printed.append(lines[0])
    check(printed[0] != printed[1], "two keys init runs printed the same key")
    check(sorted(os.listdir(w.dir)) == before, "keys init with key_env wrote a file")
    p = keys_init(env_config, env={"ROSTER_TEST_STATE_KEY": printed[0]})
    check(p.returncode == 2 and p.stdout == "", (p.returncode, p.stdout))
    check("ROSTER_TEST_STATE_KEY already holds a key" in p.stderr, p.stderr)
    check(printed[0] not in p.stderr, "the key in the variable was printed")

    # --help says that this is where a key is printed.
    p = subprocess.run([ROSTER, "keys", "init", "--help"], capture_output=True, text=True,
                       timeout=60)
    check(p.returncode == 0 and "the only time roster ever prints a key" in p.stdout, p.stdout)


def main():
    suite = Suite("safety")
    server = FakeDav()
    tests = [test_plan_creates_and_writes_nothing,
             test_verbose_plan_says_which_fields_change_and_why,
             test_mass_change_guard_holds_back_blank_mobiles_until_forced,
             test_conflicts_only_exit_1_with_the_reason_on_stderr,
             test_a_write_the_server_does_not_keep_is_not_recorded_as_done,
             test_secret_and_state_files_are_private,
             test_keys_init_makes_a_private_key_once]
    def bind(test):
        def run(s):
            test(s, server)
        run.__name__ = test.__name__
        return run

    code = suite.run([bind(t) for t in tests])
    suite.close(server)
    return code


if __name__ == "__main__":
    sys.exit(main())
