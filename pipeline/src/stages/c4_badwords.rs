//! `c4_badwords`: C4's bad-words rule (`gleaner_selectors::badwords`) as a map stage; a
//! document holding a listed word is dropped as `bad_words` (unless its keep draw keeps it).

use super::DocStage;
use gleaner_selectors::badwords::{BadWords, BadWordsFilter};
use gleaner_storage::reader::DocBatch;

/// The rule with its list loaded.
pub struct C4Badwords(BadWordsFilter);

impl C4Badwords {
    /// Loads the list of `settings` (errors name the list and the stage `key`); `seed` draws
    /// which documents `keep_fraction` keeps.
    pub fn new(settings: &BadWords, seed: u64, key: &str) -> anyhow::Result<Self> {
        let filter = BadWordsFilter::new(settings, seed)
            .map_err(|e| anyhow::anyhow!("at key `{key}`: {e}"))?;
        tracing::info!(
            "{key} (c4_badwords): {} words for language `{}`",
            filter.len(),
            settings.language
        );
        Ok(C4Badwords(filter))
    }
}

impl DocStage for C4Badwords {
    fn check(&self, batch: &DocBatch, i: usize, text: &str) -> Option<String> {
        self.0
            .drops(&batch.id(i), text)
            .then(|| "bad_words".to_string())
    }
}
