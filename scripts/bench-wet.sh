#!/usr/bin/env bash
# Reading Common Crawl WET files: gleaner (a run with no stage: read, write zstd parquet)
# against warcio's ArchiveIterator, the reader datatrove's WarcReader uses (2 processes, each
# conversion record a row, written as zstd parquet), runs alternating.
#
# The corpus: the quickstart's documents BENCH_COPIES times over as conversion records, one
# gzip member per record as Common Crawl writes them, one file per copy.
#
# Usage: scripts/bench-wet.sh [WORK_DIR]   (default .assets/bench-wet)
# Env:   BENCH_COPIES (default 8), BENCH_REPEAT (runs per tool, default 5), BENCH_PYTHON
#        (use this interpreter instead of a fresh venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench-wet}
copies=${BENCH_COPIES:-8}
repeat=${BENCH_REPEAT:-5}
mkdir -p "$work"
work=$(cd "$work" && pwd)

. "$here/bench-common.sh"
bench_python pyarrow==26.0.1 warcio
corpus=$work/corpus-$copies
[ -f "$corpus/.done" ] || { rm -rf "$corpus"; "$py" "$here/bench_wet.py" make "$root/data/quickstart" "$corpus" --copies "$copies" && touch "$corpus/.done"; }
build_gleaner

print_machine
echo "corpus: $(du -sh "$corpus" | cut -f1) of WET, $copies files"
cat > "$work/gleaner.toml" <<TOML
[input]
paths = ["$corpus"]
metadata_columns = ["url", "date"]
[output]
dir = "$work/out-gleaner"
overwrite = true
[run]
threads = 2
TOML
cat "$corpus"/* > /dev/null
results=$work/results.tsv
: > "$results"
for i in $(seq "$repeat"); do
  run_once gleaner "$gleaner" --quiet run --config "$work/gleaner.toml"
  rm -rf "$work/warcio"
  run_once warcio "$py" "$here/bench_wet.py" warcio "$corpus" "$work/warcio"
done
summarize_runs
"$py" -c "
import glob, pyarrow.parquet as pq
a = {r['id']: r for f in glob.glob('$work/out-gleaner/selected/*.parquet') for r in pq.read_table(f, columns=['id', 'text', 'url', 'date']).to_pylist()}
b = {r['id']: r for f in glob.glob('$work/warcio/*.parquet') for r in pq.read_table(f).to_pylist()}
same = sum(a.get(k) == v for k, v in b.items())
print(f'{len(b)} documents read by warcio, {len(a)} by gleaner; the same id, text, url and date for {same}')"
