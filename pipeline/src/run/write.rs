//! The write steps of the reduce phase: the selection file, the selected and removed shards
//! (read again unit by unit, written in unit order whatever the thread count), and the run's
//! records (stats, report, config, timings and the manifest, last).

use super::decide::{Decisions, SelectedRow};
use super::scan::whitespace_tokens;
use super::{progress_bar, Prepared, RunSummary};
use crate::config::Config;
use crate::layout;
use crate::models::features::FeatureReport;
use crate::report::{write_report, ReportInput};
use crate::stages::scanned::INPUT_SLOT;
use crate::stages::Ledger;
use anyhow::Result;
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use gleaner_storage::atomic::{sha256_file, write_bytes};
use gleaner_storage::manifest::{InputRecord, Manifest};
use gleaner_storage::reader::{CorpusReader, DocBatch, SkippedFile};
use gleaner_storage::writer::{write_parquet_file, ShardInfo, ShardWriter, ShardWriterOptions};
use gleaner_storage::StorageError;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

const KEEP: u32 = Ledger::KEEP;

/// The columns of `selection.parquet`.
fn selection_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("row_group", DataType::UInt32, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("method", DataType::Utf8, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("cluster", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("round", DataType::Int64, true),
        Field::new("arm_score", DataType::Float64, true),
        Field::new("probe_influence", DataType::Float64, true),
    ]))
}

/// Writes `selection.parquet`: one row per kept document, in selection order.
pub fn write_selection(path: &Path, reader: &CorpusReader, d: &Decisions) -> Result<()> {
    let schema = selection_schema();
    let mut batches = Vec::new();
    for chunk in d.selected.chunks(64 * 1024) {
        let n = chunk.len();
        let unit = |r: &SelectedRow| &reader.units()[r.unit];
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| r.id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk
                    .iter()
                    .map(|r| reader.files()[unit(r).file].path.to_string_lossy()),
            )),
            Arc::new(UInt32Array::from_iter_values(
                chunk.iter().map(|r| unit(r).row_group as u32),
            )),
            Arc::new(UInt64Array::from_iter_values(
                chunk.iter().map(|r| unit(r).first_row + r.row as u64),
            )),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.source.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                d.method.as_str(),
                n,
            ))),
            Arc::new(UInt64Array::from_iter_values(std::iter::repeat_n(
                d.seed, n,
            ))),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.picked.score)
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.cluster.map(i64::from))
                    .collect::<Int64Array>(),
            ),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| r.picked.reason),
            )),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.picked.quad.map(|q| i64::from(q.0)))
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.picked.quad.map(|q| q.1))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| r.picked.quad.and_then(|q| q.2))
                    .collect::<Float64Array>(),
            ),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    write_parquet_file(path, schema, &batches)?;
    Ok(())
}

/// What a write-phase worker sends for one batch: kept rows and dropped rows by reason.
struct WriteMsg {
    kept: Option<RecordBatch>,
    kept_words: u64,
    removed: Vec<(u32, RecordBatch)>,
}

/// Runs `work(unit, sender)` for every unit on `threads` workers and hands the messages
/// to `consume` strictly in unit order. Each unit has a channel of capacity 2, so at most
/// `threads` units are in flight and memory stays bounded.
fn ordered_map<T: Send>(
    units: usize,
    threads: usize,
    work: impl Fn(usize, &SyncSender<Result<T>>) + Sync,
    mut consume: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut receivers: Vec<Receiver<Result<T>>> = Vec::with_capacity(units);
    let mut senders: Vec<Mutex<Option<SyncSender<Result<T>>>>> = Vec::with_capacity(units);
    for _ in 0..units {
        let (tx, rx) = sync_channel(2);
        senders.push(Mutex::new(Some(tx)));
        receivers.push(rx);
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let u = next.fetch_add(1, Ordering::SeqCst);
                if u >= units {
                    break;
                }
                let Some(tx) = senders[u].lock().expect("sender lock").take() else {
                    continue;
                };
                work(u, &tx);
            });
        }
        let result = (|| {
            for rx in &receivers {
                for msg in rx.iter() {
                    consume(msg?)?;
                }
            }
            Ok(())
        })();
        // On error, dropping the receivers makes blocked workers' sends fail so they stop.
        drop(receivers);
        result
    })
}

/// `record` with its column `index` (the text) replaced by `texts`, in that column's type.
fn with_text(record: RecordBatch, index: usize, texts: &[&str]) -> Result<RecordBatch> {
    let strings: ArrayRef = Arc::new(StringArray::from_iter_values(texts.iter().copied()));
    let column = arrow::compute::cast(&strings, record.schema().field(index).data_type())?;
    let mut columns = record.columns().to_vec();
    columns[index] = column;
    Ok(RecordBatch::try_new(record.schema(), columns)?)
}

/// What the shard-writing step produced.
pub struct Written {
    /// Selected shards.
    pub shards: Vec<ShardInfo>,
    /// Removed shards per reason.
    pub removed: BTreeMap<String, Vec<ShardInfo>>,
    /// Whitespace tokens of the kept documents.
    pub kept_words: u64,
}

/// Writes the selected shards (and the removed ones when `output.write_removed`), reading
/// each unit that holds one again.
pub fn write_shards(
    p: &Prepared,
    config: &Config,
    decisions: &Decisions,
    quiet: bool,
) -> Result<Written> {
    let reader = &p.reader;
    let out = &config.output_dir();
    let write_removed = config.output.write_removed;
    let needs_read: Vec<bool> = decisions
        .row_fates
        .iter()
        .map(|f| !f.is_empty() && (write_removed || f.contains(&KEEP)))
        .collect();
    let to_write = needs_read.iter().filter(|b| **b).count();
    layout::write_progress(out, "write", serde_json::json!({ "units": to_write }));
    let shard_options = ShardWriterOptions {
        shard_bytes: config.output.shard_bytes,
        codec: config.output.codec(),
        format: config.output.shard_format(),
        plain_columns: vec![
            config.input.text_column.clone(),
            config.input.id_column.clone(),
        ],
        ..Default::default()
    };
    // The input's columns, then those the map stages add (language_id's).
    let added = p.plan.output_fields();
    let schema: SchemaRef = if added.is_empty() {
        reader.output_schema().clone()
    } else {
        let mut fields: Vec<Field> = reader
            .output_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(added.iter().cloned());
        Arc::new(Schema::new(fields))
    };
    let rewrites = p.plan.rewrites();
    let text_index = schema.index_of(&config.input.text_column).map_err(|_| {
        anyhow::anyhow!(
            "the text column `{}` is not a top-level column of the output",
            config.input.text_column
        )
    });
    let text_index = if rewrites { text_index? } else { 0 };
    let mut selected_writer = ShardWriter::new(
        &out.join(layout::SELECTED_DIR),
        schema.clone(),
        shard_options.clone(),
    )?;
    let mut removed_writers: BTreeMap<u32, ShardWriter> = BTreeMap::new();
    let pb = progress_bar(quiet, to_write, "write");
    let mut kept_words = 0u64;
    let reason_names = &decisions.reason_names;
    ordered_map(
        reader.units().len(),
        p.threads,
        |u, tx| {
            if !needs_read[u] {
                return;
            }
            let fates = &decisions.row_fates[u];
            let rewritten = p.scan_cache.take_texts(u);
            let mut offset = 0usize;
            let batches: Box<dyn Iterator<Item = Result<DocBatch, StorageError>>> =
                match p.scan_cache.take(u) {
                    Some(kept) => Box::new(kept.into_iter().map(Ok)),
                    None => match reader.read_unit(u) {
                        Ok(b) => Box::new(b),
                        Err(e) => {
                            let _ = tx.send(Err(e.into()));
                            return;
                        }
                    },
                };
            for batch in batches {
                let msg = batch.map_err(anyhow::Error::from).and_then(|batch| {
                    let f = &fates[offset..offset + batch.len()];
                    let kept_texts = rewritten
                        .as_ref()
                        .map(|texts| &texts[offset..offset + batch.len()]);
                    offset += batch.len();
                    // Each row's text as written: rewritten by the map stages for kept rows
                    // (taken from the scan when it kept them, else computed once here; the
                    // shards, word counts and added columns read it).
                    let texts: Vec<Option<Cow<str>>> = (0..batch.len())
                        .map(|i| {
                            batch.text(i).map(|t| match (f[i] == KEEP, kept_texts) {
                                (false, _) => Cow::Borrowed(t),
                                (true, None) => p.plan.rewrite_text(t),
                                (true, Some(kept)) => {
                                    kept[i].as_deref().map_or(Cow::Borrowed(t), Cow::Borrowed)
                                }
                            })
                        })
                        .collect();
                    let extra = if added.is_empty() {
                        Vec::new()
                    } else {
                        let refs: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
                        p.plan.annotate(&refs)
                    };
                    let rows = |mask: &BooleanArray| -> Result<RecordBatch> {
                        let base = batch.filtered_record(mask)?;
                        if extra.is_empty() {
                            return Ok(base);
                        }
                        let mut columns = base.columns().to_vec();
                        for a in &extra {
                            columns.push(arrow::compute::filter(a.as_ref(), mask)?);
                        }
                        Ok(RecordBatch::try_new(schema.clone(), columns)?)
                    };
                    let keep: BooleanArray = f.iter().map(|&x| Some(x == KEEP)).collect();
                    let kept_texts: Vec<&str> = (0..batch.len())
                        .filter(|&i| f[i] == KEEP)
                        .map(|i| texts[i].as_deref().unwrap_or(""))
                        .collect();
                    let kept = if keep.true_count() > 0 {
                        let mut record = rows(&keep)?;
                        if rewrites {
                            record = with_text(record, text_index, &kept_texts)?;
                        }
                        Some(record)
                    } else {
                        None
                    };
                    let kept_words = kept_texts.iter().map(|t| whitespace_tokens(t)).sum();
                    let mut removed = Vec::new();
                    if write_removed {
                        let mut reasons: Vec<u32> =
                            f.iter().copied().filter(|&x| x != KEEP).collect();
                        reasons.sort_unstable();
                        reasons.dedup();
                        for r in reasons {
                            let mask: BooleanArray = f.iter().map(|&x| Some(x == r)).collect();
                            removed.push((r, rows(&mask)?));
                        }
                    }
                    Ok(WriteMsg {
                        kept,
                        kept_words,
                        removed,
                    })
                });
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    return;
                }
            }
            pb.inc(1);
        },
        |msg| {
            kept_words += msg.kept_words;
            if let Some(kept) = &msg.kept {
                selected_writer.write(kept)?;
            }
            for (reason, batch) in &msg.removed {
                let w = match removed_writers.entry(*reason) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(ShardWriter::new(
                        &out.join(layout::REMOVED_DIR)
                            .join(&reason_names[*reason as usize]),
                        schema.clone(),
                        shard_options.clone(),
                    )?),
                };
                w.write(batch)?;
            }
            Ok(())
        },
    )?;
    pb.finish_and_clear();
    let shards = selected_writer.finish()?;
    let mut removed: BTreeMap<String, Vec<ShardInfo>> = BTreeMap::new();
    for (reason, w) in removed_writers {
        removed.insert(reason_names[reason as usize].clone(), w.finish()?);
    }
    Ok(Written {
        shards,
        removed,
        kept_words,
    })
}

/// Wall times of the phases, for timings.json.
pub struct Timings {
    /// Map phase.
    pub map_s: f64,
    /// Decide step.
    pub decide_s: f64,
    /// Shard writing (selection.parquet is written at the same time).
    pub write_s: f64,
    /// Units read from their files a second time (not kept from the scan).
    pub units_read_again: usize,
    /// Of those, the units read ahead while the pool was decided.
    pub units_read_ahead: usize,
}

/// Writes stats, report, cluster and Quad pages, the resolved config, timings and (last)
/// the manifest.
#[allow(clippy::too_many_arguments)]
pub fn write_records(
    reader: &CorpusReader,
    config: &Config,
    decisions: &Decisions,
    written: Written,
    skipped: Vec<SkippedFile>,
    feature_reports: &[FeatureReport],
    threads: usize,
    timings: Timings,
    started: std::time::Instant,
) -> Result<RunSummary> {
    let out = &config.output_dir();
    let seen = decisions.stats[INPUT_SLOT].seen;
    let kept = decisions.selected.len() as u64;
    let stats_json = serde_json::to_vec_pretty(&decisions.stats)?;
    write_bytes(&out.join(layout::STATS_FILE), &stats_json)?;
    write_report(
        out,
        &ReportInput {
            method: &decisions.method,
            seed: decisions.seed,
            files: reader.files().len(),
            skipped: &skipped,
            seen,
            kept,
            kept_words: written.kept_words,
            stats: &decisions.stats,
            sources: &decisions.sources,
            examples: &decisions.examples,
            shards: &written.shards,
            models: &feature_reports
                .iter()
                .map(|f| f.summary.clone())
                .collect::<Vec<_>>(),
            distributions: &decisions.distributions,
            quad: decisions.quad.as_ref(),
        },
    )?;
    if let Some(c) = &decisions.clusters {
        c.write(out)?;
    }
    if let Some(q) = &decisions.quad {
        q.write_html(out)?;
    }
    write_bytes(&out.join(layout::CONFIG_FILE), config.to_toml().as_bytes())?;
    let selection_path = out.join(layout::SELECTION_FILE);
    let manifest = Manifest {
        code_version: super::code_version(),
        config_hash: config.hash(),
        config: config.to_json(),
        inputs: reader
            .files()
            .iter()
            .filter(|f| !skipped.iter().any(|s| s.path == f.path))
            .map(|f| InputRecord {
                path: f.path.to_string_lossy().into_owned(),
                bytes: f.bytes,
                rows: f.rows,
                row_groups: f.row_groups,
            })
            .collect(),
        skipped_inputs: skipped,
        outputs: written.shards.clone(),
        selection: ShardInfo {
            file: layout::SELECTION_FILE.into(),
            rows: kept,
            uncompressed_bytes: 0,
            bytes: std::fs::metadata(&selection_path)
                .map(|m| m.len())
                .unwrap_or(0),
            sha256: sha256_file(&selection_path)?,
        },
        removed: written.removed,
    };
    let total_s = started.elapsed().as_secs_f64();
    let timings = serde_json::json!({
        "threads": threads,
        "model_stages": feature_reports,
        "map_s": timings.map_s,
        "decide_s": timings.decide_s,
        "quad": decisions.quad_cost,
        "write_s": timings.write_s,
        "units_read_again": timings.units_read_again,
        "units_read_ahead": timings.units_read_ahead,
        "total_s": total_s,
        "docs_per_s": seen as f64 / total_s.max(1e-9),
    });
    write_bytes(
        &out.join(layout::TIMINGS_FILE),
        serde_json::to_vec_pretty(&timings)?.as_slice(),
    )?;
    layout::write_progress(out, "done", serde_json::Value::Null);
    manifest.write(out)?;
    Ok(RunSummary {
        out_dir: out.to_path_buf(),
        seen,
        kept,
        shards: written.shards,
    })
}
