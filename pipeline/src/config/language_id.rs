//! Settings of the `language_id` stage.

use super::{StageContext, StageKind, StageSettings};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Identifies each document's language (whatlang's embedded models), writes it and its score
/// as two columns of the output shards, and keeps the listed languages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageIdConfig {
    /// ISO 639-3 codes to keep (`eng`, `deu`, `fra`, ...); empty keeps every language and
    /// only annotates.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Documents whose language score is lower are dropped as `low_language_score`.
    #[serde(default)]
    pub min_score: f64,
    /// Characters read per document.
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
    /// Output column of the language code (null when none is detected).
    #[serde(default = "default_column")]
    pub column: String,
    /// Output column of the score.
    #[serde(default = "default_score_column")]
    pub score_column: String,
}

fn default_max_chars() -> usize {
    2000
}
fn default_column() -> String {
    "lang".into()
}
fn default_score_column() -> String {
    "lang_score".into()
}

impl StageSettings for LanguageIdConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        for (i, code) in self.languages.iter().enumerate() {
            if !gleaner_selectors::language::known(code) {
                bail!("at key `{key}.languages[{i}]`: `{code}` is not an ISO 639-3 code the language models know (e.g. eng, deu, fra, spa, cmn, rus)");
            }
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            bail!(
                "at key `{key}.min_score`: {} is outside [0, 1]",
                self.min_score
            );
        }
        super::positive(key, "max_chars", self.max_chars)?;
        if self.column == self.score_column {
            bail!("at key `{key}.score_column`: must differ from `column`");
        }
        Ok(())
    }
}
