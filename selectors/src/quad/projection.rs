//! Seeded Rademacher random projection (spec 0.4 and 1.4): `P ∈ {±1}^{k×p} / √k`, generated
//! column by column from the seed, so candidate and reference gradients projected with the
//! same seed and width share exactly the same `P` without storing it.

use crate::rng::SplitMix64;

/// A Johnson-Lindenstrauss projection to `dim` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RademacherProjection {
    /// Output width k.
    pub dim: usize,
    /// Seed of the signs.
    pub seed: u64,
}

impl RademacherProjection {
    /// `P x`: entry r is `(1/√k) Σ_c ±x_c`, the sign of (r, c) drawn from the seed and c.
    pub fn project(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.dim];
        for (c, &v) in x.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let mut rng = SplitMix64::new(
                self.seed
                    ^ (c as u64)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .rotate_left(17),
            );
            for block in out.chunks_mut(64) {
                let bits = rng.next_u64();
                for (b, o) in block.iter_mut().enumerate() {
                    if bits >> b & 1 == 1 {
                        *o += v;
                    } else {
                        *o -= v;
                    }
                }
            }
        }
        let scale = 1.0 / (self.dim as f64).sqrt();
        out.iter_mut().for_each(|o| *o *= scale);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_matrix_and_inner_products_survive() {
        let p = RademacherProjection { dim: 8192, seed: 0 };
        let mut rng = SplitMix64::new(9);
        let n = 100_000;
        let x: Vec<f64> = (0..n).map(|_| rng.next_f64() - 0.5).collect();
        // y shares half its direction with x.
        let y: Vec<f64> = x.iter().map(|v| v + (rng.next_f64() - 0.5)).collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        let cos = |a: &[f64], b: &[f64]| dot(a, b) / (dot(a, a) * dot(b, b)).sqrt();
        let (px, py) = (p.project(&x), p.project(&y));
        assert_eq!(p.project(&x), px, "deterministic");
        // JL: the cosine error has standard deviation about sqrt(1/k) = 0.011.
        assert!((cos(&px, &py) - cos(&x, &y)).abs() < 0.06);
        assert!((dot(&px, &px) / dot(&x, &x) - 1.0).abs() < 0.1);
        let other = RademacherProjection { seed: 1, ..p };
        assert_ne!(other.project(&x), px);
    }
}
