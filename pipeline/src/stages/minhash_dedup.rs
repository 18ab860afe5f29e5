//! `minhash_dedup`: near-duplicate removal. Band hashes of each document's MinHash signature
//! are computed in the map phase; the reduce joins documents sharing a band into connected
//! components and keeps the first of each in corpus order (`gleaner_selectors::minhash`).
//! With `against`, documents sharing a band with an existing corpus are dropped first.

use super::{Pool, PoolStage, StageEnv};
use crate::config::minhash_dedup::MinhashDedupConfig;
use anyhow::{Context, Result};
use gleaner_selectors::minhash::{Components, MinHasher, Spill};
use gleaner_storage::atomic::write_bytes;
use gleaner_storage::input::file_identities;
use gleaner_storage::reader::for_each_text;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// The stage of a config.
pub struct MinhashDedupStage {
    config: MinhashDedupConfig,
    hasher: MinHasher,
    seed: u64,
}

impl MinhashDedupStage {
    /// The stage of `config`, its hash functions drawn from `seed`.
    pub fn new(config: &MinhashDedupConfig, seed: u64) -> Self {
        MinhashDedupStage {
            hasher: MinHasher::new(config.ngram, config.bands, config.rows_per_band, seed),
            config: config.clone(),
            seed,
        }
    }

    /// The `(band, hash)` pairs of the `against` corpus, from the cache when its files and
    /// the settings are unchanged.
    fn existing_bands(&self, env: &StageEnv<'_>) -> Result<HashSet<(u32, u64)>> {
        let c = &self.config;
        let key = format!("{}.against", env.key);
        let identity = serde_json::json!({
            "files": file_identities(&c.against).with_context(|| format!("at key `{key}`"))?,
            "text_column": c.against_text_column,
            "ngram": c.ngram, "bands": c.bands, "rows": c.rows_per_band,
            "seed": self.seed,
        });
        let digest = Sha256::digest(identity.to_string().as_bytes());
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let path = crate::models::features::cache_root(env.config)
            .join("minhash")
            .join(format!("{name}.bin"));
        let hashes: Vec<u64> = match std::fs::read(&path)
            .ok()
            .and_then(|b| postcard::from_bytes(&b).ok())
        {
            Some(cached) => cached,
            None => {
                let mut hashes = Vec::new();
                for_each_text(&c.against, &c.against_text_column, |t| {
                    self.hasher.band_hashes(t, &mut hashes);
                    true
                })
                .with_context(|| format!("at key `{key}`"))?;
                let dir = path.parent().expect("a cache file has a folder");
                std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
                write_bytes(&path, &postcard::to_stdvec(&hashes)?)?;
                hashes
            }
        };
        Ok(hashes
            .chunks(c.bands)
            .flat_map(|doc| doc.iter().enumerate().map(|(b, &h)| (b as u32, h)))
            .collect())
    }
}

impl PoolStage for MinhashDedupStage {
    fn words_per_document(&self) -> usize {
        self.config.bands
    }

    fn map_document(&self, text: &str, out: &mut Vec<u64>) {
        self.hasher.band_hashes(text, out);
    }

    fn apply(&self, pool: &mut Pool<'_>, env: &StageEnv<'_>) -> Result<()> {
        if !self.config.against.is_empty() {
            let existing = self.existing_bands(env)?;
            let keep: Vec<bool> = (0..pool.len())
                .map(|i| {
                    !pool
                        .stage_words(i)
                        .iter()
                        .enumerate()
                        .any(|(b, &h)| existing.contains(&(b as u32, h)))
                })
                .collect();
            pool.retain(&keep, "near_duplicate_existing");
        }
        let n = pool.len();
        let mut components = Components::new(n);
        let limit = env.config.run.memory_limit.map(|l| l.bytes());
        let spill_dir = match limit {
            Some(limit) if 16 * n as u64 > limit => {
                let root = crate::models::features::cache_root(env.config).join("tmp");
                std::fs::create_dir_all(&root).with_context(|| root.display().to_string())?;
                Some(
                    tempfile::Builder::new()
                        .prefix("minhash-")
                        .tempdir_in(&root)
                        .with_context(|| root.display().to_string())?,
                )
            }
            _ => None,
        };
        let spill = spill_dir.as_ref().zip(limit).map(|(dir, limit)| Spill {
            dir: dir.path(),
            max_entries: (limit / 16) as usize,
        });
        let spilled = components
            .join_bands(
                n,
                self.config.bands,
                |i, b| pool.stage_words(i)[b],
                spill.as_ref(),
            )
            .with_context(|| format!("{}: sorting band runs under run.cache_dir", env.key))?;
        if spilled.runs > 0 {
            tracing::info!(
                "{}: {n} documents' band entries outgrew run.memory_limit; sorted {} runs ({} MB) on disk",
                env.key,
                spilled.runs,
                spilled.bytes / 1_000_000
            );
        }
        let keep: Vec<bool> = (0..n as u32).map(|i| components.root(i) == i).collect();
        pool.retain(&keep, "near_duplicate");
        Ok(())
    }
}
