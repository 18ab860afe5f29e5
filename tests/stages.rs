//! The curation stages through the CLI: decontamination (and the others as they land), each
//! checked against planted labels or an exact computation done here.

mod common;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use common::{
    gleaner, ok, one_stage_config, read_parquet, string_column, write_batch, write_text_file,
};
use std::path::Path;
use std::sync::Arc;

/// Writes an `id`, `source`, `text` corpus.
fn write_corpus(path: &Path, docs: &[(&str, &str)]) {
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.0))) as ArrayRef,
        ),
        (
            "source",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|_| "web"))) as ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.1))) as ArrayRef,
        ),
    ])
    .unwrap();
    write_batch(path, &batch);
}

fn stats(out: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap()
}

const EVAL_FUNCTION: &str = "def below_zero(operations):\n    \"\"\"You're given a list of deposit and withdrawal operations on a bank account\n    that starts with zero balance. Detect if at any point the balance falls below zero.\"\"\"\n    balance = 0\n    for op in operations:\n        balance += op\n        if balance < 0:\n            return True\n    return False\n";
const EVAL_TRIVIA: &str = "Question: which river flows through the city of Vienna and then on to Budapest and Belgrade before reaching the Black Sea? Answer: the Danube.";

#[test]
fn decontaminate_drops_planted_copies_per_evaluation_set_whatever_their_wrapping() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_text_file(&d.join("code-eval.parquet"), &[EVAL_FUNCTION]);
    write_text_file(&d.join("trivia-eval.parquet"), &[EVAL_TRIVIA]);
    let rewrapped = EVAL_FUNCTION.replace('\n', " ").to_uppercase();
    let embedded = format!(
        "A blog post quoting a benchmark.\n{}\nThanks for reading.",
        &EVAL_FUNCTION[..170]
    );
    let trivia_reflowed = EVAL_TRIVIA.replace(' ', "\n");
    // 12 consecutive shared words: one short of a 13-word run, so not a copy.
    let near_miss = "The river flows through the city of Vienna and then on to Budapest, I wondered, walking home";
    let docs: Vec<(&str, &str)> = vec![
        (
            "clean-1",
            "The weather report says rain will continue through the weekend across the north.",
        ),
        ("copy-exact", EVAL_FUNCTION),
        ("copy-rewrapped", &rewrapped),
        ("clean-2", "def above_zero(x):\n    return x > 0\n"),
        ("copy-embedded", &embedded),
        ("trivia-reflowed", &trivia_reflowed),
        ("near-miss", near_miss),
    ];
    write_corpus(&d.join("corpus.parquet"), &docs);
    let cfg = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        &format!(
            "type = \"decontaminate\"\n[stages.eval_sets]\nhumaneval = [\"{}\"]\ntrivia = [\"{}\"]\n",
            d.join("code-eval.parquet").display(),
            d.join("trivia-eval.parquet").display()
        ),
    );
    let out = d.join("out");
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "output.write_removed=true",
    ]));
    let kept = string_column(&read_parquet(&out.join("selection.parquet")), "id");
    assert_eq!(kept, ["clean-1", "clean-2", "near-miss"]);
    let s = &stats(&out)[1];
    assert_eq!(s["stage"], "decontaminate");
    assert_eq!(s["seen"], 7);
    assert_eq!(s["dropped_contaminated_humaneval"], 3);
    assert_eq!(s["dropped_contaminated_trivia"], 1);
    let removed = |reason: &str| -> Vec<String> {
        let dir = out.join("removed").join(reason);
        let mut ids = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            ids.extend(string_column(&read_parquet(&e.unwrap().path()), "id"));
        }
        ids
    };
    assert_eq!(
        removed("contaminated_humaneval"),
        ["copy-exact", "copy-rewrapped", "copy-embedded"]
    );
    assert_eq!(removed("contaminated_trivia"), ["trivia-reflowed"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("contaminated_humaneval") && report.contains("copy-exact"),
        "{report}"
    );
    // `plan` describes the stage.
    let plan = ok(&gleaner(&["plan", "--config", cfg.to_str().unwrap()]));
    assert!(
        plan.contains("drop copies of the evaluation sets"),
        "{plan}"
    );
}

#[test]
fn decontaminate_errors_name_the_evaluation_set_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_corpus(&d.join("corpus.parquet"), &[("a", "some text here")]);
    let run = |stage: &str| -> String {
        let cfg = one_stage_config(d, &d.join("corpus.parquet"), stage);
        common::fails(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ]))
    };
    let e = run(
        "type = \"decontaminate\"\n[stages.eval_sets]\nmissing = [\"/nonexistent/eval.parquet\"]\n",
    );
    assert!(
        e.contains("stages[0].eval_sets.missing") && e.contains("/nonexistent/eval.parquet"),
        "{e}"
    );
    let e = run("type = \"decontaminate\"\neval_sets = {}\n");
    assert!(e.contains("stages[0].eval_sets"), "{e}");
    let e = run("type = \"decontaminate\"\nngram = 0\n[stages.eval_sets]\nx = [\"a\"]\n");
    assert!(e.contains("stages[0].ngram"), "{e}");
}
