#!/usr/bin/env python3
"""Writes a deterministic demo organisation as CSV (the same seed, the same file).

  tools/gen_people.py --count 500 --seed 1 > staff.csv

Columns: id, first_name, last_name, email, mobile, phone, company, department,
title. Names include non-ASCII letters; some people are in the Contractors
department, which the demo configuration filters out.
"""
import argparse
import csv
import random
import sys
import unicodedata

FIRST = ["Anna", "Björn", "Chloé", "Dmitri", "Eva", "François", "Grzegorz", "Hana", "Ingrid",
         "José", "Katarzyna", "Lars", "María", "Nils", "Øystein", "Paweł", "Quentin", "Rúna",
         "Søren", "Tomás", "Ursula", "Václav", "Wiebke", "Xiao", "Yusuf", "Zoë"]
LAST = ["Andersson", "Brontë", "Čapek", "Dubois", "Eriksen", "Fernández", "García", "Håkansson",
        "Ibáñez", "Jørgensen", "Kowalski", "Löfgren", "Müller", "Nowak", "O'Brien", "Pérez",
        "Quist", "Rossi", "Schäfer", "Tanaka", "Ulrich", "Vasquez", "Weiß", "Xu", "Yilmaz",
        "Żukowski"]
DEPARTMENTS = ["Sales", "Engineering", "Finance", "Support", "Marketing", "Legal", "Contractors"]
TITLES = ["Manager", "Engineer", "Analyst", "Specialist", "Director", "Assistant", "Consultant"]


def people(count, seed):
    rng = random.Random(seed)
    for i in range(count):
        first = rng.choice(FIRST)
        last = rng.choice(LAST)
        dept = "Contractors" if i % 10 == 9 else rng.choice(DEPARTMENTS[:-1])
        local = (first[0] + last).lower()
        local = unicodedata.normalize("NFKD", local.replace("ø", "o").replace("ł", "l").replace("ß", "ss"))
        local = "".join(c for c in local if c.isascii() and c.isalnum())
        yield {
            "id": f"E{100000 + i}",
            "first_name": first,
            "last_name": last,
            "email": f"{local}.{i}@example.com",
            "mobile": f"+44 7700 {900000 + i:06d}"[:17],
            "phone": f"+44 20 7946 {i % 10000:04d}",
            "company": "Example Ltd",
            "department": dept,
            "title": rng.choice(TITLES),
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rows = list(people(args.count, args.seed))
    w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0].keys()) if rows else ["id"],
                       lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


if __name__ == "__main__":
    main()
