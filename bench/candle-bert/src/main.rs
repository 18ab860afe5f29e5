//! all-MiniLM-L6-v2 sentence embeddings through candle-transformers' BERT on the CPU, as
//! sentence-transformers computes them (length-sorted batches of 32, mean pooling over real
//! tokens, L2 normalisation), for `scripts/bench-embed.sh`. Prints one JSON line.
//!
//!   cargo run --release --manifest-path bench/candle-bert/Cargo.toml -- MODEL_DIR TEXTS.jsonl

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, path) = (&args[1], &args[2]);
    let texts: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let device = Device::Cpu;
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/config.json")).unwrap())
            .unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[format!("{dir}/model.safetensors")], DType::F32, &device)
            .unwrap()
    };
    let model = BertModel::load(vb, &config).unwrap();
    let mut tokenizer = tokenizers::Tokenizer::from_file(format!("{dir}/tokenizer.json")).unwrap();
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).unwrap();
    let max_len = 256;
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let mut x = tokenizer.encode(t.as_str(), true).unwrap().get_ids().to_vec();
            if x.len() > max_len {
                let last = *x.last().unwrap();
                x.truncate(max_len - 1);
                x.push(last);
            }
            x
        })
        .collect();
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let start = Instant::now();
    let mut checksum = 0f64;
    for batch in order.chunks(32) {
        let width = batch.iter().map(|&i| ids[i].len()).max().unwrap();
        let mut input = vec![0u32; batch.len() * width];
        let mut mask = vec![0u32; batch.len() * width];
        for (row, &i) in batch.iter().enumerate() {
            for (t, &id) in ids[i].iter().enumerate() {
                input[row * width + t] = id;
                mask[row * width + t] = 1;
            }
        }
        let input = Tensor::from_vec(input, (batch.len(), width), &device).unwrap();
        let mask = Tensor::from_vec(mask, (batch.len(), width), &device).unwrap();
        let types = input.zeros_like().unwrap();
        let hidden = model.forward(&input, &types, Some(&mask)).unwrap();
        let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
        let summed = hidden.broadcast_mul(&m).unwrap().sum(1).unwrap();
        let counts = m.sum(1).unwrap();
        let mean = summed.broadcast_div(&counts).unwrap();
        let norm = mean.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
        let unit = mean.broadcast_div(&norm).unwrap();
        checksum += f64::from(unit.sum_all().unwrap().to_scalar::<f32>().unwrap());
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "model": "encoder", "documents": texts.len(), "tokens": tokens, "seconds": seconds,
            "docs_per_second": texts.len() as f64 / seconds, "tokens_per_second": tokens as f64 / seconds,
            "checksum": checksum,
        })
    );
}
