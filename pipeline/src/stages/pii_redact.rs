//! `pii_redact`: email and IPv4 address redaction (`gleaner_selectors::pii`) as a map stage
//! that rewrites texts. It drops nothing; later stages and the shards see the redacted text.

use super::{DocNotes, DocStage, Verdict};
use gleaner_selectors::pii::PiiRedaction;
use gleaner_storage::reader::DocBatch;
use std::borrow::Cow;

/// The stage with its settings.
pub struct PiiRedact(pub PiiRedaction);

impl DocStage for PiiRedact {
    fn check(&self, _: &DocBatch, _: usize, _: &str) -> Option<String> {
        None
    }

    fn judge(&self, _: &DocBatch, _: usize, text: &str, _: &mut DocNotes) -> Verdict {
        match self.rewrite(text) {
            Some(t) => Verdict::Rewrite(t),
            None => Verdict::Keep,
        }
    }

    fn rewrites(&self) -> bool {
        true
    }

    fn rewrite(&self, text: &str) -> Option<String> {
        match self.0.redact(text).0 {
            Cow::Owned(t) => Some(t),
            Cow::Borrowed(_) => None,
        }
    }
}
