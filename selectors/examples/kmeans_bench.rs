//! k-means timing for `scripts/bench-cluster.sh`: reads a raw little-endian f32 matrix
//! (n x dim), runs k-means (Lloyd, all points, all iterations) and prints JSON with the
//! wall time per phase and the final objective.
//!
//! Usage: kmeans_bench FILE DIM K ITERS [euclidean|cosine] [SEED]

use gleaner_selectors::kmeans::{fit_from, init_centroids, KMeansConfig, Metric};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
