//! What a `quad` stage did, for the run report: the bandit's pulls and rewards per round,
//! pulls and selections per cluster, the selected-vs-pool cluster composition, and the cost
//! in forward+backward passes. `quad.html` shows the same as plots.

use crate::layout;
use anyhow::Result;
use gleaner_selectors::quad::select::QuadSelection;
use gleaner_storage::atomic::write_bytes;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

/// One pull of the bandit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullRow {
    /// Round, from 0.
    pub round: usize,
    /// The arm (cluster).
    pub cluster: usize,
    /// Its Cluster Score when chosen.
    pub arm_score: f64,
    /// Mean probe `q` minus τ.
    pub reward: f64,
    /// Whether a block was accepted.
    pub accepted: bool,
    /// Documents accepted.
    pub block: usize,
}

/// One round's rewards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRow {
    /// Round, from 0.
    pub round: usize,
    /// Arms pulled.
    pub pulls: usize,
    /// Blocks accepted.
    pub accepted: usize,
    /// Mean reward of the round's pulls.
    pub mean_reward: f64,
    /// Lowest reward.
    pub min_reward: f64,
    /// Highest reward.
    pub max_reward: f64,
}

/// One cluster's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterRow {
    /// Cluster index.
    pub cluster: usize,
    /// Documents in the pool.
    pub size: usize,
    /// Times pulled.
    pub pulls: usize,
    /// Accepted blocks.
    pub accepted_blocks: usize,
    /// Documents selected.
    pub selected: usize,
    /// Mean `q` of its probed documents (none when never probed).
    pub mean_probe_score: Option<f64>,
}

/// Probe influence of one source's probed documents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceProbeRow {
    /// Source (`(none)` for documents without one).
    pub source: String,
    /// Its documents probed.
    pub probed: usize,
    /// Mean `q` of those probes.
    pub mean_probe_score: f64,
}

/// The Quad section of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuadReport {
    /// Proxy model folder.
    pub model: String,
    /// Compared linear layers.
    pub layers: Vec<String>,
    /// `identity`, `kfac` or `ekfac`.
    pub curvature: String,
    /// Reference documents.
    pub reference_documents: usize,
    /// Documents the curvature was fitted on (0 for identity).
    pub fit_documents: usize,
    /// `documents` or `tokens`.
    pub budget_unit: String,
    /// The budget.
    pub budget: u64,
    /// Documents or tokens selected.
    pub selected_amount: u64,
    /// Whether the budget was met; otherwise why the bandit stopped.
    pub budget_reached: bool,
    /// Why the bandit stopped.
    pub stopped: String,
    /// τ as used.
    pub reward_offset: f64,
    /// How τ was set (given, or the quantile of the first probes).
    pub reward_offset_rule: String,
    /// `fixed` or `proportional` blocks.
    pub block_rule: String,
    /// Pool documents probed.
    pub probed_documents: usize,
    /// Forward+backward passes over probe windows.
    pub probe_passes: usize,
    /// Forward+backward passes over reference and fit documents.
    pub reference_passes: usize,
    /// All passes divided by the selected documents.
    pub passes_per_selected_document: f64,
    /// Per round.
    pub rounds: Vec<RoundRow>,
    /// Per cluster.
    pub clusters: Vec<ClusterRow>,
    /// Every pull in order.
    pub pulls: Vec<PullRow>,
    /// Mean probe influence per source, highest first (filled by the stage, which knows the
    /// documents' sources).
    pub sources: Vec<SourceProbeRow>,
}

/// Inputs of [`QuadReport::new`] that are not in the selection.
pub struct QuadReportContext<'a> {
    /// Proxy model folder.
    pub model: &'a str,
    /// Compared layers.
    pub layers: &'a [String],
    /// Curvature name.
    pub curvature: &'a str,
    /// Reference and fit documents (fit = 0 without curvature).
    pub reference_fit: (usize, usize),
    /// `documents` or `tokens`.
    pub budget_unit: &'a str,
    /// The budget.
    pub budget: u64,
    /// Max rounds of the bandit.
    pub max_rounds: usize,
    /// Windows of each probe, in probe order.
    pub probe_windows: &'a [usize],
    /// How τ was set.
    pub reward_offset_rule: String,
    /// `fixed` or `proportional`.
    pub block_rule: &'a str,
}

impl QuadReport {
    /// Summarises a selection.
    pub fn new(sel: &QuadSelection, ctx: &QuadReportContext<'_>) -> Self {
        let pulls: Vec<PullRow> = sel
            .pulls
            .iter()
            .map(|p| PullRow {
                round: p.round,
                cluster: p.arm,
                arm_score: p.score,
                reward: p.reward,
                accepted: p.accepted,
                block: p.block,
            })
            .collect();
        let mut rounds: Vec<RoundRow> = Vec::new();
        for p in &pulls {
            if rounds.last().is_none_or(|r| r.round != p.round) {
                rounds.push(RoundRow {
                    round: p.round,
                    pulls: 0,
                    accepted: 0,
                    mean_reward: 0.0,
                    min_reward: f64::INFINITY,
                    max_reward: f64::NEG_INFINITY,
                });
            }
            let r = rounds.last_mut().expect("pushed");
            r.pulls += 1;
            r.accepted += p.accepted as usize;
            r.mean_reward += p.reward;
            r.min_reward = r.min_reward.min(p.reward);
            r.max_reward = r.max_reward.max(p.reward);
        }
        for r in &mut rounds {
            r.mean_reward /= r.pulls as f64;
        }
        let mut probe_sums = vec![(0.0, 0usize); sel.clusters.len()];
        for &(doc, q) in &sel.probes {
            let c = sel.assignments[doc] as usize;
            probe_sums[c].0 += q;
            probe_sums[c].1 += 1;
        }
        let clusters = sel
            .clusters
            .iter()
            .enumerate()
            .map(|(c, o)| ClusterRow {
                cluster: c,
                size: o.size,
                pulls: o.pulls,
                accepted_blocks: o.accepted_blocks,
                selected: o.selected,
                mean_probe_score: (probe_sums[c].1 > 0)
                    .then(|| probe_sums[c].0 / probe_sums[c].1 as f64),
            })
            .collect();
        let stopped = if sel.budget_reached {
            "budget reached".to_string()
        } else if rounds.len() >= ctx.max_rounds {
            format!("max_rounds ({}) reached before the budget", ctx.max_rounds)
        } else {
            "every cluster exhausted (no cluster can give another block) before the budget"
                .to_string()
        };
        let probe_passes: usize = ctx.probe_windows.iter().sum();
        let reference_passes = ctx.reference_fit.0 + ctx.reference_fit.1;
        let selected = sel.picks.len();
        Self {
            model: ctx.model.to_string(),
            layers: ctx.layers.to_vec(),
            curvature: ctx.curvature.to_string(),
            reference_documents: ctx.reference_fit.0,
            fit_documents: ctx.reference_fit.1,
            budget_unit: ctx.budget_unit.to_string(),
            budget: ctx.budget,
            selected_amount: sel.selected_amount,
            budget_reached: sel.budget_reached,
            stopped,
            reward_offset: sel.reward_offset,
            reward_offset_rule: ctx.reward_offset_rule.clone(),
            block_rule: ctx.block_rule.to_string(),
            probed_documents: sel.probes.len(),
            probe_passes,
            reference_passes,
            passes_per_selected_document: if selected == 0 {
                0.0
            } else {
                (probe_passes + reference_passes) as f64 / selected as f64
            },
            rounds,
            clusters,
            pulls,
            sources: Vec::new(),
        }
    }

    /// Fills [`QuadReport::sources`] from the probes (pool index, q) and each pool
    /// document's source.
    pub fn set_sources(&mut self, probes: &[(usize, f64)], source: impl Fn(usize) -> String) {
        let mut by: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
        for &(i, q) in probes {
            let e = by.entry(source(i)).or_default();
            e.0 += 1;
            e.1 += q;
        }
        let mut rows: Vec<SourceProbeRow> = by
            .into_iter()
            .map(|(source, (probed, sum))| SourceProbeRow {
                source,
                probed,
                mean_probe_score: sum / probed as f64,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.mean_probe_score
                .total_cmp(&a.mean_probe_score)
                .then_with(|| a.source.cmp(&b.source))
        });
        self.sources = rows;
    }

    /// The report.md section.
    pub fn render_markdown(&self, s: &mut String) {
        let _ = writeln!(s, "## Quad\n");
        let _ = writeln!(
            s,
            "Proxy `{}`, {} curvature over {} linear layers ({}), {} reference documents{}. Budget {} {}: selected {} ({}).\n",
            self.model,
            self.curvature,
            self.layers.len(),
            self.layers.join(", "),
            self.reference_documents,
            if self.fit_documents > 0 {
                format!(", factors fitted on {}", self.fit_documents)
            } else {
                String::new()
            },
            self.budget,
            self.budget_unit,
            self.selected_amount,
            self.stopped
        );
        let probed_clusters = self.clusters.iter().filter(|c| c.pulls > 0).count();
        let _ = writeln!(
            s,
            "Reward offset tau = {:.6} ({}); {} blocks: {} documents accepted from {} clusters; {} of {} clusters probed.\n",
            self.reward_offset,
            self.reward_offset_rule,
            self.block_rule,
            self.pulls.iter().map(|p| p.block).sum::<usize>(),
            self.clusters.iter().filter(|c| c.accepted_blocks > 0).count(),
            probed_clusters,
            self.clusters.len()
        );
        let _ = writeln!(
            s,
            "Cost: {} pulls in {} rounds probed {} documents = {} forward+backward window passes, plus {} for the reference and fit sets: {:.2} passes per selected document. Plots: `quad.html`.\n",
            self.pulls.len(),
            self.rounds.len(),
            self.probed_documents,
            self.probe_passes,
            self.reference_passes,
            self.passes_per_selected_document
        );
        let _ = writeln!(
            s,
            "| round | pulls | accepted | mean reward | min | max |\n|---|---|---|---|---|---|"
        );
        for r in &self.rounds {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.5} | {:.5} | {:.5} |",
                r.round, r.pulls, r.accepted, r.mean_reward, r.min_reward, r.max_reward
            );
        }
        if !self.sources.is_empty() {
            let _ = writeln!(
                s,
                "\nMean probe influence per source, highest first:\n\n| source | probed | mean probe q |\n|---|---:|---:|"
            );
            for r in &self.sources {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.5} |",
                    r.source, r.probed, r.mean_probe_score
                );
            }
        }
        let pool: usize = self.clusters.iter().map(|c| c.size).sum();
        let kept: usize = self.clusters.iter().map(|c| c.selected).sum();
        let mut top: Vec<&ClusterRow> = self.clusters.iter().filter(|c| c.pulls > 0).collect();
        top.sort_by(|a, b| b.selected.cmp(&a.selected).then(a.cluster.cmp(&b.cluster)));
        let _ = writeln!(
            s,
            "\nPulled clusters ({} of {}), most selected first:\n\n| cluster | pool share | selected share | pulls | blocks | mean probe q |\n|---|---|---|---|---|---|",
            top.len(),
            self.clusters.len()
        );
        let share = |part: usize, whole: usize| {
            if whole == 0 {
                "-".to_string()
            } else {
                format!("{:.1}%", 100.0 * part as f64 / whole as f64)
            }
        };
        for c in top.iter().take(20) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                c.cluster,
                share(c.size, pool),
                share(c.selected, kept),
                c.pulls,
                c.accepted_blocks,
                c.mean_probe_score
                    .map_or("-".to_string(), |q| format!("{q:.5}"))
            );
        }
        let _ = writeln!(s);
    }

    /// Rewards of every pull by round, with each round's mean.
    fn rewards_svg(&self) -> String {
        let (w, h, pad) = (720.0, 260.0, 40.0);
        let rounds = self.rounds.len().max(1) as f64;
        let (lo, hi) = self.pulls.iter().fold((0.0f64, 0.0f64), |(lo, hi), p| {
            (lo.min(p.reward), hi.max(p.reward))
        });
        let span = (hi - lo).max(1e-12);
        let x = |round: f64| pad + (w - 2.0 * pad) * (round + 0.5) / rounds;
        let y = |v: f64| 10.0 + (h - 20.0) * (hi - v) / span;
        let mut s = svg_open(w, h + 30.0);
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="4"/>"##,
            w - pad,
            y(0.0),
            y(0.0)
        );
        for p in &self.pulls {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"##,
                x(p.round as f64),
                y(p.reward),
                if p.accepted { "#3a8a3a" } else { "#c05040" }
            );
        }
        let mean: Vec<String> = self
            .rounds
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.round as f64), y(r.mean_reward)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#305080" stroke-width="1.5"/>"##,
            mean.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="0" y="{}">reward (mean q - tau) of each pull by round ({} rounds; green: block accepted, red: rejected; line: round mean; dashed: 0; range {:.4} .. {:.4})</text></svg>"#,
            h + 20.0,
            self.rounds.len(),
            lo,
            hi
        );
        s
    }

    /// Pulls per cluster, and pool vs selected share per cluster.
    fn clusters_svg(&self) -> String {
        let (w, h) = (720.0, 200.0);
        let n = self.clusters.len().max(1) as f64;
        let bar = w / n;
        let pool: usize = self.clusters.iter().map(|c| c.size).sum::<usize>().max(1);
        let kept: usize = self
            .clusters
            .iter()
            .map(|c| c.selected)
            .sum::<usize>()
            .max(1);
        let max_pulls = self
            .clusters
            .iter()
            .map(|c| c.pulls)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let max_share = self
            .clusters
            .iter()
            .map(|c| (c.size as f64 / pool as f64).max(c.selected as f64 / kept as f64))
            .fold(1e-12, f64::max);
        let mut s = svg_open(w, 2.0 * h + 70.0);
        for (i, c) in self.clusters.iter().enumerate() {
            let x = i as f64 * bar;
            let bh = h * c.pulls as f64 / max_pulls;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4878a8"/>"##,
                h - bh,
                (bar - 1.0).max(0.5)
            );
            let base = 2.0 * h + 30.0;
            let half = ((bar - 1.0) / 2.0).max(0.25);
            let ph = h * (c.size as f64 / pool as f64) / max_share;
            let sh = h * (c.selected as f64 / kept as f64) / max_share;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{half:.1}" height="{ph:.1}" fill="#999"/><rect x="{:.1}" y="{:.1}" width="{half:.1}" height="{sh:.1}" fill="#3a8a3a"/>"##,
                base - ph,
                x + half,
                base - sh
            );
        }
        let _ = write!(
            s,
            r#"<text x="0" y="{}">pulls per cluster (most {})</text><text x="0" y="{}">share of the pool (grey) and of the selection (green) per cluster</text></svg>"#,
            h + 15.0,
            max_pulls,
            2.0 * h + 50.0
        );
        s
    }

    /// Writes `quad.html` into `out`.
    pub fn write_html(&self, out: &Path) -> Result<()> {
        let mut html = String::from("<!doctype html><meta charset=\"utf-8\"><title>gleaner quad</title><body style=\"font-family:sans-serif\"><h1>Quad bandit</h1>");
        let _ = write!(
            html,
            "<p>{} pulls over {} rounds, {} clusters; selected {} {} of a budget of {} ({}).</p>",
            self.pulls.len(),
            self.rounds.len(),
            self.clusters.len(),
            self.selected_amount,
            self.budget_unit,
            self.budget,
            self.stopped
        );
        html.push_str(&self.rewards_svg());
        html.push_str("<br>");
        html.push_str(&self.clusters_svg());
        html.push_str("</body>");
        write_bytes(&out.join(layout::QUAD_HTML), html.as_bytes())?;
        Ok(())
    }
}

fn svg_open(w: f64, h: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    )
}
