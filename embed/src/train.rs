//! Training a small Llama-family causal LM from scratch with Burn's autodiff and AdamW, for
//! `gleaner evaluate` (train one model per selection, compare held-out losses).
//!
//! Tokens are bytes: ids 0..=255 are the bytes of the UTF-8 text and [`BYTE_EOS`] ends a
//! document, so no tokenizer file is needed and every selection is measured in the same unit.
//! The loss is the mean next-token cross-entropy over all positions of a batch of equal-length
//! sequences (`-log softmax(logits)[target]`, as HF `LlamaForCausalLM` with labels).

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::llama::{ForwardRequest, ForwardTrace, LlamaConfig, LlamaForCausalLm};
use crate::llama_train::CpuTrainer;

/// End-of-document token of the byte-level vocabulary.
pub const BYTE_EOS: u32 = 256;
/// Size of the byte-level vocabulary (256 bytes and the end-of-document token).
pub const BYTE_VOCAB: usize = 257;

/// Byte ids of `text` followed by [`BYTE_EOS`].
pub fn byte_tokens(text: &str) -> Vec<u32> {
    text.bytes()
        .map(u32::from)
        .chain(std::iter::once(BYTE_EOS))
        .collect()
}

/// Shape of a byte-level model to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TinyLmShape {
    /// Decoder layers.
    pub layers: usize,
    /// Residual width.
    pub hidden: usize,
    /// Attention heads (key/value heads equal).
    pub heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Longest sequence (positions).
    pub max_positions: usize,
}

impl TinyLmShape {
    /// The HF-style config of this shape over the byte vocabulary (tied embeddings).
    pub fn config(&self) -> LlamaConfig {
        LlamaConfig {
            model_type: "llama".into(),
            vocab_size: BYTE_VOCAB,
            hidden_size: self.hidden,
            intermediate_size: self.intermediate,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: None,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: self.max_positions,
            tie_word_embeddings: true,
            hidden_act: "silu".into(),
            eos_token_id: Some(BYTE_EOS),
            bos_token_id: None,
        }
    }

    /// Trainable parameters.
    pub fn parameters(&self) -> usize {
        let (h, m) = (self.hidden, self.intermediate);
        BYTE_VOCAB * h + self.layers * (4 * h * h + 3 * h * m + 2 * h) + h
    }
}

/// A model being trained with its optimizer state (a clone is a checkpoint). On the CPU
/// (flex) device it trains with [`CpuTrainer`] (a hand-written forward and backward pass)
/// and scores with the packed forward; elsewhere it trains on Burn's autodiff graph
/// ([`GraphTrainer`]). Both start from the same seeded weights and take the same AdamW steps.
#[derive(Clone)]
pub enum TrainableLm {
    /// The CPU trainer.
    Cpu(CpuTrainer),
    /// Weights on an autodiff device, with Burn's AdamW.
    Graph(Box<GraphTrainer>),
}

/// Tokens per batch when scoring on the CPU.
const SCORING_BATCH_TOKENS: usize = 8192;

impl TrainableLm {
    /// A freshly initialised model (normal, std 0.02) of `shape`, seeded, with AdamW
    /// (weight decay `weight_decay`). The initial weights are the same on every device.
    pub fn new(shape: TinyLmShape, seed: u64, weight_decay: f32, device: &Device) -> Self {
        let autodiff = device.clone().autodiff();
        autodiff.seed(seed);
        let config = shape.config();
        let model = LlamaForCausalLm::new(&config, &autodiff);
        if *device == Device::flex() {
            Self::Cpu(CpuTrainer::from_model(&model, &config, weight_decay))
        } else {
            Self::Graph(Box::new(GraphTrainer {
                config,
                model,
                optimizer: AdamWConfig::new().with_weight_decay(weight_decay).init(),
                device: autodiff,
            }))
        }
    }

    /// One AdamW step on `rows` at learning rate `lr`; returns the batch's loss before the step.
    pub fn step(&mut self, rows: &[Vec<u32>], lr: f64) -> f64 {
        match self {
            Self::Cpu(trainer) => trainer.step(rows, lr),
            Self::Graph(trainer) => trainer.step(rows, lr),
        }
    }

    /// Mean next-token cross-entropy of each sequence (NaN under two tokens), without
    /// gradients.
    pub fn sequence_losses(&self, sequences: &[Vec<u32>]) -> Vec<f64> {
        match self {
            Self::Cpu(trainer) => {
                let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
                trainer
                    .scoring_model()
                    .losses_in_batches(&refs, SCORING_BATCH_TOKENS, None)
                    .into_iter()
                    .map(|losses| {
                        if losses.is_empty() {
                            f64::NAN
                        } else {
                            losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len() as f64
                        }
                    })
                    .collect()
            }
            Self::Graph(trainer) => trainer.sequence_losses(sequences),
        }
    }

    /// Mean next-token cross-entropy per predicted token over all `sequences` (those under
    /// two tokens skipped; NaN when none is left), without gradients.
    pub fn evaluate(&self, sequences: &[Vec<u32>]) -> f64 {
        let (mut sum, mut count) = (0.0f64, 0usize);
        for (s, loss) in sequences.iter().zip(self.sequence_losses(sequences)) {
            if s.len() >= 2 {
                sum += loss * (s.len() - 1) as f64;
                count += s.len() - 1;
            }
        }
        if count == 0 {
            f64::NAN
        } else {
            sum / count as f64
        }
    }
}

/// Training on Burn's autodiff graph with Burn's AdamW (devices other than the CPU).
#[derive(Clone)]
pub struct GraphTrainer {
    config: LlamaConfig,
    model: LlamaForCausalLm,
    optimizer: ModuleOptimizer,
    device: Device,
}

impl GraphTrainer {
    /// Next-token cross-entropy of `rows` (equal lengths, at least two tokens each) per
    /// predicted position, [rows, tokens - 1], as a graph on the autodiff device.
    fn token_nll(&self, model: &LlamaForCausalLm, rows: &[Vec<u32>]) -> Tensor<2> {
        let (batch, tokens) = (rows.len(), rows[0].len());
        assert!(
            tokens >= 2 && rows.iter().all(|r| r.len() == tokens),
            "rows of one length >= 2"
        );
        let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, tokens]), &self.device);
        let hidden = model.hidden_states(
            &self.config,
            ids.clone().narrow(1, 0, tokens - 1),
            &ForwardRequest::default(),
            &mut ForwardTrace::default(),
        );
        let rows_n = batch * (tokens - 1);
        let logits = model.logits(hidden.reshape([rows_n, self.config.hidden_size]));
        let targets = ids.narrow(1, 1, tokens - 1).reshape([rows_n, 1]);
        log_softmax(logits, 1)
            .gather(1, targets)
            .neg()
            .reshape([batch, tokens - 1])
    }

    fn step(&mut self, rows: &[Vec<u32>], lr: f64) -> f64 {
        let loss = self.token_nll(&self.model, rows).mean();
        let value = f64::from(crate::values(loss.clone())[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optimizer.step(lr, self.model.clone(), grads);
        value
    }

    /// Equal-length sequences run as one batch.
    fn sequence_losses(&self, sequences: &[Vec<u32>]) -> Vec<f64> {
        let model = self.model.valid();
        let mut out = vec![f64::NAN; sequences.len()];
        let mut by_length: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, s) in sequences.iter().enumerate().filter(|(_, s)| s.len() >= 2) {
            by_length.entry(s.len()).or_default().push(i);
        }
        for members in by_length.values() {
            for chunk in members.chunks(16) {
                let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| sequences[i].clone()).collect();
                let means = crate::values(self.token_nll(&model, &rows).mean_dim(1));
                for (&i, m) in chunk.iter().zip(means) {
                    out[i] = f64::from(m);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> TinyLmShape {
        TinyLmShape {
            layers: 1,
            hidden: 16,
            heads: 2,
            intermediate: 32,
            max_positions: 64,
        }
    }

    #[test]
    fn byte_tokens_end_with_eos() {
        assert_eq!(byte_tokens("hé"), [104, 0xC3, 0xA9, BYTE_EOS]);
    }

    #[test]
    fn parameter_count_matches_the_module() {
        let device = Device::flex();
        let model = LlamaForCausalLm::new(&shape().config(), &device);
        assert_eq!(model.num_params(), shape().parameters());
    }

    /// The model of `TrainableLm::new` on the flex device, on Burn's graph instead of the CPU
    /// trainer.
    fn graph_lm(seed: u64) -> TrainableLm {
        let TrainableLm::Cpu(_) = TrainableLm::new(shape(), seed, 0.0, &Device::flex()) else {
            panic!("the flex device trains with the CPU trainer");
        };
        let device = Device::flex().autodiff();
        device.seed(seed);
        let config = shape().config();
        TrainableLm::Graph(Box::new(GraphTrainer {
            model: LlamaForCausalLm::new(&config, &device),
            config,
            optimizer: AdamWConfig::new().with_weight_decay(0.0).init(),
            device,
        }))
    }

    #[test]
    fn an_untrained_model_predicts_uniformly_and_training_learns_a_repeated_sequence() {
        type Fresh = fn() -> TrainableLm;
        let engines: [(&str, Fresh); 2] = [
            ("cpu", || TrainableLm::new(shape(), 3, 0.0, &Device::flex())),
            ("graph", || graph_lm(3)),
        ];
        let mut finals = Vec::new();
        for (name, fresh) in engines {
            let mut lm = fresh();
            let seq: Vec<u32> = byte_tokens("abcabcabcabcabcabcabc");
            // Random init with std 0.02: logits near 0, loss near ln(257).
            let before = lm.evaluate(std::slice::from_ref(&seq));
            assert!(
                (before - (BYTE_VOCAB as f64).ln()).abs() < 0.05,
                "{name}: {before}"
            );
            for _ in 0..200 {
                lm.step(&[seq.clone(), seq.clone()], 3e-3);
            }
            let after = lm.evaluate(std::slice::from_ref(&seq));
            // The sequence is deterministic after its first byte: the loss falls far below
            // the unigram entropy of {a, b, c, eos} (1.23 nats).
            assert!(after < 0.5, "{name}: {before} -> {after}");
            // Same seed, same data: the same model.
            let mut again = fresh();
            for _ in 0..200 {
                again.step(&[seq.clone(), seq.clone()], 3e-3);
            }
            assert_eq!(again.evaluate(std::slice::from_ref(&seq)), after, "{name}");
            // Per-sequence losses: a prefix of the sequence and the whole, in one call, equal
            // the token-weighted evaluation of each alone.
            let prefix = seq[..7].to_vec();
            let both = lm.sequence_losses(&[prefix.clone(), seq.clone(), vec![1]]);
            assert!((both[0] - lm.evaluate(std::slice::from_ref(&prefix))).abs() < 1e-6);
            assert!((both[1] - after).abs() < 1e-6);
            assert!(both[2].is_nan());
            finals.push(after);
        }
        // The two engines take the same steps from the same weights: after 200 steps their
        // losses agree far closer than the distance training travelled.
        assert!((finals[0] - finals[1]).abs() < 1e-3, "{finals:?}");
    }
}
