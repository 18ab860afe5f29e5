//! Cluster report: sizes, sample titles nearest each centroid, and a 2-D PCA projection,
//! written as `clusters.json` and `clusters.html` (inline SVG plots, no external assets).

use crate::layout;
use anyhow::Result;
use gleaner_selectors::kmeans::FitResult;
use gleaner_selectors::rng::SplitMix64;
use gleaner_storage::atomic::write_bytes;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

/// Points drawn in the projection plot at most.
const MAX_PLOTTED: usize = 2000;
/// Titles shown per cluster.
const SAMPLES: usize = 3;

/// One cluster's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster: u32,
    /// Documents assigned.
    pub size: u64,
    /// Of which removed as semantic duplicates.
    pub removed: u64,
    /// Titles of the documents nearest the centroid.
    pub samples: Vec<String>,
}

/// Everything the cluster report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// Per cluster, by id.
    pub clusters: Vec<ClusterInfo>,
    /// Sum of squared distances to the centroids.
    pub inertia: f64,
    /// Sampled points on the first two principal components: (x, y, cluster).
    pub projection: Vec<(f32, f32, u32)>,
}

/// Top two principal directions of `rows` (centred), by power iteration.
fn pca2(rows: &[f32], dim: usize) -> [Vec<f32>; 2] {
    let n = rows.len() / dim;
    let mut mean = vec![0f32; dim];
    for r in rows.chunks(dim) {
        mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / n as f32);
    }
    let centred: Vec<f32> = rows
        .chunks(dim)
        .flat_map(|r| r.iter().zip(&mean).map(|(x, m)| x - m))
        .collect();
    let mut dirs: Vec<Vec<f32>> = Vec::new();
    for c in 0..2 {
        let mut v: Vec<f32> = (0..dim)
            .map(|j| if j % 2 == c { 1.0 } else { 0.5 })
            .collect();
        for _ in 0..50 {
            // v <- X^T (X v), then orthogonalise against earlier directions and normalise.
            let xv: Vec<f32> = centred
                .chunks(dim)
                .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            let mut next = vec![0f32; dim];
            for (r, s) in centred.chunks(dim).zip(&xv) {
                next.iter_mut().zip(r).for_each(|(t, x)| *t += x * s);
            }
            for d in &dirs {
                let p: f32 = next.iter().zip(d).map(|(a, b)| a * b).sum();
                next.iter_mut().zip(d).for_each(|(t, x)| *t -= p * x);
            }
            let norm = next.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm == 0.0 {
                break;
            }
            v = next.into_iter().map(|x| x / norm).collect();
        }
        dirs.push(v);
    }
    let second = dirs.pop().expect("two directions");
    let first = dirs.pop().expect("two directions");
    [first, second]
}

impl ClusterSummary {
    /// Summarises a fit of `data` (row-major, `dim` columns).
    pub fn build(
        data: &[f32],
        dim: usize,
        fit: &FitResult,
        titles: &[&str],
        removed: &[bool],
        seed: u64,
    ) -> Self {
        let k = fit.model.k();
        let mut clusters: Vec<ClusterInfo> = (0..k as u32)
            .map(|cluster| ClusterInfo {
                cluster,
                size: 0,
                removed: 0,
                samples: Vec::new(),
            })
            .collect();
        let mut nearest: Vec<Vec<(f32, usize)>> = vec![Vec::new(); k];
        for (i, &c) in fit.assignments.iter().enumerate() {
            let info = &mut clusters[c as usize];
            info.size += 1;
            info.removed += removed[i] as u64;
            let sim: f32 = data[i * dim..(i + 1) * dim]
                .iter()
                .zip(fit.model.centroid(c as usize))
                .map(|(a, b)| a * b)
                .sum();
            nearest[c as usize].push((sim, i));
        }
        for (info, mut near) in clusters.iter_mut().zip(nearest) {
            near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            info.samples = near
                .iter()
                .take(SAMPLES)
                .map(|&(_, i)| titles[i].to_string())
                .collect();
        }
        let n = data.len() / dim;
        let sample = SplitMix64::new(seed).sample_indices(n, MAX_PLOTTED);
        let rows: Vec<f32> = sample
            .iter()
            .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let [d1, d2] = pca2(&rows, dim);
        let projection = sample
            .iter()
            .zip(rows.chunks(dim))
            .map(|(&i, r)| {
                let x = r.iter().zip(&d1).map(|(a, b)| a * b).sum();
                let y = r.iter().zip(&d2).map(|(a, b)| a * b).sum();
                (x, y, fit.assignments[i])
            })
            .collect();
        ClusterSummary {
            clusters,
            inertia: fit.inertia,
            projection,
        }
    }

    fn sizes_svg(&self) -> String {
        let mut sizes: Vec<(u64, u64)> =
            self.clusters.iter().map(|c| (c.size, c.removed)).collect();
        sizes.sort_by(|a, b| b.cmp(a));
        let (w, h) = (720.0, 240.0);
        let max = sizes.first().map(|s| s.0).unwrap_or(1).max(1) as f64;
        let bar = w / sizes.len().max(1) as f64;
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="11">"#,
            h + 30.0
        );
        for (i, (size, rem)) in sizes.iter().enumerate() {
            let bh = h * *size as f64 / max;
            let rh = h * *rem as f64 / max;
            let x = i as f64 * bar;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4878a8"/>"##,
                h - bh,
                (bar - 1.0).max(0.5)
            );
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{rh:.1}" fill="#d0604a"/>"##,
                h - rh,
                (bar - 1.0).max(0.5)
            );
        }
        let _ = write!(
            s,
            r#"<text x="0" y="{}">clusters by size (largest {}; blue: size, red: removed as semantic duplicates)</text></svg>"#,
            h + 20.0,
            max
        );
        s
    }

    fn projection_svg(&self) -> String {
        let (w, h) = (480.0f32, 480.0f32);
        let (mut x0, mut x1, mut y0, mut y1) = (
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
        );
        for &(x, y, _) in &self.projection {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        let sx = (w - 20.0) / (x1 - x0).max(1e-6);
        let sy = (h - 20.0) / (y1 - y0).max(1e-6);
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="11">"#,
            h + 20.0
        );
        for &(x, y, c) in &self.projection {
            let hue = (c as f32 * 137.508) % 360.0;
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="hsl({hue:.0},65%,45%)"/>"#,
                10.0 + (x - x0) * sx,
                10.0 + (y1 - y) * sy
            );
        }
        let _ = write!(
            s,
            r#"<text x="0" y="{}">{} documents on the first two principal components, coloured by cluster</text></svg>"#,
            h + 15.0,
            self.projection.len()
        );
        s
    }

    /// Writes `clusters.json` and `clusters.html` into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        write_bytes(
            &out.join(layout::CLUSTERS_JSON),
            &serde_json::to_vec_pretty(self)?,
        )?;
        let mut html = String::from("<!doctype html><meta charset=\"utf-8\"><title>gleaner clusters</title><body style=\"font-family:sans-serif\">");
        let _ = write!(
            html,
            "<h1>Clusters</h1><p>{} clusters, inertia {:.3}</p>",
            self.clusters.len(),
            self.inertia
        );
        html.push_str(&self.sizes_svg());
        html.push_str("<br>");
        html.push_str(&self.projection_svg());
        html.push_str("<table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\"><tr><th>cluster</th><th>size</th><th>removed</th><th>nearest to centroid</th></tr>");
        let escape = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        for c in &self.clusters {
            let samples: Vec<String> = c.samples.iter().map(|t| escape(t)).collect();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.cluster,
                c.size,
                c.removed,
                samples.join("<br>")
            );
        }
        html.push_str("</table></body>");
        write_bytes(&out.join(layout::CLUSTERS_HTML), html.as_bytes())?;
        Ok(())
    }
}
