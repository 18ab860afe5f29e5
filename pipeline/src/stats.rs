//! Per-stage statistics `{stage, seen, kept, dropped_<reason>}`.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// Counts of one stage: every document it saw was either kept or dropped for a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStats {
    /// Stage name (`input`, `gopher_quality`, ...).
    pub stage: String,
    /// Documents that reached the stage.
    pub seen: u64,
    /// Documents the stage passed on.
    pub kept: u64,
    /// Documents dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Tokens (of the `tokenize` stage's tokenizer) of the documents the stage passed on,
    /// when the pipeline has a tokenize stage.
    pub kept_tokens: Option<u64>,
    /// Documents whose text the stage rewrote (kept with a new text), for stages that
    /// rewrite texts (`c4_quality`, `pii_redact`).
    pub rewritten: Option<u64>,
    /// Documents the stage passed on without judging them, by reason (`no_list_fr`: a
    /// language the stage has no list for); they are among `kept`.
    pub unchecked: BTreeMap<String, u64>,
}

impl StageStats {
    /// Empty counts for `stage`.
    pub fn new(stage: &str) -> Self {
        StageStats {
            stage: stage.to_string(),
            ..Default::default()
        }
    }

    /// Records one dropped document.
    pub fn drop_one(&mut self, reason: &str) {
        self.seen += 1;
        *self.dropped.entry(reason.to_string()).or_default() += 1;
    }

    /// Records one kept document.
    pub fn keep_one(&mut self) {
        self.seen += 1;
        self.kept += 1;
    }

    /// Total dropped.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

impl Serialize for StageStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(
            3 + self.dropped.len()
                + self.unchecked.len()
                + usize::from(self.kept_tokens.is_some())
                + usize::from(self.rewritten.is_some()),
        ))?;
        m.serialize_entry("stage", &self.stage)?;
        m.serialize_entry("seen", &self.seen)?;
        m.serialize_entry("kept", &self.kept)?;
        if let Some(n) = self.rewritten {
            m.serialize_entry("rewritten", &n)?;
        }
        if let Some(t) = self.kept_tokens {
            m.serialize_entry("kept_tokens", &t)?;
        }
        for (reason, n) in &self.unchecked {
            m.serialize_entry(&format!("unchecked_{reason}"), n)?;
        }
        for (reason, n) in &self.dropped {
            m.serialize_entry(&format!("dropped_{reason}"), n)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_flat_with_dropped_prefix() {
        let mut s = StageStats::new("gopher_quality");
        s.keep_one();
        s.drop_one("too_few_words");
        s.drop_one("too_few_words");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"stage":"gopher_quality","seen":3,"kept":1,"dropped_too_few_words":2}"#
        );
        s.unchecked.insert("no_list_fr".into(), 1);
        s.keep_one();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"stage":"gopher_quality","seen":4,"kept":2,"unchecked_no_list_fr":1,"dropped_too_few_words":2}"#
        );
    }
}
