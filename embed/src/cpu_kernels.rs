//! Element-wise kernels for the CPU (flex) device where Burn's generic op calls a scalar libm
//! function per element: exact-form GELU needs `erf`, which dominated the encoder's profile.
//! These loops are branch-free so the compiler vectorises them; accuracy is within 5e-7 of
//! the libm result, far below f32 model noise. Other devices keep Burn's own ops.

use burn::prelude::*;
use rayon::prelude::*;

/// `exp(x)` for `x <= 0`, branch-free: 2^n * p(r) with `x = n ln2 + r`, |r| <= ln2/2.
///
/// No float-to-integer cast: Rust's `as i32` saturates, which LLVM turns into a scalar
/// compare and insert per lane and which cost the encoder a quarter of its time in GELU and
/// softmax. `2^n` is read from the bits of the rounded value instead.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    // Clamped below (a NaN becomes -87 too) so 2^n stays a normal number.
    let x = if x > -87.0 { x } else { -87.0 };
    // Round to nearest by the 1.5 * 2^23 trick: no libm call, so the loop vectorises.
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // ln 2 split in two (Cody and Waite) so n * ln2 loses no bits.
    let r = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
    // Taylor terms to r^7: relative error < 2e-8 on |r| <= 0.347.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // `shifted`'s bits are those of ROUND plus n, and ROUND's low 9 bits are zero: shifted
    // left by 23, only `n + 127` (1..=127 here) is left in the exponent field.
    f32::from_bits(shifted.to_bits().wrapping_add(127) << 23) * p
}

/// `erf(x)` as a rational function of `x` (odd degree-13 numerator over even degree-8
/// denominator, the minimax fit Eigen and XLA use for float32): absolute error < 5e-7, with
/// no exponential and one division, about half the work of an `erfc`-through-`exp` form.
/// Beyond |x| = 4, erf is 1 to float32 precision, so the argument is clamped there.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let numerator = -2.726_142e-10;
    let numerator = numerator * x2 + 2.770_681_4e-8;
    let numerator = numerator * x2 - 2.101_024e-6;
    let numerator = numerator * x2 - 5.692_506_4e-5;
    let numerator = numerator * x2 - 7.349_906_3e-4;
    let numerator = numerator * x2 - 2.954_6e-3;
    let numerator = numerator * x2 - 1.609_603_3e-2;
    let denominator = -1.456_607_2e-5;
    let denominator = denominator * x2 - 2.133_740_6e-4;
    let denominator = denominator * x2 - 1.682_827e-3;
    let denominator = denominator * x2 - 7.373_329e-3;
    let denominator = denominator * x2 - 1.426_474e-2;
    x * numerator / denominator
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

/// Defines `$name` running `$body` compiled for AVX-512 (16 lanes) or AVX2+FMA (8 lanes) when
/// the CPU has them, so the branch-free loops vectorise; else the baseline build of the loop.
macro_rules! vectorised {
    (
        $(#[$doc:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident
    ) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the features were detected at run time.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use vectorised;

#[inline(always)]
fn gelu_loop(values: &mut [f32]) {
    for v in values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

vectorised! {
    /// Exact-form GELU of every value, in place.
    pub(crate) fn gelu_in_place(values: &mut [f32]) => gelu_loop
}

#[inline(always)]
fn bias_gelu_loop(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            let x = *v + b;
            *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

vectorised! {
    /// `gelu(row + bias)` for every row of `rows` (rows of `bias.len()` values), in place.
    pub(crate) fn bias_gelu_rows(rows: &mut [f32], bias: &[f32]) => bias_gelu_loop
}

/// Sum of `values` in 8 independent lanes (a pattern the compiler vectorises).
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `a . b` in 8 independent lanes (the remainder past the last full lane group added last).
#[inline(always)]
pub(crate) fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((l, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Maximum of `values` in 8 independent lanes.
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            // A plain compare-and-select (`f32::max` adds NaN handling per lane).
            *l = if v > *l { v } else { *l };
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

#[inline(always)]
fn exp_shifted_loop(row: &mut [f32]) -> f32 {
    let max = lane_max(row);
    for v in row.iter_mut() {
        *v = exp_nonpositive(*v - max);
    }
    lane_sum(row)
}

vectorised! {
    /// `exp(v - max)` of every value of one row, in place; returns their sum. A softmax whose
    /// division is left to the caller (attention divides its context rows, `d` values, not
    /// the row's `len` probabilities).
    pub(crate) fn exp_shifted_in_place(row: &mut [f32]) -> f32 => exp_shifted_loop
}

#[inline(always)]
fn softmax_loop(row: &mut [f32]) {
    let scale = 1.0 / exp_shifted_loop(row);
    row.iter_mut().for_each(|v| *v *= scale);
}

vectorised! {
    /// Softmax of one row, in place (max-shifted, so every exponent is <= 0).
    pub(crate) fn softmax_in_place(row: &mut [f32]) => softmax_loop
}

/// Scale, shift and epsilon of one LayerNorm.
pub(crate) struct NormParams<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub epsilon: f32,
}

#[inline(always)]
fn layer_norm_loop(row: &mut [f32], norm: &NormParams) {
    let n = row.len() as f32;
    let mean = lane_sum(row) / n;
    let mut lanes = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += (v - mean) * (v - mean);
        }
    }
    let variance = (lanes.iter().sum::<f32>() + tail) / n;
    let inverse = 1.0 / (variance + norm.epsilon).sqrt();
    for ((v, g), b) in row.iter_mut().zip(norm.gamma).zip(norm.beta) {
        *v = (*v - mean) * inverse * g + b;
    }
}

#[inline(always)]
fn residual_norm_loop(rows: &mut [f32], update: &[f32], bias: &[f32], norm: &NormParams) {
    let width = bias.len();
    for (row, delta) in rows.chunks_exact_mut(width).zip(update.chunks_exact(width)) {
        for ((v, d), b) in row.iter_mut().zip(delta).zip(bias) {
            *v += d + b;
        }
        layer_norm_loop(row, norm);
    }
}

vectorised! {
    /// `rows = LayerNorm(rows + update + bias)` row by row (rows of `bias.len()` values): a
    /// post-norm residual connection in one pass.
    pub(crate) fn residual_norm_rows(
        rows: &mut [f32],
        update: &[f32],
        bias: &[f32],
        norm: &NormParams
    ) => residual_norm_loop
}

#[inline(always)]
fn norm_rows_loop(rows: &mut [f32], norm: &NormParams) {
    for row in rows.chunks_exact_mut(norm.gamma.len()) {
        layer_norm_loop(row, norm);
    }
}

vectorised! {
    /// LayerNorm of every row (rows of `norm.gamma.len()` values), in place.
    pub(crate) fn norm_rows(rows: &mut [f32], norm: &NormParams) => norm_rows_loop
}

#[inline(always)]
fn rms_norm_loop(rows: &[f32], out: &mut [f32], gamma: &[f32], epsilon: f32) {
    let width = gamma.len();
    for (row, normed) in rows.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mean_square = lane_dot(row, row) / width as f32;
        let inverse = 1.0 / (mean_square + epsilon).sqrt();
        for ((o, v), g) in normed.iter_mut().zip(row).zip(gamma) {
            *o = v * inverse * g;
        }
    }
}

vectorised! {
    /// `out = rows / sqrt(mean(rows^2) + epsilon) * gamma` row by row (RMSNorm; rows of
    /// `gamma.len()` values).
    pub(crate) fn rms_norm_rows(rows: &[f32], out: &mut [f32], gamma: &[f32], epsilon: f32) => rms_norm_loop
}

#[inline(always)]
fn swiglu_loop(gate_up: &[f32], out: &mut [f32]) {
    let width = gate_up.len() / 2;
    let (gate, up) = gate_up.split_at(width);
    for ((o, &g), u) in out.iter_mut().zip(gate).zip(up) {
        // silu(g) = g sigmoid(g), with the exponent kept <= 0 for either sign of g.
        let e = exp_nonpositive(-g.abs());
        let sigmoid = if g >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        *o = g * sigmoid * u;
    }
}

vectorised! {
    /// One row of `silu(gate) * up` from a `[gate | up]` row of twice `out.len()` values.
    pub(crate) fn swiglu_row(gate_up: &[f32], out: &mut [f32]) => swiglu_loop
}

#[inline(always)]
fn nll_loop(logits: &[f32], target: usize) -> f32 {
    let max = lane_max(logits);
    let mut sums = [0f32; 8];
    let chunks = logits.chunks_exact(8);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|&v| exp_nonpositive(v - max))
        .sum();
    for chunk in chunks {
        for (s, &v) in sums.iter_mut().zip(chunk) {
            *s += exp_nonpositive(v - max);
        }
    }
    let sum = sums.iter().sum::<f32>() + tail;
    max + sum.ln() - logits[target]
}

vectorised! {
    /// Cross-entropy of one row of logits against `target`: `logsumexp(logits) - logits[target]`.
    pub(crate) fn row_nll(logits: &[f32], target: usize) -> f32 => nll_loop
}

/// Row-major `dst[m x n] (+)= scale * lhs[m x k] * rhs[k x n]` through `gemm`, with explicit
/// row strides (`*_rs`) so slices of packed rows need no copy; `accumulate` adds to `dst`.
/// Large products called from outside the rayon pool use every rayon thread; small ones, and
/// any called from a rayon task (whose caller already spreads its work over the threads), run
/// on the caller's thread. The result is the same either way.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dims: [usize; 3],
    lhs: (&[f32], usize),
    rhs: (&[f32], usize, usize),
    dst: (&mut [f32], usize),
    scale: f32,
    accumulate: bool,
) {
    matmul_strided(dims, (lhs.0, lhs.1, 1), rhs, dst, scale, accumulate);
}

/// [`matmul`] with both strides of `lhs` given too (`(values, row stride, column stride)`), so
/// a transposed operand is read in place: `x^T` of a row-major `[r x c]` matrix is `(x, 1, c)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_strided(
    [m, k, n]: [usize; 3],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    dst: (&mut [f32], usize),
    scale: f32,
    accumulate: bool,
) {
    let (lhs, lhs_rs, lhs_cs) = lhs;
    let (rhs, rhs_rs, rhs_cs) = rhs;
    let (dst, dst_rs) = dst;
    assert!(
        m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs,
        "lhs too short"
    );
    assert!(
        k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs,
        "rhs too short"
    );
    assert!(m == 0 || dst.len() >= (m - 1) * dst_rs + n, "dst too short");
    let parallelism = if m * n * k >= 1 << 21
        && rayon::current_num_threads() > 1
        && rayon::current_thread_index().is_none()
    {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every strided access inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
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
