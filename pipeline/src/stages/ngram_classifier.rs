//! `ngram_classifier`: a selector keeping the documents a hashed n-gram linear classifier,
//! trained target versus a seeded sample of the pool, scores highest
//! (`gleaner_selectors::ngram_classifier`). The logits become the pool column
//! `ngram_classifier`, which a score selector ranks (or samples) by.

use super::selection::{Grouping, SelectorStage};
use super::{Pool, PoolStage, StageEnv};
use crate::config::ngram_classifier::NgramClassifierConfig;
use anyhow::{bail, Context, Result};
use gleaner_selectors::ngram_classifier::{LinearClassifier, NgramFeatures, TrainSettings};
use gleaner_selectors::rng::SplitMix64;
use gleaner_storage::reader::for_each_text;

/// The pool column holding each document's logit.
pub const COLUMN: &str = "ngram_classifier";

/// The stage of a config.
pub struct NgramClassifierStage {
    config: NgramClassifierConfig,
    features: NgramFeatures,
    selector: SelectorStage,
    seed: u64,
}

impl NgramClassifierStage {
    /// The stage of `config`, drawing from `seed`.
    pub fn new(config: &NgramClassifierConfig, seed: u64) -> Self {
        let (size, in_tokens) = config.size().sample();
        NgramClassifierStage {
            features: NgramFeatures {
                ngrams: config.ngrams,
                buckets: config.num_buckets,
            },
            selector: SelectorStage::by_score(
                "ngram_classifier",
                seed,
                size,
                config.sample,
                1.0,
                Grouping::balanced(config.per_source),
                COLUMN,
            )
            .with_tokenizer_budget(in_tokens),
            config: config.clone(),
            seed,
        }
    }
}

impl PoolStage for NgramClassifierStage {
    fn needs(&self) -> super::Needs {
        self.selector.needs.clone()
    }

    fn apply(&self, pool: &mut Pool<'_>, env: &StageEnv<'_>) -> Result<()> {
        let c = &self.config;
        let mut positives = Vec::new();
        for_each_text(&c.target_paths, &c.target_text_column, |t| {
            let x = self.features.features(t);
            if !x.is_empty() {
                positives.push(x);
            }
            true
        })
        .with_context(|| format!("at key `{}.target_paths`", env.key))?;
        if positives.is_empty() {
            bail!(
                "at key `{}.target_paths`: no target document has a word",
                env.key
            );
        }
        let mut rng = SplitMix64::new(self.seed);
        let mut negatives_at = rng.sample_indices(pool.len(), c.max_negatives.min(pool.len()));
        negatives_at.sort_unstable();
        let negatives = pool.map_texts(&negatives_at, |t| self.features.features(t))?;
        let model = LinearClassifier::fit(
            &positives,
            &negatives,
            c.num_buckets,
            &TrainSettings {
                epochs: c.epochs,
                learning_rate: c.learning_rate,
                l2: c.l2,
                seed: self.seed,
            },
        );
        let all: Vec<usize> = (0..pool.len()).collect();
        let logits = pool.map_texts(&all, |t| model.logit(&self.features.features(t)))?;
        pool.set_column(COLUMN, logits.into_iter().map(Some).collect());
        self.selector.choose(pool);
        Ok(())
    }
}
