#!/usr/bin/env python3
"""Data generator and verifier for compat/kcat.sh (standard library only).

  kcat_data.py gen DIR
      Writes the kcat producer inputs into DIR plus DIR/expected.json, the
      records in the order kcat.sh produces them:
        a.in          200 keyed records, -K '\\x1f' -D '\\x1e' framing
        b.in          keyed records produced with the -H arguments in b.headers
        c.in          records produced with -Z (empty key/value => NULL)
        d0.bin ...    one file per record (file mode: binary-exact, any byte)
        d.headers     -H arguments for the file batch; d.key is its -k key

  kcat_data.py verify DIR OUT T0_MS T1_MS QUERY_OUT
      Parses kcat consumer output OUT written with the format FORMAT below and
      compares it record by record with DIR/expected.json. Timestamps must lie
      within [T0_MS - 1000, T1_MS + 1000]. Writes QUERY_OUT: lines
      "TIMESTAMP EXPECTED_OFFSET" for the kcat -Q check. Exits 1 on mismatch.

  kcat_data.py format
      Prints the kcat -f format string the verifier expects.
"""
import json
import os
import random
import sys

DELIM = b"\x1e"      # -D '\x1e' (message delimiter): never inside a delimited record
KEY_DELIM = b"\x1f"  # -K '\x1f': first occurrence splits key|value, so values may contain it
FORMAT = r"%o %T %K %S %h\n%k%s\n"   # kcat -f format the verifier parses

N_A = 200

B_HEADERS = [
    ("trace-id", b"abc123"),
    ("dup", b"1"),
    ("dup", b"2"),
    ("dup", b"3"),
    ("utf", "žluťoučký kůň 🙂".encode()),
    ("eq", b"a=b=c"),
    ("empty", b""),
    ("nullval", None),      # -H nullval (no '=') => header with a NULL value
    ("dup", b"last"),
]
D_HEADERS = [("src", b"file"), ("src", b"again")]
D_KEY = b"file-key"


def h_arg(name, value):
    return name if value is None else name + "=" + value.decode()


def h_str(headers):
    """What kcat's %h prints: name=value joined by ',', NULL values as 'NULL'."""
    out = []
    for name, value in headers:
        out.append(name.encode() + b"=" + (b"NULL" if value is None else value))
    return b",".join(out)


def batch_a(rng):
    recs = []
    for i in range(N_A):
        if i % 50 == 49:
            key = None                      # no key delimiter in the record => NULL key
        elif i % 7 == 3:
            key = "ключ-ü-{}".format(i).encode()
        else:
            key = "key-{:03d}".format(i).encode()
        kind = i % 6
        if kind == 0:
            value = "value-{} plain ascii".format(i).encode()
        elif kind == 1:
            value = "ünïcødé ✓ 日本語 🙂 #{}".format(i).encode()
        elif kind == 2:
            allb = bytes(b for b in range(256) if b != DELIM[0])
            r = i % len(allb)
            value = allb[r:] + allb[:r]     # every byte but 0x1e, incl. 0x00 and 0x1f
        elif kind == 3:
            value = b""                     # "key\x1f" => empty (non-NULL) value
        elif kind == 4:
            words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"\xc3\xa9t\xc3\xa9"]
            value = b" ".join(rng.choice(words) for _ in range(500 + 20 * i))
        else:
            value = bytes(rng.choice([b for b in range(256) if b != DELIM[0]])
                          for _ in range(1 + rng.randrange(300)))
        if key is None and KEY_DELIM in value:
            value = value.replace(KEY_DELIM, b"-")
        if key is None and value == b"":
            value = b"x"
        recs.append((key, value, []))
    return recs


def frame(recs):
    out = bytearray()
    for key, value, _ in recs:
        assert value is not None and DELIM not in value
        if key is not None:
            assert KEY_DELIM not in key and DELIM not in key
            out += key + KEY_DELIM
        out += value + DELIM
    return bytes(out)


def gen(d):
    rng = random.Random(20240611)
    expected = []

    a = batch_a(rng)
    with open(os.path.join(d, "a.in"), "wb") as f:
        f.write(frame(a))
    expected += a

    b = [(b"hk-0", b"with headers", B_HEADERS),
         (b"hk-1", b"", B_HEADERS),
         (b"hk-2", "ü\x00\x01\x1f".encode(), B_HEADERS),
         (None, b"no key, headers", B_HEADERS)]
    with open(os.path.join(d, "b.in"), "wb") as f:
        f.write(frame(b))
    with open(os.path.join(d, "b.headers"), "w", encoding="utf-8") as f:
        for name, value in B_HEADERS:
            f.write(h_arg(name, value) + "\n")
    expected += b

    # With -Z an empty key or value is sent as NULL.
    c_raw = [b"tomb-1" + KEY_DELIM,            # key, NULL value (tombstone)
             KEY_DELIM + b"null-key value",    # NULL key, value
             KEY_DELIM,                        # NULL key, NULL value
             b"tomb-2" + KEY_DELIM]
    c = [(b"tomb-1", None, []), (None, b"null-key value", []),
         (None, None, []), (b"tomb-2", None, [])]
    with open(os.path.join(d, "c.in"), "wb") as f:
        f.write(DELIM.join(c_raw) + DELIM)
    expected += c

    files = [bytes(range(256)),                            # every byte value
             bytes(rng.randrange(256) for _ in range(70000)),  # > 64 KiB random
             b"\x00",
             DELIM * 3 + KEY_DELIM + b"\n\r\n"]
    for n, content in enumerate(files):
        with open(os.path.join(d, "d{}.bin".format(n)), "wb") as f:
            f.write(content)
        expected.append((D_KEY, content, D_HEADERS))
    with open(os.path.join(d, "d.headers"), "w", encoding="utf-8") as f:
        for name, value in D_HEADERS:
            f.write(h_arg(name, value) + "\n")
    with open(os.path.join(d, "d.key"), "wb") as f:
        f.write(D_KEY)
    with open(os.path.join(d, "d.count"), "w") as f:
        f.write(str(len(files)))

    def hx(x):
        return None if x is None else x.hex()
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump([{"key": hx(k), "value": hx(v), "headers": h_str(h).hex()}
                   for k, v, h in expected], f)
    print(len(expected))


def parse(data):
    """Parse kcat output written with FORMAT; lengths make it binary-exact."""
    recs = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise ValueError("truncated record header at byte {}".format(pos))
        parts = data[pos:nl].split(b" ", 4)
        if len(parts) < 4:
            raise ValueError("bad record header {!r} at byte {}".format(data[pos:nl], pos))
        off, ts, klen, vlen = (int(p) for p in parts[:4])
        hdrs = parts[4] if len(parts) == 5 else b""
        pos = nl + 1
        key = None if klen < 0 else data[pos:pos + klen]
        pos += max(klen, 0)
        value = None if vlen < 0 else data[pos:pos + vlen]
        pos += max(vlen, 0)
        if data[pos:pos + 1] != b"\n":
            raise ValueError("record at offset {} not followed by newline "
                             "(byte {})".format(off, pos))
        pos += 1
        recs.append({"offset": off, "ts": ts, "key": key, "value": value, "headers": hdrs})
    return recs


def short(x):
    if x is None:
        return "NULL"
    return repr(x[:60]) + ("...({} bytes)".format(len(x)) if len(x) > 60 else "")


def diff(got, exp):
    """Describe how two byte strings (or NULLs) differ."""
    if got is None or exp is None:
        return "{} != expected {}".format(short(got), short(exp))
    i = next((n for n, (a, b) in enumerate(zip(got, exp)) if a != b), min(len(got), len(exp)))
    lo = max(0, i - 8)
    return ("differs at byte {} (got {} bytes, expected {}): got {!r} expected {!r}"
            .format(i, len(got), len(exp), got[lo:i + 24], exp[lo:i + 24]))


def verify(d, out, t0, t1, query_out):
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    with open(out, "rb") as f:
        data = f.read()
    try:
        got = parse(data)
    except ValueError as e:
        print("  cannot parse kcat output: {}".format(e))
        return 1
    errors = []
    if len(got) != len(exp):
        errors.append("expected {} records, consumed {}".format(len(exp), len(got)))
    for i, (e, g) in enumerate(zip(exp, got)):
        ek = None if e["key"] is None else bytes.fromhex(e["key"])
        ev = None if e["value"] is None else bytes.fromhex(e["value"])
        eh = bytes.fromhex(e["headers"])
        if g["offset"] != i:
            errors.append("record #{}: offset {} (expected dense offsets 0..{})"
                          .format(i, g["offset"], len(exp) - 1))
        if g["key"] != ek:
            errors.append("offset {}: key {}".format(i, diff(g["key"], ek)))
        if g["value"] != ev:
            errors.append("offset {}: value {}".format(i, diff(g["value"], ev)))
        if g["headers"] != eh:
            errors.append("offset {}: headers {!r} != expected {!r}".format(i, g["headers"], eh))
        if not (t0 - 1000 <= g["ts"] <= t1 + 1000):
            errors.append("offset {}: timestamp {} outside produce window [{}, {}]"
                          .format(i, g["ts"], t0, t1))
    for msg in errors[:15]:
        print("  " + msg)
    if len(errors) > 15:
        print("  ... and {} more mismatches".format(len(errors) - 15))
    if not errors:
        # Expected ListOffsets-by-timestamp answers for kcat -Q.
        tss = [g["ts"] for g in got]
        queries = [0, tss[len(tss) // 2], tss[-1], max(tss) + 1]
        with open(query_out, "w") as f:
            for q in queries:
                first = next((i for i, ts in enumerate(tss) if ts >= q), -1)
                f.write("{} {}\n".format(q, first))
    return 1 if errors else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "gen":
        gen(argv[2])
        return 0
    if len(argv) == 7 and argv[1] == "verify":
        return verify(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6])
    if len(argv) == 2 and argv[1] == "format":
        print(FORMAT)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
