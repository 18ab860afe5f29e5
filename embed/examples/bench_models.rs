//! Throughput of the Burn encoder and LM on a file of documents (one JSON string per line),
//! as `scripts/bench-embed.sh` runs it: prints one JSON line with documents, tokens, seconds.
//!
//!   cargo run --release -p gleaner-embed --example bench_models -- encoder MODEL_DIR TEXTS.jsonl
//!   cargo run --release -p gleaner-embed --example bench_models -- lm MODEL_DIR TEXTS.jsonl
//!   HEADS=17:3,18:6 cargo run --release -p gleaner-embed --example bench_models -- \
//!       attention_influence MODEL_DIR TEXTS.jsonl
//!   LAYERS=28,29 cargo run --release -p gleaner-embed --example bench_models -- \
//!       gradients MODEL_DIR TEXTS.jsonl
//!
//!   bench_models gemm encoder|lm
//!
//! The gemm kind measures the matmul ceiling as gleaner reaches it: its `matmul` (the `gemm`
//! crate) on the model's linear-layer shapes (one layer's products at 2,048 rows; for the LM also the
//! output projection), each rayon thread running whole products on its own as the packed
//! forwards do with whole batches; it prints the GFLOP/s over all threads.
//! The gradients kind is Quad's probe cost: one forward+backward pass per document for the
//! weight gradients of the q/k/v/o projections of `LAYERS`; the checksum is the sum of the
//! gradients' squared norms.
//! `MAX_TOKENS` (default 512) truncates LM inputs; `BATCH_TOKENS` (default 8192) sets the
//! encoder's padded tokens per batch. The attention_influence kind times the base
//! and the masked pass (the `HEADS` uniform) and prints both checksums. The encoder and lm
//! kinds also print `attention_flops`, the FLOPs of the attention products over all documents.

use std::path::Path;
use std::time::Instant;

use gleaner_embed::{
    CausalLm, Device, EncoderOptions, HeadId, HeadMask, LinearId, LinearKind, LmOptions,
    SentenceEncoder,
};

fn main() {
    // As the gleaner binary does.
    gleaner_embed::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "gemm" {
        println!(
            "{}",
            serde_json::json!({ "gemm_gflops": gemm_gflops(&args[2]) })
        );
        return;
    }
    if args.len() != 4 {
        eprintln!(
            "usage: bench_models encoder|lm|attention_influence|gradients MODEL_DIR TEXTS.jsonl\n       bench_models gemm encoder|lm"
        );
        std::process::exit(2);
    }
    let texts: Vec<String> = std::fs::read_to_string(&args[3])
        .expect("texts file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON string per line"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let device = Device::flex();
    let dir = Path::new(&args[2]);
    let max_tokens: usize = std::env::var("MAX_TOKENS")
        .map(|v| v.parse().expect("MAX_TOKENS is a number"))
        .unwrap_or(512);
    let mut extra = serde_json::json!({});
    let (tokens, seconds, checksum) = match args[1].as_str() {
        "encoder" => {
            let options = EncoderOptions {
                batch_tokens: std::env::var("BATCH_TOKENS")
                    .map(|v| v.parse().expect("BATCH_TOKENS is a number"))
                    .unwrap_or(EncoderOptions::default().batch_tokens),
                ..Default::default()
            };
            let encoder = SentenceEncoder::load(dir, options, &device).expect("model");
            let lengths: Vec<usize> = encoder
                .token_counts(&refs)
                .unwrap()
                .iter()
                .map(|&n| n.min(256))
                .collect();
            let tokens: usize = lengths.iter().sum();
            // Q K^T and the weights times V: L x L x hidden multiply-adds each per layer.
            let pairs: usize = lengths.iter().map(|&l| l * l).sum();
            extra = serde_json::json!({ "attention_flops": attention_flops(dir, pairs) });
            let start = Instant::now();
            let vectors = encoder.encode(&refs).unwrap();
            (
                tokens,
                start.elapsed().as_secs_f64(),
                vectors.iter().map(|&v| f64::from(v)).sum::<f64>(),
            )
        }
        "attention_influence" => {
            let options = LmOptions {
                max_tokens,
                ..Default::default()
            };
            let lm = CausalLm::load(dir, options, &device).expect("model");
            let heads: Vec<HeadId> = std::env::var("HEADS")
                .expect("HEADS=layer:head,...")
                .split(',')
                .map(|p| {
                    let (l, h) = p.split_once(':').expect("layer:head");
                    HeadId {
                        layer: l.parse().unwrap(),
                        head: h.parse().unwrap(),
                    }
                })
                .collect();
            let mask = HeadMask::new(heads);
            let ids = lm.tokenize(&refs).unwrap();
            let tokens: usize = ids.iter().map(|t| t.len().min(max_tokens)).sum();
            let start = Instant::now();
            let base = lm.sequence_document_losses(&ids, None);
            let base_seconds = start.elapsed().as_secs_f64();
            let masked = lm.sequence_document_losses(&ids, Some(&mask));
            let seconds = start.elapsed().as_secs_f64();
            let sum = |l: &[gleaner_embed::DocumentLoss]| {
                l.iter().map(|l| f64::from(l.mean_nll)).sum::<f64>()
            };
            extra = serde_json::json!({
                "base_seconds": base_seconds, "masked_seconds": seconds - base_seconds,
                "base_checksum": sum(&base), "masked_checksum": sum(&masked),
            });
            (tokens, seconds, sum(&masked) - sum(&base))
        }
        "lm" => {
            let options = LmOptions {
                max_tokens,
                ..Default::default()
            };
            let lm = CausalLm::load(dir, options, &device).expect("model");
            let lengths: Vec<usize> = lm
                .tokenize(&refs)
                .unwrap()
                .iter()
                .map(|t| t.len().min(max_tokens))
                .collect();
            let tokens: usize = lengths.iter().sum();
            // Causal: each query meets itself and the keys before it.
            let pairs: usize = lengths.iter().map(|&l| l * (l + 1) / 2).sum();
            extra = serde_json::json!({ "attention_flops": attention_flops(dir, pairs) });
            let start = Instant::now();
            let losses = lm.document_losses(&refs, None).unwrap();
            (
                tokens,
                start.elapsed().as_secs_f64(),
                losses.iter().map(|l| f64::from(l.mean_nll)).sum::<f64>(),
            )
        }
        "gradients" => {
            let lm = CausalLm::load(dir, LmOptions::default(), &device).expect("model");
            let layers: Vec<LinearId> = std::env::var("LAYERS")
                .unwrap_or_else(|_| "28,29".into())
                .split(',')
                .flat_map(|l| {
                    let layer: usize = l.parse().expect("LAYERS=layer,...");
                    LinearKind::ATTENTION
                        .into_iter()
                        .map(move |kind| LinearId { layer, kind })
                })
                .collect();
            let ids: Vec<Vec<u32>> = lm
                .tokenize(&refs)
                .unwrap()
                .into_iter()
                .map(|t| t[..t.len().min(max_tokens)].to_vec())
                .collect();
            let tokens: usize = ids.iter().map(Vec::len).sum();
            let start = Instant::now();
            let mut sum = 0.0f64;
            for seq in &ids {
                for layer in lm.sequence_gradients(&[seq.as_slice()], &layers).unwrap() {
                    sum += layer.samples[0]
                        .weight
                        .iter()
                        .map(|&g| f64::from(g) * f64::from(g))
                        .sum::<f64>();
                }
            }
            (tokens, start.elapsed().as_secs_f64(), sum)
        }
        other => panic!("unknown model kind {other}"),
    };
    let mut out = serde_json::json!({
        "model": args[1], "documents": texts.len(), "tokens": tokens, "seconds": seconds,
        "docs_per_second": texts.len() as f64 / seconds, "tokens_per_second": tokens as f64 / seconds,
        "checksum": checksum,
    });
    if let (Some(out), Some(extra)) = (out.as_object_mut(), extra.as_object()) {
        out.extend(extra.clone());
    }
    println!("{out}");
}

/// FLOPs of the attention products (scores and weighted values) over `pairs` query-key pairs,
/// from the model's `config.json`: 2 products x 2 FLOPs x pairs x hidden x layers (every
/// query head spans `hidden / heads` dimensions, so the heads together span `hidden`).
/// `scripts/bench-embed.sh` adds them to the linear layers' for the model-FLOPs share.
fn attention_flops(dir: &Path, pairs: usize) -> f64 {
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json")).expect("config.json"),
    )
    .expect("config.json is JSON");
    let field = |key: &str| config[key].as_u64().expect(key) as f64;
    4.0 * pairs as f64 * field("hidden_size") * field("num_hidden_layers")
}

/// Linear-layer shapes `(k, n)` of one layer of `model` (Q/K/V and the LM's gate/up fused, as
/// the packed forwards run them), for the matmul ceiling; the numpy/PyTorch side of
/// `scripts/bench-embed.sh` times the same list.
fn layer_shapes(model: &str) -> Vec<(usize, usize)> {
    match model {
        // all-MiniLM-L6-v2: hidden 384, intermediate 1536.
        "encoder" => vec![(384, 1152), (384, 384), (384, 1536), (1536, 384)],
        // SmolLM2-135M: hidden 576, 9 query and 3 key/value heads of 64, intermediate 1536,
        // vocabulary 49,152 (the output projection, once per token like a layer).
        "lm" => vec![
            (576, 960),
            (576, 576),
            (576, 3072),
            (1536, 576),
            (576, 49152),
        ],
        other => panic!("unknown model kind {other} (encoder or lm)"),
    }
}

/// GFLOP/s of the `gemm` crate over [`layer_shapes`] at 2,048 rows, every rayon thread running
/// its own products single-threaded; the best of three rounds.
fn gemm_gflops(model: &str) -> f64 {
    use rayon::prelude::*;
    const ROWS: usize = 2048;
    let shapes = layer_shapes(model);
    let threads = rayon::current_num_threads();
    let flops_per_round: f64 = shapes
        .iter()
        .map(|&(k, n)| 2.0 * (ROWS * k * n) as f64)
        .sum::<f64>()
        * threads as f64;
    // Row-major `[ROWS x k]` input, `[k x n]` weight and `[ROWS x n]` output of one product.
    struct Product {
        k: usize,
        n: usize,
        input: Vec<f32>,
        weight: Vec<f32>,
        output: Vec<f32>,
    }
    let mut per_thread: Vec<Vec<Product>> = (0..threads)
        .map(|t| {
            let fill = |len: usize, seed: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| ((i * 7919 + seed * 104_729 + t) % 1000) as f32 / 1000.0 - 0.5)
                    .collect()
            };
            shapes
                .iter()
                .map(|&(k, n)| Product {
                    k,
                    n,
                    input: fill(ROWS * k, 1),
                    weight: fill(k * n, 2),
                    output: vec![0f32; ROWS * n],
                })
                .collect()
        })
        .collect();
    let mut best = 0f64;
    for round in 0..4 {
        let start = Instant::now();
        per_thread.par_iter_mut().for_each(|products| {
            for Product {
                k,
                n,
                input,
                weight,
                output,
            } in products.iter_mut()
            {
                // Inside a rayon task, so the product runs on this thread alone.
                gleaner_embed::cpu_kernels::matmul(
                    [ROWS, *k, *n],
                    (input, *k),
                    (weight, *n, 1),
                    (output, *n),
                    1.0,
                    false,
                );
            }
        });
        let seconds = start.elapsed().as_secs_f64();
        // Round 0 warms the caches and pages.
        if round > 0 {
            best = best.max(flops_per_round / seconds / 1e9);
        }
    }
    best
}
