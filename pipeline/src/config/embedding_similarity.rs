//! Settings of the `embedding_similarity` selector.

use super::{AimedAt, StageContext, StageKind, StageSettings};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// How a document's similarity to the target is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityRule {
    /// Cosine with the normalised mean of the target's normalised embeddings.
    #[default]
    Centroid,
    /// Highest cosine with any target document.
    Max,
}

/// Keeps the pool documents whose embeddings are most similar to a target's, embedded with
/// the pipeline's `embed` stage model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSimilarityConfig {
    /// Parquet/JSONL files, directories or globs of the target documents.
    pub target_paths: Vec<String>,
    /// Text column of the target.
    #[serde(default = "default_text_column")]
    pub target_text_column: String,
    /// `centroid` or `max`.
    #[serde(default)]
    pub similarity: SimilarityRule,
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
    /// Split the selection across sources by the smallest-first rule.
    #[serde(default)]
    pub per_source: bool,
}

fn default_text_column() -> String {
    "text".into()
}

impl StageSettings for EmbeddingSimilarityConfig {
    fn kind(&self) -> StageKind {
        StageKind::Selector
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
        let has_embed_stage = cx.after(|s| matches!(s, super::StageConfig::Embed(_)));
        self.size().validate(key, cx.tokenized())?;
        if !has_embed_stage {
            bail!("at key `{key}` (embedding_similarity): embeds the target with the `embed` stage's model; add an `embed` stage before it");
        }
        if self.target_paths.is_empty() {
            bail!("at key `{key}.target_paths`: at least one path is required");
        }
        Ok(())
    }
}

size_settings!(EmbeddingSimilarityConfig);
