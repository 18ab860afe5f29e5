//! `score_filter`: keeps documents whose numeric column lies in `[min, max]` (e.g. a
//! perplexity range on an lm_score column).

use super::columns::Columns;
use super::DocStage;
use crate::config::ScoreFilterConfig;
use gleaner_storage::reader::DocBatch;

/// The range filter on one numeric column.
pub struct ScoreFilter {
    column: usize,
    config: ScoreFilterConfig,
}

impl ScoreFilter {
    /// The filter of `config`, its column resolved in `columns`.
    pub fn new(config: &ScoreFilterConfig, columns: &Columns) -> Self {
        ScoreFilter {
            column: columns.score(&config.score_column),
            config: config.clone(),
        }
    }
}

impl DocStage for ScoreFilter {
    fn check(&self, batch: &DocBatch, i: usize, _: &str) -> Option<String> {
        let c = &self.config;
        match batch.score(self.column, i) {
            None if c.keep_missing => None,
            None => Some("no_score".into()),
            Some(v) if c.min.is_some_and(|m| v < m) => Some("score_below_min".into()),
            Some(v) if c.max.is_some_and(|m| v > m) => Some("score_above_max".into()),
            Some(_) => None,
        }
    }
}
