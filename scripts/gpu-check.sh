#!/usr/bin/env bash
# The GPU (Vulkan) path, checked on a real GPU in two steps:
#
#   scripts/gpu-check.sh build   # here (registries reachable): release build of the model
#                                # tests and the gleaner binary with `--features gpu`, copied
#                                # stripped into target/gpu-check/ (about 40 MB)
#   scripts/gpu-check.sh run     # on the GPU machine, in the repo root with target/gpu-check/
#                                # carried over: model parity tests on the GPU, then an embed
#                                # and an lm_score run on the GPU against the same run on the CPU
#
# The parity tests are embed/tests/models.rs run with GLEANER_TEST_DEVICE=gpu: encoder
# embeddings, LM losses, masked-head losses and per-sequence gradients of the tiny fixture
# models against the numpy reference, within the tolerances the CPU passes. The runs compare
# the stage outputs of the GPU with the CPU's (max abs difference printed) and print
# documents/s for both. Everything stays under 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu-check

build() {
    mkdir -p "$out"
    export CARGO_TARGET_DIR=target/gpu
    cargo build --release -p gleaner --features gpu
    cargo test --release -p gleaner-embed --features gpu --test models --no-run --message-format=json \
        | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "models":
        print(m["executable"])' > "$out/test-path"
    cp "$(cat "$out/test-path")" "$out/embed-models"
    cp target/gpu/release/gleaner "$out/gleaner"
    strip "$out/embed-models" "$out/gleaner"
    du -sh "$out"
}

run() {
    [ -x "$out/embed-models" ] || { echo "no $out/embed-models: run '$0 build' first and carry $out" >&2; exit 1; }
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    echo "== parity tests on the GPU (GLEANER_TEST_DEVICE=gpu)"
    (cd embed && GLEANER_TEST_DEVICE=gpu timeout 300 "../$out/embed-models" --test-threads 1)
    echo "== embed and lm_score, GPU against CPU"
    work=$(mktemp -d)
    for device in cpu gpu; do
        cat > "$work/$device.toml" <<TOML
[input]
paths = ["data/quickstart"]
[output]
dir = "$work/out-$device"
[run]
cache_dir = "$work/cache-$device"
[[stages]]
type = "embed"
model = "embed/tests/fixtures/tiny-bert"
column = "emb"
device = "$device"
[[stages]]
type = "lm_score"
model = "embed/tests/fixtures/tiny-llama"
column = "loss"
device = "$device"
TOML
        start=$(date +%s.%N)
        timeout 200 "$out/gleaner" --quiet run --config "$work/$device.toml"
        end=$(date +%s.%N)
        echo "$device: $(python3 -c "print(f'{3962 / ($end - $start):.1f}')") documents/s for both stages"
    done
    python3 - "$work" <<'PY'
import glob, sys
import pyarrow.parquet as pq
work = sys.argv[1]
def values(device):
    out = {}
    for f in sorted(glob.glob(f"{work}/cache-{device}/**/*.parquet", recursive=True)):
        t = pq.read_table(f)
        kind = "emb" if "list" in str(t.schema.field("value").type) else "loss"
        for i, v in zip(t.column("id").to_pylist(), t.column("value").to_pylist()):
            out[(kind, i)] = v
    return out
cpu, gpu = values("cpu"), values("gpu")
assert cpu.keys() == gpu.keys(), "the same documents on both devices"
worst = {"emb": 0.0, "loss": 0.0}
for k, v in cpu.items():
    w = gpu[k]
    if v is None or w is None:
        assert v is None and w is None, k
        continue
    d = max(abs(a - b) for a, b in zip(v, w)) if isinstance(v, list) else abs(v - w)
    worst[k[0]] = max(worst[k[0]], d)
print(f"max |gpu - cpu|: embeddings {worst['emb']:.2e}, losses {worst['loss']:.2e}")
assert worst["emb"] < 1e-3 and worst["loss"] < 1e-3, worst
PY
}

case "${1:-}" in
    build) build ;;
    run) run ;;
    *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
