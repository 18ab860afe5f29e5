//! Model stages: embed and lm_score settings, and how long documents are read.

use super::*;

/// How a model stage treats documents longer than its `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LongDocumentsConfig {
    /// Use the first `max_tokens` tokens.
    #[default]
    Truncate,
    /// Average over consecutive `max_tokens` chunks.
    ChunkMean,
}

/// Settings of the `embed` stage: a Hugging Face BERT-family folder (`config.json`,
/// `model.safetensors`, `tokenizer.json`), e.g. all-MiniLM-L6-v2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// Model folder.
    pub model: String,
    /// Name under which later stages (semdedup) read the embeddings.
    #[serde(default = "default_embed_column")]
    pub column: String,
    /// Longest input in tokens (capped at the model's positions).
    #[serde(default = "default_embed_max_tokens")]
    pub max_tokens: usize,
    /// `truncate` or `chunk_mean`.
    #[serde(default)]
    pub long_documents: LongDocumentsConfig,
    /// Tokens per forward batch at most (packed without padding on the CPU, which cuts them
    /// smaller when that gives each thread whole batches; on other devices inputs of equal
    /// length are batched together).
    #[serde(default = "default_embed_batch_tokens")]
    pub batch_tokens: usize,
    /// `cpu`, `gpu` (Vulkan) or `cuda`.
    #[serde(default = "default_device")]
    pub device: String,
}

/// Settings of the `lm_score` stage: a Hugging Face Llama-family folder, e.g. SmolLM2-135M.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmScoreConfig {
    /// Model folder.
    pub model: String,
    /// Name under which later stages (score_filter, score_select) read the loss.
    #[serde(default = "default_lm_column")]
    pub column: String,
    /// Longest sequence in tokens.
    #[serde(default = "default_lm_max_tokens")]
    pub max_tokens: usize,
    /// `truncate` or `chunk_mean`.
    #[serde(default)]
    pub long_documents: LongDocumentsConfig,
    /// Tokens per forward batch (packed without padding on the CPU; on other devices inputs
    /// of equal length are batched together).
    #[serde(default = "default_lm_batch_tokens")]
    pub batch_tokens: usize,
    /// `cpu`, `gpu` (Vulkan) or `cuda`.
    #[serde(default = "default_device")]
    pub device: String,
}

pub(super) fn default_embed_column() -> String {
    "embedding".into()
}
pub(super) fn default_embed_max_tokens() -> usize {
    256
}
pub(super) fn default_embed_batch_tokens() -> usize {
    8192
}
pub(super) fn default_lm_column() -> String {
    "lm_loss".into()
}
pub(super) fn default_lm_max_tokens() -> usize {
    1024
}
pub(super) fn default_lm_batch_tokens() -> usize {
    4096
}
pub(super) fn default_device() -> String {
    "cpu".into()
}

/// What every model stage configures the same way: the model folder, how much of each
/// document it reads and how, its batch size in tokens, and the device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSettings<'a> {
    /// Model folder.
    pub model: &'a str,
    /// Longest input in tokens.
    pub max_tokens: usize,
    /// Longer documents: truncated, or averaged over chunks.
    pub long_documents: LongDocumentsConfig,
    /// Tokens per forward batch.
    pub batch_tokens: usize,
    /// `cpu`, `gpu` or `cuda`.
    pub device: &'a str,
}

/// `settings()` for model-stage configs that carry the five model fields.
macro_rules! model_settings {
    ($($config:ty),*) => {$(
        impl $config {
            /// Its model settings.
            pub fn settings(&self) -> ModelSettings<'_> {
                ModelSettings {
                    model: &self.model,
                    max_tokens: self.max_tokens,
                    long_documents: self.long_documents,
                    batch_tokens: self.batch_tokens,
                    device: &self.device,
                }
            }
        }
    )*};
}

model_settings!(EmbedConfig, LmScoreConfig, AttentionInfluenceConfig);

impl StageSettings for EmbedConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        let key = cx.key;
        positive(key, "max_tokens", self.max_tokens)?;
        positive(key, "batch_tokens", self.batch_tokens)?;
        device(key, &self.device)?;
        if cx.config.input.embedding_column.is_some() {
            bail!("at key `{key}` (embed): `input.embedding_column` also names embeddings; keep one of the two");
        }
        Ok(())
    }
}

impl StageSettings for LmScoreConfig {
    fn kind(&self) -> StageKind {
        StageKind::Document
    }

    fn validate(&self, cx: &StageContext<'_>) -> Result<()> {
        if self.max_tokens < 2 {
            bail!(
                "at key `{}.max_tokens`: must be at least 2 (a loss needs two tokens)",
                cx.key
            );
        }
        positive(cx.key, "batch_tokens", self.batch_tokens)?;
        device(cx.key, &self.device)
    }
}
