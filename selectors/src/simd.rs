//! Vector kernels (dot product, squared norm) compiled twice: a portable version and an
//! AVX2+FMA version picked at run time, so release builds for generic x86-64 still use
//! the wide registers of the machine they run on.

/// Sum of `f(a[i], b[i])` in 16 independent lanes, which the compiler vectorises.
#[inline(always)]
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| f(*x, *y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| x * y)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Dot product of equal-length slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { dot_avx2(a, b) };
    }
    lanes(a, b, |x, y| x * y)
}

/// Squared L2 norm.
pub fn norm2(a: &[f32]) -> f32 {
    dot(a, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_a_plain_f64_loop() {
        for n in [0usize, 1, 15, 16, 17, 100, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let d: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - d).abs() < 1e-4, "dot n={n}");
            assert!(
                (norm2(&a) as f64 - a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>()).abs()
                    < 1e-4,
                "norm n={n}"
            );
            assert!((lanes(&a, &b, |x, y| x * y) as f64 - d).abs() < 1e-4);
        }
    }
}
