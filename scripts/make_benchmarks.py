#!/usr/bin/env python3
"""Builds the known-answer benchmarks under data/benchmarks/ from the shipped quickstart corpus.

quality/: a clean pool of real prose (Moby Dick, State of the Union addresses, the Python
docs, the Jargon File, the Devil's Dictionary, ham e-mail) with 20% planted junk of known
labels, made from other clean documents that are not in the pool:
  planted_shuffle      the document's words in a random order
  planted_noise        15% of its characters replaced by random printable characters
  planted_boilerplate  a navigation/cookie/copyright block repeated around one sentence
  planted_spam         templated advertising with prices, links and shouting
  planted_fragment     the first 5 to 12 words of a document
Files: pool.parquet (id, text, source: the original source or the planted label),
reference.parquet (clean documents of the same sources, for targeted methods) and
evaluation.parquet (held-out clean documents: what `gleaner evaluate` scores). The three
clean parts are disjoint; no planted document comes from a pool, reference or evaluation
document.

Known answers without training: a method's share of planted documents against their pool
share (20%). With training: held-out clean bits per byte.

targeting/: the whole quickstart pool except 120 e-mails of one source (email_ham), which
become the target: reference.parquet (what targeted methods aim at) and evaluation.parquet
(what `gleaner evaluate` scores), kept apart by the same 13-word-run rule. Known answer
without training: a targeted method's share of email_ham in its selection against the
source's pool share; with training: bits per byte on the held-out e-mails.

diversity/: 400 real documents of 50+ words (families), each with 0 to 14 planted near-copies
(2% of its words replaced, lines re-wrapped; family sizes skewed, so a few families hold most
of the pool), shuffled: pool.parquet (id `<family>#<copy>`, text, source: the family's
source), and evaluation.parquet: the next 200 documents of 50+ words of the same shuffled
list (the same mix of sources, none of them a family), less any that shares a 13-word run
with a pool document. Known answer without training: the number of families a fixed budget of
documents covers (uniform sampling covers a computable expected number; dedup first should
cover one family per document). With training: held-out bits per byte, where a selection
spent on near-copies has seen less distinct text.

Usage: python3 scripts/make_benchmarks.py   (needs pyarrow; deterministic, seeds 7, 11, 13)
"""
import glob
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
CLEAN = ["moby_dick", "sotu", "python_docs", "dict_jargon", "dict_devil", "email_ham"]
KINDS = ["shuffle", "noise", "boilerplate", "spam", "fragment"]
BOILERPLATE = [
    "Home | About us | Products | Contact | Sitemap",
    "We use cookies to improve your experience. By continuing you accept our cookie policy.",
    "Copyright (c) 2024 Example Media Group. All rights reserved.",
    "Subscribe to our newsletter for the latest updates and special offers!",
    "Share this page: Facebook Twitter LinkedIn Email Print",
]
PRODUCTS = ["watches", "pills", "software", "loans", "diplomas", "sunglasses", "casino chips"]


def corrupt(kind, text, rng):
    words = text.split()
    if kind == "shuffle":
        rng.shuffle(words)
        return " ".join(words)
    if kind == "noise":
        chars = list(text)
        for i in range(len(chars)):
            if rng.random() < 0.15:
                chars[i] = chr(rng.randint(33, 126))
        return "".join(chars)
    if kind == "boilerplate":
        sentence = " ".join(words[: rng.randint(8, 20)])
        block = "\n".join(BOILERPLATE)
        return "\n".join([block] * rng.randint(3, 6) + [sentence] + [block] * rng.randint(3, 6))
    if kind == "spam":
        lines = []
        for _ in range(rng.randint(4, 9)):
            p = rng.choice(PRODUCTS)
            lines.append(
                f"BUY CHEAP {p.upper()} NOW!!! Only ${rng.randint(9, 99)}.99 at "
                f"http://www.best-{p.replace(' ', '-')}-{rng.randint(100, 999)}.biz "
                f"- LIMITED OFFER, {rng.randint(50, 90)}% OFF, CLICK HERE!!!"
            )
        return "\n".join(lines)
    if kind == "fragment":
        return " ".join(words[: rng.randint(5, 12)])
    raise ValueError(kind)


def words(text):
    """Lowercase alphanumeric words, as gleaner's overlap check normalises."""
    out, cur = [], []
    for c in text:
        if c.isalnum():
            cur.append(c.lower())
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def shingles(text, n=13):
    w = words(text)
    if len(w) <= n:
        return {" ".join(w)}
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def hold_apart(reference, evaluation):
    """Moves reference documents sharing a 13-word run with an evaluation one to evaluation."""
    while True:
        seen = set().union(*(shingles(r["text"]) for r in evaluation))
        moving = [r for r in reference if shingles(r["text"]) & seen]
        if not moving:
            return reference, evaluation
        reference = [r for r in reference if not shingles(r["text"]) & seen]
        evaluation = evaluation + moving


def write(path, rows):
    table = pa.table(
        {
            "id": [r[0] for r in rows],
            "text": [r[1] for r in rows],
            "source": [r[2] for r in rows],
        }
    )
    pq.write_table(table, path, compression="zstd", row_group_size=512)


def quickstart_rows():
    files = sorted(glob.glob(os.path.join(ROOT, "data", "quickstart", "*.parquet")))
    t = pa.concat_tables(pq.read_table(f, columns=["id", "text", "source"]) for f in files)
    return t.to_pylist()


def targeting():
    rng = random.Random(11)
    rows = quickstart_rows()
    target = sorted((r for r in rows if r["source"] == "email_ham"), key=lambda r: r["id"])
    rng.shuffle(target)
    held = target[:120]
    held_ids = {r["id"] for r in held}
    reference, evaluation = hold_apart(held[:60], held[60:])
    pool = [(r["id"], r["text"], r["source"]) for r in rows if r["id"] not in held_ids]
    out = os.path.join(ROOT, "data", "benchmarks", "targeting")
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "pool.parquet"), pool)
    write(os.path.join(out, "reference.parquet"), [(r["id"], r["text"], r["source"]) for r in reference])
    write(os.path.join(out, "evaluation.parquet"), [(r["id"], r["text"], r["source"]) for r in evaluation])
    share = sum(1 for p in pool if p[2] == "email_ham") / len(pool)
    print(
        f"targeting: pool {len(pool)} (email_ham {share:.1%}), reference {len(reference)}, "
        f"evaluation {len(evaluation)} in {os.path.normpath(out)}"
    )


def quality():
    rng = random.Random(7)
    docs = [
        r
        for r in quickstart_rows()
        if r["source"] in CLEAN and len(r["text"].split()) >= 30
    ]
    docs.sort(key=lambda r: r["id"])
    rng.shuffle(docs)
    n = len(docs)
    evaluation = docs[: n * 15 // 100]
    reference = docs[n * 15 // 100 : n * 25 // 100]
    rest = docs[n * 25 // 100 :]
    reference, evaluation = hold_apart(reference, evaluation)
    # 20% of the pool is planted: planted = 0.25 * clean.
    n_planted = len(rest) // 5
    sources_of_junk, clean = rest[:n_planted], rest[n_planted:]
    pool = [(r["id"], r["text"], r["source"]) for r in clean]
    for k, r in enumerate(sources_of_junk):
        kind = KINDS[k % len(KINDS)]
        pool.append((f"planted-{kind}-{k:04d}", corrupt(kind, r["text"], rng), f"planted_{kind}"))
    rng.shuffle(pool)
    out = os.path.join(ROOT, "data", "benchmarks", "quality")
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "pool.parquet"), pool)
    write(os.path.join(out, "reference.parquet"), [(r["id"], r["text"], r["source"]) for r in reference])
    write(os.path.join(out, "evaluation.parquet"), [(r["id"], r["text"], r["source"]) for r in evaluation])
    print(
        f"quality: pool {len(pool)} ({n_planted} planted), reference {len(reference)}, "
        f"evaluation {len(evaluation)} in {os.path.normpath(out)}"
    )


def diversity():
    rng = random.Random(13)
    docs = [r for r in quickstart_rows() if len(r["text"].split()) >= 50]
    docs.sort(key=lambda r: r["id"])
    rng.shuffle(docs)
    pool = []
    for r in docs[:400]:
        # Skewed family sizes: most families small, a few heavy.
        copies = min(14, int(rng.expovariate(0.35)))
        pool.append((f"{r['id']}#0", r["text"], r["source"]))
        for c in range(1, copies + 1):
            w = r["text"].split()
            for i in rng.sample(range(len(w)), max(1, len(w) // 50)):
                w[i] = "x%05d" % rng.randrange(10**5)
            text = "\n".join(" ".join(w[i : i + 10]) for i in range(0, len(w), 10))
            pool.append((f"{r['id']}#{c}", text, r["source"]))
    rng.shuffle(pool)
    seen = set().union(*(shingles(p[1]) for p in pool))
    evaluation = [
        (r["id"], r["text"], r["source"]) for r in docs[400:600] if not shingles(r["text"]) & seen
    ]
    out = os.path.join(ROOT, "data", "benchmarks", "diversity")
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "pool.parquet"), pool)
    write(os.path.join(out, "evaluation.parquet"), evaluation)
    print(
        f"diversity: pool {len(pool)} documents in 400 families, evaluation {len(evaluation)} "
        f"in {os.path.normpath(out)}"
    )


if __name__ == "__main__":
    quality()
    targeting()
    diversity()
