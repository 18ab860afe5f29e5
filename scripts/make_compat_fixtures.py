#!/usr/bin/env python3
"""Writes tests/fixtures/compat/: small corpora written by other tools, the way users get them.

Every file is written by pyarrow, datatrove or Hugging Face `datasets` (never by gleaner), so
the compatibility tests (tests/compat.rs) read what those tools really write: each parquet
codec, data page v1 and v2, dictionary and plain encodings, utf8 / large_utf8 / utf8_view
text, text as dictionary-typed and as unannotated binary columns, null and empty texts,
null and integer ids, nested struct / list / map metadata, a zero-row row group, a row group
larger than the tests' batch size, many small row groups, Arrow IPC (`datasets`'
`save_to_disk` stream files, Feather v2 with lz4) and JSONL (plain, gzip, zstd; Dolma layout
with nested metadata; `datasets`' `.json`; a byte order mark with CRLF line ends; a field no
Arrow type fits beside the ones a run reads), a Hive-partitioned dataset
(`write_to_dataset`) and a Common Crawl WET file (warcio).

`expected.json` records, per file, what pyarrow (or Python's json module) reads back: rows,
null and empty texts, the id column's Arrow type, the codecs in the footer. The tests compare
gleaner's output with those numbers and with the input columns themselves.

Usage: python3 scripts/make_compat_fixtures.py   (needs pyarrow; datatrove, datasets, warcio
and zstandard optional: the files they would write are left out, and say so, without them)
"""
import gzip
import json
import os
import sys

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "compat")
CORPUS = os.path.join(HERE, "..", "data", "quickstart", "corpus-00.parquet")


def sample_docs(n=48):
    """The first n documents of the shipped corpus, cut to at most 600 characters."""
    table = pq.read_table(CORPUS, columns=["id", "text", "source"]).slice(0, n)
    rows = table.to_pylist()
    for r in rows:
        r["text"] = r["text"][:600]
    return rows


DOCS = sample_docs()
expected = {}


def codecs_of(path):
    meta = pq.ParquetFile(path).metadata
    found = set()
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for c in range(rg.num_columns):
            found.add(rg.column(c).compression)
    return sorted(found)


def record(name, table_or_rows, id_column="id", text_column="text", metadata=(), **extra):
    """Stores the facts about fixture `name` that the tests check against."""
    path = os.path.join(OUT, name)
    if name.endswith((".parquet", ".arrow", ".feather")):
        t = pq.read_table(path) if name.endswith(".parquet") else table_or_rows
        texts = t.column(text_column).to_pylist()
        id_type = str(t.schema.field(id_column).type) if id_column in t.column_names else None
        entry = (
            {"codecs": codecs_of(path), "row_groups": pq.ParquetFile(path).num_row_groups}
            if name.endswith(".parquet")
            else {}
        )
    else:
        texts = [r.get(text_column) for r in table_or_rows]
        id_type = None
        entry = {}
    entry.update(
        rows=len(texts),
        null_text=sum(1 for x in texts if x is None),
        empty_text=sum(1 for x in texts if x is not None and not x.strip()),
        id_type=id_type,
        metadata=list(metadata),
        **extra,
    )
    expected[name] = entry


def base_table(docs=DOCS):
    return pa.table(
        {
            "id": [d["id"] for d in docs],
            "text": [d["text"] for d in docs],
            "source": [d["source"] for d in docs],
        }
    )


def write_parquet():
    t = base_table()
    # Every codec, pyarrow's defaults otherwise (dictionary pages, data page v1).
    for codec in ["snappy", "gzip", "brotli", "lz4", "lz4_raw", "zstd", "none"]:
        name = f"codec-{codec}.parquet"
        pq.write_table(t, os.path.join(OUT, name), compression=codec, row_group_size=20)
        record(name, t)
    # Data page v2, plain encoding (no dictionary).
    pq.write_table(t, os.path.join(OUT, "page-v2.parquet"), data_page_version="2.0")
    record("page-v2.parquet", t)
    pq.write_table(t, os.path.join(OUT, "plain-encoding.parquet"), use_dictionary=False)
    record("plain-encoding.parquet", t)
    # A dictionary-typed source column (pandas categoricals are written like this).
    dict_t = t.set_column(2, "source", t.column("source").dictionary_encode())
    pq.write_table(dict_t, os.path.join(OUT, "dictionary-source.parquet"))
    record("dictionary-source.parquet", dict_t)
    # Text layouts.
    for kind, typ in [("large-utf8", pa.large_string()), ("utf8-view", pa.string_view())]:
        name = f"text-{kind}.parquet"
        pq.write_table(t.set_column(1, "text", t.column("text").cast(typ)), os.path.join(OUT, name))
        record(name, t)
    # Text as plain binary (writers that leave out parquet's UTF8 annotation, as Impala and
    # old Hive did) and as a dictionary-typed column: read as strings.
    for kind, column in [
        ("binary", t.column("text").cast(pa.binary())),
        ("dictionary", t.column("text").dictionary_encode()),
    ]:
        name = f"text-{kind}.parquet"
        pq.write_table(t.set_column(1, "text", column), os.path.join(OUT, name))
        record(name, t, text_written_as="string")
    # Feather v2 as pandas and pyarrow write it: the Arrow IPC file format, lz4-compressed.
    feather.write_feather(t, os.path.join(OUT, "feather-lz4.feather"))
    record("feather-lz4.feather", t, same_rows_as="codec-none.parquet")
    # Nulls and empties in text, nulls in string ids.
    texts = [d["text"] for d in DOCS]
    ids = [d["id"] for d in DOCS]
    for i in (3, 10, 17):
        texts[i] = None
    for i in (4, 11):
        texts[i] = ""
    texts[12] = "   \n\t "
    for i in (5, 20):
        ids[i] = None
    nulls = pa.table({"id": ids, "text": texts, "source": [d["source"] for d in DOCS]})
    pq.write_table(nulls, os.path.join(OUT, "null-texts-and-ids.parquet"), compression="snappy")
    record("null-texts-and-ids.parquet", nulls)
    # Integer ids (int64, one null) and uint32 ids: kept as integers.
    int_ids = pa.array([1000 + i if i != 7 else None for i in range(len(DOCS))], pa.int64())
    ints = pa.table({"id": int_ids, "text": [d["text"] for d in DOCS]})
    pq.write_table(ints, os.path.join(OUT, "int64-ids.parquet"))
    record("int64-ids.parquet", ints)
    u32 = pa.table({"id": pa.array(range(len(DOCS)), pa.uint32()), "text": [d["text"] for d in DOCS]})
    pq.write_table(u32, os.path.join(OUT, "uint32-ids.parquet"), compression="gzip")
    record("uint32-ids.parquet", u32)
    # Nested metadata: struct (with a nested struct), list, map.
    n = len(DOCS)
    meta = pa.array(
        [
            {
                "url": f"https://example.org/{i}",
                "date": f"2024-01-{1 + i % 28:02d}",
                "quality": {"lang": "en", "score": i / 10},
            }
            for i in range(n)
        ]
    )
    tags = pa.array([[f"t{i % 3}", f"u{i % 5}"][: 1 + i % 2] for i in range(n)], pa.list_(pa.string()))
    counts = pa.array(
        [[("words", len(d["text"].split())), ("lines", d["text"].count("\n") + 1)] for d in DOCS],
        pa.map_(pa.string(), pa.int64()),
    )
    nested = base_table().append_column("metadata", meta).append_column("tags", tags).append_column(
        "counts", counts
    )
    pq.write_table(nested, os.path.join(OUT, "nested-metadata.parquet"), compression="snappy")
    record("nested-metadata.parquet", nested, metadata=["metadata", "tags", "counts"])
    # A zero-row row group between two full ones.
    path = os.path.join(OUT, "zero-row-group.parquet")
    with pq.ParquetWriter(path, t.schema, compression="snappy") as w:
        w.write_table(t.slice(0, 10))
        w.write_table(t.slice(0, 0))
        w.write_table(t.slice(10, 20))
    record("zero-row-group.parquet", t)
    # One row group of 3,000 short rows (the tests use batch_size = 256) and many tiny ones.
    big = pa.table(
        {
            "id": [f"big-{i}" for i in range(3000)],
            "text": [f"document {i} of the large row group: {DOCS[i % n]['text'][:80]}" for i in range(3000)],
        }
    )
    pq.write_table(big, os.path.join(OUT, "large-row-group.parquet"), row_group_size=3000)
    record("large-row-group.parquet", big)
    pq.write_table(t, os.path.join(OUT, "many-row-groups.parquet"), row_group_size=3)
    record("many-row-groups.parquet", t)


def write_datatrove():
    try:
        from datatrove.data import Document
        from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
    except ImportError:
        print("datatrove not installed: its fixtures are left out", file=sys.stderr)
        return
    docs = [
        Document(text=d["text"], id=d["id"], metadata={"source": d["source"], "position": i})
        for i, d in enumerate(DOCS)
    ]
    for writer, name in [
        (ParquetWriter(OUT, output_filename="datatrove-writer.parquet"), "datatrove-writer.parquet"),
        (JsonlWriter(OUT, output_filename="datatrove-writer.jsonl.gz"), "datatrove-writer.jsonl.gz"),
    ]:
        with writer as w:
            for doc in docs:
                w.write(doc)
        # datatrove's ParquetWriter names its files "<rank>_<output_filename>".
        if os.path.exists(os.path.join(OUT, "000_" + name)):
            os.replace(os.path.join(OUT, "000_" + name), os.path.join(OUT, name))
        rows = [{"text": d.text} for d in docs]
        record(name, rows, metadata=["metadata"], source_path="metadata.source")


def write_hf_datasets():
    try:
        import datasets
    except ImportError:
        print("datasets not installed: its fixture is left out", file=sys.stderr)
        return
    ds = datasets.Dataset.from_dict(
        {
            "id": [d["id"] for d in DOCS],
            "text": [d["text"] for d in DOCS],
            "meta": [{"source": d["source"], "chars": len(d["text"])} for d in DOCS],
        }
    )
    ds.to_parquet(os.path.join(OUT, "hf-datasets.parquet"))
    record("hf-datasets.parquet", ds.data.table, metadata=["meta"])
    # `save_to_disk` writes Arrow IPC stream files (`data-00000-of-00001.arrow`); this one
    # holds the rows of hf-datasets.parquet.
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as saved:
        ds.save_to_disk(saved)
        shutil.copy(os.path.join(saved, "data-00000-of-00001.arrow"), os.path.join(OUT, "hf-save-to-disk.arrow"))
    record("hf-save-to-disk.arrow", ds.data.table, metadata=["meta"], same_rows_as="hf-datasets.parquet")
    # `Dataset.to_json` writes JSON Lines to a `.json` file (here in the Dolma layout).
    rows = [
        {"id": d["id"], "text": d["text"], "metadata": {"source": d["source"], "position": i}}
        for i, d in enumerate(DOCS)
    ]
    datasets.Dataset.from_list(rows).to_json(os.path.join(OUT, "hf-datasets.json"))
    record("hf-datasets.json", rows, metadata=["metadata"], source_path="metadata.source")


def write_jsonl():
    """Dolma/RedPajama layout: id, text, source-like fields nested under metadata."""
    rows = [
        {
            "id": d["id"],
            "text": d["text"],
            "added": "2024-05-01",
            "metadata": {"source": d["source"], "position": i, "tags": ["a", "b"][: 1 + i % 2]},
        }
        for i, d in enumerate(DOCS)
    ]
    rows[6]["text"] = ""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    with open(os.path.join(OUT, "dolma.jsonl"), "wb") as f:
        f.write(lines)
    record("dolma.jsonl", rows, metadata=["metadata"], source_path="metadata.source")
    with open(os.path.join(OUT, "dolma.jsonl.gz"), "wb") as f:
        f.write(gzip.compress(lines, mtime=0))
    record("dolma.jsonl.gz", rows, metadata=["metadata"], source_path="metadata.source")
    # As Windows tools write text: a byte order mark first and CRLF line ends.
    with open(os.path.join(OUT, "dolma-bom-crlf.jsonl"), "wb") as f:
        f.write(b"\xef\xbb\xbf" + lines.replace(b"\n", b"\r\n"))
    record("dolma-bom-crlf.jsonl", rows, metadata=["metadata"], source_path="metadata.source")
    # A field no Arrow type fits (a list mixing numbers and objects) beside the ones a run
    # reads: the run reads the others.
    mixed = [dict(r, spans=[i, {"score": i / 10}]) for i, r in enumerate(rows)]
    with open(os.path.join(OUT, "dolma-mixed-types.jsonl"), "wb") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mixed).encode())
    record("dolma-mixed-types.jsonl", mixed, metadata=["metadata"], source_path="metadata.source")
    try:
        import zstandard
    except ImportError:
        print("zstandard not installed: dolma.jsonl.zst is left out", file=sys.stderr)
        return
    with open(os.path.join(OUT, "dolma.jsonl.zst"), "wb") as f:
        f.write(zstandard.ZstdCompressor(level=3).compress(lines))
    record("dolma.jsonl.zst", rows, metadata=["metadata"], source_path="metadata.source")


def write_partitioned():
    """Hive-style partition directories as pyarrow's `write_to_dataset` writes them: the
    partition columns leave the files and become `name=value` directories (values
    percent-encoded, nulls as `__HIVE_DEFAULT_PARTITION__`). `expected.json` keeps each id's
    partition values as pyarrow's own hive discovery reads them back."""
    import shutil

    root = os.path.join(OUT, "hive-partitioned")
    shutil.rmtree(root, ignore_errors=True)
    groups = ["docs & refs/v2", "plain", None]
    t = base_table(DOCS[:24]).append_column(
        "group", pa.array([groups[i % 3] for i in range(24)])
    )
    pq.write_to_dataset(
        t, root, partition_cols=["source", "group"], basename_template="part-{i}.parquet"
    )
    back = pq.read_table(root).to_pylist()
    expected["hive-partitioned"] = {
        "rows": len(back),
        "partitions": {r["id"]: {"source": r["source"], "group": r["group"]} for r in back},
    }


def write_wet():
    """A Common Crawl WET file (`*.warc.wet.gz`) as warcio writes one: a warcinfo record, then
    one `conversion` record of plain text per document, each record its own gzip member.
    `expected.json` keeps each document as warcio's own reader reads it back."""
    try:
        import io

        from warcio.archiveiterator import ArchiveIterator
        from warcio.warcwriter import WARCWriter
    except ImportError:
        print("warcio not installed: the WET fixture is left out", file=sys.stderr)
        return
    name = "cc-sample.warc.wet.gz"
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        info = w.create_warcinfo_record(
            name,
            {"software": "make_compat_fixtures.py", "format": "WARC File Format 1.0"},
        )
        info.rec_headers.replace_header("WARC-Date", "2024-05-01T00:00:00Z")
        info.rec_headers.replace_header("WARC-Record-ID", "<urn:uuid:00000000-0000-0000-0000-000000000000>")
        w.write_record(info)
        for i, d in enumerate(DOCS[:24]):
            headers = {
                "WARC-Target-URI": f"https://{d['source'].replace('_', '-')}.example/{i}",
                "WARC-Date": f"2024-05-01T00:{i:02d}:00Z",
                "WARC-Record-ID": f"<urn:uuid:00000000-0000-0000-0000-{i:012d}>",
                "Content-Type": "text/plain",
            }
            if i % 4:
                headers["WARC-Identified-Content-Language"] = ["eng", "eng,fra", "deu"][i % 3]
            record = w.create_warc_record(
                headers["WARC-Target-URI"],
                "conversion",
                payload=io.BytesIO(d["text"].encode()),
                warc_headers_dict=headers,
            )
            w.write_record(record)
    documents = []
    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type != "conversion":
                continue
            h = record.rec_headers
            documents.append(
                {
                    "id": h.get_header("WARC-Record-ID"),
                    "text": record.content_stream().read().decode(),
                    "url": h.get_header("WARC-Target-URI"),
                    "date": h.get_header("WARC-Date"),
                    "content_language": h.get_header("WARC-Identified-Content-Language"),
                }
            )
    expected[name] = {"rows": len(documents), "documents": documents}


def main():
    os.makedirs(OUT, exist_ok=True)
    write_partitioned()
    write_wet()
    write_parquet()
    write_datatrove()
    write_hf_datasets()
    write_jsonl()
    expected["_writers"] = {"pyarrow": pa.__version__}
    from importlib import metadata as package_metadata

    for mod in ["datatrove", "datasets", "zstandard", "warcio"]:
        try:
            expected["_writers"][mod] = package_metadata.version(mod)
        except package_metadata.PackageNotFoundError:
            pass
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(expected) - 1} fixtures to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
