//! Training a small byte-level proxy LM from scratch, shared by `gleaner evaluate` (one model
//! per selection) and the `loss_trajectory` stage (S2L's proxy checkpoints).
//!
//! Training sequences are `seq_len + 1` tokens cut from the documents (bytes plus an
//! end-of-document token, `gleaner_embed::train`) concatenated in a seeded random order,
//! reshuffled every pass; a corpus smaller than the budget is repeated. The learning rate warms
//! up linearly over `warmup_fraction` of the steps, then decays by a cosine to 10%.

use anyhow::{anyhow, bail, Result};
use gleaner_embed::train::{byte_tokens, TinyLmShape, TrainableLm};
use gleaner_embed::{device_from_name, DeviceName};
use gleaner_selectors::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// The proxy model and its training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyTrainingConfig {
    /// Training tokens (bytes): steps = ceil(train_tokens / (seq_len x batch_size)).
    pub train_tokens: u64,
    /// Tokens per training sequence (plus one target).
    pub seq_len: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub learning_rate: f64,
    /// Share of the steps spent warming up.
    pub warmup_fraction: f64,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Decoder layers.
    pub layers: usize,
    /// Residual width.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Where the model trains: `cpu` (default), `gpu` (Vulkan; the `gpu` build) or `cuda`.
    #[serde(skip_serializing_if = "is_cpu")]
    pub device: String,
}

fn is_cpu(device: &str) -> bool {
    device == "cpu"
}

impl Default for ProxyTrainingConfig {
    /// 1.8M parameters (4 layers, width 192) on 300k bytes in sequences of 128, 16 per step.
    fn default() -> Self {
        Self {
            train_tokens: 300_000,
            seq_len: 128,
            batch_size: 16,
            learning_rate: 3e-3,
            warmup_fraction: 0.1,
            weight_decay: 0.0,
            layers: 4,
            hidden: 192,
            heads: 4,
            intermediate: 512,
            device: "cpu".into(),
        }
    }
}

impl ProxyTrainingConfig {
    /// Checks ranges; errors name the key under `key`.
    pub fn validate(&self, key: &str) -> Result<()> {
        for (name, v) in [
            ("seq_len", self.seq_len),
            ("batch_size", self.batch_size),
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("intermediate", self.intermediate),
        ] {
            if v == 0 {
                bail!("at key `{key}.{name}`: must be at least 1");
            }
        }
        if !self.hidden.is_multiple_of(self.heads) || !(self.hidden / self.heads).is_multiple_of(2)
        {
            bail!(
                "at key `{key}.heads`: {} heads must divide hidden {} into even head widths",
                self.heads,
                self.hidden
            );
        }
        if self.train_tokens < (self.seq_len * self.batch_size) as u64 {
            bail!(
                "at key `{key}.train_tokens`: {} is less than one step (seq_len x batch_size = {})",
                self.train_tokens,
                self.seq_len * self.batch_size
            );
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            bail!("at key `{key}.learning_rate`: must be above 0");
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            bail!("at key `{key}.warmup_fraction`: must be in [0, 1)");
        }
        DeviceName::parse(&self.device).map_err(|e| anyhow!("at key `{key}.device`: {e}"))?;
        Ok(())
    }

    /// The model's shape.
    pub fn shape(&self) -> TinyLmShape {
        TinyLmShape {
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            intermediate: self.intermediate,
            max_positions: self.seq_len + 1,
        }
    }

    /// Steps of training: the budget over the tokens of one step, rounded up.
    pub fn steps(&self) -> usize {
        let per_step = (self.seq_len * self.batch_size) as u64;
        self.train_tokens.div_ceil(per_step) as usize
    }

    /// Learning rate at `step` of `steps`.
    fn learning_rate_at(&self, step: usize, steps: usize) -> f64 {
        let warmup = (self.warmup_fraction * steps as f64).round() as usize;
        if step < warmup {
            return self.learning_rate * (step + 1) as f64 / warmup as f64;
        }
        let progress = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.learning_rate * (0.1 + 0.9 * cosine)
    }
}

/// Sequences of `len` tokens cut from the documents' byte tokens concatenated in a seeded
/// order, reshuffled every pass.
struct BatchStream<'a> {
    docs: &'a [String],
    order: Vec<usize>,
    rng: SplitMix64,
    next_doc: usize,
    buffer: Vec<u32>,
    len: usize,
}

impl<'a> BatchStream<'a> {
    fn new(docs: &'a [String], len: usize, seed: u64) -> Self {
        let mut s = Self {
            order: (0..docs.len()).collect(),
            docs,
            rng: SplitMix64::new(seed),
            next_doc: 0,
            buffer: Vec::new(),
            len,
        };
        s.rng.shuffle(&mut s.order);
        s
    }

    fn sequence(&mut self) -> Vec<u32> {
        while self.buffer.len() < self.len {
            if self.next_doc == self.order.len() {
                self.rng.shuffle(&mut self.order);
                self.next_doc = 0;
            }
            let doc = &self.docs[self.order[self.next_doc]];
            self.buffer.extend(byte_tokens(doc));
            self.next_doc += 1;
        }
        let rest = self.buffer.split_off(self.len);
        std::mem::replace(&mut self.buffer, rest)
    }
}

/// Trains a fresh model (initialisation and data order seeded by `seed`) on the byte tokens of
/// `docs` (at least one) for `config.steps()` steps on `config.device`; after each step
/// listed in `checkpoints` (1-based step counts) calls `at_checkpoint(step, model, mean
/// training loss since the previous checkpoint)`. A device that cannot be opened is an error.
pub fn train(
    docs: &[String],
    config: &ProxyTrainingConfig,
    seed: u64,
    checkpoints: &[usize],
    mut at_checkpoint: impl FnMut(usize, &TrainableLm, f64),
) -> Result<()> {
    assert!(!docs.is_empty(), "training needs at least one document");
    let device = device_from_name(DeviceName::parse(&config.device)?)?;
    let steps = config.steps();
    let mut stream = BatchStream::new(docs, config.seq_len + 1, seed ^ 0xDA7A);
    let mut lm = TrainableLm::new(config.shape(), seed, config.weight_decay, &device);
    let (mut loss_sum, mut loss_steps) = (0.0, 0usize);
    for step in 0..steps {
        let rows: Vec<Vec<u32>> = (0..config.batch_size).map(|_| stream.sequence()).collect();
        loss_sum += lm.step(&rows, config.learning_rate_at(step, steps));
        loss_steps += 1;
        if checkpoints.contains(&(step + 1)) {
            at_checkpoint(step + 1, &lm, loss_sum / loss_steps as f64);
            (loss_sum, loss_steps) = (0.0, 0);
        }
    }
    Ok(())
}

/// `points` step counts spread evenly over `steps`, the last equal to `steps`.
pub fn checkpoint_steps(steps: usize, points: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=points).map(|k| (k * steps).div_ceil(points)).collect();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cycle_through_every_document_in_a_seeded_order() {
        let docs = ["ab".to_string(), "c".into(), "".into()];
        let mut s = BatchStream::new(&docs, 4, 9);
        let first: Vec<u32> = (0..3).flat_map(|_| s.sequence()).collect();
        // 12 tokens = two passes over the 6 document tokens (bytes and end markers), each pass
        // a permutation of the documents.
        for pass in first.chunks(6) {
            let mut sorted = pass.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, [97, 98, 99, 256, 256, 256]);
            assert!(pass.windows(2).any(|w| w == [97, 98]));
        }
        let mut again = BatchStream::new(&docs, 4, 9);
        assert_eq!(
            (0..3).flat_map(|_| again.sequence()).collect::<Vec<_>>(),
            first
        );
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_a_tenth() {
        let c = ProxyTrainingConfig {
            learning_rate: 1.0,
            ..Default::default()
        };
        assert!((c.learning_rate_at(0, 100) - 0.1).abs() < 1e-12);
        assert!((c.learning_rate_at(9, 100) - 1.0).abs() < 1e-12);
        assert!((c.learning_rate_at(10, 100) - 1.0).abs() < 1e-12);
        assert!((c.learning_rate_at(100, 100) - 0.1).abs() < 1e-12);
        assert_eq!(c.steps(), 300_000u64.div_ceil(128 * 16) as usize);
        assert_eq!(checkpoint_steps(10, 4), [3, 5, 8, 10]);
        assert_eq!(checkpoint_steps(2, 4), [1, 2]);
    }

    #[test]
    fn checkpoints_see_the_model_after_their_step() {
        let c = ProxyTrainingConfig {
            train_tokens: 8 * 4 * 6,
            seq_len: 8,
            batch_size: 4,
            layers: 1,
            hidden: 16,
            heads: 2,
            intermediate: 32,
            ..Default::default()
        };
        let docs = ["abcabcabcabc".to_string()];
        let mut seen = Vec::new();
        train(&docs, &c, 1, &[2, 6], |step, _, loss| {
            seen.push((step, loss))
        })
        .unwrap();
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [2, 6]);
        assert!(seen.iter().all(|s| s.1.is_finite() && s.1 > 0.0));
    }
}
