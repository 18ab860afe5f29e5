//! The selection methods through the CLI (semdedup, DSIR, score_select, S2L and its loss
//! trajectories), each against the library or a computation done here.

use arrow::array::{AsArray, RecordBatch};
use gleaner_selectors::dedup::Normalization;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

mod common;
use common::*;

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
    // Documents of each planted group (ids `g<group>-<i>`) among `picks`.
    let per_group = |picks: &[String]| -> Vec<usize> {
        (0..3)
            .map(|g| {
                picks
                    .iter()
                    .filter(|id| id.starts_with(&format!("g{g}-")))
                    .count()
            })
            .collect()
    };
    assert_eq!(per_group(&selected(&[])), [10, 10, 10]);
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
    // A budget of whitespace tokens (2 per document): cluster totals 20, 200 and 600 tokens
    // against 60 take 20 whole, then 40/2 = 20 and 20/1 = 20 tokens: 10 documents each.
    let by_words = one_stage_config(
        d,
        &path,
        "type = \"s2l\"\ntrajectory_column = \"losses\"\nn_clusters = 3\nbudget_words = 60",
    );
    assert_eq!(
        per_group(&selected_ids(&by_words, &d.join("out"), &[])),
        [10, 10, 10]
    );
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
