#!/usr/bin/env bash
# URL filtering against datatrove, decisions and time, with datatrove's own block lists
# (scripts/fetch-assets.sh puts them in .assets/url_filter): URLs made from 20,000 domains
# drawn from the domain list (as written, with subdomains, ports, paths), 20,000 made-up
# URLs whose path words are drawn from the word lists and an English vocabulary, and the 44
# real URLs of tests/fixtures/warc. gleaner: `gleaner run` with a url_filter stage (list
# loading, reading the JSONL, writing kept and removed shards); datatrove: URLFilter (list
# loading and filtering, no reading or writing) on the same URLs. Prints the machine, each
# system's wall time and peak memory (REPEAT runs, alternating: median, min-max) and the
# agreement of the decisions, reason by reason.
# Usage: scripts/bench-url-filter.sh    Env: REPEAT (default 3), BENCH_PYTHON (a Python that
#        has datatrove 0.10.1, tldextract, pyahocorasick and fasteners; else a venv is made).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
source "$here/bench-common.sh"
repeat=${REPEAT:-3}
lists=${GLEANER_ASSETS:-$root/.assets}/url_filter
[ -f "$lists/domains" ] || { echo "no $lists/domains: run scripts/fetch-assets.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
print_machine
bench_python pyarrow datatrove==0.10.1 tldextract pyahocorasick fasteners
build_gleaner
"$py" - "$lists" "$root/tests/fixtures/warc/datatrove.json" "$work/pages.jsonl" <<'PY'
import json, random, sys
lists, warc, out = sys.argv[1:]
rng = random.Random(0)
domains = [l.strip() for l in open(f"{lists}/domains") if l.strip() and not l.startswith("#")]
words = [l.strip() for name in ("banned_words.txt", "soft_banned_words.txt", "banned_subwords.txt")
         for l in open(f"{lists}/{name}") if l.strip()]
vocabulary = ["news", "home", "about", "blog", "article", "shop", "index", "page", "search",
              "video", "free", "photo", "world", "sport", "music", "travel", "food", "2024"]
urls = [d["url"] for d in json.load(open(warc))["documents"]]
for d in rng.sample(domains, 20000):
    form = rng.randrange(4)
    urls.append([f"https://{d}/", f"http://www.{d}/{rng.choice(vocabulary)}.html",
                 f"https://cdn.{d}:8080/a/b?x=1", f"http://{d}/{rng.choice(vocabulary)}/"][form])
for i in range(20000):
    path = "-".join(rng.choice(words if rng.random() < 0.15 else vocabulary) for _ in range(rng.randrange(1, 5)))
    urls.append(f"https://site{i}.{rng.choice(['com', 'org', 'co.uk', 'de', 'net'])}/{path}")
with open(out, "w") as f:
    for i, u in enumerate(urls):
        f.write(json.dumps({"id": f"u{i}", "text": f"page {i}", "url": u}) + "\n")
print(f"{len(urls)} URLs")
PY
cat > "$work/gleaner.toml" <<TOML
[input]
paths = ["$work/pages.jsonl"]
[output]
dir = "$work/out"
overwrite = true
write_removed = true
[[stages]]
type = "url_filter"
lists_dir = "$lists"
TOML
cat > "$work/url_filter_datatrove.py" <<'PY'
import json, sys
from datatrove.data import Document
from datatrove.pipeline.filters import URLFilter
from tldextract import TLDExtract
f = URLFilter()
f.tldextractor = TLDExtract(suffix_list_urls=())  # the bundled suffix list, as gleaner's
out = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    v = f.filter(Document(text=d["text"], id=d["id"], metadata={"url": d["url"]}))
    out[d["id"]] = None if v is True else v[1]
json.dump(out, open(sys.argv[2], "w"))
PY
results=$work/results.tsv
for _ in $(seq "$repeat"); do
  run_once gleaner "$gleaner" --quiet run --config "$work/gleaner.toml"
  run_once datatrove "$py" "$work/url_filter_datatrove.py" "$work/pages.jsonl" "$work/datatrove.json"
done
summarize_runs
"$py" - "$work" <<'PY'
import collections, glob, json, sys
import pyarrow.parquet as pq
work = sys.argv[1]
names = {"domain": "blocked_domain", "subdomain": "blocked_subdomain", "url": "blocked_url",
         "hard_blacklisted": "banned_word", "soft_blacklisted": "soft_banned_words",
         "blacklisted_subword": "banned_subword", None: None}
theirs = {k: names[v] for k, v in json.load(open(f"{work}/datatrove.json")).items()}
ours = {k: None for k in pq.read_table(f"{work}/out/selection.parquet").column("id").to_pylist()}
for shard in glob.glob(f"{work}/out/removed/*/*.parquet"):
    reason = shard.split("/")[-2]
    ours.update({k: reason for k in pq.read_table(shard, columns=["id"]).column("id").to_pylist()})
agree = sum(ours.get(k) == v for k, v in theirs.items())
print(f"decisions: {agree} of {len(theirs)} agree (same keep or the same drop reason)")
print("datatrove's reasons:", dict(collections.Counter(theirs.values())))
diff = collections.Counter((v, ours.get(k)) for k, v in theirs.items() if ours.get(k) != v)
print("disagreements (datatrove, gleaner):", dict(diff) or "none")
PY
