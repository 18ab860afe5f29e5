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
//! The gradients kind is Quad's probe cost: one forward+backward pass per document for the
//! weight gradients of the q/k/v/o projections of `LAYERS`; the checksum is the sum of the
//! gradients' squared norms.
//! `MAX_TOKENS` (default 512) truncates LM inputs; `BATCH_TOKENS` (default 8192) sets the
//! encoder's padded tokens per batch. The attention_influence kind times the base
//! and the masked pass (the `HEADS` uniform) and prints both checksums.

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
    if args.len() != 4 {
        eprintln!(
            "usage: bench_models encoder|lm|attention_influence|gradients MODEL_DIR TEXTS.jsonl"
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
            let tokens: usize = encoder
                .token_counts(&refs)
                .unwrap()
                .iter()
                .map(|&n| n.min(256))
                .sum();
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
            let tokens: usize = lm
                .tokenize(&refs)
                .unwrap()
                .iter()
                .map(|t| t.len().min(max_tokens))
                .sum();
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
