//! What every selector stage shares: a size, how the size applies to the pool's sources, the
//! score column it ranks by (and a second one it combines with), and the
//! `gleaner_selectors` method that chooses.

use super::{Needs, Picked, Pool, PoolStage, StageEnv};
use crate::config::CombineRule;
use anyhow::Result;
use gleaner_selectors::random::SampleSize;
use gleaner_selectors::score::{rank_average, ScoreSelector};
use gleaner_selectors::{allocate_quotas, fraction_quotas, Pick, PoolDoc, Selector};
use std::collections::BTreeMap;

/// How a selector's size applies to the pool's sources.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Grouping {
    /// One selection over the whole pool.
    Pool,
    /// The total (fraction or count) split across sources smallest-first (S2L rule).
    Balanced,
    /// The same fraction of every source, each ranked on its own.
    SameFraction,
}

impl Grouping {
    /// `Balanced` when `per_source`, else `Pool`.
    pub fn balanced(per_source: bool) -> Self {
        if per_source {
            Grouping::Balanced
        } else {
            Grouping::Pool
        }
    }
}

/// Builds the selection method for a size (each source's quota when split).
pub type MakeSelector = Box<dyn Fn(SampleSize) -> Box<dyn Selector> + Send + Sync>;

/// A configured selector stage.
pub struct SelectorStage {
    /// How much to keep.
    pub size: SampleSize,
    /// How the size applies to sources.
    pub grouping: Grouping,
    /// The pool column ranked by.
    pub score_column: Option<String>,
    /// A second column and how it combines with the first.
    pub combine: Option<(String, CombineRule)>,
    /// Whether the selector reads loss trajectories as features.
    pub reads_trajectories: bool,
    /// Whether a token budget counts the `tokenize` stage's tokens (else whitespace tokens).
    pub budget_in_tokens: bool,
    /// What the scan must record (input columns, trajectories, token counts).
    pub needs: Needs,
    /// The method.
    pub make: MakeSelector,
}

impl SelectorStage {
    /// A stage around `make` with no score columns; whitespace token counts are recorded when
    /// the size is a token budget (set `budget_in_tokens` for tokenizer tokens).
    pub fn new(size: SampleSize, grouping: Grouping, make: MakeSelector) -> Self {
        SelectorStage {
            size,
            grouping,
            score_column: None,
            combine: None,
            reads_trajectories: false,
            budget_in_tokens: false,
            needs: Needs {
                words: matches!(size, SampleSize::Tokens(_)),
                ..Needs::default()
            },
            make,
        }
    }

    /// The stage with its token budget counted in tokenizer tokens when `yes` (whitespace
    /// tokens otherwise).
    pub fn with_tokenizer_budget(mut self, yes: bool) -> Self {
        self.budget_in_tokens = yes;
        self.needs.words &= !yes;
        self
    }

    /// A [`ScoreSelector`] stage (top-k, or Gumbel-top-k when `sample`) over `column`.
    pub fn by_score(
        name: &'static str,
        seed: u64,
        size: SampleSize,
        sample: bool,
        temperature: f64,
        grouping: Grouping,
        column: &str,
    ) -> Self {
        let mut stage = SelectorStage::new(
            size,
            grouping,
            Box::new(move |size| {
                Box::new(ScoreSelector {
                    name: name.into(),
                    seed,
                    size,
                    sample,
                    temperature,
                })
            }),
        );
        stage.score_column = Some(column.to_string());
        stage
    }

    /// Chooses from the pool and records the selection.
    pub fn choose(&self, pool: &mut Pool<'_>) {
        let scores: Vec<Option<f64>> = match &self.score_column {
            Some(c) => pool.column(c).to_vec(),
            None => vec![None; pool.len()],
        };
        let docs: Vec<PoolDoc<'_>> = (0..pool.len())
            .map(|i| PoolDoc {
                id: pool.id(i),
                source: pool.source(i),
                tokens: if self.budget_in_tokens {
                    pool.tokens(i)
                } else {
                    pool.words(i)
                },
                score: scores[i],
                features: self.reads_trajectories.then(|| pool.trajectory(i)),
            })
            .collect();
        let secondary: Vec<Option<f64>> = match &self.combine {
            Some((c, _)) => pool.column(c).to_vec(),
            None => Vec::new(),
        };
        let picks = self.select(&docs, &secondary);
        let method = (self.make)(self.size);
        let picks: Vec<(usize, Picked)> = picks
            .into_iter()
            .enumerate()
            .map(|(rank, p)| {
                let picked = Picked {
                    rank: rank as u32,
                    score: p.score,
                    reason: p.reason,
                    quad: None,
                };
                (p.index, picked)
            })
            .collect();
        pool.select(picks, method.name(), method.seed());
    }

    /// Indices of the pool grouped by source (sources in name order).
    fn groups<'p>(pool: &[PoolDoc<'p>]) -> BTreeMap<Option<&'p str>, Vec<usize>> {
        let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
        for (i, d) in pool.iter().enumerate() {
            groups.entry(d.source).or_default().push(i);
        }
        groups
    }

    /// Picks from `pool`, with the second scores `secondary` (one per document) when the
    /// stage combines two columns: their rank average replaces the score (ranked within each
    /// source for [`Grouping::SameFraction`]), or the picks of each column are united.
    pub fn select(&self, pool: &[PoolDoc<'_>], secondary: &[Option<f64>]) -> Vec<Pick> {
        match self.combine.as_ref().map(|c| c.1) {
            None => self.select_grouped(pool),
            Some(CombineRule::RankAverage) => {
                let mut combined = pool.to_vec();
                let mut rank = |members: &[usize]| {
                    let a: Vec<Option<f64>> = members.iter().map(|&i| pool[i].score).collect();
                    let b: Vec<Option<f64>> = members.iter().map(|&i| secondary[i]).collect();
                    for (&i, r) in members.iter().zip(rank_average(&a, &b)) {
                        combined[i].score = r;
                    }
                };
                if self.grouping == Grouping::SameFraction {
                    for members in Self::groups(pool).values() {
                        rank(members);
                    }
                } else {
                    rank(&(0..pool.len()).collect::<Vec<_>>());
                }
                self.select_grouped(&combined)
            }
            Some(CombineRule::Union) => {
                let by_second: Vec<PoolDoc<'_>> = pool
                    .iter()
                    .zip(secondary)
                    .map(|(d, &score)| PoolDoc { score, ..*d })
                    .collect();
                let mut picks = self.select_grouped(pool);
                let mut taken: Vec<bool> = vec![false; pool.len()];
                for p in &picks {
                    taken[p.index] = true;
                }
                for mut p in self.select_grouped(&by_second) {
                    if !taken[p.index] {
                        p.score = pool[p.index].score;
                        p.reason = "combined_union";
                        picks.push(p);
                    }
                }
                picks.sort_by_key(|p| p.index);
                picks
            }
        }
    }

    /// Picks from `pool` under the stage's grouping: one selection, a total split across
    /// sources smallest-first, or the same fraction of each source.
    fn select_grouped(&self, pool: &[PoolDoc<'_>]) -> Vec<Pick> {
        if self.grouping == Grouping::Pool {
            return (self.make)(self.size).select(pool);
        }
        let groups = Self::groups(pool);
        let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
        let quotas = match (self.grouping, self.size) {
            (Grouping::SameFraction, SampleSize::Fraction(f)) => fraction_quotas(&sizes, f),
            (Grouping::Balanced, SampleSize::Fraction(f)) => {
                allocate_quotas(&sizes, (f * pool.len() as f64).round() as usize)
            }
            (Grouping::Balanced, SampleSize::Count(c)) => {
                allocate_quotas(&sizes, (c as usize).min(pool.len()))
            }
            _ => unreachable!("validated: source grouping needs a fraction (or a count)"),
        };
        let mut picks = Vec::with_capacity(quotas.iter().sum());
        for (members, quota) in groups.values().zip(quotas) {
            let sub: Vec<PoolDoc<'_>> = members.iter().map(|&i| pool[i]).collect();
            for mut p in (self.make)(SampleSize::Count(quota as u64)).select(&sub) {
                p.index = members[p.index];
                picks.push(p);
            }
        }
        picks.sort_by_key(|p| p.index);
        picks
    }
}

impl PoolStage for SelectorStage {
    fn needs(&self) -> Needs {
        self.needs.clone()
    }

    fn apply(&self, pool: &mut Pool<'_>, _: &StageEnv<'_>) -> Result<()> {
        self.choose(pool);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec 2.6 test 5: domains of 100/10/5 documents with `within_source` and fraction 0.2
    /// keep 20/2/1, chosen by rank inside each domain; shifting one domain's scores changes
    /// nothing.
    #[test]
    fn within_source_takes_the_same_fraction_of_every_source() {
        let ids: Vec<String> = (0..115).map(|i| format!("d{i}")).collect();
        let source = |i: usize| match i {
            0..=99 => "general",
            100..=109 => "math",
            _ => "code",
        };
        // Scores interleave across domains, so a global top-k would differ.
        let score = |i: usize| ((i * 37) % 115) as f64;
        let stage = SelectorStage::by_score(
            "score_select",
            0,
            SampleSize::Fraction(0.2),
            false,
            1.0,
            Grouping::SameFraction,
            "s",
        );
        let pool = |shift: f64| -> Vec<PoolDoc<'_>> {
            ids.iter()
                .enumerate()
                .map(|(i, id)| PoolDoc {
                    id,
                    source: Some(source(i)),
                    tokens: 1,
                    score: Some(score(i) + if source(i) == "math" { shift } else { 0.0 }),
                    features: None,
                })
                .collect()
        };
        let picked: Vec<usize> = stage
            .select(&pool(0.0), &[])
            .iter()
            .map(|p| p.index)
            .collect();
        let mut expected: Vec<usize> = Vec::new();
        for (range, quota) in [(0..100, 20), (100..110, 2), (110..115, 1)] {
            let mut members: Vec<usize> = range.collect();
            members.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
            expected.extend(&members[..quota]);
        }
        expected.sort();
        assert_eq!(picked, expected);
        let shifted: Vec<usize> = stage
            .select(&pool(1000.0), &[])
            .iter()
            .map(|p| p.index)
            .collect();
        assert_eq!(shifted, picked);
    }
}
