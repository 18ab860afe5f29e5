//! A byte-level interpolated Kneser-Ney n-gram language model: the deterministic evaluation
//! model of `gleaner evaluate` (no seed, no noise; seconds per selection).
//!
//! Symbols are the 256 byte values and an end-of-document symbol; every document is
//! predicted symbol by symbol after `order - 1` start-of-document symbols of context. With
//! absolute discount `D` (0.75 at every order), for a context `h` of length `k` and its
//! shortened context `h'` (the last `k - 1` symbols):
//!
//! ```text
//! P(w | h) = max(c(h w) - D, 0) / c(h) + D * N1+(h .) / c(h) * P(w | h')      (c(h) > 0)
//! P(w | h) = P(w | h')                                                         (c(h) = 0)
//! ```
//!
//! where at the highest order `c` counts n-grams in the training text, and at every lower
//! order `c(h w)` is the continuation count `N1+(. h w)` (the number of distinct symbols
//! seen before `h w`) and `c(h) = sum_w c(h w)`; `N1+(h .)` is the number of distinct `w`
//! with `c(h w) > 0`. The recursion ends at the uniform distribution over the 257 symbols,
//! so every symbol has a positive probability and each `P(. | h)` sums to one (tested).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Symbols: bytes 0..=255 and the end of a document.
pub const VOCAB: u32 = 257;
const END: u32 = 256;
/// Context padding before a document's first symbol (never predicted).
const START: u32 = 257;
/// Absolute discount at every order.
pub const DISCOUNT: f64 = 0.75;
/// Longest n-gram the packed keys hold.
pub const MAX_ORDER: usize = 12;

/// Multiplicative hashing for the packed keys (they are already well mixed in their low bits
/// by the symbols; SipHash would dominate the counting time).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let folded = (v as u64) ^ ((v >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (folded ^ (folded >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 ^= self.0 >> 32;
    }
}

type Map<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;

/// A sequence of up to [`MAX_ORDER`] symbols packed as 9-bit digits below a length tag.
fn key(symbols: &[u32]) -> u128 {
    let mut k = symbols.len() as u128;
    for &s in symbols {
        k = (k << 9) | u128::from(s);
    }
    k
}

/// Count and number of distinct continuations of one context.
#[derive(Clone, Copy, Default)]
struct ContextStats {
    total: u64,
    distinct: u32,
}

/// A trained model.
pub struct KneserNey {
    order: usize,
    /// Per order `n` (index `n - 1`): counts of n-grams (highest order) or continuation counts.
    grams: Vec<Map<u32>>,
    /// Per order: the statistics of each (n-1)-symbol context.
    contexts: Vec<Map<ContextStats>>,
}

/// The symbols of a document, after `order - 1` start symbols.
fn symbols(text: &[u8], order: usize) -> Vec<u32> {
    let mut s = vec![START; order - 1];
    s.extend(text.iter().map(|&b| u32::from(b)));
    s.push(END);
    s
}

impl KneserNey {
    /// Counts the n-grams of `documents` up to `order` (2..=[`MAX_ORDER`]).
    pub fn train<'a>(documents: impl IntoIterator<Item = &'a [u8]>, order: usize) -> Self {
        assert!((2..=MAX_ORDER).contains(&order), "order {order}");
        let mut top: Map<u32> = Map::default();
        for doc in documents {
            let s = symbols(doc, order);
            for end in order..=s.len() {
                *top.entry(key(&s[end - order..end])).or_insert(0) += 1;
            }
        }
        // Lower orders: each distinct (n+1)-gram `a g` adds one continuation to `g`. Counts
        // of n-grams that only occur at a document's start (after start symbols) are their
        // left extensions too, so every order is filled from the one above.
        let mut grams: Vec<Map<u32>> = vec![Map::default(); order];
        grams[order - 1] = top;
        for n in (1..order).rev() {
            let mut lower: Map<u32> = Map::default();
            for &k in grams[n].keys() {
                // Drop the first (oldest) symbol: the tag says n + 1 symbols of 9 bits.
                let tail = k & ((1u128 << (9 * n)) - 1);
                *lower.entry(tail | ((n as u128) << (9 * n))).or_insert(0) += 1;
            }
            grams[n - 1] = lower;
        }
        let contexts = grams
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let n = i + 1;
                let mut ctx: Map<ContextStats> = Map::default();
                for (&k, &c) in g {
                    // The context is the n-gram without its last symbol, with tag n - 1.
                    let prefix = (k >> 9) & ((1u128 << (9 * (n - 1))) - 1);
                    let e = ctx
                        .entry(prefix | (((n - 1) as u128) << (9 * (n - 1))))
                        .or_default();
                    e.total += u64::from(c);
                    e.distinct += 1;
                }
                ctx
            })
            .collect();
        KneserNey {
            order,
            grams,
            contexts,
        }
    }

    /// The model's order.
    pub fn order(&self) -> usize {
        self.order
    }

    /// `P(w | context)` for a context of `order - 1` symbols (the most recent last).
    fn probability(&self, context: &[u32], w: u32) -> f64 {
        let mut p = 1.0 / f64::from(VOCAB);
        for n in 1..=self.order {
            let h = &context[context.len() - (n - 1)..];
            let Some(stats) = self.contexts[n - 1].get(&key(h)) else {
                continue;
            };
            let mut gram = h.to_vec();
            gram.push(w);
            let c = f64::from(self.grams[n - 1].get(&key(&gram)).copied().unwrap_or(0));
            let total = stats.total as f64;
            p = (c - DISCOUNT).max(0.0) / total + DISCOUNT * f64::from(stats.distinct) / total * p;
        }
        p
    }

    /// Negative log-likelihood in nats of each symbol of a document after the first, summed:
    /// the document's bytes and its end are predicted; returns (nats, bytes).
    pub fn document_nats(&self, text: &[u8]) -> (f64, u64) {
        let s = symbols(text, self.order);
        let k = self.order - 1;
        let mut nats = 0.0;
        for i in k..s.len() {
            nats -= self.probability(&s[i - k..i], s[i]).ln();
        }
        (nats, text.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: [&str; 4] = [
        "the cat sat on the mat",
        "the dog sat on the log",
        "a cat and a dog",
        "",
    ];

    fn model(order: usize) -> KneserNey {
        KneserNey::train(CORPUS.iter().map(|s| s.as_bytes()), order)
    }

    fn all_symbols(order: usize) -> Vec<Vec<u32>> {
        CORPUS
            .iter()
            .map(|d| symbols(d.as_bytes(), order))
            .collect()
    }

    /// The definition, computed by scanning the corpus for every count (no tables).
    fn oracle(order: usize, context: &[u32], w: u32) -> f64 {
        let docs = all_symbols(order);
        let grams = |n: usize| -> Vec<Vec<u32>> {
            docs.iter()
                .flat_map(|s| (order..=s.len()).map(move |e| s[e - order..e].to_vec()))
                .map(|g| g[order - n..].to_vec())
                .collect()
        };
        let top = grams(order);
        // c_n(g): count at the highest order, distinct left extensions below.
        let count = |g: &[u32]| -> f64 {
            let n = g.len();
            if n == order {
                top.iter().filter(|x| x.as_slice() == g).count() as f64
            } else {
                let mut left: Vec<u32> = grams(n + 1)
                    .iter()
                    .filter(|x| &x[1..] == g)
                    .map(|x| x[0])
                    .collect();
                left.sort();
                left.dedup();
                left.len() as f64
            }
        };
        let mut p = 1.0 / f64::from(VOCAB);
        for n in 1..=order {
            let h = &context[context.len() - (n - 1)..];
            let extend = |v: u32| {
                let mut g = h.to_vec();
                g.push(v);
                count(&g)
            };
            let total: f64 = (0..=START).map(extend).sum();
            if total == 0.0 {
                continue;
            }
            let distinct = (0..=START).filter(|&v| extend(v) > 0.0).count() as f64;
            p = (extend(w) - DISCOUNT).max(0.0) / total + DISCOUNT * distinct / total * p;
        }
        p
    }

    #[test]
    fn probabilities_match_the_definition_computed_by_scanning_the_corpus() {
        for order in [2, 3] {
            let m = model(order);
            let contexts: Vec<Vec<u32>> = vec![
                vec![START; order - 1],
                b"the "[4 - (order - 1)..]
                    .iter()
                    .map(|&b| u32::from(b))
                    .collect(),
                b"at"[2 - (order - 1)..]
                    .iter()
                    .map(|&b| u32::from(b))
                    .collect(),
                vec![u32::from(b'z'); order - 1],
            ];
            for ctx in &contexts {
                for w in [b'c', b'd', b'm', b's', b'z']
                    .map(u32::from)
                    .into_iter()
                    .chain([END])
                {
                    let (got, want) = (m.probability(ctx, w), oracle(order, ctx, w));
                    assert!(
                        (got - want).abs() < 1e-12,
                        "order {order}, context {ctx:?}, symbol {w}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_conditional_distribution_sums_to_one() {
        let m = model(4);
        for ctx in [
            vec![START, START, START],
            vec![START, u32::from(b't'), u32::from(b'h')],
            vec![u32::from(b' '), u32::from(b'o'), u32::from(b'n')],
            vec![7, 8, 9],
        ] {
            let total: f64 = (0..VOCAB).map(|w| m.probability(&ctx, w)).sum();
            assert!((total - 1.0).abs() < 1e-9, "{ctx:?}: {total}");
        }
    }

    #[test]
    fn text_like_the_training_text_costs_fewer_bits() {
        let m = model(5);
        let (seen, n1) = m.document_nats(b"the cat sat on the log");
        let (unseen, n2) = m.document_nats(b"qxv jjw zzk pfft mmmq");
        assert!(
            seen / n1 as f64 * 2.0 < unseen / n2 as f64,
            "{seen} vs {unseen}"
        );
    }
}
