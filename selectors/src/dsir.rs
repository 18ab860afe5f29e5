//! DSIR: data selection by importance resampling with hashed n-gram features (Xie et al.
//! 2023), as described in docs/METHODS.md.
//!
//! Features: lower-cased word-punct tokens, every n-gram for n = 1..=N joined by a space,
//! hashed to `int(sha256(ngram)) mod m` (the full 256-bit big-endian integer). The importance
//! weight of a document is `log w(x) = sum_b z_b (log(p_b + 1e-8) - log(q_b + 1e-8))` with p
//! the target's and q the raw pool's normalised bucket frequencies.

use sha2::{Digest, Sha256};

/// Feature settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsirFeatures {
    /// Longest n-gram (1 = unigrams only).
    pub ngrams: usize,
    /// Number of hash buckets m.
    pub buckets: usize,
}

impl Default for DsirFeatures {
    fn default() -> Self {
        DsirFeatures {
            ngrams: 2,
            buckets: 10_000,
        }
    }
}

/// Lower-cased tokens as NLTK's `WordPunctTokenizer` makes them: runs of word characters
/// (alphanumeric or `_`) and runs of other non-space characters.
pub fn word_punct_tokens(text: &str) -> Vec<String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Word,
        Punct,
        Space,
    }
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            Class::Word
        } else if c.is_whitespace() {
            Class::Space
        } else {
            Class::Punct
        }
    };
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut current_class = Class::Space;
    for c in lower.chars() {
        let k = class(c);
        if k != current_class && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if k != Class::Space {
            current.push(c);
        }
        current_class = k;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `int(sha256(s).hexdigest(), 16) mod m`, by Horner over the 32 big-endian bytes.
pub fn bucket(s: &str, m: usize) -> u32 {
    let digest = Sha256::digest(s.as_bytes());
    let m = m as u64;
    digest.iter().fold(0u64, |r, &b| (r * 256 + b as u64) % m) as u32
}

impl DsirFeatures {
    /// Adds the document's bucket counts to `counts` (length `buckets`); returns the number
    /// of n-grams counted.
    pub fn add_counts(&self, text: &str, counts: &mut [u64]) -> u64 {
        let mut total = 0;
        self.for_each_bucket(text, |b| {
            counts[b as usize] += 1;
            total += 1;
        });
        total
    }

    fn for_each_bucket(&self, text: &str, mut f: impl FnMut(u32)) {
        let tokens = word_punct_tokens(text);
        for n in 1..=self.ngrams {
            for gram in tokens.windows(n) {
                f(bucket(&gram.join(" "), self.buckets));
            }
        }
    }

    /// `(log w(x), estimated words)` of a document under the fitted log ratios; the
    /// estimate is `(sum z + N(N-1)/2) / N`, as the reference implementation computes it.
    pub fn score(&self, text: &str, log_ratio: &[f64]) -> (f64, f64) {
        let mut s = 0.0;
        let mut count = 0u64;
        self.for_each_bucket(text, |b| {
            s += log_ratio[b as usize];
            count += 1;
        });
        let n = self.ngrams as f64;
        (s, (count as f64 + n * (n - 1.0) / 2.0) / n)
    }
}

/// `log(p_b + 1e-8) - log(q_b + 1e-8)` per bucket from raw and target counts; `laplace` is
/// added to every target bucket before normalising.
pub fn log_ratio(raw: &[u64], target: &[u64], laplace: f64) -> Vec<f64> {
    let raw_total: f64 = raw.iter().map(|&c| c as f64).sum::<f64>().max(1.0);
    let target_total: f64 = target
        .iter()
        .map(|&c| c as f64 + laplace)
        .sum::<f64>()
        .max(1e-300);
    raw.iter()
        .zip(target)
        .map(|(&q, &p)| {
            ((p as f64 + laplace) / target_total + 1e-8).ln() - (q as f64 / raw_total + 1e-8).ln()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_golden_buckets_match_python() {
        assert_eq!(
            word_punct_tokens("The cat sat, on the mat."),
            ["the", "cat", "sat", ",", "on", "the", "mat", "."]
        );
        assert_eq!(
            word_punct_tokens("it's 3.5 (ok)!"),
            ["it", "'", "s", "3", ".", "5", "(", "ok", ")!"]
        );
        // Values from Python: int(hashlib.sha256(s.encode()).hexdigest(), 16) % 10000.
        assert_eq!(bucket("the", 10_000), 8288);
        assert_eq!(bucket("cat", 10_000), 2366);
        assert_eq!(bucket("the cat", 10_000), 143);
        let mut counts = vec![0u64; 10_000];
        let n = DsirFeatures::default().add_counts("The cat sat, on the mat.", &mut counts);
        assert_eq!(n, 15);
        let nonzero: Vec<(usize, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| (b, *c))
            .collect();
        assert_eq!(
            nonzero,
            [
                (143, 1),
                (2366, 1),
                (2778, 1),
                (2902, 1),
                (3960, 1),
                (4777, 1),
                (4887, 1),
                (5807, 1),
                (6161, 1),
                (6853, 1),
                (7248, 1),
                (8288, 2),
                (8294, 1),
                (8505, 1)
            ]
        );
    }

    #[test]
    fn equal_distributions_score_zero() {
        let f = DsirFeatures {
            ngrams: 2,
            buckets: 64,
        };
        let mut raw = vec![0u64; 64];
        f.add_counts("alpha beta gamma delta alpha", &mut raw);
        let ratio = log_ratio(&raw, &raw, 0.0);
        let (s, words) = f.score("beta gamma anything else", &ratio);
        assert!(s.abs() < 1e-9, "{s}");
        // 4 unigrams + 3 bigrams = 7 n-grams: (7 + 1) / 2 = 4 words.
        assert_eq!(words, 4.0);
    }
}
