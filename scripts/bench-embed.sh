#!/usr/bin/env bash
# Model throughput, side by side in one run: gleaner's Burn models vs PyTorch (Hugging Face
# transformers, CPU, 2 threads) on the same documents, with peak memory; the encoder also
# through candle-transformers' BERT (bench/candle-bert, a crate outside the workspace).
#   encoder: all-MiniLM-L6-v2 on N_ENC documents of the quickstart corpus (truncated at 256)
#   lm:      SmolLM2-135M mean next-token loss on N_LM documents (truncated at 512)
# Usage: scripts/bench-embed.sh [N_ENC] [N_LM]    (needs scripts/fetch-assets.sh first)
# Env:   REPEAT (runs of each system, alternating; default 5), ENC_BATCHES (encoder batch
#        sizes as PYTORCH_DOCS:GLEANER_TOKENS pairs; default "32:8192 128:32768"),
#        SYSTEMS (default "gleaner pytorch candle"; "gleaner" alone needs no PyTorch).
# Prints the machine, every run as a JSON line (with `steal`: the share of CPU time the
# hypervisor gave to other machines during the run, which moves throughput between runs more
# than anything in the programs), then per model, batch size and system the median with its
# min-max spread, its share of the matmul ceiling and the ratio of the medians. The ceiling
# is the best float32 GFLOP/s that numpy's BLAS, PyTorch's (MKL) or the gemm crate reaches on
# the model's own linear-layer shapes in this run; a system's share is its linear-layer
# FLOPs per second (FLOPs per token times tokens/s) over that ceiling. Which library is best
# depends on the CPU: MKL is slow on AMD, OpenBLAS's two threads are slow on some shapes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
n_enc=${1:-2000}
n_lm=${2:-100}
repeat=${REPEAT:-5}
enc_batches=${ENC_BATCHES:-32:8192 128:32768}
systems=" ${SYSTEMS:-gleaner pytorch candle} "
has() { [[ "$systems" == *" $1 "* ]]; }
assets=${GLEANER_ASSETS:-$root/.assets}
venv=${BENCH_VENV:-$root/.bench-venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if has pytorch; then
  "$venv/bin/pip" install -q torch transformers numpy safetensors tokenizers pyarrow
else
  "$venv/bin/pip" install -q numpy pyarrow
fi
(cd "$root" && cargo build --release -q -p gleaner-embed --example bench_models)
if has candle; then (cd "$root" && cargo build --release -q --manifest-path bench/candle-bert/Cargo.toml); fi
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

ceiling() { # model: GFLOP/s of float32 matmul on the model's linear-layer shapes (2,048
  # rows; the same list as `bench_models gemm`) through numpy's BLAS and PyTorch's (2 threads
  # each), and through the gemm crate as gleaner runs it; one JSON line, `best` the ceiling
  local numpy_torch gemm_crate
  numpy_torch=$(OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$venv/bin/python" - "$1" <<'PY'
import json, sys, time
import numpy as np
shapes = {"encoder": [(384, 1152), (384, 384), (384, 1536), (1536, 384)],
          "lm": [(576, 960), (576, 576), (576, 3072), (1536, 576), (576, 49152)]}[sys.argv[1]]
def gflops(matmul, make):
    pairs = [(make(2048, k), make(k, n)) for k, n in shapes]
    flops = sum(2 * 2048 * k * n for k, n in shapes)
    best = 0.0
    for round in range(4):
        t = time.perf_counter()
        for a, b in pairs:
            matmul(a, b)
        if round:
            best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return best
out = {"numpy": gflops(np.matmul, lambda r, c: np.random.rand(r, c).astype(np.float32))}
try:
    import torch
    torch.set_num_threads(2)
    out["pytorch"] = gflops(torch.matmul, lambda r, c: torch.rand(r, c))
except ImportError:
    pass
print(json.dumps(out))
PY
)
  gemm_crate=$(RAYON_NUM_THREADS=2 "$bench" gemm "$1")
  "$venv/bin/python" -c "
import json
d = json.loads('$numpy_torch'); d['gemm_crate'] = json.loads('$gemm_crate')['gemm_gflops']
print(json.dumps({'matmul_gflops': '$1', **{k: round(v, 1) for k, v in d.items()}, 'best': round(max(d.values()), 1)}))"
}
# CPU ticks: "steal total" from /proc/stat (steal: time the hypervisor gave this machine's
# CPUs to someone else).
ticks() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print $9, t}' /proc/stat; }
measure() { # label, batch, command...: prints the command's JSON with system, batch, peak RSS
  # and the share of CPU time stolen by the hypervisor during the run
  local label=$1 batch=$2; shift 2
  local before; before=$(ticks)
  /usr/bin/time -f "%M" -o "$work/rss" "$@" > "$work/out.json"
  local steal; steal=$(echo "$before $(ticks)" | awk '{d=$4-$2; printf "%.3f", (d>0)?($3-$1)/d:0}')
  "$venv/bin/python" -c "import json,sys; d=json.load(open('$work/out.json')); d['system']='$label'; d['batch']='$batch'; d['peak_rss_mb']=int(open('$work/rss').read().split()[-1])/1024; d['steal']=$steal; print(json.dumps(d))" | tee -a "$work/runs.jsonl"
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, flags: $(grep -m1 -o -w 'avx2\|avx512f\|avx512_bf16\|avx512_vnni\|amx_tile' /proc/cpuinfo | sort -u | xargs)"
for model in encoder lm; do ceiling "$model" | tee -a "$work/ceilings.jsonl"; done
: > "$work/runs.jsonl"
enc=$assets/models/all-MiniLM-L6-v2
lm=$assets/models/smollm2-135m
for pair in $enc_batches; do
  docs=${pair%%:*} tokens=${pair##*:}
  for _ in $(seq "$repeat"); do
    if has gleaner; then measure gleaner "$pair" env BATCH_TOKENS="$tokens" "$bench" encoder "$enc" "$work/enc.jsonl"; fi
    if has pytorch; then measure pytorch "$pair" env OMP_NUM_THREADS=2 BATCH="$docs" "$venv/bin/python" "$here/bench_models_torch.py" encoder "$enc" "$work/enc.jsonl"; fi
    if has candle; then measure candle "$pair" env RAYON_NUM_THREADS=2 "$root/bench/candle-bert/target/release/candle-bert-bench" "$enc" "$work/enc.jsonl"; fi
  done
done
for _ in $(seq "$repeat"); do
  if has gleaner; then measure gleaner default "$bench" lm "$lm" "$work/lm.jsonl"; fi
  if has pytorch; then measure pytorch default env OMP_NUM_THREADS=2 "$venv/bin/python" "$here/bench_models_torch.py" lm "$lm" "$work/lm.jsonl"; fi
done
"$venv/bin/python" - "$work/runs.jsonl" "$work/ceilings.jsonl" <<'PY'
import collections, json, statistics, sys
# Linear-layer FLOPs per token: all-MiniLM-L6-v2 6 x 2 x 384 x (1152 + 384 + 2 x 1536);
# SmolLM2-135M 30 x 2 x (576 x (960 + 576 + 3072) + 1536 x 576) + 2 x 576 x 49152.
flops = {"encoder": 21.23e6, "lm": 269.0e6}
ceilings = {d["matmul_gflops"]: d for d in map(json.loads, open(sys.argv[2]))}
runs = collections.defaultdict(list)
tokens = collections.defaultdict(list)
# Attention products' FLOPs per token of these documents (gleaner's runs count them; every
# system runs the same documents at the same truncation).
attention = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    runs[(d["model"], d["batch"], d["system"])].append(d["docs_per_second"])
    tokens[(d["model"], d["batch"], d["system"])].append(d["tokens_per_second"])
    if "attention_flops" in d:
        attention[d["model"]] = d["attention_flops"] / d["tokens"]
print("\nmatmul ceiling (GFLOP/s, the best of the libraries): " + ", ".join(
    f"{m} {c['best']}" for m, c in ceilings.items()))
print("share of the ceiling: linear layers' FLOPs per second over the ceiling; 'with attention' adds"
      " the attention products' FLOPs (model FLOPs, as MFU counts them): " + ", ".join(
    f"{m} {a / 1e6:.2f} MFLOP/token of attention against {flops[m] / 1e6:.2f} linear" for m, a in attention.items()))
print(f"\n{'model':8} {'batch':12} {'system':8} {'runs':>4} {'median docs/s':>14} {'min':>8} {'max':>8} {'% of ceiling':>13} {'with attention':>15}")
for (model, batch, system), v in sorted(runs.items()):
    rate = statistics.median(tokens[(model, batch, system)]) / 1e9 / ceilings[model]["best"]
    with_attention = f"{100 * rate * (flops[model] + attention[model]):.0f}%" if model in attention else "-"
    print(f"{model:8} {batch:12} {system:8} {len(v):>4} {statistics.median(v):>14.1f} {min(v):>8.1f} {max(v):>8.1f} {100 * rate * flops[model]:>12.0f}% {with_attention:>15}")
for (model, batch, system), v in sorted(runs.items()):
    other = runs.get((model, batch, "pytorch"))
    if system != "pytorch" and other:
        print(f"{model} {batch}: {system} / pytorch = {statistics.median(v) / statistics.median(other):.2f}x (medians)")
PY
