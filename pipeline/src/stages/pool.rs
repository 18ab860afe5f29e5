//! The pool the reduce phase works on: the documents that passed every per-document stage,
//! with their clusters and named score columns, and the ledger that records every drop.

use super::scanned::{Survivor, UnitScan};
use super::StageFindings;
use crate::stats::StageStats;
use anyhow::{bail, Result};
use gleaner_storage::reader::CorpusReader;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Example ids kept per drop reason.
pub const MAX_EXAMPLES: usize = 3;

/// Where a pool document lives: the scan of a work unit and the survivor within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRef {
    /// Position among the scanned (not skipped) units.
    pub unit: u32,
    /// Index into that unit's survivors.
    pub survivor: u32,
}

/// The scanned units a pool reads its documents' data from, and the corpus to read texts
/// again (absent in unit tests, whose stages need no text).
pub struct Scanned<'a> {
    /// The corpus, for stages that read texts again.
    pub reader: Option<&'a CorpusReader>,
    /// The plan whose rewriting map stages apply to texts read again.
    pub plan: Option<&'a super::Plan>,
    /// (unit index in the corpus, its scan), for the units not skipped.
    pub units: Vec<(usize, &'a UnitScan)>,
}

impl<'a> Scanned<'a> {
    fn scan(&self, d: DocRef) -> &'a UnitScan {
        self.units[d.unit as usize].1
    }

    /// Every survivor of every unit, in corpus order.
    pub fn survivors(&self) -> Vec<DocRef> {
        let mut docs = Vec::new();
        for (u, (_, scan)) in self.units.iter().enumerate() {
            docs.extend((0..scan.survivors.len()).map(|s| DocRef {
                unit: u as u32,
                survivor: s as u32,
            }));
        }
        docs
    }

    /// `f` of the text of each listed document, in the order listed, reading the units that
    /// hold them again in parallel.
    pub fn map_texts<T: Send>(
        &self,
        docs: &[DocRef],
        f: impl Fn(&str) -> T + Sync,
    ) -> Result<Vec<T>> {
        let Some(reader) = self.reader else {
            bail!("this pool has no corpus to read texts from");
        };
        // Positions in `docs` per unit, by the row they sit in.
        let mut by_unit: Vec<Vec<(u32, usize)>> = vec![Vec::new(); self.units.len()];
        for (slot, d) in docs.iter().enumerate() {
            let row = self.scan(*d).survivors[d.survivor as usize].row;
            by_unit[d.unit as usize].push((row, slot));
        }
        let per_unit: Vec<Result<Vec<(usize, T)>>> = by_unit
            .par_iter()
            .enumerate()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(pos, rows)| {
                let mut wanted: HashMap<u32, Vec<usize>> = HashMap::new();
                for &(row, slot) in rows {
                    wanted.entry(row).or_default().push(slot);
                }
                let mut out = Vec::with_capacity(rows.len());
                let mut row = 0u32;
                for batch in reader.read_unit(self.units[pos].0)? {
                    let batch = batch?;
                    for i in 0..batch.len() {
                        if let Some(slots) = wanted.get(&row) {
                            let raw = batch.text(i).unwrap_or("");
                            let text = match self.plan {
                                Some(plan) => plan.rewrite_text(raw),
                                None => std::borrow::Cow::Borrowed(raw),
                            };
                            for &slot in slots {
                                out.push((slot, f(&text)));
                            }
                        }
                        row += 1;
                    }
                }
                Ok(out)
            })
            .collect();
        let mut values: Vec<Option<T>> = (0..docs.len()).map(|_| None).collect();
        for unit in per_unit {
            for (slot, v) in unit? {
                values[slot] = Some(v);
            }
        }
        Ok(values
            .into_iter()
            .map(|v| v.expect("every listed document is read"))
            .collect())
    }
}

/// The reduce phase's bookkeeping: per-stage counts, each row's fate, drop reasons and a
/// few example ids per reason.
pub struct Ledger {
    /// Per stage slot (0 = input).
    pub stats: Vec<StageStats>,
    /// Drop reasons, in order of first use.
    pub reason_names: Vec<String>,
    reason_ids: HashMap<String, u32>,
    /// Up to [`MAX_EXAMPLES`] dropped ids per reason.
    pub examples: BTreeMap<String, Vec<String>>,
    /// Per scanned unit, per row: [`Ledger::KEEP`] or an index into `reason_names`.
    pub row_fates: Vec<Vec<u32>>,
}

impl Ledger {
    /// The row fate of a document still in the pool.
    pub const KEEP: u32 = u32::MAX;

    /// A ledger for the named stage slots.
    pub fn new(slot_names: &[String]) -> Self {
        Ledger {
            stats: slot_names.iter().map(|n| StageStats::new(n)).collect(),
            reason_names: Vec::new(),
            reason_ids: HashMap::new(),
            examples: BTreeMap::new(),
            row_fates: Vec::new(),
        }
    }

    /// Index of `reason` in `reason_names`, added on first use.
    pub fn reason(&mut self, reason: &str) -> u32 {
        if let Some(&k) = self.reason_ids.get(reason) {
            return k;
        }
        self.reason_names.push(reason.to_string());
        let k = self.reason_names.len() as u32 - 1;
        self.reason_ids.insert(reason.to_string(), k);
        k
    }

    /// Keeps `id` as an example of `reason` while there are fewer than [`MAX_EXAMPLES`].
    pub fn example(&mut self, reason: &str, id: &str) {
        let e = self.examples.entry(reason.to_string()).or_default();
        if e.len() < MAX_EXAMPLES {
            e.push(id.to_string());
        }
    }
}

/// How a selector kept a document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Picked {
    /// Position in the selector's output (the selection file's row order).
    pub rank: u32,
    /// The score the selector ranked by.
    pub score: Option<f64>,
    /// Why it was kept.
    pub reason: &'static str,
    /// Quad: the accepting round, the arm's Cluster Score then, the document's probe score.
    pub quad: Option<(u32, f64, Option<f64>)>,
}

/// The documents a pool stage sees, in corpus order, with their clusters and named score
/// columns; [`Pool::retain`] is the one way to drop documents and records every drop.
pub struct Pool<'a> {
    scanned: &'a Scanned<'a>,
    docs: Vec<DocRef>,
    clusters: Vec<Option<u32>>,
    columns: Vec<(String, Vec<Option<f64>>)>,
    picks: Vec<Option<Picked>>,
    ledger: Ledger,
    slot: usize,
    stage_data: usize,
    method: Option<(String, u64)>,
    /// Reports and costs the stages produced.
    pub findings: StageFindings,
}

impl<'a> Pool<'a> {
    /// Every survivor of `scanned`, with the input's score columns named `columns` (the order
    /// the scan recorded them in).
    pub fn new(scanned: &'a Scanned<'a>, columns: &[String], ledger: Ledger) -> Self {
        let docs = scanned.survivors();
        let columns = columns
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let values = docs
                    .iter()
                    .map(|&d| {
                        let scan = scanned.scan(d);
                        scan.columns[d.survivor as usize * columns.len() + c]
                    })
                    .collect();
                (name.clone(), values)
            })
            .collect();
        Pool {
            scanned,
            clusters: vec![None; docs.len()],
            picks: vec![None; docs.len()],
            docs,
            columns,
            ledger,
            slot: 0,
            stage_data: 0,
            method: None,
            findings: StageFindings::default(),
        }
    }

    /// Makes stage `slot` (whose map-phase data is entry `stage_data` of each scan) the one
    /// whose drops are recorded.
    pub fn enter(&mut self, slot: usize, stage_data: usize) {
        self.slot = slot;
        self.stage_data = stage_data;
    }

    /// Counts the documents still in the pool as kept by the current stage (each document a
    /// stage sees is counted once, however many times the stage retained), and their tokens
    /// when `count_tokens`.
    pub fn leave(&mut self, count_tokens: bool) {
        let tokens: u64 = if count_tokens {
            (0..self.docs.len()).map(|i| self.tokens(i)).sum()
        } else {
            0
        };
        let stats = &mut self.ledger.stats[self.slot];
        stats.seen += self.docs.len() as u64;
        stats.kept += self.docs.len() as u64;
        if count_tokens {
            *stats.kept_tokens.get_or_insert(0) += tokens;
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Where document `i` lives.
    pub fn doc(&self, i: usize) -> DocRef {
        self.docs[i]
    }

    fn survivor(&self, i: usize) -> &'a Survivor {
        let d = self.docs[i];
        &self.scanned.scan(d).survivors[d.survivor as usize]
    }

    /// Id of document `i`.
    pub fn id(&self, i: usize) -> &'a str {
        &self.survivor(i).id
    }

    /// Source of document `i`.
    pub fn source(&self, i: usize) -> Option<&'a str> {
        let scan = self.scanned.scan(self.docs[i]);
        self.survivor(i)
            .source
            .map(|k| scan.source_names[k as usize].as_str())
    }

    /// Whitespace tokens of document `i` (0 unless a stage asked for them).
    pub fn words(&self, i: usize) -> u64 {
        self.survivor(i).words
    }

    /// Tokens of document `i` under the `tokenize` stage's tokenizer (0 without one).
    pub fn tokens(&self, i: usize) -> u64 {
        self.survivor(i).tokens
    }

    /// Report label of document `i` (empty unless a stage asked for titles).
    pub fn title(&self, i: usize) -> &'a str {
        self.survivor(i).title.as_deref().unwrap_or("")
    }

    /// Loss trajectory of document `i`, when a stage asked for trajectories.
    pub fn trajectory(&self, i: usize) -> &'a [f32] {
        let d = self.docs[i];
        self.scanned.scan(d).trajectories.get(d.survivor as usize)
    }

    /// What the current stage computed for document `i` in the map phase.
    pub fn stage_words(&self, i: usize) -> &'a [u64] {
        let d = self.docs[i];
        let data = &self.scanned.scan(d).stage_docs[self.stage_data];
        let width = data.len() / self.scanned.scan(d).survivors.len().max(1);
        &data[d.survivor as usize * width..(d.survivor as usize + 1) * width]
    }

    /// The current stage's per-unit map totals, summed over every scanned unit.
    pub fn stage_totals(&self) -> Vec<u64> {
        let mut total: Vec<u64> = Vec::new();
        for (_, scan) in &self.scanned.units {
            let t = &scan.stage_units[self.stage_data];
            if total.len() < t.len() {
                total.resize(t.len(), 0);
            }
            total.iter_mut().zip(t).for_each(|(a, b)| *a += b);
        }
        total
    }

    /// The pool's embeddings, L2-normalised, in pool order, and their dimension.
    pub fn embeddings(&self) -> Result<(Vec<f32>, usize)> {
        let units = &self.scanned.units;
        let dim = units
            .iter()
            .map(|(_, s)| s.embeddings.dim)
            .find(|&d| d > 0)
            .unwrap_or(0);
        if let Some((_, bad)) = units
            .iter()
            .find(|(_, s)| s.embeddings.dim != 0 && s.embeddings.dim != dim)
        {
            bail!(
                "embeddings of different lengths in the corpus: {} and {}",
                dim,
                bad.embeddings.dim
            );
        }
        let mut data = Vec::with_capacity(self.docs.len() * dim);
        for &d in &self.docs {
            let e = self.scanned.scan(d).embeddings.get(d.survivor as usize);
            let norm = e
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            data.extend(e.iter().map(|x| x / norm));
        }
        Ok((data, dim))
    }

    /// `f` of the texts of the documents at `positions`, in that order (read again).
    pub fn map_texts<T: Send>(
        &self,
        positions: &[usize],
        f: impl Fn(&str) -> T + Sync,
    ) -> Result<Vec<T>> {
        let docs: Vec<DocRef> = positions.iter().map(|&i| self.docs[i]).collect();
        self.scanned.map_texts(&docs, f)
    }

    /// The values of score column `name`, one per document.
    pub fn column(&self, name: &str) -> &[Option<f64>] {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_else(|| panic!("planned: the pool has no score column `{name}`"))
    }

    /// Adds (or replaces) score column `name`.
    pub fn set_column(&mut self, name: &str, values: Vec<Option<f64>>) {
        assert_eq!(values.len(), self.docs.len(), "one value per document");
        match self.columns.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = values,
            None => self.columns.push((name.to_string(), values)),
        }
    }

    /// Cluster of each document, when a stage clustered the pool.
    pub fn clusters(&self) -> &[Option<u32>] {
        &self.clusters
    }

    /// Records the cluster of every document.
    pub fn set_clusters(&mut self, clusters: Vec<Option<u32>>) {
        assert_eq!(clusters.len(), self.docs.len(), "one cluster per document");
        self.clusters = clusters;
    }

    /// Keeps the documents whose `keep` is true and drops the rest for `reason`, recording
    /// the drops in the current stage's counts.
    pub fn retain(&mut self, keep: &[bool], reason: &str) {
        assert_eq!(keep.len(), self.docs.len(), "one decision per document");
        let slot = self.slot;
        for (i, &k) in keep.iter().enumerate() {
            if k {
                continue;
            }
            self.ledger.stats[slot].drop_one(reason);
            let r = self.ledger.reason(reason);
            let d = self.docs[i];
            let s = self.survivor(i);
            self.ledger.row_fates[d.unit as usize][s.row as usize] = r;
            self.ledger.example(reason, &s.id);
        }
        retain_aligned(&mut self.docs, keep);
        retain_aligned(&mut self.clusters, keep);
        retain_aligned(&mut self.picks, keep);
        for (_, values) in &mut self.columns {
            retain_aligned(values, keep);
        }
    }

    /// A selection: the picked documents stay (in the selector's order for the selection
    /// file), every other one is dropped as `not_sampled`; `name` and `seed` become the run's
    /// method.
    pub fn select(&mut self, picks: Vec<(usize, Picked)>, name: &str, seed: u64) {
        let mut chosen: Vec<Option<Picked>> = vec![None; self.docs.len()];
        for (i, p) in picks {
            chosen[i] = Some(p);
        }
        let keep: Vec<bool> = chosen.iter().map(Option::is_some).collect();
        self.picks = chosen;
        self.method = Some((name.to_string(), seed));
        self.retain(&keep, "not_sampled");
    }

    /// The final pool: (document, how it was kept, its cluster) in selection-file order (the
    /// selector's order, or corpus order when nothing selected), the method that chose them
    /// and the ledger.
    pub fn finish(self) -> Finished {
        let mut kept: Vec<(DocRef, Picked, Option<u32>)> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let p = self.picks[i].unwrap_or(Picked {
                    rank: i as u32,
                    score: None,
                    reason: "passed_filters",
                    quad: None,
                });
                (d, p, self.clusters[i])
            })
            .collect();
        kept.sort_by_key(|k| k.1.rank);
        Finished {
            kept,
            method: self.method,
            ledger: self.ledger,
            findings: self.findings,
        }
    }
}

/// Keeps the items of `items` whose `keep` entry is true (one entry per item).
fn retain_aligned<T>(items: &mut Vec<T>, keep: &[bool]) {
    let mut k = keep.iter();
    items.retain(|_| *k.next().expect("one decision per item"));
}

/// What is left when every pool stage has run.
pub struct Finished {
    /// Kept documents in selection-file order.
    pub kept: Vec<(DocRef, Picked, Option<u32>)>,
    /// The selecting stage's name and seed, when one ran.
    pub method: Option<(String, u64)>,
    /// Every count, fate and example.
    pub ledger: Ledger,
    /// Reports and costs.
    pub findings: StageFindings,
}
