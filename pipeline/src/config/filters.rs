//! The settings of the rule stages whose types live in `gleaner_selectors`: the Gopher, C4 and
//! FineWeb rules, C4's bad words, PII redaction, HTML extraction, URL filtering and exact
//! dedup's normalisation.

use super::*;

impl StageSettings for GopherQuality {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        cx.ratio(
            "max_symbol_word_ratio",
            self.max_symbol_word_ratio.map(|x| x.min(1.0)),
        )?;
        cx.ratio("max_bullet_lines_ratio", self.max_bullet_lines_ratio)?;
        cx.ratio("max_ellipsis_lines_ratio", self.max_ellipsis_lines_ratio)?;
        cx.ratio("min_alpha_words_ratio", self.min_alpha_words_ratio)?;
        if let (Some(lo), Some(hi)) = (self.min_words, self.max_words) {
            if lo > hi {
                bail!(
                    "at key `{}.min_words`: {lo} is above max_words {hi}",
                    cx.key
                );
            }
        }
        Ok(())
    }
}

impl StageSettings for GopherRepetition {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        cx.ratio("max_dup_line_frac", self.max_dup_line_frac)?;
        cx.ratio("max_dup_para_frac", self.max_dup_para_frac)?;
        cx.ratio("max_dup_line_char_frac", self.max_dup_line_char_frac)?;
        cx.ratio("max_dup_para_char_frac", self.max_dup_para_char_frac)?;
        for (name, list) in [
            ("top_ngram_max_frac", &self.top_ngram_max_frac),
            ("dup_ngram_max_frac", &self.dup_ngram_max_frac),
        ] {
            for &(n, f) in list {
                if n == 0 {
                    bail!("at key `{}.{name}`: n-gram size must be at least 1", cx.key);
                }
                cx.ratio(name, Some(f))?;
            }
        }
        Ok(())
    }
}

impl StageSettings for gleaner_selectors::c4::C4Quality {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        cx.rewrites_text("c4_quality")
    }
}

impl StageSettings for gleaner_selectors::fineweb::FineWebQuality {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        cx.ratio("min_line_punct_ratio", self.min_line_punct_ratio)?;
        cx.ratio("max_short_line_ratio", self.max_short_line_ratio)?;
        cx.ratio("max_char_dup_ratio", self.max_char_dup_ratio)?;
        if let Some(x) = self.max_newline_word_ratio.filter(|x| *x < 0.0) {
            bail!("at key `{}.max_newline_word_ratio`: {x} is below 0", cx.key);
        }
        Ok(())
    }
}

impl StageSettings for gleaner_selectors::pii::PiiRedaction {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        if !self.emails && !self.ips {
            bail!(
                "at key `{}` (pii_redact): emails and ips are both false, so the stage would replace nothing",
                cx.key
            );
        }
        for (name, on, list) in [
            ("email_replacements", self.emails, &self.email_replacements),
            ("ip_replacements", self.ips, &self.ip_replacements),
        ] {
            if on && list.is_empty() {
                bail!(
                    "at key `{}.{name}`: the list is empty; give at least one placeholder",
                    cx.key
                );
            }
        }
        cx.rewrites_text("pii_redact")
    }
}

impl StageSettings for gleaner_selectors::html::HtmlExtraction {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        cx.rewrites_text("html_extract")
    }
}

impl StageSettings for gleaner_selectors::url::UrlFiltering {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        if self.soft_word_threshold == 0 {
            bail!(
                "at key `{}.soft_word_threshold`: 0 would drop every page; give at least 1",
                cx.key
            );
        }
        let lists = [
            &self.extra_domains,
            &self.extra_urls,
            &self.banned_words,
            &self.banned_subwords,
            &self.soft_banned_words,
        ];
        if self.lists_dir.is_none() && lists.iter().all(|l| l.is_empty()) {
            bail!(
                "at key `{}` (url_filter): no lists: set lists_dir (datatrove's lists: scripts/fetch-assets.sh) or give extra_domains, extra_urls, banned_words, banned_subwords or soft_banned_words",
                cx.key
            );
        }
        Ok(())
    }
}

impl StageSettings for gleaner_selectors::badwords::BadWords {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        cx.ratio("keep_fraction", Some(self.keep_fraction))?;
        if self.words_dir.is_none() && self.extra_words.is_empty() {
            bail!(
                "at key `{}` (c4_badwords): no words: set words_dir (LDNOOBW's lists: scripts/fetch-assets.sh) or extra_words",
                cx.key
            );
        }
        match &self.language_column {
            Some(column) if column.trim().is_empty() => {
                bail!("at key `{}.language_column`: empty column name", cx.key)
            }
            Some(_) if self.words_dir.is_none() => bail!(
                "at key `{}.language_column`: per-document languages need words_dir, the folder of one list per language",
                cx.key
            ),
            Some(column) if cx.config.language_id_before(cx.index, column).is_none() => {
                // A language_id stage writing the column later would not be read here.
                let later = cx.config.stages[cx.index + 1..]
                    .iter()
                    .position(|s| s.writes_languages_to(column));
                if let Some(later) = later {
                    bail!(
                        "at key `{}.language_column`: `{column}` is written by stages[{}] (language_id), which comes after this stage; put the language_id stage first to check each document against the language it detects",
                        cx.key,
                        cx.index + 1 + later
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl StageSettings for Normalization {
    fn kind(&self) -> StageKind {
        StageKind::Pool
    }
}
