//! Config parsing, overrides and validation errors that name the key.

use gleaner::config::{apply_override, Config, StageConfig};

const BASE: &str = r#"
[input]
paths = ["data/quickstart"]
source_column = "source"

[output]
dir = "out/x"

[[stages]]
type = "gopher_quality"

[[stages]]
type = "exact_dedup"

[[stages]]
type = "random_sample"
fraction = 0.5
"#;

fn load(overrides: &[&str]) -> anyhow::Result<Config> {
    let doc: toml::Value = toml::from_str(BASE).unwrap();
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::from_value(doc, &o)
}

fn err(overrides: &[&str]) -> String {
    format!("{:#}", load(overrides).unwrap_err())
}

#[test]
fn defaults_fill_unset_keys() {
    let c = load(&[]).unwrap();
    assert_eq!(c.input.text_column, "text");
    assert_eq!(c.input.id_column, "id");
    assert_eq!(c.input.batch_size, 1024);
    assert_eq!(c.output.shard_bytes, 256 * 1024 * 1024);
    assert_eq!(c.output.zstd_level, 3);
    assert!(!c.output.write_removed);
    assert_eq!(c.run.seed, 0);
    match &c.stages[0] {
        StageConfig::GopherQuality(q) => assert_eq!(q.min_words, Some(50)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.stage_names(),
        ["gopher_quality", "exact_dedup", "random_sample"]
    );
}

#[test]
fn overrides_set_nested_keys_with_typed_values() {
    let c = load(&[
        "run.seed=7",
        "stages.2.fraction=0.25",
        "output.dir=/tmp/other dir",
        "input.paths=[\"a\", \"b\"]",
        "stages.0.min_words=3",
    ])
    .unwrap();
    assert_eq!(c.run.seed, 7);
    assert_eq!(c.output.dir, "/tmp/other dir");
    assert_eq!(c.input.paths, ["a", "b"]);
    match (&c.stages[0], &c.stages[2]) {
        (StageConfig::GopherQuality(q), StageConfig::RandomSample(r)) => {
            assert_eq!(q.min_words, Some(3));
            assert_eq!(r.fraction, Some(0.25));
        }
        other => panic!("{other:?}"),
    }
    // An override can create a table that was absent.
    let c = load(&["run.threads=3"]).unwrap();
    assert_eq!(c.run.threads, 3);
}

#[test]
fn unknown_keys_are_errors_naming_key_and_allowed_values() {
    let e = err(&["input.colour=3"]);
    assert!(
        e.contains("input.colour") && e.contains("expected one of `paths`"),
        "{e}"
    );
    let e = err(&["stages.0.min_wrds=3"]);
    assert!(
        e.contains("stages[0]") && e.contains("min_wrds") && e.contains("min_words"),
        "{e}"
    );
    let e = err(&["stages.1.type=fuzzy_dedup"]);
    assert!(
        e.contains("unknown variant `fuzzy_dedup`") && e.contains("exact_dedup"),
        "{e}"
    );
    let e = err(&["turbo=true"]);
    assert!(e.contains("unknown field `turbo`"), "{e}");
}

#[test]
fn wrong_types_and_ranges_name_the_key() {
    let e = err(&["run.seed=\"abc\""]);
    assert!(e.contains("run.seed") && e.contains("expected u64"), "{e}");
    let e = err(&["stages.2.fraction=1.5"]);
    assert!(
        e.contains("stages[2].fraction") && e.contains("(0, 1]"),
        "{e}"
    );
    let e = err(&["stages.2.count=10"]);
    assert!(
        e.contains("stages[2]") && e.contains("exactly one of"),
        "{e}"
    );
    let e = err(&["output.zstd_level=40"]);
    assert!(e.contains("output.zstd_level"), "{e}");
    let e = err(&["input.batch_size=0"]);
    assert!(e.contains("input.batch_size"), "{e}");
    let e = err(&["input.on_bad_file=ignore"]);
    assert!(
        e.contains("input.on_bad_file") && e.contains("expected `error` or `skip`"),
        "{e}"
    );
    let e = err(&["stages.0.min_alpha_words_ratio=2"]);
    assert!(e.contains("stages[0].min_alpha_words_ratio"), "{e}");
    // S2L reads exactly one trajectory source.
    let s2l = |extra: &str| {
        let text = BASE.replace(
            "type = \"random_sample\"\nfraction = 0.5",
            &format!("type = \"s2l\"\ncount = 5\n{extra}"),
        );
        format!(
            "{:#}",
            Config::from_value(toml::from_str(&text).unwrap(), &[]).unwrap_err()
        )
    };
    for extra in [
        "",
        "trajectory_column = \"t\"\ntrajectory_columns = [\"a\", \"b\"]",
    ] {
        let e = s2l(extra);
        assert!(
            e.contains("stages[2]") && e.contains("trajectory_columns"),
            "{e}"
        );
    }
}

#[test]
fn stage_order_is_enforced() {
    let with_stages = |stages: &str| {
        let doc: toml::Value = toml::from_str(&format!(
            "[input]\npaths = [\"data/quickstart\"]\n[output]\ndir = \"out/x\"\n{stages}"
        ))
        .unwrap();
        Config::from_value(doc, &[])
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    // A selector that is not last.
    let e = with_stages(
        "[[stages]]\ntype = \"random_sample\"\ncount = 3\n[[stages]]\ntype = \"exact_dedup\"\n",
    )
    .unwrap_err();
    assert!(
        e.contains("stages[0]") && e.contains("filters first"),
        "{e}"
    );
    // A per-document stage after a pool stage.
    let e =
        with_stages("[[stages]]\ntype = \"exact_dedup\"\n[[stages]]\ntype = \"gopher_quality\"\n")
            .unwrap_err();
    assert!(
        e.contains("stages[1]") && e.contains("filters first"),
        "{e}"
    );
    // c4_badwords reading the languages of a language_id stage that comes after it.
    let badwords = "[[stages]]\ntype = \"c4_badwords\"\nwords_dir = \"tests/fixtures/badwords/lists\"\nlanguage_column = \"lang\"\n";
    let e = with_stages(&format!("{badwords}[[stages]]\ntype = \"language_id\"\n")).unwrap_err();
    assert!(
        e.contains("stages[0].language_column") && e.contains("written by stages[1] (language_id)"),
        "{e}"
    );
    with_stages(&format!("[[stages]]\ntype = \"language_id\"\n{badwords}")).unwrap();
    // Another column than the one language_id writes is the input's: no order to check.
    with_stages(&format!(
        "{}[[stages]]\ntype = \"language_id\"\n",
        badwords.replace("\"lang\"", "\"metadata.language\"")
    ))
    .unwrap();
    // Pool stages in any order, the selector last.
    with_stages("[[stages]]\ntype = \"gopher_quality\"\n[[stages]]\ntype = \"minhash_dedup\"\n[[stages]]\ntype = \"exact_dedup\"\n[[stages]]\ntype = \"random_sample\"\ncount = 3\n").unwrap();
}

#[test]
fn malformed_overrides_are_rejected() {
    let mut doc: toml::Value = toml::from_str(BASE).unwrap();
    assert!(apply_override(&mut doc, "run.seed")
        .unwrap_err()
        .to_string()
        .contains("key.path=value"));
    let e = apply_override(&mut doc, "stages.7.fraction=0.1")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("index 7 out of range") && e.contains("3 elements"),
        "{e}"
    );
    let e = apply_override(&mut doc, "stages.x.fraction=0.1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("array index"), "{e}");
    let e = apply_override(&mut doc, "run..seed=1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty key"), "{e}");
}

#[test]
fn resolved_config_round_trips_and_hash_tracks_content() {
    let c = load(&[]).unwrap();
    let again = Config::from_value(toml::from_str(&c.to_toml()).unwrap(), &[]).unwrap();
    assert_eq!(c, again);
    assert_eq!(c.hash(), again.hash());
    assert_ne!(c.hash(), load(&["run.seed=1"]).unwrap().hash());
}

#[test]
fn example_configs_parse() {
    let mut seen = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = if text.contains("[[methods]]") {
                gleaner::ablate::AblationConfig::load(&path, &[]).map(|_| ())
            } else {
                Config::load(&path, &[]).map(|_| ())
            };
            parsed.unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen} example configs");
}

#[test]
fn new_settings_parse_and_bad_values_name_the_key() {
    use gleaner::config::CompressionConfig;
    let c = load(&[
        "output.compression=\"snappy\"",
        "input.on_bad_record=\"skip\"",
    ])
    .unwrap();
    assert_eq!(c.output.compression, CompressionConfig::Snappy);
    let e = err(&["output.compression=\"lzo\""]);
    assert!(
        e.contains("output.compression") && e.contains("snappy"),
        "{e}"
    );
    let e = err(&["input.on_bad_record=\"ignore\""]);
    assert!(e.contains("input.on_bad_record"), "{e}");
    // Quad's init_policy: the released code's index order by default, all_once on request.
    let quad = |policy: &str| {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/quad.toml"))
                .unwrap();
        let doc: toml::Value = toml::from_str(&text).unwrap();
        let index = match &doc["stages"] {
            toml::Value::Array(stages) => stages
                .iter()
                .position(|s| s["type"].as_str() == Some("quad"))
                .unwrap(),
            _ => unreachable!(),
        };
        Config::from_value(doc, &[format!("stages.{index}.init_policy=\"{policy}\"")])
    };
    let c = quad("all_once").unwrap();
    let policy = c.stages.iter().find_map(|s| match s {
        StageConfig::Quad(q) => Some(q.init_policy),
        _ => None,
    });
    assert_eq!(
        policy,
        Some(gleaner_selectors::quad::bandit::InitPolicy::AllOnce)
    );
    let e = format!("{:#}", quad("random").unwrap_err());
    assert!(e.contains("stages[2]") && e.contains("all_once"), "{e}");
}

#[test]
fn object_storage_keys_are_checked_where_they_cannot_work() {
    let e = err(&["run.executor=\"slurm\"", "output.dir=\"s3://bucket/run\""]);
    assert!(
        e.contains("output.dir") && e.contains("s3://bucket/run"),
        "{e}"
    );
    let e = err(&[
        "run.executor=\"slurm\"",
        "run.cache_dir=\"s3://bucket/cache\"",
    ]);
    assert!(
        e.contains("run.cache_dir") && e.contains("s3://bucket/cache"),
        "{e}"
    );
    let e = err(&["output.format=\"jsonl\"", "output.compression=\"brotli\""]);
    assert!(e.contains("output.compression"), "{e}");
    let c = load(&["output.format=\"jsonl\"", "output.dir=\"s3://bucket/run\""]).unwrap();
    assert_eq!(c.output.dir, "s3://bucket/run");
}
