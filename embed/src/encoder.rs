//! Sentence embeddings from a BERT-family model: tokenization, batches without padding (on the
//! CPU, inputs of any length packed together; elsewhere, batches of equal-length inputs), mean
//! pooling over real tokens, L2 normalisation, and truncation or chunk-averaging of long
//! documents.

use std::path::Path;

use burn::prelude::*;

use crate::bert::{BertConfig, BertModel};
use crate::bert_packed::{PackedBert, Workspace};
use crate::packed::{batch_ranges, map_batches, spread_batch_tokens};
use crate::tokenize::TextTokenizer;
use crate::weights::ModelFiles;
use crate::ModelError;

/// What to do with documents longer than `max_tokens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongDocuments {
    /// Keep the first `max_tokens` tokens (as sentence-transformers does).
    Truncate,
    /// Split into `max_tokens` chunks and average their normalised embeddings.
    ChunkMean,
}

/// Batching and length options of the encoder.
#[derive(Clone, Debug)]
pub struct EncoderOptions {
    /// Longest input in tokens, special tokens included (all-MiniLM-L6-v2 was trained with 256);
    /// capped at the model's `max_position_embeddings`.
    pub max_tokens: usize,
    /// Tokens per forward batch at most (rows x length); the packed CPU forward cuts them
    /// smaller when that lets every thread run whole batches (same values).
    pub batch_tokens: usize,
    /// Long-document handling.
    pub long_documents: LongDocuments,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            batch_tokens: 8192,
            long_documents: LongDocuments::Truncate,
        }
    }
}

/// The forward pass a device runs.
enum Forward {
    /// The flex CPU device: packed, padding-free batches of any lengths.
    Packed(PackedBert),
    /// Other devices: the Burn graph on batches of equal length.
    Graph(Box<BertModel>),
}

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    forward: Forward,
    tokenizer: TextTokenizer,
    config: BertConfig,
    options: EncoderOptions,
    device: Device,
}

/// One model input: a document's chunk of token ids.
struct Segment {
    document: usize,
    ids: Vec<u32>,
}

impl SentenceEncoder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load(
        dir: &Path,
        mut options: EncoderOptions,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let files = ModelFiles::in_dir(dir);
        let config = BertConfig::load(&files.config)?;
        options.max_tokens = options.max_tokens.min(config.max_position_embeddings);
        if options.max_tokens < 3 {
            return Err(ModelError::Request(format!(
                "max_tokens {} leaves no room for text between [CLS] and [SEP]",
                options.max_tokens
            )));
        }
        let tokenizer = TextTokenizer::load(&files.tokenizer)?;
        let model = BertModel::load(&config, &files.weights, device)?;
        let forward = if *device == Device::flex() {
            Forward::Packed(PackedBert::from_model(&model, &config))
        } else {
            Forward::Graph(Box::new(model))
        };
        Ok(Self {
            forward,
            tokenizer,
            config,
            options,
            device: device.clone(),
        })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Token counts of `texts` as the encoder sees them (special tokens included, before
    /// truncation).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, ModelError> {
        Ok(self
            .tokenizer
            .encode_batch(texts, true)?
            .iter()
            .map(Vec::len)
            .collect())
    }

    /// Unit-norm embeddings of `texts`, row-major [texts.len() x dim].
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<f32>, ModelError> {
        let dim = self.dim();
        let encoded = self.tokenizer.encode_batch(texts, true)?;
        let mut segments = Vec::new();
        for (document, ids) in encoded.into_iter().enumerate() {
            self.split(document, ids, &mut segments);
        }
        // Sorted by length: equal lengths side by side (the graph's batches need them; the
        // packed forward takes any mix, and similar lengths balance its attention tasks).
        segments.sort_by_key(|s| (s.ids.len(), s.document));
        let mut sums = vec![0f32; texts.len() * dim];
        let lengths: Vec<usize> = segments.iter().map(|s| s.ids.len()).collect();
        let vectors: Vec<Vec<f32>> = match &self.forward {
            Forward::Packed(model) => map_batches(
                &model.workspaces,
                batch_ranges(
                    &lengths,
                    spread_batch_tokens(
                        lengths.iter().sum(),
                        self.options.batch_tokens,
                        rayon::current_num_threads(),
                    ),
                    false,
                ),
                |workspace: &mut Workspace, range| {
                    let ids: Vec<&[u32]> =
                        segments[range].iter().map(|s| s.ids.as_slice()).collect();
                    model.embed(&ids, workspace)
                },
            )
            .into_iter()
            .collect::<Result<_, _>>()?,
            Forward::Graph(model) => batch_ranges(&lengths, self.options.batch_tokens, true)
                .into_iter()
                .map(|range| self.embed_batch(model, &segments[range]))
                .collect(),
        };
        let rows = vectors.iter().flat_map(|v| v.chunks_exact(dim));
        for (segment, vector) in segments.iter().zip(rows) {
            let sum = &mut sums[segment.document * dim..(segment.document + 1) * dim];
            sum.iter_mut().zip(vector).for_each(|(s, v)| *s += v);
        }
        for row in sums.chunks_exact_mut(dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(sums)
    }

    /// Cuts one tokenized document (with `[CLS]` first and `[SEP]` last) into model inputs.
    fn split(&self, document: usize, ids: Vec<u32>, out: &mut Vec<Segment>) {
        let max = self.options.max_tokens;
        if ids.len() <= max {
            out.push(Segment { document, ids });
            return;
        }
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let body = &ids[1..ids.len() - 1];
        let wrap = |chunk: &[u32]| {
            let mut ids = Vec::with_capacity(chunk.len() + 2);
            ids.push(first);
            ids.extend_from_slice(chunk);
            ids.push(last);
            ids
        };
        match self.options.long_documents {
            LongDocuments::Truncate => out.push(Segment {
                document,
                ids: wrap(&body[..max - 2]),
            }),
            LongDocuments::ChunkMean => {
                for chunk in body.chunks(max - 2) {
                    out.push(Segment {
                        document,
                        ids: wrap(chunk),
                    });
                }
            }
        }
    }

    fn embed_batch(&self, model: &BertModel, batch: &[Segment]) -> Vec<f32> {
        let tokens = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let lengths: Vec<usize> = batch.iter().map(|s| s.ids.len()).collect();
        let mut flat = vec![0i64; batch.len() * tokens];
        for (row, segment) in batch.iter().enumerate() {
            for (t, &id) in segment.ids.iter().enumerate() {
                flat[row * tokens + t] = i64::from(id);
            }
        }
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(flat, [batch.len(), tokens]), &self.device);
        crate::values(model.embed(ids, &lengths))
    }
}
