//! Quad's selection (spec 1.5): k-means clusters of the pool's embeddings are the bandit's
//! arms; each cluster gets one seeded random order; the `n`-th pull of an arm probes
//! positions `[n b, (n + 1) b)` of that order, and each accepted block is the arm's next
//! unselected documents in that order (`[c B, (c + 1) B)` for the `c`-th block under the
//! fixed rule: "accepted block = next B unselected documents"). The block accepted last is
//! cut so the selection meets the budget exactly (in documents; in tokens, up to the
//! document that reaches it).
//!
//! The probe scorer is the caller's: it maps pool indices to influence scores `q`, so this
//! module needs no model and no files.

use super::bandit::{neighbors_within, BanditConfig, Pull, QuadBandit};
use crate::kmeans::{fit_sampled, normalize, KMeansConfig, Metric};
use crate::rng::SplitMix64;
use std::collections::BTreeMap;

/// Clustering and bandit settings of a Quad selection.
#[derive(Debug, Clone, PartialEq)]
pub struct QuadSettings {
    /// Number of k-means clusters (capped at the pool size).
    pub n_clusters: usize,
    /// Lloyd iterations of the spherical k-means.
    pub kmeans_iters: usize,
    /// Lloyd iterations run on a sample of at most this many documents per cluster; 0 = all.
    pub max_points_per_cluster: usize,
    /// Neighbour radius γ: clusters whose centroids are at cosine distance below it share
    /// rewards.
    pub neighbor_radius: f64,
    /// The bandit; its budget counts documents, or tokens when `tokens` are given to
    /// [`select`].
    pub bandit: BanditConfig,
    /// Seed of the clustering and of the cluster orders.
    pub seed: u64,
}

/// One selected document and why.
#[derive(Debug, Clone, PartialEq)]
pub struct QuadPick {
    /// Index into the pool.
    pub index: usize,
    /// Its cluster (arm).
    pub cluster: u32,
    /// Round of the pull that accepted its block.
    pub round: usize,
    /// The arm's Cluster Score when that pull was chosen.
    pub arm_score: f64,
    /// That pull's mean probe score `q` (its reward plus τ).
    pub pull_score: f64,
    /// The document's own `q`, when it was probed.
    pub probe_score: Option<f64>,
}

/// One cluster's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOutcome {
    /// Documents in the cluster.
    pub size: usize,
    /// Times pulled.
    pub pulls: usize,
    /// Accepted blocks.
    pub accepted_blocks: usize,
    /// Documents selected (after the final cut).
    pub selected: usize,
}

/// Everything a Quad selection decided.
#[derive(Debug, Clone, PartialEq)]
pub struct QuadSelection {
    /// Selected documents, by pool index.
    pub picks: Vec<QuadPick>,
    /// Every pull in order.
    pub pulls: Vec<Pull>,
    /// Cluster of every pool document.
    pub assignments: Vec<u32>,
    /// Per cluster.
    pub clusters: Vec<ClusterOutcome>,
    /// Probed documents and their `q`, in probe order.
    pub probes: Vec<(usize, f64)>,
    /// Documents (or tokens) selected.
    pub selected_amount: u64,
    /// τ as used: the given one, or the one set from the first probes.
    pub reward_offset: f64,
    /// Whether the budget was met (otherwise the rounds ran out or every arm was exhausted).
    pub budget_reached: bool,
}

/// Runs Quad over a pool of `embeddings` (`dim` values per document, any norm). `tokens`
/// (one per document), when given, make the budget count tokens. `score(docs, accepted)`
/// returns the influence `q` of each listed pool document; it is called once per round with
/// the probe documents of all arms pulled in that round and the amount accepted so far.
pub fn select<E>(
    embeddings: &[f32],
    dim: usize,
    tokens: Option<&[u64]>,
    settings: &QuadSettings,
    mut score: impl FnMut(&[usize], u64) -> Result<Vec<f64>, E>,
) -> Result<QuadSelection, E> {
    let n = embeddings.len().checked_div(dim).unwrap_or(0);
    if n == 0 {
        return Ok(QuadSelection {
            picks: Vec::new(),
            pulls: Vec::new(),
            assignments: Vec::new(),
            clusters: Vec::new(),
            probes: Vec::new(),
            selected_amount: 0,
            reward_offset: 0.0,
            budget_reached: settings.bandit.budget == 0,
        });
    }
    let mut unit = embeddings.to_vec();
    unit.chunks_mut(dim).for_each(normalize);
    let kmeans = KMeansConfig {
        max_iters: settings.kmeans_iters,
        metric: Metric::Cosine,
        seed: settings.seed,
        ..KMeansConfig::new(settings.n_clusters.clamp(1, n))
    };
    let fitted = fit_sampled(&unit, dim, &kmeans, settings.max_points_per_cluster);
    let k = fitted.model.k();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &c) in fitted.assignments.iter().enumerate() {
        members[c as usize].push(i);
    }
    // One seeded order per cluster (members start in pool order, so the order depends only
    // on the pool and the seed).
    let mut rng = SplitMix64::new(settings.seed ^ 0x0_0AD5);
    for m in &mut members {
        rng.shuffle(m);
    }
    let neighbors = neighbors_within(&fitted.model.centroids, dim, settings.neighbor_radius);
    let sizes: Vec<usize> = members.iter().map(Vec::len).collect();
    let mut bandit = QuadBandit::new(
        settings.bandit.clone(),
        sizes.clone(),
        neighbors,
        settings.neighbor_radius,
    );
    if let Some(tokens) = tokens {
        bandit = bandit.with_document_tokens(
            members
                .iter()
                .map(|m| m.iter().map(|&i| tokens[i]).collect())
                .collect(),
        );
    }
    let b = settings.bandit.probe_size;
    let mut probes: Vec<(usize, f64)> = Vec::new();
    let pulls = bandit.run(|requests, accepted| {
        let docs: Vec<Vec<usize>> = requests
            .iter()
            .map(|&(arm, pull)| {
                let order = &members[arm];
                order[(pull * b).min(order.len())..((pull + 1) * b).min(order.len())].to_vec()
            })
            .collect();
        let flat: Vec<usize> = docs.iter().flatten().copied().collect();
        let scores = score(&flat, accepted)?;
        assert_eq!(scores.len(), flat.len(), "one score per probe document");
        probes.extend(flat.iter().copied().zip(scores.iter().copied()));
        let mut at = 0;
        Ok(docs
            .iter()
            .map(|d| {
                let s = &scores[at..at + d.len()];
                at += d.len();
                if s.is_empty() {
                    0.0
                } else {
                    s.iter().sum::<f64>() / s.len() as f64
                }
            })
            .collect())
    })?;
    let budget_reached = bandit.accepted_amount() >= settings.bandit.budget;
    let probe_of: BTreeMap<usize, f64> = probes.iter().copied().collect();
    let tau = bandit.reward_offset().unwrap_or(0.0);
    let last_accepted = pulls.iter().rposition(|p| p.accepted);
    let mut taken = vec![0usize; k];
    let mut picks = Vec::new();
    let mut amount = 0u64;
    for (i, pull) in pulls.iter().enumerate().filter(|(_, p)| p.accepted) {
        let start = taken[pull.arm];
        taken[pull.arm] += pull.block;
        let mut docs = &members[pull.arm][start..start + pull.block];
        if budget_reached && Some(i) == last_accepted {
            // Cut the final block to what the budget still needs.
            let needed = settings.bandit.budget - amount;
            let mut keep = 0;
            let mut got = 0u64;
            while got < needed && keep < docs.len() {
                got += tokens.map_or(1, |t| t[docs[keep]]);
                keep += 1;
            }
            docs = &docs[..keep];
        }
        for &index in docs {
            amount += tokens.map_or(1, |t| t[index]);
            picks.push(QuadPick {
                index,
                cluster: pull.arm as u32,
                round: pull.round,
                arm_score: pull.score,
                pull_score: pull.reward + tau,
                probe_score: probe_of.get(&index).copied(),
            });
        }
    }
    picks.sort_by_key(|p| p.index);
    let mut clusters: Vec<ClusterOutcome> = (0..k)
        .map(|c| ClusterOutcome {
            size: sizes[c],
            pulls: bandit.pulls()[c],
            accepted_blocks: bandit.accepted_blocks()[c],
            selected: 0,
        })
        .collect();
    for p in &picks {
        clusters[p.cluster as usize].selected += 1;
    }
    Ok(QuadSelection {
        picks,
        pulls,
        assignments: fitted.assignments,
        clusters,
        probes,
        selected_amount: amount,
        reward_offset: tau,
        budget_reached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quad::bandit::{BlockRule, RewardOffset};

    /// Three well-separated groups of documents on the axes of a 3-D space.
    fn three_groups(per_group: usize) -> Vec<f32> {
        let mut e = Vec::new();
        for g in 0..3 {
            for i in 0..per_group {
                let mut v = [0.01 * (i % 7) as f32; 3];
                v[g] = 1.0;
                e.extend_from_slice(&v);
            }
        }
        e
    }

    fn settings(budget: u64, block: usize) -> QuadSettings {
        QuadSettings {
            n_clusters: 3,
            kmeans_iters: 20,
            max_points_per_cluster: 0,
            neighbor_radius: 0.2,
            bandit: BanditConfig {
                alpha: 1e-4,
                reward_offset: RewardOffset::Fixed(0.0),
                block_rule: BlockRule::Fixed,
                probe_size: 2,
                arms_per_round: 1,
                block_size: block,
                max_rounds: 50,
                budget,
                init_policy: Default::default(),
            },
            seed: 7,
        }
    }

    /// The group (0, 1, 2) a pool index belongs to with `per_group` documents each.
    fn group(i: usize, per_group: usize) -> usize {
        i / per_group
    }

    #[test]
    fn blocks_come_from_the_rewarded_group_and_meet_the_budget_exactly() {
        // Only group 1's documents score positive: every accepted block is group 1's, and a
        // budget of 25 with blocks of 10 takes 10 + 10 + 5 (the last block cut).
        let e = three_groups(40);
        let q = |i: usize| if group(i, 40) == 1 { 0.5 } else { -0.5 };
        let sel = select(&e, 3, None, &settings(25, 10), |docs, _| {
            Ok::<_, ()>(docs.iter().map(|&i| q(i)).collect())
        })
        .unwrap();
        assert!(sel.budget_reached);
        assert_eq!(sel.picks.len(), 25);
        assert_eq!(sel.selected_amount, 25);
        assert!(sel.picks.iter().all(|p| group(p.index, 40) == 1));
        // Clusters are the groups: one cluster holds every selected document.
        let cluster = sel.picks[0].cluster;
        assert!(sel.picks.iter().all(|p| p.cluster == cluster));
        assert_eq!(sel.clusters[cluster as usize].size, 40);
        assert_eq!(sel.clusters[cluster as usize].accepted_blocks, 3);
        assert_eq!(sel.clusters[cluster as usize].selected, 25);
        // Each pick's pull score is its pull's mean probe score; probed picks carry their own.
        assert!(sel.picks.iter().all(|p| p.pull_score == 0.5));
        let probed: Vec<_> = sel.picks.iter().filter_map(|p| p.probe_score).collect();
        assert!(!probed.is_empty() && probed.iter().all(|&s| s == 0.5));
        // Every probe document is scored once, and each pull probed b = 2 documents.
        assert_eq!(sel.probes.len(), 2 * sel.pulls.len());
    }

    #[test]
    fn probes_and_blocks_follow_one_order_per_cluster() {
        // Block c and probe n of an arm are windows of the same seeded order: the first
        // accepted block contains the first pull's probe documents.
        let e = three_groups(30);
        let sel = select(&e, 3, None, &settings(10, 10), |docs, _| {
            Ok::<_, ()>(vec![0.1; docs.len()])
        })
        .unwrap();
        assert_eq!(sel.pulls.len(), 1);
        let first_probe: Vec<usize> = sel.probes.iter().map(|p| p.0).collect();
        let picked: Vec<usize> = sel.picks.iter().map(|p| p.index).collect();
        assert!(first_probe.iter().all(|i| picked.contains(i)));
        // The same settings give the same selection; another seed another order.
        let again = select(&e, 3, None, &settings(10, 10), |docs, _| {
            Ok::<_, ()>(vec![0.1; docs.len()])
        })
        .unwrap();
        assert_eq!(again, sel);
        let mut other = settings(10, 10);
        other.seed = 8;
        let moved = select(&e, 3, None, &other, |docs, _| {
            Ok::<_, ()>(vec![0.1; docs.len()])
        })
        .unwrap();
        assert_ne!(
            moved.picks.iter().map(|p| p.index).collect::<Vec<_>>(),
            picked
        );
    }

    #[test]
    fn a_token_budget_stops_at_the_document_that_reaches_it() {
        // Every document holds 3 tokens: a budget of 20 tokens with blocks of 4 documents
        // (12 tokens) accepts two blocks and keeps 7 documents (21 tokens).
        let e = three_groups(20);
        let tokens = vec![3u64; 60];
        let sel = select(&e, 3, Some(&tokens), &settings(20, 4), |docs, _| {
            Ok::<_, ()>(vec![0.2; docs.len()])
        })
        .unwrap();
        assert_eq!(sel.picks.len(), 7);
        assert_eq!(sel.selected_amount, 21);
        assert!(sel.budget_reached);
    }

    #[test]
    fn unreachable_budgets_and_empty_pools_are_reported() {
        let e = three_groups(5);
        // Blocks of 10 exceed every cluster: nothing can be accepted.
        let sel = select(&e, 3, None, &settings(10, 10), |docs, _| {
            Ok::<_, ()>(vec![1.0; docs.len()])
        })
        .unwrap();
        assert!(!sel.budget_reached && sel.picks.is_empty() && sel.pulls.is_empty());
        let empty = select(&[], 3, None, &settings(10, 10), |_, _| {
            Ok::<_, ()>(Vec::new())
        })
        .unwrap();
        assert!(empty.picks.is_empty() && !empty.budget_reached);
    }
}
