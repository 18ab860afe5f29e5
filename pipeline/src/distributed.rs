//! Sharded execution: the run as map phases over work units (model stages, then the scan:
//! filters, hashes, embeddings and scores gathered per unit) spread over `world_size` workers,
//! and one reduce job (dedup, clustering, the selector's bandit or allocation, then writing the
//! shards in corpus order, stats, report and manifest). The Slurm executor submits the map
//! phase as a job array and the reduce as a job that depends on every map task.
//!
//! Everything lives in `<output.dir>/.work/`:
//! - `config.toml`: the resolved config every task reads (so overrides apply everywhere);
//! - `plan.json`: the world size and each unit's rank, `sha256("<file>:<row_group>") mod
//!   world_size`;
//! - `scan/unit-NNNNNN.bin`: one completion marker per work unit, its scan, written under a
//!   temporary name and renamed once complete (`.err` instead when the unit's file is
//!   unreadable and `on_bad_file = "skip"`). A task that dies mid-unit redoes only that unit;
//!   a retried or resubmitted task skips units already marked, so nothing is written twice;
//! - `quad/`: a `quad` selector's probe documents of each round and their scores, when the
//!   reduce job scores them with several job steps (`slurm.probe_tasks`);
//! - `slurm/`: the job scripts, `jobs.json` (submitted job ids) and the task logs.
//!
//! Quad's bandit is sequential over rounds, so it runs in the reduce; within a round its probe
//! documents are scored in parallel, on the reduce's threads or, with `probe_tasks > 1`, by
//! that many `srun` job steps, possibly on other nodes.
//!
//! Writing stays in the reduce: shards rotate at an exact row across units, and a single
//! writer in corpus order is what makes the output byte-identical to a local run whatever the
//! number of workers. After a successful reduce the scan markers are removed.

use crate::config::{Config, SlurmConfig};
use crate::layout::{self, prepare_output};
use crate::run::{reduce, Prepared, RunOptions, RunSummary};
use crate::stages::scanned::UnitScan;
use crate::stages::ProbeRunner;
use anyhow::{bail, Context, Result};
use gleaner_storage::atomic::{hex, write_bytes};
use gleaner_storage::manifest::MANIFEST_FILE;
use gleaner_storage::reader::CorpusReader;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The work folder inside `output.dir`.
pub const WORK_DIR: &str = ".work";
/// Exit code of a map task that wants to be requeued (`RequeueExit=75` on the cluster).
pub const REQUEUE_EXIT: i32 = 75;

/// The rank that processes a unit: `sha256("<file>:<row_group>") mod world`.
pub fn rank_of(file: &Path, row_group: usize, world: usize) -> usize {
    let digest = Sha256::digest(format!("{}:{row_group}", file.display()).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % world as u64) as usize
}

/// Which rank processes each unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkPlan {
    /// Number of map tasks.
    pub world_size: usize,
    /// Rank of every unit, in unit order.
    pub ranks: Vec<usize>,
    /// sha256 of the resolved config the plan belongs to.
    pub config_hash: String,
}

impl WorkPlan {
    fn new(reader: &CorpusReader, world_size: usize, config_hash: String) -> Self {
        let ranks = reader
            .units()
            .iter()
            .map(|u| rank_of(&reader.files()[u.file].path, u.row_group, world_size))
            .collect();
        Self {
            world_size,
            ranks,
            config_hash,
        }
    }

    fn read(work: &Path) -> Result<Self> {
        let path = work.join("plan.json");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| path.display().to_string())
    }

    /// The units of `rank`.
    pub fn units_of(&self, rank: usize) -> Vec<usize> {
        (0..self.ranks.len())
            .filter(|&u| self.ranks[u] == rank)
            .collect()
    }
}

/// Where a unit's completion marker goes.
fn marker(work: &Path, unit: usize) -> PathBuf {
    work.join("scan").join(format!("unit-{unit:06}.bin"))
}

/// Where a unit's failure marker goes (unreadable file with `on_bad_file = "skip"`).
fn error_marker(work: &Path, unit: usize) -> PathBuf {
    work.join("scan").join(format!("unit-{unit:06}.err"))
}

/// Whether a unit is done (scanned, or recorded as unreadable).
fn unit_done(work: &Path, unit: usize) -> bool {
    marker(work, unit).is_file() || error_marker(work, unit).is_file()
}

fn load_work_config(work: &Path) -> Result<Config> {
    Config::load(&work.join(layout::CONFIG_FILE), &[])
        .with_context(|| format!("{}: no run planned here", work.display()))
}

/// What one map task did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOutcome {
    /// Units of this rank.
    pub units: usize,
    /// Units processed now.
    pub processed: usize,
    /// Units already marked (done by an earlier attempt).
    pub skipped: usize,
}

/// A map task: the model stages' sidecars and the scan of every unit of `rank` that has no
/// completion marker yet; each marker is written as soon as its unit is done.
///
/// `GLEANER_TEST_FAIL_ONCE=<rank>:<flag file>` makes the task of that rank crash (abort) after
/// its first new unit when the flag file does not exist yet (creating it): the fault injection
/// of the retry test.
pub fn map_task(work: &Path, rank: usize, threads: Option<usize>) -> Result<MapOutcome> {
    let mut config = load_work_config(work)?;
    if let Some(t) = threads {
        config.run.threads = t;
    }
    let plan = WorkPlan::read(work)?;
    if rank >= plan.world_size {
        bail!(
            "rank {rank} is outside the plan's {} map tasks",
            plan.world_size
        );
    }
    let p = Prepared::new(&config)?;
    if p.reader().units().len() != plan.ranks.len() {
        bail!(
            "the input changed since the run was planned ({} work units, planned {}); start again with --overwrite",
            p.reader().units().len(),
            plan.ranks.len()
        );
    }
    let mine = plan.units_of(rank);
    let todo: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&u| !unit_done(work, u))
        .collect();
    tracing::info!(
        "map task {rank}: {} of its {} units to do",
        todo.len(),
        mine.len()
    );
    std::fs::create_dir_all(work.join("scan"))?;
    let inject = std::env::var("GLEANER_TEST_FAIL_ONCE").ok().and_then(|v| {
        let (r, flag) = v.split_once(':')?;
        (r.parse::<usize>().ok()? == rank).then(|| PathBuf::from(flag))
    });
    crate::run::compute_features(&p, &config, &todo)?;
    for (done, &u) in todo.iter().enumerate() {
        match crate::run::scan_one(&p, &config, u) {
            Ok(scan) => write_bytes(&marker(work, u), &scan.to_bytes()?)?,
            Err(e) if config.input.on_bad_file == crate::config::OnBadFileConfig::Skip => {
                write_bytes(&error_marker(work, u), format!("{e:#}").as_bytes())?
            }
            Err(e) => return Err(e).with_context(|| format!("work unit {u}")),
        }
        if done == 0 {
            if let Some(flag) = inject.as_ref().filter(|f| !f.exists()) {
                std::fs::write(flag, b"crashed once")?;
                eprintln!(
                    "injected crash of map task {rank} after one unit (GLEANER_TEST_FAIL_ONCE)"
                );
                // A crash, not an error return: the job script sees a killed process.
                std::process::abort();
            }
        }
    }
    Ok(MapOutcome {
        units: mine.len(),
        processed: todo.len(),
        skipped: mine.len() - todo.len(),
    })
}

/// The reduce job: checks that every unit is marked, reads the scans in unit order and runs
/// the reduce phases into `output.dir` (on `threads` threads; results never depend on it);
/// then removes the scan markers.
pub fn reduce_task(
    work: &Path,
    threads: Option<usize>,
    options: &RunOptions,
) -> Result<RunSummary> {
    let started = Instant::now();
    let mut config = load_work_config(work)?;
    if let Some(t) = threads {
        config.run.threads = t;
    }
    let plan = WorkPlan::read(work)?;
    let missing: Vec<usize> = (0..plan.ranks.len())
        .filter(|&u| !unit_done(work, u))
        .collect();
    if !missing.is_empty() {
        let ranks: std::collections::BTreeSet<usize> =
            missing.iter().map(|&u| plan.ranks[u]).collect();
        bail!(
            "{} work unit(s) have no completion marker (map tasks {ranks:?} incomplete); run `gleaner run` again to resubmit them",
            missing.len()
        );
    }
    let p = Prepared::new(&config)?;
    let results: Vec<Result<UnitScan>> = (0..plan.ranks.len())
        .map(|u| {
            if error_marker(work, u).is_file() {
                let reason = std::fs::read_to_string(error_marker(work, u))?;
                return Err(anyhow::anyhow!(reason));
            }
            let path = marker(work, u);
            let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
            UnitScan::from_bytes(&bytes).with_context(|| format!("decoding {}", path.display()))
        })
        .collect();
    // The map tasks filled the sidecars: this only gathers the model stages' summaries.
    let reports = crate::run::compute_features(&p, &config, &[])?;
    // The reduce job script exports GLEANER_PROBE_TASKS when `slurm.probe_tasks` > 1: Quad's probes are
    // then scored by that many job steps.
    let mut options = options.clone();
    if let Some(tasks) = std::env::var("GLEANER_PROBE_TASKS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|&t| t > 1)
    {
        options.probe_runner = Some(std::sync::Arc::new(SrunProbes {
            tasks,
            work: work.to_path_buf(),
        }));
    }
    let summary = reduce(&p, &config, &options, results, reports, started, 0.0)?;
    std::fs::remove_dir_all(work.join("scan")).ok();
    std::fs::remove_dir_all(work.join("quad")).ok();
    Ok(summary)
}

/// Quad's probes scored by `tasks` job steps of the reduce job.
#[derive(Debug)]
struct SrunProbes {
    tasks: usize,
    work: PathBuf,
}

impl ProbeRunner for SrunProbes {
    fn score(
        &self,
        round: usize,
        texts: &[String],
        reference: &[f64],
    ) -> Result<Vec<(f64, usize)>> {
        srun_probes(&self.work, round, self.tasks, texts, reference)
    }
}

/// Scores Quad's probe documents of one round with `tasks` job steps of the reduce job
/// (`srun --ntasks`), task `i` taking documents `i, i + tasks, ...`: the texts and the
/// reference vector go to `<work>/quad/`, each task writes its `(index, q, windows)` there.
fn srun_probes(
    work: &Path,
    round: usize,
    tasks: usize,
    texts: &[String],
    reference: &[f64],
) -> Result<Vec<(f64, usize)>> {
    let dir = work.join("quad");
    std::fs::create_dir_all(&dir)?;
    write_bytes(&dir.join("reference.bin"), &postcard::to_stdvec(reference)?)?;
    write_bytes(
        &dir.join(format!("round-{round}.bin")),
        &postcard::to_stdvec(texts)?,
    )?;
    let gleaner = std::env::current_exe()?;
    let status = Command::new("srun")
        .args([
            format!("--ntasks={tasks}"),
            "--kill-on-bad-exit=1".to_string(),
        ])
        .arg(&gleaner)
        .args(["worker", "probe", "--work"])
        .arg(work)
        .args(["--round", &round.to_string()])
        .status()
        .context("running srun for Quad's probes")?;
    if !status.success() {
        bail!("the probe job steps of round {round} failed ({status})");
    }
    let mut out: Vec<Option<(f64, usize)>> = vec![None; texts.len()];
    for task in 0..tasks {
        let path = dir.join(format!("round-{round}-task-{task}.bin"));
        let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
        let scored: Vec<(usize, f64, usize)> = postcard::from_bytes(&bytes)?;
        for (i, q, windows) in scored {
            out[i] = Some((q, windows));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.with_context(|| format!("probe document {i} of round {round} has no score"))
        })
        .collect()
}

/// One probe job step (`gleaner worker probe`): task `SLURM_PROCID` of `SLURM_NTASKS` scores
/// its share of round `round`'s probe documents with the run's Quad proxy and the saved
/// reference vector.
pub fn probe_task(work: &Path, round: usize) -> Result<usize> {
    let var = |name: &str| -> Result<usize> {
        std::env::var(name)
            .with_context(|| format!("{name} is not set (run under srun)"))?
            .parse()
            .with_context(|| name.to_string())
    };
    let (task, tasks) = (var("SLURM_PROCID")?, var("SLURM_NTASKS")?);
    let config = load_work_config(work)?;
    let (index, quad) = config
        .stages
        .iter()
        .enumerate()
        .find_map(|(i, s)| match s {
            crate::config::StageConfig::Quad(c) => Some((i, c)),
            _ => None,
        })
        .context("the planned run has no quad stage")?;
    let model = crate::models::quad::QuadModel::load(quad, &format!("stages[{index}]"))?;
    let dir = work.join("quad");
    let reference: Vec<f64> = postcard::from_bytes(&std::fs::read(dir.join("reference.bin"))?)?;
    let texts: Vec<String> =
        postcard::from_bytes(&std::fs::read(dir.join(format!("round-{round}.bin")))?)?;
    let scorer = model.scorer_with_reference(reference);
    let mine: Vec<usize> = (task..texts.len()).step_by(tasks).collect();
    let chosen: Vec<String> = mine.iter().map(|&i| texts[i].clone()).collect();
    let scores = model.compute(&scorer, &chosen)?;
    let records: Vec<(usize, f64, usize)> = mine
        .iter()
        .zip(scores)
        .map(|(&i, (q, w))| (i, q, w))
        .collect();
    write_bytes(
        &dir.join(format!("round-{round}-task-{task}.bin")),
        &postcard::to_stdvec(&records)?,
    )?;
    Ok(records.len())
}

/// Submitted jobs, as `jobs.json` records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedJobs {
    /// Map arrays: (job id, array indices, rank offset).
    pub maps: Vec<(String, Vec<usize>, usize)>,
    /// The reduce job.
    pub reduce: String,
}

impl SubmittedJobs {
    /// Every job id (arrays as a whole).
    fn ids(&self) -> Vec<String> {
        self.maps
            .iter()
            .map(|m| m.0.clone())
            .chain(std::iter::once(self.reduce.clone()))
            .collect()
    }
}

/// The jobs last submitted for the run in `work`, if any.
fn read_jobs(work: &Path) -> Option<SubmittedJobs> {
    std::fs::read(work.join("slurm/jobs.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Quotes a string for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn sbatch_header(job: &str, slurm: &SlurmConfig, log: &Path) -> String {
    let mut h = format!(
        "#!/bin/bash\n#SBATCH --job-name={job}\n#SBATCH --output={}\n#SBATCH --open-mode=append\n#SBATCH --cpus-per-task={}\n",
        log.display(),
        slurm.cpus_per_task
    );
    for (flag, value) in [
        ("partition", &slurm.partition),
        ("time", &slurm.time),
        ("mem", &slurm.mem),
        ("account", &slurm.account),
    ] {
        if let Some(v) = value {
            let _ = writeln!(h, "#SBATCH --{flag}={v}");
        }
    }
    if let Some(g) = slurm.gpus {
        let _ = writeln!(h, "#SBATCH --gres=gpu:{g}");
    }
    for a in &slurm.sbatch_args {
        let _ = writeln!(h, "#SBATCH {a}");
    }
    h.push_str("set -u\n");
    for line in &slurm.setup {
        h.push_str(line);
        h.push('\n');
    }
    h
}

/// The map and reduce job scripts.
fn write_scripts(work: &Path, slurm: &SlurmConfig, gleaner: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = work.join("slurm");
    std::fs::create_dir_all(dir.join("logs"))?;
    let work_abs = work.canonicalize()?;
    let w = shell_quote(&work_abs.to_string_lossy());
    let bin = shell_quote(gleaner);
    let map = format!(
        "{}rank=$(( ${{GLEANER_RANK_OFFSET:-0}} + SLURM_ARRAY_TASK_ID ))\n\
         {bin} worker map --work {w} --rank \"$rank\" --threads {}\n\
         rc=$?\n\
         if [ $rc -ne 0 ] && [ \"${{SLURM_RESTART_COUNT:-0}}\" -lt {} ]; then exit {REQUEUE_EXIT}; fi\n\
         exit $rc\n",
        sbatch_header(
            "gleaner-map",
            slurm,
            &work_abs.join("slurm/logs/map-%A_%a.log")
        ),
        slurm.cpus_per_task,
        slurm.max_retries
    );
    let probes = if slurm.probe_tasks > 1 {
        format!("export GLEANER_PROBE_TASKS={}\n", slurm.probe_tasks)
    } else {
        String::new()
    };
    let mut reduce_slurm = slurm.clone();
    if slurm.probe_tasks > 1 {
        reduce_slurm
            .sbatch_args
            .push(format!("--ntasks={}", slurm.probe_tasks));
    }
    let reduce = format!(
        "{}{probes}exec {bin} worker reduce --work {w} --threads {}\n",
        sbatch_header(
            "gleaner-reduce",
            &reduce_slurm,
            &work_abs.join("slurm/logs/reduce-%j.log")
        ),
        slurm.cpus_per_task
    );
    let (map_path, reduce_path) = (dir.join("map.sh"), dir.join("reduce.sh"));
    write_bytes(&map_path, map.as_bytes())?;
    write_bytes(&reduce_path, reduce.as_bytes())?;
    Ok((map_path, reduce_path))
}

/// Runs `sbatch --parsable ARGS SCRIPT`; returns the job id.
fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .context("running sbatch (is Slurm installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {args:?} {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout);
    let id = id.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        bail!("sbatch printed no job id");
    }
    Ok(id)
}

/// The cluster's `MaxArraySize` (1001 when `scontrol` does not say).
fn cluster_max_array_size() -> usize {
    Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok())?
            })
        })
        .unwrap_or(1001)
}

/// Groups ranks into submissions whose array indices stay below `max_array`: (rank offset,
/// indices).
pub fn array_chunks(ranks: &[usize], max_array: usize) -> Vec<(usize, Vec<usize>)> {
    let mut chunks: Vec<(usize, Vec<usize>)> = Vec::new();
    for &r in ranks {
        let offset = r / max_array * max_array;
        match chunks.last_mut() {
            Some((o, idx)) if *o == offset => idx.push(r - offset),
            _ => chunks.push((offset, vec![r - offset])),
        }
    }
    chunks
}

/// `gleaner run` with `run.executor = "slurm"`: plans the run (or resumes the one planned with
/// the same config), submits a map array of the incomplete tasks and a reduce job that
/// depends on each of them, and returns the job ids; with `wait`, polls until the reduce has
/// left the queue and reports how it ended.
pub fn submit(config: &Config, wait: bool) -> Result<SubmittedJobs> {
    let slurm = config.slurm.clone().unwrap_or_default();
    let out = PathBuf::from(&config.output.dir);
    let work = out.join(WORK_DIR);
    let reader = crate::run::open_corpus(config)?;
    let mut resolved = config.clone();
    resolved.run.executor = crate::config::Executor::Local;
    let hash = hex(&Sha256::digest(resolved.to_toml().as_bytes()));
    let resumable = WorkPlan::read(&work)
        .map(|p| p.config_hash == hash && p.ranks.len() == reader.units().len())
        .unwrap_or(false);
    if !resumable {
        if work.exists() {
            if !config.output.overwrite && out.join(WORK_DIR).join("plan.json").exists() {
                bail!(
                    "{} holds a run planned with another config; pass --overwrite to start again",
                    work.display()
                );
            }
            std::fs::remove_dir_all(&work)
                .with_context(|| format!("removing {}", work.display()))?;
        }
        prepare_output(&out, &reader, config.output.overwrite)?;
        std::fs::create_dir_all(&work)?;
        write_bytes(
            &work.join(layout::CONFIG_FILE),
            resolved.to_toml().as_bytes(),
        )?;
        let plan = WorkPlan::new(&reader, slurm.workers, hash);
        write_bytes(&work.join("plan.json"), &serde_json::to_vec_pretty(&plan)?)?;
    } else if out.join(MANIFEST_FILE).exists() {
        bail!(
            "{}: already complete (manifest.json); pass --overwrite to run again",
            out.display()
        );
    }
    if let Some(previous) = read_jobs(&work) {
        let queued = queued_states(&previous.ids());
        if !queued.is_empty() {
            bail!(
                "jobs of this run are still in the queue ({}); wait for them (gleaner status {}) or scancel them, then run again",
                queued.keys().cloned().collect::<Vec<_>>().join(", "),
                out.display()
            );
        }
    }
    let plan = WorkPlan::read(&work)?;
    let incomplete: Vec<usize> = (0..plan.world_size)
        .filter(|&r| plan.units_of(r).iter().any(|&u| !unit_done(&work, u)))
        .collect();
    let gleaner = match &slurm.gleaner {
        Some(g) => g.clone(),
        None => std::env::current_exe()?.to_string_lossy().into_owned(),
    };
    let (map_script, reduce_script) = write_scripts(&work, &slurm, &gleaner)?;
    let max_array = slurm.max_array_size.unwrap_or_else(cluster_max_array_size);
    let mut maps = Vec::new();
    let mut dependency = Vec::new();
    for (offset, indices) in array_chunks(&incomplete, max_array) {
        let list: Vec<String> = indices.iter().map(usize::to_string).collect();
        let id = sbatch(
            &[
                format!("--array={}", list.join(",")),
                format!("--export=ALL,GLEANER_RANK_OFFSET={offset}"),
            ],
            &map_script,
        )?;
        dependency.extend(indices.iter().map(|i| format!("{id}_{i}")));
        maps.push((id, indices, offset));
    }
    let mut reduce_args = vec!["--kill-on-invalid-dep=yes".to_string()];
    if !dependency.is_empty() {
        reduce_args.push(format!("--dependency=afterok:{}", dependency.join(":")));
    }
    let reduce_id = sbatch(&reduce_args, &reduce_script)?;
    let jobs = SubmittedJobs {
        maps,
        reduce: reduce_id,
    };
    write_bytes(
        &work.join("slurm/jobs.json"),
        &serde_json::to_vec_pretty(&jobs)?,
    )?;
    if wait {
        // Until every job of the submission has left the queue (a failed map task cancels the
        // reduce at once while others may still run).
        let ids = jobs.ids();
        while !queued_states(&ids).is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        if !out.join(MANIFEST_FILE).exists() {
            bail!(
                "the Slurm run did not complete:\n{}",
                status(&out).unwrap_or_default()
            );
        }
    }
    Ok(jobs)
}

/// States of Slurm jobs still in the queue: job id (`J_i` for array tasks) -> state.
fn queued_states(ids: &[String]) -> std::collections::BTreeMap<String, String> {
    if ids.is_empty() {
        return Default::default();
    }
    Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T", "-j", &ids.join(",")])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| {
                    let (id, state) = l.trim().split_once(' ')?;
                    Some((id.to_string(), state.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Progress of a sharded run in `out`: per phase, done/running/failed tasks from the
/// completion markers and the queue. `None` when no sharded run was planned there.
pub fn status(out: &Path) -> Option<String> {
    let work = out.join(WORK_DIR);
    let plan = WorkPlan::read(&work).ok()?;
    let jobs = read_jobs(&work);
    let mut task_of_rank = std::collections::BTreeMap::new();
    let mut ids = Vec::new();
    if let Some(j) = &jobs {
        for (id, indices, offset) in &j.maps {
            for i in indices {
                task_of_rank.insert(offset + i, format!("{id}_{i}"));
            }
            ids.push(id.clone());
        }
        ids.push(j.reduce.clone());
    }
    let states = queued_states(&ids);
    let done_units = (0..plan.ranks.len())
        .filter(|&u| unit_done(&work, u))
        .count();
    let (mut done, mut running, mut pending, mut failed) = (vec![], vec![], vec![], vec![]);
    for r in 0..plan.world_size {
        if plan.units_of(r).iter().all(|&u| unit_done(&work, u)) {
            done.push(r);
            continue;
        }
        match task_of_rank
            .get(&r)
            .and_then(|t| states.get(t))
            .map(String::as_str)
        {
            Some("RUNNING") | Some("COMPLETING") => running.push(r),
            Some(_) => pending.push(r),
            None => failed.push(r),
        }
    }
    let complete = out.join(MANIFEST_FILE).exists();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "map: {done_units} of {} work units done; tasks ({} in all): done {done:?}, running {running:?}, pending {pending:?}, failed or not submitted {failed:?}",
        plan.ranks.len(),
        plan.world_size
    );
    let reduce = if complete {
        "done".to_string()
    } else {
        match jobs
            .as_ref()
            .and_then(|j| states.get(&j.reduce).map(|st| (j, st)))
        {
            Some((j, st)) => format!("job {} {}", j.reduce, st.to_lowercase()),
            None if jobs.is_some() => {
                "not in the queue and not complete (failed or cancelled): run `gleaner run` again to resubmit what is incomplete".into()
            }
            None => "not submitted".into(),
        }
    };
    let _ = writeln!(s, "reduce: {reduce}");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_a_hash_of_the_unit_and_chunks_respect_the_array_limit() {
        let r = rank_of(Path::new("data/a.parquet"), 3, 4);
        assert!(r < 4);
        assert_eq!(rank_of(Path::new("data/a.parquet"), 3, 4), r);
        // Independent: the first 8 bytes of sha256 as a big-endian integer, mod 4.
        let d = Sha256::digest(b"data/a.parquet:3");
        let n = u64::from_be_bytes(d[..8].try_into().unwrap());
        assert_eq!(r as u64, n % 4);
        // Ranks 0..=2500 with arrays of at most 1000 indices: offsets 0, 1000, 2000.
        let ranks: Vec<usize> = (0..=2500).collect();
        let chunks = array_chunks(&ranks, 1000);
        assert_eq!(
            chunks.iter().map(|c| (c.0, c.1.len())).collect::<Vec<_>>(),
            [(0, 1000), (1000, 1000), (2000, 501)]
        );
        assert!(chunks.iter().all(|c| c.1.iter().all(|&i| i < 1000)));
        assert_eq!(
            array_chunks(&[1, 3, 1002], 1000),
            [(0, vec![1, 3]), (1000, vec![2])]
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
