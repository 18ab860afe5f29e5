//! Quad: proxy, influence, clustering and bandit settings.

use super::*;
use gleaner_selectors::quad::bandit::{BlockRule, RewardOffset};

/// Which linear layers of each chosen decoder layer Quad compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QuadProjectionsConfig {
    /// `q_proj`, `k_proj`, `v_proj`, `o_proj`.
    #[default]
    Attention,
    /// The attention projections and `gate_proj`, `up_proj`, `down_proj`.
    AttentionMlp,
}

/// How Quad preconditions the reference gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CurvatureConfig {
    /// None: plain gradient cosines (LESS/TracIn-style).
    Identity,
    /// K-FAC `(S ⊗ A + λI)⁻¹`.
    Kfac,
    /// Eigenvalue-corrected K-FAC (the paper's).
    #[default]
    Ekfac,
}

/// Settings of the `quad` selector (docs/METHODS.md). Defaults are the released code's
/// constants except where a CPU needs smaller numbers: the number of
/// clusters and the block size depend on the pool and must be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadConfig {
    /// Llama-family proxy model folder.
    pub model: String,
    /// `cpu`, `gpu` (Vulkan) or `cuda`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Parquet files, directories or globs of the reference set D_r.
    pub reference_paths: Vec<String>,
    /// Text column of the reference (and fit) files.
    #[serde(default = "default_text_column")]
    pub reference_text_column: String,
    /// Reference documents used at most (the first ones in file order).
    #[serde(default = "default_quad_reference_documents")]
    pub reference_max_documents: usize,
    /// Files the curvature factors are fitted on (default: the reference set, as the
    /// released code does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fit_paths: Vec<String>,
    /// Fit documents used at most.
    #[serde(default = "default_quad_reference_documents")]
    pub fit_max_documents: usize,
    /// Decoder layers (from 0) whose linear layers are compared; default: the last two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<usize>,
    /// `attention` or `attention_mlp`.
    #[serde(default)]
    pub projections: QuadProjectionsConfig,
    /// `identity`, `kfac` or `ekfac`.
    #[serde(default)]
    pub curvature: CurvatureConfig,
    /// Damping λ.
    #[serde(default = "default_quad_damping")]
    pub damping: f64,
    /// Rademacher projection width k (spec: 8192); 0 compares the exact gradients.
    #[serde(default)]
    pub proj_dim: usize,
    /// Projection seed.
    #[serde(default)]
    pub proj_seed: u64,
    /// Window length in tokens.
    #[serde(default = "default_quad_window_len")]
    pub window_len: usize,
    /// Distance between window starts.
    #[serde(default = "default_quad_window_stride")]
    pub window_stride: usize,
    /// Shortest trailing window kept.
    #[serde(default = "default_quad_min_window_len")]
    pub min_window_len: usize,
    /// Tokens of a document considered at most.
    #[serde(default = "default_quad_max_doc_tokens")]
    pub max_doc_tokens: usize,
    /// Windows of a probed document scored at most (evenly spaced over its windows).
    #[serde(default = "default_quad_max_windows")]
    pub max_windows: usize,
    /// Score of a document too short for a window.
    #[serde(default)]
    pub empty_doc_score: f64,
    /// Number of k-means clusters (bandit arms; capped at the pool size).
    pub n_clusters: usize,
    /// Lloyd iterations of the spherical k-means.
    #[serde(default = "default_s2l_iters")]
    pub kmeans_iters: usize,
    /// Lloyd iterations on a sample of at most this many documents per cluster; 0 = all.
    #[serde(default = "default_max_points_per_cluster")]
    pub max_points_per_cluster: usize,
    /// Neighbour radius γ (cosine distance of centroids).
    #[serde(default = "default_quad_radius")]
    pub neighbor_radius: f64,
    /// Exploration weight α.
    #[serde(default = "default_quad_alpha")]
    pub alpha: f64,
    /// Reward offset τ (the paper: 0.002). At most one of `reward_offset`,
    /// `reward_offset_quantile` and `reward_offset_coverage`; with none, τ is set from the data
    /// with `reward_offset_coverage = 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_offset: Option<f64>,
    /// τ from the data: this quantile of every cluster's first probe mean (0.5: a pull is
    /// accepted when its probes beat the median cluster's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_offset_quantile: Option<f64>,
    /// τ from the data: clusters ranked by their first probe mean are taken, best first,
    /// until they hold this many times the budget; τ lies between the last taken and the
    /// first left out (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_offset_coverage: Option<f64>,
    /// `fixed` (the paper: `block_size` documents per positive pull) or `proportional`
    /// (`block_size x reward / mean positive reward`, between 1 and `4 x block_size`).
    #[serde(default, skip_serializing_if = "is_fixed_blocks")]
    pub block_rule: BlockRule,
    /// Probe documents per pull (b).
    #[serde(default = "default_quad_probe_size")]
    pub probe_size: usize,
    /// Arms pulled per round (M).
    #[serde(default = "default_quad_arms")]
    pub arms_per_round: usize,
    /// Documents accepted per positive pull (B).
    pub block_size: usize,
    /// Rounds at most.
    #[serde(default = "default_quad_rounds")]
    pub max_rounds: usize,
    /// Budget in documents (exactly one of the two budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_docs: Option<u64>,
    /// Budget in tokens of the proxy model's tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Seed of the clustering and the cluster orders (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `index_order` (the released code's round 0) or `all_once` (every cluster probed once
    /// before any is probed again).
    #[serde(default, skip_serializing_if = "is_index_order")]
    pub init_policy: InitPolicy,
}

fn is_index_order(p: &InitPolicy) -> bool {
    *p == InitPolicy::IndexOrder
}

fn is_fixed_blocks(r: &BlockRule) -> bool {
    *r == BlockRule::Fixed
}

fn default_quad_reference_documents() -> usize {
    64
}
fn default_quad_damping() -> f64 {
    1e-3
}
fn default_quad_window_len() -> usize {
    1024
}
fn default_quad_window_stride() -> usize {
    1023
}
fn default_quad_min_window_len() -> usize {
    512
}
fn default_quad_max_doc_tokens() -> usize {
    20_480
}
fn default_quad_radius() -> f64 {
    0.2
}
fn default_quad_alpha() -> f64 {
    1e-4
}
fn default_quad_max_windows() -> usize {
    8
}
fn default_quad_probe_size() -> usize {
    10
}
fn default_quad_arms() -> usize {
    50
}
fn default_quad_rounds() -> usize {
    200
}

impl QuadConfig {
    /// How τ is set: given, a quantile, or the coverage rule (the default, 2 budgets).
    pub fn reward_offset_rule(&self) -> RewardOffset {
        match (
            self.reward_offset,
            self.reward_offset_quantile,
            self.reward_offset_coverage,
        ) {
            (Some(tau), _, _) => RewardOffset::Fixed(tau),
            (_, Some(q), _) => RewardOffset::Quantile(q),
            (_, _, coverage) => RewardOffset::Coverage(coverage.unwrap_or(2.0)),
        }
    }
}

impl StageSettings for QuadConfig {
    fn kind(&self) -> StageKind {
        StageKind::Selector
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn aimed_at(&self) -> Vec<AimedAt<'_>> {
        let mut v = vec![AimedAt {
            key: "reference_paths",
            paths: &self.reference_paths,
            text_column: &self.reference_text_column,
        }];
        if !self.fit_paths.is_empty() {
            v.push(AimedAt {
                key: "fit_paths",
                paths: &self.fit_paths,
                text_column: &self.reference_text_column,
            });
        }
        v
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        if cx.config.embedding_column().is_none() {
            bail!("at key `{key}` (quad): clusters embeddings: add an `embed` stage or set `input.embedding_column`");
        }
        device(key, &self.device)?;
        if self.reference_paths.is_empty() {
            bail!("at key `{key}.reference_paths`: at least one path is required");
        }
        for (name, v) in [
            ("reference_max_documents", self.reference_max_documents),
            ("fit_max_documents", self.fit_max_documents),
            ("window_stride", self.window_stride),
            ("min_window_len", self.min_window_len),
            ("n_clusters", self.n_clusters),
            ("probe_size", self.probe_size),
            ("arms_per_round", self.arms_per_round),
            ("block_size", self.block_size),
            ("max_rounds", self.max_rounds),
            ("max_windows", self.max_windows),
        ] {
            positive(key, name, v)?;
        }
        if self.window_len < 2 {
            bail!("at key `{key}.window_len`: must be at least 2 (a loss needs two tokens)");
        }
        if self.min_window_len > self.window_len {
            bail!(
                "at key `{key}.min_window_len`: {} is above window_len {}",
                self.min_window_len,
                self.window_len
            );
        }
        if self.probe_size > self.block_size {
            bail!(
                "at key `{key}.probe_size`: {} is above block_size {} (probes are drawn from the documents a block could accept)",
                self.probe_size,
                self.block_size
            );
        }
        if self.damping.is_nan()
            || self.damping <= 0.0 && self.curvature != CurvatureConfig::Identity
        {
            bail!("at key `{key}.damping`: must be above 0");
        }
        if !(self.neighbor_radius >= 0.0 && self.neighbor_radius <= 2.0) {
            bail!(
                "at key `{key}.neighbor_radius`: {} is outside [0, 2] (cosine distance)",
                self.neighbor_radius
            );
        }
        if self.alpha.is_nan()
            || self.alpha < 0.0
            || self.reward_offset.is_some_and(|t| !t.is_finite())
            || !self.empty_doc_score.is_finite()
        {
            bail!("at key `{key}`: `alpha` must be at least 0, `reward_offset` and `empty_doc_score` finite");
        }
        let offsets = [
            self.reward_offset.is_some(),
            self.reward_offset_quantile.is_some(),
            self.reward_offset_coverage.is_some(),
        ];
        if offsets.iter().filter(|set| **set).count() > 1 {
            bail!("at key `{key}`: set at most one of `reward_offset`, `reward_offset_quantile` and `reward_offset_coverage`");
        }
        if let Some(q) = self.reward_offset_quantile {
            if !(0.0..=1.0).contains(&q) {
                bail!("at key `{key}.reward_offset_quantile`: {q} is outside [0, 1]");
            }
        }
        if let Some(c) = self.reward_offset_coverage {
            if !(c > 0.0 && c.is_finite()) {
                bail!("at key `{key}.reward_offset_coverage`: {c} must be above 0");
            }
        }
        match (self.budget_docs, self.budget_tokens) {
            (Some(0), None) | (None, Some(0)) => {
                bail!("at key `{key}`: the budget must be at least 1")
            }
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => bail!("at key `{key}`: set exactly one of `budget_docs` and `budget_tokens`"),
        }
    }
}
