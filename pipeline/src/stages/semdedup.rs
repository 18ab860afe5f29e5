//! `semdedup`: spherical k-means over the pool's embeddings, then within each cluster a
//! document is removed when its cosine similarity to a kept one exceeds `1 - eps`
//! (`gleaner_selectors::semdedup`). Records each survivor's cluster and the cluster report.

use super::{Needs, Pool, PoolStage, StageEnv};
use crate::clusters::ClusterSummary;
use crate::config::SemdedupConfig;
use anyhow::Result;
use gleaner_selectors::kmeans::{self, KMeansConfig, Metric};
use gleaner_selectors::semdedup::{semdedup, SemDedupConfig};

/// The semdedup stage of a config, with its resolved seed.
pub struct SemdedupStage {
    config: SemdedupConfig,
    seed: u64,
}

impl SemdedupStage {
    /// The stage of `config`, drawing from `seed`.
    pub fn new(config: &SemdedupConfig, seed: u64) -> Self {
        SemdedupStage {
            config: config.clone(),
            seed,
        }
    }
}

impl PoolStage for SemdedupStage {
    fn needs(&self) -> Needs {
        Needs {
            embeddings: true,
            titles: true,
            ..Needs::default()
        }
    }

    fn apply(&self, pool: &mut Pool<'_>, _: &StageEnv<'_>) -> Result<()> {
        if pool.is_empty() {
            return Ok(());
        }
        let c = &self.config;
        let (data, dim) = pool.embeddings()?;
        let kcfg = KMeansConfig {
            max_iters: c.kmeans_iters,
            metric: Metric::Cosine,
            seed: self.seed,
            ..KMeansConfig::new(c.n_clusters.min(pool.len()).max(1))
        };
        let fit = kmeans::fit_sampled(&data, dim, &kcfg, c.max_points_per_cluster);
        let sd = SemDedupConfig {
            eps: c.eps as f32,
            keep: c.which_to_keep,
            seed: self.seed,
            exact_max_cluster: c.exact_max_cluster,
        };
        let decisions = semdedup(&data, dim, &fit.assignments, &fit.model, &sd);
        let titles: Vec<&str> = (0..pool.len()).map(|i| pool.title(i)).collect();
        let removed: Vec<bool> = decisions.iter().map(|d| d.removed).collect();
        pool.findings.clusters = Some(ClusterSummary::build(
            &data, dim, &fit, &titles, &removed, self.seed,
        ));
        pool.set_clusters(fit.assignments.iter().map(|&a| Some(a)).collect());
        let keep: Vec<bool> = removed.iter().map(|r| !r).collect();
        pool.retain(&keep, "semantic_duplicate");
        Ok(())
    }
}
