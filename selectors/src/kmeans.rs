//! k-means of our own: k-means++ initialisation on a seeded sample, Lloyd iterations with
//! blocked matrix products on all cores, Euclidean and spherical (cosine) variants, and a
//! mini-batch mode (Sculley 2010) for pools streamed in batches.
//!
//! Determinism: work is split into fixed-size row blocks whose partial sums are combined in
//! block order, so results are identical whatever the thread count.

use crate::rng::SplitMix64;
use crate::simd::norm2;
use rayon::prelude::*;

/// Row block of the assignment step (rows per matrix product).
const BLOCK: usize = 2048;

/// Distance the clusters are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Squared Euclidean distance.
    Euclidean,
    /// Cosine: inputs must be L2-normalised; centroids are re-normalised after each update.
    Cosine,
}

/// k-means settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansConfig {
    /// Number of clusters.
    pub k: usize,
    /// Lloyd iterations (at most).
    pub max_iters: usize,
    /// Stop when the relative decrease of the objective falls below this (0 = run all iterations).
    pub tol: f64,
    /// Seed of the initialisation sample and k-means++ draws.
    pub seed: u64,
    /// Distance.
    pub metric: Metric,
    /// Points k-means++ draws its centres from (a seeded sample of the data; 0 = 64 per cluster).
    pub init_sample: usize,
}

impl KMeansConfig {
    /// Defaults for `k` clusters: 20 iterations, no early stop, seed 0, Euclidean.
    pub fn new(k: usize) -> Self {
        KMeansConfig {
            k,
            max_iters: 20,
            tol: 0.0,
            seed: 0,
            metric: Metric::Euclidean,
            init_sample: 0,
        }
    }
}

/// Fitted centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Dimension.
    pub dim: usize,
    /// Row-major `k x dim` centroids.
    pub centroids: Vec<f32>,
    /// Distance.
    pub metric: Metric,
}

/// Result of [`fit`].
#[derive(Debug, Clone)]
pub struct FitResult {
    /// The model.
    pub model: KMeans,
    /// Cluster of each input row.
    pub assignments: Vec<u32>,
    /// Sum of squared Euclidean distances of the rows to their centroids.
    pub inertia: f64,
    /// Objective after each iteration.
    pub history: Vec<f64>,
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = norm2(v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// `out[i*k + j] = rows[i] . centroids[j]` for a block of rows (one thread: the caller
/// parallelises over blocks).
pub(crate) fn dots(rows: &[f32], centroids: &[f32], dim: usize, out: &mut [f32]) {
    let m = rows.len() / dim;
    let k = centroids.len() / dim;
    assert!(out.len() == m * k && centroids.len() == k * dim);
    // SAFETY: dst is m x k (row stride k), lhs m x dim (row stride dim), rhs dim x k read from
    // the k x dim centroid matrix (column stride dim); all slices hold those many elements.
    unsafe {
        gemm::gemm(
            m,
            k,
            dim,
            out.as_mut_ptr(),
            1,
            k as isize,
            false,
            rows.as_ptr(),
            1,
            dim as isize,
            centroids.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Per-cluster coordinate sums (k x dim, f64) and counts.
type ClusterSums = (Vec<f64>, Vec<u64>);
/// Assignments, squared distances and (optionally) cluster sums of a set of rows.
type BlockResult = (Vec<u32>, Vec<f32>, Option<ClusterSums>);

impl KMeans {
    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// Centroid `j`.
    pub fn centroid(&self, j: usize) -> &[f32] {
        &self.centroids[j * self.dim..(j + 1) * self.dim]
    }

    /// Nearest centroid of each row and its squared Euclidean distance.
    pub fn assign(&self, data: &[f32]) -> (Vec<u32>, Vec<f32>) {
        let (assign, dist, _) = self.assign_and_sum(data, false);
        (assign, dist)
    }

    /// Assignment plus, when `sums` is set, per-cluster coordinate sums and counts.
    fn assign_and_sum(&self, data: &[f32], sums: bool) -> BlockResult {
        let d = self.dim;
        let k = self.k();
        let c_norms: Vec<f32> = (0..k).map(|j| norm2(self.centroid(j))).collect();
        let blocks: Vec<BlockResult> = data
            .par_chunks(BLOCK * d)
            .map(|rows| {
                let m = rows.len() / d;
                let mut prod = vec![0f32; m * k];
                dots(rows, &self.centroids, d, &mut prod);
                let mut assign = Vec::with_capacity(m);
                let mut dist = Vec::with_capacity(m);
                for i in 0..m {
                    let x2 = norm2(&rows[i * d..(i + 1) * d]);
                    let p = &prod[i * k..(i + 1) * k];
                    let (mut best, mut best_v) = (0usize, f32::INFINITY);
                    for j in 0..k {
                        let v = c_norms[j] - 2.0 * p[j];
                        if v < best_v {
                            best_v = v;
                            best = j;
                        }
                    }
                    assign.push(best as u32);
                    dist.push((x2 + best_v).max(0.0));
                }
                let partial = sums.then(|| {
                    let mut s = vec![0f64; k * d];
                    let mut c = vec![0u64; k];
                    for (i, &a) in assign.iter().enumerate() {
                        let a = a as usize;
                        c[a] += 1;
                        let acc = &mut s[a * d..(a + 1) * d];
                        for (t, x) in acc.iter_mut().zip(&rows[i * d..(i + 1) * d]) {
                            *t += *x as f64;
                        }
                    }
                    (s, c)
                });
                (assign, dist, partial)
            })
            .collect();
        let mut assign = Vec::with_capacity(data.len() / d);
        let mut dist = Vec::with_capacity(data.len() / d);
        let mut total: Option<(Vec<f64>, Vec<u64>)> =
            sums.then(|| (vec![0f64; k * d], vec![0u64; k]));
        for (a, di, p) in blocks {
            assign.extend(a);
            dist.extend(di);
            if let (Some((ts, tc)), Some((s, c))) = (total.as_mut(), p) {
                ts.iter_mut().zip(&s).for_each(|(t, x)| *t += x);
                tc.iter_mut().zip(&c).for_each(|(t, x)| *t += x);
            }
        }
        (assign, dist, total)
    }
}

/// k-means++ (Arthur & Vassilvitskii 2007) on `sample` (row indices into `data`).
/// Distances to each new centre come from blocked dot products: |x|^2 - 2 x.c + |c|^2.
pub fn kmeans_plus_plus(
    data: &[f32],
    dim: usize,
    sample: &[usize],
    k: usize,
    rng: &mut SplitMix64,
) -> Vec<f32> {
    let mut points = Vec::with_capacity(sample.len() * dim);
    for &i in sample {
        points.extend_from_slice(&data[i * dim..(i + 1) * dim]);
    }
    let norms: Vec<f32> = points.chunks(dim).map(norm2).collect();
    let distances_to = |c: &[f32]| -> Vec<f32> {
        let c2 = norm2(c);
        let blocks: Vec<Vec<f32>> = points
            .par_chunks(BLOCK * dim)
            .enumerate()
            .map(|(b, rows)| {
                let mut out = vec![0f32; rows.len() / dim];
                dots(rows, c, dim, &mut out);
                out.iter()
                    .enumerate()
                    .map(|(i, p)| (norms[b * BLOCK + i] - 2.0 * p + c2).max(0.0))
                    .collect()
            })
            .collect();
        blocks.concat()
    };
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.below(sample.len());
    centroids.extend_from_slice(&points[first * dim..(first + 1) * dim]);
    let mut best = distances_to(&points[first * dim..(first + 1) * dim]);
    for _ in 1..k {
        let total: f64 = best.iter().map(|&x| x as f64).sum();
        let pick = if total <= 0.0 {
            rng.below(sample.len())
        } else {
            let mut r = rng.next_f64() * total;
            let mut chosen = sample.len() - 1;
            for (i, &b) in best.iter().enumerate() {
                r -= b as f64;
                if r < 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        };
        let c = points[pick * dim..(pick + 1) * dim].to_vec();
        for (b, d) in best.iter_mut().zip(distances_to(&c)) {
            *b = b.min(d);
        }
        centroids.extend_from_slice(&c);
    }
    centroids
}

/// Initial centroids for `data` under `config`: k-means++ on a seeded sample.
pub fn init_centroids(data: &[f32], dim: usize, config: &KMeansConfig) -> Vec<f32> {
    let n = data.len() / dim;
    let mut rng = SplitMix64::new(config.seed);
    let want = if config.init_sample == 0 {
        64 * config.k
    } else {
        config.init_sample
    };
    let sample = rng.sample_indices(n, want.max(config.k));
    let mut c = kmeans_plus_plus(data, dim, &sample, config.k, &mut rng);
    if config.metric == Metric::Cosine {
        c.chunks_mut(dim).for_each(normalize);
    }
    c
}

/// Fits k-means on `data` (row-major, `dim` columns), starting from k-means++.
pub fn fit(data: &[f32], dim: usize, config: &KMeansConfig) -> FitResult {
    let init = init_centroids(data, dim, config);
    fit_from(data, dim, config, init)
}

/// k-means on a seeded sample of at most `per_cluster * k` rows (all rows when
/// `per_cluster` is 0 or the data is smaller), then every row assigned to the fitted
/// centroids: two passes, as faiss does for large inputs.
pub fn fit_sampled(
    data: &[f32],
    dim: usize,
    config: &KMeansConfig,
    per_cluster: usize,
) -> FitResult {
    let n = data.len() / dim;
    let cap = per_cluster.saturating_mul(config.k);
    if per_cluster == 0 || n <= cap {
        return fit(data, dim, config);
    }
    let rows = SplitMix64::new(config.seed ^ 0x5EED).sample_indices(n, cap);
    let sample: Vec<f32> = rows
        .iter()
        .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let mut fitted = fit(&sample, dim, config);
    let (assignments, dist) = fitted.model.assign(data);
    fitted.inertia = dist.iter().map(|&x| x as f64).sum();
    fitted.assignments = assignments;
    fitted
}

/// Lloyd iterations from the given initial centroids (`k * dim` values).
pub fn fit_from(data: &[f32], dim: usize, config: &KMeansConfig, init: Vec<f32>) -> FitResult {
    assert!(
        dim > 0 && data.len().is_multiple_of(dim),
        "data must be n x dim"
    );
    let n = data.len() / dim;
    assert!(
        config.k >= 1 && config.k <= n,
        "need 1 <= k <= n (k = {}, n = {n})",
        config.k
    );
    let mut model = KMeans {
        dim,
        centroids: init,
        metric: config.metric,
    };
    let mut history = Vec::new();
    let mut last = f64::INFINITY;
    for _ in 0..config.max_iters {
        let (_, dist, sums) = model.assign_and_sum(data, true);
        let (sums, counts) = sums.expect("sums requested");
        history.push(dist.iter().map(|&x| x as f64).sum());
        update(&mut model, &sums, &counts);
        let obj = *history.last().expect("pushed");
        if config.tol > 0.0 && last.is_finite() && (last - obj) <= config.tol * last {
            break;
        }
        last = obj;
    }
    let (assignments, dist) = model.assign(data);
    let inertia = dist.iter().map(|&x| x as f64).sum();
    FitResult {
        model,
        assignments,
        inertia,
        history,
    }
}

/// New centroids from sums. An empty cluster splits the largest cluster (ties by lowest
/// index): it takes that centroid nudged by +-1/1024 per coordinate, the donor the opposite
/// nudge, so the next assignment divides the donor's points between them.
fn update(model: &mut KMeans, sums: &[f64], counts: &[u64]) {
    const EPS: f32 = 1.0 / 1024.0;
    let d = model.dim;
    let mut sizes = counts.to_vec();
    for j in 0..model.k() {
        if counts[j] > 0 {
            let c = &mut model.centroids[j * d..(j + 1) * d];
            for (t, s) in c.iter_mut().zip(&sums[j * d..(j + 1) * d]) {
                *t = (*s / counts[j] as f64) as f32;
            }
        }
    }
    for j in 0..model.k() {
        if counts[j] > 0 {
            continue;
        }
        let donor = (0..model.k())
            .max_by(|&a, &b| sizes[a].cmp(&sizes[b]).then(b.cmp(&a)))
            .expect("k >= 1");
        if sizes[donor] < 2 {
            continue;
        }
        for t in 0..d {
            let x = model.centroids[donor * d + t];
            let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
            model.centroids[j * d + t] = x * (1.0 + sign * EPS);
            model.centroids[donor * d + t] = x * (1.0 - sign * EPS);
        }
        sizes[j] = sizes[donor] / 2;
        sizes[donor] -= sizes[j];
    }
    if model.metric == Metric::Cosine {
        model.centroids.chunks_mut(d).for_each(normalize);
    }
}

/// Mini-batch k-means (Sculley 2010): centroids move towards each batch's points with a
/// per-centroid learning rate 1 / (points seen); starved centroids are re-seeded at the
/// batch's worst-fitted points. Feed batches in a fixed order.
#[derive(Debug, Clone)]
pub struct MiniBatchKMeans {
    /// Current centroids.
    pub model: KMeans,
    counts: Vec<u64>,
}

impl MiniBatchKMeans {
    /// Starts from initial centroids (e.g. [`init_centroids`] on a first batch).
    pub fn new(model: KMeans) -> Self {
        let k = model.k();
        MiniBatchKMeans {
            model,
            counts: vec![0; k],
        }
    }

    /// One update with `batch` (row-major). Returns the batch's objective before the update.
    pub fn partial_fit(&mut self, batch: &[f32]) -> f64 {
        let d = self.model.dim;
        let (assign, dist) = self.model.assign(batch);
        for (i, &a) in assign.iter().enumerate() {
            let a = a as usize;
            self.counts[a] += 1;
            let eta = 1.0 / self.counts[a] as f32;
            let c = &mut self.model.centroids[a * d..(a + 1) * d];
            for (t, x) in c.iter_mut().zip(&batch[i * d..(i + 1) * d]) {
                *t += eta * (x - *t);
            }
        }
        // Starved centroids (fewer points than 1% of the busiest, as scikit-learn's
        // reassignment_ratio) move to the batch points farthest from their centroids, each
        // point used once (ties by lowest index), and restart with the smallest count kept.
        let busiest = self.counts.iter().copied().max().unwrap_or(0);
        let starved: Vec<usize> = (0..self.counts.len())
            .filter(|&j| self.counts[j] == 0 || (self.counts[j] as f64) < 0.01 * busiest as f64)
            .collect();
        if !starved.is_empty() {
            let floor = (0..self.counts.len())
                .filter(|j| !starved.contains(j))
                .map(|j| self.counts[j])
                .min()
                .unwrap_or(0);
            let mut order: Vec<usize> = (0..dist.len()).collect();
            order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
            for (j, i) in starved.into_iter().zip(order) {
                self.model.centroids[j * d..(j + 1) * d]
                    .copy_from_slice(&batch[i * d..(i + 1) * d]);
                self.counts[j] = floor;
            }
        }
        if self.model.metric == Metric::Cosine {
            self.model.centroids.chunks_mut(d).for_each(normalize);
        }
        dist.iter().map(|&x| x as f64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `centers` (row-major), with small seeded noise.
    pub(crate) fn planted(
        centers: &[Vec<f32>],
        per: usize,
        noise: f32,
        seed: u64,
    ) -> (Vec<f32>, Vec<u32>) {
        let mut rng = SplitMix64::new(seed);
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for i in 0..per * centers.len() {
            let c = i % centers.len();
            for &x in &centers[c] {
                data.push(x + noise * (rng.next_f64() as f32 * 2.0 - 1.0));
            }
            labels.push(c as u32);
        }
        (data, labels)
    }

    fn brute_inertia(data: &[f32], dim: usize, model: &KMeans) -> (Vec<u32>, f64) {
        let mut total = 0.0;
        let mut assign = vec![];
        for row in data.chunks(dim) {
            let (j, best) = (0..model.k())
                .map(|j| {
                    (
                        j,
                        row.iter()
                            .zip(model.centroid(j))
                            .map(|(a, b)| ((a - b) * (a - b)) as f64)
                            .sum::<f64>(),
                    )
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assign.push(j as u32);
            total += best;
        }
        (assign, total)
    }

    #[test]
    fn assignment_matches_brute_force() {
        let centers: Vec<Vec<f32>> = (0..7)
            .map(|i| (0..5).map(|j| ((i * 5 + j) % 11) as f32).collect())
            .collect();
        let (data, _) = planted(&centers, 500, 3.0, 1);
        let r = fit(
            &data,
            5,
            &KMeansConfig {
                max_iters: 3,
                ..KMeansConfig::new(7)
            },
        );
        let (assign, inertia) = brute_inertia(&data, 5, &r.model);
        assert_eq!(assign, r.assignments);
        assert!(
            (inertia - r.inertia).abs() / inertia < 1e-4,
            "{inertia} vs {}",
            r.inertia
        );
    }

    #[test]
    fn objective_never_increases_and_planted_clusters_are_recovered() {
        let centers: Vec<Vec<f32>> = (0..6)
            .map(|i| (0..8).map(|j| if j == i { 10.0 } else { 0.0 }).collect())
            .collect();
        let (data, labels) = planted(&centers, 300, 0.5, 2);
        let r = fit(
            &data,
            8,
            &KMeansConfig {
                seed: 3,
                ..KMeansConfig::new(6)
            },
        );
        assert!(
            r.history.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-6)),
            "{:?}",
            r.history
        );
        // Same partition up to label names: a bijection between planted and found labels.
        let mut map = std::collections::HashMap::new();
        for (a, b) in labels.iter().zip(&r.assignments) {
            assert_eq!(
                *map.entry(*a).or_insert(*b),
                *b,
                "planted cluster {a} split"
            );
        }
        let distinct: std::collections::HashSet<_> = map.values().collect();
        assert_eq!(distinct.len(), 6);
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let centers: Vec<Vec<f32>> = (0..10)
            .map(|i| (0..16).map(|j| ((i * 7 + j * 3) % 13) as f32).collect())
            .collect();
        let (data, _) = planted(&centers, 900, 4.0, 4);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| fit(&data, 16, &KMeansConfig::new(10)))
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.model.centroids, b.model.centroids);
        assert_eq!(a.assignments, b.assignments);
    }

    #[test]
    fn an_empty_cluster_splits_the_largest_one() {
        // Three points near (0, 0), one at (10, 10); the third centroid attracts nothing.
        let data = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 10.0, 10.0];
        let init = vec![0.5, 0.5, 10.0, 10.0, -100.0, -100.0];
        let r = fit_from(
            &data,
            2,
            &KMeansConfig {
                max_iters: 1,
                ..KMeansConfig::new(3)
            },
            init,
        );
        let mean = 1.0f32 / 3.0;
        let eps = 1.0f32 / 1024.0;
        // Donor (cluster 0, the largest) and the empty cluster 2 straddle the donor's mean.
        assert_eq!(
            r.model.centroid(0),
            [mean * (1.0 - eps), mean * (1.0 + eps)]
        );
        assert_eq!(
            r.model.centroid(2),
            [mean * (1.0 + eps), mean * (1.0 - eps)]
        );
        assert_eq!(r.model.centroid(1), [10.0, 10.0]);
    }

    #[test]
    fn spherical_centroids_stay_unit_length() {
        let centers: Vec<Vec<f32>> = (0..4)
            .map(|i| (0..6).map(|j| if j == i { 1.0 } else { 0.1 }).collect())
            .collect();
        let (mut data, _) = planted(&centers, 100, 0.05, 5);
        data.chunks_mut(6).for_each(normalize);
        let r = fit(
            &data,
            6,
            &KMeansConfig {
                metric: Metric::Cosine,
                ..KMeansConfig::new(4)
            },
        );
        for j in 0..4 {
            assert!((norm2(r.model.centroid(j)) - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn mini_batch_revives_a_centroid_that_attracts_nothing() {
        // Two tight groups; the initial centroids sit on one group and far away from both.
        let mut data = vec![];
        for i in 0..50 {
            data.extend_from_slice(&[0.0 + i as f32 * 1e-3, 0.0]);
            data.extend_from_slice(&[10.0, 10.0 + i as f32 * 1e-3]);
        }
        let model = KMeans {
            dim: 2,
            centroids: vec![0.0, 0.0, -50.0, -50.0],
            metric: Metric::Euclidean,
        };
        let mut mb = MiniBatchKMeans::new(model);
        mb.partial_fit(&data[..40]);
        // The dead centroid jumped to the farthest point of the batch, in the (10, 10) group.
        assert!(
            (mb.model.centroid(1)[0] - 10.0).abs() < 1e-3,
            "{:?}",
            mb.model.centroid(1)
        );
        for batch in data.chunks(40) {
            mb.partial_fit(batch);
        }
        let (assign, _) = mb.model.assign(&data);
        assert!(
            assign.chunks(2).all(|p| p[0] == 0 && p[1] == 1),
            "{assign:?}"
        );
    }

    #[test]
    fn mini_batch_converges_to_planted_centres() {
        let centers: Vec<Vec<f32>> = (0..5)
            .map(|i| {
                (0..4)
                    .map(|j| {
                        if j == i % 4 {
                            20.0 * (1 + i / 4) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let (data, _) = planted(&centers, 2000, 1.0, 6);
        let cfg = KMeansConfig::new(5);
        let init = init_centroids(&data[..4 * 1000], 4, &cfg);
        let mut mb = MiniBatchKMeans::new(KMeans {
            dim: 4,
            centroids: init,
            metric: Metric::Euclidean,
        });
        for batch in data.chunks(4 * 500) {
            mb.partial_fit(batch);
        }
        for c in &centers {
            let nearest = (0..5)
                .map(|j| {
                    mb.model
                        .centroid(j)
                        .iter()
                        .zip(c)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f32>()
                })
                .fold(f32::INFINITY, f32::min);
            assert!(nearest < 0.5, "centre {c:?} not found: {nearest}");
        }
    }
}
