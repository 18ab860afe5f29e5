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

use gleaner_storage::reader::DocBatch;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Units' decoded batches held between the scan and the write phase.
pub struct ScanCache {
    eligible: Vec<bool>,
    budget: u64,
    used: AtomicU64,
    units: Mutex<Vec<Option<Vec<DocBatch>>>>,
    read_again: AtomicUsize,
}

impl ScanCache {
    /// A cache holding at most `budget` bytes of the units whose `eligible` entry is true
    /// (one entry per work unit).
    pub fn new(eligible: Vec<bool>, budget: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            units: Mutex::new(vec![None; eligible.len()]),
            eligible,
            budget,
            read_again: AtomicUsize::new(0),
        }
    }

    /// Whether unit `unit`, scanned now, may still be kept (it is eligible and the budget is
    /// not spent).
    pub fn has_room(&self, unit: usize) -> bool {
        self.eligible[unit] && self.used.load(Ordering::Relaxed) < self.budget
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
