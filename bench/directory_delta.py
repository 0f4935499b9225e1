#!/usr/bin/env python3
"""Issue 10's delta-read goal: after one change among 50,000 LDAP people, the
run into 100 books of the in-memory target takes under 2 s. 50,000 people
from tools/gen_org.py in a throwaway slapd on 127.0.0.1 (size limit 500;
roster pages by 500); bench/directory_delta_bench syncs them in full once,
then, after this script changed one person's title with ldapmodify, runs
again with the cache, once more with nothing changed, and, after a second
change, once with cache = "none" (everything read again, as before).

    python3 bench/directory_delta.py [--people 50000] [--users 100] [--rounds 1]

--rounds N times the one-change run N times, each after a change of its own.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import gen_org  # noqa: E402
from slapd import Slapd  # noqa: E402

BIN = os.environ.get("ROSTER_DELTA_BENCH",
                     os.path.join(ROOT, "build", "bench", "directory_delta_bench"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=50000)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if "ROSTER_DELTA_BENCH" not in os.environ:
        subprocess.run([os.path.join(ROOT, "scripts", "build")], check=True,
                       stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="roster-deltabench-") as work:
        return run(args, work)


def pick(manifest):
    """An ordinary employee with a phone, whom the rule selects and who heads nobody."""
    heads = {p["manager"] for p in manifest["people"] if p["manager"]}
    for p in manifest["people"]:
        if (p["employeeType"] == "Employee" and not p["disabled"] and not p["hidden"]
                and p["mail"] and p["dn"] not in heads):
            yield p


def run(args, work):
    ldif = os.path.join(work, "org.ldif")
    with open(ldif, "w", encoding="ascii") as f:
        manifest = gen_org.write_ldif(f, people=args.people, seed=1)
    people = pick(manifest)
    t0 = time.time()
    with Slapd(ldif=ldif, size_limit=500) as ldap:
        print(f"{args.people} people generated, slapd loaded and started in "
              f"{time.time() - t0:.1f} s")
        cmd = ["/usr/bin/time", "-f", "whole process: wall %e s, max RSS %M KB", BIN,
               "--url", ldap.url, "--bind", ldap.bind_dn, "--password", ldap.password,
               "--base", manifest["people_dn"], "--users", str(args.users),
               "--db", os.path.join(work, "state.db"), "--rounds", str(args.rounds)]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for line in p.stdout:
            print(line, end="", flush=True)
            if line.startswith("ready "):
                person = next(people)
                ldap.ldapmodify(f"dn: {person['dn']}\nchangetype: modify\nreplace: title\n"
                                f"title: Changed by the benchmark {line.split()[1]}\n")
                p.stdin.write("go\n")
                p.stdin.flush()
        return p.wait()


if __name__ == "__main__":
    sys.exit(main())
