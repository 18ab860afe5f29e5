//! The C4 rules (Raffel et al. 2020, as datatrove's `C4QualityFilter` applies them): lines
//! without terminal punctuation, with fewer than 3 words, with a word over 1000 characters,
//! mentioning javascript or a cookie/terms-of-use phrase are removed; a document with
//! "lorem ipsum" or a curly bracket in a kept line, or with fewer than 5 sentences left, is
//! dropped. The kept lines, trimmed and joined by newlines, are the new text.

use serde::{Deserialize, Serialize};

/// Phrases of cookie banners and legal boilerplate (a line with one is removed).
pub const POLICY_PHRASES: [&str; 6] = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
];

/// The C4 rules' settings (defaults: the paper's and datatrove's). A rule switched off with
/// `false` or `None` is not applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C4Quality {
    /// Remove `[1]`, `[edit]` and `[citation needed]` marks from lines.
    pub remove_citations: bool,
    /// Remove lines not ending in `.`, `?`, `!`, `"` or `'` (or ending in `...`).
    pub filter_no_terminal_punct: bool,
    /// Drop documents with fewer sentences left.
    pub min_num_sentences: Option<usize>,
    /// Remove lines with fewer whitespace-separated words.
    pub min_words_per_line: Option<usize>,
    /// Remove lines with a longer word (characters).
    pub max_word_length: Option<usize>,
    /// Drop documents with "lorem ipsum" in a kept line.
    pub filter_lorem_ipsum: bool,
    /// Remove lines mentioning "javascript".
    pub filter_javascript: bool,
    /// Drop documents with `{` in a kept line.
    pub filter_curly_bracket: bool,
    /// Remove lines with a cookie or terms-of-use phrase.
    pub filter_policy: bool,
}

impl Default for C4Quality {
    fn default() -> Self {
        C4Quality {
            remove_citations: true,
            filter_no_terminal_punct: true,
            min_num_sentences: Some(5),
            min_words_per_line: Some(3),
            max_word_length: Some(1000),
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
        }
    }
}

/// `line` without citation marks: `[` digits `]`, `[edit]`, `[citation needed]`.
fn without_citations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let close = tail.find(']');
        let mark = close.map(|c| &tail[..=c]);
        match mark {
            Some(m)
                if m == "[edit]"
                    || m == "[citation needed]"
                    || m[1..m.len() - 1].bytes().all(|b| b.is_ascii_digit()) =>
            {
                rest = &tail[m.len()..];
            }
            _ => {
                out.push('[');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Sentences in a line: runs ending at `.`, `!` or `?` followed by whitespace or the end of
/// the line, plus a final run without one (a simple splitter where datatrove uses NLTK's
/// Punkt, which also knows abbreviations).
pub fn sentences(line: &str) -> usize {
    let chars: Vec<char> = line.chars().collect();
    let mut count = 0;
    let mut in_sentence = false;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_whitespace() {
            in_sentence = true;
        }
        let ends =
            matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if ends && in_sentence {
            count += 1;
            in_sentence = false;
        }
    }
    count + usize::from(in_sentence)
}

impl C4Quality {
    /// The document's text after the line rules, or the reason it is dropped.
    pub fn apply(&self, text: &str) -> Result<String, &'static str> {
        let mut kept: Vec<String> = Vec::new();
        let mut n_sentences = 0;
        for raw in text.lines() {
            let line = raw.trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            if self
                .max_word_length
                .is_some_and(|m| words.iter().any(|w| w.chars().count() > m))
            {
                continue;
            }
            let line = if self.remove_citations {
                without_citations(line)
            } else {
                line.to_string()
            };
            let terminal = line.ends_with(['.', '?', '!', '"', '\'']) && !line.ends_with("...");
            if self.filter_no_terminal_punct && !terminal {
                continue;
            }
            if self.min_words_per_line.is_some_and(|m| words.len() < m) {
                continue;
            }
            let lower = line.to_lowercase();
            if self.filter_lorem_ipsum && lower.contains("lorem ipsum") {
                return Err("lorem_ipsum");
            }
            if self.filter_javascript && lower.contains("javascript") {
                continue;
            }
            if self.filter_curly_bracket && line.contains('{') {
                return Err("curly_bracket");
            }
            if self.filter_policy && POLICY_PHRASES.iter().any(|p| lower.contains(p)) {
                continue;
            }
            n_sentences += sentences(&line);
            kept.push(line);
        }
        if self.min_num_sentences.is_some_and(|m| n_sentences < m) {
            return Err("too_few_sentences");
        }
        Ok(kept.join("\n").trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "The river rose overnight. Farmers moved their cattle to higher ground.";

    #[test]
    fn line_rules_remove_lines_and_document_rules_drop_documents() {
        let c4 = C4Quality::default();
        let text = format!(
            "Menu\n{GOOD}\nEnable JavaScript to see this page.\nWe use cookies to improve it.\n  The river rose overnight.[12] Farmers moved their cattle to higher ground.  \nToo short.\nRead more...\n{GOOD}"
        );
        // Kept: the three GOOD lines (2 sentences each, 6 >= 5), the citation removed.
        assert_eq!(c4.apply(&text).unwrap(), format!("{GOOD}\n{GOOD}\n{GOOD}"));
        // Two GOOD lines are 4 sentences: too few.
        assert_eq!(
            c4.apply(&format!("{GOOD}\n{GOOD}")),
            Err("too_few_sentences")
        );
        let five = format!("{GOOD}\n{GOOD}\nOne more sentence here.");
        assert!(c4.apply(&five).is_ok());
        // Document rules only look at lines that survive the line rules.
        assert_eq!(
            c4.apply(&format!("{five}\nLorem ipsum dolor sit amet.")),
            Err("lorem_ipsum")
        );
        assert_eq!(
            c4.apply(&format!("{five}\nThe set {{a, b}} is small.")),
            Err("curly_bracket")
        );
        assert!(c4.apply(&format!("{five}\nfn main() {{")).is_ok());
        // A word over 1000 characters removes its line.
        let long = format!("{five}\nA {} word.", "x".repeat(1001));
        assert_eq!(c4.apply(&long).unwrap(), five);
        // Rules switched off.
        let lax = C4Quality {
            min_num_sentences: None,
            filter_no_terminal_punct: false,
            ..C4Quality::default()
        };
        assert_eq!(
            lax.apply("no punctuation at all here").unwrap(),
            "no punctuation at all here"
        );
    }

    #[test]
    fn citations_and_sentences_by_hand() {
        assert_eq!(
            without_citations("a[1] b[edit] c[citation needed] d[x] e[]"),
            "a b c d[x] e"
        );
        assert_eq!(sentences("One. Two! Three? Four"), 4);
        assert_eq!(sentences("Version 3.5 is out."), 1);
        assert_eq!(sentences(""), 0);
    }
}
