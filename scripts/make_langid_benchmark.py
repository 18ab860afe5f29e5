"""Labelled real text for language identification: Debian's manual pages in English, German,
French and Spanish (packages manpages, manpages-de, manpages-fr, manpages-es), rendered to
plain text with groff. Writes OUT/langid.parquet (id, text, label: ISO 639-3).

Usage: python3 scripts/make_langid_benchmark.py OUT [--per-language N]
Needs apt-get (Debian's package registry), dpkg-deb and groff.
"""
import glob
import gzip
import os
import random
import subprocess
import sys
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq

PACKAGES = {"eng": ("manpages", "usr/share/man/man*"), "deu": ("manpages-de", "usr/share/man/de/man*"),
            "fra": ("manpages-fr", "usr/share/man/fr/man*"), "spa": ("manpages-es", "usr/share/man/es/man*")}


def render(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    out = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou"], input=raw, capture_output=True, timeout=60)
    return out.stdout.decode("utf-8", "replace")


def main():
    out = sys.argv[1]
    per = int(sys.argv[sys.argv.index("--per-language") + 1]) if "--per-language" in sys.argv else 200
    rows = {"id": [], "text": [], "label": []}
    with tempfile.TemporaryDirectory() as tmp:
        for lang, (package, pattern) in PACKAGES.items():
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
            deb = glob.glob(os.path.join(tmp, f"{package}_*.deb"))[0]
            root = os.path.join(tmp, package)
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
            pages = sorted(p for d in glob.glob(os.path.join(root, pattern)) for p in glob.glob(os.path.join(d, "*"))
                           if os.path.isfile(p) and not os.path.islink(p))
            random.Random(0).shuffle(pages)
            kept = 0
            for p in pages:
                text = render(p)
                if len(text.split()) < 30 or ".so " in text[:10]:
                    continue
                rows["id"].append(f"{lang}:{os.path.basename(p)}")
                rows["text"].append(text)
                rows["label"].append(lang)
                kept += 1
                if kept == per:
                    break
            print(f"{lang}: {kept} pages from {package}")
    os.makedirs(out, exist_ok=True)
    pq.write_table(pa.table(rows), os.path.join(out, "langid.parquet"), compression="zstd")


main()
