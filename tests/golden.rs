//! Byte-identical behaviour across refactors: every config under `configs/` that can run with
//! the tiny test models on the quickstart corpus is run, and the SHA-256 of its selected
//! shards, `selection.parquet` and `stats.json` are compared with `tests/golden/hashes.json`.
//! The single-run configs run at one and at two threads (both must match the same hashes).
//!
//! The hashes change only when behaviour is meant to change: regenerate them with
//! `GLEANER_UPDATE_GOLDEN=1 cargo test --test golden` and state the reason in the commit.

mod common;

use common::{gleaner, long_tiny_llama, ok, repo};
use gleaner_storage::atomic::sha256_file;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const GOLDEN: &str = "tests/golden/hashes.json";
const TINY_BERT: &str = "embed/tests/fixtures/tiny-bert";
const TINY_LLAMA: &str = "embed/tests/fixtures/tiny-llama";

/// One golden case: a config, the overrides that make it run on the tiny models, and whether
/// it is an ablation.
struct Case {
    name: &'static str,
    config: &'static str,
    overrides: Vec<String>,
    ablation: bool,
}

fn cases(long_llama: &Path) -> Vec<Case> {
    let case = |name, config, overrides: &[&str]| Case {
        name,
        config,
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        ablation: false,
    };
    vec![
        case("quickstart", "configs/quickstart.toml", &[]),
        case("dsir", "configs/dsir.toml", &[]),
        case("semdedup", "configs/semdedup.toml", &[]),
        case("decontaminate", "configs/decontaminate.toml", &[]),
        case("minhash_dedup", "configs/minhash_dedup.toml", &[]),
        case("language_id", "configs/language_id.toml", &[]),
        case("c4_quality", "configs/c4_quality.toml", &[]),
        case("pii_redact", "configs/pii_redact.toml", &[]),
        case("fineweb", "configs/fineweb.toml", &[]),
        case("fineweb_warc", "configs/fineweb_warc.toml", &[]),
        case("url_filter", "configs/url_filter.toml", &[]),
        case("c4_badwords", "configs/c4_badwords.toml", &[]),
        case("quad", "configs/quad.toml", &[]),
        // The shipped configs name the real models; the tiny ones stand in.
        case(
            "embed",
            "configs/embed.toml",
            &[
                &format!("stages.0.model=\"{TINY_BERT}\""),
                "stages.2.eps=0.0001",
            ],
        ),
        case(
            "perplexity",
            "configs/perplexity.toml",
            &[
                &format!("stages.0.model=\"{TINY_LLAMA}\""),
                "stages.0.max_tokens=64",
                "stages.1.min=16.0",
                "stages.1.max=19.0",
            ],
        ),
        case(
            "attention_influence",
            "configs/attention_influence.toml",
            &[
                &format!("stages.0.model=\"{}\"", long_llama.display()),
                "stages.0.max_tokens=64",
                "stages.0.probe.num_samples=4",
            ],
        ),
        Case {
            name: "ablation",
            config: "configs/ablation.toml",
            overrides: Vec::new(),
            ablation: true,
        },
    ]
}

/// Hashes of the outputs of one run directory: selected shards, selection and stats.
fn run_hashes(out: &Path) -> BTreeMap<String, String> {
    let mut hashes = BTreeMap::new();
    let mut files = vec![
        PathBuf::from("selection.parquet"),
        PathBuf::from("stats.json"),
    ];
    let mut shards: Vec<PathBuf> = std::fs::read_dir(out.join("selected"))
        .unwrap()
        .map(|e| PathBuf::from("selected").join(e.unwrap().file_name()))
        .collect();
    shards.sort();
    files.extend(shards);
    for f in files {
        let hash = sha256_file(&out.join(&f)).unwrap();
        hashes.insert(f.to_string_lossy().into_owned(), hash);
    }
    hashes
}

/// Runs a case at `threads` and returns its hashes (per method for an ablation).
fn run_case(case: &Case, out: &Path, cache: &Path, threads: usize) -> BTreeMap<String, String> {
    let mut args: Vec<String> = vec![
        if case.ablation { "ablate" } else { "run" }.into(),
        "--config".into(),
        case.config.into(),
        "--overwrite".into(),
        "--threads".into(),
        threads.to_string(),
        format!("output.dir=\"{}\"", out.display()),
        format!("run.cache_dir=\"{}\"", cache.display()),
    ];
    args.extend(case.overrides.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&gleaner(&args));
    if !case.ablation {
        return run_hashes(out);
    }
    let mut hashes = BTreeMap::new();
    let mut methods: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    methods.sort();
    for m in methods {
        let name = m.file_name().unwrap().to_string_lossy().into_owned();
        for (file, hash) in run_hashes(&m) {
            hashes.insert(format!("{name}/{file}"), hash);
        }
    }
    hashes
}

#[test]
fn shipped_configs_give_their_golden_outputs_at_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let long_llama = long_tiny_llama(tmp.path());
    let cache = tmp.path().join("cache");
    let mut measured: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for case in cases(&long_llama) {
        let thread_counts: &[usize] = if case.ablation { &[2] } else { &[1, 2] };
        for &threads in thread_counts {
            let out = tmp.path().join(format!("{}-{threads}", case.name));
            let hashes = run_case(&case, &out, &cache, threads);
            match measured.get(case.name) {
                Some(first) => assert_eq!(
                    first, &hashes,
                    "{}: outputs differ between 1 and {threads} threads",
                    case.name
                ),
                None => {
                    measured.insert(case.name.to_string(), hashes);
                }
            }
        }
    }
    let path = repo().join(GOLDEN);
    if std::env::var_os("GLEANER_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let json = serde_json::to_string_pretty(&measured).unwrap() + "\n";
        std::fs::write(&path, json).unwrap();
        return;
    }
    let golden: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (GLEANER_UPDATE_GOLDEN=1 writes it)",
                path.display()
            )
        }))
        .unwrap();
    for (name, hashes) in &measured {
        let expected = golden
            .get(name)
            .unwrap_or_else(|| panic!("{GOLDEN} has no entry for {name}"));
        for (file, hash) in hashes {
            assert_eq!(
                expected.get(file),
                Some(hash),
                "{name}: {file} differs from {GOLDEN}"
            );
        }
        assert_eq!(
            expected.len(),
            hashes.len(),
            "{name}: a different set of output files than {GOLDEN} lists"
        );
    }
    assert_eq!(golden.len(), measured.len(), "{GOLDEN} lists other configs");
}
