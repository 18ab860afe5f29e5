//! Settings of the `decontaminate` stage.

use super::{StageContext, StageKind, StageSettings};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Drops documents that copy evaluation documents: the same normalised text, or a shared run
/// of `ngram` normalised words (lowercase alphanumeric words, so case, punctuation,
/// whitespace and line re-wrapping do not hide a copy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecontaminateConfig {
    /// Evaluation sets by name: parquet/JSONL files, directories or globs. A document that
    /// copies one is dropped as `contaminated_<name>` (the first matching set in name order).
    pub eval_sets: BTreeMap<String, Vec<String>>,
    /// Text column of the evaluation sets.
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// Words per shared run (13: the GPT-3 study's n-gram).
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// `drop` the copies, or `flag` them: keep every document and write the name of the set
    /// it copies (null when none) into the output column `flag_column`.
    #[serde(default)]
    pub action: DecontaminateAction,
    /// Output column of `action = "flag"`.
    #[serde(default = "default_flag_column")]
    pub flag_column: String,
}

/// What `decontaminate` does with a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecontaminateAction {
    /// Drop it as `contaminated_<set>`.
    #[default]
    Drop,
    /// Keep it and name the set in a column.
    Flag,
}

fn default_flag_column() -> String {
    "contaminated".into()
}

fn default_text_column() -> String {
    "text".into()
}

fn default_ngram() -> usize {
    gleaner_selectors::overlap::SHINGLE_WORDS
}

impl StageSettings for DecontaminateConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        if self.eval_sets.is_empty() {
            bail!("at key `{key}.eval_sets`: name at least one evaluation set (`name = [paths]`)");
        }
        for (name, paths) in &self.eval_sets {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!("at key `{key}.eval_sets.{name}`: set names use letters, digits, `_` and `-` (they name drop reasons and folders)");
            }
            if paths.is_empty() {
                bail!("at key `{key}.eval_sets.{name}`: at least one path is required");
            }
        }
        if self.ngram == 0 {
            bail!("at key `{key}.ngram`: must be at least 1");
        }
        Ok(())
    }
}
