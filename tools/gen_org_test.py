#!/usr/bin/env python3
"""Tests of tools/gen_org.py (stdlib unittest; a few seconds):

  python3 tools/gen_org_test.py

Checks determinism (in-process and across processes through the CLI), LDIF
syntax (dn first, base64 exactly where needed, folding), the target group
(flattens to exactly N through nesting, with a cycle and a duplicate path),
proportions, phone formats, the JPEGs (SOI/EOI, sizes, sha256 in the manifest;
decoded with djpeg when it is installed) and, when slapadd is installed, that
the LDIF loads into a throwaway mdb database and slapcat shows the entryUUIDs.
"""
import base64
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_org  # noqa: E402

PEOPLE = 1000
SEED = 7
N = 50
BINARY = {"jpegPhoto", "thumbnailPhoto"}
# RFC 2849 SAFE-STRING, checked independently of gen_org.ldif_safe
SAFE = re.compile(r"^(?:[\x01-\x09\x0b\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f]"
                  r"[\x01-\x09\x0b\x0c\x0e-\x7f]*)?$")

_cache = {}


def org():
    if "org" not in _cache:
        _cache["org"] = gen_org.generate(people=PEOPLE, seed=SEED, target_members=N)
    return _cache["org"]


def parsed():
    if "parsed" not in _cache:
        _cache["parsed"] = parse_ldif(org()[0])
    return _cache["parsed"]


def parse_ldif(text, max_line=76):
    """[(dn, {attr: [values]})]; binary attributes as bytes. Asserts syntax."""
    entries = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        logical = []
        for line in block.split("\n"):
            assert max_line is None or len(line) <= max_line, f"long line: {line[:40]}"
            if line.startswith(" "):
                assert logical, "continuation line without a line before it"
                logical[-1] += line[1:]
            else:
                logical.append(line)
        attrs = {}
        for n, line in enumerate(logical):
            attr, sep, rest = line.partition(":")
            assert sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", attr), f"bad line {line[:60]!r}"
            if rest.startswith(": "):
                raw = base64.b64decode(rest[2:], validate=True)
                if attr in BINARY:
                    value = raw
                else:
                    value = raw.decode("utf-8")
                    assert not (SAFE.match(value) and not value.endswith(" ")), \
                        f"needless base64 for {attr}: {value!r}"
            else:
                assert rest.startswith(" ") or rest == "", f"bad separator in {line[:60]!r}"
                value = rest[1:]
                assert attr not in BINARY, f"{attr} not base64"
                assert SAFE.match(value) and not value.endswith(" "), f"unsafe value {line!r}"
            if n == 0:
                assert attr == "dn", f"entry does not start with dn: {line[:60]!r}"
            attrs.setdefault(attr, []).append(value)
        assert len(attrs["dn"]) == 1
        entries.append((attrs.pop("dn")[0], attrs))
    return entries


def flatten(groups, target):
    """(people, visited groups, cycle found, people reachable by >1 group, max depth)."""
    people, seen, depth = set(), {target: 0}, 0
    parents = {}
    stack, cycle = [target], False
    while stack:
        g = stack.pop()
        for m in groups[g]:
            if m in groups:
                if m in seen:
                    cycle = cycle or _reaches(groups, m, g)
                    continue
                seen[m] = seen[g] + 1
                depth = max(depth, seen[m])
                stack.append(m)
            else:
                people.add(m)
                parents.setdefault(m, set()).add(g)
    return people, set(seen), cycle, {p for p, gs in parents.items() if len(gs) > 1}, depth


def _reaches(groups, a, b):
    pending, seen = [a], set()
    while pending:
        g = pending.pop()
        if g == b:
            return True
        if g not in seen:
            seen.add(g)
            pending += [m for m in groups[g] if m in groups]
    return False


class Determinism(unittest.TestCase):
    def test_same_arguments_same_bytes(self):
        text, manifest = org()
        text2, manifest2 = gen_org.generate(people=PEOPLE, seed=SEED, target_members=N)
        self.assertEqual(text, text2)
        self.assertEqual(manifest, manifest2)
        self.assertTrue(text.isascii())

    def test_cli_in_a_fresh_process_matches_module(self):
        text, manifest = org()
        with tempfile.TemporaryDirectory() as d:
            out, man = os.path.join(d, "org.ldif"), os.path.join(d, "org.json")
            subprocess.run([sys.executable, os.path.join(HERE, "gen_org.py"), "--people",
                            str(PEOPLE), "--seed", str(SEED), "--target-members", str(N),
                            "--out", out, "--manifest", man], check=True, capture_output=True)
            with open(out, encoding="ascii", newline="") as f:
                self.assertEqual(f.read(), text)
            with open(man, encoding="utf-8") as f:
                self.assertEqual(json.load(f), json.loads(json.dumps(manifest)))

    def test_other_seed_differs_and_prefix_is_stable(self):
        text, manifest = org()
        other, _ = gen_org.generate(people=300, seed=SEED + 1, large_photos=0, palette=4)
        self.assertNotEqual(text[:20000], other[:20000])
        small = gen_org.plan(people=300, seed=SEED)[0]
        for a, b in zip(small, manifest["people"]):
            self.assertEqual((a["uid"], a["entryUUID"], a["displayName"]),
                             (b["uid"], b["entryUUID"], b["displayName"]))


class Ldif(unittest.TestCase):
    def test_syntax_and_manifest_agree(self):
        text, manifest = org()
        entries = parsed()
        self.assertEqual(len(entries), manifest["counts"]["entries"])
        by_dn = dict(entries)
        base = manifest["base"]
        self.assertEqual(entries[0][0], base)
        for ou in ("People", "Groups", "Alumni"):
            self.assertIn(f"ou={ou},{base}", by_dn)
        for p in manifest["people"]:
            e = by_dn[p["dn"]]
            self.assertEqual(e["objectClass"], ["top", "person", "organizationalPerson",
                                                "inetOrgPerson", "rosterADUser"])
            self.assertEqual(e["entryUUID"], [p["entryUUID"]])
            self.assertEqual(e["uid"], [p["uid"]])
            self.assertEqual(e["displayName"], [p["displayName"]])
            self.assertEqual(e.get("mail"), [p["mail"]] if p["mail"] else None)
            self.assertEqual(e.get("telephoneNumber"),
                             [p["telephoneNumber"]] if p["telephoneNumber"] else None)
            self.assertEqual(e.get("mobile"), [p["mobile"]] if p["mobile"] else None)
            self.assertEqual(e["employeeType"], [p["employeeType"]])
            uac = int(e["userAccountControl"][0])
            self.assertEqual(bool(uac & 2), p["disabled"])
            self.assertEqual(e.get("msExchHideFromAddressLists"), ["TRUE"] if p["hidden"] else None)
            self.assertEqual(e.get("extensionAttribute1"), ["mobile"] if p["opt_out"] else None)
            if p["mail"]:
                self.assertIn("SMTP:" + p["mail"], e["proxyAddresses"])
            if p["manager"]:
                self.assertIn(p["manager"], by_dn)
            for attr in BINARY:
                if p["photo_attribute"] == attr:
                    data = e[attr][0]
                    self.assertEqual(hashlib.sha256(data).hexdigest(), p["photo_sha256"])
                    self.assertEqual(len(data), p["photo_size"])
                else:
                    self.assertNotIn(attr, e)
            if p["region"]:
                self.assertEqual(len(e["l"]), 1)
                self.assertEqual(len(e["st"]), 1)
        # the non-ASCII values did go through base64 and came back intact
        names = {p["cn"] for p in manifest["people"]}
        for n in ("Björn Müller", "Ольга Иванова", "Ελένη Παπαδοπούλου", "王伟",
                  "Đặng Thị Lan"):
            self.assertIn(n, names)
        self.assertIn("dn:: ", gen_org.generate(people=30, seed=1, large_photos=0, palette=2,
                                                target_members=6,
                                                base="ou=Büro,dc=example,dc=org")[0])

    def test_unfolded_output_parses_the_same(self):
        kw = dict(people=300, seed=SEED, target_members=20, large_photos=1, palette=4)
        flat, _ = gen_org.generate(fold=False, **kw)
        self.assertEqual(parse_ldif(flat, max_line=None), parse_ldif(gen_org.generate(**kw)[0]))
        self.assertTrue(any(len(l) > 76 for l in flat.split("\n")))

    def test_ldif_safe(self):
        for v, safe in (("abc", True), ("", True), (" x", False), ("x ", False), (":x", False),
                        ("<x", False), ("a:b<c", True), ("é", False), ("a\nb", False)):
            self.assertEqual(gen_org.ldif_safe(v), safe, v)
        self.assertEqual(gen_org.ldif_line("cn", "Zoë"),
                         "cn:: " + base64.b64encode("Zoë".encode()).decode())


class TargetGroup(unittest.TestCase):
    def test_flattens_to_exactly_n(self):
        text, manifest = org()
        entries = dict(parsed())
        groups = {dn: e["member"] for dn, e in entries.items()
                  if "groupOfNames" in e["objectClass"]}
        target = manifest["target_group"]
        people, visited, cycle, dups, depth = flatten(groups, target["dn"])
        self.assertEqual(len(people), N)
        self.assertTrue(cycle, "no membership cycle")
        self.assertTrue(dups, "no person reachable by two paths")
        self.assertGreaterEqual(depth, 2, "nesting is not two levels deep")
        self.assertTrue(all(len(m) >= 1 for m in groups.values()))
        self.assertEqual(sorted(entries[p]["entryUUID"][0] for p in people), target["entryUUIDs"])
        self.assertEqual(sorted(entries[p]["uid"][0] for p in people), target["uids"])
        self.assertEqual(sorted(entries[p]["mail"][0] for p in people), target["mails"])
        self.assertEqual(set(target["duplicate_paths"]), {entries[p]["uid"][0] for p in dups})
        members = [entries[p] for p in people]
        for e in members:
            self.assertIn(e["employeeType"][0], ("Employee", "Contractor"))
            self.assertFalse(int(e["userAccountControl"][0]) & 2)
            self.assertNotIn("msExchHideFromAddressLists", e)
            self.assertIn("mail", e)
        self.assertTrue(any(e["employeeType"] == ["Contractor"] for e in members))
        self.assertTrue(any("extensionAttribute1" in e for e in members))
        self.assertTrue(any("thumbnailPhoto" in e for e in members))
        large = [p for p in manifest["people"] if p["large_photo"]]
        self.assertEqual(len(large), 3)
        self.assertTrue(all(p["target_member"] for p in large))

    def test_other_sizes(self):
        for n in (6, 12, 200):
            _, m = gen_org.generate(people=600, seed=3, target_members=n, large_photos=1, palette=3)
            groups = {g["dn"]: g["members"] for g in m["groups"]}
            people, _, cycle, dups, depth = flatten(groups, m["target_group"]["dn"])
            self.assertEqual((len(people), cycle, bool(dups), depth >= 2), (n, True, True, True))
        with self.assertRaises(ValueError):
            gen_org.generate(people=100, seed=1, target_members=1000)


class Proportions(unittest.TestCase):
    def test_roughly_right(self):
        _, m = org()
        c, P = m["counts"], m["people"]
        total = len(P)

        def share(k):
            return c[k] / total
        self.assertEqual(c["people"], PEOPLE)
        self.assertTrue(0.015 < share("disabled") < 0.05, c)
        self.assertTrue(0.008 < share("hidden") < 0.035, c)
        self.assertTrue(0.03 < share("opt_out") < 0.08, c)
        self.assertTrue(0.25 < share("jpegPhoto") < 0.35, c)
        self.assertTrue(0.05 < share("thumbnailPhoto") < 0.15, c)
        self.assertTrue(0.003 < share("services") < 0.025, c)
        self.assertGreaterEqual(c["no_contact"], 1)
        self.assertGreaterEqual(c["unparseable_phones"], 3)
        for p in P:
            self.assertEqual(p["employeeType"] == "Contractor",
                             p["index"] % 10 == 9 and not p["is_service"])
            if p["is_service"]:
                self.assertTrue(p["uid"].startswith("svc-"))
                self.assertIsNone(p["telephoneNumber"])
                self.assertIsNone(p["mobile"])
            if p["opt_out"]:
                self.assertIsNotNone(p["mobile"])
            self.assertEqual(p["region"] is None, p["is_service"])
        self.assertEqual({p["region"] for p in P} - {None}, {"US", "GB", "DE", "FR"})
        for key in ("uid", "entryUUID", "mail", "dn"):
            vals = [p[key] for p in P if p[key]]
            self.assertEqual(len(vals), len(set(vals)), key)
        scripts = {"Han": r"[\u4e00-\u9fff]", "Greek": r"[\u0370-\u03ff]",
                   "Cyrillic": r"[\u0400-\u04ff]", "Latin diacritics": r"[À-ž]"}
        for name, rx in scripts.items():
            self.assertTrue(any(re.search(rx, p["cn"]) for p in P), name)

    def test_phone_formats(self):
        _, m = org()
        phones = [(p["region"], p[k], p[k + "_e164"]) for p in m["people"]
                  for k in ("telephoneNumber", "mobile") if p[k]]
        patterns = {
            "US (212) 555-0147": r"\(\d{3}\) 555-01\d\d",
            "US 212.555.0147": r"\d{3}\.555\.01\d\d",
            "UK 020 7946 0958": r"020 7946 0\d{3}",
            "UK +44 (0)20 7946 0958": r"\+44 \(0\)20 7946 0\d{3}",
            "DE 030 12345678": r"030 \d{8}",
            "DE (030) 1234-5678": r"\(030\) \d{4}-\d{4}",
            "FR 01 23 45 67 89": r"0\d( \d\d){4}",
            "E.164": r"\+\d{10,14}",
            "unparseable": r"ext\. 42|n/a",
        }
        for name, rx in patterns.items():
            self.assertTrue(any(re.fullmatch(rx, v) for _, v, _ in phones), name)
        cc = {"US": "+1", "GB": "+44", "DE": "+49", "FR": "+33"}
        for region, value, e164 in phones:
            if e164 is None:
                self.assertIn(value, gen_org.UNPARSEABLE)
                continue
            self.assertTrue(e164.startswith(cc[region]), (region, value))
            digits = re.sub(r"\D", "", value.replace("(0)", ""))
            self.assertTrue(e164[1:].endswith(digits.lstrip("0")[-7:]), (value, e164))


class Photos(unittest.TestCase):
    def photos(self):
        out = {}
        entries = parsed()
        for _, e in entries:
            for attr in BINARY:
                for data in e.get(attr, []):
                    out[hashlib.sha256(data).hexdigest()] = (attr, data)
        return out

    def test_jpeg_markers_and_sizes(self):
        photos = self.photos()
        self.assertGreater(len(photos), 20)
        for attr, data in photos.values():
            self.assertEqual(data[:2], b"\xff\xd8")
            self.assertEqual(data[-2:], b"\xff\xd9")
            self.assertIn(b"\xff\xc0", data)            # baseline SOF0
            self.assertTrue(len(data) < 10000 or 300000 <= len(data) <= 600000, len(data))
        self.assertTrue(any(len(d) >= 300000 for _, d in photos.values()))

    @unittest.skipUnless(shutil.which("djpeg"), "djpeg not installed (libjpeg-turbo-progs)")
    def test_djpeg_decodes_every_photo(self):
        for attr, data in self.photos().values():
            p = subprocess.run(["djpeg", "-pnm"], input=data, capture_output=True)
            self.assertEqual(p.returncode, 0)
            self.assertEqual(p.stderr, b"", p.stderr)   # no "corrupt data" warnings
            kind, w, h = p.stdout.split(maxsplit=4)[:3]
            size = int(w)
            self.assertEqual(int(h), size)
            self.assertIn(size, (64,) if attr == "thumbnailPhoto" else (96, 1600))

    @unittest.skipUnless(shutil.which("djpeg"), "djpeg not installed (libjpeg-turbo-progs)")
    def test_decoded_pixels_match_the_source(self):
        pixels = gen_org.avatar_pixels(SEED, 5)
        for grey in (False, True):
            data = gen_org.avatar_jpeg(SEED, 5, grey=grey)
            out = subprocess.run(["djpeg", "-pnm"], input=data, capture_output=True,
                                 check=True).stdout
            decoded = out.split(maxsplit=4)[4]
            if grey:
                src = [v for row in gen_org.rgb_to_planes(pixels)[0] for v in row]
            else:
                src = [c for row in pixels for px in row for c in px]
            mse = sum((a - b) ** 2 for a, b in zip(src, decoded)) / len(src)
            self.assertGreater(10 * math.log10(255 ** 2 / mse), 30)

    def test_dct_matches_the_definition(self):
        block = [((x * 37 + y * 11) % 200) - 100 for y in range(8) for x in range(8)]
        div = [1.0 / (gen_org._AAN[i >> 3] * gen_org._AAN[i & 7] * 8.0) for i in range(64)]
        fast = gen_org.fdct_quantise(block, div)
        for k, nat in enumerate(gen_org.ZIGZAG):
            u, v = nat >> 3, nat & 7
            cu, cv = (math.sqrt(0.5) if u == 0 else 1), (math.sqrt(0.5) if v == 0 else 1)
            ref = 0.25 * cu * cv * sum(block[y * 8 + x] * math.cos((2 * y + 1) * u * math.pi / 16)
                                       * math.cos((2 * x + 1) * v * math.pi / 16)
                                       for y in range(8) for x in range(8))
            self.assertLessEqual(abs(fast[k] - ref), 0.51, (u, v))


@unittest.skipUnless(os.path.exists("/usr/sbin/slapadd"), "slapadd not installed")
class Slapadd(unittest.TestCase):
    def test_loads_and_keeps_entry_uuids(self):
        text, m = org()
        with tempfile.TemporaryDirectory(prefix="gen-org-test-") as d:
            db = os.path.join(d, "db")
            os.makedirs(db)
            conf = os.path.join(d, "slapd.conf")
            includes = "".join(f"include /etc/ldap/schema/{s}.schema\n"
                               for s in ("core", "cosine", "inetorgperson", "nis"))
            with open(conf, "w") as f:
                f.write(f"{includes}include {ROOT}/tests/integration/ldap/roster-test.schema\n"
                        "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
                        f"database mdb\nmaxsize 4294967296\ndbnosync\nsuffix \"{m['base']}\"\n"
                        f"rootdn \"cn=admin,{m['base']}\"\ndirectory {db}\n")
            ldif = os.path.join(d, "org.ldif")
            with open(ldif, "w", encoding="ascii", newline="\n") as f:
                f.write(text)
            p = subprocess.run(["/usr/sbin/slapadd", "-f", conf, "-l", ldif],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            cat = subprocess.run(["/usr/sbin/slapcat", "-f", conf], capture_output=True,
                                 text=True, check=True, timeout=300).stdout
        loaded = parse_ldif(cat, max_line=None)
        self.assertEqual(len(loaded), m["counts"]["entries"])
        uuids = {e["entryUUID"][0] for _, e in loaded}
        want = {p["entryUUID"] for p in m["people"]} | {g["entryUUID"] for g in m["groups"]}
        self.assertTrue(want <= uuids)
        self.assertTrue(set(m["target_group"]["entryUUIDs"]) <= uuids)
        by_dn = dict(loaded)
        for p in m["people"]:
            if p["large_photo"]:
                data = by_dn[p["dn"]]["jpegPhoto"][0]
                self.assertEqual(hashlib.sha256(data).hexdigest(), p["photo_sha256"])


if __name__ == "__main__":
    unittest.main()
