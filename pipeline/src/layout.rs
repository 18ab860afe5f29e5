//! The output folder's layout: what a run writes where, making the folder ready for a run,
//! and the progress file.

use anyhow::{bail, Context, Result};
use gleaner_storage::atomic::write_bytes;
use gleaner_storage::manifest::MANIFEST_FILE;
use gleaner_storage::reader::CorpusReader;
use std::path::{Path, PathBuf};

/// Selected-document shards.
pub const SELECTED_DIR: &str = "selected";
/// Dropped-document shards, one folder per reason.
pub const REMOVED_DIR: &str = "removed";
/// Per-kept-document provenance.
pub const SELECTION_FILE: &str = "selection.parquet";
/// Per-stage counts.
pub const STATS_FILE: &str = "stats.json";
/// Human-readable report.
pub const REPORT_MD: &str = "report.md";
/// Machine-readable report.
pub const REPORT_JSON: &str = "report.json";
/// The resolved config.
pub const CONFIG_FILE: &str = "config.toml";
/// Wall time per phase (not part of the deterministic outputs).
pub const TIMINGS_FILE: &str = "timings.json";
/// Current phase of a running job.
pub const PROGRESS_FILE: &str = "progress.json";
/// Cluster sizes, sample titles and a 2-D projection (when a stage clusters).
pub const CLUSTERS_JSON: &str = "clusters.json";
/// The same as a page with plots.
pub const CLUSTERS_HTML: &str = "clusters.html";
/// Plots of a quad stage's bandit (rewards per round, pulls and composition per cluster).
pub const QUAD_HTML: &str = "quad.html";

/// Records the running phase in the progress file (advisory: a failure is ignored).
pub fn write_progress(out: &Path, phase: &str, detail: serde_json::Value) {
    let json = serde_json::json!({ "phase": phase, "detail": detail });
    // Progress is advisory: a failure to record it must not fail the run.
    let _ = write_bytes(&out.join(PROGRESS_FILE), json.to_string().as_bytes());
}

/// Makes `out` ready for a run: refuses to replace a completed run without `overwrite` or to
/// write inside the inputs, and removes the outputs of an earlier run.
pub fn prepare_output(out: &Path, reader: &CorpusReader, overwrite: bool) -> Result<()> {
    if out.join(MANIFEST_FILE).exists() && !overwrite {
        bail!(
            "{}: already holds a completed run (manifest.json); pass --overwrite or set output.overwrite = true",
            out.display()
        );
    }
    if out.exists() {
        let out_abs = out
            .canonicalize()
            .with_context(|| format!("{}", out.display()))?;
        for f in reader.files() {
            if let Ok(p) = f.path.canonicalize() {
                if p.starts_with(&out_abs) {
                    bail!(
                        "output.dir {} contains the input file {}; choose another output directory",
                        out.display(),
                        f.path.display()
                    );
                }
            }
        }
        // The manifest goes first, so an interrupted clean-up never looks complete.
        let mut doomed = vec![PathBuf::from(MANIFEST_FILE)];
        doomed.extend(
            [
                SELECTION_FILE,
                STATS_FILE,
                REPORT_MD,
                REPORT_JSON,
                CONFIG_FILE,
                TIMINGS_FILE,
                PROGRESS_FILE,
                CLUSTERS_JSON,
                CLUSTERS_HTML,
                QUAD_HTML,
                SELECTED_DIR,
                REMOVED_DIR,
            ]
            .map(PathBuf::from),
        );
        for rel in doomed {
            let p = out.join(rel);
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else if p.exists() {
                std::fs::remove_file(&p)
            } else {
                Ok(())
            };
            r.with_context(|| format!("removing previous output {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating output directory {}", out.display()))?;
    Ok(())
}
