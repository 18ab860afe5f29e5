//! `evaluation.md` and `evaluation.html`: the held-out checks, the bits-per-byte table with
//! each method's comparison with the baseline, the rank agreement, and the learning curves.

use super::intervals::mean_sd;
use super::{Comparison, CurvePoint, Evaluation, MethodEvaluation};
use gleaner_selectors::overlap;
use std::fmt::Write;

/// Passes over a selection above which the report warns that the neural model is learning
/// its selection by heart.
pub const MANY_EPOCHS: f64 = 4.0;

fn comparison_cell(c: &Option<Comparison>) -> String {
    match c {
        None => "(baseline)".into(),
        Some(c) => {
            let mut s = format!(
                "{:+.4} [{:+.4}, {:+.4}]",
                c.difference, c.bootstrap.low, c.bootstrap.high
            );
            if let Some(t) = c.seeds {
                let _ = write!(s, " seeds [{:+.4}, {:+.4}]", t.low, t.high);
            }
            if let Some(t) = c.draws {
                let _ = write!(s, " draws [{:+.4}, {:+.4}]", t.low, t.high);
            }
            let _ = write!(s, " **{}**", c.verdict.label());
            s
        }
    }
}

/// The results tables: held-out checks, then bits per byte and the comparison with the
/// baseline (best first by neural bits per byte).
pub fn render_markdown(e: &Evaluation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# gleaner evaluation\n\nScored: {} whole evaluation documents ({} bytes{}) from {:?}; losses in bits per byte (lower is better).{}\n",
        e.target_documents,
        e.target_bytes,
        if e.ngram_only {
            String::new()
        } else {
            format!(", windows of {} predicted bytes", e.settings.proxy.seq_len)
        },
        e.settings.target_paths,
        if e.ngram_only {
            String::new()
        } else {
            format!(
                " The pool column scores the first {} bytes of {} pool documents sampled with the seed.",
                e.settings.proxy.seq_len, e.pool_documents
            )
        }
    );
    if e.ngram_only {
        let _ = writeln!(
            s,
            "Model: a byte-level Kneser-Ney {}-gram model fitted on every byte of each selection (deterministic). No neural model was trained (--ngram-only).\n",
            e.settings.ngram_order
        );
    } else {
        let _ = writeln!(
        s,
        "Models: a byte-level Kneser-Ney {}-gram model fitted on every byte of each selection (deterministic){}; and a {}-parameter byte-level Llama ({} layers, width {}) trained from scratch for {} steps ({} tokens, sequences of {}), {} seed(s) per method starting at {}.\n",
        e.settings.ngram_order,
        if e.settings.ngram_order == 0 { " (off)" } else { "" },
        e.parameters,
        e.settings.proxy.layers,
        e.settings.proxy.hidden,
        e.steps,
        e.train_tokens,
        e.settings.proxy.seq_len,
        e.settings.repeats,
        e.seed
    );
    }
    let _ = writeln!(s, "## Held out\n\nEach method's reference sets and selection against the evaluation documents (exact normalised text / sharing a {}-word run).{}\n", overlap::SHINGLE_WORDS, if e.reference_overlap_allowed { " Reference overlap was ALLOWED for this run (--allow-reference-overlap): targeted methods may have been aimed at what they are scored on." } else { " A reference set that overlaps is refused." });
    let _ = writeln!(
        s,
        "| method | reference sets | selection overlap | pool sample in selection |\n|---|---|---:|---:|"
    );
    for m in &e.methods {
        let refs: Vec<String> = m
            .held_out
            .references
            .iter()
            .map(|(label, c)| format!("{label}: {}/{} overlap", c.total(), c.documents))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} exact + {} near of {} | {:.1}% |",
            m.name,
            if refs.is_empty() {
                "none (untargeted)".to_string()
            } else {
                refs.join("; ")
            },
            m.held_out.selection.exact,
            m.held_out.selection.shingle,
            m.held_out.selection.documents,
            100.0 * m.pool_sample_overlap
        );
    }
    let _ = writeln!(
        s,
        "\n## Bits per byte\n\nDifferences are `method - {}` with a 95% percentile bootstrap interval over the evaluation documents ({} replicates){}; a method is called better or worse only when every interval excludes zero.\n",
        e.settings.baseline,
        e.settings.bootstrap_replicates,
        if e.ngram_only { "" } else if e.settings.repeats > 1 { " and a 95% t interval over the seeds" } else { " (one seed: seed-to-seed noise is not measured; set evaluate.repeats >= 2)" }
    );
    if e.baseline_draws.len() > 1 {
        let draws: Vec<String> = e
            .baseline_draws
            .iter()
            .map(|d| {
                format!(
                    "`{}` (seed {}, {} documents{})",
                    d.name,
                    d.seed,
                    d.documents,
                    d.ngram_bpb
                        .map_or(String::new(), |b| format!(", n-gram {b:.4}"))
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "The baseline is compared as {} draws of its selection: {}. Its n-gram bits per byte is their mean, and the n-gram comparison adds a 95% t interval over the draws{}.\n",
            e.baseline_draws.len(),
            draws.join(", "),
            if e.ngram_only {
                String::new()
            } else {
                format!(
                    "; neural seed `r` trains the baseline on draw `r` mod {}, so the seed interval holds the luck of the draw too",
                    e.baseline_draws.len()
                )
            }
        );
    } else {
        let _ = writeln!(
            s,
            "The baseline is one selection (evaluate.baseline_draws = 1): a method that differs from it only by the luck of a random draw can be called better or worse.\n"
        );
    }
    if e.ngram_only {
        ngram_table(&mut s, e);
        return s;
    }
    let second = e.settings.second_model.is_some();
    let _ = writeln!(
        s,
        "| method | documents | epochs | n-gram bpb | n-gram vs baseline | neural bpb | neural vs baseline |{} pool bpb | seconds |\n|---|---:|---:|---:|---|---:|---|{}---:|---:|",
        if second { " second bpb | second vs baseline |" } else { "" },
        if second { "---:|---|" } else { "" }
    );
    let mut order: Vec<&MethodEvaluation> = e.methods.iter().collect();
    let neural = |m: &MethodEvaluation| mean_sd(&m.final_target_bpb).0;
    order.sort_by(|a, b| neural(a).total_cmp(&neural(b)).then(a.name.cmp(&b.name)));
    for m in order {
        let second_cells = if second {
            format!(
                " {} | {} |",
                mean_spread(&m.second_target_bpb),
                comparison_cell(&m.second_vs_baseline)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {} | {} | {} | {} |{second_cells} {} | {:.0} |",
            m.name,
            m.documents,
            m.epochs,
            m.ngram_bpb.map_or("-".into(), |v| format!("{v:.4}")),
            if m.ngram_bpb.is_some() {
                comparison_cell(&m.ngram_vs_baseline)
            } else {
                "-".into()
            },
            mean_spread(&m.final_target_bpb),
            comparison_cell(&m.neural_vs_baseline),
            mean_spread(&m.final_pool_bpb),
            m.seconds
        );
    }
    let repeated: Vec<String> = e
        .methods
        .iter()
        .filter(|m| m.epochs > MANY_EPOCHS)
        .map(|m| format!("{} ({:.1})", m.name, m.epochs))
        .collect();
    if !repeated.is_empty() {
        let _ = writeln!(
            s,
            "\n**Warning:** the neural model passes over these selections more than {MANY_EPOCHS} times: {}. Its held-out losses then measure how each model learns its selection by heart as much as what the selection holds; select more text per method, or train on fewer tokens.",
            repeated.join(", ")
        );
    }
    if let Some(model) = &e.settings.second_model {
        let _ = writeln!(
            s,
            "\nSecond neural model: {} parameters ({} layers, width {}), {} tokens in sequences of {}, the same seeds.",
            e.second_parameters.unwrap_or(0),
            model.layers,
            model.hidden,
            model.train_tokens,
            model.seq_len
        );
    }
    if !e.rank_agreement.is_empty() {
        let _ = writeln!(
            s,
            "\n## Rank agreement\n\nSpearman's rho between the methods' bits per byte under two evaluation models (1: the same order; -1: reversed).\n\n| models | rho | methods |\n|---|---:|---:|"
        );
        for a in &e.rank_agreement {
            let _ = writeln!(
                s,
                "| {} vs {} | {} | {} |",
                a.first,
                a.second,
                a.spearman.map_or("-".into(), |r| format!("{r:+.2}")),
                a.methods
            );
        }
    }
    s
}

/// The `--ngram-only` table: the n-gram columns, best first.
fn ngram_table(s: &mut String, e: &Evaluation) {
    let _ = writeln!(
        s,
        "| method | documents | n-gram bpb | n-gram vs baseline | seconds |\n|---|---:|---:|---|---:|"
    );
    let mut order: Vec<&MethodEvaluation> = e.methods.iter().collect();
    let ngram = |m: &MethodEvaluation| m.ngram_bpb.unwrap_or(f64::NAN);
    order.sort_by(|a, b| ngram(a).total_cmp(&ngram(b)).then(a.name.cmp(&b.name)));
    for m in order {
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} | {} | {:.0} |",
            m.name,
            m.documents,
            ngram(m),
            comparison_cell(&m.ngram_vs_baseline),
            m.seconds
        );
    }
}

/// `mean` or `mean ± sd` (sample standard deviation) of `values`.
fn mean_spread(values: &[f64]) -> String {
    let (mean, sd) = mean_sd(values);
    if values.len() < 2 {
        return format!("{mean:.4}");
    }
    format!("{mean:.4} ± {sd:.4}")
}

/// Learning curves (target and pool loss against training tokens) as inline SVG.
pub(super) fn render_html(e: &Evaluation) -> String {
    let mut html = String::from("<!doctype html><meta charset=\"utf-8\"><title>gleaner evaluation</title><body style=\"font-family:sans-serif\"><h1>Evaluation</h1>");
    let curves = if e.ngram_only { &[][..] } else { &CURVES[..] };
    for &(title, pick) in curves {
        html.push_str(&curve_svg(e, title, pick));
        html.push_str("<br>");
    }
    html.push_str("<pre>");
    html.push_str(&render_markdown(e).replace('<', "&lt;"));
    html.push_str("</pre></body>");
    html
}

/// The learning curves the HTML report draws: title and value.
type Curve = (&'static str, fn(&CurvePoint) -> f64);
const CURVES: [Curve; 2] = [
    ("evaluation bits per byte", |p| p.target_bpb),
    ("pool bits per byte", |p| p.pool_bpb),
];

fn curve_svg(e: &Evaluation, title: &str, value: fn(&CurvePoint) -> f64) -> String {
    let (w, h, pad) = (640.0, 300.0, 50.0);
    let points: Vec<(u64, f64)> = e
        .methods
        .iter()
        .flat_map(|m| m.curve.iter().map(|p| (p.tokens, value(p))))
        .collect();
    let max_x = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let span = (hi - lo).max(1e-9);
    let x = |t: u64| pad + (w - 2.0 * pad) * t as f64 / max_x;
    let y = |v: f64| 10.0 + (h - 40.0) * (hi - v) / span;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="11">"#,
        h + 20.0 * e.methods.len() as f64
    );
    for (i, m) in e.methods.iter().enumerate() {
        let hue = (i as f64 * 137.508) % 360.0;
        let line: Vec<String> = m
            .curve
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.tokens), y(value(p))))
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="hsl({hue:.0},65%,40%)" stroke-width="2"/><text x="{pad}" y="{}" fill="hsl({hue:.0},65%,40%)">{}: {:.4}</text>"#,
            line.join(" "),
            h + 15.0 * i as f64,
            m.name,
            m.curve.last().map(value).unwrap_or(f64::NAN)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{pad}" y="{}">{title} ({lo:.3} .. {hi:.3}) against training tokens (0 .. {max_x})</text></svg>"#,
        h - 10.0
    );
    s
}
