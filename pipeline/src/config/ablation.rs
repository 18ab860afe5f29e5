//! An ablation config: the shared `[input]`, `[output]` and `[run]` tables, the `[[methods]]`
//! (each a name and its own stages) and the optional `[evaluate]` table.

use super::evaluate::EvaluateConfig;
use super::{apply_override, Config, InputConfig, OutputConfig, RunConfig, StageConfig};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// An ablation: shared input and settings, several methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationConfig {
    /// The pool every method selects from.
    pub input: InputConfig,
    /// `dir` holds one folder per method plus the comparison.
    pub output: OutputConfig,
    /// Seed and threads shared by every method.
    #[serde(default)]
    pub run: RunConfig,
    /// The methods to compare.
    pub methods: Vec<Method>,
    /// How `gleaner evaluate` trains a model on each selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate: Option<EvaluateConfig>,
    /// Clusters of the pool's embeddings (`input.embedding_column`) the comparison shows each
    /// selection's composition over (spherical k-means seeded by `run.seed`).
    #[serde(default = "default_comparison_clusters")]
    pub comparison_clusters: usize,
}

fn default_comparison_clusters() -> usize {
    20
}

/// One method of an ablation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// Name, also its output folder (letters, digits, `_` and `-`).
    pub name: String,
    /// Its stages, as in a run config.
    pub stages: Vec<StageConfig>,
}

impl AblationConfig {
    /// Reads `path`, applies overrides (`methods.1.stages.0.fraction=0.2`), validates every method.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut doc: toml::Value =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let config: AblationConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
            let key = e.path().to_string();
            anyhow!(
                "config {}: at key `{key}`: {}",
                path.display(),
                e.into_inner()
            )
        })?;
        if config.methods.is_empty() {
            bail!(
                "config {}: at key `methods`: list at least one method",
                path.display()
            );
        }
        if let Some(e) = &config.evaluate {
            e.validate()
                .with_context(|| format!("config {}", path.display()))?;
        }
        let mut names = BTreeSet::new();
        for (i, m) in config.methods.iter().enumerate() {
            if m.name.is_empty()
                || !m
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!("config {}: at key `methods[{i}].name`: `{}` must be letters, digits, `_` or `-`", path.display(), m.name);
            }
            if !names.insert(m.name.clone()) {
                bail!(
                    "config {}: at key `methods[{i}].name`: `{}` is used twice",
                    path.display(),
                    m.name
                );
            }
            if let Some((draw, _)) = config.baseline_draws().iter().find(|d| d.0 == m.name) {
                bail!(
                    "config {}: at key `methods[{i}].name`: `{}` is the folder of the baseline's draw `{draw}` (evaluate.baseline_draws); rename the method",
                    path.display(),
                    m.name
                );
            }
            config.method_config(m).validate().with_context(|| {
                format!(
                    "config {}: method `{}` (methods[{i}])",
                    path.display(),
                    m.name
                )
            })?;
        }
        Ok(config)
    }

    /// Keeps only the methods named in `names` (in config order), for `--methods`; a name the
    /// config does not have is an error that lists the ones it has.
    pub fn keep_methods(&mut self, names: &[String]) -> Result<()> {
        let have: Vec<&str> = self.methods.iter().map(|m| m.name.as_str()).collect();
        if let Some(unknown) = names.iter().find(|n| !have.contains(&n.as_str())) {
            bail!("--methods: the config has no method `{unknown}` (methods: {have:?})");
        }
        self.methods.retain(|m| names.contains(&m.name));
        Ok(())
    }

    /// The extra draws of the evaluation's baseline (`evaluate.baseline_draws - 1` of them,
    /// none without `[evaluate]` or when the baseline is not among the methods): per draw
    /// `k` (from 1), its folder name `<baseline>-draw-<k>` and its run config, the
    /// baseline's with `run.seed + k`.
    pub fn baseline_draws(&self) -> Vec<(String, Config)> {
        let Some(settings) = &self.evaluate else {
            return Vec::new();
        };
        let Some(baseline) = self.methods.iter().find(|m| m.name == settings.baseline) else {
            return Vec::new();
        };
        (1..settings.baseline_draws)
            .map(|k| {
                let name = format!("{}-draw-{k}", baseline.name);
                let mut config = self.method_config(baseline);
                config.output.dir = Path::new(&self.output.dir)
                    .join(&name)
                    .to_string_lossy()
                    .into_owned();
                config.run.seed = self.run.seed.wrapping_add(k as u64);
                (name, config)
            })
            .collect()
    }

    /// The run config of one method.
    pub fn method_config(&self, m: &Method) -> Config {
        let mut output = self.output.clone();
        output.dir = Path::new(&self.output.dir)
            .join(&m.name)
            .to_string_lossy()
            .into_owned();
        Config {
            input: self.input.clone(),
            output,
            run: self.run.clone(),
            stages: m.stages.clone(),
            slurm: None,
        }
    }
}
