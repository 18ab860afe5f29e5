//! Model stages (`embed`, `lm_score`, `attention_influence`): columns computed by a model for every document of the
//! input, kept as per-work-unit sidecars (`gleaner_storage::sidecar`) in a cache folder and
//! attached to the documents during the scan as if the input files held them.
//!
//! A sidecar folder is named by the stage type and a hash of the model files' contents and
//! the stage settings that change values (length, long-document rule), so reruns and ablations
//! over the same inputs reuse them; batching and device settings do not enter the hash.
//! Values are computed for every row of the input (not only for documents surviving earlier
//! filters), which is what makes them reusable across configs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arrow::array::{Array, ArrayRef, Float32Builder, Float64Array, ListBuilder};
use gleaner_embed::train::{byte_tokens, TrainableLm};
use gleaner_embed::weights::ModelFiles;
use gleaner_embed::{
    device_from_name, CausalLm, DeviceName, EncoderOptions, LmOptions, LongDocuments,
    SentenceEncoder,
};
use gleaner_storage::atomic::hex;
use gleaner_storage::reader::{CorpusReader, DocBatch};
use gleaner_storage::sidecar::SidecarStore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{
    AttentionInfluenceConfig, Config, EmbedConfig, LmScoreConfig, LongDocumentsConfig,
    LossTrajectoryConfig, ModelSettings, OnBadFileConfig, StageConfig,
};
use crate::models::attention_influence::{
    cached_heads, heads_for_stage, score_texts, HeadReport, ValueSource,
};
use crate::training::{checkpoint_steps, train};
use gleaner_storage::input::file_identities;

/// Documents handed to a model at once: on the CPU it packs inputs of any length into full
/// batches; on other devices it batches equal-length inputs, so larger calls make fuller ones.
const DOCS_PER_CALL: usize = 4096;

/// What a model stage computes.
#[derive(Debug, Clone)]
pub enum ModelStage {
    /// Sentence embeddings (a vector column).
    Embed(EmbedConfig),
    /// Mean next-token loss (a numeric column).
    LmScore(LmScoreConfig),
    /// Loss increase with the retrieval heads masked (a numeric column).
    AttentionInfluence {
        /// The stage settings.
        config: Box<AttentionInfluenceConfig>,
        /// Where probe values come from.
        values: ValueSource,
        /// Probe seed.
        seed: u64,
        /// The stage's config key (`stages[i]`), for errors.
        key: String,
    },
    /// Per-checkpoint losses of a byte-level proxy trained on the input (a vector column).
    LossTrajectory {
        /// The stage settings.
        config: LossTrajectoryConfig,
        /// Seed of the initialisation and the data order.
        seed: u64,
    },
}

/// A model stage ready to run: its config slot, output column and sidecar store.
#[derive(Debug, Clone)]
pub struct FeatureStage {
    /// Stage slot (1 + index in `config.stages`).
    pub slot: usize,
    /// The column name later stages read.
    pub column: String,
    /// The model and its settings.
    pub model: ModelStage,
    /// Where its values live.
    pub store: SidecarStore,
    /// sha256 of the model files.
    pub fingerprint: String,
    /// Stage type (`embed`, `lm_score`).
    pub label: &'static str,
}

impl FeatureStage {
    /// Whether the column is a vector (embedding) rather than a number.
    pub fn is_vector(&self) -> bool {
        matches!(
            self.model,
            ModelStage::Embed(_) | ModelStage::LossTrajectory { .. }
        )
    }

    fn model_dir(&self) -> &str {
        match &self.model {
            ModelStage::Embed(c) => &c.model,
            ModelStage::LmScore(c) => &c.model,
            ModelStage::AttentionInfluence { config, .. } => &config.model,
            ModelStage::LossTrajectory { .. } => "byte-level proxy trained on the input",
        }
    }

    /// Where an attention_influence stage keeps its head report.
    fn heads_file(&self) -> PathBuf {
        self.store.dir().join("heads.json")
    }
}

/// A model stage as the report describes it (the same on every rerun).
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// Stage type.
    pub stage: String,
    /// Output column.
    pub column: String,
    /// Model folder.
    pub model: String,
    /// sha256 of the model files.
    pub model_sha256: String,
    /// Sidecar folder.
    pub cache: PathBuf,
    /// The masked heads of an attention_influence stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<HeadReport>,
}

/// What one model stage did: its summary and this run's cost (for timings.json).
#[derive(Debug, Clone, Serialize)]
pub struct FeatureReport {
    /// The stage.
    #[serde(flatten)]
    pub summary: ModelSummary,
    /// Documents in the input.
    pub documents: u64,
    /// Documents computed in this run (the rest came from the cache).
    pub computed: u64,
    /// Wall seconds spent computing.
    pub seconds: f64,
    /// Computed documents per second (0 when all came from the cache).
    pub docs_per_second: f64,
}

/// The cache root of a config as configured: `run.cache_dir`, else `.gleaner-cache` beside
/// `output.dir` (either may be an object-storage URL).
pub fn configured_cache_root(config: &Config) -> String {
    if let Some(dir) = &config.run.cache_dir {
        return dir.clone();
    }
    let out = config.output.dir.trim_end_matches('/');
    if gleaner_storage::object::is_remote(out) {
        let (scheme, rest) = out.split_once("://").expect("a URL");
        return match rest.rsplit_once('/') {
            Some((parent, _)) => format!("{scheme}://{parent}/.gleaner-cache"),
            None => format!("{scheme}://{rest}/.gleaner-cache"),
        };
    }
    Path::new(out)
        .parent()
        .unwrap_or(Path::new("."))
        .join(".gleaner-cache")
        .to_string_lossy()
        .into_owned()
}

/// The local cache folder of a run: the mirror of a remote cache, else the configured one.
pub fn cache_root(config: &Config) -> PathBuf {
    config
        .run
        .cache_staging
        .clone()
        .unwrap_or_else(|| PathBuf::from(configured_cache_root(config)))
}

/// The sentence encoder an embed stage configures (model, lengths, device).
pub fn load_encoder(s: ModelSettings<'_>) -> Result<SentenceEncoder> {
    let device = device_from_name(DeviceName::parse(s.device)?)?;
    let options = EncoderOptions {
        max_tokens: s.max_tokens,
        batch_tokens: s.batch_tokens,
        long_documents: long_documents(s.long_documents),
    };
    Ok(SentenceEncoder::load(Path::new(s.model), options, &device)?)
}

/// The causal LM a model stage configures (model, lengths, device).
fn load_lm(s: ModelSettings<'_>) -> Result<CausalLm> {
    let device = device_from_name(DeviceName::parse(s.device)?)?;
    let options = LmOptions {
        max_tokens: s.max_tokens,
        batch_tokens: s.batch_tokens,
        long_documents: long_documents(s.long_documents),
    };
    Ok(CausalLm::load(Path::new(s.model), options, &device)?)
}

fn long_documents(c: LongDocumentsConfig) -> LongDocuments {
    match c {
        LongDocumentsConfig::Truncate => LongDocuments::Truncate,
        LongDocumentsConfig::ChunkMean => LongDocuments::ChunkMean,
    }
}

/// The model stages of a config, each with its sidecar store. Reads (hashes) the model files,
/// so a missing model folder fails here, before any work.
pub fn plan(config: &Config) -> Result<Vec<FeatureStage>> {
    let root = cache_root(config);
    let mut out = Vec::new();
    for (i, stage) in config.stages.iter().enumerate() {
        let (model, dir, settings) = match stage {
            StageConfig::Embed(c) => (
                ModelStage::Embed(c.clone()),
                &c.model,
                serde_json::json!({"max_tokens": c.max_tokens, "long_documents": c.long_documents}),
            ),
            StageConfig::LmScore(c) => (
                ModelStage::LmScore(c.clone()),
                &c.model,
                serde_json::json!({"max_tokens": c.max_tokens, "long_documents": c.long_documents}),
            ),
            StageConfig::AttentionInfluence(c) => {
                let values = ValueSource {
                    paths: if c.probe.value_paths.is_empty() {
                        config.input.paths.clone()
                    } else {
                        c.probe.value_paths.clone()
                    },
                    text_column: c
                        .probe
                        .value_text_column
                        .clone()
                        .unwrap_or_else(|| config.input.text_column.clone()),
                };
                let seed = c.probe.seed.unwrap_or(config.run.seed);
                // Everything that changes the heads or the scores; detection also depends on
                // the value files, named by path, size and modification time.
                let value_files = if c.heads.is_empty() {
                    file_identities(&values.paths)
                        .with_context(|| format!("at key `stages[{i}].probe.value_paths`"))?
                } else {
                    Vec::new()
                };
                let settings = serde_json::json!({
                    "heads": c.heads, "head_top_frac": c.head_top_frac, "head_top_n": c.head_top_n,
                    "require_correct_answer": c.require_correct_answer,
                    "max_decode_tokens": c.max_decode_tokens, "probe": c.probe, "seed": seed,
                    "value_text_column": values.text_column, "value_files": value_files,
                    "uniform_scope": c.uniform_scope, "formula": c.formula,
                    "max_tokens": c.max_tokens, "long_documents": c.long_documents,
                });
                let model = ModelStage::AttentionInfluence {
                    config: Box::new(c.clone()),
                    values,
                    seed,
                    key: format!("stages[{i}]"),
                };
                (model, &c.model, settings)
            }
            StageConfig::LossTrajectory(c) => {
                let seed = c.seed.unwrap_or(config.run.seed);
                // The model is trained on the input: its files (and what is read of them) are
                // the fingerprint.
                let inputs = serde_json::json!({
                    "files": file_identities(&config.input.paths)
                        .with_context(|| "at key `input.paths`")?,
                    "text_column": config.input.text_column,
                    "max_doc_bytes": config.input.max_doc_bytes,
                });
                let fingerprint = hex(&Sha256::digest(inputs.to_string().as_bytes()));
                let settings = serde_json::json!({"config": c, "seed": seed});
                out.push(feature_stage(
                    i,
                    stage.type_name(),
                    ModelStage::LossTrajectory {
                        config: c.clone(),
                        seed,
                    },
                    c.column.clone(),
                    fingerprint,
                    &settings,
                    &root,
                ));
                continue;
            }
            _ => continue,
        };
        let fingerprint = ModelFiles::in_dir(Path::new(dir))
            .fingerprint()
            .with_context(|| format!("at key `stages[{i}].model`"))?;
        let column = match &model {
            ModelStage::Embed(c) => c.column.clone(),
            ModelStage::LmScore(c) => c.column.clone(),
            ModelStage::AttentionInfluence { config, .. } => config.column.clone(),
            ModelStage::LossTrajectory { config, .. } => config.column.clone(),
        };
        out.push(feature_stage(
            i,
            stage.type_name(),
            model,
            column,
            fingerprint,
            &settings,
            &root,
        ));
    }
    Ok(out)
}

/// A planned model stage: its sidecar folder is named by the stage type and a hash of the
/// model fingerprint and the settings that change values.
fn feature_stage(
    index: usize,
    label: &'static str,
    model: ModelStage,
    column: String,
    fingerprint: String,
    settings: &serde_json::Value,
    root: &Path,
) -> FeatureStage {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update(fingerprint.as_bytes());
    hasher.update(settings.to_string().as_bytes());
    let key = hex(&hasher.finalize());
    FeatureStage {
        slot: index + 1,
        column,
        model,
        store: SidecarStore::new(root.join(format!("{label}-{}", &key[..16]))),
        fingerprint,
        label,
    }
}

/// A loaded model of either kind.
enum Loaded {
    Encoder(SentenceEncoder),
    Lm(CausalLm),
    AttentionInfluence {
        lm: CausalLm,
        mask: gleaner_embed::HeadMask,
        formula: crate::config::ScoreFormulaConfig,
    },
    /// The proxy at each checkpoint.
    LossTrajectory {
        checkpoints: Vec<TrainableLm>,
        max_tokens: usize,
    },
}

impl Loaded {
    fn load(stage: &FeatureStage, reader: &CorpusReader, config: &Config) -> Result<Self> {
        Ok(match &stage.model {
            ModelStage::Embed(c) => Loaded::Encoder(load_encoder(c.settings())?),
            ModelStage::LmScore(c) => Loaded::Lm(load_lm(c.settings())?),
            ModelStage::AttentionInfluence {
                config: c,
                values,
                seed,
                key,
            } => {
                let lm = load_lm(c.settings())?;
                let heads = heads_for_stage(&lm, c, values, *seed, key, &stage.heads_file())?;
                Loaded::AttentionInfluence {
                    mask: heads.mask(c.uniform_scope),
                    formula: c.formula,
                    lm,
                }
            }
            ModelStage::LossTrajectory { config: c, seed } => {
                let texts = input_texts(reader, config)?;
                if texts.is_empty() {
                    bail!("loss_trajectory: the input has no non-empty document to train on");
                }
                let steps = c.proxy.steps();
                let at = checkpoint_steps(steps, c.checkpoints);
                tracing::info!(
                    "loss_trajectory: training the proxy on {} documents for {steps} steps",
                    texts.len()
                );
                let mut checkpoints = Vec::with_capacity(at.len());
                train(&texts, &c.proxy, *seed, &at, |_, lm, _| {
                    checkpoints.push(lm.clone())
                })
                .context("loss_trajectory: at key `proxy.device`")?;
                Loaded::LossTrajectory {
                    checkpoints,
                    max_tokens: c.max_tokens,
                }
            }
        })
    }

    /// Values for `texts`; `None` texts (null, or over the size limit) get nulls.
    fn compute(&self, texts: &[Option<&str>]) -> Result<ArrayRef> {
        let present: Vec<&str> = texts.iter().flatten().copied().collect();
        Ok(match self {
            Loaded::Encoder(encoder) => {
                let dim = encoder.dim();
                let mut values = Vec::with_capacity(present.len() * dim);
                for chunk in present.chunks(DOCS_PER_CALL) {
                    values.extend(encoder.encode(chunk)?);
                }
                let mut builder = ListBuilder::new(Float32Builder::with_capacity(values.len()));
                let mut next = values.chunks_exact(dim);
                for text in texts {
                    match text {
                        Some(_) => {
                            builder
                                .values()
                                .append_slice(next.next().expect("one vector per text"));
                            builder.append(true);
                        }
                        None => builder.append(false),
                    }
                }
                Arc::new(builder.finish())
            }
            Loaded::Lm(lm) => {
                let mut losses = Vec::with_capacity(present.len());
                for chunk in present.chunks(DOCS_PER_CALL) {
                    losses.extend(lm.document_losses(chunk, None)?);
                }
                let mut next = losses.into_iter();
                let values: Float64Array = texts
                    .iter()
                    .map(|t| {
                        t.and_then(|_| {
                            let loss = next.next().expect("one loss per text").mean_nll;
                            (!loss.is_nan()).then_some(f64::from(loss))
                        })
                    })
                    .collect();
                Arc::new(values)
            }
            Loaded::LossTrajectory {
                checkpoints,
                max_tokens,
            } => {
                let sequences: Vec<Vec<u32>> = present
                    .iter()
                    .map(|t| {
                        let mut ids = byte_tokens(t);
                        ids.truncate(*max_tokens);
                        ids
                    })
                    .collect();
                let per_checkpoint: Vec<Vec<f64>> = checkpoints
                    .iter()
                    .map(|lm| lm.sequence_losses(&sequences))
                    .collect();
                let mut builder = ListBuilder::new(Float32Builder::new());
                let mut doc = 0;
                for text in texts {
                    match text {
                        Some(_) => {
                            for losses in &per_checkpoint {
                                builder.values().append_value(losses[doc] as f32);
                            }
                            builder.append(true);
                            doc += 1;
                        }
                        None => builder.append(false),
                    }
                }
                Arc::new(builder.finish())
            }
            Loaded::AttentionInfluence { lm, mask, formula } => {
                let mut scores = Vec::with_capacity(present.len());
                for chunk in present.chunks(DOCS_PER_CALL) {
                    scores.extend(score_texts(lm, mask, *formula, chunk)?);
                }
                let mut next = scores.into_iter();
                let values: Float64Array = texts
                    .iter()
                    .map(|t| t.and_then(|_| next.next().expect("one score per text")))
                    .collect();
                Arc::new(values)
            }
        })
    }
}

/// Computes every model stage's missing sidecars among `units`. Progress goes to `progress`
/// (documents).
pub fn compute(
    reader: &CorpusReader,
    stages: &[FeatureStage],
    config: &Config,
    units: &[usize],
    progress: &indicatif::ProgressBar,
) -> Result<Vec<FeatureReport>> {
    let mut reports = Vec::with_capacity(stages.len());
    for stage in stages {
        let started = Instant::now();
        let missing: Vec<usize> = units
            .iter()
            .copied()
            .filter(|&u| {
                let unit = &reader.units()[u];
                !stage.store.has(&reader.files()[unit.file], unit)
            })
            .collect();
        let mut computed = 0u64;
        if !missing.is_empty() {
            let model = Loaded::load(stage, reader, config)
                .with_context(|| format!("stage `{}` (column `{}`)", stage.label, stage.column))?;
            progress.set_message(stage.label);
            for u in missing {
                match compute_unit(reader, u, stage, &model, config) {
                    Ok(n) => computed += n,
                    // The scan reports and skips the file.
                    Err(_) if config.input.on_bad_file == OnBadFileConfig::Skip => {}
                    Err(e) => return Err(e),
                }
                progress.inc(reader.units()[u].rows);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let heads = match stage.model {
            ModelStage::AttentionInfluence { .. } => cached_heads(&stage.heads_file())?,
            _ => None,
        };
        reports.push(FeatureReport {
            summary: ModelSummary {
                stage: stage.label.to_string(),
                column: stage.column.clone(),
                model: stage.model_dir().to_string(),
                model_sha256: stage.fingerprint.clone(),
                cache: stage.store.dir().to_path_buf(),
                heads,
            },
            documents: reader.total_rows(),
            computed,
            seconds,
            docs_per_second: if computed > 0 {
                computed as f64 / seconds
            } else {
                0.0
            },
        });
    }
    Ok(reports)
}

/// Every non-empty input text within `input.max_doc_bytes`, in corpus order (units of files
/// that fail to read are left out when `on_bad_file = "skip"`; the scan reports them).
fn input_texts(reader: &CorpusReader, config: &Config) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for u in 0..reader.units().len() {
        let read = || -> Result<Vec<String>> {
            let mut out = Vec::new();
            for batch in reader.read_unit(u)? {
                let batch = batch?;
                for i in 0..batch.len() {
                    if let Some(t) = batch.text(i).filter(|t| {
                        !t.trim().is_empty() && t.len() as u64 <= config.input.max_doc_bytes
                    }) {
                        out.push(t.to_string());
                    }
                }
            }
            Ok(out)
        };
        match read() {
            Ok(t) => texts.extend(t),
            Err(_) if config.input.on_bad_file == OnBadFileConfig::Skip => {}
            Err(e) => return Err(e),
        }
    }
    Ok(texts)
}

/// Computes and commits one unit's sidecar; returns the documents computed.
fn compute_unit(
    reader: &CorpusReader,
    u: usize,
    stage: &FeatureStage,
    model: &Loaded,
    config: &Config,
) -> Result<u64> {
    let unit = &reader.units()[u];
    let file = &reader.files()[unit.file];
    let mut ids = Vec::with_capacity(unit.rows as usize);
    let mut values: Vec<ArrayRef> = Vec::new();
    for batch in reader.read_unit(u)? {
        let batch = batch?;
        let texts: Vec<Option<&str>> = (0..batch.len())
            .map(|i| {
                batch
                    .text(i)
                    .filter(|t| t.len() as u64 <= config.input.max_doc_bytes)
            })
            .collect();
        values.push(model.compute(&texts).with_context(|| {
            format!(
                "{} row group {}: {}",
                file.path.display(),
                unit.row_group,
                stage.label
            )
        })?);
        ids.extend((0..batch.len()).map(|i| batch.id(i).into_owned()));
    }
    let parts: Vec<&dyn Array> = values.iter().map(|a| a.as_ref()).collect();
    let values = arrow::compute::concat(&parts)?;
    stage.store.write(file, unit, ids, values)?;
    Ok(unit.rows)
}

/// The sidecar values of one unit, one array per model stage, ready to attach to its batches.
pub struct UnitFeatures {
    arrays: Vec<(bool, ArrayRef)>,
    first_row: u64,
}

impl UnitFeatures {
    /// Reads unit `u`'s sidecars.
    pub fn load(reader: &CorpusReader, stages: &[FeatureStage], u: usize) -> Result<Self> {
        let unit = &reader.units()[u];
        let file = &reader.files()[unit.file];
        let arrays = stages
            .iter()
            .map(|s| Ok((s.is_vector(), s.store.read(file, unit)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            arrays,
            first_row: unit.first_row,
        })
    }

    /// Attaches the batch's slice of each column: vectors and scores after the file's own, in
    /// stage order.
    pub fn attach(&self, batch: &mut DocBatch) {
        let offset = (batch.first.row - self.first_row) as usize;
        for (is_vector, array) in &self.arrays {
            let slice = array.slice(offset, batch.len());
            if *is_vector {
                batch.attach_vector(&slice);
            } else {
                batch.attach_score(&slice);
            }
        }
    }
}
