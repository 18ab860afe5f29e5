//! `gleaner evaluate`: which selection trains better? For every method of an ablation (after
//! `gleaner ablate`), train the same small byte-level causal LM from the same seed on that
//! method's selected documents with the same token budget, and report the held-out loss on a
//! target set and on a seeded sample of the pool along the way (learning curves).
//!
//! The model, the byte-level tokens and the loss are `gleaner_embed::train`'s. Training
//! sequences are `seq_len + 1` tokens cut from the selection's documents (bytes plus an
//! end-of-document token) concatenated in a seeded random order, reshuffled each epoch; a
//! selection smaller than the budget is repeated. The learning rate warms up linearly over
//! `warmup_fraction` of the steps, then decays by a cosine to 10%.

use crate::ablate::AblationConfig;
use crate::features::for_each_text;
use crate::run::layout;
use crate::training::{checkpoint_steps, train, ProxyTrainingConfig};
use anyhow::{bail, Context, Result};
use gleaner_embed::train::byte_tokens;
use gleaner_selectors::rng::SplitMix64;
use gleaner_storage::atomic::write_bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

/// The `[evaluate]` table of an ablation config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    /// Parquet files, directories or globs of the target set (held-out loss is reported on
    /// its first `eval_documents` documents).
    pub target_paths: Vec<String>,
    /// Text column of the target files.
    #[serde(default = "default_text")]
    pub target_text_column: String,
    /// Points of the learning curve (evaluations, the last at the end of training).
    #[serde(default = "default_eval_points")]
    pub eval_points: usize,
    /// Documents of the target set and of the pool sample evaluated (each cut to `seq_len + 1`
    /// tokens).
    #[serde(default = "default_eval_documents")]
    pub eval_documents: usize,
    /// Models trained per method, from seeds `seed`, `seed + 1`, ...: the report gives the
    /// mean and the spread of their losses, the noise against which methods compare.
    #[serde(default = "default_repeats")]
    pub repeats: usize,
    /// The model trained on each selection and how (`[evaluate.proxy]`).
    #[serde(default)]
    pub proxy: ProxyTrainingConfig,
    /// Seed of the initialisation, the data order and the pool sample (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_text() -> String {
    "text".into()
}
fn default_repeats() -> usize {
    1
}
fn default_eval_points() -> usize {
    8
}
fn default_eval_documents() -> usize {
    128
}

impl EvaluateConfig {
    /// The `--quick` variant: a 2-layer, 64-wide model on a sixth of the tokens, fewer
    /// evaluation documents and points (for CI and smoke tests).
    pub fn quick(&self) -> Self {
        Self {
            eval_points: self.eval_points.min(4),
            eval_documents: self.eval_documents.min(32),
            proxy: ProxyTrainingConfig {
                train_tokens: (self.proxy.train_tokens / 6).max(1),
                layers: 2,
                hidden: 64,
                heads: 2,
                intermediate: 128,
                ..self.proxy.clone()
            },
            ..self.clone()
        }
    }

    /// Checks ranges; errors name the key under `evaluate`.
    pub fn validate(&self) -> Result<()> {
        if self.target_paths.is_empty() {
            bail!("at key `evaluate.target_paths`: at least one path is required");
        }
        for (name, v) in [
            ("eval_points", self.eval_points),
            ("eval_documents", self.eval_documents),
            ("repeats", self.repeats),
        ] {
            crate::config::positive("evaluate", name, v)?;
        }
        self.proxy.validate("evaluate.proxy")
    }
}

/// One point of a learning curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Optimiser steps taken.
    pub step: usize,
    /// Training tokens seen.
    pub tokens: u64,
    /// Mean training loss over the steps since the previous point.
    pub train_loss: f64,
    /// Held-out loss on the target set (nats per byte).
    pub target_loss: f64,
    /// Loss on the pool sample.
    pub pool_loss: f64,
}

/// One method's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodEvaluation {
    /// Method name.
    pub name: String,
    /// Documents in its selection.
    pub documents: u64,
    /// Tokens (bytes plus end markers) in its selection.
    pub selection_tokens: u64,
    /// Passes over the selection the budget took.
    pub epochs: f64,
    /// Share of the pool sample's documents that are in this selection (their pool loss is
    /// not held out for this method).
    pub pool_sample_overlap: f64,
    /// The learning curve (mean over the repeats); the last point is the final model.
    pub curve: Vec<CurvePoint>,
    /// Final target loss of each repeat.
    pub final_target_losses: Vec<f64>,
    /// Final pool loss of each repeat.
    pub final_pool_losses: Vec<f64>,
    /// Wall seconds (not part of the deterministic fields' meaning).
    pub seconds: f64,
}

/// What `gleaner evaluate` writes as `evaluation.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The settings used (after `--quick`).
    pub settings: EvaluateConfig,
    /// Trainable parameters of the model.
    pub parameters: usize,
    /// Steps per model.
    pub steps: usize,
    /// The first seed.
    pub seed: u64,
    /// Training tokens per method.
    pub train_tokens: u64,
    /// Target documents evaluated.
    pub target_documents: usize,
    /// Pool documents evaluated.
    pub pool_documents: usize,
    /// Per method, in config order.
    pub methods: Vec<MethodEvaluation>,
}

/// Texts of the selected shards of one method's output folder.
fn selection_texts(dir: &Path, column: &str) -> Result<Vec<String>> {
    let shards = dir.join(layout::SELECTED_DIR);
    if !dir.join("manifest.json").is_file() {
        bail!(
            "{} has no completed run: run `gleaner ablate` with this config first",
            dir.display()
        );
    }
    let mut texts = Vec::new();
    if shards.is_dir() && std::fs::read_dir(&shards)?.next().is_some() {
        for_each_text(&[shards.to_string_lossy().into_owned()], column, |t| {
            texts.push(t.to_string());
            true
        })?;
    }
    Ok(texts)
}

/// Trains and evaluates every method of `config`; writes `evaluation.json`, `evaluation.md`
/// and `evaluation.html` into its output folder.
pub fn evaluate(config: &AblationConfig, quick: bool) -> Result<Evaluation> {
    let Some(settings) = &config.evaluate else {
        bail!("at key `evaluate`: the config has no [evaluate] table (target_paths, train_tokens, ...)");
    };
    let settings = if quick {
        settings.quick()
    } else {
        settings.clone()
    };
    settings.validate()?;
    let seed = settings.seed.unwrap_or(config.run.seed);
    let proxy = &settings.proxy;
    let cut = |t: &str| -> Vec<u32> {
        let mut ids = byte_tokens(t);
        ids.truncate(proxy.seq_len + 1);
        ids
    };
    let mut target = Vec::new();
    for_each_text(&settings.target_paths, &settings.target_text_column, |t| {
        if !t.trim().is_empty() {
            target.push(cut(t));
        }
        target.len() < settings.eval_documents
    })
    .with_context(|| {
        format!(
            "at key `evaluate.target_paths`: {:?}",
            settings.target_paths
        )
    })?;
    if target.is_empty() {
        bail!(
            "at key `evaluate.target_paths`: no non-empty text in {:?}",
            settings.target_paths
        );
    }
    // A seeded reservoir sample of the pool.
    let mut rng = SplitMix64::new(seed ^ 0xE7A1);
    let mut pool_texts: Vec<String> = Vec::new();
    let mut seen = 0usize;
    for_each_text(&config.input.paths, &config.input.text_column, |t| {
        if t.trim().is_empty() {
            return true;
        }
        seen += 1;
        if pool_texts.len() < settings.eval_documents {
            pool_texts.push(t.to_string());
        } else {
            let j = rng.below(seen);
            if j < settings.eval_documents {
                pool_texts[j] = t.to_string();
            }
        }
        true
    })?;
    let pool: Vec<Vec<u32>> = pool_texts.iter().map(|t| cut(t)).collect();
    let pool_set: HashSet<&str> = pool_texts.iter().map(String::as_str).collect();
    let steps = proxy.steps();
    let checkpoints = checkpoint_steps(steps, settings.eval_points);
    let mut methods = Vec::new();
    for m in &config.methods {
        let started = Instant::now();
        let dir = Path::new(&config.output.dir).join(&m.name);
        let texts = selection_texts(&dir, &config.input.text_column)
            .with_context(|| format!("method `{}`", m.name))?;
        if texts.is_empty() {
            bail!(
                "method `{}`: its selection is empty; nothing to train on",
                m.name
            );
        }
        tracing::info!(
            "evaluate {}: {} documents, {steps} steps",
            m.name,
            texts.len()
        );
        let overlap = texts
            .iter()
            .filter(|t| pool_set.contains(t.as_str()))
            .count();
        let selection_tokens: u64 = texts.iter().map(|t| t.len() as u64 + 1).sum();
        let mut runs: Vec<Vec<CurvePoint>> = Vec::new();
        for r in 0..settings.repeats as u64 {
            let mut curve = Vec::new();
            train(
                &texts,
                proxy,
                seed + r,
                &checkpoints,
                |step, lm, train_loss| {
                    curve.push(CurvePoint {
                        step,
                        tokens: (step * proxy.batch_size * proxy.seq_len) as u64,
                        train_loss,
                        target_loss: lm.evaluate(&target),
                        pool_loss: lm.evaluate(&pool),
                    });
                },
            );
            runs.push(curve);
        }
        let n = runs.len() as f64;
        let curve: Vec<CurvePoint> = (0..runs[0].len())
            .map(|k| CurvePoint {
                step: runs[0][k].step,
                tokens: runs[0][k].tokens,
                train_loss: runs.iter().map(|c| c[k].train_loss).sum::<f64>() / n,
                target_loss: runs.iter().map(|c| c[k].target_loss).sum::<f64>() / n,
                pool_loss: runs.iter().map(|c| c[k].pool_loss).sum::<f64>() / n,
            })
            .collect();
        let last = |f: fn(&CurvePoint) -> f64| -> Vec<f64> {
            runs.iter().filter_map(|c| c.last().map(f)).collect()
        };
        let trained = (steps * proxy.batch_size * (proxy.seq_len + 1)) as f64;
        methods.push(MethodEvaluation {
            name: m.name.clone(),
            documents: texts.len() as u64,
            selection_tokens,
            epochs: trained / selection_tokens.max(1) as f64,
            pool_sample_overlap: overlap as f64 / pool.len().max(1) as f64,
            final_target_losses: last(|p| p.target_loss),
            final_pool_losses: last(|p| p.pool_loss),
            curve,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let evaluation = Evaluation {
        parameters: proxy.shape().parameters(),
        steps,
        seed,
        train_tokens: (steps * proxy.batch_size * proxy.seq_len) as u64,
        target_documents: target.len(),
        pool_documents: pool.len(),
        settings,
        methods,
    };
    let out = Path::new(&config.output.dir);
    write_bytes(
        &out.join("evaluation.json"),
        &serde_json::to_vec_pretty(&evaluation)?,
    )?;
    write_bytes(
        &out.join("evaluation.md"),
        render_markdown(&evaluation).as_bytes(),
    )?;
    write_bytes(
        &out.join("evaluation.html"),
        render_html(&evaluation).as_bytes(),
    )?;
    Ok(evaluation)
}

/// The results table (final losses, best first by target loss).
pub fn render_markdown(e: &Evaluation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# gleaner evaluation\n\nEach method's selection trained the same {}-parameter byte-level Llama ({} layers, width {}) from the same seed for {} steps ({} tokens, sequences of {}); losses are nats per byte on {} target documents and a seeded sample of {} pool documents.\n",
        e.parameters,
        e.settings.proxy.layers,
        e.settings.proxy.hidden,
        e.steps,
        e.train_tokens,
        e.settings.proxy.seq_len,
        e.target_documents,
        e.pool_documents
    );
    let _ = writeln!(s, "| method | documents | selection tokens | epochs | target loss | pool loss | pool sample in selection | seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut order: Vec<&MethodEvaluation> = e.methods.iter().collect();
    let last = |m: &MethodEvaluation| m.curve.last().map(|p| (p.target_loss, p.pool_loss));
    order.sort_by(|a, b| {
        let (x, y) = (last(a).map(|l| l.0), last(b).map(|l| l.0));
        x.unwrap_or(f64::INFINITY)
            .total_cmp(&y.unwrap_or(f64::INFINITY))
            .then(a.name.cmp(&b.name))
    });
    for m in order {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {} | {} | {:.1}% | {:.0} |",
            m.name,
            m.documents,
            m.selection_tokens,
            m.epochs,
            mean_spread(&m.final_target_losses),
            mean_spread(&m.final_pool_losses),
            100.0 * m.pool_sample_overlap,
            m.seconds
        );
    }
    if e.settings.repeats > 1 {
        let _ = writeln!(
            s,
            "\nLosses are the mean ± the standard deviation over {} models per method (seeds {} to {}).",
            e.settings.repeats,
            e.seed,
            e.seed + e.settings.repeats as u64 - 1
        );
    }
    s
}

/// `mean` or `mean ± sd` (sample standard deviation) of `values`.
fn mean_spread(values: &[f64]) -> String {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return format!("{mean:.4}");
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    format!("{mean:.4} ± {:.4}", var.sqrt())
}

/// Learning curves (target and pool loss against training tokens) as inline SVG.
fn render_html(e: &Evaluation) -> String {
    let mut html = String::from("<!doctype html><meta charset=\"utf-8\"><title>gleaner evaluation</title><body style=\"font-family:sans-serif\"><h1>Evaluation</h1>");
    for (title, pick) in [
        (
            "target loss",
            (|p: &CurvePoint| p.target_loss) as fn(&CurvePoint) -> f64,
        ),
        ("pool loss", |p: &CurvePoint| p.pool_loss),
    ] {
        html.push_str(&curve_svg(e, title, pick));
        html.push_str("<br>");
    }
    html.push_str("<pre>");
    html.push_str(&render_markdown(e).replace('<', "&lt;"));
    html.push_str("</pre></body>");
    html
}

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
        r#"<text x="{pad}" y="{}">{title} (nats per byte, {lo:.3} .. {hi:.3}) against training tokens (0 .. {max_x})</text></svg>"#,
        h - 10.0
    );
    s
}
