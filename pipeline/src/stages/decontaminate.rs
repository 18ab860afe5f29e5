//! `decontaminate`: a map stage that drops documents copying an evaluation document (the
//! same normalised text, or a shared run of `ngram` normalised words), naming the evaluation
//! set in the drop reason, so the report lists hits and example ids per set.

use super::DocStage;
use crate::config::decontaminate::DecontaminateConfig;
use anyhow::{Context, Result};
use gleaner_selectors::overlap::EvaluationIndex;
use gleaner_storage::reader::{for_each_text, DocBatch};

/// The evaluation sets, indexed.
pub struct Decontaminate {
    /// (drop reason, index) per set, in set-name order.
    sets: Vec<(String, EvaluationIndex)>,
}

impl Decontaminate {
    /// Reads and indexes every evaluation set of `config`; errors name the set's key under
    /// `key`.
    pub fn new(config: &DecontaminateConfig, key: &str) -> Result<Self> {
        let mut sets = Vec::new();
        for (name, paths) in &config.eval_sets {
            let mut texts = Vec::new();
            for_each_text(paths, &config.text_column, |t| {
                texts.push(t.to_string());
                true
            })
            .with_context(|| format!("at key `{key}.eval_sets.{name}`"))?;
            let index =
                EvaluationIndex::with_shingle(texts.iter().map(String::as_str), config.ngram);
            if index.documents() == 0 {
                anyhow::bail!(
                    "at key `{key}.eval_sets.{name}`: {paths:?} hold no document with a word in column `{}`",
                    config.text_column
                );
            }
            sets.push((format!("contaminated_{name}"), index));
        }
        Ok(Decontaminate { sets })
    }
}

impl DocStage for Decontaminate {
    fn check(&self, _: &DocBatch, _: usize, text: &str) -> Option<String> {
        self.sets
            .iter()
            .find(|(_, index)| index.overlap(text).is_some())
            .map(|(reason, _)| reason.clone())
    }
}
