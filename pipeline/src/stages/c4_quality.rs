//! `c4_quality`: the C4 rules (`gleaner_selectors::c4`) as a map stage that rewrites texts:
//! the lines the rules remove are gone from the text later stages see and the shards hold;
//! documents the rules drop get the rule as their reason.

use super::{DocNotes, DocStage, Verdict};
use gleaner_selectors::c4::C4Quality;
use gleaner_storage::reader::DocBatch;

/// The stage with its settings.
pub struct C4(pub C4Quality);

impl DocStage for C4 {
    fn check(&self, _: &DocBatch, _: usize, text: &str) -> Option<String> {
        self.0.apply(text).err().map(String::from)
    }

    fn judge(&self, _: &DocBatch, _: usize, text: &str, _: &mut DocNotes) -> Verdict {
        match self.0.apply(text) {
            Ok(t) if t == text => Verdict::Keep,
            Ok(t) => Verdict::Rewrite(t),
            Err(reason) => Verdict::Drop(reason.into()),
        }
    }

    fn rewrites(&self) -> bool {
        true
    }

    fn rewrite(&self, text: &str) -> Option<String> {
        // Re-reads only see documents the rules kept, so `apply` succeeds for them.
        self.0.apply(text).ok()
    }
}
