//! The `gleaner` command line.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use gleaner::ablate::{ablate, AblationConfig};
use gleaner::commands;
use gleaner::config::Config;
use gleaner::run::{run, RunOptions};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gleaner",
    version,
    about = "Training-data selection pipeline over parquet corpora"
)]
struct Cli {
    /// Only warnings and errors; no progress bars (for batch jobs).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// Arguments shared by the verbs that run pipelines.
#[derive(Args)]
struct RunArgs {
    /// Config file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Overrides `key.path=value`, e.g. `run.seed=3 stages.2.fraction=0.1`.
    overrides: Vec<String>,
    /// Worker threads (overrides run.threads; 0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Replace completed runs in the output directory.
    #[arg(long)]
    overwrite: bool,
    /// `local` or `slurm` (sets `run.executor`).
    #[arg(long)]
    executor: Option<String>,
    /// With the Slurm executor: wait until the reduce job has finished.
    #[arg(long)]
    wait: bool,
}

impl RunArgs {
    /// The overrides, with `--threads` and `--overwrite` appended as config overrides.
    fn overrides(&self) -> Vec<String> {
        let mut o = self.overrides.clone();
        if let Some(t) = self.threads {
            o.push(format!("run.threads={t}"));
        }
        if self.overwrite {
            o.push("output.overwrite=true".into());
        }
        if let Some(e) = &self.executor {
            o.push(format!("run.executor=\"{e}\""));
        }
        o
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline a config describes.
    Run(RunArgs),
    /// Run several selection methods on the same pool and compare their selections
    /// (config: shared [input], [output], [run] and a list of [[methods]]).
    Ablate {
        #[command(flatten)]
        run: RunArgs,
        /// Run and compare only these methods (names, comma-separated); the others' folders
        /// are left as they are.
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
    },
    /// The tasks a sharded run submits (what the Slurm job scripts call).
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Train a small LM on each selection of an ablation (after `ablate`) with an equal token
    /// budget and compare held-out losses: evaluation.json, evaluation.md, evaluation.html.
    Evaluate {
        /// The ablation config (with an `[evaluate]` table).
        #[arg(short, long)]
        config: PathBuf,
        /// `key.path=value` overrides.
        overrides: Vec<String>,
        /// A 2-layer, 64-wide model on a sixth of the tokens (minutes, for smoke tests and CI).
        #[arg(long)]
        quick: bool,
        /// Report, instead of refusing, a reference set that overlaps the evaluation documents.
        #[arg(long)]
        allow_reference_overlap: bool,
        /// Evaluate only these methods (names, comma-separated; the baseline among them).
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// Fit and compare only the Kneser-Ney n-gram model (seconds per method, no seed
        /// noise); no neural model is trained.
        #[arg(long)]
        ngram_only: bool,
    },
    /// Split a target set into a reference part (for targeted methods) and an evaluation
    /// part (for `gleaner evaluate`) that never overlap: OUT/reference.parquet and
    /// OUT/evaluation.parquet.
    Split {
        /// Files, directories or globs of the target set.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Share of the documents held out for evaluation.
        #[arg(long, default_value_t = 0.5)]
        eval_fraction: f64,
        /// Seed of the split.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Text column.
        #[arg(long, default_value = "text")]
        text_column: String,
        /// Id column.
        #[arg(long, default_value = "id")]
        id_column: String,
        /// Source column carried to the parts, if any.
        #[arg(long)]
        source_column: Option<String>,
    },
    /// Show schema, rows, sizes and sample documents of parquet files.
    Inspect {
        /// File, directory or glob.
        path: String,
        /// Text column used for samples and --scan.
        #[arg(long, default_value = "text")]
        text_column: String,
        /// Sample documents to print.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        /// Read every text value and report throughput instead.
        #[arg(long)]
        scan: bool,
        /// Threads for --scan.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Dry run: the stages and work units a config would run.
    Plan {
        /// Config file (TOML).
        #[arg(short, long)]
        config: PathBuf,
        /// Overrides `key.path=value`.
        overrides: Vec<String>,
        /// Work units to list.
        #[arg(long, default_value_t = 20)]
        units: usize,
    },
    /// State of an output directory: complete with counts, or the phase it stopped in.
    Status {
        /// Output directory (or an object-storage prefix).
        out_dir: String,
    },
}

/// Tasks of a sharded run, reading `<output.dir>/.work`.
#[derive(Subcommand)]
enum WorkerCommand {
    /// Model stages and scan of one rank's work units.
    Map {
        /// The run's work folder.
        #[arg(long)]
        work: PathBuf,
        /// This task's rank (default: `GLEANER_RANK_OFFSET` + `SLURM_ARRAY_TASK_ID`).
        #[arg(long)]
        rank: Option<usize>,
        /// Threads.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// One job step scoring its share of a Quad round's probe documents (`srun` inside the
    /// reduce job, with `slurm.probe_tasks` > 1).
    Probe {
        /// The run's work folder.
        #[arg(long)]
        work: PathBuf,
        /// The bandit round.
        #[arg(long)]
        round: usize,
    },
    /// Dedup, selection, writing, report and manifest, once every unit is scanned.
    Reduce {
        /// The run's work folder.
        #[arg(long)]
        work: PathBuf,
        /// Threads.
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Runs `command` (ablate or evaluate) on `config`, in a local copy of its folder when
/// `output.dir` is in object storage: published, `last` at the end, only if it succeeds.
fn in_ablation_folder<T>(
    config: &mut AblationConfig,
    last: &'static str,
    command: impl FnOnce(&AblationConfig) -> Result<T>,
) -> Result<T> {
    let staged = gleaner::remote::stage_ablation(
        &mut config.output.dir,
        config.run.staging_dir.as_deref(),
        last,
    )?;
    match (command(config), staged) {
        (Ok(value), Some(staged)) => staged.publish().map(|()| value),
        (Err(e), Some(staged)) => {
            staged.discard();
            Err(e)
        }
        (result, None) => result,
    }
}

/// The one line a finished run prints.
fn print_summary(summary: &gleaner::run::RunSummary) {
    println!(
        "kept {} of {} documents in {} shard(s) under {}",
        summary.kept,
        summary.seen,
        summary.shards.len(),
        summary.out_dir.display()
    );
}

fn main() {
    gleaner_embed::memory::keep_freed_memory();
    let cli = Cli::parse();
    let level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Err(e) = dispatch(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let quiet = cli.quiet || !std::io::stderr().is_terminal();
    match cli.command {
        Command::Run(args) => {
            let config = Config::load(&args.config, &args.overrides())?;
            if config.run.executor == gleaner::config::Executor::Slurm {
                let jobs = gleaner::distributed::submit(&config, args.wait)?;
                if !cli.quiet {
                    for (id, indices, offset) in &jobs.maps {
                        println!(
                            "map: job {id}, {} task(s) (ranks from {offset})",
                            indices.len()
                        );
                    }
                    println!("reduce: job {}", jobs.reduce);
                    if args.wait {
                        println!("complete: {}", config.output.dir);
                    } else {
                        println!("follow with: gleaner status {}", config.output.dir);
                    }
                }
                return Ok(());
            }
            let summary = run(
                &config,
                &RunOptions {
                    quiet,
                    ..Default::default()
                },
            )?;
            if !cli.quiet {
                print_summary(&summary);
            }
        }
        Command::Ablate { run: args, methods } => {
            let mut config = AblationConfig::load(&args.config, &args.overrides())?;
            if !methods.is_empty() {
                config.keep_methods(&methods)?;
            }
            let shown_dir = config.output.dir.trim_end_matches('/').to_string();
            let comparison = in_ablation_folder(&mut config, "comparison.json", |config| {
                ablate(
                    config,
                    &RunOptions {
                        quiet,
                        ..Default::default()
                    },
                )
            })?;
            if !cli.quiet {
                for m in &comparison.methods {
                    println!(
                        "{:<16} kept {:>8} documents, {:>10} tokens",
                        m.name, m.kept, m.kept_words
                    );
                }
                println!("comparison: {shown_dir}/comparison.html");
            }
        }
        Command::Evaluate {
            config,
            overrides,
            quick,
            allow_reference_overlap,
            methods,
            ngram_only,
        } => {
            let mut ablation = AblationConfig::load(&config, &overrides)?;
            if !methods.is_empty() {
                ablation.keep_methods(&methods)?;
            }
            let shown_dir = ablation.output.dir.trim_end_matches('/').to_string();
            let evaluation = in_ablation_folder(&mut ablation, "evaluation.json", |ablation| {
                gleaner::evaluate::evaluate(
                    ablation,
                    gleaner::evaluate::Options {
                        quick,
                        allow_reference_overlap,
                        ngram_only,
                    },
                )
            })?;
            if !cli.quiet {
                print!("{}", gleaner::evaluate::render_markdown(&evaluation));
                if !ngram_only {
                    println!("curves: {shown_dir}/evaluation.html");
                }
            }
        }
        Command::Worker(WorkerCommand::Map {
            work,
            rank,
            threads,
        }) => {
            let rank = match rank {
                Some(r) => r,
                None => {
                    let var = |name: &str| -> Result<usize> {
                        std::env::var(name)
                            .map_err(|_| anyhow::anyhow!("--rank not given and {name} not set"))?
                            .parse()
                            .map_err(|e| anyhow::anyhow!("{name}: {e}"))
                    };
                    var("GLEANER_RANK_OFFSET").unwrap_or(0) + var("SLURM_ARRAY_TASK_ID")?
                }
            };
            let o = gleaner::distributed::map_task(&work, rank, threads)?;
            if !cli.quiet {
                println!(
                    "map task {rank}: {} units, {} processed, {} already done",
                    o.units, o.processed, o.skipped
                );
            }
        }
        Command::Worker(WorkerCommand::Probe { work, round }) => {
            let n = gleaner::distributed::probe_task(&work, round)?;
            if !cli.quiet {
                println!("probe round {round}: scored {n} documents");
            }
        }
        Command::Worker(WorkerCommand::Reduce { work, threads }) => {
            let summary = gleaner::distributed::reduce_task(
                &work,
                threads,
                &RunOptions {
                    quiet: true,
                    ..Default::default()
                },
            )?;
            if !cli.quiet {
                print_summary(&summary);
            }
        }
        Command::Split {
            paths,
            out,
            eval_fraction,
            seed,
            text_column,
            id_column,
            source_column,
        } => {
            let spec = gleaner_storage::reader::ColumnSpec {
                text: text_column,
                id: id_column,
                source: source_column,
                ..Default::default()
            };
            let s = gleaner::split::split(&paths, spec, eval_fraction, seed, &out)?;
            println!(
                "{} reference and {} evaluation documents in {} ({} moved to evaluation for sharing a long word run with it; {} empty left out)",
                s.reference,
                s.evaluation,
                out.display(),
                s.moved,
                s.empty
            );
        }
        Command::Inspect {
            path,
            text_column,
            samples,
            scan,
            threads,
        } => {
            let threads = if threads == 0 {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            } else {
                threads
            };
            let out = if scan {
                commands::scan(&path, &text_column, threads)?
            } else {
                commands::inspect(&path, &text_column, samples)?
            };
            print!("{out}");
            if scan {
                println!();
            }
        }
        Command::Plan {
            config,
            overrides,
            units,
        } => {
            let config = Config::load(&config, &overrides)?;
            print!("{}", commands::plan(&config, units)?);
        }
        Command::Status { out_dir } => print!("{}", commands::status(&out_dir)?),
    }
    Ok(())
}
