//! Settings of the `minhash_dedup` stage.

use super::{StageContext, StageKind, StageSettings};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Near-duplicate removal with MinHash and LSH bands (defaults: the FineWeb recipe, 5-word
/// shingles, 14 bands of 8 rows, a detection threshold near Jaccard 0.75).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinhashDedupConfig {
    /// Words per shingle.
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// LSH bands.
    #[serde(default = "default_bands")]
    pub bands: usize,
    /// Signature rows per band.
    #[serde(default = "default_rows")]
    pub rows_per_band: usize,
    /// Seed of the hash functions (default `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// An existing corpus (files, directories or globs): documents near-duplicate to one of
    /// its documents are dropped as `near_duplicate_existing`; it is not deduplicated itself.
    /// Its band hashes are cached under `run.cache_dir`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub against: Vec<String>,
    /// Text column of the `against` corpus.
    #[serde(default = "default_text_column")]
    pub against_text_column: String,
}

fn default_ngram() -> usize {
    5
}
fn default_bands() -> usize {
    14
}
fn default_rows() -> usize {
    8
}
fn default_text_column() -> String {
    "text".into()
}

impl StageSettings for MinhashDedupConfig {
    fn kind(&self) -> StageKind {
        StageKind::Pool
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        for (name, v) in [
            ("ngram", self.ngram),
            ("bands", self.bands),
            ("rows_per_band", self.rows_per_band),
        ] {
            super::positive(key, name, v)?;
        }
        Ok(())
    }
}
