//! Object storage end to end, against a local S3-compatible server (moto, started by
//! `scripts/s3-local.sh up`, which `scripts/test.sh` runs; skipped when none answers): the
//! quickstart read from and written to a bucket gives the local run's bytes, an ablation and
//! its evaluation in a bucket give the local results, a remote cache is reused, and bad URLs
//! are errors that name them.

use std::collections::BTreeMap;
use std::path::Path;

use gleaner_storage::object::{local_files, mirror_down, ObjectLocation};

mod common;
use common::*;

/// The S3 server's address (`AWS_ENDPOINT_URL`, `http://HOST:PORT`).
fn endpoint() -> Option<std::net::SocketAddr> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok()?;
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// The test bucket when a server answers at `AWS_ENDPOINT_URL`.
fn bucket() -> Option<String> {
    let bucket = std::env::var("GLEANER_S3_TEST_BUCKET").ok()?;
    let addr = endpoint()?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).ok()?;
    Some(bucket)
}

macro_rules! require_s3 {
    () => {
        match bucket() {
            Some(b) => b,
            None => {
                eprintln!("skipping: no S3 server (eval \"$(scripts/s3-local.sh env)\"; scripts/s3-local.sh up)");
                return;
            }
        }
    };
}

/// A prefix no other test run uses.
fn fresh_prefix(bucket: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/{name}-{}-{nanos}", std::process::id())
}

/// Uploads every file of a local folder below `prefix`.
fn upload_dir(local: &Path, prefix: &str) {
    let root = ObjectLocation::parse(prefix).unwrap();
    for (rel, path) in local_files(local).unwrap() {
        root.join(&rel).upload_file(&path).unwrap();
    }
}

/// The files of a run that must not depend on where it read and wrote: the shards and the
/// per-stage counts (`selection.parquet` and the report name the input paths).
fn location_free_outputs(out: &Path) -> BTreeMap<String, String> {
    deterministic_files(out)
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("selected/") || name.starts_with("removed/") || name == "stats.json"
        })
        .collect()
}

/// Downloads a published run into a fresh local folder.
fn download(prefix: &str, into: &Path) {
    mirror_down(&ObjectLocation::parse(prefix).unwrap(), into).unwrap();
}

#[test]
fn the_quickstart_from_and_to_a_bucket_gives_the_local_bytes() {
    let bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = fresh_prefix(&bucket, "quickstart");
    upload_dir(&repo().join("data/quickstart"), &format!("{prefix}/corpus"));

    let local_out = tmp.path().join("local");
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/quickstart.toml",
        &format!("output.dir=\"{}\"", local_out.display()),
    ]));
    let remote_out = format!("{prefix}/out");
    let run_remote = |extra: &[&str]| {
        let input = format!("input.paths=[\"{prefix}/corpus/\"]");
        let output = format!("output.dir=\"{remote_out}\"");
        let mut args = vec![
            "--quiet",
            "run",
            "--config",
            "configs/quickstart.toml",
            &input,
            &output,
            "output.overwrite=false",
        ];
        args.extend_from_slice(extra);
        gleaner(&args)
    };
    ok(&run_remote(&["--threads", "1"]));
    let fetched = tmp.path().join("fetched");
    download(&remote_out, &fetched);
    assert!(
        fetched.join("manifest.json").is_file(),
        "manifest published"
    );
    let local = location_free_outputs(&local_out);
    assert!(local.keys().any(|k| k.starts_with("selected/")));
    assert_eq!(location_free_outputs(&fetched), local);
    // The selection names the objects it came from.
    let selection = read_parquet(&fetched.join("selection.parquet"));
    let files = string_column(&selection, "file");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(&format!("{prefix}/corpus/"))),
        "{:?}",
        &files[..3]
    );

    // A completed run is not replaced without --overwrite, and nothing is touched.
    let err = fails(&run_remote(&[]));
    assert!(err.contains("already holds a completed run"), "{err}");
    ok(&run_remote(&[
        "--overwrite",
        "--threads",
        "2",
        "run.scan_cache=0",
    ]));
    let again = tmp.path().join("again");
    download(&remote_out, &again);
    assert_eq!(location_free_outputs(&again), local);
    // The first remote run kept every unit (18 row groups) from the scan for the write
    // phase, as it does for object storage by default; with no cache all 18 are fetched again.
    let read_again = |dir: &Path| {
        let t: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("timings.json")).unwrap()).unwrap();
        t["units_read_again"].as_u64().unwrap()
    };
    assert_eq!(read_again(&fetched), 0);
    assert_eq!(read_again(&again), 18);

    // `status` reads the published manifest; a prefix without one holds no completed run.
    let status = ok(&gleaner(&["status", &remote_out]));
    assert!(
        status.contains(&format!("{remote_out}: complete")),
        "{status}"
    );
    let local_status = ok(&gleaner(&["status", local_out.to_str().unwrap()]));
    let counts = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("selected:") || l.starts_with("  "))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&status), counts(&local_status));
    let empty = ok(&gleaner(&["status", &format!("{prefix}/corpus")]));
    assert!(empty.contains("no completed run"), "{empty}");

    // `inspect` reads the objects' footers.
    let shown = ok(&gleaner(&["inspect", &format!("{prefix}/corpus/")]));
    assert!(shown.contains("corpus-00.parquet"), "{shown}");
    assert!(shown.contains("row groups"), "{shown}");
}

#[test]
fn files_other_tools_wrote_are_read_from_a_bucket_as_from_disk() {
    let bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = fresh_prefix(&bucket, "compat");
    let fixtures = repo().join("tests/fixtures");
    // pyarrow's default (snappy) parquet with many row groups, datatrove's JSONL.gz, a
    // Dolma-style JSONL.zst with nested metadata, `datasets`' save_to_disk Arrow file, and
    // web archives warcio wrote (Common Crawl WET text; HTML pages, extracted by the run).
    let names = [
        "many-row-groups.parquet",
        "datatrove-writer.jsonl.gz",
        "dolma.jsonl.zst",
        "hf-save-to-disk.arrow",
        "cc-sample.warc.wet.gz",
        "pages.warc.gz",
    ];
    let local = |name: &str| {
        let dir = if name == "pages.warc.gz" {
            "warc"
        } else {
            "compat"
        };
        fixtures.join(dir).join(name)
    };
    for name in names {
        ObjectLocation::parse(&format!("{prefix}/{name}"))
            .unwrap()
            .upload_file(&local(name))
            .unwrap();
    }
    for name in names {
        let stage = if name == "pages.warc.gz" {
            "html_extract"
        } else {
            "exact_dedup"
        };
        let cfg_for = |input: &str, out: &Path| {
            let cfg = tmp.path().join(format!("{name}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "[input]\npaths = [\"{input}\"]\n[output]\ndir = \"{}\"\noverwrite = true\n[[stages]]\ntype = \"{stage}\"\n",
                    out.display()
                ),
            )
            .unwrap();
            cfg
        };
        let local_out = tmp.path().join(format!("{name}-local"));
        let cfg = cfg_for(&local(name).to_string_lossy(), &local_out);
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ]));
        let remote_out = tmp.path().join(format!("{name}-remote"));
        let cfg = cfg_for(&format!("{prefix}/{name}"), &remote_out);
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ]));
        assert_eq!(
            location_free_outputs(&remote_out),
            location_free_outputs(&local_out),
            "{name}"
        );
    }
}

/// A Hive-partitioned dataset as pyarrow writes it to a bucket: the keys hold the
/// directories' percent-escapes as they are (`group=docs%20%26%20refs%2Fv2/`). Read from
/// the bucket, its partition columns and documents are those read from disk.
#[test]
fn hive_partition_keys_with_escapes_read_from_a_bucket_as_from_disk() {
    let bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = fresh_prefix(&bucket, "hive");
    let local = repo().join("tests/fixtures/compat/hive-partitioned");
    for (rel, path) in local_files(&local).unwrap() {
        // The key as written (`%` kept), given as a URL (`%` escaped once more).
        let url = format!("{prefix}/{}", rel.replace('%', "%25"));
        ObjectLocation::parse(&url)
            .unwrap()
            .upload_file(&path)
            .unwrap();
    }
    let listed = ObjectLocation::parse(&prefix).unwrap().list().unwrap();
    assert!(
        listed.iter().any(|o| o
            .location
            .as_ref()
            .contains("group=docs%20%26%20refs%2Fv2/")),
        "{listed:?}"
    );
    let run = |input: &str, out: &Path| {
        common::run_toml(
            &tmp.path().join("hive.toml"),
            &format!(
                "[input]\npaths = [\"{input}\"]\nsource_column = \"source\"\nmetadata_columns = [\"group\"]\n[output]\ndir = \"{}\"\n",
                out.display()
            ),
        );
    };
    let (local_out, remote_out) = (tmp.path().join("local"), tmp.path().join("remote"));
    run(&local.to_string_lossy(), &local_out);
    run(&prefix, &remote_out);
    let outputs = location_free_outputs(&remote_out);
    assert_eq!(outputs, location_free_outputs(&local_out));
    assert!(
        outputs.keys().any(|k| k.starts_with("selected/")),
        "{outputs:?}"
    );
}

#[test]
fn a_remote_cache_is_filled_once_and_reused() {
    let bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = fresh_prefix(&bucket, "cache");
    let run = |out: &Path, staging: &Path| {
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            "configs/embed.toml",
            "stages.0.model=\"embed/tests/fixtures/tiny-bert\"",
            "stages.2.eps=0.0001",
            &format!("output.dir=\"{}\"", out.display()),
            &format!("run.cache_dir=\"{prefix}/cache\""),
            &format!("run.staging_dir=\"{}\"", staging.display()),
        ]));
        let timings: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("timings.json")).unwrap()).unwrap();
        timings.to_string()
    };
    let first = run(&tmp.path().join("a"), &tmp.path().join("staging-a"));
    let cached = ObjectLocation::parse(&format!("{prefix}/cache"))
        .unwrap()
        .list()
        .unwrap();
    assert!(
        cached
            .iter()
            .any(|o| o.location.as_ref().ends_with(".parquet")),
        "the embeddings' sidecars are uploaded: {cached:?}"
    );
    // A second machine (a fresh staging folder) takes them from the bucket.
    let second = run(&tmp.path().join("b"), &tmp.path().join("staging-b"));
    assert!(first.contains("\"computed\":"), "{first}");
    assert!(!first.contains("\"computed\":0"), "{first}");
    assert!(second.contains("\"computed\":0"), "{second}");
    assert_eq!(
        location_free_outputs(&tmp.path().join("a")),
        location_free_outputs(&tmp.path().join("b"))
    );
}

#[test]
fn a_missing_bucket_or_object_is_an_error_naming_it() {
    let bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/quickstart.toml",
        "input.paths=[\"s3://no-such-bucket-gleaner/corpus/\"]",
        &format!("output.dir=\"{}\"", out.display()),
    ]));
    assert!(err.contains("s3://no-such-bucket-gleaner/corpus"), "{err}");
    assert!(!out.join("manifest.json").exists());
    let err = fails(&gleaner(&[
        "inspect",
        "s3://no-such-bucket-gleaner/a.parquet",
    ]));
    assert!(
        err.contains("s3://no-such-bucket-gleaner/a.parquet"),
        "{err}"
    );

    // A run with a remote output that fails (here: a missing input) publishes nothing and
    // leaves no staging folder behind.
    let prefix = fresh_prefix(&bucket, "failed");
    let staging = tmp.path().join("staging");
    let err = fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/quickstart.toml",
        "input.paths=[\"/nonexistent/corpus\"]",
        &format!("output.dir=\"{prefix}/out\""),
        &format!("run.staging_dir=\"{}\"", staging.display()),
    ]));
    assert!(err.contains("/nonexistent/corpus"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left: {left:?}");
    let published = ObjectLocation::parse(&prefix).unwrap().list().unwrap();
    assert!(published.is_empty(), "{published:?}");
}

/// `503 Slow Down`, as S3 answers when throttling.
const SLOW_DOWN: &[u8] =
    b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// `403 Access Denied` with S3's error body.
const ACCESS_DENIED: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: 78\r\nConnection: close\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code></Error>";

/// A loopback proxy in front of the S3 server that answers the first request of every
/// `fail_every`-th connection with `response` and forwards the others; returns its
/// address and the count of refusals so far.
fn flaky_proxy(
    upstream: std::net::SocketAddr,
    fail_every: usize,
    response: &'static [u8],
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut client) = conn else { continue };
            if n % fail_every == 0 {
                // Read the request head, refuse it, close the connection.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let _ = client.write_all(response);
                counter.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let Ok(server) = std::net::TcpStream::connect(upstream) else {
                continue;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut client, mut server) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, refused)
}

#[test]
fn refused_requests_are_retried_with_backoff_and_the_retry_limit_is_honoured() {
    let bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = fresh_prefix(&bucket, "retry");
    upload_dir(&repo().join("data/quickstart"), &format!("{prefix}/corpus"));
    let upstream = endpoint().unwrap();
    let (flaky, refused) = flaky_proxy(upstream, 2, SLOW_DOWN);
    let (refusing, _) = flaky_proxy(upstream, 1, SLOW_DOWN);
    let run = |proxy: std::net::SocketAddr, retries: &str, out: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gleaner"))
            .current_dir(repo())
            .env("AWS_ENDPOINT_URL", format!("http://{proxy}"))
            .env("GLEANER_OBJECT_STORE_RETRIES", retries)
            .args([
                "--quiet",
                "run",
                "--config",
                "configs/quickstart.toml",
                &format!("input.paths=[\"{prefix}/corpus/\"]"),
                &format!("output.dir=\"{}\"", out.display()),
            ])
            .output()
            .unwrap()
    };
    // Every other connection is refused: with retries the run completes, with the same bytes.
    let out = tmp.path().join("retried");
    ok(&run(flaky, "10", &out));
    let after_retried = refused.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after_retried > 0, "the proxy refused some requests");
    let local = tmp.path().join("local");
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        "configs/quickstart.toml",
        &format!("output.dir=\"{}\"", local.display()),
    ]));
    assert_eq!(location_free_outputs(&out), location_free_outputs(&local));
    // Without retries a refusal ends the run with an error naming the object's URL.
    let out = tmp.path().join("no-retries");
    let err = fails(&run(refusing, "0", &out));
    assert!(err.contains(&prefix) && err.contains("503"), "{err}");
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn a_store_that_denies_access_is_an_error_naming_the_url_and_nothing_is_written() {
    let _bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let upstream = endpoint().unwrap();
    let (denying, _) = flaky_proxy(upstream, 1, ACCESS_DENIED);
    let run = |overrides: &[String]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gleaner"));
        cmd.current_dir(repo())
            .env("AWS_ENDPOINT_URL", format!("http://{denying}"))
            .args(["--quiet", "run", "--config", "configs/quickstart.toml"])
            .args(overrides);
        cmd.output().unwrap()
    };
    // Reading: the listing is denied.
    let out = tmp.path().join("out");
    let err = fails(&run(&[
        "input.paths=[\"s3://private-bucket/corpus/\"]".to_string(),
        format!("output.dir=\"{}\"", out.display()),
    ]));
    assert!(
        err.contains("s3://private-bucket/corpus") && err.contains("403"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    // Writing: refused before any work, and no staging folder is left behind.
    let staging = tmp.path().join("staging");
    let err = fails(&run(&[
        "output.dir=\"s3://private-bucket/runs/q\"".to_string(),
        format!("run.staging_dir=\"{}\"", staging.display()),
    ]));
    assert!(
        err.contains("s3://private-bucket/runs/q") && err.contains("403"),
        "{err}"
    );
    assert!(!staging.exists(), "no staging folder");
}

#[test]
fn an_ablation_and_its_evaluation_in_a_bucket_give_the_local_results() {
    let bucket = require_s3!();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = fresh_prefix(&bucket, "ablation");
    let config = |name: &str, out: &str| {
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{out}\"\n[run]\nseed = 3\n\
                 [[methods]]\nname = \"random\"\n[[methods.stages]]\ntype = \"random_sample\"\ncount = 300\n\
                 [[methods]]\nname = \"gopher\"\n[[methods.stages]]\ntype = \"gopher_quality\"\n[[methods.stages]]\ntype = \"random_sample\"\ncount = 300\n\
                 [evaluate]\ntarget_paths = [\"{}\"]\neval_documents = 16\nbootstrap_replicates = 200\n",
                repo().join("data/quickstart").display(),
                repo().join("data/targets/literature.parquet").display(),
            ),
        )
        .unwrap();
        path
    };
    let local_out = tmp.path().join("local");
    let local_cfg = config("local", local_out.to_str().unwrap());
    let remote_out = format!("{prefix}/ablation");
    let remote_cfg = config("remote", &remote_out);
    let ablate = |cfg: &Path| gleaner(&["--quiet", "ablate", "--config", cfg.to_str().unwrap()]);
    let evaluate = |cfg: &Path| {
        gleaner(&[
            "--quiet",
            "evaluate",
            "--config",
            cfg.to_str().unwrap(),
            "--ngram-only",
        ])
    };
    // Before `ablate` there is nothing to evaluate, and a failed command publishes nothing.
    let err = fails(&evaluate(&remote_cfg));
    assert!(err.contains("gleaner ablate"), "{err}");
    let fetched = tmp.path().join("fetched");
    download(&remote_out, &fetched);
    assert!(local_files(&fetched).unwrap().is_empty());

    ok(&ablate(&local_cfg));
    ok(&evaluate(&local_cfg));
    ok(&ablate(&remote_cfg));
    ok(&evaluate(&remote_cfg));
    download(&remote_out, &fetched);
    for method in ["random", "gopher"] {
        assert_eq!(
            location_free_outputs(&fetched.join(method)),
            location_free_outputs(&local_out.join(method)),
            "{method}"
        );
    }
    let json = |dir: &Path, name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    let kept = |c: serde_json::Value| -> Vec<(String, u64)> {
        c["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().into(),
                    m["kept"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        kept(json(&fetched, "comparison.json")),
        kept(json(&local_out, "comparison.json"))
    );
    let bpb = |e: serde_json::Value| -> Vec<f64> {
        e["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["ngram_bpb"].as_f64().unwrap())
            .collect()
    };
    let remote_bpb = bpb(json(&fetched, "evaluation.json"));
    assert_eq!(remote_bpb.len(), 2);
    assert_eq!(remote_bpb, bpb(json(&local_out, "evaluation.json")));
    assert!(fetched.join("comparison.html").is_file());
}
