#!/usr/bin/env bash
# Model throughput, side by side in one run: gleaner's Burn models vs PyTorch (Hugging Face
# transformers, CPU, 2 threads) on the same documents, with peak memory; the encoder also
# through candle-transformers' BERT (bench/candle-bert, a crate outside the workspace).
#   encoder: all-MiniLM-L6-v2 on N_ENC documents of the quickstart corpus (truncated at 256)
#   lm:      SmolLM2-135M mean next-token loss on N_LM documents (truncated at 512)
# Usage: scripts/bench-embed.sh [N_ENC] [N_LM]    (needs scripts/fetch-assets.sh first)
# The matmul ceiling printed for reference is the linear layers' FLOPs per token divided into
# the GFLOP/s numpy's BLAS reaches on this machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
n_enc=${1:-2000}
n_lm=${2:-100}
assets=${GLEANER_ASSETS:-$root/.assets}
venv=${BENCH_VENV:-$root/.bench-venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch transformers numpy safetensors tokenizers pyarrow
(cd "$root" && cargo build --release -q -p gleaner-embed --example bench_models)
(cd "$root" && cargo build --release -q --manifest-path bench/candle-bert/Cargo.toml)
bench="$root/target/release/examples/bench_models"

"$venv/bin/python" - "$root/data/quickstart" "$work" "$n_enc" "$n_lm" <<'PY'
import glob, json, random, sys
import pyarrow.parquet as pq
src, work, n_enc, n_lm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = [t for f in sorted(glob.glob(f"{src}/*.parquet")) for t in pq.read_table(f, columns=["text"]).column("text").to_pylist() if t and t.strip()]
random.Random(0).shuffle(texts)
for name, n in (("enc", n_enc), ("lm", n_lm)):
    with open(f"{work}/{name}.jsonl", "w") as f:
        f.write("\n".join(json.dumps(t) for t in texts[:n]))
PY

ceiling() { # GFLOP/s of a float32 matmul through numpy, 2 threads
  OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$venv/bin/python" -c "
import numpy as np, time
a=np.random.rand(2048,384).astype(np.float32); b=np.random.rand(384,1536).astype(np.float32)
a@b; t=time.perf_counter(); n=20
for _ in range(n): a@b
print(2*2048*384*1536*n/(time.perf_counter()-t)/1e9)"
}
measure() { # label, command...: prints the command's JSON with peak RSS added
  local label=$1; shift
  /usr/bin/time -f "%M" -o "$work/rss" "$@" > "$work/out.json"
  "$venv/bin/python" -c "import json,sys; d=json.load(open('$work/out.json')); d['system']='$label'; d['peak_rss_mb']=int(open('$work/rss').read().split()[-1])/1024; print(json.dumps(d))"
}
gflops=$(ceiling)
echo "{\"numpy_matmul_gflops\": $gflops}"
for kind in encoder lm; do
  model=$assets/models/all-MiniLM-L6-v2; texts=$work/enc.jsonl
  if [ $kind = lm ]; then model=$assets/models/smollm2-135m; texts=$work/lm.jsonl; fi
  measure gleaner "$bench" $kind "$model" "$texts"
  measure pytorch env OMP_NUM_THREADS=2 "$venv/bin/python" "$here/bench_models_torch.py" $kind "$model" "$texts"
  if [ $kind = encoder ]; then
    measure candle env RAYON_NUM_THREADS=2 "$root/bench/candle-bert/target/release/candle-bert-bench" "$model" "$texts"
  fi
done
