//! Helpers shared by the end-to-end tests: the repository root, running the `gleaner` binary,
//! and reading parquet outputs back.
#![allow(dead_code)] // each test binary uses its own subset

use arrow::array::{Array, AsArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
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

/// Writes `toml` to `cfg` and runs `gleaner --quiet run` on it; asserts success.
pub fn run_toml(cfg: &Path, toml: &str) {
    std::fs::write(cfg, toml).unwrap();
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
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

pub fn quickstart(out: &Path, extra: &[&str]) -> Output {
    let dir = format!("output.dir={}", out.display());
    let mut args = vec![
        "--quiet",
        "run",
        "--config",
        "configs/quickstart.toml",
        dir.as_str(),
    ];
    args.extend_from_slice(extra);
    gleaner(&args)
}

pub fn stats(out: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap()
}

/// The quickstart corpus, read independently of gleaner's reader, in corpus order.
pub fn quickstart_docs() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("data/quickstart"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let mut docs = vec![];
    for f in files {
        let b = read_parquet(&f);
        docs.extend(
            string_column(&b, "id")
                .into_iter()
                .zip(string_column(&b, "text")),
        );
    }
    docs
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// sha256 of every output file except those allowed to differ between identical runs.
pub fn deterministic_files(out: &Path) -> BTreeMap<String, String> {
    walk(out)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.strip_prefix(out).unwrap().to_string_lossy().into_owned(),
                p,
            )
        })
        .filter(|(name, _)| {
            name != "timings.json" && name != "manifest.json" && name != "config.toml"
        })
        .map(|(name, p)| (name, gleaner_storage::atomic::sha256_file(&p).unwrap()))
        .collect()
}

/// Runs `gleaner run --config CFG --overwrite`, expecting failure; returns stderr
/// (`--overwrite` only matters where a completed run is already there).
pub fn run_fails(cfg: &Path) -> String {
    fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--overwrite",
    ]))
}

pub fn config_for(dir: &Path, input: &str, extra: &str) -> PathBuf {
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!("[input]\npaths = [\"{input}\"]\n{extra}\n[output]\ndir = \"{}\"\n\n[[stages]]\ntype = \"exact_dedup\"\n", dir.join("out").display()),
    )
    .unwrap();
    path
}

pub fn float_lists(batches: &[RecordBatch], name: &str) -> Vec<Vec<f32>> {
    batches
        .iter()
        .flat_map(|b| {
            let l = b.column_by_name(name).unwrap().as_list::<i32>().clone();
            (0..l.len())
                .map(move |i| {
                    l.value(i)
                        .as_primitive::<arrow::datatypes::Float32Type>()
                        .values()
                        .to_vec()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A pool of code-like and prose documents with 0/1 columns marking each kind, and a held-out
/// code target set.
pub fn code_and_prose(dir: &Path) -> (PathBuf, PathBuf) {
    use arrow::array::{Float64Array, StringArray};
    use std::sync::Arc;
    let mut texts = Vec::new();
    let mut is_code = Vec::new();
    // 300 documents, one in five code: a random 60 holds about 12 code functions.
    for i in 0..300 {
        if i % 5 == 0 {
            texts.push(format!(
                "def f_{i}(x, y):\n    if x > {}:\n        return x * {i} + y\n    return (y - x) // {}\n",
                i % 9,
                i % 5 + 1
            ));
            is_code.push(1.0);
        } else {
            texts.push(format!(
                "The river number {i} flows slowly past the old mill, and the town sleeps under a grey and quiet sky."
            ));
            is_code.push(0.0);
        }
    }
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("d{i:03}")).collect();
    let prose: Vec<f64> = is_code.iter().map(|c| 1.0 - c).collect();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(StringArray::from(ids)) as arrow::array::ArrayRef,
        ),
        ("text", Arc::new(StringArray::from(texts))),
        ("is_code", Arc::new(Float64Array::from(is_code))),
        ("is_prose", Arc::new(Float64Array::from(prose))),
    ])
    .unwrap();
    let pool = dir.join("pool.parquet");
    write_batch(&pool, &batch);
    let target = dir.join("target.parquet");
    let targets: Vec<String> = (0..20)
        .map(|i| {
            // Functions like the pool's code (other numbers): held out, never in the pool.
            let i = 1000 + 7 * i;
            format!(
                "def f_{i}(x, y):\n    if x > {}:\n        return x * {i} + y\n    return (y - x) // {}\n",
                i % 9,
                i % 5 + 1
            )
        })
        .collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    write_text_file(&target, &refs);
    (pool, target)
}

/// A copy of the tiny test Llama under `dir` with room for AttentionInfluence's probes
/// (2048 positions; positions only size the RoPE tables, so the weights are unchanged).
pub fn long_tiny_llama(dir: &Path) -> PathBuf {
    let model = dir.join("tiny-llama-long");
    std::fs::create_dir_all(&model).unwrap();
    let tiny = repo().join("embed/tests/fixtures/tiny-llama");
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny.join(f), model.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(tiny.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        config.replace(
            "\"max_position_embeddings\": 256",
            "\"max_position_embeddings\": 2048",
        ),
    )
    .unwrap();
    model
}

/// A real model folder in the asset cache (`GLEANER_ASSETS` or `.assets`), if fetched; a
/// message says what is skipped otherwise.
pub fn asset_model(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("GLEANER_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".assets"));
    let dir = root.join("models").join(name);
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} not fetched (scripts/fetch-assets.sh)",
            dir.display()
        );
        None
    }
}
