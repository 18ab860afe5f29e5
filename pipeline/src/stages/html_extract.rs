//! `html_extract`: the main text of HTML pages (`gleaner_selectors::html`) as a map stage that
//! rewrites texts: later stages and the shards see the extracted text; a page without main
//! text is dropped (`no_main_text`, or `extractor_error` when the extractor failed on it).

use super::{DocNotes, DocStage, Verdict};
use gleaner_selectors::html::HtmlExtraction;
use gleaner_storage::reader::DocBatch;

/// The stage with its settings.
pub struct HtmlExtract(pub HtmlExtraction);

impl DocStage for HtmlExtract {
    fn check(&self, _: &DocBatch, _: usize, html: &str) -> Option<String> {
        self.0.extract(html).err().map(|e| e.reason().to_string())
    }

    fn judge(&self, _: &DocBatch, _: usize, html: &str, _: &mut DocNotes) -> Verdict {
        match self.0.extract(html) {
            Ok(text) => Verdict::Rewrite(text),
            Err(e) => Verdict::Drop(e.reason().to_string()),
        }
    }

    fn rewrites(&self) -> bool {
        true
    }

    fn rewrite(&self, html: &str) -> Option<String> {
        // Re-reads only see pages the scan kept, whose extraction gave text.
        self.0.extract(html).ok()
    }

    fn rewrite_is_costly(&self) -> bool {
        true
    }
}
