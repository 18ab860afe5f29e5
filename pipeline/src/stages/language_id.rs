//! `language_id`: a map stage that identifies each document's language
//! (`gleaner_selectors::language`), keeps the configured languages (dropping the others as
//! `language_<code>`, or `language_unknown`, and weak detections as `low_language_score`) and
//! adds the code and score as columns of the written shards. Later stages of the same run read
//! the detected language from the document's notes (`c4_badwords` with `language_column`).

use super::{DocNotes, DocStage, Verdict};
use crate::config::language_id::LanguageIdConfig;
use arrow::array::{ArrayRef, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field};
use gleaner_selectors::language::{detect, Detected};
use gleaner_storage::reader::DocBatch;
use std::sync::Arc;

/// The stage of a config, with its slot (the key of its notes).
pub struct LanguageId {
    /// Its settings.
    pub config: LanguageIdConfig,
    /// Its slot in the plan.
    pub slot: usize,
}

impl LanguageId {
    /// Why a document whose detected language is `found` is dropped, if it is.
    fn reason(&self, found: Option<Detected>) -> Option<String> {
        let c = &self.config;
        if !c.languages.is_empty() {
            match found {
                None => return Some("language_unknown".into()),
                Some(d) if !c.languages.iter().any(|l| l == d.code) => {
                    return Some(format!("language_{}", d.code))
                }
                Some(_) => {}
            }
        }
        match found {
            Some(d) if d.score < c.min_score => Some("low_language_score".into()),
            None if c.min_score > 0.0 => Some("low_language_score".into()),
            _ => None,
        }
    }
}

impl DocStage for LanguageId {
    fn check(&self, _: &DocBatch, _: usize, text: &str) -> Option<String> {
        self.reason(detect(text, self.config.max_chars))
    }

    fn judge(&self, _: &DocBatch, _: usize, text: &str, notes: &mut DocNotes) -> Verdict {
        let found = detect(text, self.config.max_chars);
        notes.set_language(self.slot, found.map(|d| d.code));
        match self.reason(found) {
            Some(reason) => Verdict::Drop(reason),
            None => Verdict::Keep,
        }
    }

    fn output_fields(&self) -> Vec<Field> {
        vec![
            Field::new(&self.config.column, DataType::Utf8, true),
            Field::new(&self.config.score_column, DataType::Float64, true),
        ]
    }

    fn annotate(&self, texts: &[Option<&str>]) -> Vec<ArrayRef> {
        let found: Vec<_> = texts
            .iter()
            .map(|t| t.and_then(|t| detect(t, self.config.max_chars)))
            .collect();
        vec![
            Arc::new(
                found
                    .iter()
                    .map(|d| d.map(|d| d.code))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                found
                    .iter()
                    .map(|d| d.map(|d| d.score))
                    .collect::<Float64Array>(),
            ),
        ]
    }
}
