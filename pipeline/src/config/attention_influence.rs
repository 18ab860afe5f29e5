//! AttentionInfluence: masked-head scoring settings (and its probes).

use super::*;

/// How masked and base losses combine into the AttentionInfluence score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFormulaConfig {
    /// `(L_masked - L_base) / L_base`.
    #[default]
    Relative,
    /// `L_masked - L_base`.
    Absolute,
}

/// Which positions a masked head attends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UniformScopeConfig {
    /// Uniform over the positions up to the query (prefix mean of V; stays causal).
    #[default]
    Visible,
    /// Uniform over the whole sequence (leaks future tokens; for comparison only).
    Full,
}

/// Synthetic key-value retrieval probes for finding retrieval heads (spec 2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Number of probes.
    #[serde(default = "default_probe_samples")]
    pub num_samples: usize,
    /// Question/answer demonstrations per probe.
    #[serde(default = "default_probe_shots")]
    pub shots: usize,
    /// Characters of each random alphanumeric key.
    #[serde(default = "default_probe_key_len")]
    pub key_len: usize,
    /// Longest value sentence, in tokens.
    #[serde(default = "default_probe_value_tokens")]
    pub value_max_tokens: usize,
    /// Longest prompt plus answer, in tokens (pairs are added up to it).
    #[serde(default = "default_probe_total_tokens")]
    pub max_total_tokens: usize,
    /// Parquet files, directories or globs whose sentences become values (default: the input).
    #[serde(default)]
    pub value_paths: Vec<String>,
    /// Text column of the value files (default: `input.text_column`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text_column: Option<String>,
    /// Documents read for value sentences, in corpus order.
    #[serde(default = "default_probe_value_documents")]
    pub max_value_documents: usize,
    /// Seed (default: `run.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            num_samples: default_probe_samples(),
            shots: default_probe_shots(),
            key_len: default_probe_key_len(),
            value_max_tokens: default_probe_value_tokens(),
            max_total_tokens: default_probe_total_tokens(),
            value_paths: Vec::new(),
            value_text_column: None,
            max_value_documents: default_probe_value_documents(),
            seed: None,
        }
    }
}

fn default_probe_samples() -> usize {
    800
}
fn default_probe_shots() -> usize {
    3
}
fn default_probe_key_len() -> usize {
    32
}
fn default_probe_value_tokens() -> usize {
    30
}
fn default_probe_total_tokens() -> usize {
    4096
}
fn default_probe_value_documents() -> usize {
    5000
}

/// Settings of the `attention_influence` stage (spec section 2). Defaults follow the paper;
/// detection with 800 probes of 4,096 tokens is a GPU-sized job, so CPU configs use fewer,
/// shorter probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionInfluenceConfig {
    /// Llama-family model folder (the small selector model).
    pub model: String,
    /// Name under which later stages (score_select) read the score.
    #[serde(default = "default_ai_column")]
    pub column: String,
    /// Heads to mask as `[[layer, head], ...]`; when empty they are detected with probes.
    #[serde(default)]
    pub heads: Vec<[usize; 2]>,
    /// Fraction of all query heads kept by detection (`round(fraction * heads)`, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_top_frac: Option<f64>,
    /// Number of heads kept by detection (instead of a fraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_top_n: Option<usize>,
    /// Count a probe only when the greedy answer recalls over half the value's tokens.
    #[serde(default)]
    pub require_correct_answer: bool,
    /// Longest greedy answer during detection (decoding also stops at a line break).
    #[serde(default = "default_ai_decode_tokens")]
    pub max_decode_tokens: usize,
    /// The probe set.
    #[serde(default)]
    pub probe: ProbeConfig,
    /// Positions a masked head attends to.
    #[serde(default)]
    pub uniform_scope: UniformScopeConfig,
    /// `relative` ((masked - base) / base) or `absolute` (masked - base).
    #[serde(default)]
    pub formula: ScoreFormulaConfig,
    /// Longest scored sequence in tokens.
    #[serde(default = "default_lm_max_tokens")]
    pub max_tokens: usize,
    /// `truncate` or `chunk_mean`.
    #[serde(default)]
    pub long_documents: LongDocumentsConfig,
    /// Tokens per forward batch.
    #[serde(default = "default_lm_batch_tokens")]
    pub batch_tokens: usize,
    /// `cpu`, `gpu` (Vulkan) or `cuda`.
    #[serde(default = "default_device")]
    pub device: String,
}

fn default_ai_column() -> String {
    "attention_influence".into()
}
fn default_ai_decode_tokens() -> usize {
    50
}

impl AttentionInfluenceConfig {
    /// Heads kept by detection out of `total` query heads.
    pub fn heads_to_keep(&self, total: usize) -> usize {
        match self.head_top_n {
            Some(n) => n.min(total),
            None => gleaner_selectors::attention_influence::heads_for_fraction(
                total,
                self.head_top_frac.unwrap_or(0.05),
            ),
        }
    }
}

impl StageSettings for AttentionInfluenceConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        if self.max_tokens < 2 {
            bail!("at key `{key}.max_tokens`: must be at least 2 (a loss needs two tokens)");
        }
        positive(key, "batch_tokens", self.batch_tokens)?;
        device(key, &self.device)?;
        if self.head_top_frac.is_some() && self.head_top_n.is_some() {
            bail!("at key `{key}`: set at most one of `head_top_frac` and `head_top_n`");
        }
        if let Some(f) = self.head_top_frac {
            if !(f > 0.0 && f <= 1.0) {
                bail!("at key `{key}.head_top_frac`: {f} is outside (0, 1]");
            }
        }
        if self.head_top_n == Some(0) {
            bail!("at key `{key}.head_top_n`: must be at least 1");
        }
        if self.heads.is_empty() {
            let probe = format!("{key}.probe");
            positive(&probe, "num_samples", self.probe.num_samples)?;
            positive(&probe, "shots", self.probe.shots)?;
            positive(&probe, "key_len", self.probe.key_len)?;
            positive(&probe, "value_max_tokens", self.probe.value_max_tokens)?;
            positive(
                &probe,
                "max_value_documents",
                self.probe.max_value_documents,
            )?;
            positive(key, "max_decode_tokens", self.max_decode_tokens)?;
        } else if self.head_top_frac.is_some() || self.head_top_n.is_some() {
            bail!("at key `{key}.heads`: explicit heads skip detection; drop `head_top_frac`/`head_top_n` or the heads");
        }
        Ok(())
    }
}
