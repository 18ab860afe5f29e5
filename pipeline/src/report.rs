//! The run report: what was kept, what was dropped and why, per stage and per source.

use crate::layout;
use crate::stats::StageStats;
use anyhow::Result;
use gleaner_storage::atomic::write_bytes;
use gleaner_storage::reader::SkippedFile;
use gleaner_storage::writer::ShardInfo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Pool and kept counts of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceCounts {
    /// Documents of this source in the input.
    pub pool: u64,
    /// Documents of this source selected.
    pub kept: u64,
    /// Tokens (of the `tokenize` stage's tokenizer) of the selected documents; absent
    /// without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_tokens: Option<u64>,
}

/// Everything the report shows.
#[derive(Debug, Serialize)]
pub struct ReportInput<'a> {
    /// Selection method.
    pub method: &'a str,
    /// Seed of the selection.
    pub seed: u64,
    /// Readable input files.
    pub files: usize,
    /// Inputs left out.
    pub skipped: &'a [SkippedFile],
    /// Documents read.
    pub seen: u64,
    /// Documents selected.
    pub kept: u64,
    /// Whitespace tokens in the selected documents.
    pub kept_words: u64,
    /// Per-stage counts.
    pub stats: &'a [StageStats],
    /// Per-source composition.
    pub sources: &'a BTreeMap<String, SourceCounts>,
    /// Up to three dropped ids per reason.
    pub examples: &'a BTreeMap<String, Vec<String>>,
    /// Selected shards.
    pub shards: &'a [ShardInfo],
    /// Model stages and the columns they computed.
    pub models: &'a [crate::models::features::ModelSummary],
    /// Per-source distributions of model scores (attention_influence).
    pub distributions: &'a [ScoreDistribution],
    /// What a quad stage did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quad: Option<&'a crate::quad_report::QuadReport>,
}

/// Summary statistics of one score column within one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceScores {
    /// Source name (`(none)` without a source column).
    pub source: String,
    /// Documents with a value.
    pub documents: u64,
    /// Mean value.
    pub mean: f64,
    /// Quantiles 10%, 50% and 90% (nearest rank).
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90% quantile.
    pub p90: f64,
    /// Largest value.
    pub max: f64,
}

/// The distribution of one score column per source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreDistribution {
    /// The column.
    pub column: String,
    /// One row per source, in name order.
    pub sources: Vec<SourceScores>,
}

impl ScoreDistribution {
    /// Summaries of each source's values.
    pub fn new(column: &str, by_source: BTreeMap<String, Vec<f64>>) -> Self {
        let sources = by_source
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(source, mut values)| {
                values.sort_by(f64::total_cmp);
                let n = values.len();
                let q = |p: f64| values[((n - 1) as f64 * p).round() as usize];
                SourceScores {
                    source,
                    documents: n as u64,
                    mean: values.iter().sum::<f64>() / n as f64,
                    p10: q(0.1),
                    p50: q(0.5),
                    p90: q(0.9),
                    max: values[n - 1],
                }
            })
            .collect();
        Self {
            column: column.to_string(),
            sources,
        }
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Renders the markdown report.
pub fn render_markdown(r: &ReportInput<'_>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# gleaner run report\n");
    let _ = writeln!(
        s,
        "Kept **{}** of **{}** documents ({}), {} whitespace tokens, from {} file(s); method `{}`, seed {}.\n",
        r.kept,
        r.seen,
        pct(r.kept, r.seen),
        r.kept_words,
        r.files,
        r.method,
        r.seed
    );
    if !r.skipped.is_empty() {
        let _ = writeln!(s, "## Skipped input files\n");
        for f in r.skipped {
            let _ = writeln!(s, "- `{}`: {}", f.path.display(), f.reason);
        }
        let _ = writeln!(s);
    }
    if !r.models.is_empty() {
        let _ = writeln!(s, "## Model stages\n\n| stage | column | model | model sha256 | cache |\n|---|---|---|---|---|");
        for m in r.models {
            let _ = writeln!(
                s,
                "| {} | `{}` | `{}` | {} | `{}` |",
                m.stage,
                m.column,
                m.model,
                &m.model_sha256[..16],
                m.cache.display()
            );
        }
        let _ = writeln!(s);
    }
    for m in r.models {
        if let Some(heads) = &m.heads {
            heads.render_markdown(&mut s, &m.column);
        }
    }
    for d in r.distributions {
        let _ = writeln!(
            s,
            "## Score distribution of `{}` per source\n\n| source | documents | mean | p10 | median | p90 | max |\n|---|---:|---:|---:|---:|---:|---:|",
            d.column
        );
        for x in &d.sources {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
                x.source, x.documents, x.mean, x.p10, x.p50, x.p90, x.max
            );
        }
        let _ = writeln!(s);
    }
    if let Some(q) = r.quad {
        q.render_markdown(&mut s);
    }
    let stage_tokens = r.stats.iter().any(|st| st.kept_tokens.is_some());
    let _ = writeln!(
        s,
        "## Stages\n\n| stage | seen | kept |{} dropped | reasons |\n|---|---:|---:|{}---:|---|",
        if stage_tokens { " kept tokens |" } else { "" },
        if stage_tokens { "---:|" } else { "" }
    );
    for st in r.stats {
        let reasons: Vec<String> = st
            .dropped
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let tokens = match (stage_tokens, st.kept_tokens) {
            (true, t) => format!(" {} |", t.unwrap_or(0)),
            (false, _) => String::new(),
        };
        let mut kept = match st.rewritten {
            Some(n) => format!("{} ({n} rewritten)", st.kept),
            None => st.kept.to_string(),
        };
        if !st.unchecked.is_empty() {
            let unchecked: Vec<String> = st
                .unchecked
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            kept += &format!(" (unchecked: {})", unchecked.join(", "));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {kept} |{tokens} {} | {} |",
            st.stage,
            st.seen,
            st.dropped_total(),
            reasons.join(", ")
        );
    }
    let with_tokens = r.sources.values().any(|c| c.kept_tokens.is_some());
    let _ = writeln!(
        s,
        "\n## Sources: selected vs pool\n\n| source | pool | kept | kept % | share of pool | share of selection |{}\n|---|---:|---:|---:|---:|---:|{}",
        if with_tokens { " kept tokens |" } else { "" },
        if with_tokens { "---:|" } else { "" }
    );
    let pool_total: u64 = r.sources.values().map(|c| c.pool).sum();
    for (name, c) in r.sources {
        let tokens = match (with_tokens, c.kept_tokens) {
            (true, t) => format!(" {} |", t.unwrap_or(0)),
            (false, _) => String::new(),
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} |{tokens}",
            c.pool,
            c.kept,
            pct(c.kept, c.pool),
            pct(c.pool, pool_total),
            pct(c.kept, r.kept)
        );
    }
    if !r.examples.is_empty() {
        let _ = writeln!(s, "\n## Examples of dropped documents\n");
        for (reason, ids) in r.examples {
            let ids: Vec<String> = ids.iter().map(|i| format!("`{i}`")).collect();
            let _ = writeln!(s, "- {reason}: {}", ids.join(", "));
        }
    }
    let _ = writeln!(
        s,
        "\n## Output shards\n\n| shard | rows | bytes | sha256 |\n|---|---:|---:|---|"
    );
    for sh in r.shards {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            sh.file, sh.rows, sh.bytes, sh.sha256
        );
    }
    s
}

/// Writes `report.md`, `report.json` and the heat maps of detected heads into `out`.
pub fn write_report(out: &Path, r: &ReportInput<'_>) -> Result<()> {
    for m in r.models {
        if let Some(heads) = &m.heads {
            heads.write_heatmap(
                &out.join(crate::models::attention_influence::HeadReport::heatmap_name(&m.column)),
            )?;
        }
    }
    write_bytes(&out.join(layout::REPORT_MD), render_markdown(r).as_bytes())?;
    write_bytes(
        &out.join(layout::REPORT_JSON),
        &serde_json::to_vec_pretty(r)?,
    )?;
    Ok(())
}
