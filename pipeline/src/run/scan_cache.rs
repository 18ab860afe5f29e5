//! Decoded work units kept from the scan for the write phase, within a memory budget.
//!
//! The write phase needs each unit's documents again after the pool is decided. Reading a
//! unit again decompresses and validates every page a second time and, for object storage,
//! fetches its column chunks again. A kept unit skips both; the others are read again.
//! Unless `run.scan_cache` is set, only units of files in object storage are kept: for local
//! files the saved decoding (about a seventh of a read-sample-write run's CPU) was paid back
//! in page faults on the kept memory, and the wall time did not move (docs/BENCHMARKS.md).
//! Which units are kept depends on the scan's timing, never the output: a kept batch is the
//! batch a second read returns.
//!
//! When a map stage's rewriting is costly (HTML extraction), the scan also keeps each unit's
//! rewritten texts, for any input, so that the write phase reads the unit again but does not
//! rewrite its documents again; a unit whose texts do not fit is rewritten again. Either way
//! the written text is the same.
//!
//! The same cache is filled ahead of the write phase while the pool is decided: that step
//! runs mostly on one thread, so another thread reads the first units the write phase will
//! need ([`ScanCache::read_ahead`]), one per write worker, with a core that would otherwise
//! wait. More than that gained nothing: the extra memory's page faults and the competition
//! with the decide step's parallel parts ate the saving (docs/BENCHMARKS.md).

use gleaner_storage::reader::{CorpusReader, DocBatch};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A unit's texts as the map stages left them, one per row in unit order: `Some` for a
/// surviving row whose text a stage rewrote, `None` for the others.
pub type RewrittenTexts = Vec<Option<String>>;

/// Units' decoded batches and rewritten texts held between the scan and the write phase.
pub struct ScanCache {
    eligible: Vec<bool>,
    budget: u64,
    used: AtomicU64,
    units: Mutex<Vec<Option<Vec<DocBatch>>>>,
    keeps_texts: bool,
    texts: Mutex<Vec<Option<RewrittenTexts>>>,
    read_again: AtomicUsize,
    read_ahead: AtomicUsize,
}

impl ScanCache {
    /// A cache holding at most `budget` bytes of the units whose `eligible` entry is true
    /// (one entry per work unit).
    pub fn new(eligible: Vec<bool>, budget: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            units: Mutex::new(vec![None; eligible.len()]),
            keeps_texts: false,
            texts: Mutex::new(vec![None; eligible.len()]),
            eligible,
            budget,
            read_again: AtomicUsize::new(0),
            read_ahead: AtomicUsize::new(0),
        }
    }

    /// The same cache, also keeping every unit's rewritten texts within the budget.
    pub fn keeping_rewritten_texts(mut self) -> Self {
        self.keeps_texts = true;
        self
    }

    /// Whether the rewritten texts of a unit scanned now may still be kept (the cache keeps
    /// texts and the budget is not spent).
    pub fn has_room_for_texts(&self) -> bool {
        self.keeps_texts && self.used.load(Ordering::Relaxed) < self.budget
    }

    /// Keeps `texts` as unit `unit`'s rewritten texts if they fit in what is left of the
    /// budget.
    pub fn offer_texts(&self, unit: usize, texts: RewrittenTexts) {
        let bytes: u64 = texts
            .iter()
            .map(|t| {
                (std::mem::size_of::<Option<String>>() + t.as_ref().map_or(0, String::len)) as u64
            })
            .sum();
        if self.reserve(bytes) {
            self.texts.lock().expect("scan cache lock")[unit] = Some(texts);
        }
    }

    /// Unit `unit`'s rewritten texts, handed over once; `None` when they were not kept.
    pub fn take_texts(&self, unit: usize) -> Option<RewrittenTexts> {
        self.texts.lock().expect("scan cache lock")[unit].take()
    }

    /// Takes `bytes` of the budget when they fit.
    fn reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= self.budget).then_some(used + bytes)
            })
            .is_ok()
    }

    /// Whether unit `unit`, scanned now, may still be kept (it is eligible and the budget is
    /// not spent).
    pub fn has_room(&self, unit: usize) -> bool {
        self.eligible[unit] && self.used.load(Ordering::Relaxed) < self.budget
    }

    /// Keeps `batches` as unit `unit`'s documents if they fit in what is left of the budget;
    /// returns whether they were kept.
    pub fn offer(&self, unit: usize, batches: Vec<DocBatch>) -> bool {
        let bytes: u64 = batches.iter().map(|b| b.memory_size() as u64).sum();
        let reserved = self.reserve(bytes);
        if reserved {
            self.units.lock().expect("scan cache lock")[unit] = Some(batches);
        }
        reserved
    }

    /// Reads `units` in this order (those not kept already) and keeps each one read in full,
    /// until `stop` is set, `most` units are kept or a unit does not fit in the budget. A unit
    /// being read when `stop` is set is left for the write phase, as is one that fails to
    /// read (the write phase reports the error). [`ScanCache::units_read_ahead`] counts the
    /// units kept.
    pub fn read_ahead(
        &self,
        reader: &CorpusReader,
        units: &[usize],
        most: usize,
        stop: &AtomicBool,
    ) {
        let mut kept = 0;
        for &unit in units {
            if kept == most || stop.load(Ordering::Relaxed) {
                break;
            }
            if self.units.lock().expect("scan cache lock")[unit].is_some() {
                continue;
            }
            let Ok(batches) = reader.read_unit(unit) else {
                break;
            };
            let mut read = Vec::new();
            for batch in batches {
                match batch {
                    Ok(b) if !stop.load(Ordering::Relaxed) => read.push(b),
                    _ => return,
                }
            }
            if !self.offer(unit, read) {
                break;
            }
            kept += 1;
            self.read_ahead.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Unit `unit`'s kept batches, handed over once; `None` when it must be read again
    /// (counted for [`ScanCache::units_read_again`]).
    pub fn take(&self, unit: usize) -> Option<Vec<DocBatch>> {
        let kept = self.units.lock().expect("scan cache lock")[unit].take();
        if kept.is_none() {
            self.read_again.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }

    /// Units read from their files a second time: by the write phase, or ahead of it while
    /// the pool was decided.
    pub fn units_read_again(&self) -> usize {
        self.read_again.load(Ordering::Relaxed) + self.units_read_ahead()
    }

    /// Units read ahead of the write phase while the pool was decided.
    pub fn units_read_ahead(&self) -> usize {
        self.read_ahead.load(Ordering::Relaxed)
    }

    /// Whether units' batches can be kept at all (the budget is not zero).
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }
}

/// The default budget: a quarter of the memory available when the run starts (1 GiB where
/// that cannot be read).
pub fn default_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |kib| kib * 1024 / 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleaner_storage::reader::{ColumnSpec, OnBadFile};

    /// The shipped quickstart corpus (18 row-group units) in batches of 100 rows, so each
    /// unit is several batches.
    fn quickstart() -> CorpusReader {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/quickstart");
        CorpusReader::open(
            &[dir.to_string()],
            ColumnSpec::default(),
            OnBadFile::Error,
            100,
        )
        .unwrap()
    }

    fn records(batches: &[DocBatch]) -> Vec<arrow::array::RecordBatch> {
        batches.iter().map(|b| b.record().clone()).collect()
    }

    fn read(reader: &CorpusReader, unit: usize) -> Vec<DocBatch> {
        reader
            .read_unit(unit)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn read_ahead_keeps_the_first_units_not_kept_yet_as_a_second_read_returns_them() {
        let reader = quickstart();
        assert_eq!(reader.units().len(), 18);
        let cache = ScanCache::new(vec![false; 18], u64::MAX);
        // Unit 5 was kept by the scan: it is skipped, not counted, and left as it was.
        assert!(cache.offer(5, read(&reader, 5)));
        let wanted = [5, 2, 7, 9, 11];
        cache.read_ahead(&reader, &wanted, 3, &AtomicBool::new(false));
        assert_eq!(cache.units_read_ahead(), 3);
        for unit in [2, 7, 9] {
            let taken = cache.take(unit).expect("read ahead");
            assert!(taken.len() > 1, "several batches per unit");
            assert_eq!(
                records(&taken),
                records(&read(&reader, unit)),
                "unit {unit}"
            );
        }
        assert!(cache.take(5).is_some());
        assert!(cache.take(11).is_none(), "beyond the three asked for");
        // Read ahead counts as read again; unit 11 was read again by the write phase.
        assert_eq!(cache.units_read_again(), 4);
    }

    #[test]
    fn read_ahead_stops_when_told_or_out_of_budget() {
        let reader = quickstart();
        let stopped = ScanCache::new(vec![false; 18], u64::MAX);
        stopped.read_ahead(&reader, &[0, 1], 2, &AtomicBool::new(true));
        assert_eq!(stopped.units_read_ahead(), 0);
        assert!(stopped.take(0).is_none());
        // A budget that holds unit 0 but not units 0 and 1.
        let first: u64 = read(&reader, 0)
            .iter()
            .map(|b| b.memory_size() as u64)
            .sum();
        let small = ScanCache::new(vec![false; 18], first + 1);
        small.read_ahead(&reader, &[0, 1, 2], 3, &AtomicBool::new(false));
        assert_eq!(small.units_read_ahead(), 1);
        assert!(small.take(0).is_some());
        assert!(small.take(1).is_none());
    }
}
