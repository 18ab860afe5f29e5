//! The Slurm executor on a real cluster (skipped without one; CI starts one): the same
//! bytes as a local run, retries and resumption.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

mod common;
use common::*;

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

/// The curation stages (tokenize, language_id, c4_quality with its rewrites, decontaminate,
/// exact and MinHash dedup) and the n-gram classifier on a token budget, in one pipeline
/// (local and Slurm runs).
const CURATION: &str = "[input]\npaths = [\"data/quickstart\"]\nsource_column = \"source\"\n[output]\ndir = \"unused\"\nwrite_removed = true\n[run]\nseed = 5\n\
[[stages]]\ntype = \"tokenize\"\ntokenizer = \"embed/tests/fixtures/tiny-llama\"\n\
[[stages]]\ntype = \"language_id\"\nlanguages = [\"eng\"]\n\
[[stages]]\ntype = \"c4_quality\"\nmin_num_sentences = 2\n\
[[stages]]\ntype = \"decontaminate\"\n[stages.eval_sets]\nliterature = [\"data/targets/literature.parquet\"]\n\
[[stages]]\ntype = \"exact_dedup\"\n[[stages]]\ntype = \"minhash_dedup\"\n\
[[stages]]\ntype = \"ngram_classifier\"\ntarget_paths = [\"data/targets/humaneval-split/reference.parquet\"]\nbudget_tokens = 200000\n";

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
