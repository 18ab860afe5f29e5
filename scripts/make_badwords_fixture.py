#!/usr/bin/env python3
"""Writes tests/fixtures/badwords: documents, a small word list in LDNOOBW's layout, and
datatrove's C4BadWordsFilter decision for each document (the oracle of the c4_badwords
compat test).

Run with a Python that has datatrove 0.10.1 and pyarrow:
    .assets/bench/venv/bin/python scripts/make_badwords_fixture.py
The documents are 400 of the quickstart corpus (real Debian and npm text) and made-up ones
for the word boundaries (punctuation, `_`, digits, accented letters, upper case, phrases of
two words). The list holds made-up neutral words, not LDNOOBW's (scripts/fetch-assets.sh
fetches that for real runs); datatrove reads it in place of its download.
"""
import glob
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters import c4_filters

root = Path(__file__).resolve().parent.parent
out = root / "tests/fixtures/badwords"
(out / "lists").mkdir(parents=True, exist_ok=True)
words = ["spam", "fatal", "junk mail", "kill", "abort", "segfault", "nil", "sm", "warning", "deprecated", "null", "version", "example"]
(out / "lists/en").write_text("\n".join(words) + "\n")

texts = [t for f in sorted(glob.glob(str(root / "data/quickstart/*.parquet")))
         for t in pq.read_table(f, columns=["text"]).column("text").to_pylist() if t and t.strip()]
random.Random(1).shuffle(texts)
texts = texts[:400]
texts += [
    "Spam, spam, eggs and spam.", "spamming is not a word on the list", "spam_filter", "spam2",
    "A FATAL error", "fatalistic", "(kill)", "kill -9", "skill", "killer", "nil.", "nihil",
    "junk mail arrives", "junk mailing list", "junk  mail with two spaces", "Abort!", "abortion",
    "sm", "SM-sized", "é spam é", "éspam", "spamé", "segfault", "a segfault's trace", "",
]
c4_filters.cached_asset_path_or_download = lambda url, **kw: str(out / "lists/en")
f = c4_filters.C4BadWordsFilter(keep_fraction=0.0, seed=0)
docs = []
for i, text in enumerate(texts):
    doc_id = f"doc-{i:03d}"
    verdict = f.filter(Document(text=text, id=doc_id))
    docs.append({"id": doc_id, "text": text, "dropped": verdict is not True})
(out / "documents.jsonl").write_text("".join(json.dumps({"id": d["id"], "text": d["text"]}) + "\n" for d in docs if d["text"]))
(out / "datatrove.json").write_text(json.dumps(
    {"_made_by": "scripts/make_badwords_fixture.py (datatrove 0.10.1 C4BadWordsFilter, keep_fraction 0)",
     "dropped": [d["id"] for d in docs if d["dropped"] and d["text"]],
     "kept": [d["id"] for d in docs if not d["dropped"] and d["text"]]}, indent=1) + "\n")
print(sum(d["dropped"] for d in docs), "of", len(docs), "dropped")
for d in docs[400:]:
    print(repr(d["text"]), d["dropped"])

# Per-document languages: documents written by datatrove's own JsonlWriter (gzip JSONL, the
# language under metadata.language, as its LanguageFilter leaves it), lists for four
# languages, and C4BadWordsFilter's decisions reading each document's language, with
# fail_on_missing_language=False (Swahili has no LDNOOBW list: kept, counted).
from datatrove.pipeline.writers import JsonlWriter

(out / "lists/de").write_text("schinken\nwurst\nblöd\n")
(out / "lists/zh").write_text("坏词\n性\n")
(out / "lists/ja").write_text("悪語\nグロ\n")
c4_filters.cached_asset_path_or_download = lambda url, **kw: str(out / "lists" / url.rsplit("/", 1)[-1])
english = texts[:60]
written = [(t, "en") for t in english] + [(t, None) for t in texts[60:80]] + [
    ("Ein Schinken-Brot, bitte.", "de"), ("Schinkenbrot ist lecker.", "de"), ("Die WURST!", "de"),
    ("Das ist blöd.", "de"), ("blödsinn", "de"), ("spam and ham", "de"), ("Guten Tag", "de"),
    ("这是坏词语", "zh"), ("性别平等", "zh"), ("没有问题", "zh"), ("spam", "zh"),
    ("グロテスク", "ja"), ("これは悪語です", "ja"), ("普通の文", "ja"),
    ("habari, spam", "sw"), ("ham and spam", "sw"), ("fatal error", "sw"),
    ("A FATAL error", "en"), ("fatalistic", "en"), ("Schinken", "en"),
]
f = c4_filters.C4BadWordsFilter(keep_fraction=0.0, fail_on_missing_language=False, seed=0)
documents, decisions = [], {"dropped": [], "kept": []}
for i, (text, language) in enumerate(written):
    doc = Document(text=text, id=f"lang-{i:03d}", metadata={"language": language} if language else {"source": "quickstart"})
    documents.append(doc)
    decisions["kept" if f.filter(doc) is True else "dropped"].append(doc.id)
languages_dir = out / "languages"
for old in languages_dir.glob("*"):
    old.unlink()
writer = JsonlWriter(str(languages_dir), output_filename="documents.jsonl.gz", compression="gzip")
with writer:
    for doc in documents:
        writer.write(doc)
missing = {k.split("missing_badwords_lang_", 1)[1]: v.total for k, v in f.stats.stats.items() if k.startswith("missing_badwords_lang_")}
(languages_dir / "datatrove.json").write_text(json.dumps(
    {"_made_by": "scripts/make_badwords_fixture.py (datatrove 0.10.1 JsonlWriter and C4BadWordsFilter, metadata language, fail_on_missing_language=False)",
     **decisions, "missing_badwords_lang": missing}, indent=1) + "\n")
print(len(decisions["dropped"]), "of", len(documents), "dropped with languages; missing lists:", missing)
