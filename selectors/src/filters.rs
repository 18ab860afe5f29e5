//! Heuristic quality filters in the style of Gopher (Rae et al. 2021, appendix A) and C4.
//!
//! A filter looks at one document's text and either keeps it or names the rule it failed.
//! Definitions used here (ours, stated so tests can check them by hand):
//! - a *word* is a whitespace token containing an alphanumeric character ([`crate::text::words`]);
//! - word characters are the characters (Unicode scalar values) of words;
//! - *line* and *paragraph* duplicates count every occurrence after the first.

use crate::text::{lines, paragraphs, words};
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

/// Gopher quality rules: length, mean word length, symbols, bullets, ellipses, alphabetic
/// words and stop words. A threshold left out of the config keeps its default; to switch a
/// rule off, set a value it can never fail (`min_words = 0`, `max_symbol_word_ratio = 1e9`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherQuality {
    /// Fewest words a document may have.
    pub min_words: Option<usize>,
    /// Most words a document may have.
    pub max_words: Option<usize>,
    /// Lowest mean word length (characters).
    pub min_mean_word_length: Option<f64>,
    /// Highest mean word length (characters).
    pub max_mean_word_length: Option<f64>,
    /// Highest ratio of `#` and ellipsis (`...`, `…`) symbols to words.
    pub max_symbol_word_ratio: Option<f64>,
    /// Highest fraction of lines starting with a bullet (`•`, `-`, `*`, `‣`, `◦`).
    pub max_bullet_lines_ratio: Option<f64>,
    /// Highest fraction of lines ending with an ellipsis.
    pub max_ellipsis_lines_ratio: Option<f64>,
    /// Lowest fraction of whitespace tokens containing an alphabetic character.
    pub min_alpha_words_ratio: Option<f64>,
    /// Fewest distinct stop words (from `stop_words`) the document must contain.
    pub min_stop_words: Option<usize>,
    /// Stop-word list (lower case).
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
            max_ellipsis_lines_ratio: Some(0.3),
            min_alpha_words_ratio: Some(0.8),
            min_stop_words: Some(2),
            stop_words: DEFAULT_STOP_WORDS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

const BULLETS: [char; 5] = ['•', '-', '*', '‣', '◦'];

fn ends_with_ellipsis(line: &str) -> bool {
    line.ends_with("...") || line.ends_with('…')
}

impl DocumentFilter for GopherQuality {
    fn name(&self) -> &str {
        "gopher_quality"
    }

    fn check(&self, text: &str) -> Option<String> {
        let fail = |reason: &str| Some(reason.to_string());
        let ws: Vec<&str> = words(text).collect();
        let n = ws.len();
        if self.min_words.is_some_and(|m| n < m) {
            return fail("too_few_words");
        }
        if self.max_words.is_some_and(|m| n > m) {
            return fail("too_many_words");
        }
        let chars: usize = ws.iter().map(|w| w.chars().count()).sum();
        let mean = if n == 0 { 0.0 } else { chars as f64 / n as f64 };
        if self.min_mean_word_length.is_some_and(|m| mean < m) {
            return fail("short_mean_word_length");
        }
        if self.max_mean_word_length.is_some_and(|m| mean > m) {
            return fail("long_mean_word_length");
        }
        if let Some(max) = self.max_symbol_word_ratio {
            let symbols =
                text.matches('#').count() + text.matches("...").count() + text.matches('…').count();
            if n == 0 || symbols as f64 / n as f64 > max {
                return fail("high_symbol_ratio");
            }
        }
        let ls: Vec<&str> = lines(text).collect();
        if !ls.is_empty() {
            let frac = |count: usize| count as f64 / ls.len() as f64;
            if let Some(max) = self.max_bullet_lines_ratio {
                let bullets = ls.iter().filter(|l| l.starts_with(BULLETS)).count();
                if frac(bullets) > max {
                    return fail("many_bullet_lines");
                }
            }
            if let Some(max) = self.max_ellipsis_lines_ratio {
                if frac(ls.iter().filter(|l| ends_with_ellipsis(l)).count()) > max {
                    return fail("many_ellipsis_lines");
                }
            }
        }
        if let Some(min) = self.min_alpha_words_ratio {
            let tokens = text.split_whitespace().count();
            let alpha = text
                .split_whitespace()
                .filter(|t| t.chars().any(char::is_alphabetic))
                .count();
            if tokens == 0 || (alpha as f64 / tokens as f64) < min {
                return fail("few_alpha_words");
            }
        }
        if let Some(min) = self.min_stop_words {
            let mut found: Vec<&str> = ws
                .iter()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter_map(|w| {
                    self.stop_words
                        .iter()
                        .find(|s| s.eq_ignore_ascii_case(w))
                        .map(String::as_str)
                })
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

/// Gopher repetition rules: duplicated lines and paragraphs, the most frequent n-grams and
/// the share of text inside duplicated n-grams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherRepetition {
    /// Highest fraction of lines that repeat an earlier line.
    pub max_dup_line_frac: Option<f64>,
    /// Highest fraction of paragraphs that repeat an earlier paragraph.
    pub max_dup_para_frac: Option<f64>,
    /// Highest fraction of line characters inside repeated lines.
    pub max_dup_line_char_frac: Option<f64>,
    /// Highest fraction of paragraph characters inside repeated paragraphs.
    pub max_dup_para_char_frac: Option<f64>,
    /// `[n, max]` pairs: highest share of word characters covered by the most frequent n-gram.
    pub top_ngram_max_frac: Vec<(usize, f64)>,
    /// `[n, max]` pairs: highest share of word characters covered by n-grams seen twice or more.
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

/// (fraction of items repeating an earlier item, fraction of characters in those repeats).
pub fn duplicate_fractions(items: &[&str]) -> (f64, f64) {
    if items.is_empty() {
        return (0.0, 0.0);
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let (mut dup, mut dup_chars, mut chars) = (0usize, 0usize, 0usize);
    for item in items {
        let c = item.chars().count();
        chars += c;
        if !seen.insert(*item) {
            dup += 1;
            dup_chars += c;
        }
    }
    (
        dup as f64 / items.len() as f64,
        if chars == 0 {
            0.0
        } else {
            dup_chars as f64 / chars as f64
        },
    )
}

/// Share of word characters in the most frequent word n-gram (0 if no n-gram repeats).
/// Occurrences may overlap; each occurrence counts the n-gram's characters once.
pub fn top_ngram_char_frac(
    word_chars: &[usize],
    ngrams: &HashMap<&[&str], Vec<usize>>,
    n: usize,
) -> f64 {
    let total: usize = word_chars.iter().sum();
    // Most frequent n-gram; ties go to the one occurring first, for determinism.
    let best = ngrams
        .values()
        .filter(|at| at.len() > 1)
        .max_by(|a, b| a.len().cmp(&b.len()).then_with(|| b[0].cmp(&a[0])));
    match best {
        Some(at) if total > 0 => {
            let chars: usize = word_chars[at[0]..at[0] + n].iter().sum();
            (at.len() * chars) as f64 / total as f64
        }
        _ => 0.0,
    }
}

/// Share of word characters covered (each character once) by n-grams occurring twice or more.
pub fn dup_ngram_char_frac(
    word_chars: &[usize],
    ngrams: &HashMap<&[&str], Vec<usize>>,
    n: usize,
) -> f64 {
    let total: usize = word_chars.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let mut covered = vec![false; word_chars.len()];
    for at in ngrams.values().filter(|at| at.len() > 1) {
        for &s in at {
            covered[s..s + n].iter_mut().for_each(|c| *c = true);
        }
    }
    let dup: usize = covered
        .iter()
        .zip(word_chars)
        .filter(|(c, _)| **c)
        .map(|(_, w)| w)
        .sum();
    dup as f64 / total as f64
}

/// Positions of every word n-gram, keyed by the n-gram.
pub fn ngram_positions<'a, 'w>(ws: &'a [&'w str], n: usize) -> HashMap<&'a [&'w str], Vec<usize>> {
    let mut map: HashMap<&[&str], Vec<usize>> = HashMap::new();
    if n == 0 || ws.len() < n {
        return map;
    }
    for (i, g) in ws.windows(n).enumerate() {
        map.entry(g).or_default().push(i);
    }
    map
}

impl DocumentFilter for GopherRepetition {
    fn name(&self) -> &str {
        "gopher_repetition"
    }

    fn check(&self, text: &str) -> Option<String> {
        let ls: Vec<&str> = lines(text).collect();
        let (line_frac, line_char_frac) = duplicate_fractions(&ls);
        if self.max_dup_line_frac.is_some_and(|m| line_frac > m) {
            return Some("dup_line_frac".into());
        }
        if self
            .max_dup_line_char_frac
            .is_some_and(|m| line_char_frac > m)
        {
            return Some("dup_line_char_frac".into());
        }
        let ps = paragraphs(text);
        let (para_frac, para_char_frac) = duplicate_fractions(&ps);
        if self.max_dup_para_frac.is_some_and(|m| para_frac > m) {
            return Some("dup_para_frac".into());
        }
        if self
            .max_dup_para_char_frac
            .is_some_and(|m| para_char_frac > m)
        {
            return Some("dup_para_char_frac".into());
        }
        if self.top_ngram_max_frac.is_empty() && self.dup_ngram_max_frac.is_empty() {
            return None;
        }
        let lowered = text.to_lowercase();
        let ws: Vec<&str> = words(&lowered).collect();
        let word_chars: Vec<usize> = ws.iter().map(|w| w.chars().count()).collect();
        for &(n, max) in &self.top_ngram_max_frac {
            let grams = ngram_positions(&ws, n);
            if top_ngram_char_frac(&word_chars, &grams, n) > max {
                return Some(format!("top_{n}gram"));
            }
        }
        for &(n, max) in &self.dup_ngram_max_frac {
            let grams = ngram_positions(&ws, n);
            if dup_ngram_char_frac(&word_chars, &grams, n) > max {
                return Some(format!("dup_{n}gram"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prose(n: usize) -> String {
        // Distinct words so no n-gram repeats; includes stop words.
        let mut s = String::from("the cat and the dog went to sleep with a hat of wool. ");
        for i in 0..n {
            s.push_str(&format!("word{i:04} "));
        }
        s
    }

    #[test]
    fn clean_prose_passes_both_rule_sets() {
        let t = prose(60);
        assert_eq!(GopherQuality::default().check(&t), None);
        assert_eq!(GopherRepetition::default().check(&t), None);
    }

    #[test]
    fn quality_rules_fire_at_their_thresholds() {
        let q = GopherQuality::default();
        // 49 words < 50.
        let t49 = (0..49)
            .map(|i| format!("the{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(q.check(&t49).as_deref(), Some("too_few_words"));
        // Mean word length: "ab" x 60 = 2.0 < 3.
        let short = vec!["ab"; 60].join(" ");
        assert_eq!(q.check(&short).as_deref(), Some("short_mean_word_length"));
        // Symbol ratio: 60 words of length 5 plus 7 '#' tokens -> 7/60 = 0.117 > 0.1.
        let mut sym = prose(50);
        sym.push_str(" # # # # # # #");
        assert_eq!(q.check(&sym).as_deref(), Some("high_symbol_ratio"));
        // Stop words: only "the" present (1 < 2).
        let few = format!(
            "the {}",
            (0..60)
                .map(|i| format!("wordy{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(q.check(&few).as_deref(), Some("few_stop_words"));
        // Alphabetic words: 60 words, 20 numeric tokens -> alpha 60/80 = 0.75 < 0.8.
        let mut nums = prose(47);
        for i in 0..20 {
            nums.push_str(&format!(" {}", 1000 + i));
        }
        assert_eq!(q.check(&nums).as_deref(), Some("few_alpha_words"));
        // Bullets: 10 of 10 lines start with "-" -> 1.0 > 0.9.
        let bullets = (0..10)
            .map(|i| format!("- the item and to of {i} thing here"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(q.check(&bullets).as_deref(), Some("many_bullet_lines"));
        // Disabled rules never fire.
        let off = GopherQuality {
            min_words: None,
            min_mean_word_length: None,
            min_stop_words: None,
            ..q
        };
        assert_eq!(off.check(&short), None);
    }

    #[test]
    fn duplicate_fractions_by_hand() {
        // a, b, a, a: 2 of 4 repeat; chars 1+2+1+1... use distinct lengths.
        let (f, c) = duplicate_fractions(&["aaa", "b", "aaa", "aaa"]);
        assert_eq!(f, 0.5);
        assert_eq!(c, 6.0 / 10.0);
        assert_eq!(duplicate_fractions(&[]), (0.0, 0.0));
    }

    #[test]
    fn ngram_fractions_by_hand() {
        // words: x y x y z  (chars 1 each, total 5)
        let ws = ["x", "y", "x", "y", "z"];
        let chars = [1, 1, 1, 1, 1];
        let g2 = ngram_positions(&ws, 2);
        // "x y" occurs twice: 2 * 2 chars / 5.
        assert_eq!(top_ngram_char_frac(&chars, &g2, 2), 0.8);
        // coverage of repeated bigrams: positions 0..2 and 2..4 -> words 0..4 -> 4/5.
        assert_eq!(dup_ngram_char_frac(&chars, &g2, 2), 0.8);
        let g3 = ngram_positions(&ws, 3);
        assert_eq!(dup_ngram_char_frac(&chars, &g3, 3), 0.0);
        assert_eq!(top_ngram_char_frac(&chars, &g3, 3), 0.0);
    }

    #[test]
    fn repetition_rules_catch_repeated_lines_and_boilerplate() {
        let r = GopherRepetition::default();
        let lines = "click here to subscribe\n".repeat(5) + "a real line of text about cats";
        assert_eq!(r.check(&lines).as_deref(), Some("dup_line_frac"));
        let spam = "buy cheap pills now ".repeat(30);
        let only_ngrams = GopherRepetition {
            max_dup_line_frac: None,
            max_dup_line_char_frac: None,
            max_dup_para_frac: None,
            max_dup_para_char_frac: None,
            ..r
        };
        assert_eq!(only_ngrams.check(&spam).as_deref(), Some("top_2gram"));
    }
}
