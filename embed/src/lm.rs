//! Scoring text with a causal LM: per-token and per-document cross-entropy (optionally with
//! heads masked), attention maps of chosen heads, and per-sequence gradients of chosen linear
//! layers. Losses on the CPU run the packed forward (sequences of any length packed without
//! padding); elsewhere, and for maps and gradients, sequences are batched by length (right
//! padding; causal attention keeps padding out of real positions). The output projection runs
//! in row blocks, so memory stays bounded by a block's rows x vocabulary.

use std::path::Path;
use std::sync::OnceLock;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::encoder::LongDocuments;
use crate::llama::{
    ForwardRequest, ForwardTrace, HeadId, HeadMask, KvCache, LinearId, LlamaConfig,
    LlamaForCausalLm,
};
use crate::llama_packed::{LlamaWorkspace, PackedLlama};
use crate::packed::batch_ranges;
use crate::tokenize::TextTokenizer;
use crate::weights::ModelFiles;
use crate::ModelError;

/// Rows of hidden states turned into logits at once.
const LOGIT_ROWS: usize = 1024;

/// Length and batching options for LM scoring.
#[derive(Clone, Debug)]
pub struct LmOptions {
    /// Longest sequence fed to the model, in tokens.
    pub max_tokens: usize,
    /// Padded tokens per forward batch.
    pub batch_tokens: usize,
    /// Long-document handling: score the first `max_tokens`, or average over chunks.
    pub long_documents: LongDocuments,
}

impl Default for LmOptions {
    fn default() -> Self {
        Self {
            max_tokens: 1024,
            batch_tokens: 4096,
            long_documents: LongDocuments::Truncate,
        }
    }
}

/// The loss of one document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DocumentLoss {
    /// Mean next-token cross-entropy in nats (the mean over chunks for chunk-averaged
    /// documents); NaN when the document has fewer than two tokens.
    pub mean_nll: f32,
    /// Tokens of the document (before truncation).
    pub tokens: usize,
}

/// Gradients of one tapped linear layer for one sequence.
#[derive(Clone, Debug)]
pub struct SampleGradient {
    /// Weight gradient of the sequence's mean loss, [out x in] row-major (PyTorch layout).
    pub weight: Vec<f32>,
    /// Layer inputs at the sequence's positions, [len x in].
    pub inputs: Vec<f32>,
    /// Gradients with respect to the layer outputs, [len x out].
    pub output_grads: Vec<f32>,
}

/// Per-sequence gradients of one tapped linear layer.
#[derive(Clone, Debug)]
pub struct LayerGradients {
    /// Which layer.
    pub id: LinearId,
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// One entry per sequence, in input order.
    pub samples: Vec<SampleGradient>,
}

/// One step of greedy decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeStep {
    /// The generated token (the argmax of the next-token logits).
    pub token: u32,
    /// For every query head in (layer, head) order, the position of the sequence so far
    /// (prompt plus earlier generated tokens) that the predicting position attended to most.
    pub top_attended: Vec<u32>,
}

/// A loaded causal LM with its tokenizer.
pub struct CausalLm {
    model: LlamaForCausalLm,
    config: LlamaConfig,
    tokenizer: TextTokenizer,
    options: LmOptions,
    device: Device,
    /// The packed CPU forward of `model`, built on first use on the flex device.
    packed: OnceLock<PackedLlama>,
}

impl CausalLm {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path, options: LmOptions, device: &Device) -> Result<Self, ModelError> {
        let files = ModelFiles::in_dir(dir);
        let config = LlamaConfig::load(&files.config)?;
        let tokenizer = TextTokenizer::load(&files.tokenizer)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(ModelError::Config {
                path: files.tokenizer.clone(),
                message: format!(
                    "the tokenizer has {} tokens but the model's vocab_size is {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let model = LlamaForCausalLm::load(&config, &files.weights, device)?;
        Ok(Self::from_parts(model, config, tokenizer, options, device))
    }

    /// Wraps an already built model (a test's random-init model, say).
    pub fn from_parts(
        model: LlamaForCausalLm,
        config: LlamaConfig,
        tokenizer: TextTokenizer,
        options: LmOptions,
        device: &Device,
    ) -> Self {
        Self {
            model,
            config,
            tokenizer,
            options,
            device: device.clone(),
            packed: OnceLock::new(),
        }
    }

    /// The model's config.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The network.
    pub fn model(&self) -> &LlamaForCausalLm {
        &self.model
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids of texts (no special tokens added).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, ModelError> {
        self.tokenizer.encode_batch(texts, false)
    }

    /// Mean next-token cross-entropy of each text, with `mask`'s heads made uniform.
    pub fn document_losses(
        &self,
        texts: &[&str],
        mask: Option<&HeadMask>,
    ) -> Result<Vec<DocumentLoss>, ModelError> {
        let ids = self.tokenize(texts)?;
        Ok(self.sequence_document_losses(&ids, mask))
    }

    /// [`Self::document_losses`] for already tokenized documents.
    pub fn sequence_document_losses(
        &self,
        ids: &[Vec<u32>],
        mask: Option<&HeadMask>,
    ) -> Vec<DocumentLoss> {
        let max = self.options.max_tokens;
        let mut segments: Vec<(usize, &[u32])> = Vec::new();
        for (document, ids) in ids.iter().enumerate() {
            if ids.len() <= max || self.options.long_documents == LongDocuments::Truncate {
                segments.push((document, &ids[..ids.len().min(max)]));
            } else {
                // Chunks overlap by one token so every token after the first is predicted once.
                let mut start = 0;
                while start + 1 < ids.len() {
                    let end = (start + max).min(ids.len());
                    segments.push((document, &ids[start..end]));
                    start = end - 1;
                }
            }
        }
        let sequences: Vec<&[u32]> = segments.iter().map(|(_, s)| *s).collect();
        let losses = self.token_losses(&sequences, mask);
        let mut sums = vec![(0f64, 0usize); ids.len()];
        for ((document, _), losses) in segments.iter().zip(&losses) {
            if !losses.is_empty() {
                let mean = losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len() as f64;
                sums[*document].0 += mean;
                sums[*document].1 += 1;
            }
        }
        sums.iter()
            .zip(ids)
            .map(|(&(sum, chunks), ids)| DocumentLoss {
                mean_nll: if chunks == 0 {
                    f32::NAN
                } else {
                    (sum / chunks as f64) as f32
                },
                tokens: ids.len(),
            })
            .collect()
    }

    /// Next-token losses of each sequence (`len - 1` values each; none for sequences shorter
    /// than two tokens). Sequences must fit the model's context. On the flex CPU device this
    /// runs the packed forward ([`crate::llama_packed`]), elsewhere the Burn graph.
    pub fn token_losses(&self, sequences: &[&[u32]], mask: Option<&HeadMask>) -> Vec<Vec<f32>> {
        if self.device == Device::flex() {
            self.packed_token_losses(sequences, mask)
        } else {
            self.graph_token_losses(sequences, mask)
        }
    }

    /// [`Self::token_losses`] through the packed CPU forward: sequences sorted by length and
    /// packed without padding into batches of at most `batch_tokens` tokens (at least one
    /// sequence each).
    fn packed_token_losses(&self, sequences: &[&[u32]], mask: Option<&HeadMask>) -> Vec<Vec<f32>> {
        self.packed_model()
            .losses_in_batches(sequences, self.options.batch_tokens, mask)
    }

    /// [`Self::token_losses`] through the Burn graph, on batches of equal length.
    fn graph_token_losses(&self, sequences: &[&[u32]], mask: Option<&HeadMask>) -> Vec<Vec<f32>> {
        let request = ForwardRequest {
            head_mask: mask,
            ..Default::default()
        };
        let mut out = vec![Vec::new(); sequences.len()];
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| (sequences[i].len(), i));
        let lengths: Vec<usize> = order.iter().map(|&i| sequences[i].len()).collect();
        for range in batch_ranges(&lengths, self.options.batch_tokens, true) {
            let batch = &order[range];
            let rows: Vec<&[u32]> = batch.iter().map(|&i| sequences[i]).collect();
            if rows[rows.len() - 1].len() < 2 {
                continue;
            }
            let (ids, tokens) = self.padded(&rows);
            let mut trace = ForwardTrace::default();
            let hidden = self
                .model
                .hidden_states(&self.config, ids, &request, &mut trace);
            let nll = self.next_token_nll(hidden, &rows, tokens);
            let values = crate::values(nll);
            for (row, &index) in batch.iter().enumerate() {
                let n = sequences[index].len().saturating_sub(1);
                out[index] = values[row * (tokens - 1)..row * (tokens - 1) + n].to_vec();
            }
        }
        out
    }

    /// Attention probabilities of `heads` for one sequence: one row-major [len x len] matrix
    /// per head, in request order.
    pub fn attention_maps(
        &self,
        sequence: &[u32],
        heads: &[HeadId],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        for head in heads {
            if head.layer >= self.config.num_hidden_layers
                || head.head >= self.config.num_attention_heads
            {
                return Err(ModelError::Request(format!(
                    "head (layer {}, head {}) is outside the model's {} layers x {} heads",
                    head.layer,
                    head.head,
                    self.config.num_hidden_layers,
                    self.config.num_attention_heads
                )));
            }
        }
        let request = ForwardRequest {
            attention_of: heads,
            ..Default::default()
        };
        let (ids, _) = self.padded(&[sequence]);
        let mut trace = ForwardTrace::default();
        self.model
            .hidden_states(&self.config, ids, &request, &mut trace);
        // The trace lists heads layer by layer; return them in request order.
        let mut order: Vec<usize> = (0..heads.len()).collect();
        order.sort_by_key(|&i| heads[i].layer);
        let mut maps = vec![Vec::new(); heads.len()];
        for (slot, map) in order.into_iter().zip(trace.attention) {
            maps[slot] = crate::values(map);
        }
        Ok(maps)
    }

    /// Greedy decoding of up to `max_new` tokens after `prompt`, with a key/value cache.
    /// Stops after the first token for which `stop` holds (that step is included). Each step
    /// records where every head's attention peaked, as retrieval-head detection needs.
    pub fn greedy_decode(
        &self,
        prompt: &[u32],
        max_new: usize,
        stop: impl Fn(u32) -> bool,
    ) -> Result<Vec<DecodeStep>, ModelError> {
        let limit = self.config.max_position_embeddings;
        if prompt.is_empty() || prompt.len() + max_new > limit {
            return Err(ModelError::Request(format!(
                "a prompt of {} tokens plus {max_new} generated ones must fit the model's {limit} positions",
                prompt.len()
            )));
        }
        let mut cache = KvCache::default();
        let mut steps = Vec::with_capacity(max_new);
        let mut input = prompt.to_vec();
        while steps.len() < max_new {
            let (ids, _) = self.padded(&[&input]);
            let (hidden, top) = self.model.decode_step(&self.config, ids, &mut cache);
            let token = self.model.logits(hidden).argmax(1).reshape([1]);
            let mut both = Tensor::cat(vec![token, top], 0)
                .try_into_vec_as::<i64>()
                .expect("int tensors convert to i64")
                .into_iter()
                .map(|v| v as u32);
            let token = both.next().expect("one token");
            steps.push(DecodeStep {
                token,
                top_attended: both.collect(),
            });
            if stop(token) {
                break;
            }
            input = vec![token];
        }
        Ok(steps)
    }

    /// Gradients of each sequence's mean next-token loss at the `taps` linear layers
    /// (one backward pass for the batch; the per-sequence weight gradient is
    /// `output_grads^T inputs`, exact because sequences share no positions).
    pub fn sequence_gradients(
        &self,
        sequences: &[&[u32]],
        taps: &[LinearId],
    ) -> Result<Vec<LayerGradients>, ModelError> {
        self.gradients(sequences, taps, true)
    }

    /// [`Self::sequence_gradients`]; with `packed` on the CPU device, the layers before
    /// the first tapped one run the packed forward (no gradient flows through them), the Burn
    /// graph takes over from that layer's input, and the output projection's forward and
    /// backward run packed ([`Self::surrogate_loss`]).
    fn gradients(
        &self,
        sequences: &[&[u32]],
        taps: &[LinearId],
        packed: bool,
    ) -> Result<Vec<LayerGradients>, ModelError> {
        for tap in taps {
            if tap.layer >= self.config.num_hidden_layers {
                return Err(ModelError::Request(format!(
                    "layer {} is outside the model's {} layers",
                    tap.layer, self.config.num_hidden_layers
                )));
            }
        }
        if taps.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(short) = sequences.iter().position(|s| s.len() < 2) {
            return Err(ModelError::Request(format!(
                "sequence {short} has fewer than two tokens: no loss to differentiate"
            )));
        }
        let request = ForwardRequest {
            taps,
            ..Default::default()
        };
        let first_tapped = taps.iter().map(|t| t.layer).min().unwrap_or(0);
        let packed = packed && self.device == Device::flex();
        let mut workspace = LlamaWorkspace::default();
        let mut trace = ForwardTrace::default();
        let (hidden, tokens) = if packed && first_tapped > 0 {
            let (x, tokens) = self.packed_residual(sequences, first_tapped, &mut workspace);
            let hidden =
                self.model
                    .hidden_states_from(&self.config, x, first_tapped, &request, &mut trace);
            (hidden, tokens)
        } else {
            let (ids, tokens) = self.padded(sequences);
            let hidden = self
                .model
                .hidden_states(&self.config, ids, &request, &mut trace);
            (hidden, tokens)
        };
        let loss = if packed {
            self.surrogate_loss(hidden, sequences, tokens, &mut workspace)
        } else {
            let nll = self.next_token_nll(hidden, sequences, tokens);
            // Sum over sequences of each sequence's mean loss: padded positions weigh zero.
            let weights: Vec<f32> = sequences
                .iter()
                .flat_map(|s| {
                    let n = s.len() - 1;
                    (0..tokens - 1).map(move |t| if t < n { 1.0 / n as f32 } else { 0.0 })
                })
                .collect();
            let weights = Tensor::<2>::from_data(
                TensorData::new(weights, [sequences.len(), tokens - 1]),
                &self.device,
            );
            (nll * weights).sum()
        };
        let grads = loss.backward();
        let mut out = Vec::with_capacity(trace.taps.len());
        for tap in trace.taps {
            let output_grad = tap
                .probe
                .grad(&grads)
                .expect("the probe takes part in the loss");
            let (inputs, outputs) = self.config.linear_shape(tap.id.kind);
            let weight = output_grad
                .clone()
                .swap_dims(1, 2)
                .matmul(tap.input.clone());
            let weight = crate::values(weight);
            let x = crate::values(tap.input);
            let g = crate::values(output_grad);
            let samples = sequences
                .iter()
                .enumerate()
                .map(|(row, s)| SampleGradient {
                    weight: weight[row * outputs * inputs..(row + 1) * outputs * inputs].to_vec(),
                    inputs: x[row * tokens * inputs..(row * tokens + s.len()) * inputs].to_vec(),
                    output_grads: g[row * tokens * outputs..(row * tokens + s.len()) * outputs]
                        .to_vec(),
                })
                .collect();
            out.push(LayerGradients {
                id: tap.id,
                inputs,
                outputs,
                samples,
            });
        }
        Ok(out)
    }

    /// The packed CPU forward of the model, built on first use.
    fn packed_model(&self) -> &PackedLlama {
        self.packed
            .get_or_init(|| PackedLlama::from_model(&self.model, &self.config))
    }

    /// A loss whose gradient with respect to `hidden` (final-norm states, [batch, tokens,
    /// hidden], right-padded) is that of the sum of the sequences' mean next-token losses:
    /// `sum(hidden * G)` with `G` computed by the packed output projection and held constant,
    /// so the graph never materialises the logits.
    fn surrogate_loss(
        &self,
        hidden: Tensor<3>,
        sequences: &[&[u32]],
        tokens: usize,
        workspace: &mut LlamaWorkspace,
    ) -> Tensor<1> {
        let predictions: Vec<(usize, usize, f32)> = sequences
            .iter()
            .enumerate()
            .flat_map(|(row, s)| {
                let weight = 1.0 / (s.len() - 1) as f32;
                (0..s.len() - 1).map(move |t| (row * tokens + t, s[t + 1] as usize, weight))
            })
            .collect();
        let values = crate::values(hidden.clone());
        let gradient = self
            .packed_model()
            .loss_gradient(&values, &predictions, workspace);
        let gradient =
            Tensor::<3>::from_data(TensorData::new(gradient, hidden.dims()), &self.device);
        (hidden * gradient).sum()
    }

    /// The residual stream entering decoder layer `layer`, from the packed forward, as a
    /// right-padded [batch, tokens, hidden] tensor (zeros past each row's end) and its width.
    fn packed_residual(
        &self,
        rows: &[&[u32]],
        layer: usize,
        workspace: &mut LlamaWorkspace,
    ) -> (Tensor<3>, usize) {
        let model = self.packed_model();
        let width = self.config.hidden_size;
        let tokens = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let packed = model.residual_before_layer(rows, layer, workspace);
        let mut padded = vec![0f32; rows.len() * tokens * width];
        let mut start = 0;
        for (row, ids) in rows.iter().enumerate() {
            let values = &packed[start * width..(start + ids.len()) * width];
            padded[row * tokens * width..][..values.len()].copy_from_slice(values);
            start += ids.len();
        }
        let shape = [rows.len(), tokens, width];
        let x = Tensor::from_data(TensorData::new(padded, shape), &self.device);
        (x, tokens)
    }

    /// Right-padded ids tensor and its width.
    fn padded(&self, rows: &[&[u32]]) -> (Tensor<2, Int>, usize) {
        let tokens = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut flat = vec![0i64; rows.len() * tokens];
        for (row, ids) in rows.iter().enumerate() {
            for (t, &id) in ids.iter().enumerate() {
                flat[row * tokens + t] = i64::from(id);
            }
        }
        let ids = Tensor::from_data(TensorData::new(flat, [rows.len(), tokens]), &self.device);
        (ids, tokens)
    }

    /// Next-token losses [batch, tokens - 1]; positions past a row's end hold garbage that
    /// callers drop or weigh by zero.
    fn next_token_nll(&self, hidden: Tensor<3>, rows: &[&[u32]], tokens: usize) -> Tensor<2> {
        let [batch, _, width] = hidden.dims();
        let predicted = hidden
            .narrow(1, 0, tokens - 1)
            .reshape([batch * (tokens - 1), width]);
        let mut targets = vec![0i64; batch * (tokens - 1)];
        for (row, ids) in rows.iter().enumerate() {
            for t in 1..ids.len() {
                targets[row * (tokens - 1) + t - 1] = i64::from(ids[t]);
            }
        }
        let targets = Tensor::<1, Int>::from_data(
            TensorData::new(targets, [batch * (tokens - 1)]),
            &self.device,
        );
        let total = batch * (tokens - 1);
        let mut blocks = Vec::new();
        let mut start = 0;
        while start < total {
            let n = LOGIT_ROWS.min(total - start);
            let logits = self.model.logits(predicted.clone().narrow(0, start, n));
            let target = targets.clone().narrow(0, start, n).reshape([n, 1]);
            blocks.push(log_softmax(logits, 1).gather(1, target).neg().reshape([n]));
            start += n;
        }
        Tensor::cat(blocks, 0).reshape([batch, tokens - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::UniformScope;
    use crate::packed::on_threads;

    fn random_lm(tied: bool, batch_tokens: usize) -> CausalLm {
        let config: LlamaConfig = serde_json::from_value(serde_json::json!({
            "model_type": "llama",
            "vocab_size": 262,
            "hidden_size": 48,
            "intermediate_size": 72,
            "num_hidden_layers": 3,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": 512,
            "tie_word_embeddings": tied
        }))
        .unwrap();
        let device = Device::flex();
        let tokenizer = TextTokenizer::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-llama/tokenizer.json"
        )))
        .unwrap();
        let model = LlamaForCausalLm::new(&config, &device);
        let options = LmOptions {
            batch_tokens,
            ..Default::default()
        };
        CausalLm::from_parts(model, config, tokenizer, options, &device)
    }

    /// The oracle: the Burn graph of `llama.rs` (equal-length batches) against the packed
    /// forward (mixed lengths packed together), with and without masked heads, tied and
    /// untied output projections, grouped-query attention.
    #[test]
    fn packed_losses_match_the_burn_graph() {
        // 300 tokens: several blocks of queries in the packed attention.
        let sequences: Vec<Vec<u32>> = [5usize, 2, 40, 17, 1, 300, 63, 17]
            .iter()
            .enumerate()
            .map(|(s, &len)| (0..len).map(|t| ((s * 31 + t * 13) % 262) as u32).collect())
            .collect();
        let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        let heads = vec![
            HeadId { layer: 0, head: 1 },
            HeadId { layer: 2, head: 4 },
            HeadId { layer: 2, head: 5 },
        ];
        let masks = [
            None,
            Some(HeadMask::new(heads.clone())),
            Some(HeadMask::new(heads).with_scope(UniformScope::Full)),
        ];
        for tied in [true, false] {
            let lm = random_lm(tied, 64);
            let unmasked = lm.token_losses(&refs, None);
            for mask in &masks {
                let packed = lm.token_losses(&refs, mask.as_ref());
                let effect = packed
                    .iter()
                    .flatten()
                    .zip(unmasked.iter().flatten())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                // Masking must move the losses well beyond the tolerance below, or the
                // comparison could not tell a masked head from an unmasked one.
                assert_eq!(
                    mask.is_some(),
                    effect > 1e-4,
                    "mask {mask:?} moved {effect}"
                );
                let graph = lm.graph_token_losses(&refs, mask.as_ref());
                for (s, (p, g)) in packed.iter().zip(&graph).enumerate() {
                    assert_eq!(p.len(), sequences[s].len().saturating_sub(1));
                    assert_eq!(p.len(), g.len());
                    for (a, b) in p.iter().zip(g) {
                        assert!(
                            (a - b).abs() < 1e-5,
                            "tied {tied}, mask {mask:?}, sequence {s}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    /// Byte-identical losses on 1 and 3 threads; in another batch company equal to the last
    /// bits (the GEMM takes another path for a few rows).
    #[test]
    fn packed_losses_do_not_depend_on_threads_or_batch_company() {
        // Batches large enough for the GEMMs to run on several threads.
        let lm = random_lm(true, 1 << 16);
        let sequences: Vec<Vec<u32>> = (0..30)
            .map(|s| {
                (0..2 + s * 3 % 50)
                    .map(|t| ((s * 7 + t * 11) % 262) as u32)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        let on =
            |threads: usize, refs: &[&[u32]]| on_threads(threads, || lm.token_losses(refs, None));
        let one = on(1, &refs);
        assert_eq!(one, on(3, &refs));
        let alone: Vec<Vec<f32>> = refs.iter().flat_map(|s| on(2, &[s])).collect();
        for (a, b) in one.iter().flatten().zip(alone.iter().flatten()) {
            assert!((a - b).abs() <= 2e-6 * a.abs(), "{a} vs {b}");
        }
    }

    /// Gradients with the layers before the first tap on the packed forward equal the
    /// all-graph gradients (inputs, output gradients and weight gradients of every tap).
    #[test]
    fn packed_gradients_match_the_graph() {
        use crate::llama::{LinearId, LinearKind};
        let sequences: Vec<Vec<u32>> = [9usize, 30, 3]
            .iter()
            .enumerate()
            .map(|(s, &len)| (0..len).map(|t| ((s * 19 + t * 23) % 262) as u32).collect())
            .collect();
        let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        let taps = [
            LinearId {
                layer: 2,
                kind: LinearKind::Down,
            },
            LinearId {
                layer: 1,
                kind: LinearKind::Query,
            },
        ];
        for tied in [true, false] {
            let lm = random_lm(tied, 1 << 16);
            let hybrid = lm.gradients(&refs, &taps, true).unwrap();
            let graph = lm.gradients(&refs, &taps, false).unwrap();
            let close = |a: &[f32], b: &[f32], what: &str| {
                assert_eq!(a.len(), b.len(), "{what}");
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "{what}: all zero");
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-4 * scale,
                        "{what}: {x} vs {y} (scale {scale})"
                    );
                }
            };
            assert_eq!(hybrid.len(), 2);
            for (h, g) in hybrid.iter().zip(&graph) {
                assert_eq!(h.id, g.id);
                for (s, (a, b)) in h.samples.iter().zip(&g.samples).enumerate() {
                    let what = format!("{:?} sequence {s}", h.id);
                    close(&a.inputs, &b.inputs, &format!("{what} inputs"));
                    close(
                        &a.output_grads,
                        &b.output_grads,
                        &format!("{what} output grads"),
                    );
                    close(&a.weight, &b.weight, &format!("{what} weight"));
                }
            }
        }
    }
}
