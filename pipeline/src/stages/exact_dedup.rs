//! `exact_dedup`: drops documents whose normalised text hashes like an earlier one's; the
//! first occurrence in corpus order is kept. Hashes are computed in the map phase.

use super::{Pool, PoolStage, StageEnv};
use anyhow::Result;
use gleaner_selectors::dedup::{ExactDedup, Normalization};

/// The exact dedup stage with its text normalisation.
pub struct ExactDedupStage(pub Normalization);

impl PoolStage for ExactDedupStage {
    fn words_per_document(&self) -> usize {
        2
    }

    fn map_document(&self, text: &str, out: &mut Vec<u64>) {
        let h = self.0.hash(text);
        out.extend([h as u64, (h >> 64) as u64]);
    }

    fn apply(&self, pool: &mut Pool<'_>, _: &StageEnv<'_>) -> Result<()> {
        let mut seen = ExactDedup::default();
        let keep: Vec<bool> = (0..pool.len())
            .map(|i| {
                let w = pool.stage_words(i);
                !seen.is_duplicate(u128::from(w[0]) | (u128::from(w[1]) << 64))
            })
            .collect();
        pool.retain(&keep, "duplicate");
        Ok(())
    }
}
