//! Our k-means against linfa-clustering's from the same initial centroids.

use gleaner_selectors::kmeans::{fit_from, init_centroids, KMeansConfig};
use gleaner_selectors::rng::SplitMix64;
use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::{KMeans as LinfaKMeans, KMeansInit};
use ndarray::Array2;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

#[test]
fn same_init_gives_the_same_inertia_as_linfa() {
    let (n, d, k) = (3000usize, 16usize, 12usize);
    let mut rng = SplitMix64::new(11);
    let centres: Vec<f32> = (0..k * d).map(|_| (rng.next_f64() * 10.0) as f32).collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % k;
        for j in 0..d {
            data.push(centres[c * d + j] + (rng.next_f64() as f32 - 0.5) * 6.0);
        }
    }
    let config = KMeansConfig {
        max_iters: 300,
        tol: 0.0,
        seed: 5,
        ..KMeansConfig::new(k)
    };
    let init = init_centroids(&data, d, &config);
    let ours = fit_from(&data, d, &config, init.clone());

    let records = Array2::from_shape_vec((n, d), data.iter().map(|&x| x as f64).collect()).unwrap();
    let init64 = Array2::from_shape_vec((k, d), init.iter().map(|&x| x as f64).collect()).unwrap();
    let model = LinfaKMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(0))
        .n_runs(1)
        .max_n_iterations(300)
        .tolerance(1e-12)
        .init_method(KMeansInit::Precomputed(init64))
        .fit(&DatasetBase::from(records.clone()))
        .unwrap();
    // linfa reports the mean squared distance; ours is the sum.
    let theirs = model.inertia() * n as f64;
    let rel = (ours.inertia - theirs).abs() / theirs;
    assert!(
        rel < 1e-4,
        "ours {} vs linfa {theirs} (relative {rel:e})",
        ours.inertia
    );
}
