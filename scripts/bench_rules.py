"""Per-document rule benchmark helpers (used by scripts/bench-rules.sh).

make SRC OUT --copies K: the quickstart's documents (SRC) K times over, ids suffixed by the
     copy, as OUT/corpus-NN.parquet (id, text).
datatrove RULE CORPUS OUT: datatrove 0.10.1's ParquetReader -> the rule -> ParquetWriter on
     2 workers. RULE is `pii` (PIIFormatter, one placeholder for emails and one for IPs, so
     that its turn across documents does not matter), `fineweb` (FineWebQualityFilter) or
     `badwords` (C4BadWordsFilter with the list $BADWORDS_LIST, a JSON array, in place of
     its download).
compare CORPUS GLEANER_OUT DATATROVE_OUT: whether both tools wrote the same documents with
     the same text, and how many texts changed.
"""
import glob
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

EMAIL = "email@example.com"
IP = "22.214.171.124"


def corpus_documents(src):
    """(id, text) of every document of the parquet files in `src`, in file order."""
    docs = []
    for f in sorted(glob.glob(os.path.join(src, "*.parquet"))):
        t = pq.read_table(f, columns=["id", "text"])
        docs += list(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    return docs


def make(src, out, copies):
    docs = corpus_documents(src)
    os.makedirs(out, exist_ok=True)
    for k in range(copies):
        ids = [f"{i}#{k}" for i, _ in docs]
        texts = [t for _, t in docs]
        pq.write_table(pa.table({"id": ids, "text": texts}), os.path.join(out, f"corpus-{k:02d}.parquet"))


def datatrove(rule, corpus, out):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import C4BadWordsFilter, FineWebQualityFilter, c4_filters
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    if rule == "badwords":
        # One word per line, where datatrove's download would have put it.
        listed = out + "-words.txt"
        with open(listed, "w") as f:
            f.write("\n".join(json.load(open(os.environ["BADWORDS_LIST"]))) + "\n")
        c4_filters.cached_asset_path_or_download = lambda url, **kw: listed
    step = {
        "pii": lambda: PIIFormatter(email_replacement=EMAIL, ip_replacement=IP),
        "fineweb": FineWebQualityFilter,
        "badwords": C4BadWordsFilter,
    }[rule]()
    if rule == "badwords":
        # Compiled here, so the workers (started apart from this process, which do not see
        # the replaced download) receive the pattern with the filter.
        step._get_badwords("en")
    files = len(glob.glob(os.path.join(corpus, "*.parquet")))
    LocalPipelineExecutor(
        pipeline=[
            ParquetReader(corpus, glob_pattern="*.parquet"),
            step,
            ParquetWriter(os.path.join(out, "data"), output_filename="${rank}.parquet", compression="zstd"),
        ],
        tasks=files,
        workers=2,
        logging_dir=os.path.join(out, "logs"),
    ).run()


def texts(paths):
    found = {}
    for f in paths:
        t = pq.read_table(f, columns=["id", "text"])
        found.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    return found


def compare(corpus, gleaner_out, datatrove_out):
    original = texts(glob.glob(os.path.join(corpus, "*.parquet")))
    ours = texts(glob.glob(os.path.join(gleaner_out, "selected", "*.parquet")))
    theirs = texts(glob.glob(os.path.join(datatrove_out, "data", "*.parquet")))
    same = sum(ours.get(i) == theirs.get(i) for i in original)
    changed = sum(i in ours and ours[i] != t for i, t in original.items())
    print(
        f"{len(original)} documents: gleaner wrote {len(ours)}, datatrove {len(theirs)}; "
        f"the same (left out, or written with the same text) for {same} "
        f"({same / len(original):.2%}); {changed} texts changed"
    )


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(args[0], args[1], int(args[args.index("--copies") + 1]))
    elif cmd == "datatrove":
        datatrove(args[0], args[1], args[2])
    elif cmd == "compare":
        compare(*args)
