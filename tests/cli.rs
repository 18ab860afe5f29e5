//! End-to-end tests of the `gleaner` binary on the shipped quickstart corpus and on
//! generated bad inputs.

use arrow::array::{Array, AsArray, RecordBatch};
use gleaner_selectors::dedup::Normalization;
use gleaner_selectors::filters::{DocumentFilter, GopherQuality, GopherRepetition};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{
    fails, gleaner, ok, one_stage_config, read_parquet, repo, selected_ids, string_column,
    write_batch, write_text_file,
};

fn quickstart(out: &Path, extra: &[&str]) -> Output {
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

fn stats(out: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap()
}

/// The quickstart corpus, read independently of gleaner's reader, in corpus order.
fn quickstart_docs() -> Vec<(String, String)> {
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

#[test]
fn quickstart_runs_end_to_end_and_outputs_agree_with_an_independent_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let stdout = ok(&quickstart(&out, &[]));
    assert!(
        stdout.is_empty(),
        "--quiet prints nothing on success: {stdout}"
    );

    // Oracle: the quickstart's filters applied sequentially with the library, then dedup.
    let quality = GopherQuality {
        min_words: Some(20),
        ..Default::default()
    };
    let repetition = GopherRepetition::default();
    let norm = Normalization::default();
    let docs = quickstart_docs();
    let mut seen_hashes = HashSet::new();
    let mut survivors = vec![];
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for (id, text) in &docs {
        if let Some(r) = quality.check(text).or_else(|| repetition.check(text)) {
            *dropped.entry(r).or_default() += 1;
        } else if !seen_hashes.insert(norm.hash(text)) {
            *dropped.entry("duplicate".into()).or_default() += 1;
        } else {
            survivors.push(id.clone());
        }
    }
    let expected_kept = (survivors.len() as f64 * 0.5).round() as usize;

    let st = stats(&out);
    assert_eq!(st[0]["seen"], docs.len() as u64);
    let last = st.last().unwrap();
    assert_eq!(last["stage"], "random_sample");
    assert_eq!(last["seen"], survivors.len() as u64);
    assert_eq!(last["kept"], expected_kept as u64);
    for (reason, n) in &dropped {
        let got: u64 = st
            .iter()
            .filter_map(|s| s[format!("dropped_{reason}")].as_u64())
            .sum();
        assert_eq!(got, *n, "dropped_{reason}");
    }

    // Selected shards hold exactly the selection's ids, in corpus order, all from the survivors.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let mut shard_ids = vec![];
    for shard in manifest["outputs"].as_array().unwrap() {
        let path = out.join("selected").join(shard["file"].as_str().unwrap());
        let b = read_parquet(&path);
        assert_eq!(
            shard["rows"].as_u64().unwrap() as usize,
            b.iter().map(|x| x.num_rows()).sum::<usize>()
        );
        let sha = gleaner_storage::atomic::sha256_file(&path).unwrap();
        assert_eq!(shard["sha256"].as_str().unwrap(), sha);
        shard_ids.extend(string_column(&b, "id"));
        assert!(b[0].column_by_name("source").is_some() && b[0].column_by_name("text").is_some());
    }
    assert_eq!(shard_ids.len(), expected_kept);
    let survivor_set: HashSet<&String> = survivors.iter().collect();
    assert!(shard_ids.iter().all(|id| survivor_set.contains(id)));
    let order: Vec<usize> = shard_ids
        .iter()
        .map(|id| survivors.iter().position(|s| s == id).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "corpus order is kept"
    );

    let sel = read_parquet(&out.join("selection.parquet"));
    assert_eq!(string_column(&sel, "id"), shard_ids);
    assert!(string_column(&sel, "method").iter().all(|m| m == "random"));
    assert!(string_column(&sel, "reason")
        .iter()
        .all(|m| m == "random_sample"));
    let seeds = sel[0]
        .column_by_name("seed")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .value(0);
    assert_eq!(seeds, 42);

    // removed/<reason>/ holds exactly the dropped counts.
    for (reason, shards) in manifest["removed"].as_object().unwrap() {
        let rows: u64 = shards
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["rows"].as_u64().unwrap())
            .sum();
        let counted: u64 = st
            .iter()
            .filter_map(|s| s[format!("dropped_{reason}")].as_u64())
            .sum();
        assert_eq!(rows, counted, "{reason}");
        assert!(out
            .join("removed")
            .join(reason)
            .join("part-00000.parquet")
            .exists());
    }
    // Resolved config, report and status.
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(resolved.contains("seed = 42"));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains(&format!(
            "Kept **{expected_kept}** of **{}** documents",
            docs.len()
        )),
        "{report}"
    );
    let status = ok(&gleaner(&["status", out.to_str().unwrap()]));
    assert!(
        status.contains("complete") && status.contains(&format!("selected: {expected_kept} rows")),
        "{status}"
    );
    // No temporary file is left anywhere.
    for entry in walk(&out) {
        assert!(
            !entry
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with('.'),
            "{}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
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
fn deterministic_files(out: &Path) -> BTreeMap<String, String> {
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

#[test]
fn outputs_are_byte_identical_whatever_threads_and_batch_size() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    ok(&quickstart(&a, &["--threads", "1"]));
    ok(&quickstart(
        &b,
        &[
            "--threads",
            "2",
            "input.batch_size=37",
            "output.shard_bytes=300000",
        ],
    ));
    let fa = deterministic_files(&a);
    let fb = deterministic_files(&b);
    // Different shard sizes give different shard files (and shard tables in the report);
    // compare everything else byte for byte.
    let same = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| {
                !k.starts_with("selected/")
                    && !k.starts_with("removed/")
                    && !k.starts_with("report.")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        same(&fa).keys().collect::<Vec<_>>(),
        same(&fb).keys().collect::<Vec<_>>()
    );
    for (k, v) in same(&fa) {
        assert!(v == fb[&k], "{k} differs");
    }
    // Same thread-independent content in the shards: concatenated ids are equal.
    let ids = |dir: &Path| -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("selected"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| string_column(&read_parquet(f), "id"))
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
    assert!(
        std::fs::read_dir(b.join("selected")).unwrap().count() > 1,
        "the small shard size rotated"
    );
    // And with equal shard settings every file is byte-identical.
    let c = tmp.path().join("c");
    ok(&quickstart(&c, &["--threads", "2", "input.batch_size=37"]));
    assert_eq!(fa, deterministic_files(&c));
}

#[test]
fn a_different_seed_gives_a_different_sample() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&quickstart(&tmp.path().join("s1"), &["run.seed=1"]));
    ok(&quickstart(&tmp.path().join("s2"), &["run.seed=2"]));
    let ids = |d: &str| {
        string_column(
            &read_parquet(&tmp.path().join(d).join("selection.parquet")),
            "id",
        )
    };
    let (a, b) = (ids("s1"), ids("s2"));
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b);
}

#[test]
fn a_completed_run_is_not_replaced_without_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    ok(&quickstart(&out, &[]));
    let before = std::fs::read(out.join("selection.parquet")).unwrap();
    let err = fails(&quickstart(&out, &["output.overwrite=false", "run.seed=9"]));
    assert!(err.contains("already holds a completed run"), "{err}");
    assert_eq!(
        std::fs::read(out.join("selection.parquet")).unwrap(),
        before,
        "nothing was touched"
    );
    ok(&quickstart(&out, &["run.seed=9"]));
    assert_ne!(
        std::fs::read(out.join("selection.parquet")).unwrap(),
        before
    );
}

/// Runs `gleaner run --config CFG --overwrite`, expecting failure; returns stderr
/// (`--overwrite` only matters where a completed run is already there).
fn run_fails(cfg: &Path) -> String {
    fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--overwrite",
    ]))
}

fn config_for(dir: &Path, input: &str, extra: &str) -> PathBuf {
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!("[input]\npaths = [\"{input}\"]\n{extra}\n[output]\ndir = \"{}\"\n\n[[stages]]\ntype = \"exact_dedup\"\n", dir.join("out").display()),
    )
    .unwrap();
    path
}

#[test]
fn bad_inputs_fail_with_errors_naming_the_file_and_leave_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("in")).unwrap();
    // Corrupt file.
    std::fs::write(d.join("in/bad.parquet"), b"PAR1 definitely not parquet").unwrap();
    write_text_file(&d.join("in/good.parquet"), &["alpha", "beta", "alpha"]);
    let cfg = config_for(d, &d.join("in").display().to_string(), "");
    let err = run_fails(&cfg);
    assert!(
        err.contains("bad.parquet") && err.contains("corrupt"),
        "{err}"
    );
    assert!(!d.join("out/manifest.json").exists());

    // The same with on_bad_file = skip: the run completes and reports the skipped file.
    let cfg = config_for(
        d,
        &d.join("in").display().to_string(),
        "on_bad_file = \"skip\"",
    );
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["skipped_inputs"].as_array().unwrap().len(), 1);
    assert!(m["skipped_inputs"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("bad.parquet"));
    assert_eq!(
        m["outputs"][0]["rows"], 2,
        "alpha, beta; the second alpha is a duplicate"
    );
    let report = std::fs::read_to_string(d.join("out/report.md")).unwrap();
    assert!(report.contains("Skipped input files") && report.contains("bad.parquet"));
    // Ids were derived from the path and row.
    let ids = string_column(
        &read_parquet(&d.join("out/selected/part-00000.parquet")),
        "id",
    );
    assert_eq!(
        ids,
        [
            format!("{}:0", d.join("in/good.parquet").display()),
            format!("{}:1", d.join("in/good.parquet").display())
        ]
    );

    // Missing text column.
    let cfg = config_for(
        d,
        &d.join("in/good.parquet").display().to_string(),
        "text_column = \"body\"",
    );
    let err = run_fails(&cfg);
    assert!(
        err.contains("good.parquet") && err.contains("`body` not found"),
        "{err}"
    );

    // Empty corpus.
    write_text_file(&d.join("empty.parquet"), &[]);
    let cfg = config_for(d, &d.join("empty.parquet").display().to_string(), "");
    let err = run_fails(&cfg);
    assert!(err.contains("corpus is empty"), "{err}");

    // Missing input.
    let cfg = config_for(d, &d.join("missing/*.parquet").display().to_string(), "");
    let err = run_fails(&cfg);
    assert!(
        err.contains("missing/*.parquet") && err.contains("matched no parquet or JSONL file"),
        "{err}"
    );

    // Output directory inside the input folder.
    let cfg = d.join("inside.toml");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [\"{0}\"]\n[output]\ndir = \"{0}\"\n",
            d.join("in").display()
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap().to_string();
    let err = fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        &cfg_s,
        "input.on_bad_file=\"skip\"",
    ]));
    assert!(err.contains("contains the input file"), "{err}");
}

#[test]
fn huge_and_empty_documents_are_dropped_with_their_reason_and_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let huge = "word ".repeat(400);
    write_text_file(
        &d.join("docs.parquet"),
        &["short one", &huge, "   ", "another short"],
    );
    let cfg = config_for(
        d,
        &d.join("docs.parquet").display().to_string(),
        "max_doc_bytes = 1000",
    );
    let out = gleaner(&["run", "--config", cfg.to_str().unwrap()]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docs.parquet row 1") && stderr.contains("too_large"),
        "{stderr}"
    );
    let st = stats(&d.join("out"));
    assert_eq!(st[0]["dropped_too_large"], 1);
    assert_eq!(st[0]["dropped_empty_text"], 1);
    assert_eq!(st[0]["kept"], 2);
}

#[test]
fn inspect_plan_and_status_describe_what_they_see() {
    let out = ok(&gleaner(&["inspect", "data/quickstart", "--samples", "2"]));
    let docs = quickstart_docs();
    assert!(
        out.contains(&format!("3 file(s), {} rows", docs.len())),
        "{out}"
    );
    assert!(
        out.contains("text: Utf8") && out.contains("sample documents:"),
        "{out}"
    );
    assert!(out.contains(&format!("[{}]", docs[0].0)), "{out}");
    let scan = ok(&gleaner(&["inspect", "data/quickstart", "--scan"]));
    let text_bytes: usize = docs.iter().map(|d| d.1.len()).sum();
    assert!(
        scan.contains(&format!(
            "scanned {} documents, {text_bytes} text bytes",
            docs.len()
        )),
        "{scan}"
    );

    let plan = ok(&gleaner(&[
        "plan",
        "--config",
        "configs/quickstart.toml",
        "--units",
        "2",
    ]));
    assert!(
        plan.contains(&format!("{} rows, 18 work units", docs.len())),
        "{plan}"
    );
    assert!(
        plan.contains("stage exact_dedup") && plan.contains("... 16 more"),
        "{plan}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let err = fails(&gleaner(&[
        "status",
        tmp.path().join("nothing").to_str().unwrap(),
    ]));
    assert!(err.contains("no such output directory"), "{err}");
    std::fs::write(
        tmp.path().join("progress.json"),
        r#"{"phase":"write","detail":{"units":4}}"#,
    )
    .unwrap();
    let st = ok(&gleaner(&["status", tmp.path().to_str().unwrap()]));
    assert!(st.contains("incomplete, last phase `write`"), "{st}");
}

fn float_lists(batches: &[RecordBatch], name: &str) -> Vec<Vec<f32>> {
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

#[test]
fn semdedup_through_the_cli_matches_the_library_and_reports_clusters() {
    use gleaner_selectors::kmeans::{fit, KMeansConfig, Metric};
    use gleaner_selectors::semdedup::{semdedup, Keep, SemDedupConfig};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sd");
    let dir = format!("output.dir={}", out.display());
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/semdedup.toml",
        &dir,
        "--threads",
        "1",
    ]));

    // Oracle: the same steps with the library on the corpus read independently.
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("data/quickstart"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let norm = Normalization::default();
    let mut seen = HashSet::new();
    let (mut ids, mut data) = (vec![], vec![]);
    for f in &files {
        let b = read_parquet(f);
        for ((id, text), e) in string_column(&b, "id")
            .into_iter()
            .zip(string_column(&b, "text"))
            .zip(float_lists(&b, "embedding"))
        {
            if text.trim().is_empty() || !seen.insert(norm.hash(&text)) {
                continue;
            }
            let n = e.iter().map(|x| x * x).sum::<f32>().sqrt();
            data.extend(e.iter().map(|x| x / n));
            ids.push(id);
        }
    }
    let dim = 384;
    let k = fit(
        &data,
        dim,
        &KMeansConfig {
            max_iters: 50,
            metric: Metric::Cosine,
            seed: 42,
            ..KMeansConfig::new(40)
        },
    );
    let decisions = semdedup(
        &data,
        dim,
        &k.assignments,
        &k.model,
        &SemDedupConfig {
            eps: 0.05,
            keep: Keep::Hard,
            seed: 42,
            exact_max_cluster: 20_000,
        },
    );
    let expected_removed: Vec<&String> = ids
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| d.removed)
        .map(|(id, _)| id)
        .collect();
    assert!(!expected_removed.is_empty());
    let removed = string_column(
        &read_parquet(&out.join("removed/semantic_duplicate/part-00000.parquet")),
        "id",
    );
    assert_eq!(removed.iter().collect::<Vec<_>>(), expected_removed);

    // Two passes: Lloyd on a seeded sample of 20 documents per cluster, then every document
    // assigned; the oracle draws the same sample.
    let out_sampled = tmp.path().join("sd-sampled");
    let dir_sampled = format!("output.dir={}", out_sampled.display());
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/semdedup.toml",
        &dir_sampled,
        "stages.1.max_points_per_cluster=20",
    ]));
    let rows = gleaner_selectors::rng::SplitMix64::new(42 ^ 0x5EED).sample_indices(ids.len(), 800);
    let sample: Vec<f32> = rows
        .iter()
        .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let sk = fit(
        &sample,
        dim,
        &KMeansConfig {
            max_iters: 50,
            metric: Metric::Cosine,
            seed: 42,
            ..KMeansConfig::new(40)
        },
    );
    let (sampled_assign, _) = sk.model.assign(&data);
    let sampled = semdedup(
        &data,
        dim,
        &sampled_assign,
        &sk.model,
        &SemDedupConfig {
            eps: 0.05,
            keep: Keep::Hard,
            seed: 42,
            exact_max_cluster: 20_000,
        },
    );
    let expected: Vec<&String> = ids
        .iter()
        .zip(&sampled)
        .filter(|(_, d)| d.removed)
        .map(|(id, _)| id)
        .collect();
    let got = string_column(
        &read_parquet(&out_sampled.join("removed/semantic_duplicate/part-00000.parquet")),
        "id",
    );
    assert_eq!(got.iter().collect::<Vec<_>>(), expected);
    assert_ne!(
        sampled_assign, k.assignments,
        "the sample changes the clustering"
    );

    // Kept documents carry their cluster; the cluster report adds up.
    let sel = read_parquet(&out.join("selection.parquet"));
    let clusters: Vec<i64> = sel
        .iter()
        .flat_map(|b| {
            b.column_by_name("cluster")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .map(|c| c.unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let kept_ids = string_column(&sel, "id");
    for (id, c) in kept_ids.iter().zip(&clusters) {
        let i = ids.iter().position(|x| x == id).unwrap();
        assert_eq!(*c, k.assignments[i] as i64, "{id}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("clusters.json")).unwrap()).unwrap();
    let sizes: u64 = report["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .sum();
    assert_eq!(sizes as usize, ids.len());
    let html = std::fs::read_to_string(out.join("clusters.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("<circle"));

    // Thread count changes nothing.
    let out2 = tmp.path().join("sd2");
    let dir2 = format!("output.dir={}", out2.display());
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/semdedup.toml",
        &dir2,
        "--threads",
        "2",
    ]));
    assert_eq!(deterministic_files(&out), deterministic_files(&out2));
}

#[test]
fn semdedup_needs_an_embedding_column_of_one_length() {
    let err = fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/semdedup.toml",
        "input.embedding_column=\"\"",
        "output.dir=/nonexistent/x",
    ]));
    assert!(
        err.contains("`embedding` not found") || err.contains("column ``"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let toml = std::fs::read_to_string(repo().join("configs/semdedup.toml"))
        .unwrap()
        .replace("embedding_column = \"embedding\"", "");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, toml).unwrap();
    let err = run_fails(&cfg);
    assert!(
        err.contains("stages[1]") && err.contains("input.embedding_column"),
        "{err}"
    );

    // Rows with embeddings of different lengths: an error naming the file and row.
    use arrow::array::{ArrayRef, ListArray, StringArray};
    use arrow::datatypes::Float32Type;
    use std::sync::Arc;
    let emb = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
        Some(vec![Some(1.0), Some(0.0)]),
        Some(vec![Some(1.0), Some(0.0), Some(0.0)]),
    ]);
    let batch = RecordBatch::try_from_iter(vec![
        (
            "text",
            Arc::new(StringArray::from(vec!["one doc", "two doc"])) as ArrayRef,
        ),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap();
    let path = tmp.path().join("ragged.parquet");
    write_batch(&path, &batch);
    let cfg = tmp.path().join("r.toml");
    std::fs::write(&cfg, format!("[input]\npaths = [\"{}\"]\nembedding_column = \"embedding\"\n[output]\ndir = \"{}\"\n[[stages]]\ntype = \"semdedup\"\nn_clusters = 1\n", path.display(), tmp.path().join("o").display())).unwrap();
    let err = run_fails(&cfg);
    assert!(
        err.contains("ragged.parquet row 1") && err.contains("3 values"),
        "{err}"
    );
}

#[test]
fn dsir_through_the_cli_matches_the_library_and_enriches_the_target() {
    use gleaner_selectors::dsir::{log_ratio, DsirFeatures};
    use gleaner_selectors::random::SampleSize;
    use gleaner_selectors::score::ScoreSelector;
    use gleaner_selectors::{PoolDoc, Selector};
    let tmp = tempfile::tempdir().unwrap();
    let features = DsirFeatures {
        ngrams: 2,
        buckets: 10_000,
    };
    // Oracle inputs: the pool after exact dedup, and the target, read independently.
    let norm = Normalization::default();
    let mut seen = HashSet::new();
    let mut pool_docs: Vec<(String, String)> = vec![];
    // The raw distribution counts every document that passed the per-document stages
    // (here: all non-empty ones), before dedup.
    let mut raw = vec![0u64; 10_000];
    for (id, text) in quickstart_docs() {
        if text.trim().is_empty() {
            continue;
        }
        features.add_counts(&text, &mut raw);
        if seen.insert(norm.hash(&text)) {
            pool_docs.push((id, text));
        }
    }
    let target = read_parquet(&repo().join("data/targets/literature.parquet"));
    let mut tc = vec![0u64; 10_000];
    for t in string_column(&target, "text") {
        features.add_counts(&t, &mut tc);
    }
    let ratio = log_ratio(&raw, &tc, 0.0);
    let scored: Vec<(String, f64, f64)> = pool_docs
        .iter()
        .map(|(id, t)| {
            let (s, w) = features.score(t, &ratio);
            (id.clone(), s, w)
        })
        .collect();
    let eligible: Vec<&(String, f64, f64)> = scored.iter().filter(|d| d.2 >= 100.0).collect();

    for top_k in [true, false] {
        let out = tmp.path().join(format!("dsir-{top_k}"));
        let dir = format!("output.dir={}", out.display());
        let mode = format!("stages.1.top_k={top_k}");
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            "configs/dsir.toml",
            &dir,
            &mode,
        ]));
        let got = string_column(&read_parquet(&out.join("selection.parquet")), "id");
        let pool: Vec<PoolDoc<'_>> = eligible
            .iter()
            .map(|d| PoolDoc {
                id: &d.0,
                source: None,
                tokens: 0,
                score: Some(d.1),
                features: None,
            })
            .collect();
        let sel = ScoreSelector {
            name: "dsir".into(),
            seed: 42,
            size: SampleSize::Count(300),
            sample: !top_k,
            temperature: 1.0,
        };
        let expected: Vec<&str> = sel
            .select(&pool)
            .iter()
            .map(|p| eligible[p.index].0.as_str())
            .collect();
        assert_eq!(got, expected, "top_k = {top_k}");
        // Short documents never qualify, and the target's sources are enriched.
        let words: HashMap<&str, f64> = scored.iter().map(|d| (d.0.as_str(), d.2)).collect();
        assert!(got.iter().all(|id| words[id.as_str()] >= 100.0));
        let lit = got
            .iter()
            .filter(|id| id.starts_with("moby_dick:") || id.starts_with("sotu:"))
            .count();
        let base = pool_docs
            .iter()
            .filter(|d| d.0.starts_with("moby_dick:") || d.0.starts_with("sotu:"))
            .count();
        assert!(
            lit as f64 / got.len() as f64 > 5.0 * base as f64 / pool_docs.len() as f64,
            "{lit} of {}",
            got.len()
        );
        let st = stats(&out);
        assert!(st[2]["dropped_too_short"].as_u64().unwrap() > 0);
    }
}

#[test]
fn score_select_takes_top_k_of_a_score_column_globally_or_per_source() {
    use arrow::array::{ArrayRef, Float64Array, StringArray};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(StringArray::from(vec!["a1", "a2", "a3", "a4", "b1", "b2"])) as ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![
                "t a1", "t a2", "t a3", "t a4", "t b1", "t b2",
            ])) as ArrayRef,
        ),
        (
            "source",
            Arc::new(StringArray::from(vec!["A", "A", "A", "A", "B", "B"])) as ArrayRef,
        ),
        (
            "quality",
            Arc::new(Float64Array::from(vec![
                Some(0.9),
                Some(0.85),
                Some(0.5),
                None,
                Some(0.3),
                Some(0.2),
            ])) as ArrayRef,
        ),
    ])
    .unwrap();
    let path = d.join("scored.parquet");
    write_batch(&path, &batch);
    let cfg = one_stage_config(
        d,
        &path,
        "type = \"score_select\"\nscore_column = \"quality\"\ncount = 2",
    );
    let selected = |extra: &[&str]| selected_ids(&cfg, &d.join("out"), extra);
    // Global top-2 by quality.
    assert_eq!(selected(&[]), ["a1", "a2"]);
    // Per source: smallest-first quotas give B one (b1, its best) and A one (a1).
    assert_eq!(selected(&["stages.0.per_source=true"]), ["a1", "b1"]);
    // The null score is never picked, even when everything else is.
    assert_eq!(
        selected(&["stages.0.count=6"]),
        ["a1", "a2", "a3", "b1", "b2"]
    );
    let scores: Vec<f64> = read_parquet(&d.join("out/selection.parquet"))
        .iter()
        .flat_map(|b| {
            b.column_by_name("score")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(scores, [0.9, 0.85, 0.5, 0.3, 0.2]);
    // Sampling with a temperature is valid; per_source with a word budget is a config error.
    selected(&["stages.0.sample=true", "stages.0.temperature=0.5"]);
    let budget = d.join("b.toml");
    std::fs::write(
        &budget,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("count = 2", "budget_words = 10\nper_source = true"),
    )
    .unwrap();
    let err = run_fails(&budget);
    assert!(
        err.contains("stages[0].per_source") && err.contains("budget_words"),
        "{err}"
    );

    // A range filter on the same column (perplexity-style filtering), then top-1 of what is left.
    let filtered = d.join("f.toml");
    std::fs::write(
        &filtered,
        std::fs::read_to_string(&cfg).unwrap().replace(
            "[[stages]]\ntype = \"score_select\"",
            "[[stages]]\ntype = \"score_filter\"\nscore_column = \"quality\"\nmin = 0.4\nmax = 0.86\n\n[[stages]]\ntype = \"score_select\"",
        ),
    )
    .unwrap();
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        filtered.to_str().unwrap(),
        "stages.1.count=5",
    ]));
    assert_eq!(
        string_column(&read_parquet(&d.join("out/selection.parquet")), "id"),
        ["a2", "a3"]
    );
    let st = stats(&d.join("out"));
    assert_eq!(st[1]["stage"], "score_filter");
    assert_eq!(
        (
            st[1]["dropped_score_above_max"].as_u64(),
            st[1]["dropped_score_below_min"].as_u64(),
            st[1]["dropped_no_score"].as_u64()
        ),
        (Some(1), Some(2), Some(1))
    );
    let err = fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        filtered.to_str().unwrap(),
        "stages.0.min=0.9",
    ]));
    assert!(
        err.contains("stages[0].min") && err.contains("above max"),
        "{err}"
    );
}

#[test]
fn ablate_runs_every_method_and_compares_them_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let run_into = |name: &str| -> PathBuf {
        let out = tmp.path().join(name);
        let dir = format!("output.dir={}", out.display());
        // One cache for both runs: the model stages' sidecar folder is part of the report, and
        // the second run reuses the first one's trajectories, scores and probes.
        let cache = format!("run.cache_dir={}", tmp.path().join("cache").display());
        ok(&gleaner(&[
            "--quiet",
            "ablate",
            "--config",
            "configs/ablation.toml",
            &dir,
            &cache,
        ]));
        out
    };
    let out = run_into("a");
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("comparison.json")).unwrap()).unwrap();
    let names: Vec<&str> = c["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "random",
            "heuristic",
            "dsir",
            "semdedup",
            "quad",
            "s2l",
            "attention_influence"
        ]
    );
    let sets: Vec<HashSet<String>> = names
        .iter()
        .map(|n| {
            string_column(&read_parquet(&out.join(n).join("selection.parquet")), "id")
                .into_iter()
                .collect()
        })
        .collect();
    for (i, m) in c["methods"].as_array().unwrap().iter().enumerate() {
        assert_eq!(m["kept"].as_u64().unwrap() as usize, sets[i].len());
        for (j, other) in sets.iter().enumerate() {
            let expected =
                sets[i].intersection(other).count() as f64 / sets[i].union(other).count() as f64;
            assert!((c["jaccard"][i][j].as_f64().unwrap() - expected).abs() < 1e-12);
        }
    }
    // Disagreements are documents kept by some but not all methods, listed with their keepers.
    for d in c["disagreements"].as_array().unwrap() {
        let id = d[0].as_str().unwrap();
        let keepers: Vec<&str> = d[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let expected: Vec<&str> = names
            .iter()
            .zip(&sets)
            .filter(|(_, s)| s.contains(id))
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(keepers, expected);
        assert!(keepers.len() < names.len());
    }
    let html = std::fs::read_to_string(out.join("comparison.html")).unwrap();
    assert!(html.contains("Jaccard") && html.contains("Cluster composition"));
    // Per-cluster composition over the pool's embeddings, against the library's k-means of
    // the corpus embeddings read independently (20 clusters, seed 42).
    {
        use gleaner_selectors::kmeans::{fit_sampled, normalize, KMeansConfig, Metric};
        let mut ids = Vec::new();
        let mut data = Vec::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("data/quickstart"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        files.sort();
        for f in files {
            let b = read_parquet(&f);
            ids.extend(string_column(&b, "id"));
            for v in float_lists(&b, "embedding") {
                data.extend(v);
            }
        }
        data.chunks_mut(384).for_each(normalize);
        let kmeans = KMeansConfig {
            max_iters: 20,
            metric: Metric::Cosine,
            seed: 42,
            ..KMeansConfig::new(20)
        };
        let fit = fit_sampled(&data, 384, &kmeans, 256);
        let cluster: HashMap<&str, u32> = ids
            .iter()
            .map(String::as_str)
            .zip(fit.assignments.iter().copied())
            .collect();
        let shares = |members: &HashSet<String>| -> Vec<f64> {
            let mut counts = [0.0; 20];
            for id in members {
                counts[cluster[id.as_str()] as usize] += 1.0;
            }
            counts.iter().map(|c| c / members.len() as f64).collect()
        };
        let all: HashSet<String> = ids.iter().cloned().collect();
        let got: Vec<f64> = c["pool_cluster_share"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want = shares(&all);
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{got:?} vs {want:?}"
        );
        for (m, set) in c["methods"].as_array().unwrap().iter().zip(&sets) {
            let got: Vec<f64> = m["cluster_share"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let want = shares(set);
            assert!(
                got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12),
                "{}",
                m["name"]
            );
        }
    }
    // Twice the same: byte-identical comparison and selections.
    let again = run_into("b");
    assert_eq!(
        std::fs::read(out.join("comparison.json")).unwrap(),
        std::fs::read(again.join("comparison.json")).unwrap()
    );
    for n in &names {
        assert_eq!(
            deterministic_files(&out.join(n)),
            deterministic_files(&again.join(n)),
            "{n}"
        );
    }
}

#[test]
fn ablation_config_errors_name_the_method() {
    let err = fails(&gleaner(&[
        "--quiet",
        "ablate",
        "--config",
        "configs/ablation.toml",
        "methods.1.name=random",
    ]));
    assert!(
        err.contains("methods[1].name") && err.contains("used twice"),
        "{err}"
    );
    let err = fails(&gleaner(&[
        "--quiet",
        "ablate",
        "--config",
        "configs/ablation.toml",
        "methods.0.name=\"a b\"",
    ]));
    assert!(err.contains("methods[0].name"), "{err}");
    let err = fails(&gleaner(&[
        "--quiet",
        "ablate",
        "--config",
        "configs/ablation.toml",
        "methods.2.stages.1.count=0.5",
    ]));
    assert!(err.contains("methods[2].stages[1]"), "{err}");
    let err = fails(&gleaner(&[
        "--quiet",
        "ablate",
        "--config",
        "configs/ablation.toml",
        "methods.0.stages.0.fraction=0.5",
    ]));
    assert!(
        err.contains("method `random` (methods[0])") && err.contains("exactly one of"),
        "{err}"
    );
}

#[test]
fn s2l_balances_loss_trajectory_clusters_and_stratifies_by_source() {
    use arrow::array::{ArrayRef, ListArray, StringArray};
    use arrow::datatypes::Float32Type;
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Three planted trajectory shapes (fast decrease, slow decrease, flat) of 300, 100 and
    // 10 documents; sources of sizes 3, 50 and 357 cut across them.
    let mut rng = gleaner_selectors::rng::SplitMix64::new(4);
    let (mut ids, mut texts, mut sources, mut trajs) = (vec![], vec![], vec![], vec![]);
    for (g, n) in [(0usize, 300usize), (1, 100), (2, 10)] {
        for i in 0..n {
            let traj: Vec<Option<f32>> = (0..12)
                .map(|s| {
                    let x = s as f32 / 11.0;
                    let v = [3.0 * (-4.0 * x).exp(), 3.0 - 1.5 * x, 2.0][g];
                    Some(v + 0.01 * (rng.next_f64() as f32 - 0.5))
                })
                .collect();
            let k = ids.len();
            ids.push(format!("g{g}-{i}"));
            texts.push(format!("document {k}"));
            sources.push(if k < 3 {
                "A"
            } else if k < 53 {
                "B"
            } else {
                "C"
            });
            trajs.push(Some(traj));
        }
    }
    // The same trajectories also as one numeric column per checkpoint (as `lm_score` stages
    // run with each proxy checkpoint would give them).
    let checkpoints: Vec<(String, ArrayRef)> = (0..12)
        .map(|s| {
            let values: arrow::array::Float32Array = trajs
                .iter()
                .map(|t: &Option<Vec<Option<f32>>>| t.as_ref().unwrap()[s])
                .collect();
            (format!("ckpt{s}"), Arc::new(values) as ArrayRef)
        })
        .collect();
    let mut columns = vec![
        (
            "id".to_string(),
            Arc::new(StringArray::from(ids.clone())) as ArrayRef,
        ),
        (
            "text".to_string(),
            Arc::new(StringArray::from(texts)) as ArrayRef,
        ),
        (
            "source".to_string(),
            Arc::new(StringArray::from(sources.clone())) as ArrayRef,
        ),
        (
            "losses".to_string(),
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(trajs)) as ArrayRef,
        ),
    ];
    columns.extend(checkpoints);
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let path = d.join("traj.parquet");
    write_batch(&path, &batch);
    let cfg = one_stage_config(
        d,
        &path,
        "type = \"s2l\"\ntrajectory_column = \"losses\"\nn_clusters = 3\ncount = 30",
    );
    let selected = |extra: &[&str]| selected_ids(&cfg, &d.join("out"), extra);
    // Balanced over the planted clusters, not proportional to them.
    let picks = selected(&[]);
    let per_group = |g: usize| {
        picks
            .iter()
            .filter(|id| id.starts_with(&format!("g{g}-")))
            .count()
    };
    assert_eq!((per_group(0), per_group(1), per_group(2)), (10, 10, 10));
    // Stratified by source (spec 3.4.4): sources of 3 / 50 / 357 with budget 30 give 3, 13, 14.
    let picks = selected(&["stages.0.per_source=true"]);
    let per_source = |s: &str| {
        picks
            .iter()
            .filter(|id| sources[ids.iter().position(|x| x == *id).unwrap()] == s)
            .count()
    };
    assert_eq!(
        (per_source("A"), per_source("B"), per_source("C")),
        (3, 13, 14)
    );
    // Numeric checkpoint columns give the same selection as the list column.
    let from_list = selected(&[]);
    let names: Vec<String> = (0..12).map(|s| format!("\"ckpt{s}\"")).collect();
    let by_columns = one_stage_config(
        d,
        &path,
        &format!(
            "type = \"s2l\"\ntrajectory_columns = [{}]\nn_clusters = 3\ncount = 30",
            names.join(", ")
        ),
    );
    assert_eq!(selected_ids(&by_columns, &d.join("out"), &[]), from_list);
}

/// A pool of code-like and prose documents with 0/1 columns marking each kind, and a held-out
/// code target set.
fn code_and_prose(dir: &Path) -> (PathBuf, PathBuf) {
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

#[test]
fn evaluate_trains_on_each_selection_and_code_selection_wins_on_a_code_target() {
    let tmp = tempfile::tempdir().unwrap();
    let (pool, target) = code_and_prose(tmp.path());
    let out = tmp.path().join("ablation");
    let method = |name: &str, column: &str| {
        format!("[[methods]]\nname = \"{name}\"\n[[methods.stages]]\ntype = \"score_select\"\nscore_column = \"{column}\"\ncount = 60\n")
    };
    let random = "[[methods]]\nname = \"random\"\n[[methods.stages]]\ntype = \"random_sample\"\ncount = 60\n";
    let evaluate = format!(
        "[evaluate]\ntarget_paths = [\"{}\"]\neval_points = 3\neval_documents = 16\nbootstrap_replicates = 400\n[evaluate.proxy]\ntrain_tokens = 24000\nseq_len = 64\nbatch_size = 8\nlearning_rate = 0.003\nlayers = 1\nhidden = 32\nheads = 2\nintermediate = 64\n",
        target.display()
    );
    let cfg = tmp.path().join("ablation.toml");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n[run]\nseed = 5\n{random}{}{}{evaluate}",
            pool.display(),
            out.display(),
            method("code", "is_code"),
            method("prose", "is_prose"),
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    // Before `ablate` there is nothing to train on.
    let err = fails(&gleaner(&["--quiet", "evaluate", "--config", cfg]));
    assert!(
        err.contains("gleaner ablate") && err.contains("random"),
        "{err}"
    );
    ok(&gleaner(&["--quiet", "ablate", "--config", cfg]));
    ok(&gleaner(&["--quiet", "evaluate", "--config", cfg]));
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    let steps = 24_000u64.div_ceil(64 * 8);
    assert_eq!(e["steps"], steps);
    assert_eq!(e["train_tokens"], steps * 64 * 8);
    // Whole documents are scored: the first 16 target functions, every byte of each (some
    // are longer than one 64-byte window).
    let targets = string_column(&read_parquet(&target), "text");
    assert_eq!(e["target_documents"], 16);
    let bytes: u64 = targets[..16].iter().map(|t| t.len() as u64).sum();
    assert!(targets[..16].iter().any(|t| t.len() > 64));
    assert_eq!(e["target_bytes"], bytes);
    let methods = e["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 3);
    let uniform_bits = (257f64).log2();
    let mut final_target = Vec::new();
    for (m, name) in methods.iter().zip(["random", "code", "prose"]) {
        assert_eq!(m["name"], name);
        let curve = m["curve"].as_array().unwrap();
        assert_eq!(curve.len(), 3);
        assert_eq!(curve[2]["step"], steps);
        assert_eq!(curve[2]["tokens"], steps * 64 * 8, "equal budgets");
        // Tokens of the selection: bytes plus one end marker per document, read independently.
        let texts = string_column(
            &read_parquet(&out.join(name).join("selected/part-00000.parquet")),
            "text",
        );
        let tokens: u64 = texts.iter().map(|t| t.len() as u64 + 1).sum();
        assert_eq!(m["selection_tokens"], tokens);
        let epochs = (steps * 8 * 65) as f64 / tokens as f64;
        assert!((m["epochs"].as_f64().unwrap() - epochs).abs() < 1e-9);
        let learned = curve[2]["train_loss"].as_f64().unwrap() / std::f64::consts::LN_2;
        assert!(
            learned < uniform_bits - 1.0,
            "{name} learned nothing: {learned}"
        );
        final_target.push(curve[2]["target_bpb"].as_f64().unwrap());
        let overlap = m["pool_sample_overlap"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&overlap));
        // Untargeted methods, no reference sets; the pool holds no target function.
        assert_eq!(m["held_out"]["references"].as_array().unwrap().len(), 0);
        assert_eq!(m["held_out"]["selection"]["exact"], 0);
    }
    assert!(
        final_target[1] < final_target[2],
        "training on code predicts held-out code better: {final_target:?}"
    );
    // Known answers against the random baseline (which holds about 12 code functions): the
    // neural model calls code better and prose worse, each with a bootstrap interval that
    // excludes zero; the n-gram model (no seed noise) agrees on prose, and puts code ahead by
    // less than its interval over 16 documents can separate from zero.
    assert!(methods[0]["ngram_vs_baseline"].is_null(), "the baseline");
    let verdict = |k: usize, model: &str| {
        methods[k][format!("{model}_vs_baseline")]["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        (verdict(1, "neural"), verdict(2, "neural")),
        ("better".into(), "worse".into())
    );
    assert_eq!(verdict(2, "ngram"), "worse");
    let code = &methods[1]["ngram_vs_baseline"];
    let diff =
        methods[1]["ngram_bpb"].as_f64().unwrap() - methods[0]["ngram_bpb"].as_f64().unwrap();
    assert!(diff < 0.0, "{diff}");
    assert!((code["difference"].as_f64().unwrap() - diff).abs() < 1e-12);
    let (low, high) = (
        code["bootstrap"]["low"].as_f64().unwrap(),
        code["bootstrap"]["high"].as_f64().unwrap(),
    );
    assert!(low <= diff && diff <= high, "{low} {diff} {high}");
    assert_eq!(
        verdict(1, "ngram"),
        if high < 0.0 {
            "better"
        } else {
            "no_clear_difference"
        }
    );
    assert!(
        methods[1]["neural_vs_baseline"]["seeds"].is_null(),
        "one seed: no t interval"
    );
    let md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(md.contains("| code |") && md.contains("| prose |"), "{md}");
    assert!(
        md.contains("**better**") && md.contains("(baseline)"),
        "{md}"
    );
    assert!(md.contains("16 whole evaluation documents"), "{md}");
    assert!(std::fs::read_to_string(out.join("evaluation.html"))
        .unwrap()
        .contains("<polyline"));
    // Deterministic apart from wall times.
    let strip = |mut v: serde_json::Value| {
        for m in v["methods"].as_array_mut().unwrap() {
            m.as_object_mut().unwrap().remove("seconds");
        }
        v
    };
    ok(&gleaner(&["--quiet", "evaluate", "--config", cfg]));
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    assert_eq!(strip(again), strip(e));
    // --quick swaps in the 2-layer, 64-wide model and a sixth of the budget.
    ok(&gleaner(&[
        "--quiet", "evaluate", "--config", cfg, "--quick",
    ]));
    let quick: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    assert_eq!(quick["settings"]["proxy"]["layers"], 2);
    assert_eq!(quick["settings"]["proxy"]["train_tokens"], 4000);
    // Repeats: one model per seed, the curve their mean, the spread in the table, and a t
    // interval over the paired per-seed differences.
    ok(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "--quick",
        "evaluate.repeats=2",
    ]));
    let two: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    let finals = |m: &serde_json::Value| -> Vec<f64> {
        m["final_target_bpb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (base, code) = (finals(&two["methods"][0]), finals(&two["methods"][1]));
    assert_eq!(code.len(), 2);
    assert_ne!(code[0], code[1], "different seeds, different models");
    assert_eq!(
        code[0],
        quick["methods"][1]["final_target_bpb"][0].as_f64().unwrap(),
        "the first repeat is the single run"
    );
    let last = two["methods"][1]["curve"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["target_bpb"]
        .as_f64()
        .unwrap();
    assert!((last - (code[0] + code[1]) / 2.0).abs() < 1e-12);
    let d = [code[0] - base[0], code[1] - base[1]];
    let neural = &two["methods"][1]["neural_vs_baseline"];
    assert!((neural["difference"].as_f64().unwrap() - (d[0] + d[1]) / 2.0).abs() < 1e-12);
    let half = 12.706 * (d[0] - d[1]).abs() / 2f64.sqrt() / 2f64.sqrt();
    let seeds = &neural["seeds"];
    assert!((seeds["high"].as_f64().unwrap() - ((d[0] + d[1]) / 2.0 + half)).abs() < 1e-9);
    assert!(std::fs::read_to_string(out.join("evaluation.md"))
        .unwrap()
        .contains(" ± "));
    // A selection made with another config than the one given now is refused, naming it.
    let err = fails(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "methods.2.stages.0.count=50",
    ]));
    assert!(
        err.contains("prose") && err.contains("stages.0.count") && err.contains("gleaner ablate"),
        "{err}"
    );
    // Config errors name the key.
    let err = fails(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "evaluate.proxy.heads=3",
    ]));
    assert!(err.contains("evaluate.proxy.heads"), "{err}");
    let err = fails(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "evaluate.baseline=\"uniform\"",
    ]));
    assert!(
        err.contains("evaluate.baseline") && err.contains("uniform"),
        "{err}"
    );
    let err = fails(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        "configs/quickstart.toml",
    ]));
    assert!(err.contains("methods") || err.contains("evaluate"), "{err}");
}

#[test]
fn a_method_aimed_at_the_evaluation_documents_is_refused_and_split_keeps_them_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (pool, target) = code_and_prose(tmp.path());
    // `gleaner split`: two parts, disjoint, together the whole target, deterministic.
    let parts = tmp.path().join("parts");
    let split = |dir: &Path| {
        ok(&gleaner(&[
            "split",
            target.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--eval-fraction",
            "0.5",
            "--seed",
            "3",
        ]))
    };
    let said = split(&parts);
    let reference = string_column(&read_parquet(&parts.join("reference.parquet")), "text");
    let evaluation = string_column(&read_parquet(&parts.join("evaluation.parquet")), "text");
    assert!(
        said.contains(&format!(
            "{} reference and {} evaluation",
            reference.len(),
            evaluation.len()
        )),
        "{said}"
    );
    let mut all: Vec<String> = reference.iter().chain(&evaluation).cloned().collect();
    all.sort();
    let mut want = string_column(&read_parquet(&target), "text");
    want.sort();
    assert_eq!(all, want);
    assert!(!reference.is_empty() && !evaluation.is_empty());
    let again = tmp.path().join("again");
    split(&again);
    assert_eq!(
        std::fs::read(parts.join("evaluation.parquet")).unwrap(),
        std::fs::read(again.join("evaluation.parquet")).unwrap()
    );

    let out = tmp.path().join("ablation");
    let write = |target_of_dsir: &Path, name: &str| {
        let cfg = tmp.path().join(name);
        std::fs::write(
            &cfg,
            format!(
                "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n\
                 [[methods]]\nname = \"random\"\n[[methods.stages]]\ntype = \"random_sample\"\ncount = 40\n\
                 [[methods]]\nname = \"dsir\"\n[[methods.stages]]\ntype = \"dsir\"\ntarget_paths = [\"{}\"]\nmin_example_length = 1\ncount = 40\n\
                 [evaluate]\ntarget_paths = [\"{}\"]\neval_points = 1\neval_documents = 8\nbootstrap_replicates = 100\n\
                 [evaluate.proxy]\ntrain_tokens = 2000\nseq_len = 32\nbatch_size = 4\nlayers = 1\nhidden = 16\nheads = 2\nintermediate = 32\n",
                pool.display(),
                out.display(),
                target_of_dsir.display(),
                parts.join("evaluation.parquet").display()
            ),
        )
        .unwrap();
        cfg
    };
    // DSIR aimed at the whole target, which holds the evaluation part: refused.
    let leaky = write(&target, "leaky.toml");
    let leaky = leaky.to_str().unwrap();
    ok(&gleaner(&["--quiet", "ablate", "--config", leaky]));
    let err = fails(&gleaner(&["--quiet", "evaluate", "--config", leaky]));
    assert!(
        err.contains("dsir")
            && err.contains("target_paths")
            && err.contains(&format!("{} of the 20 documents", evaluation.len()))
            && err.contains("gleaner split"),
        "{err}"
    );
    // Allowed on request, and then the report says so.
    ok(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        leaky,
        "--allow-reference-overlap",
    ]));
    let md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(
        md.contains("ALLOWED")
            && md.contains(&format!(
                "dsir.target_paths: {}/20 overlap",
                evaluation.len()
            )),
        "{md}"
    );
    // Aimed at the reference part: accepted, and the report shows the clean check.
    let clean = write(&parts.join("reference.parquet"), "clean.toml");
    let clean = clean.to_str().unwrap();
    ok(&gleaner(&[
        "--quiet",
        "ablate",
        "--config",
        clean,
        "--overwrite",
    ]));
    ok(&gleaner(&["--quiet", "evaluate", "--config", clean]));
    let md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(
        md.contains(&format!("dsir.target_paths: 0/{} overlap", reference.len())),
        "{md}"
    );
    assert!(!md.contains("ALLOWED"), "{md}");
}

#[test]
fn loss_trajectory_feeds_s2l_like_the_library_and_is_cached() {
    use gleaner::training::{checkpoint_steps, train, ProxyTrainingConfig};
    use gleaner_embed::train::byte_tokens;
    use gleaner_selectors::random::SampleSize;
    use gleaner_selectors::s2l::S2lSelector;
    use gleaner_selectors::{PoolDoc, Selector};
    let tmp = tempfile::tempdir().unwrap();
    let (pool, _) = code_and_prose(tmp.path());
    let stages = "[[stages]]\ntype = \"loss_trajectory\"\ncolumn = \"traj\"\ncheckpoints = 3\nmax_tokens = 48\nseed = 11\n\
                  [stages.proxy]\ntrain_tokens = 6000\nseq_len = 32\nbatch_size = 8\nlayers = 1\nhidden = 32\nheads = 2\nintermediate = 64\n\
                  [[stages]]\ntype = \"s2l\"\ntrajectory_column = \"traj\"\nn_clusters = 4\ncount = 25\nseed = 3\n";
    let cfg = tmp.path().join("traj.toml");
    let out = tmp.path().join("out");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n[run]\ncache_dir = \"{}\"\n{stages}",
            pool.display(),
            out.display(),
            tmp.path().join("cache").display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    ok(&gleaner(&["--quiet", "run", "--config", cfg]));
    let got = string_column(&read_parquet(&out.join("selection.parquet")), "id");

    // Oracle: the same proxy trained through the library, its per-checkpoint losses of each
    // document's first 48 byte tokens, and S2L over them.
    let texts: Vec<String> = {
        let b = read_parquet(&pool);
        string_column(&b, "text")
    };
    let ids: Vec<String> = string_column(&read_parquet(&pool), "id");
    let proxy = ProxyTrainingConfig {
        train_tokens: 6000,
        seq_len: 32,
        batch_size: 8,
        layers: 1,
        hidden: 32,
        heads: 2,
        intermediate: 64,
        ..Default::default()
    };
    let sequences: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| byte_tokens(t).into_iter().take(48).collect())
        .collect();
    let mut per_checkpoint = Vec::new();
    let at = checkpoint_steps(proxy.steps(), 3);
    train(&texts, &proxy, 11, &at, |_, lm, _| {
        per_checkpoint.push(lm.sequence_losses(&sequences))
    })
    .unwrap();
    let trajectories: Vec<Vec<f32>> = (0..texts.len())
        .map(|i| per_checkpoint.iter().map(|c| c[i] as f32).collect())
        .collect();
    // Training lowers the losses: the mean over documents falls from checkpoint to checkpoint.
    let means: Vec<f32> = (0..3)
        .map(|c| trajectories.iter().map(|t| t[c]).sum::<f32>() / texts.len() as f32)
        .collect();
    assert!(means[0] > means[1] && means[1] > means[2], "{means:?}");
    let docs: Vec<PoolDoc<'_>> = ids
        .iter()
        .zip(&trajectories)
        .map(|(id, t)| PoolDoc {
            id,
            source: None,
            tokens: 0,
            score: None,
            features: Some(t),
        })
        .collect();
    let s2l = S2lSelector {
        n_clusters: 4,
        kmeans_iters: 20,
        min_cluster_size: 3,
        seed: 3,
        size: SampleSize::Count(25),
    };
    let want: Vec<String> = s2l
        .select(&docs)
        .iter()
        .map(|p| ids[p.index].clone())
        .collect();
    assert_eq!(got, want);

    // A second run reuses the cached trajectories.
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg,
        "--overwrite",
    ]));
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timings.json")).unwrap()).unwrap();
    assert_eq!(t["model_stages"][0]["computed"], 0);
    assert_eq!(
        string_column(&read_parquet(&out.join("selection.parquet")), "id"),
        want
    );
    // More checkpoints than training steps is a config error naming the key.
    let err = fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg,
        "stages.0.checkpoints=100",
    ]));
    assert!(err.contains("stages[0].checkpoints"), "{err}");
}

/// Whether a Slurm cluster answers (`scripts/slurm-local.sh up`, which `scripts/test.sh` runs
/// when it can).
fn slurm_is_up() -> bool {
    Command::new("sinfo")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// The deterministic outputs of a run, without the sharded run's work folder.
fn run_outputs(out: &Path) -> BTreeMap<String, String> {
    deterministic_files(out)
        .into_iter()
        .filter(|(name, _)| !name.starts_with(".work"))
        .collect()
}

/// The curation stages and the n-gram classifier in one pipeline (local and Slurm runs).
const CURATION: &str = "[input]\npaths = [\"data/quickstart\"]\nsource_column = \"source\"\n[output]\ndir = \"unused\"\nwrite_removed = true\n[run]\nseed = 5\n\
[[stages]]\ntype = \"language_id\"\nlanguages = [\"eng\"]\n\
[[stages]]\ntype = \"decontaminate\"\n[stages.eval_sets]\nliterature = [\"data/targets/literature.parquet\"]\n\
[[stages]]\ntype = \"exact_dedup\"\n[[stages]]\ntype = \"minhash_dedup\"\n\
[[stages]]\ntype = \"ngram_classifier\"\ntarget_paths = [\"data/targets/humaneval-split/reference.parquet\"]\ncount = 500\n";

#[test]
fn slurm_runs_the_curation_stages_to_the_local_bytes() {
    if !slurm_is_up() {
        eprintln!("skipping: no Slurm cluster (scripts/slurm-local.sh up)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("curation.toml");
    std::fs::write(&cfg, CURATION).unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let dir = format!("output.dir=\"{}\"", out.display());
        let mut args = vec![
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
            dir.as_str(),
        ];
        args.extend_from_slice(extra);
        ok(&gleaner(&args));
        run_outputs(out)
    };
    let local = run(&tmp.path().join("local"), &[]);
    let slurm = run(
        &tmp.path().join("slurm"),
        &["--executor", "slurm", "--wait", "slurm.workers=3"],
    );
    assert_eq!(slurm, local);
}

#[test]
fn slurm_runs_the_quickstart_with_four_tasks_retries_and_resumes_to_the_local_bytes() {
    if !slurm_is_up() {
        eprintln!("skipping: no Slurm cluster (scripts/slurm-local.sh up)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    ok(&quickstart(&local, &[]));
    let slurm = |out: &Path, env: &[(&str, String)], extra: &[&str]| {
        let dir = format!("output.dir={}", out.display());
        let mut args = vec![
            "--quiet",
            "run",
            "--config",
            "configs/quickstart.toml",
            dir.as_str(),
            "--executor",
            "slurm",
            "--wait",
            "slurm.workers=4",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_gleaner"))
            .current_dir(repo())
            .args(&args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    };
    let logs = |out: &Path, rank: usize| -> String {
        let dir = out.join(".work/slurm/logs");
        let mut text = String::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("map-") && name.ends_with(&format!("_{rank}.log")) {
                text.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
        text
    };

    // Rank 2's process crashes after its first unit; the job script exits 75, the cluster
    // requeues it, and the retry does only the remaining units. The output is the local
    // run's, byte for byte.
    let out = tmp.path().join("retried");
    let flag = tmp.path().join("failed-once");
    ok(&slurm(
        &out,
        &[("GLEANER_TEST_FAIL_ONCE", format!("2:{}", flag.display()))],
        &[],
    ));
    assert!(flag.exists(), "the injected failure happened");
    let log = logs(&out, 2);
    assert!(
        log.contains("injected crash") && log.contains("1 already done"),
        "{log}"
    );
    assert_eq!(run_outputs(&out), run_outputs(&local));
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(".work/plan.json")).unwrap()).unwrap();
    assert_eq!(plan["world_size"], 4);

    // Without retries the failed task stays failed, the reduce is cancelled, status says so,
    // and `gleaner run` again resubmits only that task and the reduce.
    let out = tmp.path().join("resumed");
    let flag = tmp.path().join("failed-for-good");
    let err = fails(&slurm(
        &out,
        &[("GLEANER_TEST_FAIL_ONCE", format!("1:{}", flag.display()))],
        &["slurm.max_retries=0"],
    ));
    assert!(err.contains("did not complete"), "{err}");
    let status = ok(&gleaner(&["status", out.to_str().unwrap()]));
    assert!(
        status.contains("incomplete sharded run") && status.contains("failed or not submitted [1]"),
        "{status}"
    );
    assert!(!out.join("manifest.json").exists());
    let again = ok(&slurm(&out, &[], &["slurm.max_retries=0"]));
    assert!(again.is_empty(), "{again}");
    let jobs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(".work/slurm/jobs.json")).unwrap()).unwrap();
    assert_eq!(
        jobs["maps"][0][1],
        serde_json::json!([1]),
        "only the incomplete task is resubmitted"
    );
    assert!(logs(&out, 1).contains("1 already done"));
    assert_eq!(run_outputs(&out), run_outputs(&local));
    let status = ok(&gleaner(&["status", out.to_str().unwrap()]));
    assert!(status.contains("complete"), "{status}");

    // Quad (tiny proxy) with its probes scored by two `srun` job steps of the reduce job: the
    // same selection as the local run's threads.
    let quad = |out: &Path, extra: &[&str]| {
        let dir = format!("output.dir={}", out.display());
        let cache = format!("run.cache_dir={}", out.with_extension("cache").display());
        let mut args = vec![
            "--quiet",
            "run",
            "--config",
            "configs/quad.toml",
            dir.as_str(),
            cache.as_str(),
        ];
        args.extend_from_slice(extra);
        ok(&gleaner(&args));
    };
    let local_quad = tmp.path().join("quad-local");
    quad(&local_quad, &[]);
    let slurm_quad = tmp.path().join("quad-slurm");
    quad(
        &slurm_quad,
        &["--executor", "slurm", "--wait", "slurm.probe_tasks=2"],
    );
    let reduce_log: String = std::fs::read_dir(slurm_quad.join(".work/slurm/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("reduce-"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(reduce_log.contains("quad round 0"), "{reduce_log}");
    assert_eq!(
        reduce_log
            .matches("probe round 0: scored 16 documents")
            .count(),
        2,
        "two job steps share round 0's 32 probe documents: {reduce_log}"
    );
    assert!(
        !slurm_quad.join(".work/quad").exists(),
        "probe files are removed after the run"
    );
    assert_eq!(run_outputs(&slurm_quad), run_outputs(&local_quad));
}

#[test]
fn a_gpu_device_this_build_lacks_is_an_error_naming_the_stage_and_the_feature() {
    if cfg!(feature = "gpu") {
        eprintln!("skipping: this build has the gpu feature");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gpu.toml");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [\"data/quickstart/corpus-00.parquet\"]\n[output]\ndir = \"{}\"\n[run]\ncache_dir = \"{}\"\n\
             [[stages]]\ntype = \"embed\"\nmodel = \"embed/tests/fixtures/tiny-bert\"\ncolumn = \"emb\"\ndevice = \"gpu\"\n",
            tmp.path().join("out").display(),
            tmp.path().join("cache").display()
        ),
    )
    .unwrap();
    let err = fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert!(
        err.contains("stage `embed`") && err.contains("`gpu`") && err.contains("--features gpu"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!tmp.path().join("out/manifest.json").exists());
}
