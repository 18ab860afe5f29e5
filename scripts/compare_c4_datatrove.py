"""Decisions and rewritten texts of gleaner's c4_quality stage against datatrove 0.10.1's
C4QualityFilter (defaults) on the same documents.

Usage: python3 scripts/compare_c4_datatrove.py CORPUS_DIR GLEANER_OUT
  GLEANER_OUT: a gleaner run of CORPUS_DIR through c4_quality alone (defaults).
Prints how often the two keep the same documents, and how often a document both keep gets
the same text. Needs datatrove and nltk.
"""
import collections
import glob
import sys

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter

corpus, out = sys.argv[1], sys.argv[2]
docs = []
for f in sorted(glob.glob(f"{corpus}/*.parquet")):
    t = pq.read_table(f, columns=["id", "text"])
    docs += list(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
kept = {}
for f in sorted(glob.glob(f"{out}/selected/*.parquet")):
    t = pq.read_table(f, columns=["id", "text"])
    kept.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
c4 = C4QualityFilter()
same, same_text, both, reasons = 0, 0, 0, collections.Counter()
for doc_id, text in docs:
    d = Document(text=text, id=doc_id)
    verdict = c4.filter(d)
    dt_keeps = verdict is True
    if dt_keeps == (doc_id in kept):
        same += 1
    else:
        reasons[("gleaner keeps" if doc_id in kept else "gleaner drops", "datatrove: " + ("kept" if dt_keeps else verdict[1]))] += 1
    if dt_keeps and doc_id in kept:
        both += 1
        same_text += d.text == kept[doc_id]
print(f"{len(docs)} documents: same decision on {same} ({same / len(docs):.1%}); "
      f"same text on {same_text} of the {both} both keep")
for (ours, theirs), n in reasons.most_common():
    print(f"  {n:5d}  {ours}, {theirs}")
