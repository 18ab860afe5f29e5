//! Seeded random selection: an exact-size uniform sample drawn without replacement.
//!
//! Each document gets the key `u = hash(seed, id)` mapped to [0, 1); the sample is the
//! `k` documents with the smallest keys (ties by pool order). Keys depend only on the seed
//! and the id, so the sample is the same whatever the thread count or file sharding.

use crate::{Pick, PoolDoc, Selector};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// How many documents a selector keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleSize {
    /// `round(fraction * pool size)` documents.
    Fraction(f64),
    /// Exactly this many (or the whole pool if smaller).
    Count(u64),
    /// Documents in selection order while their tokens stay within the budget: the kept
    /// tokens never exceed it (the first document that would is not taken, nor any after it).
    Tokens(u64),
}

impl SampleSize {
    /// How many of `ranked` (documents in selection order, given by their token counts) to
    /// keep out of a pool of `pool_len`: a fraction of the pool, a count, or the longest prefix
    /// whose tokens stay within the budget; never more than ranked.
    pub fn take(&self, pool_len: usize, ranked: impl ExactSizeIterator<Item = u64>) -> usize {
        let available = ranked.len();
        match *self {
            SampleSize::Fraction(f) => ((f * pool_len as f64).round() as usize).min(available),
            SampleSize::Count(c) => (c as usize).min(available),
            SampleSize::Tokens(budget) => {
                let mut total = 0u64;
                ranked
                    .take_while(|&t| {
                        total += t;
                        total <= budget
                    })
                    .count()
            }
        }
    }
}

/// Uniform random sample of a given size.
#[derive(Debug, Clone)]
pub struct RandomSelector {
    /// Seed of the per-document keys.
    pub seed: u64,
    /// How many to keep.
    pub size: SampleSize,
}

/// Uniform key in [0, 1) of document `id` under `seed`.
pub fn uniform_key(seed: u64, id: &str) -> f64 {
    (xxh3_64_with_seed(id.as_bytes(), seed) >> 11) as f64 / (1u64 << 53) as f64
}

impl Selector for RandomSelector {
    fn name(&self) -> &str {
        "random"
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn select(&self, pool: &[PoolDoc<'_>]) -> Vec<Pick> {
        let mut order: Vec<(f64, usize)> = pool
            .iter()
            .enumerate()
            .map(|(i, d)| (uniform_key(self.seed, d.id), i))
            .collect();
        // Keys tie-broken by pool index are all distinct: an unstable sort gives the one order.
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let take = self
            .size
            .take(pool.len(), order.iter().map(|&(_, i)| pool[i].tokens));
        let mut picks: Vec<Pick> = order[..take]
            .iter()
            .map(|&(u, index)| Pick {
                index,
                score: Some(u),
                reason: "random_sample",
            })
            .collect();
        picks.sort_unstable_by_key(|p| p.index);
        picks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(ids: &[String]) -> Vec<PoolDoc<'_>> {
        ids.iter()
            .map(|id| PoolDoc {
                id,
                source: None,
                tokens: 10,
                score: None,
                features: None,
            })
            .collect()
    }

    #[test]
    fn exact_size_and_smallest_keys_by_brute_force() {
        let ids: Vec<String> = (0..1000).map(|i| format!("doc{i}")).collect();
        let p = pool(&ids);
        let sel = RandomSelector {
            seed: 7,
            size: SampleSize::Fraction(0.25),
        };
        let picks = sel.select(&p);
        assert_eq!(picks.len(), 250);
        // Oracle: the 250th smallest key is a threshold.
        let mut keys: Vec<f64> = ids.iter().map(|id| uniform_key(7, id)).collect();
        keys.sort_by(f64::total_cmp);
        let cut = keys[249];
        for pick in &picks {
            assert!(uniform_key(7, &ids[pick.index]) <= cut);
        }
        assert!(picks.windows(2).all(|w| w[0].index < w[1].index));
    }

    #[test]
    fn sample_depends_on_ids_not_order_and_changes_with_seed() {
        let ids: Vec<String> = (0..200).map(|i| format!("d{i}")).collect();
        let mut rev = ids.clone();
        rev.reverse();
        let sel = RandomSelector {
            seed: 1,
            size: SampleSize::Count(50),
        };
        let mut a: Vec<&str> = sel
            .select(&pool(&ids))
            .iter()
            .map(|p| ids[p.index].as_str())
            .collect();
        let mut b: Vec<&str> = sel
            .select(&pool(&rev))
            .iter()
            .map(|p| rev[p.index].as_str())
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let other = RandomSelector { seed: 2, ..sel };
        let mut c: Vec<&str> = other
            .select(&pool(&ids))
            .iter()
            .map(|p| ids[p.index].as_str())
            .collect();
        c.sort();
        assert_ne!(a, c);
    }

    #[test]
    fn token_budget_stops_at_first_doc_reaching_it() {
        let ids: Vec<String> = (0..100).map(|i| format!("d{i}")).collect();
        let sel = RandomSelector {
            seed: 3,
            size: SampleSize::Tokens(95),
        };
        // 10 tokens each: 9 docs give 90 <= 95; a 10th would make 100 > 95.
        assert_eq!(sel.select(&pool(&ids)).len(), 9);
        let exact = RandomSelector {
            seed: 3,
            size: SampleSize::Tokens(90),
        };
        assert_eq!(exact.select(&pool(&ids)).len(), 9);
    }

    #[test]
    fn keys_are_roughly_uniform() {
        let n = 20000;
        let below: usize = (0..n)
            .filter(|i| uniform_key(11, &format!("x{i}")) < 0.3)
            .count();
        let frac = below as f64 / n as f64;
        assert!((frac - 0.3).abs() < 0.02, "{frac}");
    }
}
