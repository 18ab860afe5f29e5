"""Decisions of gleaner's c4_badwords against datatrove 0.10.1's C4BadWordsFilter on the
same documents with the same LDNOOBW list (keep_fraction 0).

Usage: python3 scripts/compare_badwords_datatrove.py CORPUS_DIR GLEANER_OUT LIST
  GLEANER_OUT: a gleaner run of CORPUS_DIR through c4_badwords alone, words_dir the folder of
  LIST; its selection.parquet lists the kept ids. LIST: the language's list (a JSON array, as
  scripts/fetch-assets.sh puts it in .assets/c4_badwords), written one word per line for
  datatrove in place of its download. Needs datatrove and pyarrow.
Prints the agreement and the documents on which the two disagree.
"""
import glob
import json
import sys
import tempfile

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters import c4_filters

corpus, out, words = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
plain = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
plain.write("\n".join(words) + "\n")
plain.close()
c4_filters.cached_asset_path_or_download = lambda url, **kw: plain.name
badwords = c4_filters.C4BadWordsFilter(keep_fraction=0.0)
kept = set(pq.read_table(f"{out}/selection.parquet").column("id").to_pylist())
agree, differ = 0, []
for f in sorted(glob.glob(f"{corpus}/*.parquet")):
    t = pq.read_table(f, columns=["id", "text"])
    for doc_id, text in zip(t.column("id").to_pylist(), t.column("text").to_pylist()):
        if not text or not text.strip():
            continue
        theirs = badwords.filter(Document(text=text, id=doc_id)) is True
        if theirs == (doc_id in kept):
            agree += 1
        else:
            differ.append((doc_id, theirs))
print(f"{agree} of {agree + len(differ)} decisions agree")
for doc_id, theirs in differ[:20]:
    print(f"  {doc_id}: datatrove {'keeps' if theirs else 'drops'}")
