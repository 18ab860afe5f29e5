#!/usr/bin/env bash
# Main-text extraction from WARC files of HTML: gleaner (read the WARC files, `html_extract`,
# write zstd parquet) against datatrove (WarcReader -> Trafilatura -> ParquetWriter, one task
# per file on 2 workers), runs alternating; then how close the two extractions are.
#
# The corpus: BENCH_PAGES real documentation pages (scripts/make_warc_fixture.py: the Rust
# books and reference, Node.js, npm and valgrind manuals) as warcio writes a crawl's response
# records, dealt into 4 files.
#
# Usage: scripts/bench-warc.sh [WORK_DIR]   (default .assets/bench-warc)
# Env:   BENCH_PAGES (default 1600), BENCH_REPEAT (runs per tool, default 5), BENCH_PYTHON
#        (use this interpreter instead of a fresh venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench-warc}
pages=${BENCH_PAGES:-1600}
repeat=${BENCH_REPEAT:-5}
mkdir -p "$work"
work=$(cd "$work" && pwd)

. "$here/bench-common.sh"
bench_python pyarrow==26.0.1 warcio datatrove==0.10.1 trafilatura==2.3.1 lxml_html_clean faust-cchardet python-magic
corpus=$work/corpus-$pages
[ -f "$corpus/.done" ] || { rm -rf "$corpus"; "$py" "$here/make_warc_fixture.py" --pages "$pages" --parts 4 --out "$corpus" && touch "$corpus/.done"; }
build_gleaner

print_machine
echo "corpus: $(du -sh "$corpus" | cut -f1) of WARC, 4 files, $pages pages"
cat > "$work/gleaner.toml" <<TOML
[input]
paths = ["$corpus"]
metadata_columns = ["url", "date"]
[output]
dir = "$work/out-gleaner"
overwrite = true
[run]
threads = 2
[[stages]]
type = "html_extract"
TOML
cat "$corpus"/* > /dev/null
results=$work/results.tsv
: > "$results"
for i in $(seq "$repeat"); do
  run_once gleaner "$gleaner" --quiet run --config "$work/gleaner.toml"
  rm -rf "$work/datatrove" "$work/datatrove-logs"
  run_once datatrove "$py" "$here/bench_warc.py" datatrove "$corpus" "$work/datatrove"
done
summarize_runs
"$py" "$here/bench_warc.py" compare "$work/out-gleaner" "$work/datatrove"
