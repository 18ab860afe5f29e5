//! Burn models for gleaner: a BERT-family sentence encoder ([`bert`]) and a Llama-family causal
//! language model ([`llama`]), loaded from Hugging Face layouts (`config.json`,
//! `model.safetensors`, `tokenizer.json`).
//!
//! Models are written once against Burn's backend-free tensors: the [`Device`] picks the backend
//! (the pure-Rust `flex` CPU backend by default, CUDA with the `cuda` feature). This crate knows
//! nothing about parquet or selectors; the pipeline feeds it texts and receives vectors and
//! losses.

pub mod bert;
pub mod bert_packed;
pub mod cpu_kernels;
pub mod device;
pub mod encoder;
pub mod error;
pub mod llama;
pub mod llama_packed;
pub mod llama_train;
pub mod lm;
pub mod memory;
mod packed;
pub mod tokenize;
pub mod train;
mod train_kernels;
pub mod weights;

pub use burn::prelude::Device;
pub use device::{device_from_name, DeviceName};
pub use encoder::{EncoderOptions, LongDocuments, SentenceEncoder};
pub use error::ModelError;
pub use llama::{HeadId, HeadMask, LinearId, LinearKind, UniformScope};
pub use lm::{CausalLm, DecodeStep, DocumentLoss, LmOptions};

/// A float tensor's values as f32, row-major.
pub(crate) fn values<const D: usize>(tensor: burn::prelude::Tensor<D>) -> Vec<f32> {
    tensor
        .try_into_vec_as::<f32>()
        .expect("float tensors convert to f32")
}
