//! SemDeDup (Abbas et al. 2023), as described in docs/METHODS.md: within each
//! k-means cluster, order items by distance to the centroid, and remove item j when its
//! cosine similarity to any earlier item (removed or not) is strictly above 1 - eps.

use crate::kmeans::{dots, KMeans};
use crate::nn::{HnswIndex, HnswParams, NeighborIndex};
use crate::rng::SplitMix64;
use rayon::prelude::*;

/// Which member of a near-duplicate group survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The member farthest from the centroid (the paper's default).
    Hard,
    /// The member nearest to the centroid.
    Easy,
    /// A seeded random member.
    Random,
}

/// SemDeDup settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SemDedupConfig {
    /// Items are removed when their similarity to an earlier item is > 1 - eps.
    pub eps: f32,
    /// Survivor policy.
    pub keep: Keep,
    /// Seed of the `random` order.
    pub seed: u64,
    /// Clusters up to this size are compared exactly (all pairs, in tiles of bounded memory);
    /// larger ones through an HNSW index of the cluster, checking each item's 32 nearest
    /// neighbours (an approximation that misses duplicates in groups larger than that).
    pub exact_max_cluster: usize,
}

/// Outcome for one item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DedupDecision {
    /// Whether the item is removed.
    pub removed: bool,
    /// Its highest similarity to an earlier item of its cluster (0 for the first).
    pub max_earlier_similarity: f32,
}

/// Runs SemDeDup over `data` (row-major, L2-normalised) given each row's cluster.
pub fn semdedup(
    data: &[f32],
    dim: usize,
    assignments: &[u32],
    centroids: &KMeans,
    config: &SemDedupConfig,
) -> Vec<DedupDecision> {
    let k = centroids.k();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &c) in assignments.iter().enumerate() {
        members[c as usize].push(i);
    }
    let per_cluster: Vec<Vec<(usize, DedupDecision)>> = members
        .par_iter()
        .enumerate()
        .map(|(c, rows)| dedup_cluster(data, dim, rows, centroids.centroid(c), c as u64, config))
        .collect();
    let mut out = vec![
        DedupDecision {
            removed: false,
            max_earlier_similarity: 0.0
        };
        assignments.len()
    ];
    for (i, d) in per_cluster.into_iter().flatten() {
        out[i] = d;
    }
    out
}

/// The keep order of a cluster's rows: by cosine distance to the centroid, farthest first
/// (`hard`), nearest first (`easy`), or shuffled (`random`); ties by row.
pub fn keep_order(
    data: &[f32],
    dim: usize,
    rows: &[usize],
    centroid: &[f32],
    keep: Keep,
    seed: u64,
) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = rows
        .iter()
        .map(|&i| (crate::simd::dot(&data[i * dim..(i + 1) * dim], centroid), i))
        .collect();
    match keep {
        // Farthest = lowest similarity first.
        Keep::Hard => scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))),
        Keep::Easy => scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))),
        Keep::Random => {
            let mut rng = SplitMix64::new(seed);
            scored.sort_by_key(|s| s.1);
            rng.shuffle(&mut scored);
        }
    }
    scored.into_iter().map(|s| s.1).collect()
}

/// Rows of a tile of the similarity matrix.
const TILE_ROWS: usize = 256;
/// Columns of a tile: with the rows, bounds the working memory to 8 MB whatever the cluster
/// size.
const TILE_COLS: usize = 8192;

/// For each row `j` of `points` (row-major, `dim` wide), its highest dot product with an
/// earlier row (0 for the first): the column maxima of the strict upper triangle of
/// `E E^T`, computed exactly in tiles of `TILE_ROWS x TILE_COLS`.
pub fn max_earlier_similarity(points: &[f32], dim: usize) -> Vec<f32> {
    let n = points.len() / dim;
    let mut best = vec![0f32; n];
    let mut tile = vec![0f32; TILE_ROWS * TILE_COLS];
    for rows in (0..n).step_by(TILE_ROWS) {
        let rows_end = (rows + TILE_ROWS).min(n);
        // Only columns after the first row of the block can be "later".
        for cols in (rows + 1..n).step_by(TILE_COLS) {
            let cols_end = (cols + TILE_COLS).min(n);
            let width = cols_end - cols;
            let out = &mut tile[..(rows_end - rows) * width];
            dots(
                &points[rows * dim..rows_end * dim],
                &points[cols * dim..cols_end * dim],
                dim,
                out,
            );
            for (bi, i) in (rows..rows_end).enumerate() {
                for j in (i + 1).max(cols)..cols_end {
                    let s = out[bi * width + (j - cols)];
                    if s > best[j] {
                        best[j] = s;
                    }
                }
            }
        }
    }
    best
}

fn dedup_cluster(
    data: &[f32],
    dim: usize,
    rows: &[usize],
    centroid: &[f32],
    cluster: u64,
    config: &SemDedupConfig,
) -> Vec<(usize, DedupDecision)> {
    let seed = config.seed ^ cluster.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let order = keep_order(data, dim, rows, centroid, config.keep, seed);
    let n = order.len();
    let mut points = Vec::with_capacity(n * dim);
    for &i in &order {
        points.extend_from_slice(&data[i * dim..(i + 1) * dim]);
    }
    let threshold = 1.0 - config.eps;
    let max_earlier: Vec<f32> = if n <= config.exact_max_cluster {
        max_earlier_similarity(&points, dim)
    } else {
        let index = HnswIndex::build(&points, dim, HnswParams::default());
        (0..n)
            .map(|j| {
                index
                    .search(&points[j * dim..(j + 1) * dim], 32)
                    .into_iter()
                    .filter(|&(i, _)| i < j)
                    .map(|(_, s)| s)
                    .fold(0f32, f32::max)
            })
            .collect()
    };
    order
        .into_iter()
        .zip(max_earlier)
        .map(|(row, m)| {
            (
                row,
                DedupDecision {
                    removed: m > threshold,
                    max_earlier_similarity: m,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmeans::Metric;

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn config(eps: f32, keep: Keep) -> SemDedupConfig {
        SemDedupConfig {
            eps,
            keep,
            seed: 0,
            exact_max_cluster: 10_000,
        }
    }

    /// 20 orthogonal base vectors; bases 0..5 get 3 near-copies each (cos > 0.95 within a group).
    fn planted() -> (Vec<f32>, usize, Vec<Vec<usize>>) {
        let dim = 20;
        let mut rows: Vec<Vec<f32>> = (0..20)
            .map(|b| unit((0..dim).map(|j| if j == b { 1.0 } else { 0.0 }).collect()))
            .collect();
        let mut groups = vec![];
        for b in 0..5 {
            let mut g = vec![b];
            for c in 0..3 {
                let mut v: Vec<f32> = (0..dim).map(|j| if j == b { 1.0 } else { 0.0 }).collect();
                v[(b + 5 + c) % dim] = 0.08 * (c + 1) as f32;
                g.push(rows.len());
                rows.push(unit(v));
            }
            groups.push(g);
        }
        (rows.concat(), dim, groups)
    }

    fn one_cluster(data: &[f32], dim: usize) -> (Vec<u32>, KMeans) {
        let n = data.len() / dim;
        let mut c = vec![0f32; dim];
        for r in data.chunks(dim) {
            c.iter_mut().zip(r).for_each(|(a, b)| *a += b / n as f32);
        }
        (
            vec![0; n],
            KMeans {
                dim,
                centroids: unit(c),
                metric: Metric::Cosine,
            },
        )
    }

    #[test]
    fn planted_groups_lose_exactly_three_each_and_the_keep_order_decides_the_survivor() {
        let (data, dim, groups) = planted();
        let (assign, model) = one_cluster(&data, dim);
        for keep in [Keep::Hard, Keep::Easy] {
            let out = semdedup(&data, dim, &assign, &model, &config(0.05, keep));
            assert_eq!(out.iter().filter(|d| d.removed).count(), 15);
            for g in &groups {
                let survivors: Vec<usize> =
                    g.iter().copied().filter(|&i| !out[i].removed).collect();
                assert_eq!(survivors.len(), 1, "{keep:?} {g:?}");
                // Survivor = first of the group in keep order.
                let order = keep_order(
                    &data,
                    dim,
                    &(0..data.len() / dim).collect::<Vec<_>>(),
                    model.centroid(0),
                    keep,
                    0,
                );
                let first = order.iter().find(|i| g.contains(i)).unwrap();
                assert_eq!(survivors[0], *first);
            }
            // Base vectors 5..20 have no near-copy and stay.
            assert!((5..20).all(|i| !out[i].removed));
        }
    }

    #[test]
    fn chains_remove_both_later_items_and_eps_zero_removes_nothing() {
        // A, B, C with cos(A,B) = cos(B,C) = 0.96 and cos(A,C) < 0.95, in this keep order.
        let dim = 3;
        let t = 0.96f32.acos();
        let a = vec![1.0, 0.0, 0.0];
        let b = vec![t.cos(), t.sin(), 0.0];
        let c = vec![(2.0 * t).cos(), (2.0 * t).sin(), 0.0];
        let data = [a, b, c].concat();
        let cos_ac = (2.0 * t).cos();
        assert!(cos_ac < 0.95);
        // A centroid making the hard order A, B, C: most similar to C, least to A.
        let model = KMeans {
            dim,
            centroids: unit(vec![(3.0 * t).cos(), (3.0 * t).sin(), 0.0]),
            metric: Metric::Cosine,
        };
        let out = semdedup(&data, dim, &[0, 0, 0], &model, &config(0.05, Keep::Hard));
        assert_eq!(
            out.iter().map(|d| d.removed).collect::<Vec<_>>(),
            [false, true, true]
        );
        let none = semdedup(&data, dim, &[0, 0, 0], &model, &config(0.0, Keep::Hard));
        assert!(none.iter().all(|d| !d.removed));
    }

    #[test]
    fn singletons_and_exact_copies() {
        let dim = 2;
        let data = vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let model = KMeans {
            dim,
            centroids: vec![1.0, 0.0, 0.0, 1.0],
            metric: Metric::Cosine,
        };
        let out = semdedup(&data, dim, &[0, 0, 1], &model, &config(0.01, Keep::Random));
        assert_eq!(
            out.iter().filter(|d| d.removed).count(),
            1,
            "one of the two copies goes"
        );
        assert!(!out[2].removed, "a singleton is never removed");
    }

    #[test]
    fn hnsw_path_agrees_with_exact_on_planted_duplicates() {
        let (data, dim, _) = planted();
        let (assign, model) = one_cluster(&data, dim);
        let exact = semdedup(&data, dim, &assign, &model, &config(0.05, Keep::Hard));
        let approx = semdedup(
            &data,
            dim,
            &assign,
            &model,
            &SemDedupConfig {
                exact_max_cluster: 4,
                ..config(0.05, Keep::Hard)
            },
        );
        assert_eq!(
            exact.iter().map(|d| d.removed).collect::<Vec<_>>(),
            approx.iter().map(|d| d.removed).collect::<Vec<_>>()
        );
    }

    /// Random unit vectors with groups of near-copies, `dim` wide.
    fn heavy_groups(groups: usize, size: usize, singles: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        let mut gauss = || {
            let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        let mut data = Vec::new();
        for _ in 0..groups {
            let base: Vec<f32> = (0..dim).map(|_| gauss()).collect();
            for _ in 0..size {
                data.extend(unit(base.iter().map(|x| x + 0.01 * gauss()).collect()));
            }
        }
        for _ in 0..singles {
            data.extend(unit((0..dim).map(|_| gauss()).collect()));
        }
        data
    }

    #[test]
    fn tiled_exact_similarities_match_a_brute_force_scan_across_tile_edges() {
        let dim = 8;
        // 9000 rows: more than one tile of rows and of columns.
        let data = heavy_groups(30, 20, 8400, dim, 5);
        let n = data.len() / dim;
        let got = max_earlier_similarity(&data, dim);
        let mut rng = SplitMix64::new(9);
        for _ in 0..200 {
            let j = rng.below(n);
            let expected = (0..j)
                .map(|i| {
                    crate::simd::dot(&data[i * dim..(i + 1) * dim], &data[j * dim..(j + 1) * dim])
                })
                .fold(0f32, f32::max);
            assert!(
                (got[j] - expected).abs() < 1e-5,
                "row {j}: {} vs {expected}",
                got[j]
            );
        }
        assert_eq!(got[0], 0.0);
    }

    #[test]
    fn hnsw_recall_falls_below_exact_in_groups_larger_than_its_neighbour_list() {
        // 20 groups of 100 near-copies (cosine > 0.99 within a group) and 1000 strangers in
        // one cluster: exactly 99 of each group are duplicates of an earlier member.
        let dim = 32;
        let data = heavy_groups(20, 100, 1000, dim, 3);
        let n = data.len() / dim;
        let (assign, model) = one_cluster(&data, dim);
        let run = |exact_max_cluster: usize| -> Vec<bool> {
            let c = SemDedupConfig {
                exact_max_cluster,
                ..config(0.05, Keep::Random)
            };
            semdedup(&data, dim, &assign, &model, &c)
                .iter()
                .map(|d| d.removed)
                .collect()
        };
        let exact = run(n);
        let approx = run(0);
        let exact_removed = exact.iter().filter(|r| **r).count();
        assert_eq!(exact_removed, 20 * 99);
        let found = exact
            .iter()
            .zip(&approx)
            .filter(|(e, a)| **e && **a)
            .count();
        let false_removals = exact
            .iter()
            .zip(&approx)
            .filter(|(e, a)| !**e && **a)
            .count();
        assert_eq!(false_removals, 0);
        let recall = found as f64 / exact_removed as f64;
        // Measured: 1,933 of 1,980 (0.976); docs/METHODS.md and the README quote it.
        assert!(recall < 1.0 && recall > 0.9, "HNSW recall {recall}");
    }
}
