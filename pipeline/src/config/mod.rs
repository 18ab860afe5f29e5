//! Run configuration: TOML with unknown keys rejected, `key.path=value` overrides, and
//! validation errors that name the key and the allowed values.

/// `size()` for selector configs: `fraction`, `count`, `budget_words`, `budget_tokens` and
/// `per_source`.
macro_rules! size_settings {
    ($($config:ty),*) => {$(
        impl $config {
            /// Its size keys.
            pub fn size(&self) -> $crate::config::SizeSettings {
                $crate::config::SizeSettings {
                    fraction: self.fraction,
                    count: self.count,
                    budget_words: self.budget_words,
                    budget_tokens: self.budget_tokens,
                    per_source: self.per_source,
                }
            }
        }
    )*};
}

/// Declares the stage types: the `StageConfig` enum (selected by the `type` key) and its
/// `type_name` and `settings`. Adding a stage is one line here and an impl of
/// [`StageSettings`] next to its settings.
macro_rules! stage_types {
    ($($(#[$doc:meta])* $variant:ident($config:ty) = $name:literal,)*) => {
        /// One pipeline stage, selected by its `type` key.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum StageConfig {
            $($(#[$doc])* $variant($config),)*
        }

        impl StageConfig {
            /// The stage's type name as written in the config.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(StageConfig::$variant(_) => $name,)*
                }
            }

            /// Its settings, through the interface every stage's settings share.
            pub fn settings(&self) -> &dyn StageSettings {
                match self {
                    $(StageConfig::$variant(c) => c,)*
                }
            }
        }
    };
}

/// Where a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Per document, in the map phase (filters, model stages).
    Document,
    /// Over the pool, in the reduce (dedup).
    Pool,
    /// Over the pool, choosing what is kept; at most one, last.
    Selector,
}

/// What checking one stage's settings may look at besides them.
pub struct StageContext<'a> {
    /// The stage's key (`stages[2]`), for messages.
    pub key: &'a str,
    /// The whole config.
    pub config: &'a Config,
    /// The stage's position.
    pub index: usize,
}

impl StageContext<'_> {
    /// Whether an earlier stage is one `matches` accepts.
    pub fn after(&self, matches: impl Fn(&StageConfig) -> bool) -> bool {
        self.config.stages[..self.index].iter().any(matches)
    }

    /// Whether a `tokenize` stage comes earlier.
    pub fn tokenized(&self) -> bool {
        self.after(|s| matches!(s, StageConfig::Tokenize(_)))
    }

    /// Checks what a stage that rewrites the text (named `stage`) needs: a top-level text
    /// column (the shards hold the new text in its place), and no model stage after it
    /// (model stages read the original text).
    pub fn rewrites_text(&self, stage: &str) -> Result<()> {
        if self.config.input.text_column.contains('.') {
            bail!(
                "at key `{}` ({stage}): rewrites the text, which must then be a top-level column (input.text_column = `{}` is nested)",
                self.key,
                self.config.input.text_column
            );
        }
        let model_after = self.config.stages[self.index + 1..].iter().any(|s| {
            matches!(
                s,
                StageConfig::Embed(_)
                    | StageConfig::LmScore(_)
                    | StageConfig::AttentionInfluence(_)
                    | StageConfig::LossTrajectory(_)
            )
        });
        if model_after {
            bail!(
                "at key `{}` ({stage}): model stages read the original text; put them before {stage}",
                self.key
            );
        }
        Ok(())
    }

    /// Fails naming `key.name` when `value` is set and outside [0, 1].
    pub fn ratio(&self, name: &str, value: Option<f64>) -> Result<()> {
        match value {
            Some(x) if !(0.0..=1.0).contains(&x) => {
                bail!("at key `{}.{name}`: {x} is outside [0, 1]", self.key)
            }
            _ => Ok(()),
        }
    }
}

/// What every stage's settings answer: where the stage runs, its own seed, whether its values
/// are valid, and which document sets it is aimed at.
pub trait StageSettings {
    /// Where the stage runs.
    fn kind(&self) -> StageKind;

    /// Its own seed, when set (stages without one use `run.seed`).
    fn seed(&self) -> Option<u64> {
        None
    }

    /// Checks the settings; errors name the key.
    fn validate(&self, _cx: &StageContext<'_>) -> Result<()> {
        Ok(())
    }

    /// The document sets a targeted stage is aimed at (DSIR's target, Quad's reference and
    /// fit sets): `gleaner evaluate` checks them against its evaluation documents.
    fn aimed_at(&self) -> Vec<AimedAt<'_>> {
        Vec::new()
    }
}

impl<T: StageSettings> StageSettings for Box<T> {
    fn kind(&self) -> StageKind {
        (**self).kind()
    }
    fn seed(&self) -> Option<u64> {
        (**self).seed()
    }
    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        (**self).validate(cx)
    }
    fn aimed_at(&self) -> Vec<AimedAt<'_>> {
        (**self).aimed_at()
    }
}

impl StageConfig {
    /// The stage's own seed, when it has one set.
    pub fn seed(&self) -> Option<u64> {
        self.settings().seed()
    }

    /// The document sets the stage is aimed at.
    pub fn aimed_at(&self) -> Vec<AimedAt<'_>> {
        self.settings().aimed_at()
    }

    /// Whether this is a `language_id` stage writing its languages to `column`.
    pub fn writes_languages_to(&self, column: &str) -> bool {
        matches!(self, StageConfig::LanguageId(c) if c.column == column)
    }
}

mod attention_influence;
pub use attention_influence::*;
mod loss_trajectory;
pub use loss_trajectory::*;
mod quad;
pub use quad::*;
mod models;
pub use models::*;
mod filters;
mod selectors;
pub use selectors::*;
pub mod ablation;
mod byte_size;
pub use byte_size::ByteSize;
pub mod decontaminate;
pub mod embedding_similarity;
pub mod evaluate;
pub mod language_id;
pub mod minhash_dedup;
pub mod ngram_classifier;
pub mod tokenize;

use anyhow::{anyhow, bail, Context, Result};
use gleaner_selectors::dedup::Normalization;
use gleaner_selectors::filters::{GopherQuality, GopherRepetition};
use gleaner_selectors::quad::bandit::InitPolicy;
use gleaner_selectors::random::SampleSize;
use gleaner_storage::object::is_remote;
use gleaner_storage::writer::{ShardCodec, ShardFormat};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole configuration of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the corpus comes from and which columns play which role.
    pub input: InputConfig,
    /// Where and how results are written.
    pub output: OutputConfig,
    /// Seed and parallelism.
    #[serde(default)]
    pub run: RunConfig,
    /// Stages in order: per-document stages (filters, model stages), then pool stages (dedup)
    /// in any order, then at most one selector (last).
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// How `run.executor = "slurm"` submits the phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmConfig>,
}

/// Where the phases run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// This process, on `run.threads` threads.
    #[default]
    Local,
    /// Slurm batch jobs: an array of map tasks over the work units, then a reduce job.
    Slurm,
}

impl Executor {
    fn is_local(&self) -> bool {
        *self == Executor::Local
    }
}

/// The `[slurm]` table: how the map array and the reduce job are submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// Map tasks (array size); work units go to tasks by `sha256(file:row_group) mod workers`.
    #[serde(default = "default_slurm_workers")]
    pub workers: usize,
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--time` of each job (e.g. `02:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `--cpus-per-task` (also each task's thread count).
    #[serde(default = "default_slurm_cpus")]
    pub cpus_per_task: usize,
    /// GPUs per task (`--gres=gpu:N`), for model stages with `device = "gpu"` or `"cuda"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<usize>,
    /// `--mem` (e.g. `8G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// More `sbatch` arguments, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
    /// Shell lines run before gleaner in every job (`module load ...`, `source venv/...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// A failed map task exits 75 this many times (a cluster with `RequeueExit=75` requeues
    /// it); after that it fails and `gleaner run` again resubmits what is incomplete.
    #[serde(default = "default_slurm_retries")]
    pub max_retries: u32,
    /// Slurm tasks of the reduce job (`--ntasks`): a `quad` selector scores each round's probe
    /// documents with that many job steps in parallel (`srun`), each on its own CPUs or GPU.
    #[serde(default = "default_slurm_probe_tasks")]
    pub probe_tasks: usize,
    /// Largest array index + 1 per submission (default: the cluster's `MaxArraySize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_array_size: Option<usize>,
    /// The gleaner binary on the compute nodes (default: this binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gleaner: Option<String>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

fn default_slurm_workers() -> usize {
    4
}
fn default_slurm_cpus() -> usize {
    1
}
fn default_slurm_retries() -> u32 {
    1
}
fn default_slurm_probe_tasks() -> usize {
    1
}

/// Input corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Parquet files, directories (walked recursively) or globs, relative to the working directory.
    pub paths: Vec<String>,
    /// Text column (string).
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// Id column; files without it get ids `"<path>:<row>"`.
    #[serde(default = "default_id_column")]
    pub id_column: String,
    /// Optional domain/source column.
    #[serde(default)]
    pub source_column: Option<String>,
    /// Extra columns carried to the output unchanged.
    #[serde(default)]
    pub metadata_columns: Vec<String>,
    /// Precomputed document embeddings (list<float32>), needed by `semdedup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_column: Option<String>,
    /// `error` stops on a bad file; `skip` leaves it out and reports it.
    #[serde(default)]
    pub on_bad_file: OnBadFileConfig,
    /// A JSONL line that cannot be read: `error` stops naming the file and line; `skip`
    /// drops it as `bad_record` and counts it. Default: as `on_bad_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_bad_record: Option<OnBadFileConfig>,
    /// Rows per decoded batch (bounds memory).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Documents larger than this many bytes are dropped as `too_large`.
    #[serde(default = "default_max_doc_bytes")]
    pub max_doc_bytes: u64,
}

/// What to do with an unreadable input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadFileConfig {
    /// Stop with an error naming the file.
    #[default]
    Error,
    /// Leave the file out and list it in the manifest and report.
    Skip,
}

/// Codec of written parquet shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressionConfig {
    /// zstd at `output.zstd_level`.
    #[default]
    Zstd,
    /// Snappy, as pyarrow writes by default.
    Snappy,
    /// gzip at level 6.
    Gzip,
    /// Brotli at level 1 (pyarrow's default level).
    Brotli,
    /// LZ4 raw blocks (parquet `LZ4_RAW`).
    Lz4,
    /// No compression.
    None,
}

/// `output.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardFormatConfig {
    /// Parquet shards.
    #[default]
    Parquet,
    /// JSON Lines shards (`part-00000.jsonl.zst`, `.jsonl.gz` or `.jsonl`).
    Jsonl,
}

impl ShardFormatConfig {
    fn is_parquet(&self) -> bool {
        *self == ShardFormatConfig::Parquet
    }
}

impl OutputConfig {
    /// The shard format these settings name.
    pub fn shard_format(&self) -> ShardFormat {
        match self.format {
            ShardFormatConfig::Parquet => ShardFormat::Parquet,
            ShardFormatConfig::Jsonl => ShardFormat::Jsonl,
        }
    }

    /// The shard codec these settings name.
    pub fn codec(&self) -> ShardCodec {
        match self.compression {
            CompressionConfig::Zstd => ShardCodec::Zstd(self.zstd_level),
            CompressionConfig::Snappy => ShardCodec::Snappy,
            CompressionConfig::Gzip => ShardCodec::Gzip(6),
            CompressionConfig::Brotli => ShardCodec::Brotli(1),
            CompressionConfig::Lz4 => ShardCodec::Lz4Raw,
            CompressionConfig::None => ShardCodec::Uncompressed,
        }
    }
}

/// Output folder and shard settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output directory: a local path, or an object-storage URL (`s3://bucket/prefix`), which
    /// a run fills by publishing a completed local staging folder.
    pub dir: String,
    /// Shard rotation size in uncompressed bytes.
    #[serde(default = "default_shard_bytes")]
    pub shard_bytes: u64,
    /// File format of the written shards: `parquet` (default) or `jsonl`.
    #[serde(default, skip_serializing_if = "ShardFormatConfig::is_parquet")]
    pub format: ShardFormatConfig,
    /// Codec of the written shards (JSONL shards: zstd, gzip or none).
    #[serde(default)]
    pub compression: CompressionConfig,
    /// zstd level of the shards (1..=22), when `compression = "zstd"`.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Also write dropped documents to `removed/<reason>/`.
    #[serde(default)]
    pub write_removed: bool,
    /// Replace a completed run already in `dir`.
    #[serde(default)]
    pub overwrite: bool,
    /// The local folder a run writes into when `dir` is in object storage (set by the run,
    /// never read from a config file).
    #[serde(skip)]
    pub staging: Option<std::path::PathBuf>,
}

/// Seed and parallelism.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Worker threads (0 = all cores). Results never depend on it.
    #[serde(default)]
    pub threads: usize,
    /// Where model stages keep their computed columns (sidecars), reused by later runs and
    /// ablations over the same inputs. Default: `.gleaner-cache` beside `output.dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// `local` (default) or `slurm` (see `[slurm]`).
    #[serde(default, skip_serializing_if = "Executor::is_local")]
    pub executor: Executor,
    /// Memory the reduce's sorts may hold (bytes, or a size such as "4GiB" or "500MB"):
    /// `minhash_dedup` sorts each band in runs of this size written under the cache folder
    /// and merges them when the pool's band entries (16 bytes per document) outgrow it.
    /// Unset: sorted in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<ByteSize>,
    /// Memory for decoded work units kept from the scan for the write phase (bytes or a
    /// size); units beyond it are read from their files again. Unset: only units of files
    /// in object storage are kept, up to a quarter of the memory available when the run
    /// starts. Within the same budget, the first unit per thread that the write phase needs
    /// is read while the pool is decided; `0` turns both off. Outputs never depend on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_cache: Option<ByteSize>,
    /// Local folder for runs whose `output.dir` or `cache_dir` is in object storage: the
    /// output is written there and published when complete; the remote cache is mirrored
    /// there. Default: `gleaner-staging` in the system's temporary folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_dir: Option<String>,
    /// The local mirror of a remote `cache_dir` (set by the run, never read from a config).
    #[serde(skip)]
    pub cache_staging: Option<std::path::PathBuf>,
}

/// A document set a stage was aimed at, with the key that names it.
#[derive(Debug, Clone, Copy)]
pub struct AimedAt<'a> {
    /// The stage key holding the paths (`target_paths`, `reference_paths`, ...).
    pub key: &'static str,
    /// Files, directories or globs.
    pub paths: &'a [String],
    /// Their text column.
    pub text_column: &'a str,
}

stage_types! {
    /// Gopher quality rules.
    GopherQuality(GopherQuality) = "gopher_quality",
    /// Gopher repetition rules.
    GopherRepetition(GopherRepetition) = "gopher_repetition",
    /// The C4 rules: removes lines (no terminal punctuation, too few words, javascript,
    /// cookie phrases) and drops documents (lorem ipsum, curly brackets, too few sentences).
    C4Quality(gleaner_selectors::c4::C4Quality) = "c4_quality",
    /// The FineWeb rules: lines ending in punctuation, short lines, duplicated line
    /// characters, line breaks per word.
    FinewebQuality(gleaner_selectors::fineweb::FineWebQuality) = "fineweb_quality",
    /// Replaces email addresses and globally reachable IPv4 addresses with placeholders.
    PiiRedact(gleaner_selectors::pii::PiiRedaction) = "pii_redact",
    /// The main text of HTML pages (trafilatura's extraction); pages without one are dropped.
    HtmlExtract(gleaner_selectors::html::HtmlExtraction) = "html_extract",
    /// Drops pages by their URL: blocked domains and URLs, banned words and subwords.
    UrlFilter(gleaner_selectors::url::UrlFiltering) = "url_filter",
    /// C4's bad-words rule: drops documents holding a word of a LDNOOBW list.
    C4Badwords(gleaner_selectors::badwords::BadWords) = "c4_badwords",
    /// Exact dedup of normalised text; the first occurrence in corpus order is kept.
    ExactDedup(Normalization) = "exact_dedup",
    /// Seeded uniform sample of the surviving documents.
    RandomSample(RandomSampleConfig) = "random_sample",
    /// Semantic dedup of embeddings within spherical k-means clusters.
    Semdedup(SemdedupConfig) = "semdedup",
    /// DSIR: importance resampling towards a target corpus with hashed n-gram features.
    Dsir(DsirConfig) = "dsir",
    /// Top-k or Gumbel-top-k over a numeric score column.
    ScoreSelect(ScoreSelectConfig) = "score_select",
    /// SmallToLarge: k-means of loss trajectories, smallest-first balanced allocation.
    S2l(S2lConfig) = "s2l",
    /// Keep documents whose numeric column lies in [min, max] (e.g. perplexity filtering on
    /// a per-document loss column).
    ScoreFilter(ScoreFilterConfig) = "score_filter",
    /// Sentence embeddings from a BERT-family model, as a vector column.
    Embed(EmbedConfig) = "embed",
    /// Mean next-token loss under a Llama-family causal LM, as a numeric column.
    LmScore(LmScoreConfig) = "lm_score",
    /// AttentionInfluence: relative loss increase when the LM's retrieval heads are masked,
    /// as a numeric column (heads detected with synthetic retrieval probes, or given).
    AttentionInfluence(AttentionInfluenceConfig) = "attention_influence",
    /// S2L's proxy: a small byte-level LM trained from scratch on the input, and each
    /// document's loss at evenly spaced checkpoints, as a vector column (the trajectory).
    LossTrajectory(LossTrajectoryConfig) = "loss_trajectory",
    /// Near-duplicate removal with MinHash signatures and LSH bands, also against an
    /// existing corpus.
    MinhashDedup(minhash_dedup::MinhashDedupConfig) = "minhash_dedup",
    /// Keeps the documents whose embeddings are most similar to a target's.
    EmbeddingSimilarity(embedding_similarity::EmbeddingSimilarityConfig) = "embedding_similarity",
    /// Keeps the documents a hashed n-gram linear classifier (target versus pool) scores
    /// highest.
    NgramClassifier(ngram_classifier::NgramClassifierConfig) = "ngram_classifier",
    /// Counts each document's tokens with a Hugging Face tokenizer (a column, and the unit
    /// of `budget_tokens`).
    Tokenize(tokenize::TokenizeConfig) = "tokenize",
    /// Identifies each document's language, writes it as columns, keeps listed languages.
    LanguageId(language_id::LanguageIdConfig) = "language_id",
    /// Drops documents that copy evaluation documents (long shared word runs after
    /// normalisation).
    Decontaminate(decontaminate::DecontaminateConfig) = "decontaminate",
    /// Quad: a UCB bandit over k-means clusters of the embeddings, probing clusters with the
    /// proxy LM's (EK-)FAC influence on a reference set and accepting blocks of documents.
    Quad(Box<QuadConfig>) = "quad",
}

/// Fails naming `key.name` when `value` is 0.
pub(crate) fn positive(key: &str, name: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("at key `{key}.{name}`: must be at least 1");
    }
    Ok(())
}

/// `key.device` must name a device this build knows.
pub(crate) fn device(key: &str, name: &str) -> Result<()> {
    gleaner_embed::DeviceName::parse(name)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("at key `{key}.device`: {e}"))
}

/// A selector's size keys, read through one type: exactly one of a fraction of the pool, a
/// count, a budget of whitespace tokens or of tokenizer tokens; and whether the size is split
/// across sources.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SizeSettings {
    /// Keep `round(fraction * pool)` documents.
    pub fraction: Option<f64>,
    /// Keep this many documents.
    pub count: Option<u64>,
    /// Keep documents while their whitespace tokens stay within this budget.
    pub budget_words: Option<u64>,
    /// Keep documents while their tokenizer tokens stay within this budget.
    pub budget_tokens: Option<u64>,
    /// Split the size across sources smallest-first.
    pub per_source: bool,
}

impl SizeSettings {
    /// The validated size, and whether it is a budget of tokenizer tokens.
    pub fn sample(&self) -> (SampleSize, bool) {
        match (
            self.fraction,
            self.count,
            self.budget_words,
            self.budget_tokens,
        ) {
            (Some(f), _, _, _) => (SampleSize::Fraction(f), false),
            (_, Some(n), _, _) => (SampleSize::Count(n), false),
            (_, _, Some(b), _) => (SampleSize::Tokens(b), false),
            (_, _, _, Some(b)) => (SampleSize::Tokens(b), true),
            _ => unreachable!("validated: exactly one size is set"),
        }
    }

    /// Checks the keys: exactly one set, a fraction in (0, 1], `per_source` only with a
    /// fraction or a count, and `budget_tokens` only after a `tokenize` stage.
    fn validate(&self, key: &str, tokenized: bool) -> Result<()> {
        let budget = self.budget_words.is_some() || self.budget_tokens.is_some();
        let set = [
            self.fraction.is_some(),
            self.count.is_some(),
            self.budget_words.is_some(),
            self.budget_tokens.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            bail!("at key `{key}`: set exactly one of `fraction`, `count`, `budget_words`, `budget_tokens` (found {set})");
        }
        if let Some(f) = self.fraction {
            if !(f > 0.0 && f <= 1.0) {
                bail!("at key `{key}.fraction`: {f} is outside (0, 1]");
            }
        }
        if self.per_source && budget {
            bail!("at key `{key}.per_source`: per-source quotas need `fraction` or `count`, not a budget (`budget_words`, `budget_tokens`)");
        }
        if self.budget_tokens.is_some() && !tokenized {
            bail!("at key `{key}.budget_tokens`: counts the tokens of a `tokenize` stage; add one before this stage (or use `budget_words` for whitespace tokens)");
        }
        Ok(())
    }
}

fn default_text_column() -> String {
    "text".into()
}
fn default_id_column() -> String {
    "id".into()
}
fn default_batch_size() -> usize {
    1024
}
fn default_max_doc_bytes() -> u64 {
    5_000_000
}
fn default_shard_bytes() -> u64 {
    gleaner_storage::writer::DEFAULT_SHARD_BYTES
}
fn default_zstd_level() -> i32 {
    3
}

/// Parses an override value as a TOML value (`0.5`, `true`, `"x"`, `[1, 2]`), falling back
/// to a bare string (`out/dir`).
fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed table has v"),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Applies one `key.path=value` override to a TOML document. Array elements are addressed
/// by index (`stages.1.fraction=0.2`).
pub fn apply_override(doc: &mut toml::Value, spec: &str) -> Result<()> {
    let (path, raw) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("override `{spec}` is not of the form key.path=value"))?;
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        bail!("override `{spec}`: empty key in `{path}`");
    }
    let mut node = doc;
    for (depth, key) in keys.iter().enumerate() {
        let last = depth + 1 == keys.len();
        let here = keys[..=depth].join(".");
        node = match node {
            toml::Value::Table(t) => {
                if last {
                    t.insert(key.to_string(), parse_value(raw.trim()));
                    return Ok(());
                }
                t.entry(key.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
            }
            toml::Value::Array(a) => {
                let i: usize = key
                    .parse()
                    .map_err(|_| anyhow!("override `{spec}`: `{here}` must be an array index"))?;
                let len = a.len();
                let slot = a.get_mut(i).ok_or_else(|| {
                    anyhow!(
                        "override `{spec}`: index {i} out of range (the array has {len} elements)"
                    )
                })?;
                if last {
                    *slot = parse_value(raw.trim());
                    return Ok(());
                }
                slot
            }
            _ => bail!(
                "override `{spec}`: `{}` is not a table",
                keys[..depth].join(".")
            ),
        };
    }
    unreachable!("the loop returns at the last key")
}

/// Renders a serde path (`stages[1].fraction`) the way keys are written in the config.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." {
        "(top level)".into()
    } else {
        s
    }
}

impl Config {
    /// The local folder this run writes its outputs into: `output.dir`, or its staging
    /// folder when `output.dir` is in object storage.
    pub fn output_dir(&self) -> std::path::PathBuf {
        self.output
            .staging
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from(&self.output.dir))
    }

    /// The nearest `language_id` stage before stage `index` whose language column is
    /// `column` (a `c4_badwords` stage reads the languages it detects in the same run).
    pub fn language_id_before(&self, index: usize, column: &str) -> Option<usize> {
        self.stages[..index]
            .iter()
            .rposition(|s| s.writes_languages_to(column))
    }

    /// Reads `path`, applies the overrides, deserialises and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let doc: toml::Value =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Self::from_value(doc, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// Builds a config from a parsed TOML document and overrides.
    pub fn from_value(mut doc: toml::Value, overrides: &[String]) -> Result<Self> {
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
            let key = key_path(e.path());
            anyhow!("at key `{key}`: {}", e.into_inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and stage order; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if self.input.paths.is_empty() {
            bail!("at key `input.paths`: at least one path is required");
        }
        if self.input.batch_size == 0 {
            bail!("at key `input.batch_size`: must be at least 1");
        }
        if self.input.max_doc_bytes == 0 {
            bail!("at key `input.max_doc_bytes`: must be at least 1");
        }
        if self.output.dir.trim().is_empty() {
            bail!("at key `output.dir`: must not be empty");
        }
        if !(1..=22).contains(&self.output.zstd_level) {
            bail!(
                "at key `output.zstd_level`: {} is outside 1..=22",
                self.output.zstd_level
            );
        }
        if self.output.shard_bytes == 0 {
            bail!("at key `output.shard_bytes`: must be at least 1");
        }
        if self.output.format == ShardFormatConfig::Jsonl
            && self.output.codec().jsonl_codec().is_none()
        {
            bail!(
                "at key `output.compression`: JSONL shards are compressed with zstd, gzip or none, not {:?}",
                self.output.compression
            );
        }
        if self.run.executor == Executor::Slurm
            && self.run.cache_dir.as_deref().is_some_and(is_remote)
        {
            bail!(
                "at key `run.cache_dir`: the Slurm executor needs a folder every node shares; {} is in object storage",
                self.run.cache_dir.as_deref().unwrap_or_default()
            );
        }
        if self.run.executor == Executor::Slurm && is_remote(&self.output.dir) {
            bail!(
                "at key `output.dir`: the Slurm executor needs a folder every node shares; {} is in object storage (run with the local executor, or write to a shared filesystem)",
                self.output.dir
            );
        }
        if let Some(sl) = &self.slurm {
            positive("slurm", "workers", sl.workers)?;
            positive("slurm", "cpus_per_task", sl.cpus_per_task)?;
            positive("slurm", "probe_tasks", sl.probe_tasks)?;
            if sl.max_array_size == Some(0) {
                bail!("at key `slurm.max_array_size`: must be at least 1");
            }
        }
        let last = self.stages.len().saturating_sub(1);
        let mut pool_stage_seen = false;
        for (i, stage) in self.stages.iter().enumerate() {
            let key = format!("stages[{i}]");
            let kind = stage.settings().kind();
            let misplaced = (kind == StageKind::Document && pool_stage_seen)
                || (kind == StageKind::Selector && i != last);
            if misplaced {
                bail!(
                    "at key `{key}` ({}): stages must be filters first (per-document stages), then pool stages (dedup) in any order, and at most one selector (random_sample, dsir, score_select, s2l, quad, ngram_classifier or embedding_similarity) last",
                    stage.type_name()
                );
            }
            pool_stage_seen |= kind != StageKind::Document;
            stage.settings().validate(&StageContext {
                key: &key,
                config: self,
                index: i,
            })?;
        }
        Ok(())
    }

    /// The column holding document embeddings: an `embed` stage's output or
    /// `input.embedding_column`.
    pub fn embedding_column(&self) -> Option<&str> {
        self.stages
            .iter()
            .find_map(|s| match s {
                StageConfig::Embed(c) => Some(c.column.as_str()),
                _ => None,
            })
            .or(self.input.embedding_column.as_deref())
    }

    /// The config as TOML, as saved with the outputs.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises")
    }

    /// The config as JSON (canonical: struct field order).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the config serialises")
    }

    /// sha256 of the canonical JSON.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let bytes = serde_json::to_vec(&self.to_json()).expect("json");
        gleaner_storage::atomic::hex(&Sha256::digest(bytes))
    }

    /// Stage names as used in stats: the type name, suffixed `_2`, `_3` when repeated.
    pub fn stage_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for s in &self.stages {
            let base = s.type_name();
            let n = names
                .iter()
                .filter(|x| x.as_str() == base || x.starts_with(&format!("{base}_")))
                .count();
            names.push(if n == 0 {
                base.to_string()
            } else {
                format!("{base}_{}", n + 1)
            });
        }
        names
    }
}
