#!/usr/bin/env bash
# Training throughput of the evaluation model (`gleaner evaluate`'s byte-level Llama, the
# [evaluate.proxy] shape: 4 layers, width 192, 4 heads, MLP 512, batches of 16 x 129 tokens,
# AdamW) against PyTorch (transformers' LlamaForCausalLM, CPU, 2 threads) on the same
# documents (the quickstart corpus), runs alternating; prints the machine, every run, and per
# system the median tokens/s with the min-max spread, then the ratio of the medians.
#
# Usage: scripts/bench-train.sh [REPEAT]   (default 5 runs per system)
# Env:   STEPS (timed steps per run, default 30), BENCH_VENV (a venv with torch and
#        transformers; default .assets/bench-train/venv, created when missing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
repeat=${1:-5}
venv=${BENCH_VENV:-$root/.assets/bench-train/venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch, transformers" 2>/dev/null || "$venv/bin/pip" install -q torch transformers numpy pyarrow
"$venv/bin/python" -c "import pyarrow" 2>/dev/null || "$venv/bin/pip" install -q pyarrow
(cd "$root" && cargo build --release -q -p gleaner-embed --example bench_train)
bench="$root/target/release/examples/bench_train"

"$venv/bin/python" - "$root/data/quickstart" "$work/texts.jsonl" <<'PY'
import glob, json, sys
import pyarrow.parquet as pq
texts = [t for f in sorted(glob.glob(f"{sys.argv[1]}/*.parquet")) for t in pq.read_table(f, columns=["text"]).column("text").to_pylist() if t and t.strip()]
with open(sys.argv[2], "w") as f:
    f.write("\n".join(json.dumps(t) for t in texts))
PY

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, flags: $(grep -m1 -o -w 'avx2\|avx512f\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | xargs)"
echo "torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
: > "$work/runs.jsonl"
# CPU ticks: "steal total" from /proc/stat (steal: time the hypervisor gave this machine's
# CPUs to someone else); each run's JSON gets the stolen share of its CPU time.
ticks() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print $9, t}' /proc/stat; }
run() {
  local before; before=$(ticks)
  "$@" > "$work/out.json"
  local steal; steal=$(echo "$before $(ticks)" | awk '{d=$4-$2; printf "%.3f", (d>0)?($3-$1)/d:0}')
  "$venv/bin/python" -c "import json; d=json.load(open('$work/out.json')); d['steal']=$steal; print(json.dumps(d))" | tee -a "$work/runs.jsonl"
}
for i in $(seq "$repeat"); do
  run env RAYON_NUM_THREADS=2 "$bench" "$work/texts.jsonl"
  run env OMP_NUM_THREADS=2 "$venv/bin/python" "$here/bench_train_torch.py" "$work/texts.jsonl"
done
"$venv/bin/python" - "$work/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for system in ("gleaner", "pytorch"):
    v = sorted(r["tokens_per_s"] for r in runs if r["system"] == system)
    med[system] = statistics.median(v)
    print(f"{system}: median {med[system]:.0f} tokens/s (min {v[0]:.0f}, max {v[-1]:.0f}, {len(v)} runs)")
print(f"gleaner / pytorch: {med['gleaner'] / med['pytorch']:.2f}x")
PY
