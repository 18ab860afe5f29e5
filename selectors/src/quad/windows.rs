//! Document to training windows (spec 1.3): windows of `len` tokens every `stride` tokens
//! over the first `max_doc_tokens` tokens, keeping a window only when at least `min_len`
//! tokens remain from its start; of more than `max_windows` windows, that many evenly spaced
//! ones (first and last included). A document with no window scores `empty_doc_score`.

use std::ops::Range;

/// How a document is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Window length in tokens (1024).
    pub len: usize,
    /// Distance between window starts (1023: one token of overlap).
    pub stride: usize,
    /// Shortest remainder that still makes a window (512).
    pub min_len: usize,
    /// Tokens of a document considered at most (20,480).
    pub max_doc_tokens: usize,
    /// Windows of a document scored at most (evenly spaced over its windows).
    pub max_windows: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            len: 1024,
            stride: 1023,
            min_len: 512,
            max_doc_tokens: 20_480,
            max_windows: 8,
        }
    }
}

/// Token ranges of the windows of a document of `tokens` tokens.
pub fn windows(tokens: usize, config: &WindowConfig) -> Vec<Range<usize>> {
    let tokens = tokens.min(config.max_doc_tokens);
    let mut out = Vec::new();
    let mut start = 0;
    while start < tokens && tokens - start >= config.min_len {
        out.push(start..(start + config.len).min(tokens));
        start += config.stride.max(1);
    }
    let (count, keep) = (out.len(), config.max_windows.max(1));
    if count <= keep {
        return out;
    }
    if keep == 1 {
        out.truncate(1);
        return out;
    }
    (0..keep)
        .map(|i| out[(i * (count - 1) + (keep - 1) / 2) / (keep - 1)].clone())
        .collect()
}

/// A document's score: the mean of its windows' scores, or `empty` without windows.
pub fn document_score(window_scores: &[f64], empty: f64) -> f64 {
    if window_scores.is_empty() {
        empty
    } else {
        window_scores.iter().sum::<f64>() / window_scores.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_window_examples() {
        let c = WindowConfig::default();
        assert_eq!(
            windows(600, &c),
            std::iter::once(0..600).collect::<Vec<_>>()
        );
        assert!(windows(400, &c).is_empty());
        assert_eq!(document_score(&[], 0.0), 0.0);
        // 2,100 tokens: starts 0, 1023, 2046; the last has 54 tokens (< 512) and is dropped.
        assert_eq!(windows(2100, &c), [0..1024, 1023..2047]);
        assert_eq!(document_score(&[0.5, 1.5], 0.0), 1.0);
        // Only the first max_doc_tokens count.
        let short = WindowConfig {
            max_doc_tokens: 1500,
            ..c
        };
        assert_eq!(
            windows(100_000, &short),
            std::iter::once(0..1024).collect::<Vec<_>>()
        );
    }

    #[test]
    fn at_most_max_windows_evenly_spaced() {
        // 10,240 tokens make 10 windows (starts 0, 1023, ..., 9207); 4 of them are the 1st,
        // 4th, 7th and 10th (indices round(i x 9 / 3)); 5 are indices 0, 2, 5, 7, 9
        // (round(i x 9 / 4) = 0, 2.25, 4.5, 6.75, 9, halves rounded up).
        let all = windows(
            10_240,
            &WindowConfig {
                max_windows: 100,
                ..WindowConfig::default()
            },
        );
        assert_eq!(all.len(), 10);
        for (keep, picked) in [
            (4, vec![0, 3, 6, 9]),
            (5, vec![0, 2, 5, 7, 9]),
            (1, vec![0]),
        ] {
            let c = WindowConfig {
                max_windows: keep,
                ..WindowConfig::default()
            };
            let want: Vec<Range<usize>> = picked.iter().map(|&i| all[i].clone()).collect();
            assert_eq!(windows(10_240, &c), want, "{keep}");
        }
    }
}
