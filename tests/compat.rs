//! Files other tools wrote: `gleaner inspect` and `gleaner run` on every fixture of
//! tests/fixtures/compat (pyarrow, datatrove and Hugging Face `datasets` wrote them; see
//! scripts/make_compat_fixtures.py), checked against what those tools recorded in
//! `expected.json` and against the input columns themselves.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches, filter};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{fails, gleaner, ok, repo};

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/compat")
}

/// Every row of a parquet file as one batch.
fn read_all(path: &Path) -> RecordBatch {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    concat_batches(&schema, &batches).unwrap()
}

/// The selected shards of a run, concatenated.
fn selected(out: &Path) -> RecordBatch {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(out.join("selected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    shards.sort();
    let batches: Vec<RecordBatch> = shards.iter().map(|p| read_all(p)).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The ids of the selected documents of a run.
fn selected_ids(out: &Path) -> BTreeSet<String> {
    selected(out)
        .column_by_name("id")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect()
}

/// The `stats.json` entry of `stage` in a run's output.
fn stage_stats(out: &Path, stage: &str) -> serde_json::Value {
    let stats: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    stats.into_iter().find(|s| s["stage"] == stage).unwrap()
}

/// A JSON file's value.
fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The ids an oracle file lists under `key`.
fn oracle_ids(oracle: &serde_json::Value, key: &str) -> BTreeSet<String> {
    oracle[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn count(stats: &serde_json::Value, key: &str) -> u64 {
    stats.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// A config with no stages: every readable document is kept, so the shards can be compared
/// with the input row by row.
fn write_config(dir: &Path, input: &Path, source: Option<&str>, metadata: &[String], extra: &str) {
    let meta: Vec<String> = metadata.iter().map(|m| format!("\"{m}\"")).collect();
    let source = source.map_or(String::new(), |s| format!("source_column = \"{s}\"\n"));
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "[input]\npaths = [\"{}\"]\n{source}metadata_columns = [{}]\nbatch_size = 256\n{extra}\n[output]\ndir = \"{}\"\n",
            input.display(),
            meta.join(", "),
            dir.join("out").display()
        ),
    )
    .unwrap();
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let cfg = dir.join("c.toml");
    let mut args = vec!["--quiet", "run", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    gleaner(&args)
}

fn expected() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read(fixtures().join("expected.json")).unwrap();
    let mut all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&text).unwrap();
    all.remove("_writers");
    all
}

/// The metadata columns a fixture's facts list.
fn metadata_columns(facts: &serde_json::Value) -> Vec<String> {
    facts["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

/// Rows whose text is a document: not null and not blank.
fn document_mask(text: &ArrayRef) -> arrow::array::BooleanArray {
    let utf8 = cast(text, &DataType::Utf8).unwrap();
    let s = utf8.as_string::<i32>();
    (0..s.len())
        .map(|i| Some(s.is_valid(i) && !s.value(i).trim().is_empty()))
        .collect()
}

#[test]
fn every_parquet_file_other_tools_wrote_is_inspected_and_run_with_values_and_types_unchanged() {
    let expected = expected();
    let parquet: Vec<_> = expected
        .iter()
        .filter(|(name, _)| name.ends_with(".parquet"))
        .collect();
    assert!(
        parquet.len() >= 20,
        "the fixture set is complete: {}",
        parquet.len()
    );
    for (name, facts) in parquet {
        let path = fixtures().join(name);
        let rows = facts["rows"].as_u64().unwrap();
        let inspected = ok(&gleaner(&["inspect", path.to_str().unwrap()]));
        assert!(
            inspected.contains(&format!("1 file(s), {rows} rows")),
            "{name}: {inspected}"
        );
        for codec in facts["codecs"].as_array().unwrap() {
            // pyarrow calls LZ4_RAW "LZ4".
            let codec = codec.as_str().unwrap().replace("LZ4", "LZ4_RAW");
            assert!(inspected.contains(&codec), "{name}: {codec}: {inspected}");
        }

        let input = read_all(&path);
        let has_source = input.schema().index_of("source").is_ok();
        let source = if name.starts_with("datatrove") {
            Some("metadata.source")
        } else if has_source {
            Some("source")
        } else {
            None
        };
        let metadata = metadata_columns(facts);
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &path, source, &metadata, "");
        ok(&run(dir.path(), &[]));
        let out = dir.path().join("out");

        let stats = stage_stats(&out, "input");
        let (nulls, empties) = (
            facts["null_text"].as_u64().unwrap(),
            facts["empty_text"].as_u64().unwrap(),
        );
        assert_eq!(count(&stats, "seen"), rows, "{name}");
        assert_eq!(count(&stats, "dropped_null_text"), nulls, "{name}");
        assert_eq!(count(&stats, "dropped_empty_text"), empties, "{name}");
        assert_eq!(count(&stats, "kept"), rows - nulls - empties, "{name}");

        let output = selected(&out);
        let keep = document_mask(input.column_by_name("text").unwrap());
        let kept = |column: &str| filter(input.column_by_name(column).unwrap(), &keep).unwrap();
        assert_eq!(output.num_rows() as u64, rows - nulls - empties, "{name}");
        // Text and metadata columns: the same Arrow type and values, nested ones included.
        for column in std::iter::once("text").chain(metadata.iter().map(String::as_str)) {
            let got = output.column_by_name(column).unwrap();
            let mut want = kept(column);
            // Binary and dictionary-typed text is written as strings.
            if column == "text" && facts.get("text_written_as").is_some() {
                want = cast(&want, &DataType::Utf8).unwrap();
            }
            assert_eq!(got.data_type(), want.data_type(), "{name}: {column} type");
            assert_eq!(got.to_data(), want.to_data(), "{name}: {column} values");
        }
        if let Some(src) = source.filter(|s| !s.contains('.')) {
            let want = cast(&kept(src), &DataType::Utf8).unwrap();
            assert_eq!(
                output.column_by_name(src).unwrap().to_data(),
                want.to_data(),
                "{name}: source"
            );
        }
        // Ids: integer ids keep their type and values (nulls included); string ids keep their
        // values, and a null one is derived as "<path>:<row>".
        let id_type = facts["id_type"].as_str().unwrap();
        let got = output.column_by_name("id").unwrap();
        let want = kept("id");
        if id_type.starts_with("int") || id_type.starts_with("uint") {
            assert_eq!(got.data_type(), want.data_type(), "{name}: integer id type");
            assert_eq!(got.to_data(), want.to_data(), "{name}: integer ids");
        } else {
            let (got, want) = (got.as_string::<i32>(), want.as_string::<i32>());
            let rows_kept: Vec<usize> = (0..keep.len()).filter(|&i| keep.value(i)).collect();
            for (k, &row) in rows_kept.iter().enumerate() {
                let expect = if want.is_valid(k) {
                    want.value(k).to_string()
                } else {
                    format!("{}:{row}", path.display())
                };
                assert_eq!(got.value(k), expect, "{name}: id of row {row}");
            }
        }
    }
}

/// The documents of a JSONL fixture as Python's json module would read them.
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let raw = std::fs::read(path).unwrap();
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut s)
            .unwrap();
        s
    } else if path.extension().is_some_and(|e| e == "zst") {
        String::from_utf8(zstd::decode_all(&raw[..]).unwrap()).unwrap()
    } else {
        String::from_utf8(raw).unwrap()
    };
    // Python's `utf-8-sig` codec: a leading byte order mark is not text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn jsonl_plain_gzip_and_zstd_read_with_nested_field_paths() {
    let jsonl = |n: &str| {
        let stem = n.trim_end_matches(".gz").trim_end_matches(".zst");
        stem.ends_with(".jsonl") || stem.ends_with(".json")
    };
    for (name, facts) in expected().iter().filter(|(n, _)| jsonl(n)) {
        let path = fixtures().join(name);
        let docs = json_lines(&path);
        assert_eq!(docs.len() as u64, facts["rows"].as_u64().unwrap(), "{name}");
        let inspected = ok(&gleaner(&["inspect", path.to_str().unwrap()]));
        assert!(
            inspected.contains(&format!("1 file(s), {} rows", docs.len())),
            "{name}: {inspected}"
        );
        let dir = tempfile::tempdir().unwrap();
        write_config(
            dir.path(),
            &path,
            Some("metadata.source"),
            &["metadata".to_string()],
            "",
        );
        ok(&run(dir.path(), &[]));
        let out = dir.path().join("out");
        let stats = stage_stats(&out, "input");
        let empties = facts["empty_text"].as_u64().unwrap();
        assert_eq!(count(&stats, "dropped_empty_text"), empties, "{name}");
        let kept: Vec<&serde_json::Value> = docs
            .iter()
            .filter(|d| !d["text"].as_str().unwrap().trim().is_empty())
            .collect();
        let output = selected(&out);
        assert_eq!(output.num_rows(), kept.len(), "{name}");
        let ids = output.column_by_name("id").unwrap().as_string::<i32>();
        let texts = output.column_by_name("text").unwrap().as_string::<i32>();
        let sources = output
            .column_by_name("metadata.source")
            .unwrap()
            .as_string::<i32>();
        let meta = output.column_by_name("metadata").unwrap().as_struct();
        let positions = meta
            .column_by_name("position")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        for (k, doc) in kept.iter().enumerate() {
            assert_eq!(ids.value(k), doc["id"].as_str().unwrap(), "{name}");
            assert_eq!(texts.value(k), doc["text"].as_str().unwrap(), "{name}");
            assert_eq!(
                sources.value(k),
                doc["metadata"]["source"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                positions.value(k),
                doc["metadata"]["position"].as_i64().unwrap(),
                "{name}"
            );
        }
        // The per-source report reads the nested source field.
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        let first_source = kept[0]["metadata"]["source"].as_str().unwrap();
        assert!(report.contains(first_source), "{name}: {report}");
    }
}

/// Arrow IPC files (the stream files `datasets`' `save_to_disk` writes, a Feather v2 file
/// with lz4-compressed buffers) give the same selected rows, values and types as the
/// parquet file pyarrow wrote from the same table.
#[test]
fn arrow_ipc_files_read_as_their_parquet_twins() {
    let ipc: Vec<_> = expected()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".arrow") || n.ends_with(".feather"))
        .collect();
    assert_eq!(ipc.len(), 2, "both IPC formats have a fixture");
    for (name, facts) in ipc {
        let path = fixtures().join(&name);
        let rows = facts["rows"].as_u64().unwrap();
        let inspected = ok(&gleaner(&["inspect", path.to_str().unwrap()]));
        assert!(
            inspected.contains(&format!("1 file(s), {rows} rows")),
            "{name}: {inspected}"
        );
        let metadata = metadata_columns(&facts);
        let twin = fixtures().join(facts["same_rows_as"].as_str().unwrap());
        let outputs: Vec<RecordBatch> = [&path, &twin]
            .iter()
            .map(|input| {
                let dir = tempfile::tempdir().unwrap();
                write_config(dir.path(), input, None, &metadata, "");
                ok(&run(dir.path(), &[]));
                assert_eq!(
                    count(&stage_stats(&dir.path().join("out"), "input"), "seen"),
                    rows,
                    "{name}"
                );
                selected(&dir.path().join("out"))
            })
            .collect();
        let (got, want) = (&outputs[0], &outputs[1]);
        assert_eq!(got.schema(), want.schema(), "{name}");
        for column in ["text"]
            .iter()
            .copied()
            .chain(metadata.iter().map(String::as_str))
        {
            assert_eq!(
                got.column_by_name(column).unwrap().to_data(),
                want.column_by_name(column).unwrap().to_data(),
                "{name}: {column}"
            );
        }
        // Ids: the file's own values (derived ids would name the file, not its twin).
        assert_eq!(
            got.column_by_name("id").unwrap().to_data(),
            want.column_by_name("id").unwrap().to_data(),
            "{name}: ids"
        );
        // Cut in half, the file is an error naming it, and no output is left.
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join(&name);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        write_config(dir.path(), &cut, None, &[], "");
        let err = fails(&run(dir.path(), &[]));
        assert!(
            err.contains(cut.to_str().unwrap()) && err.contains("Arrow IPC"),
            "{name}: {err}"
        );
        assert!(!dir.path().join("out/selected").exists(), "{name}");
    }
}

/// A dataset pyarrow's `write_to_dataset` split into `source=…/group=…/` directories: the
/// partition columns are read from the paths (percent-escapes decoded, Hive's null marker
/// as null), row by row as pyarrow's own hive discovery reads them back.
#[test]
fn hive_partition_directories_pyarrow_wrote_become_columns() {
    let facts = &expected()["hive-partitioned"];
    let root = fixtures().join("hive-partitioned");
    let inspected = ok(&gleaner(&["inspect", root.to_str().unwrap()]));
    assert!(
        inspected.contains("group: Utf8, from the path (`docs & refs/v2`; a partition directory)")
            && inspected.contains("group: Utf8, from the path (null; a partition directory)"),
        "{inspected}"
    );
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &root, Some("source"), &["group".into()], "");
    ok(&run(dir.path(), &[]));
    let got = selected(&dir.path().join("out"));
    let want = facts["partitions"].as_object().unwrap();
    assert_eq!(got.num_rows() as u64, facts["rows"].as_u64().unwrap());
    assert_eq!(got.num_rows(), want.len());
    let column = |name: &str| got.column_by_name(name).unwrap().as_string::<i32>().clone();
    let (ids, sources, groups) = (column("id"), column("source"), column("group"));
    for i in 0..got.num_rows() {
        let expected = &want[ids.value(i)];
        let value = |a: &arrow::array::StringArray| a.is_valid(i).then(|| a.value(i).to_string());
        assert_eq!(
            value(&sources).as_deref(),
            expected["source"].as_str(),
            "row {i}"
        );
        assert_eq!(
            value(&groups).as_deref(),
            expected["group"].as_str(),
            "row {i}"
        );
    }
}

/// A Common Crawl WET file as warcio writes one: every conversion record is a document, with
/// its id, text, URL, date and language as warcio reads them back; the warcinfo record is
/// not. Cut short, the file is an error naming it, and no output is left.
#[test]
fn a_wet_file_warcio_wrote_reads_as_its_conversion_records() {
    let name = "cc-sample.warc.wet.gz";
    let facts = &expected()[name];
    let path = fixtures().join(name);
    let inspected = ok(&gleaner(&["inspect", path.to_str().unwrap()]));
    let rows = facts["rows"].as_u64().unwrap();
    assert!(
        inspected.contains(&format!("1 file(s), {rows} rows"))
            && inspected.contains("format: warc"),
        "{inspected}"
    );
    let dir = tempfile::tempdir().unwrap();
    let metadata = ["url".to_string(), "date".into(), "content_language".into()];
    write_config(dir.path(), &path, None, &metadata, "");
    ok(&run(dir.path(), &[]));
    let got = selected(&dir.path().join("out"));
    let want = facts["documents"].as_array().unwrap();
    assert_eq!(got.num_rows(), want.len());
    for column in ["id", "text", "url", "date", "content_language"] {
        let values = got
            .column_by_name(column)
            .unwrap()
            .as_string::<i32>()
            .clone();
        for (i, doc) in want.iter().enumerate() {
            let value = values.is_valid(i).then(|| values.value(i));
            assert_eq!(value, doc[column].as_str(), "row {i}: {column}");
        }
    }
    // Cut inside a record: an error naming the file, and no output.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join(name);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    write_config(dir.path(), &cut, None, &[], "");
    let err = fails(&run(dir.path(), &[]));
    assert!(err.contains(cut.to_str().unwrap()), "{err}");
    assert!(!dir.path().join("out/selected").exists());
}

/// A JSONL field no Arrow type fits (`spans`: a number and an object in one list) is shown
/// as left out by `inspect`, does not stop a run that does not read it (the JSONL test above
/// runs that file), and is an error naming the field when the config asks for it.
#[test]
fn a_jsonl_field_no_arrow_type_fits_is_named_and_only_stops_runs_that_read_it() {
    let path = fixtures().join("dolma-mixed-types.jsonl");
    let inspected = ok(&gleaner(&["inspect", path.to_str().unwrap()]));
    assert!(inspected.contains("spans: (left out"), "{inspected}");
    assert!(inspected.contains("metadata: Struct"), "{inspected}");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &path, None, &["spans".to_string()], "");
    let err = fails(&run(dir.path(), &[]));
    assert!(
        err.contains(path.to_str().unwrap()) && err.contains("field `spans` cannot be read"),
        "{err}"
    );
    assert!(!dir.path().join("out/selected").exists());
}

/// A `.json` file holding one JSON array (not JSON Lines) is an error naming the file and
/// its first line and saying how to convert it, with no output left.
#[test]
fn a_json_array_file_is_an_error_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("array.json");
    std::fs::write(
        &path,
        "[\n  {\"id\": \"a\", \"text\": \"one two three\"}\n]\n",
    )
    .unwrap();
    write_config(dir.path(), &path, None, &[], "");
    let err = fails(&run(dir.path(), &[]));
    assert!(
        err.contains(path.to_str().unwrap())
            && err.contains("line 1")
            && err.contains("JSON array"),
        "{err}"
    );
    assert!(!dir.path().join("out/selected").exists());
}

fn write_lines(path: &Path, lines: &[&[u8]]) {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_jsonl_lines_name_file_and_line_or_are_skipped_and_counted() {
    let good: &[u8] = br#"{"id": "a", "text": "a good document with several words in it"}"#;
    let cases: [(&str, &[u8], &str); 6] = [
        (
            "broken-json",
            br#"{"id": "b", "text": "unterminated"#,
            "not valid JSON",
        ),
        ("not-an-object", b"[1, 2, 3]", "not a JSON object"),
        (
            "lone-surrogate",
            br#"{"id": "s", "text": "half a pair \ud800 here"}"#,
            "half a UTF-16 surrogate pair",
        ),
        (
            "invalid-utf8",
            b"{\"id\": \"c\", \"text\": \"caf\xe9 au lait\"}",
            "invalid UTF-8",
        ),
        (
            "missing-text",
            br#"{"id": "d", "body": "no text field"}"#,
            "no `text` field",
        ),
        (
            "wrong-type",
            br#"{"id": "e", "text": {"nested": "object"}}"#,
            "does not fit the schema",
        ),
    ];
    for (case, bad, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{case}.jsonl"));
        write_lines(&path, &[good, good, b"", bad, good]);
        write_config(dir.path(), &path, None, &[], "");
        let err = fails(&run(dir.path(), &[]));
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains("line 4") && err.contains(message),
            "{case}: {err}"
        );
        assert!(
            !dir.path().join("out/manifest.json").exists()
                && !dir.path().join("out/selected").exists(),
            "{case}: a failed run leaves no output"
        );

        write_config(dir.path(), &path, None, &[], "on_bad_record = \"skip\"");
        let out = run(dir.path(), &[]);
        ok(&out);
        let stats = stage_stats(&dir.path().join("out"), "input");
        assert_eq!(count(&stats, "seen"), 4, "{case}");
        assert_eq!(count(&stats, "dropped_bad_record"), 1, "{case}");
        assert_eq!(count(&stats, "kept"), 3, "{case}");
        let warned = String::from_utf8_lossy(&out.stderr);
        assert!(warned.contains("line 4"), "{case}: {warned}");
    }
}

#[test]
fn truncated_compressed_jsonl_is_an_error_naming_the_file_or_is_skipped() {
    let whole = fixtures().join("dolma.jsonl.gz");
    for (name, bytes) in [
        ("cut.jsonl.gz", std::fs::read(&whole).unwrap()),
        (
            "cut.jsonl.zst",
            std::fs::read(fixtures().join("dolma.jsonl.zst")).unwrap(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        write_config(dir.path(), &path, None, &[], "");
        let err = fails(&run(dir.path(), &[]));
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains("truncated"),
            "{name}: {err}"
        );
        // With on_bad_file = "skip" beside a good file, the cut file is left out and reported.
        let good = dir.path().join("good.jsonl.gz");
        std::fs::copy(&whole, &good).unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            format!(
                "[input]\npaths = [\"{}\"]\non_bad_file = \"skip\"\n[output]\ndir = \"{}\"\n",
                dir.path().display(),
                dir.path().join("out").display()
            ),
        )
        .unwrap();
        ok(&run(dir.path(), &[]));
        let report = std::fs::read_to_string(dir.path().join("out/report.md")).unwrap();
        assert!(report.contains(name), "{name}: {report}");
        assert_eq!(
            count(&stage_stats(&dir.path().join("out"), "input"), "seen"),
            48
        );
    }
}

#[test]
fn output_compression_is_the_codec_asked_for_and_reads_back_the_same() {
    let input = fixtures().join("codec-snappy.parquet");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &input, Some("source"), &[], "");
    let mut reference: Option<RecordBatch> = None;
    for (setting, footer) in [
        ("zstd", "ZSTD"),
        ("snappy", "SNAPPY"),
        ("gzip", "GZIP"),
        ("brotli", "BROTLI"),
        ("lz4", "LZ4_RAW"),
        ("none", "UNCOMPRESSED"),
    ] {
        let compression = format!("output.compression={setting}");
        ok(&run(dir.path(), &[compression.as_str(), "--overwrite"]));
        let out = dir.path().join("out");
        let shard = out.join("selected/part-00000.parquet");
        let f = std::fs::File::open(&shard).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .metadata()
            .clone();
        let codec = meta.row_group(0).column(1).compression().to_string();
        assert!(codec.starts_with(footer), "{setting}: {codec}");
        let batch = selected(&out);
        match &reference {
            None => reference = Some(batch),
            Some(r) => assert_eq!(&batch, r, "{setting}: same rows whatever the codec"),
        }
    }
    let err = fails(&run(dir.path(), &["output.compression=lzo"]));
    assert!(
        err.contains("output.compression") && err.contains("snappy"),
        "{err}"
    );
}

#[test]
fn jsonl_shards_hold_the_documents_with_their_json_types_and_read_back_the_same() {
    // Integer ids and nested struct/list/map metadata, written by pyarrow.
    let dir = tempfile::tempdir().unwrap();
    for fixture in ["int64-ids.parquet", "nested-metadata.parquet"] {
        let input = fixtures().join(fixture);
        let metadata: Vec<String> = expected()[fixture]["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        write_config(dir.path(), &input, None, &metadata, "");
        ok(&run(dir.path(), &["--overwrite"]));
        let parquet_rows = selected(&dir.path().join("out"));
        for (compression, name) in [
            ("zstd", "part-00000.jsonl.zst"),
            ("gzip", "part-00000.jsonl.gz"),
            ("none", "part-00000.jsonl"),
        ] {
            let out = dir.path().join(format!("out-{compression}"));
            ok(&run(
                dir.path(),
                &[
                    "output.format=jsonl",
                    &format!("output.compression={compression}"),
                    &format!("output.dir=\"{}\"", out.display()),
                    "--overwrite",
                ],
            ));
            let lines = json_lines(&out.join("selected").join(name));
            assert_eq!(
                lines.len(),
                parquet_rows.num_rows(),
                "{fixture} {compression}"
            );
            // The JSON values are what arrow's JSON writer makes of the parquet shard's rows.
            let mut expected = Vec::new();
            let mut w = arrow::json::LineDelimitedWriter::new(&mut expected);
            w.write(&parquet_rows).unwrap();
            w.finish().unwrap();
            let expected: Vec<serde_json::Value> = String::from_utf8(expected)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines, expected, "{fixture} {compression}");
            // Nulls are left out of a line; every value present keeps its JSON type.
            let typed = |key: &str, is: fn(&serde_json::Value) -> bool| {
                lines.iter().all(|l| l.get(key).is_none_or(is))
                    && lines.iter().any(|l| l.get(key).is_some())
            };
            if fixture == "int64-ids.parquet" {
                assert!(typed("id", serde_json::Value::is_i64), "ids stay numbers");
            } else {
                assert!(
                    typed("metadata", serde_json::Value::is_object)
                        && typed("tags", serde_json::Value::is_array),
                    "nested metadata stays nested: {}",
                    lines[0]
                );
            }
            // gleaner reads its own JSONL shards back to the same documents.
            let again = dir.path().join(format!("again-{compression}"));
            std::fs::write(
                dir.path().join("again.toml"),
                format!(
                    "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n",
                    out.join("selected").display(),
                    again.display()
                ),
            )
            .unwrap();
            ok(&gleaner(&[
                "--quiet",
                "run",
                "--config",
                dir.path().join("again.toml").to_str().unwrap(),
                "--overwrite",
            ]));
            let back = selected(&again);
            assert_eq!(
                back.column_by_name("text").unwrap().as_ref(),
                parquet_rows.column_by_name("text").unwrap().as_ref(),
                "{fixture} {compression}"
            );
        }
    }
    let err = fails(&run(
        dir.path(),
        &["output.format=jsonl", "output.compression=snappy"],
    ));
    assert!(err.contains("output.compression"), "{err}");
}

/// Bag-of-words F1 of two texts' whitespace-separated words (1 when they hold the same words
/// the same number of times, in any order).
fn word_f1(a: &str, b: &str) -> f64 {
    let mut counts: std::collections::HashMap<&str, (usize, usize)> = Default::default();
    for w in a.split_whitespace() {
        counts.entry(w).or_default().0 += 1;
    }
    for w in b.split_whitespace() {
        counts.entry(w).or_default().1 += 1;
    }
    let common: usize = counts.values().map(|&(x, y)| x.min(y)).sum();
    let (na, nb) = (a.split_whitespace().count(), b.split_whitespace().count());
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / na as f64, common as f64 / nb as f64);
    2.0 * p * r / (p + r)
}

/// A WARC file of real HTML pages as warcio writes a crawl (scripts/make_warc_fixture.py):
/// gleaner's reader takes the same records as datatrove's WarcReader (the HTML responses,
/// including gzip, chunked, untyped and windows-1252 ones; not the request, metadata, image
/// or DNS records), with the same ids, URLs and dates; `html_extract` finds main text in
/// every page, as datatrove's Trafilatura extractor does, with the same words (bag-of-words
/// F1, against datatrove.json), and writes the same bytes in three runs (1 and 2 threads, and
/// without the scan cache, where the write phase extracts the texts again).
#[test]
fn a_warc_of_html_pages_reads_and_extracts_as_datatrove_does() {
    let fixture = repo().join("tests/fixtures/warc");
    let warc = fixture.join("pages.warc.gz");
    let oracle = json_file(&fixture.join("datatrove.json"));
    let want = oracle["documents"].as_array().unwrap();
    let inspected = ok(&gleaner(&["inspect", warc.to_str().unwrap()]));
    assert!(
        inspected.contains(&format!("1 file(s), {} rows", want.len()))
            && inspected.contains("format: warc"),
        "{inspected}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [\"{}\"]\nmetadata_columns = [\"url\", \"date\"]\n[output]\ndir = \"{}\"\noverwrite = true\n[[stages]]\ntype = \"html_extract\"\n",
            warc.display(),
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    // The extracted texts are kept from the scan for the write phase by default; without the
    // scan cache the write phase extracts them again: the same bytes either way.
    let mut outputs = Vec::new();
    for args in [
        &["--threads", "1"][..],
        &["--threads", "2"],
        &["run.scan_cache=0"],
    ] {
        ok(&run(dir.path(), args));
        outputs.push(common::deterministic_files(&dir.path().join("out")));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    let got = selected(&dir.path().join("out"));
    assert_eq!(
        got.num_rows(),
        want.len(),
        "every page has main text in both"
    );
    let column = |name: &str| got.column_by_name(name).unwrap().as_string::<i32>().clone();
    let (ids, urls, dates, texts) = (column("id"), column("url"), column("date"), column("text"));
    let mut f1s = Vec::new();
    let mut identical = 0;
    for (i, doc) in want.iter().enumerate() {
        assert_eq!(ids.value(i), doc["id"].as_str().unwrap(), "row {i}");
        assert_eq!(urls.value(i), doc["url"].as_str().unwrap(), "row {i}");
        assert_eq!(dates.value(i), doc["date"].as_str().unwrap(), "row {i}");
        let theirs = doc["extracted"].as_str().unwrap();
        f1s.push(word_f1(texts.value(i), theirs));
        identical += usize::from(texts.value(i) == theirs);
        if doc["url"].as_str().unwrap().ends_with("/tarte") {
            // The windows-1252 page decodes to the same text.
            assert_eq!(texts.value(i), theirs);
        }
    }
    f1s.sort_by(f64::total_cmp);
    let median = f1s[f1s.len() / 2];
    let close = f1s.iter().filter(|&&f| f >= 0.9).count();
    // Measured when the fixture was made: median 0.996, 41 of 44 at 0.9 or more, the lowest
    // 0.5 (a 5-word page), 12 texts identical.
    assert!(median >= 0.98, "median word F1 {median}: {f1s:?}");
    assert!(
        close * 10 >= f1s.len() * 9,
        "{close} of {} at 0.9 or more",
        f1s.len()
    );
    assert!(f1s[0] >= 0.45, "lowest word F1 {}", f1s[0]);
    assert!(
        identical >= 10,
        "{identical} texts identical to datatrove's"
    );
    let stats = stage_stats(&dir.path().join("out"), "input");
    assert_eq!(stats["seen"].as_u64(), Some(want.len() as u64));
}

#[test]
fn url_filter_drops_the_pages_datatroves_url_filter_drops_with_its_reasons() {
    let fixture = repo().join("tests/fixtures/url_filter");
    let oracle = json_file(&fixture.join("datatrove.json"));
    let pages = oracle["pages"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\nwrite_removed = true\n[[stages]]\ntype = \"url_filter\"\nlists_dir = \"{}\"\n",
            fixture.join("pages.jsonl").display(),
            dir.path().join("out").display(),
            fixture.join("lists").display()
        ),
    )
    .unwrap();
    ok(&run(dir.path(), &[]));
    let out = dir.path().join("out");
    // The URL column is read for the stage, not written (it is no metadata column here).
    let kept = selected(&out);
    assert!(kept.column_by_name("url").is_none());
    let kept_ids: Vec<String> = kept
        .column_by_name("id")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    let mut dropped: std::collections::BTreeMap<String, String> = Default::default();
    for reason in std::fs::read_dir(out.join("removed")).unwrap() {
        let reason = reason.unwrap().path();
        let name = reason.file_name().unwrap().to_str().unwrap().to_string();
        for shard in std::fs::read_dir(&reason).unwrap() {
            let batch = read_all(&shard.unwrap().path());
            for id in batch.column_by_name("id").unwrap().as_string::<i32>() {
                dropped.insert(id.unwrap().to_string(), name.clone());
            }
        }
    }
    let mut differences = 0;
    for page in pages {
        let id = page["id"].as_str().unwrap();
        let want = page["gleaner"].as_str();
        // Only where datatrove compares case as written (documented) do the two differ.
        differences += usize::from(page["gleaner"] != page["datatrove"]);
        match want {
            None => assert!(kept_ids.iter().any(|k| k == id), "{page} was dropped"),
            Some(reason) => assert_eq!(dropped.get(id).map(String::as_str), Some(reason), "{page}"),
        }
    }
    assert_eq!(differences, 2);
    assert_eq!(kept_ids.len() + dropped.len(), pages.len());
    let stage = &stage_stats(&out, "url_filter");
    assert_eq!(count(stage, "seen"), pages.len() as u64);
    let mut tallies: std::collections::BTreeMap<&str, u64> = Default::default();
    for reason in pages.iter().filter_map(|p| p["gleaner"].as_str()) {
        *tallies.entry(reason).or_default() += 1;
    }
    assert_eq!(tallies.len(), 6, "every rule drops a page: {tallies:?}");
    for (reason, n) in tallies {
        assert_eq!(count(stage, &format!("dropped_{reason}")), n, "{reason}");
    }
}

#[test]
fn url_filter_errors_name_the_missing_column_and_the_empty_lists_folder() {
    let fixture = repo().join("tests/fixtures/url_filter");
    let dir = tempfile::tempdir().unwrap();
    let write = |stage: &str| {
        std::fs::write(
            dir.path().join("c.toml"),
            format!(
                "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n[[stages]]\ntype = \"url_filter\"\n{stage}\n",
                fixture.join("pages.jsonl").display(),
                dir.path().join("out").display(),
            ),
        )
        .unwrap();
    };
    write("url_column = \"link\"\nbanned_words = [\"casino\"]");
    let message = fails(&run(dir.path(), &[]));
    assert!(
        message.contains("link") && message.contains("pages.jsonl"),
        "{message}"
    );
    write(&format!("lists_dir = \"{}\"", dir.path().display()));
    let message = fails(&run(dir.path(), &[]));
    assert!(
        message.contains("stages[0]") && message.contains("holds none of"),
        "{message}"
    );
    write("");
    let message = fails(&run(dir.path(), &[]));
    assert!(message.contains("no lists"), "{message}");
    assert!(!dir.path().join("out").exists());
    // A nested URL field (datatrove's and Dolma's `metadata`), with a page that has none.
    let nested = dir.path().join("nested.jsonl");
    std::fs::write(
        &nested,
        concat!(
            r#"{"id": "a", "text": "t", "metadata": {"url": "https://a.com/casino"}}"#,
            "\n",
            r#"{"id": "b", "text": "t", "metadata": {"url": "https://b.org/ok"}}"#,
            "\n",
            r#"{"id": "c", "text": "t", "metadata": {"url": null}}"#,
            "\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n[[stages]]\ntype = \"url_filter\"\nurl_column = \"metadata.url\"\nbanned_words = [\"casino\"]\n",
            nested.display(),
            dir.path().join("out").display(),
        ),
    )
    .unwrap();
    ok(&run(dir.path(), &[]));
    let stage = &stage_stats(&dir.path().join("out"), "url_filter");
    assert_eq!(
        (
            count(stage, "kept"),
            count(stage, "dropped_banned_word"),
            count(stage, "dropped_no_url")
        ),
        (1, 1, 1)
    );
}

#[test]
fn c4_badwords_drops_the_documents_datatroves_filter_drops() {
    let fixture = repo().join("tests/fixtures/badwords");
    let oracle = json_file(&fixture.join("datatrove.json"));
    let (want_kept, want_dropped) = (oracle_ids(&oracle, "kept"), oracle_ids(&oracle, "dropped"));
    assert!(want_dropped.len() > 30 && want_kept.len() > 350);
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str| {
        std::fs::write(
            dir.path().join("c.toml"),
            format!(
                "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\noverwrite = true\n[run]\nseed = 9\n[[stages]]\ntype = \"c4_badwords\"\nwords_dir = \"{}\"\n{extra}",
                fixture.join("documents.jsonl").display(),
                dir.path().join("out").display(),
                fixture.join("lists").display()
            ),
        )
        .unwrap();
    };
    config("");
    ok(&run(dir.path(), &[]));
    assert_eq!(selected_ids(&dir.path().join("out")), want_kept);
    let stage = &stage_stats(&dir.path().join("out"), "c4_badwords");
    assert_eq!(count(stage, "dropped_bad_words"), want_dropped.len() as u64);
    // keep_fraction keeps a share of the matching documents, the same ones at any thread
    // count; every other document is kept as before.
    config("keep_fraction = 0.5\n");
    let mut runs = Vec::new();
    for threads in ["1", "2"] {
        ok(&run(dir.path(), &["--threads", threads]));
        runs.push(common::deterministic_files(&dir.path().join("out")));
    }
    assert_eq!(runs[0], runs[1]);
    let half = selected_ids(&dir.path().join("out"));
    assert!(half.is_superset(&want_kept));
    let rescued = half.len() - want_kept.len();
    assert!(
        rescued > 5 && rescued < want_dropped.len() - 5,
        "{rescued} of {} kept",
        want_dropped.len()
    );
    // A language without a list is an error naming it and the key.
    config("language = \"xx\"\n");
    let message = fails(&run(dir.path(), &[]));
    assert!(
        message.contains("stages[0]") && message.contains("`xx`"),
        "{message}"
    );
}

#[test]
fn c4_badwords_checks_each_document_against_its_own_languages_list_as_datatrove_does() {
    // Documents written by datatrove's JsonlWriter (gzip JSONL, `metadata.language`) and
    // C4BadWordsFilter's decisions reading each one's language; Swahili has no list, so
    // datatrove (fail_on_missing_language=False) keeps those documents and counts them.
    let fixture = repo().join("tests/fixtures/badwords");
    let oracle = json_file(&fixture.join("languages/datatrove.json"));
    let (want_kept, want_dropped) = (oracle_ids(&oracle, "kept"), oracle_ids(&oracle, "dropped"));
    let missing = oracle["missing_badwords_lang"]["sw"].as_u64().unwrap();
    assert!(want_dropped.len() >= 10 && missing == 3);
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str| {
        std::fs::write(
            dir.path().join("c.toml"),
            format!(
                "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\noverwrite = true\n[[stages]]\ntype = \"c4_badwords\"\nwords_dir = \"{}\"\nlanguage_column = \"metadata.language\"\n{extra}",
                fixture.join("languages/documents.jsonl.gz").display(),
                dir.path().join("out").display(),
                fixture.join("lists").display()
            ),
        )
        .unwrap();
    };
    let out = dir.path().join("out");
    config("");
    ok(&run(dir.path(), &[]));
    assert_eq!(selected_ids(&out), want_kept);
    let stage = stage_stats(&out, "c4_badwords");
    assert_eq!(
        count(&stage, "dropped_bad_words"),
        want_dropped.len() as u64
    );
    assert_eq!(count(&stage, "unchecked_no_list_sw"), missing);
    let report = std::fs::read_to_string(dir.path().join("out/report.md")).unwrap();
    assert!(report.contains("unchecked: no_list_sw: 3"), "{report}");
    // Dropping documents without a list instead: the Swahili ones go, for that reason.
    config("missing_list = \"drop\"\n");
    ok(&run(dir.path(), &[]));
    assert_eq!(
        selected_ids(&out).len() as u64,
        want_kept.len() as u64 - missing
    );
    assert_eq!(
        count(&stage_stats(&out, "c4_badwords"), "dropped_no_list_sw"),
        missing
    );
    // Without the column every document is English: the German words pass, and no document
    // is unchecked.
    std::fs::write(
        dir.path().join("c.toml"),
        std::fs::read_to_string(dir.path().join("c.toml"))
            .unwrap()
            .replace(
                "language_column = \"metadata.language\"\nmissing_list = \"drop\"\n",
                "",
            ),
    )
    .unwrap();
    ok(&run(dir.path(), &[]));
    let english = selected_ids(&out);
    assert!(english.contains("lang-080") && !want_kept.contains("lang-080"));
    assert!(stage_stats(&out, "c4_badwords")
        .as_object()
        .unwrap()
        .keys()
        .all(|k| !k.starts_with("unchecked_")));
    // A language column the input lacks is an error naming it and the file.
    config("");
    std::fs::write(
        dir.path().join("c.toml"),
        std::fs::read_to_string(dir.path().join("c.toml"))
            .unwrap()
            .replace("metadata.language", "doc_lang"),
    )
    .unwrap();
    let message = fails(&run(dir.path(), &[]));
    assert!(
        message.contains("doc_lang") && message.contains("documents.jsonl.gz"),
        "{message}"
    );
}

#[test]
fn c4_badwords_checks_each_document_against_the_language_a_language_id_stage_detected() {
    // The pipeline datatrove users build (a language filter, then C4BadWordsFilter reading
    // the language it set) in one run: language_id detects, c4_badwords reads its `lang`.
    let fixture = repo().join("tests/fixtures/badwords");
    let oracle = json_file(&fixture.join("languages/datatrove.json"));
    let datatrove_dropped = oracle_ids(&oracle, "dropped");
    let dir = tempfile::tempdir().unwrap();
    let config = |input: &Path, out: &str, stages: &str| {
        std::fs::write(
            dir.path().join("c.toml"),
            format!(
                "[input]\npaths = [\"{}\"]\nmetadata_columns = [\"metadata\"]\n[output]\ndir = \"{}\"\noverwrite = true\n{stages}",
                input.display(),
                dir.path().join(out).display(),
            ),
        )
        .unwrap();
    };
    let language_id = "[[stages]]\ntype = \"language_id\"\n";
    let badwords = format!(
        "[[stages]]\ntype = \"c4_badwords\"\nwords_dir = \"{}\"\nlanguage_column = \"lang\"\n",
        fixture.join("lists").display()
    );
    let documents = fixture.join("languages/documents.jsonl.gz");
    // Both stages in one run.
    config(&documents, "same", &format!("{language_id}{badwords}"));
    ok(&run(dir.path(), &[]));
    let same = dir.path().join("same");
    // The languages alone (every document kept, with its `lang`), then the rule on that
    // output, reading `lang` from its shards: the path the datatrove compat test checks.
    config(&documents, "detected", language_id);
    ok(&run(dir.path(), &[]));
    let detected = selected(&dir.path().join("detected"));
    let ids = detected.column_by_name("id").unwrap().as_string::<i32>();
    let codes = detected.column_by_name("lang").unwrap().as_string::<i32>();
    let metadata = detected.column_by_name("metadata").unwrap().as_struct();
    let given = metadata
        .column_by_name("language")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(ids.len(), 100);
    config(&dir.path().join("detected/selected"), "two_runs", &badwords);
    ok(&run(dir.path(), &[]));
    let kept = selected_ids(&same);
    assert_eq!(kept, selected_ids(&dir.path().join("two_runs")));
    let stats = stage_stats(&same, "c4_badwords");
    let unchecked = |stats: &serde_json::Value| -> BTreeSet<(String, u64)> {
        stats
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("unchecked_"))
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect()
    };
    assert_eq!(
        unchecked(&stats),
        unchecked(&stage_stats(&dir.path().join("two_runs"), "c4_badwords"))
    );
    // Where the detected language names the list datatrove used (its `metadata.language`,
    // English when there is none), each decision is datatrove's; every other detected
    // language has no list here, so its documents are kept unchecked and counted by code.
    let list = |code: &str| match code {
        "eng" => Some("en"),
        "deu" => Some("de"),
        "cmn" => Some("zh"),
        "jpn" => Some("ja"),
        _ => None,
    };
    let mut compared = BTreeSet::new();
    let mut without_list = std::collections::BTreeMap::<String, u64>::new();
    for row in 0..ids.len() {
        let (id, code) = (ids.value(row).to_string(), codes.value(row));
        let datatrove_list = if given.is_null(row) {
            "en"
        } else {
            given.value(row)
        };
        match list(code) {
            Some(l) if l == datatrove_list => {
                assert_eq!(
                    kept.contains(&id),
                    !datatrove_dropped.contains(&id),
                    "{id} ({code})"
                );
                compared.insert(id);
            }
            Some(_) => {}
            None => {
                assert!(kept.contains(&id), "{id} ({code}) has no list");
                *without_list
                    .entry(format!("unchecked_no_list_{code}"))
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(unchecked(&stats), without_list.into_iter().collect());
    // German, Chinese and Japanese documents dropped by their own lists are among them.
    for id in ["lang-080", "lang-083", "lang-087", "lang-092"] {
        assert!(compared.contains(id) && !kept.contains(id), "{id}");
    }
    assert!(compared.len() >= 70, "{}", compared.len());
}
