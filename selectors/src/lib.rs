//! Selection methods of gleaner: document filters, deduplication and selectors.
//!
//! Nothing here knows about parquet: filters see text, selectors see a pool of
//! [`PoolDoc`]s and answer with [`Pick`]s.

pub mod dedup;
pub mod dsir;
pub mod filters;
pub mod kmeans;
pub mod nn;
pub mod random;
pub mod rng;
pub mod score;
pub mod semdedup;
pub mod simd;
pub mod text;

/// What a selector knows about one document of the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolDoc<'a> {
    /// Document id (unique within the pool).
    pub id: &'a str,
    /// Domain / source, when the corpus has one.
    pub source: Option<&'a str>,
    /// Length in tokens (or a proxy such as words) for budgets.
    pub tokens: u64,
    /// A score computed upstream (e.g. DSIR's log importance weight); `None` when the
    /// document has none, which score-based selectors never pick.
    pub score: Option<f64>,
}

/// One kept document: its index in the pool, an optional score and why it was kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Index into the pool slice given to [`Selector::select`].
    pub index: usize,
    /// The score the selector ranked by, if any.
    pub score: Option<f64>,
    /// Short machine-readable reason, e.g. `random_sample`.
    pub reason: &'static str,
}

/// A selection method: given a pool, choose which documents to keep.
///
/// Implementations must be deterministic: the same pool (same ids in the same order) and the
/// same configuration give the same picks, and picks are returned sorted by `index`.
pub trait Selector: Send + Sync {
    /// Name recorded with every pick (e.g. `random`).
    fn name(&self) -> &str;
    /// The seed the selector draws from, recorded for provenance.
    fn seed(&self) -> u64;
    /// Chooses documents from `pool`.
    fn select(&self, pool: &[PoolDoc<'_>]) -> Vec<Pick>;
}
