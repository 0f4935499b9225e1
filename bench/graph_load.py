#!/usr/bin/env python3
"""Issue 9's benchmark: the initial load of 2,000 directory people into the
"Company Contacts" folder of 100 mailboxes through the Graph emulator
(tests/integration/fakegraph.py) with Exchange Online's documented limits
(4 concurrent requests per app and mailbox, 10,000 requests per 10 minutes,
150 MB of uploads per 5 minutes; every $batch sub-request counts) and a
service latency per request, then a run with nothing changed.

It prints, from the emulator's own request log:
- HTTP calls against the minimum (ceil(2,000 / 20) $batch calls per mailbox
  plus the folder's set-up), and sub-requests (goal: at most 1.05x);
- wall time of the load against the least the limits and the latency allow,
  as the emulator computes it (/_ctl/bound; goal: at most 1.2x);
- the share of requests answered 429 (goal: under 1%);
- requests per mailbox of the run with nothing changed (goal: at most 2, plus
  the directory's delta checks).

    python3 bench/graph_load.py [--people 2000] [--mailboxes 100] [--latency-ms 100]
                                [--in-flight 16]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import graph_sync_test as g  # noqa: E402

ROSTER = os.environ.get("ROSTER_BIN", os.path.join(ROOT, "build", "src", "cli", "roster"))

CONFIG = """
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
read = ["users"]
photo_max_pixels = 0

[targets.m365]
type = "graph"
tenant = "contoso"
max_in_flight = {in_flight}

[[rules]]
name = "gal"
source = "gal"
target = "m365"
addressbook = "Company Contacts"
filter = "department != 'Mailboxes'"
users_from = {{ source = "gal", group = "Bench mailboxes" }}
max_delete_percent = 100
"""


def directory(people, mailboxes):
    users = []
    for i in range(people):
        u = g.user(i)
        u.update(accountEnabled=True, userType="Member", mailbox=False)
        u.pop("onPremisesExtensionAttributes", None)
        users.append(u)
    owners = []
    for j in range(mailboxes):
        owners.append({"id": f"30000000-0000-4000-8000-{j:012d}",
                       "userPrincipalName": f"mbx{j:03d}@contoso.com",
                       "displayName": f"Mailbox {j}", "department": "Mailboxes",
                       "accountEnabled": True, "userType": "Member", "mailbox": True})
    group = {"id": "20000000-0000-4000-8000-000000000009", "displayName": "Bench mailboxes",
             "members": [o["id"] for o in owners]}
    return {"users": users + owners, "groups": [group]}


def summary(graph):
    return graph.ctl("GET", "log/summary")


def run(config):
    t0 = time.time()
    before = os.times()
    p = subprocess.run([ROSTER, "--config", config, "--json", "sync"], capture_output=True,
                       text=True, timeout=3600)
    wall = time.time() - t0
    after = os.times()
    out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
    if out is not None:  # roster's own CPU (user + system), from the OS
        out["_cpu_seconds"] = (after.children_user - before.children_user +
                               after.children_system - before.children_system)
    if p.returncode != 0:
        print(p.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"roster sync exited {p.returncode}")
    return out, wall


def per_mailbox(graph):
    log = graph.ctl("GET", "log?offset=0&limit=1000000")["entries"]
    counts, directory_calls = {}, 0
    for e in log:
        if e.get("parent") is not None or e["kind"] == "token":
            continue
        if e.get("mailbox"):
            counts[e["mailbox"]] = counts.get(e["mailbox"], 0) + 1
        else:
            directory_calls += 1
    return counts, directory_calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--mailboxes", type=int, default=100)
    ap.add_argument("--latency-ms", type=int, default=100)
    # Mailboxes served at once (the target's max_in_flight, at most 16). The
    # emulator's bound lets a client spread a mailbox's work over any of its
    # P slots (100 / 16 = 6.25 mailbox-times); a client that serves each
    # mailbox from start to end needs ceil(100 / 16) = 7: both are printed.
    ap.add_argument("--in-flight", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="roster-graphbench-") as work:
        graph = g.Graph(work, "--latency-ms", str(args.latency_ms))
        try:
            graph.ctl("POST", "load", directory(args.people, args.mailboxes))
            secret = g.write_secret(os.path.join(work, "graph.secret"))
            config = os.path.join(work, "roster.toml")
            with open(config, "w") as f:
                f.write(CONFIG.format(state=os.path.join(work, "roster.db"), tenant=g.TENANT,
                                      client_id=g.CLIENT_ID, secret=secret, origin=graph.origin,
                                      in_flight=args.in_flight))
            graph.ctl("POST", "log/reset")
            out, wall = run(config)
            s = summary(graph)
            counts, directory_calls = per_mailbox(graph)
            batches_per_mailbox = math.ceil(args.people / 20)
            mailbox_calls = sum(counts.values())
            setup = (mailbox_calls / max(1, len(counts))) - batches_per_mailbox
            minimum = args.mailboxes * (2 + batches_per_mailbox)
            bound = graph.ctl("GET", f"bound?mailboxes={args.mailboxes}&contacts={args.people}"
                                     f"&setup=2&latency_ms={args.latency_ms}"
                                     f"&parallel={args.in_flight}")
            created = out["totals"]["created"]
            print(f"initial load: {created} contacts created into {len(counts)} mailboxes "
                  f"in {wall:.1f} s")
            print(f"  HTTP calls to mailboxes: {mailbox_calls} (minimum {minimum}: "
                  f"{batches_per_mailbox} $batch calls + 2 set-up per mailbox; "
                  f"ratio {mailbox_calls / minimum:.3f}); set-up calls per mailbox "
                  f"{setup:.1f}; directory calls {directory_calls}")
            print(f"  sub-requests: {s['sub_requests']}; $batch calls: "
                  f"{s['batch_calls']}; all HTTP calls: {s['http_requests']} "
                  f"({s['token_requests']} for tokens)")
            throttled = s["throttled_429"]
            total = s["http_requests"] + s["sub_requests"] - s["batch_calls"]
            print(f"  429 answers: {throttled} of {total} requests and sub-requests "
                  f"({100.0 * throttled / max(1, total):.2f}%)")
            rounds = math.ceil(args.mailboxes / max(1, args.in_flight))
            whole = bound["per_mailbox_seconds"] * rounds
            print(f"  wall time {wall:.1f} s against the emulator's bound "
                  f"{bound['bound_seconds']:.1f} s (ratio {wall / bound['bound_seconds']:.3f}); "
                  f"against {whole:.1f} s for {rounds} whole rounds of {args.in_flight} "
                  f"mailboxes (ratio {wall / whole:.3f}); emulator's first-to-last "
                  f"{s['wall_seconds']:.1f} s, its CPU {s['server_cpu_seconds']:.1f} s; "
                  f"roster's CPU {out.get('_cpu_seconds', 0.0):.1f} s")
            graph.ctl("POST", "log/reset")
            out, wall = run(config)
            counts, directory_calls = per_mailbox(graph)
            t = out["totals"]
            print(f"nothing changed: {wall:.1f} s, writes {t['created'] + t['updated'] + t['deleted']}, "
                  f"requests per mailbox max {max(counts.values()) if counts else 0}, "
                  f"directory calls {directory_calls}")
            print("summary json: " + json.dumps(s, sort_keys=True)[:2000])
        finally:
            graph.stop()


if __name__ == "__main__":
    main()
