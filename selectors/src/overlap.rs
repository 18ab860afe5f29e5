//! Whether a text is (a copy of) an evaluation document: the same normalised text, or a
//! shared run of `n` words (default [`SHINGLE_WORDS`]). Used by the `decontaminate` stage and
//! by `gleaner evaluate`'s held-out checks.
//!
//! Normalisation keeps lowercase alphanumeric words only, so re-wrapped lines, changed
//! indentation, whitespace and punctuation do not hide a copy. A document shorter than a
//! shingle is one shingle of all its words, so a short copy is still caught.

use crate::text::normalised_words as words;
use std::collections::{HashMap, HashSet};
use xxhash_rust::xxh3::xxh3_64;

/// Words per shingle (the 13-gram of the GPT-3 decontamination study).
pub const SHINGLE_WORDS: usize = 13;

/// The normalised text: its words, lowercased, joined by single spaces.
pub fn normalised(text: &str) -> String {
    words(text).join(" ")
}

fn hash_words(words: &[String]) -> u64 {
    xxh3_64(words.join(" ").as_bytes())
}

fn shingles(words: &[String], n: usize) -> Vec<u64> {
    if words.len() <= n {
        return vec![hash_words(words)];
    }
    words.windows(n).map(hash_words).collect()
}

/// How a text overlaps the evaluation documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Its normalised text equals an evaluation document's.
    Exact,
    /// It shares at least one shingle with an evaluation document.
    Shingle,
}

/// The evaluation documents, indexed for overlap look-ups.
pub struct EvaluationIndex {
    exact: HashSet<u64>,
    shingles: HashMap<u64, usize>,
    n: usize,
    documents: usize,
}

impl EvaluationIndex {
    /// Indexes `texts` with shingles of [`SHINGLE_WORDS`] words.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        Self::with_shingle(texts, SHINGLE_WORDS)
    }

    /// Indexes `texts` with shingles of `n` words (documents without a word are left out).
    pub fn with_shingle<'a>(texts: impl IntoIterator<Item = &'a str>, n: usize) -> Self {
        assert!(n >= 1, "a shingle has at least one word");
        let mut documents = 0;
        let (mut exact, mut index) = (HashSet::new(), HashMap::new());
        for (i, text) in texts.into_iter().enumerate() {
            let w = words(text);
            if w.is_empty() {
                continue;
            }
            documents += 1;
            exact.insert(hash_words(&w));
            for s in shingles(&w, n) {
                index.entry(s).or_insert(i);
            }
        }
        EvaluationIndex {
            exact,
            shingles: index,
            n,
            documents,
        }
    }

    /// Documents indexed (those with at least one word).
    pub fn documents(&self) -> usize {
        self.documents
    }

    /// Whether `text` overlaps an evaluation document, and how.
    pub fn overlap(&self, text: &str) -> Option<Overlap> {
        let w = words(text);
        if w.is_empty() {
            return None;
        }
        if self.exact.contains(&hash_words(&w)) {
            return Some(Overlap::Exact);
        }
        shingles(&w, self.n)
            .iter()
            .any(|s| self.shingles.contains_key(s))
            .then_some(Overlap::Shingle)
    }
}

/// Overlap counts of a set of documents against the evaluation documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OverlapCount {
    /// Documents checked.
    pub documents: usize,
    /// Documents whose normalised text is an evaluation document's.
    pub exact: usize,
    /// Other documents sharing a shingle with one.
    pub shingle: usize,
}

impl OverlapCount {
    /// Counts the overlaps of `texts`.
    pub fn of<'a>(index: &EvaluationIndex, texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut count = OverlapCount::default();
        for t in texts {
            count.documents += 1;
            match index.overlap(t) {
                Some(Overlap::Exact) => count.exact += 1,
                Some(Overlap::Shingle) => count.shingle += 1,
                None => {}
            }
        }
        count
    }

    /// Documents overlapping either way.
    pub fn total(&self) -> usize {
        self.exact + self.shingle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTION: &str = "def below_zero(operations):\n    \"\"\"You're given a list of deposit and withdrawal operations on a bank account that starts with zero balance.\"\"\"\n    balance = 0\n    for op in operations:\n        balance += op\n        if balance < 0:\n            return True\n    return False\n";

    #[test]
    fn copies_survive_rewrapping_whitespace_and_case_and_strangers_do_not_match() {
        let index = EvaluationIndex::new([FUNCTION, "short one"]);
        assert_eq!(index.overlap(FUNCTION), Some(Overlap::Exact));
        let rewrapped = FUNCTION
            .replace('\n', " ")
            .replace("    ", "\t")
            .to_uppercase();
        assert_eq!(index.overlap(&rewrapped), Some(Overlap::Exact));
        let embedded = format!(
            "Some preface text here.\n{}\nAnd more after it.",
            &FUNCTION[..160]
        );
        assert_eq!(index.overlap(&embedded), Some(Overlap::Shingle));
        assert_eq!(index.overlap("SHORT,   one!"), Some(Overlap::Exact));
        assert_eq!(index.overlap("def above_zero(x): return x > 0"), None);
        assert_eq!(index.overlap("...  "), None);
        let c = OverlapCount::of(&index, [FUNCTION, embedded.as_str(), "unrelated words"]);
        assert_eq!((c.documents, c.exact, c.shingle, c.total()), (3, 1, 1, 2));
    }
}
