//! `gleaner split`: a seeded split of a target set into a reference part (what targeted
//! methods may aim at) and an evaluation part (what `gleaner evaluate` scores), held apart by
//! construction.
//!
//! Each document goes to the evaluation part when the seeded hash of its normalised words
//! falls under `eval_fraction`, so exact and re-wrapped copies land on the same side. Then
//! any reference document that still shares a long word run with an evaluation document
//! (the check of [`crate::evaluate::overlap`]) moves to the evaluation part, until none is
//! left: the reference part never overlaps the evaluation part.

use anyhow::{bail, Result};
use arrow::array::{BooleanArray, RecordBatch};
use gleaner_selectors::overlap::{normalised, EvaluationIndex};
use gleaner_storage::reader::{ColumnSpec, CorpusReader, OnBadFile};
use gleaner_storage::writer::write_parquet_file;
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// File names of the two parts.
pub const REFERENCE_FILE: &str = "reference.parquet";
/// See [`REFERENCE_FILE`].
pub const EVALUATION_FILE: &str = "evaluation.parquet";

/// What a split did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    /// Documents in the reference part.
    pub reference: usize,
    /// Documents in the evaluation part.
    pub evaluation: usize,
    /// Of those, documents moved from the reference part for overlapping an evaluation one.
    pub moved: usize,
    /// Empty documents left out.
    pub empty: usize,
}

/// Splits the documents of `paths` into `out/reference.parquet` and `out/evaluation.parquet`.
pub fn split(
    paths: &[String],
    spec: ColumnSpec,
    eval_fraction: f64,
    seed: u64,
    out: &Path,
) -> Result<SplitSummary> {
    if !(eval_fraction > 0.0 && eval_fraction < 1.0) {
        bail!("--eval-fraction {eval_fraction} is outside (0, 1)");
    }
    let reader = CorpusReader::open(paths, spec, OnBadFile::Error, 1024)?;
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut texts: Vec<Option<String>> = Vec::new();
    for unit in 0..reader.units().len() {
        for batch in reader.read_unit(unit)? {
            let batch = batch?;
            for i in 0..batch.len() {
                texts.push(batch.text(i).map(str::to_string));
            }
            batches.push(batch.record().clone());
        }
    }
    let threshold = (eval_fraction * u64::MAX as f64) as u64;
    let words: Vec<String> = texts
        .iter()
        .map(|t| t.as_deref().map(normalised).unwrap_or_default())
        .collect();
    let empty: Vec<bool> = words.iter().map(String::is_empty).collect();
    let mut evaluation: Vec<bool> = words
        .iter()
        .map(|w| !w.is_empty() && xxh3_64_with_seed(w.as_bytes(), seed) < threshold)
        .collect();
    let mut moved = 0;
    loop {
        let index = EvaluationIndex::new(
            texts
                .iter()
                .zip(&evaluation)
                .filter(|(_, &e)| e)
                .filter_map(|(t, _)| t.as_deref()),
        );
        let mut changed = false;
        for (k, t) in texts.iter().enumerate() {
            if !evaluation[k] && !empty[k] && index.overlap(t.as_deref().unwrap_or("")).is_some() {
                evaluation[k] = true;
                moved += 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let schema = reader.output_schema().clone();
    std::fs::create_dir_all(out)?;
    let mut offset = 0;
    let (mut reference_parts, mut evaluation_parts) = (Vec::new(), Vec::new());
    for batch in &batches {
        let n = batch.num_rows();
        let rows = offset..offset + n;
        let pick = |side: bool| -> BooleanArray {
            rows.clone()
                .map(|k| Some(!empty[k] && evaluation[k] == side))
                .collect()
        };
        reference_parts.push(arrow::compute::filter_record_batch(batch, &pick(false))?);
        evaluation_parts.push(arrow::compute::filter_record_batch(batch, &pick(true))?);
        offset += n;
    }
    write_parquet_file(&out.join(REFERENCE_FILE), schema.clone(), &reference_parts)?;
    write_parquet_file(&out.join(EVALUATION_FILE), schema, &evaluation_parts)?;
    let empties = empty.iter().filter(|&&e| e).count();
    let evaluation_count = evaluation
        .iter()
        .zip(&empty)
        .filter(|(&e, &x)| e && !x)
        .count();
    Ok(SplitSummary {
        reference: texts.len() - empties - evaluation_count,
        evaluation: evaluation_count,
        moved,
        empty: empties,
    })
}
