//! `random_sample`: a seeded uniform sample of the pool (by fraction, count or word budget,
//! optionally balanced across sources).

use super::selection::{sample_size, Grouping, SelectorStage};
use crate::config::RandomSampleConfig;
use gleaner_selectors::random::RandomSelector;

/// The stage of `c`, drawing from `seed`.
pub fn build(c: &RandomSampleConfig, seed: u64) -> SelectorStage {
    SelectorStage::new(
        sample_size(c.fraction, c.count, c.budget_words),
        Grouping::balanced(c.per_source),
        Box::new(move |size| Box::new(RandomSelector { seed, size })),
    )
}
