//! `decontaminate`: a map stage that drops documents copying an evaluation document (the
//! same normalised text, or a shared run of `ngram` normalised words), naming the evaluation
//! set in the drop reason, so the report lists hits and example ids per set; or, with
//! `action = "flag"`, keeps every document and names the copied set in an output column.

use super::DocStage;
use crate::config::decontaminate::{DecontaminateAction, DecontaminateConfig};
use anyhow::{Context, Result};
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field};
use gleaner_selectors::overlap::EvaluationIndex;
use gleaner_storage::reader::{for_each_text, DocBatch};
use std::sync::Arc;

/// The evaluation sets, indexed.
pub struct Decontaminate {
    /// (set name, index) per set, in set-name order.
    sets: Vec<(String, EvaluationIndex)>,
    /// The output column when copies are flagged instead of dropped.
    flag_column: Option<String>,
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
            sets.push((name.clone(), index));
        }
        let flag_column =
            (config.action == DecontaminateAction::Flag).then(|| config.flag_column.clone());
        Ok(Decontaminate { sets, flag_column })
    }

    /// The name of the first set (in name order) `text` copies.
    fn copied_set(&self, text: &str) -> Option<&str> {
        self.sets
            .iter()
            .find(|(_, index)| index.overlap(text).is_some())
            .map(|(name, _)| name.as_str())
    }
}

impl DocStage for Decontaminate {
    fn check(&self, _: &DocBatch, _: usize, text: &str) -> Option<String> {
        if self.flag_column.is_some() {
            return None;
        }
        self.copied_set(text)
            .map(|set| format!("contaminated_{set}"))
    }

    fn output_fields(&self) -> Vec<Field> {
        self.flag_column
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect()
    }

    fn annotate(&self, texts: &[Option<&str>]) -> Vec<ArrayRef> {
        if self.flag_column.is_none() {
            return Vec::new();
        }
        let sets: StringArray = texts
            .iter()
            .map(|t| t.and_then(|t| self.copied_set(t)))
            .collect();
        vec![Arc::new(sets)]
    }
}
