#!/usr/bin/env python3
"""Issue 2's end-to-end checks against a real Radicale on 127.0.0.1: 500 people
into 20 address books, a quiet second sync, 5 changes, 5 departures, a user's
own card left alone, lost state, and the deletion guard."""
import os
import sys

import harness
from harness import check

PEOPLE = int(os.environ.get("ROSTER_IT_PEOPLE", "500"))
BOOKS = int(os.environ.get("ROSTER_IT_BOOKS", "20"))
USERS = [f"user{i:02d}" for i in range(BOOKS)]
BOOK = "Company Contacts"
HAND_CARD = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:my-dentist\r\nFN:My Dentist\r\n"
             "TEL;TYPE=work:+44 20 0000 0000\r\nEND:VCARD\r\n")


class State:
    rows = []


def expect_books(s, rows):
    """Every book holds exactly one managed card per row, with the row's content."""
    by_id = {r["id"]: r for r in rows}
    for user in USERS:
        cards = s.radicale.cards(user, BOOK)
        keys = {}
        for name, props in cards.items():
            if "X-ROSTER-KEY" in props:
                key = props["X-ROSTER-KEY"][0]
                check(key not in keys, f"{user}: duplicate card for {key}: {name}, {keys.get(key)}")
                keys[key] = props
        check(set(keys) == set(by_id),
              f"{user}: {len(keys)} managed cards, expected {len(by_id)}; "
              f"missing {sorted(set(by_id) - set(keys))[:5]} extra {sorted(set(keys) - set(by_id))[:5]}")
        for key, props in keys.items():
            row = by_id[key]
            check(props["FN"][0] == f"{row['first_name']} {row['last_name']}",
                  f"{user}/{key}: FN {props['FN']} for {row['first_name']} {row['last_name']}")
            check(props["EMAIL"][0] == row["email"], f"{user}/{key}: EMAIL {props['EMAIL']}")
            check(props["TITLE"][0] == row["title"], f"{user}/{key}: TITLE {props['TITLE']}")
            check(row["mobile"] in props["TEL"], f"{user}/{key}: TEL {props['TEL']}")


def per_target(out, field):
    return {t["user"]: t[field] for t in out["targets"]}


def test_initial_sync_fills_every_book(s):
    State.rows = harness.write_people(s.csv, PEOPLE)
    code, out, err = harness.roster(s.config, "plan")
    check(code == 0, f"plan exit {code}: {err}")
    check(out["totals"]["created"] == PEOPLE * BOOKS, f"plan: {out['totals']}")
    check(s.radicale.book_dir(USERS[0], BOOK) is None, "plan must not create the book")
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"sync exit {code}: {err}")
    check(out["totals"]["created"] == PEOPLE * BOOKS, f"sync: {out['totals']}")
    check(out["totals"]["errors"] == 0, f"sync errors: {out}")
    expect_books(s, State.rows)
    # A card the user added by hand, on their phone.
    book = os.path.basename(s.radicale.book_dir(USERS[0], BOOK))
    status, _ = s.radicale.request("PUT", f"/{USERS[0]}/{book}/my-dentist.vcf",
                                   HAND_CARD.encode(), {"Content-Type": "text/vcard"})
    check(status in (201, 204), f"PUT by hand: {status}")


def test_quiet_sync_writes_nothing_and_keeps_tokens(s):
    tokens = {u: s.radicale.sync_token(u, BOOK) for u in USERS}
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    t = out["totals"]
    check(t["created"] == t["updated"] == t["deleted"] == 0, f"quiet sync wrote: {t}")
    check(t["unchanged"] == PEOPLE * BOOKS, f"unchanged {t['unchanged']}")
    for u in USERS:
        check(s.radicale.sync_token(u, BOOK) == tokens[u], f"{u}: sync token changed")
    code, out, err = harness.roster(s.config, "sync")  # and again: still nothing
    check(out["totals"]["unchanged"] == PEOPLE * BOOKS, f"third sync: {out['totals']}")


def test_five_changed_rows_cost_five_updates_per_book(s):
    def mutate(rows):
        for r in rows[10:15]:
            r["title"] = "Chief " + r["title"]
        return rows
    State.rows = harness.write_people(s.csv, PEOPLE, mutate=mutate)
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    check(set(per_target(out, "updated").values()) == {5}, f"updates: {per_target(out, 'updated')}")
    t = out["totals"]
    check(t["created"] == 0 and t["deleted"] == 0, f"totals {t}")
    expect_books(s, State.rows)


def test_five_removed_rows_cost_five_deletions_per_book(s):
    def mutate(rows):
        for r in rows[10:15]:
            r["title"] = "Chief " + r["title"]
        return rows[:100] + rows[105:]
    State.rows = harness.write_people(s.csv, PEOPLE, mutate=mutate)
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    check(set(per_target(out, "deleted").values()) == {5}, f"deletes: {per_target(out, 'deleted')}")
    check(out["totals"]["updated"] == 0 and out["totals"]["created"] == 0, f"{out['totals']}")
    expect_books(s, State.rows)


def test_users_own_card_is_never_touched(s):
    book = s.radicale.book_dir(USERS[0], BOOK)
    with open(os.path.join(book, "my-dentist.vcf"), encoding="utf-8", newline="") as f:
        check("My Dentist" in f.read(), "the user's card changed or vanished")


def test_lost_state_adopts_existing_cards(s):
    os.remove(s.state)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(s.state + suffix):
            os.remove(s.state + suffix)
    code, out, err = harness.roster(s.config, "sync")
    check(code == 0, f"exit {code}: {err}")
    t = out["totals"]
    check(t["created"] == 0, f"lost state created {t['created']}")
    check(t["adopted"] == len(State.rows) * BOOKS, f"adopted {t['adopted']}")
    check(t["updated"] == 0 and t["deleted"] == 0, f"{t}")
    expect_books(s, State.rows)
    code, out, err = harness.roster(s.config, "sync")
    check(out["totals"]["unchanged"] == len(State.rows) * BOOKS, f"after adoption: {out['totals']}")


def test_deletion_guard_stops_an_emptied_source(s):
    with open(s.csv, "w") as f:
        f.write("id,first_name,last_name,email,mobile,phone,company,department,title\n")
    code, out, err = harness.roster(s.config, "sync")
    check(code == 3, f"guard exit {code}")
    check("deletion guard" in err and "--force" in err, f"message: {err!r}")
    check(len(err.strip().splitlines()) == 1, f"one line expected: {err!r}")
    expect_books(s, State.rows)
    code, out, err = harness.roster(s.config, "sync", "--force")
    check(code == 0, f"forced exit {code}: {err}")
    check(out["totals"]["deleted"] == len(State.rows) * BOOKS, f"{out['totals']}")
    expect_books(s, [])
    test_users_own_card_is_never_touched(s)


def test_status_shows_the_last_run(s):
    p = harness.subprocess.run([harness.ROSTER, "--config", s.config, "status"],
                               capture_output=True, text=True)
    check(p.returncode == 0, p.stderr)
    check(len(p.stdout.strip().splitlines()) == BOOKS, p.stdout)
    check("deleted" in p.stdout, p.stdout)


def main():
    s = harness.Suite("radicale_sync")
    s.radicale = harness.Radicale(s.workdir)
    s.csv = os.path.join(s.workdir, "staff.csv")
    s.state = os.path.join(s.workdir, "roster.db")
    s.config = harness.write_config(os.path.join(s.workdir, "roster.toml"), s.radicale.url, s.csv,
                                    USERS, state=s.state, filter="")
    try:
        return s.run([test_initial_sync_fills_every_book,
                      test_quiet_sync_writes_nothing_and_keeps_tokens,
                      test_five_changed_rows_cost_five_updates_per_book,
                      test_five_removed_rows_cost_five_deletions_per_book,
                      test_users_own_card_is_never_touched,
                      test_lost_state_adopts_existing_cards,
                      test_deletion_guard_stops_an_emptied_source,
                      test_status_shows_the_last_run])
    finally:
        s.close(s.radicale)


if __name__ == "__main__":
    sys.exit(main())
