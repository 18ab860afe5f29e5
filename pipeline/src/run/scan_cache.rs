//! Decoded work units kept from the scan for the write phase, within a memory budget.
//!
//! The write phase needs each unit's documents again after the pool is decided. Reading them
//! again decompresses and validates every page a second time (a fifth of a read-sample-write
//! run's CPU) and, for object storage, fetches the column chunks again. Units whose decoded
//! batches fit in the budget are kept instead; the others are read again. Which units are
//! kept depends on the scan's timing, never the output: a kept batch is the batch a second
//! read returns.

use gleaner_storage::reader::DocBatch;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Units' decoded batches held between the scan and the write phase.
pub struct ScanCache {
    budget: u64,
    used: AtomicU64,
    units: Mutex<Vec<Option<Vec<DocBatch>>>>,
    read_again: AtomicUsize,
}

impl ScanCache {
    /// A cache for `units` work units holding at most `budget` bytes (0: keeps nothing).
    pub fn new(units: usize, budget: u64) -> Self {
        Self {
            budget,
            used: AtomicU64::new(0),
            units: Mutex::new(vec![None; units]),
            read_again: AtomicUsize::new(0),
        }
    }

    /// Whether a unit scanned now may still be kept (the budget is not spent).
    pub fn has_room(&self) -> bool {
        self.used.load(Ordering::Relaxed) < self.budget
    }

    /// Keeps `batches` as unit `unit`'s documents if they fit in what is left of the budget.
    pub fn offer(&self, unit: usize, batches: Vec<DocBatch>) {
        let bytes: u64 = batches.iter().map(|b| b.memory_size() as u64).sum();
        let reserved = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= self.budget).then_some(used + bytes)
            });
        if reserved.is_ok() {
            self.units.lock().expect("scan cache lock")[unit] = Some(batches);
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

    /// Units the write phase read from their files again.
    pub fn units_read_again(&self) -> usize {
        self.read_again.load(Ordering::Relaxed)
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
