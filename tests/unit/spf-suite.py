#!/usr/bin/python3
"""Converts the SPF council's RFC 7208 test suite (YAML, as Debian's
python3-spf ships it) into tab-separated lines that tests/unit/test-spf.c
reads: every field escaped with backslash-octal for bytes outside
printable ASCII, tabs and backslashes (g_strcompress undoes it).

  scenario DESCRIPTION
  rr NAME TYPE VALUE...   (A, AAAA, PTR, CNAME: one value; MX: PREF NAME;
                           TXT: its strings; TIMEOUT: none)
  test ID HELO HOST MAILFROM RESULTS [EXPLANATION]

Zone data follows the suite's own driver (pyspf's testspf.py): records of
the obsolete type SPF become TXT records when a name has no TXT record
(appended after the name's other records), a TXT value NONE stands for
"a TXT record that is not there", and SPF records are otherwise dropped
(RFC 7208 queries TXT only).
"""
import gzip
import sys

import yaml


def esc(value):
    data = value.encode("utf-8") if isinstance(value, str) else value
    out = []
    for b in data:
        if 0x20 <= b < 0x7F and b != 0x5C:
            out.append(chr(b))
        else:
            out.append("\\%03o" % b)
    return "".join(out)


def emit(*fields):
    print("\t".join(esc(str(f)) for f in fields))


def records(name, rrs):
    generated, has_txt = [], False
    for rr in rrs:
        if rr == "TIMEOUT":
            emit("rr", name, "TIMEOUT")
            continue
        for rtype, value in rr.items():
            if rtype in ("TXT", "SPF") and isinstance(value, str):
                value = [value]
            if rtype == "TXT":
                has_txt = True
                if value != ["NONE"]:
                    emit("rr", name, "TXT", *value)
            elif rtype == "SPF":
                if value != ["NONE"]:
                    generated.append(value)
            elif rtype == "MX":
                emit("rr", name, "MX", value[0], value[1])
            else:
                emit("rr", name, rtype, value)
    if not has_txt:
        for value in generated:
            emit("rr", name, "TXT", *value)


def main(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        for scenario in yaml.safe_load_all(f):
            emit("scenario", scenario.get("description", ""))
            for name, rrs in scenario.get("zonedata", {}).items():
                records(name, rrs)
            for tid, t in scenario["tests"].items():
                results = t["result"]
                if isinstance(results, str):
                    results = [results]
                fields = ["test", tid, t["helo"], t["host"], t["mailfrom"],
                          ",".join(results)]
                if "explanation" in t:
                    fields.append(t["explanation"])
                emit(*fields)


if __name__ == "__main__":
    main(sys.argv[1])
