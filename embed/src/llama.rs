//! Llama-family causal LM (SmolLM2 and relatives): RMSNorm pre-norm blocks, rotary position
//! embeddings (HF `rotate_half` convention), grouped-query attention, SwiGLU MLP, optionally
//! tied input/output embeddings. Module tree mirrors HF `modeling_llama.py`, so
//! `model.safetensors` names load without remapping.
//!
//! Reference formulas: Touvron et al. 2023 (Llama), HF `LlamaForCausalLM`; RoPE per Su et al.
//! 2021 with `inv_freq_i = theta^(-2i/d)`. Beyond the forward pass the model offers what data
//! selection needs: uniform-attention masking of chosen heads (prefix mean of V, AttentionInfluence
//! spec 2.2), attention probabilities of chosen heads, and taps on linear layers whose inputs and
//! output gradients give per-sample weight gradients (Quad spec 1.4).

use std::path::Path;

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, RmsNorm, RmsNormConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use serde::Deserialize;

use crate::weights::{load_safetensors, read_config};
use crate::ModelError;

/// The subset of HF `LlamaConfig` (`config.json`) the model needs.
#[derive(Clone, Debug, Deserialize)]
pub struct LlamaConfig {
    /// Must be `llama`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention); defaults to the query heads.
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; defaults to hidden_size / num_attention_heads.
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Longest context the model was trained on.
    pub max_position_embeddings: usize,
    /// Whether the output projection reuses the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// MLP activation; only `silu` is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// End-of-sequence token id, when the config names one.
    pub eos_token_id: Option<u32>,
    /// Beginning-of-sequence token id, when the config names one.
    pub bos_token_id: Option<u32>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_hidden_act() -> String {
    "silu".to_string()
}

impl LlamaConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_config(path)?;
        config.check().map_err(|message| ModelError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks that the numbers describe a model this file can build.
    pub fn check(&self) -> Result<(), String> {
        if self.model_type != "llama" {
            return Err(format!(
                "key `model_type`: unsupported architecture `{}` for the causal LM; expected `llama`",
                self.model_type
            ));
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "key `hidden_act`: `{}` is not supported; expected `silu`",
                self.hidden_act
            ));
        }
        let (heads, kv) = (self.num_attention_heads, self.kv_heads());
        if heads == 0 || kv == 0 || heads % kv != 0 {
            return Err(format!(
                "key `num_key_value_heads`: {kv} must divide num_attention_heads {heads}"
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "key `head_dim`: {} must be even for RoPE",
                self.head_dim()
            ));
        }
        Ok(())
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Query heads over all layers.
    pub fn total_heads(&self) -> usize {
        self.num_hidden_layers * self.num_attention_heads
    }

    /// (inputs, outputs) of a linear layer.
    pub fn linear_shape(&self, kind: LinearKind) -> (usize, usize) {
        let (h, q, kv, m) = (
            self.hidden_size,
            self.num_attention_heads * self.head_dim(),
            self.kv_heads() * self.head_dim(),
            self.intermediate_size,
        );
        match kind {
            LinearKind::Query => (h, q),
            LinearKind::Key | LinearKind::Value => (h, kv),
            LinearKind::Output => (q, h),
            LinearKind::Gate | LinearKind::Up => (h, m),
            LinearKind::Down => (m, h),
        }
    }

    fn linear(&self, kind: LinearKind, device: &Device) -> Linear {
        let (d_in, d_out) = self.linear_shape(kind);
        LinearConfig::new(d_in, d_out)
            .with_bias(false)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device)
    }

    fn rms_norm(&self, device: &Device) -> RmsNorm {
        RmsNormConfig::new(self.hidden_size)
            .with_epsilon(self.rms_norm_eps)
            .init(device)
    }
}

/// A linear layer inside a decoder block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearKind {
    /// `self_attn.q_proj`.
    Query,
    /// `self_attn.k_proj`.
    Key,
    /// `self_attn.v_proj`.
    Value,
    /// `self_attn.o_proj`.
    Output,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl LinearKind {
    /// Every kind, in module order.
    pub const ALL: [LinearKind; 7] = [
        Self::Query,
        Self::Key,
        Self::Value,
        Self::Output,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// The attention projections.
    pub const ATTENTION: [LinearKind; 4] = [Self::Query, Self::Key, Self::Value, Self::Output];

    /// The HF short name (`q_proj`, ..., `down_proj`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Query => "q_proj",
            Self::Key => "k_proj",
            Self::Value => "v_proj",
            Self::Output => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// Parses an HF short name.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.hf_name() == name)
    }
}

/// One linear layer of the model: (layer index, kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearId {
    /// Decoder layer, from 0.
    pub layer: usize,
    /// Which projection.
    pub kind: LinearKind,
}

/// One query head: (layer, head), both from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeadId {
    /// Decoder layer.
    pub layer: usize,
    /// Query head within the layer.
    pub head: usize,
}

/// Which positions a masked head attends to uniformly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UniformScope {
    /// Positions up to and including the query (the prefix mean of V): the default, since it
    /// keeps the model causal.
    #[default]
    Visible,
    /// Every position of the sequence (the paper's literal `1/L`): leaks future tokens into
    /// the prediction, offered for comparison only.
    Full,
}

/// Query heads whose attention is replaced by uniform attention.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadMask {
    pub(crate) heads: Vec<HeadId>,
    pub(crate) scope: UniformScope,
}

impl HeadMask {
    /// A mask over `heads` (duplicates ignored), uniform over the visible positions.
    pub fn new(mut heads: Vec<HeadId>) -> Self {
        heads.sort();
        heads.dedup();
        Self {
            heads,
            scope: UniformScope::Visible,
        }
    }

    /// The same heads with another uniform scope.
    pub fn with_scope(mut self, scope: UniformScope) -> Self {
        self.scope = scope;
        self
    }

    /// The masked heads, sorted by (layer, head).
    pub fn heads(&self) -> &[HeadId] {
        &self.heads
    }

    /// The masked heads of one layer.
    pub(crate) fn in_layer(&self, layer: usize) -> Vec<usize> {
        self.heads
            .iter()
            .filter(|h| h.layer == layer)
            .map(|h| h.head)
            .collect()
    }
}

/// What a forward pass should do beyond computing hidden states.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardRequest<'a> {
    /// Heads to replace with uniform attention.
    pub head_mask: Option<&'a HeadMask>,
    /// Heads whose attention probabilities to return.
    pub attention_of: &'a [HeadId],
    /// Linear layers to tap for gradients (needs an autodiff backward afterwards).
    pub taps: &'a [LinearId],
}

/// A tapped linear layer: its input and a zero probe added to its output. After
/// `loss.backward()`, the probe's gradient is the gradient of the loss with respect to the
/// layer's output.
pub struct Tap {
    /// Which layer.
    pub id: LinearId,
    /// The layer input, [batch, tokens, in], without autodiff.
    pub input: Tensor<3>,
    /// The zero probe, [batch, tokens, out], requiring grad.
    pub probe: Tensor<3>,
}

/// Side outputs of a forward pass.
#[derive(Default)]
pub struct ForwardTrace {
    /// Attention probabilities of the requested heads, in request order, each
    /// [batch, tokens, tokens] (query x key).
    pub attention: Vec<Tensor<3>>,
    /// Taps, in request order.
    pub taps: Vec<Tap>,
}

/// Rotary embedding tables for positions start..start + tokens, each [tokens, head_dim].
struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    fn new(config: &LlamaConfig, start: usize, tokens: usize, device: &Device) -> Self {
        let half = config.head_dim() / 2;
        let dim = config.head_dim();
        let mut cos = Vec::with_capacity(tokens * dim);
        let mut sin = Vec::with_capacity(tokens * dim);
        let inverse: Vec<f64> = (0..half)
            .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f64 / dim as f64))
            .collect();
        for t in start..start + tokens {
            // HF concatenates the half-width angle table with itself.
            for _copy in 0..2 {
                for inv in &inverse {
                    let angle = t as f64 * inv;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [tokens, dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [tokens, dim]), device),
        }
    }

    /// `x`: [batch, heads, tokens, head_dim]; `x cos + rotate_half(x) sin`.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let dim = x.dims()[3];
        let half = dim / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone().unsqueeze::<4>() + rotated * self.sin.clone().unsqueeze::<4>()
    }
}

/// Applies a linear layer, tapping it when requested.
fn tapped(
    linear: &Linear,
    x: Tensor<3>,
    id: LinearId,
    request: &ForwardRequest,
    trace: &mut ForwardTrace,
) -> Tensor<3> {
    let y = linear.forward(x.clone());
    if !request.taps.contains(&id) {
        return y;
    }
    let probe = Tensor::<3>::zeros(y.dims(), &y.device())
        .inner()
        .autodiff()
        .require_grad();
    trace.taps.push(Tap {
        id,
        input: x.inner(),
        probe: probe.clone(),
    });
    y + probe
}

/// Grouped-query self-attention (HF `self_attn`).
#[derive(Module, Debug)]
pub struct LlamaAttention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    pub(crate) num_heads: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl LlamaAttention {
    fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        rope: &Rope,
        request: &ForwardRequest,
        trace: &mut ForwardTrace,
    ) -> Tensor<3> {
        let [batch, tokens, _] = x.dims();
        let (heads, kv_heads, dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let id = |kind| LinearId { layer, kind };
        let split = |t: Tensor<3>, n: usize| t.reshape([batch, tokens, n, dim]).swap_dims(1, 2);
        let q = split(
            tapped(
                &self.q_proj,
                x.clone(),
                id(LinearKind::Query),
                request,
                trace,
            ),
            heads,
        );
        let k = split(
            tapped(&self.k_proj, x.clone(), id(LinearKind::Key), request, trace),
            kv_heads,
        );
        let v = split(
            tapped(&self.v_proj, x, id(LinearKind::Value), request, trace),
            kv_heads,
        );
        let (q, k) = (rope.apply(q), rope.apply(k));
        let (k, v) = (repeat_kv(k, heads), repeat_kv(v, heads));
        for head in request.attention_of.iter().filter(|h| h.layer == layer) {
            trace.attention.push(head_probabilities(&q, &k, head.head));
        }
        let options = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        let mut context = attention(q, k, v.clone(), None, None, options);
        let masked = request
            .head_mask
            .map(|m| m.in_layer(layer))
            .unwrap_or_default();
        if !masked.is_empty() {
            let scope = request.head_mask.map(|m| m.scope).unwrap_or_default();
            context = uniform_heads(context, v, &masked, scope);
        }
        let context = context
            .swap_dims(1, 2)
            .reshape([batch, tokens, heads * dim]);
        tapped(
            &self.o_proj,
            context,
            id(LinearKind::Output),
            request,
            trace,
        )
    }
}

impl LlamaAttention {
    /// Attention of one sequence's new positions `x` ([1, n, hidden]) over the cached
    /// positions and themselves; appends their keys and values to `cache`. `rope` covers the
    /// new positions. Also returns, per query head, the position the last new query attends
    /// to most ([heads] as an Int tensor).
    fn forward_cached(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        cache: &mut Option<(Tensor<4>, Tensor<4>)>,
    ) -> (Tensor<3>, Tensor<1, Int>) {
        let [batch, tokens, _] = x.dims();
        let (heads, kv_heads, dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split = |t: Tensor<3>, n: usize| t.reshape([batch, tokens, n, dim]).swap_dims(1, 2);
        let q = rope.apply(split(self.q_proj.forward(x.clone()), heads));
        let k = rope.apply(split(self.k_proj.forward(x.clone()), kv_heads));
        let v = split(self.v_proj.forward(x), kv_heads);
        let (k, v) = match cache.take() {
            Some((past_k, past_v)) => (
                Tensor::cat(vec![past_k, k], 2),
                Tensor::cat(vec![past_v, v], 2),
            ),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        let total = k.dims()[2];
        let (k, v) = (repeat_kv(k, heads), repeat_kv(v, heads));
        // The last query sees every position, so its softmax argmax is the argmax of its scores.
        let last = q.clone().narrow(2, tokens - 1, 1);
        let top = last
            .matmul(k.clone().swap_dims(2, 3))
            .argmax(3)
            .reshape([heads]);
        // New positions follow every cached one: causal masking is needed only among them,
        // which is the plain causal mask when the cache was empty (prefill).
        assert!(
            tokens == 1 || total == tokens,
            "cached attention takes a whole prompt or one token at a time"
        );
        let options = AttentionModuleOptions {
            is_causal: tokens > 1,
            ..Default::default()
        };
        let context = attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([batch, tokens, heads * dim]);
        (self.o_proj.forward(context), top)
    }
}

/// Repeats each key/value head of `t` ([batch, kv_heads, tokens, dim]) for the
/// `heads / kv_heads` consecutive query heads it serves (grouped-query attention).
fn repeat_kv(t: Tensor<4>, heads: usize) -> Tensor<4> {
    let [batch, kv_heads, tokens, dim] = t.dims();
    if kv_heads == heads {
        return t;
    }
    t.unsqueeze_dim::<5>(2)
        .expand([batch, kv_heads, heads / kv_heads, tokens, dim])
        .reshape([batch, heads, tokens, dim])
}

/// Keys and values of the positions a sequence has processed so far (RoPE applied), one pair
/// per layer, each [1, kv_heads, len, head_dim]: incremental decoding without recomputing the
/// prefix.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Causal attention probabilities of one query head, [batch, tokens, tokens].
fn head_probabilities(q: &Tensor<4>, k: &Tensor<4>, head: usize) -> Tensor<3> {
    let [batch, _, tokens, dim] = q.dims();
    let q = q.clone().narrow(1, head, 1).reshape([batch, tokens, dim]);
    let k = k.clone().narrow(1, head, 1).reshape([batch, tokens, dim]);
    let scores = q.matmul(k.swap_dims(1, 2)) / (dim as f64).sqrt();
    let future = Tensor::<2, Bool>::tril_mask([tokens, tokens], 0, &scores.device());
    let scores = scores.mask_fill(
        future.unsqueeze::<3>().expand([batch, tokens, tokens]),
        f32::NEG_INFINITY,
    );
    softmax(scores, 2)
}

/// Replaces the context of `masked` heads with the prefix mean of their values,
/// `o[t] = (1/(t+1)) sum_{j<=t} v[j]` (uniform attention over the visible positions), or with
/// the mean over the whole sequence for [`UniformScope::Full`].
fn uniform_heads(
    context: Tensor<4>,
    v: Tensor<4>,
    masked: &[usize],
    scope: UniformScope,
) -> Tensor<4> {
    let [_, heads, tokens, _] = context.dims();
    let device = context.device();
    let prefix_mean = match scope {
        UniformScope::Visible => {
            let counts: Vec<f32> = (1..=tokens).map(|t| 1.0 / t as f32).collect();
            let inverse_counts = Tensor::<1>::from_data(TensorData::new(counts, [tokens]), &device)
                .reshape([1, 1, tokens, 1]);
            v.cumsum(2) * inverse_counts
        }
        UniformScope::Full => {
            let dims = v.dims();
            v.mean_dim(2).expand(dims)
        }
    };
    let flags: Vec<f32> = (0..heads)
        .map(|h| if masked.contains(&h) { 1.0 } else { 0.0 })
        .collect();
    let select =
        Tensor::<1>::from_data(TensorData::new(flags, [heads]), &device).reshape([1, heads, 1, 1]);
    let keep = select.clone().neg() + 1.0;
    context * keep + prefix_mean * select
}

/// SwiGLU feed-forward block (HF `mlp`).
#[derive(Module, Debug)]
pub struct LlamaMlp {
    pub(crate) gate_proj: Linear,
    pub(crate) up_proj: Linear,
    pub(crate) down_proj: Linear,
}

impl LlamaMlp {
    fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        request: &ForwardRequest,
        trace: &mut ForwardTrace,
    ) -> Tensor<3> {
        let id = |kind| LinearId { layer, kind };
        let gate = tapped(
            &self.gate_proj,
            x.clone(),
            id(LinearKind::Gate),
            request,
            trace,
        );
        let up = tapped(&self.up_proj, x, id(LinearKind::Up), request, trace);
        tapped(
            &self.down_proj,
            silu(gate) * up,
            id(LinearKind::Down),
            request,
            trace,
        )
    }
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer {
    pub(crate) self_attn: LlamaAttention,
    pub(crate) mlp: LlamaMlp,
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) post_attention_layernorm: RmsNorm,
}

/// Token embeddings, decoder stack and final norm (HF `model`).
#[derive(Module, Debug)]
pub struct LlamaModel {
    pub(crate) embed_tokens: Embedding,
    pub(crate) layers: Vec<LlamaDecoderLayer>,
    pub(crate) norm: RmsNorm,
}

/// The causal LM: [`LlamaModel`] plus an output projection (tied or `lm_head`).
#[derive(Module, Debug)]
pub struct LlamaForCausalLm {
    pub(crate) model: LlamaModel,
    pub(crate) lm_head: Option<Linear>,
}

impl LlamaForCausalLm {
    /// A randomly initialised model (normal, std 0.02, as HF initialises Llama).
    pub fn new(config: &LlamaConfig, device: &Device) -> Self {
        let layers = (0..config.num_hidden_layers)
            .map(|_| LlamaDecoderLayer {
                self_attn: LlamaAttention {
                    q_proj: config.linear(LinearKind::Query, device),
                    k_proj: config.linear(LinearKind::Key, device),
                    v_proj: config.linear(LinearKind::Value, device),
                    o_proj: config.linear(LinearKind::Output, device),
                    num_heads: config.num_attention_heads,
                    num_kv_heads: config.kv_heads(),
                    head_dim: config.head_dim(),
                },
                mlp: LlamaMlp {
                    gate_proj: config.linear(LinearKind::Gate, device),
                    up_proj: config.linear(LinearKind::Up, device),
                    down_proj: config.linear(LinearKind::Down, device),
                },
                input_layernorm: config.rms_norm(device),
                post_attention_layernorm: config.rms_norm(device),
            })
            .collect();
        let embed_tokens = EmbeddingConfig::new(config.vocab_size, config.hidden_size)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device);
        let lm_head = (!config.tie_word_embeddings).then(|| {
            LinearConfig::new(config.hidden_size, config.vocab_size)
                .with_bias(false)
                .init(device)
        });
        Self {
            model: LlamaModel {
                embed_tokens,
                layers,
                norm: config.rms_norm(device),
            },
            lm_head,
        }
    }

    /// Builds the model for `config` and loads `weights` into it.
    pub fn load(config: &LlamaConfig, weights: &Path, device: &Device) -> Result<Self, ModelError> {
        let mut model = Self::new(config, device);
        load_safetensors(&mut model, weights, &[])?;
        Ok(model)
    }

    /// Final-norm hidden states of right-padded `ids` ([batch, tokens] -> [batch, tokens,
    /// hidden]). Causal attention means padding after a row's end never reaches its real tokens.
    pub fn hidden_states(
        &self,
        config: &LlamaConfig,
        ids: Tensor<2, Int>,
        request: &ForwardRequest,
        trace: &mut ForwardTrace,
    ) -> Tensor<3> {
        let x = self.model.embed_tokens.forward(ids);
        self.hidden_states_from(config, x, 0, request, trace)
    }

    /// [`Self::hidden_states`] from the residual stream `x` ([batch, tokens, hidden], positions
    /// from 0) entering decoder layer `first_layer`: the layers from there on, then the final
    /// norm. Requests for earlier layers are ignored.
    pub fn hidden_states_from(
        &self,
        config: &LlamaConfig,
        mut x: Tensor<3>,
        first_layer: usize,
        request: &ForwardRequest,
        trace: &mut ForwardTrace,
    ) -> Tensor<3> {
        let tokens = x.dims()[1];
        let rope = Rope::new(config, 0, tokens, &x.device());
        for (index, layer) in self.model.layers.iter().enumerate().skip(first_layer) {
            let h = layer.input_layernorm.forward(x.clone());
            x = x + layer.self_attn.forward(h, index, &rope, request, trace);
            let h = layer.post_attention_layernorm.forward(x.clone());
            x = x + layer.mlp.forward(h, index, request, trace);
        }
        self.model.norm.forward(x)
    }

    /// Runs one sequence's next positions `ids` ([1, n]: a whole prompt on an empty cache, then
    /// one token at a time) and extends `cache`. Returns the final-norm hidden state of the
    /// last position ([1, hidden]) and, per query head in (layer, head) order, the position
    /// the last position attends to most ([layers x heads]).
    pub fn decode_step(
        &self,
        config: &LlamaConfig,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
    ) -> (Tensor<2>, Tensor<1, Int>) {
        let tokens = ids.dims()[1];
        let rope = Rope::new(config, cache.len, tokens, &ids.device());
        cache.layers.resize_with(self.model.layers.len(), || None);
        let mut x = self.model.embed_tokens.forward(ids);
        let mut tops = Vec::with_capacity(self.model.layers.len());
        for (layer, slot) in self.model.layers.iter().zip(cache.layers.iter_mut()) {
            let h = layer.input_layernorm.forward(x.clone());
            let (attended, top) = layer.self_attn.forward_cached(h, &rope, slot);
            tops.push(top);
            x = x + attended;
            let h = layer.post_attention_layernorm.forward(x.clone());
            x = x + layer.mlp.forward(
                h,
                0,
                &ForwardRequest::default(),
                &mut ForwardTrace::default(),
            );
        }
        cache.len += tokens;
        let [_, _, width] = x.dims();
        let last = x.narrow(1, tokens - 1, 1).reshape([1, width]);
        (self.model.norm.forward(last), Tensor::cat(tops, 0))
    }

    /// One linear layer of the decoder stack (its `weight` is [in, out], Burn's layout).
    pub fn linear(&self, id: LinearId) -> Option<&Linear> {
        let layer = self.model.layers.get(id.layer)?;
        Some(match id.kind {
            LinearKind::Query => &layer.self_attn.q_proj,
            LinearKind::Key => &layer.self_attn.k_proj,
            LinearKind::Value => &layer.self_attn.v_proj,
            LinearKind::Output => &layer.self_attn.o_proj,
            LinearKind::Gate => &layer.mlp.gate_proj,
            LinearKind::Up => &layer.mlp.up_proj,
            LinearKind::Down => &layer.mlp.down_proj,
        })
    }

    /// Logits of hidden states: [rows, hidden] -> [rows, vocab].
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => hidden.matmul(self.model.embed_tokens.weight.val().transpose()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_heads_are_the_prefix_mean_of_v() {
        // Brute force: o[t] = mean of v[0..=t] for masked heads; untouched heads keep context.
        let (heads, tokens, dim) = (3, 5, 4);
        let device = Device::flex();
        let v_values: Vec<f32> = (0..heads * tokens * dim)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let c_values: Vec<f32> = (0..heads * tokens * dim).map(|i| i as f32).collect();
        let shape = [1, heads, tokens, dim];
        let v = Tensor::<4>::from_data(TensorData::new(v_values.clone(), shape), &device);
        let context = Tensor::<4>::from_data(TensorData::new(c_values.clone(), shape), &device);
        let full: Vec<f32> = uniform_heads(context.clone(), v.clone(), &[1], UniformScope::Full)
            .try_into_vec_as::<f32>()
            .unwrap();
        for t in 0..tokens {
            for d in 0..dim {
                let at = |x: usize| (tokens + x) * dim + d;
                let want = (0..tokens).map(|j| v_values[at(j)]).sum::<f32>() / tokens as f32;
                assert!((full[at(t)] - want).abs() < 1e-5, "full scope t {t} d {d}");
            }
        }
        let out: Vec<f32> = uniform_heads(context, v, &[0, 2], UniformScope::Visible)
            .try_into_vec_as::<f32>()
            .unwrap();
        for h in 0..heads {
            for t in 0..tokens {
                for d in 0..dim {
                    let at = |x: usize| (h * tokens + x) * dim + d;
                    let want = if h == 1 {
                        c_values[at(t)]
                    } else {
                        (0..=t).map(|j| v_values[at(j)] as f64).sum::<f64>() as f32 / (t + 1) as f32
                    };
                    assert!((out[at(t)] - want).abs() < 1e-6, "head {h} t {t} d {d}");
                }
            }
        }
    }
}
