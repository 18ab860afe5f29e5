//! `tokenize`: a map stage counting each document's tokens with a Hugging Face tokenizer
//! (special tokens not added, padding and truncation off). The count is a column of the written shards, the unit of
//! every selector's `budget_tokens`, and the report's kept tokens per source.

use super::DocStage;
use crate::config::tokenize::TokenizeConfig;
use anyhow::{anyhow, Result};
use arrow::array::{ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Field};
use gleaner_storage::reader::DocBatch;
use std::path::Path;
use std::sync::Arc;
use tokenizers::Tokenizer;

/// A loaded tokenizer and the column it fills.
pub struct Tokenize {
    tokenizer: Tokenizer,
    column: String,
}

impl Tokenize {
    /// Loads the tokenizer of `config`; errors name `key.tokenizer` and the file.
    pub fn new(config: &TokenizeConfig, key: &str) -> Result<Self> {
        let mut path = Path::new(&config.tokenizer).to_path_buf();
        if path.is_dir() {
            path = path.join("tokenizer.json");
        }
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| {
            anyhow!(
                "at key `{key}.tokenizer`: {}: not a readable tokenizer.json ({e})",
                path.display()
            )
        })?;
        // Counts are of the text itself: no padding to a fixed length, no truncation.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("at key `{key}.tokenizer`: {e}"))?;
        Ok(Tokenize {
            tokenizer,
            column: config.column.clone(),
        })
    }

    /// Tokens of `text` (0 when the tokenizer fails on it).
    pub fn count(&self, text: &str) -> u64 {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len() as u64)
            .unwrap_or(0)
    }
}

impl DocStage for Tokenize {
    fn check(&self, _: &DocBatch, _: usize, _: &str) -> Option<String> {
        None
    }

    fn output_fields(&self) -> Vec<Field> {
        vec![Field::new(&self.column, DataType::UInt64, true)]
    }

    fn annotate(&self, texts: &[Option<&str>]) -> Vec<ArrayRef> {
        let counts: UInt64Array = texts.iter().map(|t| t.map(|t| self.count(t))).collect();
        vec![Arc::new(counts)]
    }
}
