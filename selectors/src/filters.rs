//! Heuristic quality filters in the style of Gopher (Rae et al. 2021, appendix A) and C4.
//!
//! A filter looks at one document's text and either keeps it or names the rule it failed.
//! Definitions used here (ours, stated so tests can check them by hand):
//! - a *word* is a whitespace token containing an alphanumeric character ([`crate::text::words`]);
//! - word characters are the characters (Unicode scalar values) of words;
//! - *line* and *paragraph* duplicates count every occurrence after the first.

use crate::text::words;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A per-document quality rule set.
pub trait DocumentFilter: Send + Sync {
    /// Stage name used in stats (e.g. `gopher_quality`).
    fn name(&self) -> &str;
    /// `None` keeps the document; `Some(reason)` drops it, naming the failed rule.
    fn check(&self, text: &str) -> Option<String>;
}

/// The most common English function words, used by the stop-word rule.
pub const DEFAULT_STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

/// Gopher quality rules (Rae et al. 2021, as datatrove's `GopherQualityFilter` computes them):
/// length, mean word length, `#` and ellipsis ratios, bullet and ellipsis lines, alphabetic
/// words and stop words. Words are whitespace tokens (datatrove uses spaCy's tokenizer); a
/// token with no alphanumeric character is a symbol. A threshold left out of the config keeps
/// its default; to switch a rule off, set a value it can never fail (`min_words = 0`,
/// `max_symbol_word_ratio = 1e9`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherQuality {
    /// Fewest non-symbol words a document may have.
    pub min_words: Option<usize>,
    /// Most non-symbol words a document may have.
    pub max_words: Option<usize>,
    /// Lowest mean length (characters) of the non-symbol words.
    pub min_mean_word_length: Option<f64>,
    /// Highest mean length of the non-symbol words.
    pub max_mean_word_length: Option<f64>,
    /// Highest ratio of `#` characters to words, and separately of ellipses (`...`, `…`) to
    /// words.
    pub max_symbol_word_ratio: Option<f64>,
    /// Highest fraction of lines whose first non-space character is a bullet.
    pub max_bullet_lines_ratio: Option<f64>,
    /// The bullet characters (the paper's and datatrove's: `•` and `-`).
    pub bullets: Vec<char>,
    /// Highest fraction of lines ending (before trailing spaces) with an ellipsis.
    pub max_ellipsis_lines_ratio: Option<f64>,
    /// Lowest fraction of words containing an alphabetic character.
    pub min_alpha_words_ratio: Option<f64>,
    /// Fewest distinct stop words (from `stop_words`) the document must contain.
    pub min_stop_words: Option<usize>,
    /// Stop-word list, matched case-sensitively against words with surrounding punctuation
    /// removed (as datatrove matches spaCy tokens).
    pub stop_words: Vec<String>,
}

impl Default for GopherQuality {
    fn default() -> Self {
        GopherQuality {
            min_words: Some(50),
            max_words: Some(100_000),
            min_mean_word_length: Some(3.0),
            max_mean_word_length: Some(10.0),
            max_symbol_word_ratio: Some(0.1),
            max_bullet_lines_ratio: Some(0.9),
            bullets: vec!['•', '-'],
            max_ellipsis_lines_ratio: Some(0.3),
            min_alpha_words_ratio: Some(0.8),
            min_stop_words: Some(2),
            stop_words: DEFAULT_STOP_WORDS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

fn ends_with_ellipsis(line: &str) -> bool {
    let l = line.trim_end();
    l.ends_with("...") || l.ends_with('…')
}

/// `count / total`, or 0 when there is nothing to count (a rule on a ratio cannot fail an
/// empty document; the length rule is the one that sees it).
fn ratio(count: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        count as f64 / total as f64
    }
}

impl DocumentFilter for GopherQuality {
    fn name(&self) -> &str {
        "gopher_quality"
    }

    fn check(&self, text: &str) -> Option<String> {
        let fail = |reason: &str| Some(reason.to_string());
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let n_tokens = tokens.len();
        let ws: Vec<&str> = words(text).collect();
        let n = ws.len();
        if self.min_words.is_some_and(|m| n < m) {
            return fail("too_few_words");
        }
        if self.max_words.is_some_and(|m| n > m) {
            return fail("too_many_words");
        }
        if n > 0 {
            let chars: usize = ws.iter().map(|w| w.chars().count()).sum();
            let mean = chars as f64 / n as f64;
            if self.min_mean_word_length.is_some_and(|m| mean < m) {
                return fail("short_mean_word_length");
            }
            if self.max_mean_word_length.is_some_and(|m| mean > m) {
                return fail("long_mean_word_length");
            }
        }
        if let Some(max) = self.max_symbol_word_ratio {
            if ratio(text.matches('#').count(), n_tokens) > max {
                return fail("high_hash_ratio");
            }
            let ellipses = text.matches("...").count() + text.matches('…').count();
            if ratio(ellipses, n_tokens) > max {
                return fail("high_ellipsis_ratio");
            }
        }
        let ls: Vec<&str> = text.lines().collect();
        if let Some(max) = self.max_bullet_lines_ratio {
            let bullets = ls
                .iter()
                .filter(|l| l.trim_start().starts_with(self.bullets.as_slice()))
                .count();
            if ratio(bullets, ls.len()) > max {
                return fail("many_bullet_lines");
            }
        }
        if let Some(max) = self.max_ellipsis_lines_ratio {
            let ending = ls.iter().filter(|l| ends_with_ellipsis(l)).count();
            if ratio(ending, ls.len()) > max {
                return fail("many_ellipsis_lines");
            }
        }
        if let Some(min) = self.min_alpha_words_ratio {
            let alpha = tokens
                .iter()
                .filter(|t| t.chars().any(char::is_alphabetic))
                .count();
            if n_tokens > 0 && ratio(alpha, n_tokens) < min {
                return fail("few_alpha_words");
            }
        }
        if let Some(min) = self.min_stop_words {
            let mut found: Vec<&str> = tokens
                .iter()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|w| self.stop_words.iter().any(|s| s == w))
                .collect();
            found.sort_unstable();
            found.dedup();
            if found.len() < min {
                return fail("few_stop_words");
            }
        }
        None
    }
}

/// Gopher repetition rules (as datatrove's `GopherRepetitionFilter` computes them): repeated
/// lines and paragraphs, the most frequent word n-grams and the text inside repeated n-grams.
/// Every character fraction is over the whole text's characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherRepetition {
    /// Highest fraction of lines that repeat an earlier line.
    pub max_dup_line_frac: Option<f64>,
    /// Highest fraction of paragraphs that repeat an earlier paragraph.
    pub max_dup_para_frac: Option<f64>,
    /// Highest fraction of the text's characters inside lines that repeat an earlier line.
    pub max_dup_line_char_frac: Option<f64>,
    /// Highest fraction of the text's characters inside repeating paragraphs.
    pub max_dup_para_char_frac: Option<f64>,
    /// `[n, max]` pairs: highest fraction of the text's characters in the occurrences of the
    /// most frequent n-gram (its words joined by single spaces, times its count).
    pub top_ngram_max_frac: Vec<(usize, f64)>,
    /// `[n, max]` pairs: highest fraction of the text's characters in repeated n-grams: words
    /// are scanned left to right, an n-gram seen before counts its characters (spaces
    /// excluded) and the scan jumps past it; first occurrences do not count.
    pub dup_ngram_max_frac: Vec<(usize, f64)>,
}

impl Default for GopherRepetition {
    fn default() -> Self {
        GopherRepetition {
            max_dup_line_frac: Some(0.3),
            max_dup_para_frac: Some(0.3),
            max_dup_line_char_frac: Some(0.2),
            max_dup_para_char_frac: Some(0.2),
            top_ngram_max_frac: vec![(2, 0.20), (3, 0.18), (4, 0.16)],
            dup_ngram_max_frac: vec![
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ],
        }
    }
}

/// (items repeating an earlier item, characters in those repeats).
pub fn duplicates(items: &[&str]) -> (usize, usize) {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let (mut dup, mut dup_chars) = (0usize, 0usize);
    for item in items {
        if !seen.insert(*item) {
            dup += 1;
            dup_chars += item.chars().count();
        }
    }
    (dup, dup_chars)
}

/// Characters in the occurrences of the most frequent word n-gram (its words joined by single
/// spaces, times its count; overlapping occurrences count; ties go to the first to occur).
pub fn top_ngram_chars(ws: &[&str], n: usize) -> usize {
    if n == 0 || ws.len() < n {
        return 0;
    }
    let mut counts: HashMap<&[&str], (usize, usize)> = HashMap::new();
    for (i, g) in ws.windows(n).enumerate() {
        counts.entry(g).or_insert((0, i)).0 += 1;
    }
    let (gram, (count, _)) = counts
        .iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then_with(|| b.1 .1.cmp(&a.1 .1)))
        .expect("at least one n-gram");
    let chars: usize = gram.iter().map(|w| w.chars().count()).sum::<usize>() + n - 1;
    chars * count
}

/// Characters (spaces excluded) of repeated word n-grams, scanning left to right: an n-gram
/// seen before adds its characters and the scan jumps past it; a new one is remembered and
/// the scan moves one word.
pub fn repeated_ngram_chars(ws: &[&str], n: usize) -> usize {
    if n == 0 || ws.len() < n {
        return 0;
    }
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let (mut chars, mut i) = (0usize, 0usize);
    while i + n <= ws.len() {
        let gram: String = ws[i..i + n].concat();
        if seen.contains(&gram) {
            chars += gram.chars().count();
            i += n;
        } else {
            seen.insert(gram);
            i += 1;
        }
    }
    chars
}

/// Paragraphs as datatrove splits them: the trimmed text cut at runs of two or more `\n`.
fn paragraph_split(text: &str) -> Vec<&str> {
    let t = text.trim();
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = t.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let run_start = i;
            while i < bytes.len() && bytes[i] == b'\n' {
                i += 1;
            }
            if i - run_start >= 2 {
                out.push(&t[start..run_start]);
                start = i;
            }
        } else {
            i += 1;
        }
    }
    out.push(&t[start..]);
    out
}

/// Lines as datatrove splits them: the text cut at runs of `\n` (untrimmed).
fn line_split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            out.push(&text[start..i]);
            while i < bytes.len() && bytes[i] == b'\n' {
                i += 1;
            }
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&text[start..]);
    out
}

impl DocumentFilter for GopherRepetition {
    fn name(&self) -> &str {
        "gopher_repetition"
    }

    fn check(&self, text: &str) -> Option<String> {
        let text_chars = text.chars().count();
        if text_chars == 0 {
            return None;
        }
        let frac = |chars: usize| chars as f64 / text_chars as f64;
        let ps = paragraph_split(text);
        let (dup_paras, para_chars) = duplicates(&ps);
        if self
            .max_dup_para_frac
            .is_some_and(|m| ratio(dup_paras, ps.len()) > m)
        {
            return Some("dup_para_frac".into());
        }
        if self
            .max_dup_para_char_frac
            .is_some_and(|m| frac(para_chars) > m)
        {
            return Some("dup_para_char_frac".into());
        }
        let ls = line_split(text);
        let (dup_lines, line_chars) = duplicates(&ls);
        if self
            .max_dup_line_frac
            .is_some_and(|m| ratio(dup_lines, ls.len()) > m)
        {
            return Some("dup_line_frac".into());
        }
        if self
            .max_dup_line_char_frac
            .is_some_and(|m| frac(line_chars) > m)
        {
            return Some("dup_line_char_frac".into());
        }
        let ws: Vec<&str> = text.split_whitespace().collect();
        for &(n, max) in &self.top_ngram_max_frac {
            if frac(top_ngram_chars(&ws, n)) > max {
                return Some(format!("top_{n}gram"));
            }
        }
        for &(n, max) in &self.dup_ngram_max_frac {
            if frac(repeated_ngram_chars(&ws, n)) > max {
                return Some(format!("dup_{n}gram"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` distinct 5-letter words with two stop words among them, one line: passes every
    /// quality and repetition rule.
    fn prose(n: usize) -> Vec<String> {
        let mut w: Vec<String> = (0..n).map(|i| format!("w{i:04}")).collect();
        w[0] = "the".into();
        w[1] = "with".into();
        w
    }

    fn join(w: &[String]) -> String {
        w.join(" ")
    }

    #[test]
    fn clean_prose_passes_both_rule_sets() {
        let t = join(&prose(60));
        assert_eq!(GopherQuality::default().check(&t), None);
        assert_eq!(GopherRepetition::default().check(&t), None);
    }

    #[test]
    fn every_quality_rule_passes_at_its_threshold_and_fails_just_past_it() {
        let q = GopherQuality::default();
        let check = |t: &str| q.check(t);
        // Words: 50 pass, 49 fail (symbol tokens do not count).
        assert_eq!(check(&join(&prose(50))), None);
        let mut w = prose(49);
        w.push("--".into());
        assert_eq!(check(&join(&w)).as_deref(), Some("too_few_words"));
        let big = GopherQuality {
            max_words: Some(60),
            ..q.clone()
        };
        assert_eq!(big.check(&join(&prose(60))), None);
        assert_eq!(
            big.check(&join(&prose(61))).as_deref(),
            Some("too_many_words")
        );
        // Mean length over 50 words: "the" + "with" (7 chars), 23 five-letter words (115),
        // 22 one-letter and 3 two-letter words (28): 150 / 50 = 3.0 passes; one two-letter
        // word made one letter gives 2.98 and fails.
        let mut w = prose(25);
        w.extend((0..22).map(|i| char::from(b'a' + i as u8).to_string()));
        w.extend(["xa", "xb", "xc"].map(String::from));
        assert_eq!(check(&join(&w)), None);
        w[49] = "z".into();
        assert_eq!(check(&join(&w)).as_deref(), Some("short_mean_word_length"));
        // `#` ratio over all tokens: 100 tokens with 10 '#' pass (0.1), 11 fail. The '#' are
        // glued to words so the word count stays.
        let hashes = |k: usize| {
            let mut w = prose(100);
            for x in w.iter_mut().skip(2).take(k) {
                x.push('#');
            }
            join(&w)
        };
        assert_eq!(check(&hashes(10)), None);
        assert_eq!(check(&hashes(11)).as_deref(), Some("high_hash_ratio"));
        // Ellipses counted on their own (not summed with '#'): 10 '#' and 10 '...' pass.
        let mut w = prose(100);
        for x in w.iter_mut().skip(2).take(10) {
            x.push('#');
        }
        for x in w.iter_mut().skip(20).take(10) {
            x.push_str("...");
        }
        assert_eq!(check(&join(&w)), None);
        w[40].push('…');
        assert_eq!(check(&join(&w)).as_deref(), Some("high_ellipsis_ratio"));
        // Bullet lines: 9 of 10 lines start with a bullet (0.9) pass, 10 of 10 fail; `*` is
        // not a bullet.
        let lines = |bullets: usize, mark: &str| {
            (0..10)
                .map(|i| {
                    let body = join(&prose(10)[..]).replace("w0", &format!("x{i}"));
                    if i < bullets {
                        format!("  {mark} {body}")
                    } else {
                        body
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(check(&lines(9, "-")), None);
        assert_eq!(check(&lines(10, "•")).as_deref(), Some("many_bullet_lines"));
        assert_eq!(check(&lines(10, "*")), None);
        // Ellipsis lines: 3 of 10 (0.3) pass, 4 fail (trailing spaces ignored).
        let ellipsis_lines = |k: usize| {
            (0..10)
                .map(|i| {
                    let body = join(&prose(10)).replace("w0", &format!("y{i}"));
                    if i < k {
                        format!("{body}…  ")
                    } else {
                        body
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(check(&ellipsis_lines(3)), None);
        assert_eq!(
            check(&ellipsis_lines(4)).as_deref(),
            Some("many_ellipsis_lines")
        );
        // Alphabetic tokens: 80 of 100 (0.8) pass, 79 fail.
        let numeric = |k: usize| {
            let mut w = prose(100);
            for (j, x) in w.iter_mut().skip(100 - k).enumerate() {
                *x = format!("{}", 10_000 + j);
            }
            join(&w)
        };
        assert_eq!(check(&numeric(20)), None);
        assert_eq!(check(&numeric(21)).as_deref(), Some("few_alpha_words"));
        // Stop words: two distinct pass; one fails; "The" (capitalised) is not "the".
        let mut w = prose(60);
        assert_eq!(check(&join(&w)), None);
        w[1] = "w9999".into();
        assert_eq!(check(&join(&w)).as_deref(), Some("few_stop_words"));
        w[1] = "The".into();
        assert_eq!(check(&join(&w)).as_deref(), Some("few_stop_words"));
        w[1] = "(with),".into();
        assert_eq!(check(&join(&w)), None);
    }

    #[test]
    fn ratio_rules_do_not_fail_a_wordless_document() {
        // With the length rule off, a text of symbols passes the ratio rules (no words to
        // divide by) instead of failing them whatever the threshold.
        let q = GopherQuality {
            min_words: None,
            min_stop_words: None,
            ..GopherQuality::default()
        };
        assert_eq!(q.check(""), None);
        let r = GopherRepetition::default();
        assert_eq!(r.check(""), None);
    }

    #[test]
    fn repetition_counts_by_hand() {
        assert_eq!(duplicates(&["aaa", "b", "aaa", "aaa"]), (2, 6));
        // Words x y x y z: "x y" occurs twice -> 2 * len("x y") = 6.
        let ws = ["x", "y", "x", "y", "z"];
        assert_eq!(top_ngram_chars(&ws, 2), 6);
        // A top n-gram seen once still counts its characters once.
        assert_eq!(top_ngram_chars(&ws, 3), 5);
        // Scan: xy (new), yx (new), xy (seen: +2, jump to z) -> 2.
        assert_eq!(repeated_ngram_chars(&ws, 2), 2);
        assert_eq!(repeated_ngram_chars(&ws, 3), 0);
        assert_eq!(repeated_ngram_chars(&["a", "a", "a", "a"], 1), 3);
        assert_eq!(line_split("a\n\nb\n"), ["a", "b", ""]);
        assert_eq!(paragraph_split("\n a\nb\n\n\nc \n"), ["a\nb", "c"]);
    }

    #[test]
    fn every_repetition_rule_passes_at_its_threshold_and_fails_just_past_it() {
        let only = |f: fn(&mut GopherRepetition)| {
            let mut r = GopherRepetition {
                max_dup_line_frac: None,
                max_dup_para_frac: None,
                max_dup_line_char_frac: None,
                max_dup_para_char_frac: None,
                top_ngram_max_frac: Vec::new(),
                dup_ngram_max_frac: Vec::new(),
            };
            f(&mut r);
            r
        };
        // Lines: 10 lines, 3 repeats (0.3) pass, 4 fail.
        let r = only(|r| r.max_dup_line_frac = Some(0.3));
        let text = |dups: usize| {
            (0..10)
                .map(|i| {
                    if i < dups {
                        "same".to_string()
                    } else {
                        format!("line{i}")
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        // `dups` copies of "same" make dups - 1 repeats.
        assert_eq!(r.check(&text(4)), None);
        assert_eq!(r.check(&text(5)).as_deref(), Some("dup_line_frac"));
        // Line characters over the whole text: 10 chars of repeats in a 50-char text (0.2).
        let r = only(|r| r.max_dup_line_char_frac = Some(0.2));
        let t = format!("abcdefghij\nabcdefghij\n{}", "k".repeat(28));
        assert_eq!(t.chars().count(), 50);
        assert_eq!(r.check(&t), None);
        let t = format!("abcdefghij\nabcdefghij\n{}", "k".repeat(27));
        assert_eq!(r.check(&t).as_deref(), Some("dup_line_char_frac"));
        // Paragraphs: the same with blank lines between.
        let r = only(|r| r.max_dup_para_frac = Some(0.3));
        let paras = |dups: usize| text(dups).replace('\n', "\n\n");
        assert_eq!(r.check(&paras(4)), None);
        assert_eq!(r.check(&paras(5)).as_deref(), Some("dup_para_frac"));
        // Top 2-gram: "ab cd" (5 chars) x 4 = 20 of 100 chars (0.2) passes; with one filler
        // character fewer (20 of 99) it fails.
        let r = only(|r| r.top_ngram_max_frac = vec![(2, 0.2)]);
        let top = |filler: usize| {
            let mut t = "ab cd ab cd ab cd ab cd".to_string(); // 23 chars, "ab cd" 4 times
            for i in 0..8 {
                t.push_str(&format!(" q{i}"));
            }
            t.push(' ');
            t.push_str(&"z".repeat(filler));
            t
        };
        assert_eq!(top(52).chars().count(), 100);
        assert_eq!(r.check(&top(52)), None);
        assert_eq!(r.check(&top(51)).as_deref(), Some("top_2gram"));
        // Repeated 5-grams: "a b c d e" twice: the second occurrence counts 5 characters.
        let r = only(|r| r.dup_ngram_max_frac = vec![(5, 0.15)]);
        let rep = |filler: usize| format!("a b c d e a b c d e {}", "y".repeat(filler));
        // 20 chars + filler; threshold 0.15: 5/33.3 -> filler 14 gives 5/34 = 0.147 (pass),
        // filler 13 gives 5/33 = 0.1515 (fail).
        assert_eq!(r.check(&rep(14)), None);
        assert_eq!(r.check(&rep(13)).as_deref(), Some("dup_5gram"));
    }
}
