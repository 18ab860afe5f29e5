//! The settings of the rule stages whose types live in `gleaner_selectors`: the Gopher rules
//! and exact dedup's normalisation.

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

impl StageSettings for Normalization {
    fn kind(&self) -> StageKind {
        StageKind::Pool
    }
}
