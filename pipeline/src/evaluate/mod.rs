//! `gleaner evaluate`: which selection trains better? For every method of an ablation (after
//! `gleaner ablate`), train the same models on that method's selected documents with the same
//! budget and score held-out evaluation documents, then compare every method with the
//! baseline (random by default) with 95% intervals.
//!
//! Two evaluation models, so a ranking can be checked against a second opinion:
//! - a byte-level interpolated Kneser-Ney n-gram model ([`crate::kneser_ney`]): deterministic, no
//!   seed noise, seconds per method;
//! - the same small byte-level Llama (`gleaner_embed::train`) trained from scratch, `repeats`
//!   seeds per method. Training sequences are `seq_len + 1` tokens cut from the selection's
//!   documents (bytes plus an end-of-document token) concatenated in a seeded random order,
//!   reshuffled each epoch; a selection smaller than the budget is repeated. The learning rate
//!   warms up linearly over `warmup_fraction` of the steps, then decays by a cosine to 10%.
//!
//! Whole evaluation documents are scored, in windows of `seq_len` predicted bytes, and
//! losses are reported in bits per byte. The evaluation documents must be held out: before
//! anything is trained, every method's reference sets ([`crate::config::StageConfig::aimed_at`])
//! are checked against them ([`overlap`]; an overlap is an error unless allowed), each
//! selection's overlap with them is reported, and a selection made with a config other than
//! the one the ablation config resolves to now is refused. With `--ngram-only` only the n-gram
//! model is fitted: every verdict of the n-gram columns in seconds, no neural training.
//!
//! Against the baseline, each method gets the paired difference in bits per byte with a
//! percentile bootstrap interval over the evaluation documents and, with two or more repeats,
//! a t interval over the seeds ([`intervals`]); it is called better or worse only when every
//! interval excludes zero. The baseline counts as `baseline_draws` selections (its own and
//! reruns with the next seeds, which `ablate` makes), so the luck of a random draw is measured
//! too: the n-gram comparison adds a t interval over the draws, and neural seed `r` trains the
//! baseline on draw `r` mod the draws.

pub mod intervals;
pub mod ranks;
mod render;

use crate::config::ablation::AblationConfig;
use crate::config::evaluate::EvaluateConfig;
use crate::config::Config;
use crate::kneser_ney::KneserNey;
use crate::layout;
use crate::training::ProxyTrainingConfig;
use crate::training::{checkpoint_steps, train};
use anyhow::{bail, Context, Result};
use gleaner_embed::train::{byte_tokens, TrainableLm};
use gleaner_selectors::overlap::{self, EvaluationIndex, OverlapCount};
use gleaner_selectors::rng::SplitMix64;
use gleaner_storage::atomic::write_bytes;
use gleaner_storage::manifest::Manifest;
use gleaner_storage::reader::for_each_text;
use intervals::{bits_per_byte, bootstrap_difference, mean_sd, t_interval, Interval, Verdict};
use ranks::RankAgreement;
use render::render_html;
pub use render::render_markdown;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

/// One point of a learning curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Optimiser steps taken.
    pub step: usize,
    /// Training tokens seen.
    pub tokens: u64,
    /// Mean training loss over the steps since the previous point (nats per token).
    pub train_loss: f64,
    /// Bits per byte on the evaluation documents.
    pub target_bpb: f64,
    /// Bits per byte on the pool sample (each document's first `seq_len` bytes).
    pub pool_bpb: f64,
}

/// A method against the baseline under one evaluation model (`method - baseline` bits per
/// byte: negative is better).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Mean paired difference.
    pub difference: f64,
    /// Percentile bootstrap over evaluation documents.
    pub bootstrap: Interval,
    /// t interval over seeds (neural model, two or more repeats). With several baseline
    /// draws, seed `r` was paired with the baseline trained on draw `r` mod the draws, so
    /// this interval also holds the luck of the baseline's draw.
    pub seeds: Option<Interval>,
    /// t interval over the baseline's draws (n-gram model, two or more draws): the method
    /// against each draw of the baseline.
    pub draws: Option<Interval>,
    /// What the intervals allow us to say.
    pub verdict: Verdict,
}

/// How a method's documents overlap the evaluation documents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldOut {
    /// Per reference set (`stage.key`), its overlap.
    pub references: Vec<(String, OverlapCount)>,
    /// The selection's overlap.
    pub selection: OverlapCount,
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
    /// Passes over the selection the neural budget took.
    pub epochs: f64,
    /// Its reference sets and selection against the evaluation documents.
    pub held_out: HeldOut,
    /// Share of the pool sample's documents that are in this selection (their pool loss is
    /// not held out for this method).
    pub pool_sample_overlap: f64,
    /// Kneser-Ney bits per byte on the evaluation documents.
    pub ngram_bpb: Option<f64>,
    /// The neural learning curve (mean over the repeats); the last point is the final model.
    pub curve: Vec<CurvePoint>,
    /// Final evaluation bits per byte of each repeat.
    pub final_target_bpb: Vec<f64>,
    /// Final pool-sample bits per byte of each repeat.
    pub final_pool_bpb: Vec<f64>,
    /// Against the baseline: n-gram model (when on) and neural model; `None` for the baseline.
    pub ngram_vs_baseline: Option<Comparison>,
    /// See `ngram_vs_baseline`.
    pub neural_vs_baseline: Option<Comparison>,
    /// The second neural model's final evaluation bits per byte of each repeat (empty
    /// without `evaluate.second_model`).
    pub second_target_bpb: Vec<f64>,
    /// The second neural model against the baseline.
    pub second_vs_baseline: Option<Comparison>,
    /// Wall seconds (not part of the deterministic fields' meaning).
    pub seconds: f64,
}

/// What `gleaner evaluate` writes as `evaluation.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The settings used (after `--quick`).
    pub settings: EvaluateConfig,
    /// Trainable parameters of the neural model.
    pub parameters: usize,
    /// Steps per neural model.
    pub steps: usize,
    /// The first seed.
    pub seed: u64,
    /// Training tokens per method.
    pub train_tokens: u64,
    /// Evaluation documents scored (whole).
    pub target_documents: usize,
    /// Their bytes.
    pub target_bytes: u64,
    /// Pool documents evaluated.
    pub pool_documents: usize,
    /// Whether reference-set overlap was allowed (`--allow-reference-overlap`).
    pub reference_overlap_allowed: bool,
    /// Whether only the n-gram model was fitted (`--ngram-only`): the neural fields are empty.
    pub ngram_only: bool,
    /// Per method, in config order.
    pub methods: Vec<MethodEvaluation>,
    /// Trainable parameters of the second neural model, when there is one.
    pub second_parameters: Option<usize>,
    /// Whether the evaluation models rank the methods alike (every pair of models).
    pub rank_agreement: Vec<RankAgreement>,
    /// The baseline's selections compared against: its own, then its extra draws.
    pub baseline_draws: Vec<BaselineDraw>,
}

/// One selection of the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineDraw {
    /// Its folder (the baseline's name, or `<baseline>-draw-<k>`).
    pub name: String,
    /// `run.seed` of its run.
    pub seed: u64,
    /// Documents in it.
    pub documents: u64,
    /// Kneser-Ney bits per byte on the evaluation documents.
    pub ngram_bpb: Option<f64>,
}

/// Texts of the selected shards of a run (`expected`: the run config the ablation config
/// resolves to now for that folder), after checking that they were made with that config.
fn selection_texts(expected: &Config) -> Result<Vec<String>> {
    let dir = Path::new(&expected.output.dir);
    if !dir.join("manifest.json").is_file() {
        bail!(
            "{} has no completed run: run `gleaner ablate` with this config first",
            dir.display()
        );
    }
    let manifest = Manifest::read(dir)?;
    let now = expected.to_json();
    if let Some(key) = first_difference(&manifest.config, &now, "") {
        bail!(
            "the selection in {} was made with another config (it differs at `{key}`): run `gleaner ablate` again with this config",
            dir.display()
        );
    }
    let column = &expected.input.text_column;
    let shards = dir.join(layout::SELECTED_DIR);
    let mut texts = Vec::new();
    if shards.is_dir() && std::fs::read_dir(&shards)?.next().is_some() {
        for_each_text(&[shards.to_string_lossy().into_owned()], column, |t| {
            texts.push(t.to_string());
            true
        })?;
    }
    Ok(texts)
}

/// The first key path where two resolved configs differ, ignoring the settings that never
/// change a selection (`run.threads`, `output.overwrite`).
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    if matches!(at, "run.threads" | "output.overwrite") {
        return None;
    }
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => first_difference(u, v, &join(k)),
                _ => Some(join(k)),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &join(&i.to_string()))),
        _ => (a != b).then(|| at.to_string()),
    }
}

/// Texts of `paths` (non-empty ones).
fn read_texts(paths: &[String], column: &str, limit: usize) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for_each_text(paths, column, |t| {
        if !t.trim().is_empty() {
            texts.push(t.to_string());
        }
        texts.len() < limit
    })?;
    Ok(texts)
}

/// Whole documents as windows of at most `seq_len + 1` tokens overlapping by one (each
/// window predicts its tokens after the first), with the window's document.
fn windows(docs: &[String], seq_len: usize) -> (Vec<Vec<u32>>, Vec<usize>) {
    let (mut rows, mut owner) = (Vec::new(), Vec::new());
    for (d, text) in docs.iter().enumerate() {
        let tokens = byte_tokens(text);
        let mut start = 0;
        while start + 1 < tokens.len() {
            let end = (start + seq_len + 1).min(tokens.len());
            rows.push(tokens[start..end].to_vec());
            owner.push(d);
            start = end - 1;
        }
    }
    (rows, owner)
}

/// Scored documents: their windows, and (nats, bytes) per document from a model's
/// per-window mean losses.
struct Scored {
    rows: Vec<Vec<u32>>,
    owner: Vec<usize>,
    bytes: Vec<u64>,
}

impl Scored {
    fn new(docs: &[String], seq_len: usize) -> Self {
        let (rows, owner) = windows(docs, seq_len);
        Scored {
            rows,
            owner,
            bytes: docs.iter().map(|d| d.len() as u64).collect(),
        }
    }

    fn per_document(&self, lm: &TrainableLm) -> Vec<(f64, u64)> {
        let mut nats = vec![0.0; self.bytes.len()];
        for ((row, &d), loss) in self
            .rows
            .iter()
            .zip(&self.owner)
            .zip(lm.sequence_losses(&self.rows))
        {
            nats[d] += loss * (row.len() - 1) as f64;
        }
        nats.into_iter().zip(self.bytes.iter().copied()).collect()
    }
}

/// Per-document (nats, bytes) of the evaluation documents under an n-gram model of `texts`.
fn ngram_scores(texts: &[String], order: usize, eval: &[String]) -> Vec<(f64, u64)> {
    let model = KneserNey::train(texts.iter().map(|t| t.as_bytes()), order);
    eval.iter()
        .map(|t| model.document_nats(t.as_bytes()))
        .collect()
}

/// Element-wise mean of per-document scores over repeats.
fn mean_scores(runs: &[Vec<(f64, u64)>]) -> Vec<(f64, u64)> {
    let n = runs.len() as f64;
    (0..runs[0].len())
        .map(|i| (runs.iter().map(|r| r[i].0).sum::<f64>() / n, runs[0][i].1))
        .collect()
}

/// What one method's training and scoring produced, before the comparison.
struct Raw {
    /// Per selection (the baseline's draws; one for other methods), the n-gram model's
    /// per-document scores (empty with the n-gram model off).
    ngram: Vec<Vec<(f64, u64)>>,
    /// Per repeat: per-document scores of the final model.
    neural: Vec<Vec<(f64, u64)>>,
    /// The same for the second neural model.
    second: Vec<Vec<(f64, u64)>>,
}

/// What the seeds of one neural model gave on one selection.
struct Trained {
    /// Per repeat, the learning curve.
    curves: Vec<Vec<CurvePoint>>,
    /// Per repeat, per-document scores of the final model.
    finals: Vec<Vec<(f64, u64)>>,
}

/// Trains `repeats` models of `proxy` (seeds `seed`, `seed + 1`, ...; seed `seed + r` on
/// selection `r` mod the selections), scoring the evaluation documents and the pool sample at
/// `checkpoints`.
fn train_seeds(
    selections: &[Vec<String>],
    proxy: &ProxyTrainingConfig,
    (seed, repeats): (u64, usize),
    checkpoints: &[usize],
    (target, pool): (&Scored, &Scored),
) -> Result<Trained> {
    let mut trained = Trained {
        curves: Vec::new(),
        finals: Vec::new(),
    };
    for r in 0..repeats as u64 {
        let mut curve = Vec::new();
        let mut last = Vec::new();
        train(
            &selections[r as usize % selections.len()],
            proxy,
            seed + r,
            checkpoints,
            |step, lm, train_loss| {
                let scores = target.per_document(lm);
                let point = CurvePoint {
                    step,
                    tokens: (step * proxy.batch_size * proxy.seq_len) as u64,
                    train_loss,
                    target_bpb: bits_per_byte(&scores),
                    pool_bpb: bits_per_byte(&pool.per_document(lm)),
                };
                tracing::info!(
                    "  seed {}: step {step} of {}, training loss {train_loss:.4} nats/token, evaluation {:.4} bits/byte",
                    seed + r,
                    proxy.steps(),
                    point.target_bpb
                );
                curve.push(point);
                last = scores;
            },
        )?;
        trained.curves.push(curve);
        trained.finals.push(last);
    }
    Ok(trained)
}

/// Checks the reference sets of every method against the evaluation documents.
fn check_references(
    config: &AblationConfig,
    index: &EvaluationIndex,
    allow_overlap: bool,
) -> Result<Vec<Vec<(String, OverlapCount)>>> {
    let mut all = Vec::new();
    for m in &config.methods {
        let mut per_method = Vec::new();
        for (i, stage) in m.stages.iter().enumerate() {
            for aim in stage.aimed_at() {
                let texts = read_texts(aim.paths, aim.text_column, usize::MAX)
                    .with_context(|| format!("method `{}`: stages[{i}].{}", m.name, aim.key))?;
                let count = OverlapCount::of(index, texts.iter().map(String::as_str));
                let label = format!("{}.{}", stage.type_name(), aim.key);
                if count.total() > 0 && !allow_overlap {
                    bail!(
                        "method `{}`: {} of the {} documents of its {label} ({:?}) overlap the evaluation documents ({} exact, {} sharing a {}-word run): a method must not be aimed at what it is scored on. Split the target with `gleaner split`, or pass --allow-reference-overlap to report it anyway",
                        m.name,
                        count.total(),
                        count.documents,
                        aim.paths,
                        count.exact,
                        count.shingle,
                        overlap::SHINGLE_WORDS
                    );
                }
                per_method.push((label, count));
            }
        }
        all.push(per_method);
    }
    Ok(all)
}

/// How `evaluate` runs: the command line's flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The `--quick` settings ([`EvaluateConfig::quick`]).
    pub quick: bool,
    /// Report, instead of refusing, a reference set that overlaps the evaluation documents.
    pub allow_reference_overlap: bool,
    /// Fit only the n-gram model; train no neural model.
    pub ngram_only: bool,
}

/// Trains and evaluates every method of `config` (with `ngram_only`, fits its n-gram model
/// only); writes `evaluation.json`, `evaluation.md` and `evaluation.html` into its output
/// folder.
pub fn evaluate(config: &AblationConfig, options: Options) -> Result<Evaluation> {
    let Options {
        quick,
        allow_reference_overlap,
        ngram_only,
    } = options;
    let Some(settings) = &config.evaluate else {
        bail!("at key `evaluate`: the config has no [evaluate] table (target_paths, train_tokens, ...)");
    };
    let settings = if quick {
        settings.quick()
    } else {
        settings.clone()
    };
    settings.validate()?;
    if ngram_only && settings.ngram_order == 0 {
        bail!("at key `evaluate.ngram_order`: 0 turns the n-gram model off, and --ngram-only trains no other model");
    }
    let baseline = config
        .methods
        .iter()
        .position(|m| m.name == settings.baseline);
    if baseline.is_none() && config.methods.iter().any(|m| m.name != settings.baseline) {
        let names: Vec<&str> = config.methods.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "at key `evaluate.baseline`: no method is named `{}` (methods: {names:?})",
            settings.baseline
        );
    }
    let seed = settings.seed.unwrap_or(config.run.seed);
    let proxy = &settings.proxy;
    let target = read_texts(
        &settings.target_paths,
        &settings.target_text_column,
        settings.eval_documents,
    )
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
    let index = EvaluationIndex::new(target.iter().map(String::as_str));
    let references = check_references(config, &index, allow_reference_overlap)?;

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
    let target_scored = Scored::new(&target, proxy.seq_len);
    // The pool sample is a diagnostic (how well each model fits the pool it was drawn from):
    // its documents' first window only, so one long document cannot dominate the cost.
    let pool_heads: Vec<String> = pool_texts
        .iter()
        .map(|t| {
            let mut end = t.len().min(proxy.seq_len);
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t[..end].to_string()
        })
        .collect();
    let pool_scored = Scored::new(&pool_heads, proxy.seq_len);
    let pool_set: HashSet<&str> = pool_texts.iter().map(String::as_str).collect();
    let steps = proxy.steps();
    let checkpoints = checkpoint_steps(steps, settings.eval_points);
    let mut methods = Vec::new();
    let mut raws = Vec::new();
    let mut baseline_draws = Vec::new();
    for (m, references) in config.methods.iter().zip(references) {
        let started = Instant::now();
        // The method's selection; for the baseline, each of its draws (its own first).
        let mut runs = vec![(m.name.clone(), config.method_config(m))];
        if m.name == settings.baseline {
            runs.extend(config.baseline_draws());
        }
        let mut selections = Vec::new();
        for (name, run) in &runs {
            let texts = selection_texts(run).with_context(|| format!("method `{name}`"))?;
            if texts.is_empty() {
                bail!("method `{name}`: its selection is empty; nothing to train on");
            }
            selections.push(texts);
        }
        let texts = &selections[0];
        tracing::info!(
            "evaluate {}: {} documents, {steps} steps{}",
            m.name,
            texts.len(),
            if selections.len() > 1 {
                format!(", {} draws", selections.len())
            } else {
                String::new()
            }
        );
        let overlap = texts
            .iter()
            .filter(|t| pool_set.contains(t.as_str()))
            .count();
        let selection_tokens: u64 = texts.iter().map(|t| t.len() as u64 + 1).sum();
        let ngram: Vec<Vec<(f64, u64)>> = if settings.ngram_order > 0 {
            selections
                .iter()
                .map(|texts| ngram_scores(texts, settings.ngram_order, &target))
                .collect()
        } else {
            Vec::new()
        };
        if m.name == settings.baseline {
            baseline_draws = runs
                .iter()
                .zip(&selections)
                .enumerate()
                .map(|(k, ((name, run), texts))| BaselineDraw {
                    name: name.clone(),
                    seed: run.run.seed,
                    documents: texts.len() as u64,
                    ngram_bpb: ngram.get(k).map(|scores| bits_per_byte(scores)),
                })
                .collect();
        }
        // With --ngram-only no neural seed is trained: the curves and scores stay empty.
        let neural_seeds = if ngram_only { 0 } else { settings.repeats };
        let Trained {
            curves: runs,
            finals,
        } = train_seeds(
            &selections,
            proxy,
            (seed, neural_seeds),
            &checkpoints,
            (&target_scored, &pool_scored),
        )
        .context("at key `evaluate.proxy.device`")?;
        let second = match &settings.second_model {
            Some(model) => {
                let points = checkpoint_steps(model.steps(), 1);
                train_seeds(
                    &selections,
                    model,
                    (seed, neural_seeds),
                    &points,
                    (&target_scored, &pool_scored),
                )
                .context("at key `evaluate.second_model.device`")?
                .finals
            }
            None => Vec::new(),
        };
        let n = runs.len() as f64;
        let curve: Vec<CurvePoint> = (0..runs.first().map_or(0, Vec::len))
            .map(|k| CurvePoint {
                step: runs[0][k].step,
                tokens: runs[0][k].tokens,
                train_loss: runs.iter().map(|c| c[k].train_loss).sum::<f64>() / n,
                target_bpb: runs.iter().map(|c| c[k].target_bpb).sum::<f64>() / n,
                pool_bpb: runs.iter().map(|c| c[k].pool_bpb).sum::<f64>() / n,
            })
            .collect();
        let last = |f: fn(&CurvePoint) -> f64| -> Vec<f64> {
            runs.iter().filter_map(|c| c.last().map(f)).collect()
        };
        let trained = (steps * proxy.batch_size * (proxy.seq_len + 1)) as f64;
        let epochs = trained / selection_tokens.max(1) as f64;
        if !ngram_only && epochs > render::MANY_EPOCHS {
            tracing::warn!(
                "method `{}`: the neural model passes over its selection {epochs:.1} times; its held-out losses measure memorisation as much as the selection",
                m.name
            );
        }
        methods.push(MethodEvaluation {
            name: m.name.clone(),
            documents: texts.len() as u64,
            selection_tokens,
            epochs,
            held_out: HeldOut {
                references,
                selection: OverlapCount::of(&index, texts.iter().map(String::as_str)),
            },
            pool_sample_overlap: overlap as f64 / pool_texts.len().max(1) as f64,
            // The baseline's: the mean over its draws.
            ngram_bpb: (!ngram.is_empty()).then(|| bits_per_byte(&mean_scores(&ngram))),
            final_target_bpb: last(|p| p.target_bpb),
            final_pool_bpb: last(|p| p.pool_bpb),
            curve,
            ngram_vs_baseline: None,
            neural_vs_baseline: None,
            second_target_bpb: second.iter().map(|s| bits_per_byte(s)).collect(),
            second_vs_baseline: None,
            seconds: started.elapsed().as_secs_f64(),
        });
        raws.push(Raw {
            ngram,
            neural: finals,
            second,
        });
    }
    if let Some(b) = baseline {
        compare_with_baseline(&mut methods, &raws, b, &settings, seed);
    }
    let mut models: Vec<(&str, Vec<f64>)> = Vec::new();
    if settings.ngram_order > 0 {
        models.push((
            "n-gram",
            methods.iter().filter_map(|m| m.ngram_bpb).collect(),
        ));
    }
    if !ngram_only {
        models.push((
            "neural",
            methods
                .iter()
                .map(|m| mean_sd(&m.final_target_bpb).0)
                .collect(),
        ));
    }
    if settings.second_model.is_some() && !ngram_only {
        models.push((
            "second neural",
            methods
                .iter()
                .map(|m| mean_sd(&m.second_target_bpb).0)
                .collect(),
        ));
    }
    let rank_agreement = ranks::agreements(&models);
    let evaluation = Evaluation {
        second_parameters: settings
            .second_model
            .as_ref()
            .map(|m| m.shape().parameters()),
        rank_agreement,
        baseline_draws,
        parameters: proxy.shape().parameters(),
        steps,
        seed,
        train_tokens: (steps * proxy.batch_size * proxy.seq_len) as u64,
        target_documents: target.len(),
        target_bytes: target.iter().map(|t| t.len() as u64).sum(),
        pool_documents: pool_texts.len(),
        reference_overlap_allowed: allow_reference_overlap,
        ngram_only,
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

/// Fills each method's comparison with the baseline (method `b`).
fn compare_with_baseline(
    methods: &mut [MethodEvaluation],
    raws: &[Raw],
    b: usize,
    settings: &EvaluateConfig,
    seed: u64,
) {
    let base = &raws[b];
    for (k, (m, raw)) in methods.iter_mut().zip(raws).enumerate() {
        if k == b {
            continue;
        }
        // Seeded by the method's name, so its intervals do not depend on which other methods
        // are evaluated with it.
        let draws = seed ^ 0xB007 ^ xxh3_64(m.name.as_bytes());
        let boot = |x: &[(f64, u64)], y: &[(f64, u64)]| {
            bootstrap_difference(x, y, settings.bootstrap_replicates, draws)
        };
        if let (Some(x), false) = (raw.ngram.first(), base.ngram.is_empty()) {
            // Against the mean of the baseline's draws over the documents, and against each
            // draw (a t interval over the draws, with two or more).
            let bootstrap = boot(x, &mean_scores(&base.ngram));
            let per_draw: Vec<f64> = base
                .ngram
                .iter()
                .map(|y| bits_per_byte(x) - bits_per_byte(y))
                .collect();
            let draws = t_interval(&per_draw);
            let mut all = vec![bootstrap];
            all.extend(draws);
            m.ngram_vs_baseline = Some(Comparison {
                difference: mean_sd(&per_draw).0,
                bootstrap,
                seeds: None,
                draws,
                verdict: Verdict::of(&all),
            });
        }
        if !raw.neural.is_empty() {
            m.neural_vs_baseline = Some(neural_comparison(&raw.neural, &base.neural, boot));
        }
        if !raw.second.is_empty() {
            m.second_vs_baseline = Some(neural_comparison(&raw.second, &base.second, boot));
        }
    }
}

/// A neural model's comparison from per-seed, per-document scores of a method (`runs`) and
/// of the baseline: the mean paired difference over seeds, the bootstrap over documents of
/// the seed-mean scores (`boot`), and the t interval over seeds.
fn neural_comparison(
    runs: &[Vec<(f64, u64)>],
    base: &[Vec<(f64, u64)>],
    boot: impl Fn(&[(f64, u64)], &[(f64, u64)]) -> Interval,
) -> Comparison {
    let per_seed: Vec<f64> = runs
        .iter()
        .zip(base)
        .map(|(x, y)| bits_per_byte(x) - bits_per_byte(y))
        .collect();
    let bootstrap = boot(&mean_scores(runs), &mean_scores(base));
    let seeds = t_interval(&per_seed);
    let mut all = vec![bootstrap];
    all.extend(seeds);
    Comparison {
        difference: mean_sd(&per_seed).0,
        bootstrap,
        seeds,
        draws: None,
        verdict: Verdict::of(&all),
    }
}
