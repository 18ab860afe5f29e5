"""Decisions of gleaner's Gopher rules against datatrove 0.10.1's GopherQualityFilter and
GopherRepetitionFilter (default thresholds) on the same documents.

Usage: python3 scripts/compare_gopher_datatrove.py CORPUS_DIR GLEANER_OUT
  GLEANER_OUT: a gleaner run of CORPUS_DIR through gopher_quality then gopher_repetition
  (defaults); its selection.parquet lists the kept ids. Needs datatrove, spacy, xxhash<4.
Prints the agreement, and the disagreements by the rule datatrove failed.
"""
import collections
import glob
import sys

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

corpus, out = sys.argv[1], sys.argv[2]
docs = []
for f in sorted(glob.glob(f"{corpus}/*.parquet")):
    t = pq.read_table(f, columns=["id", "text"])
    docs += list(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
kept = set(pq.read_table(f"{out}/selection.parquet").column("id").to_pylist())
quality, repetition = GopherQualityFilter(), GopherRepetitionFilter()
agree, disagreements = 0, collections.Counter()
for doc_id, text in docs:
    d = Document(text=text, id=doc_id)
    verdict = quality.filter(d)
    if verdict is True:
        verdict = repetition.filter(d)
    dt_keeps = verdict is True
    if dt_keeps == (doc_id in kept):
        agree += 1
    else:
        rule = "kept" if dt_keeps else verdict[1]
        disagreements[("gleaner keeps" if doc_id in kept else "gleaner drops", "datatrove: " + rule)] += 1
print(f"{len(docs)} documents: same decision on {agree} ({agree / len(docs):.1%})")
for (ours, theirs), n in disagreements.most_common():
    print(f"  {n:5d}  {ours}, {theirs}")
