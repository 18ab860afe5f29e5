//! Training the byte-level Llama of `gleaner evaluate` (and S2L's proxy) on the CPU (flex)
//! device without a graph: a forward pass that keeps what the backward pass needs, the
//! backward pass written out layer by layer, and AdamW over one flat parameter vector.
//!
//! The model is the one [`crate::llama`] builds (pre-norm RMSNorm blocks, RoPE in HF's
//! half-split form, causal multi-head attention, SwiGLU MLP, tied input and output
//! embeddings) and the loss the one [`crate::train`] defines on the Burn graph (mean
//! next-token cross-entropy of a batch of equal-length rows). `tests` check the gradients of
//! every parameter and several AdamW steps against Burn's autodiff and optimizer.
//!
//! A batch is cut into micro-batches of about [`MICRO_BATCH_ROWS`] rows, whole sequences each.
//! Each micro-batch runs its forward and backward pass on one thread (every projection one
//! GEMM over its rows, query, key and value together, gate and up together; weight gradients
//! as `input^T x output gradient` GEMMs reading the saved input transposed in place;
//! attention per sequence and head), and rayon spreads the micro-batches over the threads.
//! A thread that is held up (another process, a virtual machine's stolen time) delays only
//! its own micro-batch while the others take the rest, instead of stalling every thread at
//! each of the hundreds of joins a step would have if each product were split across them.
//! The micro-batches' gradients are then added in order, so a step gives the same bits on any
//! number of threads.

use rayon::prelude::*;

use crate::cpu_kernels::{matmul, matmul_strided, softmax_in_place};
use crate::llama::{LlamaConfig, LlamaForCausalLm};
use crate::llama_packed::{PackedLayerWeights, PackedLlama};
use crate::packed::{grow, param_values, Dense};
use crate::train_kernels::{
    adamw, add_assign, rms_norm_backward, rms_norm_saving, softmax_backward_row,
    softmax_gradient_row, swiglu_backward, swiglu_forward, AdamStep, FlushDenormals, RmsSaved,
};

/// Rows (predicted tokens) per micro-batch: whole sequences, at least one.
pub const MICRO_BATCH_ROWS: usize = 512;
/// Values per task of the gradient sum and the optimizer's update.
const VALUES_PER_TASK: usize = 1 << 15;

/// Sizes of the model.
#[derive(Clone, Copy, Debug)]
struct Shape {
    vocab: usize,
    hidden: usize,
    heads: usize,
    head_dim: usize,
    intermediate: usize,
    layers: usize,
    epsilon: f32,
    rope_theta: f64,
}

/// Where one decoder layer's tensors start in the flat parameter vector.
#[derive(Clone, Copy, Debug)]
struct LayerAt {
    input_norm: usize,
    /// `[hidden x 3 hidden]`: query, key and value columns side by side.
    qkv: usize,
    /// `[hidden x hidden]`.
    output: usize,
    post_norm: usize,
    /// `[hidden x 2 intermediate]`: gate and up columns side by side.
    gate_up: usize,
    /// `[intermediate x hidden]`.
    down: usize,
}

impl Shape {
    fn of(config: &LlamaConfig) -> Self {
        assert!(
            config.tie_word_embeddings && config.kv_heads() == config.num_attention_heads,
            "the CPU trainer takes tied embeddings and one key/value head per query head"
        );
        assert_eq!(
            config.head_dim() * config.num_attention_heads,
            config.hidden_size,
            "the CPU trainer takes heads that split the hidden width"
        );
        Self {
            vocab: config.vocab_size,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            head_dim: config.head_dim(),
            intermediate: config.intermediate_size,
            layers: config.num_hidden_layers,
            epsilon: config.rms_norm_eps as f32,
            rope_theta: config.rope_theta,
        }
    }

    fn layer_size(&self) -> usize {
        let (h, m) = (self.hidden, self.intermediate);
        2 * h + 4 * h * h + 3 * h * m
    }

    fn layer_at(&self, layer: usize) -> LayerAt {
        let (h, m) = (self.hidden, self.intermediate);
        let input_norm = self.vocab * h + layer * self.layer_size();
        let qkv = input_norm + h;
        let output = qkv + 3 * h * h;
        let post_norm = output + h * h;
        let gate_up = post_norm + h;
        let down = gate_up + 2 * h * m;
        LayerAt {
            input_norm,
            qkv,
            output,
            post_norm,
            gate_up,
            down,
        }
    }

    fn final_norm_at(&self) -> usize {
        self.vocab * self.hidden + self.layers * self.layer_size()
    }

    fn parameters(&self) -> usize {
        self.final_norm_at() + self.hidden
    }
}

/// What the forward pass of one decoder layer keeps for the backward pass.
#[derive(Default)]
struct LayerActivations {
    /// The residual stream entering the layer, `[rows x hidden]`.
    input: Vec<f32>,
    /// `1 / rms` of each input row.
    input_scale: Vec<f32>,
    /// The normed input, `[rows x hidden]`.
    normed: Vec<f32>,
    /// Queries, keys and values after RoPE, `[rows x 3 hidden]`.
    qkv: Vec<f32>,
    /// Attention probabilities, `[sequences x heads x tokens x tokens]` (zero above the
    /// diagonal).
    probabilities: Vec<f32>,
    /// Attention outputs with the heads side by side, `[rows x hidden]`.
    context: Vec<f32>,
    /// The residual stream after attention, `[rows x hidden]`.
    middle: Vec<f32>,
    middle_scale: Vec<f32>,
    middle_normed: Vec<f32>,
    /// Gate and up projections, `[rows x 2 intermediate]`.
    gate_up: Vec<f32>,
    /// `silu(gate) * up`, `[rows x intermediate]`.
    activations: Vec<f32>,
    /// `sigmoid(gate)`, `[rows x intermediate]`.
    gate_sigmoid: Vec<f32>,
}

/// Working memory of one micro-batch, reused across steps.
#[derive(Default)]
struct Workspace {
    layers: Vec<LayerActivations>,
    last: Vec<f32>,
    last_scale: Vec<f32>,
    last_normed: Vec<f32>,
    /// Logits, turned in place into their gradient.
    logits: Vec<f32>,
    /// Per (sequence, head): attention outputs, or query, key and value gradients.
    heads: Vec<f32>,
    /// One (sequence, head)'s score gradients.
    scores: Vec<f32>,
    d_residual: Vec<f32>,
    d_normed: Vec<f32>,
    d_wide: Vec<f32>,
    d_activations: Vec<f32>,
    d_context: Vec<f32>,
    rope: Option<RopeTable>,
}

/// A micro-batch's working memory and the gradient of its share of the loss.
#[derive(Default)]
struct MicroBatch {
    workspace: Workspace,
    gradient: Vec<f32>,
}

/// AdamW's moments.
#[derive(Clone)]
struct Moments {
    first: Vec<f32>,
    second: Vec<f32>,
    steps: i32,
}

/// The byte-level Llama's weights and optimizer state, trained on the CPU.
pub struct CpuTrainer {
    shape: Shape,
    params: Vec<f32>,
    moments: Moments,
    weight_decay: f32,
    /// Per micro-batch of a step; the first holds the batch's gradient after the sum.
    micro_batches: Vec<MicroBatch>,
}

impl Clone for CpuTrainer {
    /// The weights and optimizer state (a checkpoint); the working memory starts empty.
    fn clone(&self) -> Self {
        Self {
            shape: self.shape,
            params: self.params.clone(),
            moments: self.moments.clone(),
            weight_decay: self.weight_decay,
            micro_batches: Vec::new(),
        }
    }
}

impl CpuTrainer {
    /// Takes the weights of `model` (tied embeddings, as many key/value heads as query heads)
    /// and a fresh AdamW state with `weight_decay`.
    pub fn from_model(model: &LlamaForCausalLm, config: &LlamaConfig, weight_decay: f32) -> Self {
        let shape = Shape::of(config);
        let mut params = Vec::with_capacity(shape.parameters());
        params.extend(param_values(&model.model.embed_tokens.weight));
        for layer in &model.model.layers {
            let attention = &layer.self_attn;
            let mlp = &layer.mlp;
            params.extend(param_values(&layer.input_layernorm.gamma));
            params.extend(
                Dense::concat(&[&attention.q_proj, &attention.k_proj, &attention.v_proj]).weight,
            );
            params.extend(param_values(&attention.o_proj.weight));
            params.extend(param_values(&layer.post_attention_layernorm.gamma));
            params.extend(Dense::concat(&[&mlp.gate_proj, &mlp.up_proj]).weight);
            params.extend(param_values(&mlp.down_proj.weight));
        }
        params.extend(param_values(&model.model.norm.gamma));
        assert_eq!(params.len(), shape.parameters());
        let zeros = vec![0.0; params.len()];
        Self {
            shape,
            moments: Moments {
                first: zeros.clone(),
                second: zeros,
                steps: 0,
            },
            params,
            weight_decay,
            micro_batches: Vec::new(),
        }
    }

    /// The current weights as a packed model for losses ([`PackedLlama::token_losses`]).
    pub fn scoring_model(&self) -> PackedLlama {
        let s = self.shape;
        let (h, m) = (s.hidden, s.intermediate);
        let slice = |at: usize, len: usize| self.params[at..at + len].to_vec();
        let layers = (0..s.layers)
            .map(|l| {
                let at = s.layer_at(l);
                PackedLayerWeights {
                    input_norm: slice(at.input_norm, h),
                    qkv: slice(at.qkv, 3 * h * h),
                    output: slice(at.output, h * h),
                    post_attention_norm: slice(at.post_norm, h),
                    gate_up: slice(at.gate_up, 2 * h * m),
                    down: slice(at.down, m * h),
                }
            })
            .collect();
        PackedLlama::from_weights(
            slice(0, s.vocab * h),
            layers,
            slice(s.final_norm_at(), h),
            (s.heads, s.head_dim, m, s.vocab),
            (s.epsilon, s.rope_theta),
        )
    }

    /// One AdamW step at learning rate `lr` on `rows` (equal lengths of at least two tokens:
    /// each row predicts its tokens after the first); returns the batch's mean loss before the
    /// step.
    pub fn step(&mut self, rows: &[Vec<u32>], lr: f64) -> f64 {
        let loss = self.loss_and_gradient(rows);
        self.update(lr as f32);
        loss
    }

    /// The batch's mean next-token loss, leaving the gradient of every parameter in the first
    /// micro-batch's `gradient`.
    fn loss_and_gradient(&mut self, rows: &[Vec<u32>]) -> f64 {
        let tokens = rows[0].len();
        assert!(
            tokens >= 2 && rows.iter().all(|r| r.len() == tokens),
            "rows of one length >= 2"
        );
        assert!(
            rows.iter()
                .flatten()
                .all(|&t| (t as usize) < self.shape.vocab),
            "token ids inside the vocabulary"
        );
        let per_micro_batch = (MICRO_BATCH_ROWS / (tokens - 1)).max(1);
        let parts: Vec<&[Vec<u32>]> = rows.chunks(per_micro_batch).collect();
        self.micro_batches
            .resize_with(parts.len().max(self.micro_batches.len()), Default::default);
        let total_rows = rows.len() * (tokens - 1);
        let model = Model {
            shape: self.shape,
            params: &self.params,
        };
        let weight = 1.0 / total_rows as f32;
        let losses: Vec<f64> = self.micro_batches[..parts.len()]
            .par_iter_mut()
            .zip(parts.par_iter())
            .map(|(micro, rows)| model.loss_and_gradient(rows, weight, micro))
            .collect();
        // The micro-batches' gradients added into the first, in micro-batch order.
        let n = self.params.len();
        let (first, rest) = self.micro_batches[..parts.len()]
            .split_first_mut()
            .expect("a batch has rows");
        first.gradient[..n]
            .par_chunks_mut(VALUES_PER_TASK)
            .enumerate()
            .for_each(|(task, sum)| {
                let _flush = FlushDenormals::new();
                let at = task * VALUES_PER_TASK;
                for other in rest.iter() {
                    add_assign(sum, &other.gradient[at..at + sum.len()]);
                }
            });
        losses.iter().sum::<f64>() / total_rows as f64
    }

    /// AdamW on every parameter from the gradient [`Self::loss_and_gradient`] left.
    fn update(&mut self, lr: f32) {
        let moments = &mut self.moments;
        moments.steps += 1;
        let step = AdamStep::new(moments.steps, lr, self.weight_decay);
        let gradient = &self.micro_batches[0].gradient[..self.params.len()];
        self.params
            .par_chunks_mut(VALUES_PER_TASK)
            .zip(moments.first.par_chunks_mut(VALUES_PER_TASK))
            .zip(moments.second.par_chunks_mut(VALUES_PER_TASK))
            .zip(gradient.par_chunks(VALUES_PER_TASK))
            .for_each(|(((p, m), v), g)| {
                let _flush = FlushDenormals::new();
                adamw(p, m, v, g, step)
            });
    }
}

/// Sequences of a micro-batch and tokens per sequence (inputs, not counting the last target).
#[derive(Clone, Copy)]
struct Batch {
    sequences: usize,
    tokens: usize,
}

impl Batch {
    fn rows(&self) -> usize {
        self.sequences * self.tokens
    }
}

/// The weights, read by the micro-batches' passes (each on one thread).
#[derive(Clone, Copy)]
struct Model<'a> {
    shape: Shape,
    params: &'a [f32],
}

impl Model<'_> {
    /// The summed next-token loss of `rows`, and in `micro.gradient` its gradient times
    /// `weight` (one over the rows of the whole batch, so the micro-batches' gradients add up
    /// to the gradient of the batch's mean loss).
    fn loss_and_gradient(&self, rows: &[Vec<u32>], weight: f32, micro: &mut MicroBatch) -> f64 {
        let _flush = FlushDenormals::new();
        let tokens = rows[0].len();
        let inputs: Vec<u32> = rows
            .iter()
            .flat_map(|r| r[..tokens - 1].iter().copied())
            .collect();
        let targets: Vec<u32> = rows.iter().flat_map(|r| r[1..].iter().copied()).collect();
        let batch = Batch {
            sequences: rows.len(),
            tokens: tokens - 1,
        };
        let ws = &mut micro.workspace;
        self.forward(&inputs, batch, ws);
        let loss = self.output_loss(&targets, batch.rows(), weight, ws);
        grow(&mut micro.gradient, self.params.len());
        self.backward(&inputs, batch, ws, &mut micro.gradient[..self.params.len()]);
        loss
    }

    fn forward(&self, inputs: &[u32], batch: Batch, ws: &mut Workspace) {
        let s = self.shape;
        let (h, m) = (s.hidden, s.intermediate);
        let rows = batch.rows();
        if ws.rope.as_ref().is_none_or(|r| r.positions < batch.tokens) {
            ws.rope = Some(RopeTable::new(batch.tokens, s.head_dim, s.rope_theta));
        }
        ws.layers.resize_with(s.layers, Default::default);
        for layer in &mut ws.layers {
            for (buffer, width) in [
                (&mut layer.input, h),
                (&mut layer.input_scale, 1),
                (&mut layer.normed, h),
                (&mut layer.qkv, 3 * h),
                (&mut layer.context, h),
                (&mut layer.middle, h),
                (&mut layer.middle_scale, 1),
                (&mut layer.middle_normed, h),
                (&mut layer.gate_up, 2 * m),
                (&mut layer.activations, m),
                (&mut layer.gate_sigmoid, m),
            ] {
                grow(buffer, rows * width);
            }
            grow(
                &mut layer.probabilities,
                batch.sequences * s.heads * batch.tokens * batch.tokens,
            );
        }
        grow(&mut ws.last, rows * h);
        grow(&mut ws.last_scale, rows);
        grow(&mut ws.last_normed, rows * h);
        grow(&mut ws.heads, rows * 3 * h);
        let p = self.params;
        for (row, &id) in ws.layers[0].input.chunks_exact_mut(h).zip(inputs) {
            let id = id as usize;
            row.copy_from_slice(&p[id * h..(id + 1) * h]);
        }
        let rope = ws.rope.take().expect("a RoPE table");
        for l in 0..s.layers {
            let at = s.layer_at(l);
            let a = &mut ws.layers[l];
            rms_norm_saving(
                &a.input[..rows * h],
                &p[at.input_norm..at.input_norm + h],
                s.epsilon,
                &mut a.normed,
                &mut a.input_scale,
            );
            matmul(
                [rows, h, 3 * h],
                (&a.normed, h),
                (&p[at.qkv..], 3 * h, 1),
                (&mut a.qkv, 3 * h),
                1.0,
                false,
            );
            rotate_queries_keys(&mut a.qkv[..rows * 3 * h], s, batch.tokens, &rope, false);
            self.attention_forward(a, batch, &mut ws.heads);
            merge_heads(&ws.heads, s, batch, &mut a.context);
            a.middle[..rows * h].copy_from_slice(&a.input[..rows * h]);
            matmul(
                [rows, h, h],
                (&a.context, h),
                (&p[at.output..], h, 1),
                (&mut a.middle, h),
                1.0,
                true,
            );
            rms_norm_saving(
                &a.middle[..rows * h],
                &p[at.post_norm..at.post_norm + h],
                s.epsilon,
                &mut a.middle_normed,
                &mut a.middle_scale,
            );
            matmul(
                [rows, h, 2 * m],
                (&a.middle_normed, h),
                (&p[at.gate_up..], 2 * m, 1),
                (&mut a.gate_up, 2 * m),
                1.0,
                false,
            );
            swiglu_forward(
                m,
                &a.gate_up[..rows * 2 * m],
                &mut a.activations[..rows * m],
                &mut a.gate_sigmoid[..rows * m],
            );
            let (a, out) = if l + 1 < s.layers {
                let (done, rest) = ws.layers.split_at_mut(l + 1);
                (&done[l], &mut rest[0].input)
            } else {
                (&ws.layers[l], &mut ws.last)
            };
            out[..rows * h].copy_from_slice(&a.middle[..rows * h]);
            matmul(
                [rows, m, h],
                (&a.activations, m),
                (&p[at.down..], h, 1),
                (out, h),
                1.0,
                true,
            );
        }
        ws.rope = Some(rope);
        let at = s.final_norm_at();
        rms_norm_saving(
            &ws.last[..rows * h],
            &p[at..at + h],
            s.epsilon,
            &mut ws.last_normed,
            &mut ws.last_scale,
        );
    }

    /// Causal attention of every (sequence, head) from `a.qkv`, keeping the probabilities in
    /// `a.probabilities` and writing the outputs head-major into `heads`
    /// (`[sequence][head][token][head_dim]`).
    fn attention_forward(&self, a: &mut LayerActivations, batch: Batch, heads: &mut [f32]) {
        let s = self.shape;
        let (t, d, width) = (batch.tokens, s.head_dim, 3 * s.hidden);
        let scale = 1.0 / (d as f32).sqrt();
        let tasks = a.probabilities[..batch.sequences * s.heads * t * t]
            .chunks_exact_mut(t * t)
            .zip(heads.chunks_exact_mut(t * d));
        for (task, (probabilities, out)) in tasks.enumerate() {
            let (sequence, head) = (task / s.heads, task % s.heads);
            let block = &a.qkv[sequence * t * width..];
            let q = &block[head * d..];
            let k = &block[s.hidden + head * d..];
            let v = &block[2 * s.hidden + head * d..];
            matmul_strided(
                [t, d, t],
                (q, width, 1),
                (k, 1, width),
                (probabilities, t),
                scale,
                false,
            );
            for (i, row) in probabilities.chunks_exact_mut(t).enumerate() {
                let (visible, future) = row.split_at_mut(i + 1);
                softmax_in_place(visible);
                future.fill(0.0);
            }
            matmul(
                [t, t, d],
                (probabilities, t),
                (v, width, 1),
                (out, d),
                1.0,
                false,
            );
        }
    }

    /// Logits and the logits' gradient times `weight` (in place of the logits); returns the
    /// summed loss.
    fn output_loss(&self, targets: &[u32], rows: usize, weight: f32, ws: &mut Workspace) -> f64 {
        let s = self.shape;
        let (h, vocab) = (s.hidden, s.vocab);
        grow(&mut ws.logits, rows * vocab);
        matmul_strided(
            [rows, h, vocab],
            (&ws.last_normed, h, 1),
            (&self.params[..vocab * h], 1, h),
            (&mut ws.logits, vocab),
            1.0,
            false,
        );
        ws.logits[..rows * vocab]
            .chunks_exact_mut(vocab)
            .zip(targets)
            .map(|(row, &target)| f64::from(softmax_gradient_row(row, target as usize, weight)))
            .sum()
    }

    /// Writes the gradient of every parameter into `gradient` (the parameter layout).
    fn backward(&self, inputs: &[u32], batch: Batch, ws: &mut Workspace, gradient: &mut [f32]) {
        let s = self.shape;
        let (h, m, vocab) = (s.hidden, s.intermediate, s.vocab);
        let rows = batch.rows();
        let p = self.params;
        grow(&mut ws.d_residual, rows * h);
        grow(&mut ws.d_normed, rows * h);
        grow(&mut ws.d_wide, rows * 3 * h.max(m));
        grow(&mut ws.d_activations, rows * m);
        grow(&mut ws.d_context, rows * h);
        // Norm gains accumulate over rows; every other gradient is written whole below.
        let (embed_grad, rest) = gradient.split_at_mut(vocab * h);
        // Output projection (the tied embeddings): d normed = dlogits E, dE = dlogits^T normed.
        matmul(
            [rows, vocab, h],
            (&ws.logits, vocab),
            (&p[..vocab * h], h, 1),
            (&mut ws.d_normed, h),
            1.0,
            false,
        );
        matmul_strided(
            [vocab, rows, h],
            (&ws.logits, 1, vocab),
            (&ws.last_normed, h, 1),
            (embed_grad, h),
            1.0,
            false,
        );
        let (layer_grads, final_grad) = rest.split_at_mut(s.final_norm_at() - vocab * h);
        ws.d_residual[..rows * h].fill(0.0);
        final_grad.fill(0.0);
        let at = s.final_norm_at();
        rms_norm_backward(
            &RmsSaved {
                input: &ws.last[..rows * h],
                scale: &ws.last_scale[..rows],
                gamma: &p[at..at + h],
            },
            &ws.d_normed[..rows * h],
            &mut ws.d_residual[..rows * h],
            final_grad,
        );
        let rope = ws.rope.take().expect("a RoPE table");
        for l in (0..s.layers).rev() {
            let at = s.layer_at(l);
            let base = at.input_norm;
            let g = &mut layer_grads[base - vocab * h..base - vocab * h + s.layer_size()];
            let local = |offset: usize| offset - base;
            let a = &ws.layers[l];
            // MLP: d activations = dx Wdown^T, dWdown = activations^T dx.
            matmul_strided(
                [rows, h, m],
                (&ws.d_residual, h, 1),
                (&p[at.down..], 1, h),
                (&mut ws.d_activations, m),
                1.0,
                false,
            );
            matmul_strided(
                [m, rows, h],
                (&a.activations, 1, m),
                (&ws.d_residual, h, 1),
                (&mut g[local(at.down)..], h),
                1.0,
                false,
            );
            swiglu_backward(
                m,
                &a.gate_up[..rows * 2 * m],
                &a.gate_sigmoid[..rows * m],
                &ws.d_activations[..rows * m],
                &mut ws.d_wide[..rows * 2 * m],
            );
            matmul_strided(
                [h, rows, 2 * m],
                (&a.middle_normed, 1, h),
                (&ws.d_wide, 2 * m, 1),
                (&mut g[local(at.gate_up)..], 2 * m),
                1.0,
                false,
            );
            matmul_strided(
                [rows, 2 * m, h],
                (&ws.d_wide, 2 * m, 1),
                (&p[at.gate_up..], 1, 2 * m),
                (&mut ws.d_normed, h),
                1.0,
                false,
            );
            let post_norm = local(at.post_norm);
            g[post_norm..post_norm + h].fill(0.0);
            rms_norm_backward(
                &RmsSaved {
                    input: &a.middle[..rows * h],
                    scale: &a.middle_scale[..rows],
                    gamma: &p[at.post_norm..at.post_norm + h],
                },
                &ws.d_normed[..rows * h],
                &mut ws.d_residual[..rows * h],
                &mut g[post_norm..post_norm + h],
            );
            // Attention output: d context = dx Wo^T, dWo = context^T dx.
            matmul_strided(
                [rows, h, h],
                (&ws.d_residual, h, 1),
                (&p[at.output..], 1, h),
                (&mut ws.d_context, h),
                1.0,
                false,
            );
            matmul_strided(
                [h, rows, h],
                (&a.context, 1, h),
                (&ws.d_residual, h, 1),
                (&mut g[local(at.output)..], h),
                1.0,
                false,
            );
            self.attention_backward(a, &ws.d_context, batch, (&mut ws.heads, &mut ws.scores));
            split_head_gradients(&ws.heads, s, batch, &rope, &mut ws.d_wide[..rows * 3 * h]);
            matmul_strided(
                [h, rows, 3 * h],
                (&a.normed, 1, h),
                (&ws.d_wide, 3 * h, 1),
                (&mut g[local(at.qkv)..], 3 * h),
                1.0,
                false,
            );
            matmul_strided(
                [rows, 3 * h, h],
                (&ws.d_wide, 3 * h, 1),
                (&p[at.qkv..], 1, 3 * h),
                (&mut ws.d_normed, h),
                1.0,
                false,
            );
            g[..h].fill(0.0);
            rms_norm_backward(
                &RmsSaved {
                    input: &a.input[..rows * h],
                    scale: &a.input_scale[..rows],
                    gamma: &p[at.input_norm..at.input_norm + h],
                },
                &ws.d_normed[..rows * h],
                &mut ws.d_residual[..rows * h],
                &mut g[..h],
            );
        }
        ws.rope = Some(rope);
        // The embedding lookup: each row's gradient added to its token's row, in row order.
        for (row, &id) in ws.d_residual[..rows * h].chunks_exact(h).zip(inputs) {
            let id = id as usize;
            add_assign(&mut embed_grad[id * h..(id + 1) * h], row);
        }
    }

    /// Gradients of every (sequence, head)'s queries, keys and values from the gradient of the
    /// attention outputs (`d_context`, heads side by side), written into `heads` as
    /// `[sequence][head][query | key | value][token][head_dim]`; `scores` is scratch.
    fn attention_backward(
        &self,
        a: &LayerActivations,
        d_context: &[f32],
        batch: Batch,
        (heads, scores): (&mut [f32], &mut Vec<f32>),
    ) {
        let s = self.shape;
        let (t, d, h, width) = (batch.tokens, s.head_dim, s.hidden, 3 * s.hidden);
        let scale = 1.0 / (d as f32).sqrt();
        grow(scores, t * t);
        let d_scores = &mut scores[..t * t];
        let tasks = heads[..batch.rows() * width]
            .chunks_exact_mut(3 * t * d)
            .zip(a.probabilities.chunks_exact(t * t));
        for (task, (out, probabilities)) in tasks.enumerate() {
            let (sequence, head) = (task / s.heads, task % s.heads);
            let block = &a.qkv[sequence * t * width..];
            let q = &block[head * d..];
            let k = &block[h + head * d..];
            let v = &block[2 * h + head * d..];
            let d_out = &d_context[sequence * t * h + head * d..];
            // d probabilities = d out V^T.
            matmul_strided(
                [t, d, t],
                (d_out, h, 1),
                (v, 1, width),
                (d_scores, t),
                1.0,
                false,
            );
            for (i, (d_row, p_row)) in d_scores
                .chunks_exact_mut(t)
                .zip(probabilities.chunks_exact(t))
                .enumerate()
            {
                softmax_backward_row(&mut d_row[..=i], &p_row[..=i], scale);
                d_row[i + 1..].fill(0.0);
            }
            let (d_q, rest) = out.split_at_mut(t * d);
            let (d_k, d_v) = rest.split_at_mut(t * d);
            matmul(
                [t, t, d],
                (d_scores, t),
                (k, width, 1),
                (d_q, d),
                1.0,
                false,
            );
            matmul_strided(
                [t, t, d],
                (d_scores, 1, t),
                (q, width, 1),
                (d_k, d),
                1.0,
                false,
            );
            matmul_strided(
                [t, t, d],
                (probabilities, 1, t),
                (d_out, h, 1),
                (d_v, d),
                1.0,
                false,
            );
        }
    }
}

/// Head-major attention outputs (`[sequence][head][token][head_dim]`) to rows with the heads
/// side by side.
fn merge_heads(heads: &[f32], s: Shape, batch: Batch, context: &mut [f32]) {
    let (t, d, h) = (batch.tokens, s.head_dim, s.hidden);
    for (row, out) in context[..batch.rows() * h].chunks_exact_mut(h).enumerate() {
        let (sequence, token) = (row / t, row % t);
        for (head, out) in out.chunks_exact_mut(d).enumerate() {
            let at = ((sequence * s.heads + head) * t + token) * d;
            out.copy_from_slice(&heads[at..at + d]);
        }
    }
}

/// The per-head gradients of [`Model::attention_backward`] to rows of `[query | key | value]`
/// (the layout of the QKV projection's output), with RoPE's rotation undone on the query and
/// key gradients.
fn split_head_gradients(
    heads: &[f32],
    s: Shape,
    batch: Batch,
    rope: &RopeTable,
    d_qkv: &mut [f32],
) {
    let (t, d, h) = (batch.tokens, s.head_dim, s.hidden);
    for (row, out) in d_qkv.chunks_exact_mut(3 * h).enumerate() {
        let (sequence, token) = (row / t, row % t);
        for part in 0..3 {
            for head in 0..s.heads {
                let at = (((sequence * s.heads + head) * 3 + part) * t + token) * d;
                out[part * h + head * d..part * h + (head + 1) * d]
                    .copy_from_slice(&heads[at..at + d]);
            }
        }
    }
    rotate_queries_keys(d_qkv, s, t, rope, true);
}

/// RoPE on the query and key parts of every `[query | key | value]` row (position: the row's
/// index within its sequence of `tokens`), in HF's half-split form `x cos + rotate_half(x)
/// sin`; with `inverse`, the transposed rotation (angle negated), which carries gradients
/// back through it.
fn rotate_queries_keys(qkv: &mut [f32], s: Shape, tokens: usize, rope: &RopeTable, inverse: bool) {
    let (d, h) = (s.head_dim, s.hidden);
    let half = d / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    for (row, values) in qkv.chunks_exact_mut(3 * h).enumerate() {
        let position = row % tokens;
        let cos = &rope.cos[position * half..(position + 1) * half];
        let sin = &rope.sin[position * half..(position + 1) * half];
        for head in values[..2 * h].chunks_exact_mut(d) {
            let (x1, x2) = head.split_at_mut(half);
            for (((a, b), c), sn) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
                let (first, second, sn) = (*a, *b, sign * sn);
                *a = first * c - second * sn;
                *b = second * c + first * sn;
            }
        }
    }
}

/// Cosines and sines of the rotary angles, `[position x head_dim / 2]`
/// (`inv_freq_i = theta^(-2i/d)`).
struct RopeTable {
    positions: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    fn new(positions: usize, head_dim: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for t in 0..positions {
            for i in 0..half {
                let angle = t as f64 / theta.powf((2 * i) as f64 / head_dim as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            positions,
            cos,
            sin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::on_threads;
    use crate::train::{byte_tokens, TinyLmShape, BYTE_VOCAB};
    use burn::module::Param;
    use burn::nn::Linear;
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::prelude::*;
    use burn::tensor::activation::log_softmax;
    use burn::tensor::Gradients;

    fn shape() -> TinyLmShape {
        TinyLmShape {
            layers: 2,
            hidden: 24,
            heads: 3,
            intermediate: 40,
            max_positions: 256,
        }
    }

    /// `count` rows of `len` byte tokens from varied text.
    fn rows_of(count: usize, len: usize) -> Vec<Vec<u32>> {
        let text: Vec<u32> = (0..12)
            .flat_map(|i| {
                byte_tokens(&format!(
                    "{i}: The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs."
                ))
            })
            .collect();
        (0..count)
            .map(|i| text[i * 11..i * 11 + len].to_vec())
            .collect()
    }

    fn rows() -> Vec<Vec<u32>> {
        rows_of(4, 19)
    }

    /// The oracle: the Burn graph's loss, the same formula as `crate::train`.
    fn graph_loss(model: &LlamaForCausalLm, config: &LlamaConfig, rows: &[Vec<u32>]) -> Tensor<1> {
        let device = model.model.embed_tokens.weight.device();
        let (batch, tokens) = (rows.len(), rows[0].len());
        let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, tokens]), &device);
        let hidden = model.hidden_states(
            config,
            ids.clone().narrow(1, 0, tokens - 1),
            &Default::default(),
            &mut Default::default(),
        );
        let n = batch * (tokens - 1);
        let logits = model.logits(hidden.reshape([n, config.hidden_size]));
        let targets = ids.narrow(1, 1, tokens - 1).reshape([n, 1]);
        log_softmax(logits, 1).gather(1, targets).neg().mean()
    }

    fn model(seed: u64) -> (LlamaForCausalLm, LlamaConfig) {
        let config = shape().config();
        let device = Device::flex().autodiff();
        device.seed(seed);
        (LlamaForCausalLm::new(&config, &device), config)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        crate::values(t)
    }

    fn linear_grad(linear: &Linear, grads: &Gradients) -> Vec<f32> {
        param_grad(&linear.weight, grads)
    }

    fn param_grad<const D: usize>(param: &Param<Tensor<D>>, grads: &Gradients) -> Vec<f32> {
        values(param.val().grad(grads).expect("a gradient"))
    }

    /// Columns `[from, from + width)` of a row-major matrix with `columns` columns.
    fn columns(matrix: &[f32], columns: usize, from: usize, width: usize) -> Vec<f32> {
        matrix
            .chunks_exact(columns)
            .flat_map(|row| row[from..from + width].iter().copied())
            .collect()
    }

    fn assert_close(name: &str, ours: &[f32], oracle: &[f32], tolerance: f32) {
        assert_eq!(ours.len(), oracle.len(), "{name}: lengths");
        let scale = oracle.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = ours
            .iter()
            .zip(oracle)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            scale > 0.0,
            "{name}: an all-zero oracle gradient tests nothing"
        );
        assert!(
            worst <= tolerance * scale,
            "{name}: worst difference {worst} against a largest value {scale}"
        );
    }

    #[test]
    fn loss_and_every_gradient_match_burn_autodiff() {
        // One micro-batch, and three rows of 200 tokens split into micro-batches of two rows
        // and one.
        assert_eq!(MICRO_BATCH_ROWS / 199, 2);
        for rows in [rows(), rows_of(3, 200)] {
            gradients_match(&rows);
        }
    }

    fn gradients_match(rows: &[Vec<u32>]) {
        let (model, config) = model(7);
        let rows = rows.to_vec();
        let loss = graph_loss(&model, &config, &rows);
        let oracle_loss = f64::from(values(loss.clone())[0]);
        let grads = loss.backward();
        let mut trainer = CpuTrainer::from_model(&model, &config, 0.0);
        let ours = trainer.loss_and_gradient(&rows);
        assert!((ours - oracle_loss).abs() < 1e-5, "{ours} vs {oracle_loss}");
        let s = trainer.shape;
        let (h, m, v) = (s.hidden, s.intermediate, s.vocab);
        let g = &trainer.micro_batches[0].gradient;
        assert_close(
            "embed_tokens",
            &g[..v * h],
            &param_grad(&model.model.embed_tokens.weight, &grads),
            1e-4,
        );
        let tol = 1e-4;
        for (l, layer) in model.model.layers.iter().enumerate() {
            let at = s.layer_at(l);
            let qkv = &g[at.qkv..at.qkv + 3 * h * h];
            let attention = &layer.self_attn;
            for (part, linear) in [&attention.q_proj, &attention.k_proj, &attention.v_proj]
                .into_iter()
                .enumerate()
            {
                assert_close(
                    &format!("layer {l} qkv part {part}"),
                    &columns(qkv, 3 * h, part * h, h),
                    &linear_grad(linear, &grads),
                    tol,
                );
            }
            assert_close(
                &format!("layer {l} o_proj"),
                &g[at.output..at.output + h * h],
                &linear_grad(&attention.o_proj, &grads),
                tol,
            );
            let gate_up = &g[at.gate_up..at.gate_up + 2 * h * m];
            assert_close(
                &format!("layer {l} gate_proj"),
                &columns(gate_up, 2 * m, 0, m),
                &linear_grad(&layer.mlp.gate_proj, &grads),
                tol,
            );
            assert_close(
                &format!("layer {l} up_proj"),
                &columns(gate_up, 2 * m, m, m),
                &linear_grad(&layer.mlp.up_proj, &grads),
                tol,
            );
            assert_close(
                &format!("layer {l} down_proj"),
                &g[at.down..at.down + m * h],
                &linear_grad(&layer.mlp.down_proj, &grads),
                tol,
            );
            assert_close(
                &format!("layer {l} input_layernorm"),
                &g[at.input_norm..at.input_norm + h],
                &param_grad(&layer.input_layernorm.gamma, &grads),
                tol,
            );
            assert_close(
                &format!("layer {l} post_attention_layernorm"),
                &g[at.post_norm..at.post_norm + h],
                &param_grad(&layer.post_attention_layernorm.gamma, &grads),
                tol,
            );
        }
        assert_close(
            "norm",
            &g[s.final_norm_at()..s.final_norm_at() + h],
            &param_grad(&model.model.norm.gamma, &grads),
            tol,
        );
    }

    #[test]
    fn adamw_steps_match_burns_optimizer() {
        let (mut model, config) = model(11);
        let rows = rows();
        let mut trainer = CpuTrainer::from_model(&model, &config, 0.1);
        let mut optimizer = AdamWConfig::new().with_weight_decay(0.1).init();
        let lrs = [1e-2, 5e-3, 2e-3, 1e-3];
        for (i, &lr) in lrs.iter().enumerate() {
            let batch = [rows[i % 4].clone(), rows[(i + 1) % 4].clone()];
            let loss = graph_loss(&model, &config, &batch);
            let expected = f64::from(values(loss.clone())[0]);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            let ours = trainer.step(&batch, lr);
            assert!(
                (ours - expected).abs() < 1e-4,
                "step {i}: {ours} vs {expected}"
            );
        }
        // After the steps, the weights (read back the same way as at the start) agree.
        let oracle = CpuTrainer::from_model(&model, &config, 0.1).params;
        assert_close(
            "weights after 4 AdamW steps",
            &trainer.params,
            &oracle,
            1e-4,
        );
        let moved = trainer
            .params
            .iter()
            .zip(&CpuTrainer::from_model(&self::model(11).0, &config, 0.1).params)
            .filter(|(a, b)| (*a - *b).abs() > 1e-4)
            .count();
        assert!(
            moved > trainer.params.len() / 2,
            "the steps moved the weights"
        );
    }

    #[test]
    fn the_scoring_model_gives_the_graphs_losses() {
        let (model, config) = model(5);
        let trainer = CpuTrainer::from_model(&model, &config, 0.0);
        let rows = rows();
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let losses = trainer
            .scoring_model()
            .token_losses(&refs, None, &mut Default::default());
        let mean = losses.iter().flatten().map(|&l| f64::from(l)).sum::<f64>()
            / losses.iter().map(Vec::len).sum::<usize>() as f64;
        let oracle = f64::from(values(graph_loss(&model, &config, &rows))[0]);
        assert!((mean - oracle).abs() < 1e-5, "{mean} vs {oracle}");
    }

    #[test]
    fn steps_give_the_same_bits_on_one_and_two_threads() {
        // Big enough that the GEMMs split across threads (m n k >= 2^21).
        let shape = TinyLmShape {
            layers: 2,
            hidden: 128,
            heads: 4,
            intermediate: 256,
            max_positions: 129,
        };
        let config = shape.config();
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = LlamaForCausalLm::new(&config, &device);
        let text: Vec<u32> = (0..4000u32)
            .map(|i| (i * 7 + i / 13) % BYTE_VOCAB as u32)
            .collect();
        let batches: Vec<Vec<Vec<u32>>> = (0..3)
            .map(|s| {
                (0..16)
                    .map(|b| text[(s * 16 + b) * 60..(s * 16 + b) * 60 + 129].to_vec())
                    .collect()
            })
            .collect();
        let run = |threads| {
            on_threads(threads, || {
                let mut trainer = CpuTrainer::from_model(&model, &config, 0.0);
                let losses: Vec<f64> = batches.iter().map(|b| trainer.step(b, 1e-3)).collect();
                (losses, trainer.params)
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0, two.0);
        assert!(one.1 == two.1, "weights differ between 1 and 2 threads");
    }
}
