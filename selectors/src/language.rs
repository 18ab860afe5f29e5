//! Language identification with whatlang's embedded trigram models (69 languages, ISO 639-3
//! codes). Only the first `max_chars` characters are read: the models score trigram
//! frequencies, which a few thousand characters settle.

use whatlang::Lang;

/// A detected language and whatlang's confidence in it (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected {
    /// ISO 639-3 code (`eng`, `deu`, `fra`, ...).
    pub code: &'static str,
    /// Confidence in [0, 1].
    pub score: f64,
}

/// Whether `code` is an ISO 639-3 code the models know.
pub fn known(code: &str) -> bool {
    Lang::from_code(code).is_some()
}

/// The language of `text`'s first `max_chars` characters, if any is detected.
pub fn detect(text: &str, max_chars: usize) -> Option<Detected> {
    let end = text
        .char_indices()
        .nth(max_chars)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    whatlang::detect(&text[..end]).map(|info| Detected {
        code: info.lang().code(),
        score: info.confidence(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_texts_get_their_language_and_codes_are_checked() {
        let en = "The committee will meet on Thursday to discuss the budget for the next year, and every member is expected to attend.";
        let de = "Der Ausschuss trifft sich am Donnerstag, um den Haushalt für das nächste Jahr zu besprechen, und jedes Mitglied wird erwartet.";
        let fr = "Le comité se réunira jeudi pour discuter du budget de l'année prochaine, et chaque membre est tenu d'y assister.";
        assert_eq!(detect(en, 2000).unwrap().code, "eng");
        assert_eq!(detect(de, 2000).unwrap().code, "deu");
        assert_eq!(detect(fr, 2000).unwrap().code, "fra");
        assert!(detect(en, 2000).unwrap().score > 0.5);
        // Only the first characters are read: a French tail after 100 English ones.
        let mixed = format!("{}{}", &en[..100], fr.repeat(5));
        assert_eq!(detect(&mixed, 100).unwrap().code, "eng");
        assert!(detect("", 100).is_none());
        assert!(known("eng") && known("deu") && !known("xx") && !known("english"));
    }
}
