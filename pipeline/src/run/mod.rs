//! Running a pipeline: plan the columns and stages, scan every work unit (map), decide over
//! the pool (reduce), write shards and records. The executors (local threads here, Slurm in
//! the `distributed` module) call the same [`Prepared`], [`scan_one`] and [`reduce`].
//!
//! - [`plan`]: which columns the stages read and where they come from.
//! - [`scan`]: the map phase of one unit.
//! - [`decide`]: the pool stages over the survivors.
//! - [`scan_cache`]: units kept from the scan for the write phase.
//! - [`write`]: selection file, shards, stats, report and manifest.

pub mod decide;
pub mod plan;
pub mod scan;
pub mod scan_cache;
pub mod write;

use crate::config::{Config, OnBadFileConfig};
use crate::layout;
use crate::models::features::{self, FeatureReport, FeatureStage};
use crate::stages::scanned::UnitScan;
use crate::stages::{Plan, ProbeRunner};
use anyhow::Result;
use gleaner_storage::object::is_remote_path;
use gleaner_storage::reader::{CorpusReader, SkippedFile};
use gleaner_storage::writer::ShardInfo;
use indicatif::{ProgressBar, ProgressStyle};
pub use plan::open_corpus;
use rayon::prelude::*;
use scan::ScanColumns;
use scan_cache::ScanCache;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a run presents itself and where Quad's probes are scored.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// No progress bars.
    pub quiet: bool,
    /// Where Quad's probes are scored when not in this process (the Slurm executor's job
    /// steps).
    pub probe_runner: Option<Arc<dyn ProbeRunner>>,
}

/// What a finished run reports back.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Documents read.
    pub seen: u64,
    /// Documents selected.
    pub kept: u64,
    /// Selected shards.
    pub shards: Vec<ShardInfo>,
}

/// The code version recorded in manifests.
pub fn code_version() -> String {
    match option_env!("GLEANER_GIT_REV") {
        Some(rev) if !rev.is_empty() => format!("gleaner {} ({rev})", env!("CARGO_PKG_VERSION")),
        _ => format!("gleaner {}", env!("CARGO_PKG_VERSION")),
    }
}

/// What every executor needs before the map phases: the opened corpus, the executable stages,
/// the model stages and a thread pool of the configured size.
pub struct Prepared {
    reader: CorpusReader,
    plan: Plan,
    columns: ScanColumns,
    features: Vec<FeatureStage>,
    threads: usize,
    pool: rayon::ThreadPool,
    scan_cache: ScanCache,
}

impl Prepared {
    /// Opens the corpus and plans the stages (model files are hashed here, so a missing model
    /// fails before any work).
    pub fn new(config: &Config) -> Result<Self> {
        let threads = if config.run.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            config.run.threads
        };
        let reader = open_corpus(config)?;
        let columns = crate::stages::columns::Columns::of(config);
        let stages = Plan::build(config, &columns)?;
        for (slot, s) in &stages.doc_stages {
            for f in s.output_fields() {
                if reader.output_schema().field_with_name(f.name()).is_ok() {
                    anyhow::bail!(
                        "at key `stages[{}]`: the output column `{}` is already a column of the input; name another",
                        slot - 1,
                        f.name()
                    );
                }
            }
        }
        Ok(Self {
            scan_cache: ScanCache::new(vec![false; reader.units().len()], 0),
            columns: ScanColumns::new(&stages, &columns, config),
            plan: stages,
            features: features::plan(config)?,
            reader,
            threads,
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?,
        })
    }

    /// The corpus.
    pub fn reader(&self) -> &CorpusReader {
        &self.reader
    }

    /// Keeps scanned units' batches for the write phase in this process: any unit up to
    /// `run.scan_cache` bytes when it is set, otherwise the units of files in object storage
    /// up to a quarter of the available memory; and, when rewriting is costly, every unit's
    /// rewritten texts within the same budget.
    fn keeping_scans(mut self, config: &Config) -> Self {
        let (budget, any_file) = match config.run.scan_cache {
            Some(bytes) => (bytes.bytes(), true),
            None => (scan_cache::default_budget(), false),
        };
        let eligible = self
            .reader
            .units()
            .iter()
            .map(|u| any_file || is_remote_path(&self.reader.files()[u.file].path))
            .collect();
        let cache = ScanCache::new(eligible, budget);
        self.scan_cache = if self.plan.rewrites_costly() {
            cache.keeping_rewritten_texts()
        } else {
            cache
        };
        self
    }
}

fn bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template(template).expect("valid template"));
    pb
}

/// A progress bar over work units.
pub(crate) fn progress_bar(quiet: bool, len: usize, what: &str) -> ProgressBar {
    let pb = bar(
        quiet,
        len as u64,
        "{msg:>8} [{elapsed_precise}] {bar:40} {pos}/{len} units ({eta})",
    );
    pb.set_message(what.to_string());
    pb
}

/// A progress bar over a selector's budget (`unit`: documents or tokens); its message says
/// where the selector is (Quad: round and probes).
pub(crate) fn selection_bar(quiet: bool, budget: u64, unit: &str) -> ProgressBar {
    bar(
        quiet,
        budget,
        &format!("{{msg}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit} selected"),
    )
}

fn document_bar(quiet: bool, len: u64) -> ProgressBar {
    bar(
        quiet,
        len,
        "{msg:>8} [{elapsed_precise}] {bar:40} {pos}/{len} docs ({eta})",
    )
}

/// The map phases for `units`: model stages fill their missing sidecars for those units,
/// then each unit is scanned. Returns the model stages' reports and, per listed unit, its
/// scan or its error.
fn map_units(
    p: &Prepared,
    config: &Config,
    units: &[usize],
    quiet: bool,
) -> Result<(Vec<FeatureReport>, Vec<Result<UnitScan>>)> {
    let feature_reports = if p.features.is_empty() {
        Vec::new()
    } else {
        let rows: u64 = units.iter().map(|&u| p.reader.units()[u].rows).sum();
        let pb = document_bar(quiet, rows * p.features.len() as u64);
        let reports = p
            .pool
            .install(|| features::compute(&p.reader, &p.features, config, units, &pb))?;
        pb.finish_and_clear();
        reports
    };
    let pb = progress_bar(quiet, units.len(), "scan");
    let results: Vec<Result<UnitScan>> = p.pool.install(|| {
        units
            .par_iter()
            .map(|&u| {
                let r = scan_one(p, config, u);
                pb.inc(1);
                r
            })
            .collect()
    });
    pb.finish_and_clear();
    Ok((feature_reports, results))
}

/// Scans one unit (model sidecars must exist): the map work of one completion marker. Its
/// batches are offered to the scan cache when the write phase will read the unit.
pub fn scan_one(p: &Prepared, config: &Config, unit: usize) -> Result<UnitScan> {
    let mut batches = p.scan_cache.has_room(unit).then(Vec::new);
    let mut texts = p.scan_cache.has_room_for_texts().then(Vec::new);
    let scan = scan::scan_unit(
        &p.reader,
        unit,
        &p.plan,
        &p.columns,
        &p.features,
        config,
        scan::Keep {
            batches: batches.as_mut(),
            texts: texts.as_mut(),
        },
    )?;
    if let Some(batches) = batches {
        if config.output.write_removed || !scan.survivors.is_empty() {
            p.scan_cache.offer(unit, batches);
        }
    }
    if let Some(texts) = texts {
        if !scan.survivors.is_empty() {
            p.scan_cache.offer_texts(unit, texts);
        }
    }
    Ok(scan)
}

/// Fills the model stages' missing sidecars of `units` and returns the stages' reports (with
/// no units, only their summaries).
pub fn compute_features(
    p: &Prepared,
    config: &Config,
    units: &[usize],
) -> Result<Vec<FeatureReport>> {
    let pb = document_bar(true, 0);
    p.pool
        .install(|| features::compute(&p.reader, &p.features, config, units, &pb))
}

/// Runs the configured pipeline locally; an output or cache folder in object storage is
/// staged locally and published once the run is complete (see [`crate::remote`]).
pub fn run(config: &Config, options: &RunOptions) -> Result<RunSummary> {
    if !crate::remote::is_staged(config) || config.output.staging.is_some() {
        return run_here(config, options);
    }
    let mut staged = config.clone();
    let staging = crate::remote::stage(&mut staged)?;
    let mut summary = match run_here(&staged, options) {
        Ok(summary) => summary,
        Err(e) => {
            staging.discard();
            return Err(e);
        }
    };
    staging.publish()?;
    summary.out_dir = PathBuf::from(&config.output.dir);
    Ok(summary)
}

fn run_here(config: &Config, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let out = config.output_dir();
    let p = Prepared::new(config)?.keeping_scans(config);
    for s in p.reader.skipped() {
        tracing::warn!("skipping bad input {}: {}", s.path.display(), s.reason);
    }
    layout::prepare_output(&out, &p.reader, config.output.overwrite)?;
    layout::write_progress(
        &out,
        "scan",
        serde_json::json!({ "units": p.reader.units().len() }),
    );
    let t_map = Instant::now();
    let all: Vec<usize> = (0..p.reader.units().len()).collect();
    let (feature_reports, results) = map_units(&p, config, &all, options.quiet)?;
    let map_s = t_map.elapsed().as_secs_f64();
    reduce(
        &p,
        config,
        options,
        results,
        feature_reports,
        started,
        map_s,
    )
}

/// The scans of the units whose files read cleanly (`None` for the others) and the files
/// skipped; a failed unit is an error unless `input.on_bad_file = "skip"`.
fn gather_scans(
    reader: &CorpusReader,
    config: &Config,
    results: Vec<Result<UnitScan>>,
) -> Result<(Vec<Option<UnitScan>>, Vec<SkippedFile>)> {
    let mut skipped: Vec<SkippedFile> = reader.skipped().to_vec();
    let mut bad_files: BTreeMap<usize, String> = BTreeMap::new();
    for (u, r) in results.iter().enumerate() {
        if let Err(e) = r {
            if config.input.on_bad_file == OnBadFileConfig::Skip {
                bad_files
                    .entry(reader.units()[u].file)
                    .or_insert_with(|| format!("{e:#}"));
            } else {
                let Some(Err(e)) = results.into_iter().nth(u) else {
                    unreachable!("unit {u} failed")
                };
                return Err(e);
            }
        }
    }
    for (&file, reason) in &bad_files {
        tracing::warn!(
            "skipping bad input {}: {reason}",
            reader.files()[file].path.display()
        );
        skipped.push(SkippedFile {
            path: reader.files()[file].path.clone(),
            reason: reason.clone(),
        });
    }
    let scans: Vec<Option<UnitScan>> = results
        .into_iter()
        .enumerate()
        .map(|(u, r)| {
            r.ok()
                .filter(|_| !bad_files.contains_key(&reader.units()[u].file))
        })
        .collect();
    for scan in scans.iter().flatten() {
        for w in &scan.warnings {
            tracing::warn!("{w}");
        }
    }
    Ok((scans, skipped))
}

/// The reduce phases over every unit's scan (in unit order): bad files, decide, write the
/// shards, selection records, stats, report and manifest (last).
pub fn reduce(
    p: &Prepared,
    config: &Config,
    options: &RunOptions,
    results: Vec<Result<UnitScan>>,
    feature_reports: Vec<FeatureReport>,
    started: Instant,
    map_s: f64,
) -> Result<RunSummary> {
    let out = config.output_dir();
    let (scans, skipped) = gather_scans(&p.reader, config, results)?;

    layout::write_progress(&out, "decide", serde_json::Value::Null);
    let t_decide = Instant::now();
    // The units the write phase may read, in its order: those with rows that passed the scan
    // (or any rows, when removed rows are written). The first of them, one per write worker,
    // are read while the pool is decided.
    let ahead: Vec<usize> = scans
        .iter()
        .enumerate()
        .filter_map(|(u, s)| {
            let s = s.as_ref()?;
            let wanted = if config.output.write_removed {
                !s.fates.is_empty()
            } else {
                !s.survivors.is_empty()
            };
            wanted.then_some(u)
        })
        .collect();
    let decide_step = |scans: Vec<Option<UnitScan>>| -> Result<decide::Decisions> {
        p.pool
            .install(|| decide::decide(Some(&p.reader), &scans, &p.plan, config, options))
    };
    let decisions = if p.scan_cache.enabled() && !ahead.is_empty() {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let reading = s.spawn(|| p.scan_cache.read_ahead(&p.reader, &ahead, p.threads, &stop));
            let decisions = decide_step(scans);
            stop.store(true, Ordering::Relaxed);
            reading
                .join()
                .expect("the read-ahead thread does not panic");
            decisions
        })?
    } else {
        decide_step(scans)?
    };
    let decide_s = t_decide.elapsed().as_secs_f64();

    // selection.parquet is written on its own thread beside the shards: it needs only the
    // decisions, and the serial decide step would otherwise hold the write phase back.
    let t_write = Instant::now();
    let written = std::thread::scope(|s| {
        let selection = s.spawn(|| {
            write::write_selection(&out.join(layout::SELECTION_FILE), &p.reader, &decisions)
        });
        let written = write::write_shards(p, config, &decisions, options.quiet);
        let selection = selection
            .join()
            .expect("the selection writer does not panic");
        let written = written?;
        selection.map(|()| written)
    })?;
    let write_s = t_write.elapsed().as_secs_f64();

    write::write_records(
        &p.reader,
        config,
        &decisions,
        written,
        skipped,
        &feature_reports,
        p.threads,
        write::Timings {
            map_s,
            decide_s,
            write_s,
            units_read_again: p.scan_cache.units_read_again(),
            units_read_ahead: p.scan_cache.units_read_ahead(),
        },
        started,
    )
}
