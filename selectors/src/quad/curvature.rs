//! (EK-)FAC inverse-Hessian-vector products for one linear layer (spec 1.4).
//!
//! A layer `W` (out x in) has Kronecker factors `A = (1/N) sum_n sum_t x xᵀ` (inputs) and
//! `S = (1/N) sum_n sum_t δ δᵀ` (gradients with respect to the outputs), with eigenbases
//! `A = U_A diag(a) U_Aᵀ`, `S = U_S diag(s) U_Sᵀ`. A gradient `G` (out x in) is preconditioned
//! as `U_S [(U_Sᵀ G U_A) ⊘ (Λ + λ)] U_Aᵀ`, with `Λ = s aᵀ` (K-FAC) or, for EK-FAC,
//! `Λ_ij = mean_n (U_Sᵀ G_n U_A)_ij²` over per-example gradients `G_n` (George et al. 2018).
//! Row-major `vec`: `(S ⊗ A) vec(G) = vec(S G A)`. All arithmetic is f64.

/// Kronecker factors of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct KroneckerFactors {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `A`, inputs x inputs, row-major.
    pub a: Vec<f64>,
    /// `S`, outputs x outputs, row-major.
    pub s: Vec<f64>,
}

/// One example's view of a layer: its inputs (`tokens x in`) and the gradients of its loss
/// with respect to the layer outputs (`tokens x out`), row-major.
#[derive(Debug, Clone, Copy)]
pub struct LayerExample<'a> {
    /// Layer inputs at the example's positions.
    pub inputs: &'a [f32],
    /// Output gradients at the same positions.
    pub output_grads: &'a [f32],
}

impl LayerExample<'_> {
    /// The example's weight gradient `G = sum_t δ_t x_tᵀ` (out x in).
    pub fn weight_gradient(&self, inputs: usize, outputs: usize) -> Vec<f64> {
        let tokens = self.inputs.len() / inputs;
        let mut g = vec![0.0; outputs * inputs];
        for t in 0..tokens {
            let x = &self.inputs[t * inputs..(t + 1) * inputs];
            let d = &self.output_grads[t * outputs..(t + 1) * outputs];
            for (o, &dv) in d.iter().enumerate() {
                let row = &mut g[o * inputs..(o + 1) * inputs];
                for (r, &xv) in row.iter_mut().zip(x) {
                    *r += f64::from(dv) * f64::from(xv);
                }
            }
        }
        g
    }
}

fn outer_sum(rows: &[f32], width: usize, into: &mut [f64]) {
    for row in rows.chunks_exact(width) {
        for (i, &a) in row.iter().enumerate() {
            let a = f64::from(a);
            for (j, &b) in row.iter().enumerate() {
                into[i * width + j] += a * f64::from(b);
            }
        }
    }
}

impl KroneckerFactors {
    /// Fits `A` and `S` over `examples` (sums over positions, mean over examples).
    pub fn fit(inputs: usize, outputs: usize, examples: &[LayerExample<'_>]) -> Self {
        let mut a = vec![0.0; inputs * inputs];
        let mut s = vec![0.0; outputs * outputs];
        for e in examples {
            outer_sum(e.inputs, inputs, &mut a);
            outer_sum(e.output_grads, outputs, &mut s);
        }
        let n = examples.len().max(1) as f64;
        a.iter_mut().chain(s.iter_mut()).for_each(|v| *v /= n);
        Self {
            inputs,
            outputs,
            a,
            s,
        }
    }
}

/// Eigenvalues and orthonormal eigenvectors (columns of a row-major n x n matrix) of a
/// symmetric matrix: Householder reduction to tridiagonal form, then the implicit QL
/// algorithm (the EISPACK `tred2`/`tql2` pair, as in JAMA), O(n³).
pub fn symmetric_eigen(matrix: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut v = matrix.to_vec();
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tridiagonalize(&mut v, &mut d, &mut e, n);
    tridiagonal_ql(&mut v, &mut d, &mut e, n);
    (d, v)
}

/// Householder reduction of the symmetric `v` (n x n, row-major) to tridiagonal form:
/// diagonal in `d`, sub-diagonal in `e[1..]`, the orthogonal transformation left in `v`.
fn tridiagonalize(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    d.copy_from_slice(&v[at(n - 1, 0)..at(n - 1, 0) + n]);
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for x in &mut d[..i] {
                *x /= scale;
                h += *x * *x;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].iter_mut().for_each(|x| *x = 0.0);
            for j in 0..i {
                f = d[j];
                v[at(j, i)] = f;
                g = e[j] + v[at(j, j)] * f;
                for k in j + 1..i {
                    g += v[at(k, j)] * d[k];
                    e[k] += v[at(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[at(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[at(k, i + 1)] * v[at(k, j)]).sum();
                for k in 0..=i {
                    v[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL iterations on the tridiagonal matrix (`d`, `e`), accumulating the rotations
/// into `v`; leaves the eigenvalues in `d` and the eigenvectors in the columns of `v`.
fn tridiagonal_ql(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            loop {
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for x in &mut d[l + 2..n] {
                    *x -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for k in 0..n {
                        let (vi, vi1) = (v[at(k, i)], v[at(k, i + 1)]);
                        v[at(k, i + 1)] = s * vi + c * vi1;
                        v[at(k, i)] = c * vi - s * vi1;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

/// `op(a) · op(b)` for row-major `a` and `b`, where `op` transposes when asked; the result is
/// `n x m` with inner dimension `k`.
fn product(a: &[f64], a_t: bool, b: &[f64], b_t: bool, n: usize, k: usize, m: usize) -> Vec<f64> {
    assert!(a.len() == n * k && b.len() == k * m);
    let mut out = vec![0.0; n * m];
    if out.is_empty() || k == 0 {
        return out;
    }
    // (column stride, row stride) of op(a) (n x k) and op(b) (k x m).
    let (a_cs, a_rs) = if a_t { (n, 1) } else { (1, k) };
    let (b_cs, b_rs) = if b_t { (k, 1) } else { (1, m) };
    // SAFETY: `out` holds n x m values (row stride m); `a` and `b` hold n x k and k x m
    // values addressed through the strides above, all in bounds.
    unsafe {
        gemm::gemm(
            n,
            m,
            k,
            out.as_mut_ptr(),
            1,
            m as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
    out
}

/// `Uᵀ G V` for G (r x c), U (r x r), V (c x c), all row-major.
fn rotate_in(g: &[f64], u: &[f64], v: &[f64], r: usize, c: usize) -> Vec<f64> {
    product(
        &product(u, true, g, false, r, r, c),
        false,
        v,
        false,
        r,
        c,
        c,
    )
}

/// `U X Vᵀ`.
fn rotate_out(x: &[f64], u: &[f64], v: &[f64], r: usize, c: usize) -> Vec<f64> {
    product(
        &product(u, false, x, false, r, r, c),
        false,
        v,
        true,
        r,
        c,
        c,
    )
}

/// A fitted preconditioner for one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Preconditioner {
    inputs: usize,
    outputs: usize,
    u_a: Vec<f64>,
    u_s: Vec<f64>,
    /// Λ (out x in).
    lambda: Vec<f64>,
    damping: f64,
}

impl Preconditioner {
    fn bases(factors: &KroneckerFactors) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let (a, u_a) = symmetric_eigen(&factors.a, factors.inputs);
        let (s, u_s) = symmetric_eigen(&factors.s, factors.outputs);
        (a, u_a, s, u_s)
    }

    /// K-FAC: `Λ = s aᵀ`.
    pub fn kfac(factors: &KroneckerFactors, damping: f64) -> Self {
        let (a, u_a, s, u_s) = Self::bases(factors);
        let lambda = s
            .iter()
            .flat_map(|&si| a.iter().map(move |&aj| si * aj))
            .collect();
        Self {
            inputs: factors.inputs,
            outputs: factors.outputs,
            u_a,
            u_s,
            lambda,
            damping,
        }
    }

    /// EK-FAC: `Λ_ij = mean_n (U_Sᵀ G_n U_A)_ij²` over the examples' weight gradients.
    pub fn ekfac(factors: &KroneckerFactors, examples: &[LayerExample<'_>], damping: f64) -> Self {
        let (_, u_a, _, u_s) = Self::bases(factors);
        let (r, c) = (factors.outputs, factors.inputs);
        let mut lambda = vec![0.0; r * c];
        for e in examples {
            let g = e.weight_gradient(c, r);
            let rotated = rotate_in(&g, &u_s, &u_a, r, c);
            lambda
                .iter_mut()
                .zip(&rotated)
                .for_each(|(l, x)| *l += x * x);
        }
        let n = examples.len().max(1) as f64;
        lambda.iter_mut().for_each(|l| *l /= n);
        Self {
            inputs: c,
            outputs: r,
            u_a,
            u_s,
            lambda,
            damping,
        }
    }

    /// `(H + λI)⁻¹ g` for a weight gradient `g` (out x in, row-major).
    pub fn apply(&self, g: &[f64]) -> Vec<f64> {
        let (r, c) = (self.outputs, self.inputs);
        let mut x = rotate_in(g, &self.u_s, &self.u_a, r, c);
        x.iter_mut()
            .zip(&self.lambda)
            .for_each(|(v, l)| *v /= l + self.damping);
        rotate_out(&x, &self.u_s, &self.u_a, r, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn normal(rng: &mut SplitMix64) -> f64 {
        let (u, v) = (rng.next_f64().max(1e-300), rng.next_f64());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A random PSD matrix `B Bᵀ + 0.1 I`.
    fn psd(n: usize, rng: &mut SplitMix64) -> Vec<f64> {
        let b: Vec<f64> = (0..n * n).map(|_| normal(rng)).collect();
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>()
                    + if i == j { 0.1 } else { 0.0 };
            }
        }
        m
    }

    /// Solves `m x = y` densely (Gaussian elimination with partial pivoting).
    fn solve(mut m: Vec<f64>, mut y: Vec<f64>) -> Vec<f64> {
        let n = y.len();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&a, &b| m[a * n + col].abs().total_cmp(&m[b * n + col].abs()))
                .unwrap();
            for k in 0..n {
                m.swap(col * n + k, pivot * n + k);
            }
            y.swap(col, pivot);
            for row in col + 1..n {
                let f = m[row * n + col] / m[col * n + col];
                for k in col..n {
                    m[row * n + k] -= f * m[col * n + k];
                }
                y[row] -= f * y[col];
            }
        }
        let mut x = vec![0.0; n];
        for row in (0..n).rev() {
            let rest: f64 = (row + 1..n).map(|k| m[row * n + k] * x[k]).sum();
            x[row] = (y[row] - rest) / m[row * n + row];
        }
        x
    }

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let check = |m: &[f64], n: usize, tol: f64| {
            let (values, vectors) = symmetric_eigen(m, n);
            for i in 0..n {
                for j in 0..n {
                    let back: f64 = (0..n)
                        .map(|k| vectors[i * n + k] * values[k] * vectors[j * n + k])
                        .sum();
                    assert!((back - m[i * n + j]).abs() < tol, "n = {n} ({i}, {j})");
                    let dot: f64 = (0..n)
                        .map(|k| vectors[k * n + i] * vectors[k * n + j])
                        .sum();
                    assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
                }
            }
            values
        };
        let mut rng = SplitMix64::new(3);
        check(&psd(6, &mut rng), 6, 1e-9);
        check(&psd(40, &mut rng), 40, 1e-8);
        assert_eq!(check(&[2.5], 1, 1e-15), [2.5]);
        // Diagonal with a repeated eigenvalue, and a zero row and column (rank deficient).
        let mut values = check(&[3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0], 3, 1e-12);
        values.sort_by(f64::total_cmp);
        assert_eq!(values, [0.0, 3.0, 3.0]);
    }

    #[test]
    fn kfac_ihvp_equals_the_dense_inverse() {
        // A 4 x 3 layer: (S ⊗ A + λI)⁻¹ vec(G) with row-major vec, solved densely.
        let mut rng = SplitMix64::new(11);
        let (inputs, outputs, damping) = (3, 4, 1e-3);
        let factors = KroneckerFactors {
            inputs,
            outputs,
            a: psd(inputs, &mut rng),
            s: psd(outputs, &mut rng),
        };
        let g: Vec<f64> = (0..outputs * inputs).map(|_| normal(&mut rng)).collect();
        let n = outputs * inputs;
        let mut dense = vec![0.0; n * n];
        for i in 0..outputs {
            for j in 0..inputs {
                for k in 0..outputs {
                    for l in 0..inputs {
                        dense[(i * inputs + j) * n + k * inputs + l] =
                            factors.s[i * outputs + k] * factors.a[j * inputs + l];
                    }
                }
            }
        }
        for d in 0..n {
            dense[d * n + d] += damping;
        }
        let expected = solve(dense, g.clone());
        let got = Preconditioner::kfac(&factors, damping).apply(&g);
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn ekfac_equals_kfac_for_one_single_token_example() {
        // A = x xᵀ, S = δ δᵀ, G = δ xᵀ: Λ = s aᵀ exactly.
        let x = [0.3f32, -1.2, 0.7];
        let d = [0.5f32, 0.1, -0.4, 0.9];
        let example = LayerExample {
            inputs: &x,
            output_grads: &d,
        };
        let factors = KroneckerFactors::fit(3, 4, &[example]);
        let kfac = Preconditioner::kfac(&factors, 1e-3);
        let ekfac = Preconditioner::ekfac(&factors, &[example], 1e-3);
        for (a, b) in kfac.lambda.iter().zip(&ekfac.lambda) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        let g = [
            1.0, 0.5, -0.2, 0.3, 0.0, 2.0, -1.0, 0.4, 0.9, 0.1, 0.2, -0.7,
        ];
        for (a, b) in kfac.apply(&g).iter().zip(ekfac.apply(&g)) {
            assert!((a - b).abs() < 1e-6 * b.abs().max(1.0));
        }
    }

    #[test]
    fn ekfac_eigenvalues_approach_kfac_for_independent_inputs_and_gradients() {
        // Single-token examples with independent δ and x: E[(U_Sᵀ δ)_i² (U_Aᵀ x)_j²] = s_i a_j.
        let mut rng = SplitMix64::new(5);
        let scales_x = [1.0, 2.0, 0.5];
        let scales_d = [1.5, 0.7];
        let data: Vec<(Vec<f32>, Vec<f32>)> = (0..20_000)
            .map(|_| {
                let x = scales_x
                    .iter()
                    .map(|s| (s * normal(&mut rng)) as f32)
                    .collect();
                let d = scales_d
                    .iter()
                    .map(|s| (s * normal(&mut rng)) as f32)
                    .collect();
                (x, d)
            })
            .collect();
        let examples: Vec<LayerExample> = data
            .iter()
            .map(|(x, d)| LayerExample {
                inputs: x,
                output_grads: d,
            })
            .collect();
        let factors = KroneckerFactors::fit(3, 2, &examples);
        let kfac = Preconditioner::kfac(&factors, 0.0);
        let ekfac = Preconditioner::ekfac(&factors, &examples, 0.0);
        for (k, e) in kfac.lambda.iter().zip(&ekfac.lambda) {
            // Equal in expectation (independence); 20,000 samples leave a few % of error.
            assert!((k - e).abs() < 0.1 * k.abs(), "{k} vs {e}");
        }
    }
}
