//! The read-only CLI verbs: `inspect`, `plan` and `status`.

use crate::config::{Config, StageConfig};
use crate::layout;
use crate::run::open_corpus;
use anyhow::{Context, Result};
use gleaner_storage::inspect::describe_file;
use gleaner_storage::manifest::{Manifest, MANIFEST_FILE};
use gleaner_storage::partition::{column_types, hive_partitions};
use gleaner_storage::reader::{ColumnSpec, CorpusReader, OnBadFile};
use gleaner_storage::resolve_inputs;
use rayon::prelude::*;
use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn snippet(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        flat
    } else {
        let cut: String = flat.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

/// `gleaner inspect PATH`: schema, rows, sizes and sample documents of each file.
pub fn inspect(path: &str, text_column: &str, samples: usize) -> Result<String> {
    let files = resolve_inputs(&[path.to_string()])?;
    let partition_types = column_types(files.iter().map(|f| f.path.as_path()));
    let mut s = String::new();
    let mut total_rows = 0;
    for f in &files {
        let d = describe_file(f)?;
        total_rows += d.rows;
        let _ = writeln!(s, "{}", d.path.display());
        let _ = writeln!(
            s,
            "  format: {}, size: {} ({} bytes), rows: {}, {}: {}",
            d.format,
            human(d.bytes),
            d.bytes,
            d.rows,
            match d.format.as_str() {
                "parquet" => "row groups",
                "arrow ipc" | "warc" => "units",
                _ => "chunks",
            },
            d.row_groups
        );
        if let Some(by) = &d.created_by {
            let _ = writeln!(s, "  created by: {by}");
        }
        let _ = writeln!(
            s,
            "  schema{}:",
            if d.format.starts_with("jsonl") {
                " (inferred from the first lines)"
            } else {
                ""
            }
        );
        for field in d.schema.fields() {
            let _ = writeln!(
                s,
                "    {}: {}{}",
                field.name(),
                field.data_type(),
                if field.is_nullable() {
                    ""
                } else {
                    " (not null)"
                }
            );
        }
        for column in hive_partitions(&d.path) {
            if d.schema.field_with_name(&column.name).is_err() {
                let _ = writeln!(
                    s,
                    "    {}: {}, from the path ({}; a partition directory)",
                    column.name,
                    partition_types[&column.name],
                    column
                        .value
                        .as_deref()
                        .map_or("null".into(), |v| format!("`{v}`"))
                );
            }
        }
        for (field, reason) in &d.untyped {
            let _ = writeln!(
                s,
                "    {field}: (left out: no Arrow type fits its values, {reason}; a run reads \
                 the other fields)"
            );
        }
        if !d.columns.is_empty() {
            let _ = writeln!(s, "  columns (compressed / uncompressed, codec):");
        }
        for c in &d.columns {
            let _ = writeln!(
                s,
                "    {}: {} / {}, {}",
                c.name,
                human(c.compressed_bytes),
                human(c.uncompressed_bytes),
                c.compression
            );
        }
    }
    let _ = writeln!(s, "{} file(s), {} rows", files.len(), total_rows);
    if samples > 0 {
        let spec = ColumnSpec {
            text: text_column.to_string(),
            ..ColumnSpec::default()
        };
        let reader = CorpusReader::open(&[path.to_string()], spec, OnBadFile::Error, samples)?;
        let _ = writeln!(s, "sample documents:");
        if let Some(batch) = reader.read_unit(0)?.next() {
            let batch = batch?;
            for i in 0..batch.len().min(samples) {
                let text = batch.text(i).unwrap_or("");
                let _ = writeln!(
                    s,
                    "  [{}] ({} chars) {}",
                    batch.id(i),
                    text.chars().count(),
                    snippet(text, 160)
                );
            }
        }
    }
    Ok(s)
}

/// `gleaner inspect --scan`: reads every text value (validating it) and reports throughput.
pub fn scan(path: &str, text_column: &str, threads: usize) -> Result<String> {
    let spec = ColumnSpec {
        text: text_column.to_string(),
        ..ColumnSpec::default()
    };
    let start = Instant::now();
    let reader = CorpusReader::open(&[path.to_string()], spec, OnBadFile::Error, 8192)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let per_unit: Vec<Result<(u64, u64)>> = pool.install(|| {
        (0..reader.units().len())
            .into_par_iter()
            .map(|u| {
                let (mut docs, mut bytes) = (0u64, 0u64);
                for b in reader.read_unit(u)? {
                    let b = b?;
                    for i in 0..b.len() {
                        docs += 1;
                        bytes += b.text(i).map_or(0, |t| t.len() as u64);
                    }
                }
                Ok((docs, bytes))
            })
            .collect()
    });
    let (mut docs, mut bytes) = (0, 0);
    for r in per_unit {
        let (d, b) = r?;
        docs += d;
        bytes += b;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "scanned {docs} documents, {bytes} text bytes in {} file(s), {} units, {secs:.3} s ({:.1} MB/s of text)",
        reader.files().len(),
        reader.units().len(),
        bytes as f64 / 1e6 / secs.max(1e-9)
    ))
}

fn describe_stage(stage: &StageConfig) -> String {
    match stage {
        StageConfig::GopherQuality(_) => "map: per-document Gopher quality rules".into(),
        StageConfig::Embed(c) => format!(
            "map (before the scan, cached as sidecars): sentence embeddings from `{}` into column `{}` (max {} tokens, {:?})",
            c.model, c.column, c.max_tokens, c.long_documents
        ),
        StageConfig::LmScore(c) => format!(
            "map (before the scan, cached as sidecars): mean next-token loss under `{}` into column `{}` (max {} tokens, {:?})",
            c.model, c.column, c.max_tokens, c.long_documents
        ),
        StageConfig::AttentionInfluence(c) => format!(
            "map (before the scan, cached as sidecars): {}; then per document ({:?} formula) the loss increase under `{}` when those heads attend uniformly ({:?} positions), into column `{}` (max {} tokens, {:?})",
            if c.heads.is_empty() {
                format!(
                    "detect retrieval heads with {} seeded {}-shot key-value probes of at most {} tokens (greedy decoding, up to {} tokens)",
                    c.probe.num_samples, c.probe.shots, c.probe.max_total_tokens, c.max_decode_tokens
                )
            } else {
                format!("mask the {} given heads", c.heads.len())
            },
            c.formula,
            c.model,
            c.uniform_scope,
            c.column,
            c.max_tokens,
            c.long_documents
        ),
        StageConfig::LossTrajectory(c) => format!(
            "map (before the scan, cached as sidecars): train a {}-layer, {}-wide byte-level LM on the input for {} steps, then each document's mean loss over its first {} bytes at {} checkpoints into vector column `{}`",
            c.proxy.layers,
            c.proxy.hidden,
            c.proxy.steps(),
            c.max_tokens,
            c.checkpoints,
            c.column
        ),
        StageConfig::GopherRepetition(_) => "map: per-document Gopher repetition rules".into(),
        StageConfig::C4Quality(_) => {
            "map: C4 rules (removes lines, rewriting the text; drops documents)".into()
        }
        StageConfig::FinewebQuality(_) => {
            "map: per-document FineWeb rules (punctuated lines, short lines, duplicated lines, line breaks per word)".into()
        }
        StageConfig::PiiRedact(c) => format!(
            "map: replace {} with placeholders in turn, rewriting the text (drops nothing)",
            [
                c.emails.then_some("email addresses"),
                c.ips.then_some(if c.only_public_ips {
                    "globally reachable IPv4 addresses"
                } else {
                    "IPv4 addresses"
                }),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
        ),
        StageConfig::HtmlExtract(c) => format!(
            "map: the main text of each HTML page (trafilatura's extraction{}{}), rewriting the text; drops pages without one",
            if c.favor_precision { ", favouring precision" } else { "" },
            if c.include_tables { "" } else { ", tables left out" }
        ),
        StageConfig::C4Badwords(c) => format!(
            "map: drops documents holding a word of the {} bad-words list{}{}",
            match &c.language_column {
                Some(column) => format!(
                    "document's language (column {column:?}, else {:?}; without a list: {})",
                    c.language,
                    match c.missing_list {
                        gleaner_selectors::badwords::MissingList::Keep => "kept",
                        gleaner_selectors::badwords::MissingList::Drop => "dropped",
                    }
                ),
                None => format!("{:?}", c.language),
            },
            c.words_dir
                .as_ref()
                .map(|d| format!(" (in {})", d.display()))
                .unwrap_or_default(),
            if c.keep_fraction > 0.0 {
                format!(", keeping a fraction {} of them", c.keep_fraction)
            } else {
                String::new()
            }
        ),
        StageConfig::UrlFilter(c) => format!(
            "map: drops pages whose URL (column {:?}) is on a block list or holds banned words{}",
            c.url_column,
            c.lists_dir
                .as_ref()
                .map(|d| format!(" (lists in {})", d.display()))
                .unwrap_or_default()
        ),
        StageConfig::EmbeddingSimilarity(c) => format!(
            "reduce: keep the {} most similar ({:?}) to the embedded target {:?}",
            c.fraction.map(|f| format!("fraction {f}")).or(c.count.map(|n| format!("{n} documents"))).unwrap_or_default(),
            c.similarity,
            c.target_paths
        ),
        StageConfig::NgramClassifier(c) => format!(
            "reduce: keep the {} the hashed {}-gram classifier (target {:?} versus the pool) scores highest",
            c.fraction.map(|f| format!("fraction {f}")).or(c.count.map(|n| format!("{n} documents"))).unwrap_or_default(),
            c.ngrams,
            c.target_paths
        ),
        StageConfig::MinhashDedup(c) => format!(
            "reduce: MinHash near-duplicate removal ({}-word shingles, {} bands of {} rows){}",
            c.ngram,
            c.bands,
            c.rows_per_band,
            if c.against.is_empty() {
                String::new()
            } else {
                format!(", also against {:?}", c.against)
            }
        ),
        StageConfig::Tokenize(c) => format!(
            "map: token counts with {} into column `{}` (the unit of budget_tokens)",
            c.tokenizer, c.column
        ),
        StageConfig::LanguageId(c) => format!(
            "map: language of the first {} characters into columns `{}`, `{}`; keep {}",
            c.max_chars,
            c.column,
            c.score_column,
            if c.languages.is_empty() {
                "every language".to_string()
            } else {
                format!("{:?}", c.languages)
            }
        ),
        StageConfig::Decontaminate(c) => format!(
            "map: drop copies of the evaluation sets {:?} (normalised text or a shared {}-word run)",
            c.eval_sets.keys().collect::<Vec<_>>(),
            c.ngram
        ),
        StageConfig::ExactDedup(n) => format!(
            "map: hash normalised text (lowercase={}, strip_punctuation={}, strip_digits={}); reduce: keep first occurrence in corpus order",
            n.lowercase, n.strip_punctuation, n.strip_digits
        ),
        StageConfig::Semdedup(c) => format!(
            "reduce: spherical k-means ({} clusters, {} iterations on at most {} documents per cluster) of the embeddings, then remove documents with cosine > {} to an earlier one in their cluster (keep {:?})",
            c.n_clusters,
            c.kmeans_iters,
            c.max_points_per_cluster,
            1.0 - c.eps,
            c.which_to_keep
        ),
        StageConfig::Dsir(c) => format!(
            "map: hashed {}-gram counts ({} buckets) of the pool; reduce: target counts from {:?}, score pass, then {} of {}",
            c.ngrams,
            c.num_buckets,
            c.target_paths,
            if c.top_k { "top-k" } else { "Gumbel-top-k sampling" },
            c.fraction.map(|f| format!("fraction {f}")).or(c.count.map(|n| format!("{n} documents"))).unwrap_or_default()
        ),
        StageConfig::ScoreFilter(c) => format!(
            "map: keep documents with `{}` in [{}, {}]{}",
            c.score_column,
            c.min.map_or("-inf".to_string(), |v| v.to_string()),
            c.max.map_or("+inf".to_string(), |v| v.to_string()),
            if c.keep_missing { " (nulls kept)" } else { "" }
        ),
        StageConfig::S2l(c) => format!(
            "reduce: k-means ({} clusters) of the loss trajectories in `{}`, smallest-first balanced allocation{}",
            c.n_clusters,
            c.trajectory_column
                .clone()
                .unwrap_or_else(|| c.trajectory_columns.join("`, `")),
            if c.per_source { ", stratified by source" } else { "" }
        ),
        StageConfig::ScoreSelect(c) => format!(
            "reduce: {} by column `{}`{}{}",
            if c.sample { format!("Gumbel-top-k sampling (temperature {})", c.temperature) } else { "top-k".to_string() },
            c.score_column,
            c.combine_with.as_ref().map(|w| format!(" combined with `{w}` ({:?})", c.combine)).unwrap_or_default(),
            if c.per_source {
                ", split across sources smallest-first"
            } else if c.within_source {
                ", the same fraction of every source, ranked within the source"
            } else {
                ""
            }
        ),
        StageConfig::Quad(c) => format!(
            "reduce: spherical k-means ({} clusters) of the embeddings as bandit arms; up to {} rounds of {} UCB-chosen arms (alpha {}, neighbours within {}), each probing {} documents by their {:?}-preconditioned gradient cosine under `{}` (layers {}, {:?}) with {} reference documents from {:?}, accepting {} documents ({:?} blocks) when mean q > tau ({}); budget {}",
            c.n_clusters,
            c.max_rounds,
            c.arms_per_round,
            c.alpha,
            c.neighbor_radius,
            c.probe_size,
            c.curvature,
            c.model,
            if c.layers.is_empty() { "last two".to_string() } else { format!("{:?}", c.layers) },
            c.projections,
            c.reference_max_documents,
            c.reference_paths,
            c.block_size,
            c.block_rule,
            c.reward_offset_rule().describe(),
            c.budget_docs
                .map(|d| format!("{d} documents"))
                .or(c.budget_tokens.map(|t| format!("{t} tokens")))
                .unwrap_or_default()
        ),
        StageConfig::RandomSample(r) => {
            let size = match (r.fraction, r.count, r.budget_words) {
                (Some(f), _, _) => format!("fraction {f}"),
                (_, Some(c), _) => format!("{c} documents"),
                (_, _, Some(b)) => format!("{b} whitespace tokens"),
                _ => String::new(),
            };
            format!("reduce: seeded uniform sample of {size}")
        }
    }
}

/// `gleaner plan`: the stages and work units a run would execute, without running it.
pub fn plan(config: &Config, max_units: usize) -> Result<String> {
    let reader = open_corpus(config)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "inputs: {} file(s), {} rows, {} work units (row groups)",
        reader.files().len(),
        reader.total_rows(),
        reader.units().len()
    );
    for f in reader.files() {
        let _ = writeln!(
            s,
            "  {} ({}, {} rows, {} row groups{})",
            f.path.display(),
            human(f.bytes),
            f.rows,
            f.row_groups,
            if f.has_id { "" } else { ", ids derived" }
        );
    }
    for sk in reader.skipped() {
        let _ = writeln!(s, "  SKIPPED {}: {}", sk.path.display(), sk.reason);
    }
    let schema: Vec<String> = reader
        .output_schema()
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    let _ = writeln!(s, "projected columns: {}", schema.join(", "));
    let _ = writeln!(s, "phases:");
    let _ = writeln!(
        s,
        "  1. scan (map over {} units): read, drop empty/too-large (> {} bytes) documents",
        reader.units().len(),
        config.input.max_doc_bytes
    );
    for (name, stage) in config.stage_names().iter().zip(&config.stages) {
        let _ = writeln!(s, "     stage {name}: {}", describe_stage(stage));
    }
    let _ = writeln!(
        s,
        "  2. decide (reduce, corpus order): dedup and selection, write {}",
        layout::SELECTION_FILE
    );
    let _ =
        writeln!(
        s,
        "  3. write (map over units with kept rows): {}/part-NNNNN.parquet, {:?}, rotate at {}{}",
        config.output.dir.trim_end_matches('/').to_string() + "/" + layout::SELECTED_DIR,
        config.output.codec(),
        human(config.output.shard_bytes),
        if config.output.write_removed { "; dropped rows to removed/<reason>/" } else { "" }
    );
    let workers = (config.run.executor == crate::config::Executor::Slurm)
        .then(|| config.slurm.clone().unwrap_or_default().workers);
    if let Some(w) = workers {
        let _ = writeln!(
            s,
            "executor: slurm; phase 1 (model stages and scan) as an array of {w} map tasks, each unit to task sha256(file:row_group) mod {w}; phases 2 and 3 as one reduce job after every map task"
        );
    }
    let _ = writeln!(s, "work units:");
    for (i, u) in reader.units().iter().enumerate().take(max_units) {
        let file = &reader.files()[u.file].path;
        let _ = writeln!(
            s,
            "  #{i}: {} row group {} rows {}..{} ({}){}",
            file.display(),
            u.row_group,
            u.first_row,
            u.first_row + u.rows,
            human(u.compressed_bytes),
            workers
                .map(|w| format!(
                    ", map task {}",
                    crate::distributed::rank_of(file, u.row_group, w)
                ))
                .unwrap_or_default()
        );
    }
    if reader.units().len() > max_units {
        let _ = writeln!(s, "  ... {} more", reader.units().len() - max_units);
    }
    let _ = writeln!(
        s,
        "seed: {}, threads: {}",
        config.run.seed,
        if config.run.threads == 0 {
            "all cores".to_string()
        } else {
            config.run.threads.to_string()
        }
    );
    Ok(s)
}

/// `gleaner status OUT_DIR`: a completed run's counts, or where an incomplete one stopped.
/// An object-storage prefix holds a run only once it is complete (see `remote`), so its
/// status is read from the published manifest and stats.
pub fn status(out: &str) -> Result<String> {
    if !gleaner_storage::object::is_remote(out) {
        return local_status(Path::new(out), out);
    }
    let prefix = gleaner_storage::object::ObjectLocation::parse(out.trim_end_matches('/'))?;
    if prefix.join(MANIFEST_FILE).head()?.is_none() {
        return Ok(format!(
            "{out}: no completed run (a run publishes its folder only once it is complete)\n"
        ));
    }
    let local = tempfile::tempdir()?;
    for name in [MANIFEST_FILE, layout::STATS_FILE] {
        let bytes = prefix.join(name).get()?;
        std::fs::write(local.path().join(name), &bytes)?;
    }
    local_status(local.path(), out)
}

/// The status of the run folder `out`, named `shown` in the text.
fn local_status(out: &Path, shown: &str) -> Result<String> {
    let mut s = String::new();
    if !out.exists() {
        anyhow::bail!("{shown}: no such output directory");
    }
    if out.join(MANIFEST_FILE).exists() {
        let m = Manifest::read(out)?;
        let _ = writeln!(s, "{shown}: complete ({})", m.code_version);
        let _ = writeln!(s, "config hash: {}", m.config_hash);
        let rows_in: u64 = m.inputs.iter().map(|i| i.rows).sum();
        let rows_out: u64 = m.outputs.iter().map(|o| o.rows).sum();
        let _ = writeln!(
            s,
            "inputs: {} file(s), {} rows; skipped: {}",
            m.inputs.len(),
            rows_in,
            m.skipped_inputs.len()
        );
        let _ = writeln!(
            s,
            "selected: {} rows in {} shard(s)",
            rows_out,
            m.outputs.len()
        );
        for (reason, shards) in &m.removed {
            let _ = writeln!(
                s,
                "removed/{reason}: {} rows",
                shards.iter().map(|x| x.rows).sum::<u64>()
            );
        }
        let stats_path = out.join(layout::STATS_FILE);
        let stats: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&stats_path).with_context(|| stats_path.display().to_string())?,
        )?;
        for st in stats.as_array().into_iter().flatten() {
            let dropped: Vec<String> = st
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| k.strip_prefix("dropped_").map(|r| format!("{r} {v}")))
                .collect();
            let _ = writeln!(
                s,
                "  {:<20} seen {:>9}  kept {:>9}  dropped {}",
                st["stage"].as_str().unwrap_or("?"),
                st["seen"],
                st["kept"],
                if dropped.is_empty() {
                    "0".to_string()
                } else {
                    dropped.join(", ")
                }
            );
        }
    } else if let Some(sharded) = crate::distributed::status(out) {
        let _ = writeln!(s, "{}: incomplete sharded run", shown);
        s.push_str(&sharded);
    } else {
        let p = out.join(layout::PROGRESS_FILE);
        match std::fs::read(&p) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).with_context(|| p.display().to_string())?;
                let _ = writeln!(
                    s,
                    "{}: incomplete, last phase `{}` {}",
                    shown,
                    v["phase"].as_str().unwrap_or("?"),
                    v["detail"]
                );
            }
            Err(_) => {
                let _ = writeln!(
                    s,
                    "{}: no gleaner run found (no manifest.json or progress.json)",
                    shown
                );
            }
        }
    }
    Ok(s)
}
