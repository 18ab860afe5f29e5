#!/usr/bin/env python3
"""Reference implementations timed by bench-storage.sh (one task per invocation).

  read-pyarrow DIR           stream the text column with pyarrow, sum text bytes
  e2e-pyarrow DIR OUT        pyarrow: read all columns, keep a seeded 50% sample, write zstd parquet
  e2e-datatrove DIR OUT      datatrove: ParquetReader -> SamplerFilter(0.5) -> ParquetWriter(zstd), 2 workers
"""
import glob, os, sys, time


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


if __name__ == "__main__":
    task, args = sys.argv[1], sys.argv[2:]
    t = time.time()
    {"read-pyarrow": read_pyarrow, "e2e-pyarrow": e2e_pyarrow, "e2e-datatrove": e2e_datatrove}[task](*args)
    print(f"{task} {time.time() - t:.3f} s", file=sys.stderr)
