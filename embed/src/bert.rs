//! BERT-family encoder (all-MiniLM-L6-v2 and relatives), mirroring Hugging Face's
//! `modeling_bert.py` module tree so `model.safetensors` names map onto it directly.
//!
//! Reference formula (Devlin et al. 2019; HF `BertModel`): embeddings = LayerNorm(word +
//! position + token_type); each layer is post-norm: `x = LN(x + Attn(x))`, `x = LN(x + W2 gelu(W1 x))`,
//! with bidirectional multi-head attention over the real (unpadded) tokens.

use std::path::Path;

use crate::cpu_kernels::gelu;
use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use serde::Deserialize;

use crate::weights::{load_safetensors, read_config};
use crate::ModelError;

/// The subset of HF `BertConfig` (`config.json`) the encoder needs.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    /// Must be `bert`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block; only `gelu` (erf form) is supported.
    pub hidden_act: String,
    /// Number of learned positions: the longest input in tokens.
    pub max_position_embeddings: usize,
    /// Number of token types (segment ids).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_config(path)?;
        let error = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        if config.model_type != "bert" {
            return Err(error(format!(
                "key `model_type`: unsupported architecture `{}` for the sentence encoder; \
                 expected `bert`",
                config.model_type
            )));
        }
        if config.hidden_act != "gelu" {
            return Err(error(format!(
                "key `hidden_act`: `{}` is not supported; expected `gelu`",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(error(format!(
                "key `num_attention_heads`: {} does not divide hidden_size {}",
                config.num_attention_heads, config.hidden_size
            )));
        }
        Ok(config)
    }

    fn linear(&self, d_in: usize, d_out: usize, device: &Device) -> Linear {
        LinearConfig::new(d_in, d_out)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device)
    }

    fn layer_norm(&self, device: &Device) -> LayerNorm {
        LayerNormConfig::new(self.hidden_size)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }

    fn embedding(&self, n: usize, device: &Device) -> Embedding {
        EmbeddingConfig::new(n, self.hidden_size)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device)
    }
}

/// Word, position and token-type embeddings followed by LayerNorm.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub(crate) word_embeddings: Embedding,
    pub(crate) position_embeddings: Embedding,
    pub(crate) token_type_embeddings: Embedding,
    pub(crate) layer_norm: LayerNorm,
}

impl BertEmbeddings {
    fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            word_embeddings: config.embedding(config.vocab_size, device),
            position_embeddings: config.embedding(config.max_position_embeddings, device),
            token_type_embeddings: config.embedding(config.type_vocab_size, device),
            layer_norm: config.layer_norm(device),
        }
    }

    /// `ids`: [batch, tokens] -> [batch, tokens, hidden], all tokens of segment 0.
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, tokens] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..tokens as i64, &device)
            .reshape([1, tokens])
            .expand([batch, tokens]);
        let segments = Tensor::<2, Int>::zeros([batch, tokens], &device);
        let x = self.word_embeddings.forward(ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(segments);
        self.layer_norm.forward(x)
    }
}

/// Query, key and value projections (HF `attention.self`).
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) num_heads: usize,
}

/// Attention output projection and its residual LayerNorm (HF `attention.output`).
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub(crate) dense: Linear,
    pub(crate) layer_norm: LayerNorm,
}

/// HF `attention`: self-attention then output projection.
#[derive(Module, Debug)]
pub struct BertAttention {
    pub(crate) self_attn: BertSelfAttention,
    pub(crate) output: BertSelfOutput,
}

/// HF `intermediate`: the feed-forward block's first projection.
#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub(crate) dense: Linear,
}

/// HF `output`: the feed-forward block's second projection and its residual LayerNorm.
#[derive(Module, Debug)]
pub struct BertOutput {
    pub(crate) dense: Linear,
    pub(crate) layer_norm: LayerNorm,
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub(crate) attention: BertAttention,
    pub(crate) intermediate: BertIntermediate,
    pub(crate) output: BertOutput,
}

impl BertLayer {
    fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        Self {
            attention: BertAttention {
                self_attn: BertSelfAttention {
                    query: config.linear(h, h, device),
                    key: config.linear(h, h, device),
                    value: config.linear(h, h, device),
                    num_heads: config.num_attention_heads,
                },
                output: BertSelfOutput {
                    dense: config.linear(h, h, device),
                    layer_norm: config.layer_norm(device),
                },
            },
            intermediate: BertIntermediate {
                dense: config.linear(h, config.intermediate_size, device),
            },
            output: BertOutput {
                dense: config.linear(config.intermediate_size, h, device),
                layer_norm: config.layer_norm(device),
            },
        }
    }

    /// `x`: [batch, tokens, hidden]; `mask`: true at (query, key) pairs whose key is padding.
    fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let [batch, tokens, hidden] = x.dims();
        let heads = self.attention.self_attn.num_heads;
        let split = |t: Tensor<3>| {
            t.reshape([batch, tokens, heads, hidden / heads])
                .swap_dims(1, 2)
        };
        let attn = &self.attention.self_attn;
        let q = split(attn.query.forward(x.clone()));
        let k = split(attn.key.forward(x.clone()));
        let v = split(attn.value.forward(x.clone()));
        let context = attention(q, k, v, mask, None, AttentionModuleOptions::default())
            .swap_dims(1, 2)
            .reshape([batch, tokens, hidden]);
        let out = &self.attention.output;
        let x = out.layer_norm.forward(x + out.dense.forward(context));
        let h = gelu(self.intermediate.dense.forward(x.clone()));
        self.output
            .layer_norm
            .forward(x + self.output.dense.forward(h))
    }
}

/// The layer stack (HF `encoder`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    pub(crate) layer: Vec<BertLayer>,
}

/// A BERT encoder returning the last hidden states.
#[derive(Module, Debug)]
pub struct BertModel {
    pub(crate) embeddings: BertEmbeddings,
    pub(crate) encoder: BertEncoder,
}

/// File names to module paths: HF uses `self` (a Rust keyword) and `LayerNorm`; sentence
/// transformers checkpoints sometimes carry a `bert.` prefix.
const BERT_REMAPS: &[(&str, &str)] = &[
    (r"^bert\.", ""),
    (r"\.attention\.self\.", ".attention.self_attn."),
    (r"\.LayerNorm\.", ".layer_norm."),
];

impl BertModel {
    /// A randomly initialised model (normal, std 0.02, as HF initialises BERT).
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, device),
            encoder: BertEncoder {
                layer: (0..config.num_hidden_layers)
                    .map(|_| BertLayer::new(config, device))
                    .collect(),
            },
        }
    }

    /// Builds the model for `config` and loads `weights` into it.
    pub fn load(config: &BertConfig, weights: &Path, device: &Device) -> Result<Self, ModelError> {
        let mut model = Self::new(config, device);
        load_safetensors(&mut model, weights, BERT_REMAPS)?;
        Ok(model)
    }

    /// `ids`: [batch, tokens], right-padded; `lengths`: real tokens per row.
    /// Returns [batch, tokens, hidden]; padded positions hold values that callers must ignore.
    pub fn forward(&self, ids: Tensor<2, Int>, lengths: &[usize]) -> Tensor<3> {
        let [batch, tokens] = ids.dims();
        let device = ids.device();
        let mask = padding_mask(lengths, tokens, &device).map(|m| {
            let heads = self.encoder.layer[0].attention.self_attn.num_heads;
            m.reshape([batch, 1, 1, tokens])
                .expand([batch, heads, tokens, tokens])
        });
        let mut x = self.embeddings.forward(ids);
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask.clone());
        }
        x
    }

    /// Mean of the real tokens' last hidden states, L2-normalised: [batch, hidden].
    pub fn embed(&self, ids: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        let [batch, tokens] = ids.dims();
        let device = ids.device();
        let hidden = self.forward(ids, lengths);
        let weights: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..tokens).map(move |t| if t < n { 1.0 / n as f32 } else { 0.0 }))
            .collect();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [batch, tokens]), &device);
        let pooled = (hidden * weights.unsqueeze_dim(2))
            .sum_dim(1)
            .squeeze_dim(1);
        let norm = pooled.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        pooled / norm
    }
}

/// True where a key position is padding, [batch, tokens]; `None` when no row is padded.
fn padding_mask(lengths: &[usize], tokens: usize, device: &Device) -> Option<Tensor<2, Bool>> {
    if lengths.iter().all(|&n| n == tokens) {
        return None;
    }
    let flags: Vec<bool> = lengths
        .iter()
        .flat_map(|&n| (0..tokens).map(move |t| t >= n))
        .collect();
    Some(Tensor::from_data(
        TensorData::new(flags, [lengths.len(), tokens]),
        device,
    ))
}
