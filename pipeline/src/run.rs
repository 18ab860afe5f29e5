//! Local execution of a run in three phases:
//! 1. **scan** (map, parallel over work units): read id/text/source, apply the per-document
//!    filters, hash survivors for dedup;
//! 2. **decide** (reduce, sequential in corpus order): exact dedup, then the selector;
//! 3. **write** (map, parallel reads, writes in corpus order): re-read units holding kept
//!    rows and write shards, the selection records, stats, report and manifest.
//!
//! Every decision depends only on the config and the corpus, never on the thread count.

use crate::clusters::ClusterSummary;
use crate::config::{CombineRule, Config, OnBadFileConfig, StageConfig};
use crate::config::{DsirConfig, QuadConfig, S2lConfig, ScoreFilterConfig, SemdedupConfig};
use crate::features::{self, FeatureStage, UnitFeatures};
use crate::quad::QuadProxy;
use crate::quad_report::{QuadReport, QuadReportContext};
use crate::report::{write_report, ReportInput, ScoreDistribution, SourceCounts};
use crate::stats::StageStats;
use anyhow::{bail, Context, Result};
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use gleaner_selectors::dedup::{ExactDedup, Normalization};
use gleaner_selectors::dsir::{self, DsirFeatures};
use gleaner_selectors::filters::DocumentFilter;
use gleaner_selectors::kmeans::{self, KMeansConfig, Metric};
use gleaner_selectors::random::{RandomSelector, SampleSize};
use gleaner_selectors::s2l::S2lSelector;
use gleaner_selectors::score::{rank_average, ScoreSelector};
use gleaner_selectors::semdedup::{semdedup, SemDedupConfig};
use gleaner_selectors::{allocate_quotas, fraction_quotas, PoolDoc, Selector};
use gleaner_storage::atomic::{sha256_file, write_bytes};
use gleaner_storage::manifest::{InputRecord, Manifest, MANIFEST_FILE};
use gleaner_storage::reader::{ColumnSpec, CorpusReader, DocBatch, OnBadFile, SkippedFile};
use gleaner_storage::writer::{write_parquet_file, ShardInfo, ShardWriter, ShardWriterOptions};
use gleaner_storage::OnBadRecord;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Output layout inside `output.dir`.
pub mod layout {
    /// Selected-document shards.
    pub const SELECTED_DIR: &str = "selected";
    /// Dropped-document shards, one folder per reason.
    pub const REMOVED_DIR: &str = "removed";
    /// Per-kept-document provenance.
    pub const SELECTION_FILE: &str = "selection.parquet";
    /// Per-stage counts.
    pub const STATS_FILE: &str = "stats.json";
    /// Human-readable report.
    pub const REPORT_MD: &str = "report.md";
    /// Machine-readable report.
    pub const REPORT_JSON: &str = "report.json";
    /// The resolved config.
    pub const CONFIG_FILE: &str = "config.toml";
    /// Wall time per phase (not part of the deterministic outputs).
    pub const TIMINGS_FILE: &str = "timings.json";
    /// Current phase of a running job.
    pub const PROGRESS_FILE: &str = "progress.json";
    /// Cluster sizes, sample titles and a 2-D projection (when a stage clusters).
    pub const CLUSTERS_JSON: &str = "clusters.json";
    /// The same as a page with plots.
    pub const CLUSTERS_HTML: &str = "clusters.html";
    /// Plots of a quad stage's bandit (rewards per round, pulls and composition per cluster).
    pub const QUAD_HTML: &str = "quad.html";
}

/// How a run presents itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// No progress bars.
    pub quiet: bool,
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

/// Columns produced by the config's model stages: (name, is a vector), in stage order.
fn model_columns(config: &Config) -> Vec<(String, bool)> {
    config
        .stages
        .iter()
        .filter_map(|s| match s {
            StageConfig::Embed(c) => Some((c.column.clone(), true)),
            StageConfig::LmScore(c) => Some((c.column.clone(), false)),
            StageConfig::AttentionInfluence(c) => Some((c.column.clone(), false)),
            StageConfig::LossTrajectory(c) => Some((c.column.clone(), true)),
            _ => None,
        })
        .collect()
}

/// Every vector column later stages read: the input file's own (embeddings named by
/// `input.embedding_column`, s2l trajectories) first, then the embed stages' outputs. Indices
/// into this list are the `which` of `DocBatch::vector`.
fn vector_columns(config: &Config) -> Vec<String> {
    let produced = model_columns(config);
    let mut v: Vec<String> = config.input.embedding_column.iter().cloned().collect();
    for stage in &config.stages {
        if let StageConfig::S2l(S2lConfig {
            trajectory_column: Some(column),
            ..
        }) = stage
        {
            if !v.contains(column) && !produced.iter().any(|p| &p.0 == column) {
                v.push(column.clone());
            }
        }
    }
    v.extend(produced.into_iter().filter(|p| p.1).map(|p| p.0));
    v
}

/// Every numeric column later stages read: the input file's own first, then the lm_score
/// stages' outputs (the `which` of `DocBatch::score`).
fn score_columns(config: &Config) -> Vec<String> {
    let produced = model_columns(config);
    let mut v: Vec<String> = Vec::new();
    for stage in &config.stages {
        let cols = match stage {
            StageConfig::ScoreSelect(c) => vec![&c.score_column]
                .into_iter()
                .chain(c.combine_with.as_ref())
                .collect(),
            StageConfig::ScoreFilter(c) => vec![&c.score_column],
            StageConfig::S2l(c) => c.trajectory_columns.iter().collect(),
            _ => continue,
        };
        for col in cols {
            if !v.contains(col) && !produced.iter().any(|p| &p.0 == col) {
                v.push(col.clone());
            }
        }
    }
    v.extend(produced.into_iter().filter(|p| !p.1).map(|p| p.0));
    v
}

/// The column spec a config asks of the input files (model-stage columns excluded: they come
/// from sidecars).
pub fn column_spec(config: &Config) -> ColumnSpec {
    let produced = model_columns(config);
    let from_file = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| !produced.iter().any(|p| &p.0 == n))
            .collect()
    };
    ColumnSpec {
        text: config.input.text_column.clone(),
        id: config.input.id_column.clone(),
        source: config.input.source_column.clone(),
        metadata: config.input.metadata_columns.clone(),
        vectors: from_file(vector_columns(config)),
        scores: from_file(score_columns(config)),
    }
}

/// Opens (and validates) the corpus a config names.
pub fn open_corpus(config: &Config) -> Result<CorpusReader> {
    let on_bad = match config.input.on_bad_file {
        OnBadFileConfig::Error => OnBadFile::Error,
        OnBadFileConfig::Skip => OnBadFile::Skip,
    };
    let mut reader = CorpusReader::open(
        &config.input.paths,
        column_spec(config),
        on_bad,
        config.input.batch_size,
    )?;
    reader.set_on_bad_record(
        match config
            .input
            .on_bad_record
            .unwrap_or(config.input.on_bad_file)
        {
            OnBadFileConfig::Error => OnBadRecord::Error,
            OnBadFileConfig::Skip => OnBadRecord::Skip,
        },
    );
    Ok(reader)
}

/// Stage slot 0 is the input stage; slot `i + 1` is `config.stages[i]`.
const INPUT_SLOT: usize = 0;

/// The executable form of the configured stages.
struct Stages {
    /// Names per slot (slot 0 = `input`).
    names: Vec<String>,
    filters: Vec<(usize, PerDocFilter)>,
    /// Index (into the score columns) of the column a score_select stage ranks by.
    select_score: Option<usize>,
    /// Index of the score_select stage's `combine_with` column, when set.
    combine_score: Option<usize>,
    /// Score columns whose per-source distribution the report shows (attention_influence
    /// outputs): (name, index into the score columns).
    distributions: Vec<(String, usize)>,
    dedup: Option<(usize, Normalization)>,
    selector: Option<(usize, SelectorStage)>,
    /// Whether the selector reads token counts (budgets); otherwise they are not computed.
    needs_tokens: bool,
    semdedup: Option<(usize, SemdedupConfig)>,
    dsir: Option<(usize, DsirConfig, DsirFeatures)>,
    quad: Option<(usize, QuadConfig)>,
    /// Index (into the vector columns) of the embeddings semdedup and quad read.
    embedding_vector: Option<usize>,
    /// Index (into the vector columns) of the loss trajectories an s2l selector reads.
    trajectory_vector: Option<usize>,
    /// Or the numeric columns (indices into the score columns) that form the trajectory.
    trajectory_scores: Vec<usize>,
}

impl Stages {
    fn build(config: &Config) -> Self {
        let mut names = vec!["input".to_string()];
        names.extend(config.stage_names());
        let mut filters: Vec<(usize, PerDocFilter)> = Vec::new();
        let score_cols = score_columns(config);
        let score_index = |c: &str| {
            score_cols
                .iter()
                .position(|x| x == c)
                .expect("listed by score_columns")
        };
        let mut select_score = None;
        let mut combine_score = None;
        let mut distributions = Vec::new();
        let mut dedup = None;
        let mut selector: Option<(usize, SelectorStage)> = None;
        let mut needs_tokens = false;
        let mut semdedup = None;
        let mut dsir = None;
        let mut quad = None;
        let mut s2l_column = None;
        let mut trajectory_scores = Vec::new();
        for (i, stage) in config.stages.iter().enumerate() {
            let slot = i + 1;
            match stage {
                StageConfig::GopherQuality(q) => {
                    filters.push((slot, PerDocFilter::Text(Box::new(q.clone()))))
                }
                StageConfig::GopherRepetition(r) => {
                    filters.push((slot, PerDocFilter::Text(Box::new(r.clone()))))
                }
                StageConfig::ScoreFilter(c) => filters.push((
                    slot,
                    PerDocFilter::Score {
                        column: score_index(&c.score_column),
                        config: c.clone(),
                    },
                )),
                StageConfig::Embed(_)
                | StageConfig::LmScore(_)
                | StageConfig::LossTrajectory(_) => filters.push((slot, PerDocFilter::Model)),
                StageConfig::AttentionInfluence(c) => {
                    distributions.push((c.column.clone(), score_index(&c.column)));
                    filters.push((slot, PerDocFilter::Model))
                }
                StageConfig::ExactDedup(n) => dedup = Some((slot, n.clone())),
                StageConfig::Quad(c) => quad = Some((slot, (**c).clone())),
                StageConfig::Semdedup(c) => semdedup = Some((slot, c.clone())),
                StageConfig::Dsir(c) => {
                    let size = sample_size(c.fraction, c.count, None);
                    let seed = c.seed.unwrap_or(config.run.seed);
                    selector = Some((
                        slot,
                        SelectorStage::by_score(
                            "dsir",
                            seed,
                            size,
                            !c.top_k,
                            1.0,
                            Grouping::balanced(c.per_source),
                        ),
                    ));
                    let features = DsirFeatures {
                        ngrams: c.ngrams,
                        buckets: c.num_buckets,
                    };
                    dsir = Some((slot, c.clone(), features));
                }
                StageConfig::RandomSample(r) => {
                    let size = sample_size(r.fraction, r.count, r.budget_words);
                    needs_tokens |= matches!(size, SampleSize::Tokens(_));
                    let seed = r.seed.unwrap_or(config.run.seed);
                    selector = Some((
                        slot,
                        SelectorStage {
                            size,
                            grouping: Grouping::balanced(r.per_source),
                            combine: None,
                            make: Box::new(move |size| Box::new(RandomSelector { seed, size })),
                        },
                    ));
                }
                StageConfig::S2l(c) => {
                    let size = sample_size(c.fraction, c.count, None);
                    s2l_column = c.trajectory_column.clone();
                    trajectory_scores = c
                        .trajectory_columns
                        .iter()
                        .map(|t| score_index(t))
                        .collect();
                    let (n_clusters, kmeans_iters, min_cluster_size) =
                        (c.n_clusters, c.kmeans_iters, c.min_cluster_size);
                    let seed = c.seed.unwrap_or(config.run.seed);
                    selector = Some((
                        slot,
                        SelectorStage {
                            size,
                            grouping: Grouping::balanced(c.per_source),
                            combine: None,
                            make: Box::new(move |size| {
                                Box::new(S2lSelector {
                                    n_clusters,
                                    kmeans_iters,
                                    min_cluster_size,
                                    seed,
                                    size,
                                })
                            }),
                        },
                    ));
                }
                StageConfig::ScoreSelect(c) => {
                    select_score = Some(score_index(&c.score_column));
                    combine_score = c.combine_with.as_deref().map(score_index);
                    let size = sample_size(c.fraction, c.count, c.budget_words);
                    needs_tokens |= matches!(size, SampleSize::Tokens(_));
                    let seed = c.seed.unwrap_or(config.run.seed);
                    let grouping = if c.within_source {
                        Grouping::SameFraction
                    } else {
                        Grouping::balanced(c.per_source)
                    };
                    let mut stage = SelectorStage::by_score(
                        "score_select",
                        seed,
                        size,
                        c.sample,
                        c.temperature,
                        grouping,
                    );
                    stage.combine = c.combine_with.as_ref().map(|_| c.combine);
                    selector = Some((slot, stage));
                }
            }
        }
        let vectors = vector_columns(config);
        let vector_index =
            |name: Option<&str>| name.and_then(|n| vectors.iter().position(|v| v == n));
        let clusters_embeddings = semdedup.is_some() || quad.is_some();
        Stages {
            names,
            filters,
            select_score,
            combine_score,
            distributions,
            dedup,
            selector,
            needs_tokens,
            semdedup,
            dsir,
            quad,
            embedding_vector: clusters_embeddings
                .then(|| vector_index(config.embedding_column()))
                .flatten(),
            trajectory_vector: vector_index(s2l_column.as_deref()),
            trajectory_scores,
        }
    }
}

impl Stages {
    /// Whether an s2l selector reads loss trajectories (a list column or numeric columns).
    fn reads_trajectories(&self) -> bool {
        self.trajectory_vector.is_some() || !self.trajectory_scores.is_empty()
    }
}

/// The size a validated selector config asks for (exactly one of the three is set).
fn sample_size(fraction: Option<f64>, count: Option<u64>, budget_words: Option<u64>) -> SampleSize {
    match (fraction, count, budget_words) {
        (Some(f), _, _) => SampleSize::Fraction(f),
        (_, Some(n), _) => SampleSize::Count(n),
        (_, _, Some(b)) => SampleSize::Tokens(b),
        _ => unreachable!("validated: exactly one size is set"),
    }
}

/// A per-document stage: rules on the text, a range on a numeric column, or a model stage
/// (which annotates every document and drops none).
enum PerDocFilter {
    Text(Box<dyn DocumentFilter>),
    Model,
    Score {
        column: usize,
        config: ScoreFilterConfig,
    },
}

impl PerDocFilter {
    /// `None` keeps document `i`; `Some(reason)` drops it.
    fn check(&self, batch: &DocBatch, i: usize, text: &str) -> Option<String> {
        match self {
            PerDocFilter::Text(f) => f.check(text),
            PerDocFilter::Model => None,
            PerDocFilter::Score { column, config } => match batch.score(*column, i) {
                None if config.keep_missing => None,
                None => Some("no_score".into()),
                Some(v) if config.min.is_some_and(|m| v < m) => Some("score_below_min".into()),
                Some(v) if config.max.is_some_and(|m| v > m) => Some("score_above_max".into()),
                Some(_) => None,
            },
        }
    }
}

/// How a selector's size applies to the pool's sources.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grouping {
    /// One selection over the whole pool.
    Pool,
    /// The total (fraction or count) split across sources smallest-first (S2L rule).
    Balanced,
    /// The same fraction of every source, each ranked on its own.
    SameFraction,
}

impl Grouping {
    fn balanced(per_source: bool) -> Self {
        if per_source {
            Grouping::Balanced
        } else {
            Grouping::Pool
        }
    }
}

/// The configured selector: its size, how the size applies to sources, how a second score
/// combines with the first, and how to build it for a given size (each source's quota when
/// split).
struct SelectorStage {
    size: SampleSize,
    grouping: Grouping,
    combine: Option<CombineRule>,
    make: Box<dyn Fn(SampleSize) -> Box<dyn Selector> + Send + Sync>,
}

impl SelectorStage {
    /// A [`ScoreSelector`] stage ranking by the pool documents' scores.
    fn by_score(
        name: &'static str,
        seed: u64,
        size: SampleSize,
        sample: bool,
        temperature: f64,
        grouping: Grouping,
    ) -> Self {
        SelectorStage {
            size,
            grouping,
            combine: None,
            make: Box::new(move |size| {
                Box::new(ScoreSelector {
                    name: name.into(),
                    seed,
                    size,
                    sample,
                    temperature,
                })
            }),
        }
    }

    /// Indices of the pool grouped by source (sources in name order).
    fn groups<'p>(pool: &[PoolDoc<'p>]) -> BTreeMap<Option<&'p str>, Vec<usize>> {
        let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
        for (i, d) in pool.iter().enumerate() {
            groups.entry(d.source).or_default().push(i);
        }
        groups
    }

    /// Picks from `pool`, with the second scores `secondary` (one per document) when the
    /// stage combines two columns: their rank average replaces the score (ranked within each
    /// source for [`Grouping::SameFraction`]), or the picks of each column are united.
    fn select(
        &self,
        pool: &[PoolDoc<'_>],
        secondary: &[Option<f64>],
    ) -> Vec<gleaner_selectors::Pick> {
        match self.combine {
            None => self.select_grouped(pool),
            Some(CombineRule::RankAverage) => {
                let mut combined = pool.to_vec();
                let mut rank = |members: &[usize]| {
                    let a: Vec<Option<f64>> = members.iter().map(|&i| pool[i].score).collect();
                    let b: Vec<Option<f64>> = members.iter().map(|&i| secondary[i]).collect();
                    for (&i, r) in members.iter().zip(rank_average(&a, &b)) {
                        combined[i].score = r;
                    }
                };
                if self.grouping == Grouping::SameFraction {
                    for members in Self::groups(pool).values() {
                        rank(members);
                    }
                } else {
                    rank(&(0..pool.len()).collect::<Vec<_>>());
                }
                self.select_grouped(&combined)
            }
            Some(CombineRule::Union) => {
                let by_second: Vec<PoolDoc<'_>> = pool
                    .iter()
                    .zip(secondary)
                    .map(|(d, &score)| PoolDoc { score, ..*d })
                    .collect();
                let mut picks = self.select_grouped(pool);
                let mut taken: Vec<bool> = vec![false; pool.len()];
                for p in &picks {
                    taken[p.index] = true;
                }
                for mut p in self.select_grouped(&by_second) {
                    if !taken[p.index] {
                        p.score = pool[p.index].score;
                        p.reason = "combined_union";
                        picks.push(p);
                    }
                }
                picks.sort_by_key(|p| p.index);
                picks
            }
        }
    }

    /// Picks from `pool` under the stage's grouping: one selection, a total split across
    /// sources smallest-first, or the same fraction of each source.
    fn select_grouped(&self, pool: &[PoolDoc<'_>]) -> Vec<gleaner_selectors::Pick> {
        if self.grouping == Grouping::Pool {
            return (self.make)(self.size).select(pool);
        }
        let groups = Self::groups(pool);
        let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
        let quotas = match (self.grouping, self.size) {
            (Grouping::SameFraction, SampleSize::Fraction(f)) => fraction_quotas(&sizes, f),
            (Grouping::Balanced, SampleSize::Fraction(f)) => {
                allocate_quotas(&sizes, (f * pool.len() as f64).round() as usize)
            }
            (Grouping::Balanced, SampleSize::Count(c)) => {
                allocate_quotas(&sizes, (c as usize).min(pool.len()))
            }
            _ => unreachable!("validated: source grouping needs a fraction (or a count)"),
        };
        let mut picks = Vec::with_capacity(quotas.iter().sum());
        for (members, quota) in groups.values().zip(quotas) {
            let sub: Vec<PoolDoc<'_>> = members.iter().map(|&i| pool[i]).collect();
            for mut p in (self.make)(SampleSize::Count(quota as u64)).select(&sub) {
                p.index = members[p.index];
                picks.push(p);
            }
        }
        picks.sort_by_key(|p| p.index);
        picks
    }
}

/// A document that passed every per-document filter.
#[derive(Serialize, Deserialize)]
struct Survivor {
    row: u32,
    id: String,
    source: Option<u32>,
    /// Whitespace tokens, computed only when the selector needs them.
    words: u64,
    hash: u128,
    /// Short label (start of the first line) for cluster reports, when clustering.
    title: Option<String>,
    /// Value of the input's score column, when a score_select stage reads one.
    score: Option<f64>,
    /// Value of the score_select stage's `combine_with` column.
    secondary: Option<f64>,
}

/// What happened to each row of a unit during the scan.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum Fate {
    /// Index into `UnitScan::survivors`.
    Survivor,
    /// Index into `UnitScan::reasons`.
    Dropped(u32),
}

/// Pass-1 (scan) result of one work unit: what the map phase hands to the reduce.
#[derive(Serialize, Deserialize)]
pub struct UnitScan {
    fates: Vec<Fate>,
    reasons: Vec<(usize, String)>,
    survivors: Vec<Survivor>,
    /// Source of each row (index into `source_names`), `u32::MAX` when none.
    row_sources: Vec<u32>,
    source_names: Vec<String>,
    /// Examples of dropped ids, per reason index (at most 3 each).
    examples: Vec<Vec<String>>,
    warnings: Vec<String>,
    /// Embeddings of the survivors, when a semdedup stage runs.
    embeddings: VectorBuf,
    /// Loss trajectories of the survivors, when an s2l stage runs.
    trajectories: VectorBuf,
    /// DSIR bucket counts of the survivors, when a dsir stage runs.
    dsir_counts: Vec<u64>,
    /// Per distribution column, (source, value) of every row that has a value.
    distribution_values: Vec<Vec<(u32, f64)>>,
}

impl UnitScan {
    /// A compact exact encoding (floats keep every bit), for the map phase's marker files.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(postcard::to_stdvec(self)?)
    }

    /// Decodes [`UnitScan::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

/// Vectors of one role for the survivors of a unit, `dim` floats each.
#[derive(Default, Serialize, Deserialize)]
struct VectorBuf {
    data: Vec<f32>,
    dim: usize,
}

impl VectorBuf {
    /// Fixes the dimension on the first vector; a later vector of another length is an
    /// error naming the row.
    fn check_dim(&mut self, v: &[f32], what: &str, row: impl Fn() -> String) -> Result<()> {
        if self.dim == 0 {
            self.dim = v.len();
        } else if v.len() != self.dim && !v.is_empty() {
            bail!(
                "{}: {what} has {} values, earlier rows have {}",
                row(),
                v.len(),
                self.dim
            );
        }
        Ok(())
    }

    /// Vector of survivor `si`.
    fn get(&self, si: usize) -> &[f32] {
        &self.data[si * self.dim..(si + 1) * self.dim]
    }
}

const NO_SOURCE: u32 = u32::MAX;
const MAX_EXAMPLES: usize = 3;

fn scan_unit(
    reader: &CorpusReader,
    unit: usize,
    stages: &Stages,
    features: &[FeatureStage],
    config: &Config,
) -> Result<UnitScan> {
    let mut scan = UnitScan {
        fates: Vec::new(),
        reasons: Vec::new(),
        survivors: Vec::new(),
        row_sources: Vec::new(),
        source_names: Vec::new(),
        examples: Vec::new(),
        warnings: Vec::new(),
        embeddings: VectorBuf::default(),
        trajectories: VectorBuf::default(),
        dsir_counts: stages
            .dsir
            .as_ref()
            .map(|(_, _, f)| vec![0; f.buckets])
            .unwrap_or_default(),
        distribution_values: vec![Vec::new(); stages.distributions.len()],
    };
    let (embedding_col, trajectory_col) = (stages.embedding_vector, stages.trajectory_vector);
    let mut reason_index: HashMap<(usize, String), u32> = HashMap::new();
    let mut source_index: HashMap<String, u32> = HashMap::new();
    let max_bytes = config.input.max_doc_bytes;
    let file = &reader.files()[reader.units()[unit].file].path;
    let computed = if features.is_empty() {
        None
    } else {
        Some(UnitFeatures::load(reader, features, unit)?)
    };
    for batch in reader.read_unit(unit)? {
        let mut batch = batch?;
        if let Some(computed) = &computed {
            computed.attach(&mut batch);
        }
        for i in 0..batch.len() {
            let row = scan.fates.len() as u32;
            let source = match batch.source(i) {
                Some(s) => match source_index.get(s) {
                    Some(&k) => k,
                    None => {
                        let k = scan.source_names.len() as u32;
                        scan.source_names.push(s.to_string());
                        source_index.insert(s.to_string(), k);
                        k
                    }
                },
                None => NO_SOURCE,
            };
            scan.row_sources.push(source);
            for (values, (_, column)) in scan
                .distribution_values
                .iter_mut()
                .zip(&stages.distributions)
            {
                if let Some(v) = batch.score(*column, i) {
                    values.push((source, v));
                }
            }
            let text = batch.text(i).unwrap_or("");
            let embedding = embedding_col.and_then(|c| batch.vector(c, i));
            // A trajectory from numeric columns is missing when any checkpoint's value is.
            let assembled: Option<Vec<f32>> = (!stages.trajectory_scores.is_empty())
                .then(|| {
                    stages
                        .trajectory_scores
                        .iter()
                        .map(|&c| batch.score(c, i).map(|v| v as f32))
                        .collect()
                })
                .flatten();
            let trajectory = trajectory_col
                .and_then(|c| batch.vector(c, i))
                .or(assembled.as_deref());
            let row_name = || format!("{} row {}", file.display(), batch.key(i).row);
            if let Some(e) = embedding {
                scan.embeddings.check_dim(e, "embedding", row_name)?;
            }
            if let Some(t) = trajectory {
                scan.trajectories.check_dim(t, "trajectory", row_name)?;
            }
            let drop = if let Some(bad) = batch.bad_record(i) {
                if scan.warnings.len() < 5 {
                    scan.warnings.push(format!(
                        "{} line {}: {}; dropped as bad_record",
                        file.display(),
                        bad.line,
                        bad.message
                    ));
                }
                Some((INPUT_SLOT, "bad_record".to_string()))
            } else if batch.text(i).is_none() {
                Some((INPUT_SLOT, "null_text".to_string()))
            } else if text.trim().is_empty() {
                Some((INPUT_SLOT, "empty_text".to_string()))
            } else if embedding_col.is_some() && embedding.is_none_or(|e| e.is_empty()) {
                Some((INPUT_SLOT, "no_embedding".to_string()))
            } else if stages.reads_trajectories() && trajectory.is_none_or(|t| t.is_empty()) {
                Some((INPUT_SLOT, "no_trajectory".to_string()))
            } else if text.len() as u64 > max_bytes {
                if scan.warnings.len() < 5 {
                    scan.warnings.push(format!(
                        "{} row {}: document of {} bytes exceeds input.max_doc_bytes = {max_bytes}; dropped as too_large",
                        file.display(),
                        batch.key(i).row,
                        text.len()
                    ));
                }
                Some((INPUT_SLOT, "too_large".to_string()))
            } else {
                stages
                    .filters
                    .iter()
                    .find_map(|(slot, f)| f.check(&batch, i, text).map(|r| (*slot, r)))
            };
            let fate = match drop {
                Some(key) => {
                    let next = scan.reasons.len() as u32;
                    let k = *reason_index.entry(key.clone()).or_insert_with(|| {
                        scan.reasons.push(key);
                        scan.examples.push(Vec::new());
                        next
                    });
                    let ex = &mut scan.examples[k as usize];
                    if ex.len() < MAX_EXAMPLES {
                        ex.push(batch.id(i).into_owned());
                    }
                    Fate::Dropped(k)
                }
                None => {
                    let hash = stages
                        .dedup
                        .as_ref()
                        .map(|(_, n)| n.hash(text))
                        .unwrap_or(0);
                    scan.survivors.push(Survivor {
                        row,
                        id: batch.id(i).into_owned(),
                        source: (source != NO_SOURCE).then_some(source),
                        words: if stages.needs_tokens {
                            whitespace_tokens(text)
                        } else {
                            0
                        },
                        hash,
                        title: stages.semdedup.is_some().then(|| title_of(text)),
                        score: stages.select_score.and_then(|c| batch.score(c, i)),
                        secondary: stages.combine_score.and_then(|c| batch.score(c, i)),
                    });
                    if let Some(e) = embedding {
                        scan.embeddings.data.extend_from_slice(e);
                    }
                    if let Some(t) = trajectory {
                        scan.trajectories.data.extend_from_slice(t);
                    }
                    if let Some((_, _, f)) = &stages.dsir {
                        f.add_counts(text, &mut scan.dsir_counts);
                    }
                    Fate::Survivor
                }
            };
            scan.fates.push(fate);
        }
    }
    Ok(scan)
}

/// The first non-empty line of a text, cut to 80 characters: a label for reports.
fn title_of(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut t: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        t.push('…');
    }
    t
}

/// Number of maximal runs of non-whitespace bytes, with ASCII whitespace as separators
/// (a fast proxy for token counts used by `budget_words` and the report's kept tokens).
pub fn whitespace_tokens(text: &str) -> u64 {
    let mut count = 0u64;
    let mut in_word = false;
    for &b in text.as_bytes() {
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
        count += (!space && !in_word) as u64;
        in_word = !space;
    }
    count
}

/// The embeddings of the pool documents, L2-normalised, in pool order, and their dimension.
fn pool_embeddings(
    live: &[(usize, &UnitScan)],
    pool_refs: &[(usize, usize)],
) -> Result<(Vec<f32>, usize)> {
    let dim = live
        .iter()
        .map(|(_, s)| s.embeddings.dim)
        .find(|&d| d > 0)
        .unwrap_or(0);
    if let Some((_, bad)) = live
        .iter()
        .find(|(_, s)| s.embeddings.dim != 0 && s.embeddings.dim != dim)
    {
        bail!(
            "embeddings of different lengths in the corpus: {} and {}",
            dim,
            bad.embeddings.dim
        );
    }
    let mut data = Vec::with_capacity(pool_refs.len() * dim);
    for &(pos, si) in pool_refs {
        let e = live[pos].1.embeddings.get(si);
        let norm = e
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        data.extend(e.iter().map(|x| x / norm));
    }
    Ok((data, dim))
}

/// `f` of the text of each listed pool document (`docs` index `pool_refs`), in the order
/// listed, reading the units that hold them again in parallel.
fn map_pool_texts<T: Send>(
    reader: &CorpusReader,
    live: &[(usize, &UnitScan)],
    pool_refs: &[(usize, usize)],
    docs: &[usize],
    f: impl Fn(&str) -> T + Sync,
) -> Result<Vec<T>> {
    // Positions in `docs` per live unit, by the row they sit in.
    let mut by_unit: Vec<Vec<(u32, usize)>> = vec![Vec::new(); live.len()];
    for (slot, &p) in docs.iter().enumerate() {
        let (pos, si) = pool_refs[p];
        by_unit[pos].push((live[pos].1.survivors[si].row, slot));
    }
    let per_unit: Vec<Result<Vec<(usize, T)>>> = by_unit
        .par_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(pos, rows)| {
            let mut wanted: HashMap<u32, Vec<usize>> = HashMap::new();
            for &(row, slot) in rows {
                wanted.entry(row).or_default().push(slot);
            }
            let mut out = Vec::with_capacity(rows.len());
            let mut row = 0u32;
            for batch in reader.read_unit(live[pos].0)? {
                let batch = batch?;
                for i in 0..batch.len() {
                    if let Some(slots) = wanted.get(&row) {
                        for &slot in slots {
                            out.push((slot, f(batch.text(i).unwrap_or(""))));
                        }
                    }
                    row += 1;
                }
            }
            Ok(out)
        })
        .collect();
    let mut values: Vec<Option<T>> = (0..docs.len()).map(|_| None).collect();
    for unit in per_unit {
        for (slot, v) in unit? {
            values[slot] = Some(v);
        }
    }
    Ok(values
        .into_iter()
        .map(|v| v.expect("every listed document is read"))
        .collect())
}

/// What a quad stage decided, its report and its cost.
struct QuadRun {
    selection: gleaner_selectors::quad::select::QuadSelection,
    report: QuadReport,
    cost: serde_json::Value,
    seed: u64,
}

/// Runs the quad stage in `slot` over the pool: loads the proxy and fits the reference side,
/// clusters the pool's embeddings, and runs the bandit, scoring each round's probe documents
/// in parallel (cached scores are reused; no gradient outlives its document).
fn run_quad(
    reader: &CorpusReader,
    live: &[(usize, &UnitScan)],
    pool_refs: &[(usize, usize)],
    slot: usize,
    c: &QuadConfig,
    config: &Config,
) -> Result<QuadRun> {
    use gleaner_selectors::quad::bandit::BanditConfig;
    use gleaner_selectors::quad::select::{select, QuadSettings};
    let key = format!("stages[{}]", slot - 1);
    let seed = c.seed.unwrap_or(config.run.seed);
    let t_fit = Instant::now();
    let proxy = QuadProxy::load(c, &key, &features::cache_root(config))?;
    let scorer = proxy.scorer()?;
    let fit_s = t_fit.elapsed().as_secs_f64();
    let (data, dim) = pool_embeddings(live, pool_refs)?;
    let tokens = match c.budget_tokens {
        Some(_) => {
            let all: Vec<usize> = (0..pool_refs.len()).collect();
            let counts = map_pool_texts(reader, live, pool_refs, &all, |text| {
                proxy.token_counts(&[text]).map(|v| v[0])
            })?;
            Some(counts.into_iter().collect::<Result<Vec<u64>>>()?)
        }
        None => None,
    };
    let settings = QuadSettings {
        n_clusters: c.n_clusters,
        kmeans_iters: c.kmeans_iters,
        max_points_per_cluster: c.max_points_per_cluster,
        neighbor_radius: c.neighbor_radius,
        bandit: BanditConfig {
            alpha: c.alpha,
            reward_offset: c.reward_offset,
            probe_size: c.probe_size,
            arms_per_round: c.arms_per_round,
            block_size: c.block_size,
            max_rounds: c.max_rounds,
            budget: c
                .budget_docs
                .or(c.budget_tokens)
                .expect("validated: one budget"),
            init_policy: c.init_policy,
        },
        seed,
    };
    // Inside a Slurm reduce job with several tasks (`slurm.probe_tasks`, whose job script
    // sets these variables), each round's probes are scored by that many job steps.
    let remote_probes: Option<(usize, PathBuf)> = std::env::var("GLEANER_PROBE_TASKS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|&t| t > 1)
        .zip(std::env::var_os("GLEANER_WORK").map(PathBuf::from));
    let t_probe = Instant::now();
    let mut probe_windows: Vec<usize> = Vec::new();
    let mut computed_passes = 0usize;
    let mut round = 0usize;
    let mut probed = 0usize;
    let selection = select(&data, dim, tokens.as_deref(), &settings, |docs| {
        let texts = map_pool_texts(reader, live, pool_refs, docs, str::to_string)?;
        let scored = match &remote_probes {
            Some((tasks, work)) => proxy.score_with(&texts, |todo| {
                crate::distributed::srun_probes(
                    work,
                    round,
                    *tasks,
                    todo,
                    scorer.reference_vector(),
                )
            })?,
            None => proxy.score(&scorer, &texts)?,
        };
        probe_windows.extend(scored.iter().map(|d| d.windows));
        let fresh: usize = scored
            .iter()
            .filter(|d| d.computed)
            .map(|d| d.windows)
            .sum();
        computed_passes += fresh;
        probed += docs.len();
        tracing::info!(
            "quad round {round}: probed {} documents ({fresh} window passes computed, the rest cached)",
            docs.len()
        );
        write_progress(
            Path::new(&config.output.dir),
            "quad",
            serde_json::json!({
                "round": round + 1,
                "max_rounds": c.max_rounds,
                "probed_documents": probed,
                "window_passes_computed": computed_passes,
            }),
        );
        round += 1;
        Ok::<_, anyhow::Error>(scored.iter().map(|d| d.score).collect())
    })?;
    let probe_s = t_probe.elapsed().as_secs_f64();
    let (references, fits) = proxy.reference_sizes();
    let fit_documents = if c.curvature == crate::config::CurvatureConfig::Identity {
        0
    } else {
        fits
    };
    let curvature = serde_json::to_value(c.curvature)?;
    let report = QuadReport::new(
        &selection,
        &QuadReportContext {
            model: &c.model,
            layers: proxy.layer_names(),
            curvature: curvature.as_str().unwrap_or_default(),
            reference_fit: (references, fit_documents),
            budget_unit: if c.budget_tokens.is_some() {
                "tokens"
            } else {
                "documents"
            },
            budget: settings.bandit.budget,
            max_rounds: c.max_rounds,
            probe_windows: &probe_windows,
        },
    );
    let cost = serde_json::json!({
        "fit_s": fit_s,
        "probe_s": probe_s,
        "probe_passes_computed": computed_passes,
        "probe_passes_total": report.probe_passes,
        "reference_passes": report.reference_passes,
        "passes_per_selected_document": report.passes_per_selected_document,
        "probe_passes_per_s": computed_passes as f64 / probe_s.max(1e-9),
    });
    Ok(QuadRun {
        selection,
        report,
        cost,
        seed,
    })
}

/// Final fate of a row for the write phase.
const KEEP: u32 = u32::MAX;

/// One kept document's provenance.
struct SelectedRow {
    unit: usize,
    row: u32,
    id: String,
    source: Option<String>,
    score: Option<f64>,
    reason: &'static str,
    cluster: Option<u32>,
    /// Quad: the round whose pull accepted the document's block, the arm's Cluster Score
    /// then, and the document's own probe score when it was probed.
    quad: Option<(u32, f64, Option<f64>)>,
}

/// Everything the reduce phase decides.
struct Decisions {
    stats: Vec<StageStats>,
    /// Per unit, per row: `KEEP` or an index into `reason_names`.
    row_fates: Vec<Vec<u32>>,
    reason_names: Vec<String>,
    selected: Vec<SelectedRow>,
    sources: BTreeMap<String, SourceCounts>,
    examples: BTreeMap<String, Vec<String>>,
    method: String,
    seed: u64,
    clusters: Option<ClusterSummary>,
    /// Per-source distributions of the attention_influence score columns.
    distributions: Vec<ScoreDistribution>,
    /// What a quad stage did.
    quad: Option<QuadReport>,
    /// A quad stage's cost in this run (for timings.json).
    quad_cost: Option<serde_json::Value>,
}

/// The reduce phase's bookkeeping: per-stage counts, each row's fate, drop reasons and a
/// few example ids per reason.
struct Ledger {
    stats: Vec<StageStats>,
    reason_names: Vec<String>,
    reason_ids: HashMap<String, u32>,
    examples: BTreeMap<String, Vec<String>>,
    /// Per live unit, per row: `KEEP` or an index into `reason_names`.
    row_fates: Vec<Vec<u32>>,
}

impl Ledger {
    /// Index of `reason` in `reason_names`, added on first use.
    fn reason(&mut self, reason: &str) -> u32 {
        if let Some(&k) = self.reason_ids.get(reason) {
            return k;
        }
        self.reason_names.push(reason.to_string());
        let k = self.reason_names.len() as u32 - 1;
        self.reason_ids.insert(reason.to_string(), k);
        k
    }

    /// Keeps `id` as an example of `reason` while there are fewer than `MAX_EXAMPLES`.
    fn example(&mut self, reason: &str, id: &str) {
        let e = self.examples.entry(reason.to_string()).or_default();
        if e.len() < MAX_EXAMPLES {
            e.push(id.to_string());
        }
    }

    /// Records that stage `slot` dropped survivor `s` of live unit `pos` for `reason`.
    fn drop_survivor(&mut self, slot: usize, pos: usize, s: &Survivor, reason: &str) {
        self.stats[slot].drop_one(reason);
        let k = self.reason(reason);
        self.row_fates[pos][s.row as usize] = k;
        self.example(reason, &s.id);
    }
}

fn decide(
    reader: &CorpusReader,
    scans: &[Option<UnitScan>],
    stages: &Stages,
    config: &Config,
) -> Result<Decisions> {
    let mut ledger = Ledger {
        stats: stages.names.iter().map(|n| StageStats::new(n)).collect(),
        reason_names: Vec::new(),
        reason_ids: HashMap::new(),
        examples: BTreeMap::new(),
        row_fates: Vec::with_capacity(scans.len()),
    };
    let mut sources: BTreeMap<String, SourceCounts> = BTreeMap::new();
    let source_key = |scan: &UnitScan, k: u32| -> String {
        if k == NO_SOURCE {
            "(none)".to_string()
        } else {
            scan.source_names[k as usize].clone()
        }
    };

    // Per-document filter outcomes, in stage order: a document dropped at slot s was seen
    // and kept by every earlier slot.
    let last_filter_slot = stages.filters.last().map(|f| f.0).unwrap_or(INPUT_SLOT);
    for scan in scans.iter().flatten() {
        let mut fates = vec![KEEP; scan.fates.len()];
        for (row, fate) in scan.fates.iter().enumerate() {
            let src = source_key(scan, scan.row_sources[row]);
            sources.entry(src).or_default().pool += 1;
            let drop_slot = match fate {
                Fate::Dropped(k) => {
                    let (slot, reason) = &scan.reasons[*k as usize];
                    ledger.stats[*slot].drop_one(reason);
                    fates[row] = ledger.reason(reason);
                    Some(*slot)
                }
                Fate::Survivor => None,
            };
            let passed_through = drop_slot.unwrap_or(last_filter_slot + 1);
            for slot in (INPUT_SLOT..=last_filter_slot).filter(|s| *s < passed_through) {
                if slot == INPUT_SLOT || stages.filters.iter().any(|f| f.0 == slot) {
                    ledger.stats[slot].keep_one();
                }
            }
        }
        for (k, ids) in scan.examples.iter().enumerate() {
            for id in ids {
                ledger.example(&scan.reasons[k].1, id);
            }
        }
        ledger.row_fates.push(fates);
    }

    // Exact dedup over survivors in corpus order.
    let mut pool_refs: Vec<(usize, usize)> = Vec::new(); // (scan index, survivor index)
    let mut dedup_state = ExactDedup::default();
    let live: Vec<(usize, &UnitScan)> = scans
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
        .collect();
    for (pos, (_, scan)) in live.iter().enumerate() {
        for (si, s) in scan.survivors.iter().enumerate() {
            if let Some((slot, _)) = &stages.dedup {
                if dedup_state.is_duplicate(s.hash) {
                    ledger.drop_survivor(*slot, pos, s, "duplicate");
                    continue;
                }
                ledger.stats[*slot].keep_one();
            }
            pool_refs.push((pos, si));
        }
    }

    // Semantic dedup over the remaining pool's embeddings.
    let mut cluster_of: Vec<Option<u32>> = vec![None; pool_refs.len()];
    let mut clusters = None;
    if let Some((slot, c)) = &stages.semdedup {
        let (data, dim) = pool_embeddings(&live, &pool_refs)?;
        let seed = c.seed.unwrap_or(config.run.seed);
        let k = c.n_clusters.min(pool_refs.len()).max(1);
        let kcfg = KMeansConfig {
            max_iters: c.kmeans_iters,
            metric: Metric::Cosine,
            seed,
            ..KMeansConfig::new(k)
        };
        let mut kept_refs = Vec::with_capacity(pool_refs.len());
        let mut kept_clusters = Vec::with_capacity(pool_refs.len());
        if !pool_refs.is_empty() {
            let fit = kmeans::fit_sampled(&data, dim, &kcfg, c.max_points_per_cluster);
            let sd = SemDedupConfig {
                eps: c.eps as f32,
                keep: c.which_to_keep,
                seed,
                exact_max_cluster: c.exact_max_cluster,
            };
            let decisions = semdedup(&data, dim, &fit.assignments, &fit.model, &sd);
            let titles: Vec<&str> = pool_refs
                .iter()
                .map(|&(pos, si)| live[pos].1.survivors[si].title.as_deref().unwrap_or(""))
                .collect();
            let removed: Vec<bool> = decisions.iter().map(|d| d.removed).collect();
            clusters = Some(ClusterSummary::build(
                &data, dim, &fit, &titles, &removed, seed,
            ));
            for (i, &(pos, si)) in pool_refs.iter().enumerate() {
                if decisions[i].removed {
                    ledger.drop_survivor(
                        *slot,
                        pos,
                        &live[pos].1.survivors[si],
                        "semantic_duplicate",
                    );
                } else {
                    ledger.stats[*slot].keep_one();
                    kept_refs.push((pos, si));
                    kept_clusters.push(Some(fit.assignments[i]));
                }
            }
        }
        pool_refs = kept_refs;
        cluster_of = kept_clusters;
    }

    // DSIR: importance weights towards the target, from a second read of the pool's texts.
    let mut scores: Vec<Option<f64>> = pool_refs
        .iter()
        .map(|&(pos, si)| live[pos].1.survivors[si].score)
        .collect();
    if let Some((slot, c, features)) = &stages.dsir {
        let mut raw = vec![0u64; features.buckets];
        for (_, scan) in &live {
            raw.iter_mut()
                .zip(&scan.dsir_counts)
                .for_each(|(r, x)| *r += x);
        }
        let target_spec = ColumnSpec {
            text: c.target_text_column.clone(),
            ..ColumnSpec::default()
        };
        let target = CorpusReader::open(
            &c.target_paths,
            target_spec,
            OnBadFile::Error,
            config.input.batch_size,
        )?;
        let mut target_counts = vec![0u64; features.buckets];
        for u in 0..target.units().len() {
            for batch in target.read_unit(u)? {
                let batch = batch?;
                for i in 0..batch.len() {
                    features.add_counts(batch.text(i).unwrap_or(""), &mut target_counts);
                }
            }
        }
        let ratio = dsir::log_ratio(&raw, &target_counts, c.target_laplace_smoothing);
        let all: Vec<usize> = (0..pool_refs.len()).collect();
        let weights = map_pool_texts(reader, &live, &pool_refs, &all, |text| {
            features.score(text, &ratio)
        })?;
        let mut kept_refs = Vec::with_capacity(pool_refs.len());
        let mut kept_clusters = Vec::with_capacity(pool_refs.len());
        let mut kept_scores = Vec::with_capacity(pool_refs.len());
        for (i, &(pos, si)) in pool_refs.iter().enumerate() {
            let (score, words) = weights[i];
            if words < c.min_example_length {
                ledger.drop_survivor(*slot, pos, &live[pos].1.survivors[si], "too_short");
            } else {
                kept_refs.push((pos, si));
                kept_clusters.push(cluster_of[i]);
                kept_scores.push(Some(score));
            }
        }
        scores = kept_scores;
        pool_refs = kept_refs;
        cluster_of = kept_clusters;
    }

    // Selection over the remaining pool.
    let pool: Vec<PoolDoc<'_>> = pool_refs
        .iter()
        .zip(&scores)
        .map(|(&(pos, si), &score)| {
            let scan = live[pos].1;
            let s = &scan.survivors[si];
            PoolDoc {
                id: &s.id,
                source: s.source.map(|k| scan.source_names[k as usize].as_str()),
                tokens: s.words,
                score,
                features: stages
                    .reads_trajectories()
                    .then(|| scan.trajectories.get(si)),
            }
        })
        .collect();
    let secondary: Vec<Option<f64>> = pool_refs
        .iter()
        .map(|&(pos, si)| live[pos].1.survivors[si].secondary)
        .collect();
    let mut quad_report = None;
    let mut quad_cost = None;
    let mut quad_provenance: HashMap<usize, (u32, f64, Option<f64>)> = HashMap::new();
    let (method, seed, picks) = match (&stages.quad, &stages.selector) {
        (Some((slot, c)), _) => {
            let run = run_quad(reader, &live, &pool_refs, *slot, c, config)?;
            let mut chosen = vec![false; pool_refs.len()];
            for p in &run.selection.picks {
                chosen[p.index] = true;
                quad_provenance.insert(p.index, (p.round as u32, p.arm_score, p.probe_score));
            }
            for (i, &(pos, si)) in pool_refs.iter().enumerate() {
                cluster_of[i] = Some(run.selection.assignments[i]);
                if chosen[i] {
                    ledger.stats[*slot].keep_one();
                } else {
                    ledger.drop_survivor(*slot, pos, &live[pos].1.survivors[si], "not_sampled");
                }
            }
            let picks = run
                .selection
                .picks
                .iter()
                .map(|p| gleaner_selectors::Pick {
                    index: p.index,
                    score: Some(p.pull_score),
                    reason: "quad_block",
                })
                .collect();
            quad_report = Some(run.report);
            quad_cost = Some(run.cost);
            ("quad".to_string(), run.seed, picks)
        }
        (None, Some((slot, stage))) => {
            let picks = stage.select(&pool, &secondary);
            let sel = (stage.make)(stage.size);
            let mut chosen = vec![false; pool.len()];
            for p in &picks {
                chosen[p.index] = true;
            }
            for (i, &(pos, si)) in pool_refs.iter().enumerate() {
                if chosen[i] {
                    ledger.stats[*slot].keep_one();
                } else {
                    ledger.drop_survivor(*slot, pos, &live[pos].1.survivors[si], "not_sampled");
                }
            }
            (sel.name().to_string(), sel.seed(), picks)
        }
        (None, None) => {
            let all = (0..pool.len())
                .map(|index| gleaner_selectors::Pick {
                    index,
                    score: None,
                    reason: "passed_filters",
                })
                .collect();
            ("filters_only".to_string(), config.run.seed, all)
        }
    };
    let mut selected = Vec::with_capacity(picks.len());
    for p in picks {
        let (pos, si) = pool_refs[p.index];
        let (unit_index, scan) = live[pos];
        let s = &scan.survivors[si];
        let source = s.source.map(|k| scan.source_names[k as usize].clone());
        sources
            .entry(source.clone().unwrap_or_else(|| "(none)".into()))
            .or_default()
            .kept += 1;
        selected.push(SelectedRow {
            unit: unit_index,
            row: s.row,
            id: s.id.clone(),
            source,
            score: p.score,
            reason: p.reason,
            cluster: cluster_of[p.index],
            quad: quad_provenance.get(&p.index).copied(),
        });
    }
    // Expand row fates back to unit indices (skipped units have none).
    let mut by_unit: Vec<Vec<u32>> = vec![Vec::new(); scans.len()];
    for ((unit, _), fates) in live.iter().zip(ledger.row_fates) {
        by_unit[*unit] = fates;
    }
    let distributions = stages
        .distributions
        .iter()
        .enumerate()
        .map(|(j, (column, _))| {
            let mut by_source: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (_, scan) in &live {
                for &(k, v) in &scan.distribution_values[j] {
                    by_source.entry(source_key(scan, k)).or_default().push(v);
                }
            }
            ScoreDistribution::new(column, by_source)
        })
        .collect();
    Ok(Decisions {
        distributions,
        quad: quad_report,
        quad_cost,
        stats: ledger.stats,
        row_fates: by_unit,
        reason_names: ledger.reason_names,
        selected,
        sources,
        examples: ledger.examples,
        method,
        seed,
        clusters,
    })
}

fn selection_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("row_group", DataType::UInt32, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("method", DataType::Utf8, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("cluster", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("round", DataType::Int64, true),
        Field::new("arm_score", DataType::Float64, true),
        Field::new("probe_influence", DataType::Float64, true),
    ]))
}

fn write_selection(path: &Path, reader: &CorpusReader, d: &Decisions) -> Result<()> {
    let schema = selection_schema();
    let mut batches = Vec::new();
    for chunk in d.selected.chunks(64 * 1024) {
        let n = chunk.len();
        let unit = |r: &SelectedRow| &reader.units()[r.unit];
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| r.id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| {
                reader.files()[unit(r).file]
                    .path
                    .to_string_lossy()
                    .into_owned()
            }))),
            Arc::new(UInt32Array::from_iter_values(
                chunk.iter().map(|r| unit(r).row_group as u32),
            )),
            Arc::new(UInt64Array::from_iter_values(
                chunk.iter().map(|r| unit(r).first_row + r.row as u64),
            )),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.source.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                d.method.as_str(),
                n,
            ))),
            Arc::new(UInt64Array::from_iter_values(std::iter::repeat_n(
                d.seed, n,
            ))),
            Arc::new(chunk.iter().map(|r| r.score).collect::<Float64Array>()),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.cluster.map(i64::from))
                    .collect::<Int64Array>(),
            ),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| r.reason),
            )),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.quad.map(|q| i64::from(q.0)))
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.quad.map(|q| q.1))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.quad.and_then(|q| q.2))
                    .collect::<Float64Array>(),
            ),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    write_parquet_file(path, schema, &batches)?;
    Ok(())
}

/// What a write-phase worker sends for one batch: kept rows and dropped rows by reason.
struct WriteMsg {
    kept: Option<RecordBatch>,
    kept_words: u64,
    removed: Vec<(u32, RecordBatch)>,
}

/// Runs `work(unit, sender)` for every unit on `threads` workers and hands the messages
/// to `consume` strictly in unit order. Each unit has a channel of capacity 2, so at most
/// `threads` units are in flight and memory stays bounded.
fn ordered_map<T: Send>(
    units: usize,
    threads: usize,
    work: impl Fn(usize, &SyncSender<Result<T>>) + Sync,
    mut consume: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut receivers: Vec<Receiver<Result<T>>> = Vec::with_capacity(units);
    let mut senders: Vec<Mutex<Option<SyncSender<Result<T>>>>> = Vec::with_capacity(units);
    for _ in 0..units {
        let (tx, rx) = sync_channel(2);
        senders.push(Mutex::new(Some(tx)));
        receivers.push(rx);
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let u = next.fetch_add(1, Ordering::SeqCst);
                if u >= units {
                    break;
                }
                let Some(tx) = senders[u].lock().expect("sender lock").take() else {
                    continue;
                };
                work(u, &tx);
            });
        }
        let result = (|| {
            for rx in &receivers {
                for msg in rx.iter() {
                    consume(msg?)?;
                }
            }
            Ok(())
        })();
        // On error, dropping the receivers makes blocked workers' sends fail so they stop.
        drop(receivers);
        result
    })
}

fn write_progress(out: &Path, phase: &str, detail: serde_json::Value) {
    let json = serde_json::json!({ "phase": phase, "detail": detail });
    // Progress is advisory: a failure to record it must not fail the run.
    let _ = write_bytes(
        &out.join(layout::PROGRESS_FILE),
        json.to_string().as_bytes(),
    );
}

/// Prepares the output directory: refuses to replace a completed run unless `overwrite`,
/// refuses an output directory that contains inputs, and removes a previous run's artifacts.
/// Makes `out` ready for a run: refuses to replace a completed run without `overwrite` or to
/// write inside the inputs, and removes the outputs of an earlier run.
pub(crate) fn prepare_output(out: &Path, reader: &CorpusReader, overwrite: bool) -> Result<()> {
    if out.join(MANIFEST_FILE).exists() && !overwrite {
        bail!(
            "{}: already holds a completed run (manifest.json); pass --overwrite or set output.overwrite = true",
            out.display()
        );
    }
    if out.exists() {
        let out_abs = out
            .canonicalize()
            .with_context(|| format!("{}", out.display()))?;
        for f in reader.files() {
            if let Ok(p) = f.path.canonicalize() {
                if p.starts_with(&out_abs) {
                    bail!(
                        "output.dir {} contains the input file {}; choose another output directory",
                        out.display(),
                        f.path.display()
                    );
                }
            }
        }
        // The manifest goes first, so an interrupted clean-up never looks complete.
        let mut doomed = vec![PathBuf::from(MANIFEST_FILE)];
        doomed.extend(
            [
                layout::SELECTION_FILE,
                layout::STATS_FILE,
                layout::REPORT_MD,
                layout::REPORT_JSON,
                layout::CONFIG_FILE,
                layout::TIMINGS_FILE,
                layout::PROGRESS_FILE,
                layout::CLUSTERS_JSON,
                layout::CLUSTERS_HTML,
                layout::QUAD_HTML,
                layout::SELECTED_DIR,
                layout::REMOVED_DIR,
            ]
            .map(PathBuf::from),
        );
        for rel in doomed {
            let p = out.join(rel);
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else if p.exists() {
                std::fs::remove_file(&p)
            } else {
                Ok(())
            };
            r.with_context(|| format!("removing previous output {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating output directory {}", out.display()))?;
    Ok(())
}

fn progress_bar(quiet: bool, len: usize, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>8} [{elapsed_precise}] {bar:40} {pos}/{len} units ({eta})",
        )
        .expect("valid template"),
    );
    pb.set_message(what.to_string());
    pb
}

fn document_bar(quiet: bool, len: u64) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>8} [{elapsed_precise}] {bar:40} {pos}/{len} docs ({eta})",
        )
        .expect("valid template"),
    );
    pb
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
    stages: Stages,
    features: Vec<FeatureStage>,
    threads: usize,
    pool: rayon::ThreadPool,
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
        Ok(Self {
            stages: Stages::build(config),
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
}

/// The map phases for `units`: model stages fill their missing sidecars for those units,
/// then each unit is scanned. Returns the model stages' reports and, per listed unit, its
/// scan or its error.
fn map_units(
    p: &Prepared,
    config: &Config,
    units: &[usize],
    quiet: bool,
) -> Result<(Vec<features::FeatureReport>, Vec<Result<UnitScan>>)> {
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
                let r = scan_unit(&p.reader, u, &p.stages, &p.features, config);
                pb.inc(1);
                r
            })
            .collect()
    });
    pb.finish_and_clear();
    Ok((feature_reports, results))
}

/// Scans one unit (model sidecars must exist): the map work of one completion marker.
pub fn scan_one(p: &Prepared, config: &Config, unit: usize) -> Result<UnitScan> {
    scan_unit(&p.reader, unit, &p.stages, &p.features, config)
}

/// Fills the model stages' missing sidecars of `units` and returns the stages' reports (with
/// no units, only their summaries).
pub fn compute_features(
    p: &Prepared,
    config: &Config,
    units: &[usize],
) -> Result<Vec<features::FeatureReport>> {
    let pb = document_bar(true, 0);
    p.pool
        .install(|| features::compute(&p.reader, &p.features, config, units, &pb))
}

/// Runs the configured pipeline locally.
pub fn run(config: &Config, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let out = PathBuf::from(&config.output.dir);
    let p = Prepared::new(config)?;
    for s in p.reader.skipped() {
        tracing::warn!("skipping bad input {}: {}", s.path.display(), s.reason);
    }
    prepare_output(&out, &p.reader, config.output.overwrite)?;
    write_progress(
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

/// The reduce phases over every unit's scan (in unit order): bad files, decide, write the
/// shards, selection records, stats, report and manifest (last).
pub fn reduce(
    p: &Prepared,
    config: &Config,
    options: &RunOptions,
    results: Vec<Result<UnitScan>>,
    feature_reports: Vec<features::FeatureReport>,
    started: Instant,
    map_s: f64,
) -> Result<RunSummary> {
    let (reader, stages, threads, pool) = (&p.reader, &p.stages, p.threads, &p.pool);
    let out = PathBuf::from(&config.output.dir);
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

    // Phase 2: decide.
    write_progress(&out, "decide", serde_json::Value::Null);
    let t_decide = Instant::now();
    let decisions = pool.install(|| decide(reader, &scans, stages, config))?;
    drop(scans);
    write_selection(&out.join(layout::SELECTION_FILE), reader, &decisions)?;
    let decide_s = t_decide.elapsed().as_secs_f64();

    // Phase 3: write.
    let t_write = Instant::now();
    let write_removed = config.output.write_removed;
    let needs_read: Vec<bool> = decisions
        .row_fates
        .iter()
        .map(|f| !f.is_empty() && (write_removed || f.contains(&KEEP)))
        .collect();
    let to_write = needs_read.iter().filter(|b| **b).count();
    write_progress(&out, "write", serde_json::json!({ "units": to_write }));
    let shard_options = ShardWriterOptions {
        shard_bytes: config.output.shard_bytes,
        codec: config.output.codec(),
        plain_columns: vec![
            config.input.text_column.clone(),
            config.input.id_column.clone(),
        ],
        ..Default::default()
    };
    let mut selected_writer = ShardWriter::new(
        &out.join(layout::SELECTED_DIR),
        reader.output_schema().clone(),
        shard_options.clone(),
    )?;
    let mut removed_writers: BTreeMap<u32, ShardWriter> = BTreeMap::new();
    let pb = progress_bar(options.quiet, to_write, "write");
    let mut kept_words = 0u64;
    let reason_names = &decisions.reason_names;
    ordered_map(
        reader.units().len(),
        threads,
        |u, tx| {
            if !needs_read[u] {
                return;
            }
            let fates = &decisions.row_fates[u];
            let mut offset = 0usize;
            let batches = match reader.read_unit(u) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            for batch in batches {
                let msg = batch.map_err(anyhow::Error::from).and_then(|batch| {
                    let f = &fates[offset..offset + batch.len()];
                    offset += batch.len();
                    let keep: BooleanArray = f.iter().map(|&x| Some(x == KEEP)).collect();
                    let kept = if keep.true_count() > 0 {
                        Some(batch.filtered_record(&keep)?)
                    } else {
                        None
                    };
                    let kept_words = (0..batch.len())
                        .filter(|&i| f[i] == KEEP)
                        .map(|i| whitespace_tokens(batch.text(i).unwrap_or("")))
                        .sum();
                    let mut removed = Vec::new();
                    if write_removed {
                        let mut reasons: Vec<u32> =
                            f.iter().copied().filter(|&x| x != KEEP).collect();
                        reasons.sort_unstable();
                        reasons.dedup();
                        for r in reasons {
                            let mask: BooleanArray = f.iter().map(|&x| Some(x == r)).collect();
                            removed.push((r, batch.filtered_record(&mask)?));
                        }
                    }
                    Ok(WriteMsg {
                        kept,
                        kept_words,
                        removed,
                    })
                });
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    return;
                }
            }
            pb.inc(1);
        },
        |msg| {
            kept_words += msg.kept_words;
            if let Some(kept) = &msg.kept {
                selected_writer.write(kept)?;
            }
            for (reason, batch) in &msg.removed {
                let w = match removed_writers.entry(*reason) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(ShardWriter::new(
                        &out.join(layout::REMOVED_DIR)
                            .join(&reason_names[*reason as usize]),
                        reader.output_schema().clone(),
                        shard_options.clone(),
                    )?),
                };
                w.write(batch)?;
            }
            Ok(())
        },
    )?;
    pb.finish_and_clear();
    let shards = selected_writer.finish()?;
    let mut removed: BTreeMap<String, Vec<ShardInfo>> = BTreeMap::new();
    for (reason, w) in removed_writers {
        removed.insert(reason_names[reason as usize].clone(), w.finish()?);
    }
    let write_s = t_write.elapsed().as_secs_f64();

    // Stats, report, config, manifest (last).
    let seen = decisions.stats[INPUT_SLOT].seen;
    let kept = decisions.selected.len() as u64;
    let stats_json = serde_json::to_vec_pretty(&decisions.stats)?;
    write_bytes(&out.join(layout::STATS_FILE), &stats_json)?;
    write_report(
        &out,
        &ReportInput {
            method: &decisions.method,
            seed: decisions.seed,
            files: reader.files().len(),
            skipped: &skipped,
            seen,
            kept,
            kept_words,
            stats: &decisions.stats,
            sources: &decisions.sources,
            examples: &decisions.examples,
            shards: &shards,
            models: &feature_reports
                .iter()
                .map(|f| f.summary.clone())
                .collect::<Vec<_>>(),
            distributions: &decisions.distributions,
            quad: decisions.quad.as_ref(),
        },
    )?;
    if let Some(c) = &decisions.clusters {
        c.write(&out)?;
    }
    if let Some(q) = &decisions.quad {
        q.write_html(&out)?;
    }
    write_bytes(&out.join(layout::CONFIG_FILE), config.to_toml().as_bytes())?;
    let selection_path = out.join(layout::SELECTION_FILE);
    let manifest = Manifest {
        code_version: code_version(),
        config_hash: config.hash(),
        config: config.to_json(),
        inputs: reader
            .files()
            .iter()
            .filter(|f| !skipped.iter().any(|s| s.path == f.path))
            .map(|f| InputRecord {
                path: f.path.to_string_lossy().into_owned(),
                bytes: f.bytes,
                rows: f.rows,
                row_groups: f.row_groups,
            })
            .collect(),
        skipped_inputs: skipped,
        outputs: shards.clone(),
        selection: ShardInfo {
            file: layout::SELECTION_FILE.into(),
            rows: kept,
            uncompressed_bytes: 0,
            bytes: std::fs::metadata(&selection_path)
                .map(|m| m.len())
                .unwrap_or(0),
            sha256: sha256_file(&selection_path)?,
        },
        removed,
    };
    let total_s = started.elapsed().as_secs_f64();
    let timings = serde_json::json!({
        "threads": threads,
        "model_stages": feature_reports,
        "map_s": map_s,
        "decide_s": decide_s,
        "quad": decisions.quad_cost,
        "write_s": write_s,
        "total_s": total_s,
        "docs_per_s": seen as f64 / total_s.max(1e-9),
    });
    write_bytes(
        &out.join(layout::TIMINGS_FILE),
        serde_json::to_vec_pretty(&timings)?.as_slice(),
    )?;
    write_progress(&out, "done", serde_json::Value::Null);
    manifest.write(&out)?;
    Ok(RunSummary {
        out_dir: out,
        seen,
        kept,
        shards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec 2.6 test 5: domains of 100/10/5 documents with `within_source` and fraction 0.2
    /// keep 20/2/1, chosen by rank inside each domain; shifting one domain's scores changes
    /// nothing.
    #[test]
    fn within_source_takes_the_same_fraction_of_every_source() {
        let ids: Vec<String> = (0..115).map(|i| format!("d{i}")).collect();
        let source = |i: usize| match i {
            0..=99 => "general",
            100..=109 => "math",
            _ => "code",
        };
        // Scores interleave across domains, so a global top-k would differ.
        let score = |i: usize| ((i * 37) % 115) as f64;
        let stage = SelectorStage::by_score(
            "score_select",
            0,
            SampleSize::Fraction(0.2),
            false,
            1.0,
            Grouping::SameFraction,
        );
        let pool = |shift: f64| -> Vec<PoolDoc<'_>> {
            ids.iter()
                .enumerate()
                .map(|(i, id)| PoolDoc {
                    id,
                    source: Some(source(i)),
                    tokens: 1,
                    score: Some(score(i) + if source(i) == "math" { shift } else { 0.0 }),
                    features: None,
                })
                .collect()
        };
        let picked: Vec<usize> = stage
            .select(&pool(0.0), &[])
            .iter()
            .map(|p| p.index)
            .collect();
        let mut expected: Vec<usize> = Vec::new();
        for (range, quota) in [(0..100, 20), (100..110, 2), (110..115, 1)] {
            let mut members: Vec<usize> = range.collect();
            members.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
            expected.extend(&members[..quota]);
        }
        expected.sort();
        assert_eq!(picked, expected);
        let shifted: Vec<usize> = stage
            .select(&pool(1000.0), &[])
            .iter()
            .map(|p| p.index)
            .collect();
        assert_eq!(shifted, picked);
    }
}
