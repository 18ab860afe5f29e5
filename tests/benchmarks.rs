//! Known-answer benchmarks (data/benchmarks/, built by scripts/make_benchmarks.py): what each
//! method's selection must look like when the answer is known without training, and, for the
//! diversity benchmark, the deterministic n-gram evaluation model's verdict.

mod common;
use common::{asset_model, gleaner, ok, read_parquet, repo, string_column};
use std::collections::BTreeMap;

/// Planted-junk label of each pool document (`None`: clean), read from the pool itself.
fn planted_labels() -> BTreeMap<String, Option<String>> {
    let pool = read_parquet(&repo().join("data/benchmarks/quality/pool.parquet"));
    string_column(&pool, "id")
        .into_iter()
        .zip(string_column(&pool, "source"))
        .map(|(id, source)| {
            let label = source.strip_prefix("planted_").map(String::from);
            (id, label)
        })
        .collect()
}

/// Runs `gleaner ablate` on a shipped benchmark config into `out`.
fn ablate(config: &str, out: &std::path::Path) {
    let dir = format!("output.dir=\"{}\"", out.display());
    ok(&gleaner(&["--quiet", "ablate", "--config", config, &dir]));
}

fn planted_share(ids: &[String], labels: &BTreeMap<String, Option<String>>) -> f64 {
    let planted = ids.iter().filter(|id| labels[*id].is_some()).count();
    planted as f64 / ids.len() as f64
}

#[test]
fn quality_benchmark_filters_keep_under_half_the_planted_junk_and_random_keeps_its_share() {
    let labels = planted_labels();
    let pool_share = labels.values().filter(|l| l.is_some()).count() as f64 / labels.len() as f64;
    assert!((pool_share - 0.2).abs() < 0.01, "{pool_share}");

    // The Gopher rules alone, on the whole pool: survival per planted kind.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gopher.toml");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [\"data/benchmarks/quality/pool.parquet\"]\n[output]\ndir = \"{}\"\n\
             [[stages]]\ntype = \"gopher_quality\"\n[[stages]]\ntype = \"gopher_repetition\"\n",
            tmp.path().join("gopher").display()
        ),
    )
    .unwrap();
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    let kept: std::collections::HashSet<String> = string_column(
        &read_parquet(&tmp.path().join("gopher/selection.parquet")),
        "id",
    )
    .into_iter()
    .collect();
    let mut survived: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (id, label) in &labels {
        if let Some(kind) = label {
            let e = survived.entry(kind.as_str()).or_default();
            e.1 += 1;
            e.0 += usize::from(kept.contains(id));
        }
    }
    let (alive, planted): (usize, usize) = survived
        .values()
        .fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
    assert!(
        (alive as f64) < 0.5 * planted as f64,
        "the heuristic filters keep under half of the planted junk: {survived:?}"
    );
    for kind in ["boilerplate", "spam", "fragment"] {
        assert_eq!(
            survived[kind].0, 0,
            "{kind} is caught by the rules: {survived:?}"
        );
    }
    let clean_kept = kept.iter().filter(|id| labels[*id].is_none()).count();
    let clean = labels.len() - planted;
    assert!(
        clean_kept as f64 > 0.6 * clean as f64,
        "{clean_kept} of {clean} clean documents"
    );

    // The ablation: random holds about the pool share (300 draws: within 4 sd), the
    // heuristic and DSIR (aimed at clean text of the same sources) much less.
    let out = tmp.path().join("ablation");
    ablate("configs/benchmarks/quality.toml", &out);
    let share = |method: &str| {
        let ids = string_column(
            &read_parquet(&out.join(method).join("selection.parquet")),
            "id",
        );
        assert_eq!(ids.len(), 300, "{method}");
        planted_share(&ids, &labels)
    };
    let sd = (0.2f64 * 0.8 / 300.0).sqrt();
    let random = share("random");
    assert!((random - pool_share).abs() < 4.0 * sd, "random: {random}");
    assert!(
        share("heuristic") < 0.5 * pool_share,
        "heuristic: {}",
        share("heuristic")
    );
    assert!(share("dsir") < 0.5 * pool_share, "dsir: {}", share("dsir"));
    // The comparison reports the same shares per planted source.
    let comparison: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("comparison.json")).unwrap()).unwrap();
    let reported: f64 = comparison["methods"][0]["source_share"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("planted_"))
        .map(|(_, v)| v.as_f64().unwrap())
        .sum();
    assert!((reported - random).abs() < 1e-9, "{reported} vs {random}");
}

#[test]
fn targeting_benchmark_dsir_and_the_classifier_enrich_the_target_source_and_random_does_not() {
    let pool = read_parquet(&repo().join("data/benchmarks/targeting/pool.parquet"));
    let sources = string_column(&pool, "source");
    let pool_share =
        sources.iter().filter(|s| *s == "email_ham").count() as f64 / sources.len() as f64;
    // The target e-mails are held out of the pool, and apart from each other.
    let pool_ids: std::collections::HashSet<String> =
        string_column(&pool, "id").into_iter().collect();
    for part in ["reference", "evaluation"] {
        let ids = string_column(
            &read_parquet(&repo().join(format!("data/benchmarks/targeting/{part}.parquet"))),
            "id",
        );
        assert!(
            ids.iter().all(|id| !pool_ids.contains(id)),
            "{part} is held out"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("targeting");
    ablate("configs/benchmarks/targeting.toml", &out);
    // Each method takes 200,000 words, about 1,000 to 1,450 of the 3,842 documents. Random
    // holds e-mail at its pool share and takes about its share of the documents' e-mails;
    // DSIR and the classifier take most of the pool's 120 ham e-mails, at about 3x their
    // pool share.
    let in_pool = sources.iter().filter(|s| *s == "email_ham").count() as f64;
    let taken = |method: &str| -> (f64, f64, f64) {
        let selected = string_column(
            &read_parquet(&out.join(format!("{method}/selection.parquet"))),
            "source",
        );
        let ham = selected.iter().filter(|s| *s == "email_ham").count() as f64;
        let n = selected.len() as f64;
        (ham / n, ham / in_pool, n)
    };
    let (random, random_recall, n) = taken("random");
    let sd = (pool_share * (1.0 - pool_share) / n).sqrt();
    assert!(
        (random - pool_share).abs() < 4.0 * sd,
        "random {random} vs {pool_share}"
    );
    let documents = n / sources.len() as f64;
    assert!(
        (random_recall - documents).abs() < 0.15,
        "random takes about its share of the documents' e-mails: {random_recall} vs {documents}"
    );
    for method in ["dsir", "ngram_classifier"] {
        let (share, recall, _) = taken(method);
        assert!(
            share > 2.5 * pool_share,
            "{method} holds its target source at more than 2.5x its pool share: {share} vs {pool_share}"
        );
        assert!(
            recall > 0.75,
            "{method} takes most of the pool's target e-mails: {recall}"
        );
    }
}

/// Families (`<family>#<copy>` ids) a run's selection covers.
fn families_covered(selection: &std::path::Path) -> usize {
    let ids = string_column(&read_parquet(selection), "id");
    let families: std::collections::HashSet<&str> =
        ids.iter().map(|i| i.rsplit_once('#').unwrap().0).collect();
    families.len()
}

#[test]
fn diversity_benchmark_minhash_dedup_covers_a_family_per_document() {
    let pool = string_column(
        &read_parquet(&repo().join("data/benchmarks/diversity/pool.parquet")),
        "id",
    );
    let mut sizes: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for id in &pool {
        *sizes.entry(id.rsplit_once('#').unwrap().0).or_default() += 1;
    }
    // Expected families covered by 300 documents drawn uniformly without replacement:
    // sum over families of 1 - C(N - s, 300) / C(N, 300).
    let n = pool.len();
    let miss = |s: usize| -> f64 {
        (0..300)
            .map(|k| (n - s - k) as f64 / (n - k) as f64)
            .product()
    };
    let expected: f64 = sizes.values().map(|&s| 1.0 - miss(s)).sum();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("diversity");
    ablate("configs/benchmarks/diversity.toml", &out);
    let random = families_covered(&out.join("random/selection.parquet")) as f64;
    let minhash = families_covered(&out.join("minhash_dedup/selection.parquet")) as f64;
    assert!(
        (random - expected).abs() < 20.0,
        "random covers {random}, expected {expected:.1}"
    );
    assert!(
        minhash >= 280.0,
        "MinHash dedup then random covers {minhash} families of 300 documents"
    );
    assert!(minhash > random + 50.0, "{minhash} vs {random}");
    // The trained metric (n-gram model: deterministic, no seeds; the neural models at a
    // smoke-test budget). The held-out documents share no 13-word run with the pool, so no
    // selection overlaps them; the deduplicated selection, more distinct text for the same
    // 300 documents, predicts them better than random with an interval below zero, and exact
    // dedup, which finds no copy here, is level with random.
    let dir = format!("output.dir=\"{}\"", out.display());
    ok(&gleaner(&[
        "--quiet",
        "evaluate",
        "--config",
        "configs/benchmarks/diversity.toml",
        &dir,
        "evaluate.repeats=1",
        "evaluate.eval_points=1",
        "evaluate.proxy.train_tokens=2048",
        "evaluate.proxy.layers=1",
        "evaluate.proxy.hidden=32",
        "evaluate.proxy.heads=2",
        "evaluate.proxy.intermediate=64",
        "evaluate.second_model.train_tokens=2048",
    ]));
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap();
    let methods = e["methods"].as_array().unwrap();
    assert_eq!(e["target_documents"], 163);
    for m in methods {
        assert_eq!(m["held_out"]["selection"]["exact"], 0, "{}", m["name"]);
        assert_eq!(m["held_out"]["selection"]["shingle"], 0, "{}", m["name"]);
    }
    let ngram = |k: usize| &methods[k]["ngram_vs_baseline"];
    assert_eq!(methods[2]["name"], "minhash_dedup");
    assert_eq!(ngram(2)["verdict"], "better");
    assert!(ngram(2)["bootstrap"]["high"].as_f64().unwrap() < 0.0);
    assert_eq!(methods[1]["name"], "exact_dedup");
    assert_eq!(ngram(1)["verdict"], "no_clear_difference");
}

/// Runs `gleaner ablate` on a shipped config that uses the fetched models, its output and
/// model cache in `out`.
fn ablate_with_models(config: &str, out: &std::path::Path, overrides: &[&str]) {
    let dir = format!("output.dir=\"{}\"", out.display());
    let cache = format!("run.cache_dir=\"{}\"", out.join("cache").display());
    let mut args = vec!["--quiet", "ablate", "--config", config, &dir, &cache];
    args.extend(overrides);
    ok(&gleaner(&args));
}

#[test]
fn diversity_benchmark_semdedup_on_minilm_covers_more_families_than_random() {
    if asset_model("all-MiniLM-L6-v2").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("diversity_models");
    ablate_with_models("configs/benchmarks/diversity_models.toml", &out, &[]);
    let random = families_covered(&out.join("random/selection.parquet"));
    let semdedup = families_covered(&out.join("semdedup/selection.parquet"));
    assert!(
        semdedup > random + 30,
        "SemDeDup then random covers {semdedup} families, random {random}"
    );
}

#[test]
fn targeting_benchmark_quad_with_smollm2_and_embedding_similarity_enrich_the_target_source() {
    if asset_model("all-MiniLM-L6-v2").is_none() || asset_model("smollm2-135m").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("targeting_models");
    // Quad at a quarter of its budget (100,000 SmolLM2 tokens, 110 to 170 documents) and with
    // one window of 256 tokens per probed document (the config: up to two of 512): its
    // probing is the cost of this test, and this keeps it near 6 minutes on 2 cores.
    let mut overrides = Vec::new();
    for method in 3..=5 {
        for setting in [
            "budget_tokens=100000",
            "window_len=256",
            "window_stride=255",
            "max_windows=1",
        ] {
            overrides.push(format!("methods.{method}.stages.2.{setting}"));
        }
    }
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    ablate_with_models("configs/benchmarks/targeting_models.toml", &out, &overrides);
    let pool = string_column(
        &read_parquet(&repo().join("data/benchmarks/targeting/pool.parquet")),
        "source",
    );
    let in_pool = pool.iter().filter(|s| *s == "email_ham").count() as f64;
    let pool_share = in_pool / pool.len() as f64;
    // (share of email_ham in the selection, share of the pool's email_ham selected)
    let taken = |method: &str| -> (f64, f64) {
        let selected = string_column(
            &read_parquet(&out.join(method).join("selection.parquet")),
            "source",
        );
        let ham = selected.iter().filter(|s| *s == "email_ham").count() as f64;
        (ham / selected.len() as f64, ham / in_pool)
    };
    // Random and the others take a third of the pool (200,000 words), so random takes about a
    // third of the 120 ham e-mails. The paper's tau (0.002) lies below every cluster's mean
    // influence under SmolLM2, so every pull is accepted and the selection is no better than
    // random (here worse: the first clusters pulled hold fortunes). Tau from the data holds
    // e-mail at 2.6x its pool share, proportional blocks at 4.9x (measured with these
    // settings; docs/RESULTS.md has the full-size runs).
    let (random, random_recall) = taken("random");
    assert!(random_recall < 0.5, "random: {random} {random_recall}");
    let (paper, _) = taken("quad_paper");
    assert!(paper < 1.5 * pool_share, "quad_paper: {paper}");
    let (quad, _) = taken("quad");
    assert!(quad > 2.0 * pool_share, "quad: {quad}");
    let (proportional, _) = taken("quad_proportional");
    assert!(
        proportional > 4.0 * pool_share && proportional > quad,
        "quad_proportional: {proportional}"
    );
    let (similarity, similarity_recall) = taken("embedding_similarity");
    assert!(
        similarity > 1.8 * pool_share && similarity_recall > 0.65,
        "embedding_similarity: {similarity} {similarity_recall}"
    );
    let (dsir, dsir_recall) = taken("dsir");
    assert!(
        dsir > 3.0 * pool_share && dsir_recall > 0.8,
        "dsir: {dsir} {dsir_recall}"
    );
}
