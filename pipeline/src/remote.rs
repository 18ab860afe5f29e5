//! Runs, ablations and evaluations whose `output.dir` or cache folder is in object storage
//!
//! The run itself writes into a local staging folder, exactly as a local run would; only
//! once it has completed is the folder published: every file uploaded whole (a PUT, or a
//! multipart upload completed after its last part), stale objects of an earlier run removed,
//! and `manifest.json` uploaded last, so a prefix holding a manifest always holds a whole
//! run. A failed or interrupted run publishes nothing. A remote cache is mirrored into a
//! local folder before the run (only objects missing locally are downloaded) and the
//! entries the run added are uploaded after it.

use crate::config::Config;
use crate::models::features::configured_cache_root;
use anyhow::{bail, Context, Result};
use gleaner_storage::atomic::hex;
use gleaner_storage::manifest::MANIFEST_FILE;
use gleaner_storage::object::{is_remote, mirror_down, mirror_up, publish_dir, ObjectLocation};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Remote folders of a staged run and their local stand-ins.
pub struct Staging {
    output: Option<(PathBuf, ObjectLocation)>,
    cache: Option<(PathBuf, ObjectLocation)>,
}

/// Whether a run of `config` reads or writes a folder in object storage.
pub fn is_staged(config: &Config) -> bool {
    is_remote(&config.output.dir) || is_remote(&configured_cache_root(config))
}

fn staging_root(staging_dir: Option<&str>) -> PathBuf {
    match staging_dir {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join("gleaner-staging"),
    }
}

/// A folder created empty (an earlier attempt's leftovers removed).
fn fresh_folder(local: &std::path::Path) -> Result<()> {
    if local.exists() {
        std::fs::remove_dir_all(local)
            .with_context(|| format!("clearing the staging folder {}", local.display()))?;
    }
    std::fs::create_dir_all(local)
        .with_context(|| format!("creating the staging folder {}", local.display()))
}

/// A local folder name for a URL: readable and unique.
fn folder_for(kind: &str, url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    format!("{kind}-{}", hex(&digest[..8]))
}

/// Points `config`'s output and cache at local folders where they are remote: refuses to
/// replace a completed remote run unless `output.overwrite`, refuses an output prefix that
/// holds an input, and mirrors a remote cache down.
pub fn stage(config: &mut Config) -> Result<Staging> {
    let root = staging_root(config.run.staging_dir.as_deref());
    let mut staging = Staging {
        output: None,
        cache: None,
    };
    let out_url = config.output.dir.trim_end_matches('/').to_string();
    if is_remote(&out_url) {
        let prefix = ObjectLocation::parse(&out_url).context("at key `output.dir`")?;
        for input in config.input.paths.iter().filter(|p| is_remote(p)) {
            if input
                .trim_end_matches('/')
                .starts_with(&format!("{out_url}/"))
                || *input == out_url
            {
                bail!(
                    "output.dir {out_url} contains the input {input}; choose another output prefix"
                );
            }
        }
        if prefix.join(MANIFEST_FILE).head()?.is_some() && !config.output.overwrite {
            bail!(
                "{out_url}: already holds a completed run (manifest.json); pass --overwrite or set output.overwrite = true"
            );
        }
        let local = root.join(folder_for("out", &out_url));
        fresh_folder(&local)?;
        tracing::info!("staging {out_url} in {}", local.display());
        config.output.staging = Some(local.clone());
        staging.output = Some((local, prefix));
    }
    let cache_url = configured_cache_root(config)
        .trim_end_matches('/')
        .to_string();
    if is_remote(&cache_url) {
        let prefix = ObjectLocation::parse(&cache_url).context("at key `run.cache_dir`")?;
        let local = root.join(folder_for("cache", &cache_url));
        let fetched = mirror_down(&prefix, &local).context("mirroring run.cache_dir")?;
        if fetched > 0 {
            tracing::info!("cache: {fetched} object(s) fetched from {cache_url}");
        }
        config.run.cache_staging = Some(local.clone());
        staging.cache = Some((local, prefix));
    }
    Ok(staging)
}

impl Staging {
    /// Removes the output staging folder of a run that failed (nothing was published; the
    /// cache mirror stays for the next run).
    pub fn discard(self) {
        if let Some((local, _)) = &self.output {
            let _ = std::fs::remove_dir_all(local);
        }
    }

    /// Uploads the cache entries the run added, then publishes the completed output folder
    /// (manifest last) and removes its staging folder.
    pub fn publish(self) -> Result<()> {
        if let Some((local, prefix)) = &self.cache {
            // `tmp/` holds the reduce's sort runs, removed as they are merged.
            let uploaded = mirror_up(local, prefix, &["tmp"])
                .with_context(|| format!("publishing the cache to {}", prefix.url()))?;
            if uploaded > 0 {
                tracing::info!("cache: {uploaded} object(s) uploaded to {}", prefix.url());
            }
        }
        if let Some((local, prefix)) = &self.output {
            let files = publish_dir(local, prefix, MANIFEST_FILE)
                .with_context(|| format!("publishing the run to {}", prefix.url()))?;
            tracing::info!("published {files} file(s) to {}", prefix.url());
            std::fs::remove_dir_all(local)
                .with_context(|| format!("removing the staging folder {}", local.display()))?;
        }
        Ok(())
    }
}

/// An ablation's folder (`ablate`, `evaluate`) in object storage, worked on in a local copy:
/// the prefix is mirrored into a fresh local folder before the command (the methods' earlier
/// runs, which `ablate --methods` leaves as they are and `evaluate` trains on), and the
/// folder is published whole after the command succeeds, its report uploaded last.
pub struct StagedAblation {
    local: PathBuf,
    prefix: ObjectLocation,
    last: &'static str,
}

/// Points `output_dir` at a local copy of itself when it is in object storage (`None`
/// otherwise); `last` is the file published last (the command's report), so the prefix
/// holds it only once the rest is there.
pub fn stage_ablation(
    output_dir: &mut String,
    staging_dir: Option<&str>,
    last: &'static str,
) -> Result<Option<StagedAblation>> {
    let url = output_dir.trim_end_matches('/').to_string();
    if !is_remote(&url) {
        return Ok(None);
    }
    let prefix = ObjectLocation::parse(&url).context("at key `output.dir`")?;
    let local = staging_root(staging_dir).join(folder_for("ablation", &url));
    fresh_folder(&local)?;
    let fetched = mirror_down(&prefix, &local).with_context(|| format!("reading {url}"))?;
    tracing::info!(
        "staging {url} in {} ({fetched} object(s) fetched)",
        local.display()
    );
    *output_dir = local.display().to_string();
    Ok(Some(StagedAblation {
        local,
        prefix,
        last,
    }))
}

impl StagedAblation {
    /// Publishes the folder (`last` at the end) and removes the local copy.
    pub fn publish(self) -> Result<()> {
        let files = publish_dir(&self.local, &self.prefix, self.last)
            .with_context(|| format!("publishing to {}", self.prefix.url()))?;
        tracing::info!("published {files} file(s) to {}", self.prefix.url());
        std::fs::remove_dir_all(&self.local)
            .with_context(|| format!("removing the staging folder {}", self.local.display()))
    }

    /// Removes the local copy of a command that failed (nothing is published).
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.local);
    }
}
