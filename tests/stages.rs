//! The curation stages through the CLI: decontamination (and the others as they land), each
//! checked against planted labels or an exact computation done here.

mod common;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use common::{
    deterministic_files, fails, gleaner, ok, one_stage_config, read_parquet, string_column,
    write_batch, write_text_file,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes an `id`, `source`, `text` corpus.
fn write_corpus(path: &Path, docs: &[(&str, &str)]) {
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.0))) as ArrayRef,
        ),
        (
            "source",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|_| "web"))) as ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.1))) as ArrayRef,
        ),
    ])
    .unwrap();
    write_batch(path, &batch);
}

/// Writes `docs` as `dir/corpus.parquet`, runs it through `stages` (their TOML, the first
/// `[[stages]]` header implied) with removed shards written, and returns the output folder.
fn run_stages(dir: &Path, docs: &[(&str, &str)], stages: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    write_corpus(&dir.join("corpus.parquet"), docs);
    let cfg = one_stage_config(dir, &dir.join("corpus.parquet"), stages);
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "output.write_removed=true",
    ]));
    dir.join("out")
}

fn stats(out: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap()
}

const EVAL_FUNCTION: &str = "def below_zero(operations):\n    \"\"\"You're given a list of deposit and withdrawal operations on a bank account\n    that starts with zero balance. Detect if at any point the balance falls below zero.\"\"\"\n    balance = 0\n    for op in operations:\n        balance += op\n        if balance < 0:\n            return True\n    return False\n";
const EVAL_TRIVIA: &str = "Question: which river flows through the city of Vienna and then on to Budapest and Belgrade before reaching the Black Sea? Answer: the Danube.";

#[test]
fn decontaminate_drops_planted_copies_per_evaluation_set_whatever_their_wrapping() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_text_file(&d.join("code-eval.parquet"), &[EVAL_FUNCTION]);
    write_text_file(&d.join("trivia-eval.parquet"), &[EVAL_TRIVIA]);
    let rewrapped = EVAL_FUNCTION.replace('\n', " ").to_uppercase();
    let embedded = format!(
        "A blog post quoting a benchmark.\n{}\nThanks for reading.",
        &EVAL_FUNCTION[..170]
    );
    let trivia_reflowed = EVAL_TRIVIA.replace(' ', "\n");
    // 12 consecutive shared words: one short of a 13-word run, so not a copy.
    let near_miss = "The river flows through the city of Vienna and then on to Budapest, I wondered, walking home";
    let docs: Vec<(&str, &str)> = vec![
        (
            "clean-1",
            "The weather report says rain will continue through the weekend across the north.",
        ),
        ("copy-exact", EVAL_FUNCTION),
        ("copy-rewrapped", &rewrapped),
        ("clean-2", "def above_zero(x):\n    return x > 0\n"),
        ("copy-embedded", &embedded),
        ("trivia-reflowed", &trivia_reflowed),
        ("near-miss", near_miss),
    ];
    write_corpus(&d.join("corpus.parquet"), &docs);
    let cfg = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        &format!(
            "type = \"decontaminate\"\n[stages.eval_sets]\nhumaneval = [\"{}\"]\ntrivia = [\"{}\"]\n",
            d.join("code-eval.parquet").display(),
            d.join("trivia-eval.parquet").display()
        ),
    );
    let out = d.join("out");
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "output.write_removed=true",
    ]));
    let kept = string_column(&read_parquet(&out.join("selection.parquet")), "id");
    assert_eq!(kept, ["clean-1", "clean-2", "near-miss"]);
    let s = &stats(&out)[1];
    assert_eq!(s["stage"], "decontaminate");
    assert_eq!(s["seen"], 7);
    assert_eq!(s["dropped_contaminated_humaneval"], 3);
    assert_eq!(s["dropped_contaminated_trivia"], 1);
    let removed = |reason: &str| -> Vec<String> {
        let dir = out.join("removed").join(reason);
        let mut ids = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            ids.extend(string_column(&read_parquet(&e.unwrap().path()), "id"));
        }
        ids
    };
    assert_eq!(
        removed("contaminated_humaneval"),
        ["copy-exact", "copy-rewrapped", "copy-embedded"]
    );
    assert_eq!(removed("contaminated_trivia"), ["trivia-reflowed"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("contaminated_humaneval") && report.contains("copy-exact"),
        "{report}"
    );
    // `plan` describes the stage.
    let plan = ok(&gleaner(&["plan", "--config", cfg.to_str().unwrap()]));
    assert!(
        plan.contains("drop copies of the evaluation sets"),
        "{plan}"
    );
}

#[test]
fn decontaminate_errors_name_the_evaluation_set_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_corpus(&d.join("corpus.parquet"), &[("a", "some text here")]);
    let run = |stage: &str| -> String {
        let cfg = one_stage_config(d, &d.join("corpus.parquet"), stage);
        common::fails(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ]))
    };
    let e = run(
        "type = \"decontaminate\"\n[stages.eval_sets]\nmissing = [\"/nonexistent/eval.parquet\"]\n",
    );
    assert!(
        e.contains("stages[0].eval_sets.missing") && e.contains("/nonexistent/eval.parquet"),
        "{e}"
    );
    let e = run("type = \"decontaminate\"\neval_sets = {}\n");
    assert!(e.contains("stages[0].eval_sets"), "{e}");
    let e = run("type = \"decontaminate\"\nngram = 0\n[stages.eval_sets]\nx = [\"a\"]\n");
    assert!(e.contains("stages[0].ngram"), "{e}");
}

/// Lowercase alphanumeric words (the stage's normalisation, written again here).
fn norm_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Exact Jaccard similarity of two texts' 5-word shingle sets.
fn exact_jaccard(a: &str, b: &str) -> f64 {
    use std::collections::HashSet;
    let shingles = |t: &str| -> HashSet<String> {
        let w = norm_words(t);
        if w.len() <= 5 {
            return HashSet::from([w.join(" ")]);
        }
        w.windows(5).map(|s| s.join(" ")).collect()
    };
    let (x, y) = (shingles(a), shingles(b));
    x.intersection(&y).count() as f64 / x.union(&y).count() as f64
}

/// Near-duplicate families: a base text, a copy with one word changed and re-wrapped, a copy
/// with a quarter of its words changed, in interleaved order.
fn families() -> Vec<(String, String)> {
    let mut docs = Vec::new();
    for f in 0..12 {
        let base: Vec<String> = (0..120)
            .map(|w| format!("f{f}w{}", (w * 7 + f) % 113))
            .collect();
        let mut light = base.clone();
        light[60] = "CHANGED".into();
        let mut heavy = base.clone();
        for k in 0..30 {
            heavy[k * 4] = format!("edit{k}");
        }
        docs.push((format!("f{f}-base"), base.join(" ")));
        docs.push((format!("f{f}-light"), light.join("\n").to_uppercase()));
        docs.push((format!("f{f}-heavy"), heavy.join(" ")));
    }
    docs
}

#[test]
fn minhash_dedup_keeps_the_first_of_each_exact_jaccard_component() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let docs = families();
    let refs: Vec<(&str, &str)> = docs.iter().map(|(i, t)| (i.as_str(), t.as_str())).collect();
    write_corpus(&d.join("corpus.parquet"), &refs);
    // Oracle: connected components of the graph whose edges are pairs at exact Jaccard >= 0.75
    // (every pair here is far from that threshold: above 0.85 or below 0.3), first member kept.
    let n = docs.len();
    let mut component: Vec<usize> = (0..n).collect();
    for i in 0..n {
        for j in 0..i {
            let jac = exact_jaccard(&docs[i].1, &docs[j].1);
            assert!(!(0.3..0.85).contains(&jac), "ambiguous pair {i} {j}: {jac}");
            if jac >= 0.75 {
                let (a, b) = (component[i], component[j]);
                let (lo, hi) = (a.min(b), a.max(b));
                component
                    .iter_mut()
                    .filter(|c| **c == hi)
                    .for_each(|c| *c = lo);
            }
        }
    }
    let expected: Vec<&str> = (0..n)
        .filter(|&i| component[i] == i)
        .map(|i| docs[i].0.as_str())
        .collect();
    assert_eq!(expected.len(), 24, "base and heavy copy of each family");
    let cfg = one_stage_config(d, &d.join("corpus.parquet"), "type = \"minhash_dedup\"");
    for threads in ["1", "2"] {
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--threads",
            threads,
        ]));
        let kept = string_column(&read_parquet(&d.join("out/selection.parquet")), "id");
        assert_eq!(kept, expected);
    }
    let s = &stats(&d.join("out"))[1];
    assert_eq!(
        (s["seen"].as_u64(), s["dropped_near_duplicate"].as_u64()),
        (Some(36), Some(12))
    );
    // Under a memory limit of 160 bytes (runs of 10 band entries for 36 documents) the bands
    // are sorted on disk and merged: the same output files, and no run left behind.
    let in_memory = deterministic_files(&d.join("out"));
    let cache = d.join("cache");
    for threads in ["1", "2"] {
        let out = gleaner(&[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--threads",
            threads,
            "run.memory_limit=\"160B\"",
            &format!("run.cache_dir=\"{}\"", cache.display()),
        ]);
        ok(&out);
        // 14 bands of 36 entries in runs of 10: 4 runs each.
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("sorted 56 runs"), "{log}");
        assert_eq!(deterministic_files(&d.join("out")), in_memory);
    }
    assert_eq!(std::fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
    let bad = fails(&gleaner(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "run.memory_limit=\"4 parsecs\"",
    ]));
    assert!(
        bad.contains("run.memory_limit") && bad.contains("unknown unit `parsecs`"),
        "{bad}"
    );
}

#[test]
fn minhash_dedup_against_an_existing_corpus_drops_its_copies_and_caches_its_bands() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let docs = families();
    // The existing corpus: the base texts of the first four families.
    let existing: Vec<&str> = docs
        .iter()
        .step_by(3)
        .take(4)
        .map(|d| d.1.as_str())
        .collect();
    write_text_file(&d.join("existing.parquet"), &existing);
    let refs: Vec<(&str, &str)> = docs.iter().map(|(i, t)| (i.as_str(), t.as_str())).collect();
    write_corpus(&d.join("corpus.parquet"), &refs);
    let cfg = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        &format!(
            "type = \"minhash_dedup\"\nagainst = [\"{}\"]",
            d.join("existing.parquet").display()
        ),
    );
    let cache = d.join("cache");
    let cache_set = format!("run.cache_dir=\"{}\"", cache.display());
    let mut runs = Vec::new();
    for _ in 0..2 {
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
            &cache_set,
        ]));
        runs.push(string_column(
            &read_parquet(&d.join("out/selection.parquet")),
            "id",
        ));
    }
    assert_eq!(runs[0], runs[1]);
    // Families 0-3 lose base and light copy to the existing corpus (their heavy copies stay);
    // families 4-11 keep their base and heavy copy.
    let mut expected: Vec<String> = Vec::new();
    for f in 0..12 {
        if f >= 4 {
            expected.push(format!("f{f}-base"));
        }
        expected.push(format!("f{f}-heavy"));
    }
    assert_eq!(runs[0], expected);
    let s = &stats(&d.join("out"))[1];
    assert_eq!(s["dropped_near_duplicate_existing"], 8);
    assert_eq!(s["dropped_near_duplicate"], 8);
    assert_eq!(std::fs::read_dir(cache.join("minhash")).unwrap().count(), 1);
}

#[test]
fn language_id_keeps_the_listed_languages_and_writes_code_and_score_columns() {
    use arrow::array::AsArray;
    use arrow::datatypes::Float64Type;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let docs = [
        ("en-1", "The committee will meet on Thursday to discuss the budget for the next year, and every member is expected to attend."),
        ("de-1", "Der Ausschuss trifft sich am Donnerstag, um den Haushalt für das nächste Jahr zu besprechen, und jedes Mitglied wird erwartet."),
        ("fr-1", "Le comité se réunira jeudi pour discuter du budget de l'année prochaine, et chaque membre est tenu d'y assister."),
        ("en-2", "Please remember to water the plants while we are away on holiday, especially the tomatoes in the greenhouse."),
        ("es-1", "El comité se reunirá el jueves para discutir el presupuesto del próximo año, y se espera que asistan todos los miembros."),
    ];
    let out = run_stages(
        d,
        &docs,
        "type = \"language_id\"\nlanguages = [\"eng\", \"deu\"]",
    );
    let shard = read_parquet(&out.join("selected/part-00000.parquet"));
    assert_eq!(string_column(&shard, "id"), ["en-1", "de-1", "en-2"]);
    assert_eq!(string_column(&shard, "lang"), ["eng", "deu", "eng"]);
    let scores = shard[0]
        .column_by_name("lang_score")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!((0..scores.len()).all(|i| scores.value(i) > 0.5 && scores.value(i) <= 1.0));
    let s = &stats(&out)[1];
    assert_eq!(s["stage"], "language_id");
    assert_eq!(
        (
            s["dropped_language_fra"].as_u64(),
            s["dropped_language_spa"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // The removed shards carry the columns too.
    let removed = read_parquet(&out.join("removed/language_fra/part-00000.parquet"));
    assert_eq!(string_column(&removed, "lang"), ["fra"]);
    // A code the models do not know, and an output column the input already has, are errors.
    let bad = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        "type = \"language_id\"\nlanguages = [\"english\"]",
    );
    let e = common::fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        bad.to_str().unwrap(),
    ]));
    assert!(
        e.contains("stages[0].languages[0]") && e.contains("english"),
        "{e}"
    );
    let clash = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        "type = \"language_id\"\ncolumn = \"source\"",
    );
    let e = common::fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        clash.to_str().unwrap(),
    ]));
    assert!(e.contains("stages[0]") && e.contains("`source`"), "{e}");
}

/// Documents whose token counts under the tiny test models' tokenizers were computed with the
/// Hugging Face `tokenizers` Python package (no special tokens, no padding, no truncation).
const TOKENIZED: [(&str, &str, f64); 6] = [
    ("d0", "The quick brown fox jumps over the lazy dog.", 6.0),
    ("d1", "Grüße aus München, sagte sie.", 5.0),
    ("d2", "def f(x):\n    return x * 2", 4.0),
    (
        "d3",
        "A much longer sentence about the weather, which was cold and wet all week long.",
        3.0,
    ),
    ("d4", "short", 2.0),
    ("d5", "Numbers 12345 and 67890 appear here.", 1.0),
];
/// Per document of [`TOKENIZED`]: tiny-bert's WordPiece and tiny-llama's tokenizer.
const BERT_TOKENS: [u64; 6] = [32, 21, 17, 61, 5, 29];
const LLAMA_TOKENS: [u64; 6] = [40, 31, 26, 74, 5, 34];

fn write_scored(path: &Path) {
    use arrow::array::Float64Array;
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(StringArray::from_iter_values(TOKENIZED.iter().map(|d| d.0))) as ArrayRef,
        ),
        (
            "source",
            Arc::new(StringArray::from_iter_values(
                TOKENIZED.iter().map(|_| "web"),
            )) as ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(TOKENIZED.iter().map(|d| d.1))) as ArrayRef,
        ),
        (
            "quality",
            Arc::new(Float64Array::from_iter_values(
                TOKENIZED.iter().map(|d| d.2),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    write_batch(path, &batch);
}

#[test]
fn tokenize_counts_like_the_reference_tokenizer_and_budgets_never_overshoot() {
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_scored(&d.join("corpus.parquet"));
    for (model, counts) in [("tiny-bert", BERT_TOKENS), ("tiny-llama", LLAMA_TOKENS)] {
        let tokenizer = common::repo().join("embed/tests/fixtures").join(model);
        // Best first by `quality`: d0 (counts[0]), d1, d2, ...; the budget holds the first
        // three exactly, so a fourth would overshoot.
        let budget: u64 = counts[..3].iter().sum::<u64>() + counts[3] - 1;
        let cfg = d.join("tok.toml");
        std::fs::write(
            &cfg,
            format!(
                "[input]\npaths = [\"{}\"]\nsource_column = \"source\"\n[output]\ndir = \"{}\"\noverwrite = true\n\
                 [[stages]]\ntype = \"tokenize\"\ntokenizer = \"{}\"\n\
                 [[stages]]\ntype = \"score_select\"\nscore_column = \"quality\"\nbudget_tokens = {budget}\n",
                d.join("corpus.parquet").display(),
                d.join("out").display(),
                tokenizer.display()
            ),
        )
        .unwrap();
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ]));
        let shard = read_parquet(&d.join("out/selected/part-00000.parquet"));
        assert_eq!(string_column(&shard, "id"), ["d0", "d1", "d2"], "{model}");
        let tokens: Vec<u64> = shard[0]
            .column_by_name("tokens")
            .unwrap()
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec();
        assert_eq!(tokens, counts[..3], "{model}");
        // Tokens kept per stage: every document through input and tokenize, the three
        // selected through score_select.
        let st = stats(&d.join("out"));
        let all: u64 = counts.iter().sum();
        let kept: u64 = counts[..3].iter().sum();
        assert_eq!(st[0]["kept_tokens"], all, "{model}");
        assert_eq!(st[1]["kept_tokens"], all, "{model}");
        assert_eq!(st[2]["kept_tokens"], kept, "{model}");
        let report = std::fs::read_to_string(d.join("out/report.md")).unwrap();
        assert!(
            report.contains("kept tokens") && report.contains(&format!("| {kept} |")),
            "{report}"
        );
    }
    // budget_tokens without a tokenize stage, and a tokenizer file that does not parse.
    let cfg = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        "type = \"random_sample\"\nbudget_tokens = 10",
    );
    let e = common::fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert!(
        e.contains("stages[0].budget_tokens") && e.contains("tokenize"),
        "{e}"
    );
    std::fs::write(d.join("broken.json"), "{ not json").unwrap();
    let cfg = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        &format!(
            "type = \"tokenize\"\ntokenizer = \"{}\"",
            d.join("broken.json").display()
        ),
    );
    let e = common::fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert!(
        e.contains("stages[0].tokenizer") && e.contains("broken.json"),
        "{e}"
    );
}

#[test]
fn embedding_similarity_keeps_the_documents_nearest_the_embedded_target() {
    use gleaner_embed::{
        device_from_name, DeviceName, EncoderOptions, LongDocuments, SentenceEncoder,
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pool: Vec<(String, String)> = (0..16)
        .map(|i| {
            let text = match i % 4 {
                0 => format!("def function_{i}(x):\n    return x + {i}"),
                1 => format!("The weather on day {i} was cold and wet with rain."),
                2 => format!("Invoice number {i}: total due 100 dollars by Friday."),
                _ => format!("import numpy as np\narray_{i} = np.zeros({i})"),
            };
            (format!("p{i:02}"), text)
        })
        .collect();
    let refs: Vec<(&str, &str)> = pool.iter().map(|(i, t)| (i.as_str(), t.as_str())).collect();
    write_corpus(&d.join("pool.parquet"), &refs);
    let target = [
        "def add(a, b):\n    return a + b",
        "def square(v):\n    return v * v",
        "import os\npath = os.getcwd()",
    ];
    write_text_file(&d.join("target.parquet"), &target);
    let model = common::repo().join("embed/tests/fixtures/tiny-bert");
    // Oracle: the same model through the library, cosines computed here.
    let device = device_from_name(DeviceName::Cpu).unwrap();
    let options = EncoderOptions {
        max_tokens: 256,
        batch_tokens: 8192,
        long_documents: LongDocuments::Truncate,
    };
    let encoder = SentenceEncoder::load(&model, options, &device).unwrap();
    let unit = |v: &[f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let dim = encoder.dim();
    let targets: Vec<Vec<f32>> = encoder
        .encode(&target)
        .unwrap()
        .chunks(dim)
        .map(unit)
        .collect();
    let texts: Vec<&str> = pool.iter().map(|p| p.1.as_str()).collect();
    let docs: Vec<Vec<f32>> = encoder
        .encode(&texts)
        .unwrap()
        .chunks(dim)
        .map(unit)
        .collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut centroid = vec![0f32; dim];
    for t in &targets {
        centroid.iter_mut().zip(t).for_each(|(c, x)| *c += x);
    }
    let centroid = unit(&centroid);
    for (rule, score) in [
        (
            "centroid",
            Box::new(|e: &[f32]| dot(e, &centroid)) as Box<dyn Fn(&[f32]) -> f32>,
        ),
        (
            "max",
            Box::new(|e: &[f32]| targets.iter().map(|t| dot(e, t)).fold(f32::MIN, f32::max)),
        ),
    ] {
        let mut ranked: Vec<(f32, &str)> = docs
            .iter()
            .zip(&pool)
            .map(|(e, p)| (score(e), p.0.as_str()))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        // The first cut from 4 documents on that no near tie straddles.
        let count = (4..12)
            .find(|&k| ranked[k - 1].0 - ranked[k].0 > 1e-4)
            .expect("a clear cut");
        let mut expected: Vec<&str> = ranked[..count].iter().map(|r| r.1).collect();
        expected.sort();
        let cfg = d.join("es.toml");
        std::fs::write(
            &cfg,
            format!(
                "[input]\npaths = [\"{}\"]\nsource_column = \"source\"\n[output]\ndir = \"{}\"\noverwrite = true\n[run]\ncache_dir = \"{}\"\n\
                 [[stages]]\ntype = \"embed\"\nmodel = \"{}\"\ncolumn = \"emb\"\n\
                 [[stages]]\ntype = \"embedding_similarity\"\ntarget_paths = [\"{}\"]\nsimilarity = \"{rule}\"\ncount = {count}\n",
                d.join("pool.parquet").display(),
                d.join("out").display(),
                d.join("cache").display(),
                model.display(),
                d.join("target.parquet").display()
            ),
        )
        .unwrap();
        ok(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ]));
        let mut kept = string_column(&read_parquet(&d.join("out/selection.parquet")), "id");
        kept.sort();
        assert_eq!(kept, expected, "{rule}");
    }
    // Without an embed stage the config is refused, naming the stage.
    let cfg = one_stage_config(
        d,
        &d.join("pool.parquet"),
        &format!(
            "type = \"embedding_similarity\"\ntarget_paths = [\"{}\"]\ncount = 2",
            d.join("target.parquet").display()
        ),
    );
    let e = common::fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert!(e.contains("stages[0]") && e.contains("embed"), "{e}");
}

#[test]
fn c4_quality_rewrites_kept_documents_and_later_stages_see_the_new_text() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let body = "The river rose overnight. Farmers moved their cattle to higher ground.\n\
                The bridge was closed by noon. Schools sent children home early.\n\
                Volunteers filled sandbags along the bank.";
    let docs = [
        // Menu lines and a cookie banner around the body: removed, the body kept.
        (
            "a",
            format!("Home | News | Sport\n{body}\nThis site uses cookies."),
        ),
        // The same body with other boilerplate: after the rewrite, an exact duplicate of a.
        (
            "b",
            format!("Subscribe now\n{body}\nEnable JavaScript for comments."),
        ),
        ("lorem", format!("{body}\nLorem ipsum dolor sit amet.")),
        ("short", "Only one sentence here.".to_string()),
    ];
    let refs: Vec<(&str, &str)> = docs.iter().map(|(i, t)| (*i, t.as_str())).collect();
    let out = run_stages(
        d,
        &refs,
        "type = \"c4_quality\"\n[[stages]]\ntype = \"exact_dedup\"",
    );
    let shard = read_parquet(&out.join("selected/part-00000.parquet"));
    assert_eq!(string_column(&shard, "id"), ["a"]);
    assert_eq!(string_column(&shard, "text"), [body]);
    let st = stats(&out);
    assert_eq!(st[1]["stage"], "c4_quality");
    assert_eq!(
        (
            st[1]["dropped_lorem_ipsum"].as_u64(),
            st[1]["dropped_too_few_sentences"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // a and b lost their boilerplate (b is then a duplicate); the dropped ones count as drops.
    assert_eq!(st[1]["rewritten"], 2);
    assert_eq!(st[2]["dropped_duplicate"], 1);
    // Removed shards keep the original text.
    let removed = read_parquet(&out.join("removed/duplicate/part-00000.parquet"));
    assert_eq!(string_column(&removed, "text"), [docs[1].1.as_str()]);
    // Added columns describe the written text: tokens of the rewritten document equal the
    // tokens of the body alone.
    let tok = format!(
        "type = \"c4_quality\"\n[[stages]]\ntype = \"tokenize\"\ntokenizer = \"{}\"",
        common::repo()
            .join("embed/tests/fixtures/tiny-llama")
            .display()
    );
    let count = |dir: &Path, docs: &[(&str, &str)]| -> u64 {
        use arrow::datatypes::UInt64Type;
        let out = run_stages(dir, docs, &tok);
        let shard = read_parquet(&out.join("selected/part-00000.parquet"));
        shard[0]
            .column_by_name("tokens")
            .unwrap()
            .as_primitive::<UInt64Type>()
            .value(0)
    };
    let rewritten = count(&d.join("r"), &[("a", docs[0].1.as_str())]);
    let plain = count(&d.join("p"), &[("a", body)]);
    assert_eq!(rewritten, plain);
    // A model stage after c4_quality would read the original text: refused.
    let bad = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        "type = \"c4_quality\"\n[[stages]]\ntype = \"embed\"\nmodel = \"m\"",
    );
    let e = common::fails(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        bad.to_str().unwrap(),
    ]));
    assert!(e.contains("stages[0]") && e.contains("model stages"), "{e}");
}

/// Every text of the selected shards of `out`, by id.
fn selected_texts(out: &Path) -> std::collections::BTreeMap<String, String> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(out.join("selected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    shards.sort();
    let batches: Vec<RecordBatch> = shards.iter().flat_map(|p| read_parquet(p)).collect();
    string_column(&batches, "id")
        .into_iter()
        .zip(string_column(&batches, "text"))
        .collect()
}

/// pii_redact against datatrove's PIIFormatter (scripts/make_pii_oracle.py wrote its
/// outputs): made-up edge cases text for text, and every document of the shipped quickstart
/// corpus (the SHA-256 of each text datatrove changes; the rest unchanged) at 1 and 2 threads.
#[test]
fn pii_redact_gives_datatrove_s_texts() {
    use sha2::{Digest, Sha256};
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = common::repo().join("tests/fixtures/pii");
    let run = |input: &Path, name: &str, metadata: &str, threads: usize| {
        let out = tmp.path().join(format!("{name}-{threads}"));
        common::run_toml(
            &tmp.path().join(format!("{name}-{threads}.toml")),
            &format!(
                "[input]\npaths = [\"{}\"]\nmetadata_columns = [{metadata}]\n[output]\ndir = \"{}\"\n[run]\nthreads = {threads}\n[[stages]]\ntype = \"pii_redact\"\n",
                input.display(),
                out.display()
            ),
        );
        let st = stats(&out);
        (out, st[1].clone())
    };
    let no_metadata = "";

    // Edge cases: each row carries datatrove's text beside its own.
    let (out, st) = run(
        &fixtures.join("edge-cases.jsonl"),
        "edge",
        "\"datatrove_text\"",
        2,
    );
    let shard: Vec<RecordBatch> = read_parquet(&out.join("selected/part-00000.parquet"));
    let (texts, want) = (
        string_column(&shard, "text"),
        string_column(&shard, "datatrove_text"),
    );
    assert_eq!(texts.len(), 9);
    for (got, want) in texts.iter().zip(&want) {
        assert_eq!(got, want);
    }
    assert_eq!(st["stage"], "pii_redact");
    let changed_cases = std::fs::read_to_string(fixtures.join("edge-cases.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|row| row["text"] != row["datatrove_text"])
        .count();
    assert_eq!(st["rewritten"].as_u64(), Some(changed_cases as u64), "{st}");

    // The quickstart corpus.
    let oracle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("datatrove-quickstart.json")).unwrap())
            .unwrap();
    let changed = oracle["changed_sha256"].as_object().unwrap();
    let corpus = common::repo().join("data/quickstart");
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            let batches = read_parquet(&path);
            inputs.extend(
                string_column(&batches, "id")
                    .into_iter()
                    .zip(string_column(&batches, "text")),
            );
        }
    }
    let mut outputs = Vec::new();
    for threads in [1, 2] {
        let (out, st) = run(&corpus, "quickstart", no_metadata, threads);
        let texts = selected_texts(&out);
        assert_eq!(texts.len(), inputs.len());
        for (id, original) in &inputs {
            let got = &texts[id];
            match changed.get(id) {
                Some(hash) => assert_eq!(
                    &format!("{:x}", Sha256::digest(got.as_bytes())),
                    hash.as_str().unwrap(),
                    "{id}: {got}"
                ),
                None => assert_eq!(got, original, "{id}"),
            }
        }
        assert_eq!(st["rewritten"].as_u64(), Some(changed.len() as u64));
        outputs.push(deterministic_files(&out));
    }
    assert_eq!(outputs[0], outputs[1], "the same bytes at 1 and 2 threads");
}

/// Each removed document's reason, from the removed shards of `out`.
fn removed_reasons(out: &Path) -> std::collections::BTreeMap<String, String> {
    let mut reasons = std::collections::BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(out.join("removed")) else {
        return reasons;
    };
    for dir in dirs {
        let dir = dir.unwrap().path();
        let reason = dir.file_name().unwrap().to_string_lossy().into_owned();
        for shard in std::fs::read_dir(&dir).unwrap() {
            for id in string_column(&read_parquet(&shard.unwrap().path()), "id") {
                reasons.insert(id, reason.clone());
            }
        }
    }
    reasons
}

/// fineweb_quality against datatrove's FineWebQualityFilter on every quickstart document
/// (scripts/compare_fineweb_datatrove.py --fixture wrote its verdicts). Without the list rule
/// the rules count characters and lines only, and every decision and reason is datatrove's;
/// with it, datatrove counts spaCy's tokens, and any difference is a list_ratio decision.
#[test]
fn fineweb_quality_decides_as_datatrove_does() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::repo().join("tests/fixtures/fineweb/datatrove-quickstart.json"))
            .unwrap(),
    )
    .unwrap();
    let expected = |key: &str| -> std::collections::BTreeMap<String, String> {
        oracle[key]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, reason)| (id.clone(), reason.as_str().unwrap().to_string()))
            .collect()
    };
    let run = |name: &str, settings: &str| {
        let out = tmp.path().join(name);
        common::run_toml(
            &tmp.path().join(format!("{name}.toml")),
            &format!(
                "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\nwrite_removed = true\n[[stages]]\ntype = \"fineweb_quality\"\n{settings}\n",
                common::repo().join("data/quickstart").display(),
                out.display()
            ),
        );
        removed_reasons(&out)
    };
    let exact = run("without-list-rule", "max_newline_word_ratio = 1e9");
    assert_eq!(exact, expected("without_list_rule"));
    let ours = run("defaults", "");
    let theirs = expected("defaults");
    assert!(ours.len() > 800, "{} dropped", ours.len());
    for id in ours.keys().chain(theirs.keys()) {
        let (a, b) = (ours.get(id), theirs.get(id));
        if a != b {
            let list = Some(&"list_ratio".to_string());
            assert!(
                a == list || b == list,
                "{id}: gleaner {a:?}, datatrove {b:?}"
            );
        }
    }
}

/// pii_redact's settings are checked before anything runs, each error naming its key.
#[test]
fn pii_redact_settings_that_cannot_work_are_refused_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_corpus(&d.join("corpus.parquet"), &[("a", "mail me at a@b.org")]);
    for (stage, expected) in [
        ("emails = false\nips = false", "replace nothing"),
        ("email_replacements = []", "stages[0].email_replacements"),
        ("ip_replacements = []", "stages[0].ip_replacements"),
        ("emails_only = true", "emails_only"),
        (
            "[[stages]]\ntype = \"embed\"\nmodel = \"m\"",
            "model stages",
        ),
    ] {
        let cfg = one_stage_config(
            d,
            &d.join("corpus.parquet"),
            &format!("type = \"pii_redact\"\n{stage}"),
        );
        let e = fails(&gleaner(&[
            "--quiet",
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ]));
        assert!(e.contains(expected), "{stage}: {e}");
        assert!(!d.join("out").exists(), "{stage}");
    }
    // Switched off for IPs, an email is still replaced.
    let out = run_stages(
        &d.join("emails"),
        &[("a", "mail me at a@b.org from 8.8.8.8")],
        "type = \"pii_redact\"\nips = false\nemail_replacements = [\"<email>\"]",
    );
    let shard = read_parquet(&out.join("selected/part-00000.parquet"));
    assert_eq!(
        string_column(&shard, "text"),
        ["mail me at <email> from 8.8.8.8"]
    );
}

#[test]
fn decontaminate_can_flag_copies_in_a_column_instead_of_dropping_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_text_file(&d.join("code-eval.parquet"), &[EVAL_FUNCTION]);
    let rewrapped = EVAL_FUNCTION.replace('\n', " ");
    let docs = [
        ("clean", "Nothing to see here, just a plain sentence."),
        ("copy", rewrapped.as_str()),
    ];
    write_corpus(&d.join("corpus.parquet"), &docs);
    let cfg = one_stage_config(
        d,
        &d.join("corpus.parquet"),
        &format!(
            "type = \"decontaminate\"\naction = \"flag\"\n[stages.eval_sets]\nhumaneval = [\"{}\"]\n",
            d.join("code-eval.parquet").display()
        ),
    );
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    let shard = read_parquet(&d.join("out/selected/part-00000.parquet"));
    assert_eq!(string_column(&shard, "id"), ["clean", "copy"]);
    let flags = shard[0]
        .column_by_name("contaminated")
        .unwrap()
        .as_string::<i32>()
        .clone();
    assert!(flags.is_null(0));
    assert_eq!(flags.value(1), "humaneval");
}

#[test]
fn every_ranking_selector_takes_a_token_budget() {
    // The classifier (as DSIR and embedding similarity) with budget_tokens: the kept tokens
    // never exceed the budget and at least one document is kept.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_scored(&d.join("corpus.parquet"));
    write_text_file(&d.join("target.parquet"), &["def f(x):\n    return x * 2"]);
    let tokenizer = common::repo().join("embed/tests/fixtures/tiny-llama");
    let budget: u64 = 100;
    let cfg = d.join("tok.toml");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [\"{}\"]\nsource_column = \"source\"\n[output]\ndir = \"{}\"\noverwrite = true\n\
             [[stages]]\ntype = \"tokenize\"\ntokenizer = \"{}\"\n\
             [[stages]]\ntype = \"ngram_classifier\"\ntarget_paths = [\"{}\"]\nbudget_tokens = {budget}\n",
            d.join("corpus.parquet").display(),
            d.join("out").display(),
            tokenizer.display(),
            d.join("target.parquet").display()
        ),
    )
    .unwrap();
    ok(&gleaner(&[
        "--quiet",
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    let ids = string_column(&read_parquet(&d.join("out/selection.parquet")), "id");
    let spent: u64 = ids
        .iter()
        .map(|id| LLAMA_TOKENS[TOKENIZED.iter().position(|t| t.0 == id).unwrap()])
        .sum();
    assert!(
        !ids.is_empty() && spent <= budget,
        "{ids:?}: {spent} tokens"
    );
    // The next-best document would not have fitted.
    assert!(ids.len() < TOKENIZED.len());
}
