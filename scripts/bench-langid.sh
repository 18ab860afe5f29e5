#!/usr/bin/env bash
# Language identification: accuracy of the language_id stage on labelled real text (Debian's
# manual pages in English, German, French and Spanish, scripts/make_langid_benchmark.py), per
# language, reading the first 2000 and the first 200 characters; and its throughput.
#
# Usage: scripts/bench-langid.sh [WORK_DIR]   (default .assets/bench-langid)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench-langid}
mkdir -p "$work"
work=$(cd "$work" && pwd)
[ -f "$work/langid.parquet" ] || python3 "$here/make_langid_benchmark.py" "$work" --per-language 200
gleaner=${GLEANER:-}
if [ -z "$gleaner" ]; then (cd "$root" && cargo build --release -q -p gleaner); gleaner=$root/target/release/gleaner; fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for chars in 2000 200; do
  cat > "$work/langid-$chars.toml" <<TOML
[input]
paths = ["$work/langid.parquet"]
metadata_columns = ["label"]
[output]
dir = "$work/out-$chars"
overwrite = true
[[stages]]
type = "language_id"
max_chars = $chars
TOML
  "$gleaner" --quiet run --config "$work/langid-$chars.toml" > /dev/null
  python3 - "$work/out-$chars" "$chars" <<'PY'
import collections, glob, json, sys
import pyarrow.parquet as pq
out, chars = sys.argv[1], sys.argv[2]
right, total = collections.Counter(), collections.Counter()
for f in sorted(glob.glob(f"{out}/selected/*.parquet")):
    t = pq.read_table(f, columns=["label", "lang"])
    for truth, got in zip(t.column("label").to_pylist(), t.column("lang").to_pylist()):
        total[truth] += 1
        right[truth] += truth == got
timings = json.load(open(f"{out}/timings.json"))
per = ", ".join(f"{l} {right[l] / total[l]:.3f}" for l in sorted(total))
n = sum(total.values())
print(f"first {chars} chars: accuracy {sum(right.values()) / n:.3f} ({per}); {n} documents in {timings['total_s']:.2f} s ({n / timings['total_s']:.0f} docs/s, whole run)")
PY
done
