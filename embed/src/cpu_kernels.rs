//! Element-wise kernels for the CPU (flex) device where Burn's generic op calls a scalar libm
//! function per element: exact-form GELU needs `erf`, which dominated the encoder's profile.
//! These loops are branch-free so the compiler vectorises them; accuracy is within 2e-7 of
//! the libm result, far below f32 model noise. Other devices keep Burn's own ops.

use burn::prelude::*;
use rayon::prelude::*;

/// `exp(x)` for `x <= 0`, branch-free: 2^n * p(r) with `x = n ln2 + r`, |r| <= ln2/2.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    let x = x.max(-87.0);
    // Round to nearest by the 1.5 * 2^23 trick: no libm call, so the loop vectorises.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // ln 2 split in two (Cody and Waite) so n * ln2 loses no bits.
    let r = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
    // Taylor terms to r^7: relative error < 2e-8 on |r| <= 0.347.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

/// `erf(x)` from the complementary error function's Chebyshev fit (Numerical Recipes
/// `erfcc`, fractional error < 1.2e-7 everywhere).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_8))))))));
    let erfc = t * exp_nonpositive(poly);
    (1.0 - erfc).copysign(x)
}

/// Exact-form GELU, `x/2 (1 + erf(x/sqrt 2))` (Hendrycks and Gimpel 2016), as BERT uses.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if device != Device::flex() {
        return burn::tensor::activation::gelu(x);
    }
    let shape = x.shape();
    let mut values = crate::values(x);
    values.par_chunks_mut(1 << 14).for_each(gelu_in_place);
    Tensor::from_data(TensorData::new(values, shape), &device)
}

#[inline(always)]
fn gelu_loop(values: &mut [f32]) {
    for v in values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// The same loop compiled for AVX2+FMA, used when the CPU has them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_loop_avx2(values: &mut [f32]) {
    gelu_loop(values)
}

fn gelu_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features were detected at run time.
        return unsafe { gelu_loop_avx2(values) };
    }
    gelu_loop(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_exp_match_libm() {
        let mut worst_erf = 0f64;
        let mut worst_exp = 0f64;
        for i in -80_000..=80_000 {
            let x = i as f64 / 10_000.0;
            let reference = libm_erf(x);
            worst_erf = worst_erf.max((f64::from(erf(x as f32)) - reference).abs());
            if x <= 0.0 {
                let a = (x * 10.0) as f32;
                let e = f64::from(a).exp();
                worst_exp = worst_exp.max((f64::from(exp_nonpositive(a)) - e).abs() / e);
            }
        }
        assert!(worst_erf < 5e-7, "erf off by {worst_erf}");
        assert!(worst_exp < 3e-7, "exp off by relative {worst_exp}");
    }

    /// erf by its Taylor series (|x| < 3) or the asymptotic expansion: an independent oracle.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        // Series: erf x = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)), in f64 with many terms.
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-18 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 400.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
