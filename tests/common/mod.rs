//! Helpers shared by the end-to-end tests: the repository root, running the `gleaner` binary,
//! and reading parquet outputs back.
#![allow(dead_code)] // each test binary uses its own subset

use arrow::array::{Array, AsArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs the `gleaner` binary from the repository root.
pub fn gleaner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gleaner"))
        .current_dir(repo())
        .args(args)
        .output()
        .expect("gleaner runs")
}

/// Asserts success; returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "gleaner failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure; returns stderr.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "gleaner should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every batch of a parquet file.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A utf8 column of `batches`, nulls as empty strings.
pub fn string_column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap().as_string::<i32>().clone();
            (0..c.len())
                .map(move |i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `dir/stage.toml`: `input` (with a `source` column) through one stage (`stage` holds its
/// keys), written to `dir/out`.
pub fn one_stage_config(dir: &Path, input: &Path, stage: &str) -> PathBuf {
    let cfg = dir.join("stage.toml");
    let text = format!(
        "[input]\npaths = [\"{}\"]\nsource_column = \"source\"\n[output]\ndir = \"{}\"\noverwrite = true\n[[stages]]\n{stage}\n",
        input.display(),
        dir.join("out").display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Runs `cfg` with `extra` overrides and returns the selected ids from `out`.
pub fn selected_ids(cfg: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--quiet", "run", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&gleaner(&args));
    string_column(&read_parquet(&out.join("selection.parquet")), "id")
}

/// Writes one record batch as a parquet file.
pub fn write_batch(path: &Path, batch: &RecordBatch) {
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Writes `texts` as a one-column (`text`) parquet file.
pub fn write_text_file(path: &Path, texts: &[&str]) {
    use arrow::array::StringArray;
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter(vec![(
        "text",
        Arc::new(StringArray::from(texts.to_vec())) as arrow::array::ArrayRef,
    )])
    .unwrap();
    write_batch(path, &batch);
}
