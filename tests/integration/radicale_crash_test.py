#!/usr/bin/env python3
"""Crash safety against a real Radicale: a sync is killed with SIGKILL at 20
moments chosen by a fixed seed, each followed by a complete run; afterwards
every book converges and none holds a duplicate (invariant 2)."""
import os
import random
import signal
import subprocess
import sys
import time

import harness
from harness import check

PEOPLE = 120
USERS = ["ann", "ben", "cat", "dan"]
BOOK = "Company Contacts"
SEED = 20261127


def check_converged(s, rows):
    want = {r["id"] for r in rows if r["department"] != "Contractors"}
    for user in USERS:
        seen = {}
        for name, props in s.radicale.cards(user, BOOK).items():
            key = props.get("X-ROSTER-KEY", [None])[0]
            if key is None:
                continue
            check(key not in seen, f"{user}: duplicate {key} in {name} and {seen.get(key)}")
            seen[key] = name
        check(set(seen) == want, f"{user}: {len(seen)} cards, want {len(want)}")


def test_kill_at_twenty_moments(s):
    rng = random.Random(SEED)
    rows = harness.write_people(s.csv, PEOPLE)
    kills = 0
    for i in range(20):
        # Each round changes the source so that the killed run has writes to do:
        # titles change for a third of the people, and a few come and go.
        def mutate(rs, i=i):
            for r in rs[i % 3::3]:
                r["title"] = f"{r['title']} r{i}"
            drop = set(rng.sample(range(len(rs)), 4))
            return [r for j, r in enumerate(rs) if j not in drop]
        rows = harness.write_people(s.csv, PEOPLE, mutate=mutate)
        delay = rng.uniform(0.05, 2.5 if i else 6.0)
        p = subprocess.Popen([harness.ROSTER, "--config", s.config, "sync", "--force"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        code, out, err = harness.roster(s.config, "sync", "--force")
        check(code == 0, f"round {i}: complete run exit {code}: {err}")
        check(out["totals"]["errors"] == 0, f"round {i}: {out['totals']}")
        check_converged(s, rows)
        code, out, err = harness.roster(s.config, "sync")
        t = out["totals"]
        check(t["created"] == t["updated"] == t["deleted"] == 0, f"round {i}: not quiet: {t}")
    print(f"  {kills} of 20 runs were killed mid-way", flush=True)
    check(kills >= 10, f"only {kills} runs were killed before finishing; the test proves little")


def main():
    s = harness.Suite("radicale_crash")
    s.radicale = harness.Radicale(s.workdir)
    s.csv = os.path.join(s.workdir, "staff.csv")
    s.config = harness.write_config(os.path.join(s.workdir, "roster.toml"), s.radicale.url, s.csv,
                                    USERS)
    try:
        return s.run([test_kill_at_twenty_moments])
    finally:
        s.close(s.radicale)


if __name__ == "__main__":
    sys.exit(main())
