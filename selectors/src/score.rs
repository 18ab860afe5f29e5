//! Selection by score: top-k, or Gumbel-top-k sampling without replacement with
//! probability proportional to `exp(score / temperature)` (docs/METHODS.md).
//!
//! The Gumbel noise of a document is derived from `(seed, id)`, so the selection does not
//! depend on the pool's order, the thread count or the file sharding.

use crate::random::{uniform_key, SampleSize};
use crate::{Pick, PoolDoc, Selector};

/// Top-k or Gumbel-top-k over [`PoolDoc::score`].
#[derive(Debug, Clone)]
pub struct ScoreSelector {
    /// Method name recorded with the picks (e.g. `dsir`).
    pub name: String,
    /// Seed of the Gumbel noise.
    pub seed: u64,
    /// How many to keep.
    pub size: SampleSize,
    /// `false`: deterministic top-k; `true`: Gumbel-top-k sampling.
    pub sample: bool,
    /// Temperature dividing the scores before the noise is added.
    pub temperature: f64,
}

/// Standard Gumbel noise of document `id` under `seed`.
pub fn gumbel(seed: u64, id: &str) -> f64 {
    let u = uniform_key(seed, id).max(f64::MIN_POSITIVE);
    -(-u.ln()).ln()
}

/// Mean of the two scores' normalised ranks, for documents that have both: each score is
/// replaced by its rank among the present values (0 = lowest, ties share their average
/// rank) divided by `count - 1`, and the two are averaged. Documents missing either get
/// `None`. Invariant to any increasing transform of either score.
pub fn rank_average(primary: &[Option<f64>], secondary: &[Option<f64>]) -> Vec<Option<f64>> {
    let both: Vec<usize> = (0..primary.len())
        .filter(|&i| primary[i].is_some() && secondary.get(i).copied().flatten().is_some())
        .collect();
    let ranks = |values: &[Option<f64>]| -> Vec<f64> {
        let mut order: Vec<usize> = (0..both.len()).collect();
        let value = |k: usize| values[both[k]].expect("present");
        order.sort_by(|&a, &b| value(a).total_cmp(&value(b)));
        let mut rank = vec![0.0; both.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && value(order[end]) == value(order[start]) {
                end += 1;
            }
            let shared = (start + end - 1) as f64 / 2.0;
            for &k in &order[start..end] {
                rank[k] = shared;
            }
            start = end;
        }
        let scale = (both.len().max(2) - 1) as f64;
        rank.into_iter().map(|r| r / scale).collect()
    };
    let (a, b) = (ranks(primary), ranks(secondary));
    let mut out = vec![None; primary.len()];
    for (k, &i) in both.iter().enumerate() {
        out[i] = Some((a[k] + b[k]) / 2.0);
    }
    out
}

impl Selector for ScoreSelector {
    fn name(&self) -> &str {
        &self.name
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn select(&self, pool: &[PoolDoc<'_>]) -> Vec<Pick> {
        let mut keyed: Vec<(f64, usize)> = pool
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let s = d.score?;
                let key = if self.sample {
                    s / self.temperature + gumbel(self.seed, d.id)
                } else {
                    s
                };
                Some((key, i))
            })
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let take = self
            .size
            .take(pool.len(), keyed.iter().map(|&(_, i)| pool[i].tokens));
        let reason = if self.sample {
            "gumbel_sample"
        } else {
            "top_score"
        };
        let mut picks: Vec<Pick> = keyed[..take]
            .iter()
            .map(|&(_, index)| Pick {
                index,
                score: pool[index].score,
                reason,
            })
            .collect();
        picks.sort_by_key(|p| p.index);
        picks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool<'a>(ids: &'a [String], scores: &[Option<f64>]) -> Vec<PoolDoc<'a>> {
        ids.iter()
            .zip(scores)
            .map(|(id, &score)| PoolDoc {
                id,
                source: None,
                tokens: 1,
                score,
                features: None,
            })
            .collect()
    }

    #[test]
    fn top_k_takes_the_highest_scores_and_never_an_unscored_document() {
        let ids: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
        let scores = [Some(0.5), None, Some(3.0), Some(-1.0), Some(2.0), Some(9.0)];
        let sel = ScoreSelector {
            name: "t".into(),
            seed: 0,
            size: SampleSize::Count(3),
            sample: false,
            temperature: 1.0,
        };
        let picked: Vec<usize> = sel
            .select(&pool(&ids, &scores))
            .iter()
            .map(|p| p.index)
            .collect();
        assert_eq!(picked, [2, 4, 5]);
        let all = ScoreSelector {
            size: SampleSize::Count(10),
            ..sel
        };
        assert_eq!(
            all.select(&pool(&ids, &scores)).len(),
            5,
            "the unscored document is never picked"
        );
    }

    #[test]
    fn rank_average_by_hand() {
        // Primary ranks: 0.5 -> 1, 3.0 -> 2, -1.0 -> 0 (of 0..2); secondary: 7 -> 2, 5 -> 0.5
        // (tie with the other 5), 5 -> 0.5. Documents missing either score get none.
        let primary = [Some(0.5), Some(3.0), Some(-1.0), None, Some(9.0)];
        let secondary = [Some(7.0), Some(5.0), Some(5.0), Some(1.0), None];
        let got = rank_average(&primary, &secondary);
        assert_eq!(
            got,
            [
                Some((0.5 + 1.0) / 2.0),
                Some((1.0 + 0.25) / 2.0),
                Some(0.25 / 2.0),
                None,
                None
            ]
        );
        // Monotone transforms of either score change nothing.
        let squashed: Vec<Option<f64>> = secondary.iter().map(|v| v.map(f64::exp)).collect();
        assert_eq!(rank_average(&primary, &squashed), got);
    }

    #[test]
    fn gumbel_top_1_frequency_matches_the_weights() {
        // Two documents with w1/(w1+w2) = e^1 / (e^1 + e^0) = 0.731; count wins over seeds.
        let ids = vec!["a".to_string(), "b".to_string()];
        let scores = [Some(1.0), Some(0.0)];
        let trials = 20_000;
        let wins = (0..trials)
            .filter(|&seed| {
                let sel = ScoreSelector {
                    name: "g".into(),
                    seed,
                    size: SampleSize::Count(1),
                    sample: true,
                    temperature: 1.0,
                };
                sel.select(&pool(&ids, &scores))[0].index == 0
            })
            .count();
        let p = std::f64::consts::E / (std::f64::consts::E + 1.0);
        let expected = p * trials as f64;
        // Chi-square with one degree of freedom, well inside the 99.9% bound (10.83).
        let chi2 = (wins as f64 - expected).powi(2) / expected
            + (wins as f64 - expected).powi(2) / (trials as f64 - expected);
        assert!(chi2 < 10.83, "wins {wins} of {trials}, chi2 {chi2}");
    }
}
