#!/usr/bin/env bash
# MinHash near-duplicate removal: gleaner's minhash_dedup stage vs datatrove 0.10.1's MinHash
# pipeline (signatures, buckets, clusters, filter), same settings (5-word shingles, 14 bands of
# 8), same corpus, 2 threads / 2 workers, runs alternating; then precision and recall of what
# each removed against exact Jaccard >= 0.75 (scripts/bench_minhash.py score).
#
# The corpus: the quickstart's documents plus BENCH_COPIES rounds of planted near-duplicates
# (each document of 50+ words copied with 1-40% of its words replaced and its lines re-wrapped).
#
# Usage: scripts/bench-minhash.sh [WORK_DIR]   (default .assets/bench-minhash)
# Env:   BENCH_COPIES (default 10), BENCH_REPEAT (runs per tool, default 5), BENCH_PYTHON
#        (use this interpreter instead of a fresh venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench-minhash}
copies=${BENCH_COPIES:-10}
repeat=${BENCH_REPEAT:-5}
mkdir -p "$work"
work=$(cd "$work" && pwd)

. "$here/bench-common.sh"
bench_python pyarrow==26.0.1 "datatrove[processing]==0.10.1" "xxhash<4" spacy tokenizers
corpus=$work/corpus-$copies
[ -f "$corpus/.done" ] || { rm -rf "$corpus"; "$py" "$here/bench_minhash.py" make "$root/data/quickstart" "$corpus" --copies "$copies" && touch "$corpus/.done"; }
build_gleaner

print_machine
cat > "$work/gleaner.toml" <<TOML
[input]
paths = ["$corpus"]
[output]
dir = "$work/out-gleaner"
overwrite = true
write_removed = true
[run]
seed = 1
threads = 2
[[stages]]
type = "minhash_dedup"
TOML

cat "$corpus"/*.parquet > /dev/null
results=$work/results.tsv
: > "$results"
for i in $(seq "$repeat"); do
  run_once gleaner "$gleaner" --quiet run --config "$work/gleaner.toml"
  rm -rf "$work/dt"
  run_once datatrove "$py" "$here/bench_minhash.py" datatrove "$corpus" "$work/dt"
done
summarize_runs
"$py" -c "
import glob, pyarrow.parquet as pq
ids = [i for f in glob.glob('$work/out-gleaner/removed/near_duplicate/*.parquet') for i in pq.read_table(f, columns=['id']).column('id').to_pylist()]
open('$work/gleaner-removed.txt', 'w').write('\n'.join(ids) + '\n')"
"$py" "$here/bench_minhash.py" score "$corpus" gleaner="$work/gleaner-removed.txt" datatrove="$work/dt/removed.txt"
