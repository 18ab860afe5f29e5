#!/usr/bin/env python3
"""Writes a WARC file of real HTML pages, as a crawler archives them, and what datatrove makes
of it: the oracle of gleaner's WARC reader and its `html_extract` stage.

The pages are HTML documentation installed on this project's machines (the Rust books and
reference that rustup installs, Node.js's and npm's manuals, valgrind's manual): real pages with
navigation, sidebars, code and tables around their main text. warcio writes each as a
`response` record with HTTP headers, under a made-up URL, and varies the framing a crawl
holds: a payload type header or none (then the HTTP Content-Type decides), gzip content
encoding, a chunked transfer encoding, a page in windows-1252, and records that are not
documents (warcinfo, request, metadata, an image, a DNS answer).

The oracle (`--oracle`) reads the file back with datatrove 0.10.1's own WarcReader record
function and extracts each page with datatrove's Trafilatura extractor (trafilatura 2.3,
precision favoured, comments left out), with trafilatura's duplicate cache cleared before
each page: gleaner counts repeated segments within a page, datatrove across a worker's pages.

Usage:
  python3 scripts/make_warc_fixture.py [--pages N] [--out FILE.warc.gz] [--oracle FILE.json]
  python3 scripts/make_warc_fixture.py --pages N --parts K --out DIR   (benchmark corpus:
      the pages dealt round-robin into K files DIR/crawl-NN.warc.gz)
Defaults write tests/fixtures/warc/pages.warc.gz (48 pages) and its oracle
tests/fixtures/warc/datatrove.json. Needs warcio; the oracle needs datatrove, trafilatura,
faust-cchardet and python-magic.
"""
import argparse
import glob
import gzip
import io
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_DIR = os.path.join(HERE, "..", "tests", "fixtures", "warc")
RUST_DOC = os.path.expanduser("~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html")
SOURCES = [
    (os.path.join(RUST_DOC, "book"), "https://doc.rust-lang.org/book/"),
    (os.path.join(RUST_DOC, "reference"), "https://doc.rust-lang.org/reference/"),
    (os.path.join(RUST_DOC, "rust-by-example"), "https://doc.rust-lang.org/rust-by-example/"),
    (os.path.join(RUST_DOC, "cargo"), "https://doc.rust-lang.org/cargo/"),
    ("/usr/share/doc/nodejs/api", "https://nodejs.org/api/"),
    ("/usr/lib/node_modules/npm/docs/output", "https://docs.npmjs.com/"),
    ("/usr/share/doc/valgrind/html", "https://valgrind.org/docs/manual/"),
]
MAX_PAGE_BYTES = 120_000
FRENCH = (
    "<html><head><title>Recette</title></head><body><nav><a href='/'>Accueil</a></nav>"
    "<article><h1>La tarte aux pommes de grand-m\u00e8re</h1>"
    "<p>Pr\u00e9chauffez le four \u00e0 180 degr\u00e9s. \u00c9pluchez les pommes, coupez-les en "
    "quartiers et disposez-les sur la p\u00e2te bris\u00e9e d\u00e9j\u00e0 \u00e9tal\u00e9e dans "
    "le moule beurr\u00e9.</p><p>M\u00e9langez les \u0153ufs, le sucre et la cr\u00e8me "
    "fra\u00eeche, versez sur les fruits et faites cuire quarante minutes, jusqu'\u00e0 ce que "
    "le dessus soit dor\u00e9. Servez ti\u00e8de, avec une boule de glace \u00e0 la "
    "vanille si vous le souhaitez.</p></article><footer>\u00a9 2024 Cuisine</footer>"
    "</body></html>"
)


def pages(limit):
    """Up to `limit` (path, url) pairs taken evenly across the sources, in a fixed order."""
    per_source = []
    for root, base in SOURCES:
        files = sorted(
            p for p in glob.glob(os.path.join(root, "**", "*.html"), recursive=True)
            if 2_000 < os.path.getsize(p) < MAX_PAGE_BYTES and "print.html" not in p
        )
        per_source.append([(p, base + os.path.relpath(p, root)) for p in files])
    chosen = []
    share = max(1, limit // max(1, sum(1 for s in per_source if s)))
    for files in per_source:
        if files:
            step = max(1, len(files) // share)
            chosen.extend(files[::step][:share])
    return chosen[:limit]


def write(out, chosen, extras=True):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(out, "wb") as f:
        w = WARCWriter(f, gzip=True)
        w.write_record(w.create_warcinfo_record(os.path.basename(out), {"software": "warcio"}))

        def response(url, body, *, payload_type="text/html", content_type="text/html; charset=utf-8", extra=()):
            headers = [("Content-Type", content_type)] if content_type else []
            headers += list(extra)
            http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
            warc_headers = {"WARC-Date": "2024-05-06T07:08:09Z"}
            if payload_type:
                warc_headers["WARC-Identified-Payload-Type"] = payload_type
            record = w.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=http,
                warc_headers_dict=warc_headers,
            )
            w.write_record(record)

        for k, (path, url) in enumerate(chosen):
            with open(path, "rb") as page:
                body = page.read()
            if k % 7 == 3:
                # No payload type: the HTTP Content-Type decides.
                response(url, body, payload_type=None)
            elif k % 7 == 5:
                response(url, gzip.compress(body, mtime=0), extra=[("Content-Encoding", "gzip")])
            elif k % 7 == 6:
                half = len(body) // 2
                chunked = b"".join(
                    b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:])
                ) + b"0\r\n\r\n"
                response(url, chunked, extra=[("Transfer-Encoding", "chunked")])
            else:
                response(url, body)
            if k % 9 == 0:
                req = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example")], is_http_request=True)
                w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=req))
                w.write_record(w.create_warc_record(
                    url, "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\r\n"),
                    warc_content_type="application/warc-fields",
                ))
        if not extras:
            return
        response("https://cuisine.example/tarte", FRENCH.encode("cp1252"),
                 content_type="text/html; charset=windows-1252")
        response("https://cuisine.example/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(64),
                 payload_type="image/png", content_type="image/png")
        response("https://cuisine.example/untyped", FRENCH.encode("utf-8"), payload_type=None, content_type=None)
        w.write_record(w.create_warc_record(
            "dns:cuisine.example", "response", payload=io.BytesIO(b"20240506070809\ncuisine.example. 300 IN A 192.0.2.1\n"),
            warc_content_type="text/dns",
        ))


def oracle(warc, out):
    import trafilatura.deduplication as dedup
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers.warc import process_record
    from warcio.archiveiterator import ArchiveIterator

    extractor = Trafilatura(favour_precision=True, deduplicate=True)
    documents = []
    with open(warc, "rb") as f:
        for record in ArchiveIterator(f):
            doc = process_record(record)
            if doc is None:
                continue
            dedup.LRU_TEST.clear()
            text = extractor.extract(doc["text"])
            documents.append({
                "id": doc["id"], "url": doc["url"], "date": doc["date"],
                "html_chars": len(doc["text"]), "extracted": text or None,
            })
    with open(out, "w") as f:
        json.dump({"reader": "datatrove 0.10.1 WarcReader", "extractor": "trafilatura "
                   + __import__("trafilatura").__version__ + " via datatrove Trafilatura",
                   "documents": documents}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return documents


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=48)
    ap.add_argument("--out", default=os.path.join(FIXTURE_DIR, "pages.warc.gz"))
    ap.add_argument("--oracle", default=None)
    ap.add_argument("--parts", type=int, default=0)
    args = ap.parse_args()
    if args.parts:
        os.makedirs(args.out, exist_ok=True)
        chosen = pages(args.pages)
        for k in range(args.parts):
            write(os.path.join(args.out, f"crawl-{k:02d}.warc.gz"), chosen[k::args.parts], extras=False)
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write(args.out, pages(args.pages))
    target = args.oracle
    if target is None and args.out == os.path.join(FIXTURE_DIR, "pages.warc.gz"):
        target = os.path.join(FIXTURE_DIR, "datatrove.json")
    if target:
        docs = oracle(args.out, target)
        print(f"{args.out}: {len(docs)} documents, "
              f"{sum(d['extracted'] is not None for d in docs)} with text", file=sys.stderr)


if __name__ == "__main__":
    main()
