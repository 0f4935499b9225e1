#!/usr/bin/env python3
"""Writes a deterministic test organisation as LDIF, plus a JSON manifest.

  tools/gen_org.py --people 5000 --seed 1 --out org.ldif --manifest org.json

The same arguments give byte-identical output (and person i is the same person
whatever --people is). Python 3.11 standard library only.

Layout under --base (default dc=example,dc=org): the base entry, ou=People
(every person and service account, flat), ou=Groups, ou=Alumni (empty, for
"moved" tests). People are inetOrgPerson + rosterADUser (see
tests/integration/ldap/roster-test.schema) with AD-like attributes
(userAccountControl 512, +2 when disabled, 66048 for services; msExchHideFromAddressLists,
proxyAddresses, company, extensionAttribute1="mobile" as opt-out, jpegPhoto or
thumbnailPhoto: real baseline JPEGs from the small encoder below), non-ASCII
names in several scripts, phone numbers of the US, GB, DE and FR in several
national and international formats (fictional ranges that libphonenumber
accepts as valid) and a few unparseable ones.

Groups (groupOfNames): cn=dept-<name> per department, cn=all-staff, and the
target group cn=roster-users whose flattened membership is exactly
--target-members people, through nested groups:

  roster-users -> (direct people), roster-emea, roster-americas
  roster-emea -> (FR people), roster-emea-uk, roster-emea-de
  roster-emea-uk -> (GB people, plus one person also a direct member of roster-users)
  roster-emea-de -> (DE people, plus one person also in roster-contractors)
  roster-americas -> (US people), roster-contractors
  roster-contractors -> (contractors), roster-americas        <- a cycle

As a module:

  import gen_org
  ldif_text, manifest = gen_org.generate(people=5000, seed=1)
  with open("org.ldif", "w", encoding="ascii", newline="\\n") as f:
      manifest = gen_org.write_ldif(f, people=50000, seed=1)   # streams

The LDIF is pure ASCII: any value that is not LDIF-safe (non-ASCII, leading
space, colon or "<", trailing space) and every photo is base64 ("attr:: ").
Lines longer than 76 characters are folded (continuation lines start with one
space) unless fold=False.

The manifest (JSON; the dict write_ldif/generate return): base, people_dn,
groups_dn, alumni_dn, domain, alias_domain, arguments, counts; target_group
{dn, count, entryUUIDs, uids, mails (sorted, of the flattened members),
nested_groups, cycle, duplicate_paths {uid: [group dns]}}; groups [{dn, cn,
entryUUID, members}]; people [{index, uid, dn, entryUUID, cn, displayName,
givenName, sn, mail, telephoneNumber, telephoneNumber_e164, mobile,
mobile_e164 (values as written; E.164 null when unparseable), region
(US/GB/DE/FR, null for services), l, department, manager, employeeType,
userAccountControl, disabled, hidden, opt_out (field names), is_service,
no_contact, has_photo, photo_attribute, photo_sha256, photo_size, large_photo,
target_member, groups (direct group dns)}].
"""
import argparse
import base64
import hashlib
import io
import itertools
import json
import operator
import os
import random
import struct
import sys
import time
import uuid

# ----------------------------------------------------------------------------
# A small baseline JPEG encoder (ITU T.81: 8x8 float AAN forward DCT, the
# Annex K quantisation tables scaled by quality as libjpeg does, the Annex K
# Huffman tables, no subsampling, one scan).

# Zig-zag order: natural index (row * 8 + col) of the k-th coefficient.
ZIGZAG = []
for _s in range(15):
    _rows = range(max(0, _s - 7), min(_s, 7) + 1)
    for _r in (_rows if _s % 2 else reversed(_rows)):
        ZIGZAG.append(_r * 8 + (_s - _r))
_ZZ_GET = operator.itemgetter(*ZIGZAG)

STD_LUMINANCE_Q = [
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99]
STD_CHROMINANCE_Q = [
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32

# (counts of codes of length 1..16, symbols) per Annex K.3.
DC_LUMINANCE = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)))
DC_CHROMINANCE = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)))
AC_LUMINANCE = ([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
    0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
    0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
    0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
    0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
    0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
    0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
    0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
    0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa])
AC_CHROMINANCE = ([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
    0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
    0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
    0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
    0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
    0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
    0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
    0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
    0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
    0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
    0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa])

# AAN scale factors: the float AAN DCT leaves coefficient (u, v) multiplied by
# 8 * AAN[u] * AAN[v]; the quantisation divisors undo that.
_AAN = [1.0, 1.387039845, 1.306562965, 1.175875602, 1.0, 0.785694958, 0.541196100, 0.275899379]


def _huffman_codes(spec):
    """Annex C: the code (as a '0'/'1' string) of each symbol of a table spec."""
    counts, symbols = spec
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            codes[symbols[k]] = format(code, f"0{length}b")
            code += 1
            k += 1
        code <<= 1
    return codes


def _value_bits(v):
    """(category, appended bits) of a DC difference or AC value (F.1.2.1)."""
    s = abs(v).bit_length()
    if s == 0:
        return 0, ""
    return s, format(v if v > 0 else v + (1 << s) - 1, f"0{s}b")


class _Tables:
    """Quantisation divisors and Huffman lookups for one quality setting."""
    _cache = {}

    @classmethod
    def get(cls, quality):
        t = cls._cache.get(quality)
        if t is None:
            t = cls._cache[quality] = cls(quality)
        return t

    def __init__(self, quality):
        quality = max(1, min(100, quality))
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        self.q = [[max(1, min(255, (b * scale + 50) // 100)) for b in base]
                  for base in (STD_LUMINANCE_Q, STD_CHROMINANCE_Q)]
        self.div = [[1.0 / (q[i] * _AAN[i >> 3] * _AAN[i & 7] * 8.0) for i in range(64)]
                    for q in self.q]
        # per table class: [luminance, chrominance]
        dc_codes = [_huffman_codes(DC_LUMINANCE), _huffman_codes(DC_CHROMINANCE)]
        self.ac_codes = [_huffman_codes(AC_LUMINANCE), _huffman_codes(AC_CHROMINANCE)]
        vb = [_value_bits(v) for v in range(-2047, 2048)]
        self.value_bits = vb
        # dc[t][diff + 2047] -> full bit string of a DC difference
        self.dc = [[codes[s] + bits for s, bits in vb] for codes in dc_codes]
        self.ac_cache = [{}, {}]

    def ac(self, t, run, v):
        key = (run << 12) | (v + 2048)
        cache = self.ac_cache[t]
        s = cache.get(key)
        if s is None:
            cat, bits = self.value_bits[v + 2047]
            s = cache[key] = self.ac_codes[t][(run << 4) | cat] + bits
        return s

    def encode_ac(self, t, zz):
        """The AC part of one block's entropy-coded bits (zz in zig-zag order)."""
        out = []
        run = 0
        zrl = self.ac_codes[t][0xF0]
        for k in range(1, 64):
            v = zz[k]
            if v:
                while run > 15:
                    out.append(zrl)
                    run -= 16
                out.append(self.ac(t, run, v))
                run = 0
            else:
                run += 1
        if run:
            out.append(self.ac_codes[t][0x00])
        return "".join(out)


def fdct_quantise(block, div):
    """Float AAN forward DCT (as libjpeg's jfdctflt) of 64 level-shifted
    samples, quantised with the divisors; returns coefficients in zig-zag order."""
    t = list(block)
    for r in range(0, 64, 8):
        d0, d1, d2, d3, d4, d5, d6, d7 = t[r:r + 8]
        t[r:r + 8] = _fdct8(d0, d1, d2, d3, d4, d5, d6, d7)
    for c in range(8):
        d0, d1, d2, d3, d4, d5, d6, d7 = t[c::8]
        t[c::8] = _fdct8(d0, d1, d2, d3, d4, d5, d6, d7)
    return _ZZ_GET([round(a * b) for a, b in zip(t, div)])


def _fdct8(d0, d1, d2, d3, d4, d5, d6, d7):
    tmp0 = d0 + d7
    tmp7 = d0 - d7
    tmp1 = d1 + d6
    tmp6 = d1 - d6
    tmp2 = d2 + d5
    tmp5 = d2 - d5
    tmp3 = d3 + d4
    tmp4 = d3 - d4
    tmp10 = tmp0 + tmp3
    tmp13 = tmp0 - tmp3
    tmp11 = tmp1 + tmp2
    tmp12 = tmp1 - tmp2
    z1 = (tmp12 + tmp13) * 0.707106781
    o0 = tmp10 + tmp11
    o4 = tmp10 - tmp11
    o2 = tmp13 + z1
    o6 = tmp13 - z1
    tmp10 = tmp4 + tmp5
    tmp11 = tmp5 + tmp6
    tmp12 = tmp6 + tmp7
    z5 = (tmp10 - tmp12) * 0.382683433
    z2 = 0.541196100 * tmp10 + z5
    z4 = 1.306562965 * tmp12 + z5
    z3 = tmp11 * 0.707106781
    z11 = tmp7 + z3
    z13 = tmp7 - z3
    return (o0, z11 + z4, o2, z13 - z2, o4, z13 + z2, o6, z11 - z4)


def _jpeg_headers(width, height, tables, ncomp):
    """SOI, APP0 (JFIF 1.01), DQT, SOF0, DHT and SOS for ncomp 1 (grey) or 3 (YCbCr)."""
    ntab = 1 if ncomp == 1 else 2
    out = bytearray(b"\xff\xd8")
    out += b"\xff\xe0" + struct.pack(">H5sBBBHHBB", 16, b"JFIF\0", 1, 1, 0, 1, 1, 0, 0)
    dqt = bytearray()
    for tid in range(ntab):
        dqt.append(tid)
        dqt += bytes(tables.q[tid][z] for z in ZIGZAG)
    out += b"\xff\xdb" + struct.pack(">H", 2 + len(dqt)) + dqt
    sof = struct.pack(">BHHB", 8, height, width, ncomp)
    for c in range(ncomp):
        sof += bytes([c + 1, 0x11, 0 if c == 0 else 1])
    out += b"\xff\xc0" + struct.pack(">H", 2 + len(sof)) + sof
    dht = bytearray()
    specs = [(0, 0, DC_LUMINANCE), (1, 0, AC_LUMINANCE)]
    if ncomp == 3:
        specs += [(0, 1, DC_CHROMINANCE), (1, 1, AC_CHROMINANCE)]
    for cls, tid, (counts, symbols) in specs:
        dht.append((cls << 4) | tid)
        dht += bytes(counts) + bytes(symbols)
    out += b"\xff\xc4" + struct.pack(">H", 2 + len(dht)) + dht
    sos = bytes([ncomp])
    for c in range(ncomp):
        sos += bytes([c + 1, 0x00 if c == 0 else 0x11])
    sos += bytes([0, 63, 0])
    out += b"\xff\xda" + struct.pack(">H", 2 + len(sos)) + sos
    return bytes(out)


def _pack_bits(parts):
    """Entropy-coded segment: bits padded with 1s, 0xFF stuffed with 0x00."""
    s = "".join(parts)
    s += "1" * (-len(s) % 8)
    data = int(s, 2).to_bytes(len(s) // 8, "big") if s else b""
    return data.replace(b"\xff", b"\xff\x00")


def encode_jpeg(width, height, planes, quality=75):
    """A baseline JPEG of 1 (grey) or 3 (Y, Cb, Cr) planes, each a list of
    rows of 0..255 ints; width and height are padded to multiples of 8 by
    repeating the last column and row."""
    tables = _Tables.get(quality)
    ncomp = len(planes)
    pw, ph = -(-width // 8) * 8, -(-height // 8) * 8
    padded = []
    for plane in planes:
        rows = [list(r[:width]) + [r[width - 1]] * (pw - width) for r in plane[:height]]
        rows += [rows[-1]] * (ph - height)
        padded.append([[v - 128 for v in r] for r in rows])
    parts = []
    prev = [0] * ncomp
    caches = [{} for _ in range(ncomp)]
    for by in range(0, ph, 8):
        bands = [p[by:by + 8] for p in padded]
        for bx in range(0, pw, 8):
            for c in range(ncomp):
                t = 0 if c == 0 else 1
                key = tuple(itertools.chain.from_iterable(r[bx:bx + 8] for r in bands[c]))
                hit = caches[c].get(key)
                if hit is None:
                    zz = fdct_quantise(key, tables.div[t])
                    hit = caches[c][key] = (zz[0], tables.encode_ac(t, zz))
                dc, ac = hit
                parts.append(tables.dc[t][dc - prev[c] + 2047])
                parts.append(ac)
                prev[c] = dc
    return _jpeg_headers(width, height, tables, ncomp) + _pack_bits(parts) + b"\xff\xd9"


def rgb_to_planes(pixels):
    """JFIF RGB -> Y, Cb, Cr planes (rows of ints 0..255) from rows of (r, g, b)."""
    memo = {}
    ys, cbs, crs = [], [], []
    for row in pixels:
        y, cb, cr = [], [], []
        for px in row:
            v = memo.get(px)
            if v is None:
                r, g, b = px
                v = memo[px] = (
                    min(255, max(0, round(0.299 * r + 0.587 * g + 0.114 * b))),
                    min(255, max(0, round(-0.168736 * r - 0.331264 * g + 0.5 * b + 128))),
                    min(255, max(0, round(0.5 * r - 0.418688 * g - 0.081312 * b + 128))))
            y.append(v[0])
            cb.append(v[1])
            cr.append(v[2])
        ys.append(y)
        cbs.append(cb)
        crs.append(cr)
    return [ys, cbs, crs]


def avatar_jpeg(seed, k, size=96, quality=75, grey=False):
    """Palette photo k (see avatar_pixels) as a colour or greyscale JPEG."""
    planes = rgb_to_planes(avatar_pixels(seed, k, size))
    return encode_jpeg(size, size, planes[:1] if grey else planes, quality)


def avatar_pixels(seed, k, size=96):
    """Rows of (r, g, b): a vertical gradient, a head-and-shoulders silhouette
    in a per-photo colour and a 2x3 badge of square 'initials' blocks (k's bits)."""
    rng = random.Random(f"gen_org photo {seed} {k} {size}")
    c1 = [rng.randrange(30, 200) for _ in range(3)]
    c2 = [rng.randrange(30, 200) for _ in range(3)]
    fg = [rng.randrange(150, 256) for _ in range(3)]
    s = size / 96.0
    hx = (48 + rng.randrange(-6, 7)) * s
    hy = (38 + rng.randrange(-4, 5)) * s
    hr = (15 + rng.randrange(0, 5)) * s
    sx, sy, srx, sry = 48 * s, 100 * s, (32 + rng.randrange(0, 9)) * s, 34 * s
    cell = max(2, round(6 * s))
    badge = (k * 7 + 5) & 63 or 1
    pixels = []
    for y in range(size):
        f = y / (size - 1)
        bg = tuple(round(a + (b - a) * f) for a, b in zip(c1, c2))
        row = []
        for x in range(size):
            if ((x - hx) ** 2 + (y - hy) ** 2 <= hr * hr
                    or ((x - sx) / srx) ** 2 + ((y - sy) / sry) ** 2 <= 1.0):
                row.append(tuple(fg))
                continue
            bxi, byi = (x - cell) // cell, (y - cell) // cell
            if 0 <= bxi < 3 and 0 <= byi < 2 and (badge >> (byi * 3 + bxi)) & 1:
                row.append((250, 250, 250))
                continue
            row.append(bg)
        pixels.append(row)
    return pixels


def large_jpeg(size=1600, quality=90, noise=5, seed=0):
    """A large, decodable photo (about 420 KB at the defaults): a diagonal gradient with
    noise in luminance and smooth gradients in colour. The gradient is constant
    within each 8x8 block and the noise is one of 64 fixed 8x8 tiles, so by
    linearity of the DCT only 64 tiles need transforming; the result is
    exactly the JPEG of that pixel image."""
    key = (size, quality, noise, seed)
    hit = _LARGE_CACHE.get(key)
    if hit is not None:
        return hit
    tables = _Tables.get(quality)
    rng = random.Random(f"gen_org large photo {seed}")
    q0 = [tables.q[0][0], tables.q[1][0]]
    tiles = []
    for _ in range(64):
        tile = [rng.randint(-noise, noise) for _ in range(64)]
        zz = fdct_quantise(tile, tables.div[0])
        tiles.append((sum(tile), tables.encode_ac(0, zz)))
    eob_c = tables.ac_codes[1][0x00]
    nb = -(-size // 8)
    parts = []
    prev = [0, 0, 0]
    dc = tables.dc
    for by in range(nb):
        for bx in range(nb):
            g = 60 + (135 * (bx + by)) // (2 * nb - 2 or 1)      # 60..195, noise stays in 0..255
            tsum, tac = tiles[rng.randrange(64)]
            d = round((tsum + 64 * (g - 128)) / (8.0 * q0[0]))
            parts.append(dc[0][d - prev[0] + 2047])
            parts.append(tac)
            prev[0] = d
            for c, level in ((1, 128 + (60 * bx) // nb - 30), (2, 128 + (60 * by) // nb - 30)):
                d = round(64 * (level - 128) / (8.0 * q0[1]))
                parts.append(dc[1][d - prev[c] + 2047])
                parts.append(eob_c)
                prev[c] = d
    data = _jpeg_headers(size, size, tables, 3) + _pack_bits(parts) + b"\xff\xd9"
    _LARGE_CACHE[key] = data
    return data


_LARGE_CACHE = {}

# ----------------------------------------------------------------------------
# The organisation.

# (display, ascii) first and last names.
FIRST = [("Anna", "anna"), ("James", "james"), ("Mary", "mary"), ("John", "john"),
         ("Emma", "emma"), ("Oliver", "oliver"), ("Sophie", "sophie"), ("Lukas", "lukas"),
         ("Léa", "lea"), ("José", "jose"), ("Zoë", "zoe"), ("Łukasz", "lukasz"),
         ("Søren", "soren"), ("Björn", "bjorn"), ("Ángel", "angel"), ("Chloé", "chloe"),
         ("François", "francois"), ("Jürgen", "jurgen"), ("Renée", "renee"), ("Mia", "mia"),
         ("Noah", "noah"), ("Liam", "liam"), ("Olivia", "olivia"), ("Hannah", "hannah"),
         ("Paul", "paul"), ("Sarah", "sarah"), ("David", "david"), ("Laura", "laura"),
         ("Thomas", "thomas"), ("Julia", "julia"), ("Michael", "michael"), ("Emily", "emily"),
         ("Daniel", "daniel"), ("Charlotte", "charlotte"), ("Max", "max"), ("Elena", "elena"),
         ("Ahmed", "ahmed"), ("Fatima", "fatima"), ("Priya", "priya"), ("Kenji", "kenji"),
         ("Siobhán", "siobhan"), ("Åsa", "asa"), ("Ines", "ines"), ("Mathéo", "matheo")]
LAST = [("Smith", "smith"), ("Johnson", "johnson"), ("Williams", "williams"), ("Brown", "brown"),
        ("Jones", "jones"), ("Miller", "miller"), ("Davis", "davis"), ("Wilson", "wilson"),
        ("Taylor", "taylor"), ("Clarke", "clarke"), ("Müller", "mueller"), ("Schmidt", "schmidt"),
        ("Schneider", "schneider"), ("Fischer", "fischer"), ("Weber", "weber"), ("Meyer", "meyer"),
        ("Wagner", "wagner"), ("Becker", "becker"), ("Martin", "martin"), ("Bernard", "bernard"),
        ("Dubois", "dubois"), ("Durand", "durand"), ("Lefèvre", "lefevre"), ("Moreau", "moreau"),
        ("García", "garcia"), ("Fernández", "fernandez"), ("Nowak", "nowak"),
        ("Kowalski", "kowalski"), ("Jørgensen", "jorgensen"), ("O'Brien", "obrien"),
        ("Nguyen", "nguyen"), ("Patel", "patel"), ("Kim", "kim"), ("Weiß", "weiss"),
        ("Håkansson", "hakansson"), ("Çelik", "celik"), ("Ødegård", "odegard"),
        ("Rossi", "rossi")]
# Whole names in other scripts: (given, sn, ascii given, ascii sn, script, family name first).
WORLD = [("伟", "王", "wei", "wang", "Han", True), ("娜", "李", "na", "li", "Han", True),
         ("敏", "张", "min", "zhang", "Han", True), ("健", "佐藤", "ken", "sato", "Han", True),
         ("Ελένη", "Παπαδοπούλου", "eleni", "papadopoulou", "Greek", False),
         ("Γιώργος", "Νικολάου", "giorgos", "nikolaou", "Greek", False),
         ("Ольга", "Иванова", "olga", "ivanova", "Cyrillic", False),
         ("Дмитрий", "Смирнов", "dmitriy", "smirnov", "Cyrillic", False),
         ("Thị Lan", "Đặng", "thilan", "dang", "Vietnamese", True),
         ("Văn Minh", "Nguyễn", "vanminh", "nguyen", "Vietnamese", True),
         ("ليلى", "حداد", "layla", "haddad", "Arabic", False),
         ("Björn", "Müller", "bjorn", "mueller", "Latin", False)]

DEPARTMENTS = ["Engineering", "Sales", "Marketing", "Finance", "Human Resources", "Support",
               "Legal", "Operations", "Research & Development", "IT"]
TITLES = ["Engineer", "Senior Engineer", "Analyst", "Account Manager", "Specialist",
          "Consultant", "Coordinator", "Team Lead", "Assistant", "Architect", "Designer",
          "Product Manager", "Accountant", "Recruiter", "Technician", "Entwicklerin",
          "Chargé de projet"]
SERVICE_NAMES = ["backup", "jenkins", "scanner", "printer", "mailrelay", "monitoring", "sync",
                 "crm", "hr-import", "ci", "vpn", "sftp"]
UNPARSEABLE = ["ext. 42", "n/a", "TBD", "none"]

# Regions: (company, weight in %, cities as (l, st, postalCode, street, office,
# landline prefix)). Landlines use ranges reserved for fiction: US 555-01xx,
# Ofcom's 020 7946 0xxx / 0161 496 0xxx..., the BNetzA's 030 23125xxx...,
# ARCEP's 01 99 00 xx xx...; mobiles see _phone().
REGIONS = {
    "US": ("Example Inc.", 40, [
        ("New York", "NY", "10118", "350 Fifth Avenue", "NYC Empire", "212"),
        ("San Francisco", "CA", "94105", "101 Mission Street", "SF Mission", "415"),
        ("Chicago", "IL", "60606", "233 South Wacker Drive", "Chicago Willis", "312"),
        ("Boston", "MA", "02108", "1 Beacon Street", "Boston Beacon", "617")]),
    "GB": ("Example Ltd", 25, [
        ("London", "England", "EC1A 1BB", "1 St Martin's Le Grand", "London City", "20 7946 0"),
        ("Manchester", "England", "M1 1AE", "1 Piccadilly Gardens", "Manchester", "161 496 0"),
        ("Birmingham", "England", "B1 1BB", "1 Victoria Square", "Birmingham", "121 496 0"),
        ("Edinburgh", "Scotland", "EH1 1YZ", "1 Princes Street", "Edinburgh", "131 496 0")]),
    "DE": ("Example GmbH", 20, [
        ("Berlin", "Berlin", "10117", "Friedrichstraße 100", "Berlin Mitte", "30 23125"),
        ("Hamburg", "Hamburg", "20095", "Mönckebergstraße 7", "Hamburg", "40 66969"),
        ("Frankfurt am Main", "Hessen", "60311", "Zeil 12", "Frankfurt", "69 90009"),
        ("München", "Bayern", "80331", "Marienplatz 8", "München", "89 99998"),
        ("Köln", "Nordrhein-Westfalen", "50667", "Hohe Straße 52", "Köln", "221 4710")]),
    "FR": ("Example SAS", 15, [
        ("Paris", "Île-de-France", "75001", "12 rue de Rivoli", "Paris Rivoli", "1 99 00"),
        ("Rennes", "Bretagne", "35000", "5 quai Lamartine", "Rennes", "2 61 91"),
        ("Lille", "Hauts-de-France", "59000", "3 rue Faidherbe", "Lille", "3 53 01"),
        ("Lyon", "Auvergne-Rhône-Alpes", "69002", "20 rue de la République", "Lyon", "4 65 71"),
        ("Bordeaux", "Nouvelle-Aquitaine", "33000", "8 cours de l'Intendance", "Bordeaux",
         "5 36 49")]),
}
REGION_ORDER = ["US", "GB", "DE", "FR"]
COUNTRY_CODE = {"US": "1", "GB": "44", "DE": "49", "FR": "33"}


def _below(rng, n):
    """0..n-1 (faster than randrange, which matters for 50,000 people)."""
    return int(rng.random() * n)


def _phone(rng, region, prefix, mobile):
    """(value as written, E.164) of a fictional number valid for libphonenumber."""
    if region == "US":
        line = f"01{_below(rng, 100):02d}"
        area, exch = prefix, "555"
        nat = area + exch + line
        forms = [f"({area}) {exch}-{line}", f"{area}.{exch}.{line}", f"{area}-{exch}-{line}",
                 f"+1 {area} {exch} {line}", f"+1{nat}"]
    elif region == "GB":
        if mobile:   # libphonenumber's example range (it rejects Ofcom's 07700 900xxx)
            nat = f"7400123{_below(rng, 1000):03d}"
            forms = [f"0{nat[:4]} {nat[4:]}", f"+44 {nat[:4]} {nat[4:]}", f"+44{nat}",
                     f"+44 (0){nat[:4]} {nat[4:]}"]
        else:
            digits = prefix.replace(" ", "") + f"{_below(rng, 1000):03d}"
            nat = digits
            a, b, c = prefix.split()[0], prefix.split()[1], prefix.split()[2] + digits[-3:]
            forms = [f"0{a} {b} {c}", f"+44 (0){a} {b} {c}", f"+44 {a} {b} {c}", f"+44{nat}"]
    elif region == "DE":
        if mobile:
            nat = f"1701{_below(rng, 1000000):06d}"
            forms = [f"0{nat[:3]} {nat[3:]}", f"+49 {nat[:3]} {nat[3:]}", f"+49{nat}",
                     f"0{nat[:3]}/{nat[3:]}"]
        else:
            area, block = prefix.split()
            sub = block + f"{_below(rng, 1000):03d}"
            nat = area + sub
            forms = [f"0{area} {sub}", f"(0{area}) {sub[:4]}-{sub[4:]}", f"+49 {area} {sub}",
                     f"+49{nat}", f"0{area}/{sub}"]
    else:  # FR
        if mobile:
            # libphonenumber's example range (it rejects ARCEP's 06 39 98 xx xx)
            groups = ["6", "12", "34", f"{_below(rng, 100):02d}", f"{_below(rng, 100):02d}"]
        else:
            groups = prefix.split() + [f"{_below(rng, 100):02d}", f"{_below(rng, 100):02d}"]
        nat = "".join(groups)
        forms = ["0" + " ".join(groups), "+33 " + " ".join(groups), "0" + nat, f"+33{nat}",
                 "0" + ".".join(groups)]
    return forms[_below(rng, len(forms))], f"+{COUNTRY_CODE[region]}{nat}"


def _uuid(seed, what):
    """str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:roster:gen_org:{seed}:{what}")), faster."""
    name = f"urn:roster:gen_org:{seed}:{what}".encode()
    h = bytearray(hashlib.sha1(_NS_URL + name).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


_NS_URL = uuid.NAMESPACE_URL.bytes


def _domain_of(base):
    dcs = [rdn.split("=", 1)[1] for rdn in base.split(",") if rdn.strip().lower().startswith("dc=")]
    return ".".join(dcs) if dcs else "example.org"


def _slug(name):
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def _person(rng, i):
    """Person i, drawn from rng; people are drawn in index order from one
    Random(seed), so person i does not depend on how many people there are."""
    p = {"index": i}
    u = [rng.random() for _ in range(12)]
    p["is_service"] = u[0] < 0.01
    p["disabled"] = u[1] < 0.03
    p["hidden"] = u[2] < 0.02
    p["no_contact"] = (not p["is_service"]) and u[3] < 0.003
    p["photo_kind"] = None if p["is_service"] else (
        "jpegPhoto" if u[4] < 0.30 else "thumbnailPhoto" if u[4] < 0.40 else None)
    reachable = not p["is_service"] and not p["no_contact"]
    p["opt_out"] = ["mobile"] if (reachable and u[5] < 0.05) else []
    p["has_tel"] = reachable and u[6] < 0.92
    p["has_mobile"] = reachable and (u[7] < 0.75 or bool(p["opt_out"]))
    p["tel_bad"] = u[8] < 0.01
    p["alias"] = u[9] < 0.30
    p["office_trailing_space"] = u[10] < 0.01
    p["display_reversed"] = u[11] < 0.10
    p["photo_palette"] = _below(rng, 1 << 30)
    p["dept"] = DEPARTMENTS[_below(rng, len(DEPARTMENTS))]
    p["title"] = TITLES[_below(rng, len(TITLES))]
    p["employeeType"] = ("Service" if p["is_service"] else
                         "Contractor" if i % 10 == 9 else "Employee")
    if p["is_service"]:
        p["svc"] = SERVICE_NAMES[_below(rng, len(SERVICE_NAMES))]
        p["dept"] = "IT"
        p["region"] = None
        return p
    r = _below(rng, 100)
    acc = 0
    for region in REGION_ORDER:
        acc += REGIONS[region][1]
        if r < acc:
            break
    p["region"] = region
    p["city"] = REGIONS[region][2][_below(rng, len(REGIONS[region][2]))]
    if rng.random() < 0.12:
        given, sn, ag, asn, script, family_first = WORLD[_below(rng, len(WORLD))]
    else:
        given, ag = FIRST[_below(rng, len(FIRST))]
        sn, asn = LAST[_below(rng, len(LAST))]
        script, family_first = "Latin", False
    p.update(givenName=given, sn=sn, ascii=(ag, asn), script=script)
    if family_first:
        sep = "" if script == "Han" else " "
        p["cn"] = f"{sn}{sep}{given}"
    else:
        p["cn"] = f"{given} {sn}"
    p["displayName"] = f"{sn}, {given}" if (p["display_reversed"] and not family_first) else p["cn"]
    prefix = p["city"][5]
    if p["tel_bad"]:
        p["tel"] = (UNPARSEABLE[_below(rng, len(UNPARSEABLE))], None)
    else:
        p["tel"] = _phone(rng, region, prefix, False)
    p["mob"] = _phone(rng, region, prefix, True)
    return p


def plan(people=1000, seed=1, base="dc=example,dc=org", domain=None, target_members=50,
         large_photos=3, palette=40, thumbnails=16):
    """The organisation as data (no photos encoded): (persons, groups, target info)."""
    if people < 20:
        raise ValueError("people must be at least 20")
    domain = domain or _domain_of(base)
    rng = random.Random(f"gen_org {seed}")
    persons = [_person(rng, i) for i in range(people)]
    taken = {}
    for p in persons:
        if p["is_service"]:
            stem = "svc-" + p["svc"]
        else:
            stem = ".".join(p["ascii"])
        n = taken.get(stem, 0) + 1
        taken[stem] = n
        uid = stem if n == 1 else (f"{stem}-{n}" if p["is_service"] else f"{stem}{n}")
        p["uid"] = uid
        p["dn"] = f"uid={uid},ou=People,{base}"
        p["entryUUID"] = _uuid(seed, f"person:{p['index']}")
        p["mail"] = None if p["no_contact"] else f"{uid}@{domain}"
        if p["is_service"]:
            p["cn"] = p["sn"] = p["displayName"] = uid
            p["givenName"] = None
            p["script"] = "Latin"
    # department heads: the first ordinary, active, visible employee of each department
    heads = {}
    for p in persons:
        if (p["employeeType"] == "Employee" and not p["disabled"] and not p["hidden"]
                and p["mail"] and p["dept"] not in heads):
            heads[p["dept"]] = p
            p["title"] = f"Head of {p['dept']}"
    for p in persons:
        head = heads.get(p["dept"])
        p["manager"] = None if (p["is_service"] or head is None or head is p) else head["dn"]

    # target members
    def eligible(p):
        return (p["employeeType"] in ("Employee", "Contractor") and not p["disabled"]
                and not p["hidden"] and p["mail"] is not None)

    pool = [p for p in persons if eligible(p)]
    if len(pool) < target_members or target_members < 6:
        raise ValueError(f"target_members must be 6..{len(pool)} for {people} people")
    chosen, seen = [], set()

    def take(pred, count=1):
        for p in pool:
            if count <= 0:
                return
            if p["index"] not in seen and pred(p):
                seen.add(p["index"])
                chosen.append(p)
                count -= 1

    take(lambda p: p["employeeType"] == "Contractor")
    take(lambda p: bool(p["opt_out"]))
    for p in pool:   # large photos go to target members (so a sync meets the size cap)
        p["large_photo"] = False
    for p in [p for p in pool if p["photo_kind"] == "jpegPhoto"][:large_photos]:
        p["large_photo"] = True
    take(lambda p: p["large_photo"], large_photos)
    take(lambda p: p["photo_kind"] == "thumbnailPhoto")
    take(lambda p: p["photo_kind"] == "jpegPhoto" and not p["large_photo"])
    take(lambda p: p["tel"][1] is None and p["has_tel"])
    take(lambda p: not p["has_tel"] and not p["has_mobile"])
    for script in ("Han", "Greek", "Cyrillic", "Vietnamese", "Arabic"):
        take(lambda p, s=script: p["script"] == s)
    take(lambda p: not p["cn"].isascii() and p["script"] == "Latin")
    for region in REGION_ORDER:
        take(lambda p, r=region: p["region"] == r and p["employeeType"] == "Employee")
    del chosen[target_members:]
    seen = {p["index"] for p in chosen}
    take(lambda p: True, target_members - len(chosen))
    chosen.sort(key=lambda p: p["index"])
    for p in persons:
        p.setdefault("large_photo", False)
        p["target_member"] = p["index"] in seen
        p["groups"] = []

    # groups
    g = lambda cn: f"cn={cn},ou=Groups,{base}"
    groups = {}   # cn -> {"cn", "description", "members": [dn]}

    def group(cn, description, members):
        groups[cn] = {"cn": cn, "dn": g(cn), "description": description, "members": members}
        return groups[cn]

    nested = {"roster-users": [], "roster-emea": [], "roster-emea-uk": [], "roster-emea-de": [],
              "roster-americas": [], "roster-contractors": []}
    for n, p in enumerate(chosen):
        if n % 5 == 0:
            nested["roster-users"].append(p)
        elif p["employeeType"] == "Contractor":
            nested["roster-contractors"].append(p)
        else:
            nested[{"US": "roster-americas", "GB": "roster-emea-uk", "DE": "roster-emea-de",
                    "FR": "roster-emea"}[p["region"]]].append(p)
    # every leaf has somebody; then the two duplicate paths
    for leaf in ("roster-emea-uk", "roster-emea-de", "roster-contractors"):
        if not nested[leaf]:
            donor = max(nested, key=lambda k: len(nested[k]))
            nested[leaf].append(nested[donor].pop())
    dup_direct = nested["roster-emea-uk"][0]          # also directly in roster-users
    dup_nested = nested["roster-emea-de"][0]          # also in roster-contractors
    nested["roster-users"].append(dup_direct)
    nested["roster-contractors"].append(dup_nested)
    sub = {"roster-users": ["roster-emea", "roster-americas"],
           "roster-emea": ["roster-emea-uk", "roster-emea-de"],
           "roster-americas": ["roster-contractors"],
           "roster-contractors": ["roster-americas"]}
    desc = {"roster-users": "People whose address books roster fills (the sync target)",
            "roster-emea": "roster users in Europe", "roster-emea-uk": "roster users in the UK",
            "roster-emea-de": "roster users in Germany",
            "roster-americas": "roster users in the Americas",
            "roster-contractors": "roster contractors (nests roster-americas: a cycle)"}
    for cn, members in nested.items():
        members.sort(key=lambda p: p["index"])
        group(cn, desc[cn], [p["dn"] for p in members] + [g(s) for s in sub.get(cn, [])])
        for p in members:
            p["groups"].append(g(cn))
    for dept in DEPARTMENTS:
        members = [p for p in persons if p["dept"] == dept]
        if members:
            group(f"dept-{_slug(dept)}", f"Department: {dept}", [p["dn"] for p in members])
            for p in members:
                p["groups"].append(g(f"dept-{_slug(dept)}"))
    staff = [p for p in persons if not p["is_service"]]
    group("all-staff", "Everyone in the company", [p["dn"] for p in staff])
    for p in staff:
        p["groups"].append(g("all-staff"))
    for cn, grp in groups.items():
        grp["entryUUID"] = _uuid(seed, f"group:{cn}")

    # flatten the target group (checks the construction)
    by_dn = {p["dn"]: p for p in persons}
    group_by_dn = {grp["dn"]: grp for grp in groups.values()}
    flat, visited, stack = {}, set(), [g("roster-users")]
    while stack:
        dn = stack.pop()
        if dn in visited:
            continue
        visited.add(dn)
        for m in group_by_dn[dn]["members"]:
            if m in group_by_dn:
                stack.append(m)
            else:
                flat[m] = by_dn[m]
    assert len(flat) == target_members and set(flat) == {p["dn"] for p in chosen}
    target = {
        "dn": g("roster-users"),
        "count": target_members,
        "entryUUIDs": sorted(p["entryUUID"] for p in chosen),
        "uids": sorted(p["uid"] for p in chosen),
        "mails": sorted(p["mail"] for p in chosen),
        "nested_groups": sorted(g(cn) for cn in nested if cn != "roster-users"),
        "cycle": [g("roster-americas"), g("roster-contractors")],
        "duplicate_paths": {
            dup_direct["uid"]: [g("roster-users"), g("roster-emea-uk")],
            dup_nested["uid"]: [g("roster-emea-de"), g("roster-contractors")]},
        "depth": 3,
    }
    return persons, groups, target, domain


# ----------------------------------------------------------------------------
# LDIF.

def ldif_safe(value):
    """RFC 2849 SAFE-STRING (and no trailing space)."""
    if not value:
        return True
    if not value.isascii() or value[0] in " :<" or value[-1] == " ":
        return False
    return "\n" not in value and "\r" not in value and "\0" not in value


def _fold(line, fold):
    if not fold or len(line) <= 76:
        return line
    return "\n ".join([line[:76]] + [line[k:k + 75] for k in range(76, len(line), 75)])


def ldif_line(attr, value, fold=True):
    if isinstance(value, (bytes, bytearray)):
        return _fold(f"{attr}:: {base64.b64encode(value).decode('ascii')}", fold)
    if ldif_safe(value):
        return _fold(f"{attr}: {value}", fold)
    return _fold(f"{attr}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}", fold)


def _ou(base, ou, desc, fold):
    return "\n".join([ldif_line("dn", f"ou={ou},{base}", fold), "objectClass: top",
                      "objectClass: organizationalUnit", ldif_line("ou", ou, fold),
                      ldif_line("description", desc, fold)]) + "\n\n"


def _base_entry(base, fold):
    rdn_attr, rdn_value = base.split(",", 1)[0].split("=", 1)
    rdn_attr = rdn_attr.strip().lower()
    lines = [ldif_line("dn", base, fold), "objectClass: top"]
    if rdn_attr == "dc":
        lines += ["objectClass: dcObject", "objectClass: organization",
                  ldif_line("dc", rdn_value, fold), ldif_line("o", rdn_value.capitalize(), fold)]
    elif rdn_attr == "o":
        lines += ["objectClass: organization", ldif_line("o", rdn_value, fold)]
    else:
        lines += ["objectClass: organizationalUnit", ldif_line(rdn_attr, rdn_value, fold)]
    return "\n".join(lines) + "\n\n"


def write_ldif(out, people=1000, seed=1, base="dc=example,dc=org", domain=None,
               target_members=50, large_photos=3, palette=40, thumbnails=16,
               entry_uuid=True, fold=True, suffix_entry=True):
    """Streams the LDIF to the text file out; returns the manifest (a dict)."""
    palette, thumbnails = max(1, palette), max(1, thumbnails)
    persons, groups, target, domain = plan(people, seed, base, domain, target_members,
                                           large_photos, palette, thumbnails)
    alias_domain = domain.rsplit(".", 1)[0] + ".com" if "." in domain else domain + ".com"
    photo_cache = {}   # (attr, key) -> (folded line, sha256, size)

    def photo(attr, key):
        hit = photo_cache.get((attr, key))
        if hit is None:
            if key == "large":
                data = large_jpeg()
            elif attr == "thumbnailPhoto":
                data = avatar_jpeg(seed, 1000 + key, size=64, quality=70)
            else:
                data = avatar_jpeg(seed, key, size=96, quality=75, grey=(key % 8 == 7))
            hit = photo_cache[(attr, key)] = (ldif_line(attr, data, fold),
                                              hashlib.sha256(data).hexdigest(), len(data))
        return hit

    if suffix_entry:
        out.write(_base_entry(base, fold))
    out.write(_ou(base, "People", "Everyone (people and service accounts)", fold))
    out.write(_ou(base, "Groups", "Groups", fold))
    out.write(_ou(base, "Alumni", "Former staff (empty; tests move people here)", fold))
    manifest_people = []
    counts = dict.fromkeys(["people", "employees", "contractors", "services", "disabled",
                            "hidden", "opt_out", "jpegPhoto", "thumbnailPhoto", "large_photos",
                            "no_contact", "non_ascii_names", "unparseable_phones", "aliases",
                            "with_mobile", "with_telephone"], 0)
    chunk = []
    for p in persons:
        L = [ldif_line("dn", p["dn"], fold), "objectClass: top", "objectClass: person",
             "objectClass: organizationalPerson", "objectClass: inetOrgPerson",
             "objectClass: rosterADUser", ldif_line("uid", p["uid"], fold),
             ldif_line("cn", p["cn"], fold), ldif_line("sn", p["sn"], fold)]
        if p["givenName"]:
            L.append(ldif_line("givenName", p["givenName"], fold))
        L.append(ldif_line("displayName", p["displayName"], fold))
        if p["mail"]:
            L.append(ldif_line("mail", p["mail"], fold))
            L.append(ldif_line("proxyAddresses", "SMTP:" + p["mail"], fold))
            if p["alias"]:
                L.append(ldif_line("proxyAddresses", f"smtp:{p['uid']}@{alias_domain}", fold))
        tel = p["tel"] if p.get("has_tel") else (None, None)
        mob = p["mob"] if p.get("has_mobile") else (None, None)
        if tel[0] is not None:
            L.append(ldif_line("telephoneNumber", tel[0], fold))
        if mob[0] is not None:
            L.append(ldif_line("mobile", mob[0], fold))
        company = REGIONS[p["region"]][0] if p["region"] else REGIONS["US"][0]
        L.append(ldif_line("title", "Service account" if p["is_service"] else p["title"], fold))
        L.append(ldif_line("ou", p["dept"], fold))
        L.append(ldif_line("o", company, fold))
        L.append(ldif_line("company", company, fold))
        L.append(ldif_line("employeeType", p["employeeType"], fold))
        if p["region"]:
            l, st, zipc, street, office, _ = p["city"]
            if p["office_trailing_space"]:
                office += " "
            L += [ldif_line("street", street, fold), ldif_line("l", l, fold),
                  ldif_line("st", st, fold), ldif_line("postalCode", zipc, fold),
                  ldif_line("physicalDeliveryOfficeName", office, fold),
                  ldif_line("c", p["region"], fold)]
        if p["manager"]:
            L.append(ldif_line("manager", p["manager"], fold))
        if entry_uuid:
            L.append("entryUUID: " + p["entryUUID"])
        # 512 NORMAL_ACCOUNT, +2 ACCOUNTDISABLE, +65536 DONT_EXPIRE_PASSWORD (services)
        uac = (66048 if p["is_service"] else 512) | (2 if p["disabled"] else 0)
        L.append(f"userAccountControl: {uac}")
        if p["hidden"]:
            L.append("msExchHideFromAddressLists: TRUE")
        if p["opt_out"]:
            L.append(ldif_line("extensionAttribute1", ",".join(p["opt_out"]), fold))
        ph = None
        if p["large_photo"]:
            ph = ("jpegPhoto",) + photo("jpegPhoto", "large")
        elif p["photo_kind"] == "jpegPhoto":
            ph = ("jpegPhoto",) + photo("jpegPhoto", p["photo_palette"] % palette)
        elif p["photo_kind"] == "thumbnailPhoto":
            ph = ("thumbnailPhoto",) + photo("thumbnailPhoto", p["photo_palette"] % thumbnails)
        if ph:
            L.append(ph[1])
        chunk.append("\n".join(L))
        chunk.append("\n\n")
        if len(chunk) >= 512:
            out.write("".join(chunk))
            chunk = []

        counts["people"] += 1
        counts["employees"] += p["employeeType"] == "Employee"
        counts["contractors"] += p["employeeType"] == "Contractor"
        counts["services"] += p["is_service"]
        counts["disabled"] += p["disabled"]
        counts["hidden"] += p["hidden"]
        counts["opt_out"] += bool(p["opt_out"])
        counts["large_photos"] += p["large_photo"]
        if ph:
            counts[ph[0]] += 1
        counts["no_contact"] += p["no_contact"]
        counts["non_ascii_names"] += not p["cn"].isascii()
        counts["unparseable_phones"] += tel[0] is not None and tel[1] is None
        counts["aliases"] += bool(p["mail"] and p["alias"])
        counts["with_mobile"] += mob[0] is not None
        counts["with_telephone"] += tel[0] is not None
        manifest_people.append({
            "index": p["index"], "uid": p["uid"], "dn": p["dn"],
            "entryUUID": p["entryUUID"] if entry_uuid else None,
            "cn": p["cn"], "displayName": p["displayName"], "givenName": p["givenName"],
            "sn": p["sn"], "mail": p["mail"],
            "telephoneNumber": tel[0], "telephoneNumber_e164": tel[1],
            "mobile": mob[0], "mobile_e164": mob[1],
            "region": p["region"], "l": p["city"][0] if p["region"] else None,
            "department": p["dept"], "manager": p["manager"],
            "employeeType": p["employeeType"], "userAccountControl": uac,
            "disabled": p["disabled"], "hidden": p["hidden"], "opt_out": p["opt_out"],
            "is_service": p["is_service"], "no_contact": p["no_contact"],
            "has_photo": ph is not None, "photo_attribute": ph[0] if ph else None,
            "photo_sha256": ph[2] if ph else None, "photo_size": ph[3] if ph else None,
            "large_photo": p["large_photo"], "target_member": p["target_member"],
            "groups": p["groups"]})
    out.write("".join(chunk))
    for cn, grp in groups.items():
        L = [ldif_line("dn", grp["dn"], fold), "objectClass: top", "objectClass: groupOfNames",
             ldif_line("cn", cn, fold), ldif_line("description", grp["description"], fold)]
        if entry_uuid:
            L.append("entryUUID: " + grp["entryUUID"])
        L += [ldif_line("member", m, fold) for m in grp["members"]]
        out.write("\n".join(L) + "\n\n")
    counts["groups"] = len(groups)
    counts["entries"] = counts["people"] + len(groups) + 3 + (1 if suffix_entry else 0)
    return {
        "generator": "tools/gen_org.py",
        "arguments": {"people": people, "seed": seed, "base": base, "domain": domain,
                      "target_members": target_members, "large_photos": large_photos,
                      "palette": palette, "thumbnails": thumbnails, "entry_uuid": entry_uuid,
                      "fold": fold, "suffix_entry": suffix_entry},
        "base": base,
        "people_dn": f"ou=People,{base}",
        "groups_dn": f"ou=Groups,{base}",
        "alumni_dn": f"ou=Alumni,{base}",
        "domain": domain,
        "alias_domain": alias_domain,
        "target_group": target,
        "groups": [{"dn": grp["dn"], "cn": cn,
                    "entryUUID": grp["entryUUID"] if entry_uuid else None,
                    "members": grp["members"]} for cn, grp in groups.items()],
        "counts": counts,
        "people": manifest_people,
    }


def generate(people=1000, seed=1, base="dc=example,dc=org", domain=None, target_members=50,
             large_photos=3, palette=40, thumbnails=16, entry_uuid=True, fold=True,
             suffix_entry=True):
    """(LDIF text, manifest dict). For tens of thousands of people prefer
    write_ldif() to a file: the LDIF is then not held in memory."""
    buf = io.StringIO()
    manifest = write_ldif(buf, people, seed, base, domain, target_members, large_photos,
                          palette, thumbnails, entry_uuid, fold, suffix_entry)
    return buf.getvalue(), manifest


def write_manifest(manifest, path):
    """The manifest as JSON (UTF-8), one group and one person a line."""
    def dump(v, **kw):
        return json.dumps(v, ensure_ascii=False, **kw)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for n, (key, value) in enumerate(manifest.items()):
            f.write(("{\n " if n == 0 else ",\n ") + dump(key) + ": ")
            if key in ("groups", "people"):
                f.write("[")
                for k, v in enumerate(value):
                    f.write(("\n  " if k == 0 else ",\n  ") + dump(v))
                f.write("\n ]")
            else:
                f.write(dump(value, indent=1).replace("\n", "\n "))
        f.write("\n}\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=1000, help="people incl. service accounts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--base", default="dc=example,dc=org")
    ap.add_argument("--domain", help="mail domain (default: from the dc= parts of --base)")
    ap.add_argument("--target-members", type=int, default=50,
                    help="people in the flattened cn=roster-users")
    ap.add_argument("--large-photos", type=int, default=3,
                    help="target members with a ~0.4 MB 1600x1600 jpegPhoto")
    ap.add_argument("--palette", type=int, default=40, help="distinct jpegPhoto images")
    ap.add_argument("--no-entryuuid", action="store_true",
                    help="omit entryUUID (for ldapadd, which may not set it)")
    ap.add_argument("--no-suffix-entry", action="store_true", help="omit the base entry itself")
    ap.add_argument("--no-fold", action="store_true", help="do not fold long lines")
    ap.add_argument("--out", default="-", help="LDIF file (default: standard output)")
    ap.add_argument("--manifest", help="JSON manifest file")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    kw = dict(people=args.people, seed=args.seed, base=args.base, domain=args.domain,
              target_members=args.target_members, large_photos=args.large_photos,
              palette=args.palette, entry_uuid=not args.no_entryuuid, fold=not args.no_fold,
              suffix_entry=not args.no_suffix_entry)
    try:
        if args.out == "-":
            manifest = write_ldif(sys.stdout, **kw)
        else:
            with open(args.out, "w", encoding="ascii", newline="\n") as f:
                manifest = write_ldif(f, **kw)
    except ValueError as e:
        ap.error(str(e))
    except BrokenPipeError:          # e.g. piped into head
        sys.stderr.close()
        os._exit(1)
    if args.manifest:
        write_manifest(manifest, args.manifest)
    c = manifest["counts"]
    print(f"gen_org: {c['entries']} entries ({c['people']} people, {c['groups']} groups), "
          f"target {manifest['target_group']['count']} members, "
          f"{time.monotonic() - t0:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
