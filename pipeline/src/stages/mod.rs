//! The two kinds of stage and the one place they are registered.
//!
//! - A [`DocStage`] (map) sees each document once, in the map phase, and keeps or drops it
//!   (the Gopher rules, a range on a score column). Model stages compute their columns
//!   before the scan (`crate::models::features`) and drop nothing.
//! - A [`PoolStage`] (reduce) sees the whole [`Pool`] of surviving documents in the reduce
//!   phase and keeps some of them (dedup, every selector). It may compute per-document values
//!   in the map phase ([`PoolStage::map_document`]), so that work is spread over the map tasks.
//!
//! Map stages run in config order during the scan; pool stages run in config order over the
//! pool. [`Plan::build`] turns the config's stages into these objects; adding a stage means one
//! file here, its config struct and one arm in [`Plan::build`].

pub mod c4_badwords;
pub mod c4_quality;
pub mod columns;
pub mod decontaminate;
pub mod dsir;
pub mod embedding_similarity;
pub mod exact_dedup;
pub mod html_extract;
pub mod language_id;
pub mod minhash_dedup;
pub mod ngram_classifier;
pub mod pii_redact;
pub mod pool;
pub mod quad;
pub mod random_sample;
pub mod s2l;
pub mod scanned;
pub mod score_filter;
pub mod score_select;
pub mod selection;
pub mod semdedup;
pub mod tokenize;
pub mod url_filter;

use crate::clusters::ClusterSummary;
use crate::config::{Config, StageConfig};
use crate::quad_report::QuadReport;
use anyhow::Result;
use arrow::array::ArrayRef;
use arrow::datatypes::Field;
use columns::Columns;
use gleaner_storage::reader::DocBatch;
pub use pool::{DocRef, Ledger, Picked, Pool, Scanned};
use std::borrow::Cow;
use std::sync::Arc;

/// What a map stage decides about one document.
pub enum Verdict {
    /// Keep it as it is.
    Keep,
    /// Keep it with this text (later stages and the written shards see the new text).
    Rewrite(String),
    /// Keep it without judging it, for this reason (the stage's statistics count it as
    /// `unchecked_<reason>`: a document in a language the stage has no list for).
    Unchecked(String),
    /// Drop it for this reason.
    Drop(String),
}

/// What the map stages found out about the document they are judging, for later stages of
/// the same run: the language each `language_id` stage detected, by the stage's slot.
#[derive(Debug, Default)]
pub struct DocNotes {
    languages: Vec<(usize, Option<&'static str>)>,
}

impl DocNotes {
    /// Forgets the previous document's notes.
    pub fn clear(&mut self) {
        self.languages.clear();
    }

    /// Records the language (an ISO 639-3 code, `None` when none was detected) that the stage
    /// in `slot` detected.
    pub fn set_language(&mut self, slot: usize, language: Option<&'static str>) {
        self.languages.push((slot, language));
    }

    /// The language the stage in `slot` detected (`None` also when it did not run).
    pub fn language(&self, slot: usize) -> Option<&'static str> {
        self.languages
            .iter()
            .find(|(s, _)| *s == slot)
            .and_then(|(_, l)| *l)
    }
}

/// A per-document stage of the map phase.
pub trait DocStage: Send + Sync {
    /// `None` keeps document `i` of `batch` (whose text is `text`); `Some(reason)` drops it.
    fn check(&self, batch: &DocBatch, i: usize, text: &str) -> Option<String>;

    /// The stage's decision, rewrites included (by default: [`DocStage::check`]); `notes`
    /// holds what earlier stages found out about the document, and this stage may add to it.
    fn judge(&self, batch: &DocBatch, i: usize, text: &str, _notes: &mut DocNotes) -> Verdict {
        match self.check(batch, i, text) {
            Some(reason) => Verdict::Drop(reason),
            None => Verdict::Keep,
        }
    }

    /// Whether the stage rewrites texts ([`DocStage::rewrite`]).
    fn rewrites(&self) -> bool {
        false
    }

    /// The text a kept document has after this stage, when the stage rewrites texts.
    fn rewrite(&self, _text: &str) -> Option<String> {
        None
    }

    /// Whether rewriting costs much more than reading the document again (HTML extraction):
    /// then the scan keeps the rewritten texts for the write phase, within the scan cache's
    /// budget, instead of the write phase rewriting them again.
    fn rewrite_is_costly(&self) -> bool {
        false
    }

    /// Columns this stage adds to the written shards.
    fn output_fields(&self) -> Vec<Field> {
        Vec::new()
    }

    /// Their values for every row of a batch whose (written) texts are `texts`, one array per
    /// field (computed in the write phase, so they need no room in the scan).
    fn annotate(&self, _texts: &[Option<&str>]) -> Vec<ArrayRef> {
        Vec::new()
    }
}

/// A per-document stage that only annotates (model stages: their columns are computed before
/// the scan).
struct Annotates;

impl DocStage for Annotates {
    fn check(&self, _: &DocBatch, _: usize, _: &str) -> Option<String> {
        None
    }
}

/// A map stage the plan also keeps a handle to (the tokenizer).
struct SharedDocStage<S>(Arc<S>);

impl<S: DocStage> DocStage for SharedDocStage<S> {
    fn check(&self, batch: &DocBatch, i: usize, text: &str) -> Option<String> {
        self.0.check(batch, i, text)
    }

    fn judge(&self, batch: &DocBatch, i: usize, text: &str, notes: &mut DocNotes) -> Verdict {
        self.0.judge(batch, i, text, notes)
    }

    fn rewrites(&self) -> bool {
        self.0.rewrites()
    }

    fn rewrite(&self, text: &str) -> Option<String> {
        self.0.rewrite(text)
    }

    fn rewrite_is_costly(&self) -> bool {
        self.0.rewrite_is_costly()
    }

    fn output_fields(&self) -> Vec<Field> {
        self.0.output_fields()
    }

    fn annotate(&self, texts: &[Option<&str>]) -> Vec<ArrayRef> {
        self.0.annotate(texts)
    }
}

/// Text rules from `gleaner_selectors::filters` run as a map stage.
struct TextRules(Box<dyn gleaner_selectors::filters::DocumentFilter>);

impl DocStage for TextRules {
    fn check(&self, _: &DocBatch, _: usize, text: &str) -> Option<String> {
        self.0.check(text)
    }
}

/// What the scan records for the pool stages, beyond each survivor's id and source.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Needs {
    /// Whitespace token counts (budgets).
    pub words: bool,
    /// A short label per document (cluster reports).
    pub titles: bool,
    /// The embedding column (`input.embedding_column` or an embed stage's).
    pub embeddings: bool,
    /// Loss trajectories.
    pub trajectories: Option<Trajectories>,
    /// Numeric columns copied into the pool under their names.
    pub columns: Vec<String>,
}

/// Where S2L's loss trajectories come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Trajectories {
    /// A list column.
    Column(String),
    /// Numeric columns, one per checkpoint.
    Columns(Vec<String>),
}

impl Needs {
    fn merge(&mut self, other: Needs) {
        self.words |= other.words;
        self.titles |= other.titles;
        self.embeddings |= other.embeddings;
        if other.trajectories.is_some() {
            self.trajectories = other.trajectories;
        }
        for c in other.columns {
            if !self.columns.contains(&c) {
                self.columns.push(c);
            }
        }
    }
}

/// Reports and costs pool stages leave for the run's outputs.
#[derive(Default)]
pub struct StageFindings {
    /// Cluster sizes and titles (semdedup).
    pub clusters: Option<ClusterSummary>,
    /// What a quad stage did.
    pub quad: Option<QuadReport>,
    /// A quad stage's cost (for timings.json).
    pub quad_cost: Option<serde_json::Value>,
}

/// Scores Quad's probe documents outside this process (the Slurm executor's job steps).
pub trait ProbeRunner: Send + Sync + std::fmt::Debug {
    /// `(score, windows)` of each text of bandit round `round`, against the reference
    /// vector `reference`.
    fn score(&self, round: usize, texts: &[String], reference: &[f64])
        -> Result<Vec<(f64, usize)>>;
}

/// What a pool stage may read besides the pool.
pub struct StageEnv<'a> {
    /// The run's config.
    pub config: &'a Config,
    /// The stage's key in the config (`stages[3]`), for messages.
    pub key: String,
    /// Where Quad's probes are scored, when not in this process.
    pub probe_runner: Option<&'a dyn ProbeRunner>,
    /// No progress bars.
    pub quiet: bool,
}

/// A pool stage of the reduce phase.
pub trait PoolStage: Send + Sync {
    /// What the scan must record for this stage.
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// Words this stage computes per surviving document in the map phase
    /// ([`PoolStage::map_document`] appends exactly this many).
    fn words_per_document(&self) -> usize {
        0
    }

    /// Appends this stage's map-phase values of a surviving document's text.
    fn map_document(&self, _text: &str, _out: &mut Vec<u64>) {}

    /// Length of this stage's per-unit totals ([`PoolStage::map_unit`] adds into them).
    fn unit_totals_len(&self) -> usize {
        0
    }

    /// Adds a surviving document's text into this stage's per-unit totals.
    fn map_unit(&self, _text: &str, _totals: &mut [u64]) {}

    /// Keeps some of the pool (through [`Pool::retain`] or [`Pool::select`]).
    fn apply(&self, pool: &mut Pool<'_>, env: &StageEnv<'_>) -> Result<()>;
}

/// The executable form of the configured stages.
pub struct Plan {
    /// Names per slot: slot 0 is the input, slot `i + 1` is `config.stages[i]`.
    pub names: Vec<String>,
    /// Map stages with their slots, in config order.
    pub doc_stages: Vec<(usize, Box<dyn DocStage>)>,
    /// Pool stages with their slots, in config order.
    pub pool_stages: Vec<(usize, Box<dyn PoolStage>)>,
    /// What the scan records for the pool stages.
    pub needs: Needs,
    /// Score columns whose per-source distribution the report shows (attention_influence
    /// outputs).
    pub distributions: Vec<String>,
    /// The `tokenize` stage's tokenizer, when there is one: survivors' token counts.
    pub tokenizer: Option<Arc<tokenize::Tokenize>>,
}

impl Plan {
    /// Columns the map stages add to the written shards.
    pub fn output_fields(&self) -> Vec<Field> {
        self.doc_stages
            .iter()
            .flat_map(|(_, s)| s.output_fields())
            .collect()
    }

    /// Whether a map stage rewrites texts.
    pub fn rewrites(&self) -> bool {
        self.doc_stages.iter().any(|(_, s)| s.rewrites())
    }

    /// Whether a map stage's rewriting is costly ([`DocStage::rewrite_is_costly`]).
    pub fn rewrites_costly(&self) -> bool {
        self.doc_stages.iter().any(|(_, s)| s.rewrite_is_costly())
    }

    /// A surviving document's text after every rewriting map stage.
    pub fn rewrite_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut current = Cow::Borrowed(text);
        for (_, s) in self.doc_stages.iter().filter(|(_, s)| s.rewrites()) {
            if let Some(t) = s.rewrite(&current) {
                current = Cow::Owned(t);
            }
        }
        current
    }

    /// Values of [`Plan::output_fields`] for rows with the (written) texts `texts`.
    pub fn annotate(&self, texts: &[Option<&str>]) -> Vec<ArrayRef> {
        self.doc_stages
            .iter()
            .flat_map(|(_, s)| s.annotate(texts))
            .collect()
    }

    /// The registry: one arm per stage type.
    pub fn build(config: &Config, columns: &Columns) -> Result<Self> {
        let mut names = vec!["input".to_string()];
        names.extend(config.stage_names());
        let mut doc_stages: Vec<(usize, Box<dyn DocStage>)> = Vec::new();
        let mut pool_stages: Vec<(usize, Box<dyn PoolStage>)> = Vec::new();
        let mut distributions = Vec::new();
        let mut tokenizer = None;
        for (i, stage) in config.stages.iter().enumerate() {
            let slot = i + 1;
            let seed = stage.seed().unwrap_or(config.run.seed);
            let mut doc = |s: Box<dyn DocStage>| doc_stages.push((slot, s));
            match stage {
                StageConfig::GopherQuality(c) => doc(Box::new(TextRules(Box::new(c.clone())))),
                StageConfig::GopherRepetition(c) => doc(Box::new(TextRules(Box::new(c.clone())))),
                StageConfig::ScoreFilter(c) => {
                    doc(Box::new(score_filter::ScoreFilter::new(c, columns)))
                }
                StageConfig::LanguageId(c) => doc(Box::new(language_id::LanguageId {
                    config: c.clone(),
                    slot,
                })),
                StageConfig::C4Quality(c) => doc(Box::new(c4_quality::C4(c.clone()))),
                StageConfig::FinewebQuality(c) => doc(Box::new(TextRules(Box::new(c.clone())))),
                StageConfig::PiiRedact(c) => doc(Box::new(pii_redact::PiiRedact(c.clone()))),
                StageConfig::HtmlExtract(c) => doc(Box::new(html_extract::HtmlExtract(c.clone()))),
                StageConfig::C4Badwords(c) => {
                    // Languages come from an earlier language_id stage writing the column,
                    // else from the input.
                    let language = c.language_column.as_deref().map(|column| {
                        match config.language_id_before(i, column) {
                            Some(stage) => c4_badwords::LanguageFrom::Stage(stage + 1),
                            None => c4_badwords::LanguageFrom::Column(columns.string(column)),
                        }
                    });
                    doc(Box::new(c4_badwords::C4Badwords::new(
                        c,
                        language,
                        seed,
                        &format!("stages[{i}]"),
                    )?))
                }
                StageConfig::UrlFilter(c) => doc(Box::new(url_filter::UrlFilter::new(
                    c,
                    columns,
                    &format!("stages[{i}]"),
                )?)),
                StageConfig::Tokenize(c) => {
                    let t = Arc::new(tokenize::Tokenize::new(c, &format!("stages[{i}]"))?);
                    tokenizer = Some(t.clone());
                    doc(Box::new(SharedDocStage(t)))
                }
                StageConfig::Decontaminate(c) => doc(Box::new(decontaminate::Decontaminate::new(
                    c,
                    &format!("stages[{i}]"),
                )?)),
                StageConfig::Embed(_)
                | StageConfig::LmScore(_)
                | StageConfig::LossTrajectory(_) => doc(Box::new(Annotates)),
                StageConfig::AttentionInfluence(c) => {
                    distributions.push(c.column.clone());
                    doc(Box::new(Annotates))
                }
                StageConfig::ExactDedup(c) => {
                    pool_stages.push((slot, Box::new(exact_dedup::ExactDedupStage(c.clone()))))
                }
                StageConfig::MinhashDedup(c) => pool_stages.push((
                    slot,
                    Box::new(minhash_dedup::MinhashDedupStage::new(c, seed)),
                )),
                StageConfig::Semdedup(c) => {
                    pool_stages.push((slot, Box::new(semdedup::SemdedupStage::new(c, seed))))
                }
                StageConfig::Dsir(c) => {
                    pool_stages.push((slot, Box::new(dsir::DsirStage::new(c, seed))))
                }
                StageConfig::EmbeddingSimilarity(c) => {
                    let embed = config
                        .stages
                        .iter()
                        .find_map(|s| match s {
                            StageConfig::Embed(e) => Some(e),
                            _ => None,
                        })
                        .expect("validated: an embed stage comes first");
                    pool_stages.push((
                        slot,
                        Box::new(embedding_similarity::EmbeddingSimilarityStage::new(
                            c, embed, seed,
                        )),
                    ))
                }
                StageConfig::NgramClassifier(c) => pool_stages.push((
                    slot,
                    Box::new(ngram_classifier::NgramClassifierStage::new(c, seed)),
                )),
                StageConfig::RandomSample(c) => {
                    pool_stages.push((slot, Box::new(random_sample::build(c, seed))))
                }
                StageConfig::ScoreSelect(c) => {
                    pool_stages.push((slot, Box::new(score_select::build(c, seed))))
                }
                StageConfig::S2l(c) => pool_stages.push((slot, Box::new(s2l::build(c, seed)))),
                StageConfig::Quad(c) => {
                    pool_stages.push((slot, Box::new(quad::QuadStage::new(c, seed))))
                }
            }
        }
        let mut needs = Needs::default();
        for (_, s) in &pool_stages {
            needs.merge(s.needs());
        }
        Ok(Plan {
            names,
            doc_stages,
            pool_stages,
            needs,
            distributions,
            tokenizer,
        })
    }
}
