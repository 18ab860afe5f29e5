#!/usr/bin/env python3
"""Generate a large benchmark corpus (id, text, source) from the real quickstart corpus.

Each generated document joins 1-12 paragraphs drawn (seeded) from the quickstart's real
documents, so the text has realistic statistics; 5% of documents repeat an earlier one
exactly. Written as --files zstd parquet files with --row-group rows per row group.

Usage: gen_bench_corpus.py --src data/quickstart --out DIR [--mb 420] [--files 4]
"""
import argparse, glob, os, random

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mb", type=float, default=420)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--row-group", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    paras, sources = [], []
    for f in sorted(glob.glob(os.path.join(a.src, "*.parquet"))):
        t = pq.read_table(f, columns=["text", "source"])
        for text, src in zip(t.column("text").to_pylist(), t.column("source").to_pylist()):
            for p in text.split("\n\n"):
                if len(p.strip()) > 40:
                    paras.append(p.strip())
                    sources.append(src)
    os.makedirs(a.out, exist_ok=True)
    target = int(a.mb * 1e6 / a.files)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string())])
    n = 0
    recent = []
    for fi in range(a.files):
        writer = pq.ParquetWriter(os.path.join(a.out, f"bench-{fi:02d}.parquet"), schema, compression="zstd")
        size = 0
        while size < target:
            ids, texts, srcs = [], [], []
            for _ in range(a.row_group):
                if recent and rng.random() < 0.05:
                    text, src = rng.choice(recent)
                else:
                    picks = [rng.randrange(len(paras)) for _ in range(rng.randint(1, 12))]
                    text = "\n\n".join(paras[i] for i in picks)
                    src = sources[picks[0]]
                    if len(recent) < 1000:
                        recent.append((text, src))
                    else:
                        recent[rng.randrange(1000)] = (text, src)
                ids.append(f"bench-{n:08d}")
                texts.append(text)
                srcs.append(src)
                size += len(text.encode())
                n += 1
            writer.write_table(pa.table({"id": ids, "text": texts, "source": srcs}, schema=schema), row_group_size=a.row_group)
        writer.close()
    print(f"{n} documents, {a.files} files in {a.out}")


if __name__ == "__main__":
    main()
