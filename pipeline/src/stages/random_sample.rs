//! `random_sample`: a seeded uniform sample of the pool (by fraction, count, or a budget of
//! whitespace or tokenizer tokens; optionally balanced across sources).

use super::selection::{Grouping, SelectorStage};
use crate::config::RandomSampleConfig;
use gleaner_selectors::random::RandomSelector;

/// The stage of `c`, drawing from `seed`.
pub fn build(c: &RandomSampleConfig, seed: u64) -> SelectorStage {
    let (size, in_tokens) = c.size().sample();
    SelectorStage::new(
        size,
        Grouping::balanced(c.per_source),
        Box::new(move |size| Box::new(RandomSelector { seed, size })),
    )
    .with_tokenizer_budget(in_tokens)
}
