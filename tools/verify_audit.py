#!/usr/bin/env python3
"""verify_audit.py -- recomputes casesync's audit hash chain from the output of
`casesync export --audit`, with nothing but the Python standard library and
docs/audit.md: an independent check of `casesync verify`.

usage: casesync --data DIR export --audit | python3 tools/verify_audit.py [FILE]
       python3 tools/verify_audit.py --canonical [FILE]
           prints the RFC 8785 canonical form of each JSON line instead

Prints one JSON line as `casesync verify` does: {"ok":..,"entries":..,"head":..}
and, when the chain breaks, "problem": "entry seq N does not verify". Exit
status: 0 the chain verifies, 1 it does not, 2 usage or input error.

Rules (docs/audit.md): hash = SHA-256(prev_hash as 64 ASCII hex digits ||
bytes(entry without "hash")); the first prev_hash is 64 zeros. bytes() is RFC
8785 canonical JSON, except for the entries of a migrated store that precede
its "store_format" entry: those were hashed over cJSON 1.7's compact print
(members in stored order), which v1_bytes() reproduces.
"""
import decimal
import hashlib
import json
import math
import sys

GENESIS = "0" * 64
DBL_EPSILON = 2.220446049250313e-16
INT_MAX, INT_MIN = 2**31 - 1, -(2**31)


class Obj(list):
    """A JSON object as its (name, value) pairs in stored order, duplicates kept."""


def parse(line):
    return json.loads(line, object_pairs_hook=Obj, parse_int=float, parse_constant=_no_constant)


def _no_constant(name):
    raise ValueError("not JSON: " + name)


# ---- RFC 8785 ----------------------------------------------------------------

def jcs_number(x):
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and infinities have no JSON form")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    t = decimal.Decimal(repr(abs(x))).as_tuple()  # repr: the shortest digits that read back
    digits, e = list(t.digits), t.exponent
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        e += 1
    while len(digits) > 1 and digits[0] == 0:
        digits.pop(0)
    d = "".join(map(str, digits))
    k = len(d)
    n = k + e  # the decimal point sits after n digits
    if k <= n <= 21:
        s = d + "0" * (n - k)
    elif 0 < n <= 21:
        s = d[:n] + "." + d[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + d
    else:
        s = d[0] + ("." + d[1:] if k > 1 else "") + "e" + ("+" if n - 1 >= 0 else "-") + str(abs(n - 1))
    return sign + s


_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def json_string(s):
    out = []
    for c in s:
        if c in _ESC:
            out.append(_ESC[c])
        elif ord(c) < 0x20:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def jcs(v):
    if isinstance(v, Obj):
        members = sorted(enumerate(v), key=lambda im: (im[1][0].encode("utf-16-be"), im[0]))
        return "{" + ",".join(json_string(k) + ":" + jcs(x) for _, (k, x) in members) + "}"
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    if isinstance(v, str):
        return json_string(v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    return jcs_number(v)


# ---- v1: cJSON 1.7 compact print ----------------------------------------------

def v1_number(d):
    if math.isnan(d) or math.isinf(d):
        return "null"
    vi = INT_MAX if d >= INT_MAX else INT_MIN if d <= INT_MIN else int(d)
    if d == float(vi):
        return "%d" % vi
    s = "%1.15g" % d
    t = float(s)
    if not abs(t - d) <= max(abs(t), abs(d)) * DBL_EPSILON:
        s = "%1.17g" % d
    return s


def v1(v):
    if isinstance(v, Obj):
        return "{" + ",".join(json_string(k) + ":" + v1(x) for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + ",".join(v1(x) for x in v) + "]"
    if isinstance(v, str):
        return json_string(v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    return v1_number(v)


# ---- the chain -------------------------------------------------------------------

def member(o, name):
    for k, x in o:
        if k == name:
            return x
    return None


def without_first(o, name):
    out, dropped = Obj(), False
    for k, x in o:
        if k == name and not dropped:
            dropped = True
            continue
        out.append((k, x))
    return out


def verify(lines):
    entries = []
    for line in lines:
        try:
            e = parse(line)
        except ValueError:
            e = None
        entries.append(e if isinstance(e, Obj) else None)
    # The canonical chain of a migrated store starts at its "store_format" entry.
    start = 0
    for e in entries:
        if e is not None and member(e, "op") == "store_format" and isinstance(member(e, "seq"), float):
            start = member(e, "seq")
            break
    prev, last_seq, n = GENESIS, 0, 0
    for e in entries:
        seq = member(e, "seq") if e is not None else None
        n += 1
        good = False
        if isinstance(seq, float) and seq > last_seq:
            h, p = member(e, "hash"), member(e, "prev_hash")
            if isinstance(h, str) and isinstance(p, str) and len(h) == 64 and p == prev:
                rest = without_first(e, "hash")
                try:
                    text = (jcs(rest) if seq >= start else v1(rest)).encode("utf-8")
                    good = hashlib.sha256(prev.encode("ascii") + text).hexdigest() == h
                except (ValueError, UnicodeEncodeError):
                    good = False
        if not good:
            where = "%d" % seq if isinstance(seq, float) else "after %d" % last_seq
            return {"ok": False, "entries": n, "head": prev, "problem": "entry seq %s does not verify" % where}
        prev, last_seq = h, seq
    return {"ok": True, "entries": n, "head": prev}


def main(argv):
    canonical = len(argv) > 1 and argv[1] == "--canonical"
    if canonical:
        argv = argv[:1] + argv[2:]
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        sys.stderr.write(__doc__)
        return 2
    try:
        if len(argv) == 2:
            with open(argv[1], "rb") as f:
                data = f.read()
        else:
            data = sys.stdin.buffer.read()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        sys.stderr.write("verify_audit: %s\n" % err)
        return 2
    lines = [l for l in text.split("\n") if l]
    if canonical:
        try:
            out = [jcs(parse(l)) for l in lines]
        except ValueError as err:
            sys.stderr.write("verify_audit: %s\n" % err)
            return 2
        sys.stdout.buffer.write("".join(o + "\n" for o in out).encode("utf-8"))
        return 0
    res = verify(lines)
    print(json.dumps(res, separators=(",", ":")))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
