"""MinHash near-duplicate benchmark helpers (used by scripts/bench-minhash.sh).

make  SRC OUT --copies K: a corpus of real documents (the quickstart's, SRC) with planted
      near-duplicates: for K rounds, every document of at least 50 words gets a copy with a
      seeded fraction of its words replaced (1%, 3%, 10%, 20% or 40%) and its lines re-wrapped;
      written as OUT/corpus-NN.parquet (id, text), documents shuffled with a fixed seed.
datatrove CORPUS WORK: datatrove 0.10.1's MinHash pipeline (signatures, buckets, clusters,
      filter; 5-grams, 14 buckets of 8 hashes) on 2 workers; writes WORK/removed.txt.
score CORPUS NAME=REMOVED_IDS_FILE...: precision and recall of each tool's removed documents
      against exact Jaccard: a document is a true near-duplicate when an earlier document
      (corpus order) has exact Jaccard >= 0.75 with it on 5-word shingles of lowercase
      alphanumeric words (gleaner's normalisation). Pairs are found through an inverted
      index of shingles; shingles in more than 1000 documents are not used to find pairs.
"""
import collections
import glob
import os
import random
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq

WORD = re.compile(r"[^\W_]+|_", re.UNICODE)


def words(text):
    return [w.lower() for w in re.split(r"[^0-9A-Za-z\u00C0-\uFFFF]+", text) if w]


def shingles(text, n=5):
    w = words(text)
    if len(w) <= n:
        return {" ".join(w)}
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def make(src, out, copies):
    docs = []
    for f in sorted(glob.glob(os.path.join(src, "*.parquet"))):
        t = pq.read_table(f, columns=["id", "text"])
        docs += list(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    rng = random.Random(0)
    rates = [0.01, 0.03, 0.10, 0.20, 0.40]
    planted = []
    for k in range(copies):
        for doc_id, text in docs:
            w = text.split()
            if len(w) < 50:
                continue
            rate = rates[rng.randrange(len(rates))]
            w = list(w)
            for i in rng.sample(range(len(w)), max(1, int(rate * len(w)))):
                w[i] = "x%06d" % rng.randrange(10**6)
            lines = [" ".join(w[i:i + 12]) for i in range(0, len(w), 12)]
            planted.append((f"{doc_id}#copy{k}-{int(rate * 100)}pct", "\n".join(lines)))
    alldocs = docs + planted
    rng.shuffle(alldocs)
    os.makedirs(out, exist_ok=True)
    per = (len(alldocs) + 3) // 4
    for i in range(4):
        part = alldocs[i * per:(i + 1) * per]
        pq.write_table(
            pa.table({"id": [d[0] for d in part], "text": [d[1] for d in part]}),
            os.path.join(out, f"corpus-{i:02d}.parquet"),
            compression="zstd",
        )
    print(f"{len(docs)} documents, {len(planted)} planted copies")


def datatrove_run(corpus, work):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
        MinhashDedupSignature)
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter

    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    files = len(glob.glob(os.path.join(corpus, "*.parquet")))
    read = lambda: ParquetReader(corpus, glob_pattern="*.parquet")
    LocalPipelineExecutor(pipeline=[read(), MinhashDedupSignature(f"{work}/sigs", config=cfg)],
                          tasks=files, workers=2, logging_dir=f"{work}/logs/1").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
                          tasks=cfg.num_buckets, workers=2, logging_dir=f"{work}/logs/2").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)],
                          tasks=1, workers=1, logging_dir=f"{work}/logs/3").run()
    LocalPipelineExecutor(pipeline=[read(), MinhashDedupFilter(f"{work}/remove",
                                    exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
                                    JsonlWriter(f"{work}/kept", compression=None)],
                          tasks=files, workers=2, logging_dir=f"{work}/logs/4").run()
    import json
    ids = []
    for f in sorted(glob.glob(f"{work}/removed/*.jsonl")):
        with open(f) as fh:
            ids += [json.loads(line)["id"] for line in fh]
    with open(f"{work}/removed.txt", "w") as fh:
        fh.write("\n".join(ids) + "\n")


def score(corpus, named):
    docs = []
    for f in sorted(glob.glob(os.path.join(corpus, "*.parquet"))):
        t = pq.read_table(f, columns=["id", "text"])
        docs += list(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    sets = [shingles(t) for _, t in docs]
    index = collections.defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            index[sh].append(i)
    true_dup = set()
    for i, s in enumerate(sets):
        seen = collections.Counter()
        for sh in s:
            post = index[sh]
            if len(post) > 1000:
                continue
            for j in post:
                if j < i:
                    seen[j] += 1
        for j, common in seen.items():
            if common / (len(s) + len(sets[j]) - common) >= 0.75:
                true_dup.add(docs[i][0])
                break
    print(f"{len(docs)} documents, {len(true_dup)} true near-duplicates (exact Jaccard >= 0.75 to an earlier one)")
    for spec in named:
        name, path = spec.split("=", 1)
        with open(path) as fh:
            removed = {line.strip() for line in fh if line.strip()}
        hit = len(removed & true_dup)
        p = hit / max(1, len(removed))
        r = hit / max(1, len(true_dup))
        print(f"{name}\tremoved {len(removed)}\tprecision {p:.4f}\trecall {r:.4f}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[sys.argv.index("--copies") + 1]))
    elif cmd == "datatrove":
        datatrove_run(sys.argv[2], sys.argv[3])
    elif cmd == "score":
        score(sys.argv[2], sys.argv[3:])
