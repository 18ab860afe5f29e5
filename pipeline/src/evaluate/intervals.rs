//! The statistics of a comparison: means and spreads over seeds, paired differences to the
//! baseline with 95% intervals (Student's t over seeds; a percentile bootstrap over the
//! evaluation documents), and the verdict they allow.

use gleaner_selectors::rng::SplitMix64;
use serde::Serialize;

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom.
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    TABLE.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// A 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Interval {
    /// Whether zero lies outside the interval.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// The t interval of the mean of paired differences (one per seed); `None` under two.
pub fn t_interval(differences: &[f64]) -> Option<Interval> {
    if differences.len() < 2 {
        return None;
    }
    let (mean, sd) = mean_sd(differences);
    let half = t_975(differences.len() - 1) * sd / (differences.len() as f64).sqrt();
    Some(Interval {
        low: mean - half,
        high: mean + half,
    })
}

/// Bits per byte of documents given as (nats, bytes).
pub fn bits_per_byte(docs: &[(f64, u64)]) -> f64 {
    let nats: f64 = docs.iter().map(|d| d.0).sum();
    let bytes: u64 = docs.iter().map(|d| d.1).sum();
    nats / std::f64::consts::LN_2 / bytes.max(1) as f64
}

/// Percentile bootstrap (2.5%, 97.5%) of `bpb(method) - bpb(baseline)` over the evaluation
/// documents: each replicate draws documents with replacement and recomputes both
/// corpus-level bits per byte on the same draw. Both slices hold the same documents in the
/// same order.
pub fn bootstrap_difference(
    method: &[(f64, u64)],
    baseline: &[(f64, u64)],
    replicates: usize,
    seed: u64,
) -> Interval {
    assert_eq!(method.len(), baseline.len(), "paired documents");
    let n = method.len();
    let mut rng = SplitMix64::new(seed);
    let mut stats: Vec<f64> = (0..replicates)
        .map(|_| {
            let (mut m, mut b, mut bytes) = (0.0, 0.0, 0u64);
            for _ in 0..n {
                let i = rng.below(n);
                m += method[i].0;
                b += baseline[i].0;
                bytes += method[i].1;
            }
            (m - b) / std::f64::consts::LN_2 / bytes.max(1) as f64
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * (replicates - 1) as f64).round() as usize).min(replicates - 1)];
    Interval {
        low: at(0.025),
        high: at(0.975),
    }
}

/// What the evidence says of a method against the baseline (lower bits per byte is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every interval lies below zero.
    Better,
    /// Every interval lies above zero.
    Worse,
    /// Some interval contains zero: within the noise.
    NoClearDifference,
}

impl Verdict {
    /// The verdict of intervals on `method - baseline` bits per byte.
    pub fn of(intervals: &[Interval]) -> Self {
        if intervals.iter().all(|i| i.high < 0.0) {
            Verdict::Better
        } else if intervals.iter().all(|i| i.low > 0.0) {
            Verdict::Worse
        } else {
            Verdict::NoClearDifference
        }
    }

    /// How the report says it.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoClearDifference => "no clear difference",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_matches_the_textbook_value() {
        // mean 2, sd 1, n 3: 2 +- 4.303 / sqrt(3).
        let i = t_interval(&[1.0, 2.0, 3.0]).unwrap();
        let half = 4.303 / 3f64.sqrt();
        assert!((i.low - (2.0 - half)).abs() < 1e-12 && (i.high - (2.0 + half)).abs() < 1e-12);
        assert!(!i.excludes_zero(), "2 - 2.48 < 0");
        assert!(t_interval(&[1.9, 2.0, 2.1]).unwrap().excludes_zero());
        assert!(t_interval(&[1.0]).is_none());
        assert!(!t_interval(&[-1.0, 1.0]).unwrap().excludes_zero());
    }

    #[test]
    fn bootstrap_brackets_the_difference_and_collapses_when_it_is_constant() {
        let baseline: Vec<(f64, u64)> = (0..50).map(|i| (100.0 + i as f64, 100)).collect();
        let shifted: Vec<(f64, u64)> = baseline.iter().map(|&(n, b)| (n - 10.0, b)).collect();
        let i = bootstrap_difference(&shifted, &baseline, 500, 7);
        let exact = -10.0 / std::f64::consts::LN_2 / 100.0;
        assert!(
            (i.low - exact).abs() < 1e-12 && (i.high - exact).abs() < 1e-12,
            "{i:?}"
        );
        assert_eq!(Verdict::of(&[i]), Verdict::Better);

        // Noise around zero: the interval contains zero; the same seed gives the same interval.
        let noisy: Vec<(f64, u64)> = baseline
            .iter()
            .enumerate()
            .map(|(k, &(n, b))| (n + if k % 2 == 0 { 5.0 } else { -5.0 }, b))
            .collect();
        let j = bootstrap_difference(&noisy, &baseline, 500, 7);
        assert!(j.low < 0.0 && j.high > 0.0, "{j:?}");
        assert_eq!(j, bootstrap_difference(&noisy, &baseline, 500, 7));
        assert_eq!(Verdict::of(&[i, j]), Verdict::NoClearDifference);
    }

    #[test]
    fn bits_per_byte_is_nats_over_bytes_in_base_two() {
        let bpb = bits_per_byte(&[(std::f64::consts::LN_2 * 8.0, 4), (0.0, 4)]);
        assert!((bpb - 1.0).abs() < 1e-12);
    }
}
