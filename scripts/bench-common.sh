# Helpers sourced by the benchmark scripts that run gleaner beside a Python peer
# (scripts/bench-minhash.sh, scripts/bench-rules.sh, scripts/bench-wet.sh,
# scripts/bench-warc.sh, scripts/bench-url-filter.sh). They expect $work (a scratch folder); build_gleaner also $root;
# run_once and summarize_runs also $results (the runs file) and $py.

# build_gleaner: builds the release binary and sets $gleaner to it.
build_gleaner() {
  (cd "$root" && cargo build --release -q -p gleaner)
  gleaner=$root/target/release/gleaner
}

# print_machine: the CPU model, core count and vector instruction sets, for the record.
print_machine() {
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, flags: $(grep -m1 -o -w 'avx2\|avx512f\|avx512_bf16\|avx512_vnni' /proc/cpuinfo | sort -u | xargs)"
}

# bench_python PACKAGE...: sets $py to $BENCH_PYTHON when given (an interpreter that already
# has the packages), else to a venv in $work with the packages installed.
bench_python() {
  if [ -n "${BENCH_PYTHON:-}" ]; then
    py=$BENCH_PYTHON
  else
    [ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q "$@"
    py=$work/venv/bin/python
  fi
}

# run_once NAME CMD...: runs CMD, appends "NAME wall_s peak_rss_mb" to $results and prints it.
run_once() {
  local name=$1; shift
  /usr/bin/time -v -o "$work/time.txt" "$@" > "$work/last.log" 2>&1 || { tail -20 "$work/last.log"; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/time.txt")
  printf '%s\t%s\t%s\n' "$name" "$wall" "$rss" | tee -a "$results"
}

# summarize_runs: each tool's median wall time with its min-max and peak RSS, then the ratio
# of each other tool's median to gleaner's.
summarize_runs() {
  "$py" - "$results" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, wall, rss = line.split()
    runs[name].append((float(wall), int(rss)))
med = {}
for name, r in runs.items():
    walls = [w for w, _ in r]
    med[name] = statistics.median(walls)
    print(f"{name}: median {med[name]:.2f} s (min {min(walls):.2f}, max {max(walls):.2f}, {len(walls)} runs), peak RSS {max(x for _, x in r)} MB")
for name in med:
    if name != "gleaner":
        print(f"{name} / gleaner wall time: {med[name] / med['gleaner']:.1f}x")
PY
}
