//! What the map phase records of a work unit for the reduce: each row's fate, and of each
//! survivor what the pool stages asked for. Serialised into the Slurm executor's marker
//! files.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stage slot 0 is the input stage; slot `i + 1` is `config.stages[i]`.
pub const INPUT_SLOT: usize = 0;
/// The source index of a row without a source.
pub const NO_SOURCE: u32 = u32::MAX;

/// A document that passed every map stage.
#[derive(Serialize, Deserialize)]
pub struct Survivor {
    /// Row within the unit.
    pub row: u32,
    /// Document id.
    pub id: String,
    /// Index into the unit's `source_names`.
    pub source: Option<u32>,
    /// Whitespace tokens, when a stage needs them.
    pub words: u64,
    /// Tokens of the `tokenize` stage's tokenizer, when there is one.
    pub tokens: u64,
    /// Short label (start of the first line) for cluster reports, when clustering.
    pub title: Option<String>,
}

/// What happened to each row of a unit during the scan.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub enum Fate {
    /// Index into `UnitScan::survivors`.
    Survivor,
    /// Index into `UnitScan::reasons`.
    Dropped(u32),
}

/// Pass-1 (scan) result of one work unit: what the map phase hands to the reduce.
#[derive(Serialize, Deserialize)]
pub struct UnitScan {
    /// Per row.
    pub fates: Vec<Fate>,
    /// (stage slot, reason) of each drop kind in this unit.
    pub reasons: Vec<(usize, String)>,
    /// The rows that passed.
    pub survivors: Vec<Survivor>,
    /// Source of each row (index into `source_names`), [`NO_SOURCE`] when none.
    pub row_sources: Vec<u32>,
    /// Source names of this unit.
    pub source_names: Vec<String>,
    /// Examples of dropped ids, per reason index (at most 3 each).
    pub examples: Vec<Vec<String>>,
    /// Warnings to print once.
    pub warnings: Vec<String>,
    /// Embeddings of the survivors, when a pool stage reads them.
    pub embeddings: VectorBuf,
    /// Loss trajectories of the survivors, when an s2l stage runs.
    pub trajectories: VectorBuf,
    /// The numeric columns the pool stages read, `Needs::columns` values per survivor.
    pub columns: Vec<Option<f64>>,
    /// Per pool stage: its per-survivor map values, `words_per_document` each.
    pub stage_docs: Vec<Vec<u64>>,
    /// Per pool stage: its per-unit map totals.
    pub stage_units: Vec<Vec<u64>>,
    /// Per distribution column, (source, value) of every row that has a value.
    pub distribution_values: Vec<Vec<(u32, f64)>>,
    /// Tokenizer tokens of every row, when there is a `tokenize` stage.
    pub row_tokens: Vec<u64>,
    /// Per stage slot: the documents whose text the stage rewrote.
    pub rewritten: Vec<u64>,
    /// Per stage slot: the documents the stage passed on unchecked, by reason.
    pub unchecked: Vec<BTreeMap<String, u64>>,
}

impl UnitScan {
    /// A scan with no rows yet, with room for `plan`'s pool stages and `distributions`
    /// distribution columns.
    pub fn empty(plan: &super::Plan, distributions: usize) -> Self {
        UnitScan {
            fates: Vec::new(),
            reasons: Vec::new(),
            survivors: Vec::new(),
            row_sources: Vec::new(),
            source_names: Vec::new(),
            examples: Vec::new(),
            warnings: Vec::new(),
            embeddings: VectorBuf::default(),
            trajectories: VectorBuf::default(),
            columns: Vec::new(),
            stage_docs: vec![Vec::new(); plan.pool_stages.len()],
            stage_units: plan
                .pool_stages
                .iter()
                .map(|(_, s)| vec![0; s.unit_totals_len()])
                .collect(),
            distribution_values: vec![Vec::new(); distributions],
            row_tokens: Vec::new(),
            rewritten: vec![0; plan.names.len()],
            unchecked: vec![BTreeMap::new(); plan.names.len()],
        }
    }

    /// A compact exact encoding (floats keep every bit), for the map phase's marker files.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(postcard::to_stdvec(self)?)
    }

    /// Decodes [`UnitScan::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

/// Vectors of one role for the survivors of a unit, `dim` floats each.
#[derive(Default, Serialize, Deserialize)]
pub struct VectorBuf {
    /// Survivor-major values.
    pub data: Vec<f32>,
    /// Values per vector (0 before the first).
    pub dim: usize,
}

impl VectorBuf {
    /// Fixes the dimension on the first vector; a later vector of another length is an
    /// error naming the row.
    pub fn check_dim(&mut self, v: &[f32], what: &str, row: impl Fn() -> String) -> Result<()> {
        if self.dim == 0 {
            self.dim = v.len();
        } else if v.len() != self.dim && !v.is_empty() {
            bail!(
                "{}: {what} has {} values, earlier rows have {}",
                row(),
                v.len(),
                self.dim
            );
        }
        Ok(())
    }

    /// Vector of survivor `si`.
    pub fn get(&self, si: usize) -> &[f32] {
        &self.data[si * self.dim..(si + 1) * self.dim]
    }
}
