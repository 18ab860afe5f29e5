#!/usr/bin/env bash
# AttentionInfluence scoring cost, side by side in one run: gleaner (Burn, flex CPU backend)
# vs PyTorch (Hugging Face transformers, CPU, 2 threads, the same heads masked through hooks)
# on the same documents, at several document lengths. Each system runs a base pass and a
# masked pass (the score needs both); the checksums (sum of per-document losses) must agree.
#   Usage: scripts/bench-attention-influence.sh [TOKENS_PER_LENGTH]   (default 8192)
# Documents are cut from the quickstart corpus to exactly L tokens for L in 128 256 512 1024,
# TOKENS_PER_LENGTH / L of them. HEADS are SmolLM2-135M's top 5% from configs/attention_influence.toml's detection.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
budget=${1:-8192}
assets=${GLEANER_ASSETS:-$root/.assets}
venv=${BENCH_VENV:-$root/.bench-venv}
model=$assets/models/smollm2-135m
export HEADS=${HEADS:-17:3,18:6,17:4,20:6,23:2,23:7,23:8,17:5,21:8,22:4,22:7,26:1,17:0,18:7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch transformers numpy safetensors tokenizers pyarrow
(cd "$root" && cargo build --release -q -p gleaner-embed --example bench_models)
bench="$root/target/release/examples/bench_models"

"$venv/bin/python" - "$root/data/quickstart" "$work" "$budget" "$model/tokenizer.json" <<'PY'
import glob, json, random, sys
import pyarrow.parquet as pq
from tokenizers import Tokenizer
src, work, budget, tok = sys.argv[1], sys.argv[2], int(sys.argv[3]), Tokenizer.from_file(sys.argv[4])
tok.no_padding(); tok.no_truncation()
texts = [t for f in sorted(glob.glob(f"{src}/*.parquet")) for t in pq.read_table(f, columns=["text"]).column("text").to_pylist() if t and t.strip()]
random.Random(0).shuffle(texts)
stream = [i for e in tok.encode_batch(texts[:3000]) for i in e.ids]
for length in (128, 256, 512, 1024):
    n = max(1, budget // length)
    docs = []
    for k in range(n):
        piece = stream[k * length:(k + 1) * length]
        # Keep documents whose text re-encodes to exactly `length` tokens.
        text = tok.decode(piece)
        if len(tok.encode(text).ids) == length:
            docs.append(text)
    with open(f"{work}/len{length}.jsonl", "w") as f:
        f.write("\n".join(json.dumps(t) for t in docs))
PY

measure() { # label, command...: prints the command's JSON with peak RSS and the length added
  local label=$1 length=$2; shift 2
  /usr/bin/time -f "%M" -o "$work/rss" "$@" > "$work/out.json"
  "$venv/bin/python" -c "import json; d=json.load(open('$work/out.json')); d['system']='$label'; d['length']=$length; d['peak_rss_mb']=int(open('$work/rss').read().split()[-1])/1024; print(json.dumps(d))"
}
for length in 128 256 512 1024; do
  export MAX_TOKENS=$length
  measure gleaner $length "$bench" attention_influence "$model" "$work/len$length.jsonl"
  measure pytorch $length env OMP_NUM_THREADS=2 "$venv/bin/python" "$here/bench_models_torch.py" attention_influence "$model" "$work/len$length.jsonl"
done
