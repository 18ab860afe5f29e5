//! Word and line splitting shared by the filters.

/// Whitespace-separated tokens that contain at least one alphanumeric character.
/// Pure punctuation tokens (`-`, `...`, `#`) are not words.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
}

/// Non-empty lines (trimmed), in order.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Paragraphs: blocks separated by one or more blank lines, trimmed, non-empty.
pub fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let blank = line.trim().is_empty();
        if blank {
            if let Some(s) = start.take() {
                out.push(text[s..end].trim());
            }
        } else {
            if start.is_none() {
                start = Some(offset);
            }
            end = offset + line.len();
        }
        offset += line.len();
    }
    if let Some(s) = start {
        out.push(text[s..end].trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_skip_punctuation_tokens() {
        let w: Vec<_> = words("Hello , world -- it's 42 ... #").collect();
        assert_eq!(w, ["Hello", "world", "it's", "42"]);
    }

    #[test]
    fn paragraphs_split_on_blank_lines() {
        let p = paragraphs("a b\nc\n\n  \nd\n\n\ne f\n");
        assert_eq!(p, ["a b\nc", "d", "e f"]);
        assert!(paragraphs("\n\n").is_empty());
    }
}
