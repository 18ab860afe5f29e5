//! `language_id`: a map stage that identifies each document's language
//! (`gleaner_selectors::language`), keeps the configured languages (dropping the others as
//! `language_<code>`, or `language_unknown`, and weak detections as `low_language_score`) and
//! adds the code and score as columns of the written shards.

use super::DocStage;
use crate::config::language_id::LanguageIdConfig;
use arrow::array::{ArrayRef, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field};
use gleaner_selectors::language::detect;
use gleaner_storage::reader::DocBatch;
use std::sync::Arc;

/// The stage of a config.
pub struct LanguageId(pub LanguageIdConfig);

impl DocStage for LanguageId {
    fn check(&self, _: &DocBatch, _: usize, text: &str) -> Option<String> {
        let c = &self.0;
        let found = detect(text, c.max_chars);
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

    fn output_fields(&self) -> Vec<Field> {
        vec![
            Field::new(&self.0.column, DataType::Utf8, true),
            Field::new(&self.0.score_column, DataType::Float64, true),
        ]
    }

    fn annotate(&self, texts: &[Option<&str>]) -> Vec<ArrayRef> {
        let found: Vec<_> = texts
            .iter()
            .map(|t| t.and_then(|t| detect(t, self.0.max_chars)))
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
