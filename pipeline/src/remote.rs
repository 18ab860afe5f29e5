//! Runs whose `output.dir` or cache folder is in object storage (`s3://bucket/prefix`).
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

fn staging_root(config: &Config) -> PathBuf {
    match &config.run.staging_dir {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join("gleaner-staging"),
    }
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
    let root = staging_root(config);
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
        if local.exists() {
            std::fs::remove_dir_all(&local)
                .with_context(|| format!("clearing the staging folder {}", local.display()))?;
        }
        std::fs::create_dir_all(&local)
            .with_context(|| format!("creating the staging folder {}", local.display()))?;
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
