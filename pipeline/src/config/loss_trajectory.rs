//! S2L's proxy: loss trajectories of a small LM trained on the input.

use super::*;

/// Settings of the `loss_trajectory` stage (docs/METHODS.md): the proxy is
/// trained on every non-empty input document (its byte tokens, seeded order) and scores each
/// document's first `max_tokens` bytes at `checkpoints` evenly spaced steps, the last at the
/// end of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossTrajectoryConfig {
    /// Name of the vector column (`s2l.trajectory_column` reads it).
    #[serde(default = "default_trajectory_column")]
    pub column: String,
    /// Checkpoints: the trajectory's length.
    #[serde(default = "default_trajectory_checkpoints")]
    pub checkpoints: usize,
    /// Tokens (bytes, plus the end marker) of each document scored.
    #[serde(default = "default_lm_max_tokens")]
    pub max_tokens: usize,
    /// The proxy and its training run (`[stages.proxy]`).
    #[serde(default)]
    pub proxy: crate::training::ProxyTrainingConfig,
    /// Seed of the initialisation and the data order (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_trajectory_column() -> String {
    "loss_trajectory".into()
}
fn default_trajectory_checkpoints() -> usize {
    4
}

impl StageSettings for LossTrajectoryConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        positive(key, "checkpoints", self.checkpoints)?;
        if self.max_tokens < 2 {
            bail!("at key `{key}.max_tokens`: must be at least 2 (a loss needs two tokens)");
        }
        self.proxy.validate(&format!("{key}.proxy"))?;
        if self.checkpoints > self.proxy.steps() {
            bail!(
                "at key `{key}.checkpoints`: {} is more than the proxy's {} training steps",
                self.checkpoints,
                self.proxy.steps()
            );
        }
        Ok(())
    }
}
