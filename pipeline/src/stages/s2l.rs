//! `s2l`: SmallToLarge. k-means over the documents' loss trajectories, then a budget split
//! (documents or tokens) across clusters smallest-first (`gleaner_selectors::s2l`).

use super::selection::{Grouping, SelectorStage};
use super::Trajectories;
use crate::config::S2lConfig;
use gleaner_selectors::s2l::S2lSelector;

/// The stage of `c`, drawing from `seed`.
pub fn build(c: &S2lConfig, seed: u64) -> SelectorStage {
    let (n_clusters, kmeans_iters, min_cluster_size) =
        (c.n_clusters, c.kmeans_iters, c.min_cluster_size);
    let (size, in_tokens) = c.size().sample();
    let mut stage = SelectorStage::new(
        size,
        Grouping::balanced(c.per_source),
        Box::new(move |size| {
            Box::new(S2lSelector {
                n_clusters,
                kmeans_iters,
                min_cluster_size,
                seed,
                size,
            })
        }),
    )
    .with_tokenizer_budget(in_tokens);
    stage.reads_trajectories = true;
    stage.needs.trajectories = Some(match &c.trajectory_column {
        Some(column) => Trajectories::Column(column.clone()),
        None => Trajectories::Columns(c.trajectory_columns.clone()),
    });
    stage
}
