//! Selector and filter settings: score_filter, s2l, dsir, semdedup, random_sample, score_select.

use super::*;

/// A range filter on a numeric column. At least one of `min` and `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreFilterConfig {
    /// The numeric column.
    pub score_column: String,
    /// Documents below this are dropped as `score_below_min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Documents above this are dropped as `score_above_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Keep documents whose value is null (otherwise dropped as `no_score`).
    #[serde(default)]
    pub keep_missing: bool,
}

/// S2L settings (docs/METHODS.md). Exactly one of `fraction`, `count`, `budget_words`,
/// `budget_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S2lConfig {
    /// Column holding each document's loss trajectory (list<float32>, one loss per proxy
    /// checkpoint, in checkpoint order); NaN losses count as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory_column: Option<String>,
    /// Or numeric columns, one per checkpoint in order (e.g. `lm_score` stages run with each
    /// proxy checkpoint), read together as the trajectory. Exactly one of the two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trajectory_columns: Vec<String>,
    /// Number of k-means clusters.
    #[serde(default = "default_s2l_clusters")]
    pub n_clusters: usize,
    /// Lloyd iterations.
    #[serde(default = "default_s2l_iters")]
    pub kmeans_iters: usize,
    /// Clusters smaller than this only fill what the others leave.
    #[serde(default = "default_s2l_min_cluster")]
    pub min_cluster_size: usize,
    /// Keep `round(fraction * pool)` documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Keep this many documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Keep documents while their whitespace tokens stay within this budget, split over the
    /// clusters smallest-first by tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_words: Option<u64>,
    /// The same budget in the `tokenize` stage's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Seed (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stratify by source first (the reference code's behaviour), smallest source first.
    #[serde(default)]
    pub per_source: bool,
}

fn default_s2l_clusters() -> usize {
    100
}
pub(super) fn default_s2l_iters() -> usize {
    20
}
fn default_s2l_min_cluster() -> usize {
    3
}

/// DSIR settings (docs/METHODS.md). Exactly one of `fraction` and `count`.
/// The raw distribution is counted over the documents that pass the per-document stages
/// (before any dedup stage); scores and selection cover the pool after dedup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DsirConfig {
    /// Parquet files, directories or globs of the target corpus.
    pub target_paths: Vec<String>,
    /// Text column of the target corpus.
    #[serde(default = "default_text_column")]
    pub target_text_column: String,
    /// Longest hashed n-gram.
    #[serde(default = "default_dsir_ngrams")]
    pub ngrams: usize,
    /// Number of hash buckets.
    #[serde(default = "default_dsir_buckets")]
    pub num_buckets: usize,
    /// Documents with fewer estimated words are never selected (dropped as `too_short`).
    #[serde(default = "default_dsir_min_length")]
    pub min_example_length: f64,
    /// Pseudo-count added to every target bucket.
    #[serde(default)]
    pub target_laplace_smoothing: f64,
    /// Deterministic top-k instead of Gumbel-top-k sampling.
    #[serde(default)]
    pub top_k: bool,
    /// Keep `round(fraction * pool)` documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Keep this many documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Keep documents, best first, while their whitespace tokens stay within this budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_words: Option<u64>,
    /// Keep documents, best first, while their tokens (the `tokenize` stage's) stay within
    /// this budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Seed of the Gumbel noise (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Split the selection across sources by the smallest-first rule.
    #[serde(default)]
    pub per_source: bool,
}

fn default_dsir_ngrams() -> usize {
    2
}
fn default_dsir_buckets() -> usize {
    10_000
}
fn default_dsir_min_length() -> f64 {
    100.0
}

/// SemDeDup settings (docs/METHODS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemdedupConfig {
    /// Number of k-means clusters (capped at the number of documents).
    pub n_clusters: usize,
    /// Lloyd iterations of the spherical k-means.
    #[serde(default = "default_semdedup_iters")]
    pub kmeans_iters: usize,
    /// A document is removed when its cosine similarity to an earlier one in its cluster is > 1 - eps.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Which member of a near-duplicate group survives: `hard` (farthest from the centroid),
    /// `easy` (nearest) or `random`.
    #[serde(default = "default_keep")]
    pub which_to_keep: gleaner_selectors::semdedup::Keep,
    /// Clusters up to this size are compared exactly (all pairs, in tiles of bounded memory);
    /// larger ones through HNSW (each member against its 32 nearest neighbours).
    #[serde(default = "default_exact_max_cluster")]
    pub exact_max_cluster: usize,
    /// Lloyd iterations run on a seeded sample of at most this many documents per cluster,
    /// then every document is assigned (two passes, as faiss does); 0 = all documents.
    #[serde(default = "default_max_points_per_cluster")]
    pub max_points_per_cluster: usize,
    /// Seed (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_semdedup_iters() -> usize {
    50
}
fn default_eps() -> f64 {
    0.05
}
fn default_keep() -> gleaner_selectors::semdedup::Keep {
    gleaner_selectors::semdedup::Keep::Hard
}
pub(super) fn default_max_points_per_cluster() -> usize {
    256
}
fn default_exact_max_cluster() -> usize {
    100_000
}

/// Size of a random sample: exactly one of `fraction`, `count`, `budget_words`,
/// `budget_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSampleConfig {
    /// Keep `round(fraction * n)` documents, 0 < fraction <= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Keep this many documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Keep documents while their whitespace tokens stay within this budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_words: Option<u64>,
    /// Keep documents while their tokens (the `tokenize` stage's) stay within this budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Seed of this stage (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Split the selection across sources by the smallest-first rule (fraction or count only).
    #[serde(default)]
    pub per_source: bool,
}

/// Selection by a numeric score column of the input: top-k, or Gumbel-top-k sampling with a
/// temperature. Exactly one of `fraction`, `count`, `budget_words`, `budget_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSelectConfig {
    /// Numeric column holding the score (higher is better); rows where it is null are never picked.
    pub score_column: String,
    /// `false`: deterministic top-k; `true`: Gumbel-top-k sampling with `temperature`.
    #[serde(default)]
    pub sample: bool,
    /// Temperature dividing the scores before the Gumbel noise (sampling only).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Keep `round(fraction * n)` documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Keep this many documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Keep documents, best first, while their whitespace tokens stay within this budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_words: Option<u64>,
    /// Keep documents, best first, while their tokens (the `tokenize` stage's) stay within
    /// this budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Seed of the Gumbel noise (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Split the selection across sources by the smallest-first rule (fraction or count only).
    #[serde(default)]
    pub per_source: bool,
    /// Take `fraction` of every source, ranked within the source only (AttentionInfluence's
    /// top fraction per domain); needs `fraction`.
    #[serde(default)]
    pub within_source: bool,
    /// A second numeric column to combine with `score_column` (e.g. a quality classifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combine_with: Option<String>,
    /// How the two combine: `rank_average` (mean of normalised ranks, then select) or
    /// `union` (documents selected by either column alone).
    #[serde(default)]
    pub combine: CombineRule,
}

/// How `score_select` combines two score columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CombineRule {
    /// Average of the normalised ranks (within each source when `within_source`).
    #[default]
    RankAverage,
    /// Union of the two selections made with the same size rule.
    Union,
}

fn default_temperature() -> f64 {
    1.0
}

size_settings!(S2lConfig, RandomSampleConfig, ScoreSelectConfig, DsirConfig);

impl StageSettings for ScoreFilterConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        match (self.min, self.max) {
            (None, None) => bail!("at key `{}`: set `min`, `max` or both", cx.key),
            (Some(lo), Some(hi)) if lo > hi => {
                bail!("at key `{}.min`: {lo} is above max {hi}", cx.key)
            }
            _ => Ok(()),
        }
    }
}

impl StageSettings for S2lConfig {
    fn kind(&self) -> StageKind {
        StageKind::Selector
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        self.size().validate(key, cx.tokenized())?;
        if self.trajectory_column.is_some() != self.trajectory_columns.is_empty() {
            bail!("at key `{key}`: set exactly one of `trajectory_column` (a list column) and `trajectory_columns` (numeric columns, one per checkpoint)");
        }
        positive(key, "n_clusters", self.n_clusters)
    }
}

impl StageSettings for DsirConfig {
    fn kind(&self) -> StageKind {
        StageKind::Selector
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        if self.target_paths.is_empty() {
            bail!("at key `{key}.target_paths`: at least one path is required");
        }
        if self.ngrams == 0 || self.num_buckets == 0 {
            bail!("at key `{key}`: `ngrams` and `num_buckets` must be at least 1");
        }
        self.size().validate(key, cx.tokenized())
    }

    fn aimed_at(&self) -> Vec<AimedAt<'_>> {
        vec![AimedAt {
            key: "target_paths",
            paths: &self.target_paths,
            text_column: &self.target_text_column,
        }]
    }
}

impl StageSettings for SemdedupConfig {
    fn kind(&self) -> StageKind {
        StageKind::Pool
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        if cx.config.embedding_column().is_none() {
            bail!(
                "at key `{}` (semdedup): needs embeddings: an `embed` stage or `input.embedding_column`",
                cx.key
            );
        }
        positive(cx.key, "n_clusters", self.n_clusters)?;
        cx.ratio("eps", Some(self.eps))
    }
}

impl StageSettings for RandomSampleConfig {
    fn kind(&self) -> StageKind {
        StageKind::Selector
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        self.size().validate(cx.key, cx.tokenized())
    }
}

impl StageSettings for ScoreSelectConfig {
    fn kind(&self) -> StageKind {
        StageKind::Selector
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        self.size().validate(key, cx.tokenized())?;
        if self.within_source && (self.fraction.is_none() || self.per_source) {
            bail!("at key `{key}.within_source`: takes `fraction` of every source; it needs `fraction` and excludes `per_source`");
        }
        if self.combine_with.as_deref() == Some(self.score_column.as_str()) {
            bail!("at key `{key}.combine_with`: names the score column itself");
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            bail!("at key `{key}.temperature`: must be above 0");
        }
        Ok(())
    }
}
