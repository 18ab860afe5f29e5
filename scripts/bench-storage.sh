#!/usr/bin/env bash
# Storage benchmark: gleaner vs pyarrow (read) and vs pyarrow and datatrove (read, sample 50%,
# write zstd parquet) on the same generated corpus of at least 400 MB on disk, in one run; the
# same corpus rewritten by pyarrow with its defaults (snappy) read by both; and
# the same documents as Dolma-style .jsonl.zst read by gleaner, pyarrow's JSON reader and
# datatrove's JsonlReader (2 processes/workers each, like gleaner's 2 threads).
# Reports wall time, throughput ratios and peak RSS (/usr/bin/time -v).
#
# Usage: scripts/bench-storage.sh [WORK_DIR]   (default .assets/bench)
# Env:   BENCH_MB (text MB to generate, default 1000), BENCH_REPEAT (runs per tool, default 5,
#        alternating between the tools of a task; medians with min-max and each run's stolen
#        CPU share are printed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench}
mb=${BENCH_MB:-1000}
repeat=${BENCH_REPEAT:-5}
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

# CPU ticks: "steal total" from /proc/stat (steal: time the hypervisor gave this machine's
# CPUs to someone else).
ticks() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print $9, t}' /proc/stat; }
# alternate NAME...: runs the commands in the arrays cmd_NAME one after another, $repeat rounds;
# prints every run (wall seconds, peak RSS, stolen CPU share) and per NAME the median wall time
# with its min-max spread, and records median and peak RSS in $results.
results=$work/results.tsv
: > "$results"
alternate() {
  declare -A walls rss
  local name round
  for round in $(seq "$repeat"); do
    for name in "$@"; do
      local -n cmd="cmd_$name"
      rm -rf "$work/out-py" "$work/out-dt"
      local before; before=$(ticks)
      /usr/bin/time -v -o "$work/time.txt" "${cmd[@]}" > "$work/last.log" 2>&1 || { cat "$work/last.log"; exit 1; }
      local steal; steal=$(echo "$before $(ticks)" | awk '{d=$4-$2; printf "%.3f", (d>0)?($3-$1)/d:0}')
      local wall; wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
      local r; r=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/time.txt")
      echo "  run $round $name: ${wall} s, ${r} MB, steal $steal" >&2
      walls[$name]+="$wall "
      [ "$r" -gt "${rss[$name]:-0}" ] && rss[$name]=$r
    done
  done
  for name in "$@"; do
    local sorted; sorted=$(printf '%s\n' ${walls[$name]} | sort -g)
    local med; med=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "  $name: median $med s (min $(echo "$sorted" | head -1), max $(echo "$sorted" | tail -1))" >&2
    printf '%s\t%s\t%s\n' "$name" "$med" "${rss[$name]}" | tee -a "$results"
  done
}

disk_mb=$(du -sm "$corpus" | cut -f1)
text_mb=$("$gleaner" inspect "$corpus" --scan | sed -E 's/.*documents, ([0-9]+) text bytes.*/\1/' | awk '{print int($1/1e6)}')
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, flags: $(grep -m1 -o -w 'avx2\|avx512f\|avx512_bf16\|avx512_vnni' /proc/cpuinfo | sort -u | xargs)"
echo "corpus: $corpus, ${disk_mb} MB on disk, ${text_mb} MB of text; $(nproc) cores; $repeat alternating runs per tool, medians"
printf 'task\twall_s\tpeak_rss_mb\n'
cmd_read_gleaner=("$gleaner" inspect "$corpus" --scan)
cmd_read_pyarrow=("$py" "$here/bench_storage_py.py" read-pyarrow "$corpus")
cmd_snappy_gleaner=("$gleaner" inspect "$work/snappy" --scan)
cmd_snappy_pyarrow=("$py" "$here/bench_storage_py.py" read-pyarrow "$work/snappy")
cmd_e2e_gleaner=("$gleaner" --quiet run --config "$work/gleaner-e2e.toml")
cmd_e2e_gleaner_zstd3=("$gleaner" --quiet run --config "$work/gleaner-e2e.toml" output.zstd_level=3)
# With the scan cache on for these local files (by default only object-storage inputs use it):
# the write phase takes the units the scan kept instead of reading them again.
cmd_e2e_gleaner_cached=("$gleaner" --quiet run --config "$work/gleaner-e2e.toml" run.scan_cache=2GiB)
# With nothing kept in memory: no unit is read ahead while the pool is decided either.
cmd_e2e_gleaner_uncached=("$gleaner" --quiet run --config "$work/gleaner-e2e.toml" run.scan_cache=0)
cmd_e2e_pyarrow=("$py" "$here/bench_storage_py.py" e2e-pyarrow "$corpus" "$work/out-py")
cmd_e2e_datatrove=("$py" "$here/bench_storage_py.py" e2e-datatrove "$corpus" "$work/out-dt")
cmd_jsonl_gleaner=("$gleaner" inspect "$work/jsonl" --scan)
cmd_jsonl_pyarrow=("$py" "$here/bench_storage_py.py" read-jsonl-pyarrow "$work/jsonl")
cmd_jsonl_datatrove=("$py" "$here/bench_storage_py.py" read-jsonl-datatrove "$work/jsonl")
alternate read_gleaner read_pyarrow
alternate snappy_gleaner snappy_pyarrow
alternate e2e_gleaner e2e_pyarrow e2e_datatrove e2e_gleaner_zstd3 e2e_gleaner_cached e2e_gleaner_uncached
alternate jsonl_gleaner jsonl_pyarrow jsonl_datatrove

awk -F'\t' -v text="$text_mb" '
  {w[$1]=$2; r[$1]=$3}
  END {
    printf "\nread:  gleaner %.2f s (%.0f MB/s of text, %d MB RSS) vs pyarrow %.2f s (%d MB RSS): %.2fx pyarrow\n", w["read_gleaner"], text/w["read_gleaner"], r["read_gleaner"], w["read_pyarrow"], r["read_pyarrow"], w["read_pyarrow"]/w["read_gleaner"]
    printf "snappy read (pyarrow-written): gleaner %.2f s (%d MB RSS) vs pyarrow %.2f s (%d MB RSS): %.2fx pyarrow\n", w["snappy_gleaner"], r["snappy_gleaner"], w["snappy_pyarrow"], r["snappy_pyarrow"], w["snappy_pyarrow"]/w["snappy_gleaner"]
    printf "e2e (gleaner at zstd 3, its default): %.2f s (%d MB RSS)\n", w["e2e_gleaner_zstd3"], r["e2e_gleaner_zstd3"]
    printf "e2e (gleaner at zstd 1, run.scan_cache = 2GiB: every unit kept from the scan): %.2f s (%d MB RSS): %.2fx pyarrow\n", w["e2e_gleaner_cached"], r["e2e_gleaner_cached"], w["e2e_pyarrow"]/w["e2e_gleaner_cached"]
    printf "e2e (gleaner at zstd 1, run.scan_cache = 0: no unit kept or read ahead): %.2f s (%d MB RSS): %.2fx pyarrow\n", w["e2e_gleaner_uncached"], r["e2e_gleaner_uncached"], w["e2e_pyarrow"]/w["e2e_gleaner_uncached"]
    printf "jsonl.zst read: gleaner %.2f s (%d MB RSS) vs pyarrow json %.2f s (%d MB RSS): %.2fx; vs datatrove %.2f s (%d MB RSS): %.2fx\n", w["jsonl_gleaner"], r["jsonl_gleaner"], w["jsonl_pyarrow"], r["jsonl_pyarrow"], w["jsonl_pyarrow"]/w["jsonl_gleaner"], w["jsonl_datatrove"], r["jsonl_datatrove"], w["jsonl_datatrove"]/w["jsonl_gleaner"]
    printf "e2e (zstd 1 everywhere): gleaner %.2f s (%d MB RSS) vs pyarrow %.2f s (%d MB RSS): %.2fx; vs datatrove %.2f s (%d MB RSS): %.2fx\n", w["e2e_gleaner"], r["e2e_gleaner"], w["e2e_pyarrow"], r["e2e_pyarrow"], w["e2e_pyarrow"]/w["e2e_gleaner"], w["e2e_datatrove"], r["e2e_datatrove"], w["e2e_datatrove"]/w["e2e_gleaner"]
  }' "$results"
