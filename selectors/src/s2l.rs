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
    /// How many to keep: a fraction, a count, or a token budget.
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

/// Smallest-first allocation of a token budget: [`allocate`]'s rule with each member weighed
/// by its tokens (`tokens[member]`). Clusters with at least `min_size` members are visited by
/// total tokens ascending (ties by cluster order); each is given `remaining / remaining
/// clusters` tokens and is taken whole when it fits, else its members are drawn in a uniform
/// random order while their tokens stay within that share (the first that would exceed it
/// ends the draw). What is left is drawn the same way from the union of the small clusters.
/// The chosen tokens never exceed `budget`. Returns the chosen members.
pub fn allocate_tokens(
    clusters: &[Vec<usize>],
    tokens: &[u64],
    budget: u64,
    min_size: usize,
    rng: &mut SplitMix64,
) -> Vec<usize> {
    let total = |members: &[usize]| -> u64 { members.iter().map(|&m| tokens[m]).sum() };
    let mut order: Vec<usize> = (0..clusters.len())
        .filter(|&c| clusters[c].len() >= min_size)
        .collect();
    order.sort_by_key(|&c| (total(&clusters[c]), c));
    let mut chosen = Vec::new();
    // Members in a uniform random order while their tokens fit in `share`; returns the spent.
    let mut draw = |members: &[usize], share: u64, chosen: &mut Vec<usize>| -> u64 {
        let mut shuffled = members.to_vec();
        rng.shuffle(&mut shuffled);
        let mut spent = 0u64;
        for m in shuffled {
            if spent + tokens[m] > share {
                break;
            }
            spent += tokens[m];
            chosen.push(m);
        }
        spent
    };
    let mut remaining = budget;
    for (visited, &c) in order.iter().enumerate() {
        let share = remaining / (order.len() - visited) as u64;
        let members = &clusters[c];
        let whole = total(members);
        if whole <= share {
            chosen.extend_from_slice(members);
            remaining -= whole;
        } else {
            remaining -= draw(members, share, &mut chosen);
        }
    }
    let mut small: Vec<usize> = (0..clusters.len())
        .filter(|&c| clusters[c].len() < min_size)
        .flat_map(|c| clusters[c].iter().copied())
        .collect();
    small.sort_unstable();
    draw(&small, remaining, &mut chosen);
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
        let chosen = match self.size {
            SampleSize::Fraction(f) => {
                let budget = (f * pool.len() as f64).round() as usize;
                allocate(&clusters, budget, self.min_cluster_size, &mut rng)
            }
            SampleSize::Count(c) => {
                allocate(&clusters, c as usize, self.min_cluster_size, &mut rng)
            }
            SampleSize::Tokens(budget) => {
                let tokens: Vec<u64> = rows.iter().map(|&i| pool[i].tokens).collect();
                allocate_tokens(&clusters, &tokens, budget, self.min_cluster_size, &mut rng)
            }
        };
        chosen
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
    fn token_allocation_follows_the_count_rule_by_weight() {
        // Unit tokens: the same per-cluster numbers as the count rule (5, 10, 15; small untouched).
        let clusters: Vec<Vec<usize>> = vec![
            (0..100).collect(),
            (100..102).collect(),
            (102..112).collect(),
            (112..114).collect(),
            (114..119).collect(),
        ];
        let chosen = allocate_tokens(&clusters, &[1; 119], 30, 3, &mut SplitMix64::new(1));
        let from = |c: &Vec<usize>| chosen.iter().filter(|i| c.contains(i)).count();
        let counts: Vec<usize> = clusters.iter().map(from).collect();
        assert_eq!(counts, vec![15, 0, 10, 0, 5]);
        // Weighted, worked by hand: totals 30, 200, 300 (+ a small cluster of 10), budget 250.
        // Shares: 250/3 = 83 takes cluster 0 whole (30); 220/2 = 110 takes two 50s (100);
        // 120/1 takes one 100; the 20 left takes both small members (10). 240 in all.
        let tokens = [10, 10, 10, 50, 50, 50, 50, 100, 100, 100, 5, 5];
        let clusters = vec![vec![0, 1, 2], vec![3, 4, 5, 6], vec![7, 8, 9], vec![10, 11]];
        let chosen = allocate_tokens(&clusters, &tokens, 250, 3, &mut SplitMix64::new(3));
        let counts: Vec<usize> = clusters
            .iter()
            .map(|c| chosen.iter().filter(|i| c.contains(i)).count())
            .collect();
        assert_eq!(counts, vec![3, 2, 1, 2]);
        assert_eq!(chosen.iter().map(|&m| tokens[m]).sum::<u64>(), 240);
        // Never over budget, whatever the weights.
        let mut rng = SplitMix64::new(7);
        for seed in 0..50 {
            let tokens: Vec<u64> = (0..60).map(|_| 1 + rng.below(400) as u64).collect();
            let clusters: Vec<Vec<usize>> =
                (0..6).map(|c| (c * 10..c * 10 + 10).collect()).collect();
            let budget = 100 + rng.below(5000) as u64;
            let chosen = allocate_tokens(&clusters, &tokens, budget, 3, &mut SplitMix64::new(seed));
            assert!(chosen.iter().map(|&m| tokens[m]).sum::<u64>() <= budget);
        }
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
