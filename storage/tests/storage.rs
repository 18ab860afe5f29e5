//! Storage round trips, rotation, atomic commit and every bad-input case.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use gleaner_storage::reader::{ColumnSpec, CorpusReader, OnBadFile};
use gleaner_storage::writer::{row_sizes, ShardWriter, ShardWriterOptions};
use gleaner_storage::StorageError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn corpus_batch(start: usize, n: usize, with_id: bool) -> RecordBatch {
    let texts: StringArray = (start..start + n)
        .map(|i| Some(format!("document number {i} {}", "x".repeat(i % 17))))
        .collect();
    let sources: StringArray = (start..start + n)
        .map(|i| Some(if i % 3 == 0 { "web" } else { "code" }))
        .collect();
    let lang = Int64Array::from_iter_values((start..start + n).map(|i| i as i64 * 10));
    let mut fields = vec![];
    let mut cols: Vec<ArrayRef> = vec![];
    if with_id {
        fields.push(Field::new("id", DataType::Utf8, false));
        let ids: StringArray = (start..start + n)
            .map(|i| Some(format!("doc-{i}")))
            .collect();
        cols.push(Arc::new(ids));
    }
    fields.push(Field::new("text", DataType::Utf8, true));
    cols.push(Arc::new(texts));
    fields.push(Field::new("source", DataType::Utf8, true));
    cols.push(Arc::new(sources));
    fields.push(Field::new("year", DataType::Int64, false));
    cols.push(Arc::new(lang));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

/// Writes `rows` rows in row groups of `rg_rows` with pyarrow-independent plain ArrowWriter.
fn write_corpus(path: &Path, start: usize, rows: usize, rg_rows: usize, with_id: bool) {
    let batch = corpus_batch(start, rows, with_id);
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rg_rows))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn spec() -> ColumnSpec {
    ColumnSpec {
        source: Some("source".into()),
        metadata: vec!["year".into()],
        ..ColumnSpec::default()
    }
}

fn pat(p: &Path) -> Vec<String> {
    vec![p.to_string_lossy().into_owned()]
}

fn read_all_ids(reader: &CorpusReader) -> Vec<(String, String, Option<String>, u64)> {
    let mut out = vec![];
    for u in 0..reader.units().len() {
        for b in reader.read_unit(u).unwrap() {
            let b = b.unwrap();
            for i in 0..b.len() {
                out.push((
                    b.id(i).into_owned(),
                    b.text(i).unwrap().to_string(),
                    b.source(i).map(String::from),
                    b.key(i).row,
                ));
            }
        }
    }
    out
}

#[test]
fn reads_files_in_row_group_units_with_stable_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("b.parquet"), 100, 50, 20, true);
    write_corpus(&dir.path().join("a.parquet"), 0, 100, 30, true);
    let reader = CorpusReader::open(&pat(dir.path()), spec(), OnBadFile::Error, 7).unwrap();
    assert_eq!(reader.files().len(), 2);
    assert!(
        reader.files()[0].path.ends_with("a.parquet"),
        "files are sorted"
    );
    // a: 100 rows in groups of 30 -> 4 units; b: 50 rows in groups of 20 -> 3 units.
    let units: Vec<_> = reader
        .units()
        .iter()
        .map(|u| (u.file, u.row_group, u.first_row, u.rows))
        .collect();
    assert_eq!(
        units,
        vec![
            (0, 0, 0, 30),
            (0, 1, 30, 30),
            (0, 2, 60, 30),
            (0, 3, 90, 10),
            (1, 0, 0, 20),
            (1, 1, 20, 20),
            (1, 2, 40, 10)
        ]
    );
    let docs = read_all_ids(&reader);
    assert_eq!(docs.len(), 150);
    for (k, (id, text, source, row)) in docs.iter().enumerate() {
        let i = k; // a holds docs 0..100 then b holds 100..150
        assert_eq!(id, &format!("doc-{i}"));
        assert!(text.starts_with(&format!("document number {i} ")));
        assert_eq!(
            source.as_deref(),
            Some(if i % 3 == 0 { "web" } else { "code" })
        );
        assert_eq!(*row, if i < 100 { i as u64 } else { i as u64 - 100 });
    }
    // Batches never exceed batch_size.
    for b in reader.read_unit(0).unwrap() {
        assert!(b.unwrap().len() <= 7);
    }
    let schema = reader.output_schema();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "text", "source", "year"]);
}

#[test]
fn missing_id_column_gets_derived_deterministic_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noid.parquet");
    write_corpus(&path, 0, 10, 4, false);
    let reader = CorpusReader::open(&pat(&path), spec(), OnBadFile::Error, 3).unwrap();
    assert!(!reader.files()[0].has_id);
    let docs = read_all_ids(&reader);
    let expected: Vec<String> = (0..10).map(|r| format!("{}:{r}", path.display())).collect();
    assert_eq!(
        docs.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        expected
    );
    // The derived id also lands in the output record.
    let b = reader.read_unit(1).unwrap().next().unwrap().unwrap();
    assert_eq!(
        b.record().column(0).as_string::<i32>().value(0),
        format!("{}:4", path.display())
    );
}

#[test]
fn write_then_read_round_trips_every_column() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("in.parquet"), 0, 200, 64, true);
    let reader = CorpusReader::open(
        &pat(&dir.path().join("in.parquet")),
        spec(),
        OnBadFile::Error,
        50,
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut writer = ShardWriter::new(
        &out,
        reader.output_schema().clone(),
        ShardWriterOptions::default(),
    )
    .unwrap();
    for u in 0..reader.units().len() {
        for b in reader.read_unit(u).unwrap() {
            let b = b.unwrap();
            // keep every other document
            let keep: BooleanArray = (0..b.len())
                .map(|i| Some((b.key(i).row % 2) == 0))
                .collect();
            writer.write(&b.filtered_record(&keep).unwrap()).unwrap();
        }
    }
    let shards = writer.finish().unwrap();
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0].file, "part-00000.parquet");
    assert_eq!(shards[0].rows, 100);
    let f = std::fs::File::open(out.join("part-00000.parquet")).unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let mut k = 0;
    for b in &batches {
        let ids = b.column(0).as_string::<i32>();
        let years = b.column(3).as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            assert_eq!(ids.value(i), format!("doc-{}", 2 * k));
            assert_eq!(years.value(i), 2 * k as i64 * 10);
            k += 1;
        }
    }
    assert_eq!(k, 100);
    assert_eq!(
        shards[0].sha256,
        gleaner_storage::atomic::sha256_file(&out.join("part-00000.parquet")).unwrap()
    );
    assert_eq!(
        shards[0].bytes,
        std::fs::metadata(out.join("part-00000.parquet"))
            .unwrap()
            .len()
    );
}

/// Each shard's record (hashed and counted as it was written) matches the committed file read
/// back, for JSONL shards in every codec and with rotation.
#[test]
fn jsonl_shard_records_match_the_files_on_disk() {
    use gleaner_storage::writer::{ShardCodec, ShardFormat};
    for codec in [
        ShardCodec::Zstd(3),
        ShardCodec::Gzip(6),
        ShardCodec::Uncompressed,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let batch = corpus_batch(0, 300, true);
        let mut writer = ShardWriter::new(
            &out,
            batch.schema(),
            ShardWriterOptions {
                shard_bytes: 4000,
                codec,
                format: ShardFormat::Jsonl,
                ..Default::default()
            },
        )
        .unwrap();
        writer.write(&batch).unwrap();
        let shards = writer.finish().unwrap();
        assert!(shards.len() > 1, "{codec:?}: rotation makes several shards");
        for shard in &shards {
            let path = out.join(&shard.file);
            assert_eq!(
                shard.sha256,
                gleaner_storage::atomic::sha256_file(&path).unwrap(),
                "{codec:?} {}",
                shard.file
            );
            assert_eq!(shard.bytes, std::fs::metadata(&path).unwrap().len());
        }
    }
}

#[test]
fn rotation_closes_each_shard_at_the_first_row_reaching_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let batch = corpus_batch(0, 500, true);
    let sizes = row_sizes(&batch);
    // Hand-computed size of row 0: id "doc-0" (5+4) + text "document number 0 " (18+4) + source "web" (3+4) + year 8.
    assert_eq!(sizes[0], 9 + 22 + 7 + 8);
    let target = 3000u64;
    let opts = ShardWriterOptions {
        shard_bytes: target,
        ..Default::default()
    };
    let mut writer = ShardWriter::new(dir.path(), batch.schema(), opts).unwrap();
    // Feed in uneven slices so boundaries fall inside batches.
    let mut start = 0;
    for len in [1usize, 33, 140, 7, 319] {
        writer.write(&batch.slice(start, len)).unwrap();
        start += len;
    }
    let shards = writer.finish().unwrap();
    // Oracle: greedy cut where the running sum first reaches the target.
    let mut expected = vec![];
    let (mut rows, mut bytes) = (0u64, 0u64);
    for s in &sizes {
        rows += 1;
        bytes += s;
        if bytes >= target {
            expected.push((rows, bytes));
            rows = 0;
            bytes = 0;
        }
    }
    if rows > 0 {
        expected.push((rows, bytes));
    }
    let got: Vec<_> = shards
        .iter()
        .map(|s| (s.rows, s.uncompressed_bytes))
        .collect();
    assert_eq!(got, expected);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s.file, format!("part-{i:05}.parquet"));
        let f = std::fs::File::open(dir.path().join(&s.file)).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .metadata()
            .clone();
        assert_eq!(meta.file_metadata().num_rows() as u64, s.rows);
    }
    assert_eq!(shards.iter().map(|s| s.rows).sum::<u64>(), 500);
}

#[test]
fn identical_input_gives_byte_identical_shards() {
    let dir = tempfile::tempdir().unwrap();
    let batch = corpus_batch(0, 300, true);
    let mut hashes = vec![];
    for run in 0..2 {
        let out = dir.path().join(format!("run{run}"));
        let mut w = ShardWriter::new(
            &out,
            batch.schema(),
            ShardWriterOptions {
                shard_bytes: 4000,
                ..Default::default()
            },
        )
        .unwrap();
        w.write(&batch).unwrap();
        hashes.push(
            w.finish()
                .unwrap()
                .into_iter()
                .map(|s| s.sha256)
                .collect::<Vec<_>>(),
        );
    }
    assert!(hashes[0].len() > 1);
    assert_eq!(hashes[0], hashes[1]);
}

fn visible_shards(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_dropped_writer_leaves_no_partial_shard() {
    let dir = tempfile::tempdir().unwrap();
    let batch = corpus_batch(0, 100, true);
    let mut w = ShardWriter::new(
        dir.path(),
        batch.schema(),
        ShardWriterOptions {
            shard_bytes: 2000,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(&batch.slice(0, 60)).unwrap();
    drop(w);
    let names = visible_shards(dir.path());
    assert!(!names.is_empty(), "rotated shards were committed");
    let all: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(all.len(), names.len(), "no temporary file is left: {all:?}");
}

/// Child half of the kill test: writes past a rotation boundary, then aborts mid-shard.
fn killed_writer_child(dir: &Path) -> ! {
    let batch = corpus_batch(0, 100, true);
    let mut w = ShardWriter::new(
        dir,
        batch.schema(),
        ShardWriterOptions {
            shard_bytes: 2000,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(&batch.slice(0, 60)).unwrap();
    std::process::abort();
}

#[test]
fn a_killed_writer_leaves_only_complete_shards_visible() {
    if let Ok(dir) = std::env::var("GLEANER_TEST_KILLED_WRITER_DIR") {
        killed_writer_child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_writer_leaves_only_complete_shards_visible",
            "--nocapture",
        ])
        .env("GLEANER_TEST_KILLED_WRITER_DIR", dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborted");
    let names = visible_shards(dir.path());
    assert!(!names.is_empty());
    let mut rows = 0;
    for n in &names {
        // Every visible shard opens as complete parquet.
        let f = std::fs::File::open(dir.path().join(n)).unwrap();
        rows += ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .metadata()
            .file_metadata()
            .num_rows();
    }
    assert!(rows < 60, "the last, open shard is not visible");
    let hidden: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(
        hidden.len(),
        1,
        "the partial shard exists only under its temporary name"
    );
    // And the reader never picks it up.
    let reader = CorpusReader::open(
        &pat(dir.path()),
        ColumnSpec::default(),
        OnBadFile::Error,
        10,
    )
    .unwrap();
    assert_eq!(reader.files().len(), names.len());
}

fn expect_err(patterns: Vec<String>, spec: ColumnSpec) -> StorageError {
    CorpusReader::open(&patterns, spec, OnBadFile::Error, 10).unwrap_err()
}

#[test]
fn bad_inputs_give_errors_naming_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Missing file.
    let missing = d.join("nope.parquet");
    let e = expect_err(pat(&missing), spec());
    assert!(
        matches!(e, StorageError::NoMatch { .. }) && e.to_string().contains("nope.parquet"),
        "{e}"
    );

    // Corrupt (not parquet at all).
    let corrupt = d.join("corrupt.parquet");
    std::fs::write(&corrupt, b"this is not parquet at all, just bytes").unwrap();
    let e = expect_err(pat(&corrupt), spec());
    assert!(
        matches!(e, StorageError::Corrupt { .. }) && e.to_string().contains("corrupt.parquet"),
        "{e}"
    );

    // Truncated (a valid file cut in half).
    let good = d.join("good.parquet");
    write_corpus(&good, 0, 50, 10, true);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = d.join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = expect_err(pat(&truncated), spec());
    assert!(
        matches!(e, StorageError::Corrupt { .. }) && e.to_string().contains("truncated.parquet"),
        "{e}"
    );

    // Missing text column.
    let e = expect_err(
        pat(&good),
        ColumnSpec {
            text: "body".into(),
            ..spec()
        },
    );
    let msg = e.to_string();
    assert!(
        msg.contains("good.parquet")
            && msg.contains("`body` not found")
            && msg.contains("text: Utf8"),
        "{msg}"
    );

    // Wrong column type: text is an integer column.
    let e = expect_err(
        pat(&good),
        ColumnSpec {
            text: "year".into(),
            source: None,
            metadata: vec![],
            ..spec()
        },
    );
    assert!(
        matches!(e, StorageError::WrongColumnType { ref column, .. } if column == "year"),
        "{e}"
    );
    assert!(
        e.to_string().contains("good.parquet") && e.to_string().contains("Int64"),
        "{e}"
    );

    // Empty corpus: a valid file with zero rows.
    let empty = d.join("empty.parquet");
    write_corpus(&empty, 0, 0, 10, true);
    let e = expect_err(pat(&empty), spec());
    assert!(
        matches!(e, StorageError::EmptyCorpus { files: 1, .. }),
        "{e}"
    );
}

#[test]
fn skip_mode_leaves_bad_files_out_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("a.parquet"), 0, 20, 10, true);
    std::fs::write(dir.path().join("b.parquet"), b"garbage").unwrap();
    let reader = CorpusReader::open(&pat(dir.path()), spec(), OnBadFile::Skip, 10).unwrap();
    assert_eq!(reader.files().len(), 1);
    assert_eq!(reader.skipped().len(), 1);
    assert!(reader.skipped()[0].path.ends_with("b.parquet"));
    assert!(reader.skipped()[0].reason.contains("corrupt"));
    assert_eq!(read_all_ids(&reader).len(), 20);
}

#[test]
fn mismatched_column_types_across_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("a.parquet"), 0, 5, 10, true);
    // b has `year` as a string.
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        (
            "text",
            Arc::new(StringArray::from(vec!["hello"])) as ArrayRef,
        ),
        (
            "source",
            Arc::new(StringArray::from(vec!["web"])) as ArrayRef,
        ),
        (
            "year",
            Arc::new(StringArray::from(vec!["1999"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(dir.path().join("b.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let e = expect_err(pat(dir.path()), spec());
    let msg = e.to_string();
    assert!(
        msg.contains("b.parquet") && msg.contains("`year`") && msg.contains("a.parquet"),
        "{msg}"
    );
}

/// Writes `values` as one page of a required UTF8-annotated binary column `text`, without
/// the checks an Arrow writer would make, and returns the error reading it gives.
/// The read error of a one-column file of `values`, its text column declared as `column` in
/// parquet's schema language (`binary text (UTF8)` as most writers declare text; `binary
/// text` without the annotation).
fn read_error_of_text_page(file_name: &str, column: &str, values: &[&[u8]]) -> String {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    let schema =
        Arc::new(parse_message_type(&format!("message m {{ required {column}; }}")).unwrap());
    let mut fw = SerializedFileWriter::new(
        std::fs::File::create(&path).unwrap(),
        schema,
        Default::default(),
    )
    .unwrap();
    let mut rg = fw.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    let values: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(*v)).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&values, None, None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    fw.close().unwrap();
    let reader =
        CorpusReader::open(&pat(&path), ColumnSpec::default(), OnBadFile::Error, 10).unwrap();
    reader
        .read_unit(0)
        .and_then(|mut it| it.next().unwrap())
        .unwrap_err()
        .to_string()
}

#[test]
fn invalid_utf8_text_is_an_error_naming_file_and_rows() {
    let msg = read_error_of_text_page(
        "latin1.parquet",
        "binary text (UTF8)",
        &[b"fine", b"caf\xe9"],
    );
    assert!(
        msg.contains("latin1.parquet") && msg.contains("row group 0"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("utf"), "{msg}");
}

/// Text stored as plain binary (no UTF8 annotation, as Impala and old Hive wrote it) is read
/// as strings, and a value that is not UTF-8 is an error naming its row.
#[test]
fn unannotated_binary_text_is_checked_as_utf8_row_by_row() {
    let msg = read_error_of_text_page(
        "binary.parquet",
        "binary text",
        &[b"fine", b"also fine", b"caf\xe9 au lait"],
    );
    assert!(
        msg.contains("binary.parquet") && msg.contains("row 2: the text is not valid UTF-8"),
        "{msg}"
    );
}

/// A byte that cannot start or continue UTF-8 deep inside a long text: the check runs over
/// vector-sized blocks there (AVX2 where the CPU has it), not the short-input path.
#[test]
fn invalid_utf8_deep_in_a_long_text_is_found() {
    let mut long = vec![b'a'; 10_000];
    long[6_543] = 0xff;
    let mut multibyte = "d\u{e9}j\u{e0} vu, \u{4e2d}\u{6587} "
        .repeat(400)
        .into_bytes();
    // A continuation byte with no lead byte before it (byte 3,006 is the `d` of a `déjà`).
    assert_eq!(multibyte[3_006], b'd');
    multibyte[3_006] = 0x80;
    for (name, text) in [("ascii.parquet", long), ("multibyte.parquet", multibyte)] {
        let valid = "fine ".repeat(100);
        let msg = read_error_of_text_page(name, "binary text (UTF8)", &[valid.as_bytes(), &text]);
        assert!(
            msg.contains(name) && msg.to_lowercase().contains("utf"),
            "{msg}"
        );
    }
}

#[test]
fn dictionary_encoded_source_and_integer_ids_are_normalised_to_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dict.parquet");
    let sources: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> =
        vec!["a", "b", "a"].into_iter().collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![7, 8, 9])) as ArrayRef),
        (
            "text",
            Arc::new(StringArray::from(vec!["t1", "t2", "t3"])) as ArrayRef,
        ),
        ("source", Arc::new(sources) as ArrayRef),
    ])
    .unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let reader = CorpusReader::open(
        &pat(&path),
        ColumnSpec {
            source: Some("source".into()),
            ..Default::default()
        },
        OnBadFile::Error,
        10,
    )
    .unwrap();
    let docs = read_all_ids(&reader);
    assert_eq!(
        docs.iter()
            .map(|d| (d.0.as_str(), d.2.as_deref().unwrap()))
            .collect::<Vec<_>>(),
        [("7", "a"), ("8", "b"), ("9", "a")]
    );
    let b = reader.read_unit(0).unwrap().next().unwrap().unwrap();
    assert_eq!(b.record().column(2).data_type(), &DataType::Utf8);
    assert_eq!(b.record().column(2).len(), 3);
}

#[test]
fn row_groups_cut_at_row_count_and_shard_boundaries_and_bytes_ignore_threads_and_batching() {
    let dir = tempfile::tempdir().unwrap();
    let batch = corpus_batch(0, 100, true);
    let mut outputs = vec![];
    for threads in [1usize, 4] {
        let out = dir.path().join(format!("t{threads}"));
        let opts = ShardWriterOptions {
            shard_bytes: 2500,
            row_group_rows: 7,
            encode_threads: threads,
            plain_columns: vec!["text".into()],
            ..Default::default()
        };
        let mut w = ShardWriter::new(&out, batch.schema(), opts).unwrap();
        let chunks: &[(usize, usize)] = if threads == 1 {
            &[(0, 13), (13, 50), (63, 37)]
        } else {
            &[(0, 100)]
        };
        for &(offset, len) in chunks {
            w.write(&batch.slice(offset, len)).unwrap();
        }
        let shards = w.finish().unwrap();
        let mut groups = vec![];
        for s in &shards {
            let f = std::fs::File::open(out.join(&s.file)).unwrap();
            let meta = ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .metadata()
                .clone();
            let sizes: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
            assert_eq!(sizes.iter().sum::<i64>() as u64, s.rows);
            // Every row group but the last of a shard holds exactly 7 rows.
            assert!(
                sizes[..sizes.len() - 1].iter().all(|&n| n == 7),
                "{sizes:?}"
            );
            assert!(*sizes.last().unwrap() <= 7);
            groups.push(sizes);
        }
        assert!(shards.len() > 1);
        outputs.push((
            shards.iter().map(|s| s.sha256.clone()).collect::<Vec<_>>(),
            groups,
        ));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn embedding_columns_are_read_as_float_slices_and_type_checked() {
    use arrow::array::{FixedSizeListArray, Float32Array, ListArray};
    use arrow::datatypes::Float32Type;
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Option<Vec<Option<f32>>>> = vec![
        Some(vec![Some(1.0), Some(2.0)]),
        None,
        Some(vec![Some(3.0), Some(4.5)]),
    ];
    let list = ListArray::from_iter_primitive::<Float32Type, _, _>(rows.clone());
    let fixed = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        2,
        Arc::new(Float32Array::from(vec![1.0, 2.0, 0.0, 0.0, 3.0, 4.5])),
        Some(vec![true, false, true].into()),
    )
    .unwrap();
    for (name, col) in [
        ("list", Arc::new(list) as ArrayRef),
        ("fixed", Arc::new(fixed) as ArrayRef),
    ] {
        let path = dir.path().join(format!("{name}.parquet"));
        let batch = RecordBatch::try_from_iter(vec![
            (
                "text",
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            ),
            ("emb", col),
        ])
        .unwrap();
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let spec = ColumnSpec {
            vectors: vec!["emb".into()],
            ..ColumnSpec::default()
        };
        let reader = CorpusReader::open(&pat(&path), spec, OnBadFile::Error, 2).unwrap();
        let mut got = vec![];
        for b in reader.read_unit(0).unwrap() {
            let b = b.unwrap();
            for i in 0..b.len() {
                got.push(b.vector(0, i).map(|e| e.to_vec()));
            }
        }
        assert_eq!(
            got,
            vec![Some(vec![1.0, 2.0]), None, Some(vec![3.0, 4.5])],
            "{name}"
        );
        // The embedding is not part of the output record.
        let b = reader.read_unit(0).unwrap().next().unwrap().unwrap();
        assert!(b.record().column_by_name("emb").is_none());
    }
    // A text column named as the embedding is a type error naming the column.
    let spec = ColumnSpec {
        vectors: vec!["text".into()],
        ..ColumnSpec::default()
    };
    let e = CorpusReader::open(
        &pat(&dir.path().join("list.parquet")),
        spec,
        OnBadFile::Error,
        2,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("`text`") && e.to_string().contains("float32"),
        "{e}"
    );
}

/// Files whose text is stored in different string layouts (pyarrow writes utf8, polars
/// large_utf8 or utf8_view) are read together, the text as large_utf8 everywhere; a corpus
/// of one layout keeps it.
#[test]
fn text_in_different_string_layouts_across_files_is_read_as_large_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let layouts = [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View];
    let mut expected = Vec::new();
    for (k, layout) in layouts.iter().enumerate() {
        let texts: Vec<String> = (0..5).map(|i| format!("file {k} text {i}")).collect();
        expected.extend(texts.iter().cloned());
        let column = arrow::compute::cast(&StringArray::from(texts), layout).unwrap();
        let batch = RecordBatch::try_from_iter(vec![("text", column)]).unwrap();
        let path = dir.path().join(format!("{k}.parquet"));
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let open = |pattern: String| {
        CorpusReader::open(&[pattern], ColumnSpec::default(), OnBadFile::Error, 64).unwrap()
    };
    let reader = open(dir.path().to_string_lossy().into_owned());
    assert_eq!(
        reader.output_schema().field(1).data_type(),
        &DataType::LargeUtf8
    );
    let mut texts = Vec::new();
    for u in 0..reader.units().len() {
        for b in reader.read_unit(u).unwrap() {
            let b = b.unwrap();
            assert_eq!(b.record().column(1).data_type(), &DataType::LargeUtf8);
            texts.extend((0..b.len()).map(|i| b.text(i).unwrap().to_string()));
        }
    }
    assert_eq!(texts, expected);
    let alone = open(dir.path().join("2.parquet").to_string_lossy().into_owned());
    assert_eq!(
        alone.output_schema().field(1).data_type(),
        &DataType::Utf8View
    );
}

/// Hive-style partition directories (`region=…/quality=…/`): a source, metadata or score
/// column the files lack is read from the path, per file and for every row; a column the
/// file has is read from the file; a score directory whose value is not a number is an
/// error naming the file.
#[test]
fn partition_directories_fill_the_columns_files_lack() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let places = [
        ("region=north/quality=0.5", 0usize, 7usize),
        ("region=south%20east/quality=2", 7, 5),
        ("region=__HIVE_DEFAULT_PARTITION__/quality=1e-3", 12, 4),
    ];
    for (sub, start, rows) in places {
        std::fs::create_dir_all(root.join(sub)).unwrap();
        write_corpus(&root.join(sub).join("part-0.parquet"), start, rows, 3, true);
    }
    // A JSONL file in a partition, beside the parquet ones.
    std::fs::create_dir_all(root.join("region=west/quality=4")).unwrap();
    std::fs::write(
        root.join("region=west/quality=4/part-0.jsonl"),
        "{\"id\":\"j0\",\"text\":\"a\",\"source\":\"web\",\"year\":1}\n\
         {\"id\":\"j1\",\"text\":\"b\",\"source\":\"web\",\"year\":2}\n",
    )
    .unwrap();
    let spec = ColumnSpec {
        source: Some("region".into()),
        // `source` is in every file: the files' values win over nothing in the path.
        metadata: vec!["source".into(), "quality".into()],
        scores: vec!["quality".into()],
        ..ColumnSpec::default()
    };
    let reader = CorpusReader::open(&pat(root), spec.clone(), OnBadFile::Error, 4).unwrap();
    assert_eq!(reader.total_rows(), 18);
    let mut seen = Vec::new();
    for u in 0..reader.units().len() {
        for b in reader.read_unit(u).unwrap() {
            let b = b.unwrap();
            let record = b.record();
            let meta_source = record.column_by_name("source").unwrap().as_string::<i32>();
            let quality = record.column_by_name("quality").unwrap().as_string::<i32>();
            for i in 0..b.len() {
                seen.push((
                    b.id(i).into_owned(),
                    b.source(i).map(String::from),
                    meta_source.value(i).to_string(),
                    quality.value(i).to_string(),
                    b.score(0, i),
                ));
            }
        }
    }
    // Expected, row by row, from the directories each file was written under.
    let mut want: Vec<_> = (0..2)
        .map(|k| {
            let west = Some("west".to_string());
            (
                format!("j{k}"),
                west,
                "web".to_string(),
                "4".to_string(),
                Some(4.0),
            )
        })
        .collect();
    for (region, quality, score, start, rows) in [
        (None, "1e-3", 1e-3, 12, 4),
        (Some("north"), "0.5", 0.5, 0, 7),
        (Some("south east"), "2", 2.0, 7, 5),
    ] {
        for i in start..start + rows {
            want.push((
                format!("doc-{i}"),
                region.map(String::from),
                if i % 3 == 0 { "web" } else { "code" }.to_string(),
                quality.to_string(),
                Some(score),
            ));
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen, want);

    // Integer partition values are read as int64, as metadata and as scores.
    let elsewhere = tempfile::tempdir().unwrap();
    let crawls = elsewhere.path().join("crawls");
    for (crawl, start) in [(2023, 0), (2024, 3)] {
        let sub = crawls.join(format!("crawl={crawl}"));
        std::fs::create_dir_all(&sub).unwrap();
        write_corpus(&sub.join("part-0.parquet"), start, 3, 3, true);
    }
    let by_crawl = ColumnSpec {
        metadata: vec!["crawl".into()],
        scores: vec!["crawl".into()],
        ..ColumnSpec::default()
    };
    let reader = CorpusReader::open(&pat(&crawls), by_crawl, OnBadFile::Error, 8).unwrap();
    assert_eq!(
        reader
            .output_schema()
            .field_with_name("crawl")
            .unwrap()
            .data_type(),
        &DataType::Int64
    );
    let mut read = Vec::new();
    for u in 0..reader.units().len() {
        for b in reader.read_unit(u).unwrap() {
            let b = b.unwrap();
            let column = b.record().column_by_name("crawl").unwrap().clone();
            let values = column.as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..b.len() {
                read.push((b.id(i).into_owned(), values.value(i), b.score(0, i)));
            }
        }
    }
    read.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, i64, Option<f64>)> = (0..6)
        .map(|i| {
            let crawl: i32 = if i < 3 { 2023 } else { 2024 };
            (format!("doc-{i}"), i64::from(crawl), Some(f64::from(crawl)))
        })
        .collect();
    assert_eq!(read, want);

    // A score read from a directory whose value is not a number.
    let bad = root.join("region=x/quality=high");
    std::fs::create_dir_all(&bad).unwrap();
    write_corpus(&bad.join("part-0.parquet"), 0, 2, 2, true);
    let e = expect_err(pat(root), spec.clone());
    assert!(
        e.to_string().contains("quality=high/part-0.parquet")
            && e.to_string().contains("`quality=high`"),
        "{e}"
    );
    // A column neither the file nor its path has is still missing, naming the file.
    let e = expect_err(
        pat(&root.join("region=north")),
        ColumnSpec {
            source: Some("lang".into()),
            ..ColumnSpec::default()
        },
    );
    assert!(
        matches!(e, StorageError::MissingColumn { ref column, .. } if column == "lang"),
        "{e}"
    );
}

/// An Arrow IPC stream larger than a work unit is read in several units (so on several
/// threads), each alone, with every row once and in order.
#[test]
fn a_large_arrow_ipc_stream_is_read_in_units() {
    use arrow::ipc::writer::StreamWriter;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data-00000-of-00001.arrow");
    let filler = "x".repeat(1000);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, true),
    ]));
    let mut w = StreamWriter::try_new(std::fs::File::create(&path).unwrap(), &schema).unwrap();
    let (batches, rows_per_batch) = (72usize, 1000usize);
    for b in 0..batches {
        let rows = b * rows_per_batch..(b + 1) * rows_per_batch;
        let ids: StringArray = rows.clone().map(|i| Some(format!("doc-{i}"))).collect();
        let texts: StringArray = rows.map(|i| Some(format!("{i} {filler}"))).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(texts)]).unwrap();
        w.write(&batch).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let reader =
        CorpusReader::open(&pat(&path), ColumnSpec::default(), OnBadFile::Error, 4096).unwrap();
    let expected_units = bytes.div_ceil(gleaner_storage::arrow_ipc::UNIT_BYTES) as usize;
    assert!(expected_units >= 3, "{bytes} bytes");
    assert!(
        (expected_units - 1..=expected_units).contains(&reader.units().len()),
        "{} units for {bytes} bytes",
        reader.units().len()
    );
    assert_eq!(reader.total_rows(), (batches * rows_per_batch) as u64);
    let read = read_all_ids(&reader);
    assert_eq!(read.len(), batches * rows_per_batch);
    for (i, (id, text, _, row)) in read.iter().enumerate() {
        assert_eq!((id.as_str(), *row), (format!("doc-{i}").as_str(), i as u64));
        assert!(text.starts_with(&format!("{i} ")));
    }
}

/// A WARC file larger than a work unit, one gzip member per record as crawlers write it, is
/// read in several units (so on several threads), each alone, with every document once and
/// in order; the same records in one gzip member are one unit.
#[test]
fn a_large_warc_file_is_read_in_units_cut_at_its_gzip_members() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    // Text that gzip cannot shrink much: letters from a xorshift sequence.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut letters = |n: usize| -> String {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (b'a' + (state % 26) as u8) as char
            })
            .collect()
    };
    let documents = 1_200usize;
    let mut members = Vec::new();
    let mut whole = Vec::new();
    for i in 0..documents {
        let text = format!("{i} {}", letters(60_000));
        let record = format!(
            "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Record-ID: <urn:doc-{i}>\r\nContent-Length: {}\r\n\r\n{text}\r\n\r\n",
            text.len()
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(record.as_bytes()).unwrap();
        members.extend(gz.finish().unwrap());
        whole.extend_from_slice(record.as_bytes());
    }
    let mut one_member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    one_member.write_all(&whole).unwrap();
    for (name, bytes, several) in [
        ("crawl.warc.gz", members, true),
        ("one-member.warc.gz", one_member.finish().unwrap(), false),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let reader =
            CorpusReader::open(&pat(&path), ColumnSpec::default(), OnBadFile::Error, 256).unwrap();
        let units = reader.units().len();
        let expected = (bytes.len() as u64).div_ceil(gleaner_storage::warc::UNIT_BYTES) as usize;
        if several {
            assert!(expected >= 2, "{} bytes", bytes.len());
            assert!((expected - 1..=expected).contains(&units), "{units} units");
        } else {
            assert_eq!(units, 1);
        }
        assert_eq!(reader.total_rows(), documents as u64);
        let read = read_all_ids(&reader);
        assert_eq!(read.len(), documents);
        for (i, (id, text, _, row)) in read.iter().enumerate() {
            assert_eq!(
                (id.as_str(), *row),
                (format!("<urn:doc-{i}>").as_str(), i as u64)
            );
            assert!(text.starts_with(&format!("{i} ")));
        }
    }
}
