//! `dsir`: importance resampling towards a target corpus. Hashed n-gram counts of the pool
//! are summed in the map phase, the target's are counted here, and each document's log
//! importance weight (`gleaner_selectors::dsir`) becomes the pool column `dsir` a score
//! selector samples by.

use super::selection::{Grouping, SelectorStage};
use super::{Pool, PoolStage, StageEnv};
use crate::config::DsirConfig;
use anyhow::Result;
use gleaner_selectors::dsir::{self, DsirFeatures};
use gleaner_storage::reader::{ColumnSpec, CorpusReader, OnBadFile};

/// The pool column holding each document's log importance weight.
pub const COLUMN: &str = "dsir";

/// The DSIR stage of a config.
pub struct DsirStage {
    config: DsirConfig,
    features: DsirFeatures,
    selector: SelectorStage,
}

impl DsirStage {
    /// The stage of `config`, sampling with `seed`.
    pub fn new(config: &DsirConfig, seed: u64) -> Self {
        let (size, in_tokens) = config.size().sample();
        DsirStage {
            features: DsirFeatures {
                ngrams: config.ngrams,
                buckets: config.num_buckets,
            },
            selector: SelectorStage::by_score(
                "dsir",
                seed,
                size,
                !config.top_k,
                1.0,
                Grouping::balanced(config.per_source),
                COLUMN,
            )
            .with_tokenizer_budget(in_tokens),
            config: config.clone(),
        }
    }

    /// Hashed n-gram counts of the target corpus.
    fn target_counts(&self, batch_size: usize) -> Result<Vec<u64>> {
        let spec = ColumnSpec {
            text: self.config.target_text_column.clone(),
            ..ColumnSpec::default()
        };
        let target = CorpusReader::open(
            &self.config.target_paths,
            spec,
            OnBadFile::Error,
            batch_size,
        )?;
        let mut counts = vec![0u64; self.features.buckets];
        for u in 0..target.units().len() {
            for batch in target.read_unit(u)? {
                let batch = batch?;
                for i in 0..batch.len() {
                    self.features
                        .add_counts(batch.text(i).unwrap_or(""), &mut counts);
                }
            }
        }
        Ok(counts)
    }
}

impl PoolStage for DsirStage {
    fn needs(&self) -> super::Needs {
        self.selector.needs.clone()
    }

    fn unit_totals_len(&self) -> usize {
        self.features.buckets
    }

    fn map_unit(&self, text: &str, totals: &mut [u64]) {
        self.features.add_counts(text, totals);
    }

    fn apply(&self, pool: &mut Pool<'_>, env: &StageEnv<'_>) -> Result<()> {
        let mut raw = pool.stage_totals();
        raw.resize(self.features.buckets, 0);
        let target = self.target_counts(env.config.input.batch_size)?;
        let ratio = dsir::log_ratio(&raw, &target, self.config.target_laplace_smoothing);
        let all: Vec<usize> = (0..pool.len()).collect();
        let weights = pool.map_texts(&all, |text| self.features.score(text, &ratio))?;
        let keep: Vec<bool> = weights
            .iter()
            .map(|&(_, words)| words >= self.config.min_example_length)
            .collect();
        pool.set_column(COLUMN, weights.iter().map(|&(w, _)| Some(w)).collect());
        pool.retain(&keep, "too_short");
        self.selector.choose(pool);
        Ok(())
    }
}
