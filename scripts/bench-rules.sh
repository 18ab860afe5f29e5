#!/usr/bin/env bash
# Per-document rules against datatrove 0.10.1, each tool reading parquet, applying the rule and
# writing zstd parquet, 2 threads / 2 workers, runs alternating; then whether the two wrote the
# same documents with the same texts. The rules (BENCH_RULES, default both):
#   pii      gleaner's pii_redact against PIIFormatter (email and IPv4 addresses replaced)
#   fineweb  gleaner's fineweb_quality against FineWebQualityFilter
#   badwords gleaner's c4_badwords against C4BadWordsFilter, both with LDNOOBW's English list
#            (.assets/c4_badwords/en.json, from scripts/fetch-assets.sh; in the default set
#            when it is there)
#
# The corpus: the quickstart's documents (real mail with headers among them: 281 of 3,962
# documents hold an address) BENCH_COPIES times over.
#
# Usage: scripts/bench-rules.sh [WORK_DIR]   (default .assets/bench-rules)
# Env:   BENCH_RULES (default "pii fineweb", and badwords when its list is there), BENCH_COPIES (default 10), BENCH_REPEAT (runs
#        per tool, default 5), BENCH_PYTHON
#        (use this interpreter instead of a fresh venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-$root/.assets/bench-rules}
badwords_dir=${GLEANER_ASSETS:-$root/.assets}/c4_badwords
default_rules="pii fineweb"
[ -f "$badwords_dir/en.json" ] && default_rules="$default_rules badwords"
rules=${BENCH_RULES:-$default_rules}
copies=${BENCH_COPIES:-10}
repeat=${BENCH_REPEAT:-5}
mkdir -p "$work"
work=$(cd "$work" && pwd)

. "$here/bench-common.sh"
bench_python pyarrow==26.0.1 "datatrove==0.10.1" spacy
corpus=$work/corpus-$copies
[ -f "$corpus/.done" ] || { rm -rf "$corpus"; "$py" "$here/bench_rules.py" make "$root/data/quickstart" "$corpus" --copies "$copies" && touch "$corpus/.done"; }
build_gleaner

print_machine
echo "corpus: $(du -sh "$corpus" | cut -f1) of parquet, $copies copies of the quickstart"
cat "$corpus"/*.parquet > /dev/null
for rule in $rules; do
  case $rule in
    pii) stage='type = "pii_redact"
email_replacements = ["email@example.com"]
ip_replacements = ["22.214.171.124"]' ;;
    fineweb) stage='type = "fineweb_quality"' ;;
    badwords) stage="type = \"c4_badwords\"
words_dir = \"$badwords_dir\""
      export BADWORDS_LIST=$badwords_dir/en.json ;;
    *) echo "unknown rule $rule (pii, fineweb, badwords)"; exit 2 ;;
  esac
  echo "== $rule"
  cat > "$work/gleaner-$rule.toml" <<TOML
[input]
paths = ["$corpus"]
[output]
dir = "$work/out-gleaner-$rule"
overwrite = true
[run]
threads = 2
[[stages]]
$stage
TOML
  results=$work/results-$rule.tsv
  : > "$results"
  for i in $(seq "$repeat"); do
    run_once gleaner "$gleaner" --quiet run --config "$work/gleaner-$rule.toml"
    rm -rf "$work/dt-$rule"
    run_once datatrove "$py" "$here/bench_rules.py" datatrove "$rule" "$corpus" "$work/dt-$rule"
  done
  summarize_runs
  "$py" "$here/bench_rules.py" compare "$corpus" "$work/out-gleaner-$rule" "$work/dt-$rule"
done
