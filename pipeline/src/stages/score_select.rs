//! `score_select`: top-k (or Gumbel-top-k when `sample`) over a numeric column, optionally
//! combined with a second column, over the pool or within each source.

use super::selection::{Grouping, SelectorStage};
use crate::config::ScoreSelectConfig;

/// The stage of `c`, drawing from `seed`.
pub fn build(c: &ScoreSelectConfig, seed: u64) -> SelectorStage {
    let grouping = if c.within_source {
        Grouping::SameFraction
    } else {
        Grouping::balanced(c.per_source)
    };
    let (size, in_tokens) = c.size().sample();
    let mut stage = SelectorStage::by_score(
        "score_select",
        seed,
        size,
        c.sample,
        c.temperature,
        grouping,
        &c.score_column,
    )
    .with_tokenizer_budget(in_tokens);
    stage.needs.columns.push(c.score_column.clone());
    if let Some(second) = &c.combine_with {
        stage.needs.columns.push(second.clone());
        stage.combine = Some((second.clone(), c.combine));
    }
    stage
}
