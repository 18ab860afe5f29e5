//! Throughput of the Burn encoder and LM on a file of documents (one JSON string per line),
//! as `scripts/bench-embed.sh` runs it: prints one JSON line with documents, tokens, seconds.
//!
//!   cargo run --release -p gleaner-embed --example bench_models -- encoder MODEL_DIR TEXTS.jsonl
//!   cargo run --release -p gleaner-embed --example bench_models -- lm MODEL_DIR TEXTS.jsonl

use std::path::Path;
use std::time::Instant;

use gleaner_embed::{CausalLm, Device, EncoderOptions, LmOptions, SentenceEncoder};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: bench_models encoder|lm MODEL_DIR TEXTS.jsonl");
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
    let (tokens, seconds, checksum) = match args[1].as_str() {
        "encoder" => {
            let encoder =
                SentenceEncoder::load(dir, EncoderOptions::default(), &device).expect("model");
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
        "lm" => {
            let options = LmOptions {
                max_tokens: 512,
                ..Default::default()
            };
            let lm = CausalLm::load(dir, options, &device).expect("model");
            let tokens: usize = lm
                .tokenize(&refs)
                .unwrap()
                .iter()
                .map(|t| t.len().min(512))
                .sum();
            let start = Instant::now();
            let losses = lm.document_losses(&refs, None).unwrap();
            (
                tokens,
                start.elapsed().as_secs_f64(),
                losses.iter().map(|l| f64::from(l.mean_nll)).sum::<f64>(),
            )
        }
        other => panic!("unknown model kind {other}"),
    };
    println!(
        "{}",
        serde_json::json!({
            "model": args[1], "documents": texts.len(), "tokens": tokens, "seconds": seconds,
            "docs_per_second": texts.len() as f64 / seconds, "tokens_per_second": tokens as f64 / seconds,
            "checksum": checksum,
        })
    );
}
