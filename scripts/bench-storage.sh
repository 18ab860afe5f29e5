#!/usr/bin/env bash
# Storage benchmark: gleaner vs pyarrow (read) and vs pyarrow and datatrove (read, sample 50%,
# write zstd parquet) on the same generated corpus of at least 400 MB on disk, in one run; the
# same corpus rewritten by pyarrow with its defaults (snappy) read by both; and
# the same documents as Dolma-style .jsonl.zst read by gleaner, pyarrow's JSON reader and
# datatrove's JsonlReader (2 processes/workers each, like gleaner's 2 threads).
# Reports wall time, throughput ratios and peak RSS (/usr/bin/time -v).
#
# Usage: scripts/bench-storage.sh [WORK_DIR]   (default .assets/bench)
# Env:   BENCH_MB (text MB to generate, default 1000), BENCH_REPEAT (runs per tool, default 3; the median is kept)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench}
mb=${BENCH_MB:-1000}
repeat=${BENCH_REPEAT:-3}
mkdir -p "$work"
work=$(cd "$work" && pwd)
corpus=$work/corpus

[ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q pyarrow==26.0.1 datatrove==0.10.1 numpy regex zstandard orjson
py=$work/venv/bin/python
[ -f "$corpus/.done-$mb" ] || { rm -rf "$corpus"; "$py" "$here/gen_bench_corpus.py" --src "$root/data/quickstart" --out "$corpus" --mb "$mb" && touch "$corpus/.done-$mb"; }
[ -f "$work/snappy/.done-$mb" ] || { rm -rf "$work/snappy"; "$py" "$here/bench_storage_py.py" to-snappy "$corpus" "$work/snappy" && touch "$work/snappy/.done-$mb"; }
[ -f "$work/jsonl/.done-$mb" ] || { rm -rf "$work/jsonl"; "$py" "$here/bench_storage_py.py" to-jsonl "$corpus" "$work/jsonl" && touch "$work/jsonl/.done-$mb"; }
(cd "$root" && cargo build --release -q -p gleaner)
gleaner=$root/target/release/gleaner

cat > "$work/gleaner-e2e.toml" <<TOML
[input]
paths = ["$corpus"]
source_column = "source"
[output]
dir = "$work/out-gleaner"
overwrite = true
zstd_level = 1   # pyarrow's (and so datatrove's) default zstd level: equal work
[run]
seed = 0
[[stages]]
type = "random_sample"
fraction = 0.5
TOML

# Warm the page cache so every tool reads from memory.
cat "$corpus"/*.parquet "$work"/snappy/*.parquet "$work"/jsonl/*.jsonl.zst > /dev/null

# measure NAME CMD...: runs CMD $repeat times, records median wall seconds and max peak RSS (MB).
results=$work/results.tsv
: > "$results"
measure() {
  local name=$1; shift
  local walls=() rss=0
  for _ in $(seq "$repeat"); do
    rm -rf "$work/out-py" "$work/out-dt"
    /usr/bin/time -v -o "$work/time.txt" "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log"; exit 1; }
    walls+=("$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")")
    r=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/time.txt")
    [ "$r" -gt "$rss" ] && rss=$r
  done
  echo "  $name runs (s): ${walls[*]}" >&2
  med=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%s\t%s\t%s\n' "$name" "$med" "$rss" | tee -a "$results"
}

disk_mb=$(du -sm "$corpus" | cut -f1)
text_mb=$("$gleaner" inspect "$corpus" --scan | sed -E 's/.*documents, ([0-9]+) text bytes.*/\1/' | awk '{print int($1/1e6)}')
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, flags: $(grep -m1 -o -w 'avx2\|avx512f\|avx512_bf16\|avx512_vnni' /proc/cpuinfo | sort -u | xargs)"
echo "corpus: $corpus, ${disk_mb} MB on disk, ${text_mb} MB of text; $(nproc) cores; median of $repeat runs"
printf 'task\twall_s\tpeak_rss_mb\n'
measure read-gleaner "$gleaner" inspect "$corpus" --scan
measure read-pyarrow "$py" "$here/bench_storage_py.py" read-pyarrow "$corpus"
measure snappy-gleaner "$gleaner" inspect "$work/snappy" --scan
measure snappy-pyarrow "$py" "$here/bench_storage_py.py" read-pyarrow "$work/snappy"
measure e2e-gleaner "$gleaner" --quiet run --config "$work/gleaner-e2e.toml"
measure e2e-gleaner-zstd3 "$gleaner" --quiet run --config "$work/gleaner-e2e.toml" output.zstd_level=3
measure e2e-pyarrow "$py" "$here/bench_storage_py.py" e2e-pyarrow "$corpus" "$work/out-py"
measure e2e-datatrove "$py" "$here/bench_storage_py.py" e2e-datatrove "$corpus" "$work/out-dt"
measure jsonl-gleaner "$gleaner" inspect "$work/jsonl" --scan
measure jsonl-pyarrow "$py" "$here/bench_storage_py.py" read-jsonl-pyarrow "$work/jsonl"
measure jsonl-datatrove "$py" "$here/bench_storage_py.py" read-jsonl-datatrove "$work/jsonl"

awk -F'\t' -v text="$text_mb" '
  {w[$1]=$2; r[$1]=$3}
  END {
    printf "\nread:  gleaner %.2f s (%.0f MB/s of text, %d MB RSS) vs pyarrow %.2f s (%d MB RSS): %.2fx pyarrow\n", w["read-gleaner"], text/w["read-gleaner"], r["read-gleaner"], w["read-pyarrow"], r["read-pyarrow"], w["read-pyarrow"]/w["read-gleaner"]
    printf "snappy read (pyarrow-written): gleaner %.2f s (%d MB RSS) vs pyarrow %.2f s (%d MB RSS): %.2fx pyarrow\n", w["snappy-gleaner"], r["snappy-gleaner"], w["snappy-pyarrow"], r["snappy-pyarrow"], w["snappy-pyarrow"]/w["snappy-gleaner"]
    printf "e2e (gleaner at zstd 3, its default): %.2f s (%d MB RSS)\n", w["e2e-gleaner-zstd3"], r["e2e-gleaner-zstd3"]
    printf "jsonl.zst read: gleaner %.2f s (%d MB RSS) vs pyarrow json %.2f s (%d MB RSS): %.2fx; vs datatrove %.2f s (%d MB RSS): %.2fx\n", w["jsonl-gleaner"], r["jsonl-gleaner"], w["jsonl-pyarrow"], r["jsonl-pyarrow"], w["jsonl-pyarrow"]/w["jsonl-gleaner"], w["jsonl-datatrove"], r["jsonl-datatrove"], w["jsonl-datatrove"]/w["jsonl-gleaner"]
    printf "e2e (zstd 1 everywhere): gleaner %.2f s (%d MB RSS) vs pyarrow %.2f s (%d MB RSS): %.2fx; vs datatrove %.2f s (%d MB RSS): %.2fx\n", w["e2e-gleaner"], r["e2e-gleaner"], w["e2e-pyarrow"], r["e2e-pyarrow"], w["e2e-pyarrow"]/w["e2e-gleaner"], w["e2e-datatrove"], r["e2e-datatrove"], w["e2e-datatrove"]/w["e2e-gleaner"]
  }' "$results"
