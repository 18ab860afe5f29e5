#!/usr/bin/env python3
"""Writes tests/fixtures/url_filter: pages with URLs, small block lists in datatrove's
layout, and datatrove's URLFilter decision for each page (the oracle of the url_filter
compat test).

Run with a Python that has datatrove 0.10.1, tldextract 5.4 and pyahocorasick:
    .assets/bench/venv/bin/python scripts/make_url_filter_fixture.py
The URLs are the 44 real ones of tests/fixtures/warc plus made-up ones that exercise each
rule and the URL parsing (ports, user information, multi-label and private suffixes, IP
addresses, upper case). The lists hold made-up neutral words and domains, not datatrove's
own lists (scripts/fetch-assets.sh fetches those for real runs). tldextract reads its bundled
public suffix list (the snapshot gleaner bundles), not the live one.
"""
import json
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters import URLFilter
from tldextract import TLDExtract

root = Path(__file__).resolve().parent.parent
out = root / "tests/fixtures/url_filter"
lists = out / "lists"
lists.mkdir(parents=True, exist_ok=True)

files = {
    "domains": ["# blocked domains, one per line", "blocked-casino.com", "blocked.co.uk",
                "shop.other.org", "bad.github.io", "example-bets.net", "10.0.0.1"],
    "urls": ["https://example.org/exact/page?id=1", "http://news.example.com/2024/story.html"],
    "banned_words.txt": ["casino", "lottery", "x-bet"],
    "banned_subwords.txt": ["jackpot", "gambl"],
    "soft_banned_words.txt": ["free", "bonus", "cheap", "win"],
}
for name, lines in files.items():
    (lists / name).write_text("\n".join(lines) + "\n")

warc = json.loads((root / "tests/fixtures/warc/datatrove.json").read_text())
urls = [d["url"] for d in warc["documents"]]
urls += [
    # Registered domain on the list, with and without subdomains, port and user information.
    "https://blocked-casino.com/", "http://www.blocked-casino.com:8080/a/b",
    "https://user:secret@cdn.blocked-casino.com/x.js", "https://blocked.co.uk/news",
    "https://deep.sub.blocked.co.uk/?q=1", "https://example-bets.net#top",
    # A whole host name on the list; its parent domain is not.
    "https://shop.other.org/cart", "https://other.org/", "https://www.other.org/shop",
    # A private suffix: tldextract's default (ICANN only) makes github.io the registered domain.
    "https://bad.github.io/page", "https://good.github.io/page",
    # An IP address has no registered domain, so the domain list does not apply.
    "http://10.0.0.1/admin", "http://192.168.1.20:8000/casino",
    # Exact URLs (a trailing character makes another URL).
    "https://example.org/exact/page?id=1", "https://example.org/exact/page?id=2",
    "http://news.example.com/2024/story.html",
    # Banned words as words of the URL, and as parts of longer words (no match).
    "https://example.org/online-casino/rules", "https://casino.example.net/",
    "https://example.org/casinos-of-europe", "https://example.org/x-bet/odds",
    "https://example.org/xbet/odds", "https://example.org/lottery_results.html",
    # Soft words: two distinct ones drop a page, one or a repeated one does not.
    "https://example.org/free-shipping", "https://example.org/free/bonus/codes",
    "https://example.org/win-win", "https://shop.example.com/cheap-free-stuff",
    # Subwords anywhere in the letters and digits.
    "https://example.org/big-jackpot-now", "https://example.org/jack/pot",
    "https://gambling.example.com/", "https://example.org/?ref=GAMBLE",
    # URLs with no scheme, a protocol-relative one, and odd hosts.
    "example.net/free/win", "//cdn.example.org/app.js", "http://localhost:3000/casino-dev",
    "https://example.com./trailing-dot", "https://xn--bcher-kva.de/buch",
    # Upper case: datatrove compares host names and URL words as written (see `differs`).
    "https://WWW.BLOCKED-CASINO.COM/", "https://example.org/ONLINE-CASINO",
]
differs = {"https://WWW.BLOCKED-CASINO.COM/": "blocked_domain",
           "https://example.org/ONLINE-CASINO": "banned_word"}

url_filter = URLFilter(
    use_integrated_lists=False,
    extra_domains=(lists / "domains").read_text().splitlines(),
    extra_urls=(lists / "urls").read_text().splitlines(),
    banned_words=(lists / "banned_words.txt").read_text().splitlines(),
    banned_subwords=(lists / "banned_subwords.txt").read_text().splitlines(),
    soft_banned_words=(lists / "soft_banned_words.txt").read_text().splitlines(),
)
url_filter.tldextractor = TLDExtract(suffix_list_urls=())
# datatrove's reasons by gleaner's names.
names = {"domain": "blocked_domain", "subdomain": "blocked_subdomain", "url": "blocked_url",
         "hard_blacklisted": "banned_word", "soft_blacklisted": "soft_banned_words",
         "blacklisted_subword": "banned_subword"}
pages, decisions = [], []
for i, url in enumerate(urls):
    doc_id = f"page-{i:03d}"
    verdict = url_filter.filter(Document(text=f"page {i}", id=doc_id, metadata={"url": url}))
    reason = None if verdict is True else names[verdict[1]]
    pages.append({"id": doc_id, "text": f"A page at {url}", "url": url})
    decisions.append({"id": doc_id, "url": url, "datatrove": reason,
                      "gleaner": differs.get(url, reason)})
(out / "pages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pages))
(out / "datatrove.json").write_text(json.dumps(
    {"_made_by": "scripts/make_url_filter_fixture.py (datatrove 0.10.1 URLFilter, tldextract "
                 "5.4 with its bundled suffix list)", "pages": decisions}, indent=1) + "\n")
print(sum(d["datatrove"] is not None for d in decisions), "of", len(decisions), "dropped")
