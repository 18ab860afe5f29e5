//! `gleaner ablate`: run several selection methods on the same pool and compare them.
//!
//! The ablation config holds the shared `[input]`, `[output]` and `[run]` tables and a list
//! of `[[methods]]`, each a name and its own `stages`. Each method runs as an ordinary run
//! into `<output.dir>/<name>/`; then `comparison.json` and `comparison.html` compare the
//! selections: kept counts and tokens, pairwise Jaccard overlap of kept ids, per-source
//! composition against the pool, score histograms, and the documents the methods disagree on.
//! With `evaluate.baseline_draws` above one, the baseline also runs with other seeds into
//! `<output.dir>/<baseline>-draw-<k>/`, for `gleaner evaluate` (not part of the comparison).

pub use crate::config::ablation::{AblationConfig, Method};
use crate::layout;
use crate::run::{run, RunOptions};
use anyhow::{anyhow, Context, Result};
use arrow::array::{Array, AsArray};
use gleaner_storage::atomic::write_bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What one method selected, read back from its outputs.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    /// Method name.
    pub name: String,
    /// Documents kept.
    pub kept: u64,
    /// Whitespace tokens kept.
    pub kept_words: u64,
    /// Share of the selection per source.
    pub source_share: BTreeMap<String, f64>,
    /// 10-bin histogram of the selection's scores, when the method scores: (low, high, count).
    pub score_histogram: Vec<(f64, f64, u64)>,
    /// Share of the selection per pool cluster (empty without embeddings).
    pub cluster_share: Vec<f64>,
}

/// The comparison written as `comparison.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Documents in the pool.
    pub pool: u64,
    /// Share of the pool per source.
    pub pool_source_share: BTreeMap<String, f64>,
    /// Share of the pool per cluster of its embeddings (empty without `input.embedding_column`).
    pub pool_cluster_share: Vec<f64>,
    /// Per method, in config order.
    pub methods: Vec<MethodSummary>,
    /// Jaccard overlap of kept ids, `jaccard[i][j]` for methods i and j.
    pub jaccard: Vec<Vec<f64>>,
    /// Documents kept by about half of the methods (most disagreement first): id and keepers.
    pub disagreements: Vec<(String, Vec<String>)>,
}

fn read_selection(path: &Path) -> Result<(Vec<String>, Vec<Option<f64>>)> {
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let (mut ids, mut scores) = (Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch?;
        let id = batch
            .column_by_name("id")
            .ok_or_else(|| anyhow!("{}: no id column", path.display()))?
            .as_string::<i32>()
            .clone();
        let score = batch
            .column_by_name("score")
            .ok_or_else(|| anyhow!("{}: no score column", path.display()))?
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone();
        for i in 0..batch.num_rows() {
            ids.push(id.value(i).to_string());
            scores.push(score.is_valid(i).then(|| score.value(i)));
        }
    }
    Ok((ids, scores))
}

fn histogram(values: &[f64]) -> Vec<(f64, f64, u64)> {
    if values.is_empty() {
        return Vec::new();
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = ((hi - lo) / 10.0).max(f64::MIN_POSITIVE);
    let mut counts = [0u64; 10];
    for v in values {
        counts[(((v - lo) / width) as usize).min(9)] += 1;
    }
    counts
        .iter()
        .enumerate()
        .map(|(b, &c)| (lo + b as f64 * width, lo + (b + 1) as f64 * width, c))
        .collect()
}

fn shares(counts: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let total: u64 = counts.values().sum();
    counts
        .iter()
        .map(|(k, &v)| {
            (
                k.clone(),
                if total == 0 {
                    0.0
                } else {
                    v as f64 / total as f64
                },
            )
        })
        .collect()
}

/// The cluster of every pool document with an embedding, by id: spherical k-means of
/// `input.embedding_column` (k = `comparison_clusters`, capped at the pool size, seeded by
/// `run.seed`), and the number of clusters. Empty without an embedding column.
fn pool_clusters(config: &AblationConfig) -> Result<(BTreeMap<String, u32>, usize)> {
    use gleaner_selectors::kmeans::{fit_sampled, normalize, KMeansConfig, Metric};
    let Some(column) = &config.input.embedding_column else {
        return Ok((BTreeMap::new(), 0));
    };
    let spec = gleaner_storage::reader::ColumnSpec {
        text: config.input.text_column.clone(),
        id: config.input.id_column.clone(),
        vectors: vec![column.clone()],
        ..Default::default()
    };
    let reader = gleaner_storage::reader::CorpusReader::open(
        &config.input.paths,
        spec,
        gleaner_storage::reader::OnBadFile::Skip,
        config.input.batch_size,
    )?;
    let (mut ids, mut data, mut dim) = (Vec::new(), Vec::new(), 0usize);
    for u in 0..reader.units().len() {
        let Ok(batches) = reader.read_unit(u) else {
            continue;
        };
        for batch in batches.flatten() {
            for i in 0..batch.len() {
                if let Some(v) = batch.vector(0, i).filter(|v| !v.is_empty()) {
                    if dim == 0 {
                        dim = v.len();
                    }
                    if v.len() == dim {
                        ids.push(batch.id(i).into_owned());
                        data.extend_from_slice(v);
                    }
                }
            }
        }
    }
    if ids.is_empty() {
        return Ok((BTreeMap::new(), 0));
    }
    data.chunks_mut(dim).for_each(normalize);
    let k = config.comparison_clusters.clamp(1, ids.len());
    let kmeans = KMeansConfig {
        max_iters: 20,
        metric: Metric::Cosine,
        seed: config.run.seed,
        ..KMeansConfig::new(k)
    };
    let fit = fit_sampled(&data, dim, &kmeans, 256);
    Ok((ids.into_iter().zip(fit.assignments).collect(), k))
}

/// Shares of `ids` per cluster (ids without a cluster left out).
fn cluster_shares<'a>(
    ids: impl Iterator<Item = &'a String>,
    clusters: &BTreeMap<String, u32>,
    k: usize,
) -> Vec<f64> {
    let mut counts = vec![0u64; k];
    for id in ids {
        if let Some(&c) = clusters.get(id) {
            counts[c as usize] += 1;
        }
    }
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}

/// Builds the comparison from the methods' output folders.
pub fn compare(config: &AblationConfig) -> Result<Comparison> {
    let (clusters, k) = pool_clusters(config)?;
    let mut kept_sets: Vec<BTreeSet<String>> = Vec::new();
    let mut methods = Vec::new();
    let mut pool = 0;
    let mut pool_sources: BTreeMap<String, u64> = BTreeMap::new();
    for m in &config.methods {
        let dir = PathBuf::from(&config.method_config(m).output.dir);
        let (ids, scores) = read_selection(&dir.join(layout::SELECTION_FILE))?;
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(layout::REPORT_JSON))?)?;
        pool = report["seen"].as_u64().unwrap_or(0);
        let mut kept_sources = BTreeMap::new();
        for (name, c) in report["sources"].as_object().into_iter().flatten() {
            pool_sources.insert(name.clone(), c["pool"].as_u64().unwrap_or(0));
            kept_sources.insert(name.clone(), c["kept"].as_u64().unwrap_or(0));
        }
        let scored: Vec<f64> = scores.iter().flatten().copied().collect();
        methods.push(MethodSummary {
            name: m.name.clone(),
            kept: ids.len() as u64,
            kept_words: report["kept_words"].as_u64().unwrap_or(0),
            source_share: shares(&kept_sources),
            score_histogram: histogram(&scored),
            cluster_share: cluster_shares(ids.iter(), &clusters, k),
        });
        kept_sets.push(ids.into_iter().collect());
    }
    let jaccard = kept_sets
        .iter()
        .map(|a| {
            kept_sets
                .iter()
                .map(|b| {
                    let union = a.union(b).count();
                    if union == 0 {
                        1.0
                    } else {
                        a.intersection(b).count() as f64 / union as f64
                    }
                })
                .collect()
        })
        .collect();
    let mut keepers: BTreeMap<&String, Vec<String>> = BTreeMap::new();
    for (set, m) in kept_sets.iter().zip(&config.methods) {
        for id in set {
            keepers.entry(id).or_default().push(m.name.clone());
        }
    }
    let half = config.methods.len() as f64 / 2.0;
    let mut disagreements: Vec<(String, Vec<String>)> = keepers
        .into_iter()
        .filter(|(_, k)| k.len() < config.methods.len())
        .map(|(id, k)| (id.clone(), k))
        .collect();
    disagreements.sort_by(|a, b| {
        ((a.1.len() as f64 - half).abs())
            .total_cmp(&(b.1.len() as f64 - half).abs())
            .then(a.0.cmp(&b.0))
    });
    disagreements.truncate(20);
    Ok(Comparison {
        pool,
        pool_source_share: shares(&pool_sources),
        pool_cluster_share: cluster_shares(clusters.keys(), &clusters, k),
        methods,
        jaccard,
        disagreements,
    })
}

fn render_html(c: &Comparison) -> String {
    let mut h = String::from("<!doctype html><meta charset=\"utf-8\"><title>gleaner ablation</title><body style=\"font-family:sans-serif\">");
    let _ = write!(h, "<h1>Ablation</h1><p>Pool: {} documents.</p><h2>Selections</h2><table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\"><tr><th>method</th><th>kept</th><th>tokens</th></tr>", c.pool);
    for m in &c.methods {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            m.name, m.kept, m.kept_words
        );
    }
    h.push_str("</table><h2>Jaccard overlap of kept ids</h2><table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\"><tr><th></th>");
    for m in &c.methods {
        let _ = write!(h, "<th>{}</th>", m.name);
    }
    h.push_str("</tr>");
    for (m, row) in c.methods.iter().zip(&c.jaccard) {
        let _ = write!(h, "<tr><th>{}</th>", m.name);
        for v in row {
            let shade = 255 - (v * 155.0) as u8;
            let _ = write!(
                h,
                "<td style=\"background:rgb({shade},{shade},255)\">{v:.3}</td>"
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><h2>Source composition (share of selection; pool first)</h2><table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\"><tr><th>source</th><th>pool</th>");
    for m in &c.methods {
        let _ = write!(h, "<th>{}</th>", m.name);
    }
    h.push_str("</tr>");
    for (source, share) in &c.pool_source_share {
        let _ = write!(h, "<tr><td>{source}</td><td>{:.1}%</td>", share * 100.0);
        for m in &c.methods {
            let v = m.source_share.get(source).copied().unwrap_or(0.0);
            let _ = write!(h, "<td>{:.1}%</td>", v * 100.0);
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    if c.pool_cluster_share.is_empty() {
        h.push_str("<p>Per-cluster composition: set <code>input.embedding_column</code>.</p>");
    } else {
        let _ = write!(h, "<h2>Cluster composition (share of selection per cluster of the pool's embeddings; blue above the pool's share, red below)</h2><table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\"><tr><th>cluster</th><th>pool</th>");
        for m in &c.methods {
            let _ = write!(h, "<th>{}</th>", m.name);
        }
        h.push_str("</tr>");
        for (j, pool) in c.pool_cluster_share.iter().enumerate() {
            let _ = write!(h, "<tr><td>{j}</td><td>{:.1}%</td>", pool * 100.0);
            for m in &c.methods {
                let v = m.cluster_share.get(j).copied().unwrap_or(0.0);
                let ratio = (v / pool.max(1e-12)).clamp(0.0, 2.0);
                let colour = if ratio >= 1.0 {
                    let x = 255 - ((ratio - 1.0) * 120.0) as u8;
                    format!("rgb({x},{x},255)")
                } else {
                    let x = 255 - ((1.0 - ratio) * 120.0) as u8;
                    format!("rgb(255,{x},{x})")
                };
                let _ = write!(
                    h,
                    "<td style=\"background:{colour}\">{:.1}%</td>",
                    v * 100.0
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Score histograms</h2>");
    for m in c.methods.iter().filter(|m| !m.score_histogram.is_empty()) {
        let max = m
            .score_histogram
            .iter()
            .map(|b| b.2)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let _ = write!(
            h,
            "<p>{}</p><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"120\">",
            m.name
        );
        for (i, (lo, hi, n)) in m.score_histogram.iter().enumerate() {
            let bh = 100.0 * *n as f64 / max;
            let _ = write!(h, "<rect x=\"{}\" y=\"{:.1}\" width=\"30\" height=\"{bh:.1}\" fill=\"#4878a8\"><title>{lo:.3}..{hi:.3}: {n}</title></rect>", i * 32, 100.0 - bh);
        }
        h.push_str("</svg>");
    }
    h.push_str("<h2>Documents the methods disagree on</h2><table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\"><tr><th>id</th><th>kept by</th></tr>");
    for (id, k) in &c.disagreements {
        let id = id.replace('&', "&amp;").replace('<', "&lt;");
        let _ = write!(h, "<tr><td>{id}</td><td>{}</td></tr>", k.join(", "));
    }
    h.push_str("</table></body>");
    h
}

/// Runs every method, then writes `comparison.json` and `comparison.html`.
pub fn ablate(config: &AblationConfig, options: &RunOptions) -> Result<Comparison> {
    for m in &config.methods {
        tracing::info!("method {}", m.name);
        run(&config.method_config(m), options).with_context(|| format!("method `{}`", m.name))?;
    }
    for (name, draw) in config.baseline_draws() {
        tracing::info!("baseline draw {name}");
        run(&draw, options).with_context(|| format!("baseline draw `{name}`"))?;
    }
    let comparison = compare(config)?;
    let out = Path::new(&config.output.dir);
    write_bytes(
        &out.join("comparison.json"),
        &serde_json::to_vec_pretty(&comparison)?,
    )?;
    write_bytes(
        &out.join("comparison.html"),
        render_html(&comparison).as_bytes(),
    )?;
    Ok(comparison)
}
