//! The decide step of the reduce phase: counts what the map stages dropped, then runs the
//! pool stages in config order over one [`Pool`] of the survivors.

use super::RunOptions;
use crate::clusters::ClusterSummary;
use crate::config::Config;
use crate::quad_report::QuadReport;
use crate::report::{ScoreDistribution, SourceCounts};
use crate::stages::scanned::{Fate, UnitScan, INPUT_SLOT, NO_SOURCE};
use crate::stages::{Ledger, Picked, Plan, Pool, Scanned, StageEnv};
use crate::stats::StageStats;
use anyhow::Result;
use gleaner_storage::reader::CorpusReader;
use std::collections::BTreeMap;

/// One kept document's provenance.
pub struct SelectedRow {
    /// Unit index in the corpus.
    pub unit: usize,
    /// Row within the unit.
    pub row: u32,
    /// Document id.
    pub id: String,
    /// Its source.
    pub source: Option<String>,
    /// How it was kept.
    pub picked: Picked,
    /// Its cluster, when a stage clustered the pool.
    pub cluster: Option<u32>,
}

/// Everything the reduce phase decides.
pub struct Decisions {
    /// Per stage slot.
    pub stats: Vec<StageStats>,
    /// Per unit, per row: [`Ledger::KEEP`] or an index into `reason_names`.
    pub row_fates: Vec<Vec<u32>>,
    /// Drop reasons.
    pub reason_names: Vec<String>,
    /// Kept documents in selection-file order.
    pub selected: Vec<SelectedRow>,
    /// Pool and kept counts per source.
    pub sources: BTreeMap<String, SourceCounts>,
    /// Example dropped ids per reason.
    pub examples: BTreeMap<String, Vec<String>>,
    /// The selecting method's name (`filters_only` when none).
    pub method: String,
    /// Its seed.
    pub seed: u64,
    /// Cluster report, when a stage clustered.
    pub clusters: Option<ClusterSummary>,
    /// Per-source distributions of the attention_influence score columns.
    pub distributions: Vec<ScoreDistribution>,
    /// What a quad stage did.
    pub quad: Option<QuadReport>,
    /// A quad stage's cost in this run (for timings.json).
    pub quad_cost: Option<serde_json::Value>,
}

fn source_key(scan: &UnitScan, k: u32) -> String {
    if k == NO_SOURCE {
        "(none)".to_string()
    } else {
        scan.source_names[k as usize].clone()
    }
}

/// Counts the map stages' drops into a ledger: a document dropped at slot `s` was seen and
/// kept by every earlier map slot.
fn count_map_phase(
    scans: &[(usize, &UnitScan)],
    plan: &Plan,
    sources: &mut BTreeMap<String, SourceCounts>,
) -> Ledger {
    let mut ledger = Ledger::new(&plan.names);
    let last_doc_slot = plan.doc_stages.last().map(|f| f.0).unwrap_or(INPUT_SLOT);
    for (_, scan) in scans {
        let mut fates = vec![Ledger::KEEP; scan.fates.len()];
        for (row, fate) in scan.fates.iter().enumerate() {
            sources
                .entry(source_key(scan, scan.row_sources[row]))
                .or_default()
                .pool += 1;
            let drop_slot = match fate {
                Fate::Dropped(k) => {
                    let (slot, reason) = &scan.reasons[*k as usize];
                    ledger.stats[*slot].drop_one(reason);
                    fates[row] = ledger.reason(reason);
                    Some(*slot)
                }
                Fate::Survivor => None,
            };
            let passed_through = drop_slot.unwrap_or(last_doc_slot + 1);
            let tokens = scan.row_tokens.get(row).copied();
            for slot in (INPUT_SLOT..=last_doc_slot).filter(|s| *s < passed_through) {
                if slot == INPUT_SLOT || plan.doc_stages.iter().any(|f| f.0 == slot) {
                    ledger.stats[slot].keep_one();
                    if let Some(t) = tokens {
                        *ledger.stats[slot].kept_tokens.get_or_insert(0) += t;
                    }
                }
            }
        }
        for (slot, _) in plan.doc_stages.iter().filter(|(_, s)| s.rewrites()) {
            *ledger.stats[*slot].rewritten.get_or_insert(0) += scan.rewritten[*slot];
        }
        for (slot, reasons) in scan.unchecked.iter().enumerate() {
            for (reason, n) in reasons {
                *ledger.stats[slot]
                    .unchecked
                    .entry(reason.clone())
                    .or_default() += n;
            }
        }
        for (k, ids) in scan.examples.iter().enumerate() {
            for id in ids {
                ledger.example(&scan.reasons[k].1, id);
            }
        }
        ledger.row_fates.push(fates);
    }
    ledger
}

/// Decides every row's fate from the units' scans (`None` for skipped units).
pub fn decide(
    reader: Option<&CorpusReader>,
    scans: &[Option<UnitScan>],
    plan: &Plan,
    config: &Config,
    options: &RunOptions,
) -> Result<Decisions> {
    let scanned = Scanned {
        reader,
        plan: Some(plan),
        units: scans
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .collect(),
    };
    let mut sources: BTreeMap<String, SourceCounts> = BTreeMap::new();
    let ledger = count_map_phase(&scanned.units, plan, &mut sources);
    let mut pool = Pool::new(&scanned, &plan.needs.columns, ledger);
    for (k, (slot, stage)) in plan.pool_stages.iter().enumerate() {
        pool.enter(*slot, k);
        let env = StageEnv {
            config,
            key: format!("stages[{}]", slot - 1),
            probe_runner: options.probe_runner.as_deref(),
            quiet: options.quiet,
        };
        stage.apply(&mut pool, &env)?;
        pool.leave(plan.tokenizer.is_some());
    }
    let finished = pool.finish();
    let mut selected = Vec::with_capacity(finished.kept.len());
    for (d, picked, cluster) in finished.kept {
        let (unit, scan) = scanned.units[d.unit as usize];
        let s = &scan.survivors[d.survivor as usize];
        let source = s.source.map(|k| scan.source_names[k as usize].clone());
        let counts = sources
            .entry(source.clone().unwrap_or_else(|| "(none)".into()))
            .or_default();
        counts.kept += 1;
        if plan.tokenizer.is_some() {
            *counts.kept_tokens.get_or_insert(0) += s.tokens;
        }
        selected.push(SelectedRow {
            unit,
            row: s.row,
            id: s.id.clone(),
            source,
            picked,
            cluster,
        });
    }
    // Row fates back to corpus unit indices (skipped units have none).
    let mut row_fates: Vec<Vec<u32>> = vec![Vec::new(); scans.len()];
    for ((unit, _), fates) in scanned.units.iter().zip(finished.ledger.row_fates) {
        row_fates[*unit] = fates;
    }
    let distributions = plan
        .distributions
        .iter()
        .enumerate()
        .map(|(j, column)| {
            let mut by_source: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (_, scan) in &scanned.units {
                for &(k, v) in &scan.distribution_values[j] {
                    by_source.entry(source_key(scan, k)).or_default().push(v);
                }
            }
            ScoreDistribution::new(column, by_source)
        })
        .collect();
    let (method, seed) = finished
        .method
        .unwrap_or_else(|| ("filters_only".to_string(), config.run.seed));
    Ok(Decisions {
        stats: finished.ledger.stats,
        row_fates,
        reason_names: finished.ledger.reason_names,
        selected,
        sources,
        examples: finished.ledger.examples,
        method,
        seed,
        clusters: finished.findings.clusters,
        distributions,
        quad: finished.findings.quad,
        quad_cost: finished.findings.quad_cost,
    })
}

#[cfg(test)]
mod tests {
    //! The decide loop on synthetic pools: scans built in memory (the same map-phase calls a
    //! real scan makes), no files and no binary.
    use super::*;
    use crate::stages::columns::Columns;
    use crate::stages::scanned::Survivor;

    /// One synthetic document: id, source, text, an input score, an embedding.
    struct Doc {
        id: &'static str,
        source: &'static str,
        text: &'static str,
        score: f64,
        embedding: [f32; 2],
    }

    fn doc(id: &'static str, source: &'static str, text: &'static str, score: f64) -> Doc {
        Doc {
            id,
            source,
            text,
            score,
            embedding: [1.0, score as f32],
        }
    }

    fn config(stages: &str) -> Config {
        let toml = format!(
            "[input]\npaths = [\"unused\"]\nsource_column = \"source\"\nembedding_column = \"e\"\n\
             [output]\ndir = \"unused\"\n[run]\nseed = 7\n{stages}"
        );
        Config::from_value(toml::from_str(&toml).unwrap(), &[]).unwrap()
    }

    /// The scan of one unit whose every row survived the map stages.
    fn scan(plan: &Plan, docs: &[Doc]) -> UnitScan {
        let mut sources: Vec<String> = Vec::new();
        let mut scan = UnitScan::empty(plan, 0);
        scan.embeddings.dim = 2;
        for (row, d) in docs.iter().enumerate() {
            let k = match sources.iter().position(|s| s == d.source) {
                Some(k) => k,
                None => {
                    sources.push(d.source.to_string());
                    sources.len() - 1
                }
            } as u32;
            scan.fates.push(Fate::Survivor);
            scan.row_sources.push(k);
            scan.survivors.push(Survivor {
                row: row as u32,
                id: d.id.to_string(),
                source: Some(k),
                words: d.text.split_whitespace().count() as u64,
                tokens: 0,
                title: None,
            });
            scan.columns
                .extend(plan.needs.columns.iter().map(|_| Some(d.score)));
            scan.embeddings.data.extend_from_slice(&d.embedding);
            for (s, (_, stage)) in plan.pool_stages.iter().enumerate() {
                stage.map_document(d.text, &mut scan.stage_docs[s]);
                stage.map_unit(d.text, &mut scan.stage_units[s]);
            }
        }
        scan.source_names = sources;
        scan
    }

    fn run(stages: &str, units: &[&[Doc]]) -> Decisions {
        let config = config(stages);
        let plan = Plan::build(&config, &Columns::of(&config)).unwrap();
        let scans: Vec<Option<UnitScan>> = units.iter().map(|u| Some(scan(&plan, u))).collect();
        decide(None, &scans, &plan, &config, &RunOptions::default()).unwrap()
    }

    fn ids(d: &Decisions) -> Vec<&str> {
        d.selected.iter().map(|r| r.id.as_str()).collect()
    }

    fn count(d: &Decisions, stage: &str, reason: &str) -> (u64, u64, u64) {
        let s = d.stats.iter().find(|s| s.stage == stage).unwrap();
        (s.seen, s.kept, s.dropped.get(reason).copied().unwrap_or(0))
    }

    #[test]
    fn exact_dedup_keeps_the_first_copy_across_units_and_counts_each_stage_once() {
        let a: &[Doc] = &[
            doc("a1", "x", "same text", 1.0),
            doc("a2", "x", "other text", 2.0),
        ];
        let b: &[Doc] = &[
            doc("b1", "y", "same text", 3.0),
            doc("b2", "y", "third text", 4.0),
            doc("b3", "y", "other text", 5.0),
        ];
        let d = run(
            "[[stages]]\ntype = \"exact_dedup\"\n[[stages]]\ntype = \"score_select\"\nscore_column = \"q\"\ncount = 2\n",
            &[a, b],
        );
        // Dedup leaves a1, a2, b2; top-2 by score among them: b2 (4), a2 (2).
        assert_eq!(count(&d, "exact_dedup", "duplicate"), (5, 3, 2));
        assert_eq!(count(&d, "score_select", "not_sampled"), (3, 2, 1));
        let mut kept = ids(&d);
        kept.sort();
        assert_eq!(kept, ["a2", "b2"]);
        assert_eq!(d.method, "score_select");
        assert_eq!(d.examples["duplicate"], ["b1", "b3"]);
        // Row fates: unit 1's rows 0 and 2 dropped as duplicates, row 1 kept.
        let dup = d
            .reason_names
            .iter()
            .position(|r| r == "duplicate")
            .unwrap() as u32;
        assert_eq!(d.row_fates[1][0], dup);
        assert_eq!(d.row_fates[1][1], Ledger::KEEP);
        assert_eq!(d.row_fates[1][2], dup);
        assert_eq!(d.sources["y"].pool, 3);
        assert_eq!(d.sources["y"].kept, 1);
    }

    #[test]
    fn without_a_selector_every_survivor_passes_in_corpus_order() {
        let a: &[Doc] = &[doc("a", "x", "one", 0.0), doc("b", "x", "two", 0.0)];
        let b: &[Doc] = &[doc("c", "y", "one", 0.0)];
        let d = run("[[stages]]\ntype = \"exact_dedup\"\n", &[a, b]);
        assert_eq!(ids(&d), ["a", "b"]);
        assert_eq!(d.method, "filters_only");
        assert_eq!(d.seed, 7);
        assert!(d
            .selected
            .iter()
            .all(|r| r.picked.reason == "passed_filters" && r.picked.score.is_none()));
    }

    #[test]
    fn semdedup_drops_the_later_of_two_identical_embeddings_and_records_clusters() {
        // Scores set the embeddings: (1, s). d1 and d3 point the same way; d2 and d4 differ.
        let a: &[Doc] = &[
            doc("d1", "x", "t1", 1.0),
            doc("d2", "x", "t2", -1.0),
            doc("d3", "x", "t3", 1.0),
            doc("d4", "x", "t4", 0.0),
        ];
        let d = run(
            "[[stages]]\ntype = \"semdedup\"\nn_clusters = 1\neps = 0.001\nwhich_to_keep = \"random\"\n",
            &[a],
        );
        assert_eq!(count(&d, "semdedup", "semantic_duplicate"), (4, 3, 1));
        let kept = ids(&d);
        assert_eq!(kept.len(), 3);
        assert!(kept.contains(&"d2") && kept.contains(&"d4"));
        assert!(kept.contains(&"d1") != kept.contains(&"d3"));
        assert!(d.selected.iter().all(|r| r.cluster == Some(0)));
        assert!(d.clusters.is_some());
    }

    #[test]
    fn a_per_source_sample_splits_the_count_smallest_source_first() {
        let big: Vec<Doc> = (0..10)
            .map(|i| {
                doc(
                    ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"][i],
                    "big",
                    "x",
                    0.0,
                )
            })
            .collect();
        let small: &[Doc] = &[doc("s0", "small", "y", 0.0)];
        let d = run(
            "[[stages]]\ntype = \"random_sample\"\ncount = 5\nper_source = true\n",
            &[&big, small],
        );
        // Quotas 5 / 2 sources: the small source (1 document) gives its spare quota to the big.
        assert_eq!(d.selected.len(), 5);
        assert_eq!(d.sources["small"].kept, 1);
        assert_eq!(d.sources["big"].kept, 4);
        assert_eq!(count(&d, "random_sample", "not_sampled"), (11, 5, 6));
    }
}
