#!/usr/bin/env python3
"""Writes tests/fixtures/pii/: what datatrove's PIIFormatter makes of texts, the oracle of the
`pii_redact` stage's tests.

- `datatrove-quickstart.json`: for every document of the shipped quickstart corpus that
  datatrove changes, the SHA-256 of its redacted text (the other documents are unchanged).
- `edge-cases.jsonl`: made-up texts that probe the patterns (address literals, leading
  zeros, addresses inside longer numbers, every special IPv4 range, non-ASCII around an
  address), each with datatrove's redacted text.

A fresh PIIFormatter redacts each document, so its placeholders start at the first for each
document, as gleaner's do (datatrove's turn otherwise runs on across a worker's documents).

Usage: python3 scripts/make_pii_oracle.py   (needs pyarrow and datatrove)
"""
import glob
import hashlib
import json
import os
import sys
from importlib import metadata

import pyarrow.parquet as pq
from datatrove.pipeline.formatters import PIIFormatter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "pii")

EDGE_CASES = [
    "Contact ann.lee+list@mail.uni-x.edu, bob@ex.io and carl@ex.io; reply to dora@ex.io.",
    "a@[10.0.0.1] b@c @home d@localhost e@sub.domain-x.co.uk f@[IPv6:2001:db8::1]",
    "Über: jörg@example.de schrieb an zoë.k@mail.example.org — ça va?",
    "hosts 8.8.8.8, 8.8.4.4 and 1.1.1.1 answer; 10.0.0.1, 192.168.1.20, 127.0.0.1 do not",
    "edges 100.63.255.255 100.64.0.1 100.127.255.255 100.128.0.0 172.15.0.1 172.16.0.1 "
    "172.31.255.255 172.32.0.1 169.254.3.4 192.0.0.7 192.0.0.8 192.0.0.170 192.0.0.171 "
    "192.0.0.172 192.0.2.55 198.17.255.255 198.18.0.1 198.19.255.255 198.20.0.0 "
    "198.51.100.7 203.0.113.9 224.0.0.1 239.255.255.255 240.0.0.1 255.255.255.255 0.0.0.0",
    "zeros 01.2.3.4 1.02.3.4 1.2.3.04 10.0.0.00 and long 1234.5.6.7 999.8.8.8.8 1.2.3.4.5.6.7.8",
    "mixed: mail root@45.33.32.156 or admin@[45.33.32.156], server 45.33.32.156:8080, ip=3.3.3.3",
    "nothing personal here, version 1.2.3 and 4.5 and a@ sign",
    "IP 8.8.8.8 again 8.8.8.8, 9.9.9.9, 4.4.4.4, 5.5.5.5, 6.6.6.6, 7.7.7.7, 2.2.2.2 (wraps)",
]


def redact(text):
    return PIIFormatter().format(text)


def main():
    os.makedirs(OUT, exist_ok=True)
    changed = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "data", "quickstart", "*.parquet"))):
        for row in pq.read_table(path, columns=["id", "text"]).to_pylist():
            out = redact(row["text"])
            if out != row["text"]:
                changed[row["id"]] = hashlib.sha256(out.encode()).hexdigest()
    oracle = {
        "writer": {
            "datatrove": metadata.version("datatrove"),
            "python": sys.version.split()[0],
        },
        "changed_sha256": changed,
    }
    with open(os.path.join(OUT, "datatrove-quickstart.json"), "w") as f:
        json.dump(oracle, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(OUT, "edge-cases.jsonl"), "w", encoding="utf-8") as f:
        for i, text in enumerate(EDGE_CASES):
            row = {"id": f"edge-{i}", "text": text, "datatrove_text": redact(text)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(changed)} quickstart documents changed; {len(EDGE_CASES)} edge cases")


if __name__ == "__main__":
    main()
