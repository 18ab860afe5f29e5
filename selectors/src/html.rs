//! Main-text extraction from HTML pages, as datatrove's `Trafilatura` extractor runs it:
//! trafilatura's extraction (here its Rust port, through go-trafilatura) with precision
//! favoured, comments left out, tables kept and the fallback extractors on, as plain text.
//!
//! A page whose main text cannot be found gives no text, and the document is dropped (as in
//! datatrove). One difference: trafilatura's duplicate-segment check (a text segment seen
//! more than twice is dropped) counts segments within each page here. In datatrove its cache
//! runs on across the pages a worker extracts, so its output depends on how the corpus is
//! split among workers; here a page's text depends on that page alone.

use serde::{Deserialize, Serialize};
use trafilatura::{ExtractionFocus, Options};

/// The settings of HTML extraction (defaults: datatrove's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HtmlExtraction {
    /// Prefer less text that is surely main content over more text with some boilerplate.
    pub favor_precision: bool,
    /// Keep the text of tables.
    pub include_tables: bool,
    /// Drop text segments repeated more than twice within a page.
    pub deduplicate: bool,
    /// When the main pass finds too little text, try the readability and jusText passes.
    pub fallback: bool,
}

impl Default for HtmlExtraction {
    fn default() -> Self {
        HtmlExtraction {
            favor_precision: true,
            include_tables: true,
            deduplicate: true,
            fallback: true,
        }
    }
}

/// Why a page gives no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoText {
    /// No main text was found.
    NoMainText,
    /// The extractor failed on the page (its DOM was too large, or the extractor broke).
    ExtractorError,
}

impl NoText {
    /// The drop reason's name.
    pub fn reason(self) -> &'static str {
        match self {
            NoText::NoMainText => "no_main_text",
            NoText::ExtractorError => "extractor_error",
        }
    }
}

impl HtmlExtraction {
    fn options(&self) -> Options {
        let mut options = Options::default()
            .with_fallback(self.fallback)
            .with_exclude_comments(true)
            .with_exclude_tables(!self.include_tables)
            .with_deduplicate(self.deduplicate);
        if self.favor_precision {
            options = options.with_focus(ExtractionFocus::FavorPrecision);
        }
        options
    }

    /// The main text of `html`, or why there is none.
    pub fn extract(&self, html: &str) -> Result<String, NoText> {
        let options = self.options();
        // A page that breaks the extractor must not stop the run: it is dropped with its
        // reason, as datatrove drops a page whose extraction raised.
        let result = std::panic::catch_unwind(|| trafilatura::extract(html, &options));
        match result {
            Ok(Ok(extracted)) => {
                let text = text_lines(&extracted.content_html);
                if text.is_empty() {
                    Err(NoText::NoMainText)
                } else {
                    Ok(text)
                }
            }
            Ok(Err(trafilatura::TrafilaturaError::InsufficientContent { .. })) => {
                Err(NoText::NoMainText)
            }
            Ok(Err(_)) | Err(_) => Err(NoText::ExtractorError),
        }
    }
}

/// Elements that start and end a line of text.
const BLOCKS: [&str; 31] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
    "ul",
];

/// Text laid out in lines: outside code blocks runs of white space are one space and lines
/// are trimmed; empty lines are left out.
#[derive(Default)]
struct Lines {
    done: Vec<String>,
    line: String,
}

impl Lines {
    /// Text outside code blocks: its line breaks end lines (as trafilatura keeps them), other
    /// runs of white space are one space.
    fn push(&mut self, text: &str) {
        for (k, source_line) in text.split('\n').enumerate() {
            if k > 0 {
                self.end_line();
            }
            for (j, word) in source_line.split(char::is_whitespace).enumerate() {
                if j > 0 && !self.line.ends_with(' ') {
                    self.line.push(' ');
                }
                self.line.push_str(word);
            }
        }
    }

    /// Text of a code block: its lines as they are.
    fn push_verbatim(&mut self, text: &str) {
        for (k, piece) in text.split('\n').enumerate() {
            if k > 0 {
                self.end_verbatim_line();
            }
            self.line.push_str(piece);
        }
    }

    fn end_verbatim_line(&mut self) {
        if !self.line.trim().is_empty() {
            self.done.push(std::mem::take(&mut self.line));
        }
        self.line.clear();
    }

    fn end_line(&mut self) {
        let line = self.line.trim();
        if !line.is_empty() {
            self.done.push(line.to_string());
        }
        self.line.clear();
    }

    fn finish(mut self) -> String {
        self.end_line();
        self.done.join("\n")
    }
}

/// Lays extracted HTML out as trafilatura's plain-text output does: each heading, paragraph,
/// list item, quote and table row on its own line, list items marked `- `, table cells
/// separated by ` | `, code blocks with their line breaks, inline markup joined into its line.
fn text_lines(html: &str) -> String {
    let fragment = scraper::Html::parse_fragment(html);
    let mut lines = Lines::default();
    lay_out(*fragment.root_element(), false, &mut lines);
    lines.finish()
}

fn lay_out(node: ego_tree::NodeRef<'_, scraper::Node>, verbatim: bool, out: &mut Lines) {
    match node.value() {
        scraper::Node::Text(text) => {
            if verbatim {
                out.push_verbatim(&text.text);
            } else {
                out.push(&text.text);
            }
        }
        scraper::Node::Element(element) => {
            let name = element.name();
            if matches!(name, "script" | "style" | "template") {
                return;
            }
            if name == "br" {
                out.end_line();
                return;
            }
            let block = BLOCKS.contains(&name);
            if block {
                out.end_line();
            }
            match name {
                "li" | "dt" | "dd" => out.line.push_str("- "),
                "td" | "th" if node.prev_siblings().all(|s| !s.value().is_element()) => {
                    out.line.push_str("| ")
                }
                _ => {}
            }
            let code_block = !verbatim
                && (name == "pre"
                    || (name == "code"
                        && node
                            .descendants()
                            .any(|d| d.value().as_text().is_some_and(|t| t.contains('\n')))));
            if code_block {
                out.end_line();
            }
            for child in node.children() {
                lay_out(child, verbatim || code_block, out);
            }
            match name {
                "td" | "th" => out.line.push_str(" | "),
                _ if code_block => out.end_verbatim_line(),
                _ if block && !verbatim => out.end_line(),
                _ => {}
            }
        }
        _ => {
            for child in node.children() {
                lay_out(child, verbatim, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTICLE: &str = "<html><head><title>Tides</title></head><body>\
        <nav><a href='/'>Home</a> <a href='/about'>About us</a> <a href='/shop'>Shop</a></nav>\
        <article><h1>How tides work</h1>\
        <p>The Moon's gravity pulls on the oceans, and the water on the side of the Earth \
        facing the Moon bulges towards it. A second bulge forms on the far side.</p>\
        <p>As the Earth turns, a coast passes through both bulges each day, which is why \
        most places see two high tides and two low tides roughly every twenty-five hours.</p>\
        <p>The Sun adds a smaller pull. When Sun and Moon line up the tides are largest, \
        and when they pull at right angles the tides are smallest.</p></article>\
        <footer>Copyright 2024 Example Ltd. All rights reserved.</footer></body></html>";

    #[test]
    fn the_article_is_kept_and_the_navigation_and_footer_are_not() {
        let text = HtmlExtraction::default().extract(ARTICLE).unwrap();
        assert!(
            text.contains("The Moon's gravity pulls on the oceans"),
            "{text}"
        );
        assert!(text.contains("tides are smallest."), "{text}");
        for boilerplate in ["About us", "Copyright 2024", "<p>"] {
            assert!(!text.contains(boilerplate), "{boilerplate} in {text}");
        }
    }

    #[test]
    fn a_page_without_main_text_gives_none() {
        let html = "<html><body><nav><a href='/'>Home</a></nav></body></html>";
        assert_eq!(
            HtmlExtraction::default().extract(html),
            Err(NoText::NoMainText)
        );
        assert_eq!(
            HtmlExtraction::default().extract(""),
            Err(NoText::NoMainText)
        );
    }
}
