#!/usr/bin/env python3
"""roster side by side with vdirsyncer against the same Radicale, in one run:
1,000 contacts into 5 address books each.

  bench/carddav_vs_vdirsyncer.py [--contacts 1000] [--books 5]

Measures, for roster and vdirsyncer alike: the initial sync, a sync with
nothing changed, and a sync after 1% of the source changed. It also times the
server's own bound: the same cards PUT one after another over one kept-alive
connection. Needs the roster binary (build/src/cli/roster), radicale and
vdirsyncer (scripts/deps installs them). Traffic stays on 127.0.0.1."""
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


def vcard(row):
    return harness.person_vcard(row)


def mkbook(radicale, user, name):
    radicale.request("MKCOL", f"/{user}/")
    body = ('<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype>'
            '<D:collection/><C:addressbook/></D:resourcetype>'
            f'<D:displayname>{name}</D:displayname></D:prop></D:set></D:mkcol>')
    status, text = radicale.request("MKCOL", f"/{user}/book/", body.encode())
    assert status == 201, (status, text)
    return f"/{user}/book/"


def timed(fn):
    t0 = time.time()
    fn()
    return time.time() - t0


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=1000)
    ap.add_argument("--books", type=int, default=5)
    ap.add_argument("--in-flight", type=int, default=1,
                    help="roster's max_in_flight (Radicale serialises writes)")
    args = ap.parse_args()
    work = os.path.abspath(os.path.join(harness.ROOT, ".bench", "vdirsyncer-run"))
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    radicale = harness.Radicale(work)
    try:
        rows = harness.write_people(os.path.join(work, "staff.csv"), args.contacts, seed=3)
        cards = [vcard(r) for r in rows]

        # 1. The server's own bound: bare PUTs over one kept-alive connection.
        bare_books = [mkbook(radicale, f"bare{i}", BOOK) for i in range(args.books)]

        # bench/bare_put: libcurl, one connection kept alive where the server allows.
        bare_dir = os.path.join(work, "bare-cards")
        os.makedirs(bare_dir)
        for r, card in zip(rows, cards):
            with open(os.path.join(bare_dir, r["id"] + ".vcf"), "w", newline="") as f:
                f.write(card)
        bare_put = os.environ.get("ROSTER_BARE_PUT",
                                  os.path.join(harness.ROOT, "build", "bench", "bare_put"))

        def bare():
            for book in bare_books:
                run([bare_put, radicale.url.rstrip("/") + book, bare_dir])
        t_bare = timed(bare)

        # 2. roster.
        users = [f"roster{i}" for i in range(args.books)]
        config = harness.write_config(os.path.join(work, "roster.toml"), radicale.url,
                                      os.path.join(work, "staff.csv"), users, filter="",
                                      in_flight=args.in_flight)

        def roster_sync():
            code, out, err = harness.roster(config, "sync")
            if code != 0:
                sys.exit(f"roster failed: {err}")
        t_roster = [timed(roster_sync)]
        # The first quiet run straight after the tool's own load, before the
        # other tool writes anything (else it times the other tool's writes).
        first_r = timed(roster_sync)

        # 3. vdirsyncer: one pair per book, the cards as a folder of .vcf files.
        conf = os.path.join(work, "vdirsyncer.conf")
        with open(conf, "w") as f:
            f.write(f'[general]\nstatus_path = "{work}/vd-status/"\n')
            for i in range(args.books):
                book = mkbook(radicale, f"vd{i}", BOOK)
                local = os.path.join(work, "vd-local", str(i))
                os.makedirs(local)
                f.write(f'\n[pair p{i}]\na = "l{i}"\nb = "r{i}"\ncollections = null\n'
                        f'\n[storage l{i}]\ntype = "filesystem"\npath = "{local}"\n'
                        f'fileext = ".vcf"\n'
                        f'\n[storage r{i}]\ntype = "carddav"\nurl = "{radicale.url.rstrip("/")}{book}"\n'
                        f'username = "vd{i}"\npassword = "x"\n')
        for i in range(args.books):
            local = os.path.join(work, "vd-local", str(i))
            for r, card in zip(rows, cards):
                with open(os.path.join(local, r["id"] + ".vcf"), "w", newline="") as f:
                    f.write(card)
        vd = ["vdirsyncer", "-c", conf]
        run(vd + ["discover"], input="y\n" * 100)
        t_vd = [timed(lambda: run(vd + ["sync"]))]
        first_v = timed(lambda: run(vd + ["sync"]))

        # Nothing changed: three runs of each, interleaved; the median counts.
        quiet_r, quiet_v = [], []
        for _ in range(3):
            quiet_r.append(timed(roster_sync))
            quiet_v.append(timed(lambda: run(vd + ["sync"])))
        t_roster.append(first_r)
        t_vd.append(first_v)
        t_roster.append(statistics.median(quiet_r))
        t_vd.append(statistics.median(quiet_v))

        # 1% changed: three rounds, each changing other people; the median counts.
        changed_r, changed_v = [], []
        for round_no in range(3):
            ids = {r["id"] for r in rows[round_no::100][: max(1, args.contacts // 100)]}

            def mutate(rs, ids=ids, round_no=round_no):
                for r in rs:
                    if r["id"] in ids:
                        r["title"] = f"Changed {round_no} " + r["title"]
                return rs
            rows = harness.write_people(os.path.join(work, "staff.csv"), args.contacts, seed=3,
                                        mutate=lambda rs, m=mutate, prev=rows: m(
                                            [dict(p) for p in prev]))
            for i in range(args.books):
                local = os.path.join(work, "vd-local", str(i))
                for r in rows:
                    if r["id"] in ids:
                        with open(os.path.join(local, r["id"] + ".vcf"), "w", newline="") as f:
                            f.write(vcard(r))
            changed_r.append(timed(roster_sync))
            changed_v.append(timed(lambda: run(vd + ["sync"])))
        t_roster.append(statistics.median(changed_r))
        t_vd.append(statistics.median(changed_v))
        print(f"  runs: quiet roster {quiet_r} vdirsyncer {quiet_v}", flush=True)
        print(f"  runs: 1% roster {changed_r} vdirsyncer {changed_v}", flush=True)
    finally:
        radicale.stop()

    n = args.contacts * args.books
    print(f"{args.contacts} contacts into {args.books} address books ({n} cards), Radicale "
          f"on 127.0.0.1, roster max_in_flight={args.in_flight}")
    print(f"  server bound (bare kept-alive PUTs): {t_bare:8.2f} s")
    print(f"  {'':28} {'roster':>9} {'vdirsyncer':>11} {'ratio':>7}")
    labels = ["initial sync", "first quiet run after load", "nothing changed", "1% changed"]
    for label, r, v in zip(labels, t_roster, t_vd):
        print(f"  {label:28} {r:8.2f}s {v:10.2f}s {r / v:7.3f}")
    print(f"  initial sync vs server bound: {t_roster[0] / t_bare:.3f}x (goal <= 1.1)")
    ok = (t_roster[0] <= t_vd[0] and t_roster[0] <= 1.1 * t_bare and
          t_roster[1] <= 0.1 * t_vd[1] and t_roster[2] <= 0.1 * t_vd[2] and
          t_roster[3] <= 0.5 * t_vd[3])
    print("  goals met" if ok else "  GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
