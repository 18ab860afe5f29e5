//! Selection methods of gleaner: document filters, deduplication and selectors.
//!
//! Nothing here knows about parquet: filters see text, selectors see a pool of
//! [`PoolDoc`]s and answer with [`Pick`]s.

pub mod attention_influence;
pub mod badwords;
pub mod c4;
pub mod dedup;
pub mod dsir;
pub mod filters;
pub mod fineweb;
pub mod html;
pub mod kmeans;
pub mod language;
pub mod minhash;
pub mod ngram_classifier;
pub mod nn;
pub mod overlap;
pub mod pii;
pub mod quad;
pub mod random;
pub mod rng;
pub mod s2l;
pub mod score;
pub mod semdedup;
pub mod simd;
pub mod text;
pub mod url;

/// What a selector knows about one document of the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolDoc<'a> {
    /// Document id (unique within the pool).
    pub id: &'a str,
    /// Domain / source, when the corpus has one.
    pub source: Option<&'a str>,
    /// Length in tokens (or a proxy such as words) for budgets.
    pub tokens: u64,
    /// A score computed upstream (e.g. DSIR's log importance weight); `None` when the
    /// document has none, which score-based selectors never pick.
    pub score: Option<f64>,
    /// A feature vector (e.g. S2L's loss trajectory), when the selector needs one.
    pub features: Option<&'a [f32]>,
}

/// One kept document: its index in the pool, an optional score and why it was kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Index into the pool slice given to [`Selector::select`].
    pub index: usize,
    /// The score the selector ranked by, if any.
    pub score: Option<f64>,
    /// Short machine-readable reason, e.g. `random_sample`.
    pub reason: &'static str,
}

/// A selection method: given a pool, choose which documents to keep.
///
/// Implementations must be deterministic: the same pool (same ids in the same order) and the
/// same configuration give the same picks, and picks are returned sorted by `index`.
pub trait Selector: Send + Sync {
    /// Name recorded with every pick (e.g. `random`).
    fn name(&self) -> &str;
    /// The seed the selector draws from, recorded for provenance.
    fn seed(&self) -> u64;
    /// Chooses documents from `pool`.
    fn select(&self, pool: &[PoolDoc<'_>]) -> Vec<Pick>;
}

/// Splits `budget` across groups by the S2L rule (docs/METHODS.md): visit
/// groups smallest first; each gets `remaining_budget / remaining_groups`; a group no larger
/// than its quota is taken whole and the unused budget flows to the later, larger groups.
/// Returns the quota per group, in the input order.
pub fn allocate_quotas(group_sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..group_sizes.len()).collect();
    order.sort_by_key(|&g| (group_sizes[g], g));
    let mut quotas = vec![0; group_sizes.len()];
    let mut remaining = budget;
    for (visited, &g) in order.iter().enumerate() {
        let quota = remaining / (group_sizes.len() - visited);
        quotas[g] = group_sizes[g].min(quota);
        remaining -= quotas[g];
    }
    quotas
}

/// The same fraction of every group: `round(fraction * size)` each (AttentionInfluence's
/// top fraction per domain; docs/METHODS.md).
pub fn fraction_quotas(group_sizes: &[usize], fraction: f64) -> Vec<usize> {
    group_sizes
        .iter()
        .map(|&n| ((fraction * n as f64).round() as usize).min(n))
        .collect()
}

#[cfg(test)]
mod quota_tests {
    use super::{allocate_quotas, fraction_quotas};

    #[test]
    fn fraction_quotas_are_per_group() {
        assert_eq!(fraction_quotas(&[100, 10, 5], 0.2), [20, 2, 1]);
        assert_eq!(fraction_quotas(&[2, 0], 1.0), [2, 0]);
    }

    #[test]
    fn smallest_first_allocation_by_hand() {
        // Budget 100 over sizes [50, 5, 30, 200]: 5 taken whole (quota 25), then 95/3 = 31
        // -> 30 taken whole, then 65/2 = 32 -> 32 of 50, then 33 of 200.
        assert_eq!(allocate_quotas(&[50, 5, 30, 200], 100), [32, 5, 30, 33]);
        assert_eq!(
            allocate_quotas(&[3, 3], 10),
            [3, 3],
            "small pools are taken whole"
        );
        assert_eq!(
            allocate_quotas(&[10, 10, 10], 7),
            [2, 2, 3],
            "remainders go to the later groups"
        );
        assert!(allocate_quotas(&[], 5).is_empty());
    }
}
