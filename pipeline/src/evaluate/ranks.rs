//! Do the evaluation models rank the methods alike? Spearman's rank correlation between the
//! methods' bits per byte under two models (ties get the mean of their ranks).

use serde::Serialize;

/// The agreement of two evaluation models' rankings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankAgreement {
    /// One model (`n-gram`, `neural`, `second neural`).
    pub first: String,
    /// The other.
    pub second: String,
    /// Spearman's rho over the methods (1: the same order, -1: reversed); `None` when either
    /// model gives every method the same value or fewer than two methods are ranked.
    pub spearman: Option<f64>,
    /// Methods ranked.
    pub methods: usize,
}

/// Ranks from 1 (lowest value first); tied values share the mean of their ranks.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rho: the Pearson correlation of the two samples' ranks. `None` for fewer than
/// two values or a sample whose values are all equal.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "paired samples");
    if a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean) * (x - mean);
        vb += (y - mean) * (y - mean);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// Every pair of the named per-method values (one value per method, in the same method
/// order), as agreements.
pub fn agreements(models: &[(&str, Vec<f64>)]) -> Vec<RankAgreement> {
    let mut out = Vec::new();
    for (i, (first, a)) in models.iter().enumerate() {
        for (second, b) in &models[i + 1..] {
            out.push(RankAgreement {
                first: first.to_string(),
                second: second.to_string(),
                spearman: spearman(a, b),
                methods: a.len(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_hand_computed_values() {
        // No ties: rho = 1 - 6 sum(d^2) / (n (n^2 - 1)). Ranks (1,2,3,4,5) vs (2,1,4,3,5):
        // sum d^2 = 4, rho = 1 - 24/120 = 0.8.
        let a = [0.1, 0.2, 0.3, 0.4, 0.5];
        let b = [2.0, 1.0, 4.0, 3.0, 5.0];
        assert!((spearman(&a, &b).unwrap() - 0.8).abs() < 1e-12);
        let reversed = [5.0, 4.0, 3.0, 2.0, 1.0];
        assert!((spearman(&a, &reversed).unwrap() + 1.0).abs() < 1e-12);
        // Ties: (1, 2, 2, 3) ranks as (1, 2.5, 2.5, 4); against (1, 2, 3, 4) the Pearson
        // correlation of the ranks is 4.5 / sqrt(4.5 x 5) = sqrt(0.9).
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((rho - 0.9f64.sqrt()).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), [2.5, 1.0, 2.5]);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        let pairs = agreements(&[
            ("x", a.to_vec()),
            ("y", b.to_vec()),
            ("z", reversed.to_vec()),
        ]);
        let names: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.first.as_str(), p.second.as_str()))
            .collect();
        assert_eq!(names, [("x", "y"), ("x", "z"), ("y", "z")]);
    }
}
