//! URL filtering: drops a web page by its address, as datatrove's `URLFilter` does in the
//! FineWeb recipe. A page is dropped, for the first rule that holds, when
//! - its registered domain (the label before the public suffix, with the suffix:
//!   `example.co.uk` for `www.example.co.uk`) is on the domain list (`blocked_domain`);
//! - its whole host name is on the domain list (`blocked_subdomain`);
//! - the URL itself is on the URL list (`blocked_url`);
//! - one of the URL's words (its runs of ASCII letters and digits) is a banned word
//!   (`banned_word`);
//! - at least `soft_word_threshold` distinct words of the URL are soft-banned words
//!   (`soft_banned_words`);
//! - a banned subword occurs anywhere in the URL once everything but letters and digits is
//!   taken out (`banned_subword`).
//!
//! Public suffixes are the ICANN section of Mozilla's Public Suffix List (the snapshot that
//! tldextract 5.4 ships, bundled here), as tldextract decides them by default: a host
//! without a listed suffix (an IP address, `localhost`) has no registered domain.
//!
//! Two differences from datatrove, both where its comparison depends on letter case: host
//! names are compared in lower case (DNS names are case-insensitive; datatrove keeps
//! `Example.COM` when `example.com` is listed), and so are the URL's words (datatrove
//! lower-cases its word lists but not the URL's words, so `CASINO` passes a ban on `casino`,
//! while its subword rule already compares in lower case).

use aho_corasick::AhoCorasick;
use publicsuffix::{IcannList, Psl};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The settings of the URL filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlFiltering {
    /// The string column holding each page's URL (a dotted path for a nested field:
    /// `metadata.url`).
    #[serde(default = "default_url_column")]
    pub url_column: String,
    /// A folder of lists in datatrove's layout: `domains` and `urls` (one entry per line,
    /// from its blocklist archive), `banned_words.txt`, `banned_subwords.txt` and
    /// `soft_banned_words.txt`. A file that is not there is an empty list; a folder with
    /// none of them is an error. `scripts/fetch-assets.sh` fetches datatrove's lists.
    #[serde(default)]
    pub lists_dir: Option<PathBuf>,
    /// Domains (registered domains or whole host names) to block besides the folder's.
    #[serde(default)]
    pub extra_domains: Vec<String>,
    /// URLs to block besides the folder's, compared as written.
    #[serde(default)]
    pub extra_urls: Vec<String>,
    /// Words that drop a page when one is a word of its URL.
    #[serde(default)]
    pub banned_words: Vec<String>,
    /// Strings that drop a page when one occurs in its URL's letters and digits.
    #[serde(default)]
    pub banned_subwords: Vec<String>,
    /// Words that drop a page when `soft_word_threshold` of them are words of its URL.
    #[serde(default)]
    pub soft_banned_words: Vec<String>,
    /// How many distinct soft-banned words drop a page (datatrove: 2; at least 1).
    #[serde(default = "default_soft_word_threshold")]
    pub soft_word_threshold: usize,
}

fn default_url_column() -> String {
    "url".into()
}

fn default_soft_word_threshold() -> usize {
    2
}

/// Why a list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum UrlListError {
    /// A list file could not be read.
    #[error("cannot read URL-filter list {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// `lists_dir` is not a folder.
    #[error("URL-filter lists_dir {0} is not a folder")]
    NotAFolder(PathBuf),
    /// `lists_dir` holds none of the list files.
    #[error("URL-filter lists_dir {0} holds none of domains, urls, banned_words.txt, banned_subwords.txt, soft_banned_words.txt")]
    EmptyFolder(PathBuf),
}

/// The ICANN public suffixes of the bundled list.
static SUFFIXES: LazyLock<IcannList> = LazyLock::new(|| {
    include_str!("../data/public_suffix_list.dat")
        .parse()
        .expect("the bundled public suffix list parses")
});

/// A URL's host name split at its public suffix.
#[derive(Debug, PartialEq, Eq)]
struct HostParts {
    /// The host name in lower case, without port, user information or a trailing dot.
    host: String,
    /// The label before the public suffix with the suffix (`example.co.uk`), when the host
    /// has a listed suffix and a label before it.
    registered_domain: Option<String>,
}

/// The host of `url` (the part after the scheme's `//`, before any path, query, fragment
/// or port, after any `user@`), lower-cased and split at its public suffix. A string with
/// no scheme is read as starting with its host.
fn host_parts(url: &str) -> HostParts {
    let url = url.trim();
    let after_scheme = match url.find("//") {
        Some(0) => &url[2..],
        Some(at)
            if at >= 2
                && url.as_bytes()[at - 1] == b':'
                && url[..at - 1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            &url[at + 2..]
        }
        _ => url,
    };
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let after_user = authority.rsplit('@').next().unwrap_or_default();
    let host = if after_user.starts_with('[') && after_user.contains(']') {
        // An IPv6 literal: up to its closing bracket.
        &after_user[..=after_user.find(']').unwrap_or_default()]
    } else {
        after_user.split(':').next().unwrap_or_default().trim()
    };
    let host = host
        .trim_end_matches(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}'])
        .to_lowercase();
    let registered_domain = registered_domain(&host);
    HostParts {
        host,
        registered_domain,
    }
}

/// `label.suffix` of a lower-case host, when it has an ICANN suffix and a label before it.
fn registered_domain(host: &str) -> Option<String> {
    if host.is_empty() || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let domain = SUFFIXES.domain(host.as_bytes())?;
    // An unlisted top-level label is a suffix only by the list's default rule, which
    // tldextract does not apply.
    domain.suffix().typ()?;
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(String::from)
}

/// The URL's words: its runs of ASCII letters and digits, lower-cased.
fn url_words(url: &str) -> HashSet<String> {
    url.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The URL's ASCII letters and digits, lower-cased (the string banned subwords are sought in).
fn letters_and_digits(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Many strings in one buffer, sorted, for exact lookup at 8 bytes an entry on top of the
/// text (datatrove's domain list has some 5 million lines).
struct SortedStrings {
    text: String,
    spans: Vec<(u32, u32)>,
}

impl SortedStrings {
    /// The distinct non-empty lines of `text` that do not start with `#`, trimmed, in lower
    /// case when `lower` is set.
    fn from_lines(mut text: String, lower: bool) -> Self {
        if lower {
            text = text.to_lowercase();
        }
        assert!(text.len() < u32::MAX as usize, "a list under 4 GB");
        let base = text.as_ptr() as usize;
        let mut spans: Vec<(u32, u32)> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| ((l.as_ptr() as usize - base) as u32, l.len() as u32))
            .collect();
        let get = |&(start, len): &(u32, u32)| &text[start as usize..(start + len) as usize];
        spans.par_sort_unstable_by(|a, b| get(a).cmp(get(b)));
        spans.dedup_by(|a, b| get(a) == get(b));
        SortedStrings { text, spans }
    }

    fn get(&self, (start, len): (u32, u32)) -> &str {
        &self.text[start as usize..(start + len) as usize]
    }

    fn contains(&self, key: &str) -> bool {
        self.spans
            .binary_search_by(|&span| self.get(span).cmp(key))
            .is_ok()
    }

    fn len(&self) -> usize {
        self.spans.len()
    }
}

/// The URL filter with its lists loaded.
pub struct UrlFilter {
    domains: SortedStrings,
    urls: HashSet<String>,
    banned_words: HashSet<String>,
    soft_banned_words: HashSet<String>,
    banned_subwords: Option<AhoCorasick>,
    soft_word_threshold: usize,
}

/// A list file of the lists folder, or nothing when it is not there.
fn read_list(dir: &Path, name: &str) -> Result<Option<String>, UrlListError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UrlListError::Read { path, source }),
    }
}

/// Words of a word list as datatrove normalises them: lower case, letters and digits only.
fn word_set(listed: Option<&str>, extra: &[String]) -> HashSet<String> {
    listed
        .into_iter()
        .flat_map(str::lines)
        .filter(|l| !l.starts_with('#'))
        .chain(extra.iter().map(String::as_str))
        .map(letters_and_digits)
        .filter(|w| !w.is_empty())
        .collect()
}

impl UrlFilter {
    /// The filter of `settings`, its lists read from `lists_dir` and the inline entries.
    pub fn new(settings: &UrlFiltering) -> Result<Self, UrlListError> {
        let mut files: [Option<String>; 5] = Default::default();
        if let Some(dir) = &settings.lists_dir {
            if !dir.is_dir() {
                return Err(UrlListError::NotAFolder(dir.clone()));
            }
            let names = [
                "domains",
                "urls",
                "banned_words.txt",
                "banned_subwords.txt",
                "soft_banned_words.txt",
            ];
            for (slot, name) in files.iter_mut().zip(names) {
                *slot = read_list(dir, name)?;
            }
            if files.iter().all(Option::is_none) {
                return Err(UrlListError::EmptyFolder(dir.clone()));
            }
        }
        let [domains, urls, banned, subwords, soft] = files;
        let mut domain_lines = domains.unwrap_or_default();
        for extra in &settings.extra_domains {
            domain_lines.push('\n');
            domain_lines.push_str(extra);
        }
        let urls: HashSet<String> = urls
            .as_deref()
            .into_iter()
            .flat_map(str::lines)
            .filter(|l| !l.starts_with('#'))
            .chain(settings.extra_urls.iter().map(String::as_str))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let mut subwords: Vec<String> = word_set(subwords.as_deref(), &settings.banned_subwords)
            .into_iter()
            .collect();
        // Any order finds whether one occurs; sorted so the automaton is the same every run.
        subwords.sort_unstable();
        Ok(UrlFilter {
            domains: SortedStrings::from_lines(domain_lines, true),
            urls,
            banned_words: word_set(banned.as_deref(), &settings.banned_words),
            soft_banned_words: word_set(soft.as_deref(), &settings.soft_banned_words),
            banned_subwords: (!subwords.is_empty())
                .then(|| AhoCorasick::new(&subwords).expect("plain strings build an automaton")),
            soft_word_threshold: settings.soft_word_threshold,
        })
    }

    /// Entries loaded: domains, URLs, banned words, banned subwords, soft-banned words.
    pub fn list_sizes(&self) -> [usize; 5] {
        [
            self.domains.len(),
            self.urls.len(),
            self.banned_words.len(),
            self.banned_subwords
                .as_ref()
                .map_or(0, AhoCorasick::patterns_len),
            self.soft_banned_words.len(),
        ]
    }

    /// Why `url` is dropped (the first rule that holds, by its reason name), or `None`.
    pub fn check(&self, url: &str) -> Option<&'static str> {
        let parts = host_parts(url);
        if parts
            .registered_domain
            .as_deref()
            .is_some_and(|d| self.domains.contains(d))
        {
            return Some("blocked_domain");
        }
        // tldextract's fully qualified name exists only for hosts with a registered domain.
        if parts.registered_domain.is_some() && self.domains.contains(&parts.host) {
            return Some("blocked_subdomain");
        }
        if self.urls.contains(url) {
            return Some("blocked_url");
        }
        let words = url_words(url);
        if words.iter().any(|w| self.banned_words.contains(w)) {
            return Some("banned_word");
        }
        let soft = words
            .iter()
            .filter(|w| self.soft_banned_words.contains(*w))
            .count();
        if soft >= self.soft_word_threshold {
            return Some("soft_banned_words");
        }
        if let Some(automaton) = &self.banned_subwords {
            if automaton.is_match(&letters_and_digits(url)) {
                return Some("banned_subword");
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> UrlFiltering {
        UrlFiltering {
            url_column: "url".into(),
            lists_dir: None,
            extra_domains: vec!["blocked.co.uk".into(), "Shop.Other.org".into()],
            extra_urls: vec!["https://example.org/Exact?page=1".into()],
            banned_words: vec!["casino".into()],
            banned_subwords: vec!["jack-pot".into()],
            soft_banned_words: vec!["free".into(), "bonus".into(), "cheap".into()],
            soft_word_threshold: 2,
        }
    }

    /// Values tldextract 5.4 gives (registered domain, fully qualified name) for these URLs,
    /// its bundled snapshot of the list, hosts lower-cased.
    #[test]
    fn hosts_split_at_their_public_suffix_as_tldextract_splits_them() {
        let cases = [
            (
                "https://WWW.Example.CO.uk:8080/a/B?x=1",
                "www.example.co.uk",
                Some("example.co.uk"),
            ),
            ("http://192.168.0.1/x", "192.168.0.1", None),
            (
                "https://user:pw@sub.blog.github.io/x",
                "sub.blog.github.io",
                Some("github.io"),
            ),
            ("http://localhost/x", "localhost", None),
            (
                "https://xn--bcher-kva.example/",
                "xn--bcher-kva.example",
                None,
            ),
            ("https://bücher.de/a", "bücher.de", Some("bücher.de")),
            (
                "https://a.b.c.appspot.com/",
                "a.b.c.appspot.com",
                Some("appspot.com"),
            ),
            ("https://example.com./x", "example.com", Some("example.com")),
            ("http://[::1]:80/x", "[::1]", None),
            ("example.net/path", "example.net", Some("example.net")),
            (
                "//cdn.example.org/x.js",
                "cdn.example.org",
                Some("example.org"),
            ),
        ];
        for (url, host, registered) in cases {
            let parts = host_parts(url);
            assert_eq!(parts.host, host, "{url}");
            assert_eq!(parts.registered_domain.as_deref(), registered, "{url}");
        }
    }

    #[test]
    fn each_rule_drops_with_its_reason_in_datatroves_order() {
        let filter = UrlFilter::new(&settings()).unwrap();
        let cases = [
            ("https://www.blocked.co.uk/a", Some("blocked_domain")),
            ("https://BLOCKED.co.uk", Some("blocked_domain")),
            ("https://shop.other.org/", Some("blocked_subdomain")),
            ("https://other.org/", None),
            ("https://example.org/Exact?page=1", Some("blocked_url")),
            ("https://example.org/exact?page=1", None),
            ("https://example.org/online-casino/", Some("banned_word")),
            ("https://example.org/ONLINE-CASINO/", Some("banned_word")),
            ("https://example.org/casinos/", None),
            ("https://example.org/free/bonus", Some("soft_banned_words")),
            ("https://example.org/free/free", None),
            ("https://example.org/bigjackpotnow", Some("banned_subword")),
            ("https://example.org/jack/pot", Some("banned_subword")),
            // A blocked domain wins over a banned word in the same URL.
            ("https://blocked.co.uk/casino", Some("blocked_domain")),
        ];
        for (url, reason) in cases {
            assert_eq!(filter.check(url), reason, "{url}");
        }
    }

    #[test]
    fn a_lists_folder_is_read_in_datatroves_layout() {
        let dir = std::env::temp_dir().join(format!("gleaner-url-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("domains"), "# comment\nbad.com\n\nBAD.example\n").unwrap();
        std::fs::write(dir.join("banned_words.txt"), "Foo-Bar\n").unwrap();
        let filter = UrlFilter::new(&UrlFiltering {
            lists_dir: Some(dir.clone()),
            ..settings()
        })
        .unwrap();
        // 2 from the file and the 2 extra domains; the word list normalised to `foobar`.
        assert_eq!(filter.list_sizes(), [4, 1, 2, 1, 3]);
        assert_eq!(filter.check("http://www.bad.com/"), Some("blocked_domain"));
        // `.example` is no listed suffix: the host has no registered domain to look up.
        assert_eq!(filter.check("http://www.bad.example/"), None);
        assert_eq!(filter.check("http://x.foobar.com/"), Some("banned_word"));
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = UrlFilter::new(&UrlFiltering {
            lists_dir: Some(dir.clone()),
            ..settings()
        });
        let message = missing.err().expect("no folder").to_string();
        assert!(
            message.contains(&dir.display().to_string()) && message.contains("not a folder"),
            "{message}"
        );
        std::fs::create_dir_all(&dir).unwrap();
        let empty = UrlFilter::new(&UrlFiltering {
            lists_dir: Some(dir.clone()),
            ..settings()
        });
        let message = empty.err().expect("a folder without lists").to_string();
        assert!(message.contains("holds none of"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
