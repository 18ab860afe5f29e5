//! End-to-end tests of the model stages (`embed`, `lm_score`, `attention_influence`) through the `gleaner` binary,
//! with the tiny random-init models committed under embed/tests/fixtures. Oracles: the same
//! models called directly through the library, and the precomputed-column path of semdedup.

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Float64Array, ListBuilder, RecordBatch, StringArray,
};
use gleaner_embed::{
    CausalLm, Device, EncoderOptions, HeadId, HeadMask, LmOptions, SentenceEncoder, UniformScope,
};
use gleaner_selectors::attention_influence::{
    candidate_values, generate_probes, retrieval_scores, top_heads, usable_values, CopyStep,
    ProbeSettings,
};
use gleaner_selectors::quad::bandit::{BlockRule, RewardOffset};
use gleaner_selectors::score::rank_average;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;
use common::{asset_model, gleaner, ok, read_parquet as read, repo, string_column as strings};

fn fixture(name: &str) -> PathBuf {
    repo().join("embed/tests/fixtures").join(name)
}

fn run(cfg: &Path) {
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--overwrite",
    ]));
}

/// A small corpus: varied sentences, a one-character text (no next-token loss) and repeats.
fn texts() -> Vec<String> {
    let mut t: Vec<String> = [
        "The cat sat on the mat.",
        "A man is playing a guitar in the park.",
        "the the the the the the the the the the the the",
        "Stock markets fell sharply as investors sold shares.",
        "def add(a, b):\n    return a + b\n",
        "zqxj vvkw plm rrtq ooiu xxa",
        "x",
        "Someone is strumming a musical instrument outdoors.",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
        "A man is playing a guitar in the park!",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..20 {
        t.push(format!(
            "Document number {i} talks about topic {} at some length.",
            i % 4
        ));
    }
    t
}

fn write_corpus(path: &Path, texts: &[String], embeddings: Option<&[Vec<f32>]>) {
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("doc-{i:02}")).collect();
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(StringArray::from(ids))),
        ("text", Arc::new(StringArray::from(texts.to_vec()))),
    ];
    if let Some(vectors) = embeddings {
        let mut b = ListBuilder::new(Float32Builder::new());
        for v in vectors {
            b.values().append_slice(v);
            b.append(true);
        }
        columns.push(("embedding", Arc::new(b.finish())));
    }
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn config(dir: &Path, input: &Path, out: &str, stages: &str) -> PathBuf {
    let path = dir.join(format!("{out}.toml"));
    let text = format!(
        "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n[run]\ncache_dir = \"{}\"\n{stages}",
        input.display(),
        dir.join(out).display(),
        dir.join("cache").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn model_stage_cost(out: &Path) -> serde_json::Value {
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timings.json")).unwrap()).unwrap();
    t["model_stages"][0].clone()
}

#[test]
fn lm_score_feeds_score_filter_and_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = texts();
    let input = tmp.path().join("corpus.parquet");
    write_corpus(&input, &texts, None);
    let model = fixture("tiny-llama");

    // Oracle: the library's losses for the same texts.
    let lm = CausalLm::load(
        &model,
        LmOptions {
            max_tokens: 64,
            ..Default::default()
        },
        &Device::flex(),
    )
    .unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let losses: Vec<f32> = lm
        .document_losses(&refs, None)
        .unwrap()
        .iter()
        .map(|l| l.mean_nll)
        .collect();
    assert!(losses[6].is_nan(), "a one-byte text has no next-token loss");
    let mut finite: Vec<f32> = losses.iter().copied().filter(|l| l.is_finite()).collect();
    finite.sort_by(f32::total_cmp);
    // Bounds halfway between neighbouring losses, so no document sits on a boundary.
    let between = |k: usize| (finite[k] + finite[k + 1]) / 2.0;
    let (lo, hi) = (between(finite.len() / 4), between(3 * finite.len() / 4));

    let stages = format!(
        "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\ncolumn = \"nll\"\nmax_tokens = 64\nbatch_tokens = 128\n\
         [[stages]]\ntype = \"score_filter\"\nscore_column = \"nll\"\nmin = {lo}\nmax = {hi}\n",
        model.display()
    );
    let cfg = config(tmp.path(), &input, "out", &stages);
    run(&cfg);
    let out = tmp.path().join("out");
    let expected: Vec<String> = losses
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite() && **l >= lo && **l <= hi)
        .map(|(i, _)| format!("doc-{i:02}"))
        .collect();
    let selection = read(&out.join("selection.parquet"));
    assert_eq!(strings(&selection, "id"), expected);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    let filter = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "score_filter")
        .unwrap();
    assert_eq!(filter["dropped_no_score"], 1, "the one-byte text: {filter}");

    // The sidecar holds every document's loss under its id.
    let cost = model_stage_cost(&out);
    assert_eq!(cost["computed"], texts.len());
    let cache = PathBuf::from(cost["cache"].as_str().unwrap());
    let sidecars: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sidecars.len(), 1, "one row group, one sidecar");
    let batches = read(&sidecars[0]);
    assert_eq!(
        strings(&batches, "id"),
        (0..texts.len())
            .map(|i| format!("doc-{i:02}"))
            .collect::<Vec<_>>()
    );
    let values = batches[0]
        .column_by_name("value")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>()
        .clone();
    for (i, l) in losses.iter().enumerate() {
        if l.is_nan() {
            assert!(values.is_null(i));
        } else {
            assert!(
                (values.value(i) as f32 - l).abs() < 1e-4,
                "doc {i}: {} vs {l}",
                values.value(i)
            );
        }
    }

    // A rerun reuses the sidecar and selects the same documents.
    run(&cfg);
    assert_eq!(model_stage_cost(&out)["computed"], 0);
    assert_eq!(
        strings(&read(&out.join("selection.parquet")), "id"),
        expected
    );

    // Editing the input invalidates it.
    let mut edited = texts.clone();
    edited[0] = "An edited first document about something else.".into();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_corpus(&input, &edited, None);
    run(&cfg);
    assert_eq!(model_stage_cost(&out)["computed"], texts.len());
}

#[test]
fn embed_feeds_semdedup_like_a_precomputed_column() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = texts();
    let model = fixture("tiny-bert");
    let plain = tmp.path().join("plain.parquet");
    write_corpus(&plain, &texts, None);

    // Oracle input: the same corpus with the library's embeddings as a column.
    let encoder =
        SentenceEncoder::load(&model, EncoderOptions::default(), &Device::flex()).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let flat = encoder.encode(&refs).unwrap();
    let vectors: Vec<Vec<f32>> = flat.chunks(encoder.dim()).map(<[f32]>::to_vec).collect();
    let with_column = tmp.path().join("with_column");
    std::fs::create_dir(&with_column).unwrap();
    write_corpus(&with_column.join("c.parquet"), &texts, Some(&vectors));

    let semdedup = "[[stages]]\ntype = \"semdedup\"\nn_clusters = 3\neps = 0.02\n";
    let embedded = config(
        tmp.path(),
        &plain,
        "embedded",
        &format!(
            "[[stages]]\ntype = \"embed\"\nmodel = \"{}\"\nbatch_tokens = 64\n{semdedup}",
            model.display()
        ),
    );
    run(&embedded);
    let precomputed = tmp.path().join("precomputed.toml");
    std::fs::write(
        &precomputed,
        format!(
            "[input]\npaths = [\"{}\"]\nembedding_column = \"embedding\"\n[output]\ndir = \"{}\"\n{semdedup}",
            with_column.display(),
            tmp.path().join("precomputed").display()
        ),
    )
    .unwrap();
    run(&precomputed);
    let a = read(&tmp.path().join("embedded/selection.parquet"));
    let b = read(&tmp.path().join("precomputed/selection.parquet"));
    let ids = strings(&a, "id");
    assert_eq!(ids, strings(&b, "id"));
    assert!(
        ids.len() < texts.len(),
        "near-duplicates (the two guitar sentences) are removed"
    );
    let report = std::fs::read_to_string(tmp.path().join("embedded/report.md")).unwrap();
    assert!(
        report.contains("## Model stages") && report.contains("tiny-bert"),
        "{report}"
    );
}

#[test]
fn model_stage_config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("corpus.parquet");
    write_corpus(&input, &texts(), None);
    let expect_error = |stages: &str, needles: &[&str]| {
        let cfg = config(tmp.path(), &input, "bad", stages);
        let out = gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--overwrite",
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        for n in needles {
            assert!(err.contains(n), "`{n}` missing from: {err}");
        }
        assert!(!tmp.path().join("bad/manifest.json").exists());
    };
    expect_error(
        "[[stages]]\ntype = \"embed\"\nmodel = \"no/such/model\"\n",
        &["stages[0].model", "no/such/model/config.json"],
    );
    expect_error(
        &format!(
            "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\nwidth = 3\n",
            fixture("tiny-llama").display()
        ),
        &["width"],
    );
    expect_error(
        &format!(
            "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\ndevice = \"tpu\"\n",
            fixture("tiny-llama").display()
        ),
        &["stages[0].device", "tpu"],
    );
    let tiny = fixture("tiny-llama");
    expect_error(
        &format!(
            "[[stages]]\ntype = \"attention_influence\"\nmodel = \"{}\"\nhead_top_frac = 1.5\n",
            tiny.display()
        ),
        &["stages[0].head_top_frac", "1.5"],
    );
    expect_error(
        &format!(
            "[[stages]]\ntype = \"attention_influence\"\nmodel = \"{}\"\nheads = [[0, 1]]\nhead_top_n = 2\n",
            tiny.display()
        ),
        &["stages[0].heads", "skip detection"],
    );
    expect_error(
        &format!(
            "[[stages]]\ntype = \"attention_influence\"\nmodel = \"{}\"\nheads = [[9, 1]]\n",
            tiny.display()
        ),
        &["stages[0].heads", "[9, 1]", "4 layers x 4 heads"],
    );
    expect_error(
        &format!(
            "[[stages]]\ntype = \"attention_influence\"\nmodel = \"{}\"\n[stages.probe]\nmax_total_tokens = 4000\n",
            tiny.display()
        ),
        &["stages[0].probe.max_total_tokens", "256 positions"],
    );
    expect_error(
        "[[stages]]\ntype = \"score_select\"\nscore_column = \"s\"\ncount = 3\nwithin_source = true\n",
        &["stages[0].within_source", "fraction"],
    );
    // A BERT folder given to the LM stage.
    expect_error(
        &format!(
            "[[stages]]\ntype = \"lm_score\"\nmodel = \"{}\"\n",
            fixture("tiny-bert").display()
        ),
        &["config.json", "model_type", "bert"],
    );
}

/// A corpus with a `source` column and a numeric `quality` column.
fn write_sourced_corpus(path: &Path, texts: &[String], sources: &[String], quality: &[f64]) {
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("doc-{i:02}")).collect();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("text", Arc::new(StringArray::from(texts.to_vec()))),
        ("source", Arc::new(StringArray::from(sources.to_vec()))),
        ("quality", Arc::new(Float64Array::from(quality.to_vec()))),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Indices of the top `round(fraction * n)` of each source by `scores` (ties by index).
fn top_within_sources(sources: &[String], scores: &[f64], fraction: f64) -> Vec<usize> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in sources.iter().enumerate() {
        groups.entry(s).or_default().push(i);
    }
    let mut picked = Vec::new();
    for members in groups.values() {
        let mut ranked = members.clone();
        ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let quota = (fraction * members.len() as f64).round() as usize;
        picked.extend(&ranked[..quota]);
    }
    picked.sort();
    picked
}

fn doc_ids(indices: &[usize]) -> Vec<String> {
    indices.iter().map(|i| format!("doc-{i:02}")).collect()
}

#[test]
fn attention_influence_scores_match_the_library_and_select_within_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let texts: Vec<String> = texts().into_iter().filter(|t| t.len() > 1).collect();
    let sources: Vec<String> = (0..texts.len())
        .map(|i| ["web", "code", "books"][i % 3].to_string())
        .collect();
    let quality: Vec<f64> = (0..texts.len()).map(|i| ((i * 7) % 11) as f64).collect();
    let input = tmp.path().join("corpus.parquet");
    write_sourced_corpus(&input, &texts, &sources, &quality);
    let model = fixture("tiny-llama");
    let heads = [[1usize, 2usize], [3, 0]];

    // Oracle: relative loss increase from the library's base and masked losses.
    let lm = CausalLm::load(
        &model,
        LmOptions {
            max_tokens: 64,
            ..Default::default()
        },
        &Device::flex(),
    )
    .unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mask = HeadMask::new(
        heads
            .iter()
            .map(|&[layer, head]| HeadId { layer, head })
            .collect(),
    );
    let base = lm.document_losses(&refs, None).unwrap();
    let masked = lm.document_losses(&refs, Some(&mask)).unwrap();
    let scores: Vec<f64> = base
        .iter()
        .zip(&masked)
        .map(|(b, m)| f64::from((m.mean_nll - b.mean_nll) / b.mean_nll))
        .collect();
    assert!(scores.iter().all(|s| s.is_finite()));
    assert!(
        scores.iter().any(|&s| s.abs() > 1e-4),
        "masking changes losses"
    );

    let stage = format!(
        "[input]\nsource_column = \"source\"\n\
         [[stages]]\ntype = \"attention_influence\"\nmodel = \"{}\"\ncolumn = \"ai\"\nheads = [[1, 2], [3, 0]]\nmax_tokens = 64\n",
        model.display()
    );
    let select = "[[stages]]\ntype = \"score_select\"\nscore_column = \"ai\"\nfraction = 0.2\nwithin_source = true\n";
    // `config` writes [input] first; merge the source column into it.
    let make_with = |name: &str, stage: &str, extra: &str| {
        let cfg = config(tmp.path(), &input, name, &format!("{stage}{select}{extra}"));
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text
            .replacen("[input]\nsource_column = \"source\"\n", "", 1)
            .replacen("[input]\n", "[input]\nsource_column = \"source\"\n", 1);
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    let make = |name: &str, extra: &str| make_with(name, &stage, extra);
    let cfg = make("within", "");
    run(&cfg);
    let out = tmp.path().join("within");
    let expected = top_within_sources(&sources, &scores, 0.2);
    assert_eq!(
        strings(&read(&out.join("selection.parquet")), "id"),
        doc_ids(&expected)
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("2 heads given in the config"), "{report}");
    assert!(
        report.contains("## Score distribution of `ai` per source"),
        "{report}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let web = &json["distributions"][0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "web")
        .unwrap()
        .clone();
    let web_scores: Vec<f64> = (0..texts.len())
        .filter(|&i| sources[i] == "web")
        .map(|i| scores[i])
        .collect();
    let web_mean = web_scores.iter().sum::<f64>() / web_scores.len() as f64;
    assert_eq!(web["documents"], web_scores.len());
    assert!((web["mean"].as_f64().unwrap() - web_mean).abs() < 1e-4);

    // Union with a second column: documents in either column's top 20% of their source.
    let union = make("union", "combine_with = \"quality\"\ncombine = \"union\"\n");
    run(&union);
    let mut expected_union = expected.clone();
    expected_union.extend(top_within_sources(&sources, &quality, 0.2));
    expected_union.sort();
    expected_union.dedup();
    assert!(expected_union.len() > expected.len());
    assert_eq!(
        strings(&read(&tmp.path().join("union/selection.parquet")), "id"),
        doc_ids(&expected_union)
    );
    // Rank average: mean of the within-source normalised ranks of the two columns.
    let average = make("average", "combine_with = \"quality\"\n");
    run(&average);
    let mut combined = vec![0.0; texts.len()];
    for source in ["web", "code", "books"] {
        let members: Vec<usize> = (0..texts.len()).filter(|&i| sources[i] == source).collect();
        let a: Vec<Option<f64>> = members.iter().map(|&i| Some(scores[i])).collect();
        let b: Vec<Option<f64>> = members.iter().map(|&i| Some(quality[i])).collect();
        for (&i, r) in members.iter().zip(rank_average(&a, &b)) {
            combined[i] = r.unwrap();
        }
    }
    assert_eq!(
        strings(&read(&tmp.path().join("average/selection.parquet")), "id"),
        doc_ids(&top_within_sources(&sources, &combined, 0.2))
    );

    // The absolute formula with heads uniform over the whole sequence (`full` scope).
    let full_mask = mask.clone().with_scope(UniformScope::Full);
    let full = lm.document_losses(&refs, Some(&full_mask)).unwrap();
    let absolute: Vec<f64> = base
        .iter()
        .zip(&full)
        .map(|(b, m)| f64::from(m.mean_nll - b.mean_nll))
        .collect();
    assert!(absolute
        .iter()
        .zip(&scores)
        .any(|(a, r)| (a - r).abs() > 1e-3));
    let variant = stage.replace(
        "max_tokens = 64\n",
        "max_tokens = 64\nformula = \"absolute\"\nuniform_scope = \"full\"\n",
    );
    run(&make_with("absolute", &variant, ""));
    assert_eq!(
        strings(&read(&tmp.path().join("absolute/selection.parquet")), "id"),
        doc_ids(&top_within_sources(&sources, &absolute, 0.2))
    );
}

/// Retrieval-head detection through the CLI against an oracle that decodes every probe with
/// full forward passes (no key/value cache) and reads each head's attention maps: the same
/// per-head mean retrieval scores and the same chosen heads. Returns the pipeline's report.
fn check_detection(
    model: &Path,
    input: &Path,
    probe: &str,
    decode: usize,
    dir: &Path,
) -> serde_json::Value {
    let stages = format!(
        "[[stages]]\ntype = \"attention_influence\"\nmodel = \"{}\"\nhead_top_n = 3\nmax_decode_tokens = {decode}\nmax_tokens = 128\n[stages.probe]\n{probe}\n",
        model.display()
    );
    let cfg = config(dir, input, "detect", &stages);
    run(&cfg);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("detect/report.json")).unwrap()).unwrap();
    let heads = report["models"][0]["heads"].clone();

    // The oracle regenerates the probes from the same settings.
    let settings: toml::Table = toml::from_str(probe).unwrap();
    let get = |k: &str| settings[k].as_integer().unwrap() as usize;
    let lm = CausalLm::load(model, LmOptions::default(), &Device::flex()).unwrap();
    let count = |s: &str| lm.tokenizer().encode(s, false).unwrap().len();
    let value_paths: Vec<String> = settings
        .get("value_paths")
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_else(|| vec![input.display().to_string()]);
    let mut candidates = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for p in &value_paths {
        let p = PathBuf::from(p);
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p);
        }
    }
    let max_documents = get("max_value_documents");
    let mut documents = 0;
    'files: for f in files {
        for text in strings(&read(&f), "text") {
            if documents == max_documents {
                break 'files;
            }
            documents += 1;
            candidates.extend(candidate_values(&text).map(String::from));
        }
    }
    let values = usable_values(candidates, get("value_max_tokens"), &count);
    let probes = generate_probes(
        &values,
        &ProbeSettings {
            num_samples: get("num_samples"),
            shots: 3,
            key_len: 32,
            value_max_tokens: get("value_max_tokens"),
            max_total_tokens: get("max_total_tokens"),
            seed: 0,
        },
        &count,
    )
    .unwrap();
    let config = lm.config();
    let all_heads: Vec<HeadId> = (0..config.num_hidden_layers)
        .flat_map(|layer| (0..config.num_attention_heads).map(move |head| HeadId { layer, head }))
        .collect();
    let mut sums = vec![0.0; all_heads.len()];
    for p in &probes {
        let (ids, offsets) = lm.tokenizer().encode_with_offsets(&p.prompt).unwrap();
        let inside: Vec<usize> = (0..ids.len())
            .filter(|&i| offsets[i].0 < p.needle.end && offsets[i].1 > p.needle.start)
            .collect();
        let needle = inside[0]..inside[inside.len() - 1] + 1;
        let mut sequence = ids.clone();
        let mut tops: Vec<Vec<u32>> = Vec::new();
        let mut tokens = Vec::new();
        for _ in 0..decode {
            let losses_free = lm.attention_maps(&sequence, &all_heads).unwrap();
            let len = sequence.len();
            let row_argmax = |map: &Vec<f32>| {
                let row = &map[(len - 1) * len..len * len];
                (0..len)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                    .unwrap() as u32
            };
            let peaks: Vec<u32> = losses_free.iter().map(row_argmax).collect();
            let ids_tensor = burn::prelude::Tensor::<2, burn::prelude::Int>::from_data(
                burn::prelude::TensorData::new(
                    sequence.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
                    [1, len],
                ),
                lm.device(),
            );
            let hidden = lm.model().hidden_states(
                config,
                ids_tensor,
                &Default::default(),
                &mut Default::default(),
            );
            let width = hidden.dims()[2];
            let logits: Vec<f32> = lm
                .model()
                .logits(hidden.narrow(1, len - 1, 1).reshape([1, width]))
                .try_into_vec_as::<f32>()
                .unwrap();
            let token = (0..logits.len())
                .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
                .unwrap() as u32;
            tokens.push(token);
            tops.push(peaks);
            sequence.push(token);
            let text = lm.tokenizer().decode(&[token]).unwrap();
            if Some(token) == config.eos_token_id || text.contains('\n') {
                break;
            }
        }
        let steps: Vec<CopyStep> = tokens
            .iter()
            .zip(&tops)
            .map(|(&token, t)| CopyStep {
                token,
                top_attended: t,
            })
            .collect();
        for (s, x) in sums
            .iter_mut()
            .zip(retrieval_scores(&ids, needle, &steps, all_heads.len()))
        {
            *s += x;
        }
    }
    let expected: Vec<f64> = sums.iter().map(|s| s / probes.len() as f64).collect();
    let got: Vec<f64> = heads["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (h, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!((g - e).abs() < 1e-9, "head {h}: {g} vs oracle {e}");
    }
    let chosen: Vec<[usize; 2]> = top_heads(&expected, 3)
        .into_iter()
        .map(|h| {
            [
                h / config.num_attention_heads,
                h % config.num_attention_heads,
            ]
        })
        .collect();
    let reported: Vec<[usize; 2]> = serde_json::from_value(heads["chosen"].clone()).unwrap();
    assert_eq!(reported, chosen);
    assert_eq!(heads["probes"], probes.len());
    assert!(dir
        .join("detect/attention_heads-attention_influence.png")
        .is_file());
    report
}

#[test]
fn head_detection_matches_an_uncached_decoding_oracle_on_the_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::long_tiny_llama(tmp.path());
    let input = tmp.path().join("corpus.parquet");
    write_corpus(&input, &texts(), None);
    check_detection(
        &model,
        &input,
        "num_samples = 2\nvalue_max_tokens = 60\nmax_total_tokens = 1300\nmax_value_documents = 100\nseed = 0",
        4,
        tmp.path(),
    );
}

#[test]
fn real_smollm2_finds_retrieval_heads_and_scores_copying_above_iid_text() {
    let Some(model) = asset_model("smollm2-135m") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Planted corpus (spec 2.6 test 6): random words repeated (copyable from earlier context)
    // versus the same amount of i.i.d. random words.
    let mut rng = gleaner_selectors::rng::SplitMix64::new(7);
    let mut word = || -> String {
        let n = 4 + rng.below(4);
        (0..n)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect()
    };
    let mut texts = Vec::new();
    for _ in 0..8 {
        let phrase: Vec<String> = (0..10).map(|_| word()).collect();
        texts.push(vec![phrase.join(" "); 4].join(" "));
    }
    for _ in 0..8 {
        texts.push((0..40).map(|_| word()).collect::<Vec<_>>().join(" "));
    }
    let input = tmp.path().join("planted.parquet");
    write_corpus(&input, &texts, None);
    let values = repo().join("data/quickstart");
    // Detection against the oracle on two probes (the oracle decodes without a cache).
    check_detection(
        &model,
        &input,
        &format!(
            "num_samples = 2\nvalue_max_tokens = 30\nmax_total_tokens = 512\nmax_value_documents = 300\nseed = 0\nvalue_paths = [\"{}\"]",
            values.display()
        ),
        8,
        tmp.path(),
    );
    // The planted check with 16 probes and the top 5% of heads.
    let stages = format!(
        "[[stages]]\ntype = \"attention_influence\"\nmodel = \"{}\"\nmax_decode_tokens = 16\nmax_tokens = 128\n\
         [stages.probe]\nnum_samples = 16\nmax_total_tokens = 512\nmax_value_documents = 2000\nvalue_paths = [\"{}\"]\n",
        model.display(),
        values.display()
    );
    run(&config(tmp.path(), &input, "planted", &stages));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("planted/report.json")).unwrap())
            .unwrap();
    let heads = &report["models"][0]["heads"];
    assert_eq!(heads["chosen"].as_array().unwrap().len(), 14, "5% of 270");
    let scores = heads["scores"].as_array().unwrap();
    assert!(
        scores.iter().any(|s| s.as_f64().unwrap() > 0.0),
        "some SmolLM2 head copies value tokens from the needle"
    );
    let sidecar = PathBuf::from(
        model_stage_cost(&tmp.path().join("planted"))["cache"]
            .as_str()
            .unwrap(),
    );
    let file = std::fs::read_dir(&sidecar)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let values = read(&file)[0]
        .column_by_name("value")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>()
        .clone();
    let mean = |range: std::ops::Range<usize>| {
        range.clone().map(|i| values.value(i)).sum::<f64>() / range.len() as f64
    };
    let (copying, iid) = (mean(0..8), mean(8..16));
    assert!(
        copying > iid,
        "copying documents {copying} should lose more than i.i.d. text {iid} when retrieval heads are masked"
    );
}

/// Quad's influence scorer on the tiny model against Burn's own parameter gradients (model on
/// an autodiff device): identity curvature without projection is the mean cosine between the
/// candidate's and each reference example's weight gradients at the chosen layers.
#[test]
fn quad_influence_matches_parameter_gradient_cosines() {
    use burn::prelude::{Int, Tensor, TensorData};
    use burn::tensor::activation::log_softmax;
    use gleaner::models::quad::{Curvature, InfluenceScorer, InfluenceSettings};
    use gleaner_embed::{LinearId, LinearKind};
    use gleaner_selectors::quad::windows::WindowConfig;

    let dir = fixture("tiny-llama");
    let lm = CausalLm::load(&dir, LmOptions::default(), &Device::flex()).unwrap();
    let layers = vec![
        LinearId {
            layer: 3,
            kind: LinearKind::Value,
        },
        LinearId {
            layer: 1,
            kind: LinearKind::Down,
        },
    ];
    let texts = [
        "def add(a, b): return a + b",
        "The cat sat on the mat and looked at the door.",
        "Stock markets fell sharply as investors sold shares.",
        "A man is playing a guitar in the park.",
    ];
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| lm.tokenize(&[t]).unwrap()[0].clone())
        .collect();
    let reference = ids[..3].to_vec();
    let settings = InfluenceSettings {
        layers: layers.clone(),
        curvature: Curvature::Identity,
        damping: 1e-3,
        proj_dim: 0,
        proj_seed: 0,
        windows: WindowConfig {
            len: 64,
            stride: 63,
            min_len: 8,
            max_doc_tokens: 1000,
            max_windows: 8,
        },
        empty_doc_score: 0.0,
    };
    let scorer = InfluenceScorer::fit(&lm, settings.clone(), &reference, &reference).unwrap();

    // Oracle: flattened parameter gradients ([out x in] per layer) of each sequence's mean loss.
    let device = Device::flex().autodiff();
    let model = CausalLm::load(&dir, LmOptions::default(), &device).unwrap();
    let grad = |seq: &[u32]| -> Vec<f64> {
        let n = seq.len() - 1;
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(
                seq.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
                [1, seq.len()],
            ),
            &device,
        );
        let hidden = model.model().hidden_states(
            model.config(),
            input,
            &Default::default(),
            &mut Default::default(),
        );
        let width = hidden.dims()[2];
        let logits = model
            .model()
            .logits(hidden.reshape([seq.len(), width]).narrow(0, 0, n));
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(
                seq[1..].iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
                [n, 1],
            ),
            &device,
        );
        let grads = log_softmax(logits, 1)
            .gather(1, targets)
            .neg()
            .mean()
            .backward();
        layers
            .iter()
            .flat_map(|id| {
                let w = model.model().linear(*id).unwrap().weight.val();
                w.grad(&grads)
                    .unwrap()
                    .transpose()
                    .try_into_vec_as::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
            })
            .collect()
    };
    let cos = |a: &[f64], b: &[f64]| {
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(u, v)| u * v).sum::<f64>();
        dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
    };
    let reference_grads: Vec<Vec<f64>> = reference.iter().map(|s| grad(s)).collect();
    let oracle = |seq: &[u32]| {
        let g = grad(seq);
        reference_grads.iter().map(|r| cos(&g, r)).sum::<f64>() / reference_grads.len() as f64
    };
    let mut scores = Vec::new();
    for seq in &ids {
        let got = scorer.window_score(seq).unwrap();
        let want = oracle(seq);
        assert!((got - want).abs() < 1e-4, "{got} vs oracle {want}");
        scores.push(got);
    }
    // A candidate equal to a reference example has cosine 1 with it (spec 1.7 test 2).
    let self_terms: f64 = (1..3)
        .map(|r| cos(&reference_grads[0], &reference_grads[r]))
        .sum();
    assert!((scores[0] - (1.0 + self_terms) / 3.0).abs() < 1e-4);

    // Windows: a document of 100 tokens (plus end of sequence) gives windows 0..64 and 63..101;
    // its score is their mean.
    let long: Vec<u32> = (0..100).map(|i| ids[1][i % ids[1].len()]).collect();
    let (score, windows) = scorer.document_score(&long).unwrap();
    assert_eq!(windows, 2);
    let mut with_eos = long.clone();
    with_eos.push(lm.config().eos_token_id.unwrap());
    let mean = (oracle(&with_eos[0..64]) + oracle(&with_eos[63..101])) / 2.0;
    assert!((score - mean).abs() < 1e-4, "{score} vs {mean}");
    // Too short for a window: the empty score.
    assert_eq!(scorer.document_score(&ids[0][..5]).unwrap(), (0.0, 0));

    // Preconditioning changes the reference side; a seeded projection keeps scores close.
    let kfac = InfluenceScorer::fit(
        &lm,
        InfluenceSettings {
            curvature: Curvature::Ekfac,
            ..settings.clone()
        },
        &reference,
        &reference,
    )
    .unwrap();
    assert!((kfac.window_score(&ids[3]).unwrap() - scores[3]).abs() > 1e-6);
    let projected = InfluenceScorer::fit(
        &lm,
        InfluenceSettings {
            proj_dim: 4096,
            ..settings
        },
        &reference,
        &reference,
    )
    .unwrap();
    assert!((projected.window_score(&ids[3]).unwrap() - scores[3]).abs() < 0.05);
}

/// Three groups of documents (code, prose, numbers) with embeddings along one axis per group
/// plus a small per-document offset, and a code reference set.
fn quad_corpus(dir: &Path) -> (PathBuf, PathBuf, Vec<String>, Vec<Vec<f32>>) {
    let mut texts = Vec::new();
    let mut embeddings = Vec::new();
    for i in 0..40 {
        let (text, group) = match i % 3 {
            0 => (format!("def f{i}(x):\n    return x * {i} + {}\n", i % 7), 0),
            1 => (
                format!("The river {i} runs past the old mill and the quiet town."),
                1,
            ),
            _ => (format!("{i} {} {} {}", i * 3, i * 7, i * 11), 2),
        };
        texts.push(text);
        let mut e = vec![0.02 * (i % 5) as f32; 4];
        e[group] = 1.0;
        e[3] = 0.01 * i as f32;
        embeddings.push(e);
    }
    texts.push("x".into()); // too short for a window: scores empty_doc_score
    embeddings.push(vec![0.0, 0.0, 1.0, 0.5]);
    let input = dir.join("pool.parquet");
    write_corpus(&input, &texts, Some(&embeddings));
    let reference = dir.join("reference.parquet");
    let refs: Vec<String> = (0..5)
        .map(|i| format!("def g{i}(y):\n    return y - {i}\n"))
        .collect();
    write_corpus(&reference, &refs, None);
    (input, reference, texts, embeddings)
}

fn quad_stage(tiny: &Path, reference: &Path, budget: &str) -> String {
    format!(
        "[[stages]]\ntype = \"quad\"\nmodel = \"{}\"\nreference_paths = [\"{}\"]\n\
         window_len = 64\nwindow_stride = 63\nmin_window_len = 8\nn_clusters = 3\n\
         probe_size = 2\narms_per_round = 2\nblock_size = 5\nmax_rounds = 20\n\
         seed = 7\n{budget}\n",
        tiny.display(),
        reference.display()
    )
}

/// The library pieces the stage wires together, called directly: the tiny model's EK-FAC
/// influence scorer over the last two layers' attention projections (reference texts plus
/// the end-of-sequence token, fitted on themselves) and the cluster bandit.
fn quad_oracle(
    lm: &CausalLm,
    texts: &[String],
    embeddings: &[Vec<f32>],
    reference: &[String],
    tokens: Option<&[u64]>,
    budget: u64,
    rules: (RewardOffset, BlockRule, usize),
) -> gleaner_selectors::quad::select::QuadSelection {
    use gleaner::models::quad::{Curvature, InfluenceScorer, InfluenceSettings};
    use gleaner_embed::{LinearId, LinearKind};
    use gleaner_selectors::quad::bandit::BanditConfig;
    use gleaner_selectors::quad::select::{select, QuadSettings};
    use gleaner_selectors::quad::windows::WindowConfig;
    let layers = [2, 3]
        .iter()
        .flat_map(|&layer| {
            LinearKind::ATTENTION
                .iter()
                .map(move |&kind| LinearId { layer, kind })
        })
        .collect();
    let eos = lm.config().eos_token_id.unwrap();
    let refs: Vec<Vec<u32>> = reference
        .iter()
        .map(|t| {
            let mut ids = lm.tokenize(&[t.as_str()]).unwrap().pop().unwrap();
            ids.push(eos);
            ids
        })
        .collect();
    let settings = InfluenceSettings {
        layers,
        curvature: Curvature::Ekfac,
        damping: 1e-3,
        proj_dim: 0,
        proj_seed: 0,
        windows: WindowConfig {
            len: 64,
            stride: 63,
            min_len: 8,
            max_doc_tokens: 20_480,
            max_windows: rules.2,
        },
        empty_doc_score: 0.0,
    };
    let scorer = InfluenceScorer::fit(lm, settings, &refs, &refs).unwrap();
    let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
    let quad = QuadSettings {
        n_clusters: 3,
        kmeans_iters: 20,
        max_points_per_cluster: 256,
        neighbor_radius: 0.2,
        bandit: BanditConfig {
            alpha: 1e-4,
            reward_offset: rules.0,
            block_rule: rules.1,
            probe_size: 2,
            arms_per_round: 2,
            block_size: 5,
            max_rounds: 20,
            budget,
            init_policy: Default::default(),
        },
        seed: 7,
    };
    select(&flat, 4, tokens, &quad, |docs, _| {
        Ok::<_, ()>(
            docs.iter()
                .map(|&i| {
                    let ids = lm.tokenize(&[texts[i].as_str()]).unwrap().pop().unwrap();
                    scorer.document_score(&ids).unwrap().0
                })
                .collect(),
        )
    })
    .unwrap()
}

/// A nullable primitive column of every batch, in order.
fn primitive_column<T: arrow::datatypes::ArrowPrimitiveType>(
    batches: &[RecordBatch],
    name: &str,
) -> Vec<Option<T::Native>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap().as_primitive::<T>().clone();
            (0..c.len())
                .map(move |i| c.is_valid(i).then(|| c.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn f64_column(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    primitive_column::<arrow::datatypes::Float64Type>(batches, name)
}

fn i64_column(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    primitive_column::<arrow::datatypes::Int64Type>(batches, name)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn quad_selection_matches_the_library_oracle_and_is_cached_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, reference, texts, embeddings) = quad_corpus(tmp.path());
    let tiny = fixture("tiny-llama");
    // `config` writes [input] first; the embedding column goes in through an override.
    let cfg = config(
        tmp.path(),
        &input,
        "quad",
        &quad_stage(&tiny, &reference, "budget_docs = 13\nreward_offset = 0.0"),
    );
    let run_with = |extra: &[&str]| {
        let mut args = vec![
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--overwrite",
            "input.embedding_column=\"embedding\"",
        ];
        args.extend_from_slice(extra);
        let out = gleaner(&args);
        assert!(
            out.status.success(),
            "gleaner failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run_with(&[]);
    let out = tmp.path().join("quad");
    let sel = read(&out.join("selection.parquet"));

    let lm = CausalLm::load(&tiny, LmOptions::default(), &Device::flex()).unwrap();
    let refs: Vec<String> = (0..5)
        .map(|i| format!("def g{i}(y):\n    return y - {i}\n"))
        .collect();
    let paper = (RewardOffset::Fixed(0.0), BlockRule::Fixed, 8);
    let oracle = quad_oracle(&lm, &texts, &embeddings, &refs, None, 13, paper);
    assert!(oracle.budget_reached);
    let expected_ids: Vec<String> = oracle
        .picks
        .iter()
        .map(|p| format!("doc-{:02}", p.index))
        .collect();
    assert_eq!(strings(&sel, "id"), expected_ids);
    assert_eq!(
        expected_ids.len(),
        13,
        "the last block is cut to the budget"
    );
    let clusters = i64_column(&sel, "cluster");
    let rounds = i64_column(&sel, "round");
    let arm_scores = f64_column(&sel, "arm_score");
    let probes = f64_column(&sel, "probe_influence");
    let scores = f64_column(&sel, "score");
    for (k, p) in oracle.picks.iter().enumerate() {
        assert_eq!(clusters[k], Some(i64::from(p.cluster)));
        assert_eq!(rounds[k], Some(p.round as i64));
        assert!(close(arm_scores[k].unwrap(), p.arm_score), "{k}");
        assert!(close(scores[k].unwrap(), p.pull_score), "{k}");
        match (probes[k], p.probe_score) {
            (Some(a), Some(b)) => assert!(close(a, b), "{k}: {a} vs {b}"),
            (None, None) => {}
            other => panic!("{k}: probe scores {other:?}"),
        }
    }
    assert!(probes.iter().any(Option::is_some));
    assert!(strings(&sel, "reason").iter().all(|r| r == "quad_block"));

    // The report's bandit log is the oracle's, and its cost counts the windows.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let q = &report["quad"];
    assert_eq!(q["selected_amount"], 13);
    assert_eq!(q["budget_reached"], true);
    let pulls = q["pulls"].as_array().unwrap();
    assert_eq!(pulls.len(), oracle.pulls.len());
    for (got, want) in pulls.iter().zip(&oracle.pulls) {
        assert_eq!(got["cluster"].as_u64().unwrap() as usize, want.arm);
        assert_eq!(got["accepted"].as_bool().unwrap(), want.accepted);
        assert!(close(got["reward"].as_f64().unwrap(), want.reward));
    }
    assert_eq!(
        q["probed_documents"].as_u64().unwrap() as usize,
        oracle.probes.len()
    );
    // Per source (this corpus has none): every probe, with the oracle's mean q.
    let sources = q["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["source"], "(none)");
    assert_eq!(
        sources[0]["probed"].as_u64().unwrap() as usize,
        oracle.probes.len()
    );
    let mean = oracle.probes.iter().map(|p| p.1).sum::<f64>() / oracle.probes.len() as f64;
    assert!(close(
        sources[0]["mean_probe_score"].as_f64().unwrap(),
        mean
    ));
    let windows: u64 = oracle
        .probes
        .iter()
        .map(|&(i, _)| {
            let n = lm.tokenize(&[texts[i].as_str()]).unwrap()[0].len() + 1;
            gleaner_selectors::quad::windows::windows(
                n,
                &gleaner_selectors::quad::windows::WindowConfig {
                    len: 64,
                    stride: 63,
                    min_len: 8,
                    max_doc_tokens: 20_480,
                    max_windows: 8,
                },
            )
            .len() as u64
        })
        .sum();
    assert_eq!(q["probe_passes"].as_u64().unwrap(), windows);
    assert_eq!(q["reference_passes"], 10, "5 reference + 5 fit documents");
    let html = std::fs::read_to_string(out.join("quad.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("pulls per cluster"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Quad") && md.contains("passes per selected document"));
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timings.json")).unwrap()).unwrap();
    assert_eq!(
        timings["quad"]["probe_passes_computed"].as_u64().unwrap(),
        windows
    );

    // Rerun on one thread into another folder: the cached probe scores are reused (nothing
    // computed) and the selection is byte-identical.
    let again = tmp.path().join("again");
    let dir = format!("output.dir=\"{}\"", again.display());
    run_with(&[&dir, "run.threads=1"]);
    assert_eq!(
        std::fs::read(out.join("selection.parquet")).unwrap(),
        std::fs::read(again.join("selection.parquet")).unwrap()
    );
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(again.join("timings.json")).unwrap()).unwrap();
    assert_eq!(timings["quad"]["probe_passes_computed"], 0);

    // A token budget (the proxy tokenizer's counts) stops at the document that reaches it.
    let cfg_tokens = config(
        tmp.path(),
        &input,
        "quad_tokens",
        &quad_stage(
            &tiny,
            &reference,
            "budget_tokens = 300\nreward_offset = 0.0",
        ),
    );
    let res = gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg_tokens.to_str().unwrap(),
        "input.embedding_column=\"embedding\"",
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let tokens: Vec<u64> = texts
        .iter()
        .map(|t| lm.tokenize(&[t.as_str()]).unwrap()[0].len() as u64)
        .collect();
    let oracle = quad_oracle(&lm, &texts, &embeddings, &refs, Some(&tokens), 300, paper);
    let got = strings(
        &read(&tmp.path().join("quad_tokens/selection.parquet")),
        "id",
    );
    let want: Vec<String> = oracle
        .picks
        .iter()
        .map(|p| format!("doc-{:02}", p.index))
        .collect();
    assert_eq!(got, want);
    let kept_tokens: u64 = oracle.picks.iter().map(|p| tokens[p.index]).sum();
    let longest = oracle.picks.iter().map(|p| tokens[p.index]).max().unwrap();
    assert!(
        kept_tokens >= 300 && kept_tokens - 300 < longest,
        "{kept_tokens}"
    );

    // Tau from the data (the default: the best clusters by first probe mean holding twice the
    // budget are accepted),
    // blocks proportional to the reward, one window per probe: the library's selection, the
    // tau it set in the report, and the selected count of the budget logged each round.
    let cfg_auto = config(
        tmp.path(),
        &input,
        "quad_auto",
        &quad_stage(
            &tiny,
            &reference,
            "budget_docs = 13\nblock_rule = \"proportional\"\nmax_windows = 1",
        ),
    );
    let res = gleaner(&[
        "run",
        "--config",
        cfg_auto.to_str().unwrap(),
        "input.embedding_column=\"embedding\"",
    ]);
    let log = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{log}");
    let oracle = quad_oracle(
        &lm,
        &texts,
        &embeddings,
        &refs,
        None,
        13,
        (RewardOffset::Coverage(2.0), BlockRule::Proportional, 1),
    );
    let want: Vec<String> = oracle
        .picks
        .iter()
        .map(|p| format!("doc-{:02}", p.index))
        .collect();
    let got = strings(&read(&tmp.path().join("quad_auto/selection.parquet")), "id");
    assert_eq!(got, want);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("quad_auto/report.json")).unwrap())
            .unwrap();
    assert!(close(
        report["quad"]["reward_offset"].as_f64().unwrap(),
        oracle.reward_offset
    ));
    assert_eq!(report["quad"]["block_rule"], "proportional");
    // The first rounds probe every cluster before any block is taken.
    assert!(
        log.contains("quad round 0: probed") && log.contains("0 of 13 docs selected before it")
    );
    let blocks: Vec<u64> = report["quad"]["pulls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["block"].as_u64().unwrap())
        .collect();
    let want_blocks: Vec<u64> = oracle.pulls.iter().map(|p| p.block as u64).collect();
    assert_eq!(blocks, want_blocks);
}

#[test]
fn quad_config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, reference, _, _) = quad_corpus(tmp.path());
    let tiny = fixture("tiny-llama");
    let expect_error = |stages: &str, extra: &[&str], needles: &[&str]| {
        let cfg = config(tmp.path(), &input, "bad", stages);
        let mut args = vec!["--quiet", "run", "--config", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = gleaner(&args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        for n in needles {
            assert!(err.contains(n), "`{n}` missing from: {err}");
        }
        assert!(!tmp.path().join("bad/manifest.json").exists());
    };
    let emb = "input.embedding_column=\"embedding\"";
    let good = quad_stage(&tiny, &reference, "budget_docs = 10");
    expect_error(&good, &[], &["stages[0]", "(quad)", "embedding"]);
    expect_error(
        &quad_stage(&tiny, &reference, "budget_docs = 10\nbudget_tokens = 5"),
        &[emb],
        &[
            "stages[0]",
            "exactly one of `budget_docs` and `budget_tokens`",
        ],
    );
    expect_error(
        &good,
        &[emb, "stages.0.probe_size=9"],
        &["stages[0].probe_size", "block_size 5"],
    );
    expect_error(
        &good,
        &[emb, "stages.0.layers=[1,9]"],
        &["stages[0].layers", "layer 9", "4 layers"],
    );
    expect_error(
        &good,
        &[emb, "stages.0.window_len=1000"],
        &["stages[0].window_len", "256"],
    );
    expect_error(
        &good,
        &[emb, "stages.0.reference_paths=[\"no/such.parquet\"]"],
        &["stages[0].reference_paths", "no/such.parquet"],
    );
    expect_error(
        &good,
        &[emb, "stages.0.curvature=\"exact\""],
        &["stages[0]", "exact", "identity`, `kfac`, `ekfac"],
    );
    expect_error(
        &good,
        &[emb, "stages.0.reward_offset_quantile=1.5"],
        &["stages[0].reward_offset_quantile", "outside [0, 1]"],
    );
    expect_error(
        &good,
        &[
            emb,
            "stages.0.reward_offset=0.01",
            "stages.0.reward_offset_coverage=3",
        ],
        &["stages[0]", "at most one of `reward_offset`"],
    );
    expect_error(
        &good,
        &[emb, "stages.0.max_windows=0"],
        &["stages[0].max_windows", "at least 1"],
    );
    expect_error(
        &good,
        &[emb, "stages.0.block_rule=\"bigger\""],
        &["stages[0]", "bigger", "`fixed` or `proportional`"],
    );
}
