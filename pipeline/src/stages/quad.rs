//! `quad`: a UCB bandit over k-means clusters of the pool's embeddings; each round probes a
//! few documents of the chosen clusters with the proxy LM's (EK-)FAC influence on the
//! reference set and accepts blocks of documents (`gleaner_selectors::quad`). The proxy and
//! its scoring live in `crate::models::quad`; probes are scored here or by the executor's
//! [`super::ProbeRunner`].

use super::{Needs, Picked, Pool, PoolStage, StageEnv};
use crate::config::QuadConfig;
use crate::models::quad::QuadProxy;
use crate::quad_report::{QuadReport, QuadReportContext};
use anyhow::Result;
use gleaner_selectors::quad::bandit::{BanditConfig, BlockRule};
use gleaner_selectors::quad::select::{select, QuadSettings};
use std::time::Instant;

/// The quad stage of a config, with its resolved seed.
pub struct QuadStage {
    config: QuadConfig,
    seed: u64,
}

impl QuadStage {
    /// The stage of `config`, drawing from `seed`.
    pub fn new(config: &QuadConfig, seed: u64) -> Self {
        QuadStage {
            config: config.clone(),
            seed,
        }
    }
}

impl PoolStage for QuadStage {
    fn needs(&self) -> Needs {
        Needs {
            embeddings: true,
            ..Needs::default()
        }
    }

    fn apply(&self, pool: &mut Pool<'_>, env: &StageEnv<'_>) -> Result<()> {
        let (c, seed) = (&self.config, self.seed);
        let t_fit = Instant::now();
        let proxy = QuadProxy::load(
            c,
            &env.key,
            &crate::models::features::cache_root(env.config),
        )?;
        let scorer = proxy.scorer()?;
        let fit_s = t_fit.elapsed().as_secs_f64();
        let (data, dim) = pool.embeddings()?;
        let all: Vec<usize> = (0..pool.len()).collect();
        let tokens = match c.budget_tokens {
            Some(_) => {
                let counts =
                    pool.map_texts(&all, |text| proxy.token_counts(&[text]).map(|v| v[0]))?;
                Some(counts.into_iter().collect::<Result<Vec<u64>>>()?)
            }
            None => None,
        };
        let settings = QuadSettings {
            n_clusters: c.n_clusters,
            kmeans_iters: c.kmeans_iters,
            max_points_per_cluster: c.max_points_per_cluster,
            neighbor_radius: c.neighbor_radius,
            bandit: BanditConfig {
                alpha: c.alpha,
                reward_offset: c.reward_offset_rule(),
                block_rule: c.block_rule,
                probe_size: c.probe_size,
                arms_per_round: c.arms_per_round,
                block_size: c.block_size,
                max_rounds: c.max_rounds,
                budget: c
                    .budget_docs
                    .or(c.budget_tokens)
                    .expect("validated: one budget"),
                init_policy: c.init_policy,
            },
            seed,
        };
        let out = &env.config.output_dir();
        let budget = settings.bandit.budget;
        let unit = if c.budget_tokens.is_some() {
            "tokens"
        } else {
            "docs"
        };
        let bar = crate::run::selection_bar(env.quiet, budget, unit);
        let t_probe = Instant::now();
        let mut probe_windows: Vec<usize> = Vec::new();
        let mut computed_passes = 0usize;
        let mut round = 0usize;
        let mut probed = 0usize;
        let selection = select(
            &data,
            dim,
            tokens.as_deref(),
            &settings,
            |docs, selected| {
                bar.set_position(selected.min(budget));
                bar.set_message(format!(
                    "quad round {}/{}, {probed} probed",
                    round + 1,
                    c.max_rounds
                ));
                let texts = pool.map_texts(docs, str::to_string)?;
                let scored = match env.probe_runner {
                    Some(runner) => proxy.score_with(&texts, |todo| {
                        runner.score(round, todo, scorer.reference_vector())
                    })?,
                    None => proxy.score(&scorer, &texts)?,
                };
                probe_windows.extend(scored.iter().map(|d| d.windows));
                let fresh: usize = scored
                    .iter()
                    .filter(|d| d.computed)
                    .map(|d| d.windows)
                    .sum();
                computed_passes += fresh;
                probed += docs.len();
                tracing::info!(
                "quad round {round}: probed {} documents ({fresh} window passes computed, the rest cached); {selected} of {budget} {unit} selected before it",
                docs.len()
            );
                crate::layout::write_progress(
                    out,
                    "quad",
                    serde_json::json!({
                        "round": round + 1,
                        "max_rounds": c.max_rounds,
                        "probed_documents": probed,
                        "window_passes_computed": computed_passes,
                        "selected": selected,
                        "budget": budget,
                        "budget_unit": unit,
                    }),
                );
                round += 1;
                Ok::<_, anyhow::Error>(scored.iter().map(|d| d.score).collect())
            },
        )?;
        bar.set_position(selection.selected_amount.min(budget));
        bar.finish_and_clear();
        let probe_s = t_probe.elapsed().as_secs_f64();
        let (references, fits) = proxy.reference_sizes();
        let fit_documents = if c.curvature == crate::config::CurvatureConfig::Identity {
            0
        } else {
            fits
        };
        let curvature = serde_json::to_value(c.curvature)?;
        let mut report = QuadReport::new(
            &selection,
            &QuadReportContext {
                model: &c.model,
                layers: proxy.layer_names(),
                curvature: curvature.as_str().unwrap_or_default(),
                reference_fit: (references, fit_documents),
                budget_unit: if c.budget_tokens.is_some() {
                    "tokens"
                } else {
                    "documents"
                },
                budget: settings.bandit.budget,
                max_rounds: c.max_rounds,
                probe_windows: &probe_windows,
                reward_offset_rule: c.reward_offset_rule().describe(),
                block_rule: match c.block_rule {
                    BlockRule::Fixed => "fixed",
                    BlockRule::Proportional => "proportional",
                },
            },
        );
        report.set_sources(&selection.probes, |i| {
            pool.source(i).unwrap_or("(none)").to_string()
        });
        pool.findings.quad_cost = Some(serde_json::json!({
            "fit_s": fit_s,
            "probe_s": probe_s,
            "probe_passes_computed": computed_passes,
            "probe_passes_total": report.probe_passes,
            "reference_passes": report.reference_passes,
            "passes_per_selected_document": report.passes_per_selected_document,
            "probe_passes_per_s": computed_passes as f64 / probe_s.max(1e-9),
        }));
        pool.findings.quad = Some(report);
        pool.set_clusters(selection.assignments.iter().map(|&a| Some(a)).collect());
        let picks = selection
            .picks
            .iter()
            .enumerate()
            .map(|(rank, p)| {
                let picked = Picked {
                    rank: rank as u32,
                    score: Some(p.pull_score),
                    reason: "quad_block",
                    quad: Some((p.round as u32, p.arm_score, p.probe_score)),
                };
                (p.index, picked)
            })
            .collect();
        pool.select(picks, "quad", seed);
        Ok(())
    }
}
