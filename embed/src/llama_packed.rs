//! Padding-free CPU forward of [`LlamaForCausalLm`] for next-token losses on the flex device,
//! the path of `lm_score` and AttentionInfluence scoring. The sequences of a batch are packed
//! row after row; each projection is one GEMM over all packed tokens (Q, K and V together,
//! gate and up together, the residual adds inside the GEMM); RoPE is applied in place;
//! causal attention runs per (sequence, query head) with grouped-query sharing of K/V, and a
//! masked head's output is the mean of V over the positions it sees (or over the whole
//! sequence, [`UniformScope::Full`]); the output projection runs on the predicting rows only,
//! in blocks, with a fused log-sum-exp.
//!
//! Same formula as [`crate::llama`] (HF `LlamaForCausalLM`: pre-norm RMSNorm blocks, RoPE,
//! GQA, SwiGLU); `tests::packed_losses_match_the_burn_graph` checks one against the other.
//! Gradients, attention maps and decoding stay on the Burn graph.

use rayon::prelude::*;

use crate::cpu_kernels::{matmul, rms_norm_rows, row_nll, softmax_in_place, swiglu_row};
use crate::llama::{HeadMask, LlamaConfig, LlamaForCausalLm, UniformScope};
use crate::packed::{
    batch_ranges, grow, map_batches, param_values, Dense, Workspaces, ROWS_PER_TASK,
};

/// Queries of one sequence whose attention scores are computed at once.
const QUERY_BLOCK: usize = 128;
/// Predicting rows turned into logits at once (a block's logits are rows x vocabulary).
const LOGIT_ROWS: usize = 256;

/// One decoder layer's weights.
struct PackedDecoderLayer {
    input_norm: Vec<f32>,
    /// Query, key and value projections side by side.
    qkv: Dense,
    output: Dense,
    post_attention_norm: Vec<f32>,
    /// Gate and up projections side by side.
    gate_up: Dense,
    down: Dense,
}

/// One decoder layer's weights in this module's layout: row-major `[d_in x d_out]`, query, key
/// and value side by side, gate and up side by side.
pub(crate) struct PackedLayerWeights {
    pub input_norm: Vec<f32>,
    /// `[hidden x (heads + 2 kv_heads) head_dim]`.
    pub qkv: Vec<f32>,
    /// `[heads head_dim x hidden]`.
    pub output: Vec<f32>,
    pub post_attention_norm: Vec<f32>,
    /// `[hidden x 2 intermediate]`.
    pub gate_up: Vec<f32>,
    /// `[intermediate x hidden]`.
    pub down: Vec<f32>,
}

/// Working memory of one batch, reused across batches.
#[derive(Default)]
pub struct LlamaWorkspace {
    residual: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    head_outputs: Vec<f32>,
    context: Vec<f32>,
    gate_up: Vec<f32>,
    activations: Vec<f32>,
    predicting: Vec<f32>,
    logits: Vec<f32>,
}

/// A Llama causal LM's weights laid out for the packed CPU forward.
pub struct PackedLlama {
    embed_tokens: Vec<f32>,
    layers: Vec<PackedDecoderLayer>,
    final_norm: Vec<f32>,
    /// The untied output projection, `[hidden x vocab]`; `None` reads `embed_tokens`.
    lm_head: Option<Vec<f32>>,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    epsilon: f32,
    rope_theta: f64,
    /// Work buffers of the batches, one set per thread, kept across calls.
    workspaces: Workspaces<LlamaWorkspace>,
}

impl PackedLlama {
    /// Copies the weights out of a loaded (or randomly initialised) Burn model.
    pub fn from_model(model: &LlamaForCausalLm, config: &LlamaConfig) -> Self {
        let layers = model
            .model
            .layers
            .iter()
            .map(|layer| {
                let attention = &layer.self_attn;
                let mlp = &layer.mlp;
                PackedDecoderLayer {
                    input_norm: param_values(&layer.input_layernorm.gamma),
                    qkv: Dense::concat(&[&attention.q_proj, &attention.k_proj, &attention.v_proj]),
                    output: Dense::from_module(&attention.o_proj),
                    post_attention_norm: param_values(&layer.post_attention_layernorm.gamma),
                    gate_up: Dense::concat(&[&mlp.gate_proj, &mlp.up_proj]),
                    down: Dense::from_module(&mlp.down_proj),
                }
            })
            .collect();
        Self {
            embed_tokens: param_values(&model.model.embed_tokens.weight),
            layers,
            final_norm: param_values(&model.model.norm.gamma),
            lm_head: model
                .lm_head
                .as_ref()
                .map(|head| param_values(&head.weight)),
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            kv_heads: config.kv_heads(),
            head_dim: config.head_dim(),
            vocab: config.vocab_size,
            epsilon: config.rms_norm_eps as f32,
            rope_theta: config.rope_theta,
            workspaces: Workspaces::new(),
        }
    }

    /// A model with tied embeddings (`embed_tokens`, `[vocab x hidden]`) and one key/value
    /// head per query head from its weights in this module's layout (the CPU trainer's);
    /// `(heads, head_dim, intermediate, vocab)` and `(rms epsilon, rope theta)`.
    pub(crate) fn from_weights(
        embed_tokens: Vec<f32>,
        layers: Vec<PackedLayerWeights>,
        final_norm: Vec<f32>,
        (heads, head_dim, intermediate, vocab): (usize, usize, usize, usize),
        (epsilon, rope_theta): (f32, f64),
    ) -> Self {
        let hidden = final_norm.len();
        let dense = |weight: Vec<f32>, d_in: usize, d_out: usize| Dense {
            bias: vec![0.0; d_out],
            weight,
            d_in,
            d_out,
        };
        let layers = layers
            .into_iter()
            .map(|w| PackedDecoderLayer {
                input_norm: w.input_norm,
                qkv: dense(w.qkv, hidden, 3 * heads * head_dim),
                output: dense(w.output, heads * head_dim, hidden),
                post_attention_norm: w.post_attention_norm,
                gate_up: dense(w.gate_up, hidden, 2 * intermediate),
                down: dense(w.down, intermediate, hidden),
            })
            .collect();
        Self {
            embed_tokens,
            layers,
            final_norm,
            lm_head: None,
            hidden,
            heads,
            kv_heads: heads,
            head_dim,
            vocab,
            epsilon,
            rope_theta,
            workspaces: Workspaces::new(),
        }
    }

    /// Next-token losses of each sequence (`len - 1` values each), with `mask`'s heads made
    /// uniform. Every sequence must have at least two tokens, all inside the vocabulary.
    pub fn token_losses(
        &self,
        sequences: &[&[u32]],
        mask: Option<&HeadMask>,
        ws: &mut LlamaWorkspace,
    ) -> Vec<Vec<f32>> {
        assert!(
            sequences.iter().all(|s| s.len() >= 2),
            "a scored sequence needs two tokens"
        );
        let offsets = self.run_layers(sequences, self.layers.len(), mask, ws);
        let rows = *offsets.last().unwrap();
        self.norm(&ws.residual, &self.final_norm, &mut ws.normed, rows);
        self.losses(sequences, &offsets, ws)
    }

    /// [`Self::token_losses`] of any number of sequences (none for those under two tokens):
    /// sorted by length and packed without padding into batches of at most `batch_tokens`
    /// tokens (at least one sequence each).
    pub fn losses_in_batches(
        &self,
        sequences: &[&[u32]],
        batch_tokens: usize,
        mask: Option<&HeadMask>,
    ) -> Vec<Vec<f32>> {
        let mut order: Vec<usize> = (0..sequences.len())
            .filter(|&i| sequences[i].len() >= 2)
            .collect();
        order.sort_by_key(|&i| (sequences[i].len(), i));
        let lengths: Vec<usize> = order.iter().map(|&i| sequences[i].len()).collect();
        let batches = map_batches(
            &self.workspaces,
            batch_ranges(&lengths, batch_tokens, false),
            |workspace: &mut LlamaWorkspace, range| {
                let rows: Vec<&[u32]> = order[range].iter().map(|&i| sequences[i]).collect();
                self.token_losses(&rows, mask, workspace)
            },
        );
        let mut out = vec![Vec::new(); sequences.len()];
        for (&index, losses) in order.iter().zip(batches.into_iter().flatten()) {
            out[index] = losses;
        }
        out
    }

    /// The residual stream entering decoder layer `layers` (the output of the layers before
    /// it), the sequences' rows packed one after another: `[total tokens x hidden]`.
    pub fn residual_before_layer<'w>(
        &self,
        sequences: &[&[u32]],
        layers: usize,
        ws: &'w mut LlamaWorkspace,
    ) -> &'w [f32] {
        let offsets = self.run_layers(sequences, layers.min(self.layers.len()), None, ws);
        &ws.residual[..offsets.last().unwrap() * self.hidden]
    }

    /// Embeds the packed sequences and runs the first `layers` decoder layers, leaving the
    /// residual stream in `ws.residual`; returns the sequences' row offsets.
    fn run_layers(
        &self,
        sequences: &[&[u32]],
        layers: usize,
        mask: Option<&HeadMask>,
        ws: &mut LlamaWorkspace,
    ) -> Vec<usize> {
        let mut offsets = vec![0usize];
        for sequence in sequences {
            offsets.push(offsets.last().unwrap() + sequence.len());
        }
        let rows = *offsets.last().unwrap();
        let (h, d) = (self.hidden, self.head_dim);
        let qkv_width = (self.heads + 2 * self.kv_heads) * d;
        let intermediate = self.layers.first().map_or(0, |l| l.down.d_in);
        grow(&mut ws.residual, rows * h);
        grow(&mut ws.normed, rows * h);
        grow(&mut ws.qkv, rows * qkv_width);
        grow(&mut ws.head_outputs, rows * self.heads * d);
        grow(&mut ws.context, rows * self.heads * d);
        grow(&mut ws.gate_up, rows * 2 * intermediate);
        grow(&mut ws.activations, rows * intermediate);
        let positions: Vec<usize> = sequences.iter().flat_map(|s| 0..s.len()).collect();
        self.embed(sequences, &mut ws.residual[..rows * h]);
        let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let rope = RopeTable::new(longest, d, self.rope_theta);
        for (index, layer) in self.layers[..layers].iter().enumerate() {
            let masked = mask.map(|m| m.in_layer(index)).unwrap_or_default();
            let scope = mask.map(|m| m.scope).unwrap_or_default();
            self.norm(&ws.residual, &layer.input_norm, &mut ws.normed, rows);
            layer.qkv.forward(&ws.normed, rows, &mut ws.qkv, false);
            self.rotate(&mut ws.qkv[..rows * qkv_width], &positions, &rope);
            self.attention(
                &ws.qkv[..rows * qkv_width],
                &offsets,
                &masked,
                scope,
                &mut ws.head_outputs,
            );
            self.merge_heads(&ws.head_outputs, rows, &mut ws.context);
            layer.output.accumulate(&ws.context, rows, &mut ws.residual);
            self.norm(
                &ws.residual,
                &layer.post_attention_norm,
                &mut ws.normed,
                rows,
            );
            layer
                .gate_up
                .forward(&ws.normed, rows, &mut ws.gate_up, false);
            ws.activations[..rows * intermediate]
                .par_chunks_mut(intermediate)
                .zip(ws.gate_up.par_chunks(2 * intermediate))
                .for_each(|(out, gate_up)| swiglu_row(gate_up, out));
            layer
                .down
                .accumulate(&ws.activations, rows, &mut ws.residual);
        }
        offsets
    }

    fn embed(&self, sequences: &[&[u32]], x: &mut [f32]) {
        let h = self.hidden;
        let ids: Vec<usize> = sequences
            .iter()
            .flat_map(|s| s.iter().map(|&id| id as usize))
            .collect();
        x.par_chunks_mut(h)
            .zip(ids.par_iter())
            .for_each(|(row, &id)| {
                assert!(id < self.vocab, "token id {id} is outside the vocabulary");
                row.copy_from_slice(&self.embed_tokens[id * h..(id + 1) * h]);
            });
    }

    fn norm(&self, x: &[f32], gamma: &[f32], out: &mut [f32], rows: usize) {
        let h = self.hidden;
        out[..rows * h]
            .par_chunks_mut(h * ROWS_PER_TASK)
            .zip(x[..rows * h].par_chunks(h * ROWS_PER_TASK))
            .for_each(|(out, x)| rms_norm_rows(x, out, gamma, self.epsilon));
    }

    /// RoPE on the query and key heads of every packed row, in place (HF's half-split form:
    /// `x cos + rotate_half(x) sin`).
    fn rotate(&self, qkv: &mut [f32], positions: &[usize], rope: &RopeTable) {
        let d = self.head_dim;
        let half = d / 2;
        let width = (self.heads + 2 * self.kv_heads) * d;
        let rotated_heads = self.heads + self.kv_heads;
        qkv.par_chunks_mut(width)
            .zip(positions.par_iter())
            .for_each(|(row, &position)| {
                let cos = &rope.cos[position * half..(position + 1) * half];
                let sin = &rope.sin[position * half..(position + 1) * half];
                for head in row[..rotated_heads * d].chunks_exact_mut(d) {
                    let (x1, x2) = head.split_at_mut(half);
                    for (((a, b), c), s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
                        let (first, second) = (*a, *b);
                        *a = first * c - second * s;
                        *b = second * c + first * s;
                    }
                }
            });
    }

    /// Causal attention of every (sequence, query head), written head-major:
    /// `out[head][row][..head_dim]`.
    fn attention(
        &self,
        qkv: &[f32],
        offsets: &[usize],
        masked: &[usize],
        scope: UniformScope,
        out: &mut [f32],
    ) {
        let d = self.head_dim;
        let rows = *offsets.last().unwrap();
        let width = (self.heads + 2 * self.kv_heads) * d;
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Disjoint output slices: head-major, then sequence by sequence.
        let mut tasks = Vec::with_capacity(self.heads * (offsets.len() - 1));
        let mut rest = &mut out[..self.heads * rows * d];
        for head in 0..self.heads {
            for pair in offsets.windows(2) {
                let (slice, tail) = rest.split_at_mut((pair[1] - pair[0]) * d);
                tasks.push((head, pair[0], pair[1] - pair[0], slice));
                rest = tail;
            }
        }
        tasks
            .into_par_iter()
            .for_each_init(Vec::new, |scores, (head, start, len, out)| {
                let block = &qkv[start * width..(start + len) * width];
                let kv = head / group;
                let v = &block[(self.heads + self.kv_heads + kv) * d..];
                if masked.contains(&head) {
                    uniform_attention(v, width, len, d, scope, out);
                    return;
                }
                let q = &block[head * d..];
                let k = &block[(self.heads + kv) * d..];
                // Blocks of queries against the keys they can see: no scores for the future
                // beyond one block's diagonal, and score memory bounded by a block's rows.
                grow(scores, QUERY_BLOCK.min(len) * len);
                for first in (0..len).step_by(QUERY_BLOCK) {
                    let keys = (first + QUERY_BLOCK).min(len);
                    let queries = keys - first;
                    let probabilities = &mut scores[..queries * keys];
                    matmul(
                        [queries, d, keys],
                        (&q[first * width..], width),
                        (k, 1, width),
                        (probabilities, keys),
                        scale,
                        false,
                    );
                    for (i, row) in probabilities.chunks_exact_mut(keys).enumerate() {
                        let (visible, future) = row.split_at_mut(first + i + 1);
                        softmax_in_place(visible);
                        future.fill(0.0);
                    }
                    matmul(
                        [queries, keys, d],
                        (probabilities, keys),
                        (v, width, 1),
                        (&mut out[first * d..], d),
                        1.0,
                        false,
                    );
                }
            });
    }

    /// Head-major attention outputs to rows with the heads side by side.
    fn merge_heads(&self, head_outputs: &[f32], rows: usize, context: &mut [f32]) {
        let d = self.head_dim;
        let width = self.heads * d;
        context[..rows * width]
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(row, out)| {
                for (head, out) in out.chunks_exact_mut(d).enumerate() {
                    let at = (head * rows + row) * d;
                    out.copy_from_slice(&head_outputs[at..at + d]);
                }
            });
    }

    /// Next-token losses from the final-norm hidden states in `ws.normed`.
    fn losses(
        &self,
        sequences: &[&[u32]],
        offsets: &[usize],
        ws: &mut LlamaWorkspace,
    ) -> Vec<Vec<f32>> {
        let h = self.hidden;
        // (packed row, target) for every position that predicts a next token.
        let pairs: Vec<(usize, usize)> = sequences
            .iter()
            .zip(offsets)
            .flat_map(|(s, &start)| (1..s.len()).map(move |t| (start + t - 1, s[t] as usize)))
            .collect();
        let mut nll = vec![0f32; pairs.len()];
        grow(&mut ws.predicting, LOGIT_ROWS.min(pairs.len()) * h);
        grow(&mut ws.logits, LOGIT_ROWS.min(pairs.len()) * self.vocab);
        for (block, losses) in pairs.chunks(LOGIT_ROWS).zip(nll.chunks_mut(LOGIT_ROWS)) {
            let n = block.len();
            for (&(row, _), out) in block.iter().zip(ws.predicting.chunks_exact_mut(h)) {
                out.copy_from_slice(&ws.normed[row * h..(row + 1) * h]);
            }
            let head = match &self.lm_head {
                Some(weight) => (weight.as_slice(), self.vocab, 1),
                None => (self.embed_tokens.as_slice(), 1, h),
            };
            matmul(
                [n, h, self.vocab],
                (&ws.predicting, h),
                head,
                (&mut ws.logits, self.vocab),
                1.0,
                false,
            );
            losses
                .par_iter_mut()
                .zip(ws.logits.par_chunks(self.vocab))
                .zip(block.par_iter())
                .for_each(|((loss, logits), &(_, target))| *loss = row_nll(logits, target));
        }
        let mut out = Vec::with_capacity(sequences.len());
        let mut start = 0;
        for sequence in sequences {
            out.push(nll[start..start + sequence.len() - 1].to_vec());
            start += sequence.len() - 1;
        }
        out
    }
    /// Gradient of `sum_i weight_i * nll_i` with respect to final-norm hidden states, for the
    /// predicting rows `(row, target, weight)` of `hidden` (`[rows x hidden]`):
    /// `weight (softmax(h W) - onehot(target)) W^T` with `W` the output projection; other rows
    /// are zero. Returns `[rows x hidden]`. The output projection's forward and backward in
    /// two GEMMs per block, for gradients taken further back by the Burn graph.
    pub fn loss_gradient(
        &self,
        hidden: &[f32],
        predictions: &[(usize, usize, f32)],
        ws: &mut LlamaWorkspace,
    ) -> Vec<f32> {
        let h = self.hidden;
        let mut gradient = vec![0f32; hidden.len()];
        grow(&mut ws.predicting, LOGIT_ROWS.min(predictions.len()) * h);
        grow(
            &mut ws.logits,
            LOGIT_ROWS.min(predictions.len()) * self.vocab,
        );
        grow(&mut ws.context, LOGIT_ROWS.min(predictions.len()) * h);
        for block in predictions.chunks(LOGIT_ROWS) {
            let n = block.len();
            for (&(row, _, _), out) in block.iter().zip(ws.predicting.chunks_exact_mut(h)) {
                out.copy_from_slice(&hidden[row * h..(row + 1) * h]);
            }
            let (head, head_rs, head_cs) = match &self.lm_head {
                Some(weight) => (weight.as_slice(), self.vocab, 1),
                None => (self.embed_tokens.as_slice(), 1, h),
            };
            matmul(
                [n, h, self.vocab],
                (&ws.predicting, h),
                (head, head_rs, head_cs),
                (&mut ws.logits, self.vocab),
                1.0,
                false,
            );
            ws.logits
                .par_chunks_mut(self.vocab)
                .zip(block.par_iter())
                .for_each(|(row, &(_, target, weight))| {
                    softmax_in_place(row);
                    row[target] -= 1.0;
                    row.iter_mut().for_each(|v| *v *= weight);
                });
            // d/dh = dlogits W^T: the transposed head read by swapping its strides.
            matmul(
                [n, self.vocab, h],
                (&ws.logits, self.vocab),
                (head, head_cs, head_rs),
                (&mut ws.context, h),
                1.0,
                false,
            );
            for (&(row, _, _), values) in block.iter().zip(ws.context.chunks_exact(h)) {
                gradient[row * h..(row + 1) * h].copy_from_slice(values);
            }
        }
        gradient
    }
}

/// A masked head's output: the mean of V over the positions up to each query
/// ([`UniformScope::Visible`], a running sum) or over the whole sequence.
fn uniform_attention(
    v: &[f32],
    stride: usize,
    len: usize,
    d: usize,
    scope: UniformScope,
    out: &mut [f32],
) {
    let mut sum = vec![0f32; d];
    match scope {
        UniformScope::Visible => {
            for (t, row) in out.chunks_exact_mut(d).enumerate() {
                let value = &v[t * stride..t * stride + d];
                sum.iter_mut().zip(value).for_each(|(s, x)| *s += x);
                let inverse = 1.0 / (t + 1) as f32;
                row.iter_mut().zip(&sum).for_each(|(o, s)| *o = s * inverse);
            }
        }
        UniformScope::Full => {
            for t in 0..len {
                let value = &v[t * stride..t * stride + d];
                sum.iter_mut().zip(value).for_each(|(s, x)| *s += x);
            }
            sum.iter_mut().for_each(|s| *s /= len as f32);
            out.chunks_exact_mut(d)
                .for_each(|row| row.copy_from_slice(&sum));
        }
    }
}

/// Cosines and sines of the rotary angles, `[position x head_dim / 2]`.
struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    fn new(positions: usize, head_dim: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let inverse: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
            .collect();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for t in 0..positions {
            for inv in &inverse {
                let angle = t as f64 * inv;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { cos, sin }
    }
}
