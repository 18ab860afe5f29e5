"""WET reading benchmark helpers (used by scripts/bench-wet.sh).

make SRC OUT --copies K: the quickstart's documents (SRC) K times over as conversion records
     of Common Crawl WET files written by warcio, one file per copy (OUT/crawl-NN.warc.wet.gz).
warcio CORPUS OUT: warcio's ArchiveIterator (the reader datatrove's WarcReader uses) over every
     file on 2 processes, each conversion record a row (id, text, url, date), written as zstd
     parquet, one file per input.
"""
import glob
import io
import os
import sys
from multiprocessing import Pool

import pyarrow as pa
import pyarrow.parquet as pq


def make(src, out, copies):
    from warcio.warcwriter import WARCWriter

    from bench_rules import corpus_documents

    docs = corpus_documents(src)
    os.makedirs(out, exist_ok=True)
    for k in range(copies):
        with open(os.path.join(out, f"crawl-{k:02d}.warc.wet.gz"), "wb") as f:
            w = WARCWriter(f, gzip=True)
            for i, (doc_id, text) in enumerate(docs):
                headers = {
                    "WARC-Target-URI": f"https://example.org/{k}/{i}",
                    "WARC-Date": "2024-05-01T00:00:00Z",
                    "WARC-Record-ID": f"<urn:uuid:{k:08d}-0000-0000-0000-{i:012d}>",
                    "Content-Type": "text/plain",
                }
                w.write_record(
                    w.create_warc_record(
                        headers["WARC-Target-URI"], "conversion",
                        payload=io.BytesIO(text.encode()), warc_headers_dict=headers,
                    )
                )


def read_one(args):
    from warcio.archiveiterator import ArchiveIterator

    path, out = args
    rows = {"id": [], "text": [], "url": [], "date": []}
    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type != "conversion":
                continue
            h = record.rec_headers
            rows["id"].append(h.get_header("WARC-Record-ID"))
            rows["text"].append(record.content_stream().read().decode())
            rows["url"].append(h.get_header("WARC-Target-URI"))
            rows["date"].append(h.get_header("WARC-Date"))
    name = os.path.basename(path).replace(".warc.wet.gz", ".parquet")
    pq.write_table(pa.table(rows), os.path.join(out, name), compression="zstd")
    return len(rows["id"])


def warcio(corpus, out):
    os.makedirs(out, exist_ok=True)
    files = sorted(glob.glob(os.path.join(corpus, "*.warc.wet.gz")))
    with Pool(2) as pool:
        print(sum(pool.map(read_one, [(f, out) for f in files])), "documents")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(args[0], args[1], int(args[args.index("--copies") + 1]))
    elif cmd == "warcio":
        warcio(args[0], args[1])
