//! `url_filter`: drops pages by their URL (`gleaner_selectors::url`): blocked domains and
//! URLs, banned words and subwords, as in the FineWeb recipe. A page without a URL is
//! dropped as `no_url`.

use super::columns::Columns;
use super::DocStage;
use gleaner_selectors::url::{UrlFilter as Filter, UrlFiltering};
use gleaner_storage::reader::DocBatch;

/// The filter with its lists loaded and its URL column resolved.
pub struct UrlFilter {
    column: usize,
    filter: Filter,
}

impl UrlFilter {
    /// Loads the lists of `settings` (errors name the list file and the stage `key`).
    pub fn new(settings: &UrlFiltering, columns: &Columns, key: &str) -> anyhow::Result<Self> {
        let filter = Filter::new(settings).map_err(|e| anyhow::anyhow!("at key `{key}`: {e}"))?;
        let [domains, urls, words, subwords, soft] = filter.list_sizes();
        tracing::info!(
            "{key} (url_filter): {domains} domains, {urls} URLs, {words} banned words, \
             {subwords} banned subwords, {soft} soft-banned words"
        );
        Ok(UrlFilter {
            column: columns.string(&settings.url_column),
            filter,
        })
    }
}

impl DocStage for UrlFilter {
    fn check(&self, batch: &DocBatch, i: usize, _: &str) -> Option<String> {
        match batch.string(self.column, i) {
            Some(url) if !url.trim().is_empty() => self.filter.check(url).map(String::from),
            _ => Some("no_url".into()),
        }
    }
}
