//! Settings of the `ngram_classifier` selector.

use super::{AimedAt, StageContext, StageKind, StageSettings};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Keeps the pool documents a hashed n-gram linear classifier, trained target versus pool,
/// scores highest (the DCLM fastText recipe with a linear model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NgramClassifierConfig {
    /// Parquet/JSONL files, directories or globs of the target (positive) documents.
    pub target_paths: Vec<String>,
    /// Text column of the target.
    #[serde(default = "default_text_column")]
    pub target_text_column: String,
    /// Longest word n-gram.
    #[serde(default = "default_ngrams")]
    pub ngrams: usize,
    /// Hash buckets.
    #[serde(default = "default_buckets")]
    pub num_buckets: usize,
    /// Pool documents sampled (seeded) as negatives.
    #[serde(default = "default_max_negatives")]
    pub max_negatives: usize,
    /// Passes of stochastic gradient descent.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// SGD step size.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// L2 penalty.
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Gumbel-top-k sampling by the logits instead of a deterministic top-k.
    #[serde(default)]
    pub sample: bool,
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
    /// Seed of the negatives, the example order and the sampling (default `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Split the selection across sources by the smallest-first rule.
    #[serde(default)]
    pub per_source: bool,
}

fn default_text_column() -> String {
    "text".into()
}
fn default_ngrams() -> usize {
    2
}
fn default_buckets() -> usize {
    1 << 18
}
fn default_max_negatives() -> usize {
    5000
}
fn default_epochs() -> usize {
    5
}
fn default_learning_rate() -> f64 {
    0.1
}
fn default_l2() -> f64 {
    1e-6
}

impl StageSettings for NgramClassifierConfig {
    fn kind(&self) -> StageKind {
        StageKind::Selector
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn aimed_at(&self) -> Vec<AimedAt<'_>> {
        vec![AimedAt {
            key: "target_paths",
            paths: &self.target_paths,
            text_column: &self.target_text_column,
        }]
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        self.size().validate(key, cx.tokenized())?;
        if self.target_paths.is_empty() {
            bail!("at key `{key}.target_paths`: at least one path is required");
        }
        for (name, v) in [
            ("ngrams", self.ngrams),
            ("num_buckets", self.num_buckets),
            ("max_negatives", self.max_negatives),
            ("epochs", self.epochs),
        ] {
            super::positive(key, name, v)?;
        }
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 {
            bail!("at key `{key}.learning_rate`: must be above 0");
        }
        if self.l2 < 0.0 {
            bail!("at key `{key}.l2`: must not be negative");
        }
        Ok(())
    }
}

size_settings!(NgramClassifierConfig);
