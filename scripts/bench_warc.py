"""WARC extraction benchmark helpers (used by scripts/bench-warc.sh).

datatrove CORPUS OUT: datatrove's WarcReader -> Trafilatura(favour_precision=True) ->
     ParquetWriter on LocalPipelineExecutor (one task per file, 2 workers).
compare GLEANER_OUT DATATROVE_OUT: the documents each kept, and how close their texts are
     (bag-of-words F1 of whitespace-separated words, median and share at 0.9 or more).
"""
import collections
import glob
import os
import statistics
import sys


def datatrove(corpus, out):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import ParquetWriter

    tasks = len(glob.glob(os.path.join(corpus, "*.warc.gz")))
    LocalPipelineExecutor(
        pipeline=[
            WarcReader(corpus, glob_pattern="*.warc.gz"),
            Trafilatura(favour_precision=True),
            ParquetWriter(out, compression="zstd"),
        ],
        tasks=tasks,
        workers=2,
        logging_dir=out + "-logs",
    ).run()


def word_f1(a, b):
    ca, cb = collections.Counter(a.split()), collections.Counter(b.split())
    common = sum((ca & cb).values())
    if common == 0:
        return 0.0
    p, r = common / sum(ca.values()), common / sum(cb.values())
    return 2 * p * r / (p + r)


def compare(gleaner_out, datatrove_out):
    import pyarrow.parquet as pq

    def texts(files):
        return {r["id"]: r["text"] for f in files for r in pq.read_table(f, columns=["id", "text"]).to_pylist()}

    a = texts(glob.glob(os.path.join(gleaner_out, "selected", "*.parquet")))
    b = texts(glob.glob(os.path.join(datatrove_out, "*.parquet")))
    both = sorted(set(a) & set(b))
    f1 = [word_f1(a[k], b[k]) for k in both]
    print(f"pages with text: gleaner {len(a)}, datatrove {len(b)}, both {len(both)}; "
          f"word F1 on those: median {statistics.median(f1):.3f}, "
          f"{sum(x >= 0.9 for x in f1) / len(f1):.1%} at 0.9 or more; "
          f"identical texts {sum(a[k] == b[k] for k in both)}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"datatrove": datatrove, "compare": compare}[cmd](*args)
