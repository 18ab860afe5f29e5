//! Nearest neighbours by cosine similarity of L2-normalised vectors, behind one trait:
//! exact blocked search for small pools, HNSW (`hnsw_rs`) for large ones.

use crate::kmeans::dots;
use hnsw_rs::prelude::{DistCosine, Hnsw};
use rayon::prelude::*;

/// A searchable set of rows.
pub trait NeighborIndex: Send + Sync {
    /// The `k` rows most similar to `query`, best first, as (row, cosine similarity).
    fn search(&self, query: &[f32], k: usize) -> Vec<(usize, f32)>;
}

/// Keeps the `k` best (similarity desc, row asc) of `scored`.
fn top_k(mut scored: Vec<(usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    let order = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
    }
    scored.sort_by(order);
    scored.truncate(k);
    scored
}

/// Exact search: one blocked matrix-vector product over all rows.
pub struct ExactIndex<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> ExactIndex<'a> {
    /// An index over `data` (row-major, `dim` columns), borrowed.
    pub fn new(data: &'a [f32], dim: usize) -> Self {
        ExactIndex { data, dim }
    }
}

impl NeighborIndex for ExactIndex<'_> {
    fn search(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        const BLOCK: usize = 4096;
        let sims: Vec<Vec<f32>> = self
            .data
            .par_chunks(BLOCK * self.dim)
            .map(|rows| {
                let mut out = vec![0f32; rows.len() / self.dim];
                dots(rows, query, self.dim, &mut out);
                out
            })
            .collect();
        top_k(sims.concat().into_iter().enumerate().collect(), k)
    }
}

/// HNSW graph search (approximate). Rows are inserted in parallel, so the graph, and with it
/// the rare missed neighbour, can vary between runs; use [`ExactIndex`] where outputs must be
/// byte-identical.
pub struct HnswIndex {
    graph: Hnsw<'static, f32, DistCosine>,
    ef_search: usize,
}

/// HNSW parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node.
    pub max_connections: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (at least k).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            max_connections: 24,
            ef_construction: 200,
            ef_search: 96,
        }
    }
}

impl HnswIndex {
    /// Builds the graph over `data` (row-major, `dim` columns, L2-normalised rows).
    pub fn build(data: &[f32], dim: usize, params: HnswParams) -> Self {
        let n = data.len() / dim;
        let graph = Hnsw::new(
            params.max_connections,
            n.max(1),
            16,
            params.ef_construction,
            DistCosine {},
        );
        let rows: Vec<(&[f32], usize)> =
            data.chunks(dim).enumerate().map(|(i, r)| (r, i)).collect();
        graph.parallel_insert_slice(&rows);
        HnswIndex {
            graph,
            ef_search: params.ef_search,
        }
    }
}

impl NeighborIndex for HnswIndex {
    fn search(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        let found = self.graph.search(query, k, self.ef_search.max(k));
        // DistCosine is 1 - cosine similarity.
        top_k(
            found
                .into_iter()
                .map(|n| (n.d_id, 1.0 - n.distance))
                .collect(),
            k,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        let centres: Vec<f32> = (0..clusters * dim)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let c = rng.below(clusters);
            let start = data.len();
            for j in 0..dim {
                data.push(centres[c * dim + j] + (rng.next_f64() as f32 - 0.5) * 0.4);
            }
            let norm = data[start..].iter().map(|x| x * x).sum::<f32>().sqrt();
            data[start..].iter_mut().for_each(|x| *x /= norm);
        }
        data
    }

    #[test]
    fn exact_search_matches_brute_force() {
        let dim = 12;
        let data = clustered(700, dim, 9, 1);
        let index = ExactIndex::new(&data, dim);
        let q = &data[5 * dim..6 * dim];
        let got = index.search(q, 5);
        let mut brute: Vec<(usize, f32)> = data
            .chunks(dim)
            .enumerate()
            .map(|(i, r)| (i, r.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
            .collect();
        brute.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(got[0].0, 5, "a row is its own nearest neighbour");
        let ids = |v: &[(usize, f32)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&brute[..5]));
        for (a, b) in got.iter().zip(&brute) {
            assert!((a.1 - b.1).abs() < 1e-5);
        }
    }

    #[test]
    fn hnsw_recall_at_10_is_at_least_095_on_clustered_data() {
        let dim = 32;
        let data = clustered(8000, dim, 40, 2);
        let exact = ExactIndex::new(&data, dim);
        let hnsw = HnswIndex::build(&data, dim, HnswParams::default());
        let queries = clustered(200, dim, 40, 2); // same centres, fresh points
        let mut hits = 0;
        for q in queries.chunks(dim) {
            let truth: std::collections::HashSet<usize> =
                exact.search(q, 10).into_iter().map(|x| x.0).collect();
            hits += hnsw
                .search(q, 10)
                .iter()
                .filter(|x| truth.contains(&x.0))
                .count();
        }
        let recall = hits as f64 / (200.0 * 10.0);
        assert!(recall >= 0.95, "recall@10 = {recall}");
    }
}
