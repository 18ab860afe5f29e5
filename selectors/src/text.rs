//! Word splitting shared by the filters, dedup and overlap checks.

/// Whitespace-separated tokens that contain at least one alphanumeric character.
/// Pure punctuation tokens (`-`, `...`, `#`) are not words.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
}

/// Lowercase runs of alphanumeric characters: the normalisation under which case,
/// punctuation, whitespace and line wrapping do not matter (overlap checks, MinHash
/// shingles, classifier features).
pub fn normalised_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_skip_punctuation_tokens() {
        let w: Vec<_> = words("Hello , world -- it's 42 ... #").collect();
        assert_eq!(w, ["Hello", "world", "it's", "42"]);
    }
}
