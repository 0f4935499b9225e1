#!/usr/bin/env python3
"""A sync with nothing changed from a vCard-folder source: 1,000 cards into 3
address books of one Radicale on 127.0.0.1 (issue 7, item 5).

  bench/quiet_files.py [--contacts 1000] [--books 3]

Times, median of 3 runs each:
  - quiet, probe used: the folder's Version() (stat of the folder and of
    every file) matches the last snapshot, so no file is read;
  - quiet, every file touched just before: the version changes, so all files
    are read and parsed again (what every quiet run cost before the probe);
  - quiet, listed users without include_self: the first run reads the people
    to recognise each listed user's own card and stores the answer; later
    quiet runs skip the read like the probe (see docs/benchmarks.md).
Needs the roster binary (ROSTER_BIN, default build/src/cli/roster) and
radicale (scripts/deps installs it). Traffic stays on 127.0.0.1."""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402

BOOK = "Company Contacts"
SKIPPED = "sources unchanged since the last sync; not read"

CONFIG = """[state]
path = "{state}"

[sources.cards]
type = "vcard-dir"
path = "{folder}"

[targets.dav]
type = "carddav"
url = "{url}"
username = "roster"
users = [{users}]
max_in_flight = 1

[[rules]]
name = "company"
source = "cards"
target = "dav"
addressbook = "{book}"
include_self = {include_self}
"""


def vcard(row):
    return harness.person_vcard(row)


def write_config(path, url, folder, users, include_self):
    with open(path, "w") as f:
        f.write(CONFIG.format(state=os.path.join(os.path.dirname(path), "roster.db"),
                              folder=folder, url=url, book=BOOK,
                              users=", ".join(f'"{u}"' for u in users),
                              include_self="true" if include_self else "false"))
    return path


def sync(config):
    """One timed `roster sync`; returns (seconds, whether the read was skipped)."""
    t0 = time.time()
    code, out, err = harness.roster(config, "sync")
    took = time.time() - t0
    if code != 0:
        sys.exit(f"roster sync failed ({code}): {err}")
    t = out["totals"]
    if t["created"] or t["updated"] or t["deleted"]:
        sys.exit(f"a quiet sync wrote: {t}")
    skipped = any(SKIPPED in n for n in out.get("sources", []))
    return took, skipped


def touch_all(folder):
    now = time.time()
    for name in os.listdir(folder):
        os.utime(os.path.join(folder, name), (now, now))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=1000)
    ap.add_argument("--books", type=int, default=3)
    args = ap.parse_args()
    work = os.path.abspath(os.path.join(harness.ROOT, ".bench", "quiet-files"))
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    radicale = harness.Radicale(work)
    try:
        folder = os.path.join(work, "cards")
        os.makedirs(folder)
        rows = harness.write_people(os.path.join(work, "people.csv"), args.contacts, seed=3)
        for r in rows:
            with open(os.path.join(folder, r["id"] + ".vcf"), "w", newline="") as f:
                f.write(vcard(r))
        users = [f"user{i}" for i in range(args.books)]
        probe = write_config(os.path.join(work, "probe.toml"), radicale.url, folder, users, True)
        listed = write_config(os.path.join(work, "listed.toml"), radicale.url, folder, users,
                              False)
        t0 = time.time()
        code, out, err = harness.roster(probe, "sync")
        if code != 0 or out["totals"]["created"] != args.contacts * args.books:
            sys.exit(f"initial sync failed ({code}): {err}")
        print(f"  initial sync: {time.time() - t0:.1f} s", flush=True)
        # Files younger than 2 s have no version; the first settled run stores it.
        time.sleep(2.5)
        sync(probe)

        runs = {"probe": [], "touched": [], "listed": []}
        for _ in range(3):
            took, skipped = sync(probe)
            if not skipped:
                sys.exit("the folder was read although nothing changed")
            runs["probe"].append(took)
        for _ in range(3):
            touch_all(folder)
            took, skipped = sync(probe)
            if skipped:
                sys.exit("the read was skipped although every file was touched")
            runs["touched"].append(took)
        time.sleep(2.5)
        # The first run with listed users reads once to learn who each user is
        # (stored with the snapshot); later ones skip like the probe.
        sync(listed)
        for _ in range(3):
            took, skipped = sync(listed)
            if not skipped:
                sys.exit("listed users made a read although nothing changed")
            runs["listed"].append(took)
    finally:
        radicale.stop()
        subprocess.run(["rm", "-rf", work])

    print(f"quiet sync, {args.contacts} cards from a vCard folder into {args.books} books, "
          f"Radicale on 127.0.0.1, median of 3")
    labels = {"probe": "unchanged folder (version probe, no file read)",
              "touched": "every file touched (all read and parsed)",
              "listed": "listed users, include_self = false (no read)"}
    for key, label in labels.items():
        print(f"  {label:50} {statistics.median(runs[key]):6.3f} s   "
              f"runs {' / '.join(f'{t:.3f}' for t in runs[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
