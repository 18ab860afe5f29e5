//! C4's bad-words rule (Raffel et al. 2020, as datatrove's `C4BadWordsFilter` applies it): a
//! document is dropped when its lower-cased text holds a word of the language's list of
//! "dirty, naughty, obscene and otherwise bad words" (LDNOOBW) as a whole word: preceded by
//! the start or a character that is not a word character, and followed by the end or one
//! (word characters: letters, digits, `_`). For Japanese, Thai and Chinese, written without
//! spaces, any occurrence counts. A few entries that are common parts of ordinary words in
//! those languages (`sm`, `グロ`, `女の子`, `性`) are left out of every list, as datatrove
//! does. `keep_fraction` keeps that share of the matching documents, each by a draw from its
//! id and the seed (datatrove draws from one random stream in document order, so which ones
//! it keeps depends on how documents are split among workers).

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings of the bad-words rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadWords {
    /// A folder of word lists named by language: `<language>.json` (a JSON array, as the
    /// `naughty-words` npm package ships LDNOOBW) or `<language>` / `<language>.txt` (one
    /// word per line, as the LDNOOBW repository has them). `scripts/fetch-assets.sh` puts
    /// LDNOOBW's lists in `.assets/c4_badwords`.
    #[serde(default)]
    pub words_dir: Option<PathBuf>,
    /// The documents' language, the list's name (`en`, `de`, `ja`, ...; datatrove: `en`).
    #[serde(default = "default_language")]
    pub language: String,
    /// Words added to the folder's list.
    #[serde(default)]
    pub extra_words: Vec<String>,
    /// Share of the documents with a bad word that are kept anyway (C4 and datatrove: 0).
    #[serde(default)]
    pub keep_fraction: f64,
    /// Seed of the keep draws (default: `run.seed`).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_language() -> String {
    "en".into()
}

/// Entries left out of every list: in languages without spaces they are parts of too many
/// ordinary words (each filtered over 10% of its language's documents in C4).
const ALLOWED: [&str; 4] = ["sm", "グロ", "女の子", "性"];

/// Languages written without spaces, where a bad word counts wherever it occurs.
const NO_WORD_BOUNDARIES: [&str; 3] = ["ja", "th", "zh"];

/// Why a word list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BadWordsError {
    /// A list file could not be read or parsed.
    #[error("cannot read bad-words list {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The folder has no list for the language.
    #[error("bad-words words_dir {dir} has no list for language `{language}` (looked for {language}.json, {language}.txt and {language})")]
    NoList {
        /// The folder.
        dir: PathBuf,
        /// The language.
        language: String,
    },
}

/// The list of `language` in `dir`, in whichever layout is there.
fn read_list(dir: &Path, language: &str) -> Result<Vec<String>, BadWordsError> {
    let read = |path: PathBuf| -> Result<Option<String>, BadWordsError> {
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BadWordsError::Read {
                path,
                message: e.to_string(),
            }),
        }
    };
    let json = dir.join(format!("{language}.json"));
    if let Some(text) = read(json.clone())? {
        return serde_json::from_str(&text).map_err(|e| BadWordsError::Read {
            path: json,
            message: format!("not a JSON array of strings: {e}"),
        });
    }
    for name in [format!("{language}.txt"), language.to_string()] {
        if let Some(text) = read(dir.join(name))? {
            return Ok(text.lines().map(str::to_string).collect());
        }
    }
    Err(BadWordsError::NoList {
        dir: dir.to_path_buf(),
        language: language.to_string(),
    })
}

/// The rule with its list loaded.
pub struct BadWordsFilter {
    automaton: AhoCorasick,
    whole_words: bool,
    keep_fraction: f64,
    seed: u64,
}

/// A word character as Python's `\w` has it: a letter, a digit or `_`.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl BadWordsFilter {
    /// The rule of `settings`, its list read from `words_dir` and `extra_words`; `run_seed`
    /// when the settings have no seed.
    pub fn new(settings: &BadWords, run_seed: u64) -> Result<Self, BadWordsError> {
        let mut words = match &settings.words_dir {
            Some(dir) => read_list(dir, &settings.language)?,
            None => Vec::new(),
        };
        words.extend(settings.extra_words.iter().cloned());
        let mut words: Vec<String> = words
            .into_iter()
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty() && !ALLOWED.contains(&w.as_str()))
            .collect();
        words.sort_unstable();
        words.dedup();
        Ok(BadWordsFilter {
            automaton: AhoCorasick::new(&words).expect("plain strings build an automaton"),
            whole_words: !NO_WORD_BOUNDARIES.contains(&settings.language.as_str()),
            keep_fraction: settings.keep_fraction,
            seed: settings.seed.unwrap_or(run_seed),
        })
    }

    /// Words in the list.
    pub fn len(&self) -> usize {
        self.automaton.patterns_len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `text`, lower-cased, holds a listed word (as a whole word where the language
    /// separates words).
    pub fn has_bad_word(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        if !self.whole_words {
            return self.automaton.is_match(&lower);
        }
        // Every occurrence, overlapping ones included: a word that fails the boundary test
        // may sit inside a longer listed one that passes it.
        self.automaton.find_overlapping_iter(&lower).any(|m| {
            let before = lower[..m.start()].chars().next_back();
            let after = lower[m.end()..].chars().next();
            !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
        })
    }

    /// Whether document `id` with `text` is dropped: it holds a bad word and its draw does
    /// not keep it.
    pub fn drops(&self, id: &str, text: &str) -> bool {
        self.has_bad_word(text)
            && !(self.keep_fraction > 0.0
                && crate::random::uniform_key(self.seed, id) < self.keep_fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(language: &str, words: &[&str]) -> BadWordsFilter {
        BadWordsFilter::new(
            &BadWords {
                words_dir: None,
                language: language.into(),
                extra_words: words.iter().map(|w| w.to_string()).collect(),
                keep_fraction: 0.0,
                seed: None,
            },
            0,
        )
        .unwrap()
    }

    #[test]
    fn whole_words_only_where_the_language_separates_words() {
        let en = filter("en", &["ham", "junk mail", "sm"]);
        // `sm` is left out of every list.
        assert_eq!(en.len(), 2);
        for (text, found) in [
            ("Green eggs and HAM.", true),
            ("ham", true),
            ("(ham)", true),
            ("hamster", false),
            ("shame", false),
            ("ham_sandwich", false),
            ("ham2", false),
            ("Lots of Junk Mail today", true),
            ("junk mailbox", false),
            ("sm", false),
            ("é ham é", true),
            ("éham", false),
        ] {
            assert_eq!(en.has_bad_word(text), found, "{text:?}");
        }
        let zh = filter("zh", &["坏词"]);
        assert!(zh.has_bad_word("这是坏词语"));
        let ja = filter("ja", &["グロ", "悪語"]);
        assert_eq!(ja.len(), 1);
        assert!(!ja.has_bad_word("グロテスク"));
    }

    #[test]
    fn an_occurrence_failing_the_boundary_test_does_not_hide_a_longer_one() {
        let en = filter("en", &["ham", "hams"]);
        assert!(en.has_bad_word("two hams."));
        assert!(!en.has_bad_word("hamster"));
    }

    #[test]
    fn keep_fraction_keeps_that_share_by_id() {
        let mut settings = BadWords {
            words_dir: None,
            language: "en".into(),
            extra_words: vec!["ham".into()],
            keep_fraction: 0.3,
            seed: Some(7),
        };
        let some = BadWordsFilter::new(&settings, 0).unwrap();
        let kept = (0..10_000)
            .filter(|i| !some.drops(&format!("doc-{i}"), "ham"))
            .count();
        assert!((2_800..3_200).contains(&kept), "{kept}");
        assert!(!some.drops("any", "clean text"));
        settings.keep_fraction = 0.0;
        let none = BadWordsFilter::new(&settings, 0).unwrap();
        assert!((0..1000).all(|i| none.drops(&format!("doc-{i}"), "ham")));
    }

    #[test]
    fn lists_are_read_in_either_layout_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("gleaner-badwords-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("en.json"), r#"["ham", "spam"]"#).unwrap();
        std::fs::write(dir.join("de"), "schinken\n\nwurst\n").unwrap();
        std::fs::write(dir.join("fr.json"), "{not json").unwrap();
        let load = |language: &str| {
            BadWordsFilter::new(
                &BadWords {
                    words_dir: Some(dir.clone()),
                    language: language.into(),
                    extra_words: Vec::new(),
                    keep_fraction: 0.0,
                    seed: None,
                },
                0,
            )
        };
        assert_eq!(load("en").unwrap().len(), 2);
        assert_eq!(load("de").unwrap().len(), 2);
        let bad = load("fr").err().unwrap().to_string();
        assert!(
            bad.contains("fr.json") && bad.contains("JSON array"),
            "{bad}"
        );
        let missing = load("it").err().unwrap().to_string();
        assert!(missing.contains("`it`"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
