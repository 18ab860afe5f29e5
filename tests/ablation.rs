//! `gleaner ablate`, `gleaner evaluate` and `gleaner split` end to end.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

mod common;
use common::*;

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
    // The baseline as three draws (the default): its own selection and two reruns of its
    // stages with the next seeds, each a completed run of ablate's; its n-gram bits per byte
    // is their mean, and each method's n-gram difference is the mean of its differences
    // with the draws, with a t interval over them.
    let draws = e["baseline_draws"].as_array().unwrap();
    let names: Vec<&str> = draws.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["random", "random-draw-1", "random-draw-2"]);
    let seeds: Vec<u64> = draws.iter().map(|d| d["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [5, 6, 7]);
    for name in &names[1..] {
        assert!(out.join(name).join("manifest.json").is_file(), "{name}");
    }
    let draw_bpb: Vec<f64> = draws
        .iter()
        .map(|d| d["ngram_bpb"].as_f64().unwrap())
        .collect();
    assert!(draw_bpb[0] != draw_bpb[1], "the draws differ: {draw_bpb:?}");
    let mean_draw = draw_bpb.iter().sum::<f64>() / 3.0;
    assert!((methods[0]["ngram_bpb"].as_f64().unwrap() - mean_draw).abs() < 1e-9);
    for k in [1, 2] {
        let bpb = methods[k]["ngram_bpb"].as_f64().unwrap();
        let c = &methods[k]["ngram_vs_baseline"];
        assert!((c["difference"].as_f64().unwrap() - (bpb - mean_draw)).abs() < 1e-9);
        let (low, high) = (
            c["draws"]["low"].as_f64().unwrap(),
            c["draws"]["high"].as_f64().unwrap(),
        );
        assert!(low < bpb - mean_draw && bpb - mean_draw < high);
    }
    let md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(md.contains("| code |") && md.contains("| prose |"), "{md}");
    assert!(
        md.contains("**better**") && md.contains("(baseline)"),
        "{md}"
    );
    assert!(md.contains("16 whole evaluation documents"), "{md}");
    // The report warns exactly when a model passes over its selection more than 4 times.
    let warning = "**Warning:** the neural model passes over these selections";
    let many = |e: &serde_json::Value| {
        e["methods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["epochs"].as_f64().unwrap() > 4.0)
            .count()
    };
    assert_eq!(md.contains(warning), many(&e) > 0, "{md}");
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
    assert_eq!(strip(again), strip(e.clone()));
    // --methods: only the named methods, in config order, with the same numbers as in the
    // full evaluation (each method's models depend only on its selection and the seed).
    ok(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "--methods",
        "prose,random",
    ]));
    let some: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    let some_methods = some["methods"].as_array().unwrap();
    assert_eq!(some_methods.len(), 2);
    assert_eq!(
        strip(some.clone())["methods"][0],
        strip(e.clone())["methods"][0]
    );
    assert_eq!(strip(some)["methods"][1], strip(e.clone())["methods"][2]);
    let err = fails(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "--methods",
        "code",
    ]));
    assert!(
        err.contains("evaluate.baseline") && err.contains("random"),
        "{err}"
    );
    let err = fails(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "--methods",
        "random,cod",
    ]));
    assert!(err.contains("`cod`") && err.contains("prose"), "{err}");
    // --ngram-only: the full evaluation's n-gram columns, and no neural model trained.
    ok(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "--ngram-only",
    ]));
    let ngram: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    assert_eq!(ngram["ngram_only"], true);
    let ngram_methods = ngram["methods"].as_array().unwrap();
    assert_eq!(ngram_methods.len(), 3);
    for (m, full) in ngram_methods.iter().zip(methods) {
        assert_eq!(m["ngram_bpb"], full["ngram_bpb"]);
        assert_eq!(m["ngram_vs_baseline"], full["ngram_vs_baseline"]);
        assert!(m["curve"].as_array().unwrap().is_empty());
        assert!(m["final_target_bpb"].as_array().unwrap().is_empty());
        assert!(m["neural_vs_baseline"].is_null());
    }
    assert_eq!(ngram["baseline_draws"], e["baseline_draws"]);
    let err = fails(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "--ngram-only",
        "evaluate.ngram_order=0",
    ]));
    assert!(
        err.contains("evaluate.ngram_order") && err.contains("--ngram-only"),
        "{err}"
    );
    let ngram_md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(
        ngram_md.contains("--ngram-only")
            && ngram_md.contains("| code |")
            && !ngram_md.contains("neural bpb"),
        "{ngram_md}"
    );
    // ablate --methods reruns only those: the other method's folder is left as it was.
    let prose_manifest = std::fs::read(out.join("prose/manifest.json")).unwrap();
    let code_before = std::fs::metadata(out.join("code/manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    ok(&gleaner(&[
        "--quiet",
        "ablate",
        "--config",
        cfg,
        "--methods",
        "code",
        "--overwrite",
    ]));
    assert_eq!(
        std::fs::read(out.join("prose/manifest.json")).unwrap(),
        prose_manifest
    );
    assert!(
        std::fs::metadata(out.join("code/manifest.json"))
            .unwrap()
            .modified()
            .unwrap()
            > code_before
    );
    // Ten times the budget: every selection is passed over many times, and the report says so.
    ok(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "evaluate.proxy.train_tokens=240000",
        "evaluate.eval_points=1",
    ]));
    let long: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    assert_eq!(many(&long), 3);
    let md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(md.contains(warning) && md.contains("prose ("), "{md}");
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
    // A second neural model: its own comparison with the baseline, and the rank agreement of
    // the three evaluation models, checked here with the no-ties formula
    // rho = 1 - 6 sum(d^2) / (n (n^2 - 1)).
    ok(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        cfg,
        "--quick",
        "evaluate.second_model.train_tokens=12000",
        "evaluate.second_model.seq_len=64",
        "evaluate.second_model.batch_size=8",
    ]));
    let with_second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    let ms = with_second["methods"].as_array().unwrap();
    assert_eq!(with_second["settings"]["second_model"]["layers"], 1);
    assert!(ms[0]["second_vs_baseline"].is_null());
    assert!(ms[1]["second_vs_baseline"]["verdict"].is_string());
    let values = |key: &str| -> Vec<f64> {
        ms.iter()
            .map(|m| match &m[key] {
                serde_json::Value::Array(v) => v[0].as_f64().unwrap(),
                v => v.as_f64().unwrap(),
            })
            .collect()
    };
    let rank = |v: &[f64]| -> Vec<f64> {
        v.iter()
            .map(|x| v.iter().filter(|y| *y < x).count() as f64 + 1.0)
            .collect()
    };
    let rho = |a: &[f64], b: &[f64]| {
        let d2: f64 = rank(a)
            .iter()
            .zip(rank(b))
            .map(|(x, y)| (x - y).powi(2))
            .sum();
        1.0 - 6.0 * d2 / (3.0 * 8.0)
    };
    let (ngram, neural, second) = (
        values("ngram_bpb"),
        values("final_target_bpb"),
        values("second_target_bpb"),
    );
    let agreement = with_second["rank_agreement"].as_array().unwrap();
    let got: Vec<(String, String, f64)> = agreement
        .iter()
        .map(|a| {
            (
                a["first"].as_str().unwrap().to_string(),
                a["second"].as_str().unwrap().to_string(),
                a["spearman"].as_f64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("n-gram", "neural", rho(&ngram, &neural)),
        ("n-gram", "second neural", rho(&ngram, &second)),
        ("neural", "second neural", rho(&neural, &second)),
    ];
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str()), (w.0, w.1));
        assert!((g.2 - w.2).abs() < 1e-12, "{g:?} vs {w:?}");
    }
    let md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(
        md.contains("## Rank agreement") && md.contains("second vs baseline"),
        "{md}"
    );
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
    // A method may not take the folder of one of the baseline's draws.
    let err = fails(&gleaner(&[
        "--quiet",
        "ablate",
        "--config",
        "configs/ablation.toml",
        "methods.1.name=\"random-draw-2\"",
    ]));
    assert!(
        err.contains("methods[1].name") && err.contains("baseline_draws"),
        "{err}"
    );
}
