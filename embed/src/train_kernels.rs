//! Row kernels of the CPU trainer ([`crate::llama_train`]): RMSNorm forward (keeping each
//! row's scale) and backward, SwiGLU forward (keeping the gate's sigmoid) and backward, the
//! softmax backward of attention, cross-entropy with its gradient, and AdamW's update. Each is
//! a branch-free loop compiled for AVX-512 or AVX2 when the CPU has them, summing in fixed
//! lanes so results do not depend on where a row is computed.

use crate::cpu_kernels::{exp_nonpositive, lane_dot, vectorised};

/// Flush-to-zero and denormals-are-zero on the current thread while this lives, the thread's
/// previous mode restored on drop (x86-64: the FTZ and DAZ bits of MXCSR; elsewhere
/// nothing). A model in training grows confident, its softmax gives the symbols it never
/// sees probabilities below f32's smallest normal (1.2e-38), and every product that then
/// reads or makes a subnormal takes a microcode assist costing on the order of a hundred
/// cycles: a training step slowed fourfold after a few hundred steps. Flushing them to zero
/// changes values only below 1.2e-38, the same way on every thread.
pub(crate) struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushDenormals {
    /// Sets the mode on this thread.
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            const FLUSH_TO_ZERO: u32 = 1 << 15;
            const DENORMALS_ARE_ZERO: u32 = 1 << 6;
            let saved = read_mxcsr();
            write_mxcsr(saved | FLUSH_TO_ZERO | DENORMALS_ARE_ZERO);
            Self { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        write_mxcsr(self.saved);
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: stmxcsr stores the 32-bit MXCSR register into the given, writable u32.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(csr: u32) {
    // SAFETY: ldmxcsr loads MXCSR from the given u32; the values written are the register's
    // own with only the FTZ and DAZ bits changed, which are valid in every state.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
    }
}

/// AdamW's constants, as Burn's `AdamWConfig` defaults them.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

#[inline(always)]
fn rms_rows_loop(rows: &[f32], gamma: &[f32], epsilon: f32, out: &mut [f32], scales: &mut [f32]) {
    let h = gamma.len();
    for ((row, normed), scale) in rows
        .chunks_exact(h)
        .zip(out.chunks_exact_mut(h))
        .zip(scales.iter_mut())
    {
        let inverse = 1.0 / (lane_dot(row, row) / h as f32 + epsilon).sqrt();
        *scale = inverse;
        for ((o, x), g) in normed.iter_mut().zip(row).zip(gamma) {
            *o = x * inverse * g;
        }
    }
}

vectorised! {
    /// RMSNorm of every row (`x / sqrt(mean(x^2) + epsilon) * gamma`, rows of `gamma.len()`
    /// values) into `out`, keeping each row's `1 / rms` in `scales`.
    pub(crate) fn rms_norm_saving(
        rows: &[f32],
        gamma: &[f32],
        epsilon: f32,
        out: &mut [f32],
        scales: &mut [f32]
    ) => rms_rows_loop
}

/// What an RMSNorm's forward kept: its input rows, their `1 / rms` and its gain.
pub(crate) struct RmsSaved<'a> {
    pub input: &'a [f32],
    pub scale: &'a [f32],
    pub gamma: &'a [f32],
}

#[inline(always)]
fn rms_backward_loop(saved: &RmsSaved, d_out: &[f32], d_input: &mut [f32], d_gamma: &mut [f32]) {
    let gamma = saved.gamma;
    let h = gamma.len();
    for (((x, &r), dy), dx) in saved
        .input
        .chunks_exact(h)
        .zip(saved.scale)
        .zip(d_out.chunks_exact(h))
        .zip(d_input.chunks_exact_mut(h))
    {
        let mut lanes = [0f32; 8];
        let mut tail = 0.0;
        let split = h - h % 8;
        for ((xv, dv), gv) in x[split..].iter().zip(&dy[split..]).zip(&gamma[split..]) {
            tail += xv * dv * gv;
        }
        for ((xc, dc), gc) in x
            .chunks_exact(8)
            .zip(dy.chunks_exact(8))
            .zip(gamma.chunks_exact(8))
        {
            for (((l, xv), dv), gv) in lanes.iter_mut().zip(xc).zip(dc).zip(gc) {
                *l += xv * dv * gv;
            }
        }
        let dot = lanes.iter().sum::<f32>() + tail;
        let c = r * r * r * dot / h as f32;
        for ((((o, xv), dv), gv), dg) in dx
            .iter_mut()
            .zip(x)
            .zip(dy)
            .zip(gamma)
            .zip(d_gamma.iter_mut())
        {
            *o += r * dv * gv - c * xv;
            *dg += dv * xv * r;
        }
    }
}

vectorised! {
    /// Adds an RMSNorm's input gradient to `d_input` and its gain's gradient to `d_gamma`
    /// (summed over rows in order), from the output gradient `d_out`: with `y = x r g` and
    /// `r = 1 / rms(x)`, `dx = r (dy g) - x r^3 mean(dy g x)` and `dg = sum of dy x r`.
    pub(crate) fn rms_norm_backward(
        saved: &RmsSaved,
        d_out: &[f32],
        d_input: &mut [f32],
        d_gamma: &mut [f32]
    ) => rms_backward_loop
}

#[inline(always)]
fn swiglu_forward_loop(m: usize, gate_up: &[f32], out: &mut [f32], sigmoid: &mut [f32]) {
    for ((row, out), sigmoid) in gate_up
        .chunks_exact(2 * m)
        .zip(out.chunks_exact_mut(m))
        .zip(sigmoid.chunks_exact_mut(m))
    {
        let (gate, up) = row.split_at(m);
        for (((o, s), &g), &u) in out.iter_mut().zip(sigmoid.iter_mut()).zip(gate).zip(up) {
            // The exponent kept <= 0 for either sign of g.
            let e = exp_nonpositive(-g.abs());
            *s = if g >= 0.0 {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            };
            *o = g * *s * u;
        }
    }
}

vectorised! {
    /// Rows of `silu(gate) * up` (`m` values) from rows of `[gate | up]`, keeping
    /// `sigmoid(gate)`.
    pub(crate) fn swiglu_forward(m: usize, gate_up: &[f32], out: &mut [f32], sigmoid: &mut [f32]) => swiglu_forward_loop
}

#[inline(always)]
fn swiglu_backward_loop(
    m: usize,
    gate_up: &[f32],
    sigmoid: &[f32],
    d_out: &[f32],
    d_gate_up: &mut [f32],
) {
    for (((row, s_row), dy_row), d_row) in gate_up
        .chunks_exact(2 * m)
        .zip(sigmoid.chunks_exact(m))
        .zip(d_out.chunks_exact(m))
        .zip(d_gate_up.chunks_exact_mut(2 * m))
    {
        let (gate, up) = row.split_at(m);
        let (d_gate, d_up) = d_row.split_at_mut(m);
        for (((((dg, du), &g), &u), &s), &dy) in d_gate
            .iter_mut()
            .zip(d_up.iter_mut())
            .zip(gate)
            .zip(up)
            .zip(s_row)
            .zip(dy_row)
        {
            // silu(g) = g s; silu'(g) = s (1 + g (1 - s)).
            *du = dy * g * s;
            *dg = dy * u * s * (1.0 + g * (1.0 - s));
        }
    }
}

vectorised! {
    /// Rows of `[d gate | d up]` of `out = silu(gate) * up` from `d out`, with the forward
    /// pass's `sigmoid(gate)`.
    pub(crate) fn swiglu_backward(
        m: usize,
        gate_up: &[f32],
        sigmoid: &[f32],
        d_out: &[f32],
        d_gate_up: &mut [f32]
    ) => swiglu_backward_loop
}

#[inline(always)]
fn softmax_backward_loop(d_row: &mut [f32], probabilities: &[f32], scale: f32) {
    let dot = lane_dot(d_row, probabilities);
    for (d, p) in d_row.iter_mut().zip(probabilities) {
        *d = p * (*d - dot) * scale;
    }
}

vectorised! {
    /// The gradient of a softmax's scores (scaled by `scale` before the softmax) from the
    /// gradient of its probabilities, in place: `scale p (dp - p . dp)`.
    pub(crate) fn softmax_backward_row(d_row: &mut [f32], probabilities: &[f32], scale: f32) => softmax_backward_loop
}

#[inline(always)]
fn softmax_gradient_loop(row: &mut [f32], target: usize, weight: f32) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let target_logit = row[target];
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = exp_nonpositive(*v - max);
        sum += *v;
    }
    let scale = weight / sum;
    row.iter_mut().for_each(|v| *v *= scale);
    row[target] -= weight;
    max + sum.ln() - target_logit
}

vectorised! {
    /// Cross-entropy of one row of logits against `target`, returned, and its gradient times
    /// `weight` in place of the logits: `weight (softmax(row) - onehot(target))`.
    pub(crate) fn softmax_gradient_row(row: &mut [f32], target: usize, weight: f32) -> f32 => softmax_gradient_loop
}

/// The constants of one AdamW step.
#[derive(Clone, Copy)]
pub(crate) struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// `1 - lr weight_decay`.
    pub decay: f32,
    /// `1 - beta_1^t`.
    pub correction_1: f32,
    /// `1 - beta_2^t`.
    pub correction_2: f32,
}

impl AdamStep {
    /// Step number `t` (from 1) at learning rate `lr` with `weight_decay`.
    pub fn new(t: i32, lr: f32, weight_decay: f32) -> Self {
        Self {
            lr,
            decay: 1.0 - lr * weight_decay,
            correction_1: 1.0 - BETA_1.powi(t),
            correction_2: 1.0 - BETA_2.powi(t),
        }
    }
}

#[inline(always)]
fn adamw_loop(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], step: AdamStep) {
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        *m = BETA_1 * *m + (1.0 - BETA_1) * g;
        *v = BETA_2 * *v + (1.0 - BETA_2) * g * g;
        let delta = (*m / step.correction_1) / ((*v / step.correction_2).sqrt() + EPSILON);
        *p = *p * step.decay - step.lr * delta;
    }
}

vectorised! {
    /// AdamW (Burn's: decoupled weight decay `p (1 - lr wd)`, bias-corrected moments, `eps`
    /// added to the root) on parameters `p` with moments `m`, `v` and gradient `g`.
    pub(crate) fn adamw(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], step: AdamStep) => adamw_loop
}

/// Adds `other` to `sum`, element by element.
#[inline(always)]
fn add_loop(sum: &mut [f32], other: &[f32]) {
    sum.iter_mut().zip(other).for_each(|(s, o)| *s += o);
}

vectorised! {
    /// `sum += other`, element by element.
    pub(crate) fn add_assign(sum: &mut [f32], other: &[f32]) => add_loop
}
