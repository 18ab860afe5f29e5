//! Word splitting shared by the filters.

/// Whitespace-separated tokens that contain at least one alphanumeric character.
/// Pure punctuation tokens (`-`, `...`, `#`) are not words.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
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
