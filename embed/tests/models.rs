//! The encoder and the causal LM against golden values from the independent numpy reference
//! (`scripts/reference_models.py`): tiny random-init models always (committed fixtures made by
//! `scripts/make_tiny_models.py`), the real all-MiniLM-L6-v2 and SmolLM2-135M when the asset
//! cache holds them (`scripts/fetch-assets.sh`; CI fetches them).
//!
//! `GLEANER_TEST_DEVICE=gpu` (or `cuda`) runs the same checks on a GPU build's device, where
//! the Burn graph (not the packed CPU forward) computes them: scripts/gpu-check.sh.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use gleaner_embed::encoder::{EncoderOptions, LongDocuments, SentenceEncoder};
use gleaner_embed::llama::{ForwardRequest, ForwardTrace, HeadId, HeadMask, LinearId, LinearKind};
use gleaner_embed::lm::{CausalLm, LmOptions};
use gleaner_embed::tokenize::TextTokenizer;
use gleaner_embed::ModelError;
use serde_json::Value;

/// The device under test: `GLEANER_TEST_DEVICE` (`cpu` by default, `gpu`, `cuda`).
fn test_device() -> Device {
    let name = std::env::var("GLEANER_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let parsed = gleaner_embed::DeviceName::parse(&name).unwrap();
    gleaner_embed::device_from_name(parsed).unwrap_or_else(|e| panic!("{e}"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn golden(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// The real model folder in the asset cache, if fetched.
fn asset(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("GLEANER_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.assets"));
    let dir = root.join("models").join(name);
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} not fetched (scripts/fetch-assets.sh)",
            dir.display()
        );
        None
    }
}

fn check_encoder(dir: &Path, golden_path: &Path, min_cosine: f32) {
    let device = test_device();
    let encoder = SentenceEncoder::load(dir, EncoderOptions::default(), &device).unwrap();
    let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let golden = golden(golden_path);
    let sentences = golden["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    // All at once: mixed lengths share padded batches.
    let batched = encoder.encode(&texts).unwrap();
    let dim = encoder.dim();
    for (i, sentence) in sentences.iter().enumerate() {
        // Padding is switched off: exactly the reference's token ids.
        assert_eq!(
            tokenizer.encode(texts[i], true).unwrap(),
            ids(&sentence["ids"])
        );
        let expected = floats(&sentence["embedding"]);
        let got = &batched[i * dim..(i + 1) * dim];
        let cos = cosine(got, &expected);
        assert!(
            cos >= min_cosine,
            "sentence {i}: cosine {cos} to the reference"
        );
        let alone = encoder.encode(&texts[i..=i]).unwrap();
        let drift = alone
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            drift < 1e-5,
            "sentence {i}: batched and alone differ by {drift}"
        );
    }
}

#[test]
fn tiny_encoder_matches_numpy_reference() {
    let dir = fixture("tiny-bert");
    check_encoder(&dir, &dir.join("golden.json"), 0.99999);
}

#[test]
fn real_minilm_matches_numpy_reference() {
    if let Some(dir) = asset("all-MiniLM-L6-v2") {
        check_encoder(&dir, &fixture("golden/all-minilm-l6-v2.json"), 0.999);
    }
}

#[test]
fn long_documents_truncate_or_average_chunks() {
    let dir = fixture("tiny-bert");
    let device = test_device();
    let text = "the man is playing a guitar and the stock market is playing with text";
    let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let ids = tokenizer.encode(text, true).unwrap();
    let max = 6;
    assert!(ids.len() > 2 * max, "the text must need several chunks");
    let options = |long_documents| EncoderOptions {
        max_tokens: max,
        batch_tokens: 64,
        long_documents,
    };
    // Oracle: the full-length encoder applied to hand-cut chunks given as word lists.
    let full = SentenceEncoder::load(&dir, EncoderOptions::default(), &device).unwrap();
    let piece = |range: std::ops::Range<usize>| -> Vec<f32> {
        let words: Vec<String> = ids[1..ids.len() - 1][range]
            .iter()
            .map(|&id| tokenizer.decode(&[id]).unwrap())
            .collect();
        // Each piece here is one whole word token, so re-encoding the words gives the same ids.
        full.encode(&[words.join(" ").as_str()]).unwrap()
    };
    let body = ids.len() - 2;
    assert!(
        ids[1..ids.len() - 1]
            .iter()
            .all(|&id| !tokenizer.decode(&[id]).unwrap().starts_with("##")),
        "every token of the test text is a whole word"
    );
    let truncated = SentenceEncoder::load(&dir, options(LongDocuments::Truncate), &device)
        .unwrap()
        .encode(&[text])
        .unwrap();
    let expected = piece(0..max - 2);
    assert!(cosine(&truncated, &expected) > 0.99999);

    let averaged = SentenceEncoder::load(&dir, options(LongDocuments::ChunkMean), &device)
        .unwrap()
        .encode(&[text])
        .unwrap();
    let mut sum = vec![0f32; full.dim()];
    let mut start = 0;
    while start < body {
        let end = (start + max - 2).min(body);
        piece(start..end)
            .iter()
            .zip(&mut sum)
            .for_each(|(v, s)| *s += v);
        start = end;
    }
    assert!(cosine(&averaged, &sum) > 0.99999);
    assert!(
        cosine(&averaged, &truncated) < 0.999,
        "chunking must change the embedding"
    );
}

fn load_lm(dir: &Path, options: LmOptions) -> CausalLm {
    CausalLm::load(dir, options, &test_device()).unwrap()
}

fn check_lm(dir: &Path, golden_path: &Path, tolerance: f32) {
    let lm = load_lm(dir, LmOptions::default());
    let golden = golden(golden_path);
    let texts = golden["texts"].as_array().unwrap();
    let sequences: Vec<Vec<u32>> = texts.iter().map(|t| ids(&t["ids"])).collect();
    for (t, text) in texts.iter().enumerate() {
        assert_eq!(
            lm.tokenize(&[text["text"].as_str().unwrap()]).unwrap()[0],
            sequences[t]
        );
    }
    let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
    let losses = lm.token_losses(&refs, None);
    let documents = lm.sequence_document_losses(&sequences, None);
    let masked_heads: Vec<HeadId> = golden["masked_heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| HeadId {
            layer: p[0].as_u64().unwrap() as usize,
            head: p[1].as_u64().unwrap() as usize,
        })
        .collect();
    let mask = HeadMask::new(masked_heads);
    let masked = lm.sequence_document_losses(&sequences, Some(&mask));
    let unmasked = lm.sequence_document_losses(&sequences, Some(&HeadMask::default()));
    for (t, text) in texts.iter().enumerate() {
        let expected = floats(&text["token_losses"]);
        assert_eq!(losses[t].len(), expected.len());
        for (i, (got, want)) in losses[t].iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() <= tolerance * want.max(1.0),
                "text {t} token {i}: {got} vs {want}"
            );
        }
        let mean = text["mean_nll"].as_f64().unwrap() as f32;
        assert!(
            (documents[t].mean_nll - mean).abs() <= tolerance * mean,
            "{} vs {mean}",
            documents[t].mean_nll
        );
        let masked_mean = text["masked_mean_nll"].as_f64().unwrap() as f32;
        assert!(
            (masked[t].mean_nll - masked_mean).abs() <= tolerance * masked_mean,
            "masked: {} vs {masked_mean}",
            masked[t].mean_nll
        );
        // Masking no heads changes nothing.
        assert!((unmasked[t].mean_nll - documents[t].mean_nll).abs() < 1e-6);
    }
    // Attention probabilities of one head for the first text.
    let head = &golden["attention_head"];
    let head = HeadId {
        layer: head[0].as_u64().unwrap() as usize,
        head: head[1].as_u64().unwrap() as usize,
    };
    let map = &lm.attention_maps(&sequences[0], &[head]).unwrap()[0];
    let expected = floats(&golden["attention"]);
    assert_eq!(map.len(), expected.len());
    let worst = map
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "attention differs by {worst}");
}

#[test]
fn tiny_lm_matches_numpy_reference() {
    let dir = fixture("tiny-llama");
    check_lm(&dir, &dir.join("golden.json"), 1e-4);
}

#[test]
fn real_smollm2_matches_numpy_reference() {
    if let Some(dir) = asset("smollm2-135m") {
        check_lm(&dir, &fixture("golden/smollm2-135m.json"), 2e-3);
    }
}

#[test]
fn batched_losses_do_not_depend_on_batch_company() {
    let dir = fixture("tiny-llama");
    let golden = golden(&dir.join("golden.json"));
    let seqs: Vec<Vec<u32>> = golden["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ids(&t["ids"]))
        .collect();
    let short: Vec<u32> = seqs[0][..7].to_vec();
    let all: Vec<&[u32]> = vec![&seqs[0], &short, &seqs[1], &seqs[2], &[5]];
    let together = load_lm(
        &dir,
        LmOptions {
            batch_tokens: 1 << 20,
            ..Default::default()
        },
    );
    let apart = load_lm(
        &dir,
        LmOptions {
            batch_tokens: 1,
            ..Default::default()
        },
    );
    let a = together.token_losses(&all, None);
    let b = apart.token_losses(&all, None);
    assert!(
        a[4].is_empty(),
        "a one-token sequence has no next-token loss"
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }
    // The prefix's losses are the full sequence's first losses (causality).
    for (p, q) in a[1].iter().zip(&a[0]) {
        assert!((p - q).abs() < 1e-4);
    }
}

#[test]
fn chunked_long_documents_average_chunk_means() {
    let dir = fixture("tiny-llama");
    let golden = golden(&dir.join("golden.json"));
    let seq = ids(&golden["texts"][0]["ids"]);
    let max = 40;
    let chunked = load_lm(
        &dir,
        LmOptions {
            max_tokens: max,
            long_documents: LongDocuments::ChunkMean,
            ..Default::default()
        },
    );
    let truncated = load_lm(
        &dir,
        LmOptions {
            max_tokens: max,
            ..Default::default()
        },
    );
    let full = load_lm(&dir, LmOptions::default());
    // Oracle: chunks [0,40), [39,79), [78,93) scored alone by the full-context model.
    let mut chunk_means = Vec::new();
    let mut start = 0;
    while start + 1 < seq.len() {
        let end = (start + max).min(seq.len());
        let losses = &full.token_losses(&[&seq[start..end]], None)[0];
        chunk_means.push(losses.iter().sum::<f32>() / losses.len() as f32);
        start = end - 1;
    }
    assert_eq!(chunk_means.len(), 3);
    let expected = chunk_means.iter().sum::<f32>() / 3.0;
    let got = chunked.sequence_document_losses(std::slice::from_ref(&seq), None)[0];
    assert!((got.mean_nll - expected).abs() < 1e-4);
    assert_eq!(got.tokens, seq.len());
    let first = truncated.sequence_document_losses(std::slice::from_ref(&seq), None)[0];
    assert!((first.mean_nll - chunk_means[0]).abs() < 1e-4);
}

#[test]
fn per_sequence_gradients_match_parameter_gradients() {
    let dir = fixture("tiny-llama");
    let golden = golden(&dir.join("golden.json"));
    let seqs: Vec<Vec<u32>> = golden["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ids(&t["ids"]))
        .collect();
    let lm = load_lm(&dir, LmOptions::default());
    let taps = [
        LinearId {
            layer: 1,
            kind: LinearKind::Query,
        },
        LinearId {
            layer: 3,
            kind: LinearKind::Down,
        },
        LinearId {
            layer: 0,
            kind: LinearKind::Value,
        },
    ];
    let batch: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let grads = lm.sequence_gradients(&batch, &taps).unwrap();
    assert_eq!(grads.len(), taps.len());

    // Oracle: Burn's own parameter gradients of one sequence's mean loss, model on autodiff.
    let device = test_device().autodiff();
    let model = CausalLm::load(&dir, LmOptions::default(), &device).unwrap();
    for (s, seq) in seqs.iter().enumerate() {
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(
                seq.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [1, seq.len()],
            ),
            &device,
        );
        let mut trace = ForwardTrace::default();
        let hidden = model.model().hidden_states(
            model.config(),
            ids,
            &ForwardRequest::default(),
            &mut trace,
        );
        let n = seq.len() - 1;
        let logits = model
            .model()
            .logits(hidden.reshape([seq.len(), 32]).narrow(0, 0, n));
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(
                seq[1..].iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [n, 1],
            ),
            &device,
        );
        let loss = log_softmax(logits, 1).gather(1, targets).neg().mean();
        let param_grads = loss.backward();
        for layer in &grads {
            let linear = model.model().linear(layer.id).unwrap();
            // Burn stores [in, out]; the tap reports PyTorch's [out, in].
            let expected = linear.weight.val().grad(&param_grads).unwrap().transpose();
            let expected: Vec<f32> = expected.try_into_vec_as::<f32>().unwrap();
            let got = &layer.samples[s].weight;
            let scale = expected.iter().map(|v| v.abs()).fold(0f32, f32::max);
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-4 * scale.max(1.0),
                "{:?} sequence {s}: off by {worst} (scale {scale})",
                layer.id
            );
            assert_eq!(layer.samples[s].inputs.len(), seq.len() * layer.inputs);
            assert_eq!(
                layer.samples[s].output_grads.len(),
                seq.len() * layer.outputs
            );
        }
    }
}

#[test]
fn bad_model_files_are_named_in_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let source = fixture("tiny-llama");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(source.join(f), dir.join(f)).unwrap();
    }
    let device = test_device();
    let load = || {
        CausalLm::load(dir, LmOptions::default(), &device)
            .err()
            .expect("load must fail")
            .to_string()
    };

    // Wrong shapes: the config promises a wider model than the weights hold.
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"intermediate_size\": 64", "\"intermediate_size\": 48"),
    )
    .unwrap();
    let message = load();
    assert!(
        message.contains("model.safetensors")
            && message.contains("mlp.")
            && message.contains("shape"),
        "{message}"
    );

    // Unknown architecture.
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\""),
    )
    .unwrap();
    let message = load();
    assert!(
        message.contains("config.json")
            && message.contains("model_type")
            && message.contains("gpt2"),
        "{message}"
    );

    // A missing tensor.
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"num_hidden_layers\": 4", "\"num_hidden_layers\": 5"),
    )
    .unwrap();
    let message = load();
    assert!(
        message.contains("model.layers.4.") && message.contains("missing"),
        "{message}"
    );

    // A tokenizer that does not parse, and a missing weight file.
    std::fs::write(dir.join("config.json"), &config).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
    let message = load();
    assert!(message.contains("tokenizer.json"), "{message}");
    std::fs::copy(source.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let message = load();
    assert!(
        message.contains("model.safetensors") && message.contains("no such file"),
        "{message}"
    );
    assert!(matches!(
        SentenceEncoder::load(dir, EncoderOptions::default(), &device),
        Err(ModelError::Config { .. })
    ));
}

/// Greedy decoding with the key/value cache against full forward passes over the growing
/// sequence: the same tokens (argmax of the logits at the last position) and the same
/// most-attended positions (argmax of each head's attention row).
fn check_cached_decoding(lm: &CausalLm, prompt: &[u32], steps: usize) {
    let decoded = lm.greedy_decode(prompt, steps, |_| false).unwrap();
    assert_eq!(decoded.len(), steps);
    let config = lm.config();
    let heads: Vec<HeadId> = (0..config.num_hidden_layers)
        .flat_map(|layer| (0..config.num_attention_heads).map(move |head| HeadId { layer, head }))
        .collect();
    let mut sequence = prompt.to_vec();
    for step in &decoded {
        let len = sequence.len();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(
                sequence.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
                [1, len],
            ),
            lm.device(),
        );
        let hidden = lm.model().hidden_states(
            config,
            ids,
            &ForwardRequest::default(),
            &mut ForwardTrace::default(),
        );
        let width = hidden.dims()[2];
        let last = hidden.narrow(1, len - 1, 1).reshape([1, width]);
        let logits: Vec<f32> = lm.model().logits(last).try_into_vec_as::<f32>().unwrap();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        assert_eq!(step.token, best, "token after {len} positions");
        let maps = lm.attention_maps(&sequence, &heads).unwrap();
        for (h, map) in maps.iter().enumerate() {
            let row = &map[(len - 1) * len..len * len];
            let peak = row[step.top_attended[h] as usize];
            let max = row.iter().copied().fold(f32::MIN, f32::max);
            assert!(
                (peak - max).abs() <= 1e-5 * max.max(1e-3),
                "head {:?} after {len} positions: cached peak {peak} vs {max}",
                heads[h]
            );
        }
        sequence.push(step.token);
    }
    // A stop condition ends decoding after the matching token.
    let first = decoded[0].token;
    let stopped = lm.greedy_decode(prompt, steps, |t| t == first).unwrap();
    assert_eq!(stopped, decoded[..1]);
    assert!(lm
        .greedy_decode(prompt, config.max_position_embeddings, |_| false)
        .is_err());
}

#[test]
fn cached_greedy_decoding_matches_full_forward_passes() {
    let lm = load_lm(&fixture("tiny-llama"), LmOptions::default());
    let prompt = lm
        .tokenize(&["key 7f3a: value blue; key 9c1e: value"])
        .unwrap()[0]
        .clone();
    check_cached_decoding(&lm, &prompt, 6);
}

#[test]
fn real_smollm2_cached_decoding_matches_full_forward_passes() {
    if let Some(dir) = asset("smollm2-135m") {
        let lm = load_lm(&dir, LmOptions::default());
        let text = "{\"Xq3\": \"the red fox jumps\", \"B7k\": \"a quiet harbour at dawn\"}\nQuestion: B7k\nAnswer:";
        let prompt = lm.tokenize(&[text]).unwrap()[0].clone();
        check_cached_decoding(&lm, &prompt, 5);
    }
}
