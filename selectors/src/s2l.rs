//! SmallToLarge (S2L, Yang et al. 2024), as described in docs/METHODS.md:
//! cluster the documents' loss trajectories (one loss per proxy checkpoint) with Euclidean
//! k-means, then allocate the budget over clusters smallest first, so small clusters are
//! taken whole and the selection is balanced rather than proportional.

use crate::kmeans::{fit, KMeansConfig, Metric};
use crate::random::SampleSize;
use crate::rng::SplitMix64;
use crate::{Pick, PoolDoc, Selector};

/// S2L settings.
#[derive(Debug, Clone, PartialEq)]
pub struct S2lSelector {
    /// Number of k-means clusters (capped at the pool size).
    pub n_clusters: usize,
    /// Lloyd iterations.
    pub kmeans_iters: usize,
    /// Clusters smaller than this are only drawn from for what the others leave (spec: 3).
    pub min_cluster_size: usize,
    /// Seed of the clustering and of the uniform draws.
    pub seed: u64,
    /// How many to keep (fraction or count).
    pub size: SampleSize,
}

/// Smallest-first allocation over clusters (spec 3.1 step 4): clusters with at least
/// `min_size` members are visited by size ascending (ties by cluster order) and each gives
/// `remaining / remaining_clusters` members, drawn uniformly, or all of itself when smaller;
/// what is left is drawn uniformly from the union of the small clusters, capped at its size.
/// Returns the chosen members.
pub fn allocate(
    clusters: &[Vec<usize>],
    budget: usize,
    min_size: usize,
    rng: &mut SplitMix64,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..clusters.len())
        .filter(|&c| clusters[c].len() >= min_size)
        .collect();
    order.sort_by_key(|&c| (clusters[c].len(), c));
    let mut remaining = budget;
    let mut chosen = Vec::new();
    for (visited, &c) in order.iter().enumerate() {
        let quota = remaining / (order.len() - visited);
        let members = &clusters[c];
        if members.len() > quota {
            chosen.extend(
                rng.sample_indices(members.len(), quota)
                    .into_iter()
                    .map(|i| members[i]),
            );
            remaining -= quota;
        } else {
            chosen.extend_from_slice(members);
            remaining -= members.len();
        }
    }
    if remaining > 0 {
        let mut small: Vec<usize> = (0..clusters.len())
            .filter(|&c| clusters[c].len() < min_size)
            .flat_map(|c| clusters[c].iter().copied())
            .collect();
        small.sort_unstable();
        let take = remaining.min(small.len());
        chosen.extend(
            rng.sample_indices(small.len(), take)
                .into_iter()
                .map(|i| small[i]),
        );
    }
    chosen.sort_unstable();
    chosen
}

impl Selector for S2lSelector {
    fn name(&self) -> &str {
        "s2l"
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    /// Documents without a trajectory (`features`) are never picked; NaN losses count as 0.
    fn select(&self, pool: &[PoolDoc<'_>]) -> Vec<Pick> {
        let rows: Vec<usize> = (0..pool.len())
            .filter(|&i| pool[i].features.is_some_and(|f| !f.is_empty()))
            .collect();
        if rows.is_empty() {
            return Vec::new();
        }
        let dim = pool[rows[0]].features.map_or(0, <[f32]>::len);
        let mut data = Vec::with_capacity(rows.len() * dim);
        for &i in &rows {
            let f = pool[i].features.expect("filtered above");
            data.extend((0..dim).map(|t| f.get(t).copied().filter(|x| !x.is_nan()).unwrap_or(0.0)));
        }
        let budget = match self.size {
            SampleSize::Fraction(f) => (f * pool.len() as f64).round() as usize,
            SampleSize::Count(c) => c as usize,
            SampleSize::Tokens(_) => unreachable!("S2L budgets are counts or fractions"),
        };
        let k = self.n_clusters.clamp(1, rows.len());
        let config = KMeansConfig {
            max_iters: self.kmeans_iters,
            metric: Metric::Euclidean,
            seed: self.seed,
            ..KMeansConfig::new(k)
        };
        let fitted = fit(&data, dim, &config);
        let mut clusters = vec![Vec::new(); k];
        for (r, &c) in fitted.assignments.iter().enumerate() {
            clusters[c as usize].push(r);
        }
        let mut rng = SplitMix64::new(self.seed ^ 0x5215);
        allocate(&clusters, budget, self.min_cluster_size, &mut rng)
            .into_iter()
            .map(|r| Pick {
                index: rows[r],
                score: None,
                reason: "s2l",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_golden_test() {
        // Kept cluster sizes 5, 10, 100 plus two clusters of size 2 (dropped to the small pool).
        let mut next = 0;
        let mut cluster = |n: usize| -> Vec<usize> {
            let c = (next..next + n).collect();
            next += n;
            c
        };
        let clusters = vec![
            cluster(100),
            cluster(2),
            cluster(10),
            cluster(2),
            cluster(5),
        ];
        let mut rng = SplitMix64::new(1);
        let chosen = allocate(&clusters, 30, 3, &mut rng);
        let from = |c: &Vec<usize>| chosen.iter().filter(|i| c.contains(i)).count();
        assert_eq!(
            (from(&clusters[4]), from(&clusters[2]), from(&clusters[0])),
            (5, 10, 15)
        );
        assert_eq!(
            from(&clusters[1]) + from(&clusters[3]),
            0,
            "the tiny clusters are untouched"
        );
        // Budget 200: 5 + 10 + 100 = 115, then 85 asked of a small pool of 4: capped at 4.
        let chosen = allocate(&clusters, 200, 3, &mut SplitMix64::new(1));
        assert_eq!(chosen.len(), 119);
    }

    #[test]
    fn planted_trajectories_are_recovered_and_the_budget_is_balanced() {
        let t = 12;
        let proto = |g: usize, step: usize| -> f32 {
            let x = step as f32 / (t - 1) as f32;
            match g {
                0 => 3.0 * (-4.0 * x).exp(), // fast decrease
                1 => 3.0 - 1.5 * x,          // slow decrease
                _ => 2.0,                    // flat
            }
        };
        let mut rng = SplitMix64::new(9);
        let (mut ids, mut feats, mut labels) = (vec![], vec![], vec![]);
        for (g, n) in [(0usize, 1000usize), (1, 100), (2, 10)] {
            for i in 0..n {
                ids.push(format!("g{g}-{i}"));
                feats.push(
                    (0..t)
                        .map(|s| proto(g, s) + 0.01 * (rng.next_f64() as f32 * 2.0 - 1.0))
                        .collect::<Vec<f32>>(),
                );
                labels.push(g);
            }
        }
        // A NaN loss counts as 0 and does not break clustering.
        feats[5][3] = f32::NAN;
        let pool: Vec<PoolDoc<'_>> = ids
            .iter()
            .zip(&feats)
            .map(|(id, f)| PoolDoc {
                id,
                source: None,
                tokens: 0,
                score: None,
                features: Some(f),
            })
            .collect();
        let sel = S2lSelector {
            n_clusters: 3,
            kmeans_iters: 20,
            min_cluster_size: 3,
            seed: 0,
            size: SampleSize::Count(30),
        };
        let picks = sel.select(&pool);
        let per_group = |g: usize| picks.iter().filter(|p| labels[p.index] == g).count();
        assert_eq!(
            (per_group(0), per_group(1), per_group(2)),
            (10, 10, 10),
            "balanced, not proportional"
        );
    }
}
