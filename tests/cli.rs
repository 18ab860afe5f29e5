//! End-to-end tests of the `gleaner` binary: the quickstart run against an independent
//! oracle, determinism, bad inputs, and the inspect, plan and status verbs.

use arrow::array::AsArray;
use gleaner_selectors::dedup::Normalization;
use gleaner_selectors::filters::{DocumentFilter, GopherQuality, GopherRepetition};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

mod common;
use common::*;

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
fn units_kept_from_the_scan_write_the_same_bytes_as_units_read_again() {
    // The quickstart corpus has 18 work units (row groups); with `write_removed` the write
    // phase reads each of them.
    let units: usize = std::fs::read_dir(repo().join("data/quickstart"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap())
                .unwrap()
                .metadata()
                .num_row_groups()
        })
        .sum();
    assert_eq!(units, 18);
    let tmp = tempfile::tempdir().unwrap();
    let timing = |dir: &Path, key: &str| -> usize {
        let t: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("timings.json")).unwrap()).unwrap();
        t[key].as_u64().unwrap() as usize
    };
    let read_again = |dir: &Path| timing(dir, "units_read_again");
    // Several batches per unit, so a kept unit's batches must come back in order.
    // Unset, local files are read again (some of them, at most one per thread, while the
    // pool is decided: how many depends on timing, never the output).
    let default = tmp.path().join("default");
    ok(&quickstart(
        &default,
        &["input.batch_size=50", "--threads", "2"],
    ));
    assert_eq!(read_again(&default), units);
    assert!(timing(&default, "units_read_ahead") <= 2);
    let all = tmp.path().join("all");
    ok(&quickstart(
        &all,
        &["run.scan_cache=1GiB", "input.batch_size=50"],
    ));
    assert_eq!(read_again(&all), 0);
    let none = tmp.path().join("none");
    ok(&quickstart(
        &none,
        &["run.scan_cache=0", "input.batch_size=50"],
    ));
    assert_eq!(read_again(&none), units);
    assert_eq!(
        timing(&none, "units_read_ahead"),
        0,
        "0 turns reading ahead off"
    );
    // About 300 kB of decoded text per unit: a 1 MB budget keeps a few units, not all.
    let some = tmp.path().join("some");
    ok(&quickstart(
        &some,
        &[
            "run.scan_cache=1MB",
            "input.batch_size=50",
            "--threads",
            "1",
        ],
    ));
    let partly = read_again(&some);
    assert!(
        0 < partly && partly < units,
        "{partly} of {units} read again"
    );
    let expected = deterministic_files(&none);
    assert_eq!(deterministic_files(&all), expected);
    assert_eq!(deterministic_files(&some), expected);
    assert_eq!(deterministic_files(&default), expected);
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
        err.contains("missing/*.parquet")
            && err.contains("matched no parquet, JSONL, Arrow IPC or WARC file"),
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
