//! A hashed n-gram linear classifier, target versus pool (the DCLM recipe's fastText
//! classifier, linear): each document is the L2-normalised bag of its hashed word n-grams
//! (lowercase alphanumeric words, n = 1..=`ngrams`, `buckets` hash buckets); a logistic
//! regression is fitted by seeded stochastic gradient descent to tell target documents
//! (label 1) from a sample of the pool (label 0), the two classes weighted equally; a
//! document's score is its logit.

use crate::rng::SplitMix64;
use crate::text::normalised_words;
use xxhash_rust::xxh3::xxh3_64;

/// Feature hashing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgramFeatures {
    /// Longest word n-gram.
    pub ngrams: usize,
    /// Hash buckets.
    pub buckets: usize,
}

/// A sparse feature vector: (bucket, value), buckets ascending and distinct.
pub type Sparse = Vec<(u32, f32)>;

impl NgramFeatures {
    /// The L2-normalised bucket counts of `text` (empty for a text without words).
    pub fn features(&self, text: &str) -> Sparse {
        let words = normalised_words(text);
        let mut buckets: Vec<u32> = Vec::new();
        for n in 1..=self.ngrams {
            for gram in words.windows(n) {
                let h = xxh3_64(gram.join(" ").as_bytes());
                buckets.push((h % self.buckets as u64) as u32);
            }
        }
        buckets.sort_unstable();
        let mut sparse: Sparse = Vec::new();
        for b in buckets {
            match sparse.last_mut() {
                Some((last, v)) if *last == b => *v += 1.0,
                _ => sparse.push((b, 1.0)),
            }
        }
        let norm = sparse.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            sparse.iter_mut().for_each(|(_, v)| *v /= norm);
        }
        sparse
    }
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSettings {
    /// Passes over the examples.
    pub epochs: usize,
    /// SGD step size.
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    pub l2: f64,
    /// Seed of the example order.
    pub seed: u64,
}

/// A fitted logistic regression over hashed features.
#[derive(Debug, Clone)]
pub struct LinearClassifier {
    weights: Vec<f64>,
    bias: f64,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl LinearClassifier {
    /// Fits target (`positives`) against pool (`negatives`) examples over `buckets` features,
    /// the classes weighted so each contributes half of the loss.
    pub fn fit(
        positives: &[Sparse],
        negatives: &[Sparse],
        buckets: usize,
        s: &TrainSettings,
    ) -> Self {
        let mut model = LinearClassifier {
            weights: vec![0.0; buckets],
            bias: 0.0,
        };
        let n = (positives.len() + negatives.len()) as f64;
        let weight_of = |count: usize| {
            if count == 0 {
                0.0
            } else {
                n / (2.0 * count as f64)
            }
        };
        let (wp, wn) = (weight_of(positives.len()), weight_of(negatives.len()));
        let mut order: Vec<(bool, usize)> = (0..positives.len())
            .map(|i| (true, i))
            .chain((0..negatives.len()).map(|i| (false, i)))
            .collect();
        let mut rng = SplitMix64::new(s.seed);
        for _ in 0..s.epochs {
            rng.shuffle(&mut order);
            for &(positive, i) in &order {
                let (x, y, w) = if positive {
                    (&positives[i], 1.0, wp)
                } else {
                    (&negatives[i], 0.0, wn)
                };
                let g = w * (sigmoid(model.logit(x)) - y);
                for &(b, v) in x {
                    let wb = &mut model.weights[b as usize];
                    *wb -= s.learning_rate * (g * v as f64 + s.l2 * *wb);
                }
                model.bias -= s.learning_rate * g;
            }
        }
        model
    }

    /// The logit `w . x + b` of a document.
    pub fn logit(&self, x: &Sparse) -> f64 {
        self.bias
            + x.iter()
                .map(|&(b, v)| self.weights[b as usize] * v as f64)
                .sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_normalised_counts_of_hashed_ngrams() {
        let f = NgramFeatures {
            ngrams: 2,
            buckets: 1 << 20,
        };
        // "a b a": unigrams a, b, a; bigrams "a b", "b a": counts 2, 1, 1, 1 -> norm sqrt(7).
        let x = f.features("A, b  a!");
        let mut values: Vec<f32> = x.iter().map(|p| p.1).collect();
        values.sort_by(f32::total_cmp);
        let r = 7f32.sqrt();
        assert_eq!(values, [1.0 / r, 1.0 / r, 1.0 / r, 2.0 / r]);
        assert!(f.features("...").is_empty());
    }

    #[test]
    fn logistic_regression_matches_the_closed_form_on_one_feature() {
        // One feature, value 1 for every example: 30 positives and 10 negatives. The
        // weighted optimum (classes weighted equally, no L2) is w + b = logit(1/2) = 0.
        let pos = vec![vec![(0u32, 1.0f32)]; 30];
        let neg = vec![vec![(0u32, 1.0f32)]; 10];
        let s = TrainSettings {
            epochs: 200,
            learning_rate: 0.01,
            l2: 0.0,
            seed: 1,
        };
        let m = LinearClassifier::fit(&pos, &neg, 1, &s);
        assert!(m.logit(&pos[0]).abs() < 0.05, "{}", m.logit(&pos[0]));
        // Separable features: target documents use words the pool does not.
        let f = NgramFeatures {
            ngrams: 1,
            buckets: 4096,
        };
        let target: Vec<Sparse> = (0..20)
            .map(|i| f.features(&format!("def return import self x{i}")))
            .collect();
        let pool: Vec<Sparse> = (0..40)
            .map(|i| f.features(&format!("the weather was mild y{i}")))
            .collect();
        let s = TrainSettings {
            epochs: 20,
            learning_rate: 0.5,
            l2: 0.0,
            seed: 2,
        };
        let m = LinearClassifier::fit(&target, &pool, 4096, &s);
        let code = m.logit(&f.features("import self def"));
        let prose = m.logit(&f.features("the mild weather"));
        assert!(code > 2.0 && prose < -2.0, "{code} {prose}");
    }
}
