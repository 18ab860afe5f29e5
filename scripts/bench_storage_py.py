#!/usr/bin/env python3
"""Reference implementations timed by bench-storage.sh (one task per invocation).

  read-pyarrow DIR           stream the text column with pyarrow, sum text bytes
  e2e-pyarrow DIR OUT        pyarrow: read all columns, keep a seeded 50% sample, write zstd parquet
  e2e-datatrove DIR OUT      datatrove: ParquetReader -> SamplerFilter(0.5) -> ParquetWriter(zstd), 2 workers
  to-jsonl DIR OUT           write the parquet corpus as Dolma-style .jsonl.zst files (one per parquet file)
  to-snappy DIR OUT          rewrite the parquet corpus with pyarrow's defaults (snappy, its row groups)
  read-jsonl-pyarrow DIR     pyarrow.json.read_json of each .jsonl.zst file, 2 processes, sum text bytes
  read-jsonl-datatrove DIR   datatrove JsonlReader over the .jsonl.zst files, 2 workers, sum text bytes
"""
import glob, os, sys, tempfile, time


def files(d):
    return sorted(glob.glob(os.path.join(d, "*.parquet")))


def read_pyarrow(d):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    docs = text_bytes = 0
    for f in files(d):
        for batch in pq.ParquetFile(f).iter_batches(columns=["text"], batch_size=8192):
            col = batch.column(0)
            docs += len(col)
            text_bytes += pc.sum(pc.binary_length(col)).as_py() or 0
    print(f"pyarrow read {docs} documents, {text_bytes} text bytes")


def e2e_pyarrow(d, out):
    import numpy as np
    import pyarrow.parquet as pq
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    kept = 0
    writer = None
    for f in files(d):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=8192):
            mask = rng.random(batch.num_rows) < 0.5
            sel = batch.filter(mask)
            kept += sel.num_rows
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(out, "part-00000.parquet"), sel.schema, compression="zstd")
            writer.write_batch(sel)
    writer.close()
    print(f"pyarrow kept {kept}")


def e2e_datatrove(d, out):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import SamplerFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    n = len(files(d))
    LocalPipelineExecutor(
        pipeline=[
            ParquetReader(d, glob_pattern="*.parquet", text_key="text", id_key="id"),
            SamplerFilter(rate=0.5, seed=0),
            ParquetWriter(out, compression="zstd"),
        ],
        tasks=n,
        workers=2,
        logging_dir=os.path.join(out, "_logs"),
    ).run()


def to_jsonl(d, out):
    import json
    import pyarrow.parquet as pq
    import zstandard
    os.makedirs(out, exist_ok=True)
    for k, f in enumerate(files(d)):
        cctx = zstandard.ZstdCompressor(level=3)
        with open(os.path.join(out, f"bench-{k:02d}.jsonl.zst"), "wb") as fh, cctx.stream_writer(fh) as w:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=8192):
                for row in batch.to_pylist():
                    doc = {"id": row["id"], "text": row["text"], "metadata": {"source": row["source"]}}
                    w.write((json.dumps(doc, ensure_ascii=False) + "\n").encode())


def to_snappy(d, out):
    import pyarrow.parquet as pq
    os.makedirs(out, exist_ok=True)
    for k, f in enumerate(files(d)):
        pq.write_table(pq.read_table(f), os.path.join(out, f"bench-{k:02d}.parquet"))


def jsonl_files(d):
    return sorted(glob.glob(os.path.join(d, "*.jsonl.zst")))


def _pyarrow_json_file(f):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    table = pj.read_json(pa.input_stream(f, compression="zstd"))
    col = table.column("text")
    return len(col), pc.sum(pc.binary_length(col)).as_py() or 0


def read_jsonl_pyarrow(d):
    from multiprocessing import Pool
    with Pool(2) as pool:
        counts = pool.map(_pyarrow_json_file, jsonl_files(d))
    print(f"pyarrow json read {sum(c[0] for c in counts)} documents, {sum(c[1] for c in counts)} text bytes")


def read_jsonl_datatrove(d):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.readers import JsonlReader

    class CountText(PipelineStep):
        name = "count text"

        def run(self, data, rank=0, world_size=1):
            docs = text_bytes = 0
            for doc in data:
                docs += 1
                text_bytes += len(doc.text.encode())
            print(f"datatrove rank {rank}: {docs} documents, {text_bytes} text bytes")
            yield from ()

    LocalPipelineExecutor(
        pipeline=[JsonlReader(d, glob_pattern="*.jsonl.zst", compression="zstd"), CountText()],
        tasks=len(jsonl_files(d)),
        workers=2,
        # A fresh log folder per run: datatrove skips tasks its logs mark as completed.
        logging_dir=tempfile.mkdtemp(prefix="dt-jsonl-logs-"),
    ).run()


if __name__ == "__main__":
    task, args = sys.argv[1], sys.argv[2:]
    t = time.time()
    {
        "read-pyarrow": read_pyarrow,
        "e2e-pyarrow": e2e_pyarrow,
        "e2e-datatrove": e2e_datatrove,
        "to-jsonl": to_jsonl,
        "to-snappy": to_snappy,
        "read-jsonl-pyarrow": read_jsonl_pyarrow,
        "read-jsonl-datatrove": read_jsonl_datatrove,
    }[task](*args)
    print(f"{task} {time.time() - t:.3f} s", file=sys.stderr)
