//! The `[evaluate]` table of an ablation config: what `gleaner evaluate` scores and how.

use crate::kneser_ney;
use crate::training::ProxyTrainingConfig;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The `[evaluate]` table of an ablation config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    /// Parquet/JSONL files, directories or globs of the evaluation documents: held out from
    /// every method's reference set (make them with `gleaner split`).
    pub target_paths: Vec<String>,
    /// Text column of the target files.
    #[serde(default = "default_text")]
    pub target_text_column: String,
    /// The method every other one is compared with.
    #[serde(default = "default_baseline")]
    pub baseline: String,
    /// Selections of the baseline compared against, each a run of its stages with `run.seed`
    /// plus the draw's number (`ablate` makes them: `<baseline>-draw-<k>/`). A random
    /// baseline's selection is itself a draw: with one, a method that is another random draw
    /// can look better or worse by the luck of the draw. Seed `r` of the neural model trains
    /// on draw `r` mod the draws; the n-gram model is fitted on each.
    #[serde(default = "default_baseline_draws")]
    pub baseline_draws: usize,
    /// Points of the learning curve (evaluations, the last at the end of training).
    #[serde(default = "default_eval_points")]
    pub eval_points: usize,
    /// Evaluation documents scored at most (the first ones), and the size of the pool sample.
    /// Documents are scored whole.
    #[serde(default = "default_eval_documents")]
    pub eval_documents: usize,
    /// Neural models trained per method, from seeds `seed`, `seed + 1`, ...: with two or more
    /// the comparison also has a t interval over seeds.
    #[serde(default = "default_repeats")]
    pub repeats: usize,
    /// Order of the Kneser-Ney n-gram evaluation model (2..=12; 0 turns it off).
    #[serde(default = "default_ngram_order")]
    pub ngram_order: usize,
    /// Bootstrap replicates of the intervals over evaluation documents.
    #[serde(default = "default_bootstrap")]
    pub bootstrap_replicates: usize,
    /// The model trained on each selection and how (`[evaluate.proxy]`).
    #[serde(default)]
    pub proxy: ProxyTrainingConfig,
    /// A second neural model (`[evaluate.second_model]`, e.g. another size), trained the same
    /// way on each selection: its own comparison with the baseline, and the rank agreement of
    /// the three evaluation models is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_model: Option<ProxyTrainingConfig>,
    /// Seed of the initialisation, the data order, the pool sample and the bootstrap
    /// (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_text() -> String {
    "text".into()
}
fn default_baseline() -> String {
    "random".into()
}
fn default_repeats() -> usize {
    1
}
fn default_baseline_draws() -> usize {
    3
}
fn default_eval_points() -> usize {
    8
}
fn default_eval_documents() -> usize {
    128
}
fn default_ngram_order() -> usize {
    5
}
fn default_bootstrap() -> usize {
    1000
}

impl EvaluateConfig {
    /// The `--quick` variant: a 2-layer, 64-wide model (and a 1-layer, 32-wide second model)
    /// on a sixth of the tokens, fewer evaluation documents and points (for CI and smoke
    /// tests).
    pub fn quick(&self) -> Self {
        Self {
            second_model: self.second_model.as_ref().map(|m| ProxyTrainingConfig {
                train_tokens: (m.train_tokens / 6).max(1),
                layers: 1,
                hidden: 32,
                heads: 1,
                intermediate: 64,
                ..m.clone()
            }),
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
            ("baseline_draws", self.baseline_draws),
            ("bootstrap_replicates", self.bootstrap_replicates),
        ] {
            crate::config::positive("evaluate", name, v)?;
        }
        if self.ngram_order != 0 && !(2..=kneser_ney::MAX_ORDER).contains(&self.ngram_order) {
            bail!(
                "at key `evaluate.ngram_order`: {} is outside 2..={} (0 turns the n-gram model off)",
                self.ngram_order,
                kneser_ney::MAX_ORDER
            );
        }
        if let Some(second) = &self.second_model {
            second.validate("evaluate.second_model")?;
        }
        self.proxy.validate("evaluate.proxy")
    }
}
