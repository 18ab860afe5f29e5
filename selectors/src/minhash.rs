//! MinHash near-duplicate detection with LSH bands.
//!
//! A document's shingles are its runs of `ngram` normalised words (lowercase alphanumeric
//! words; a shorter document is one shingle of all its words). Each of `bands x rows` hash
//! functions `h_i(x) = (a_i x + b_i) mod (2^61 - 1)` maps every shingle hash; the minimum over
//! the shingles is the signature's entry `i`, and `P[min_i(A) = min_i(B)]` is the Jaccard
//! similarity `J(A, B)` of the two shingle sets. Entries are cut into `bands` bands of `rows`;
//! two documents are candidates when some band is equal, which happens with probability
//! `1 - (1 - J^rows)^bands` (14 bands of 8: 0.5 % at J = 0.5, 50 % near J = 0.72, 92 % at 0.8,
//! 99.96 % at 0.9). Candidates are joined into connected components (union-find); the first
//! document of each component in corpus order is kept.

use crate::rng::SplitMix64;
use crate::text::normalised_words as words;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

const MERSENNE_61: u64 = (1 << 61) - 1;

/// The MinHash settings and the seeded hash functions they imply.
#[derive(Debug, Clone)]
pub struct MinHasher {
    ngram: usize,
    bands: usize,
    rows: usize,
    seed: u64,
    /// `(a_i, b_i)` of every hash function, `a_i` in `[1, p)`, `b_i` in `[0, p)`.
    params: Vec<(u64, u64)>,
}

/// `(a * x + b) mod (2^61 - 1)` for `a, b, x < 2^61 - 1`, exact in 128 bits.
fn affine_mod(a: u64, x: u64, b: u64) -> u64 {
    let v = (a as u128) * (x as u128) + b as u128;
    let folded = (v & MERSENNE_61 as u128) + (v >> 61);
    let folded = (folded & MERSENNE_61 as u128) + (folded >> 61);
    let r = folded as u64;
    if r >= MERSENNE_61 {
        r - MERSENNE_61
    } else {
        r
    }
}

impl MinHasher {
    /// Hash functions for `bands x rows` signature entries over `ngram`-word shingles, drawn
    /// from `seed`.
    pub fn new(ngram: usize, bands: usize, rows: usize, seed: u64) -> Self {
        assert!(ngram >= 1 && bands >= 1 && rows >= 1, "positive sizes");
        let mut rng = SplitMix64::new(seed);
        let params = (0..bands * rows)
            .map(|_| {
                let a = 1 + rng.next_u64() % (MERSENNE_61 - 1);
                let b = rng.next_u64() % MERSENNE_61;
                (a, b)
            })
            .collect();
        MinHasher {
            ngram,
            bands,
            rows,
            seed,
            params,
        }
    }

    /// Number of bands.
    pub fn bands(&self) -> usize {
        self.bands
    }

    /// The shingle hashes of `text` (deduplicated, sorted), reduced below `2^61 - 1`.
    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let w = words(text);
        let hash =
            |ws: &[String]| xxh3_64_with_seed(ws.join(" ").as_bytes(), self.seed) % MERSENNE_61;
        let mut s: Vec<u64> = if w.len() <= self.ngram {
            vec![hash(&w)]
        } else {
            w.windows(self.ngram).map(hash).collect()
        };
        s.sort_unstable();
        s.dedup();
        s
    }

    /// The MinHash signature of `text` (`bands x rows` entries).
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let shingles = self.shingles(text);
        self.params
            .iter()
            .map(|&(a, b)| {
                shingles
                    .iter()
                    .map(|&x| affine_mod(a, x, b))
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    /// One hash per band of `text`'s signature, appended to `out` (`bands` values).
    pub fn band_hashes(&self, text: &str, out: &mut Vec<u64>) {
        let sig = self.signature(text);
        for (band, rows) in sig.chunks(self.rows).enumerate() {
            let mut bytes = Vec::with_capacity(8 * (rows.len() + 1));
            bytes.extend_from_slice(&(band as u64).to_le_bytes());
            for r in rows {
                bytes.extend_from_slice(&r.to_le_bytes());
            }
            out.push(xxh3_64(&bytes));
        }
    }
}

/// Union-find over document indices; every root is the smallest index of its component.
pub struct Components {
    parent: Vec<u32>,
}

impl Components {
    /// `n` singleton components.
    pub fn new(n: usize) -> Self {
        Components {
            parent: (0..n as u32).collect(),
        }
    }

    /// The smallest index of `i`'s component.
    pub fn root(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let p = self.parent[i as usize];
            self.parent[i as usize] = self.parent[p as usize];
            i = p;
        }
        i
    }

    /// Joins the components of `a` and `b`.
    pub fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.root(a), self.root(b));
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi as usize] = lo;
    }

    /// Joins every pair of documents that share a band: `band_hash(doc, band)` for `n`
    /// documents and `bands` bands, one band at a time. A band is sorted in memory (16 bytes
    /// per document) unless `spill` caps the entries held at once below `n`: then the band is
    /// sorted in runs of that many, written to `spill.dir`, and merged, joining equal
    /// neighbours as they stream past. The components are the same either way.
    pub fn join_bands(
        &mut self,
        n: usize,
        bands: usize,
        band_hash: impl Fn(usize, usize) -> u64,
        spill: Option<&Spill<'_>>,
    ) -> io::Result<SpillStats> {
        let mut stats = SpillStats::default();
        let run_len = spill.map_or(n, |s| s.max_entries.max(2)).min(n.max(1));
        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(run_len);
        for band in 0..bands {
            if run_len >= n {
                entries.clear();
                entries.extend((0..n).map(|i| (band_hash(i, band), i as u32)));
                entries.sort_unstable();
                for pair in entries.windows(2) {
                    if pair[0].0 == pair[1].0 {
                        self.union(pair[0].1, pair[1].1);
                    }
                }
                continue;
            }
            let dir = spill.expect("runs only when spilling").dir;
            let mut runs = Vec::new();
            for start in (0..n).step_by(run_len) {
                entries.clear();
                entries.extend(
                    (start..(start + run_len).min(n)).map(|i| (band_hash(i, band), i as u32)),
                );
                entries.sort_unstable();
                let path = dir.join(format!("band{band}-run{}.bin", runs.len()));
                let mut out = BufWriter::new(File::create(&path)?);
                for &(hash, doc) in &entries {
                    out.write_all(&hash.to_le_bytes())?;
                    out.write_all(&doc.to_le_bytes())?;
                }
                out.flush()?;
                stats.bytes += 12 * entries.len() as u64;
                runs.push(path);
            }
            stats.runs += runs.len();
            self.join_sorted_runs(&runs)?;
            for path in &runs {
                std::fs::remove_file(path)?;
            }
        }
        Ok(stats)
    }

    /// Merges sorted `(hash, doc)` run files, joining documents with equal hashes.
    fn join_sorted_runs(&mut self, runs: &[std::path::PathBuf]) -> io::Result<()> {
        fn next(reader: &mut BufReader<File>) -> io::Result<Option<(u64, u32)>> {
            let mut record = [0u8; 12];
            match reader.read_exact(&mut record) {
                Ok(()) => Ok(Some((
                    u64::from_le_bytes(record[..8].try_into().expect("8 bytes")),
                    u32::from_le_bytes(record[8..].try_into().expect("4 bytes")),
                ))),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                Err(e) => Err(e),
            }
        }
        let mut readers: Vec<BufReader<File>> = runs
            .iter()
            .map(|p| File::open(p).map(BufReader::new))
            .collect::<io::Result<_>>()?;
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (r, reader) in readers.iter_mut().enumerate() {
            if let Some((hash, doc)) = next(reader)? {
                heap.push(Reverse((hash, doc, r)));
            }
        }
        let mut previous: Option<(u64, u32)> = None;
        while let Some(Reverse((hash, doc, r))) = heap.pop() {
            if let Some((h, d)) = previous {
                if h == hash {
                    self.union(d, doc);
                }
            }
            previous = Some((hash, doc));
            if let Some((hash, doc)) = next(&mut readers[r])? {
                heap.push(Reverse((hash, doc, r)));
            }
        }
        Ok(())
    }
}

/// Where [`Components::join_bands`] may sort a band that outgrows memory.
#[derive(Debug, Clone, Copy)]
pub struct Spill<'a> {
    /// A folder for the sorted runs (each removed once its band is merged).
    pub dir: &'a Path,
    /// Band entries (16 bytes each in memory) sorted at a time.
    pub max_entries: usize,
}

/// What a join wrote to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Sorted runs written (over all bands).
    pub runs: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Exact Jaccard similarity of two sorted, deduplicated shingle sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    if union == 0 {
        1.0
    } else {
        both as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(words: &[usize]) -> String {
        words
            .iter()
            .map(|w| format!("w{w}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn affine_mod_matches_big_integer_arithmetic() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..10_000 {
            let (a, x, b) = (
                rng.next_u64() % MERSENNE_61,
                rng.next_u64() % MERSENNE_61,
                rng.next_u64() % MERSENNE_61,
            );
            let expected = ((a as u128 * x as u128 + b as u128) % MERSENNE_61 as u128) as u64;
            assert_eq!(affine_mod(a, x, b), expected);
        }
    }

    #[test]
    fn signature_agreement_estimates_exact_jaccard() {
        // 1024 hash functions: the agreement rate has sd <= 0.016 around J.
        let h = MinHasher::new(3, 128, 8, 11);
        let base: Vec<usize> = (0..300).collect();
        for edit in [0usize, 30, 90, 200] {
            let mut other = base.clone();
            for k in 0..edit {
                other[(k * 7) % 300] = 1000 + k;
            }
            let (ta, tb) = (text(&base), text(&other));
            let exact = jaccard(&h.shingles(&ta), &h.shingles(&tb));
            let (sa, sb) = (h.signature(&ta), h.signature(&tb));
            let agree = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / sa.len() as f64;
            assert!(
                (agree - exact).abs() < 0.06,
                "edit {edit}: J = {exact}, estimate {agree}"
            );
        }
    }

    #[test]
    fn components_join_near_duplicates_and_keep_distant_documents_apart() {
        // Documents of 200 words: families share a base with a few edited words (J >= 0.8
        // on 5-grams), strangers share nothing.
        let h = MinHasher::new(5, 14, 8, 42);
        let mut docs: Vec<Vec<usize>> = Vec::new();
        for family in 0..20 {
            let base: Vec<usize> = (0..200).map(|w| family * 10_000 + w).collect();
            docs.push(base.clone());
            let mut near = base.clone();
            near[100] = 999_999;
            docs.push(near);
            let mut far = base.clone();
            for k in 0..40 {
                far[k * 5] = 500_000 + family * 100 + k;
            }
            docs.push(far);
        }
        let texts: Vec<String> = docs.iter().map(|d| text(d)).collect();
        let shingles: Vec<Vec<u64>> = texts.iter().map(|t| h.shingles(t)).collect();
        let mut bands: Vec<Vec<u64>> = Vec::new();
        for t in &texts {
            let mut b = Vec::new();
            h.band_hashes(t, &mut b);
            bands.push(b);
        }
        let mut c = Components::new(texts.len());
        c.join_bands(texts.len(), 14, |i, b| bands[i][b], None)
            .unwrap();
        for i in 0..texts.len() {
            for j in 0..i {
                let exact = jaccard(&shingles[i], &shingles[j]);
                let joined = c.root(i as u32) == c.root(j as u32);
                if exact >= 0.9 {
                    assert!(joined, "J({i}, {j}) = {exact} not joined");
                }
                if exact < 0.3 {
                    assert!(!joined, "J({i}, {j}) = {exact} joined");
                }
            }
            // Roots are the first member in index order.
            assert!(c.root(i as u32) <= i as u32);
        }
    }

    #[test]
    fn spilled_runs_give_the_components_of_the_in_memory_sort() {
        // 3,000 documents, 4 bands of random hashes from a small alphabet, so every band has
        // many equal values across run boundaries; runs of 7 to 3,000 entries.
        let mut rng = SplitMix64::new(5);
        let n = 3000;
        let hashes: Vec<u64> = (0..n * 4).map(|_| rng.below(2500) as u64).collect();
        let roots = |spill: Option<&Spill<'_>>| {
            let mut c = Components::new(n);
            let stats = c.join_bands(n, 4, |i, b| hashes[i * 4 + b], spill).unwrap();
            let roots: Vec<u32> = (0..n as u32).map(|i| c.root(i)).collect();
            (roots, stats)
        };
        // The oracle: components from every pair with an equal band, by brute force.
        let mut oracle = Components::new(n);
        for b in 0..4 {
            let mut first: std::collections::HashMap<u64, u32> = Default::default();
            for i in 0..n {
                let h = hashes[i * 4 + b];
                let f = *first.entry(h).or_insert(i as u32);
                oracle.union(f, i as u32);
            }
        }
        let expected: Vec<u32> = (0..n as u32).map(|i| oracle.root(i)).collect();
        let (in_memory, stats) = roots(None);
        assert_eq!(in_memory, expected);
        assert_eq!(stats, SpillStats::default());
        let dir = std::env::temp_dir().join(format!("gleaner-spill-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for max_entries in [7, 1000, 2999, 3000] {
            let (spilled, stats) = roots(Some(&Spill {
                dir: &dir,
                max_entries,
            }));
            assert_eq!(spilled, expected, "runs of {max_entries}");
            let runs = if max_entries >= n {
                0
            } else {
                4 * n.div_ceil(max_entries)
            };
            assert_eq!(stats.runs, runs);
            assert_eq!(stats.bytes, if runs == 0 { 0 } else { 4 * 12 * n as u64 });
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "runs are removed"
        );
        std::fs::remove_dir(&dir).unwrap();
    }
}
