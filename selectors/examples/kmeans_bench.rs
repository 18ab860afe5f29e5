//! k-means timing for `scripts/bench-cluster.sh`: reads a raw little-endian f32 matrix
//! (n x dim), runs k-means (Lloyd, all points, all iterations) and prints JSON with the
//! wall time per phase and the final objective.
//!
//! Usage: kmeans_bench FILE DIM K ITERS [euclidean|cosine] [SEED] [INIT_OUT]
//!        (INIT_OUT: also write the k-means++ initial centroids there, raw f32, so the
//!        reference tools can start from the same centroids)
//!        kmeans_bench --minibatch N DIM K BATCH
//!
//! The second form streams N synthetic clustered vectors in batches of BATCH through
//! mini-batch k-means and then through a streaming assignment pass, never holding more
//! than one batch, to measure memory at scale.

use gleaner_selectors::kmeans::{
    fit_from, init_centroids, KMeans, KMeansConfig, Metric, MiniBatchKMeans,
};
use gleaner_selectors::rng::SplitMix64;
use std::time::Instant;

/// Batch `b` of a synthetic stream: rows around `k` fixed random centres, L2-normalised.
fn synthetic_batch(b: usize, rows: usize, dim: usize, centres: &[f32]) -> Vec<f32> {
    let k = centres.len() / dim;
    let mut rng = SplitMix64::new(1000 + b as u64);
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let c = rng.below(k);
        let start = out.len();
        for j in 0..dim {
            out.push(centres[c * dim + j] + (rng.next_f64() as f32 - 0.5) * 1.5);
        }
        let norm = out[start..].iter().map(|x| x * x).sum::<f32>().sqrt();
        out[start..].iter_mut().for_each(|x| *x /= norm);
    }
    out
}

fn minibatch(n: usize, dim: usize, k: usize, batch: usize) {
    let mut rng = SplitMix64::new(7);
    let centres: Vec<f32> = (0..k * dim)
        .map(|_| (rng.next_f64() as f32 - 0.5) * 2.0)
        .collect();
    let batches = n.div_ceil(batch);
    let t0 = Instant::now();
    let config = KMeansConfig {
        metric: Metric::Cosine,
        ..KMeansConfig::new(k)
    };
    let first = synthetic_batch(0, batch, dim, &centres);
    let init = init_centroids(&first, dim, &config);
    let mut mb = MiniBatchKMeans::new(KMeans {
        dim,
        centroids: init,
        metric: Metric::Cosine,
    });
    for b in 0..batches {
        mb.partial_fit(&synthetic_batch(b, batch.min(n - b * batch), dim, &centres));
    }
    let fit_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut sizes = vec![0u64; k];
    let mut objective = 0f64;
    for b in 0..batches {
        let (assign, dist) =
            mb.model
                .assign(&synthetic_batch(b, batch.min(n - b * batch), dim, &centres));
        assign.iter().for_each(|&a| sizes[a as usize] += 1);
        objective += dist.iter().map(|&d| d as f64).sum::<f64>();
    }
    let assign_s = t1.elapsed().as_secs_f64();
    println!(
        "{{\"n\": {n}, \"dim\": {dim}, \"k\": {k}, \"fit_s\": {fit_s:.3}, \"assign_s\": {assign_s:.3}, \"objective\": {objective:.3}, \"empty_clusters\": {}}}",
        sizes.iter().filter(|&&s| s == 0).count()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--minibatch") {
        let num = |i: usize| -> usize {
            args.get(i)
                .and_then(|s| s.parse().ok())
                .expect("--minibatch N DIM K BATCH")
        };
        minibatch(num(2), num(3), num(4), num(5));
        return;
    }
    if args.len() < 5 {
        eprintln!("usage: kmeans_bench FILE DIM K ITERS [euclidean|cosine] [SEED]");
        std::process::exit(2);
    }
    let bytes = std::fs::read(&args[1]).unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let data: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let dim: usize = args[2].parse().expect("DIM");
    let k: usize = args[3].parse().expect("K");
    let iters: usize = args[4].parse().expect("ITERS");
    let metric = match args.get(5).map(String::as_str) {
        Some("cosine") => Metric::Cosine,
        _ => Metric::Euclidean,
    };
    let seed = args.get(6).map(|s| s.parse().expect("SEED")).unwrap_or(0);
    let config = KMeansConfig {
        max_iters: iters,
        metric,
        seed,
        ..KMeansConfig::new(k)
    };
    let t0 = Instant::now();
    let init = init_centroids(&data, dim, &config);
    let t_init = t0.elapsed().as_secs_f64();
    if let Some(out) = args.get(7) {
        let bytes: Vec<u8> = init.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(out, bytes).unwrap_or_else(|e| panic!("{out}: {e}"));
    }
    let t1 = Instant::now();
    let r = fit_from(&data, dim, &config, init);
    let t_fit = t1.elapsed().as_secs_f64();
    println!(
        "{{\"n\": {}, \"dim\": {dim}, \"k\": {k}, \"iters\": {}, \"init_s\": {t_init:.4}, \"lloyd_s\": {t_fit:.4}, \"per_iter_s\": {:.4}, \"objective\": {:.6}}}",
        data.len() / dim,
        r.history.len(),
        t_fit / r.history.len().max(1) as f64,
        r.inertia
    );
}
