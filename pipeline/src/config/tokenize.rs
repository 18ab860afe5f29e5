//! Settings of the `tokenize` stage.

use super::{StageKind, StageSettings};
use serde::{Deserialize, Serialize};

/// Counts each document's tokens with a Hugging Face `tokenizer.json`: the count goes into a
/// column of the written shards, budgets (`budget_tokens`) and the report use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// Path of a `tokenizer.json` (or of a folder holding one).
    pub tokenizer: String,
    /// Output column of the counts.
    #[serde(default = "default_column")]
    pub column: String,
}

fn default_column() -> String {
    "tokens".into()
}

impl StageSettings for TokenizeConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }
}
