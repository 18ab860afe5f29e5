#!/usr/bin/env python3
"""Reference k-means runs for bench-cluster.sh.

  gen OUT N DIM K          write N clustered, L2-normalised f32 vectors (raw little-endian)
  faiss FILE DIM K ITERS [INIT]   faiss.Kmeans on all points, all iterations (no subsampling, no early stop)
  sklearn FILE DIM K ITERS [INIT] sklearn KMeans(lloyd, n_init=1, tol=0)
INIT (raw f32 k x DIM) gives the initial centroids; without it faiss samples k points and
sklearn runs its greedy k-means++.
Each run prints one JSON line: seconds and the final objective (sum of squared distances).
"""
import json, sys, time

import numpy as np


def load(path, dim):
    return np.fromfile(path, dtype=np.float32).reshape(-1, dim)


def objective(x, centroids):
    x2 = (x * x).sum(1)[:, None]
    c2 = (centroids * centroids).sum(1)[None, :]
    d = x2 - 2 * x @ centroids.T + c2
    return float(np.maximum(d.min(1), 0).sum())


def main():
    task = sys.argv[1]
    if task == "gen":
        out, n, dim, k = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(k, dim)).astype(np.float32)
        x = centres[rng.integers(0, k, n)] + 0.8 * rng.normal(size=(n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x.astype(np.float32).tofile(out)
        return
    path, dim, k, iters = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    x = load(path, dim)
    init = load(sys.argv[6], dim) if len(sys.argv) > 6 else None
    t = time.time()
    if task == "faiss":
        import faiss
        km = faiss.Kmeans(dim, k, niter=iters, seed=0, max_points_per_centroid=10**9, verbose=False)
        km.cp.early_stop_threshold = -1
        km.train(x, init_centroids=init)
        centroids = km.centroids
    else:
        from sklearn.cluster import KMeans
        km = KMeans(n_clusters=k, init="k-means++" if init is None else init, n_init=1, max_iter=iters, tol=0, algorithm="lloyd", random_state=0).fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
    secs = time.time() - t
    print(json.dumps({"tool": task + ("" if init is None else "-same-init"), "seconds": secs, "objective": objective(x, centroids)}))


if __name__ == "__main__":
    main()
