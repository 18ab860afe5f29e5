#!/usr/bin/env bash
# k-means benchmark: gleaner vs faiss-cpu and scikit-learn on the same 100k x 384 clustered,
# L2-normalised vectors, k = 100, 20 Lloyd iterations on all points (faiss without
# subsampling or early stop), 2 threads each, in one run. Also measures gleaner's mini-batch
# mode on 1M x 384 vectors streamed in batches (peak RSS).
#
# Usage: scripts/bench-cluster.sh [WORK_DIR]   (default .assets/bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench}
mkdir -p "$work"
work=$(cd "$work" && pwd)
[ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy faiss-cpu==1.15.1 scikit-learn==1.9.1
py=$work/venv/bin/python
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 RAYON_NUM_THREADS=2
vec=$work/vec-100k-384.f32
[ -f "$vec" ] || "$py" "$here/bench_cluster_py.py" gen "$vec" 100000 384 100
(cd "$root" && cargo build --release -q -p gleaner-selectors --example kmeans_bench)
bench=$root/target/release/examples/kmeans_bench

echo "100k x 384, k=100, 20 iterations, 2 threads"
init=$work/init-100x384.f32
g=$("$bench" "$vec" 384 100 20 euclidean 0 "$init"); echo "gleaner $g"
f=$("$py" "$here/bench_cluster_py.py" faiss "$vec" 384 100 20 "$init"); echo "faiss   $f"
s=$("$py" "$here/bench_cluster_py.py" sklearn "$vec" 384 100 20 "$init"); echo "sklearn $s"
f2=$("$py" "$here/bench_cluster_py.py" faiss "$vec" 384 100 20); echo "faiss (own init)   $f2"
s2=$("$py" "$here/bench_cluster_py.py" sklearn "$vec" 384 100 20); echo "sklearn (own init) $s2"
"$py" - "$g" "$f" "$s" "$f2" "$s2" <<'PY'
import json, sys
g, f, s, f2, s2 = (json.loads(a) for a in sys.argv[1:])
gt = g["init_s"] + g["lloyd_s"]
print(f"gleaner {gt:.2f} s (init {g['init_s']:.2f} + {g['per_iter_s']:.3f} s/iter), objective {g['objective']:.1f}")
print("same initial centroids (gleaner's k-means++; its init time is counted for gleaner only):")
for r in (f, s):
    print(f"{r['tool']:18s} {r['seconds']:.2f} s, objective {r['objective']:.1f}: gleaner is {r['seconds'] / gt:.2f}x its speed, objective {100 * (g['objective'] / r['objective'] - 1):+.2f}%")
print("each tool's own initialisation:")
for r in (f2, s2):
    print(f"{r['tool']:18s} {r['seconds']:.2f} s, objective {r['objective']:.1f}: gleaner is {r['seconds'] / gt:.2f}x its speed, objective {100 * (g['objective'] / r['objective'] - 1):+.2f}%")
PY

echo
echo "mini-batch: 1M x 384 streamed in batches of 10k, k=100, then a streaming assignment pass"
/usr/bin/time -f "peak RSS %M KB, %e s" "$bench" --minibatch 1000000 384 100 10000
