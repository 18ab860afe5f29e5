//! Padding-free CPU forward of [`BertModel`] for the flex device, the sentence encoder's
//! fast path. The segments of a batch are packed row after row (no padding, any mix of
//! lengths); each linear layer is one GEMM over all packed tokens (the `gemm` crate on every
//! rayon thread, the bias pre-filled or fused into the next pass); attention runs per
//! (segment, head) straight on the packed Q/K/V columns with an in-place softmax; GELU,
//! residual and LayerNorm are fused passes over rows; the buffers live across batches.
//!
//! Same formula as [`crate::bert`] (HF `BertModel`, post-norm layers, exact GELU, mean
//! pooling); `tests::packed_forward_matches_the_burn_graph` checks one against the other.
//! Other devices run the Burn graph.

use burn::nn::LayerNorm;
use rayon::prelude::*;

use crate::bert::{BertConfig, BertModel};
use crate::cpu_kernels::{
    bias_gelu_rows, exp_shifted_in_place, matmul, norm_rows, residual_norm_rows, NormParams,
};
use crate::packed::{grow, param_values, Dense, Workspaces, ROWS_PER_TASK};
use crate::ModelError;

/// A LayerNorm's parameters as plain vectors.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    epsilon: f32,
}

impl Norm {
    fn from_module(norm: &LayerNorm, epsilon: f64) -> Self {
        let gamma = param_values(&norm.gamma);
        let beta = match &norm.beta {
            Some(beta) => param_values(beta),
            None => vec![0.0; gamma.len()],
        };
        Self {
            gamma,
            beta,
            epsilon: epsilon as f32,
        }
    }

    fn params(&self) -> NormParams<'_> {
        NormParams {
            gamma: &self.gamma,
            beta: &self.beta,
            epsilon: self.epsilon,
        }
    }
}

/// One encoder layer's weights.
struct PackedLayer {
    /// Query, key and value projections side by side: `[hidden x 3 hidden]`.
    qkv: Dense,
    attention_output: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// Working memory of one batch, reused across batches.
#[derive(Default)]
pub struct Workspace {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    update: Vec<f32>,
    intermediate: Vec<f32>,
    scores: Vec<Vec<f32>>,
}

/// A BERT encoder's weights laid out for the packed CPU forward.
pub struct PackedBert {
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    token_type_embeddings: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<PackedLayer>,
    hidden: usize,
    heads: usize,
    vocab_size: usize,
    max_positions: usize,
    /// Work buffers of the batches, one set per thread, kept across calls.
    pub(crate) workspaces: Workspaces<Workspace>,
}

impl PackedBert {
    /// Copies the weights out of a loaded (or randomly initialised) Burn model.
    pub fn from_model(model: &BertModel, config: &BertConfig) -> Self {
        let eps = config.layer_norm_eps;
        let embeddings = &model.embeddings;
        let layers = model
            .encoder
            .layer
            .iter()
            .map(|layer| {
                let attention = &layer.attention;
                let projections = &attention.self_attn;
                PackedLayer {
                    qkv: Dense::concat(&[&projections.query, &projections.key, &projections.value]),
                    attention_output: Dense::from_module(&attention.output.dense),
                    attention_norm: Norm::from_module(&attention.output.layer_norm, eps),
                    intermediate: Dense::from_module(&layer.intermediate.dense),
                    output: Dense::from_module(&layer.output.dense),
                    output_norm: Norm::from_module(&layer.output.layer_norm, eps),
                }
            })
            .collect();
        Self {
            word_embeddings: param_values(&embeddings.word_embeddings.weight),
            position_embeddings: param_values(&embeddings.position_embeddings.weight),
            token_type_embeddings: param_values(&embeddings.token_type_embeddings.weight),
            embedding_norm: Norm::from_module(&embeddings.layer_norm, eps),
            layers,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            vocab_size: config.vocab_size,
            max_positions: config.max_position_embeddings,
            workspaces: Workspaces::new(),
        }
    }

    /// Mean-pooled, L2-normalised last hidden states of each segment (token ids, `[CLS]` ...
    /// `[SEP]`), row-major `[segments x hidden]`.
    pub fn embed(
        &self,
        segments: &[&[u32]],
        workspace: &mut Workspace,
    ) -> Result<Vec<f32>, ModelError> {
        let h = self.hidden;
        let mut offsets = Vec::with_capacity(segments.len() + 1);
        offsets.push(0);
        for segment in segments {
            if segment.is_empty() || segment.len() > self.max_positions {
                return Err(ModelError::Request(format!(
                    "a segment of {} tokens; the encoder takes 1 to {}",
                    segment.len(),
                    self.max_positions
                )));
            }
            if let Some(&id) = segment.iter().find(|&&id| id as usize >= self.vocab_size) {
                return Err(ModelError::Request(format!(
                    "token id {id} is outside the encoder's vocabulary of {}",
                    self.vocab_size
                )));
            }
            offsets.push(offsets.last().unwrap() + segment.len());
        }
        let rows = *offsets.last().unwrap();
        let intermediate = self.layers.first().map_or(0, |l| l.intermediate.d_out);
        grow(&mut workspace.hidden, rows * h);
        grow(&mut workspace.qkv, rows * 3 * h);
        grow(&mut workspace.context, rows * h);
        grow(&mut workspace.update, rows * h);
        grow(&mut workspace.intermediate, rows * intermediate);
        let x = &mut workspace.hidden[..rows * h];
        self.embed_tokens(segments, x);
        for layer in &self.layers {
            self.layer_forward(layer, &offsets, workspace);
        }
        Ok(self.pool(&workspace.hidden[..rows * h], &offsets))
    }

    /// Word + position + token-type (segment 0) embeddings, then LayerNorm.
    fn embed_tokens(&self, segments: &[&[u32]], x: &mut [f32]) {
        let h = self.hidden;
        let tokens: Vec<(usize, usize)> = segments
            .iter()
            .flat_map(|s| s.iter().enumerate().map(|(p, &id)| (id as usize, p)))
            .collect();
        let norm = self.embedding_norm.params();
        x.par_chunks_mut(h * ROWS_PER_TASK)
            .zip(tokens.par_chunks(ROWS_PER_TASK))
            .for_each(|(chunk, tokens)| {
                for (row, &(id, position)) in chunk.chunks_exact_mut(h).zip(tokens) {
                    let word = &self.word_embeddings[id * h..(id + 1) * h];
                    let pos = &self.position_embeddings[position * h..(position + 1) * h];
                    for (((v, w), p), t) in row
                        .iter_mut()
                        .zip(word)
                        .zip(pos)
                        .zip(&self.token_type_embeddings[..h])
                    {
                        *v = w + p + t;
                    }
                }
                norm_rows(chunk, &norm);
            });
    }

    fn layer_forward(&self, layer: &PackedLayer, offsets: &[usize], ws: &mut Workspace) {
        let h = self.hidden;
        let rows = *offsets.last().unwrap();
        let x = &mut ws.hidden[..rows * h];
        layer.qkv.forward(x, rows, &mut ws.qkv, true);
        self.attention(
            &ws.qkv[..rows * 3 * h],
            offsets,
            &mut ws.context,
            &mut ws.scores,
        );
        layer
            .attention_output
            .forward(&ws.context, rows, &mut ws.update, false);
        residual_norm(
            x,
            &ws.update,
            &layer.attention_output,
            &layer.attention_norm,
        );
        let width = layer.intermediate.d_out;
        layer
            .intermediate
            .forward(x, rows, &mut ws.intermediate, false);
        let bias = &layer.intermediate.bias;
        ws.intermediate[..rows * width]
            .par_chunks_mut(width * ROWS_PER_TASK)
            .for_each(|chunk| bias_gelu_rows(chunk, bias));
        layer
            .output
            .forward(&ws.intermediate, rows, &mut ws.update, false);
        residual_norm(x, &ws.update, &layer.output, &layer.output_norm);
    }

    /// Bidirectional attention within each segment: `softmax(Q K^T / sqrt(d)) V` per head,
    /// written to `context` (the heads side by side, as HF merges them).
    fn attention(
        &self,
        qkv: &[f32],
        offsets: &[usize],
        context: &mut [f32],
        scores: &mut Vec<Vec<f32>>,
    ) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        // One disjoint slice of `context` per segment.
        let mut outputs = Vec::with_capacity(offsets.len() - 1);
        let mut rest = &mut context[..offsets.last().unwrap() * h];
        for pair in offsets.windows(2) {
            let (segment, tail) = rest.split_at_mut((pair[1] - pair[0]) * h);
            outputs.push((pair[0], pair[1] - pair[0], segment));
            rest = tail;
        }
        let threads = rayon::current_num_threads().max(1);
        scores.resize_with(threads, Vec::new);
        let per_task = outputs.len().div_ceil(threads).max(1);
        outputs
            .par_chunks_mut(per_task)
            .zip(scores.par_iter_mut())
            .for_each(|(segments, buffer)| {
                for (start, len, out) in segments.iter_mut() {
                    let (start, len) = (*start, *len);
                    grow(buffer, len * len + len);
                    let (weights, sums) = buffer[..len * len + len].split_at_mut(len * len);
                    let block = &qkv[start * 3 * h..(start + len) * 3 * h];
                    for head in 0..self.heads {
                        let q = &block[head * d..];
                        let k = &block[h + head * d..];
                        let v = &block[2 * h + head * d..];
                        // scores[i][j] = scale * q_i . k_j  (K read transposed by strides)
                        matmul(
                            [len, d, len],
                            (q, 3 * h),
                            (k, 1, 3 * h),
                            (weights, len),
                            scale,
                            false,
                        );
                        // Softmax with its division moved past the product: each context
                        // row is divided by its weights' sum (d values instead of len).
                        for (row, sum) in weights.chunks_exact_mut(len).zip(sums.iter_mut()) {
                            *sum = exp_shifted_in_place(row);
                        }
                        matmul(
                            [len, len, d],
                            (weights, len),
                            (v, 3 * h, 1),
                            (&mut out[head * d..], h),
                            1.0,
                            false,
                        );
                        for (row, sum) in out[head * d..].chunks_mut(h).zip(sums.iter()) {
                            let inverse = 1.0 / sum;
                            row[..d].iter_mut().for_each(|v| *v *= inverse);
                        }
                    }
                }
            });
    }

    /// Mean of each segment's rows, L2-normalised.
    fn pool(&self, x: &[f32], offsets: &[usize]) -> Vec<f32> {
        let h = self.hidden;
        let mut pooled = vec![0f32; (offsets.len() - 1) * h];
        pooled
            .par_chunks_mut(h)
            .zip(offsets.par_windows(2))
            .for_each(|(out, pair)| {
                for row in x[pair[0] * h..pair[1] * h].chunks_exact(h) {
                    out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
                }
                let count = (pair[1] - pair[0]) as f32;
                out.iter_mut().for_each(|o| *o /= count);
                let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                out.iter_mut().for_each(|o| *o /= norm);
            });
        pooled
    }
}

/// `x = LayerNorm(x + update + dense's bias)`: a post-norm residual connection whose
/// projection (`update`) was computed without its bias.
fn residual_norm(x: &mut [f32], update: &[f32], dense: &Dense, norm: &Norm) {
    let chunk = dense.d_out * ROWS_PER_TASK;
    let params = norm.params();
    x.par_chunks_mut(chunk)
        .zip(update.par_chunks(chunk))
        .for_each(|(rows, update)| residual_norm_rows(rows, update, &dense.bias, &params));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::on_threads;
    use burn::prelude::*;

    fn tiny_config() -> BertConfig {
        serde_json::from_value(serde_json::json!({
            "model_type": "bert",
            "vocab_size": 50,
            "hidden_size": 24,
            "num_hidden_layers": 2,
            "num_attention_heads": 3,
            "intermediate_size": 40,
            "hidden_act": "gelu",
            "max_position_embeddings": 40,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12
        }))
        .unwrap()
    }

    /// The oracle: the Burn graph of `bert.rs` on each segment alone (batch of one, no
    /// padding), against the packed forward of all segments at once.
    #[test]
    fn packed_forward_matches_the_burn_graph() {
        let device = Device::flex();
        let config = tiny_config();
        let model = BertModel::new(&config, &device);
        let packed = PackedBert::from_model(&model, &config);
        let segments: Vec<Vec<u32>> = [7usize, 1, 33, 12, 40, 2]
            .iter()
            .enumerate()
            .map(|(s, &len)| (0..len).map(|t| ((s * 17 + t * 7) % 50) as u32).collect())
            .collect();
        let refs: Vec<&[u32]> = segments.iter().map(Vec::as_slice).collect();
        let mut workspace = Workspace::default();
        // Twice through the same workspace: reused buffers must not leak into the result.
        let _ = packed.embed(&refs[..2], &mut workspace).unwrap();
        let got = packed.embed(&refs, &mut workspace).unwrap();
        for (segment, row) in segments.iter().zip(got.chunks_exact(24)) {
            let ids: Vec<i64> = segment.iter().map(|&id| i64::from(id)).collect();
            let ids =
                Tensor::<2, Int>::from_data(TensorData::new(ids, [1, segment.len()]), &device);
            let expected = crate::values(model.embed(ids, &[segment.len()]));
            let worst = row
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 2e-5,
                "segment of {} tokens off by {worst}",
                segment.len()
            );
        }
    }

    /// Byte-identical embeddings on 1 and 3 threads (the selection must not depend on the
    /// machine's core count); in another batch company equal to the last bits (the GEMM takes
    /// another path for a few rows).
    #[test]
    fn embeddings_do_not_depend_on_threads_or_batch_company() {
        let config = tiny_config();
        let model = BertModel::new(&config, &Device::flex());
        let packed = PackedBert::from_model(&model, &config);
        // Enough rows for the GEMMs to run on several threads.
        let segments: Vec<Vec<u32>> = (0..200)
            .map(|s| {
                (0..2 + s % 37)
                    .map(|t| ((s * 13 + t * 5) % 50) as u32)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = segments.iter().map(Vec::as_slice).collect();
        let on = |threads: usize, refs: &[&[u32]]| {
            on_threads(threads, || {
                packed.embed(refs, &mut Workspace::default()).unwrap()
            })
        };
        let one = on(1, &refs);
        assert_eq!(one, on(3, &refs));
        let alone: Vec<f32> = refs.iter().flat_map(|s| on(2, &[s])).collect();
        for (a, b) in one.iter().zip(&alone) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn out_of_range_inputs_are_refused() {
        let config = tiny_config();
        let model = BertModel::new(&config, &Device::flex());
        let packed = PackedBert::from_model(&model, &config);
        let mut workspace = Workspace::default();
        let error = packed.embed(&[&[1, 50, 2]], &mut workspace).unwrap_err();
        assert!(error.to_string().contains("token id 50"), "{error}");
        let long = vec![1u32; 41];
        let error = packed.embed(&[&long], &mut workspace).unwrap_err();
        assert!(error.to_string().contains("41 tokens"), "{error}");
    }
}
