#!/usr/bin/env python3
"""Decisions of gleaner's fineweb_quality stage against datatrove 0.10.1's
FineWebQualityFilter on the same documents, and the oracle fixture of its tests.

Usage:
  python3 scripts/compare_fineweb_datatrove.py CORPUS_DIR GLEANER_OUT
      GLEANER_OUT: a gleaner run of CORPUS_DIR through fineweb_quality alone (defaults,
      write_removed = true). Prints how often the two make the same decision, and the
      differences by rule.
  python3 scripts/compare_fineweb_datatrove.py --fixture
      Writes tests/fixtures/fineweb/datatrove-quickstart.json: datatrove's reason for every
      quickstart document it drops, with its defaults and with the list rule off (the rules
      left then are defined on characters and lines alone, so gleaner must agree exactly).
"""
import collections
import glob
import json
import os
import sys
from importlib import metadata

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters import FineWebQualityFilter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")


def documents(corpus):
    docs = []
    for f in sorted(glob.glob(f"{corpus}/*.parquet")):
        t = pq.read_table(f, columns=["id", "text"])
        docs += list(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    return docs


def drops(docs, **settings):
    rule = FineWebQualityFilter(**settings)
    out = {}
    for doc_id, text in docs:
        verdict = rule.filter(Document(text=text, id=doc_id))
        if verdict is not True:
            out[doc_id] = verdict[1]
    return out


def fixture():
    docs = documents(os.path.join(ROOT, "data", "quickstart"))
    oracle = {
        "writer": {"datatrove": metadata.version("datatrove"), "python": sys.version.split()[0]},
        "defaults": drops(docs),
        "without_list_rule": drops(docs, new_line_ratio=float("inf")),
    }
    out = os.path.join(ROOT, "tests", "fixtures", "fineweb")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "datatrove-quickstart.json"), "w") as f:
        json.dump(oracle, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(docs)} documents: datatrove drops {len(oracle['defaults'])} "
          f"({len(oracle['without_list_rule'])} without the list rule)")


def compare(corpus, out):
    docs = documents(corpus)
    theirs = drops(docs)
    ours = {}
    for f in glob.glob(f"{out}/removed/*/*.parquet"):
        reason = os.path.basename(os.path.dirname(f))
        for doc_id in pq.read_table(f, columns=["id"]).column("id").to_pylist():
            ours[doc_id] = reason
    same, differences = 0, collections.Counter()
    for doc_id, _ in docs:
        a, b = ours.get(doc_id, "kept"), theirs.get(doc_id, "kept")
        if a == b:
            same += 1
        else:
            differences[(f"gleaner: {a}", f"datatrove: {b}")] += 1
    print(f"{len(docs)} documents: the same decision on {same} ({same / len(docs):.1%})")
    for (ours_, theirs_), n in differences.most_common():
        print(f"  {n:5d}  {ours_}, {theirs_}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--fixture"]:
        fixture()
    else:
        compare(sys.argv[1], sys.argv[2])
