#!/usr/bin/env bash
# Quad's probe cost, side by side in one run: per-document weight gradients of SmolLM2-135M's
# q/k/v/o projections in layers 28 and 29 (one forward+backward pass per document, as a Quad
# probe window), gleaner (Burn, flex CPU backend) vs PyTorch (transformers, CPU, 2 threads,
# only those weights trainable), at several document lengths. The checksums (sum of the
# gradients' squared norms) must agree.
#   Usage: scripts/bench-quad.sh [TOKENS_PER_LENGTH]   (default 4096)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
budget=${1:-4096}
assets=${GLEANER_ASSETS:-$root/.assets}
venv=${BENCH_VENV:-$root/.bench-venv}
model=$assets/models/smollm2-135m
export LAYERS=${LAYERS:-28,29}
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
for length in (128, 512, 1024):
    docs = []
    for k in range(max(1, budget // length)):
        text = tok.decode(stream[k * length:(k + 1) * length])
        if len(tok.encode(text).ids) == length:
            docs.append(text)
    with open(f"{work}/len{length}.jsonl", "w") as f:
        f.write("\n".join(json.dumps(t) for t in docs))
PY

measure() { # label, length, command...: prints the command's JSON with peak RSS and the length
  local label=$1 length=$2; shift 2
  /usr/bin/time -f "%M" -o "$work/rss" "$@" > "$work/out.json"
  "$venv/bin/python" -c "import json; d=json.load(open('$work/out.json')); d['system']='$label'; d['length']=$length; d['peak_rss_mb']=int(open('$work/rss').read().split()[-1])/1024; print(json.dumps(d))"
}
for length in 128 512 1024; do
  export MAX_TOKENS=$length
  measure gleaner $length "$bench" gradients "$model" "$work/len$length.jsonl"
  measure pytorch $length env OMP_NUM_THREADS=2 "$venv/bin/python" "$here/bench_models_torch.py" gradients "$model" "$work/len$length.jsonl"
done
