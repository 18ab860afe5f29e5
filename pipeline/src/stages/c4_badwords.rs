//! `c4_badwords`: C4's bad-words rule (`gleaner_selectors::badwords`) as a map stage; a
//! document holding a listed word is dropped as `bad_words` (unless its keep draw keeps it).
//! With `language_column`, each document is checked against its own language's list: the
//! language an earlier `language_id` stage of the run detected when that stage writes the
//! column, else the input's column. One in a language without a list is kept and counted as
//! `unchecked_no_list_<language>`, or with `missing_list = "drop"` dropped as
//! `no_list_<language>`.

use super::{DocNotes, DocStage, Verdict};
use gleaner_selectors::badwords::{BadWords, BadWordsFilter, Decision, MissingList};
use gleaner_storage::reader::DocBatch;

/// Where a document's language comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LanguageFrom {
    /// A string column of the input, by its position in the batch.
    Column(usize),
    /// The notes of the `language_id` stage in this slot.
    Stage(usize),
}

/// The rule with its lists loaded and its language source resolved.
pub struct C4Badwords {
    filter: BadWordsFilter,
    language: Option<LanguageFrom>,
    missing_list: MissingList,
}

impl C4Badwords {
    /// Loads the lists of `settings` (errors name the list and the stage `key`); `seed` draws
    /// which documents `keep_fraction` keeps; `language` is where `language_column` resolved.
    pub fn new(
        settings: &BadWords,
        language: Option<LanguageFrom>,
        seed: u64,
        key: &str,
    ) -> anyhow::Result<Self> {
        let filter = BadWordsFilter::new(settings, seed)
            .map_err(|e| anyhow::anyhow!("at key `{key}`: {e}"))?;
        tracing::info!(
            "{key} (c4_badwords): {} words for language `{}`; lists for {}",
            filter.len(),
            settings.language,
            filter.languages().join(", ")
        );
        Ok(C4Badwords {
            filter,
            language,
            missing_list: settings.missing_list,
        })
    }
}

impl DocStage for C4Badwords {
    fn check(&self, batch: &DocBatch, i: usize, text: &str) -> Option<String> {
        match self.judge(batch, i, text, &mut DocNotes::default()) {
            Verdict::Drop(reason) => Some(reason),
            _ => None,
        }
    }

    fn judge(&self, batch: &DocBatch, i: usize, text: &str, notes: &mut DocNotes) -> Verdict {
        let language = match self.language {
            Some(LanguageFrom::Column(c)) => batch.string(c, i),
            Some(LanguageFrom::Stage(slot)) => notes.language(slot),
            None => None,
        };
        match self.filter.decide(&batch.id(i), language, text) {
            Decision::Keep => Verdict::Keep,
            Decision::Drop => Verdict::Drop("bad_words".into()),
            Decision::NoList(language) => match self.missing_list {
                MissingList::Keep => Verdict::Unchecked(format!("no_list_{language}")),
                MissingList::Drop => Verdict::Drop(format!("no_list_{language}")),
            },
        }
    }
}
