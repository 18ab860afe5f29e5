//! Quad's influence score (docs/METHODS.md) on the causal LM: a candidate window's
//! gradient at chosen linear layers, compared by cosine with the (EK-)FAC-preconditioned
//! gradients of a reference set; a document scores the mean over its windows.
//!
//! `q(z) = (1/|D_r|) Σ_r <normalize(P vec(g_z)), normalize(P vec((H+λI)⁻¹ g_r))>`, with the
//! same layers on both sides and `P` a seeded Rademacher projection (or none: exact cosines,
//! the better choice on a CPU with a few layers, where the projection costs more than it saves).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use gleaner_embed::weights::ModelFiles;
use gleaner_embed::{device_from_name, CausalLm, DeviceName, LinearId, LinearKind, LmOptions};
use gleaner_storage::atomic::{hex, write_bytes};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::{CurvatureConfig, QuadConfig, QuadProjectionsConfig};
use gleaner_selectors::quad::curvature::{KroneckerFactors, LayerExample, Preconditioner};
use gleaner_selectors::quad::projection::RademacherProjection;
use gleaner_selectors::quad::windows::{document_score, windows, WindowConfig};
use gleaner_storage::input::file_identities;

/// How reference gradients are preconditioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curvature {
    /// No preconditioning (LESS/TracIn-style gradient cosine).
    Identity,
    /// K-FAC: `(S ⊗ A + λI)⁻¹`.
    Kfac,
    /// Eigenvalue-corrected K-FAC.
    Ekfac,
}

/// Settings of the influence score.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluenceSettings {
    /// Linear layers whose weight gradients are compared.
    pub layers: Vec<LinearId>,
    /// Preconditioning of the reference gradients.
    pub curvature: Curvature,
    /// Damping λ.
    pub damping: f64,
    /// Projection width k; 0 compares the full gradients.
    pub proj_dim: usize,
    /// Projection seed.
    pub proj_seed: u64,
    /// Candidate windows.
    pub windows: WindowConfig,
    /// Score of a document without a window.
    pub empty_doc_score: f64,
}

/// Scores candidate documents against a fitted reference set.
pub struct InfluenceScorer<'a> {
    lm: &'a CausalLm,
    settings: InfluenceSettings,
    /// Mean of the unit vectors of the preconditioned (and projected) reference gradients:
    /// `q` is linear in them, so their mean is all a candidate needs, whatever the reference
    /// set's size.
    reference: Vec<f64>,
}

/// Per-sequence weight gradients of the chosen layers: one entry per sequence, each the
/// layers' `[out x in]` gradients concatenated in layer order, plus the layer examples
/// (inputs and output gradients) when `keep_examples` is set.
struct SequenceGradients {
    flat: Vec<Vec<f64>>,
    /// Per layer, per sequence: (inputs, output_grads).
    examples: Vec<Vec<(Vec<f32>, Vec<f32>)>>,
}

impl<'a> InfluenceScorer<'a> {
    fn gradients(
        lm: &CausalLm,
        layers: &[LinearId],
        sequences: &[Vec<u32>],
        keep_examples: bool,
    ) -> Result<SequenceGradients> {
        let mut flat = vec![Vec::new(); sequences.len()];
        let mut examples = vec![Vec::new(); layers.len()];
        for (s, sequence) in sequences.iter().enumerate() {
            let per_layer = lm.sequence_gradients(&[sequence.as_slice()], layers)?;
            // The model returns taps in module order; put them in the settings' order.
            for (l, id) in layers.iter().enumerate() {
                let layer = per_layer
                    .iter()
                    .find(|g| g.id == *id)
                    .expect("every tapped layer reports gradients");
                let sample = &layer.samples[0];
                flat[s].extend(sample.weight.iter().map(|&v| f64::from(v)));
                if keep_examples {
                    examples[l].push((sample.inputs.clone(), sample.output_grads.clone()));
                }
            }
        }
        Ok(SequenceGradients { flat, examples })
    }

    /// Projects (when configured) and normalises a flat gradient.
    fn unit(&self, v: Vec<f64>) -> Vec<f64> {
        unit(&self.settings, v)
    }

    /// Fits the preconditioner on `fit` sequences and preconditions the gradients of the
    /// `reference` sequences (each truncated to the window length). Errors name empty sets
    /// and sequences under two tokens.
    pub fn fit(
        lm: &'a CausalLm,
        settings: InfluenceSettings,
        reference: &[Vec<u32>],
        fit: &[Vec<u32>],
    ) -> Result<Self> {
        if reference.is_empty() {
            bail!("the reference set is empty");
        }
        let cut = |s: &[Vec<u32>]| -> Vec<Vec<u32>> {
            s.iter()
                .map(|x| x[..x.len().min(settings.windows.len)].to_vec())
                .collect()
        };
        let (reference, fit) = (cut(reference), cut(fit));
        if let Some(i) = reference.iter().chain(&fit).position(|s| s.len() < 2) {
            bail!("reference or fit example {i} has fewer than two tokens");
        }
        let config = lm.config();
        let preconditioners: Vec<Option<Preconditioner>> =
            if settings.curvature == Curvature::Identity {
                vec![None; settings.layers.len()]
            } else {
                let fitted = Self::gradients(lm, &settings.layers, &fit, true)?;
                settings
                    .layers
                    .par_iter()
                    .zip(&fitted.examples)
                    .map(|(id, examples)| {
                        let (inputs, outputs) = config.linear_shape(id.kind);
                        let examples: Vec<LayerExample> = examples
                            .iter()
                            .map(|(x, g)| LayerExample {
                                inputs: x,
                                output_grads: g,
                            })
                            .collect();
                        let factors = KroneckerFactors::fit(inputs, outputs, &examples);
                        Some(match settings.curvature {
                            Curvature::Kfac => Preconditioner::kfac(&factors, settings.damping),
                            _ => Preconditioner::ekfac(&factors, &examples, settings.damping),
                        })
                    })
                    .collect()
            };
        let raw = Self::gradients(lm, &settings.layers, &reference, false)?;
        let share = 1.0 / raw.flat.len() as f64;
        let mut scorer = Self {
            lm,
            settings,
            reference: Vec::new(),
        };
        for g in raw.flat {
            let mut out = Vec::with_capacity(g.len());
            let mut offset = 0;
            for (id, p) in scorer.settings.layers.iter().zip(&preconditioners) {
                let (inputs, outputs) = config.linear_shape(id.kind);
                let block = &g[offset..offset + inputs * outputs];
                match p {
                    Some(p) => out.extend(p.apply(block)),
                    None => out.extend_from_slice(block),
                }
                offset += inputs * outputs;
            }
            let v = scorer.unit(out);
            if scorer.reference.is_empty() {
                scorer.reference = vec![0.0; v.len()];
            }
            for (m, x) in scorer.reference.iter_mut().zip(v) {
                *m += x * share;
            }
        }
        Ok(scorer)
    }

    /// The mean of the reference unit vectors: all a candidate's score needs.
    pub fn reference_vector(&self) -> &[f64] {
        &self.reference
    }

    /// A scorer from a saved reference vector ([`InfluenceScorer::reference_vector`] of a
    /// scorer fitted with the same model and settings), without refitting.
    pub fn with_reference(
        lm: &'a CausalLm,
        settings: InfluenceSettings,
        reference: Vec<f64>,
    ) -> Self {
        Self {
            lm,
            settings,
            reference,
        }
    }

    /// `q` of one token sequence (a window): mean cosine with the reference vectors.
    pub fn window_score(&self, window: &[u32]) -> Result<f64> {
        let g = Self::gradients(self.lm, &self.settings.layers, &[window.to_vec()], false)?;
        let u = self.unit(g.flat.into_iter().next().expect("one sequence"));
        Ok(self.reference.iter().zip(&u).map(|(a, b)| a * b).sum())
    }

    /// A document's score: its tokens (plus the end-of-sequence token when the model has
    /// one) cut into windows, the mean of the windows' scores, or `empty_doc_score`.
    /// Returns the score and the number of windows (forward+backward passes).
    pub fn document_score(&self, ids: &[u32]) -> Result<(f64, usize)> {
        let mut ids = ids.to_vec();
        if let Some(eos) = self.lm.config().eos_token_id {
            ids.push(eos);
        }
        let ranges = windows(ids.len(), &self.settings.windows);
        let scores = ranges
            .iter()
            .map(|r| self.window_score(&ids[r.clone()]))
            .collect::<Result<Vec<_>>>()?;
        Ok((
            document_score(&scores, self.settings.empty_doc_score),
            ranges.len(),
        ))
    }
}

/// Projects (when `proj_dim > 0`) and L2-normalises.
fn unit(settings: &InfluenceSettings, v: Vec<f64>) -> Vec<f64> {
    let v = if settings.proj_dim > 0 {
        RademacherProjection {
            dim: settings.proj_dim,
            seed: settings.proj_seed,
        }
        .project(&v)
    } else {
        v
    };
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.into_iter().map(|x| x / norm).collect()
    } else {
        v
    }
}

/// The `quad` stage's model side: the proxy LM, the influence settings, the tokenized
/// reference and fit sets, and a cache of document scores shared by reruns and ablations.
pub struct QuadProxy {
    model: QuadModel,
    reference: Vec<Vec<u32>>,
    fit: Vec<Vec<u32>>,
    cache: InfluenceCache,
}

/// The proxy model with the stage's influence settings: what scoring a candidate needs (a
/// probe job step loads only this).
pub struct QuadModel {
    lm: CausalLm,
    settings: InfluenceSettings,
    /// Decoder layers compared.
    layers: Vec<usize>,
    layer_names: Vec<String>,
}

/// Document scores already computed, keyed by the sha256 of the text, in
/// `<cache>/quad-<key>/influence.json`; the key covers the model, the influence settings and
/// the reference and fit files, so any change starts a new cache. Scores are stored as their
/// IEEE bits, so a cached score is the computed one to the last bit.
struct InfluenceCache {
    path: PathBuf,
    scores: Mutex<BTreeMap<String, (u64, usize)>>,
}

impl InfluenceCache {
    fn open(path: PathBuf) -> Result<Self> {
        let scores = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the influence cache {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self {
            path,
            scores: Mutex::new(scores),
        })
    }

    fn get(&self, key: &str) -> Option<(f64, usize)> {
        let scores = self.scores.lock().expect("cache lock");
        scores.get(key).map(|&(bits, n)| (f64::from_bits(bits), n))
    }

    fn insert(&self, key: String, (score, windows): (f64, usize)) {
        let mut scores = self.scores.lock().expect("cache lock");
        scores.insert(key, (score.to_bits(), windows));
    }

    /// Writes the cache (temp file, then rename).
    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec(&*self.scores.lock().expect("cache lock"))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_bytes(&self.path, &bytes)?;
        Ok(())
    }
}

/// One scored document: its `q`, its windows (forward+backward passes) and whether this run
/// computed it (rather than the cache).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredDocument {
    /// Influence score `q`.
    pub score: f64,
    /// Windows scored.
    pub windows: usize,
    /// Computed in this run.
    pub computed: bool,
}

/// Texts of the first `max` non-empty documents of `paths`, each as tokens plus the
/// end-of-sequence token.
fn first_sequences(
    lm: &CausalLm,
    paths: &[String],
    column: &str,
    max: usize,
    key: &str,
) -> Result<Vec<Vec<u32>>> {
    let mut texts: Vec<String> = Vec::new();
    gleaner_storage::reader::for_each_text(paths, column, |t| {
        if !t.trim().is_empty() {
            texts.push(t.to_string());
        }
        texts.len() < max
    })
    .with_context(|| format!("at key `{key}`: reading {paths:?}"))?;
    if texts.is_empty() {
        bail!("at key `{key}`: no non-empty `{column}` text in {paths:?}");
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut ids = lm.tokenize(&refs)?;
    if let Some(eos) = lm.config().eos_token_id {
        ids.iter_mut().for_each(|s| s.push(eos));
    }
    Ok(ids)
}

impl QuadModel {
    /// Loads the proxy model of the stage at `key` (`stages[i]`) and checks its layers and
    /// window length against it. Errors name the key.
    pub fn load(config: &QuadConfig, key: &str) -> Result<Self> {
        let device = device_from_name(DeviceName::parse(&config.device)?)?;
        let options = LmOptions {
            max_tokens: config.window_len,
            ..LmOptions::default()
        };
        let lm = CausalLm::load(Path::new(&config.model), options, &device)
            .with_context(|| format!("at key `{key}.model`"))?;
        let model = lm.config();
        let n_layers = model.num_hidden_layers;
        let layers: Vec<usize> = if config.layers.is_empty() {
            (n_layers.saturating_sub(2)..n_layers).collect()
        } else {
            config.layers.clone()
        };
        if let Some(&l) = layers.iter().find(|&&l| l >= n_layers) {
            bail!("at key `{key}.layers`: layer {l} is outside the model's {n_layers} layers (0..{n_layers})");
        }
        if config.window_len > model.max_position_embeddings {
            bail!(
                "at key `{key}.window_len`: {} is above the model's max_position_embeddings {}",
                config.window_len,
                model.max_position_embeddings
            );
        }
        let kinds: &[LinearKind] = match config.projections {
            QuadProjectionsConfig::Attention => &LinearKind::ATTENTION,
            QuadProjectionsConfig::AttentionMlp => &LinearKind::ALL,
        };
        let ids: Vec<LinearId> = layers
            .iter()
            .flat_map(|&layer| kinds.iter().map(move |&kind| LinearId { layer, kind }))
            .collect();
        let layer_names = ids
            .iter()
            .map(|id| format!("layers.{}.{}", id.layer, id.kind.hf_name()))
            .collect();
        let settings = InfluenceSettings {
            layers: ids,
            curvature: match config.curvature {
                CurvatureConfig::Identity => Curvature::Identity,
                CurvatureConfig::Kfac => Curvature::Kfac,
                CurvatureConfig::Ekfac => Curvature::Ekfac,
            },
            damping: config.damping,
            proj_dim: config.proj_dim,
            proj_seed: config.proj_seed,
            windows: WindowConfig {
                len: config.window_len,
                stride: config.window_stride,
                min_len: config.min_window_len,
                max_doc_tokens: config.max_doc_tokens,
                max_windows: config.max_windows,
            },
            empty_doc_score: config.empty_doc_score,
        };
        Ok(Self {
            lm,
            settings,
            layers,
            layer_names,
        })
    }

    /// `q` and windows of each text, in parallel on this machine's threads (no cache).
    pub fn compute(
        &self,
        scorer: &InfluenceScorer<'_>,
        texts: &[String],
    ) -> Result<Vec<(f64, usize)>> {
        texts
            .par_iter()
            .map(|text| {
                let ids = self
                    .lm
                    .tokenize(&[text.as_str()])?
                    .pop()
                    .unwrap_or_default();
                scorer.document_score(&ids)
            })
            .collect()
    }

    /// A scorer from a saved reference vector (see [`InfluenceScorer::with_reference`]).
    pub fn scorer_with_reference(&self, reference: Vec<f64>) -> InfluenceScorer<'_> {
        InfluenceScorer::with_reference(&self.lm, self.settings.clone(), reference)
    }
}

impl QuadProxy {
    /// Loads the proxy model and the reference and fit sets of the stage at `key`
    /// (`stages[i]`), and opens its score cache under `cache_root`. Errors name the key.
    pub fn load(config: &QuadConfig, key: &str, cache_root: &Path) -> Result<Self> {
        let model = QuadModel::load(config, key)?;
        let lm = &model.lm;
        let fit_paths = if config.fit_paths.is_empty() {
            &config.reference_paths
        } else {
            &config.fit_paths
        };
        let reference = first_sequences(
            lm,
            &config.reference_paths,
            &config.reference_text_column,
            config.reference_max_documents,
            &format!("{key}.reference_paths"),
        )?;
        let fit = first_sequences(
            lm,
            fit_paths,
            &config.reference_text_column,
            config.fit_max_documents,
            &format!("{key}.fit_paths"),
        )?;
        // Everything that changes a document's score.
        let fingerprint = ModelFiles::in_dir(Path::new(&config.model))
            .fingerprint()
            .with_context(|| format!("at key `{key}.model`"))?;
        let identity = serde_json::json!({
            "model": fingerprint,
            "layers": model.layers, "projections": config.projections, "curvature": config.curvature,
            "damping": config.damping, "proj_dim": config.proj_dim, "proj_seed": config.proj_seed,
            "window": [config.window_len, config.window_stride, config.min_window_len, config.max_doc_tokens],
            "empty_doc_score": config.empty_doc_score,
            "reference": [file_identities(&config.reference_paths)?, config.reference_max_documents],
            "fit": [file_identities(fit_paths)?, config.fit_max_documents],
            "text_column": config.reference_text_column,
        });
        let digest = hex(&Sha256::digest(identity.to_string().as_bytes()));
        let cache = InfluenceCache::open(
            cache_root
                .join(format!("quad-{}", &digest[..16]))
                .join("influence.json"),
        )?;
        Ok(Self {
            model,
            reference,
            fit,
            cache,
        })
    }

    /// Fits the preconditioner and the reference vector.
    pub fn scorer(&self) -> Result<InfluenceScorer<'_>> {
        let m = &self.model;
        InfluenceScorer::fit(&m.lm, m.settings.clone(), &self.reference, &self.fit)
    }

    /// Reference and fit documents (one forward+backward pass each when fitting).
    pub fn reference_sizes(&self) -> (usize, usize) {
        (self.reference.len(), self.fit.len())
    }

    /// The compared layers, as `layers.<i>.<proj>`.
    pub fn layer_names(&self) -> &[String] {
        &self.model.layer_names
    }

    /// Token counts of `texts` under the proxy's tokenizer.
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<u64>> {
        Ok(self
            .model
            .lm
            .tokenize(texts)?
            .iter()
            .map(|t| t.len() as u64)
            .collect())
    }

    /// Scores `texts` on this machine's threads (cached ones from the cache), then saves the
    /// cache.
    pub fn score(
        &self,
        scorer: &InfluenceScorer<'_>,
        texts: &[String],
    ) -> Result<Vec<ScoredDocument>> {
        self.score_with(texts, |todo| self.model.compute(scorer, todo))
    }

    /// Scores `texts`: cached ones from the cache, the others through `compute` (one call with
    /// all of them, e.g. spread over Slurm tasks), then saves the cache.
    pub fn score_with(
        &self,
        texts: &[String],
        compute: impl FnOnce(&[String]) -> Result<Vec<(f64, usize)>>,
    ) -> Result<Vec<ScoredDocument>> {
        let keys: Vec<String> = texts
            .iter()
            .map(|t| hex(&Sha256::digest(t.as_bytes())))
            .collect();
        let cached: Vec<Option<(f64, usize)>> = keys.iter().map(|k| self.cache.get(k)).collect();
        let todo: Vec<String> = texts
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .map(|(t, _)| t.clone())
            .collect();
        let mut fresh = if todo.is_empty() {
            Vec::new()
        } else {
            compute(&todo)?
        }
        .into_iter();
        let out: Vec<ScoredDocument> = cached
            .iter()
            .zip(&keys)
            .map(|(c, key)| match c {
                Some((score, windows)) => ScoredDocument {
                    score: *score,
                    windows: *windows,
                    computed: false,
                },
                None => {
                    let (score, windows) = fresh.next().expect("one result per computed text");
                    self.cache.insert(key.clone(), (score, windows));
                    ScoredDocument {
                        score,
                        windows,
                        computed: true,
                    }
                }
            })
            .collect();
        if !todo.is_empty() {
            self.cache.save()?;
        }
        Ok(out)
    }
}
