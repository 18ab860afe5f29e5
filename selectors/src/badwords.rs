//! C4's bad-words rule (Raffel et al. 2020, as datatrove's `C4BadWordsFilter` applies it): a
//! document is dropped when its lower-cased text holds a word of its language's list of
//! "dirty, naughty, obscene and otherwise bad words" (LDNOOBW) as a whole word: preceded by
//! the start or a character that is not a word character, and followed by the end or one
//! (word characters: letters, digits, `_`). For Japanese, Thai and Chinese, written without
//! spaces, any occurrence counts. A few entries that are common parts of ordinary words in
//! those languages (`sm`, `グロ`, `女の子`, `性`) are left out of every list, as datatrove
//! does. `keep_fraction` keeps that share of the matching documents, each by a draw from its
//! id and the seed (datatrove draws from one random stream in document order, so which ones
//! it keeps depends on how documents are split among workers).
//!
//! A document's language is `language`, or with `language_column` its own value there, as
//! datatrove reads `metadata["language"]`; every list of the folder is then loaded. Values are
//! matched to list names as written, then lower-cased, then by their first subtag (`en-US`,
//! `eng_Latn`), and ISO 639-3 codes (`eng`, `cmn`: what gleaner's `language_id` writes) by
//! their two-letter equivalent (datatrove takes the value as written).

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
    /// The documents' language, the list's name (`en`, `de`, `ja`, ...; datatrove: `en`);
    /// with `language_column`, the language of documents whose value there is null or blank.
    #[serde(default = "default_language")]
    pub language: String,
    /// A string column holding each document's language (nested paths as
    /// `metadata.language`; datatrove reads `metadata["language"]`).
    #[serde(default)]
    pub language_column: Option<String>,
    /// What happens to a document whose language has no list: `keep` (counted as
    /// `unchecked_no_list_<language>`; datatrove with `fail_on_missing_language = False`) or
    /// `drop` (as `no_list_<language>`).
    #[serde(default)]
    pub missing_list: MissingList,
    /// Words added to every language's list.
    #[serde(default)]
    pub extra_words: Vec<String>,
    /// Share of the documents with a bad word that are kept anyway (C4 and datatrove: 0).
    #[serde(default)]
    pub keep_fraction: f64,
    /// Seed of the keep draws (default: `run.seed`).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// What [`BadWords::missing_list`] does with a document whose language has no list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingList {
    /// Keep it, counted.
    #[default]
    Keep,
    /// Drop it.
    Drop,
}

fn default_language() -> String {
    "en".into()
}

/// Entries left out of every list: in languages without spaces they are parts of too many
/// ordinary words (each filtered over 10% of its language's documents in C4).
const ALLOWED: [&str; 4] = ["sm", "グロ", "女の子", "性"];

/// Languages written without spaces, where a bad word counts wherever it occurs.
const NO_WORD_BOUNDARIES: [&str; 3] = ["ja", "th", "zh"];

/// ISO 639-3 (and 639-2/B) codes of the languages LDNOOBW has lists for, with the name of
/// their list.
const THREE_LETTER_CODES: [(&str, &str); 35] = [
    ("ara", "ar"),
    ("ces", "cs"),
    ("cze", "cs"),
    ("dan", "da"),
    ("deu", "de"),
    ("ger", "de"),
    ("eng", "en"),
    ("epo", "eo"),
    ("spa", "es"),
    ("fas", "fa"),
    ("per", "fa"),
    ("pes", "fa"),
    ("fin", "fi"),
    ("tgl", "fil"),
    ("fra", "fr"),
    ("fre", "fr"),
    ("hin", "hi"),
    ("hun", "hu"),
    ("ita", "it"),
    ("jpn", "ja"),
    ("kor", "ko"),
    ("nld", "nl"),
    ("dut", "nl"),
    ("nor", "no"),
    ("nob", "no"),
    ("nno", "no"),
    ("pol", "pl"),
    ("por", "pt"),
    ("rus", "ru"),
    ("swe", "sv"),
    ("tha", "th"),
    ("tur", "tr"),
    ("zho", "zh"),
    ("chi", "zh"),
    ("cmn", "zh"),
];

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

/// The words of the list in `path`: a JSON array when the name ends in `.json`, else one
/// word per line. `None` when there is no such file.
fn read_list_file(path: &Path) -> Result<Option<Vec<String>>, BadWordsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(BadWordsError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| BadWordsError::Read {
                path: path.to_path_buf(),
                message: format!("not a JSON array of strings: {e}"),
            })
    } else {
        Ok(Some(text.lines().map(str::to_string).collect()))
    }
}

/// The list of `language` in `dir`, in whichever layout is there.
fn read_list(dir: &Path, language: &str) -> Result<Vec<String>, BadWordsError> {
    for name in [
        format!("{language}.json"),
        format!("{language}.txt"),
        language.to_string(),
    ] {
        if let Some(words) = read_list_file(&dir.join(name))? {
            return Ok(words);
        }
    }
    Err(BadWordsError::NoList {
        dir: dir.to_path_buf(),
        language: language.to_string(),
    })
}

/// Whether `name` reads as a language tag (`en`, `fil`, `fr-CA-u-sd-caqc`), so that a file
/// of that name (bare, `.json` or `.txt`) is a list; `README` or `LICENSE` are not.
fn is_language_tag(name: &str) -> bool {
    let mut subtags = name.split(['-', '_']);
    let first = subtags.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && subtags.all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The languages `dir` has lists for.
fn list_languages(dir: &Path) -> Result<Vec<String>, BadWordsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BadWordsError::Read {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut languages = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BadWordsError::Read {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name
            .strip_suffix(".json")
            .or_else(|| name.strip_suffix(".txt"))
            .unwrap_or(&name);
        if is_language_tag(stem) && entry.path().is_file() {
            languages.push(stem.to_string());
        }
    }
    languages.sort_unstable();
    languages.dedup();
    Ok(languages)
}

/// One language's words, ready to search.
struct WordList {
    automaton: AhoCorasick,
    whole_words: bool,
}

impl WordList {
    fn new(language: &str, words: Vec<String>, extra: &[String]) -> Self {
        let mut words: Vec<String> = words
            .into_iter()
            .chain(extra.iter().cloned())
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty() && !ALLOWED.contains(&w.as_str()))
            .collect();
        words.sort_unstable();
        words.dedup();
        WordList {
            automaton: AhoCorasick::new(&words).expect("plain strings build an automaton"),
            whole_words: !NO_WORD_BOUNDARIES.contains(&language),
        }
    }

    /// Whether `text`, lower-cased, holds a listed word (as a whole word where the language
    /// separates words).
    fn matches(&self, text: &str) -> bool {
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
}

/// What the rule decides about one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No bad word, or one its keep draw keeps.
    Keep,
    /// Dropped for a bad word.
    Drop,
    /// Its language (as the document gives it) has no list.
    NoList(String),
}

/// The rule with its lists loaded.
pub struct BadWordsFilter {
    /// Lists by language name.
    lists: HashMap<String, WordList>,
    default_language: String,
    keep_fraction: f64,
    seed: u64,
}

/// A word character as Python's `\w` has it: a letter, a digit or `_`.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl BadWordsFilter {
    /// The rule of `settings`, its lists read from `words_dir` (only `language`'s, unless
    /// there is a `language_column`: then every list there) plus `extra_words`; `run_seed`
    /// when the settings have no seed. `language`'s list must exist.
    pub fn new(settings: &BadWords, run_seed: u64) -> Result<Self, BadWordsError> {
        let mut languages = vec![settings.language.clone()];
        if let (Some(dir), Some(_)) = (&settings.words_dir, &settings.language_column) {
            languages.extend(list_languages(dir)?);
        }
        let mut lists = HashMap::new();
        for language in languages {
            if lists.contains_key(&language) {
                continue;
            }
            let words = match &settings.words_dir {
                Some(dir) => read_list(dir, &language)?,
                None => Vec::new(),
            };
            let list = WordList::new(&language, words, &settings.extra_words);
            lists.insert(language, list);
        }
        Ok(BadWordsFilter {
            lists,
            default_language: settings.language.clone(),
            keep_fraction: settings.keep_fraction,
            seed: settings.seed.unwrap_or(run_seed),
        })
    }

    /// Words in the default language's list.
    pub fn len(&self) -> usize {
        self.lists[&self.default_language].automaton.patterns_len()
    }

    /// Whether the default language's list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Languages with a list, sorted.
    pub fn languages(&self) -> Vec<&str> {
        let mut languages: Vec<&str> = self.lists.keys().map(String::as_str).collect();
        languages.sort_unstable();
        languages
    }

    /// The list for a document's language value: as written, lower-cased, its first subtag,
    /// or the two-letter name of an ISO 639-3 code.
    fn list_for(&self, language: &str) -> Option<&WordList> {
        if let Some(list) = self.lists.get(language) {
            return Some(list);
        }
        let lower = language.to_ascii_lowercase();
        let first = lower.split(['-', '_']).next().unwrap_or("");
        for name in [lower.as_str(), first] {
            let list_name = THREE_LETTER_CODES
                .iter()
                .find(|(code, _)| *code == name)
                .map_or(name, |(_, list)| list);
            if let Some(list) = self.lists.get(name).or_else(|| self.lists.get(list_name)) {
                return Some(list);
            }
        }
        None
    }

    /// The decision on document `id` with `text` in `language` (`None`, or blank: the default
    /// language): dropped when it holds a bad word and its draw does not keep it.
    pub fn decide(&self, id: &str, language: Option<&str>, text: &str) -> Decision {
        let language = language
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or(&self.default_language);
        let Some(list) = self.list_for(language) else {
            return Decision::NoList(language.to_string());
        };
        let kept_anyway = || {
            self.keep_fraction > 0.0
                && crate::random::uniform_key(self.seed, id) < self.keep_fraction
        };
        if list.matches(text) && !kept_anyway() {
            Decision::Drop
        } else {
            Decision::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(language: &str, words: &[&str]) -> BadWords {
        BadWords {
            words_dir: None,
            language: language.into(),
            language_column: None,
            missing_list: MissingList::Keep,
            extra_words: words.iter().map(|w| w.to_string()).collect(),
            keep_fraction: 0.0,
            seed: None,
        }
    }

    fn filter(language: &str, words: &[&str]) -> BadWordsFilter {
        BadWordsFilter::new(&settings(language, words), 0).unwrap()
    }

    impl BadWordsFilter {
        fn has_bad_word(&self, text: &str) -> bool {
            self.decide("any", None, text) == Decision::Drop
        }

        fn drops(&self, id: &str, text: &str) -> bool {
            self.decide(id, None, text) == Decision::Drop
        }
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
            keep_fraction: 0.3,
            seed: Some(7),
            ..settings("en", &["ham"])
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
                    ..settings(language, &[])
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

    #[test]
    fn each_document_is_checked_against_its_own_languages_list() {
        let dir =
            std::env::temp_dir().join(format!("gleaner-badwords-langs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("en.json"), r#"["ham"]"#).unwrap();
        std::fs::write(dir.join("de"), "schinken\n").unwrap();
        std::fs::write(dir.join("zh.txt"), "坏词\n").unwrap();
        std::fs::write(dir.join("fr-CA-u-sd-caqc"), "jambon\n").unwrap();
        std::fs::write(dir.join("README"), "not a list\n").unwrap();
        let settings = BadWords {
            words_dir: Some(dir.clone()),
            language_column: Some("lang".into()),
            ..settings("en", &["spam"])
        };
        let all = BadWordsFilter::new(&settings, 0).unwrap();
        assert_eq!(all.languages(), ["de", "en", "fr-CA-u-sd-caqc", "zh"]);
        let decide = |language: Option<&str>, text: &str| all.decide("id", language, text);
        // The default language for a missing or blank value; extra words in every list.
        assert_eq!(decide(None, "green ham"), Decision::Drop);
        assert_eq!(decide(Some(" "), "green ham"), Decision::Drop);
        assert_eq!(decide(Some("de"), "green ham"), Decision::Keep);
        assert_eq!(decide(Some("de"), "Schinken!"), Decision::Drop);
        assert_eq!(decide(Some("de"), "spam"), Decision::Drop);
        // Case, region subtags and ISO 639-3 codes find the list.
        assert_eq!(decide(Some("DE"), "schinken"), Decision::Drop);
        assert_eq!(decide(Some("de-AT"), "schinken"), Decision::Drop);
        assert_eq!(decide(Some("deu"), "schinken"), Decision::Drop);
        assert_eq!(decide(Some("eng_Latn"), "ham"), Decision::Drop);
        assert_eq!(decide(Some("fr-CA-u-sd-caqc"), "du jambon"), Decision::Drop);
        // Chinese matches inside words; English does not.
        assert_eq!(decide(Some("cmn"), "这是坏词语"), Decision::Drop);
        assert_eq!(decide(Some("en"), "hamster"), Decision::Keep);
        assert_eq!(
            decide(Some("it"), "prosciutto"),
            Decision::NoList("it".into())
        );
        assert_eq!(decide(Some("ita"), "ham"), Decision::NoList("ita".into()));
        // Without per-document languages only the default list is loaded.
        let one = BadWordsFilter::new(
            &BadWords {
                language_column: None,
                ..settings.clone()
            },
            0,
        )
        .unwrap();
        assert_eq!(one.languages(), ["en"]);
        // The default language's list must be there.
        let missing = BadWordsFilter::new(
            &BadWords {
                language: "it".into(),
                ..settings.clone()
            },
            0,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(missing.contains("`it`"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
