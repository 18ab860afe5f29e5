//! The settings of the rule stages whose types live in `gleaner_selectors`: the Gopher and C4
//! rules and exact dedup's normalisation.

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
        if cx.config.input.text_column.contains('.') {
            bail!(
                "at key `{}` (c4_quality): rewrites the text, which must then be a top-level column (input.text_column = `{}` is nested)",
                cx.key,
                cx.config.input.text_column
            );
        }
        let model_after = cx.config.stages[cx.index + 1..].iter().any(|s| {
            matches!(
                s,
                StageConfig::Embed(_)
                    | StageConfig::LmScore(_)
                    | StageConfig::AttentionInfluence(_)
                    | StageConfig::LossTrajectory(_)
            )
        });
        if model_after {
            bail!(
                "at key `{}` (c4_quality): model stages read the original text; put them before c4_quality",
                cx.key
            );
        }
        Ok(())
    }
}

impl StageSettings for Normalization {
    fn kind(&self) -> StageKind {
        StageKind::Pool
    }
}
