//! End-to-end tests of the model stages (`embed`, `lm_score`) through the `gleaner` binary,
//! with the tiny random-init models committed under embed/tests/fixtures. Oracles: the same
//! models called directly through the library, and the precomputed-column path of semdedup.

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, ListBuilder, RecordBatch, StringArray,
};
use gleaner_embed::{CausalLm, Device, EncoderOptions, LmOptions, SentenceEncoder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture(name: &str) -> PathBuf {
    repo().join("embed/tests/fixtures").join(name)
}

fn gleaner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gleaner"))
        .current_dir(repo())
        .args(args)
        .output()
        .expect("gleaner runs")
}

fn run(cfg: &Path) {
    let out = gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(
        out.status.success(),
        "gleaner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
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

/// A small corpus: varied sentences, a one-character text (no next-token loss) and repeats.
fn texts() -> Vec<String> {
    let mut t: Vec<String> = [
        "The cat sat on the mat.",
        "A man is playing a guitar in the park.",
        "the the the the the the the the the the the the",
        "Stock markets fell sharply as investors sold shares.",
        "def add(a, b):\n    return a + b\n",
        "zqxj vvkw plm rrtq ooiu xxa",
        "x",
        "Someone is strumming a musical instrument outdoors.",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
        "A man is playing a guitar in the park!",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..20 {
        t.push(format!(
            "Document number {i} talks about topic {} at some length.",
            i % 4
        ));
    }
    t
}

fn write_corpus(path: &Path, texts: &[String], embeddings: Option<&[Vec<f32>]>) {
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("doc-{i:02}")).collect();
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(StringArray::from(ids))),
        ("text", Arc::new(StringArray::from(texts.to_vec()))),
    ];
    if let Some(vectors) = embeddings {
        let mut b = ListBuilder::new(Float32Builder::new());
        for v in vectors {
            b.values().append_slice(v);
            b.append(true);
        }
        columns.push(("embedding", Arc::new(b.finish())));
    }
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn config(dir: &Path, input: &Path, out: &str, stages: &str) -> PathBuf {
    let path = dir.join(format!("{out}.toml"));
    let text = format!(
        "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n[run]\ncache_dir = \"{}\"\n{stages}",
        input.display(),
        dir.join(out).display(),
        dir.join("cache").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn model_stage_cost(out: &Path) -> serde_json::Value {
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timings.json")).unwrap()).unwrap();
    t["model_stages"][0].clone()
}

#[test]
fn lm_score_feeds_score_filter_and_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = texts();
    let input = tmp.path().join("corpus.parquet");
    write_corpus(&input, &texts, None);
    let model = fixture("tiny-llama");

    // Oracle: the library's losses for the same texts.
    let lm = CausalLm::load(
        &model,
        LmOptions {
            max_tokens: 64,
            ..Default::default()
        },
        &Device::flex(),
    )
    .unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let losses: Vec<f32> = lm
        .document_losses(&refs, None)
        .unwrap()
        .iter()
        .map(|l| l.mean_nll)
        .collect();
    assert!(losses[6].is_nan(), "a one-byte text has no next-token loss");
    let mut finite: Vec<f32> = losses.iter().copied().filter(|l| l.is_finite()).collect();
    finite.sort_by(f32::total_cmp);
    // Bounds halfway between neighbouring losses, so no document sits on a boundary.
    let between = |k: usize| (finite[k] + finite[k + 1]) / 2.0;
    let (lo, hi) = (between(finite.len() / 4), between(3 * finite.len() / 4));

    let stages = format!(
        "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\ncolumn = \"nll\"\nmax_tokens = 64\nbatch_tokens = 128\n\
         [[stages]]\ntype = \"score_filter\"\nscore_column = \"nll\"\nmin = {lo}\nmax = {hi}\n",
        model.display()
    );
    let cfg = config(tmp.path(), &input, "out", &stages);
    run(&cfg);
    let out = tmp.path().join("out");
    let expected: Vec<String> = losses
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite() && **l >= lo && **l <= hi)
        .map(|(i, _)| format!("doc-{i:02}"))
        .collect();
    let selection = read(&out.join("selection.parquet"));
    assert_eq!(strings(&selection, "id"), expected);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    let filter = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "score_filter")
        .unwrap();
    assert_eq!(filter["dropped_no_score"], 1, "the one-byte text: {filter}");

    // The sidecar holds every document's loss under its id.
    let cost = model_stage_cost(&out);
    assert_eq!(cost["computed"], texts.len());
    let cache = PathBuf::from(cost["cache"].as_str().unwrap());
    let sidecars: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sidecars.len(), 1, "one row group, one sidecar");
    let batches = read(&sidecars[0]);
    assert_eq!(
        strings(&batches, "id"),
        (0..texts.len())
            .map(|i| format!("doc-{i:02}"))
            .collect::<Vec<_>>()
    );
    let values = batches[0]
        .column_by_name("value")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>()
        .clone();
    for (i, l) in losses.iter().enumerate() {
        if l.is_nan() {
            assert!(values.is_null(i));
        } else {
            assert!(
                (values.value(i) as f32 - l).abs() < 1e-4,
                "doc {i}: {} vs {l}",
                values.value(i)
            );
        }
    }

    // A rerun reuses the sidecar and selects the same documents.
    run(&cfg);
    assert_eq!(model_stage_cost(&out)["computed"], 0);
    assert_eq!(
        strings(&read(&out.join("selection.parquet")), "id"),
        expected
    );

    // Editing the input invalidates it.
    let mut edited = texts.clone();
    edited[0] = "An edited first document about something else.".into();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_corpus(&input, &edited, None);
    run(&cfg);
    assert_eq!(model_stage_cost(&out)["computed"], texts.len());
}

#[test]
fn embed_feeds_semdedup_like_a_precomputed_column() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = texts();
    let model = fixture("tiny-bert");
    let plain = tmp.path().join("plain.parquet");
    write_corpus(&plain, &texts, None);

    // Oracle input: the same corpus with the library's embeddings as a column.
    let encoder =
        SentenceEncoder::load(&model, EncoderOptions::default(), &Device::flex()).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let flat = encoder.encode(&refs).unwrap();
    let vectors: Vec<Vec<f32>> = flat.chunks(encoder.dim()).map(<[f32]>::to_vec).collect();
    let with_column = tmp.path().join("with_column");
    std::fs::create_dir(&with_column).unwrap();
    write_corpus(&with_column.join("c.parquet"), &texts, Some(&vectors));

    let semdedup = "[[stages]]\ntype = \"semdedup\"\nn_clusters = 3\neps = 0.02\n";
    let embedded = config(
        tmp.path(),
        &plain,
        "embedded",
        &format!(
            "[[stages]]\ntype = \"embed\"\nmodel = \"{}\"\nbatch_tokens = 64\n{semdedup}",
            model.display()
        ),
    );
    run(&embedded);
    let precomputed = tmp.path().join("precomputed.toml");
    std::fs::write(
        &precomputed,
        format!(
            "[input]\npaths = [\"{}\"]\nembedding_column = \"embedding\"\n[output]\ndir = \"{}\"\n{semdedup}",
            with_column.display(),
            tmp.path().join("precomputed").display()
        ),
    )
    .unwrap();
    run(&precomputed);
    let a = read(&tmp.path().join("embedded/selection.parquet"));
    let b = read(&tmp.path().join("precomputed/selection.parquet"));
    let ids = strings(&a, "id");
    assert_eq!(ids, strings(&b, "id"));
    assert!(
        ids.len() < texts.len(),
        "near-duplicates (the two guitar sentences) are removed"
    );
    let report = std::fs::read_to_string(tmp.path().join("embedded/report.md")).unwrap();
    assert!(
        report.contains("## Model stages") && report.contains("tiny-bert"),
        "{report}"
    );
}

#[test]
fn model_stage_config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("corpus.parquet");
    write_corpus(&input, &texts(), None);
    let expect_error = |stages: &str, needles: &[&str]| {
        let cfg = config(tmp.path(), &input, "bad", stages);
        let out = gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--overwrite",
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        for n in needles {
            assert!(err.contains(n), "`{n}` missing from: {err}");
        }
        assert!(!tmp.path().join("bad/manifest.json").exists());
    };
    expect_error(
        "[[stages]]\ntype = \"embed\"\nmodel = \"no/such/model\"\n",
        &["stages[0].model", "no/such/model/config.json"],
    );
    expect_error(
        &format!(
            "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\nwidth = 3\n",
            fixture("tiny-llama").display()
        ),
        &["width"],
    );
    expect_error(
        &format!(
            "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\ndevice = \"tpu\"\n",
            fixture("tiny-llama").display()
        ),
        &["stages[0].device", "tpu"],
    );
    // A BERT folder given to the LM stage.
    expect_error(
        &format!(
            "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\n",
            fixture("tiny-bert").display()
        ),
        &["config.json", "model_type", "bert"],
    );
}
