//! Training throughput of the byte-level Llama that `gleaner evaluate` trains, as
//! `scripts/bench-train.sh` runs it: `STEPS` AdamW steps (default 30, after 3 warm-up steps)
//! of `BATCH` sequences of `SEQ + 1` byte tokens cut from the documents of TEXTS.jsonl (one
//! JSON string per line, concatenated with an end marker after each), printed as one JSON
//! line with tokens, seconds and the last loss.
//!
//!   cargo run --release -p gleaner-embed --example bench_train -- TEXTS.jsonl
//!
//! Shape (`LAYERS`, `HIDDEN`, `HEADS`, `INTERMEDIATE`) defaults to `[evaluate.proxy]`'s:
//! 4 layers, width 192, 4 heads, MLP 512.

use std::time::Instant;

use gleaner_embed::train::{byte_tokens, TinyLmShape, TrainableLm};
use gleaner_embed::Device;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    // As the gleaner binary does.
    gleaner_embed::memory::keep_freed_memory();
    let path = std::env::args()
        .nth(1)
        .expect("usage: bench_train TEXTS.jsonl");
    let stream: Vec<u32> = std::fs::read_to_string(&path)
        .expect("texts file")
        .lines()
        .flat_map(|l| byte_tokens(&serde_json::from_str::<String>(l).expect("a JSON string")))
        .collect();
    let (steps, batch, seq) = (env("STEPS", 30), env("BATCH", 16), env("SEQ", 128));
    let shape = TinyLmShape {
        layers: env("LAYERS", 4),
        hidden: env("HIDDEN", 192),
        heads: env("HEADS", 4),
        intermediate: env("INTERMEDIATE", 512),
        max_positions: seq + 1,
    };
    let rows_at = |step: usize| -> Vec<Vec<u32>> {
        (0..batch)
            .map(|b| {
                let start = ((step * batch + b) * (seq + 1)) % (stream.len() - seq - 1);
                stream[start..start + seq + 1].to_vec()
            })
            .collect()
    };
    let mut lm = TrainableLm::new(shape, 0, 0.0, &Device::flex());
    for step in 0..3 {
        lm.step(&rows_at(step), 3e-3);
    }
    let start = Instant::now();
    let mut loss = 0.0;
    for step in 3..3 + steps {
        loss = lm.step(&rows_at(step), 3e-3);
    }
    let seconds = start.elapsed().as_secs_f64();
    let tokens = steps * batch * seq;
    println!(
        "{}",
        serde_json::json!({
            "system": "gleaner",
            "parameters": shape.parameters(),
            "steps": steps,
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens as f64 / seconds,
            "last_loss": loss,
        })
    );
}
