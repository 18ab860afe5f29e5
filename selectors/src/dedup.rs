//! Exact deduplication by a 128-bit hash of normalised text. The first occurrence in
//! corpus order is kept; later ones are dropped as `duplicate`.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use xxhash_rust::xxh3::xxh3_128;

/// How text is normalised before hashing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normalization {
    /// Lower-case letters.
    pub lowercase: bool,
    /// Remove punctuation and symbols (anything neither alphanumeric nor whitespace).
    pub strip_punctuation: bool,
    /// Remove digits.
    pub strip_digits: bool,
    /// Collapse whitespace runs to one space and trim the ends.
    pub collapse_whitespace: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            lowercase: true,
            strip_punctuation: true,
            strip_digits: false,
            collapse_whitespace: true,
        }
    }
}

impl Normalization {
    /// The normalised text.
    pub fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut pending_space = false;
        for c in text.chars() {
            if c.is_whitespace() {
                if self.collapse_whitespace {
                    pending_space = !out.is_empty();
                } else {
                    out.push(c);
                }
                continue;
            }
            if self.strip_punctuation && !c.is_alphanumeric() {
                continue;
            }
            if self.strip_digits && c.is_numeric() {
                continue;
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            if self.lowercase {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// 128-bit content hash of the normalised text.
    pub fn hash(&self, text: &str) -> u128 {
        xxh3_128(self.apply(text).as_bytes())
    }
}

/// Tracks content hashes seen so far; feed documents in corpus order.
#[derive(Debug, Default)]
pub struct ExactDedup {
    seen: HashSet<u128>,
}

impl ExactDedup {
    /// Records `hash`; returns true when it was seen before (the document is a duplicate).
    pub fn is_duplicate(&mut self, hash: u128) -> bool {
        !self.seen.insert(hash)
    }

    /// Number of distinct contents seen.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_by_hand() {
        let n = Normalization::default();
        assert_eq!(n.apply("  Hello,\n\tWORLD!!  42 "), "hello world 42");
        let keep = Normalization {
            lowercase: false,
            strip_punctuation: false,
            strip_digits: true,
            collapse_whitespace: true,
        };
        assert_eq!(keep.apply("A1b2,  c3"), "Ab, c");
    }

    #[test]
    fn first_occurrence_wins_and_variants_collide() {
        let n = Normalization::default();
        let mut d = ExactDedup::default();
        assert!(!d.is_duplicate(n.hash("The cat sat.")));
        assert!(d.is_duplicate(n.hash("the  CAT sat")));
        assert!(!d.is_duplicate(n.hash("the dog sat")));
        assert_eq!(d.distinct(), 2);
    }
}
